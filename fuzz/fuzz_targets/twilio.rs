//! Twilio webhooks: the URL's query, a newline, then the form body. Never panic; whatever is
//! accepted is storable.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let n = common::normalizer();
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&data[..i]).into_owned(), &data[i + 1..]),
        None => (String::new(), data),
    };
    if let Ok(batch) = convoscope::ingest::twilio::parse(n, &query, body) {
        common::check(&batch.events);
    }
});
