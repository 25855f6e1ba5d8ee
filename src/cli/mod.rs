//! The command line's own pieces: subcommands moved out of main.rs, and what
//! they share.

pub mod compare;
pub mod label;
pub mod progress;
