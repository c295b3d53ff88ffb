//! meta webhook bodies: never panic; whatever is accepted is storable; where the typed reading
//! and the JSON-tree reading both accept a body they give the same events (the typed one may
//! also accept bodies the tree refuses for bytes inside fields it never reads).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = common::normalizer();
    let (typed, tree) = convoscope::ingest::meta::parse_both(n, data);
    if let (Some(t), Ok(tr)) = (&typed, &tree) {
        assert_eq!(t, tr, "typed and tree readings differ");
    }
    if let Some(batch) = &typed {
        common::check(&batch.events);
    }
    if let Ok(batch) = &tree {
        common::check(&batch.events);
    }
});
