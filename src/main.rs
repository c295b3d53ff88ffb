//! The `convoscope` binary: parses the command line and hands over to [`convoscope::cli`].

use clap::Parser;

// glibc's allocator, with one arena per thread, fragments under the collector's many small
// allocations: the ingest benchmark measured higher peak RSS and ~20% of CPU in malloc/free.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    convoscope::cli::main(convoscope::cli::Cli::parse())
}
