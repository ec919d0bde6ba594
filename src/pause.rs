//! The hold the user puts on pushing — `opensyncd pause [--for DURATION]`, and `logout` (a
//! pause that also forgets the key) — kept in `<state>/pause.json` so that it survives a
//! restart of the daemon (a service manager restarting it, a reboot, a key still given by
//! `OPENSYNCD_API_KEY` after logout), plus the `DURATION` syntax of `pause --for` and
//! `sync --timeout`.
//!
//! The file is written by the CLI (with or without a daemon running) and read by the daemon
//! when it starts and whenever the CLI tells it the hold changed; it is the one place the hold
//! lives, so a daemon and the CLI never disagree about it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Paths;

/// Why pushing is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// `opensyncd pause`: `opensyncd resume` (or the end of `--for`) lifts it.
    Paused,
    /// `opensyncd logout`: only `opensyncd login` lifts it.
    LoggedOut,
}

/// A hold on pushing: what the daemon obeys and `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// Why.
    pub kind: HoldKind,
    /// When it was put (epoch ms).
    pub since_ms: i64,
    /// When it ends by itself (epoch ms); `None` = until lifted.
    #[serde(default)]
    pub until_ms: Option<i64>,
}

impl Hold {
    /// Whether it has ended by itself at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.until_ms.is_some_and(|until| until <= now_ms)
    }

    /// One line for humans: why, since when, until when, and how to lift it.
    pub fn describe(&self, now_ms: i64) -> String {
        let ago = human_secs(((now_ms - self.since_ms) / 1000).max(0) as u64);
        match self.kind {
            HoldKind::LoggedOut => {
                format!("you logged out {ago} ago; nothing is sent until `opensyncd login`")
            }
            HoldKind::Paused => match self.until_ms {
                Some(until) => format!(
                    "by `opensyncd pause` {ago} ago, for another {}; `opensyncd resume` resumes now",
                    human_secs(((until - now_ms) / 1000).max(0) as u64)
                ),
                None => format!("by `opensyncd pause` {ago} ago, until you run `opensyncd resume`"),
            },
        }
    }
}

/// A failure reading or writing the hold file.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `<state>/pause.json`.
pub fn hold_file(paths: &Paths) -> PathBuf {
    paths.state_dir.join("pause.json")
}

/// The hold in force at `now_ms`, if any. A hold past its end is none (the daemon removes the
/// file when it notices); a file that does not parse is treated as a pause without end — when
/// in doubt, send nothing — and a warning is logged.
pub fn load(paths: &Paths, now_ms: i64) -> Result<Option<Hold>, HoldError> {
    let path = hold_file(paths);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(HoldError::Io { path, source }),
    };
    let hold = match serde_json::from_str::<Hold>(&text) {
        Ok(hold) => hold,
        Err(err) => {
            tracing::warn!(file = %path.display(), %err, "unreadable pause file; staying paused until `opensyncd resume`");
            Hold {
                kind: HoldKind::Paused,
                since_ms: now_ms,
                until_ms: None,
            }
        }
    };
    Ok((!hold.expired(now_ms)).then_some(hold))
}

/// Records a hold (replacing any other).
pub fn save(paths: &Paths, hold: &Hold) -> Result<(), HoldError> {
    let path = hold_file(paths);
    let io = |source| HoldError::Io {
        path: path.clone(),
        source,
    };
    crate::private_fs::ensure_private_dir(&paths.state_dir).map_err(io)?;
    let text = serde_json::to_vec_pretty(hold).map_err(|e| io(std::io::Error::other(e)))?;
    crate::private_fs::write_atomic(&path, &text, 0o600).map_err(io)
}

/// Lifts the hold; `Ok(false)` when there was none.
pub fn clear(paths: &Paths) -> Result<bool, HoldError> {
    let path = hold_file(paths);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(HoldError::Io { path, source }),
    }
}

/// Parses a duration such as `90s`, `30m`, `2h`, `1d` or `1h30m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("`{text}` is not a duration; write it like 90s, 30m, 2h, 1d or 1h30m");
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

/// `90s`, `12m`, `3h`, `2d`: a duration rounded to its largest unit, for messages.
pub fn human_secs(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_documented_form_and_refuse_the_rest() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(2 * 3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("1h30m"),
            Ok(Duration::from_secs(3600 + 30 * 60))
        );
        for bad in [
            "",
            "h",
            "1x",
            "1h30",
            "-5m",
            "1.5h",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("is not a duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_hold_survives_a_reload_ends_by_itself_and_an_unreadable_file_keeps_it_paused() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("config"),
            state_dir: dir.path().join("state"),
            log_file: None,
        };
        assert_eq!(load(&paths, 1_000).unwrap(), None);
        let hold = Hold {
            kind: HoldKind::Paused,
            since_ms: 1_000,
            until_ms: Some(61_000),
        };
        save(&paths, &hold).unwrap();
        assert_eq!(load(&paths, 60_999).unwrap(), Some(hold.clone()));
        assert_eq!(load(&paths, 61_000).unwrap(), None, "ended by itself");
        assert!(clear(&paths).unwrap());
        assert!(!clear(&paths).unwrap());

        std::fs::write(hold_file(&paths), "{not json").unwrap();
        let kept = load(&paths, 5_000).unwrap().expect("still held");
        assert_eq!(kept.kind, HoldKind::Paused);
        assert_eq!(kept.until_ms, None);
    }

    #[test]
    fn a_hold_says_why_since_when_until_when_and_how_to_lift_it() {
        let paused = Hold {
            kind: HoldKind::Paused,
            since_ms: 0,
            // Ends 2 h after it was put; described 5 minutes in: 120 − 5 = 115 minutes left.
            until_ms: Some(7_200_000),
        };
        let text = paused.describe(300_000);
        assert!(text.contains("5m ago"), "{text}");
        assert!(text.contains("for another 115m"), "{text}");
        assert!(text.contains("opensyncd resume"), "{text}");
        let out = Hold {
            kind: HoldKind::LoggedOut,
            since_ms: 0,
            until_ms: None,
        };
        assert!(out.describe(60_000).contains("opensyncd login"));
    }
}
