//! Everything applied to a payload before it leaves the machine: secret redaction (on by
//! default), size caps with a visible truncation marker, and JSON key sanitising so the server's
//! validators accept it (Convex rejects object keys starting with `$` or holding non-ASCII).
//!
//! Shaping is deterministic — the same input always gives the same output — because the ledger
//! hashes the shaped payload to decide whether a message changed.
//!
//! Over 700 lines only with its tests (~590 lines of code, then the property tests that the
//! prefilter never misses what the secret patterns find).

use std::borrow::Cow;

use regex::{Regex, RegexSet};
use serde_json::Value;

use crate::model::{MessagePayload, Part, SessionPayload};

/// The most parts one message may carry (Convex array limit).
pub const MAX_PARTS: usize = 8192;

/// One secret pattern: a name (shown in the marker) and a regex. When the regex has a group
/// named `secret`, only that group is replaced (keeping e.g. the variable name or the user
/// name around it); otherwise the whole match is.
struct Pattern {
    name: &'static str,
    regex: &'static str,
    /// What every match of `regex` contains: the regex without its word boundaries, its
    /// optional lead-in and its tail. All of them together are one regex whose literal prefixes
    /// the engine finds with SIMD, several times faster than the set of the full patterns (the
    /// boundaries and the open-ended classes keep that on a slow path), so text without any
    /// of them — almost all text — is known clean after one quick pass.
    prefilter: &'static str,
}

// Word boundaries are ASCII (`(?-u:\b)`): every secret format is ASCII, and a Unicode `\b`
// keeps the regex engine off its DFA (it was 75% of `export`'s CPU time).
const PATTERNS: &[Pattern] = &[
    Pattern {
        name: "private-key",
        regex: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----[\s\S]*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
        prefilter: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY",
    },
    Pattern {
        name: "aws-access-key-id",
        regex: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?-u:\b)",
        prefilter: r"(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
    },
    Pattern {
        name: "aws-secret-access-key",
        regex: r#"(?i)aws_?secret_?access_?key["']?\s*[:=]\s*["']?(?P<secret>[A-Za-z0-9/+=]{40})"#,
        prefilter: r"(?i:aws_?secret_?access_?key)",
    },
    Pattern {
        name: "github-token",
        regex: r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
        prefilter: r"gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22}",
    },
    Pattern {
        name: "gitlab-token",
        regex: r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}(?-u:\b)",
        prefilter: r"glpat-[A-Za-z0-9_\-]{20}",
    },
    Pattern {
        name: "anthropic-key",
        regex: r"(?-u:\b)sk-ant-[A-Za-z0-9_\-]{20,}",
        prefilter: r"sk-ant-[A-Za-z0-9_\-]{20}",
    },
    Pattern {
        name: "openai-key",
        regex: r"(?-u:\b)sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}",
        prefilter: r"sk-[A-Za-z0-9_\-]{20}",
    },
    Pattern {
        name: "opensync-key",
        regex: r"(?-u:\b)osk_[A-Za-z0-9_\-]{16,}",
        prefilter: r"osk_[A-Za-z0-9_\-]{16}",
    },
    Pattern {
        name: "slack-token",
        regex: r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
        prefilter: r"xox[abposr]-[A-Za-z0-9\-]{10}",
    },
    Pattern {
        name: "stripe-key",
        regex: r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}(?-u:\b)",
        prefilter: r"[sr]k_(?:live|test)_[A-Za-z0-9]{16}",
    },
    Pattern {
        name: "google-api-key",
        regex: r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}(?-u:\b)",
        prefilter: r"AIza[0-9A-Za-z_\-]{35}",
    },
    Pattern {
        name: "jwt",
        regex: r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        prefilter: r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ",
    },
    Pattern {
        name: "url-password",
        regex: r"(?i)(?-u:\b)[a-z][a-z0-9+.\-]*://[^\s:/@]+:(?P<secret>[^\s@/]+)@",
        prefilter: r"://[^\s:/@]+:[^\s@/]+@",
    },
    Pattern {
        name: "authorization-header",
        regex: r#"(?i)(?-u:\b)(?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:bearer|basic|token|digest)?\s*(?P<secret>[A-Za-z0-9._~+/=\-]{8,})"#,
        prefilter: r#"(?i:authorization)["']?\s*[:=]"#,
    },
    Pattern {
        name: "bearer-token",
        regex: r"(?i)(?-u:\b)bearer\s+(?P<secret>[A-Za-z0-9._~+/=\-]{16,})",
        // Case-insensitive throughout, as the pattern: `(?i)[A-Za-z]` also takes `K` (U+212A).
        prefilter: r"(?i:bearer\s+[A-Za-z0-9._~+/=\-]{16})",
    },
    // `.env`-style assignments: an UPPER_CASE name, a plain value (not a call like `getToken()`).
    Pattern {
        name: "env-secret",
        regex: r#"(?m)(?-u:\b)(?:[A-Z0-9_]*_)?(?:SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_KEY|ACCESS_KEY)(?:_[A-Z0-9_]*)?\s*[=:]\s*["']?(?P<secret>[^\s"'#();,]{6,})(?:["'\s;,]|$)"#,
        prefilter: r#"(?:SECRET|PASSWORD|PASSWD|TOKEN|API_?KEY|PRIVATE_KEY|ACCESS_KEY)(?:_[A-Z0-9_]*)?\s*[=:]\s*["']?[^\s"'#();,]{6}"#,
    },
];

/// The bundled patterns' prefilters as one regex.
fn prefilter() -> Result<Regex, regex::Error> {
    let any: Vec<String> = PATTERNS
        .iter()
        .map(|p| format!("(?:{})", p.prefilter))
        .collect();
    Regex::new(&any.join("|"))
}

/// A regex (or a set of them) compiled the first time it is used. With the bundled patterns
/// only, text reaches the full patterns only when the prefilter matched, which most runs never
/// see; compiling all of them up front was 30 M instructions per process (a tenth of an
/// `export` of 10 MiB). Its `Debug` is the compiled value's, so the shaping fingerprint made
/// of it does not change.
#[derive(Clone)]
struct Compiled<T> {
    patterns: Vec<String>,
    cell: std::sync::OnceLock<T>,
    build: fn(&[String]) -> Result<T, regex::Error>,
    /// What `Debug` says: the compiled value's own form, `Regex("…")` or `RegexSet([…])`.
    debug: fn(&[String], &mut std::fmt::Formatter<'_>) -> std::fmt::Result,
}

impl<T> Compiled<T> {
    /// The compiled value. Only patterns already known to compile are held lazily (the
    /// bundled ones, compiled by a test; user patterns are compiled when the redactor is
    /// built), so building cannot fail here; if it ever did, the error is a bug in a bundled
    /// pattern and says which.
    fn get(&self) -> &T {
        self.cell
            .get_or_init(|| match (self.build)(&self.patterns) {
                Ok(compiled) => compiled,
                Err(e) => panic!("a bundled secret pattern does not compile: {e}"),
            })
    }
}

impl<T> std::fmt::Debug for Compiled<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (self.debug)(&self.patterns, f)
    }
}

impl Compiled<Regex> {
    fn regex(pattern: &str, compiled: Option<Regex>) -> Compiled<Regex> {
        let cell = std::sync::OnceLock::new();
        if let Some(regex) = compiled {
            let _ = cell.set(regex);
        }
        Compiled {
            patterns: vec![pattern.to_string()],
            cell,
            build: |p| Regex::new(&p[0]),
            debug: |p, f| f.debug_tuple("Regex").field(&p[0].as_str()).finish(),
        }
    }
}

impl Compiled<RegexSet> {
    fn set(patterns: Vec<String>, compiled: Option<RegexSet>) -> Compiled<RegexSet> {
        let cell = std::sync::OnceLock::new();
        if let Some(set) = compiled {
            let _ = cell.set(set);
        }
        Compiled {
            patterns,
            cell,
            build: |p| RegexSet::new(p),
            debug: |p, f| write!(f, "RegexSet({p:?})"),
        }
    }
}

/// Redacts known secret patterns (plus user patterns) from text and JSON.
#[derive(Clone)]
pub struct Redactor {
    enabled: bool,
    /// Fast pre-check: does anything match at all?
    set: Option<Compiled<RegexSet>>,
    rules: Vec<(String, Compiled<Regex>)>,
    /// Faster still: can anything match at all? (`None` with user patterns, which have no
    /// known prefilter.)
    prefilter: Option<Regex>,
}

// Written out so that it stays what it was before `prefilter` existed: the shaping
// fingerprint (`Shaping::fingerprint`) is made of it, and a new fingerprint would re-send
// every refused record.
impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("enabled", &self.enabled)
            .field("set", &self.set)
            .field("rules", &self.rules)
            .finish()
    }
}

impl Redactor {
    /// Builds a redactor; `extra` are user regexes (their whole match is redacted).
    pub fn new(enabled: bool, extra: &[String]) -> Result<Redactor, String> {
        // With user patterns there is no prefilter, every text goes through the set: all is
        // compiled now, which also reports a user pattern that does not compile. Without,
        // the bundled patterns are compiled on first use (a test compiles them all).
        let eager = !extra.is_empty();
        let mut rules = Vec::new();
        for p in PATTERNS {
            let compiled = if eager {
                Some(Regex::new(p.regex).map_err(|e| format!("{}: {e}", p.name))?)
            } else {
                None
            };
            rules.push((p.name.to_string(), Compiled::regex(p.regex, compiled)));
        }
        for (i, p) in extra.iter().enumerate() {
            let compiled = Regex::new(p).map_err(|e| format!("`{p}`: {e}"))?;
            rules.push((
                format!("custom-{}", i + 1),
                Compiled::regex(p, Some(compiled)),
            ));
        }
        let patterns: Vec<String> = rules.iter().map(|(_, r)| r.patterns[0].clone()).collect();
        let set = if eager {
            Some(RegexSet::new(&patterns).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let prefilter = if eager {
            None
        } else {
            Some(prefilter().map_err(|e| format!("prefilter: {e}"))?)
        };
        Ok(Redactor {
            enabled,
            set: Some(Compiled::set(patterns, set)),
            rules,
            prefilter,
        })
    }

    /// A redactor that changes nothing.
    pub fn disabled() -> Redactor {
        Redactor {
            enabled: false,
            set: None,
            rules: Vec::new(),
            prefilter: None,
        }
    }

    /// Whether redaction is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Redacts secrets in `s`; borrows when nothing matched (the common case).
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        if !self.enabled {
            return Cow::Borrowed(s);
        }
        let Some(set) = &self.set else {
            return Cow::Borrowed(s);
        };
        // Compiled only once the prefilter lets a text through.
        let set = || set.get();
        // One pass of the literal prefilter answers "anything at all?" for almost every text,
        // then one pass of the lazy DFA for what is left; only then is it worth asking which
        // patterns matched.
        if self.prefilter.as_ref().is_some_and(|p| !p.is_match(s)) || !set().is_match(s) {
            return Cow::Borrowed(s);
        }
        let hits: Vec<usize> = set().matches(s).into_iter().collect();
        let mut text = s.to_string();
        for i in hits {
            let (name, re) = &self.rules[i];
            let re = re.get();
            let marker = format!("[REDACTED:{name}]");
            let has_group = re.capture_names().any(|n| n == Some("secret"));
            text = re
                .replace_all(&text, |c: &regex::Captures<'_>| {
                    let whole = c.get(0).map_or("", |m| m.as_str());
                    match c.name("secret").filter(|_| has_group) {
                        Some(secret) => {
                            let start = secret.start() - c.get(0).map_or(0, |m| m.start());
                            format!(
                                "{}{marker}{}",
                                &whole[..start],
                                &whole[start + secret.len()..]
                            )
                        }
                        None => marker.clone(),
                    }
                })
                .into_owned();
        }
        Cow::Owned(text)
    }

    /// Redacts every string inside `value` (keys are left alone).
    pub fn redact_value(&self, value: &mut Value) {
        if !self.enabled {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(new) = self.redact_str(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary) and says so visibly.
pub fn truncate_text(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let original = text.len();
    let marker = format!(
        "\n…[truncated by opensyncd: {} → {}]",
        human(original),
        human(max)
    );
    let keep = max.saturating_sub(marker.len());
    let mut cut = keep.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&marker);
}

fn human(bytes: usize) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MB", bytes as f64 / 1_048_576.0)
    } else {
        format!("{} KB", bytes.div_ceil(1024))
    }
}

/// Makes JSON acceptable to Convex: an object with a key that starts with `$` or holds
/// non-ASCII or control characters is replaced by its JSON text.
pub fn sanitize_keys(value: &mut Value) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(sanitize_keys),
        Value::Object(map) => {
            let bad = map.keys().any(|k| {
                k.starts_with('$')
                    || !k.is_ascii()
                    || k.chars().any(char::is_control)
                    || k.len() > 1024
            });
            if bad {
                *value = Value::String(value.to_string());
            } else {
                map.values_mut().for_each(sanitize_keys);
            }
        }
        _ => {}
    }
}

/// Caps a part's content: a string is truncated; JSON whose text is over the cap becomes its
/// truncated JSON text.
fn cap_content(content: &mut Value, max: usize) {
    match content {
        Value::String(s) => truncate_text(s, max),
        Value::Null => *content = Value::String(String::new()),
        other => {
            // Most content is far below the cap: then neither its text nor any string in it
            // can be over it, and it is left as it is without being encoded.
            if json_len_bound(other) <= max {
                return;
            }
            if crate::model::json_value_len(other) > max {
                let mut text = other.to_string();
                truncate_text(&mut text, max);
                *other = Value::String(text);
            } else {
                // Cap long strings inside small-enough JSON too (e.g. a 2 MB `stdout`).
                cap_strings(other, max);
            }
        }
    }
}

/// Counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value`'s compact JSON text (`serde_json::to_vec(value).len()`), without
/// building the text.
fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    let mut counter = ByteCounter(0);
    // Writing to a counter cannot fail, and our payload types always serialise.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// An upper bound of a string's length in JSON: every byte escaped at most as `\u00XX`.
fn str_len_bound(s: &str) -> usize {
    s.len().saturating_mul(6).saturating_add(2)
}

/// An upper bound of [`json_len`] for a `Value`, from the lengths of its strings alone (no
/// escaping is looked at); exact for no realistic input, cheap for every input.
fn json_len_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        // The longest `serde_json` number is 24 bytes (`-2.2250738585072014e-308`).
        Value::Number(_) => 32,
        Value::String(s) => str_len_bound(s),
        Value::Array(items) => items.iter().fold(2usize, |n, v| {
            n.saturating_add(json_len_bound(v)).saturating_add(1)
        }),
        Value::Object(map) => map.iter().fold(2usize, |n, (k, v)| {
            n.saturating_add(str_len_bound(k))
                .saturating_add(json_len_bound(v))
                .saturating_add(2)
        }),
    }
}

/// An upper bound of [`json_len`] for a message: its strings at their bound, and 1 KiB for
/// the keys, punctuation, role and numbers (they take under 300 bytes).
fn message_len_bound(msg: &MessagePayload) -> usize {
    let optional = |s: &Option<String>| s.as_deref().map_or(0, str_len_bound);
    let parts = msg.parts.iter().fold(0usize, |n, p| {
        n.saturating_add(64)
            .saturating_add(str_len_bound(&p.kind))
            .saturating_add(json_len_bound(&p.content))
    });
    [
        1024,
        str_len_bound(&msg.session_external_id),
        str_len_bound(&msg.external_id),
        str_len_bound(&msg.source),
        optional(&msg.text_content),
        optional(&msg.model),
        parts,
    ]
    .into_iter()
    .fold(0usize, usize::saturating_add)
}

fn cap_strings(value: &mut Value, max: usize) {
    match value {
        Value::String(s) => truncate_text(s, max),
        Value::Array(items) => items.iter_mut().for_each(|v| cap_strings(v, max)),
        Value::Object(map) => map.values_mut().for_each(|v| cap_strings(v, max)),
        _ => {}
    }
}

/// Applies redaction, caps and key sanitising to a message in place. `max_part_bytes` caps
/// the text and each part; the whole message is then kept under `4 × max_part_bytes + 64 KiB`
/// by shrinking its largest parts (the request body cap is at least twice the part cap).
pub fn sanitize_message(msg: &mut MessagePayload, redactor: &Redactor, max_part_bytes: usize) {
    // The text is usually also the first part (the dashboard shows parts): a string part
    // equal to it comes out of the steps below exactly as the text does (redaction depends
    // only on the string, and both are cut at the same cap), so it is not scanned twice.
    let mut copies_of_text: Vec<usize> = Vec::new();
    if let Some(text) = &msg.text_content {
        for (i, part) in msg.parts.iter().enumerate() {
            if matches!(&part.content, Value::String(s) if s == text) {
                copies_of_text.push(i);
            }
        }
    }
    if let Some(text) = msg.text_content.as_mut() {
        let before = text.len();
        let mut changed = false;
        if let Cow::Owned(new) = redactor.redact_str(text) {
            *text = new;
            changed = true;
        }
        truncate_text(text, max_part_bytes);
        if changed || text.len() != before {
            for &i in &copies_of_text {
                msg.parts[i].content = Value::String(text.clone());
            }
        }
    }
    for (i, part) in msg.parts.iter_mut().enumerate() {
        if copies_of_text.contains(&i) {
            continue;
        }
        redactor.redact_value(&mut part.content);
        sanitize_keys(&mut part.content);
        cap_content(&mut part.content, max_part_bytes);
    }
    if msg.parts.len() > MAX_PARTS {
        let dropped = msg.parts.len() - (MAX_PARTS - 1);
        msg.parts.truncate(MAX_PARTS - 1);
        msg.parts.push(Part::text(format!(
            "…[{dropped} more parts omitted by opensyncd]"
        )));
    }
    let budget = max_part_bytes.saturating_mul(4) + 64 * 1024;
    shrink_to(msg, budget);
}

/// Halves the largest parts until the serialised message fits `budget`.
fn shrink_to(msg: &mut MessagePayload, budget: usize) {
    for _ in 0..64 {
        // Almost every message is far below the budget: known without encoding it.
        if message_len_bound(msg) <= budget || json_len(&*msg) <= budget {
            return;
        }
        let Some((i, len)) = msg
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| (i, crate::model::json_value_len(&p.content)))
            .max_by_key(|(_, len)| *len)
        else {
            if let Some(t) = msg.text_content.as_mut() {
                truncate_text(t, t.len() / 2);
            }
            continue;
        };
        let text_len = msg.text_content.as_ref().map_or(0, String::len);
        if text_len > len {
            if let Some(t) = msg.text_content.as_mut() {
                truncate_text(t, t.len() / 2);
            }
        } else {
            let mut text = match &msg.parts[i].content {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            truncate_text(&mut text, (len / 2).max(64));
            msg.parts[i].content = Value::String(text);
        }
    }
}

/// Redacts the free-text fields of a session payload.
pub fn sanitize_session(session: &mut SessionPayload, redactor: &Redactor) {
    for field in [
        &mut session.title,
        &mut session.project_path,
        &mut session.project_name,
    ] {
        if let Some(text) = field.as_mut() {
            if let Cow::Owned(new) = redactor.redact_str(text) {
                *text = new;
            }
            truncate_text(text, 4096);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r() -> Redactor {
        Redactor::new(true, &[]).unwrap()
    }

    #[test]
    fn secrets_are_replaced_and_context_kept() {
        let out = r()
            .redact_str("export GITHUB_TOKEN=ghp_abcdefghijklmnopqrstuvwxyz0123456789\n")
            .into_owned();
        assert!(!out.contains("ghp_abc"), "{out}");
        assert!(out.contains("GITHUB_TOKEN="), "{out}");
        let url = r()
            .redact_str("git clone https://alice:s3cretpass@github.com/x/y")
            .into_owned();
        assert_eq!(
            url,
            "git clone https://alice:[REDACTED:url-password]@github.com/x/y"
        );
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(
            r().redact_str("cargo test passed: 42 tests"),
            Cow::Borrowed(_)
        ));
        assert!(matches!(
            Redactor::disabled().redact_str("sk-ant-api03-abcdefghijklmnopqrstuv"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn truncation_is_visible_and_utf8_safe() {
        let mut s = "é".repeat(10_000);
        truncate_text(&mut s, 1000);
        assert!(s.len() <= 1000, "{}", s.len());
        assert!(s.contains("truncated by opensyncd"));
    }

    /// Pieces secrets and their look-alikes are made of, for the prefilter property below.
    const FRAGMENTS: &[&str] = &[
        "sk-",
        "sk-ant-",
        "sk_live_",
        "rk_test_",
        "osk_",
        "xoxb-",
        "glpat-",
        "ghp_",
        "github_pat_",
        "AKIA",
        "ASIA",
        "AIza",
        "eyJ",
        ".",
        "-----BEGIN ",
        "RSA ",
        "PRIVATE KEY",
        "-----",
        "-----END ",
        "\n",
        " ",
        "\t",
        "\u{a0}",
        "=",
        ": ",
        ":",
        "\"",
        "'",
        "@",
        "/",
        "://",
        "https",
        "user",
        "pass",
        "AWS_SECRET_ACCESS_KEY",
        "aws_secret_access_key",
        "Authorization",
        "proxy-authorization",
        "BEARER",
        "bearer ",
        "Bearer\t",
        "SECRET",
        "MY_TOKEN",
        "API_KEY",
        "APIKEY",
        "PASSWD",
        "_PROD",
        "\u{212a}",
        "\u{17f}",
        "x",
        "Z",
        "0123456789",
        "abcdefghij",
        "ABCDEFGHIJ",
        "a_b-c",
        "+/=",
        "~",
        "é",
        ";",
        "(",
        "#",
    ];

    fn text_from(pieces: &[usize], runs: &[usize]) -> String {
        let mut text = String::new();
        for (i, p) in pieces.iter().enumerate() {
            text.push_str(FRAGMENTS[p % FRAGMENTS.len()]);
            // Runs of word characters long enough for the patterns' `{16,}`-style tails.
            let run = runs.get(i).copied().unwrap_or(0) % 48;
            text.extend(std::iter::repeat_n('k', run / 2));
            text.extend(std::iter::repeat_n('7', run - run / 2));
        }
        text
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// The prefilter is a necessary condition: whatever the full patterns find, it finds.
        #[test]
        fn the_prefilter_never_misses_what_the_patterns_find(
            pieces in proptest::collection::vec(0usize..1000, 1..14),
            runs in proptest::collection::vec(0usize..1000, 0..14),
        ) {
            static RED: std::sync::LazyLock<Redactor> = std::sync::LazyLock::new(r);
            let red = &*RED;
            let text = text_from(&pieces, &runs);
            let prefilter = red.prefilter.as_ref().unwrap();
            let set = red.set.as_ref().unwrap().get();
            proptest::prop_assert!(!set.is_match(&text) || prefilter.is_match(&text), "{:?}", text);
        }
    }

    #[test]
    fn the_prefilter_lets_every_kind_of_secret_through() {
        let red = r();
        let prefilter = red.prefilter.as_ref().unwrap();
        for text in [
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----",
            "AKIAIOSFODNN7EXAMPLQ",
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
            "glpat-xY7zW3vU9tS1rQ5pO2nM",
            "sk-ant-api03-abcdefghijklmnopqrstuv",
            "sk-proj-4fGh7JkL9mNp2QrS5tUv8WxY1zAb3CdE6fGh9JkL",
            "osk_abcdefghijklmnop",
            "xoxb-1234567890-abc",
            "sk_live_abcdefghijklmnop1234",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abcdefghijk",
            "postgres://admin:hunter2hunter@db.example:5432/app",
            "Authorization: Basic dXNlcjpwYXNzd29yZA==",
            "curl -H 'authorization: bearer abcdefgh12345678'",
            "Bearer \u{212a}bcdefghijklmnop1234",
            "DATABASE_PASSWORD=correct-horse-battery",
        ] {
            let set = red.set.as_ref().unwrap().get();
            assert!(set.is_match(text), "the patterns find {text:?}");
            assert!(prefilter.is_match(text), "the prefilter finds {text:?}");
        }
        // User patterns have no prefilter: everything goes to the set.
        let custom = Redactor::new(true, &["internal-[0-9]+".to_string()]).unwrap();
        assert!(custom.prefilter.is_none());
        assert_eq!(
            custom.redact_str("id internal-42 here"),
            "id [REDACTED:custom-1] here"
        );
    }

    /// The fingerprint's text, made the way it was before the patterns were compiled lazily:
    /// the compiled values' own `Debug`.
    fn eager_debug(enabled: bool, extra: &[String]) -> String {
        struct Eager {
            enabled: bool,
            set: Option<RegexSet>,
            rules: Vec<(String, Regex)>,
        }
        impl std::fmt::Debug for Eager {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Redactor")
                    .field("enabled", &self.enabled)
                    .field("set", &self.set)
                    .field("rules", &self.rules)
                    .finish()
            }
        }
        let mut rules: Vec<(String, Regex)> = PATTERNS
            .iter()
            .map(|p| (p.name.to_string(), Regex::new(p.regex).unwrap()))
            .collect();
        for (i, p) in extra.iter().enumerate() {
            rules.push((format!("custom-{}", i + 1), Regex::new(p).unwrap()));
        }
        let set = RegexSet::new(rules.iter().map(|(_, r)| r.as_str())).unwrap();
        format!(
            "{:?}",
            Eager {
                enabled,
                set: Some(set),
                rules
            }
        )
    }

    #[test]
    fn lazily_compiled_patterns_keep_the_fingerprint_and_all_compile() {
        for (enabled, extra) in [
            (true, vec![]),
            (false, vec![]),
            (true, vec![r"internal-\d+".to_string(), "x\"y".to_string()]),
        ] {
            let redactor = Redactor::new(enabled, &extra).unwrap();
            assert_eq!(format!("{redactor:?}"), eager_debug(enabled, &extra));
            // Every bundled pattern and the set compile (what `Compiled::get` relies on).
            for (_, rule) in &redactor.rules {
                rule.get();
            }
            if let Some(set) = &redactor.set {
                assert_eq!(set.get().len(), redactor.rules.len());
            }
        }
    }

    #[test]
    fn the_debug_form_is_what_the_shaping_fingerprint_always_hashed() {
        let text = format!("{:?}", r());
        assert!(
            text.starts_with("Redactor { enabled: true, set: Some("),
            "{text}"
        );
        assert!(!text.contains("prefilter"), "{text}");
    }

    #[test]
    fn encoded_lengths_are_exact_and_their_bounds_are_bounds() {
        for v in [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(-9_223_372_036_854_775_808i64),
            serde_json::json!(u64::MAX),
            serde_json::json!(-2.2250738585072014e-308),
            serde_json::json!(1e300),
            serde_json::json!("plain"),
            serde_json::json!(
                "quote \" backslash \\ newline \n control \u{1} \u{1f} del \u{7f} é 😀"
            ),
            serde_json::json!({"a": [1, "x\u{0}", {"b\n": null}], "é": {}}),
            serde_json::json!([]),
        ] {
            let text = serde_json::to_string(&v).unwrap();
            assert_eq!(json_len(&v), text.len(), "{text}");
            assert!(json_len_bound(&v) >= text.len(), "{text}");
        }
        let message = MessagePayload {
            session_external_id: "s\u{1}".into(),
            external_id: "m\"".into(),
            role: crate::model::Role::Assistant,
            text_content: Some("\u{0}".repeat(100)),
            model: Some("m".into()),
            prompt_tokens: Some(u64::MAX),
            completion_tokens: Some(u64::MAX),
            duration_ms: Some(u64::MAX),
            source: "claude-code".into(),
            parts: vec![
                Part::text("\u{0}".repeat(10)),
                Part::tool_result(serde_json::json!([1, 2])),
            ],
            created_at: Some(i64::MIN),
        };
        let len = serde_json::to_vec(&message).unwrap().len();
        assert_eq!(json_len(&message), len);
        assert!(message_len_bound(&message) >= len);
    }

    #[test]
    fn a_part_equal_to_the_text_comes_out_as_it_would_alone() {
        // The text's copy among the parts is not processed again: it must end as a string
        // part processed on its own would (redacted, then cut at the cap).
        let red = r();
        let cap = 200;
        for text in [
            "plain words".to_string(),
            format!(
                "key sk-ant-api03-abcdefghijklmnopqrstuv and {}",
                "z".repeat(400)
            ),
            format!(
                "{} ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R",
                "w ".repeat(50)
            ),
        ] {
            let mut msg = MessagePayload {
                session_external_id: "s".into(),
                external_id: "m".into(),
                role: crate::model::Role::User,
                text_content: Some(text.clone()),
                model: None,
                prompt_tokens: None,
                completion_tokens: None,
                duration_ms: None,
                source: "claude-code".into(),
                parts: vec![Part::text(text.clone()), Part::text("other")],
                created_at: None,
            };
            sanitize_message(&mut msg, &red, cap);
            let mut alone = Value::String(text.clone());
            red.redact_value(&mut alone);
            cap_content(&mut alone, cap);
            assert_eq!(msg.parts[0].content, alone, "{text}");
            assert_eq!(msg.text_content.as_deref(), alone.as_str(), "{text}");
            assert_eq!(msg.parts[1].content, Value::String("other".into()));
        }
    }

    #[test]
    fn dollar_and_non_ascii_keys_are_stringified() {
        let mut v = serde_json::json!({"ok": {"$schema": "x"}, "fine": {"a": 1}, "ключ": 2});
        sanitize_keys(&mut v);
        assert!(
            v.is_string(),
            "the top-level object has a non-ASCII key: {v}"
        );
        let mut v = serde_json::json!({"ok": {"$ref": "#/x"}, "fine": {"a": 1}});
        sanitize_keys(&mut v);
        assert_eq!(v["ok"], Value::String(r##"{"$ref":"#/x"}"##.into()));
        assert_eq!(v["fine"]["a"], 1);
    }
}
