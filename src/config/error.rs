//! What can be wrong with the configuration, in plain words, and where a value came from
//! (default, file and line, environment variable, flag), with a "did you mean" for typos.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use super::keys::SETTABLE_KEYS;

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
