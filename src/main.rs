//! The `signpost` binary: everything lives in the library; this only parses
//! the command line and hands over.

use clap::Parser;

fn main() -> std::process::ExitCode {
    signpost::cli::run(signpost::cli::Cli::parse())
}
