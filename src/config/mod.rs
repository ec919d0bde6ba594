//! Configuration: the layering (defaults < `config.toml` < `OPENSYNCD_*` environment < flags)
//! with where each value came from, the platform paths opensyncd uses, the tools' source
//! roots, and validation in plain words (a problem names the file and line, the environment
//! variable or the flag it came from).
//!
//! Nothing here does I/O beyond reading `config.toml` and the environment; writing config
//! (`set`, `login`) goes through [`write_key`] and [`remove_key`], which edit only the text of
//! that one key and keep everything else in the file byte for byte.
//!
//! This file holds the `Config` type, its defaults, its range checks and what is derived from
//! it (enabled sources, parser options, roots); one submodule a job: `keys` what the keys are
//! and what values each takes, `error` where a value came from and what is wrong with it,
//! `paths` where opensyncd keeps its files, `load` the layering, `edit` `set`/`--unset` on the
//! file's text, `url` the server URL's normalisation.

mod edit;
mod error;
mod keys;
mod load;
mod paths;
mod url;

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::exclude::Exclude;
use crate::model::SourceId;
use crate::sources::{ParseOptions, Roots};

pub use edit::{parse_setting, remove_key, write_key};
pub use error::{ConfigError, Origin, closest};
pub use keys::{
    ENV_PREFIX, KEY_DOCS, LOG_LEVELS, NON_CONFIG_VARS, SETTABLE_KEYS, check_log_level, choices,
    env_var_of, key_doc, log_filter,
};
pub use load::{Loaded, load, load_layers, load_with_origins};
pub use paths::{Paths, home_dir, opensyncd_env, process_env};
pub use url::normalize_url;

/// How sessions are pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// `/sync/session` + `/sync/message` per record (keeps `createdAt` and parts).
    #[default]
    PerRecord,
    /// `/sync/batch` for first-time inserts (no `createdAt`), per-record for updates.
    Batch,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration. Every key is documented in [`KEY_DOCS`] (and so in the README
/// and the man page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OpenSync base URL (the Convex `.convex.site` URL).
    pub url: Option<String>,
    /// `per-record` or `batch`.
    pub transport: Transport,
    /// Requests in flight at most (adapted down on overload); messages within one session are
    /// always serial, so this is also how many sessions are pushed at once.
    pub concurrency: usize,
    /// Debounce for file events, in milliseconds.
    pub debounce_ms: u64,
    /// Seconds between safety-net full rescans while file watching is healthy (events are
    /// hints; the scan is the truth); at most 120 s while watching is degraded.
    pub rescan_interval_secs: u64,
    /// Send thinking / reasoning text.
    pub sync_thinking: bool,
    /// Send tool calls and tool results.
    pub sync_tool_calls: bool,
    /// Send Claude Code subagents' turns (marked) with their parent session.
    pub sync_subagents: bool,
    /// Redact known secret patterns before anything leaves the machine.
    pub redact: bool,
    /// Extra regular expressions to redact.
    #[serde(deserialize_with = "string_or_list")]
    pub redact_patterns: Vec<String>,
    /// Cap on each text field and part content, in bytes.
    pub max_part_bytes: usize,
    /// Cap on each request body, in bytes.
    pub max_body_bytes: usize,
    /// A single line longer than this is skipped (and counted).
    pub max_line_bytes: usize,
    /// Request timeout, seconds.
    pub request_timeout_secs: u64,
    /// Connect timeout, seconds.
    pub connect_timeout_secs: u64,
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter directive).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Enabled sources.
    #[serde(deserialize_with = "string_or_list")]
    pub sources: Vec<String>,
    /// Claude Code config dirs (override `CLAUDE_CONFIG_DIR` / `~/.claude`).
    #[serde(deserialize_with = "string_or_list")]
    pub claude_dirs: Vec<String>,
    /// Codex homes (override `CODEX_HOME` / `~/.codex`).
    #[serde(deserialize_with = "string_or_list")]
    pub codex_dirs: Vec<String>,
    /// OpenCode data dirs (override `$XDG_DATA_HOME/opencode`).
    #[serde(deserialize_with = "string_or_list")]
    pub opencode_dirs: Vec<String>,
    /// OpenCode database path (overrides `OPENCODE_DB`).
    pub opencode_db: Option<String>,
    /// pi agent dirs (override `PI_CODING_AGENT_DIR` / `~/.pi/agent`).
    #[serde(deserialize_with = "string_or_list")]
    pub pi_dirs: Vec<String>,
    /// Factory Droid dirs (override `~/.factory`).
    #[serde(deserialize_with = "string_or_list")]
    pub droid_dirs: Vec<String>,
    /// Cursor dirs (override `~/.cursor`).
    #[serde(deserialize_with = "string_or_list")]
    pub cursor_dirs: Vec<String>,
    /// A TOML file of model prices that overrides the bundled table.
    pub pricing_file: Option<String>,
    /// Glob patterns of files, directories and project paths never read or sent.
    #[serde(deserialize_with = "string_or_list")]
    pub exclude: Vec<String>,
    /// Where `opensyncd prices update` downloads LiteLLM's price table from (default: LiteLLM's
    /// file on GitHub).
    pub prices_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            transport: Transport::PerRecord,
            concurrency: 16,
            debounce_ms: 500,
            rescan_interval_secs: 3600,
            sync_thinking: false,
            sync_tool_calls: true,
            sync_subagents: true,
            redact: true,
            redact_patterns: Vec::new(),
            max_part_bytes: 256 * 1024,
            max_body_bytes: 4 * 1024 * 1024,
            max_line_bytes: 64 * 1024 * 1024,
            request_timeout_secs: 30,
            connect_timeout_secs: 10,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            sources: SourceId::ALL
                .iter()
                .map(|s| s.as_str().to_string())
                .collect(),
            claude_dirs: Vec::new(),
            codex_dirs: Vec::new(),
            opencode_dirs: Vec::new(),
            opencode_db: None,
            pi_dirs: Vec::new(),
            droid_dirs: Vec::new(),
            cursor_dirs: Vec::new(),
            pricing_file: None,
            exclude: Vec::new(),
            prices_url: None,
        }
    }
}

/// Accepts `"a,b"` (handy in environment variables) as well as `["a", "b"]`.
fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Either::deserialize(d)? {
        Either::One(s) => split_list(&s),
        Either::Many(v) => v,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

impl Config {
    /// Checks ranges and enumerations; returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            key: key.into(),
            reason,
            origin: None,
        };
        if let Some(url) = &self.url {
            normalize_url(url).map_err(|reason| bad("url", reason))?;
        }
        if let Some(url) = &self.prices_url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(bad(
                "prices_url",
                "must be an http:// or https:// URL".into(),
            ));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(bad(
                "concurrency",
                format!(
                    "{} is out of range: it must be between 1 and 64",
                    self.concurrency
                ),
            ));
        }
        if self.debounce_ms > 60_000 {
            return Err(bad(
                "debounce_ms",
                format!(
                    "{} is out of range: it must be at most 60000",
                    self.debounce_ms
                ),
            ));
        }
        if !(5..=86_400).contains(&self.rescan_interval_secs) {
            return Err(bad(
                "rescan_interval_secs",
                format!(
                    "{} is out of range: it must be between 5 and 86400",
                    self.rescan_interval_secs
                ),
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.max_part_bytes) {
            return Err(bad(
                "max_part_bytes",
                format!(
                    "{} is out of range: it must be between 1024 and 1048576",
                    self.max_part_bytes
                ),
            ));
        }
        if !(64 * 1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(bad(
                "max_body_bytes",
                format!(
                    "{} is out of range: it must be between 65536 and 16777216",
                    self.max_body_bytes
                ),
            ));
        }
        if self.max_body_bytes < self.max_part_bytes * 2 {
            return Err(bad(
                "max_body_bytes",
                format!(
                    "{} must be at least twice max_part_bytes ({})",
                    self.max_body_bytes, self.max_part_bytes
                ),
            ));
        }
        if self.max_line_bytes < 1024 * 1024 {
            return Err(bad(
                "max_line_bytes",
                format!("{} must be at least 1048576", self.max_line_bytes),
            ));
        }
        if self.request_timeout_secs == 0 {
            return Err(bad(
                "request_timeout_secs",
                "must be at least 1 second".into(),
            ));
        }
        if self.connect_timeout_secs == 0 {
            return Err(bad(
                "connect_timeout_secs",
                "must be at least 1 second".into(),
            ));
        }
        check_log_level(&self.log_level).map_err(|reason| bad("log_level", reason))?;
        for s in &self.sources {
            if SourceId::parse(s).is_none() {
                return Err(bad(
                    "sources",
                    format!(
                        "unknown source `{s}`; valid: {}",
                        SourceId::ALL.map(SourceId::as_str).join(", ")
                    ),
                ));
            }
        }
        for p in &self.redact_patterns {
            if let Err(e) = regex::Regex::new(p) {
                return Err(bad("redact_patterns", format!("`{p}`: {e}")));
            }
        }
        for p in &self.exclude {
            Exclude::check(p).map_err(|reason| bad("exclude", reason))?;
        }
        Ok(())
    }

    /// The enabled sources, in display order.
    pub fn enabled_sources(&self) -> Vec<SourceId> {
        SourceId::ALL
            .into_iter()
            .filter(|s| {
                self.sources
                    .iter()
                    .any(|name| SourceId::parse(name) == Some(*s))
            })
            .collect()
    }

    /// Parser options derived from the config.
    pub fn parse_options(&self) -> ParseOptions {
        ParseOptions {
            sync_thinking: self.sync_thinking,
            sync_tool_calls: self.sync_tool_calls,
            sync_subagents: self.sync_subagents,
        }
    }

    /// The `exclude` patterns, compiled (`~` is the user's home).
    pub fn exclusions(&self, env: &dyn Fn(&str) -> Option<String>) -> Exclude {
        Exclude::new(&self.exclude, &home_dir(env))
    }

    /// The roots the config sets for a source (empty: use the tool's defaults).
    fn dirs_override(&self, source: SourceId) -> &[String] {
        match source {
            SourceId::ClaudeCode => &self.claude_dirs,
            SourceId::CodexCli => &self.codex_dirs,
            SourceId::OpenCode => &self.opencode_dirs,
            SourceId::Pi => &self.pi_dirs,
            SourceId::FactoryDroid => &self.droid_dirs,
            SourceId::Cursor => &self.cursor_dirs,
        }
    }

    /// Resolves each tool's roots: config overrides first, then the tools' own variables,
    /// then their defaults. The roots carry the `exclude` patterns, so every scan and every
    /// file event skips excluded paths before anything is opened.
    pub fn roots(&self, env: &dyn Fn(&str) -> Option<String>) -> Roots {
        let home = home_dir(env);
        let mut roots = Roots::default();
        for source in crate::sources::REGISTRY {
            let id = source.id();
            let overridden = self.dirs_override(id);
            let mut dirs: Vec<PathBuf> = if overridden.is_empty() {
                source.default_roots(env, &home)
            } else {
                overridden
                    .iter()
                    .map(|p| crate::sources::expand_tilde(p, &home))
                    .collect()
            };
            if id == SourceId::OpenCode
                && let Some(db) = &self.opencode_db
            {
                dirs.push(crate::sources::expand_tilde(db, &home));
            }
            if id == SourceId::Cursor {
                // The hook's spool, in opensyncd's own state dir, whatever `cursor_dirs` says.
                let state_dir = Paths::from_env(env).state_dir;
                dirs.push(crate::sources::cursor::spool_dir_in(&state_dir));
            }
            roots.set(id, dirs);
        }
        roots.set_exclude(self.exclusions(env));
        roots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn roots_honour_tool_variables() {
        let vars = |name: &str| match name {
            "HOME" => Some("/home/u".to_string()),
            "CODEX_HOME" => Some("/x/codex".to_string()),
            "CLAUDE_CONFIG_DIR" => Some("/a,/b".to_string()),
            "OPENCODE_DB" => Some("custom.db".to_string()),
            _ => None,
        };
        let roots = Config::default().roots(&vars);
        assert_eq!(roots.get(SourceId::CodexCli), [PathBuf::from("/x/codex")]);
        assert_eq!(
            roots.get(SourceId::ClaudeCode),
            [PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(
            roots.get(SourceId::OpenCode),
            [
                PathBuf::from("/home/u/.local/share/opencode"),
                PathBuf::from("/home/u/.opencode"),
                PathBuf::from("/home/u/.local/share/opencode/custom.db"),
            ]
        );
    }
}
