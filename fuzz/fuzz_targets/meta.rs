//! meta webhook bodies: never panic; whatever is accepted is storable; the typed reading and
//! the JSON-tree reading agree wherever the typed one answers.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = common::normalizer();
    let (typed, tree) = convoscope::ingest::meta::parse_both(n, data);
    if let Some(t) = &typed {
        assert_eq!(Some(t), tree.as_ref().ok(), "typed and tree readings differ");
    }
    if let Ok(batch) = tree {
        common::check(&batch.events);
    }
});
