//! What one Cursor transcript line says (a user prompt, an assistant reply with its tool
//! calls, or something skipped), and a transcript as lines with their end offsets; the text
//! matching the merge binds lines to spooled events with.
use serde_json::Value;

use crate::sources::LineError;
use crate::sources::cursor_spool::complete_lines;

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
pub(super) fn prompt_matches(prompt: &str, query: &str, full: &str) -> bool {
    let p = normalise(prompt);
    !p.is_empty() && (p == normalise(query) || (p.len() >= 16 && normalise(full).contains(&p)))
}

/// Whether a hook's reply text is the text of a transcript assistant line.
pub(super) fn reply_matches(reply: &str, line_text: &str) -> bool {
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
