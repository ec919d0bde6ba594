//! Configuration: figment layering (defaults < `config.toml` < `OPENSYNCD_*` environment <
//! flags), the platform paths opensyncd uses, the tools' source roots, and validation.
//!
//! Nothing here does I/O beyond reading `config.toml` and the environment; writing config
//! (`set`, `login`) goes through [`write_key`], which edits the file in place and keeps the
//! user's comments.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::SourceId;
use crate::sources::{ParseOptions, Roots};

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

/// The resolved configuration. Every key is documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// OpenSync base URL (the Convex `.convex.site` URL).
    pub url: Option<String>,
    /// `per-record` or `batch`.
    pub transport: Transport,
    /// Sessions pushed at once (messages within one session are always serial).
    pub concurrency: usize,
    /// Debounce for file events, in milliseconds.
    pub debounce_ms: u64,
    /// Seconds between full rescans (events are hints; the scan is the truth).
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
    /// Cursor dirs (override `~/.cursor`).
    #[serde(deserialize_with = "string_or_list")]
    pub cursor_dirs: Vec<String>,
    /// A TOML file of model prices that overrides the bundled table.
    pub pricing_file: Option<String>,
    /// Where `opensyncd prices update` downloads LiteLLM's price table from (default: LiteLLM's
    /// file on GitHub).
    pub prices_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            url: None,
            transport: Transport::PerRecord,
            concurrency: 4,
            debounce_ms: 500,
            rescan_interval_secs: 120,
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
            cursor_dirs: Vec::new(),
            pricing_file: None,
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
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Either::Many(v) => v,
    })
}

/// A configuration problem, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment did not parse.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value is out of range.
    #[error("invalid value for `{key}`: {reason}")]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// `set` was given a key that does not exist.
    #[error("unknown key `{0}`; valid keys: {keys}", keys = SETTABLE_KEYS.join(", "))]
    UnknownKey(String),
    /// Reading or writing the config file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

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
    "cursor_dirs",
    "pricing_file",
    "prices_url",
];

/// Where opensyncd keeps its own files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// Holds `config.toml` and `credentials` (0700).
    pub config_dir: PathBuf,
    /// Holds the ledger, lock and control socket (0700).
    pub state_dir: PathBuf,
    /// Where the macOS LaunchAgent writes its log (informational).
    pub log_file: Option<PathBuf>,
}

impl Paths {
    /// Resolves paths from the environment: `OPENSYNCD_HOME` relocates everything; otherwise
    /// XDG on Linux and `~/Library/...` on macOS.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Paths {
        if let Some(home) = env("OPENSYNCD_HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            return Paths {
                config_dir: home.join("config"),
                state_dir: home.join("state"),
                log_file: None,
            };
        }
        let home = home_dir(env);
        if cfg!(target_os = "macos") {
            let support = home.join("Library/Application Support/opensyncd");
            return Paths {
                config_dir: support.clone(),
                state_dir: support,
                log_file: Some(home.join("Library/Logs/opensyncd.log")),
            };
        }
        let xdg = |var: &str, fallback: &str| {
            env(var)
                .filter(|v| Path::new(v).is_absolute())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(fallback))
        };
        Paths {
            config_dir: xdg("XDG_CONFIG_HOME", ".config").join("opensyncd"),
            state_dir: xdg("XDG_STATE_HOME", ".local/state").join("opensyncd"),
            log_file: None,
        }
    }

    /// `config.toml`.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
    /// The API key file (0600).
    pub fn credentials_file(&self) -> PathBuf {
        self.config_dir.join("credentials")
    }
    /// The sled ledger directory.
    pub fn ledger_dir(&self) -> PathBuf {
        self.state_dir.join("ledger")
    }
    /// The single-instance lock.
    pub fn lock_file(&self) -> PathBuf {
        self.state_dir.join("opensyncd.lock")
    }
    /// The control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("control.sock")
    }
    /// The price table installed by `opensyncd prices update` (wins over the bundled one).
    pub fn prices_file(&self) -> PathBuf {
        self.state_dir.join("prices.json")
    }
}

/// The user's home directory (`HOME`, else `/`).
pub fn home_dir(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Reads the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads the configuration: defaults < `config.toml` < `OPENSYNCD_*` < `overrides` (flags).
pub fn load(paths: &Paths, overrides: &figment::value::Dict) -> Result<Config, ConfigError> {
    let figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file(paths.config_file()))
        .merge(
            Env::prefixed("OPENSYNCD_")
                // These are not config keys: paths and the secret have their own handling.
                .ignore(&[
                    "home",
                    "api_key",
                    "config",
                    "test_fault",
                    "service_manager",
                    "reexec_count",
                ]),
        )
        .merge(Serialized::globals(overrides));
    let config: Config = figment
        .extract()
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    config.validate()?;
    Ok(config)
}

impl Config {
    /// Checks ranges and enumerations; returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Value {
            key: key.into(),
            reason,
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
            return Err(bad("concurrency", "must be between 1 and 64".into()));
        }
        if self.debounce_ms > 60_000 {
            return Err(bad("debounce_ms", "must be at most 60000".into()));
        }
        if !(5..=86_400).contains(&self.rescan_interval_secs) {
            return Err(bad(
                "rescan_interval_secs",
                "must be between 5 and 86400".into(),
            ));
        }
        if !(1024..=1024 * 1024).contains(&self.max_part_bytes) {
            return Err(bad(
                "max_part_bytes",
                "must be between 1024 and 1048576".into(),
            ));
        }
        if !(64 * 1024..=16 * 1024 * 1024).contains(&self.max_body_bytes) {
            return Err(bad(
                "max_body_bytes",
                "must be between 65536 and 16777216".into(),
            ));
        }
        if self.max_body_bytes < self.max_part_bytes * 2 {
            return Err(bad(
                "max_body_bytes",
                "must be at least twice max_part_bytes".into(),
            ));
        }
        if self.max_line_bytes < 1024 * 1024 {
            return Err(bad("max_line_bytes", "must be at least 1048576".into()));
        }
        if self.request_timeout_secs == 0 || self.connect_timeout_secs == 0 {
            return Err(bad(
                "request_timeout_secs",
                "timeouts must be at least 1 second".into(),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return Err(bad(
                "log_level",
                format!("`{}` is not a log level", self.log_level),
            ));
        }
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

    /// The roots the config sets for a source (empty: use the tool's defaults).
    fn dirs_override(&self, source: SourceId) -> &[String] {
        match source {
            SourceId::ClaudeCode => &self.claude_dirs,
            SourceId::CodexCli => &self.codex_dirs,
            SourceId::OpenCode => &self.opencode_dirs,
            SourceId::Cursor => &self.cursor_dirs,
        }
    }

    /// Resolves each tool's roots: config overrides first, then the tools' own variables,
    /// then their defaults.
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
        roots
    }
}

/// Normalises a server URL: trims it, rewrites `.convex.cloud` to `.convex.site`, strips a
/// trailing slash, and refuses anything but `https://`, or `http://` to a loopback host.
pub fn normalize_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("`{url}` is not a URL (expected https://<deployment>.convex.site)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(' ') {
        return Err(format!("`{url}` has no valid host"));
    }
    let host = host_of(authority);
    let url = match scheme.to_ascii_lowercase().as_str() {
        "https" => url.to_string(),
        "http" if is_loopback(&host) => url.to_string(),
        "http" => {
            return Err(format!(
                "refusing plain http:// to {host}: the API key would travel unencrypted \
                 (http is allowed only to localhost / 127.0.0.1 / [::1])"
            ));
        }
        other => return Err(format!("unsupported scheme `{other}` (use https://)")),
    };
    Ok(match url.find(".convex.cloud") {
        Some(i) if host.ends_with(".convex.cloud") => {
            format!(
                "{}.convex.site{}",
                &url[..i],
                &url[i + ".convex.cloud".len()..]
            )
        }
        _ => url,
    })
}

fn host_of(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Validates `value` for `key` (as `set` would store it) and returns the TOML value.
pub fn parse_setting(key: &str, value: &str) -> Result<toml_edit::Value, ConfigError> {
    if !SETTABLE_KEYS.contains(&key) {
        return Err(ConfigError::UnknownKey(key.to_string()));
    }
    let defaults = toml::Value::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let list_keys = [
        "redact_patterns",
        "sources",
        "claude_dirs",
        "codex_dirs",
        "opencode_dirs",
        "cursor_dirs",
    ];
    let bad = |reason: String| ConfigError::Value {
        key: key.into(),
        reason,
    };
    let toml_value: toml_edit::Value = if list_keys.contains(&key) {
        let items: Vec<&str> = value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let mut array = toml_edit::Array::new();
        for item in items {
            array.push(item);
        }
        array.into()
    } else {
        match defaults.get(key) {
            Some(toml::Value::Boolean(_)) => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => true.into(),
                "false" | "no" | "off" | "0" => false.into(),
                _ => return Err(bad(format!("`{value}` is not a boolean (true/false)"))),
            },
            Some(toml::Value::Integer(_)) => {
                let n: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("`{value}` is not a whole number")))?;
                if n < 0 {
                    return Err(bad("must not be negative".into()));
                }
                n.into()
            }
            _ => value.trim().into(),
        }
    };
    // Validate the result by applying it to a default config.
    let mut doc = toml_edit::DocumentMut::new();
    doc[key] = toml_edit::value(toml_value.clone());
    let figment = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::string(&doc.to_string()));
    let config: Config = figment.extract().map_err(|e| bad(e.to_string()))?;
    config.validate()?;
    Ok(toml_value)
}

/// Sets (or with `None`, removes) `key` in `config.toml`, keeping everything else in the file.
pub fn write_key(
    paths: &Paths,
    key: &str,
    value: Option<toml_edit::Value>,
) -> Result<(), ConfigError> {
    let file = paths.config_file();
    let io = |source| ConfigError::Io {
        path: file.clone(),
        source,
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(e)),
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", file.display())))?;
    match value {
        Some(v) => doc[key] = toml_edit::value(v),
        None => {
            doc.remove(key);
        }
    }
    crate::private_fs::ensure_private_dir(&paths.config_dir).map_err(io)?;
    crate::private_fs::write_atomic(&file, doc.to_string().as_bytes(), 0o600).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_http_is_loopback_only() {
        assert_eq!(
            normalize_url(" https://happy-cat-123.convex.cloud/ ").unwrap(),
            "https://happy-cat-123.convex.site"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_url("http://[::1]:9").unwrap(), "http://[::1]:9");
        assert_eq!(
            normalize_url("http://localhost:3210/").unwrap(),
            "http://localhost:3210"
        );
        assert!(
            normalize_url("http://example.com")
                .unwrap_err()
                .contains("refusing")
        );
        assert!(normalize_url("http://10.0.0.1").is_err());
        assert!(normalize_url("ftp://x.convex.site").is_err());
        assert!(normalize_url("not a url").is_err());
        assert!(normalize_url("https://user:pw@x.convex.site").is_err());
    }

    #[test]
    fn set_validates_keys_and_values() {
        assert!(matches!(
            parse_setting("nope", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
        let msg = parse_setting("nope", "1").unwrap_err().to_string();
        assert!(
            msg.contains("debounce_ms") && msg.contains("sync_thinking"),
            "{msg}"
        );
        assert!(parse_setting("sync_thinking", "maybe").is_err());
        assert!(parse_setting("concurrency", "0").is_err());
        assert!(parse_setting("concurrency", "-3").is_err());
        assert_eq!(
            parse_setting("concurrency", "8").unwrap().as_integer(),
            Some(8)
        );
        assert!(parse_setting("transport", "carrier-pigeon").is_err());
        assert!(parse_setting("transport", "batch").is_ok());
        assert!(parse_setting("sources", "claude-code,codex").is_ok());
        assert!(parse_setting("sources", "vim").is_err());
        assert!(parse_setting("url", "http://example.com").is_err());
    }

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

    #[test]
    fn opensyncd_home_relocates_everything() {
        let vars = |name: &str| (name == "OPENSYNCD_HOME").then(|| "/t".to_string());
        let paths = Paths::from_env(&vars);
        assert_eq!(paths.config_file(), PathBuf::from("/t/config/config.toml"));
        assert_eq!(paths.ledger_dir(), PathBuf::from("/t/state/ledger"));
    }
}
