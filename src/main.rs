//! The `convoscope` binary: parses the command line and hands over to [`convoscope::cli`].

use clap::Parser;

// The ingest path makes many small allocations: under glibc's allocator a profile of `serve`
// spent ~25% of its CPU in malloc/free, and mimalloc raised 10-status webhook throughput by
// 55% (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    convoscope::cli::main(convoscope::cli::Cli::parse())
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` says
/// otherwise. mimalloc asks for them on its memory where the kernel leaves them to `madvise`
/// (the kernel uses them anyway where they are `always`), and a 2 MiB page counts whole in RSS
/// once any byte of it is touched: with them, `serve` peaked at 241-249 MiB under `/v1/events`,
/// without them at 210-225 MiB, for the same CPU per event (BENCHMARKS.md, section 1, fifth
/// round). The price is in reports, which share the process: `cost` runs 18-25% faster
/// without them, but five others 8-26% slower (section 2, ninth round); the README says when
/// to set `MIMALLOC_ALLOW_THP=1`.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments. It fails
        // only on kernels without the option, which then have no huge pages to turn off.
        unsafe {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}
