//! The one-word state of syncing that `status` leads with — `ok`, `syncing`, `retrying`,
//! `unreachable`, `wrong URL`, `not running`, `paused`, `not logged in` — its one-line
//! explanation, and the exit code each maps to, so that scripts and monitors can rely on
//! `opensyncd status` without parsing it.
//!
//! The daemon decides the state from what it knows (its hold, its last request's outcome, its
//! queue); with no daemon, the CLI decides it from the hold file, the credentials and an answer
//! from the server. This module only names and ranks the states.

use serde::{Deserialize, Serialize};

use crate::pause::human_secs;

/// `status` exit code: syncing works (`ok`, `syncing`).
pub const EXIT_HEALTHY: u8 = 0;
/// `status` exit code: something needs attention — the server is unreachable or answers with
/// errors, the URL is not OpenSync, or no daemon is running.
pub const EXIT_DEGRADED: u8 = 3;
/// `status` exit code: paused by `opensyncd pause`.
pub const EXIT_PAUSED: u8 = 4;
/// `status` exit code: not logged in (no key, logged out, or the server refused the key).
pub const EXIT_NOT_LOGGED_IN: u8 = 5;

/// The exit codes as documented in `status --help`, the man page and the README.
pub const EXIT_CODES_HELP: &str = "Exit status: 0 ok or syncing; 1 the command itself failed; \
     3 degraded (server unreachable or failing, wrong URL, daemon not running); 4 paused; \
     5 not logged in (no key, logged out, or the key was refused).";

/// The state of syncing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SyncState {
    /// Everything on disk is acknowledged (or nothing is waiting for the daemon).
    Ok,
    /// Work in progress.
    Syncing {
        /// Files (units) with data not yet acknowledged.
        files: usize,
        /// Their unacknowledged bytes.
        bytes_left: u64,
        /// Estimated seconds left, when a rate is known.
        eta_secs: Option<u64>,
    },
    /// The daemon's requests are failing with transient errors and it keeps trying.
    Retrying {
        /// Since when (epoch ms).
        since_ms: i64,
        /// When the next attempt is due (epoch ms).
        next_attempt_ms: Option<i64>,
        /// The last error.
        error: String,
    },
    /// No daemon runs and the server did not answer (refused, timed out, 5xx).
    Unreachable {
        /// What failed.
        error: String,
    },
    /// The URL answers, but not as OpenSync.
    WrongUrl {
        /// What came back.
        reason: String,
    },
    /// No daemon runs: nothing is synced until one does.
    NotRunning,
    /// Held by `opensyncd pause`.
    Paused {
        /// Why, since when, until when, how to resume.
        reason: String,
        /// When it ends by itself (epoch ms).
        until_ms: Option<i64>,
    },
    /// No key, logged out, or the key was refused.
    NotLoggedIn {
        /// Which, and what to do.
        reason: String,
    },
}

impl SyncState {
    /// The exit code of `status` in this state.
    pub fn exit_code(&self) -> u8 {
        match self {
            SyncState::Ok | SyncState::Syncing { .. } => EXIT_HEALTHY,
            SyncState::Retrying { .. }
            | SyncState::Unreachable { .. }
            | SyncState::WrongUrl { .. }
            | SyncState::NotRunning => EXIT_DEGRADED,
            SyncState::Paused { .. } => EXIT_PAUSED,
            SyncState::NotLoggedIn { .. } => EXIT_NOT_LOGGED_IN,
        }
    }

    /// The state's name, as `status` prints it first.
    pub fn name(&self) -> &'static str {
        match self {
            SyncState::Ok => "ok",
            SyncState::Syncing { .. } => "syncing",
            SyncState::Retrying { .. } => "retrying",
            SyncState::Unreachable { .. } => "unreachable",
            SyncState::WrongUrl { .. } => "wrong URL",
            SyncState::NotRunning => "not running",
            SyncState::Paused { .. } => "paused",
            SyncState::NotLoggedIn { .. } => "not logged in",
        }
    }

    /// The state with its explanation in one line, at `now_ms`.
    pub fn headline(&self, now_ms: i64) -> String {
        let secs = |ms: i64| human_secs((ms / 1000).max(0) as u64);
        match self {
            SyncState::Ok => "ok".into(),
            SyncState::Syncing {
                files,
                bytes_left,
                eta_secs,
            } => format!(
                "syncing ({files} file(s), {} left, {})",
                human_bytes(*bytes_left),
                eta_secs.map_or("ETA unknown yet".into(), |s| format!(
                    "~{} to go",
                    human_secs(s)
                ))
            ),
            SyncState::Retrying {
                since_ms,
                next_attempt_ms,
                error,
            } => format!(
                "retrying (server unreachable or failing since {} ago, next attempt {}): {error}",
                secs(now_ms - since_ms),
                next_attempt_ms.map_or("soon".into(), |at| if at <= now_ms {
                    "now".to_string()
                } else {
                    format!("in {}", secs(at - now_ms))
                })
            ),
            SyncState::Unreachable { error } => format!(
                "unreachable (the server did not answer: {error}; nothing is sent until it does)"
            ),
            SyncState::WrongUrl { reason } => format!("wrong URL ({reason})"),
            SyncState::NotRunning => "not running (nothing is synced until the daemon runs: \
                                      `opensyncd service install` or `opensyncd run`)"
                .into(),
            SyncState::Paused { reason, .. } => format!("paused ({reason})"),
            SyncState::NotLoggedIn { reason } => format!("not logged in ({reason})"),
        }
    }
}

/// `12.3 MiB`: bytes for humans (binary units).
pub fn human_bytes(b: u64) -> String {
    match b {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1024 * 1024 * 1024 => format!("{:.1} MiB", b as f64 / 1048576.0),
        b => format!("{:.2} GiB", b as f64 / 1073741824.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_has_its_documented_exit_code_and_says_what_to_do() {
        let now = 1_000_000;
        let cases: Vec<(SyncState, u8, &str)> = vec![
            (SyncState::Ok, 0, "ok"),
            (
                SyncState::Syncing {
                    files: 3,
                    // 12.5 MiB = 12.5 × 1,048,576 bytes.
                    bytes_left: 13_107_200,
                    eta_secs: Some(90),
                },
                0,
                "syncing (3 file(s), 12.5 MiB left, ~90s to go)",
            ),
            (
                SyncState::Retrying {
                    since_ms: now - 180_000,
                    next_attempt_ms: Some(now + 45_000),
                    error: "HTTP 503".into(),
                },
                3,
                // 180 s is shown in minutes (3m); 45 s in seconds.
                "retrying (server unreachable or failing since 3m ago, next attempt in 45s): \
                 HTTP 503",
            ),
            (
                SyncState::Unreachable {
                    error: "connection refused".into(),
                },
                3,
                "unreachable (the server did not answer: connection refused",
            ),
            (
                SyncState::WrongUrl {
                    reason: "an HTML page".into(),
                },
                3,
                "wrong URL (an HTML page)",
            ),
            (SyncState::NotRunning, 3, "opensyncd service install"),
            (
                SyncState::Paused {
                    reason: "until you run `opensyncd resume`".into(),
                    until_ms: None,
                },
                4,
                "paused (until you run `opensyncd resume`)",
            ),
            (
                SyncState::NotLoggedIn {
                    reason: "run `opensyncd login`".into(),
                },
                5,
                "not logged in (run `opensyncd login`)",
            ),
        ];
        for (state, code, text) in cases {
            assert_eq!(state.exit_code(), code, "{state:?}");
            let line = state.headline(now);
            assert!(line.starts_with(state.name()), "{line}");
            assert!(line.contains(text), "{line} lacks {text}");
        }
        for code in ["0 ok", "3 degraded", "4 paused", "5 not logged in"] {
            assert!(EXIT_CODES_HELP.contains(code), "{code}");
        }
    }
}
