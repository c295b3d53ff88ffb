//! The log segment decoder, which reads whatever a crash left on disk. The first byte picks
//! the shape: raw bytes after the segment header (torn headers, bad lengths and checksums), or
//! the rest wrapped in one valid frame (so the JSON inside is what gets fuzzed). Never panic;
//! a cut lies inside the data; what decodes re-encodes and decodes to the same events.
#![no_main]

use convoscope::wal::{MAGIC, decode_segment, encode_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut seg = MAGIC.to_vec();
    if mode % 2 == 0 {
        seg.extend_from_slice(rest);
    } else {
        encode_frame(&mut seg, rest).expect("fuzz inputs are far below the frame limit");
    }
    let Ok(decoded) = decode_segment(&seg) else { return };
    if let Some(at) = decoded.cut_at {
        assert!(at as usize <= seg.len() && at as usize >= MAGIC.len(), "cut outside the data: {at}");
    }
    let payload = serde_json::to_vec(&decoded.events).expect("events serialise");
    let mut again = MAGIC.to_vec();
    encode_frame(&mut again, &payload).expect("decoded events fit one frame");
    let re = decode_segment(&again).expect("re-encoded segment decodes");
    assert_eq!(re.cut_at, None);
    assert_eq!(re.events, decoded.events);
});
