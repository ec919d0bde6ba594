//! Claude Code transcripts (`<config dir>/projects/<project>/<session>.jsonl`) turned into
//! records, incrementally.
//!
//! Units: the session transcript `<session>.jsonl`, and subagent transcripts — the flat
//! `agent-<id>.jsonl` beside it (Claude Code ≤ 2.0; the parent is the lines' `sessionId`) and
//! `<session>/subagents/agent-<id>.jsonl` (≥ 2.1; the parent is the directory). Subagent files
//! only add their token usage to the parent session: their own turns are not messages of it.
//!
//! Lines, and what becomes of them:
//! - `user` with a string or text-block content: a human prompt (role `user`); the first one
//!   that is not slash-command markup becomes the title. `isMeta` lines (expanded slash
//!   commands, injected context) and `isCompactSummary` lines (compaction summaries) are not
//!   prompts the human typed and are skipped;
//! - `user` with `tool_result` blocks: a `tool` message with one `tool-result` part per block;
//! - `assistant`: one line per content block — `text` → text, `tool_use` → a `tool-call` part,
//!   `thinking`/`redacted_thinking` → a `reasoning` part only with `sync_thinking`. Lines the
//!   CLI writes itself (model `<synthetic>`, e.g. "No response requested.") are skipped, except
//!   API errors (`isApiErrorMessage`), which tell the user why a turn failed;
//! - `system`, `summary`, `file-history-snapshot`, `progress`, `queue-operation`,
//!   `last-prompt` and any other type: bookkeeping, skipped (timestamps still widen the span).
//!
//! Ids: the session is the file stem; a message is the line's `uuid` — the id claude-code-sync
//! used for assistant lines, so switching from it re-sends nothing twice.
//!
//! Tokens: one API response is written as several lines that repeat its usage, with
//! `output_tokens` growing to its final value. Usage is keyed by `message.id:requestId` and
//! merged with `Max`. `<synthetic>` and `isApiErrorMessage` lines carry no real usage.
//!
//! Resumed sessions: older CLIs start a new transcript that replays earlier lines under their
//! original `sessionId`. Such a line is skipped when that session's own transcript exists in
//! the same directory (it is synced from there); the check is made once per foreign session id
//! and remembered in the parser state, so re-reading gives the same answer.
//!
//! Over 700 lines only with its tests: one format's parser (~680 lines of code).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{MessagePayload, Part, Role, SourceId, Tokens, parse_timestamp_ms};
use crate::sources::codex::short_title;
use crate::sources::json::{Field, Payload, TextOrList, json_object};
use crate::sources::{
    LineError, LineParser, ParseOptions, Record, SessionFacts, Source, Unit, UsageFact, UsageMerge,
};

/// Claude Code as a [`Source`].
pub struct ClaudeCode;

impl Source for ClaudeCode {
    fn id(&self) -> SourceId {
        SourceId::ClaudeCode
    }

    fn default_roots(&self, env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        if let Some(dirs) = env("CLAUDE_CONFIG_DIR").filter(|s| !s.trim().is_empty()) {
            // ccusage accepts a comma list here; so do we.
            return dirs
                .split(',')
                .filter(|d| !d.trim().is_empty())
                .map(|d| super::expand_tilde(d.trim(), home))
                .collect();
        }
        let xdg_config = env("XDG_CONFIG_HOME")
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        vec![home.join(".claude"), xdg_config.join("claude")]
    }

    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        roots.iter().map(|r| r.join("projects")).collect()
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        let mut files = Vec::new();
        for root in roots {
            super::walk_files(&root.join("projects"), &|p| is_transcript(p), &mut files);
        }
        files
            .into_iter()
            .map(|path| Unit::lines(SourceId::ClaudeCode, path))
            .collect()
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        let under = roots.iter().any(|r| path.starts_with(r.join("projects")));
        (under && is_transcript(path))
            .then(|| Unit::lines(SourceId::ClaudeCode, path.to_path_buf()))
    }

    fn line_parser(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Box<dyn LineParser>, LineError> {
        Ok(Box::new(ClaudeParser::new(&unit.path, state, opts)?))
    }

    fn leader(&self, unit: &Unit) -> Option<Unit> {
        main_transcript(&unit.path).map(|path| Unit::lines(SourceId::ClaudeCode, path))
    }

    /// Subagent files are folded with their parent transcript.
    fn group_key(&self, unit: &Unit) -> String {
        main_transcript(&unit.path)
            .unwrap_or_else(|| unit.path.clone())
            .display()
            .to_string()
    }
}

/// The main transcript of a subagent file: `<project>/<sessionId>.jsonl` for
/// `<project>/<sessionId>/subagents/agent-*.jsonl`, and for a legacy flat `agent-*.jsonl` the
/// transcript named by its lines' `sessionId`. `None` for a main transcript.
fn main_transcript(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?.to_str()?;
    if !name.starts_with("agent-") {
        return None;
    }
    let dir = path.parent()?;
    if dir.file_name().is_some_and(|d| d == "subagents") {
        return Some(dir.parent()?.with_extension("jsonl"));
    }
    first_session_id(path).map(|sid| dir.join(format!("{sid}.jsonl")))
}

fn first_session_id(path: &Path) -> Option<String> {
    super::with_first_lines(path, |chunk| {
        chunk.iter_lines().find_map(|line| {
            let v: Value = serde_json::from_slice(line).ok()?;
            v.get("sessionId")?.as_str().map(str::to_string)
        })
    })
    .flatten()
}

fn is_transcript(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "jsonl")
}

/// What kind of transcript a file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// A session transcript: its id.
    Session(String),
    /// A subagent file with a known parent.
    Subagent(String),
    /// A legacy flat subagent file: the parent comes from its lines.
    FlatSubagent,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    kind: Kind,
    titled: bool,
    /// Foreign session ids seen in this file → whether their own transcript exists.
    foreign: BTreeMap<String, bool>,
    /// A subagent file: whether its session's start was looked for among its siblings (done
    /// once, at its first line).
    #[serde(default)]
    orphan_checked: bool,
}

/// Incremental parser of one transcript.
pub struct ClaudeParser {
    state: State,
    opts: ParseOptions,
    dir: PathBuf,
    path: PathBuf,
    /// Subagent files: the marker their messages carry (`[subagent a881341]`).
    marker: Option<String>,
}

impl ClaudeParser {
    /// Creates a parser for `path`, resuming from `state`.
    pub fn new(
        path: &Path,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<ClaudeParser, LineError> {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let state = match state {
            Some(v) => super::resume_state(v, "claude")?,
            None => State {
                kind: kind_of(path),
                titled: false,
                foreign: BTreeMap::new(),
                orphan_checked: false,
            },
        };
        let marker = match state.kind {
            Kind::Session(_) => None,
            Kind::Subagent(_) | Kind::FlatSubagent => Some(subagent_marker(path)),
        };
        Ok(ClaudeParser {
            state,
            opts,
            dir,
            path: path.to_path_buf(),
            marker,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        sid: &str,
        line: &Line<'_>,
        at_ms: Option<i64>,
        role: Role,
        text: Option<String>,
        parts: Vec<Part>,
        model: Option<String>,
    ) -> Option<Record> {
        let uuid = line.uuid.as_str()?;
        // A subagent's turns are sent with its parent session, marked as the subagent's.
        let (text, parts) = match &self.marker {
            None => (text, parts),
            Some(_) if !self.opts.sync_subagents => return None,
            Some(marker) => (
                text.map(|t| format!("{marker} {t}")),
                parts
                    .into_iter()
                    .map(|mut p| {
                        if p.kind == "tool-call"
                            && let Some(name) = p.content.get_mut("name")
                        {
                            let named = format!("{marker} {}", name.as_str().unwrap_or("tool"));
                            *name = Value::String(named);
                        }
                        p
                    })
                    .collect(),
            ),
        };
        let mut all = Vec::with_capacity(parts.len() + 1);
        if let Some(t) = &text {
            all.push(Part::text(t.clone()));
        }
        all.extend(parts);
        if all.is_empty() {
            return None;
        }
        Some(Record::Message(MessagePayload {
            session_external_id: sid.to_string(),
            external_id: uuid.to_string(),
            role,
            text_content: text,
            model,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: SourceId::ClaudeCode.as_str().into(),
            parts: all,
            created_at: at_ms,
        }))
    }

    /// Whether a line of `line_sid` in this session's file is a replay of another transcript.
    fn is_replay(&mut self, own: &str, line_sid: &str) -> bool {
        if line_sid == own || line_sid.is_empty() {
            return false;
        }
        if let Some(known) = self.state.foreign.get(line_sid) {
            return *known;
        }
        let exists = self.dir.join(format!("{line_sid}.jsonl")).is_file();
        self.state.foreign.insert(line_sid.to_string(), exists);
        exists
    }

    fn usage(&self, sid: &str, line: &Line<'_>, out: &mut Vec<Record>) {
        let msg = &line.message;
        let model = msg.model.as_str();
        if model == Some("<synthetic>") || line.is_api_error_message.is_true() {
            return;
        }
        let usage = &msg.usage;
        if !usage.is_object {
            return;
        }
        let n = |f: &Field<'_>| f.as_u64().unwrap_or(0);
        let key = match (msg.id.as_str(), line.request_id.as_str()) {
            (Some(id), Some(req)) => format!("{id}:{req}"),
            (Some(id), None) => id.to_string(),
            _ => match line.uuid.as_str() {
                Some(u) => u.to_string(),
                None => return,
            },
        };
        out.push(Record::Usage(UsageFact {
            session_id: sid.to_string(),
            key,
            merge: UsageMerge::Max,
            model: model.map(str::to_string),
            tokens: Tokens {
                input: n(&usage.input_tokens),
                cache_read: n(&usage.cache_read_input_tokens),
                cache_write: n(&usage.cache_creation_input_tokens),
                // Claude Code 2.x splits writes by cache lifetime; the 1-hour ones cost more.
                cache_write_1h: n(&usage.cache_creation.ephemeral_1h_input_tokens)
                    .min(n(&usage.cache_creation_input_tokens)),
                output: n(&usage.output_tokens),
                reasoning: 0,
            },
            cost: None,
        }));
    }

    fn session_line(&mut self, sid: &str, mut line: Line<'_>, out: &mut Vec<Record>) {
        let mut facts = SessionFacts {
            session_id: sid.to_string(),
            at_ms: timestamp(&line),
            secondary: self.marker.is_some(),
            ..SessionFacts::default()
        };
        facts.project_path = line
            .cwd
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let content = std::mem::take(&mut line.message.content);
        match line.kind.as_str().unwrap_or_default() {
            "user" => {
                let meta = line.is_meta.is_true() || line.is_compact_summary.is_true();
                match content {
                    TextOrList::Text(text) if !meta => {
                        self.prompt(sid, &line, &text, &mut facts, out)
                    }
                    TextOrList::List(blocks) => {
                        let is_result = |b: &Block<'_>| b.kind.as_str() == Some("tool_result");
                        if blocks.iter().any(is_result) {
                            if self.opts.sync_tool_calls {
                                let results: Vec<Part> = blocks
                                    .into_iter()
                                    .filter(is_result)
                                    .map(|b| Part::tool_result(b.content.tool_result()))
                                    .collect();
                                out.extend(self.message(
                                    sid,
                                    &line,
                                    facts.at_ms,
                                    Role::Tool,
                                    None,
                                    results,
                                    None,
                                ));
                            }
                        } else if !meta {
                            let text = blocks
                                .iter()
                                .filter(|b| b.kind.as_str() == Some("text"))
                                .filter_map(|b| b.text.as_str())
                                .collect::<Vec<_>>()
                                .join("\n");
                            if !text.trim().is_empty() {
                                self.prompt(sid, &line, &text, &mut facts, out);
                            }
                        }
                    }
                    _ => {}
                }
            }
            "assistant" => {
                let raw_model = line.message.model.as_str();
                let api_error = line.is_api_error_message.is_true();
                if raw_model == Some("<synthetic>") && !api_error {
                    // Filler the CLI writes itself ("No response requested."), not a reply.
                    return;
                }
                let model = raw_model.filter(|m| *m != "<synthetic>");
                facts.model = model.map(str::to_string);
                if model.is_some() {
                    facts.provider = Some("anthropic".into());
                }
                let blocks = match content {
                    TextOrList::List(blocks) => blocks,
                    _ => Vec::new(),
                };
                let mut text: Vec<Cow<'_, str>> = Vec::new();
                let mut parts = Vec::new();
                for b in blocks {
                    match b.kind.as_str().unwrap_or_default() {
                        "text" => text.extend(b.text.into_str()),
                        "tool_use" if self.opts.sync_tool_calls => parts.push(Part::tool_call(
                            b.name.as_str().unwrap_or("tool"),
                            b.input.or_null(),
                        )),
                        "thinking" if self.opts.sync_thinking => {
                            if let Some(t) = b.thinking.as_str().filter(|t| !t.is_empty()) {
                                parts.push(Part::thinking(t));
                            }
                        }
                        _ => {}
                    }
                }
                let text = Some(text.join("\n")).filter(|t| !t.trim().is_empty());
                let at_ms = facts.at_ms;
                out.push(Record::Session(facts));
                out.extend(self.message(
                    sid,
                    &line,
                    at_ms,
                    Role::Assistant,
                    text,
                    parts,
                    model.map(str::to_string),
                ));
                self.usage(sid, &line, out);
                return;
            }
            // Bookkeeping: only its time counts, and only for lines of a session.
            _ if !line.session_id.is_present() || line.session_id.is_null() => return,
            _ => {}
        }
        out.push(Record::Session(facts));
    }

    fn prompt(
        &mut self,
        sid: &str,
        line: &Line<'_>,
        raw: &str,
        facts: &mut SessionFacts,
        out: &mut Vec<Record>,
    ) {
        let text = readable_command(raw);
        if text.trim().is_empty() {
            return;
        }
        let synthetic =
            raw.trim_start().starts_with('<') || raw.starts_with("[Request interrupted");
        if !self.state.titled && !synthetic {
            self.state.titled = true;
            facts.title = Some(short_title(&text));
        }
        out.extend(self.message(sid, line, facts.at_ms, Role::User, Some(text), vec![], None));
    }
}

impl ClaudeParser {
    /// A subagent file whose session has no main transcript (deleted, or never kept): the
    /// session starts with the earliest of its subagent files, not with whichever of them is
    /// read first — so the start is the same in any read order. Looked up once per file.
    fn orphan_start(&mut self, sid: &str, out: &mut Vec<Record>) {
        if self.state.orphan_checked {
            return;
        }
        self.state.orphan_checked = true;
        if main_transcript(&self.path).is_none_or(|main| main.exists()) {
            return;
        }
        let flat = matches!(self.state.kind, Kind::FlatSubagent);
        let siblings = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                is_transcript(p)
                    && (!flat
                        || p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with("agent-")))
            });
        let start = siblings
            .filter_map(|p| first_line_of_session(&p, sid))
            .min();
        if let Some(at) = start {
            out.push(Record::Session(SessionFacts {
                session_id: sid.to_string(),
                at_ms: Some(at),
                secondary: true,
                ..SessionFacts::default()
            }));
        }
    }
}

/// The time of the first timestamped line of `path` that belongs to session `sid`.
fn first_line_of_session(path: &Path, sid: &str) -> Option<i64> {
    super::with_first_lines(path, |chunk| {
        chunk.iter_lines().find_map(|line| {
            let v: Value = serde_json::from_slice(line).ok()?;
            (v.get("sessionId")?.as_str()? == sid)
                .then(|| v.get("timestamp")?.as_str().and_then(parse_timestamp_ms))
                .flatten()
        })
    })
    .flatten()
}

impl LineParser for ClaudeParser {
    fn parse_line(&mut self, bytes: &[u8], out: &mut Vec<Record>) -> Result<(), LineError> {
        let line = read_line(bytes)?;
        match &self.state.kind {
            Kind::Session(own) => {
                let own = own.clone();
                if self.is_replay(&own, line.session_id.as_str().unwrap_or_default()) {
                    return Ok(());
                }
                self.session_line(&own, line, out);
            }
            Kind::Subagent(parent) => {
                let parent = parent.clone();
                self.orphan_start(&parent, out);
                self.session_line(&parent, line, out);
            }
            Kind::FlatSubagent => {
                let line_sid = line.session_id.as_str().unwrap_or_default().to_string();
                if !line_sid.is_empty() {
                    self.orphan_start(&line_sid, out);
                    self.session_line(&line_sid, line, out);
                }
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Value {
        serde_json::to_value(&self.state).unwrap_or(Value::Null)
    }
}

json_object! {
    deny_duplicates;
    /// The top-level fields this parser reads. Everything else on a line — `toolUseResult` (a
    /// second copy of every tool result, often whole files), `snapshot`, progress `data`,
    /// `thinkingMetadata` — is skipped by the JSON reader without being built, which is most of
    /// the bytes of a transcript. A repeated key among these fails the line (as it always has
    /// here); `null` reads as absent.
    struct Line<'a> {
        kind: Field<'a> = "type",
        timestamp: Field<'a> = "timestamp",
        session_id: Field<'a> = "sessionId",
        cwd: Field<'a> = "cwd",
        message: Message<'a> = "message",
        is_meta: Field<'a> = "isMeta",
        is_compact_summary: Field<'a> = "isCompactSummary",
        is_api_error_message: Field<'a> = "isApiErrorMessage",
        uuid: Field<'a> = "uuid",
        request_id: Field<'a> = "requestId",
    }
}

json_object! {
    /// `message`: the API message of a user or assistant line.
    struct Message<'a> {
        model: Field<'a> = "model",
        id: Field<'a> = "id",
        usage: Usage<'a> = "usage",
        content: TextOrList<'a, Block<'a>> = "content",
    }
}

json_object! {
    /// `message.usage`.
    struct Usage<'a> {
        input_tokens: Field<'a> = "input_tokens",
        cache_read_input_tokens: Field<'a> = "cache_read_input_tokens",
        cache_creation_input_tokens: Field<'a> = "cache_creation_input_tokens",
        output_tokens: Field<'a> = "output_tokens",
        cache_creation: CacheCreation<'a> = "cache_creation",
    }
}

json_object! {
    /// `message.usage.cache_creation` (Claude Code 2.x).
    struct CacheCreation<'a> {
        ephemeral_1h_input_tokens: Field<'a> = "ephemeral_1h_input_tokens",
    }
}

json_object! {
    /// One block of `message.content`: text, tool use or result, thinking.
    struct Block<'a> {
        kind: Field<'a> = "type",
        text: Field<'a> = "text",
        name: Field<'a> = "name",
        input: Payload = "input",
        thinking: Field<'a> = "thinking",
        content: Payload = "content",
    }
}

/// Reads a line as a [`Line`]. The line is checked to be UTF-8 once and the strings read are
/// not validated again. A line that is not (invalid bytes are rare: a corrupted file) is read
/// only if every string inside the fields above is valid, as this reader always required.
fn read_line(bytes: &[u8]) -> Result<Line<'_>, LineError> {
    // A JSON array would also read (as an empty object): refuse anything but an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(LineError::Malformed("not a JSON object".into()));
    }
    let malformed = |e: serde_json::Error| LineError::Malformed(e.to_string());
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text).map_err(malformed),
        Err(_) => {
            serde_json::from_slice::<ReadFieldsAreValid>(bytes).map_err(malformed)?;
            serde_json::from_slice(bytes).map_err(malformed)
        }
    }
}

/// The fields of [`Line`] built as `Value`s, which validates every string inside them: for a
/// line that is not all UTF-8, whether the bytes at fault are outside what is read.
#[derive(Deserialize)]
struct ReadFieldsAreValid {
    #[serde(rename = "type")]
    _kind: Option<Value>,
    #[serde(rename = "timestamp")]
    _timestamp: Option<Value>,
    #[serde(rename = "sessionId")]
    _session_id: Option<Value>,
    #[serde(rename = "cwd")]
    _cwd: Option<Value>,
    #[serde(rename = "message")]
    _message: Option<Value>,
    #[serde(rename = "isMeta")]
    _is_meta: Option<Value>,
    #[serde(rename = "isCompactSummary")]
    _is_compact_summary: Option<Value>,
    #[serde(rename = "isApiErrorMessage")]
    _is_api_error_message: Option<Value>,
    #[serde(rename = "uuid")]
    _uuid: Option<Value>,
    #[serde(rename = "requestId")]
    _request_id: Option<Value>,
}

/// How a subagent file's messages are marked: `[subagent <agent id>]`, or `[compaction]` for
/// the runs Claude Code starts to compact a conversation (`agent-acompact-*`).
fn subagent_marker(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let id = stem.strip_prefix("agent-").unwrap_or(stem);
    if id.starts_with("acompact") {
        "[compaction]".to_string()
    } else {
        format!("[subagent {id}]")
    }
}

fn kind_of(path: &Path) -> Kind {
    // A name that is not UTF-8 still names a session: its lossy form is stable.
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let parent = path.parent();
    let in_subagents = parent
        .and_then(|p| p.file_name())
        .is_some_and(|n| n == "subagents");
    if in_subagents {
        let session = parent
            .and_then(Path::parent)
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return Kind::Subagent(session);
    }
    if stem.starts_with("agent-") {
        Kind::FlatSubagent
    } else {
        Kind::Session(stem)
    }
}

fn timestamp(line: &Line<'_>) -> Option<i64> {
    line.timestamp.as_str().and_then(parse_timestamp_ms)
}

/// Slash-command markup (`<command-name>/x</command-name><command-args>y</command-args>`)
/// rendered as `/x y`; other text unchanged.
fn readable_command(raw: &str) -> String {
    let tag = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = raw.find(&open)? + open.len();
        let end = raw[start..].find(&close)? + start;
        Some(raw[start..end].trim().to_string())
    };
    if let Some(name) = tag("command-name") {
        let args = tag("command-args").unwrap_or_default();
        return if args.is_empty() {
            name
        } else {
            format!("{name} {args}")
        };
    }
    if let Some(stdout) = tag("local-command-stdout") {
        return stdout;
    }
    raw.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_markup_is_readable() {
        assert_eq!(
            readable_command(
                "<command-name>/compact</command-name>\n<command-args>keep it</command-args>"
            ),
            "/compact keep it"
        );
        assert_eq!(readable_command("plain"), "plain");
    }

    #[test]
    fn subagent_kinds_follow_the_layouts() {
        assert_eq!(
            kind_of(Path::new("/p/x/abc.jsonl")),
            Kind::Session("abc".into())
        );
        assert_eq!(kind_of(Path::new("/p/x/agent-1.jsonl")), Kind::FlatSubagent);
        assert_eq!(
            kind_of(Path::new("/p/x/abc/subagents/agent-1.jsonl")),
            Kind::Subagent("abc".into())
        );
    }
}
