//! Wire types sent to OpenSync (`SessionPayload`, `MessagePayload`, `Part`), the source ids,
//! and small helpers every layer shares (timestamp parsing, content hashing).
//!
//! Serialisation rules from the server spec: absent fields are omitted, never `null`; numbers
//! are JSON numbers; a part is exactly `{type, content}`.
//!
//! Over 700 lines only with its tests (~620 lines of code: the wire types, their fast writer
//! and length counter, time parsing).

use serde::{Deserialize, Serialize};

/// Which tool wrote a session. The string forms are the `source` ids the dashboard knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SourceId {
    /// Claude Code (`~/.claude/projects`).
    #[serde(rename = "claude-code")]
    ClaudeCode,
    /// Codex CLI (`~/.codex/sessions`).
    #[serde(rename = "codex-cli")]
    CodexCli,
    /// OpenCode (JSON storage or `opencode.db`).
    #[serde(rename = "opencode")]
    OpenCode,
    /// pi coding agent (`~/.pi/agent/sessions`).
    #[serde(rename = "pi")]
    Pi,
    /// Factory Droid (`~/.factory/sessions`).
    #[serde(rename = "factory-droid")]
    FactoryDroid,
    /// Cursor (agent transcripts and hook events; the dashboard's `cursor-sync`).
    #[serde(rename = "cursor-sync")]
    Cursor,
}

impl SourceId {
    /// Every source, in display order.
    pub const ALL: [SourceId; 6] = [
        SourceId::ClaudeCode,
        SourceId::CodexCli,
        SourceId::OpenCode,
        SourceId::Pi,
        SourceId::FactoryDroid,
        SourceId::Cursor,
    ];

    /// The `source` string sent to the server.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceId::ClaudeCode => "claude-code",
            SourceId::CodexCli => "codex-cli",
            SourceId::OpenCode => "opencode",
            SourceId::Pi => "pi",
            SourceId::FactoryDroid => "factory-droid",
            SourceId::Cursor => "cursor-sync",
        }
    }

    /// Parses a user-supplied source name (accepts a few aliases).
    pub fn parse(name: &str) -> Option<SourceId> {
        match name.trim().to_ascii_lowercase().as_str() {
            "claude-code" | "claude" | "claudecode" => Some(SourceId::ClaudeCode),
            "codex-cli" | "codex" => Some(SourceId::CodexCli),
            "opencode" | "open-code" => Some(SourceId::OpenCode),
            "pi" => Some(SourceId::Pi),
            "factory-droid" | "droid" | "factory" => Some(SourceId::FactoryDroid),
            "cursor-sync" | "cursor" => Some(SourceId::Cursor),
            _ => None,
        }
    }
}

impl std::fmt::Display for SourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Body of `POST /sync/session` (and, minus `createdAt`, one entry of `/sync/batch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionPayload {
    /// The tool's session id; unique per user.
    pub external_id: String,
    /// Stable title (changing it resets the server's search text).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub title: Option<String>,
    /// Working directory of the session.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_path: Option<String>,
    /// Last path component of `project_path`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub project_name: Option<String>,
    /// Most recent model used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    /// Model provider (`anthropic`, `openai`, ...).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider: Option<String>,
    /// One of the dashboard's source ids.
    pub source: String,
    /// Every input token processed: uncached + cache reads + cache writes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt_tokens: Option<u64>,
    /// Output tokens including reasoning.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub completion_tokens: Option<u64>,
    /// USD.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cost: Option<f64>,
    /// Wall time from first to last record.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    /// Epoch milliseconds of the session start; honoured on insert only, never sent in batches.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_at: Option<i64>,
}

/// A message role the server's validator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A human prompt.
    User,
    /// Model output (text or tool calls).
    Assistant,
    /// System / bookkeeping text.
    System,
    /// A tool result.
    Tool,
    /// Anything else.
    Unknown,
}

/// One part of a message: exactly `{type, content}` (the validator rejects other keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// `text`, `tool-call`, `tool-result`, `reasoning`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Part content: a string for text, `{name, args}` for tool calls, `{result}` / a string
    /// for tool results.
    pub content: serde_json::Value,
}

impl Part {
    /// A `text` part.
    pub fn text(text: impl Into<String>) -> Part {
        Part {
            kind: "text".into(),
            content: serde_json::Value::String(text.into()),
        }
    }

    /// A `tool-call` part in the shape the dashboard renders: `{name, args}`. The dashboard
    /// prints `args` as indented JSON, so arguments that arrive as a string are made readable:
    /// a string holding JSON is parsed; other multi-line text (a patch) becomes its lines.
    pub fn tool_call(name: impl Into<String>, args: serde_json::Value) -> Part {
        let name = name.into();
        let name = if name.trim().is_empty() {
            "tool".to_string()
        } else {
            name
        };
        let args = match args {
            serde_json::Value::String(text) => {
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => v,
                    _ if text.contains('\n') => serde_json::json!({
                        "input": text.lines().collect::<Vec<_>>()
                    }),
                    _ => serde_json::json!({ "input": text }),
                }
            }
            other => other,
        };
        Part {
            kind: "tool-call".into(),
            content: serde_json::json!({ "name": name, "args": args }),
        }
    }

    /// A `tool-result` part. The dashboard shows `content.result`, but an empty or otherwise
    /// falsy result (`""`, `0`, `false`, `null`) would make it print the whole
    /// `{ "result": "" }` object, so such a result is sent bare (an empty result shows empty).
    pub fn tool_result(result: serde_json::Value) -> Part {
        use serde_json::Value;
        let falsy = match &result {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_f64() == Some(0.0),
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        let content = match result {
            Value::Null => Value::String(String::new()),
            r if falsy => r,
            r => serde_json::json!({ "result": r }),
        };
        Part {
            kind: "tool-result".into(),
            content,
        }
    }

    /// Thinking / reasoning text (sent only when `sync_thinking` is on), as a `text` part
    /// with a visible marker: the dashboard draws only text, tool-call and tool-result parts.
    pub fn thinking(text: impl AsRef<str>) -> Part {
        Part::text(format!("{THINKING_MARKER}\n{}", text.as_ref()))
    }
}

/// How thinking text is marked in the part that carries it.
pub const THINKING_MARKER: &str = "[thinking]";

/// Body of `POST /sync/message` (and, minus `createdAt`, one entry of `/sync/batch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePayload {
    /// The owning session's external id.
    pub session_external_id: String,
    /// Globally unique, deterministic message id (the server looks it up across all users).
    pub external_id: String,
    /// Role; cannot change after the first insert.
    pub role: Role,
    /// Plain text of the message (mirrored as a `text` part).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub text_content: Option<String>,
    /// Model that produced it (assistant messages).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    /// Input tokens of the request that produced it, when the tool says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt_tokens: Option<u64>,
    /// Output tokens of the request that produced it, when the tool says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub completion_tokens: Option<u64>,
    /// How long producing it took, when the tool says.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
    /// Source id (used when the message auto-creates its session).
    pub source: String,
    /// Full parts list; an update replaces the stored parts, so always send all of them.
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Epoch milliseconds; honoured on insert only, never sent in batches.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_at: Option<i64>,
}

/// Appends `message` as JSON to `out`: exactly the bytes `serde_json::to_writer` writes for
/// it (the tests hold it to that on arbitrary messages), written faster for long text —
/// strings are scanned for the bytes JSON escapes eight at a time, where `serde_json` looks
/// at every byte through a table. `export` writes every message this way.
pub fn write_message_json(out: &mut Vec<u8>, message: &MessagePayload) {
    let m = message;
    out.extend_from_slice(b"{\"sessionExternalId\":");
    write_json_str(out, &m.session_external_id);
    out.extend_from_slice(b",\"externalId\":");
    write_json_str(out, &m.external_id);
    out.extend_from_slice(b",\"role\":");
    out.extend_from_slice(match m.role {
        Role::User => b"\"user\"".as_slice(),
        Role::Assistant => b"\"assistant\"",
        Role::System => b"\"system\"",
        Role::Tool => b"\"tool\"",
        Role::Unknown => b"\"unknown\"",
    });
    if let Some(text) = &m.text_content {
        out.extend_from_slice(b",\"textContent\":");
        write_json_str(out, text);
    }
    if let Some(model) = &m.model {
        out.extend_from_slice(b",\"model\":");
        write_json_str(out, model);
    }
    for (key, value) in [
        (b",\"promptTokens\":".as_slice(), m.prompt_tokens),
        (b",\"completionTokens\":", m.completion_tokens),
        (b",\"durationMs\":", m.duration_ms),
    ] {
        if let Some(n) = value {
            out.extend_from_slice(key);
            out.extend_from_slice(n.to_string().as_bytes());
        }
    }
    out.extend_from_slice(b",\"source\":");
    write_json_str(out, &m.source);
    out.extend_from_slice(b",\"parts\":[");
    for (i, part) in m.parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"type\":");
        write_json_str(out, &part.kind);
        out.extend_from_slice(b",\"content\":");
        write_json_value(out, &part.content);
        out.push(b'}');
    }
    out.push(b']');
    if let Some(at) = m.created_at {
        out.extend_from_slice(b",\"createdAt\":");
        out.extend_from_slice(at.to_string().as_bytes());
    }
    out.push(b'}');
}

/// Appends `value` as compact JSON, as `serde_json` writes it (object keys in the map's order).
pub fn write_json_value(out: &mut Vec<u8>, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are rare in content: `serde_json`'s own formatting, to the digit.
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, key);
                out.push(b':');
                write_json_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes it: `"` and `\\`, the short
/// forms `\b \t \n \f \r`, other control bytes as `\u00xx`; everything else as it is.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut clean_from = 0;
    let mut from = 0;
    while let Some(at) = next_escape(bytes, from) {
        out.extend_from_slice(&bytes[clean_from..at]);
        let b = bytes[at];
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x09 => b't',
            0x0A => b'n',
            0x0C => b'f',
            0x0D => b'r',
            _ => b'u',
        };
        if short == b'u' {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xF)],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', short]);
        }
        from = at + 1;
        clean_from = from;
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

/// The length of `value`'s compact JSON text (`serde_json::to_vec(value).len()`), counted
/// without writing it: strings are measured by the same eight-bytes-at-a-time scan as
/// [`write_json_str`], where encoding to a counter went through `serde_json`'s writer byte by
/// byte (shaping measures every tool result whose bound is over the part cap).
pub fn json_value_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => n.to_string().len(),
        Value::String(s) => json_str_len(s),
        Value::Array(items) => items.iter().fold(1 + items.len().max(1), |n, v| {
            n.saturating_add(json_value_len(v))
        }),
        Value::Object(map) => map.iter().fold(1 + map.len().max(1), |n, (k, v)| {
            n.saturating_add(json_str_len(k) + 1)
                .saturating_add(json_value_len(v))
        }),
    }
}

/// The length of `s` as a JSON string written by [`write_json_str`]: quotes, and two bytes for
/// each short escape, six for each `\u00xx`.
pub fn json_str_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    let mut len = bytes.len() + 2;
    let mut from = 0;
    while let Some(at) = next_escape(bytes, from) {
        len += match bytes[at] {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 1,
            _ => 5,
        };
        from = at + 1;
    }
    len
}

/// The position of the first byte at or after `from` that JSON escapes (below 0x20, `"`,
/// `\\`), looking at eight bytes at a time.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    while let Some(chunk) = bytes.get(from..from + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        // The classic "has a byte below n" / "has a zero byte" tests: borrows run only
        // upwards from a flagged byte, so the lowest flag is exactly the first such byte.
        let below_space = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flags = (below_space
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGHS;
        if flags != 0 {
            return Some(from + (flags.trailing_zeros() / 8) as usize);
        }
        from += 8;
    }
    bytes
        .get(from..)?
        .iter()
        .position(|&b| b < 0x20 || b == b'"' || b == b'\\')
        .map(|i| from + i)
}

/// Token counts normalised across tools (see DESIGN "Tokens and cost").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tokens {
    /// Input tokens not served from cache.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache (all of them: 5-minute and 1-hour writes).
    pub cache_write: u64,
    /// The part of `cache_write` written with the 1-hour lifetime (billed at a higher rate
    /// than 5-minute writes; Claude Code 2.x records it as
    /// `usage.cache_creation.ephemeral_1h_input_tokens`).
    #[serde(default)]
    pub cache_write_1h: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Reasoning tokens (already inside `output`; informational).
    pub reasoning: u64,
}

impl Tokens {
    /// `promptTokens`: every input token the model processed.
    pub fn prompt(&self) -> u64 {
        // Saturating everywhere: counts come from files anyone can write; absurd values
        // (found by fuzzing) must not overflow.
        self.input
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Field-wise sum (saturating).
    pub fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
        self.cache_write_1h = self.cache_write_1h.saturating_add(other.cache_write_1h);
        self.output = self.output.saturating_add(other.output);
        self.reasoning = self.reasoning.saturating_add(other.reasoning);
    }

    /// Field-wise difference, floored at zero (retracting a contribution added earlier).
    pub fn sub(&mut self, other: &Tokens) {
        self.input = self.input.saturating_sub(other.input);
        self.cache_read = self.cache_read.saturating_sub(other.cache_read);
        self.cache_write = self.cache_write.saturating_sub(other.cache_write);
        self.cache_write_1h = self.cache_write_1h.saturating_sub(other.cache_write_1h);
        self.output = self.output.saturating_sub(other.output);
        self.reasoning = self.reasoning.saturating_sub(other.reasoning);
    }

    /// Field-wise maximum (Claude's streaming snapshots: the last line holds the final count).
    pub fn max_with(&mut self, other: &Tokens) {
        self.input = self.input.max(other.input);
        self.cache_read = self.cache_read.max(other.cache_read);
        self.cache_write = self.cache_write.max(other.cache_write);
        self.cache_write_1h = self.cache_write_1h.max(other.cache_write_1h);
        self.output = self.output.max(other.output);
        self.reasoning = self.reasoning.max(other.reasoning);
    }

    /// True when every field is zero.
    pub fn is_zero(&self) -> bool {
        *self == Tokens::default()
    }
}

/// Parses an RFC 3339 timestamp (`2026-05-11T08:26:55.042Z`, offsets allowed) to epoch ms.
/// Returns `None` for anything it does not understand rather than guessing.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 19 {
        return None;
    }
    // Every field is 2 to 4 digits: summed directly (this runs for every line read).
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        b.get(r)?.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &b[start..i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..3 {
            millis = millis * 10 + frac.get(k).map_or(0, |d| i64::from(d - b'0'));
        }
    }
    let offset_secs = match b.get(i) {
        None => 0,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            let v = h * 3600 + m * 60;
            if *sign == b'+' { v } else { -v }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1000 + millis)
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A fast, stable 128-bit content hash (xxh3) used for identity checks and the ledger's
/// "last acknowledged payload" comparisons. Not cryptographic; collisions are not a concern
/// for change detection.
pub fn content_hash(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// Hash of a serialisable value's JSON encoding.
pub fn json_hash<T: Serialize>(value: &T) -> u128 {
    // Serialising our own payload types cannot fail (no non-string map keys).
    content_hash(&serde_json::to_vec(value).unwrap_or_default())
}

/// Last path component of a project path, for `projectName`.
pub fn project_name(path: &str) -> Option<String> {
    let trimmed = path.trim_end_matches(['/', '\\']);
    let name = trimmed.rsplit(['/', '\\']).next()?;
    (!name.is_empty()).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-12-06 is 20_793 days after the epoch (56 years: 14 leap days; 56*365+14 = 20_454,
        // then Jan..Nov 2026 = 334 days, then 5 more).
        assert_eq!(civil_from_days(20_454 + 334 + 5), (2026, 12, 6));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    use super::*;

    #[test]
    fn token_sums_saturate_instead_of_overflowing() {
        // Found by fuzzing: a transcript may claim any count.
        let mut t = Tokens {
            input: u64::MAX,
            cache_read: 5,
            ..Tokens::default()
        };
        assert_eq!(t.prompt(), u64::MAX);
        t.add(&Tokens {
            input: 1,
            ..Tokens::default()
        });
        assert_eq!(t.input, u64::MAX);
    }

    #[test]
    fn timestamps_parse_to_epoch_millis() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_timestamp_ms("2026-05-11T08:26:55.042Z"),
            Some(1_778_488_015_042)
        );
        assert_eq!(
            parse_timestamp_ms("2026-05-11T11:26:55.042+03:00"),
            parse_timestamp_ms("2026-05-11T08:26:55.042Z")
        );
        assert_eq!(
            parse_timestamp_ms("2025-06-01T10:00:00.123456Z"),
            Some(1_748_772_000_123)
        );
        assert_eq!(parse_timestamp_ms("not a time"), None);
        assert_eq!(parse_timestamp_ms("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp_ms("2026-01-01T00:00:00Zjunk"), None);
    }

    #[test]
    fn absent_fields_are_omitted_never_null() {
        let s = SessionPayload {
            external_id: "s1".into(),
            source: "codex-cli".into(),
            ..Default::default()
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"externalId":"s1","source":"codex-cli"}"#);
        let m = MessagePayload {
            session_external_id: "s1".into(),
            external_id: "s1:1".into(),
            role: Role::User,
            text_content: None,
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            source: "codex-cli".into(),
            parts: vec![Part::text("hi")],
            created_at: None,
        };
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("null"), "{json}");
        assert!(
            json.contains(r#""parts":[{"type":"text","content":"hi"}]"#),
            "{json}"
        );
    }

    fn arbitrary_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            any::<String>().prop_map(serde_json::Value::from),
            "[\\x00-\\x7f\"\\\\é😀]{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The fast writer is `serde_json`, byte for byte.
        #[test]
        fn messages_are_written_as_serde_json_writes_them(
            ids in proptest::prelude::any::<(String, String, String)>(),
            text in proptest::option::of("[\\x00-\\x7f\"\\\\é😀]{0,300}"),
            model in proptest::option::of(proptest::prelude::any::<String>()),
            numbers in proptest::prelude::any::<(Option<u64>, Option<u64>, Option<u64>, Option<i64>)>(),
            role in 0usize..5,
            parts in proptest::collection::vec((proptest::prelude::any::<String>(), arbitrary_value()), 0..5),
        ) {
            let message = MessagePayload {
                session_external_id: ids.0,
                external_id: ids.1,
                role: [Role::User, Role::Assistant, Role::System, Role::Tool, Role::Unknown][role],
                text_content: text,
                model,
                prompt_tokens: numbers.0,
                completion_tokens: numbers.1,
                duration_ms: numbers.2,
                source: ids.2,
                parts: parts.into_iter().map(|(kind, content)| Part { kind, content }).collect(),
                created_at: numbers.3,
            };
            let mut fast = Vec::new();
            write_message_json(&mut fast, &message);
            let reference = serde_json::to_vec(&message).unwrap();
            proptest::prop_assert_eq!(String::from_utf8_lossy(&fast), String::from_utf8_lossy(&reference));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// The counted length is the length of `serde_json`'s text, for any value.
        #[test]
        fn json_lengths_are_counted_exactly(value in arbitrary_value()) {
            proptest::prop_assert_eq!(json_value_len(&value), serde_json::to_vec(&value).unwrap().len());
        }
    }

    #[test]
    fn every_byte_is_escaped_as_serde_json_escapes_it() {
        let all: String = (0u8..=0x7f)
            .map(char::from)
            .chain("é😀\u{2028}".chars())
            .collect();
        for text in [
            all.clone(),
            all.repeat(3),
            format!("{}\"", "x".repeat(15)),
            String::new(),
        ] {
            let mut fast = Vec::new();
            write_json_str(&mut fast, &text);
            assert_eq!(fast, serde_json::to_vec(&text).unwrap(), "{text:?}");
            assert_eq!(json_str_len(&text), fast.len(), "{text:?}");
        }
    }

    #[test]
    fn project_names_are_the_last_component() {
        assert_eq!(project_name("/Users/a/dev/proj/").as_deref(), Some("proj"));
        assert_eq!(project_name("C:\\x\\y").as_deref(), Some("y"));
        assert_eq!(project_name("/"), None);
    }
}
