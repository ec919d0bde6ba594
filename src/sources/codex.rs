//! Codex CLI rollouts (`$CODEX_HOME/sessions/**/rollout-*.jsonl`, `archived_sessions/`) turned
//! into records, incrementally. Handles the three vintages:
//! - TypeScript era: one JSON document `{session:{id,timestamp,instructions}, items:[...]}`
//!   (`rollout-*.json`, possibly pretty-printed: lines are accumulated until it parses);
//! - Rust pre-envelope: a bare header line `{id, timestamp, instructions, cwd?}`, then bare
//!   `ResponseItem`s without timestamps (stamped with the header time) and `record_type` markers
//!   (skipped);
//! - Rust envelope: `{timestamp, type, payload}` lines.
//!
//! What is sent, and why:
//! - user prompts come from `event_msg/user_message` — the user-role `response_item`s are
//!   scaffolding (environment context, AGENTS.md, permissions) and are skipped;
//! - assistant text comes from `event_msg/agent_message` in envelope files (the duplicate
//!   `response_item/message` is skipped) and from `response_item/message` in pre-envelope and
//!   TypeScript files, which have no event stream;
//! - tool calls (`function_call`, `custom_tool_call`, `local_shell_call`, `web_search_call`) are
//!   assistant messages with a `tool-call` part; their outputs are `tool` messages with a
//!   `tool-result` part. The `exec_command_end`/`patch_apply_end`/`web_search_end` events repeat
//!   those outputs and are skipped;
//! - reasoning (`agent_reasoning` events, or reasoning summaries in files without them) only
//!   with `sync_thinking`;
//! - `turn_context` gives the model; `token_count` the usage; `session_meta` the session;
//!   `ghost_snapshot`, `task_*`, `turn_aborted`, `compacted`, `world_state` and anything unknown
//!   carry nothing to send and are skipped.
//!
//! Ids: the session is `session_meta.payload.id` (or the header `id`); a message is
//! `"{session id}:{line index}"` — rollouts are append-only, so the index is stable, and the
//! archived copy of a rollout produces the same ids.
//!
//! Tokens: the session total is the last non-null `total_token_usage` (0.77–0.104 repeat
//! events, so summing `last_token_usage` double counts). For pricing, each delta between
//! consecutive totals — one API call, or the few calls between two events — is a usage fact of
//! its own under `call:<line index>`, attributed to the model of the current turn, so the fold
//! can price each call in its band (a long-context call costs more); a repeated event has no
//! delta; a decrease is a counter reset. The sum of the deltas is the last total.
//!
//! Why one file of ~700 lines of code: the three rollout vintages are one format's history and
//! share the parser state; the tests below it make up the rest.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    MessagePayload, Part, Role, SourceId, Tokens, content_hash, parse_timestamp_ms,
};
use crate::sources::json::{Field, List, Payload, Present, TextOrList, json_object, parse_object};
use crate::sources::{
    LineError, LineParser, ParseOptions, Record, SessionFacts, Snapshot, Source, SourceError, Unit,
    UsageFact, UsageMerge,
};

/// Codex CLI as a [`Source`].
pub struct Codex;

impl Source for Codex {
    fn id(&self) -> SourceId {
        SourceId::CodexCli
    }

    fn default_roots(&self, env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        match env("CODEX_HOME").filter(|s| !s.trim().is_empty()) {
            Some(dir) => vec![super::expand_tilde(&dir, home)],
            None => vec![home.join(".codex")],
        }
    }

    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        roots
            .iter()
            .flat_map(|r| [r.join("sessions"), r.join("archived_sessions")])
            .collect()
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        let mut files = Vec::new();
        for dir in self.watch_dirs(roots) {
            super::walk_files(&dir, &|p| is_rollout(p), &mut files);
        }
        files.into_iter().map(rollout_unit).collect()
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        let under = self.watch_dirs(roots).iter().any(|d| path.starts_with(d));
        (under && is_rollout(path)).then(|| rollout_unit(path.to_path_buf()))
    }

    /// A TypeScript-era `rollout-*.json`: one JSON document, written whole (often without a
    /// final newline), read whole when it changes.
    fn read_snapshot(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Snapshot, SourceError> {
        let meta = std::fs::metadata(&unit.path).map_err(|e| SourceError::Read(e.to_string()))?;
        let stamp = format!("{}:{}", meta.len(), crate::tail::mtime_ms(&meta));
        if state.and_then(|s| s.get("stamp")).and_then(Value::as_str) == Some(stamp.as_str()) {
            return Ok(Snapshot {
                records: Vec::new(),
                state: state.cloned().unwrap_or(Value::Null),
                more: false,
            });
        }
        let bytes = std::fs::read(&unit.path).map_err(|e| SourceError::Read(e.to_string()))?;
        let mut parser = CodexParser::new(&unit.path, None, opts)
            .map_err(|e| SourceError::Read(e.to_string()))?;
        let mut records = Vec::new();
        // The whole document, final line included whether or not a newline ends it.
        let _ = parser.parse_line(&bytes, &mut records);
        Ok(Snapshot {
            records,
            state: serde_json::json!({ "stamp": stamp }),
            more: false,
        })
    }

    fn line_parser(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Box<dyn LineParser>, LineError> {
        Ok(Box::new(CodexParser::new(&unit.path, state, opts)?))
    }

    /// A rollout and its archived copy (same file name) are one session: folded together.
    fn group_key(&self, unit: &Unit) -> String {
        unit.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| unit.ledger_key())
    }
}

/// JSONL rollouts are tailed; TypeScript-era `.json` documents are read whole.
fn rollout_unit(path: PathBuf) -> Unit {
    if path.extension().is_some_and(|e| e == "json") {
        Unit::snapshot(SourceId::CodexCli, path, None)
    } else {
        Unit::lines(SourceId::CodexCli, path)
    }
}

fn is_rollout(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.starts_with("rollout-") && (name.ends_with(".jsonl") || name.ends_with(".json"))
}

/// Which on-disk form the file has (decided by its first line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
enum Vintage {
    #[default]
    Unknown,
    Envelope,
    PreEnvelope,
    TypeScript,
}

/// Everything carried between lines.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct State {
    line: u64,
    vintage: Vintage,
    session_id: Option<String>,
    /// Session id from the file name, used only if no header ever names one.
    fallback_id: Option<String>,
    header_ms: Option<i64>,
    model: Option<String>,
    titled: bool,
    /// The last cumulative total seen.
    last_total: Option<RawUsage>,
    /// Saw `agent_reasoning` events (so reasoning items are not sent twice).
    reasoning_events: bool,
    /// Replies sent in the current turn: the hash of their text and whether they came from an
    /// `agent_message` event (`true`) or a `response_item` message (`false`), so the copy the
    /// other way is recognised.
    #[serde(default)]
    turn_replies: Vec<(String, bool)>,
    /// TypeScript era: lines of the JSON document so far.
    doc: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
struct RawUsage {
    input: u64,
    cached: u64,
    output: u64,
    reasoning: u64,
}

impl RawUsage {
    fn from(v: &TokenUsage<'_>) -> Option<RawUsage> {
        let n = |f: &Field<'_>| f.as_u64().unwrap_or(0);
        v.is_object.then(|| RawUsage {
            input: n(&v.input_tokens),
            cached: n(&v.cached_input_tokens),
            output: n(&v.output_tokens),
            reasoning: n(&v.reasoning_output_tokens),
        })
    }

    fn minus(self, o: RawUsage) -> Option<RawUsage> {
        Some(RawUsage {
            input: self.input.checked_sub(o.input)?,
            cached: self.cached.checked_sub(o.cached)?,
            output: self.output.checked_sub(o.output)?,
            reasoning: self.reasoning.checked_sub(o.reasoning)?,
        })
    }

    fn tokens(self) -> Tokens {
        Tokens {
            input: self.input.saturating_sub(self.cached),
            cache_read: self.cached,
            cache_write: 0,
            cache_write_1h: 0,
            output: self.output,
            reasoning: self.reasoning,
        }
    }
}

/// Incremental parser of one rollout.
pub struct CodexParser {
    state: State,
    opts: ParseOptions,
}

impl CodexParser {
    /// Creates a parser for `path`, resuming from `state`.
    pub fn new(
        path: &Path,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<CodexParser, LineError> {
        let state = match state {
            Some(v) => super::resume_state(v, "codex")?,
            None => State {
                fallback_id: uuid_in_name(path),
                vintage: if path.extension().is_some_and(|e| e == "json") {
                    Vintage::TypeScript
                } else {
                    Vintage::Unknown
                },
                ..State::default()
            },
        };
        Ok(CodexParser { state, opts })
    }

    fn sid(&self) -> String {
        self.state
            .session_id
            .clone()
            .or_else(|| self.state.fallback_id.clone())
            .unwrap_or_default()
    }

    fn message(
        &self,
        role: Role,
        text: Option<String>,
        parts: Vec<Part>,
        at: Option<i64>,
    ) -> Record {
        let mut all = Vec::new();
        if let Some(t) = &text {
            all.push(Part::text(t.clone()));
        }
        all.extend(parts);
        Record::Message(MessagePayload {
            session_external_id: self.sid(),
            external_id: format!("{}:{}", self.sid(), self.state.line),
            role,
            text_content: text,
            model: if role == Role::Assistant {
                self.state.model.clone()
            } else {
                None
            },
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: SourceId::CodexCli.as_str().into(),
            parts: all,
            created_at: at,
        })
    }

    fn facts(&self, at: Option<i64>) -> SessionFacts {
        SessionFacts {
            session_id: self.sid(),
            at_ms: at,
            ..SessionFacts::default()
        }
    }

    fn header(&mut self, v: &Item<'_>, out: &mut Vec<Record>) {
        if let Some(id) = v.id.as_str() {
            self.state.session_id = Some(id.to_string());
        }
        let at = v.timestamp.as_str().and_then(parse_timestamp_ms);
        self.state.header_ms = at.or(self.state.header_ms);
        let mut facts = self.facts(at);
        facts.project_path = v.cwd.as_str().map(str::to_string);
        facts.provider = v.model_provider.as_str().map(str::to_string);
        out.push(Record::Session(facts));
    }

    fn response_item(
        &mut self,
        p: Item<'_>,
        at: Option<i64>,
        with_events: bool,
        out: &mut Vec<Record>,
    ) {
        let kind = p.kind.as_str().unwrap_or_default();
        let tools = self.opts.sync_tool_calls;
        match kind {
            "message" => {
                let role = p.role.as_str().unwrap_or_default();
                let text = content_text(&p.content);
                if text.trim().is_empty() {
                    return;
                }
                match role {
                    "assistant" if !with_events => {
                        out.push(self.message(Role::Assistant, Some(text), vec![], at))
                    }
                    // Envelope files usually carry the same text as an `agent_message` event
                    // (written just before); some (Codex Desktop 0.128) have no such events.
                    // Whichever of the two comes first is sent, the other is its duplicate.
                    "assistant" => {
                        if self.is_duplicate_reply(&text, false) {
                            return;
                        }
                        out.push(self.message(Role::Assistant, Some(text), vec![], at))
                    }
                    // No event stream: the first user message that is not scaffolding is the prompt.
                    "user" if !with_events && !is_scaffolding(&text) => {
                        self.title(&text, at, out);
                        out.push(self.message(Role::User, Some(text), vec![], at));
                    }
                    _ => {}
                }
            }
            "function_call" | "custom_tool_call" | "local_shell_call" | "web_search_call"
                if tools =>
            {
                let name = p
                    .name
                    .as_str()
                    .unwrap_or(match kind {
                        "local_shell_call" => "shell",
                        "web_search_call" => "web_search",
                        _ => "tool",
                    })
                    .to_string();
                let args = match kind {
                    "function_call" => {
                        let raw = p.arguments.as_str().unwrap_or_default();
                        serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
                    }
                    "custom_tool_call" => p.input.or_null(),
                    _ => p.action.or_null(),
                };
                out.push(self.message(
                    Role::Assistant,
                    None,
                    vec![Part::tool_call(name, args)],
                    at,
                ));
            }
            "function_call_output" | "custom_tool_call_output" if tools => {
                let output = match p.output.0 {
                    Some(Value::String(s)) => match serde_json::from_str::<Value>(&s) {
                        // Shell output is JSON text {output, metadata}: keep the output readable.
                        Ok(Value::Object(mut o)) if o.contains_key("output") => {
                            o.remove("output").unwrap_or(Value::Null)
                        }
                        _ => Value::String(s),
                    },
                    Some(other) => other,
                    None => Value::Null,
                };
                out.push(self.message(Role::Tool, None, vec![Part::tool_result(output)], at));
            }
            "reasoning" if self.opts.sync_thinking && !self.state.reasoning_events => {
                let text: Vec<&str> = p.summary.iter().filter_map(|s| s.text.as_str()).collect();
                if !text.is_empty() {
                    out.push(self.message(
                        Role::Assistant,
                        None,
                        vec![Part::thinking(text.join("\n\n"))],
                        at,
                    ));
                }
            }
            _ => {}
        }
    }

    /// Whether `text` repeats a reply of this turn that came the other way (event vs response
    /// item); if not, remembers it.
    fn is_duplicate_reply(&mut self, text: &str, from_event: bool) -> bool {
        let hash = format!("{:032x}", content_hash(text.trim().as_bytes()));
        let replies = &mut self.state.turn_replies;
        if let Some(i) = replies
            .iter()
            .position(|(h, event)| *h == hash && *event != from_event)
        {
            replies.remove(i);
            return true;
        }
        replies.push((hash, from_event));
        false
    }

    fn title(&mut self, text: &str, at: Option<i64>, out: &mut Vec<Record>) {
        if !self.state.titled {
            self.state.titled = true;
            let mut facts = self.facts(at);
            facts.title = Some(short_title(text));
            out.push(Record::Session(facts));
        }
    }

    fn event(&mut self, p: &Item<'_>, at: Option<i64>, out: &mut Vec<Record>) {
        match p.kind.as_str().unwrap_or_default() {
            "task_started" => self.state.turn_replies.clear(),
            "user_message" => {
                self.state.turn_replies.clear();
                let text = p.message.as_str().unwrap_or_default();
                // 2025-09 recorders also wrote the scaffolding (instructions, environment
                // context) as user_message events, tagged with a non-"plain" `kind`.
                let kind = p.kind_of_message.as_str().unwrap_or("plain");
                if text.trim().is_empty() || kind != "plain" {
                    return;
                }
                self.title(text, at, out);
                out.push(self.message(Role::User, Some(text.to_string()), vec![], at));
            }
            "agent_message" => {
                let text = p.message.as_str().unwrap_or_default();
                if !text.trim().is_empty() && !self.is_duplicate_reply(text, true) {
                    out.push(self.message(Role::Assistant, Some(text.to_string()), vec![], at));
                }
            }
            "agent_reasoning" => {
                self.state.reasoning_events = true;
                if self.opts.sync_thinking
                    && let Some(text) = p.text.as_str().filter(|t| !t.trim().is_empty())
                {
                    out.push(self.message(Role::Assistant, None, vec![Part::thinking(text)], at));
                }
            }
            "token_count" => {
                let Some(total) = RawUsage::from(&p.info.total_token_usage) else {
                    return;
                };
                let delta = match self.state.last_total {
                    None => total,
                    Some(prev) => match total.minus(prev) {
                        Some(d) => d,
                        None => total, // counter reset: a new baseline
                    },
                };
                self.state.last_total = Some(total);
                if delta == RawUsage::default() {
                    return; // a repeated event
                }
                out.push(Record::Usage(UsageFact {
                    session_id: self.sid(),
                    key: format!("call:{}", self.state.line),
                    merge: UsageMerge::Replace,
                    model: self.state.model.clone().filter(|m| !m.is_empty()),
                    tokens: delta.tokens(),
                    cost: None,
                }));
            }
            _ => {}
        }
    }

    fn envelope(&mut self, v: Item<'_>, out: &mut Vec<Record>) {
        let at = v.timestamp.as_str().and_then(parse_timestamp_ms);
        let payload = v.payload.value.map(|p| *p).unwrap_or_default();
        match v.kind.as_str().unwrap_or_default() {
            "session_meta" => {
                let first = self.state.session_id.is_none();
                if first || payload.id.as_str() == self.state.session_id.as_deref() {
                    self.header(&payload, out);
                }
            }
            "turn_context" => {
                if let Some(m) = payload.model.as_str() {
                    self.state.model = Some(m.to_string());
                    let mut facts = self.facts(at);
                    facts.model = Some(m.to_string());
                    facts.project_path = payload.cwd.as_str().map(str::to_string);
                    out.push(Record::Session(facts));
                }
            }
            "response_item" => {
                out.push(Record::Session(self.facts(at)));
                self.response_item(payload, at, true, out);
            }
            "event_msg" => {
                out.push(Record::Session(self.facts(at)));
                self.event(&payload, at, out);
            }
            _ => {}
        }
    }

    fn typescript_doc(&mut self, out: &mut Vec<Record>) -> Result<(), LineError> {
        let text = std::mem::take(&mut self.state.doc);
        let doc: TypeScriptDoc<'_> = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) if e.is_eof() => {
                self.state.doc = text;
                return Ok(()); // not complete yet
            }
            Err(e) => return Err(LineError::Malformed(format!("codex rollout document: {e}"))),
        };
        if doc.session.present {
            self.header(&doc.session.value, out);
        }
        let at = self.state.header_ms;
        for item in doc.items.items {
            self.response_item(item, at, false, out);
            self.state.line += 1;
        }
        Ok(())
    }
}

impl LineParser for CodexParser {
    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Record>) -> Result<(), LineError> {
        if self.state.vintage == Vintage::TypeScript {
            self.state.doc.push_str(&String::from_utf8_lossy(line));
            self.state.doc.push('\n');
            return self.typescript_doc(out);
        }
        let index = self.state.line;
        let result = (|| {
            // Every string of a line had to be UTF-8 (a `Value` was built of it): checked once
            // here, then the strings read are not validated again.
            let text =
                std::str::from_utf8(line).map_err(|e| LineError::Malformed(e.to_string()))?;
            let v: Item<'_> = parse_object(text).map_err(LineError::Malformed)?;
            if self.state.vintage == Vintage::Unknown {
                self.state.vintage = if v.kind.is_present() && v.payload.present {
                    Vintage::Envelope
                } else {
                    Vintage::PreEnvelope
                };
                if self.state.vintage == Vintage::PreEnvelope && !v.kind.is_present() {
                    self.header(&v, out);
                    return Ok(());
                }
            }
            match self.state.vintage {
                Vintage::Envelope => self.envelope(v, out),
                _ => {
                    if v.record_type.is_present() {
                        return Ok(());
                    }
                    let at = self.state.header_ms;
                    self.response_item(v, at, false, out);
                }
            }
            Ok(())
        })();
        self.state.line = index + 1;
        result
    }

    fn save_state(&self) -> Value {
        serde_json::to_value(&self.state).unwrap_or(Value::Null)
    }
}

json_object! {
    /// A rollout line, and the payload of an envelope line (the same fields, nested once):
    /// the fields any line type is read for. Everything else (`base_instructions`, encrypted
    /// reasoning, the `exec_command_end` copies of every output, ...) is skipped unbuilt.
    struct Item<'a> {
        kind: Field<'a> = "type",
        // Boxed (an item's payload is an item) and optional (a default item has none).
        payload: Present<Option<Box<Item<'a>>>> = "payload",
        timestamp: Field<'a> = "timestamp",
        record_type: Field<'a> = "record_type",
        id: Field<'a> = "id",
        cwd: Field<'a> = "cwd",
        model_provider: Field<'a> = "model_provider",
        model: Field<'a> = "model",
        role: Field<'a> = "role",
        content: TextOrList<'a, TextBlock<'a>> = "content",
        name: Field<'a> = "name",
        arguments: Field<'a> = "arguments",
        input: Payload = "input",
        action: Payload = "action",
        output: Payload = "output",
        summary: List<TextBlock<'a>> = "summary",
        message: Field<'a> = "message",
        kind_of_message: Field<'a> = "kind",
        text: Field<'a> = "text",
        info: TokenInfo<'a> = "info",
    }
}

json_object! {
    /// A `{text}` block of a message's content or a reasoning summary.
    struct TextBlock<'a> {
        text: Field<'a> = "text",
    }
}

json_object! {
    /// `token_count.info`.
    struct TokenInfo<'a> {
        total_token_usage: TokenUsage<'a> = "total_token_usage",
    }
}

json_object! {
    /// `token_count.info.total_token_usage`.
    struct TokenUsage<'a> {
        input_tokens: Field<'a> = "input_tokens",
        cached_input_tokens: Field<'a> = "cached_input_tokens",
        output_tokens: Field<'a> = "output_tokens",
        reasoning_output_tokens: Field<'a> = "reasoning_output_tokens",
    }
}

json_object! {
    /// A TypeScript-era rollout document.
    struct TypeScriptDoc<'a> {
        session: Present<Item<'a>> = "session",
        items: List<Item<'a>> = "items",
    }
}

/// The text of a `content` array (`input_text`/`output_text` blocks) or string.
fn content_text(content: &TextOrList<'_, TextBlock<'_>>) -> String {
    match content {
        TextOrList::Text(s) => s.to_string(),
        TextOrList::List(items) => items
            .iter()
            .filter_map(|i| i.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        TextOrList::Other => String::new(),
    }
}

fn is_scaffolding(text: &str) -> bool {
    let t = text.trim_start();
    [
        "<environment_context>",
        "<user_instructions>",
        "<permissions",
        "# AGENTS.md",
        "<INSTRUCTIONS>",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

/// claude-code-sync's title rule: the first 80 characters, cut at the last space if it falls
/// after position 40, plus "...".
pub fn short_title(text: &str) -> String {
    // The words joined by single spaces, built only as far as the cut needs (a first prompt
    // can be a whole pasted file): past 80 characters the rest makes no difference.
    let mut one_line = String::new();
    let mut chars = 0;
    for word in text.split_whitespace() {
        if chars > 80 {
            break;
        }
        if !one_line.is_empty() {
            one_line.push(' ');
            chars += 1;
        }
        one_line.push_str(word);
        chars += word.chars().count();
    }
    if chars <= 80 {
        return one_line;
    }
    let cut: String = one_line.chars().take(80).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > 40 => cut[..i].to_string(),
        _ => cut,
    };
    format!("{cut}...")
}

fn uuid_in_name(path: &Path) -> Option<String> {
    let stem = path.file_stem()?.to_str()?;
    // rollout-YYYY-MM-DDThh-mm-ss-<uuid>: the uuid is the last 36 characters.
    (stem.len() > 36)
        .then(|| stem[stem.len() - 36..].to_string())
        .filter(|u| u.chars().filter(|c| *c == '-').count() == 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Record> {
        let mut p = CodexParser::new(
            Path::new("rollout-2026-01-01T00-00-00-019b0000-0000-7000-8000-000000000001.jsonl"),
            None,
            ParseOptions::default(),
        )
        .unwrap();
        let mut out = Vec::new();
        for line in text.lines() {
            let _ = p.parse_line(line.as_bytes(), &mut out);
        }
        out
    }

    #[test]
    fn repeated_token_events_count_once_and_models_split() {
        let lines = [
            r#"{"timestamp":"2026-01-01T00:00:00Z","type":"session_meta","payload":{"id":"s1","cwd":"/p"}}"#,
            r#"{"timestamp":"2026-01-01T00:00:01Z","type":"turn_context","payload":{"model":"gpt-5"}}"#,
            r#"{"timestamp":"2026-01-01T00:00:02Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":100,"cached_input_tokens":40,"output_tokens":10,"reasoning_output_tokens":2}}}}"#,
            r#"{"timestamp":"2026-01-01T00:00:03Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":100,"cached_input_tokens":40,"output_tokens":10,"reasoning_output_tokens":2}}}}"#,
            r#"{"timestamp":"2026-01-01T00:00:04Z","type":"turn_context","payload":{"model":"gpt-5-codex"}}"#,
            r#"{"timestamp":"2026-01-01T00:00:05Z","type":"event_msg","payload":{"type":"token_count","info":{"total_token_usage":{"input_tokens":250,"cached_input_tokens":100,"output_tokens":30,"reasoning_output_tokens":2}}}}"#,
        ];
        let records = parse(&lines.join("\n"));
        let usage: Vec<&UsageFact> = records
            .iter()
            .filter_map(|r| {
                if let Record::Usage(u) = r {
                    Some(u)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(usage.len(), 2);
        assert_eq!(
            usage[0].tokens,
            Tokens {
                input: 60,
                cache_read: 40,
                cache_write: 0,
                cache_write_1h: 0,
                output: 10,
                reasoning: 2
            }
        );
        assert_eq!(usage[1].key, "call:5");
        assert_eq!(usage[1].model.as_deref(), Some("gpt-5-codex"));
        assert_eq!(
            usage[1].tokens,
            Tokens {
                input: 90,
                cache_read: 60,
                cache_write: 0,
                cache_write_1h: 0,
                output: 20,
                reasoning: 0
            }
        );
    }

    #[test]
    fn titles_are_shortened_like_claude_code_sync() {
        assert_eq!(short_title("fix it"), "fix it");
        let long = "word ".repeat(30);
        let t = short_title(&long);
        assert!(t.ends_with("...") && t.len() <= 83, "{t}");
        // The rule written out on whole texts: words joined by one space; over 80 characters,
        // the first 80, cut back to the last space when that is past 40, then "...".
        let rule = |text: &str| {
            let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if one_line.chars().count() <= 80 {
                return one_line;
            }
            let cut: String = one_line.chars().take(80).collect();
            match cut.rfind(' ') {
                Some(i) if i > 40 => format!("{}...", &cut[..i]),
                _ => format!("{cut}..."),
            }
        };
        for text in [
            String::new(),
            "  \n ".to_string(),
            "x".repeat(80),
            "x".repeat(81),
            format!("{} {}", "a".repeat(79), "b"),
            format!("{} {}", "a".repeat(40), "b".repeat(45)),
            format!("{} {}", "a".repeat(41), "b".repeat(45)),
            "é ".repeat(60),
            format!("{}\n\t{}", "word ".repeat(16), "x".repeat(5000)),
            "ü".repeat(200),
        ] {
            assert_eq!(short_title(&text), rule(&text), "{text:?}");
        }
    }
}
