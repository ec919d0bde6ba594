//! Opening the ledger: its identity (an id inside and beside it, so a damaged or deleted
//! ledger is told from a fresh one), the schema check and migration, and starting over — the
//! old directory moved aside — rather than crash-looping on its own state.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::kv::{self, Table};
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
/// ledger (`meta`) and beside it (`ledger.id`). A ledger whose id does not match — its files
/// were replaced, or a store opened garbage as an empty database (sled did) — is damaged; a
/// missing ledger beside an id file was lost.
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
    /// Opens (or creates) the ledger in `dir`; one an earlier build kept in sled is copied
    /// into the current store first. A ledger that cannot be opened, or one with an unknown
    /// schema version, is moved aside and replaced by a fresh one: the daemon must
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
                    std::fs::rename(dir, &moved_to).map_err(|source| LedgerError::Io {
                        path: dir.to_path_buf(),
                        source,
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
            crate::private_fs::write_atomic(&id_file(dir), &text, 0o600).map_err(|source| {
                LedgerError::Io {
                    path: id_file(dir),
                    source,
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
        self.set_meta_u64("started_over_at_ms", crate::clock::system_ms() as u64)
    }

    /// Why and when this ledger was started over, if it was.
    pub fn started_over(&self) -> Result<Option<(String, i64)>, LedgerError> {
        let why = self.meta_string("started_over")?;
        let at = self.meta_u64("started_over_at_ms")?;
        Ok(why.map(|w| (w, at.unwrap_or(0) as i64)))
    }

    pub(super) fn open_plain(dir: &Path) -> Result<Ledger, LedgerError> {
        std::fs::create_dir_all(dir).map_err(|source| LedgerError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::move_from_sled(dir)?;
        let file = dir.join(kv::DB_FILE);
        let store = kv::Store::open(&file).map_err(|source| LedgerError::Store {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Ledger {
            path: dir.to_path_buf(),
            store,
        })
    }

    /// Copies a ledger an earlier build kept in sled in `dir` into the current store, if
    /// there is one; true when it copied. [`Ledger::open`] does it too; the daemon calls it
    /// first, to start afresh after a copy.
    pub fn move_from_sled(dir: &Path) -> Result<bool, LedgerError> {
        if !sled_ledger_in(dir) {
            return Ok(false);
        }
        let file = dir.join(kv::DB_FILE);
        if file.exists() {
            // A copy finished, and then the process stopped before the sled files were
            // removed: the copy is the ledger.
            remove_sled_ledger(dir);
            return Ok(false);
        }
        migrate_from_sled(dir, &file)?;
        Ok(true)
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
        for table in [Table::Files, Table::Usage] {
            self.store.clear(table).map_err(|e| self.store_err(e))?;
        }
        let mut converted = Vec::new();
        for item in self.store.iter(Table::Sessions) {
            let (k, v) = item.map_err(|e| self.store_err(e))?;
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
            self.put(Table::Sessions, &k, &rec)?;
        }
        self.set_meta_u64("schema_version", SCHEMA_VERSION)
    }
}

/// The files of a ledger written by a build that stored it in sled (before SQLite).
const SLED_FILES: [&str; 2] = ["conf", "db"];

fn sled_ledger_in(dir: &Path) -> bool {
    SLED_FILES.iter().any(|name| dir.join(name).exists())
}

/// Copies a sled ledger into the current store: everything it holds, in one transaction,
/// into a file beside the final one that is renamed into place once complete, so a stop at
/// any point leaves either the sled ledger alone (the copy starts again) or the complete copy.
/// The sled files are removed afterwards.
fn migrate_from_sled(dir: &Path, file: &Path) -> Result<(), LedgerError> {
    let partial = kv::with_suffix(file, ".partial");
    let copied = kv::copy_from_sled(dir, &partial).map_err(|source| LedgerError::Migrate {
        path: dir.to_path_buf(),
        source,
    })?;
    let io = |source| LedgerError::Io {
        path: file.to_path_buf(),
        source,
    };
    std::fs::rename(&partial, file).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    tracing::info!(
        ledger = %dir.display(),
        records = copied,
        "moved the ledger from sled to SQLite (nothing is sent again)"
    );
    remove_sled_ledger(dir);
    Ok(())
}

/// Removes what sled kept in the ledger directory (its files, snapshots and blobs). A file
/// that stays is only disk space: it is tried again at the next open.
fn remove_sled_ledger(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let sled_owned = SLED_FILES.contains(&name.as_ref()) || name.starts_with("snap.");
        let removed = if name == "blobs" {
            std::fs::remove_dir_all(entry.path())
        } else if sled_owned {
            std::fs::remove_file(entry.path())
        } else {
            continue;
        };
        if let Err(err) = removed {
            tracing::warn!(path = %entry.path().display(), %err, "could not remove a file of the earlier sled ledger");
        }
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

    /// Random bytes over the database file are found at open; the id recorded beside the
    /// ledger also tells a damaged ledger from a fresh one where a store opened garbage as
    /// empty (sled did).
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
        std::fs::write(path.join(kv::DB_FILE), &noise).unwrap();
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

    /// A ledger an earlier build kept in sled: copied whole, identity included, so nothing
    /// is learnt again or re-sent; the sled files are gone afterwards.
    #[test]
    fn a_sled_ledger_is_copied_into_the_store_with_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        let (id, message) = {
            let (ledger, _) = Ledger::open(&path).unwrap();
            let id = ledger.meta_string("ledger_id").unwrap().unwrap();
            (id, br#"{"session":"s","hash":9,"created_ms":5}"#.to_vec())
        };
        // What an earlier build left: the same trees, in sled, and no SQLite file.
        std::fs::remove_dir_all(&path).unwrap();
        {
            let db = sled::open(&path).unwrap();
            let meta = db.open_tree("meta").unwrap();
            meta.insert("ledger_id", serde_json::to_vec(&id).unwrap())
                .unwrap();
            meta.insert("schema_version", b"2".to_vec()).unwrap();
            db.open_tree("messages")
                .unwrap()
                .insert("m1", message)
                .unwrap();
            db.flush().unwrap();
        }
        assert!(path.join("conf").exists() && !path.join(kv::DB_FILE).exists());
        let (ledger, outcome) = Ledger::open(&path).unwrap();
        assert_eq!(
            outcome,
            OpenOutcome::Opened,
            "same identity: not a start over"
        );
        assert_eq!(ledger.message("m1").unwrap().unwrap().hash, 9);
        assert_eq!(ledger.message_count(), 1);
        assert!(ledger.started_over().unwrap().is_none());
        let left: Vec<_> = std::fs::read_dir(&path)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(kv::DB_FILE))
            .collect();
        assert!(left.is_empty(), "sled's files are removed: {left:?}");
    }

    /// A copy that stopped before its rename leaves a partial file: the next open copies
    /// again from sled, which is still whole.
    #[test]
    fn an_interrupted_copy_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("files")
                .unwrap()
                .insert(
                    "u",
                    serde_json::to_vec(&crate::ledger::FileRecord {
                        len: 7,
                        ..Default::default()
                    })
                    .unwrap(),
                )
                .unwrap();
            db.flush().unwrap();
        }
        std::fs::write(
            kv::with_suffix(&path.join(kv::DB_FILE), ".partial"),
            b"half a copy",
        )
        .unwrap();
        let (ledger, _) = Ledger::open(&path).unwrap();
        assert_eq!(ledger.file("u").unwrap().unwrap().len, 7);
    }
}
