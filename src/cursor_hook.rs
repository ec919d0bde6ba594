//! `opensyncd hook cursor <event>`: what Cursor's hooks get back on stdout, and the event
//! appended to the conversation's spool file (format: `sources::cursor_spool`), which the Cursor
//! source reads like any other log — so nothing is lost while the daemon is down.
//!
//! Cursor waits for a hook's answer before it goes on, so this does no network I/O and needs no
//! daemon: a directory, an open, a lock, a `stat` and one `write`. Whatever goes wrong (a payload
//! that is not JSON, an unwritable spool), the caller still prints the answer and exits 0.

use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::sources::cursor::find_main_transcript;
use crate::sources::cursor_spool::{conversation_of, spool_line};

/// How long the hook waits for the spool's lock before writing without it. A reader holds it
/// for two `stat`s and another hook for one `stat` and one `write`, but on a loaded machine
/// either can be descheduled while holding it; only a stuck process holds it for a second.
const LOCK_WAIT: Duration = Duration::from_secs(1);

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

fn append_event(
    spool_dir: &Path,
    cursor_roots: &[PathBuf],
    event: &str,
    payload: Map<String, Value>,
) -> Result<PathBuf, SpoolError> {
    let conversation = conversation_of(&payload).ok_or(SpoolError::NoConversation)?;
    // The transcript the reader will merge with: found the way the reader finds it, else the
    // path Cursor gave (it may not exist yet: size 0).
    let transcript = find_main_transcript(cursor_roots, &conversation).or_else(|| {
        payload
            .get("transcript_path")
            .and_then(Value::as_str)
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
    let received_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let transcript_bytes = match transcript.as_deref().map(std::fs::metadata) {
        None => Some(0),
        Some(Ok(meta)) => Some(meta.len()),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Some(Err(_)) => None,
    };
    let mut bytes = Vec::with_capacity(512);
    // A torn earlier write (disk full) must not swallow this line: start on a fresh line.
    if !ends_with_newline(&file) {
        bytes.push(b'\n');
    }
    bytes.extend(spool_line(received_ms, event, transcript_bytes, payload));
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
    fn a_torn_last_line_is_not_glued_to_the_next_event() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(&spool).unwrap();
        let file = spool.join("c1.jsonl");
        std::fs::write(&file, b"{\"v\":1,\"received_ms\":17").unwrap();
        let out = handle_hook(&spool, &[], Some("stop"), br#"{"conversation_id":"c1"}"#);
        assert_eq!(out.answer, "{}\n");
        assert_eq!(out.spooled.unwrap(), file);
        let text = std::fs::read_to_string(&file).unwrap();
        let (events, bad) = crate::sources::cursor_spool::parse_spool(text.as_bytes());
        assert_eq!((events.len(), bad), (1, 1), "{text}");
        assert_eq!(events[0].event, "stop");
    }
}
