//! Cursor's hooks, opensyncd's side: what `opensyncd hook cursor <event>` answers on stdout, and
//! the spool it appends every event to, which the Cursor source reads like any other log (so
//! nothing is lost while the daemon is down).
//!
//! The spool is one append-only JSONL file per conversation, `<state dir>/cursor/<conversation
//! id>.jsonl` (0700 directory, 0600 files, like the rest of the state dir). A line is
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
//!   line was written (see `cursor.rs`, "Merging");
//! - `payload`: Cursor's stdin payload as given, minus `user_email` and file contents
//!   (`content`), with any string longer than 256 KiB cut (a marker says so).
//!
//! Each line is written with one `write` on an `O_APPEND` descriptor while holding an exclusive
//! `flock` on the spool file, so concurrent hooks never interleave. The reader takes the shared
//! lock only to measure the transcript and the spool together (two `stat`s), which makes its
//! view consistent with the order the hook recorded.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::sources::LineError;

/// Version of the spool line format.
pub const SPOOL_VERSION: u64 = 1;

/// Longest string kept in a spooled payload (tool outputs can be whole files).
pub const MAX_FIELD_BYTES: usize = 256 * 1024;

/// Payload keys never written to the spool: not needed, and private or bulky.
const DROPPED_KEYS: [&str; 2] = ["user_email", "content"];

/// How long the hook waits for the spool's lock before writing without it (a reader holds it
/// for two `stat`s; only a stuck process could hold it longer).
const LOCK_WAIT: Duration = Duration::from_millis(50);

/// The answer on stdout for a hook event, exactly as Cursor expects it (newline-terminated).
///
/// - `beforeSubmitPrompt`: `{"continue":true}` (let the prompt through);
/// - every other `before*` event, `preToolUse` and `subagentStart`: `{"permission":"allow"}`;
/// - anything else, including unknown events: `{}` — never a `followup_message`, which would
///   make Cursor submit a new prompt on `stop`.
pub fn answer(event: &str) -> &'static str {
    match event {
        "beforeSubmitPrompt" => "{\"continue\":true}\n",
        "preToolUse" | "subagentStart" => "{\"permission\":\"allow\"}\n",
        e if e.starts_with("before") => "{\"permission\":\"allow\"}\n",
        _ => "{}\n",
    }
}

/// Why an event was not spooled. The hook still answers and exits 0; the CLI prints this on
/// stderr (Cursor shows it in its hook output).
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The payload is not a JSON object.
    #[error("the hook payload is not a JSON object ({0}); event not recorded")]
    NotJson(String),
    /// The payload has no usable conversation id.
    #[error("the hook payload has no usable conversation_id; event not recorded")]
    NoConversation,
    /// Writing the spool failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The spool file (or directory).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What handling one hook call did.
#[derive(Debug)]
pub struct HookOutcome {
    /// The bytes to print on stdout.
    pub answer: &'static str,
    /// The spool file the event was appended to, or why it was not.
    pub spooled: Result<PathBuf, SpoolError>,
}

/// Handles one `opensyncd hook cursor [<event>]` call: the answer for the event, and the event
/// appended to `<spool_dir>/<conversation_id>.jsonl`. The transcript whose size is recorded is
/// the one the reader will merge with: the conversation's transcript under `cursor_roots`, else
/// the payload's `transcript_path`. Never panics, whatever `stdin` holds.
pub fn handle_hook(
    spool_dir: &Path,
    cursor_roots: &[PathBuf],
    event_arg: Option<&str>,
    stdin: &[u8],
) -> HookOutcome {
    let payload: Result<Map<String, Value>, SpoolError> =
        match serde_json::from_slice::<Value>(stdin) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(SpoolError::NotJson(format!("a JSON {}", kind_of(&other)))),
            Err(e) => Err(SpoolError::NotJson(e.to_string())),
        };
    let event = event_arg
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .or_else(|| {
            payload.as_ref().ok().and_then(|p| {
                p.get("hook_event_name")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
        })
        .unwrap_or_default();
    let answer = answer(&event);
    let spooled = payload.and_then(|p| append_event(spool_dir, cursor_roots, &event, p));
    HookOutcome { answer, spooled }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

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
fn conversation_of(payload: &Map<String, Value>) -> Option<String> {
    ["conversation_id", "session_id"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(Value::as_str))
        .filter(|id| valid_conversation_id(id))
        .map(str::to_string)
}

fn append_event(
    spool_dir: &Path,
    cursor_roots: &[PathBuf],
    event: &str,
    mut payload: Map<String, Value>,
) -> Result<PathBuf, SpoolError> {
    let conversation = conversation_of(&payload).ok_or(SpoolError::NoConversation)?;
    for key in DROPPED_KEYS {
        payload.remove(key);
    }
    let mut payload = Value::Object(payload);
    cap_strings(&mut payload);
    // The transcript the reader will merge with: found the way the reader finds it, else the
    // path Cursor gave (it may not exist yet: size 0).
    let transcript = crate::sources::cursor::find_main_transcript(cursor_roots, &conversation)
        .or_else(|| {
            payload["transcript_path"]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SpoolError::Io { path, source }
    };
    crate::private_fs::ensure_private_dir(spool_dir).map_err(io(spool_dir))?;
    let path = spool_dir.join(format!("{conversation}.jsonl"));
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .read(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    let locked = lock_exclusive(&file);
    // Measured under the lock: a reader holding the shared lock sees either this event and a
    // transcript at least this long, or neither.
    let received_ms = crate::engine::now_ms();
    let transcript_bytes = match transcript.as_deref().map(std::fs::metadata) {
        None => Some(0),
        Some(Ok(meta)) => Some(meta.len()),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Some(Err(_)) => None,
    };
    let line = serde_json::json!({
        "v": SPOOL_VERSION,
        "received_ms": received_ms,
        "event": event,
        "transcript_bytes": transcript_bytes,
        "payload": payload,
    });
    let mut bytes = Vec::with_capacity(512);
    // A torn earlier write (disk full) must not swallow this line: start on a fresh line.
    if !ends_with_newline(&file) {
        bytes.push(b'\n');
    }
    // Serialising a Value cannot fail.
    bytes.extend(serde_json::to_vec(&line).unwrap_or_default());
    bytes.push(b'\n');
    let written = (&file).write_all(&bytes).map_err(io(&path));
    if locked {
        let _ = file.unlock();
    }
    written.map(|()| path)
}

/// Takes the exclusive lock, waiting at most [`LOCK_WAIT`]; false = writing without it.
fn lock_exclusive(file: &std::fs::File) -> bool {
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
}

fn ends_with_newline(file: &std::fs::File) -> bool {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return true;
    }
    let mut last = [0u8; 1];
    match file.read_at(&mut last, len - 1) {
        Ok(1) => last[0] == b'\n',
        _ => true,
    }
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
    fn answers_are_exact_per_event_family() {
        assert_eq!(answer("beforeSubmitPrompt"), "{\"continue\":true}\n");
        for e in [
            "beforeShellExecution",
            "beforeMCPExecution",
            "beforeReadFile",
            "beforeTabFileRead",
            "preToolUse",
            "subagentStart",
        ] {
            assert_eq!(answer(e), "{\"permission\":\"allow\"}\n", "{e}");
        }
        for e in [
            "stop",
            "subagentStop",
            "afterAgentResponse",
            "afterAgentThought",
            "afterFileEdit",
            "afterShellExecution",
            "afterMCPExecution",
            "postToolUse",
            "postToolUseFailure",
            "sessionStart",
            "sessionEnd",
            "preCompact",
            "",
            "somethingNew",
        ] {
            assert_eq!(answer(e), "{}\n", "{e}");
        }
    }

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
