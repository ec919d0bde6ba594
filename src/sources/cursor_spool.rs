//! The Cursor hook spool's format: what one line holds, how a line is built (by
//! `cursor_hook`, which does the writing) and how the reader parses it.
//!
//! The spool is one append-only JSONL file per conversation, `<state dir>/cursor-spool/
//! <conversation id>.jsonl` (0700 directory, 0600 files, like the rest of the state dir). A line
//! is
//!
//! ```json
//! {"v":1,"received_ms":1767225600123,"event":"beforeSubmitPrompt","transcript_bytes":4096,
//!  "payload":{"conversation_id":"…","generation_id":"…","model":"…","prompt":"…",…}}
//! ```
//!
//! - `received_ms`: when the hook ran (epoch ms), taken while holding the file's lock, so the
//!   times of one spool never go backwards;
//! - `event`: the event name the hook was called with (else the payload's `hook_event_name`);
//! - `transcript_bytes`: the size of the conversation's agent transcript when the hook ran (0
//!   when it did not exist yet; `null` when it could not be measured). This is what lets the
//!   reader tell, for every transcript line, whether the event was spooled before or after the
//!   line was written (see `cursor/merge.rs`);
//! - `payload`: Cursor's stdin payload as given, minus `user_email` and file contents
//!   (`content`), with any string longer than 256 KiB cut (a marker says so).
//!
//! Each line is written with one `write` on an `O_APPEND` descriptor while holding an exclusive
//! `flock` on the spool file, so concurrent hooks never interleave. The reader takes the shared
//! lock only to measure the transcript and the spool together (two `stat`s), which makes its
//! view consistent with the order the hook recorded.

use serde_json::{Map, Value};

use crate::sources::LineError;

/// Version of the spool line format.
pub const SPOOL_VERSION: u64 = 1;

/// Longest string kept in a spooled payload (tool outputs can be whole files).
pub const MAX_FIELD_BYTES: usize = 256 * 1024;

/// Payload keys never written to the spool: not needed, and private or bulky.
const DROPPED_KEYS: [&str; 2] = ["user_email", "content"];

/// A conversation id usable as a file name: Cursor's are UUIDs; anything with a path
/// separator, a leading dot or over 128 bytes is refused.
pub fn valid_conversation_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The conversation a payload belongs to: `conversation_id`, else `session_id` (sessionStart
/// and sessionEnd carry both, equal).
pub fn conversation_of(payload: &Map<String, Value>) -> Option<String> {
    ["conversation_id", "session_id"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .filter(|id| valid_conversation_id(id))
        .map(str::to_string)
}

/// Cuts every string longer than [`MAX_FIELD_BYTES`] (at a character boundary), with a marker.
fn cap_strings(v: &mut Value) {
    match v {
        Value::String(s) if s.len() > MAX_FIELD_BYTES => {
            let mut cut = MAX_FIELD_BYTES;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            let dropped = s.len() - cut;
            s.truncate(cut);
            s.push_str(&format!("\n[cut by opensyncd: {dropped} more bytes]"));
        }
        Value::Array(items) => items.iter_mut().for_each(cap_strings),
        Value::Object(map) => map.values_mut().for_each(cap_strings),
        _ => {}
    }
}

/// One spool line (newline included): Cursor's `payload` without the dropped keys and with
/// long strings cut, wrapped with when it was received, the event and the transcript size.
pub fn spool_line(
    received_ms: i64,
    event: &str,
    transcript_bytes: Option<u64>,
    mut payload: Map<String, Value>,
) -> Vec<u8> {
    for key in DROPPED_KEYS {
        payload.remove(key);
    }
    let mut payload = Value::Object(payload);
    cap_strings(&mut payload);
    let line = serde_json::json!({
        "v": SPOOL_VERSION,
        "received_ms": received_ms,
        "event": event,
        "transcript_bytes": transcript_bytes,
        "payload": payload,
    });
    // Serialising a Value cannot fail.
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// One spooled hook event.
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolEvent {
    /// 0-based line index in the spool file.
    pub line: usize,
    /// When the hook ran (epoch ms).
    pub received_ms: i64,
    /// The event name.
    pub event: String,
    /// Transcript size when the hook ran (`None`: it could not be measured).
    pub transcript_bytes: Option<u64>,
    /// Cursor's payload.
    pub payload: Value,
}

impl SpoolEvent {
    /// A string field of the payload, when present and not blank.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.payload
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    /// The turn this event belongs to: Cursor's `generation_id`, else (a payload without one)
    /// the spool line, which is stable because the spool is only appended to.
    pub fn generation(&self) -> String {
        self.text("generation_id")
            .map(str::to_string)
            .unwrap_or_else(|| format!("hook{}", self.line))
    }

    /// The model in use (`model`, else the newer `model_id`).
    pub fn model(&self) -> Option<&str> {
        self.text("model").or_else(|| self.text("model_id"))
    }
}

/// Parses one complete spool line. Lines written by a newer format version are read for the
/// fields this version knows.
pub fn parse_spool_line(line_no: usize, line: &[u8]) -> Result<SpoolEvent, LineError> {
    let mut v: Value = serde_json::from_slice(line)
        .map_err(|e| LineError::Malformed(format!("spool line {}: {e}", line_no + 1)))?;
    let bad = |what: &str| LineError::Malformed(format!("spool line {}: {what}", line_no + 1));
    let received_ms = v
        .get("received_ms")
        .and_then(Value::as_i64)
        .ok_or_else(|| bad("no received_ms"))?;
    let event = v
        .get("event")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no event"))?
        .to_string();
    let payload = match v.get_mut("payload").map(Value::take) {
        Some(p @ Value::Object(_)) => p,
        _ => return Err(bad("no payload object")),
    };
    Ok(SpoolEvent {
        line: line_no,
        received_ms,
        event,
        transcript_bytes: v.get("transcript_bytes").and_then(Value::as_u64),
        payload,
    })
}

/// Parses the complete lines of a spool's bytes; returns the events and the number of lines
/// that did not parse (skipped). A trailing fragment without a newline is not read.
pub fn parse_spool(bytes: &[u8]) -> (Vec<SpoolEvent>, usize) {
    let mut events = Vec::new();
    let mut bad = 0;
    for (i, line) in complete_lines(bytes).enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_spool_line(i, line) {
            Ok(e) => events.push(e),
            Err(_) => bad += 1,
        }
    }
    (events, bad)
}

/// The complete (newline-terminated) lines of `bytes`, without their newlines. A trailing
/// fragment without a newline (a line still being written) is left out.
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = memchr::memrchr(b'\n', bytes).map_or(0, |i| i + 1);
    bytes[..end]
        .split_inclusive(|b| *b == b'\n')
        .map(|line| &line[..line.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_lines_leave_the_tail() {
        let lines: Vec<&[u8]> = complete_lines(b"a\nb\n\nc").collect();
        assert_eq!(lines, vec![&b"a"[..], b"b", b""]);
        assert_eq!(complete_lines(b"no newline").count(), 0);
        assert_eq!(complete_lines(b"").count(), 0);
        assert_eq!(complete_lines(b"x\n").collect::<Vec<_>>(), vec![&b"x"[..]]);
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary() {
        let mut v = serde_json::json!({"tool_output": "é".repeat(MAX_FIELD_BYTES), "n": 1});
        cap_strings(&mut v);
        let s = v["tool_output"].as_str().unwrap();
        assert!(s.len() < MAX_FIELD_BYTES + 64);
        assert!(s.contains("[cut by opensyncd:"));
        assert_eq!(v["n"], 1);
    }

    #[test]
    fn conversation_ids_must_be_safe_file_names() {
        assert!(valid_conversation_id(
            "0b6f0a57-1c2d-4e3f-8a9b-000000000001"
        ));
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(129), "a b"] {
            assert!(!valid_conversation_id(bad), "{bad}");
        }
    }

    #[test]
    fn spool_lines_parse_or_fail_cleanly() {
        let ok = br#"{"v":1,"received_ms":5,"event":"stop","transcript_bytes":null,"payload":{"conversation_id":"c"}}"#;
        let e = parse_spool_line(3, ok).unwrap();
        assert_eq!((e.line, e.received_ms, e.transcript_bytes), (3, 5, None));
        assert_eq!(e.generation(), "hook3");
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"received_ms":1,"event":"x"}"#,
            br#"{"received_ms":"1","event":"x","payload":{}}"#,
        ] {
            assert!(parse_spool_line(0, bad).is_err());
        }
    }
}
