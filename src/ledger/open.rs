//! Opening the ledger: its identity (an id inside and beside it, so a damaged or deleted
//! ledger is told from a fresh one), the schema check and migration, and starting over — the
//! old directory moved aside — rather than crash-looping on its own state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::records::SessionRecord;
use super::{Ledger, LedgerError, SCHEMA_VERSION};
use crate::fold::SessionState;

/// How opening went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenOutcome {
    /// Opened as it was.
    Opened,
    /// Unreadable, damaged or from an incompatible version: moved aside to this path,
    /// started fresh.
    Rebuilt {
        /// Where the old directory went.
        moved_to: PathBuf,
        /// Why.
        reason: String,
    },
    /// The ledger this state directory had is gone (deleted): started fresh.
    Lost,
}

impl OpenOutcome {
    /// Whether what the server holds is unknown to the new ledger (the daemon then learns
    /// from the server instead of assuming it is empty).
    pub fn started_over(&self) -> bool {
        !matches!(self, OpenOutcome::Opened)
    }
}

/// The identity a ledger and its state directory share: a random id written both inside the
/// ledger (`meta`) and beside it (`ledger.id`). A ledger whose id does not match — sled opened
/// garbage as an empty database, or the directory was replaced — is damaged; a missing ledger
/// beside an id file was lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LedgerId {
    id: String,
}

fn id_file(dir: &Path) -> PathBuf {
    dir.with_extension("id")
}

fn read_id_file(dir: &Path) -> Option<LedgerId> {
    serde_json::from_slice(&std::fs::read(id_file(dir)).ok()?).ok()
}

fn new_ledger_id() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        crate::clock::system_ms() as u64
    )
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`. A ledger sled cannot open, or one with an
    /// unknown schema version, is moved aside and replaced by a fresh one: the daemon must
    /// never crash-loop on its own state, and deterministic ids make the re-send harmless.
    pub fn open(dir: &Path) -> Result<(Ledger, OpenOutcome), LedgerError> {
        let known = read_id_file(dir);
        let existed = dir.exists();
        let opened = Self::open_plain(dir).and_then(|l| l.check_schema().map(|()| l));
        let opened = match (opened, &known) {
            (Ok(ledger), Some(known)) if existed => match ledger.meta_string("ledger_id")? {
                Some(id) if id == known.id => Ok(ledger),
                _ => {
                    drop(ledger);
                    Err(LedgerError::Decode {
                        key: "ledger_id".into(),
                        reason: "the ledger does not carry the id recorded beside it \
                                 (damaged: its files were overwritten or replaced)"
                            .into(),
                    })
                }
            },
            (opened, _) => opened,
        };
        match opened {
            Ok(ledger) => {
                let outcome = if known.is_some() && !existed {
                    tracing::error!(
                        ledger = %dir.display(),
                        "the ledger is gone (deleted?); starting a fresh one and learning \
                         from the server what it already holds"
                    );
                    OpenOutcome::Lost
                } else {
                    OpenOutcome::Opened
                };
                ledger.stamp_id(dir, &outcome)?;
                Ok((ledger, outcome))
            }
            // A full or failing disk is not corruption: moving the ledger aside would only
            // force a full re-send once the disk is back.
            Err(err) if err.is_io() => Err(err),
            Err(err) => {
                let reason = err.to_string();
                let moved_to = aside_path(dir);
                if dir.exists() {
                    std::fs::rename(dir, &moved_to).map_err(|e| LedgerError::Sled {
                        path: dir.to_path_buf(),
                        source: sled::Error::Io(e),
                    })?;
                }
                tracing::error!(
                    ledger = %dir.display(),
                    moved_to = %moved_to.display(),
                    %reason,
                    "the ledger could not be opened; moved it aside and starting fresh \
                     (sessions will be re-sent; ids are stable so nothing is duplicated)"
                );
                let ledger = Self::open_plain(dir)?;
                ledger.check_schema()?;
                let outcome = OpenOutcome::Rebuilt { moved_to, reason };
                ledger.stamp_id(dir, &outcome)?;
                Ok((ledger, outcome))
            }
        }
    }

    /// Makes sure the ledger and the file beside it carry the same id, and records a start
    /// over (for `status`).
    pub(super) fn stamp_id(&self, dir: &Path, outcome: &OpenOutcome) -> Result<(), LedgerError> {
        let id = match self.meta_string("ledger_id")? {
            Some(id) => id,
            None => {
                let id = new_ledger_id();
                self.set_meta_string("ledger_id", &id)?;
                id
            }
        };
        if read_id_file(dir).is_none_or(|known| known.id != id) {
            let text = serde_json::to_vec(&LedgerId { id }).unwrap_or_default();
            crate::private_fs::write_atomic(&id_file(dir), &text, 0o600).map_err(|e| {
                LedgerError::Sled {
                    path: id_file(dir),
                    source: sled::Error::Io(e),
                }
            })?;
        }
        let why = match outcome {
            OpenOutcome::Opened => return Ok(()),
            OpenOutcome::Lost => "the ledger was missing".to_string(),
            OpenOutcome::Rebuilt { reason, moved_to } => {
                format!("{reason} (moved aside to {})", moved_to.display())
            }
        };
        self.set_meta_string("started_over", &why)?;
        self.set_meta_u64("started_over_at_ms", crate::clock::system_ms() as u64)?;
        self.flush()
    }

    /// Why and when this ledger was started over, if it was.
    pub fn started_over(&self) -> Result<Option<(String, i64)>, LedgerError> {
        let why = self.meta_string("started_over")?;
        let at = self.meta_u64("started_over_at_ms")?;
        Ok(why.map(|w| (w, at.unwrap_or(0) as i64)))
    }

    pub(super) fn open_plain(dir: &Path) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError::Sled {
            path: dir.to_path_buf(),
            source,
        };
        // A small cache: the working set is one unit's records; memory must stay flat.
        // Every commit flushes itself, so sled's background flusher is only there to compact
        // its log: every 30 s rather than its default 500 ms, which woke an idle daemon twice
        // a second.
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(4 * 1024 * 1024)
            .flush_every_ms(Some(30_000))
            .mode(sled::Mode::LowSpace);
        // Another process never holds sled's own file lock (the single-instance lock is taken
        // first), but this one may, for a moment: sled finishes writing a dropped handle's
        // buffers on background threads. Wait for that, briefly.
        let mut attempts = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if attempts < 100 && e.to_string().contains("could not acquire lock") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other.map_err(err)?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(err);
        Ok(Ledger {
            path: dir.to_path_buf(),
            files: tree("files")?,
            sessions: tree("sessions")?,
            messages: tree("messages")?,
            facts: tree("facts")?,
            usage: tree("usage")?,
            totals: tree("totals")?,
            deferred: tree("deferred")?,
            quarantine: tree("quarantine")?,
            meta: tree("meta")?,
            db,
        })
    }

    pub(super) fn check_schema(&self) -> Result<(), LedgerError> {
        match self.meta_u64("schema_version")? {
            None => self.set_meta_u64("schema_version", SCHEMA_VERSION),
            Some(SCHEMA_VERSION) => Ok(()),
            Some(1) => self.migrate_v1(),
            Some(other) => Err(LedgerError::Decode {
                key: "schema_version".into(),
                reason: format!("version {other}, this build understands {SCHEMA_VERSION}"),
            }),
        }
    }

    /// Migrates a version 1 ledger (before the one fold): what the server acknowledged
    /// (message hashes, the last session payloads, quarantine) is kept; the fold's state is
    /// dropped together with every read checkpoint, so every unit is read again from its start
    /// and the fold rebuilt. The rebuilt payloads are compared with the acknowledged ones, so
    /// only what really differs is sent again.
    pub(super) fn migrate_v1(&self) -> Result<(), LedgerError> {
        tracing::info!(
            ledger = %self.path.display(),
            "upgrading the ledger: every session file is read again once (nothing already on \
             the server is sent again unless it changed)"
        );
        self.files.clear().map_err(|e| self.sled_err(e))?;
        self.usage.clear().map_err(|e| self.sled_err(e))?;
        let mut converted = Vec::new();
        for item in self.sessions.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let Ok(old) = serde_json::from_slice::<serde_json::Value>(&v) else {
                continue;
            };
            let source = old["state"]["source"].clone();
            let session_id = old["state"]["session_id"].as_str().unwrap_or_default();
            let Ok(source) = serde_json::from_value(source) else {
                continue;
            };
            let mut rec = SessionRecord::new(SessionState::new(source, session_id));
            rec.acked = serde_json::from_value(old["acked"].clone()).ok().flatten();
            rec.last_write_ms = old["last_write_ms"].as_i64().unwrap_or(0);
            rec.messages = old["messages"].as_u64().unwrap_or(0);
            converted.push((k, rec));
        }
        for (k, rec) in converted {
            self.sessions
                .insert(k, serde_json::to_vec(&rec).unwrap_or_default())
                .map_err(|e| self.sled_err(e))?;
        }
        self.set_meta_u64("schema_version", SCHEMA_VERSION)?;
        self.flush()
    }
}

fn aside_path(dir: &Path) -> PathBuf {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // A name nothing has: two start-overs within a second must not collide.
    (0u32..)
        .map(|n| {
            let mut name = dir
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            name.push(match n {
                0 => format!(".corrupt-{stamp}"),
                n => format!(".corrupt-{stamp}-{n}"),
            });
            dir.with_file_name(name)
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.with_extension("corrupt"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_moved_aside_and_a_fresh_ledger_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("conf"), b"\xff\xfe garbage").unwrap();
        std::fs::write(path.join("db"), vec![0xAB; 4096]).unwrap();
        let (ledger, outcome) = Ledger::open(&path).unwrap();
        match outcome {
            OpenOutcome::Rebuilt { moved_to, .. } => assert!(moved_to.exists()),
            other => panic!("garbage should not open: {other:?}"),
        }
        assert!(ledger.file("x").unwrap().is_none());
    }

    /// sled opens some garbage as an empty database without complaint; the id recorded
    /// beside the ledger tells a damaged ledger from a fresh one.
    #[test]
    fn a_ledger_overwritten_with_random_bytes_is_detected_and_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        {
            let (ledger, outcome) = Ledger::open(&path).unwrap();
            assert_eq!(outcome, OpenOutcome::Opened);
            ledger.set_meta_u64("x", 1).unwrap();
            ledger.flush().unwrap();
        }
        // 4 KiB of random bytes over the database file, as in the issue.
        let mut noise = vec![0u8; 4096];
        for (i, b) in noise.iter_mut().enumerate() {
            *b = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes()[i % 8];
        }
        std::fs::write(path.join("db"), &noise).unwrap();
        let (ledger, outcome) = Ledger::open(&path).unwrap();
        assert!(
            matches!(outcome, OpenOutcome::Rebuilt { ref moved_to, .. } if moved_to.exists()),
            "{outcome:?}"
        );
        assert!(
            ledger.started_over().unwrap().is_some(),
            "status can say so"
        );
        drop(ledger);
        // Reopened as it is now: intact.
        let (_, outcome) = Ledger::open(&path).unwrap();
        assert_eq!(outcome, OpenOutcome::Opened);
    }

    #[test]
    fn a_deleted_ledger_is_known_to_be_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        drop(Ledger::open(&path).unwrap());
        std::fs::remove_dir_all(&path).unwrap();
        let (ledger, outcome) = Ledger::open(&path).unwrap();
        assert_eq!(outcome, OpenOutcome::Lost);
        assert!(outcome.started_over());
        assert!(ledger.started_over().unwrap().is_some());
    }
}
