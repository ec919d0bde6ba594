//! The config keys: which exist (`SETTABLE_KEYS`), what each means (`KEY_DOCS`), the
//! `OPENSYNCD_*` variables that are ours but not keys, the shape each key's value has and the
//! check of a value against it, and the log levels.

use super::{Config, split_list};

/// Keys `opensyncd set` accepts (every config key).
pub const SETTABLE_KEYS: &[&str] = &[
    "url",
    "transport",
    "concurrency",
    "debounce_ms",
    "rescan_interval_secs",
    "sync_thinking",
    "sync_tool_calls",
    "sync_subagents",
    "redact",
    "redact_patterns",
    "max_part_bytes",
    "max_body_bytes",
    "max_line_bytes",
    "request_timeout_secs",
    "connect_timeout_secs",
    "log_level",
    "log_format",
    "sources",
    "claude_dirs",
    "codex_dirs",
    "opencode_dirs",
    "opencode_db",
    "pi_dirs",
    "droid_dirs",
    "cursor_dirs",
    "pricing_file",
    "exclude",
    "prices_url",
];

/// What each key means, in one line (the man page, `config --explain`-style listings and the
/// README's table say the same). A test checks that every settable key has a line.
pub const KEY_DOCS: &[(&str, &str)] = &[
    (
        "url",
        "OpenSync URL (your deployment's https://<name>.convex.site; .convex.cloud is rewritten)",
    ),
    (
        "transport",
        "per-record (/sync/session + /sync/message, keeps every timestamp) or batch (/sync/batch for the messages of sessions new to the server; those messages get the sync time as createdAt)",
    ),
    (
        "concurrency",
        "requests in flight at most, 1-64, fewer while the server signals overload (one session is always serial)",
    ),
    (
        "debounce_ms",
        "wait this long after a file event before reading, at most 60000",
    ),
    (
        "rescan_interval_secs",
        "safety-net full rescan period while file watching is healthy, 5-86400; at most 120 while it is degraded (events are hints; the scan is the truth)",
    ),
    ("sync_thinking", "send thinking / reasoning text"),
    ("sync_tool_calls", "send tool calls and tool results"),
    (
        "sync_subagents",
        "send Claude Code subagents' turns (marked) with their parent session",
    ),
    ("redact", "redact secrets before anything is sent"),
    (
        "redact_patterns",
        "extra regular expressions to redact (comma-separated in the environment)",
    ),
    (
        "max_part_bytes",
        "cap per text field and part, 1024-1048576 bytes",
    ),
    (
        "max_body_bytes",
        "cap per request body, 65536-16777216 bytes, at least twice max_part_bytes",
    ),
    (
        "max_line_bytes",
        "a log line longer than this is skipped and counted, at least 1048576",
    ),
    ("request_timeout_secs", "per request, at least 1"),
    ("connect_timeout_secs", "per connection, at least 1"),
    (
        "log_level",
        "the daemon's level: error, warn, info, debug, trace or off (ours; other crates stay at warn), or a full tracing filter such as info,notify=debug",
    ),
    ("log_format", "text or json"),
    (
        "sources",
        "which tools to sync (comma-separated in the environment)",
    ),
    (
        "claude_dirs",
        "Claude Code config dirs (default: CLAUDE_CONFIG_DIR, else ~/.claude and ~/.config/claude)",
    ),
    (
        "codex_dirs",
        "Codex homes (default: CODEX_HOME, else ~/.codex)",
    ),
    (
        "opencode_dirs",
        "OpenCode data dirs (default: $XDG_DATA_HOME/opencode and ~/.opencode)",
    ),
    (
        "pi_dirs",
        "pi agent dirs (default: PI_CODING_AGENT_DIR, else ~/.pi/agent)",
    ),
    (
        "droid_dirs",
        "Factory Droid dirs, each with sessions/ (default: ~/.factory)",
    ),
    (
        "cursor_dirs",
        "Cursor dirs (default: ~/.cursor; the hook spool in the state dir is always read)",
    ),
    (
        "opencode_db",
        "OpenCode database path (default: OPENCODE_DB, else opencode.db in the data dir)",
    ),
    (
        "pricing_file",
        "TOML file of model prices overriding the bundled table (must exist)",
    ),
    (
        "exclude",
        "glob patterns of files, directories and project paths that are never read or sent (~/work/secret/**)",
    ),
    (
        "prices_url",
        "where `opensyncd prices update` downloads LiteLLM's price table (default: LiteLLM's file on GitHub)",
    ),
];

/// The one-line meaning of `key` (empty for an unknown key).
pub fn key_doc(key: &str) -> &'static str {
    KEY_DOCS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, doc)| doc)
}

/// The environment variable that sets `key`.
pub fn env_var_of(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

/// The prefix of every opensyncd environment variable.
pub const ENV_PREFIX: &str = "OPENSYNCD_";

/// `OPENSYNCD_*` variables that are not config keys but are ours (paths, the secret, service
/// and test plumbing): read elsewhere, never warned about.
pub const NON_CONFIG_VARS: &[(&str, &str)] = &[
    (
        "OPENSYNCD_HOME",
        "puts all of opensyncd's own files under one directory (config/ and state/)",
    ),
    (
        "OPENSYNCD_API_KEY",
        "the API key, overriding the saved one (never a config key)",
    ),
    (
        "OPENSYNCD_SERVICE_MANAGER",
        "systemd or launchd: which service manager `service` and `logs` talk to",
    ),
    (
        "OPENSYNCD_REAL_FIXTURES",
        "tests only: the directory of logs written by the real tools",
    ),
    (
        "OPENSYNCD_BLESS",
        "tests only: rewrite the committed man page and completions",
    ),
    (
        "OPENSYNCD_REEXEC_COUNT",
        "internal: how often the daemon restarted itself in place",
    ),
];

/// Whether `var` (a full `OPENSYNCD_*` name) is one of ours that is not a config key.
pub(super) fn is_known_non_config_var(var: &str) -> bool {
    NON_CONFIG_VARS.iter().any(|(name, _)| *name == var)
        || var.starts_with("OPENSYNCD_TEST_")
        || var.starts_with("OPENSYNCD_BENCH_")
}

pub(super) fn default_table() -> toml::Table {
    match toml::Value::try_from(Config::default()) {
        Ok(toml::Value::Table(t)) => t,
        // The default config always serialises to a table (a unit test checks it).
        _ => toml::Table::new(),
    }
}

/// The shape a key's value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Count,
    Text,
    List,
    Choice(&'static [&'static str]),
}

/// The valid values of an enumerated key.
pub fn choices(key: &str) -> Option<&'static [&'static str]> {
    match kind_of(key) {
        Kind::Choice(values) => Some(values),
        _ => None,
    }
}

fn kind_of(key: &str) -> Kind {
    match key {
        "transport" => Kind::Choice(&["per-record", "batch"]),
        "log_format" => Kind::Choice(&["text", "json"]),
        _ => match default_table().get(key) {
            Some(toml::Value::Boolean(_)) => Kind::Bool,
            Some(toml::Value::Integer(_)) => Kind::Count,
            Some(toml::Value::Array(_)) => Kind::List,
            _ => Kind::Text,
        },
    }
}

/// Parses a value given as text (an environment variable, `set`, a flag) for `key`.
pub(super) fn parse_text_value(key: &str, raw: &str) -> Result<toml::Value, String> {
    let value = match kind_of(key) {
        Kind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => toml::Value::Boolean(true),
            "false" | "no" | "off" | "0" => toml::Value::Boolean(false),
            _ => return Err(format!("`{}` is not a boolean (true/false)", raw.trim())),
        },
        Kind::Count => {
            let n: i64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not a whole number", raw.trim()))?;
            toml::Value::Integer(n)
        }
        Kind::List => toml::Value::Array(
            split_list(raw)
                .into_iter()
                .map(toml::Value::String)
                .collect(),
        ),
        Kind::Text | Kind::Choice(_) => toml::Value::String(raw.trim().to_string()),
    };
    check_value(key, &value)
}

/// Checks a value's shape for `key` (ranges are [`Config::validate`]'s) and normalises it (a
/// comma-separated string for a list becomes the list).
pub(super) fn check_value(key: &str, value: &toml::Value) -> Result<toml::Value, String> {
    let shown = || {
        let s = value.to_string();
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(60).collect::<String>())
        } else {
            s
        }
    };
    match (kind_of(key), value) {
        (Kind::Bool, toml::Value::Boolean(_)) => Ok(value.clone()),
        (Kind::Bool, _) => Err(format!("{} is not a boolean (true/false)", shown())),
        (Kind::Count, toml::Value::Integer(n)) if *n < 0 => {
            Err(format!("{n} is negative; it must not be"))
        }
        (Kind::Count, toml::Value::Integer(_)) => Ok(value.clone()),
        (Kind::Count, _) => Err(format!("{} is not a whole number", shown())),
        (Kind::List, toml::Value::String(s)) => Ok(toml::Value::Array(
            split_list(s).into_iter().map(toml::Value::String).collect(),
        )),
        (Kind::List, toml::Value::Array(items)) if items.iter().all(toml::Value::is_str) => {
            Ok(value.clone())
        }
        (Kind::List, _) => Err(format!(
            "{} is not a list of strings (write [\"a\", \"b\"])",
            shown()
        )),
        (Kind::Choice(valid), toml::Value::String(s)) if valid.contains(&s.as_str()) => {
            Ok(value.clone())
        }
        (Kind::Choice(valid), toml::Value::String(s)) => Err(format!(
            "`{s}` is not a valid {}; valid values: {}",
            key.replace('_', " "),
            valid.join(", ")
        )),
        (Kind::Choice(valid), _) => Err(format!("{} is not one of {}", shown(), valid.join(", "))),
        (Kind::Text, toml::Value::String(_)) => Ok(value.clone()),
        (Kind::Text, _) => Err(format!("{} is not a string (write it in quotes)", shown())),
    }
}

/// The log levels `log_level` takes as a single word.
pub const LOG_LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// Checks a `log_level`: a level word, or a full tracing filter (`target=level` directives
/// separated by commas). A single word that is not a level (`verbose`) is refused: tracing
/// would take it as a target name and the daemon would log nothing.
pub fn check_log_level(value: &str) -> Result<(), String> {
    let value = value.trim();
    let valid = || {
        format!(
            "`{value}` is not a log level; valid: {}, or a tracing filter such as \
             `info,opensyncd::push=debug`",
            LOG_LEVELS.join(", ")
        )
    };
    if LOG_LEVELS.contains(&value.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    let directives: Vec<&str> = value.split(',').map(str::trim).collect();
    let plausible = directives.iter().all(|d| {
        LOG_LEVELS.contains(&d.to_ascii_lowercase().as_str())
            || d.split_once('=').is_some_and(|(target, level)| {
                !target.is_empty()
                    && LOG_LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
            })
    });
    if !plausible || tracing_subscriber::EnvFilter::try_new(value).is_err() {
        return Err(valid());
    }
    Ok(())
}

/// The tracing filter for a `log_level`: a level word applies to opensyncd's own logs, and
/// every other crate (notify, hyper, reqwest, rustls…) stays at `warn` (or quieter when
/// asked for less); a full filter directive is used as given.
pub fn log_filter(level: &str) -> String {
    let level = level.trim().to_ascii_lowercase();
    match level.as_str() {
        "error" | "off" | "warn" => level,
        "info" | "debug" | "trace" => format!("warn,opensyncd={level}"),
        _ => level,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_setting;

    #[test]
    fn log_level_takes_levels_and_filters_but_not_other_words() {
        for ok in [
            "debug",
            "INFO",
            "off",
            "info,opensyncd::push=debug",
            "notify=debug",
        ] {
            assert!(check_log_level(ok).is_ok(), "{ok}");
        }
        for bad in ["verbose", "loud", "info,verbose", "debug=", ""] {
            let err = check_log_level(bad).unwrap_err();
            assert!(err.contains("not a log level"), "{bad}: {err}");
        }
        assert!(parse_setting("log_level", "verbose").is_err());
        // A level word is ours; every other crate stays at warn.
        assert_eq!(log_filter("debug"), "warn,opensyncd=debug");
        assert_eq!(log_filter("info"), "warn,opensyncd=info");
        assert_eq!(log_filter("error"), "error");
        assert_eq!(log_filter("info,notify=debug"), "info,notify=debug");
    }

    #[test]
    fn every_key_is_documented_and_has_a_default_shape() {
        let table = default_table();
        for key in SETTABLE_KEYS {
            assert!(!key_doc(key).is_empty(), "{key} has no line in KEY_DOCS");
            let optional = ["url", "opencode_db", "pricing_file", "prices_url"];
            assert!(
                table.contains_key(*key) || optional.contains(key),
                "{key} is not a Config field"
            );
        }
        assert_eq!(KEY_DOCS.len(), SETTABLE_KEYS.len());
        // Every field of Config is settable.
        for key in table.keys() {
            assert!(
                SETTABLE_KEYS.contains(&key.as_str()),
                "{key} is not settable"
            );
        }
    }
}
