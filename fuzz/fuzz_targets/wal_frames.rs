//! The log segment decoder, which reads whatever a crash left on disk. The first byte picks
//! the shape: raw bytes after a segment's magic (torn headers, bad lengths and checksums), or
//! the rest wrapped in one valid frame after the schema frame (so the Arrow IPC inside is what
//! gets fuzzed), each for this build's Arrow segments and earlier builds' JSON segments. Never
//! panic; a cut lies inside the data; what decodes re-encodes and decodes to the same batches.
//!
//! Arrow's IPC reader panics on some malformed messages (a buffer reaching past the message
//! body, found by this target); `decode_segment` catches that and cuts the frame. libfuzzer-sys
//! aborts in its panic hook, before any `catch_unwind` runs, so the decoder runs under a quiet
//! hook: a panic it catches passes, one that escapes it still aborts the run.
#![no_main]

use convoscope::wal::{FrameEncoder, MAGIC_JSON, decode_segment, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut enc = FrameEncoder::new().expect("the events schema encodes");
    let mut seg = if mode & 2 == 0 { enc.header().to_vec() } else { MAGIC_JSON.to_vec() };
    let start = if mode & 2 == 0 { 0 } else { MAGIC_JSON.len() };
    if mode % 2 == 0 {
        seg.extend_from_slice(rest);
    } else {
        encode_frame(&mut seg, rest).expect("fuzz inputs are far below the frame limit");
    }
    let Ok(decoded) = quietly(|| decode_segment(seg.clone())) else { return };
    if let Some(at) = decoded.cut_at {
        assert!(at as usize <= seg.len() && at as usize >= start, "cut outside the data: {at}");
    }
    let mut again = enc.header().to_vec();
    for b in &decoded.batches {
        enc.append_batch(&mut again, b).expect("decoded batches encode into one frame");
    }
    let re = quietly(|| decode_segment(again)).expect("re-encoded segment decodes");
    assert_eq!(re.cut_at, None);
    assert_eq!(re.batches, decoded.batches);
});

/// Runs `f` with a panic hook that neither prints nor aborts (see the module docs).
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let out = f();
    std::panic::set_hook(hook);
    out
}
