//! Cursor conversations: the agent transcripts Cursor writes under `~/.cursor/projects/`, merged
//! with the hook events `opensyncd hook cursor` spools (`cursor_spool.rs`), one conversation at
//! a time.
//!
//! # Files
//!
//! Under each root (`~/.cursor`, config `cursor_dirs`), `projects/<slug>/agent-transcripts/`
//! holds `<id>/<id>.jsonl` (current builds), `<id>/subagents/<child>.jsonl` (a subagent's run,
//! parent = the directory) and, in some builds, a flat `<id>.jsonl`. The slug is globbed, never
//! computed; a conversation id must be a plain file name (letters, digits, `-`, `_`, `.`; Cursor's
//! are UUIDs). Legacy `<id>.txt` transcripts are **not read** (one log line says how many were
//! skipped): they are plain text with `[Tool call]`-style markers, Cursor's own newer builds no
//! longer load them, and no real sample exists to test a reader against. The spool is
//! `<state dir>/cursor-spool/<id>.jsonl`.
//!
//! Transcript lines are `{"role":"user"|"assistant","message":{"content":[…]}}` with `text` and
//! `tool_use{name,input}` blocks: no timestamps, usage, model, message or tool-call ids, and no
//! tool results. Other line types (`turn_ended`, …) are skipped; a line that is not a JSON
//! object is malformed (counted, skipped). A prompt is the text inside `<user_query>…
//! </user_query>` when present (Cursor wraps it with `<user_info>`/`<attached_files>` context).
//! A line that is exactly `[REDACTED]` inside an assistant text is dropped: it stands where
//! Cursor withheld something and carries nothing to show.
//!
//! # The unit
//!
//! One snapshot unit per conversation: its transcript, its subagent transcripts and its spool,
//! re-read whole when any of them changes (skipped while their sizes and mtimes are unchanged).
//! A whole read is what makes the merge simple and the output a pure function of the files:
//! `export` prints what the daemon sent, whatever the daemon saw in between.
//!
//! # Merging transcript and spool
//!
//! Every spooled event records the transcript's size when the hook ran (`transcript_bytes`).
//! So for every transcript line and event we know which came first: the event came first iff
//! its `transcript_bytes` is below the line's end offset. The reader measures transcript and
//! spool together under the spool's lock (the hook measures and appends under the same lock),
//! so whatever the daemon saw at any moment is consistent with that order. The rules:
//!
//! - **Prompts** (`beforeSubmitPrompt`, one per `generation_id`): bound to the first user line,
//!   not yet bound, written after the event, whose prompt text matches (whitespace-normalised;
//!   or, for prompts of 16+ bytes, contained in the line's text). A bound line takes the
//!   event's message id and time. Cursor runs this hook before it submits the prompt, so the
//!   line always comes after; a build that wrote it before would show that prompt twice.
//!   Unbound, the event is a message of its own (`<id>:<generation>:prompt`) — the transcript
//!   has not caught up, or is disabled.
//! - **Replies** (`afterAgentResponse`, the n-th of a generation), within the assistant lines
//!   of the generation's turn (after its prompt line, before the next user line), text
//!   matching when equal after normalisation, or when one contains the other and is at least
//!   32 bytes: a line written *before* the event covers it (the event adds nothing: the line
//!   was already sent under its own id); else the first line written *after* it is bound;
//!   else the event is a message `<id>:<generation>:reply:<n>`.
//! - So a message learnt first from the spool keeps its id and time when the transcript line
//!   arrives (the line takes them over), and a line sent before its event arrived is never
//!   re-labelled (the event yields). Nothing is sent twice in either arrival order.
//! - **Thoughts** (`afterAgentThought`) are messages `<id>:<generation>:thought:<n>` with one
//!   thinking part (`Part::thinking`: a text part marked `[thinking]`), only with
//!   `sync_thinking`.
//! - **Tool results** come only from the spool (`postToolUse`, `postToolUseFailure`,
//!   `afterShellExecution`, `afterMCPExecution`): in a turn the transcript has, each result
//!   goes after the first transcript `tool_use` of its generation without a result whose name
//!   and input match (else, for a shell command, whose `command` matches; else whose name
//!   matches); in a turn it lacks, the call and its result are parts of the generation's next
//!   reply (trailing ones, of its last reply).
//! - **Subagents**: a subagent transcript's lines are messages of the parent conversation
//!   (unless `sync_subagents` is off), marked like Claude Code's — `[subagent <child id's first
//!   8 characters>]` before their text and tool names — ids `<id>:<child>:<line>`.
//!
//! # Ids and times
//!
//! Session: the conversation id (what cursor-sync used as `externalId`). Messages: transcript
//! lines `<id>:<line index>` (0-based, counting every line of the file; spec §3.5), spool
//! messages as above. cursor-sync's message ids embed the wall clock (`Date.now()`) and cannot
//! be reproduced, so a user switching from it keeps the sessions but gets new message rows.
//!
//! `createdAt`: a bound line or spool message takes its event's time. Any other transcript line
//! is placed after the last event spooled before it was written: that event's time plus 1, 2, …
//! ms for the successive lines after the same event. A line with no such event (no hooks, or
//! before they were installed) takes the transcript's creation time (its birth time; the mtime
//! on file systems that record none, which is then not stable) plus its line index. Subagent
//! lines start at their `subagentStart` event (else their file's creation). Everything a
//! line's time depends on existed when the line did, so the time never changes once sent.
//! Session `createdAt` is the earliest time.
//!
//! Model: the spool's `model` (per generation for replies; the latest for the session).
//! Project: the spool's `workspace_roots[0]`. Tokens: none exist locally (hooks and transcripts
//! carry no usage), so session totals and cost stay absent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::Value;

use crate::model::{MessagePayload, Part, Role, SourceId, content_hash};
use crate::sources::codex::short_title;
use crate::sources::cursor_spool::{self, SpoolEvent, complete_lines, valid_conversation_id};
use crate::sources::{
    LineError, ParseOptions, Record, SessionFacts, Snapshot, Source, SourceError, Unit,
};

/// How a subagent's messages are marked (text and tool names), as Claude Code's are:
/// `[subagent <first 8 characters of its id>]`.
pub fn subagent_marker(child_id: &str) -> String {
    let short: String = child_id.chars().take(8).collect();
    format!("[subagent {short}]")
}

/// The name of the spool directory in opensyncd's state dir.
pub const SPOOL_DIR_NAME: &str = "cursor-spool";

/// Where the hook spools events: `<state dir>/cursor-spool`. `Config::roots` adds it to
/// Cursor's roots (whatever `cursor_dirs` says), which is how the source finds it.
pub fn spool_dir_in(state_dir: &Path) -> PathBuf {
    state_dir.join(SPOOL_DIR_NAME)
}

/// Cursor's roots split into Cursor dirs and the spool dir (the root named
/// [`SPOOL_DIR_NAME`]). `Config::roots` always adds one; without it there is no unit to name.
fn split_roots(roots: &[PathBuf]) -> (Vec<PathBuf>, Option<PathBuf>) {
    let is_spool = |r: &PathBuf| r.file_name().is_some_and(|n| n == SPOOL_DIR_NAME);
    let spool = roots.iter().rfind(|r| is_spool(r)).cloned();
    (
        roots.iter().filter(|r| !is_spool(r)).cloned().collect(),
        spool,
    )
}

/// Cursor as a [`Source`]. Its roots are the Cursor dirs plus the spool dir. One snapshot unit
/// per conversation: `path` = the conversation's spool file (`<spool dir>/<id>.jsonl`, which
/// may not exist: it names the conversation either way), `part` = the Cursor root its
/// transcripts are under. A unit carries both because reading needs both.
pub struct Cursor;

fn unit(spool_dir: &Path, root: &Path, id: &str) -> Unit {
    Unit::snapshot(
        SourceId::Cursor,
        spool_dir.join(format!("{id}.jsonl")),
        Some(root.display().to_string()),
    )
}

/// (Cursor root, spool dir, conversation id) of a unit.
fn unit_parts(u: &Unit) -> Option<(PathBuf, &Path, &str)> {
    let root = PathBuf::from(u.part.as_deref()?);
    let spool_dir = u.path.parent()?;
    let id = jsonl_stem(&u.path).filter(|id| valid_conversation_id(id))?;
    Some((root, spool_dir, id))
}

impl Source for Cursor {
    fn id(&self) -> SourceId {
        SourceId::Cursor
    }

    fn default_roots(&self, _env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        // Cursor has no variable that moves `~/.cursor`; `Config::roots` adds the spool dir.
        vec![home.join(".cursor")]
    }

    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        let (cursor, spool) = split_roots(roots);
        let mut dirs: Vec<PathBuf> = cursor.iter().map(|r| r.join("projects")).collect();
        dirs.extend(spool);
        dirs
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        let (cursor, Some(spool)) = split_roots(roots) else {
            return Vec::new();
        };
        scan(&cursor, &spool)
            .into_iter()
            .map(|(root, id)| unit(&spool, &root, &id))
            .collect()
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        let (cursor, Some(spool)) = split_roots(roots) else {
            return None;
        };
        let (root, id) = conversation_for_path(path, &cursor, &spool)?;
        Some(unit(&spool, &root, &id))
    }

    fn read_snapshot(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Snapshot, SourceError> {
        let Some((root, spool_dir, id)) = unit_parts(unit) else {
            return Err(SourceError::Unsupported {
                unit: unit.describe(),
                what: "a Cursor unit names its spool file and its Cursor root",
            });
        };
        let read = read_conversation(&root, spool_dir, id, state, opts)
            .map_err(|e| SourceError::Read(format!("Cursor conversation {id}: {e}")))?;
        if read.malformed > 0 {
            tracing::warn!(
                conversation = id,
                lines = read.malformed,
                "skipped Cursor transcript or spool lines that do not parse"
            );
        }
        Ok(Snapshot {
            records: read.records,
            state: read.state,
            more: false,
        })
    }

    /// Gone when neither its spool file nor any transcript of it is left.
    fn exists(&self, unit: &Unit) -> bool {
        let Some((root, _, id)) = unit_parts(unit) else {
            return false;
        };
        unit.path.exists() || !find_transcripts(&root, id).is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// Finding files

/// A conversation's transcript files under one root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TranscriptFiles {
    /// `<id>/<id>.jsonl`, else the flat `<id>.jsonl`.
    pub main: Option<PathBuf>,
    /// `<id>/subagents/*.jsonl`, sorted.
    pub subagents: Vec<PathBuf>,
}

impl TranscriptFiles {
    /// No transcript at all.
    pub fn is_empty(&self) -> bool {
        self.main.is_none() && self.subagents.is_empty()
    }
}

fn read_dir_sorted(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Every `projects/<slug>/agent-transcripts` directory under `root`.
fn transcript_dirs(root: &Path) -> Vec<PathBuf> {
    read_dir_sorted(&root.join("projects"))
        .into_iter()
        .map(|slug| slug.join("agent-transcripts"))
        .filter(|d| d.is_dir())
        .collect()
}

fn jsonl_stem(path: &Path) -> Option<&str> {
    (path.extension()? == "jsonl")
        .then(|| path.file_stem()?.to_str())
        .flatten()
}

/// A conversation's transcripts under `root` (the first slug that has any, in name order).
pub fn find_transcripts(root: &Path, id: &str) -> TranscriptFiles {
    let mut found = TranscriptFiles::default();
    if !valid_conversation_id(id) {
        return found;
    }
    for dir in transcript_dirs(root) {
        let nested = dir.join(id).join(format!("{id}.jsonl"));
        let flat = dir.join(format!("{id}.jsonl"));
        if found.main.is_none() {
            found.main = [nested, flat].into_iter().find(|p| p.is_file());
        }
        if found.subagents.is_empty() {
            found.subagents = read_dir_sorted(&dir.join(id).join("subagents"))
                .into_iter()
                .filter(|p| jsonl_stem(p).is_some_and(valid_conversation_id) && p.is_file())
                .collect();
        }
        if found.main.is_some() {
            break;
        }
    }
    found
}

/// The main transcript of a conversation under any of `roots`.
pub fn find_main_transcript(roots: &[PathBuf], id: &str) -> Option<PathBuf> {
    roots.iter().find_map(|r| find_transcripts(r, id).main)
}

/// The root a conversation belongs to: the first that holds a transcript of it, else the first
/// root (a conversation known only from the spool).
fn root_of(roots: &[PathBuf], id: &str) -> Option<PathBuf> {
    roots
        .iter()
        .find(|r| !find_transcripts(r, id).is_empty())
        .or(roots.first())
        .cloned()
}

static LEGACY_LOGGED: AtomicBool = AtomicBool::new(false);

/// Every conversation on disk: `(root, conversation id)`, sorted and unique.
pub fn scan(roots: &[PathBuf], spool_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut legacy = 0usize;
    for root in roots {
        for dir in transcript_dirs(root) {
            for entry in read_dir_sorted(&dir) {
                let name = entry
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if entry.is_dir() {
                    let has_any = entry.join(format!("{name}.jsonl")).is_file()
                        || entry.join("subagents").is_dir();
                    if valid_conversation_id(&name) && has_any {
                        out.push((root.clone(), name));
                    }
                } else if let Some(stem) = jsonl_stem(&entry) {
                    if valid_conversation_id(stem) {
                        out.push((root.clone(), stem.to_string()));
                    }
                } else if name.ends_with(".txt") {
                    legacy += 1;
                }
            }
        }
    }
    for file in read_dir_sorted(spool_dir) {
        if let Some(id) = jsonl_stem(&file).filter(|id| valid_conversation_id(id))
            && let Some(root) = root_of(roots, id)
        {
            out.push((root, id.to_string()));
        }
    }
    if legacy > 0 && !LEGACY_LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!(
            files = legacy,
            "Cursor legacy .txt agent transcripts are not read (an old format Cursor itself no \
             longer loads); only .jsonl transcripts and hook events are synced"
        );
    }
    out.sort();
    out.dedup();
    out
}

/// The conversation a changed path belongs to, if it is a transcript, a subagent transcript,
/// a conversation directory or a spool file.
pub fn conversation_for_path(
    path: &Path,
    roots: &[PathBuf],
    spool_dir: &Path,
) -> Option<(PathBuf, String)> {
    if path.parent() == Some(spool_dir) {
        let id = jsonl_stem(path).filter(|id| valid_conversation_id(id))?;
        return Some((root_of(roots, id)?, id.to_string()));
    }
    for root in roots {
        let Ok(rel) = path.strip_prefix(root.join("projects")) else {
            continue;
        };
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        let id = match parts.as_slice() {
            [_, "agent-transcripts", file] if file.ends_with(".jsonl") => {
                file.strip_suffix(".jsonl")
            }
            [_, "agent-transcripts", id] if !id.contains('.') => Some(*id),
            [_, "agent-transcripts", id, file] if *file == format!("{id}.jsonl") => Some(*id),
            [_, "agent-transcripts", id, "subagents", ..] => Some(*id),
            _ => None,
        }?;
        return valid_conversation_id(id).then(|| (root.clone(), id.to_string()));
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Transcript lines

/// What one transcript line says.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A user message.
    User {
        /// The prompt (inside `<user_query>` when present), trimmed.
        query: String,
        /// All its text, wrappers included (for matching a hook's prompt).
        full: String,
    },
    /// An assistant message.
    Assistant {
        /// Its text blocks joined, `[REDACTED]` lines dropped; `None` when nothing is left.
        text: Option<String>,
        /// Its `tool_use` blocks: (name, input).
        tools: Vec<(String, Value)>,
        /// Thinking blocks, if a build writes any.
        thinking: Vec<String>,
    },
    /// Anything else (`turn_ended`, unknown roles and types): skipped.
    Other,
}

/// Parses one complete transcript line.
pub fn parse_transcript_line(line: &[u8]) -> Result<Entry, LineError> {
    let v: Value = serde_json::from_slice(line)
        .map_err(|e| LineError::Malformed(format!("cursor transcript line: {e}")))?;
    if !v.is_object() {
        return Err(LineError::Malformed(
            "cursor transcript line: not a JSON object".into(),
        ));
    }
    let message = v.get("message");
    let role = v
        .get("role")
        .or_else(|| message.and_then(|m| m.get("role")))
        .and_then(Value::as_str);
    let content = message
        .and_then(|m| m.get("content"))
        .or_else(|| v.get("content"));
    let (Some(role), Some(content)) = (role, content) else {
        return Ok(Entry::Other);
    };
    let blocks: Vec<&Value> = match content {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut texts = Vec::new();
    let mut tools = Vec::new();
    let mut thinking = Vec::new();
    for block in blocks {
        match block {
            Value::String(s) => texts.push(s.as_str()),
            Value::Object(b) => match b.get("type").and_then(Value::as_str) {
                Some("text") => texts.extend(b.get("text").and_then(Value::as_str)),
                Some("tool_use") => {
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("tool");
                    let input = b.get("input").cloned().unwrap_or(Value::Null);
                    tools.push((name.to_string(), input));
                }
                Some("thinking" | "reasoning") => thinking.extend(
                    b.get("thinking")
                        .or_else(|| b.get("text"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                ),
                _ => {}
            },
            _ => {}
        }
    }
    match role {
        "user" => {
            let full = texts.join("\n\n");
            let query = user_query(&full).unwrap_or_else(|| full.trim().to_string());
            Ok(Entry::User { query, full })
        }
        "assistant" => {
            let text = drop_redacted(&texts.join("\n\n"));
            Ok(Entry::Assistant {
                text: Some(text).filter(|t| !t.is_empty()),
                tools,
                thinking,
            })
        }
        _ => Ok(Entry::Other),
    }
}

/// The text inside `<user_query>…</user_query>` (every such block, joined), trimmed.
fn user_query(text: &str) -> Option<String> {
    const OPEN: &str = "<user_query>";
    const CLOSE: &str = "</user_query>";
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        let after = &rest[start + OPEN.len()..];
        let end = after.find(CLOSE).unwrap_or(after.len());
        found.push(after[..end].trim());
        rest = &after[end..];
    }
    (!found.is_empty()).then(|| found.join("\n\n"))
}

/// Drops lines that are exactly `[REDACTED]`, then trims.
fn drop_redacted(text: &str) -> String {
    text.lines()
        .filter(|l| l.trim() != "[REDACTED]")
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a hook's prompt is the prompt of a transcript user line.
fn prompt_matches(prompt: &str, query: &str, full: &str) -> bool {
    let p = normalise(prompt);
    !p.is_empty() && (p == normalise(query) || (p.len() >= 16 && normalise(full).contains(&p)))
}

/// Whether a hook's reply text is the text of a transcript assistant line.
fn reply_matches(reply: &str, line_text: &str) -> bool {
    let a = normalise(&drop_redacted(reply));
    let b = normalise(line_text);
    if a.is_empty() || b.is_empty() {
        return false;
    }
    a == b || (a.len() >= 32 && b.contains(&a)) || (b.len() >= 32 && a.contains(&b))
}

/// One line of a transcript, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// 0-based line index in the file (every line counts, blank and malformed ones too).
    pub index: usize,
    /// Byte offset just past the line's newline.
    pub end: u64,
    /// What it says.
    pub entry: Entry,
}

/// A transcript read up to a complete line.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The file stem: the conversation id, or a subagent's id.
    pub id: String,
    /// Its lines that say something (user and assistant lines).
    pub lines: Vec<Line>,
    /// When the file was created (epoch ms).
    pub created_ms: i64,
    /// Lines that were not JSON objects.
    pub malformed: usize,
}

impl Transcript {
    /// Parses the complete lines of `bytes`.
    pub fn parse(id: &str, bytes: &[u8], created_ms: i64) -> Transcript {
        let mut lines = Vec::new();
        let mut malformed = 0;
        let mut end = 0u64;
        for (index, raw) in complete_lines(bytes).enumerate() {
            end += raw.len() as u64 + 1;
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_transcript_line(raw) {
                Ok(Entry::Other) => {}
                Ok(entry) => lines.push(Line { index, end, entry }),
                Err(err) => {
                    malformed += 1;
                    tracing::debug!(transcript = id, line = index, %err, "skipped a line");
                }
            }
        }
        Transcript {
            id: id.to_string(),
            lines,
            created_ms,
            malformed,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Merging

/// A message being assembled.
struct Draft {
    id: String,
    role: Role,
    text: Option<String>,
    extra: Vec<Part>,
    model: Option<String>,
    at: i64,
}

/// A transcript line that took over a spooled event's message.
struct Binding {
    id: String,
    at: i64,
}

/// What a post-tool event says: tool name, input, result.
fn tool_event(ev: &SpoolEvent) -> Option<(String, Value, Value)> {
    let p = &ev.payload;
    let json_or_text = |v: &Value| match v {
        Value::String(s) => serde_json::from_str::<Value>(s)
            .ok()
            .filter(|j| j.is_object() || j.is_array())
            .unwrap_or_else(|| v.clone()),
        other => other.clone(),
    };
    let name = || ev.text("tool_name").unwrap_or("tool").to_string();
    match ev.event.as_str() {
        "postToolUse" => Some((
            name(),
            json_or_text(&p["tool_input"]),
            json_or_text(&p["tool_output"]),
        )),
        "postToolUseFailure" => {
            let why = ["error_message", "error", "failure_type"]
                .iter()
                .find_map(|k| ev.text(k))
                .unwrap_or("failed");
            Some((
                name(),
                json_or_text(&p["tool_input"]),
                Value::String(why.to_string()),
            ))
        }
        "afterShellExecution" => Some((
            "Shell".to_string(),
            serde_json::json!({ "command": p["command"].clone() }),
            p["output"].clone(),
        )),
        "afterMCPExecution" => Some((
            name(),
            json_or_text(&p["tool_input"]),
            json_or_text(&p["result_json"]),
        )),
        _ => None,
    }
}

/// Builds every record of one conversation from its transcripts and spooled events (in spool
/// order). Pure: the same inputs always give the same records.
pub fn conversation_records(
    id: &str,
    main: Option<&Transcript>,
    subagents: &[Transcript],
    events: &[SpoolEvent],
    opts: ParseOptions,
) -> Vec<Record> {
    let mut merge = Merge::new(id, main.map_or(&[], |t| &t.lines), opts);
    for ev in events {
        merge.event(ev);
    }
    merge.attach_trailing_tools();
    let mut drafts = merge.transcript_drafts(main.map_or(0, |t| t.created_ms), events);
    if opts.sync_subagents {
        for sub in subagents {
            drafts.extend(subagent_drafts(id, sub, events, opts));
        }
    }
    drafts.extend(merge.spooled);
    if drafts.is_empty() {
        return Vec::new();
    }
    // Stable order: by time, then as built (transcript, subagents, spool).
    drafts.sort_by_key(|d| d.at);
    session_records(id, drafts, events)
}

/// The merge of one main transcript with the spool, event by event (module header, "Merging").
struct Merge<'a> {
    id: &'a str,
    lines: &'a [Line],
    opts: ParseOptions,
    /// Positions (in `lines`) of the user lines.
    users: Vec<usize>,
    /// Lines that took over a spooled message.
    bound: HashMap<usize, Binding>,
    /// Lines written before an event they stand for (the event adds nothing).
    covering: HashSet<usize>,
    /// Generation → position of its prompt line, and back.
    turn_of_gen: HashMap<String, usize>,
    gen_of_turn: HashMap<usize, String>,
    /// Generation → the latest model its events named.
    model_of_gen: HashMap<String, String>,
    /// Generations whose prompt was seen.
    prompted: HashSet<String>,
    /// Generation → replies / thoughts seen so far (the next one's index).
    replies: HashMap<String, usize>,
    thoughts: HashMap<String, usize>,
    /// (line position, tool block) → the tool's result.
    results: HashMap<(usize, usize), Value>,
    /// Messages known only from the spool.
    spooled: Vec<Draft>,
    /// Tool parts of a generation the transcript lacks, waiting for its next reply.
    pending_tools: HashMap<String, Vec<Part>>,
    /// Generation → index in `spooled` of its last reply.
    last_reply: HashMap<String, usize>,
}

impl<'a> Merge<'a> {
    fn new(id: &'a str, lines: &'a [Line], opts: ParseOptions) -> Merge<'a> {
        let users = (0..lines.len())
            .filter(|&p| matches!(lines[p].entry, Entry::User { .. }))
            .collect();
        Merge {
            id,
            lines,
            opts,
            users,
            bound: HashMap::new(),
            covering: HashSet::new(),
            turn_of_gen: HashMap::new(),
            gen_of_turn: HashMap::new(),
            model_of_gen: HashMap::new(),
            prompted: HashSet::new(),
            replies: HashMap::new(),
            thoughts: HashMap::new(),
            results: HashMap::new(),
            spooled: Vec::new(),
            pending_tools: HashMap::new(),
            last_reply: HashMap::new(),
        }
    }

    /// The assistant lines of the turn opened by the user line at `u`.
    fn turn(&self, u: usize) -> std::ops::Range<usize> {
        let end = self
            .users
            .iter()
            .copied()
            .find(|&p| p > u)
            .unwrap_or(self.lines.len());
        u + 1..end
    }

    fn free(&self, pos: usize) -> bool {
        !self.bound.contains_key(&pos) && !self.covering.contains(&pos)
    }

    /// Among `candidates`, the first free line written before the event whose entry `matches`
    /// (`Cover`), else the first such line written after it (`Bind`).
    ///
    /// Cover is tried first because it depends only on lines that existed when the event was
    /// spooled, so the decision is the same at every read that sees the event; a Bind can
    /// only appear later (when its line is written), never be taken back. Hence a message id
    /// once emitted is emitted by every later read.
    fn place(
        &self,
        candidates: impl Iterator<Item = usize> + Clone,
        spooled_at: u64,
        matches: impl Fn(&Entry) -> bool,
    ) -> Option<Placement> {
        let ok = |p: &usize| self.free(*p) && matches(&self.lines[*p].entry);
        let written_before = |p: &usize| self.lines[*p].end <= spooled_at;
        candidates
            .clone()
            .filter(written_before)
            .find(ok)
            .map(Placement::Cover)
            .or_else(|| {
                candidates
                    .filter(|p| !written_before(p))
                    .find(ok)
                    .map(Placement::Bind)
            })
    }

    fn event(&mut self, ev: &SpoolEvent) {
        let generation = ev.generation();
        if let Some(m) = ev.model() {
            self.model_of_gen.insert(generation.clone(), m.to_string());
        }
        match ev.event.as_str() {
            "beforeSubmitPrompt" => self.prompt(ev, generation),
            "afterAgentResponse" => self.reply(ev, generation),
            "afterAgentThought" => self.thought(ev, generation),
            _ => self.tool(ev, generation),
        }
    }

    fn prompt(&mut self, ev: &SpoolEvent, generation: String) {
        let Some(prompt) = ev.text("prompt") else {
            return;
        };
        if !self.prompted.insert(generation.clone()) {
            return; // the same generation's prompt again: the first counts
        }
        let matches = |e: &Entry| match e {
            Entry::User { query, full } => prompt_matches(prompt, query, full),
            _ => false,
        };
        // Only a line written after the event: Cursor runs this hook before it submits (and
        // records) the prompt. A line written before could as well be an earlier identical
        // prompt ("continue") from before the hooks were installed.
        let spooled_at = ev.transcript_bytes.unwrap_or(0);
        let line = self.users.iter().copied().find(|&p| {
            self.lines[p].end > spooled_at && self.free(p) && matches(&self.lines[p].entry)
        });
        let message_id = format!("{}:{generation}:prompt", self.id);
        let Some(line) = line else {
            self.spooled.push(Draft {
                id: message_id,
                role: Role::User,
                text: Some(prompt.trim().to_string()),
                extra: Vec::new(),
                model: None,
                at: ev.received_ms,
            });
            return;
        };
        let at = ev.received_ms;
        self.bound.insert(line, Binding { id: message_id, at });
        self.turn_of_gen.insert(generation.clone(), line);
        self.gen_of_turn.insert(line, generation);
    }

    fn reply(&mut self, ev: &SpoolEvent, generation: String) {
        let n = self.replies.entry(generation.clone()).or_default();
        let message_id = format!("{}:{generation}:reply:{n}", self.id);
        *n += 1;
        let Some(reply) = ev.text("text") else {
            return;
        };
        let turn = self.turn_of_gen.get(&generation).copied();
        if let Some(u) = turn {
            let matches = |e: &Entry| match e {
                Entry::Assistant { text: Some(t), .. } => reply_matches(reply, t),
                _ => false,
            };
            match self.place(self.turn(u), ev.transcript_bytes.unwrap_or(0), matches) {
                Some(Placement::Bind(p)) => {
                    let at = ev.received_ms;
                    self.bound.insert(p, Binding { id: message_id, at });
                    return;
                }
                Some(Placement::Cover(p)) => {
                    self.covering.insert(p);
                    return;
                }
                None => {}
            }
        }
        // Tools of a turn the transcript has go to its lines, not here.
        let extra = match turn {
            Some(_) => Vec::new(),
            None => self.pending_tools.remove(&generation).unwrap_or_default(),
        };
        self.last_reply
            .insert(generation.clone(), self.spooled.len());
        self.spooled.push(Draft {
            id: message_id,
            role: Role::Assistant,
            text: Some(reply.trim().to_string()),
            extra,
            model: self.model_of_gen.get(&generation).cloned(),
            at: ev.received_ms,
        });
    }

    fn thought(&mut self, ev: &SpoolEvent, generation: String) {
        if !self.opts.sync_thinking {
            return;
        }
        let n = self.thoughts.entry(generation.clone()).or_default();
        let message_id = format!("{}:{generation}:thought:{n}", self.id);
        *n += 1;
        if let Some(text) = ev.text("text") {
            self.spooled.push(Draft {
                id: message_id,
                role: Role::Assistant,
                text: None,
                extra: vec![Part::thinking(text.trim())],
                model: self.model_of_gen.get(&generation).cloned(),
                at: ev.received_ms,
            });
        }
    }

    fn tool(&mut self, ev: &SpoolEvent, generation: String) {
        if !self.opts.sync_tool_calls {
            return;
        }
        let Some((name, input, result)) = tool_event(ev) else {
            return;
        };
        let Some(&u) = self.turn_of_gen.get(&generation) else {
            let parts = [Part::tool_call(name, input), Part::tool_result(result)];
            self.pending_tools
                .entry(generation)
                .or_default()
                .extend(parts);
            return;
        };
        // The transcript's tool calls of this turn still without a result.
        let slots: Vec<(usize, usize, &String, &Value)> = self
            .turn(u)
            .flat_map(|p| match &self.lines[p].entry {
                Entry::Assistant { tools, .. } => tools
                    .iter()
                    .enumerate()
                    .map(|(b, (n, i))| (p, b, n, i))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .filter(|(p, b, _, _)| !self.results.contains_key(&(*p, *b)))
            .collect();
        let same_name = |n: &str| n.eq_ignore_ascii_case(&name);
        let same_command = |i: &Value| {
            ev.event == "afterShellExecution"
                && i.get("command").is_some()
                && i.get("command") == input.get("command")
        };
        let slot = slots
            .iter()
            .find(|(_, _, n, i)| same_name(n) && **i == input)
            .or_else(|| slots.iter().find(|(_, _, _, i)| same_command(i)))
            .or_else(|| slots.iter().find(|(_, _, n, _)| same_name(n)))
            .map(|(p, b, _, _)| (*p, *b));
        if let Some(slot) = slot {
            self.results.insert(slot, result);
        }
    }

    /// Tool calls after a generation's last reply belong to that reply.
    fn attach_trailing_tools(&mut self) {
        for (generation, tools) in std::mem::take(&mut self.pending_tools) {
            if let Some(&i) = self.last_reply.get(&generation) {
                self.spooled[i].extra.extend(tools);
            }
        }
    }

    /// The main transcript's messages, with their ids and times (module header, "Ids and
    /// times"). `created_ms` is the transcript's creation time.
    fn transcript_drafts(&self, created_ms: i64, events: &[SpoolEvent]) -> Vec<Draft> {
        // (transcript size when spooled, latest receive time up to that size), by size.
        let mut anchors: Vec<(u64, i64)> = events
            .iter()
            .filter_map(|e| Some((e.transcript_bytes?, e.received_ms)))
            .collect();
        anchors.sort_unstable();
        let mut latest = i64::MIN;
        for a in &mut anchors {
            latest = latest.max(a.1);
            a.1 = latest;
        }
        // The latest event spooled before a line ending at `end` was complete.
        let anchor_before = |end: u64| {
            let n = anchors.partition_point(|(size, _)| *size < end);
            (n > 0).then(|| anchors[n - 1].1)
        };
        let mut drafts = Vec::new();
        // Unbound lines after the same event: 1, 2, … ms after it, in file order.
        let mut rank: (Option<i64>, i64) = (None, 0);
        let mut generation: Option<&String> = None;
        for (pos, line) in self.lines.iter().enumerate() {
            if matches!(line.entry, Entry::User { .. }) {
                generation = self.gen_of_turn.get(&pos);
            }
            let at = match (self.bound.get(&pos), anchor_before(line.end)) {
                (Some(b), _) => b.at,
                (None, Some(event_at)) => {
                    rank = match rank {
                        (Some(a), n) if a == event_at => (Some(a), n + 1),
                        _ => (Some(event_at), 1),
                    };
                    event_at.saturating_add(rank.1)
                }
                (None, None) => created_ms.saturating_add(line.index as i64),
            };
            let message_id = match self.bound.get(&pos) {
                Some(b) => b.id.clone(),
                None => format!("{}:{}", self.id, line.index),
            };
            let model = generation.and_then(|g| self.model_of_gen.get(g)).cloned();
            let result_of = |b: usize| self.results.get(&(pos, b)).cloned();
            drafts.extend(line_draft(
                line, message_id, at, model, None, &result_of, self.opts,
            ));
        }
        drafts
    }
}

/// Where a spooled event's message lands in the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// The line was written after the event: it takes the event's id and time.
    Bind(usize),
    /// The line was written before the event: the event adds nothing.
    Cover(usize),
}

/// A subagent transcript's messages, starting at its `subagentStart` event (else its file's
/// creation).
fn subagent_drafts(
    id: &str,
    sub: &Transcript,
    events: &[SpoolEvent],
    opts: ParseOptions,
) -> Vec<Draft> {
    let start = events
        .iter()
        .find(|e| e.event == "subagentStart" && e.text("subagent_id") == Some(sub.id.as_str()))
        .map_or(sub.created_ms, |e| e.received_ms);
    let marker = subagent_marker(&sub.id);
    sub.lines
        .iter()
        .filter_map(|line| {
            let at = start.saturating_add(1 + line.index as i64);
            let message_id = format!("{id}:{}:{}", sub.id, line.index);
            line_draft(line, message_id, at, None, Some(&marker), &|_| None, opts)
        })
        .collect()
}

/// The session facts and message records of a conversation's messages (sorted by time).
fn session_records(id: &str, drafts: Vec<Draft>, events: &[SpoolEvent]) -> Vec<Record> {
    let head = SessionFacts {
        session_id: id.to_string(),
        title: drafts
            .iter()
            .find(|d| d.role == Role::User)
            .and_then(|d| d.text.as_deref())
            .map(short_title),
        project_path: events.iter().find_map(|e| {
            e.payload["workspace_roots"][0]
                .as_str()
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        }),
        model: events
            .iter()
            .rev()
            .find_map(|e| e.model().map(str::to_string)),
        at_ms: drafts.first().map(|d| d.at),
        ..SessionFacts::default()
    };
    let last_event = events.iter().map(|e| e.received_ms).max();
    let last = drafts.iter().map(|d| d.at).max().max(last_event);
    let duration = events
        .iter()
        .filter(|e| e.event == "sessionEnd")
        .filter_map(|e| e.payload["duration_ms"].as_u64())
        .max();
    let mut out = vec![Record::Session(head)];
    for d in drafts {
        let mut parts: Vec<Part> = d.text.iter().map(|t| Part::text(t.clone())).collect();
        parts.extend(d.extra);
        out.push(Record::Message(MessagePayload {
            session_external_id: id.to_string(),
            external_id: d.id,
            role: d.role,
            text_content: d.text,
            model: d.model,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: SourceId::Cursor.as_str().into(),
            parts,
            created_at: Some(d.at),
        }));
    }
    out.push(Record::Session(SessionFacts {
        session_id: id.to_string(),
        at_ms: last,
        duration_ms: duration,
        ..SessionFacts::default()
    }));
    out
}

/// The message of one transcript line (`None` when it has nothing to show).
fn line_draft(
    line: &Line,
    id: String,
    at: i64,
    model: Option<String>,
    marker: Option<&str>,
    result_of: &dyn Fn(usize) -> Option<Value>,
    opts: ParseOptions,
) -> Option<Draft> {
    let mark = |t: &str| match marker {
        Some(m) => format!("{m} {t}"),
        None => t.to_string(),
    };
    let (role, text, extra, model) = match &line.entry {
        Entry::User { query, .. } => {
            let text = Some(query.clone()).filter(|q| !q.is_empty());
            (Role::User, text, Vec::new(), None)
        }
        Entry::Assistant {
            text,
            tools,
            thinking,
        } => {
            let mut extra = Vec::new();
            if opts.sync_thinking {
                extra.extend(
                    thinking
                        .iter()
                        .filter(|t| !t.trim().is_empty())
                        .map(|t| Part::thinking(t.clone())),
                );
            }
            if opts.sync_tool_calls {
                for (b, (name, input)) in tools.iter().enumerate() {
                    extra.push(Part::tool_call(mark(name), input.clone()));
                    if let Some(result) = result_of(b) {
                        extra.push(Part::tool_result(result));
                    }
                }
            }
            (Role::Assistant, text.clone(), extra, model)
        }
        Entry::Other => return None,
    };
    let text = text.map(|t| mark(&t));
    (text.is_some() || !extra.is_empty()).then_some(Draft {
        id,
        role,
        text,
        extra,
        model,
        at,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading a conversation

/// One file as measured for a read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut {
    path: PathBuf,
    len: u64,
    mtime_ns: u128,
    created_ms: i64,
}

impl Cut {
    fn of(path: &Path) -> Option<Cut> {
        let meta = std::fs::metadata(path).ok()?;
        let ms = |t: std::time::SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64)
        };
        let modified = meta.modified().ok();
        Some(Cut {
            path: path.to_path_buf(),
            len: meta.len(),
            mtime_ns: modified
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos()),
            // Birth time where the file system records one; the mtime is the fallback (not
            // stable: it moves with every append).
            created_ms: meta.created().ok().or(modified).map_or(0, ms),
        })
    }

    /// The file's bytes up to the measured length (it may have grown since).
    fn read(&self) -> std::io::Result<Vec<u8>> {
        use std::io::Read;
        let mut bytes = Vec::with_capacity(self.len as usize);
        std::fs::File::open(&self.path)?
            .take(self.len)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }
}

/// The files of one conversation, measured together.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Measured {
    main: Option<Cut>,
    subagents: Vec<Cut>,
    spool: Option<Cut>,
}

impl Measured {
    fn fingerprint(&self) -> String {
        let mut text = String::new();
        for cut in self
            .main
            .iter()
            .chain(&self.subagents)
            .chain(self.spool.iter())
        {
            text.push_str(&format!(
                "{}\0{}\0{}\n",
                cut.path.display(),
                cut.len,
                cut.mtime_ns
            ));
        }
        format!("{:032x}", content_hash(text.as_bytes()))
    }
}

/// Measures transcript and spool together: under the spool's shared lock, so no hook can
/// measure the transcript and append between our two measurements (see the module header).
fn measure(root: &Path, spool_dir: &Path, id: &str) -> Measured {
    let spool_path = spool_dir.join(format!("{id}.jsonl"));
    let transcripts = || {
        let t = find_transcripts(root, id);
        (
            t.main.as_deref().and_then(Cut::of),
            t.subagents.iter().filter_map(|p| Cut::of(p)).collect(),
        )
    };
    for _ in 0..3 {
        match std::fs::File::open(&spool_path) {
            Ok(file) => {
                let locked = lock_shared(&file);
                let (main, subagents) = transcripts();
                let spool = Cut::of(&spool_path);
                if locked {
                    let _ = file.unlock();
                }
                return Measured {
                    main,
                    subagents,
                    spool,
                };
            }
            Err(_) => {
                // No spool: measure the transcript, then make sure none appeared meanwhile
                // (its first event may predate lines we just measured).
                let (main, subagents) = transcripts();
                if !spool_path.exists() {
                    return Measured {
                        main,
                        subagents,
                        spool: None,
                    };
                }
            }
        }
    }
    let (main, subagents) = transcripts();
    Measured {
        main,
        subagents,
        spool: Cut::of(&spool_path),
    }
}

/// Takes the shared lock, waiting at most a second (a hook holds it for one append).
fn lock_shared(file: &std::fs::File) -> bool {
    let start = Instant::now();
    loop {
        match file.try_lock_shared() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < Duration::from_secs(1) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return false,
        }
    }
}

/// What one read of a conversation produced.
#[derive(Debug)]
pub struct ConversationRead {
    /// The conversation's records (empty when nothing changed since `state`).
    pub records: Vec<Record>,
    /// State to persist once the records are acknowledged (a fingerprint of the files).
    pub state: Value,
    /// Lines that did not parse (transcripts and spool).
    pub malformed: usize,
}

/// Reads one conversation whole, unless its files are unchanged since `state`.
pub fn read_conversation(
    root: &Path,
    spool_dir: &Path,
    id: &str,
    state: Option<&Value>,
    opts: ParseOptions,
) -> std::io::Result<ConversationRead> {
    let measured = measure(root, spool_dir, id);
    let fingerprint = measured.fingerprint();
    let state_value = serde_json::json!({ "fingerprint": fingerprint });
    if state
        .and_then(|s| s.get("fingerprint"))
        .and_then(Value::as_str)
        == Some(&fingerprint)
    {
        return Ok(ConversationRead {
            records: Vec::new(),
            state: state_value,
            malformed: 0,
        });
    }
    let read = |cut: &Cut, stem: &str| -> std::io::Result<Transcript> {
        match cut.read() {
            Ok(bytes) => Ok(Transcript::parse(stem, &bytes, cut.created_ms)),
            // Deleted between measuring and reading: nothing of it this time.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Transcript::parse(stem, b"", cut.created_ms))
            }
            Err(e) => Err(e),
        }
    };
    let main = measured.main.as_ref().map(|c| read(c, id)).transpose()?;
    let mut subagents = Vec::new();
    for cut in &measured.subagents {
        let stem = jsonl_stem(&cut.path).unwrap_or_default().to_string();
        subagents.push(read(cut, &stem)?);
    }
    let (events, bad_spool) = match &measured.spool {
        Some(cut) => match cut.read() {
            Ok(bytes) => cursor_spool::parse_spool(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(e),
        },
        None => (Vec::new(), 0),
    };
    let malformed = bad_spool
        + main.as_ref().map_or(0, |t| t.malformed)
        + subagents.iter().map(|t| t.malformed).sum::<usize>();
    Ok(ConversationRead {
        records: conversation_records(id, main.as_ref(), &subagents, &events, opts),
        state: state_value,
        malformed,
    })
}
