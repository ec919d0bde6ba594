//! The ledger: what the server has acknowledged, and the fold's state. Tables (in one
//! SQLite file, see `kv`):
//! - `files`: per unit, the read checkpoint, the parser state at that checkpoint, and the
//!   sessions it feeds;
//! - `facts`, `usage`, `totals`: the fold's per-unit contributions and per-session usage totals
//!   (see `fold`; [`LedgerStore`] is the fold's store over them);
//! - `sessions`: per session, its folded state (a cache of the fold) and the last acknowledged
//!   payload;
//! - `messages`: per message externalId, its session and the hash of the last acknowledged payload;
//! - `quarantine`: records the server rejected for good, with the reason;
//! - `meta`: schema version and counters shown by `status`.
//!
//! Invariant: the ledger never points past acknowledged data. Everything learnt from one
//! acknowledged unit of work is committed in one transaction, durable when it returns, so a
//! crash at any instant leaves a state from which re-reading re-sends (never skips) data.
//!
//! This file holds the ledger's handle, its reads and its writes (the commit, resets,
//! rewinds, meta); one submodule a job: `kv` the storage (tables of key → bytes in SQLite,
//! and the copy of a ledger from the earlier sled store), `records` what is stored and the
//! unit of a commit, `open` opening, identity, schema checks and migration, and starting over
//! when the ledger is damaged or lost, `store` the fold's store over the ledger.

mod kv;
mod open;
mod records;
mod store;

use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};

use crate::fold::{Facts, UnitId, Usage, UsageRow};
use crate::tail::Checkpoint;

use kv::{Store, Table, Write};

pub use kv::MigrateError;
pub use open::OpenOutcome;
pub use records::{
    Commit, Deferred, FileRecord, MessageRecord, Quarantined, SessionRecord, deferred_message_key,
    deferred_session_key,
};
pub use store::LedgerStore;

/// Bumped when a stored value's shape changes incompatibly. Version 1 (before the one fold)
/// is migrated in place: what the server acknowledged is kept, the fold is rebuilt by reading
/// every unit again (see `Ledger::migrate_v1`); anything else unknown is set aside.
pub const SCHEMA_VERSION: u64 = 2;

/// A ledger failure.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed (I/O, a full disk, corruption).
    #[error("ledger at {path}: {source}")]
    Store {
        /// The ledger directory.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
    /// A file operation around the store failed (creating its directory, moving it aside).
    #[error("ledger at {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A ledger of the earlier (sled) store could not be copied into the current one.
    #[error("ledger at {path}: {source}")]
    Migrate {
        /// The ledger directory.
        path: PathBuf,
        /// The error.
        source: MigrateError,
    },
    /// A stored value did not decode.
    #[error("ledger value for {key} is unreadable: {reason}")]
    Decode {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
}

impl LedgerError {
    /// A failure of the storage underneath (a full disk, a read-only file system, a ledger
    /// another process holds), as opposed to corruption: the data is fine, the disk is not,
    /// so the ledger must not be set aside.
    pub fn is_io(&self) -> bool {
        match self {
            LedgerError::Store { source, .. } => store_error_is_io(source),
            LedgerError::Io { .. } => true,
            LedgerError::Migrate { source, .. } => match source {
                MigrateError::Sled(sled::Error::Io(_)) | MigrateError::Io(_) => true,
                MigrateError::Sled(_) => false,
                MigrateError::Sqlite(e) => store_error_is_io(e),
            },
            LedgerError::Decode { .. } => false,
        }
    }
}

fn store_error_is_io(err: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        err.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | CannotOpen
                | ReadOnly
                | PermissionDenied
                | DatabaseBusy
                | DatabaseLocked
                | OutOfMemory
        )
    )
}

/// The opened ledger. Clones share one store.
#[derive(Clone)]
pub struct Ledger {
    path: PathBuf,
    store: Store,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, LedgerError> {
    serde_json::from_slice(bytes).map_err(|e| LedgerError::Decode {
        key: String::from_utf8_lossy(key).replace('\0', "/"),
        reason: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

impl Ledger {
    fn store_err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Store {
            path: self.path.clone(),
            source,
        }
    }

    fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, LedgerError> {
        match self
            .store
            .get(table, key.as_bytes())
            .map_err(|e| self.store_err(e))?
        {
            None => Ok(None),
            Some(bytes) => decode(key.as_bytes(), &bytes).map(Some),
        }
    }

    /// Writes one value outside a commit (durable when it returns).
    fn put<T: Serialize>(&self, table: Table, key: &[u8], value: &T) -> Result<(), LedgerError> {
        self.store
            .write(&[Write {
                table,
                key,
                value: Some(encode(value)),
            }])
            .map_err(|e| self.store_err(e))
    }

    /// The record of a unit.
    pub fn file(&self, unit_key: &str) -> Result<Option<FileRecord>, LedgerError> {
        self.get(Table::Files, unit_key)
    }

    /// The record of a session.
    pub fn session(&self, session_key: &str) -> Result<Option<SessionRecord>, LedgerError> {
        self.get(Table::Sessions, session_key)
    }

    /// The record of a message.
    pub fn message(&self, external_id: &str) -> Result<Option<MessageRecord>, LedgerError> {
        self.get(Table::Messages, external_id)
    }

    /// A quarantined record.
    pub fn quarantined(&self, key: &str) -> Result<Option<Quarantined>, LedgerError> {
        self.get(Table::Quarantine, key)
    }

    /// A stored usage row.
    pub fn usage_row(&self, session: &str, key: &str) -> Result<Option<UsageRow>, LedgerError> {
        self.get(Table::Usage, &usage_key(session, key))
    }

    /// Every usage key of a session.
    pub fn usage_keys(&self, session: &str) -> Result<Vec<String>, LedgerError> {
        let prefix = format!("{session}\0");
        let rows = self
            .store
            .scan_prefix(Table::Usage, prefix.as_bytes())
            .map_err(|e| self.store_err(e))?;
        Ok(rows
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    /// Every unit's facts for a session.
    pub fn unit_facts(&self, session: &str) -> Result<Vec<(UnitId, Facts)>, LedgerError> {
        let prefix = format!("{session}\0");
        let rows = self
            .store
            .scan_prefix(Table::Facts, prefix.as_bytes())
            .map_err(|e| self.store_err(e))?;
        let mut out = Vec::new();
        for (k, v) in rows {
            let key = String::from_utf8_lossy(&k);
            let Some(unit) = u64::from_str_radix(&key[prefix.len()..], 16).ok() else {
                continue;
            };
            out.push((unit, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// A session's usage totals.
    pub fn usage_totals(&self, session: &str) -> Result<Option<Usage>, LedgerError> {
        self.get(Table::Totals, session)
    }

    /// Every unit record (key, record).
    pub fn files(&self) -> impl Iterator<Item = Result<(String, FileRecord), LedgerError>> + '_ {
        self.iter(Table::Files)
    }

    /// Every session record.
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = Result<(String, SessionRecord), LedgerError>> + '_ {
        self.iter(Table::Sessions)
    }

    /// Every deferred write.
    pub fn deferred(&self) -> impl Iterator<Item = Result<(String, Deferred), LedgerError>> + '_ {
        self.iter(Table::Deferred)
    }

    /// A deferred write.
    pub fn deferred_entry(&self, key: &str) -> Result<Option<Deferred>, LedgerError> {
        self.get(Table::Deferred, key)
    }

    /// Number of writes waiting for the server's windows (0 when the ledger cannot say).
    pub fn deferred_count(&self) -> usize {
        self.store.count(Table::Deferred).unwrap_or(0) as usize
    }

    /// Every quarantined record.
    pub fn quarantine(
        &self,
    ) -> impl Iterator<Item = Result<(String, Quarantined), LedgerError>> + '_ {
        self.iter(Table::Quarantine)
    }

    /// Number of messages acknowledged (0 when the ledger cannot say).
    pub fn message_count(&self) -> usize {
        self.store.count(Table::Messages).unwrap_or(0) as usize
    }

    fn iter<'a, T: DeserializeOwned + 'a>(
        &'a self,
        table: Table,
    ) -> impl Iterator<Item = Result<(String, T), LedgerError>> + 'a {
        self.store.iter(table).map(move |item| {
            let (k, v) = item.map_err(|e| self.store_err(e))?;
            let value = decode(&k, &v)?;
            Ok((String::from_utf8_lossy(&k).into_owned(), value))
        })
    }

    /// A counter or setting in `meta`.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, LedgerError> {
        self.get(Table::Meta, key)
    }

    /// A string in `meta`.
    pub fn meta_string(&self, key: &str) -> Result<Option<String>, LedgerError> {
        self.get(Table::Meta, key)
    }

    /// Sets a string in `meta`.
    pub fn set_meta_string(&self, key: &str, value: &str) -> Result<(), LedgerError> {
        self.put(Table::Meta, key.as_bytes(), &value)
    }

    /// Sets a counter or setting in `meta`.
    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), LedgerError> {
        self.put(Table::Meta, key.as_bytes(), &value)
    }

    /// Applies every write of one acknowledged unit atomically and durably.
    pub fn commit(&self, commit: &Commit) -> Result<(), LedgerError> {
        if commit.is_empty() {
            return Ok(());
        }
        fn put<'a, T: Serialize>(out: &mut Vec<Write<'a>>, table: Table, items: &'a [(String, T)]) {
            out.extend(items.iter().map(|(k, v)| Write {
                table,
                key: k.as_bytes(),
                value: Some(encode(v)),
            }));
        }
        fn put_or_remove<'a, T: Serialize>(
            out: &mut Vec<Write<'a>>,
            table: Table,
            items: &'a [(String, Option<T>)],
        ) {
            out.extend(items.iter().map(|(k, v)| Write {
                table,
                key: k.as_bytes(),
                value: v.as_ref().map(encode),
            }));
        }
        let mut writes = Vec::new();
        put(&mut writes, Table::Files, &commit.files);
        writes.extend(commit.forget_files.iter().map(|k| Write {
            table: Table::Files,
            key: k.as_bytes(),
            value: None,
        }));
        put(&mut writes, Table::Sessions, &commit.sessions);
        put(&mut writes, Table::Messages, &commit.messages);
        put_or_remove(&mut writes, Table::Facts, &commit.facts);
        put_or_remove(&mut writes, Table::Usage, &commit.usage);
        put(&mut writes, Table::Totals, &commit.totals);
        put_or_remove(&mut writes, Table::Deferred, &commit.deferred);
        put_or_remove(&mut writes, Table::Quarantine, &commit.quarantine);
        self.store.write(&writes).map_err(|e| self.store_err(e))
    }

    /// Makes these sessions look never-sent (`sync --force`): their session payload and
    /// messages are sent again on the next pass. Folded state and usage entries stay, so
    /// re-reading their files from 0 folds to the same totals.
    ///
    /// A message's record is kept with its hash forgotten ([`MessageRecord::UNKNOWN_HASH`])
    /// rather than removed: the server may still hold the message, and then its `createdAt`
    /// (kept here) starts the 5 s window in which it skips updates. A removed record would
    /// make the re-send look like a create, and an update inside that window would be lost.
    /// The acknowledged-message count stays: those messages were acknowledged.
    pub fn reset_acks(&self, session_keys: &[String]) -> Result<usize, LedgerError> {
        let wanted: std::collections::HashSet<&str> =
            session_keys.iter().map(String::as_str).collect();
        let mut sessions = Vec::new();
        for key in session_keys {
            if let Some(mut rec) = self.session(key)? {
                rec.acked = None;
                sessions.push((key.clone(), encode(&rec)));
            }
        }
        let mut messages = Vec::new();
        for item in self.store.iter(Table::Messages) {
            let (k, v) = item.map_err(|e| self.store_err(e))?;
            if let Ok(mut rec) = serde_json::from_slice::<MessageRecord>(&v)
                && wanted.contains(rec.session.as_str())
            {
                rec.hash = MessageRecord::UNKNOWN_HASH;
                messages.push((k, encode(&rec)));
            }
        }
        let writes: Vec<Write<'_>> = sessions
            .iter()
            .map(|(k, v)| (Table::Sessions, k.as_bytes(), v))
            .chain(messages.iter().map(|(k, v)| (Table::Messages, &k[..], v)))
            .map(|(table, key, value)| Write {
                table,
                key,
                value: Some(value.clone()),
            })
            .collect();
        self.store.write(&writes).map_err(|e| self.store_err(e))?;
        Ok(sessions.len())
    }

    /// Makes a unit be read again from its start; its contribution to the fold is replaced on
    /// that read (`sync --force`).
    pub fn rewind_file(&self, unit_key: &str) -> Result<(), LedgerError> {
        if let Some(mut rec) = self.file(unit_key)? {
            rec.checkpoint = Checkpoint::default();
            rec.state = None;
            rec.len = 0;
            rec.mtime_ms = 0;
            self.put(Table::Files, unit_key.as_bytes(), &rec)?;
        }
        Ok(())
    }

    /// Moves the write-ahead log into the database file, leaving one compact file (at a
    /// stop). Every write is durable without it.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.store.checkpoint().map_err(|e| self.store_err(e))
    }

    /// The ledger directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The `usage` tree key.
pub fn usage_key(session: &str, key: &str) -> String {
    format!("{session}\0{key}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fold::SessionState;
    use crate::model::{SessionPayload, SourceId};

    #[test]
    fn commits_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger");
        {
            let (ledger, outcome) = Ledger::open(&path).unwrap();
            assert_eq!(outcome, OpenOutcome::Opened);
            let commit = Commit {
                files: vec![(
                    "u".into(),
                    FileRecord {
                        len: 5,
                        ..FileRecord::default()
                    },
                )],
                sessions: vec![(
                    "s".into(),
                    SessionRecord {
                        acked: Some(SessionPayload::default()),
                        last_write_ms: 1,
                        messages: 1,
                        ..SessionRecord::new(SessionState::new(SourceId::CodexCli, "s"))
                    },
                )],
                messages: vec![(
                    "m".into(),
                    MessageRecord {
                        session: "s".into(),
                        hash: 9,
                        created_ms: 0,
                    },
                )],
                ..Commit::default()
            };
            ledger.commit(&commit).unwrap();
        }
        let (ledger, _) = Ledger::open(&path).unwrap();
        assert_eq!(ledger.file("u").unwrap().unwrap().len, 5);
        assert_eq!(ledger.session("s").unwrap().unwrap().last_write_ms, 1);
        assert_eq!(ledger.message("m").unwrap().unwrap().hash, 9);
        assert_eq!(ledger.reset_acks(&["s".into()]).unwrap(), 1);
        let forgotten = ledger.message("m").unwrap().unwrap();
        assert_eq!(forgotten.hash, MessageRecord::UNKNOWN_HASH);
        assert_eq!(
            forgotten.session, "s",
            "the record keeps its session and createdAt"
        );
        assert_eq!(ledger.session("s").unwrap().unwrap().acked, None);
    }
}
