//! Factory Droid sessions (`~/.factory/sessions/`) turned into records: the transcript
//! `<session>.jsonl`, read incrementally, and the sibling `<session>.settings.json`, read as a
//! snapshot.
//!
//! Layouts: `sessions/<cwd-slug>/<session>.jsonl` (2026) and the older flat
//! `sessions/<session>.jsonl` (2025), each with its `.settings.json` beside it. The session id
//! is the file stem (equal to `session_start.id`). A subagent (Task tool) run is a session of
//! its own, with `callingSessionId` on its `session_start`; it is synced as its own session.
//!
//! Transcript lines, and what becomes of them:
//! - `session_start` (line 1): the project path (`cwd`) and, once Droid has settled it, the
//!   title: `title` counts only when `isSessionTitleManuallySet` is true or
//!   `sessionTitleAutoStage` is present (before that it is a placeholder); otherwise the title
//!   is the first user prompt, shortened. Its facts are held back until the first message (or
//!   timestamped bookkeeping) line, so the session is never created without the time of its
//!   first record (the server fixes `createdAt` at insert);
//! - `message`: `visibility: "llm_only"` (hidden injected context) is skipped. Text blocks
//!   become one message per transcript message (`<system-reminder>` blocks in user messages are
//!   injected context, not typed text, and are dropped); `tool_result` blocks are `tool-result`
//!   parts of that message (role `tool` when the line has no text); `thinking` blocks and
//!   `chatCompletionReasoningContent` (OpenAI-compatible providers; *unverified* field) are
//!   marked thinking parts (`Part::thinking`) only with `sync_thinking`; every `tool_use` block is a message of its
//!   own (see ids); images and `redacted_thinking` carry nothing renderable and are skipped;
//! - `todo_state`, `compaction_state`, `agent_turn_outcome`: nothing to send, only their time
//!   widens the session's span; any other type is skipped (so is a `message` line whose
//!   `message` is not an object).
//!
//! Ids: a message is the transcript message `id`, falling back to `<session>:<n>` (the n-th
//! non-blank line, 0-based) for a line without one. A tool call is the message
//! `<id>-tool-<tool_use id>` (`<id>-tool-<block index>` when the block has no id) with a
//! `tool-call` part. These are exactly droid-sync's ids. We match them rather than carrying
//! tool calls as parts of `<id>` because droid-sync already put a message under each of those
//! ids on users' dashboards, with a `tool_use` part the dashboard cannot draw: re-using the ids
//! turns those empty bubbles into rendered tool calls, while new ids would leave them empty and
//! add a second copy of every call beside them. The cost is one message per tool call instead
//! of one per transcript line, which is also how the dashboard counts Claude Code tool calls.
//! Tool results, which droid-sync never sent, go into the message of the line that carries
//! them. Everything is derived from the file's own ids and line positions, so it is
//! deterministic and survives re-reading.
//!
//! The first line is rewritten in place when Droid settles or changes the title, which shifts
//! the file's size: the reader's identity check then restarts the file from offset 0 with a
//! fresh parser. Message ids do not depend on offsets, so the re-read produces the same
//! messages with the same content (the planner sends none of them again) and only the session
//! payload, with its new title, changes.
//!
//! Settings: `tokenUsage` is a running total for the whole session, rewritten with the rest of
//! the file on every save. It is sent as the session's totals under one fixed usage key with
//! `UsageMerge::Replace`, so each read replaces the last instead of adding to it. Mapping:
//! `inputTokens` (excludes cache) → input, `cacheReadTokens` → cache read,
//! `cacheCreationTokens` → cache write, `thinkingTokens` → reasoning, and output =
//! `outputTokens` — taken to already include `thinkingTokens`, the way the providers' own
//! output counts do. Evidence: in the one real settings file (an OpenAI model, output 1450,
//! thinking 1088) the session's visible output — five tool calls and a short reply, about 700
//! characters — is ~200 tokens, which fits 1450 − 1088 = 362 and not 1450. ccusage assumes the
//! opposite and adds the two; where a file proves them disjoint (thinking > output, impossible
//! if output included it) we add them too. The model for pricing is `model` as written
//! (`custom:…` BYOK names are the price table's to normalise) — the total has no per-model
//! split, so a session that switched models is priced at the one it uses now (ccusage does
//! the same); the provider is `providerLock` (`apiProviderLock` in 2025 files);
//! the explicit duration is `assistantActiveTimeMs`. Droid records no cost. The settings carry
//! no time of activity (`providerLockTimestamp` is when the provider was locked). So that the
//! session is created from its transcript (start time, title, project) whichever file changed
//! first: the settings unit names the transcript as its leader (read first); its facts carry
//! the transcript's first message time; a settings file saved before its transcript holds a
//! message waits (it is read again on its next save or the next scan); one without a
//! transcript at all falls back to `providerLockTimestamp`.
//!
//! Why one file of ~700 lines of code: the transcript and its `.settings.json` are one format
//! (the settings' running totals are attributed to the transcript's session and time), read by
//! one parser state; the tests below it make up the rest.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{
    MessagePayload, Part, Role, SourceId, Tokens, content_hash, parse_timestamp_ms,
};
use crate::sources::codex::short_title;
use crate::sources::json::{Field, Payload, TextOrList, json_object, parse_object};
use crate::sources::{
    Access, LineError, LineParser, ParseOptions, Record, SessionFacts, Snapshot, Source,
    SourceError, Unit, UsageFact, UsageMerge,
};

/// The usage key the settings' running total is kept under (one per session).
pub const USAGE_KEY: &str = "settings.tokenUsage";

const SETTINGS_SUFFIX: &str = ".settings.json";

/// Which of a session's two files a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DroidFile {
    /// `<session>.jsonl`: append-only (but for its first line), read incrementally.
    Transcript,
    /// `<session>.settings.json`: rewritten whole, read as a snapshot.
    Settings,
}

/// Factory Droid as a [`Source`]. Its roots are `.factory` directories (`~/.factory`; Droid has
/// no confirmed environment override, so only the config's `droid_dirs` moves it).
pub struct FactoryDroid;

impl Source for FactoryDroid {
    fn id(&self) -> SourceId {
        SourceId::FactoryDroid
    }

    fn default_roots(&self, _env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        vec![home.join(".factory")]
    }

    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        watch_dirs(roots)
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        scan_files(roots)
            .into_iter()
            .map(|(path, kind)| unit_of(path, kind))
            .collect()
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        file_for_path(path, roots).map(|kind| unit_of(path.to_path_buf(), kind))
    }

    fn line_parser(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Box<dyn LineParser>, LineError> {
        Ok(Box::new(DroidParser::new(&unit.path, state, opts)?))
    }

    fn read_snapshot(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        _opts: ParseOptions,
    ) -> Result<Snapshot, SourceError> {
        read_settings(&unit.path, state).map_err(|e| SourceError::Read(e.to_string()))
    }

    /// A settings file follows its transcript: the transcript's unread lines are read first,
    /// so the session is created from them (its start time, title and project) whichever of
    /// the two files changed first.
    fn leader(&self, unit: &Unit) -> Option<Unit> {
        if unit.access != Access::Snapshot {
            return None;
        }
        let sid = session_id_of(&unit.path)?;
        let transcript = unit.path.with_file_name(format!("{sid}.jsonl"));
        Some(Unit::lines(SourceId::FactoryDroid, transcript))
    }

    /// A session's transcript and settings are folded together — by session id, not by
    /// directory, so that copies of one session under two roots are one session in `export`
    /// just as they are one session on the server.
    fn group_key(&self, unit: &Unit) -> String {
        match session_id_of(&unit.path) {
            Some(sid) => format!("factory-droid\0{sid}"),
            None => unit.ledger_key(),
        }
    }
}

fn unit_of(path: PathBuf, kind: DroidFile) -> Unit {
    match kind {
        DroidFile::Transcript => Unit::lines(SourceId::FactoryDroid, path),
        DroidFile::Settings => Unit::snapshot(SourceId::FactoryDroid, path, None),
    }
}

/// The directories to watch: `<root>/sessions` of each root (they may not exist yet).
pub fn watch_dirs(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots.iter().map(|r| r.join("sessions")).collect()
}

/// Lists every transcript and settings file under the roots: `sessions/*` and
/// `sessions/*/*` (the flat and the per-project layouts), sorted.
pub fn scan_files(roots: &[PathBuf]) -> Vec<(PathBuf, DroidFile)> {
    let mut out = Vec::new();
    for sessions in watch_dirs(roots) {
        let Ok(entries) = std::fs::read_dir(&sessions) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if file_type.is_dir() {
                for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    let is_file = inner
                        .file_type()
                        .is_ok_and(|t| t.is_file() || t.is_symlink());
                    let p = inner.path();
                    if let Some(kind) = is_file.then(|| kind_of_name(&p)).flatten() {
                        out.push((p, kind));
                    }
                }
            } else if let Some(kind) = kind_of_name(&path) {
                out.push((path, kind));
            }
        }
    }
    out.sort();
    out
}

/// Whether a changed path is one of Droid's files under the roots, and which.
pub fn file_for_path(path: &Path, roots: &[PathBuf]) -> Option<DroidFile> {
    let kind = kind_of_name(path)?;
    let at_known_depth = watch_dirs(roots).iter().any(|sessions| {
        path.strip_prefix(sessions)
            .is_ok_and(|rel| matches!(rel.components().count(), 1 | 2))
    });
    at_known_depth.then_some(kind)
}

/// The file's kind from its name alone.
fn kind_of_name(path: &Path) -> Option<DroidFile> {
    let name = path.file_name()?.to_str()?;
    if name.starts_with('.') {
        return None; // editor and temporary files
    }
    if let Some(stem) = name.strip_suffix(SETTINGS_SUFFIX) {
        return (!stem.is_empty()).then_some(DroidFile::Settings);
    }
    let stem = name.strip_suffix(".jsonl")?;
    (!stem.is_empty()).then_some(DroidFile::Transcript)
}

/// The session id a Droid file belongs to: its name without `.jsonl` / `.settings.json`.
pub fn session_id_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(SETTINGS_SUFFIX)
        .or_else(|| name.strip_suffix(".jsonl"))?;
    (!stem.is_empty()).then(|| stem.to_string())
}

/// What the parser remembers between reads of one transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// The session id (file stem).
    session: String,
    /// Non-blank lines seen so far (the next line's index for fallback ids).
    lines: u64,
    /// `session_start` facts waiting for the first record of activity.
    pending: Option<SessionFacts>,
    /// A message line or a timestamped bookkeeping line has been seen: session facts are no
    /// longer held back.
    active: bool,
    /// The title candidate (first user prompt) has been emitted.
    titled: bool,
}

/// Incremental parser of one Droid transcript.
pub struct DroidParser {
    state: State,
    opts: ParseOptions,
}

impl DroidParser {
    /// Creates a parser for the transcript at `path`, resuming from `state` when given.
    pub fn new(
        path: &Path,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<DroidParser, LineError> {
        let state = match state {
            Some(v) => super::resume_state(v, "droid")?,
            None => State {
                session: session_id_of(path).unwrap_or_default(),
                lines: 0,
                pending: None,
                active: false,
                titled: false,
            },
        };
        Ok(DroidParser { state, opts })
    }

    fn facts(&self, at_ms: Option<i64>) -> SessionFacts {
        SessionFacts {
            session_id: self.state.session.clone(),
            at_ms,
            ..SessionFacts::default()
        }
    }

    /// Emits the held-back `session_start` facts (once a record of activity arrived).
    fn activate(&mut self, out: &mut Vec<Record>) {
        self.state.active = true;
        if let Some(pending) = self.state.pending.take() {
            out.push(Record::Session(pending));
        }
    }

    fn session_start(&mut self, v: &Line<'_>, out: &mut Vec<Record>) {
        let mut facts = self.facts(None);
        let settled = v.is_session_title_manually_set.is_true()
            || (v.session_title_auto_stage.is_present() && !v.session_title_auto_stage.is_null());
        if settled {
            facts.title_override = v.title.non_blank().map(short_title);
        }
        facts.project_path = v.cwd.non_blank().map(str::to_string);
        if self.state.active {
            out.push(Record::Session(facts));
        } else {
            // A second `session_start` before any message replaces the first.
            self.state.pending = Some(facts);
        }
    }

    fn message_line(&mut self, v: Line<'_>, index: u64, out: &mut Vec<Record>) {
        let msg = v.message;
        if !msg.is_object {
            return;
        }
        let at = v.timestamp.as_str().and_then(parse_timestamp_ms);
        self.activate(out);
        let visibility = if msg.visibility.is_present() {
            msg.visibility.as_str()
        } else {
            v.visibility.as_str()
        };
        if visibility == Some("llm_only") {
            // Hidden context Droid injects for the model: not part of the conversation.
            out.push(Record::Session(self.facts(at)));
            return;
        }
        let role = match msg.role.as_str() {
            Some("user") => Role::User,
            Some("assistant") => Role::Assistant,
            _ => {
                out.push(Record::Session(self.facts(at)));
                return;
            }
        };
        let id = match v.id.non_blank() {
            Some(id) => id.to_string(),
            None => format!("{}:{index}", self.state.session),
        };
        let blocks: Vec<Block<'_>> = match msg.content {
            TextOrList::List(blocks) => blocks,
            TextOrList::Text(text) => vec![Block {
                is_object: true,
                kind: Field::Str(Cow::Borrowed("text")),
                text: Field::Str(text),
                ..Block::default()
            }],
            TextOrList::Other => Vec::new(),
        };

        let mut texts: Vec<Cow<'_, str>> = Vec::new();
        let mut parts: Vec<Part> = Vec::new();
        let mut tool_calls: Vec<(String, Part)> = Vec::new();
        for (i, block) in blocks.into_iter().enumerate() {
            match block.kind.as_str().unwrap_or_default() {
                "text" => {
                    if block.text.non_blank().is_some()
                        && let Some(text) = block.text.into_str()
                        && !(role == Role::User && is_injected(&text))
                    {
                        texts.push(text);
                    }
                }
                "thinking" if self.opts.sync_thinking => {
                    if let Some(t) = block.thinking.non_blank() {
                        parts.push(Part::thinking(t));
                    }
                }
                "tool_use" if self.opts.sync_tool_calls => {
                    let tool_id = block
                        .id
                        .non_blank()
                        .map_or_else(|| i.to_string(), str::to_string);
                    let name = block.name.non_blank().unwrap_or("tool");
                    let part = Part::tool_call(name, block.input.or_null());
                    tool_calls.push((format!("{id}-tool-{tool_id}"), part));
                }
                "tool_result" if self.opts.sync_tool_calls => {
                    parts.push(Part::tool_result(block.content.tool_result()));
                }
                _ => {}
            }
        }
        if self.opts.sync_thinking
            && let Some(t) = msg.chat_completion_reasoning_content.non_blank()
        {
            parts.insert(0, Part::thinking(t));
        }

        let mut facts = self.facts(at);
        if role == Role::User
            && !self.state.titled
            && let Some(first) = texts.first()
        {
            self.state.titled = true;
            facts.title = Some(short_title(first));
        }
        out.push(Record::Session(facts));

        let text = Some(texts.join("\n\n")).filter(|t| !t.is_empty());
        if text.is_some() || !parts.is_empty() {
            // A user line that only returns tool results is the tools speaking, not the user.
            let role = if role == Role::User && text.is_none() {
                Role::Tool
            } else {
                role
            };
            let mut all: Vec<Part> = text.iter().map(|t| Part::text(t.clone())).collect();
            all.extend(parts);
            out.push(Record::Message(self.payload(id, role, text, all, at)));
        }
        for (call_id, part) in tool_calls {
            out.push(Record::Message(self.payload(
                call_id,
                Role::Assistant,
                None,
                vec![part],
                at,
            )));
        }
    }

    fn payload(
        &self,
        external_id: String,
        role: Role,
        text: Option<String>,
        parts: Vec<Part>,
        at: Option<i64>,
    ) -> MessagePayload {
        MessagePayload {
            session_external_id: self.state.session.clone(),
            external_id,
            role,
            text_content: text,
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: SourceId::FactoryDroid.as_str().into(),
            parts,
            created_at: at,
        }
    }
}

impl LineParser for DroidParser {
    fn parse_line(&mut self, line: &[u8], out: &mut Vec<Record>) -> Result<(), LineError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(()); // not a line of the file's own numbering
        }
        let index = self.state.lines;
        self.state.lines += 1;
        // Every string of a line had to be UTF-8 (a `Value` was built of it): checked once
        // here, then the strings read are not validated again.
        let text = std::str::from_utf8(line).map_err(|e| LineError::Malformed(e.to_string()))?;
        let v: Line<'_> = parse_object(text).map_err(LineError::Malformed)?;
        if self.state.session.is_empty() {
            return Ok(()); // a file name without a stem names no session
        }
        match v.kind.as_str() {
            Some("session_start") => self.session_start(&v, out),
            Some("message") => self.message_line(v, index, out),
            Some("todo_state" | "compaction_state" | "agent_turn_outcome") => {
                if let Some(at) = v.timestamp.as_str().and_then(parse_timestamp_ms) {
                    self.activate(out);
                    out.push(Record::Session(self.facts(Some(at))));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn save_state(&self) -> Value {
        serde_json::to_value(&self.state).unwrap_or(Value::Null)
    }
}

/// A failure reading a settings file.
#[derive(Debug, thiserror::Error)]
pub enum DroidError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a JSON object (for instance caught half-written).
    #[error("{path}: not a Droid settings object: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Reads `<session>.settings.json` as a snapshot. An unchanged file (same content hash as in
/// `state`) yields no records; a vanished one yields none either (what it contributed stays).
pub fn read_settings(path: &Path, state: Option<&Value>) -> Result<Snapshot, DroidError> {
    let unchanged = |state: Option<&Value>| Snapshot {
        records: Vec::new(),
        state: state.cloned().unwrap_or(Value::Null),
        more: false,
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(unchanged(state)),
        Err(source) => {
            return Err(DroidError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let hash = format!("{:032x}", content_hash(&bytes));
    if state.and_then(|s| s.get("hash")).and_then(Value::as_str) == Some(hash.as_str()) {
        return Ok(unchanged(state));
    }
    let malformed = |reason: String| DroidError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let Some(session) = session_id_of(path) else {
        return Err(malformed("the file name names no session".into()));
    };
    let settings: Value = serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
    if !settings.is_object() {
        return Err(malformed("the top level is not an object".into()));
    }
    let transcript = path.with_file_name(format!("{session}.jsonl"));
    let at_ms = match first_activity(&transcript) {
        FirstActivity::At(ms) => Some(ms),
        // Droid may save the settings before the first message reaches the transcript. Read
        // now, this unit would create the session on the server without its time, which the
        // server fixes at insert: wait (the next save, or the next scan, reads it again).
        FirstActivity::NotYet => return Ok(unchanged(state)),
        // No transcript (or none readable in its first lines): the provider lock time is the
        // best start time there is.
        FirstActivity::Unknown => {
            non_blank(settings.get("providerLockTimestamp")).and_then(parse_timestamp_ms)
        }
    };
    let mut records = settings_records(&session, &settings);
    if let Some(Record::Session(facts)) = records.first_mut() {
        // Whichever of the two files is read first creates the session with its true
        // `createdAt`. The time is one of the transcript's own, so it never widens its span.
        facts.at_ms = at_ms;
    }
    Ok(Snapshot {
        records,
        state: serde_json::json!({ "hash": hash }),
        more: false,
    })
}

/// What a transcript's first lines say about when the session started.
enum FirstActivity {
    /// The time of its first record of activity.
    At(i64),
    /// The transcript exists and was read to its end, but holds no activity yet.
    NotYet,
    /// No transcript, or nothing found within the lines looked at.
    Unknown,
}

/// The time of a transcript's first record of activity (the first `message` line, or a
/// timestamped bookkeeping line — the lines whose time the parser counts), from at most its
/// first 64 KiB of lines.
fn first_activity(transcript: &Path) -> FirstActivity {
    super::with_first_lines(transcript, |chunk| {
        let found = chunk.iter_lines().find_map(|line| {
            let text = std::str::from_utf8(line).ok()?;
            let v: Line<'_> = serde_json::from_str(text).ok()?;
            let counted = match v.kind.as_str()? {
                "message" => v.message.is_object,
                "todo_state" | "compaction_state" | "agent_turn_outcome" => true,
                _ => false,
            };
            counted
                .then(|| v.timestamp.as_str().and_then(parse_timestamp_ms))
                .flatten()
        });
        match found {
            Some(ms) => FirstActivity::At(ms),
            None if chunk.more => FirstActivity::Unknown,
            None => FirstActivity::NotYet,
        }
    })
    .unwrap_or(FirstActivity::Unknown)
}

/// Records from one settings object: the model, provider and active time as session facts,
/// and the running `tokenUsage` total as one replace-merged usage fact.
pub fn settings_records(session: &str, settings: &Value) -> Vec<Record> {
    let model = non_blank(settings.get("model")).map(str::to_string);
    let mut out = vec![Record::Session(SessionFacts {
        session_id: session.to_string(),
        model: model.clone(),
        provider: non_blank(settings.get("providerLock"))
            .or_else(|| non_blank(settings.get("apiProviderLock")))
            .map(str::to_string),
        duration_ms: settings.get("assistantActiveTimeMs").and_then(count),
        ..SessionFacts::default()
    })];
    if let Some(usage) = settings.get("tokenUsage").filter(|u| u.is_object()) {
        out.push(Record::Usage(UsageFact {
            session_id: session.to_string(),
            key: USAGE_KEY.to_string(),
            merge: UsageMerge::Replace,
            model,
            tokens: tokens_of(usage),
            cost: None,
        }));
    }
    out
}

/// The normalised tokens of a `tokenUsage` object (see the module header for the mapping).
pub fn tokens_of(usage: &Value) -> Tokens {
    let n = |k: &str| usage.get(k).and_then(count).unwrap_or(0);
    let (output, thinking) = (n("outputTokens"), n("thinkingTokens"));
    Tokens {
        input: n("inputTokens"),
        cache_read: n("cacheReadTokens"),
        cache_write: n("cacheCreationTokens"),
        cache_write_1h: 0,
        output: if thinking > output {
            output.saturating_add(thinking)
        } else {
            output
        },
        reasoning: thinking,
    }
}

/// A non-negative count: an integer, or a finite float (truncated). Anything else is absent.
fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

fn non_blank(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

/// Context Droid adds to a user message for the model (`<system-reminder>…`), not typed text.
fn is_injected(text: &str) -> bool {
    text.trim_start().starts_with("<system-reminder>")
}

json_object! {
    /// The fields of a transcript line that are read (`session_start` and `message` lines,
    /// and the time of bookkeeping lines).
    struct Line<'a> {
        kind: Field<'a> = "type",
        id: Field<'a> = "id",
        timestamp: Field<'a> = "timestamp",
        message: Message<'a> = "message",
        visibility: Field<'a> = "visibility",
        title: Field<'a> = "title",
        cwd: Field<'a> = "cwd",
        is_session_title_manually_set: Field<'a> = "isSessionTitleManuallySet",
        session_title_auto_stage: Field<'a> = "sessionTitleAutoStage",
    }
}

json_object! {
    /// A `message` line's message.
    struct Message<'a> {
        role: Field<'a> = "role",
        visibility: Field<'a> = "visibility",
        content: TextOrList<'a, Block<'a>> = "content",
        chat_completion_reasoning_content: Field<'a> = "chatCompletionReasoningContent",
    }
}

json_object! {
    /// A content block: text, thinking, tool use or result.
    struct Block<'a> {
        kind: Field<'a> = "type",
        text: Field<'a> = "text",
        thinking: Field<'a> = "thinking",
        id: Field<'a> = "id",
        name: Field<'a> = "name",
        input: Payload = "input",
        content: Payload = "content",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "0c0ffee0-0000-4000-8000-000000000001";

    fn parse(lines: &[&str], opts: ParseOptions) -> Vec<Record> {
        let path = PathBuf::from(format!("/h/.factory/sessions/-p/{SID}.jsonl"));
        let mut p = DroidParser::new(&path, None, opts).unwrap();
        let mut out = Vec::new();
        for l in lines {
            let _ = p.parse_line(l.as_bytes(), &mut out);
        }
        out
    }

    fn messages(records: &[Record]) -> Vec<&MessagePayload> {
        records
            .iter()
            .filter_map(|r| match r {
                Record::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn file_kinds_follow_the_names_and_depths() {
        let roots = vec![PathBuf::from("/h/.factory")];
        let at = |p: &str| file_for_path(Path::new(p), &roots);
        assert_eq!(
            at("/h/.factory/sessions/a.jsonl"),
            Some(DroidFile::Transcript)
        );
        assert_eq!(
            at("/h/.factory/sessions/-x/a.settings.json"),
            Some(DroidFile::Settings)
        );
        assert_eq!(
            at("/h/.factory/sessions/-x/a.jsonl"),
            Some(DroidFile::Transcript)
        );
        assert_eq!(at("/h/.factory/sessions/-x/y/a.jsonl"), None, "too deep");
        assert_eq!(at("/h/.factory/settings.json"), None);
        assert_eq!(at("/h/.factory/sessions/-x/a.json"), None);
        assert_eq!(at("/h/.factory/sessions/-x/.settings.json"), None);
        assert_eq!(at("/elsewhere/sessions/a.jsonl"), None);
        assert_eq!(
            session_id_of(Path::new("/s/abc.settings.json")).as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn session_start_waits_for_the_first_message() {
        let start = r#"{"type":"session_start","id":"x","title":"Draft","cwd":"/w/p"}"#;
        assert!(parse(&[start], ParseOptions::default()).is_empty());
        let msg = r#"{"type":"message","id":"m1","timestamp":"2026-01-01T00:00:01Z","message":{"role":"user","content":[{"type":"text","text":"hello"}]}}"#;
        let records = parse(&[start, msg], ParseOptions::default());
        let Record::Session(first) = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!(first.project_path.as_deref(), Some("/w/p"));
        assert_eq!(
            first.title_override, None,
            "an unsettled title is a placeholder"
        );
        let Record::Session(second) = &records[1] else {
            panic!("{records:?}")
        };
        assert_eq!(second.title.as_deref(), Some("hello"));
        assert_eq!(second.at_ms, Some(1_767_225_601_000));
    }

    #[test]
    fn settled_titles_override_the_first_prompt() {
        for flag in [
            r#""isSessionTitleManuallySet":true"#,
            r#""sessionTitleAutoStage":"first_message""#,
            r#""sessionTitleAutoStage":2"#,
        ] {
            let start = format!(r#"{{"type":"session_start","title":"Named",{flag}}}"#);
            let msg = r#"{"type":"message","id":"m1","message":{"role":"user","content":"hi"}}"#;
            let records = parse(&[&start, msg], ParseOptions::default());
            assert!(
                records.iter().any(|r| matches!(r, Record::Session(f) if f.title_override.as_deref() == Some("Named"))),
                "{flag}: {records:?}"
            );
        }
        let manual_false =
            r#"{"type":"session_start","title":"Named","isSessionTitleManuallySet":false}"#;
        let msg = r#"{"type":"message","id":"m1","message":{"role":"user","content":"hi"}}"#;
        let records = parse(&[manual_false, msg], ParseOptions::default());
        assert!(
            records
                .iter()
                .all(|r| !matches!(r, Record::Session(f) if f.title_override.is_some()))
        );
    }

    #[test]
    fn tool_calls_get_droid_sync_ids_and_results_join_their_line() {
        let lines = [
            r#"{"type":"message","id":"a1","timestamp":"2026-01-01T00:00:01Z","message":{"role":"assistant","content":[{"type":"text","text":"Reading."},{"type":"tool_use","id":"call_1","name":"Read","input":{"file_path":"/x"}},{"type":"tool_use","name":"LS","input":{}}]}}"#,
            r#"{"type":"message","id":"u1","timestamp":"2026-01-01T00:00:02Z","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":[{"type":"text","text":"data"}]},{"type":"tool_result","tool_use_id":"x","content":null}]}}"#,
        ];
        let records = parse(&lines, ParseOptions::default());
        let ids: Vec<(&str, Role)> = messages(&records)
            .iter()
            .map(|m| (m.external_id.as_str(), m.role))
            .collect();
        assert_eq!(
            ids,
            [
                ("a1", Role::Assistant),
                ("a1-tool-call_1", Role::Assistant),
                ("a1-tool-2", Role::Assistant),
                ("u1", Role::Tool),
            ]
        );
        let m = messages(&records);
        assert_eq!(
            m[1].parts,
            [Part::tool_call(
                "Read",
                serde_json::json!({"file_path": "/x"})
            )]
        );
        assert_eq!(
            m[3].parts,
            [
                Part::tool_result(Value::String("data".into())),
                Part::tool_result(Value::String(String::new()))
            ]
        );
        let off = parse(
            &lines,
            ParseOptions {
                sync_tool_calls: false,
                ..ParseOptions::default()
            },
        );
        let ids: Vec<&str> = messages(&off)
            .iter()
            .map(|m| m.external_id.as_str())
            .collect();
        assert_eq!(ids, ["a1"]);
    }

    #[test]
    fn hidden_and_injected_text_is_not_sent() {
        let lines = [
            r#"{"type":"message","id":"h1","message":{"role":"user","visibility":"llm_only","content":[{"type":"text","text":"secret context"}]}}"#,
            r#"{"type":"message","id":"u1","message":{"role":"user","content":[{"type":"text","text":"<system-reminder>be nice</system-reminder>"},{"type":"text","text":"real prompt"}]}}"#,
        ];
        let records = parse(&lines, ParseOptions::default());
        let m = messages(&records);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].text_content.as_deref(), Some("real prompt"));
        assert!(
            records.iter().any(
                |r| matches!(r, Record::Session(f) if f.title.as_deref() == Some("real prompt"))
            )
        );
    }

    #[test]
    fn thinking_is_opt_in() {
        let line = r#"{"type":"message","id":"a1","message":{"role":"assistant","chatCompletionReasoningContent":"why","content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"ok"}]}}"#;
        let off = parse(&[line], ParseOptions::default());
        assert_eq!(messages(&off)[0].parts, [Part::text("ok")]);
        let on = parse(
            &[line],
            ParseOptions {
                sync_thinking: true,
                ..ParseOptions::default()
            },
        );
        assert_eq!(
            messages(&on)[0].parts,
            [
                Part::text("ok"),
                Part::thinking("why"),
                Part::thinking("hmm")
            ]
        );
    }

    #[test]
    fn lines_without_ids_fall_back_to_their_position() {
        let lines = [
            r#"{"type":"session_start"}"#,
            "",
            "not json",
            r#"{"type":"message","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"}]}}"#,
        ];
        let records = parse(&lines, ParseOptions::default());
        let ids: Vec<String> = messages(&records)
            .iter()
            .map(|m| m.external_id.clone())
            .collect();
        assert_eq!(
            ids,
            [format!("{SID}:2")],
            "blank lines are not counted, bad ones are"
        );
    }

    #[test]
    fn bad_lines_are_errors_and_unknown_types_are_skipped() {
        let path = PathBuf::from(format!("/s/{SID}.jsonl"));
        let mut p = DroidParser::new(&path, None, ParseOptions::default()).unwrap();
        let mut out = Vec::new();
        assert!(p.parse_line(b"{\"type\":", &mut out).is_err());
        assert!(p.parse_line(b"[1,2]", &mut out).is_err());
        assert!(
            p.parse_line(b"{\"type\":\"future_thing\",\"x\":1}", &mut out)
                .is_ok()
        );
        assert!(
            p.parse_line(b"{\"type\":\"message\",\"message\":7}", &mut out)
                .is_ok()
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(
            DroidParser::new(
                &path,
                Some(&serde_json::json!({"lines": "x"})),
                ParseOptions::default()
            )
            .is_err()
        );
    }

    #[test]
    fn tokens_follow_the_documented_mapping() {
        let real = serde_json::json!({"inputTokens":6743,"outputTokens":1450,"cacheCreationTokens":0,"cacheReadTokens":42496,"thinkingTokens":1088});
        let t = tokens_of(&real);
        assert_eq!(
            (t.input, t.cache_read, t.cache_write, t.output, t.reasoning),
            (6743, 42_496, 0, 1450, 1088)
        );
        assert_eq!(t.prompt(), 6743 + 42_496);
        // Thinking larger than output cannot be part of it: the two are added.
        let disjoint = tokens_of(&serde_json::json!({"outputTokens":10,"thinkingTokens":30}));
        assert_eq!(disjoint.output, 40);
        // Absurd values saturate; wrong types count as absent.
        let absurd = tokens_of(
            &serde_json::json!({"outputTokens":u64::MAX,"thinkingTokens":u64::MAX,"inputTokens":-5,"cacheReadTokens":"7","cacheCreationTokens":2.9}),
        );
        assert_eq!(
            (
                absurd.output,
                absurd.input,
                absurd.cache_read,
                absurd.cache_write
            ),
            (u64::MAX, 0, 0, 2)
        );
    }

    #[test]
    fn settings_give_one_replacing_usage_fact() {
        let s = serde_json::json!({"model":"custom:BYOK-GPT-5-MINI-0","providerLock":"openai","assistantActiveTimeMs":27913,"tokenUsage":{"inputTokens":1}});
        let records = settings_records("s", &s);
        let [Record::Session(f), Record::Usage(u)] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(f.model.as_deref(), Some("custom:BYOK-GPT-5-MINI-0"));
        assert_eq!(f.provider.as_deref(), Some("openai"));
        assert_eq!(f.duration_ms, Some(27_913));
        assert_eq!(f.at_ms, None, "the lock time is not activity");
        assert_eq!((u.key.as_str(), u.merge), (USAGE_KEY, UsageMerge::Replace));
        assert_eq!(u.model.as_deref(), Some("custom:BYOK-GPT-5-MINI-0"));
        assert_eq!(settings_records("s", &serde_json::json!({})).len(), 1);
    }
}
