//! The `convoscope` binary: parses the command line and hands over to [`convoscope::cli`].

use clap::Parser;

// The ingest path makes many small allocations: under glibc's allocator a profile of `serve`
// spent ~25% of its CPU in malloc/free, and mimalloc raised 10-status webhook throughput by
// 55%. The wrapper adds huge pages on large allocations (`convoscope::util::alloc`).
#[global_allocator]
static GLOBAL: convoscope::util::alloc::Allocator = convoscope::util::alloc::Allocator;

fn main() -> std::process::ExitCode {
    convoscope::util::alloc::init();
    convoscope::cli::main(convoscope::cli::Cli::parse())
}
