//! First-party bodies (JSON array or NDJSON): never panic; whatever is accepted is storable,
//! and every line is either accepted or rejected by index.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = common::normalizer();
    if let Ok(batch) = convoscope::ingest::first_party::parse(n, data, "api") {
        common::check(&batch.events);
        for r in &batch.rejected {
            assert!(!r.message.is_empty(), "rejection without a reason at {}", r.index);
        }
    }
});
