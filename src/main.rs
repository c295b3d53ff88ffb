//! The `convoscope` binary: parses the command line and hands over to [`convoscope::cli`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    convoscope::cli::main(convoscope::cli::Cli::parse())
}
