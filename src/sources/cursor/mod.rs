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

//!
//! This file holds the [`Source`] impl and the unit's naming; one submodule a job: `files`
//! finding a conversation's transcripts and the spool, `transcript` what one transcript line
//! says, `merge` the merge of transcript lines and spooled events into records, `read` reading
//! a conversation's files consistently under the spool's lock.

mod files;
mod merge;
mod read;
mod transcript;

pub use files::{
    TranscriptFiles, conversation_for_path, find_main_transcript, find_transcripts, scan,
};
pub use merge::conversation_records;
pub use read::{ConversationRead, read_conversation};
use std::path::{Path, PathBuf};
pub use transcript::{Entry, Line, Transcript, parse_transcript_line};

use serde_json::Value;

use crate::model::SourceId;
use crate::sources::cursor_spool::valid_conversation_id;
use crate::sources::{ParseOptions, Snapshot, Source, SourceError, Unit};
use files::jsonl_stem;

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
