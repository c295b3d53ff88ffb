//! The process's memory allocator: mimalloc for everything but large blocks, which get their
//! own mappings with transparent huge pages.
//!
//! Reports spend much of their time in hash tables (DataFusion's group tables and joins) whose
//! reads land at random across many megabytes; on 4 KiB pages most of them also miss the TLB.
//! Huge pages on all of mimalloc's memory made five reports 8-26% faster, but `cost` 18-25%
//! slower, and raised the peak RSS of `serve` under ingest by ~30 MiB: a 2 MiB page counts
//! whole once any byte of it is touched, and the ingest path's memory is many small objects.
//! Asking for them only on mimalloc's large blocks (`madvise` on the block, taken back on
//! free) made `cost` and `sla` slower still, likely because mimalloc returns freed memory in
//! pieces smaller than a huge page, which the kernel must split to take back.
//!
//! So mimalloc is built not to ask for huge pages at all (its `no_thp` feature), and a block of
//! at least [`LARGE_BYTES`] is a mapping of its own, with huge pages where [`init`] allows
//! them, unmapped whole when freed, grown by `mremap` without copying. Blocks that large are
//! rare on the ingest path (its peak RSS and speed did not change) and in reports include the
//! hash tables over a million keys or more and the arrays beside them: filled by their owner,
//! so a huge page in one costs little memory, and a system call each way is small beside
//! filling it.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::OnceLock;

use mimalloc::MiMalloc;

/// Blocks at least this large get a mapping of their own. Smaller blocks come and go too often
/// for a mapping's system calls and fresh (zeroed) pages: at 1 MiB, four reports were slower
/// than with mimalloc alone; at 4 MiB, `cost` was.
pub const LARGE_BYTES: usize = 16 << 20;

/// The largest alignment a mapping gives without asking: the smallest page size of the
/// platforms Linux runs on. Blocks that need more stay with mimalloc.
const MAPPING_ALIGN: usize = 4096;

/// What [`init`] settled; large blocks ask for huge pages where it is [`HugePages::Large`].
static MODE: OnceLock<HugePages> = OnceLock::new();

/// The global allocator of the `convoscope` binary: mimalloc, and a mapping of its own for
/// each large block (see the module doc).
pub struct Allocator;

/// Whether a block of this layout is a mapping of its own. It depends on the layout alone, so
/// `dealloc` and `realloc` route a block the way `alloc` did.
fn is_large(layout: &Layout) -> bool {
    cfg!(target_os = "linux") && layout.size() >= LARGE_BYTES && layout.align() <= MAPPING_ALIGN
}

// SAFETY: small blocks are mimalloc's, under the caller's contract unchanged. A large block
// is an anonymous private mapping of at least its size (the kernel rounds to pages), aligned
// to a page and so to its layout (`is_large`), zeroed by the kernel, and unmapped or
// remapped only through the same layout the caller gives back.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            return map(layout.size());
        }
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            // A new anonymous mapping reads as zeroes.
            return map(layout.size());
        }
        // SAFETY: as for `alloc`.
        unsafe { MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(&layout) {
            unmap(block, layout.size());
            return;
        }
        // SAFETY: as for `alloc`.
        unsafe { MiMalloc.dealloc(block, layout) }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `realloc`'s contract makes `new_size`, rounded up to the alignment, a valid
        // layout size.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(&layout), is_large(&new_layout)) {
            // SAFETY: as for `alloc`.
            (false, false) => unsafe { MiMalloc.realloc(block, layout, new_size) },
            (true, true) => remap(block, layout.size(), new_size),
            _ => {
                // Between mimalloc and a mapping: a new block, the contents copied over.
                // SAFETY: `new_layout` is valid (above).
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are at least this long and are distinct.
                    unsafe { std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
                    // SAFETY: `block` was allocated with `layout` and is no longer used.
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

/// A new mapping of `len` bytes, asking for huge pages if [`init`] allowed them; null if the
/// kernel refused.
#[cfg(target_os = "linux")]
fn map(len: usize) -> *mut u8 {
    // SAFETY: a new anonymous private mapping at an address of the kernel's choice.
    let mapping = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if mapping == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    if mode() == Some(HugePages::Large) {
        // SAFETY: the whole of the mapping just made. On failure (an old kernel) the block has
        // small pages, which is correct, only slower.
        unsafe { libc::madvise(mapping, len, libc::MADV_HUGEPAGE) };
    }
    mapping.cast()
}

/// Gives a mapping from [`map`] back to the kernel.
#[cfg(target_os = "linux")]
fn unmap(block: *mut u8, len: usize) {
    // SAFETY: `block` is a mapping of `len` bytes from `map` or `remap`, no longer used. It
    // cannot fail for such a range.
    unsafe { libc::munmap(block.cast(), len) };
}

/// Grows or shrinks a mapping from [`map`], moving it if it must (its pages go along, not
/// copied) and keeping its huge-page advice; null if the kernel refused, the old mapping then
/// left as it was.
#[cfg(target_os = "linux")]
fn remap(block: *mut u8, len: usize, new_len: usize) -> *mut u8 {
    // SAFETY: `block` is a mapping of `len` bytes from `map` or `remap`.
    let moved = unsafe { libc::mremap(block.cast(), len, new_len, libc::MREMAP_MAYMOVE) };
    if moved == libc::MAP_FAILED { std::ptr::null_mut() } else { moved.cast() }
}

// Elsewhere `is_large` is false, so these are never called.
#[cfg(not(target_os = "linux"))]
fn map(_len: usize) -> *mut u8 {
    std::ptr::null_mut()
}
#[cfg(not(target_os = "linux"))]
fn unmap(_block: *mut u8, _len: usize) {}
#[cfg(not(target_os = "linux"))]
fn remap(_block: *mut u8, _len: usize, _new_len: usize) -> *mut u8 {
    std::ptr::null_mut()
}

/// Returns to the kernel now the memory this thread has freed, rather than when the thread
/// next allocates: for a thread that frees much at the end of a job and may then wait long.
/// `serve`'s background merges run on the blocking pool, whose threads each kept a merge's
/// freed pages until they ran again: with merges beside the 10-status load, ~200 MiB of its
/// peak RSS was memory freed and not returned.
pub fn release_freed() {
    // SAFETY: `mi_collect` takes no pointers; it walks and purges this thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// How the process uses transparent huge pages, as [`init`] settled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// On blocks of at least [`LARGE_BYTES`]; the rest of memory has small pages. The kernel
    /// gives huge pages where asked (`madvise`).
    Large,
    /// None: turned off for the process, because the kernel would put them on all memory
    /// (`always`) or `CONVOSCOPE_HUGE_PAGES=off` asked for it.
    Off,
    /// The kernel has none to give (`never`, or no transparent huge pages at all).
    Unavailable,
}

impl std::fmt::Display for HugePages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HugePages::Large => "on large blocks",
            HugePages::Off => "off",
            HugePages::Unavailable => "unavailable",
        })
    }
}

/// The kernel's transparent huge page setting: the bracketed word of
/// `/sys/kernel/mm/transparent_hugepage/enabled`.
fn kernel_setting() -> Option<String> {
    let text = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    let open = text.find('[')?;
    let close = text[open..].find(']')?;
    Some(text[open + 1..open + close].to_string())
}

/// Decides how this process uses huge pages and sets it up; call once, first thing in `main`.
///
/// `CONVOSCOPE_HUGE_PAGES=off` turns them off. Otherwise, where the kernel gives them only on
/// request (`madvise`, Debian's default), large blocks ask for them. Where it gives them on
/// all memory (`always`), they are turned off for the process, since they could not be kept
/// off the ingest path's small objects.
pub fn init() -> HugePages {
    let off = std::env::var("CONVOSCOPE_HUGE_PAGES").is_ok_and(|v| v.eq_ignore_ascii_case("off"));
    let mode = match kernel_setting().as_deref() {
        Some("madvise") if !off => HugePages::Large,
        Some("madvise" | "always") => HugePages::Off,
        _ => HugePages::Unavailable,
    };
    if mode == HugePages::Off {
        disable_for_process();
    }
    // `main` calls this once; a second call (none does) would not be recorded.
    let _ = MODE.set(mode);
    mode
}

/// What [`init`] settled; None where it has not run (a process whose allocator is not
/// [`Allocator`], such as the tests). `serve` logs it at start.
pub fn mode() -> Option<HugePages> {
    MODE.get().copied()
}

fn disable_for_process() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments. It fails only on
    // kernels without the option, which then have no huge pages to turn off.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping that holds `address` (from `/proc/self/smaps`), or None
    /// when no mapping holds it.
    fn vm_flags(address: usize) -> Option<Vec<String>> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_else(|e| panic!("smaps: {e}"));
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((from, to)) = range.split_once('-')
                && let (Ok(from), Ok(to)) = (usize::from_str_radix(from, 16), usize::from_str_radix(to, 16))
            {
                inside = (from..to).contains(&address);
            } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
                return Some(flags.split_whitespace().map(str::to_string).collect());
            }
        }
        None
    }

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 64).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_large_block_is_a_zeroed_mapping_of_its_own_with_huge_pages() {
        let huge = kernel_setting().as_deref() == Some("madvise");
        let settled = init();
        assert_eq!(settled == HugePages::Large, huge && std::env::var_os("CONVOSCOPE_HUGE_PAGES").is_none());
        assert_eq!(mode(), Some(settled));
        let large = layout(LARGE_BYTES + 12345);
        // SAFETY: a non-zero size; freed below with the same layout.
        let block = unsafe { Allocator.alloc_zeroed(large) };
        assert!(!block.is_null());
        assert_eq!(block as usize % MAPPING_ALIGN, 0);
        // SAFETY: the block is `large.size()` bytes, ours until freed.
        let bytes = unsafe { std::slice::from_raw_parts_mut(block, large.size()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[large.size() - 1] = 7;
        let flags = vm_flags(block as usize).unwrap_or_else(|| panic!("block not mapped"));
        if settled == HugePages::Large {
            assert!(flags.iter().any(|f| f == "hg"), "{flags:?}");
        }
        // SAFETY: allocated above with this layout.
        unsafe { Allocator.dealloc(block, large) };

        let small = layout(LARGE_BYTES - 1);
        // SAFETY: as above.
        let block = unsafe { Allocator.alloc(small) };
        assert!(!block.is_null());
        let flags = vm_flags(block as usize).unwrap_or_else(|| panic!("block not mapped"));
        assert!(!flags.iter().any(|f| f == "hg"), "mimalloc's memory asks for no huge pages: {flags:?}");
        // SAFETY: as above.
        unsafe { Allocator.dealloc(block, small) };
    }

    #[test]
    fn realloc_keeps_contents_across_mimalloc_and_mappings() {
        let sizes = [1000, LARGE_BYTES + 1, 3 * LARGE_BYTES, LARGE_BYTES, 100];
        // SAFETY: each block is used only within its size and freed once, with its layout.
        unsafe {
            let mut block = Allocator.alloc(layout(sizes[0]));
            assert!(!block.is_null());
            for i in 0..sizes[0] {
                *block.add(i) = (i % 251) as u8;
            }
            for pair in sizes.windows(2) {
                let (old, new) = (pair[0], pair[1]);
                block = Allocator.realloc(block, layout(old), new);
                assert!(!block.is_null(), "{old} -> {new}");
                for i in 0..sizes[0].min(new) {
                    assert_eq!(*block.add(i), (i % 251) as u8, "byte {i} after {old} -> {new}");
                }
                // The grown part is the caller's to write.
                *block.add(new - 1) = 1;
            }
            Allocator.dealloc(block, layout(sizes[sizes.len() - 1]));
        }
    }
}
