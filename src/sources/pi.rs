//! pi coding-agent sessions (`<agent dir>/sessions/<cwd-dir>/<time>_<uuid>.jsonl`) turned into
//! records, incrementally.
//!
//! Files: `$PI_CODING_AGENT_DIR` (a leading `~` expanded) or `~/.pi/agent` is the agent dir;
//! its sessions are `sessions/*/*.jsonl`, plus `*.jsonl` directly in the agent dir (where pi
//! v0.30.0 misplaced them; they are found by scans, only `sessions/` is watched). A file is a pi
//! session only if its first line is `{"type":"session","id":<non-empty string>,…}` (pi's own
//! `isValidSessionFile`).
//!
//! Formats: v1 (no entry ids; the header may carry `provider`/`modelId` and `branchedFrom`), v2
//! (`id`/`parentId` tree) and v3 (message role `hookMessage` renamed `custom`). Nothing here
//! depends on entry ids, so all three read alike. pi rewrites a v1/v2 file as v3 when it opens
//! it (the whole file; v1 entries get new random ids, the header gains `version`): the reader
//! sees a changed head and reads the file again from offset 0 with a fresh parser (the fold
//! replaces the file's earlier contribution), and since every id and usage key below is derived
//! from the order of entries — which the rewrite keeps — the second reading produces the same
//! ids and keys as the first: no message is sent twice, no token counted twice.
//!
//! Entries, and what becomes of them:
//! - `message` with role `user`: a prompt (text blocks joined, images as `[image: <mime>]`); the
//!   first one with text titles the session (pi's `firstMessage`), unless it is a bare slash
//!   command such as `/mode`, which early pi versions logged as a prompt;
//! - role `assistant`: text → text, `toolCall` → a `tool-call` part, `thinking` → a marked text
//!   part (`Part::thinking`) only with `sync_thinking` (never when `redacted`); an empty failed
//!   turn shows its
//!   `errorMessage`. Its `usage` is a usage fact (below);
//! - role `toolResult`: a `tool` message with one `tool-result` part, as the Claude and Codex
//!   sources send results. pi-opensync attaches results to the assistant message instead, but
//!   pi writes them as later entries: attaching would make every assistant message that calls
//!   tools change after it was sent, once per result, and since the server ignores an update
//!   within 5 s of a message's `createdAt` each such update would have to wait out that window.
//!   A separate message is final when pi writes it and is sent once;
//! - role `bashExecution` (the user's `!cmd` / `!!cmd`): a `user` message `!cmd` with the output
//!   as a `tool-result` part (the exit code or cancellation appended as pi shows it);
//! - role `custom` / `hookMessage` and the `custom_message` entry: extension-injected context,
//!   not conversation (pi-opensync skips them too): not sent;
//! - `session_info.name`: the session title (the latest wins, as `getSessionName`);
//!   `model_change` and the v1 header's `provider`/`modelId`: model and provider, as do the
//!   assistant messages (latest wins);
//! - `compaction`, `branch_summary`, `thinking_level_change`, `label`, `custom` and unknown
//!   types: bookkeeping; only their time counts;
//! - a repeated header, and entries repeated before the first assistant message (pi issue
//!   #1672 wrote a branched file's header and entries twice): skipped.
//!
//! Ids: the session is the header `id`. pi-opensync-plugin's message ids are
//! `{sid}-user-N` / `{sid}-assistant-N`, N the 1-based count of user and assistant messages
//! along the current branch; here N counts them in **file order**. For a linear session (every
//! v1 file, and v2/v3 files without `/tree` branching) the two orders are the same, so a user
//! switching from the plugin gets no duplicates. They differ only for a file with in-file
//! branches: the plugin's count along the current branch would give an abandoned branch's
//! message and a new branch's message the same id (the server keeps one, in the wrong place),
//! while the file-order count is unique and never changes as entries are appended. Messages the
//! plugin does not send get `{sid}-tool-N.k` (tool results) and `{sid}-bash-N.k` (`!cmd`): k is
//! the 1-based count of such entries since the N-th user/assistant message. No id depends on
//! pi's entry ids, wall-clock time or the reading process.
//!
//! Tokens: each assistant message's `usage` (`input` uncached, `cacheRead`, `cacheWrite`,
//! `output` incl. reasoning), keyed `assistant-N` (`Max`, so a re-read or a moved file counts
//! once), with pi's own `usage.cost.total` as the cost and the message's `model` for pricing
//! when that cost is 0 or absent.
//!
//! Forks: `/fork` (`createBranchedSession`) and `--fork` (`forkFrom`) write a new file whose
//! header names the old one (`parentSession`; v1 `branchedFrom`) and copy earlier entries into
//! it with their original timestamps and usage. Entries of such a file dated before its header
//! were copied: their usage is billed where it was first written, so it is skipped here when
//! the parent file still exists (checked once, looking at the recorded path and, for a moved
//! agent dir, at the same name beside this file and in a sibling cwd dir; the answer is kept in
//! the parser state so re-reading gives the same result). When the parent is gone this file is
//! the only record of that usage, and it is counted. Copied entries are still sent as the
//! fork's messages (the fork shows its whole conversation, as pi-opensync sends it), but do not
//! widen the fork's time span: a fork starts at its header. Its title is prefixed
//! `[Fork::<first 8 of the parent id>] ` as pi-opensync does.
//!
//! Why one file of ~800 lines of code: it is one format's reader — three file versions, the
//! id scheme that survives pi's v1→v3 rewrite, and the fork/branch rules — and these parts
//! share the entry types and the parser state; split, each piece would need the others to be
//! read.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{MessagePayload, Part, Role, SourceId, Tokens, parse_timestamp_ms};
use crate::sources::codex::short_title;
use crate::sources::json::{Field, Payload, TextOrList, json_object, parse_object};
use crate::sources::{
    LineError, LineParser, ParseOptions, Record, SessionFacts, Source, Unit, UsageFact, UsageMerge,
};

/// The longest first line read when deciding whether a file is a pi session. A header is a
/// few hundred bytes (its longest field is the parent path).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// pi as a [`Source`].
pub struct Pi;

impl Source for Pi {
    fn id(&self) -> SourceId {
        SourceId::Pi
    }

    /// `$PI_CODING_AGENT_DIR` (leading `~` expanded, as pi's `getAgentDir` does) when set and
    /// not blank, else `~/.pi/agent`.
    fn default_roots(&self, env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        match env("PI_CODING_AGENT_DIR").filter(|d| !d.trim().is_empty()) {
            Some(dir) => vec![super::expand_tilde(dir.trim(), home)],
            None => vec![home.join(".pi").join("agent")],
        }
    }

    /// `<agent dir>/sessions` only. Watching the agent dir itself (recursively, as roots are
    /// watched) would also cover pi's installed packages (`git/`, `extensions/`, with their
    /// `node_modules`): thousands of watches for files that are never sessions. The misplaced
    /// root-level files are found by the startup scan and the periodic rescans (pi ≥ 0.30.2
    /// moves them into `sessions/` itself).
    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        roots.iter().map(|r| r.join("sessions")).collect()
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        session_files(roots)
            .into_iter()
            .map(|path| Unit::lines(SourceId::Pi, path))
            .collect()
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        is_pi_path(path, roots).then(|| Unit::lines(SourceId::Pi, path.to_path_buf()))
    }

    fn line_parser(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Box<dyn LineParser>, LineError> {
        Ok(Box::new(PiParser::new(&unit.path, state, opts)?))
    }
}

/// Every pi session file under the agent dirs `roots`, sorted. Missing or unreadable dirs are
/// skipped (the next scan retries).
fn session_files(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for root in roots {
        files.extend(jsonl_in(root));
        let Ok(dirs) = std::fs::read_dir(root.join("sessions")) else {
            continue;
        };
        for dir in dirs.flatten() {
            // Symlinked cwd dirs are not followed, as `walk_files` does elsewhere.
            if dir.file_type().is_ok_and(|t| t.is_dir()) {
                files.extend(jsonl_in(&dir.path()));
            }
        }
    }
    files.retain(|f| is_session_file(f));
    files.sort();
    files.dedup();
    files
}

fn jsonl_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| has_jsonl_extension(p))
        .collect()
}

fn has_jsonl_extension(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// Whether `path` sits where pi keeps sessions under one of `roots`
/// (`<root>/sessions/<dir>/<name>.jsonl` or `<root>/<name>.jsonl`) and is a pi session file.
fn is_pi_path(path: &Path, roots: &[PathBuf]) -> bool {
    if !has_jsonl_extension(path) {
        return false;
    }
    let placed = roots.iter().any(|root| {
        let Ok(rest) = path.strip_prefix(root) else {
            return false;
        };
        let parts: Vec<_> = rest.components().collect();
        match parts.as_slice() {
            [_file] => true,
            [sessions, _dir, _file] => sessions.as_os_str() == "sessions",
            _ => false,
        }
    });
    placed && is_session_file(path)
}

/// Whether the file's first line is a pi session header. A file whose first line is not
/// complete yet is not (yet) a session.
fn is_session_file(path: &Path) -> bool {
    first_line(path).is_some_and(|line| {
        let text = String::from_utf8_lossy(&line);
        parse_entry(&text).is_ok_and(|v| header_id(&v).is_some())
    })
}

fn first_line(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.take(MAX_HEADER_BYTES as u64)
        .read_to_end(&mut buf)
        .ok()?;
    // The first complete (newline-terminated) line that is not blank: pi skips blank lines
    // before the header too (`content.trim().split("\n")`).
    let mut start = 0;
    while let Some(len) = memchr::memchr(b'\n', &buf[start..]) {
        let line = &buf[start..start + len];
        if !line.iter().all(u8::is_ascii_whitespace) {
            return Some(line.to_vec());
        }
        start += len + 1;
    }
    None
}

/// The session id of a header line, if `v` is one.
fn header_id<'v>(v: &'v Entry<'_>) -> Option<&'v str> {
    (v.kind.as_str() == Some("session"))
        .then(|| v.id.non_blank())
        .flatten()
}

/// Parses a line's text as an entry (a JSON object). The caller makes the text: invalid UTF-8
/// is read as pi reads it (Node replaces it with U+FFFD) — pi keeps such a line when it
/// rewrites the file, so skipping it here would shift every later message's position, and
/// with it the ids — and valid UTF-8 (almost every line) is borrowed, checked once.
fn parse_entry(text: &str) -> Result<Entry<'_>, LineError> {
    parse_object(text).map_err(LineError::Malformed)
}

json_object! {
    /// A line of a session file: the header, or an entry. Only the fields read are built.
    struct Entry<'a> {
        kind: Field<'a> = "type",
        id: Field<'a> = "id",
        timestamp: Field<'a> = "timestamp",
        parent_session: Field<'a> = "parentSession",
        branched_from: Field<'a> = "branchedFrom",
        cwd: Field<'a> = "cwd",
        model_id: Field<'a> = "modelId",
        provider: Field<'a> = "provider",
        message: Message<'a> = "message",
        name: Field<'a> = "name",
    }
}

json_object! {
    /// A `message` entry's message (any role).
    struct Message<'a> {
        role: Field<'a> = "role",
        timestamp: Field<'a> = "timestamp",
        content: TextOrList<'a, Block<'a>> = "content",
        model: Field<'a> = "model",
        provider: Field<'a> = "provider",
        usage: Usage<'a> = "usage",
        error_message: Field<'a> = "errorMessage",
        command: Field<'a> = "command",
        exclude_from_context: Field<'a> = "excludeFromContext",
        output: Field<'a> = "output",
        cancelled: Field<'a> = "cancelled",
        exit_code: Field<'a> = "exitCode",
    }
}

json_object! {
    /// A content block: text, image, tool call, thinking.
    struct Block<'a> {
        kind: Field<'a> = "type",
        text: Field<'a> = "text",
        mime_type: Field<'a> = "mimeType",
        name: Field<'a> = "name",
        arguments: Payload = "arguments",
        thinking: Field<'a> = "thinking",
        redacted: Field<'a> = "redacted",
    }
}

json_object! {
    /// An assistant message's `usage`.
    struct Usage<'a> {
        input: Field<'a> = "input",
        output: Field<'a> = "output",
        cache_read: Field<'a> = "cacheRead",
        cache_write: Field<'a> = "cacheWrite",
        cost: Cost<'a> = "cost",
    }
}

json_object! {
    /// `usage.cost`.
    struct Cost<'a> {
        total: Field<'a> = "total",
    }
}

/// What the first line said about the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
enum FileKind {
    /// No line read yet.
    #[default]
    Unknown,
    /// The first line is not a session header: the file is not a pi session.
    NotSession,
    /// A pi session.
    Session(Header),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Header {
    /// The session id.
    id: String,
    /// The header's own time (epoch ms).
    at_ms: Option<i64>,
    /// The file this one was forked from (`parentSession`, v1 `branchedFrom`).
    parent: Option<String>,
}

/// Everything carried between lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
struct State {
    kind: FileKind,
    /// User and assistant messages seen so far (the N of the ids).
    counted: u64,
    /// Other message entries since the last counted one (the k of the ids).
    since_counted: u64,
    /// The title candidate was given.
    titled: bool,
    /// Whether the parent file exists (forks only; checked once).
    parent_exists: Option<bool>,
    /// An assistant message was seen (after it, no entry repeats: see `early_ids`).
    #[serde(default)]
    seen_assistant: bool,
    /// Entry ids seen before the first assistant message.
    #[serde(default)]
    early_ids: Vec<String>,
}

/// Incremental parser of one pi session file.
pub struct PiParser {
    state: State,
    opts: ParseOptions,
    path: PathBuf,
}

impl PiParser {
    /// Creates a parser for `path`, resuming from `state`.
    pub fn new(
        path: &Path,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<PiParser, LineError> {
        let state = match state {
            Some(v) => super::resume_state(v, "pi")?,
            None => State::default(),
        };
        Ok(PiParser {
            state,
            opts,
            path: path.to_path_buf(),
        })
    }

    fn header(&self) -> Option<&Header> {
        match &self.state.kind {
            FileKind::Session(h) => Some(h),
            _ => None,
        }
    }

    fn facts(&self, sid: &str) -> SessionFacts {
        SessionFacts {
            session_id: sid.to_string(),
            ..SessionFacts::default()
        }
    }

    /// `[Fork::<8>] ` for a fork whose parent file name carries pi's `<time>_<uuid>` form.
    fn title_prefix(&self) -> String {
        let Some(parent) = self.header().and_then(|h| h.parent.as_deref()) else {
            return String::new();
        };
        let name = parent.rsplit(['/', '\\']).next().unwrap_or(parent);
        let stem = name.strip_suffix(".jsonl").unwrap_or(name);
        match stem.split_once('_') {
            Some((_, id)) if id.len() >= 8 && id.is_char_boundary(8) => {
                format!("[Fork::{}] ", &id[..8])
            }
            _ => String::new(),
        }
    }

    fn first_line(&mut self, v: &Entry<'_>, out: &mut Vec<Record>) -> Result<(), LineError> {
        let Some(id) = header_id(v) else {
            self.state.kind = FileKind::NotSession;
            return Err(LineError::Malformed(
                "the first line is not a pi session header; the file is ignored".into(),
            ));
        };
        let at_ms = v.timestamp.as_str().and_then(parse_timestamp_ms);
        let parent = [&v.parent_session, &v.branched_from]
            .into_iter()
            .find_map(Field::non_blank)
            .map(str::to_string);
        self.state.kind = FileKind::Session(Header {
            id: id.to_string(),
            at_ms,
            parent,
        });
        let mut facts = self.facts(id);
        facts.at_ms = at_ms;
        facts.project_path = v.cwd.non_blank().map(str::to_string);
        // v1 headers name the model the session started with.
        facts.model = str_field(&v.model_id);
        facts.provider = str_field(&v.provider);
        out.push(Record::Session(facts));
        Ok(())
    }

    /// Whether an entry stamped `at_ms` was copied from the (still existing) parent file.
    fn is_copied(&mut self, at_ms: Option<i64>) -> bool {
        let Some(header) = self.header() else {
            return false;
        };
        let (Some(parent), Some(header_ms), Some(at)) =
            (header.parent.clone(), header.at_ms, at_ms)
        else {
            return false;
        };
        if at >= header_ms {
            return false;
        }
        if self.state.parent_exists.is_none() {
            self.state.parent_exists = Some(parent_file_exists(&self.path, &parent));
        }
        self.state.parent_exists == Some(true)
    }

    /// Whether this entry repeats one already read. pi before 2f64df1e (issue #1672) could
    /// write a branched file's header and entries a second time when the branch had no
    /// assistant message yet: the repeats carry the same entry ids, and all of them come before
    /// the file's first assistant message, so only ids seen until then need remembering.
    fn is_repeat(&mut self, v: &Entry<'_>) -> bool {
        let kind = v.kind.as_str();
        if self.state.seen_assistant || kind == Some("session") {
            return false;
        }
        if kind == Some("message") && v.message.role.as_str() == Some("assistant") {
            self.state.seen_assistant = true;
            self.state.early_ids = Vec::new();
            return false;
        }
        let Some(id) = v.id.as_str() else {
            return false; // v1 entries have no ids (and predate the bug)
        };
        if self.state.early_ids.iter().any(|seen| seen == id) {
            return true;
        }
        self.state.early_ids.push(id.to_string());
        false
    }

    fn entry(&mut self, sid: &str, v: &Entry<'_>, out: &mut Vec<Record>) {
        if self.is_repeat(v) {
            return;
        }
        let entry_ms = v.timestamp.as_str().and_then(parse_timestamp_ms);
        let copied = self.is_copied(entry_ms);
        let mut facts = self.facts(sid);
        if !copied {
            facts.at_ms = entry_ms;
        }
        match v.kind.as_str().unwrap_or_default() {
            "message" => {
                let msg = &v.message;
                if !msg.is_object {
                    out.push(Record::Session(facts));
                    return;
                }
                let created = epoch_ms(&msg.timestamp).or(entry_ms);
                match msg.role.as_str().unwrap_or_default() {
                    "user" => {
                        self.count_conversational();
                        let text = user_text(&msg.content);
                        if !self.state.titled && !text.trim().is_empty() && !is_bare_command(&text)
                        {
                            self.state.titled = true;
                            facts.title =
                                Some(format!("{}{}", self.title_prefix(), short_title(&text)));
                        }
                        out.push(Record::Session(facts));
                        let id = format!("{sid}-user-{}", self.state.counted);
                        self.push_time(sid, created, copied, out);
                        out.extend(message(sid, id, Role::User, text, vec![], None, created));
                    }
                    "assistant" => {
                        self.count_conversational();
                        let model = str_field(&msg.model);
                        facts.model = model.clone();
                        facts.provider = str_field(&msg.provider);
                        out.push(Record::Session(facts));
                        self.push_time(sid, created, copied, out);
                        let n = self.state.counted;
                        let (text, parts) = self.assistant_content(msg);
                        out.extend(message(
                            sid,
                            format!("{sid}-assistant-{n}"),
                            Role::Assistant,
                            text,
                            parts,
                            model.clone(),
                            created,
                        ));
                        if !copied && msg.usage.is_object {
                            out.push(Record::Usage(usage_fact(sid, n, &msg.usage, model)));
                        }
                    }
                    "toolResult" => {
                        out.push(Record::Session(facts));
                        let id = self.uncounted_id(sid, "tool");
                        self.push_time(sid, created, copied, out);
                        if self.opts.sync_tool_calls {
                            let result = blocks_text(&msg.content);
                            out.extend(message(
                                sid,
                                id,
                                Role::Tool,
                                String::new(),
                                vec![Part::tool_result(Value::String(result))],
                                None,
                                created,
                            ));
                        }
                    }
                    "bashExecution" => {
                        out.push(Record::Session(facts));
                        let id = self.uncounted_id(sid, "bash");
                        self.push_time(sid, created, copied, out);
                        let (text, parts) = self.bash(msg);
                        out.extend(message(sid, id, Role::User, text, parts, None, created));
                    }
                    _ => {
                        // `custom` / `hookMessage` (extension context) and future roles: they
                        // still take a position, so a later id never depends on them being sent.
                        self.state.since_counted += 1;
                        out.push(Record::Session(facts));
                    }
                }
            }
            "model_change" => {
                facts.model = str_field(&v.model_id);
                facts.provider = str_field(&v.provider);
                out.push(Record::Session(facts));
            }
            "session_info" => {
                if let Some(name) = v.name.as_str().map(str::trim).filter(|n| !n.is_empty()) {
                    facts.title_override = Some(format!("{}{name}", self.title_prefix()));
                }
                out.push(Record::Session(facts));
            }
            "session" => {
                // A repeated header (pi before 2f64df1e could write two when forking from a
                // pre-assistant entry): the first one stands.
            }
            _ => out.push(Record::Session(facts)),
        }
    }

    fn count_conversational(&mut self) {
        self.state.counted += 1;
        self.state.since_counted = 0;
    }

    fn uncounted_id(&mut self, sid: &str, kind: &str) -> String {
        self.state.since_counted += 1;
        format!(
            "{sid}-{kind}-{}.{}",
            self.state.counted, self.state.since_counted
        )
    }

    /// A message's own creation time widens the span too (it precedes the entry's append
    /// time), unless the entry was copied from a parent file.
    fn push_time(&self, sid: &str, created: Option<i64>, copied: bool, out: &mut Vec<Record>) {
        if !copied && created.is_some() {
            let mut facts = self.facts(sid);
            facts.at_ms = created;
            out.push(Record::Session(facts));
        }
    }

    fn assistant_content(&self, msg: &Message<'_>) -> (String, Vec<Part>) {
        let mut text = Vec::new();
        let mut parts = Vec::new();
        let blocks = match &msg.content {
            TextOrList::List(blocks) => blocks.as_slice(),
            _ => &[],
        };
        for block in blocks {
            match block.kind.as_str().unwrap_or_default() {
                "text" => text.extend(block.text.as_str()),
                "toolCall" if self.opts.sync_tool_calls => parts.push(Part::tool_call(
                    block.name.as_str().unwrap_or("tool"),
                    block.arguments.clone().or_null(),
                )),
                "thinking" if self.opts.sync_thinking => {
                    let redacted = block.redacted.is_true();
                    if let Some(t) = block
                        .thinking
                        .as_str()
                        .filter(|t| !redacted && !t.trim().is_empty())
                    {
                        parts.push(Part::thinking(t));
                    }
                }
                _ => {}
            }
        }
        let mut text = text.join("\n");
        if text.trim().is_empty() && parts.is_empty() {
            // A failed or aborted turn with nothing to show says why.
            text = str_field(&msg.error_message).unwrap_or_default();
        }
        (text, parts)
    }

    fn bash(&self, msg: &Message<'_>) -> (String, Vec<Part>) {
        let command = msg.command.as_str().unwrap_or_default();
        let bang = if msg.exclude_from_context.is_true() {
            "!!"
        } else {
            "!"
        };
        let text = format!("{bang}{command}");
        if !self.opts.sync_tool_calls {
            return (text, vec![]);
        }
        // What pi shows (and gives the model) for the run: `bashExecutionToText`.
        let mut output = msg.output.as_str().unwrap_or_default().to_string();
        if msg.cancelled.is_true() {
            output.push_str("\n\n(command cancelled)");
        } else if let Some(code) = msg.exit_code.as_i64().filter(|c| *c != 0) {
            output.push_str(&format!("\n\nCommand exited with code {code}"));
        }
        (text, vec![Part::tool_result(Value::String(output))])
    }
}

impl LineParser for PiParser {
    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Record>) -> Result<(), LineError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(()); // pi skips blank lines; so does the engine
        }
        if self.state.kind == FileKind::NotSession {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let v = parse_entry(&text)?;
        let sid = match &self.state.kind {
            FileKind::Session(h) => h.id.clone(),
            _ => return self.first_line(&v, out),
        };
        self.entry(&sid, &v, out);
        Ok(())
    }

    fn save_state(&self) -> Value {
        serde_json::to_value(&self.state).unwrap_or(Value::Null)
    }
}

/// Whether the fork parent `recorded` (an absolute path on the machine that wrote it) exists:
/// at that path, or — for an agent dir moved or restored elsewhere — under the same name beside
/// `child` or in a sibling cwd dir of `child`'s.
fn parent_file_exists(child: &Path, recorded: &str) -> bool {
    if Path::new(recorded).is_file() {
        return true;
    }
    let mut names = recorded.rsplit(['/', '\\']).filter(|s| !s.is_empty());
    let (Some(file), dir) = (names.next(), names.next()) else {
        return false;
    };
    let Some(here) = child.parent() else {
        return false;
    };
    if here.join(file).is_file() {
        return true;
    }
    match (dir, here.parent()) {
        (Some(dir), Some(sessions)) => sessions.join(dir).join(file).is_file(),
        _ => false,
    }
}

fn message(
    sid: &str,
    external_id: String,
    role: Role,
    text: String,
    parts: Vec<Part>,
    model: Option<String>,
    created_at: Option<i64>,
) -> Option<Record> {
    let text = Some(text).filter(|t| !t.trim().is_empty());
    let mut all = Vec::new();
    if let Some(t) = &text {
        all.push(Part::text(t.clone()));
    }
    all.extend(parts);
    if all.is_empty() {
        return None;
    }
    Some(Record::Message(MessagePayload {
        session_external_id: sid.to_string(),
        external_id,
        role,
        text_content: text,
        model,
        prompt_tokens: None,
        completion_tokens: None,
        duration_ms: None,
        source: SourceId::Pi.as_str().into(),
        parts: all,
        created_at,
    }))
}

fn usage_fact(sid: &str, n: u64, usage: &Usage<'_>, model: Option<String>) -> UsageFact {
    let cost = usage
        .cost
        .total
        .as_f64()
        .filter(|c| c.is_finite() && *c > 0.0);
    UsageFact {
        session_id: sid.to_string(),
        key: format!("assistant-{n}"),
        merge: UsageMerge::Max,
        model,
        tokens: Tokens {
            input: token_count(&usage.input),
            cache_read: token_count(&usage.cache_read),
            cache_write: token_count(&usage.cache_write),
            cache_write_1h: 0,
            output: token_count(&usage.output),
            // pi's `output` already includes reasoning and does not say how much of it.
            reasoning: 0,
        },
        cost,
    }
}

/// A token count: a non-negative integer (a float is truncated; anything else is 0).
fn token_count(v: &Field<'_>) -> u64 {
    v.as_u64().unwrap_or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            // `as` saturates at u64::MAX for huge floats.
            .map_or(0, |f| f as u64)
    })
}

/// An epoch-milliseconds number (pi's `message.timestamp`).
fn epoch_ms(v: &Field<'_>) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

fn str_field(v: &Field<'_>) -> Option<String> {
    v.non_blank().map(str::to_string)
}

/// A slash command without arguments (`/mode`): early pi versions logged such input as a user
/// message. It names no topic, so it does not title the session (Claude's slash-command markup
/// is skipped for titles too); an absolute path (`/home/x/a.rs is broken`) still does.
fn is_bare_command(text: &str) -> bool {
    let t = text.trim();
    t.starts_with('/') && !t.contains(char::is_whitespace) && t[1..].find('/').is_none()
}

/// A user message's text: a string, or its text blocks joined, images as markers.
fn user_text(content: &TextOrList<'_, Block<'_>>) -> String {
    blocks_text(content)
}

/// Text and image blocks as text (images as `[image: <mime>]`, never their base64 data).
fn blocks_text(content: &TextOrList<'_, Block<'_>>) -> String {
    match content {
        TextOrList::Text(s) => s.to_string(),
        TextOrList::List(blocks) => blocks
            .iter()
            .filter_map(|b| match b.kind.as_str() {
                Some("text") => b.text.as_str().map(Cow::Borrowed),
                Some("image") => Some(Cow::Owned(format!(
                    "[image: {}]",
                    b.mime_type.as_str().unwrap_or("image")
                ))),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n"),
        TextOrList::Other => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &Path, lines: &[Value]) -> Vec<Record> {
        let mut p = PiParser::new(path, None, ParseOptions::default()).unwrap();
        let mut out = Vec::new();
        for l in lines {
            p.parse_line(l.to_string().as_bytes(), &mut out).unwrap();
        }
        out
    }

    fn ids(records: &[Record]) -> Vec<String> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Message(m) => Some(m.external_id.clone()),
                _ => None,
            })
            .collect()
    }

    fn usage(records: &[Record]) -> Vec<&UsageFact> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Usage(u) => Some(u),
                _ => None,
            })
            .collect()
    }

    fn entry(ts: &str, message: Value) -> Value {
        serde_json::json!({"type": "message", "timestamp": ts, "message": message})
    }

    fn assistant(text: &str, input: u64, cost: f64) -> Value {
        serde_json::json!({"role": "assistant", "content": [{"type": "text", "text": text}],
            "provider": "anthropic", "model": "claude-sonnet-4-5",
            "usage": {"input": input, "output": 5, "cacheRead": 100, "cacheWrite": 10,
                      "cost": {"total": cost}}})
    }

    #[test]
    fn only_the_sessions_dir_is_watched() {
        let roots = [PathBuf::from("/h/.pi/agent")];
        assert_eq!(
            Pi.watch_dirs(&roots),
            vec![PathBuf::from("/h/.pi/agent/sessions")]
        );
    }

    #[test]
    fn roots_follow_pi_coding_agent_dir_with_tilde_expansion() {
        let home = Path::new("/home/u");
        let none = |_: &str| None;
        assert_eq!(Pi.default_roots(&none, home), vec![home.join(".pi/agent")]);
        let set = |k: &str| (k == "PI_CODING_AGENT_DIR").then(|| "~/alt/agent".to_string());
        assert_eq!(Pi.default_roots(&set, home), vec![home.join("alt/agent")]);
        let blank = |_: &str| Some("  ".to_string());
        assert_eq!(Pi.default_roots(&blank, home), vec![home.join(".pi/agent")]);
    }

    #[test]
    fn only_pi_session_files_in_pi_places_are_units() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("agent");
        let header = "{\"type\":\"session\",\"id\":\"s1\",\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"cwd\":\"/x\"}\n";
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
            p
        };
        let nested = put("sessions/--x--/a.jsonl", header);
        let misplaced = put("b.jsonl", header);
        let too_deep = put("sessions/--x--/sub/c.jsonl", header);
        let flat_in_sessions = put("sessions/d.jsonl", header);
        let not_session = put("sessions/--x--/e.jsonl", "{\"type\":\"note\"}\n");
        let unfinished = put("sessions/--x--/f.jsonl", "{\"type\":\"session\",\"id\":\"s");
        let empty_id = put(
            "sessions/--x--/g.jsonl",
            "{\"type\":\"session\",\"id\":\"\"}\n",
        );
        let roots = vec![root.clone()];
        assert_eq!(
            session_files(&roots),
            vec![misplaced.clone(), nested.clone()]
        );
        assert_eq!(
            Pi.scan(&roots),
            vec![
                Unit::lines(SourceId::Pi, misplaced.clone()),
                Unit::lines(SourceId::Pi, nested.clone())
            ]
        );
        assert!(is_pi_path(&nested, &roots));
        assert!(is_pi_path(&misplaced, &roots));
        for p in [
            &too_deep,
            &flat_in_sessions,
            &not_session,
            &unfinished,
            &empty_id,
        ] {
            assert!(!is_pi_path(p, &roots), "{}", p.display());
        }
        assert!(!is_pi_path(&nested, &[dir.path().join("other")]));
    }

    #[test]
    fn ids_count_user_and_assistant_messages_in_file_order() {
        let path = Path::new("/x/sessions/--p--/t_s1.jsonl");
        let records = parse(
            path,
            &[
                serde_json::json!({"type": "session", "id": "s1", "timestamp": "2026-01-01T00:00:00Z", "cwd": "/p"}),
                entry(
                    "2026-01-01T00:00:01Z",
                    serde_json::json!({"role": "user", "content": "hi", "timestamp": 1}),
                ),
                entry("2026-01-01T00:00:02Z", assistant("hello", 1, 0.5)),
                entry(
                    "2026-01-01T00:00:03Z",
                    serde_json::json!({"role": "toolResult", "content": [{"type": "text", "text": "ok"}], "timestamp": 3}),
                ),
                entry(
                    "2026-01-01T00:00:04Z",
                    serde_json::json!({"role": "custom", "content": "ext", "display": true, "timestamp": 4}),
                ),
                entry(
                    "2026-01-01T00:00:05Z",
                    serde_json::json!({"role": "bashExecution", "command": "ls", "output": "a", "exitCode": 0, "timestamp": 5}),
                ),
                entry(
                    "2026-01-01T00:00:06Z",
                    serde_json::json!({"role": "user", "content": [{"type": "text", "text": "more"}], "timestamp": 6}),
                ),
            ],
        );
        assert_eq!(
            ids(&records),
            [
                "s1-user-1",
                "s1-assistant-2",
                "s1-tool-2.1",
                "s1-bash-2.3",
                "s1-user-3"
            ]
        );
        let u = usage(&records);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].key, "assistant-2");
        assert_eq!(u[0].cost, Some(0.5));
        assert_eq!(u[0].model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(
            (
                u[0].tokens.input,
                u[0].tokens.cache_read,
                u[0].tokens.cache_write,
                u[0].tokens.output
            ),
            (1, 100, 10, 5)
        );
    }

    #[test]
    fn a_zero_cost_leaves_pricing_to_the_table() {
        let path = Path::new("/x/t_s1.jsonl");
        let records = parse(
            path,
            &[
                serde_json::json!({"type": "session", "id": "s1", "timestamp": "2026-01-01T00:00:00Z"}),
                entry("2026-01-01T00:00:02Z", assistant("free?", 7, 0.0)),
            ],
        );
        assert_eq!(usage(&records)[0].cost, None);
    }

    #[test]
    fn entries_copied_into_a_fork_are_billed_to_an_existing_parent_only() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("sessions/--p--");
        std::fs::create_dir_all(&project).unwrap();
        let child = project.join("2026-01-02T00-00-00-000Z_c1.jsonl");
        let lines = [
            serde_json::json!({"type": "session", "version": 3, "id": "c1", "timestamp": "2026-01-02T00:00:00Z",
                "parentSession": "/elsewhere/sessions/--p--/2026-01-01T00-00-00-000Z_abcdef0123.jsonl"}),
            entry("2026-01-01T00:00:02Z", assistant("copied", 1, 0.5)),
            entry("2026-01-02T00:00:02Z", assistant("own", 2, 0.25)),
        ];
        // The parent is not there: this file is the only record of the copied turn.
        let records = parse(&child, &lines);
        assert_eq!(usage(&records).len(), 2);
        // The parent exists beside the child (the agent dir was moved since it was recorded).
        std::fs::write(
            project.join("2026-01-01T00-00-00-000Z_abcdef0123.jsonl"),
            "",
        )
        .unwrap();
        let records = parse(&child, &lines);
        let u = usage(&records);
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].key, "assistant-2");
        // The copied message is still the fork's.
        assert_eq!(ids(&records), ["c1-assistant-1", "c1-assistant-2"]);
        let times: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Session(f) => f.at_ms,
                _ => None,
            })
            .collect();
        assert!(
            times
                .iter()
                .all(|t| *t >= parse_timestamp_ms("2026-01-02T00:00:00Z").unwrap()),
            "copied entries do not widen the fork's span: {times:?}"
        );
    }

    #[test]
    fn the_parent_is_found_at_its_path_beside_the_child_or_in_a_sibling_dir() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = dir.path().join("sessions");
        let a = sessions.join("--a--");
        let b = sessions.join("--b--");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let parent = a.join("p.jsonl");
        std::fs::write(&parent, "").unwrap();
        let child = b.join("c.jsonl");
        assert!(parent_file_exists(&child, parent.to_str().unwrap()));
        assert!(parent_file_exists(
            &child,
            "/old/home/.pi/agent/sessions/--a--/p.jsonl"
        ));
        assert!(parent_file_exists(
            &child,
            "C:\\Users\\x\\.pi\\agent\\sessions\\--a--\\p.jsonl"
        ));
        assert!(!parent_file_exists(&child, "/old/sessions/--c--/p.jsonl"));
        assert!(!parent_file_exists(&child, ""));
    }

    #[test]
    fn bare_slash_commands_do_not_title() {
        assert!(is_bare_command("/mode"));
        assert!(is_bare_command(" /opensync:config "));
        assert!(!is_bare_command("/model opus"));
        assert!(!is_bare_command("/home/x/a.rs"));
        assert!(!is_bare_command("fix it"));
    }

    #[test]
    fn odd_numbers_are_read_without_overflow() {
        let field = |text: &'static str| serde_json::from_str::<Field<'static>>(text).unwrap();
        assert_eq!(token_count(&field("12")), 12);
        assert_eq!(token_count(&field("12.9")), 12);
        assert_eq!(token_count(&field("-3")), 0);
        assert_eq!(token_count(&field("1e300")), u64::MAX);
        assert_eq!(token_count(&field("\"7\"")), 0);
        assert_eq!(epoch_ms(&field("1.5e12")), Some(1_500_000_000_000));
        assert_eq!(epoch_ms(&field("1e300")), None);
    }
}
