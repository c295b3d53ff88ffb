//! The frame and segment codec: a segment's bytes as the log's module docs ([`super`]) lay
//! them out, written by [`FrameEncoder`] and [`encode_frame`], read back by [`read_segment`]
//! and [`decode_segment`].

use std::fs::File;
use std::io::Read;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::buffer::Buffer;
use arrow::ipc::convert::try_schema_from_ipc_buffer;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message};

use super::{MAGIC, MAGIC_JSON, MAX_FRAME_BYTES};
use crate::error::{Error, Result};
use crate::event::Event;

const FRAME_HEADER: usize = 8;

/// Appends one frame: payload length and CRC32 (little-endian u32 each), then the payload.
/// Refuses a payload over [`MAX_FRAME_BYTES`]: [`decode_segment`] would take it for a torn
/// frame and cut it, losing what was acknowledged.
pub fn encode_frame(buf: &mut Vec<u8>, payload: &[u8]) -> Result<()> {
    let start = begin_frame(buf);
    buf.extend_from_slice(payload);
    end_frame(buf, start)
}

/// Starts a frame at the end of `buf`: room for its header, filled in by [`end_frame`].
fn begin_frame(buf: &mut Vec<u8>) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the length and checksum of the frame begun at `start`, or takes the frame back
/// out of `buf` when it is over [`MAX_FRAME_BYTES`].
fn end_frame(buf: &mut Vec<u8>, start: usize) -> Result<()> {
    let len = buf.len() - start - FRAME_HEADER;
    if len > MAX_FRAME_BYTES {
        buf.truncate(start);
        return Err(Error::Invalid(format!(
            "request too large for one log frame ({len} bytes of events, limit {MAX_FRAME_BYTES})"
        )));
    }
    let crc = crc32fast::hash(&buf[start + FRAME_HEADER..]);
    // Fits: MAX_FRAME_BYTES is below u32::MAX.
    buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// An upper bound on a frame's bytes besides its events': the frame header and the record
/// batch message's metadata (~2.4 KB for the events table's 30 columns).
pub(super) const FRAME_OVERHEAD_BYTES: usize = 4096;

/// An upper bound on what one event adds to a frame: its strings plus offsets, validity bits
/// and fixed-width values of every column (~150 bytes). Used for the log's budget and for
/// cutting a group into frames before anything is encoded.
pub(super) fn frame_bytes_of(e: &Event) -> usize {
    const FIXED: usize = 160;
    let opt = |o: &Option<String>| o.as_ref().map_or(0, String::len);
    FIXED
        + e.event_id.len()
        + e.event_type.len()
        + e.source.len()
        + [
            &e.account_id,
            &e.phone_number_id,
            &e.message_id,
            &e.reply_to,
            &e.conversation_id,
            &e.contact_key,
            &e.country,
            &e.campaign,
            &e.template,
            &e.locale,
            &e.category,
            &e.experiment,
            &e.variant,
            &e.content_type,
            &e.interaction_id,
            &e.interaction_title,
            &e.error_title,
            &e.currency,
            &e.actor,
            &e.agent_key,
            &e.queue,
            &e.attributes,
        ]
        .into_iter()
        .map(opt)
        .sum::<usize>()
}

/// Encodes log frames as Arrow IPC messages: the events table's schema once per segment, then
/// one record batch per frame. Arrow instead of JSON because the flusher needs Arrow anyway:
/// encoding events as JSON and decoding them back into structs was ~20% of `serve`'s CPU
/// under webhook load.
pub struct FrameEncoder {
    generator: IpcDataGenerator,
    options: IpcWriteOptions,
    context: IpcWriteContext,
    /// Stays empty: the events table has no dictionary columns.
    dictionaries: DictionaryTracker,
    header: Vec<u8>,
}

impl FrameEncoder {
    /// An encoder for the events table.
    pub fn new() -> Result<Self> {
        // 8-byte alignment (the format's minimum): Arrow's default of 64 pads each of the
        // ~90 buffers of a batch by up to 63 bytes.
        let options = IpcWriteOptions::try_new(8, false, arrow::ipc::MetadataVersion::V5)?;
        let generator = IpcDataGenerator::default();
        let mut dictionaries = DictionaryTracker::new(false);
        let schema =
            generator.schema_to_bytes_with_dictionary_tracker(&crate::event::schema(), &mut dictionaries, &options);
        let mut payload = Vec::new();
        write_message(&mut payload, schema, &options)?;
        let mut header = MAGIC.to_vec();
        encode_frame(&mut header, &payload)?;
        Ok(FrameEncoder { generator, options, context: IpcWriteContext::default(), dictionaries, header })
    }

    /// The first bytes of a segment: the magic and the schema frame.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Appends one frame holding `batch` (of the events table's schema) to `buf`. The message
    /// is written in place and its length and checksum filled in after, rather than written to
    /// a payload of its own and copied: frames are up to 4 MiB, and every copy is memory the
    /// allocator holds for a while after it is freed.
    pub fn append_batch(&mut self, buf: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
        let (dictionaries, message) =
            self.generator.encode(batch, &mut self.dictionaries, &self.options, &mut self.context)?;
        buf.reserve(FRAME_HEADER + message.ipc_message.len() + message.arrow_data.len() + 16);
        let start = begin_frame(buf);
        let written = dictionaries
            .into_iter()
            .try_for_each(|d| write_message(&mut *buf, d, &self.options).map(drop))
            .and_then(|()| write_message(&mut *buf, message, &self.options).map(drop));
        if let Err(e) = written {
            buf.truncate(start);
            return Err(e.into());
        }
        end_frame(buf, start)
    }
}

/// A decoded segment.
#[derive(Debug, Default)]
pub struct Segment {
    /// The events, one batch per frame, in the events table's schema.
    pub batches: Vec<RecordBatch>,
    /// Offset of the first bad frame, when the tail is corrupt.
    pub cut_at: Option<u64>,
    pub cut_reason: Option<String>,
}

impl Segment {
    /// How many events the segment holds.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads every good frame of a segment. A bad header is an error; a bad frame ends the read
/// (everything after a torn write is suspect) and is reported in `cut_at`.
pub fn read_segment(path: &Path) -> Result<Segment> {
    let mut f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut data = Vec::new();
    f.read_to_end(&mut data).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    decode_segment(data).map_err(|m| Error::Invalid(format!("{}: {m}", path.display())))
}

/// What a segment's frames hold.
enum Frames {
    Arrow(StreamDecoder),
    Json,
}

/// Decodes segment bytes (see [`read_segment`]). The batches of an Arrow segment share
/// `data`'s memory where it is aligned.
pub fn decode_segment(data: Vec<u8>) -> std::result::Result<Segment, String> {
    let data = Buffer::from_vec(data);
    if data.len() < MAGIC.len() {
        // A crash between creating the file and writing its header leaves it empty.
        return Ok(Segment { cut_at: Some(0), cut_reason: Some("no header".into()), ..Default::default() });
    }
    let mut frames = match &data[..MAGIC.len()] {
        m if m == MAGIC => Frames::Arrow(StreamDecoder::new()),
        m if m == MAGIC_JSON => Frames::Json,
        _ => return Err("not a convoscope write-ahead log segment".into()),
    };
    let mut seg = Segment::default();
    let mut pos = MAGIC.len();
    while pos < data.len() {
        let cut = |seg: &mut Segment, why: &str| {
            seg.cut_at = Some(pos as u64);
            seg.cut_reason = Some(why.to_string());
        };
        if data.len() - pos < FRAME_HEADER {
            cut(&mut seg, "torn frame header");
            break;
        }
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if len > MAX_FRAME_BYTES || data.len() - pos - FRAME_HEADER < len {
            cut(&mut seg, "torn frame");
            break;
        }
        let payload = data.slice_with_length(pos + FRAME_HEADER, len);
        if crc32fast::hash(payload.as_slice()) != crc {
            cut(&mut seg, "checksum mismatch");
            break;
        }
        let first = pos == MAGIC.len();
        let decoded = match &mut frames {
            Frames::Arrow(decoder) => {
                if first {
                    // A segment of another schema (a later build's) is not cut: cutting would
                    // delete its events. The caller sets it aside whole.
                    match try_schema_from_ipc_buffer(payload.as_slice()) {
                        Ok(s) if s.fields() != crate::event::schema().fields() => {
                            return Err("its events table schema differs from this build's".into());
                        }
                        Ok(_) => arrow_frame(decoder, payload, true),
                        Err(e) => Err(e.to_string()),
                    }
                } else {
                    arrow_frame(decoder, payload, false)
                }
            }
            Frames::Json => json_frame(payload.as_slice()),
        };
        match decoded {
            Ok(Some(batch)) => seg.batches.push(batch),
            Ok(None) => {}
            Err(e) => {
                // Nothing of an undecodable frame is kept.
                cut(&mut seg, &format!("undecodable frame: {e}"));
                break;
            }
        }
        pos += FRAME_HEADER + len;
    }
    Ok(seg)
}

/// Decodes one Arrow frame: the schema (the segment's first frame, already checked) or one
/// record batch.
fn arrow_frame(
    decoder: &mut StreamDecoder,
    mut payload: Buffer,
    first: bool,
) -> std::result::Result<Option<RecordBatch>, String> {
    // Arrow's IPC reader panics on some malformed messages (a buffer reaching past the body,
    // found by fuzzing). Bytes that passed the checksum are malformed only through a bug, but
    // even then one segment must not take the collector down at startup.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut batch = None;
        while !payload.is_empty() {
            if let Some(b) = decoder.decode(&mut payload)?
                && batch.replace(b).is_some()
            {
                return Err(arrow::error::ArrowError::IpcError("two batches in one frame".into()));
            }
        }
        // A batch frame must end where a message ends, or its last message would run into the
        // next frame. (Not checkable after the schema: the decoder takes a message without a
        // body as complete only when the next bytes arrive.)
        if !first {
            decoder.finish()?;
        }
        Ok(batch)
    }))
    .map_err(|_| "the Arrow decoder panicked".to_string())?
    .map_err(|e| e.to_string())?;
    match (first, decoded.is_some()) {
        (true, false) | (false, true) => Ok(decoded),
        _ => Err(if first { "first frame is not the schema" } else { "frame holds no record batch" }.into()),
    }
}

/// Decodes one JSON frame (segments of earlier builds) into a batch.
fn json_frame(payload: &[u8]) -> std::result::Result<Option<RecordBatch>, String> {
    let events: Vec<Event> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    crate::event::to_record_batch(&events).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;

    use super::*;
    use crate::wal::tests::ev;

    fn segment_of(events: &[Event]) -> Vec<u8> {
        let mut enc = FrameEncoder::new().unwrap();
        let mut data = enc.header().to_vec();
        enc.append_batch(&mut data, &crate::event::to_record_batch(events).unwrap()).unwrap();
        data
    }

    #[test]
    fn decode_rejects_flipped_bits() {
        let mut data = segment_of(&[ev("a")]);
        assert_eq!(decode_segment(data.clone()).unwrap().rows(), 1);
        let n = data.len();
        data[n - 5] ^= 0x40;
        let seg = decode_segment(data).unwrap();
        assert!(seg.batches.is_empty());
        assert_eq!(seg.cut_reason.as_deref(), Some("checksum mismatch"));
    }

    #[test]
    fn frames_hold_every_column_of_the_events() {
        let mut a = ev("a");
        a.attributes = Some(r#"{"k":"\u00e9\"x"}"#.into());
        a.error_code = Some(131_049);
        a.billable = Some(false);
        a.cost_micros = Some(-5);
        a.csat_score = Some(4);
        a.contact_key = Some("c".into());
        let events = [a, ev("b")];
        let seg = decode_segment(segment_of(&events)).unwrap();
        assert_eq!(seg.cut_reason, None);
        assert_eq!(seg.batches, [crate::event::to_record_batch(&events).unwrap()]);
    }

    #[test]
    fn segments_of_earlier_builds_still_decode() {
        // An earlier build wrote each request as a JSON array of events.
        let events = [ev("a"), ev("b")];
        let mut data = MAGIC_JSON.to_vec();
        encode_frame(&mut data, &serde_json::to_vec(&events[..1]).unwrap()).unwrap();
        encode_frame(&mut data, &serde_json::to_vec(&events[1..]).unwrap()).unwrap();
        let seg = decode_segment(data).unwrap();
        assert_eq!((seg.rows(), seg.cut_at), (2, None));
        let ids: Vec<&str> = seg.batches.iter().map(|b| b.column(0).as_string::<i32>().value(0)).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn frames_the_reader_would_cut_are_refused() {
        let mut buf = Vec::new();
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert!(encode_frame(&mut buf, &big).is_err());
        assert!(buf.is_empty());
        encode_frame(&mut buf, &big[..MAX_FRAME_BYTES]).unwrap();
        assert_eq!(buf.len(), FRAME_HEADER + MAX_FRAME_BYTES);
    }
}
