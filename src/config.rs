//! Configuration: the layering (defaults < `config.toml` < `OPENSYNCD_*` environment < flags)
//! with where each value came from, the platform paths opensyncd uses, the tools' source
//! roots, and validation in plain words (a problem names the file and line, the environment
//! variable or the flag it came from).
//!
//! Nothing here does I/O beyond reading `config.toml` and the environment; writing config
//! (`set`, `login`) goes through [`write_key`] and [`remove_key`], which edit only the text of
//! that one key and keep everything else in the file byte for byte.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::exclude::Exclude;
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

/// The resolved configuration. Every key is documented in [`KEY_DOCS`] (and so in the README
/// and the man page).
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
        "sessions pushed at once, 1-64 (one session is always serial)",
    ),
    (
        "debounce_ms",
        "wait this long after a file event before reading, at most 60000",
    ),
    (
        "rescan_interval_secs",
        "full rescan period, 5-86400 (events are hints; the scan is the truth)",
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
        "the daemon's level: error, warn, info, debug, trace or off (ours; other crates stay at warn), or a full tracing filter such as info,sled=debug",
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
fn is_known_non_config_var(var: &str) -> bool {
    NON_CONFIG_VARS.iter().any(|(name, _)| *name == var)
        || var.starts_with("OPENSYNCD_TEST_")
        || var.starts_with("OPENSYNCD_BENCH_")
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum Origin {
    /// The built-in default.
    Default,
    /// `config.toml`, at this line (1-based).
    File {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
    },
    /// An `OPENSYNCD_*` environment variable.
    Env {
        /// Its name.
        var: String,
    },
    /// A command-line flag.
    Flag {
        /// Its name, e.g. `--log-level`.
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}, line {line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
            Origin::Flag { flag } => write!(f, "flag {flag}"),
        }
    }
}

/// A configuration problem, in plain words, with where it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.toml` is not valid TOML.
    #[error("{}, line {line}, column {column}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value is wrong.
    #[error("{}", describe_value_error(key, reason, origin.as_ref()))]
    Value {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
        /// Where the value came from (`None`: given to `set`).
        origin: Option<Origin>,
    },
    /// A key that does not exist.
    #[error("{}", describe_unknown_key(key, origin.as_ref()))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// Where it was written (`None`: given to `set`).
        origin: Option<Origin>,
    },
    /// Anything else that makes the configuration unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// Reading or writing the config file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn describe_value_error(key: &str, reason: &str, origin: Option<&Origin>) -> String {
    match origin {
        None | Some(Origin::Default) => format!("invalid value for `{key}`: {reason}"),
        Some(Origin::File { path, line }) => {
            format!("{}, line {line}: `{key}`: {reason}", path.display())
        }
        Some(Origin::Env { var }) => format!("environment variable {var}: {reason}"),
        Some(Origin::Flag { flag }) => format!("{flag}: {reason}"),
    }
}

fn describe_unknown_key(key: &str, origin: Option<&Origin>) -> String {
    let hint = match closest(key, SETTABLE_KEYS.iter().copied()) {
        Some(near) => format!(" (did you mean `{near}`?)"),
        None => String::new(),
    };
    let place = match origin {
        Some(Origin::File { path, line }) => format!("{}, line {line}: ", path.display()),
        _ => String::new(),
    };
    format!(
        "{place}unknown key `{key}`{hint}; valid keys: {}",
        SETTABLE_KEYS.join(", ")
    )
}

/// The candidate closest to `word` when it is a plausible typo of it (edit distance at most
/// 2, or 3 for long words).
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = if word.len() > 10 { 3 } else { 2 };
    candidates
        .map(|c| (edit_distance(&word, &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

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
    /// The daemon's own log file, written when no service manager keeps its log (see
    /// `logfile`).
    pub fn own_log_file(&self) -> PathBuf {
        self.state_dir.join("opensyncd.log")
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

/// Every `OPENSYNCD_*` variable of the process (`None`: the value is not UTF-8).
pub fn opensyncd_env() -> Vec<(String, Option<String>)> {
    let mut vars: Vec<(String, Option<String>)> = std::env::vars_os()
        .filter_map(|(name, value)| {
            let name = name.into_string().ok()?;
            name.starts_with(ENV_PREFIX)
                .then(|| (name, value.into_string().ok()))
        })
        .collect();
    vars.sort();
    vars
}

/// The resolved configuration, where each value came from, and what was ignored.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// For every key, where its value came from.
    pub origins: BTreeMap<String, Origin>,
    /// Things that were ignored (unknown `OPENSYNCD_*` variables), one line each.
    pub warnings: Vec<String>,
}

/// Loads the configuration: defaults < `config.toml` < `OPENSYNCD_*` < `overrides` (flags).
/// Unknown `OPENSYNCD_*` variables are ignored (see [`load_layers`] for the warnings).
pub fn load(paths: &Paths, overrides: &figment::value::Dict) -> Result<Config, ConfigError> {
    load_layers(&paths.config_file(), &opensyncd_env(), overrides).map(|l| l.config)
}

/// [`load`] with the origin of every value and the warnings.
pub fn load_with_origins(
    paths: &Paths,
    overrides: &figment::value::Dict,
) -> Result<Loaded, ConfigError> {
    load_layers(&paths.config_file(), &opensyncd_env(), overrides)
}

/// The layering itself, from explicit inputs: the config file's path, the `OPENSYNCD_*`
/// variables and the flags (`overrides`, keyed by config key).
pub fn load_layers(
    config_file: &Path,
    env: &[(String, Option<String>)],
    overrides: &figment::value::Dict,
) -> Result<Loaded, ConfigError> {
    let mut values: BTreeMap<String, (toml::Value, Origin)> = BTreeMap::new();
    let mut warnings = Vec::new();

    // The file.
    let text = match std::fs::read(config_file) {
        Ok(bytes) => Some(String::from_utf8(bytes).map_err(|_| {
            ConfigError::Invalid(format!(
                "{} is not UTF-8 text; fix or delete it",
                config_file.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Io {
                path: config_file.to_path_buf(),
                source,
            });
        }
    };
    if let Some(text) = &text {
        for (key, value, line) in file_entries(config_file, text)? {
            let origin = Origin::File {
                path: config_file.to_path_buf(),
                line,
            };
            let checked = check_value(&key, &value).map_err(|reason| ConfigError::Value {
                key: key.clone(),
                reason,
                origin: Some(origin.clone()),
            })?;
            values.insert(key, (checked, origin));
        }
    }

    // The environment.
    for (var, raw) in env {
        let Some(name) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = name.to_ascii_lowercase();
        if !SETTABLE_KEYS.contains(&key.as_str()) {
            if !is_known_non_config_var(var) {
                warnings.push(unknown_var_warning(var));
            }
            continue;
        }
        let origin = Origin::Env { var: var.clone() };
        let bad = |reason: String| ConfigError::Value {
            key: key.clone(),
            reason,
            origin: Some(origin.clone()),
        };
        let Some(raw) = raw else {
            return Err(bad("the value is not UTF-8 text".into()));
        };
        if raw.trim().is_empty() {
            // `OPENSYNCD_URL=` in a shell means "not set", not "the empty URL".
            continue;
        }
        let value = parse_text_value(&key, raw).map_err(bad)?;
        values.insert(key, (value, origin));
    }

    // The flags.
    for (key, value) in overrides {
        let origin = Origin::Flag {
            flag: format!("--{}", key.replace('_', "-")),
        };
        let bad = |reason: String| ConfigError::Value {
            key: key.clone(),
            reason,
            origin: Some(origin.clone()),
        };
        let value = toml::Value::try_from(value).map_err(|e| bad(e.to_string()))?;
        let value = match &value {
            toml::Value::String(s) => parse_text_value(key, s).map_err(bad)?,
            _ => check_value(key, &value).map_err(bad)?,
        };
        values.insert(key.clone(), (value, origin));
    }

    let mut table = default_table();
    for (key, (value, _)) in &values {
        table.insert(key.clone(), value.clone());
    }
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
    let origin_of = |key: &str| {
        values
            .get(key)
            .map_or(Origin::Default, |(_, origin)| origin.clone())
    };
    if let Err(ConfigError::Value { key, reason, .. }) = config.validate() {
        let origin = origin_of(&key);
        return Err(ConfigError::Value {
            reason,
            origin: Some(origin),
            key,
        });
    }
    let origins = SETTABLE_KEYS
        .iter()
        .map(|k| (k.to_string(), origin_of(k)))
        .collect();
    Ok(Loaded {
        config,
        origins,
        warnings,
    })
}

fn unknown_var_warning(var: &str) -> String {
    let known: Vec<String> = SETTABLE_KEYS
        .iter()
        .map(|k| env_var_of(k))
        .chain(NON_CONFIG_VARS.iter().map(|(n, _)| n.to_string()))
        .collect();
    let hint = match closest(var, known.iter().map(String::as_str)) {
        Some(near) => format!(" (did you mean {near}?)"),
        None => String::new(),
    };
    format!("ignoring {var}: it is not an opensyncd setting{hint}")
}

/// The file's top-level `key = value` entries with their 1-based line, checked for unknown
/// keys and sections.
fn file_entries(path: &Path, text: &str) -> Result<Vec<(String, toml::Value, usize)>, ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| syntax_error(path, text, &e))?;
    let mut out = Vec::new();
    for (key, item) in doc.as_table().iter() {
        let at = doc
            .as_table()
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| item.span())
            .map_or(0, |s| s.start);
        let line = line_of(text, at);
        let origin = Origin::File {
            path: path.to_path_buf(),
            line,
        };
        let Some(value) = item.as_value() else {
            return Err(ConfigError::Value {
                key: key.to_string(),
                reason: "is a section (`[...]`); opensyncd's settings are plain `key = value` \
                         lines at the top of the file"
                    .into(),
                origin: Some(origin),
            });
        };
        if !SETTABLE_KEYS.contains(&key) {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                origin: Some(origin),
            });
        }
        out.push((key.to_string(), to_toml(value), line));
    }
    Ok(out)
}

fn syntax_error(path: &Path, text: &str, e: &toml_edit::TomlError) -> ConfigError {
    let at = e.span().map_or(0, |s| s.start).min(text.len());
    let line = line_of(text, at);
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    ConfigError::Syntax {
        path: path.to_path_buf(),
        line,
        column: text[line_start..at].chars().count() + 1,
        message: format!(
            "not valid TOML ({})",
            e.message().lines().next().unwrap_or("syntax error").trim()
        ),
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// A `toml_edit` value as a plain `toml` value.
fn to_toml(value: &toml_edit::Value) -> toml::Value {
    use toml_edit::Value as V;
    match value {
        V::String(s) => toml::Value::String(s.value().clone()),
        V::Integer(i) => toml::Value::Integer(*i.value()),
        V::Float(f) => toml::Value::Float(*f.value()),
        V::Boolean(b) => toml::Value::Boolean(*b.value()),
        V::Datetime(d) => toml::Value::String(d.value().to_string()),
        V::Array(a) => toml::Value::Array(a.iter().map(to_toml).collect()),
        V::InlineTable(t) => toml::Value::Table(
            t.iter()
                .map(|(k, value)| (k.to_string(), to_toml(value)))
                .collect(),
        ),
    }
}

fn default_table() -> toml::Table {
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
fn parse_text_value(key: &str, raw: &str) -> Result<toml::Value, String> {
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
fn check_value(key: &str, value: &toml::Value) -> Result<toml::Value, String> {
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
/// every other crate (sled, notify, hyper, reqwest, rustls…) stays at `warn` (or quieter when
/// asked for less); a full filter directive is used as given.
pub fn log_filter(level: &str) -> String {
    let level = level.trim().to_ascii_lowercase();
    match level.as_str() {
        "error" | "off" | "warn" => level,
        "info" | "debug" | "trace" => format!("warn,opensyncd={level}"),
        _ => level,
    }
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

/// Normalises a server URL: trims it, rewrites a host ending in `.convex.cloud` (any case) to
/// `.convex.site`, strips a trailing slash, and refuses anything but `https://`, or `http://`
/// to a loopback host.
pub fn normalize_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("`{url}` is not a URL (expected https://<deployment>.convex.site)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no valid host"));
    }
    let host = host_of(authority);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "refusing plain http:// to {host}: the API key would travel unencrypted \
                 (http is allowed only to localhost / 127.0.0.1 / [::1])"
            ));
        }
        other => return Err(format!("unsupported scheme `{other}` (use https://)")),
    }
    // Only the host's own suffix is rewritten: the authority is `host[:port]`, and the
    // suffix sits right before the port (or at the end).
    const CLOUD: &str = ".convex.cloud";
    if !host.ends_with(CLOUD) {
        return Ok(url.to_string());
    }
    let authority_start = scheme.len() + "://".len();
    let host_end = authority_start
        + match authority.rfind(':') {
            Some(i) if !authority.starts_with('[') => i,
            _ => authority.len(),
        };
    let suffix_start = host_end - CLOUD.len();
    Ok(format!(
        "{}.convex.site{}",
        &url[..suffix_start],
        &url[host_end..]
    ))
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
        return Err(ConfigError::UnknownKey {
            key: key.to_string(),
            origin: None,
        });
    }
    let bad = |reason: String| ConfigError::Value {
        key: key.into(),
        reason,
        origin: None,
    };
    let parsed = parse_text_value(key, value).map_err(bad)?;
    // Validate the result by applying it to a default config.
    let mut table = default_table();
    table.insert(key.to_string(), parsed.clone());
    let config: Config = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_string()))?;
    config.validate()?;
    to_edit_value(&parsed).map_err(bad)
}

fn to_edit_value(value: &toml::Value) -> Result<toml_edit::Value, String> {
    Ok(match value {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(to_edit_value(item)?);
            }
            array.into()
        }
        other => return Err(format!("{other} cannot be stored")),
    })
}

/// Sets (or with `None`, removes) `key` in `config.toml`. Only the text of that key changes:
/// an existing value is replaced where it stands (its comment kept), a new key is added at the
/// end of the top-level settings, and a removed key takes its own line(s) with it and nothing
/// else.
pub fn write_key(
    paths: &Paths,
    key: &str,
    value: Option<toml_edit::Value>,
) -> Result<(), ConfigError> {
    let file = paths.config_file();
    let text = read_config_text(&file)?;
    let new = edit_key_text(&file, &text, key, value.as_ref())?;
    if new == text {
        return Ok(());
    }
    let io = |source| ConfigError::Io {
        path: file.clone(),
        source,
    };
    crate::private_fs::ensure_private_dir(&paths.config_dir).map_err(io)?;
    crate::private_fs::write_atomic(&file, new.as_bytes(), 0o600).map_err(io)
}

/// Removes `key` from `config.toml`; `Ok(false)` when it was not set there.
pub fn remove_key(paths: &Paths, key: &str) -> Result<bool, ConfigError> {
    let file = paths.config_file();
    let text = read_config_text(&file)?;
    let present = toml_edit::Document::parse(text.as_str())
        .map_err(|e| syntax_error(&file, &text, &e))?
        .as_table()
        .contains_key(key);
    if present {
        write_key(paths, key, None)?;
    }
    Ok(present)
}

fn read_config_text(file: &Path) -> Result<String, ConfigError> {
    match std::fs::read(file) {
        Ok(bytes) => String::from_utf8(bytes)
            .map_err(|_| ConfigError::Invalid(format!("{} is not UTF-8 text", file.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ConfigError::Io {
            path: file.to_path_buf(),
            source,
        }),
    }
}

/// The text of `config.toml` with `key` set to `value` (or removed).
fn edit_key_text(
    file: &Path,
    text: &str,
    key: &str,
    value: Option<&toml_edit::Value>,
) -> Result<String, ConfigError> {
    let doc = toml_edit::Document::parse(text).map_err(|e| syntax_error(file, text, &e))?;
    let spans = doc
        .as_table()
        .get_key_value(key)
        .and_then(|(k, item)| Some((k.span()?, item.span()?)));
    match (spans, value) {
        (Some((_, value_span)), Some(value)) => {
            let mut fresh = value.clone();
            fresh.decor_mut().clear();
            let rendered = fresh.to_string();
            Ok(format!(
                "{}{}{}",
                &text[..value_span.start],
                rendered.trim(),
                &text[value_span.end..]
            ))
        }
        (Some((key_span, value_span)), None) => {
            let start = text[..key_span.start].rfind('\n').map_or(0, |i| i + 1);
            let end = text[value_span.end..]
                .find('\n')
                .map_or(text.len(), |i| value_span.end + i + 1);
            Ok(format!("{}{}", &text[..start], &text[end..]))
        }
        (None, Some(value)) => {
            let mut doc: toml_edit::DocumentMut = text
                .parse()
                .map_err(|e: toml_edit::TomlError| syntax_error(file, text, &e))?;
            doc[key] = toml_edit::value(value.clone());
            Ok(doc.to_string())
        }
        (None, None) => Ok(text.to_string()),
    }
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

    /// The fuzzing finding (`fuzz/regressions/config_value/`): only the host's suffix is
    /// rewritten, in any case, and normalising twice changes nothing.
    #[test]
    fn the_convex_cloud_rewrite_touches_the_host_suffix_only() {
        let cases = [
            (
                "https://evil.convex.cloud.example.convex.cloud/",
                "https://evil.convex.cloud.example.convex.site",
            ),
            ("https://A.CONVEX.CLOUD", "https://A.convex.site"),
            (
                "https://a.convex.cloud:443/x.convex.cloud?q=.convex.cloud",
                "https://a.convex.site:443/x.convex.cloud?q=.convex.cloud",
            ),
            (
                "https://a.convex.site/p.convex.cloud",
                "https://a.convex.site/p.convex.cloud",
            ),
        ];
        for (input, want) in cases {
            let got = normalize_url(input).unwrap();
            assert_eq!(got, want, "{input}");
            assert_eq!(normalize_url(&got).unwrap(), got, "idempotent: {input}");
        }
        let regression = include_str!(
            "../fuzz/regressions/config_value/normalize_url-rewrites-first-convex-cloud-not-host-suffix"
        );
        let got = normalize_url(regression).unwrap();
        assert!(got.to_ascii_lowercase().ends_with(".convex.site"), "{got}");
        assert_eq!(normalize_url(&got).unwrap(), got);
    }

    #[test]
    fn set_validates_keys_and_values() {
        assert!(matches!(
            parse_setting("nope", "1"),
            Err(ConfigError::UnknownKey { .. })
        ));
        let msg = parse_setting("nope", "1").unwrap_err().to_string();
        assert!(
            msg.contains("debounce_ms") && msg.contains("sync_thinking"),
            "{msg}"
        );
        let msg = parse_setting("concurency", "1").unwrap_err().to_string();
        assert!(msg.contains("did you mean `concurrency`?"), "{msg}");
        assert!(parse_setting("sync_thinking", "maybe").is_err());
        assert!(parse_setting("concurrency", "0").is_err());
        assert!(parse_setting("concurrency", "-3").is_err());
        assert_eq!(
            parse_setting("concurrency", "8").unwrap().as_integer(),
            Some(8)
        );
        let msg = parse_setting("transport", "foo").unwrap_err().to_string();
        assert_eq!(
            msg,
            "invalid value for `transport`: `foo` is not a valid transport; valid values: \
             per-record, batch"
        );
        assert!(parse_setting("transport", "batch").is_ok());
        assert!(parse_setting("sources", "claude-code,codex").is_ok());
        assert!(parse_setting("sources", "vim").is_err());
        assert!(parse_setting("url", "http://example.com").is_err());
        assert!(parse_setting("exclude", "~/work/secret/**, *.draft.jsonl").is_ok());
    }

    #[test]
    fn log_level_takes_levels_and_filters_but_not_other_words() {
        for ok in [
            "debug",
            "INFO",
            "off",
            "info,opensyncd::push=debug",
            "sled=debug",
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
        assert_eq!(log_filter("info,sled=debug"), "info,sled=debug");
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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    }

    fn file_with(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn unknown_opensyncd_variables_are_ignored_with_one_warning_each() {
        let (_dir, path) = file_with("");
        let loaded = load_layers(
            &path,
            &env(&[
                ("OPENSYNCD_CONCURENCY", "8"),
                ("OPENSYNCD_REAL_FIXTURES", "/x"),
                ("OPENSYNCD_HOME", "/h"),
                ("OPENSYNCD_TEST_FAULT", "x"),
                ("OPENSYNCD_WHATEVER", "1"),
                ("OPENSYNCD_DEBOUNCE_MS", "250"),
            ]),
            &figment::value::Dict::new(),
        )
        .unwrap();
        assert_eq!(loaded.config.debounce_ms, 250);
        assert_eq!(loaded.config.concurrency, 4);
        assert_eq!(
            loaded.warnings,
            [
                "ignoring OPENSYNCD_CONCURENCY: it is not an opensyncd setting (did you mean \
                 OPENSYNCD_CONCURRENCY?)",
                "ignoring OPENSYNCD_WHATEVER: it is not an opensyncd setting",
            ]
        );
    }

    #[test]
    fn errors_name_the_variable_or_the_file_and_line() {
        let none = figment::value::Dict::new();
        let (_dir, path) = file_with("# mine\nconcurrency = 8\n\ntransport = \"foo\"\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}, line 4: `transport`: `foo` is not a valid transport; valid values: \
                 per-record, batch",
                path.display()
            )
        );
        assert!(!err.contains("TOML source string") && !err.contains("default."));

        let (_dir, path) = file_with("concurrency = 0\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}, line 1: `concurrency`: 0 is out of range: it must be between 1 and 64",
                path.display()
            )
        );

        let (_dir, path) = file_with("a = 1\nconcurency = 8\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}, line 1: unknown key `a`", path.display())),
            "{err}"
        );
        let (_dir, path) = file_with("concurency = 8\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(err.contains("did you mean `concurrency`?"), "{err}");

        let (_dir, path) = file_with("url = \"https://x.convex.site\"\nconcurrency = = 3\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}, line 2, column", path.display())),
            "{err}"
        );
        assert!(err.contains("not valid TOML"), "{err}");

        let (_dir, path) = file_with("[daemon]\nconcurrency = 3\n");
        let err = load_layers(&path, &[], &none).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("section"), "{err}");

        let (_dir, path) = file_with("");
        let err = load_layers(&path, &env(&[("OPENSYNCD_CONCURRENCY", "abc")]), &none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_CONCURRENCY: `abc` is not a whole number"
        );
        let err = load_layers(&path, &env(&[("OPENSYNCD_CONCURRENCY", "99")]), &none)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_CONCURRENCY: 99 is out of range: it must be \
             between 1 and 64"
        );
        let mut flags = figment::value::Dict::new();
        flags.insert("log_level".into(), "verbose".into());
        let err = load_layers(&path, &[], &flags).unwrap_err().to_string();
        assert!(
            err.starts_with("--log-level: `verbose` is not a log level"),
            "{err}"
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_named_not_swallowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, b"concurrency = 8\n\xff\xfe\n").unwrap();
        let err = load_layers(&path, &[], &figment::value::Dict::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not UTF-8 text"), "{err}");
        let (_dir, empty) = file_with("");
        let err = load_layers(
            &empty,
            &[("OPENSYNCD_URL".to_string(), None)],
            &figment::value::Dict::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "environment variable OPENSYNCD_URL: the value is not UTF-8 text"
        );
        // An unknown variable whose value is not UTF-8 is still only a warning.
        let loaded = load_layers(
            &empty,
            &[("OPENSYNCD_NOPE".to_string(), None)],
            &figment::value::Dict::new(),
        )
        .unwrap();
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn every_value_knows_where_it_came_from() {
        let (_dir, path) = file_with("# comment\n\ndebounce_ms = 100\nconcurrency = 2\n");
        let mut flags = figment::value::Dict::new();
        flags.insert("log_level".into(), "debug".into());
        let loaded = load_layers(
            &path,
            &env(&[("OPENSYNCD_CONCURRENCY", "3"), ("OPENSYNCD_URL", "")]),
            &flags,
        )
        .unwrap();
        assert_eq!(loaded.config.concurrency, 3);
        assert_eq!(loaded.config.debounce_ms, 100);
        assert_eq!(loaded.config.url, None, "an empty variable is not set");
        assert_eq!(
            loaded.origins["debounce_ms"],
            Origin::File {
                path: path.clone(),
                line: 3
            }
        );
        assert_eq!(
            loaded.origins["concurrency"],
            Origin::Env {
                var: "OPENSYNCD_CONCURRENCY".into()
            }
        );
        assert_eq!(
            loaded.origins["log_level"],
            Origin::Flag {
                flag: "--log-level".into()
            }
        );
        assert_eq!(loaded.origins["redact"], Origin::Default);
        assert_eq!(loaded.origins.len(), SETTABLE_KEYS.len());
    }

    #[test]
    fn set_and_unset_edit_only_that_key() {
        let path = Path::new("config.toml");
        let original = "# my settings\nconcurrency = 8 # tuned\n\n[unrelated]\nx = 1\n";
        // Replacing a value keeps its comment and everything else.
        let replaced = edit_key_text(
            path,
            original,
            "concurrency",
            Some(&toml_edit::Value::from(2)),
        )
        .unwrap();
        assert_eq!(
            replaced,
            "# my settings\nconcurrency = 2 # tuned\n\n[unrelated]\nx = 1\n"
        );
        // A new key and its removal give back the original bytes.
        let added = edit_key_text(
            path,
            original,
            "debounce_ms",
            Some(&toml_edit::Value::from(50)),
        )
        .unwrap();
        assert!(added.contains("debounce_ms = 50\n"), "{added}");
        assert_eq!(
            edit_key_text(path, &added, "debounce_ms", None).unwrap(),
            original
        );
        // Removing a key takes its own line only: the comment above stays.
        assert_eq!(
            edit_key_text(path, original, "concurrency", None).unwrap(),
            "# my settings\n\n[unrelated]\nx = 1\n"
        );
        // A multi-line list goes as a whole.
        let lists = "sources = [\n  \"claude-code\",\n  \"opencode\",\n]\nredact = true\n";
        assert_eq!(
            edit_key_text(path, lists, "sources", None).unwrap(),
            "redact = true\n"
        );
        assert_eq!(edit_key_text(path, "", "redact", None).unwrap(), "");
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
