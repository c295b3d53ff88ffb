//! What every parser target checks about what a parser accepted: each event has an id and a
//! documented event type, and the batch can be written to the log and to Parquet (a parser
//! must never accept what the storage path would then fail on).

use convoscope::event::{EVENT_TYPES, Event, to_record_batch};
use convoscope::ingest::Normalizer;
use convoscope::pii::PiiKey;
use convoscope::wal::{FrameEncoder, decode_segment};

/// One normaliser for the whole run: building one derives a key, which would otherwise
/// dominate each iteration.
pub fn normalizer() -> &'static Normalizer {
    static N: std::sync::OnceLock<Normalizer> = std::sync::OnceLock::new();
    N.get_or_init(|| Normalizer::new(PiiKey::from_secret("fuzz"), &["stop".to_string()], false, 300))
}

pub fn check(events: &[Event]) {
    for e in events {
        assert!(!e.event_id.is_empty(), "event without an id: {e:?}");
        assert!(EVENT_TYPES.contains(&e.event_type.as_str()), "unknown type: {e:?}");
    }
    let batch = to_record_batch(events).expect("accepted events convert to Arrow for the log and Parquet");
    let mut enc = FrameEncoder::new().expect("the events schema encodes");
    let mut segment = enc.header().to_vec();
    enc.append_batch(&mut segment, &batch).expect("accepted events encode as one log frame");
    let back = decode_segment(segment).expect("log frames read back");
    assert_eq!(back.cut_at, None, "log frame cut: {:?}", back.cut_reason);
    assert_eq!(back.batches, [batch], "log round trip changed the events");
}
