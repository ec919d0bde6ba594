//! Where opensyncd keeps its own files (`OPENSYNCD_HOME`, XDG, `~/Library`), the user's home
//! and the process environment as the rest of the crate reads it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::keys::ENV_PREFIX;

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
    /// The ledger directory (`ledger.sqlite3` inside).
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
    /// Written by a daemon about to restart in place (its pid), removed by the new image once
    /// it listens again: a client that finds no one answering meanwhile waits instead of
    /// concluding that no daemon runs.
    pub fn restarting_marker(&self) -> PathBuf {
        self.state_dir.join("restarting")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opensyncd_home_relocates_everything() {
        let vars = |name: &str| (name == "OPENSYNCD_HOME").then(|| "/t".to_string());
        let paths = Paths::from_env(&vars);
        assert_eq!(paths.config_file(), PathBuf::from("/t/config/config.toml"));
        assert_eq!(paths.ledger_dir(), PathBuf::from("/t/state/ledger"));
    }
}
