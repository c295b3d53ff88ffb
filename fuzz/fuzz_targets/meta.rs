//! meta webhook bodies: never panic; whatever is accepted is storable.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = common::normalizer();
    if let Ok(batch) = convoscope::ingest::meta::parse(n, data) {
        common::check(&batch.events);
    }
});
