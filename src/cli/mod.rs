//! The command line, one file per subcommand. Each turns its flags into
//! the library's types and calls it; the work is in the library.

pub mod check_config;
pub mod classify;
pub mod common;
pub mod compare;
pub mod daemon;
pub mod explain;
pub mod label;
pub mod logging;
pub mod models;
pub mod presets;
pub mod process;
pub mod progress;
pub mod target;
pub mod worker;
