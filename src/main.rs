//! The `outscore` binary: parse the command line and run it. Everything
//! else, commands and the daemon's wiring included, lives in the library
//! (`outscore::cli`, `outscore::daemon`), where tests reach it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    outscore::cli::run(outscore::cli::Cli::parse())
}
