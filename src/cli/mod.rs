//! Pieces of the command line that are not a subcommand's own work.

pub mod progress;
