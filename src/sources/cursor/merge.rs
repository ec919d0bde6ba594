//! The merge of a conversation's transcript lines and spooled hook events into records: which
//! line takes over which event's message, where tool results go, subagent lines, and each
//! message's time (the rules are in the `cursor` module header).
use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::subagent_marker;
use super::transcript::{Entry, Line, Transcript, prompt_matches, reply_matches};
use crate::model::{MessagePayload, Part, Role, SourceId};
use crate::sources::codex::short_title;
use crate::sources::cursor_spool::SpoolEvent;
use crate::sources::{ParseOptions, Record, SessionFacts};

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
