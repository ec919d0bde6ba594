//! The sled ledger: what the server has acknowledged, and the fold's state. Trees:
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
//! acknowledged unit of work is committed in one multi-tree transaction, then flushed, so a
//! crash at any instant leaves a state from which re-reading re-sends (never skips) data.
//!
//! This file holds the ledger's handle, its reads and its writes (the commit, resets,
//! rewinds, meta); one submodule a job: `records` what is stored and the unit of a commit,
//! `open` opening, identity, schema checks and migration, and starting over when the ledger
//! is damaged or lost, `store` the fold's store over the ledger.

mod open;
mod records;
mod store;

use std::path::{Path, PathBuf};

use serde::{Serialize, de::DeserializeOwned};
use sled::Transactional;

use crate::fold::{Facts, UnitId, Usage, UsageRow};
use crate::tail::Checkpoint;

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
    /// sled failed (I/O, corruption).
    #[error("ledger at {path}: {source}")]
    Sled {
        /// The ledger directory.
        path: PathBuf,
        /// The error.
        source: sled::Error,
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
    /// An I/O failure of the storage underneath (a full disk, a read-only file system), as
    /// opposed to corruption: the data is fine, the disk is not. After one, sled refuses further
    /// writes until the ledger is opened again.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            LedgerError::Sled {
                source: sled::Error::Io(_),
                ..
            }
        )
    }
}

/// The opened ledger.
#[derive(Clone)]
pub struct Ledger {
    path: PathBuf,
    db: sled::Db,
    files: sled::Tree,
    sessions: sled::Tree,
    messages: sled::Tree,
    facts: sled::Tree,
    usage: sled::Tree,
    totals: sled::Tree,
    deferred: sled::Tree,
    quarantine: sled::Tree,
    meta: sled::Tree,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("path", &self.path).finish()
    }
}

impl Ledger {
    fn sled_err(&self, source: sled::Error) -> LedgerError {
        LedgerError::Sled {
            path: self.path.clone(),
            source,
        }
    }

    fn get<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &str,
    ) -> Result<Option<T>, LedgerError> {
        match tree.get(key.as_bytes()).map_err(|e| self.sled_err(e))? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| LedgerError::Decode {
                        key: key.replace('\0', "/"),
                        reason: e.to_string(),
                    })
            }
        }
    }

    /// The record of a unit.
    pub fn file(&self, unit_key: &str) -> Result<Option<FileRecord>, LedgerError> {
        self.get(&self.files, unit_key)
    }

    /// The record of a session.
    pub fn session(&self, session_key: &str) -> Result<Option<SessionRecord>, LedgerError> {
        self.get(&self.sessions, session_key)
    }

    /// The record of a message.
    pub fn message(&self, external_id: &str) -> Result<Option<MessageRecord>, LedgerError> {
        self.get(&self.messages, external_id)
    }

    /// A quarantined record.
    pub fn quarantined(&self, key: &str) -> Result<Option<Quarantined>, LedgerError> {
        self.get(&self.quarantine, key)
    }

    /// A stored usage row.
    pub fn usage_row(&self, session: &str, key: &str) -> Result<Option<UsageRow>, LedgerError> {
        self.get(&self.usage, &usage_key(session, key))
    }

    /// Every usage key of a session.
    pub fn usage_keys(&self, session: &str) -> Result<Vec<String>, LedgerError> {
        let prefix = format!("{session}\0");
        let mut keys = Vec::new();
        for item in self.usage.scan_prefix(prefix.as_bytes()) {
            let (k, _) = item.map_err(|e| self.sled_err(e))?;
            keys.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(keys)
    }

    /// Every unit's facts for a session.
    pub fn unit_facts(&self, session: &str) -> Result<Vec<(UnitId, Facts)>, LedgerError> {
        let prefix = format!("{session}\0");
        let mut out = Vec::new();
        for item in self.facts.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let Some(unit) = u64::from_str_radix(&key[prefix.len()..], 16).ok() else {
                continue;
            };
            let facts = serde_json::from_slice(&v).map_err(|e| LedgerError::Decode {
                key: key.replace('\0', "/"),
                reason: e.to_string(),
            })?;
            out.push((unit, facts));
        }
        Ok(out)
    }

    /// A session's usage totals.
    pub fn usage_totals(&self, session: &str) -> Result<Option<Usage>, LedgerError> {
        self.get(&self.totals, session)
    }

    /// Every unit record (key, record).
    pub fn files(&self) -> impl Iterator<Item = Result<(String, FileRecord), LedgerError>> + '_ {
        self.iter(&self.files)
    }

    /// Every session record.
    pub fn sessions(
        &self,
    ) -> impl Iterator<Item = Result<(String, SessionRecord), LedgerError>> + '_ {
        self.iter(&self.sessions)
    }

    /// Every deferred write.
    pub fn deferred(&self) -> impl Iterator<Item = Result<(String, Deferred), LedgerError>> + '_ {
        self.iter(&self.deferred)
    }

    /// A deferred write.
    pub fn deferred_entry(&self, key: &str) -> Result<Option<Deferred>, LedgerError> {
        self.get(&self.deferred, key)
    }

    /// Number of writes waiting for the server's windows.
    pub fn deferred_count(&self) -> usize {
        self.deferred.len()
    }

    /// Every quarantined record.
    pub fn quarantine(
        &self,
    ) -> impl Iterator<Item = Result<(String, Quarantined), LedgerError>> + '_ {
        self.iter(&self.quarantine)
    }

    /// Number of messages acknowledged.
    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    fn iter<'a, T: DeserializeOwned + 'a>(
        &'a self,
        tree: &'a sled::Tree,
    ) -> impl Iterator<Item = Result<(String, T), LedgerError>> + 'a {
        tree.iter().map(move |item| {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            let key = String::from_utf8_lossy(&k).into_owned();
            let value = serde_json::from_slice(&v).map_err(|e| LedgerError::Decode {
                key: key.replace('\0', "/"),
                reason: e.to_string(),
            })?;
            Ok((key, value))
        })
    }

    /// A counter or setting in `meta`.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>, LedgerError> {
        self.get(&self.meta, key)
    }

    /// A string in `meta`.
    pub fn meta_string(&self, key: &str) -> Result<Option<String>, LedgerError> {
        self.get(&self.meta, key)
    }

    /// Sets a string in `meta` (flushed with the next commit).
    pub fn set_meta_string(&self, key: &str, value: &str) -> Result<(), LedgerError> {
        self.meta
            .insert(
                key.as_bytes(),
                serde_json::to_vec(value).unwrap_or_default(),
            )
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Sets a counter or setting in `meta` (flushed with the next commit).
    pub fn set_meta_u64(&self, key: &str, value: u64) -> Result<(), LedgerError> {
        self.meta
            .insert(
                key.as_bytes(),
                serde_json::to_vec(&value).unwrap_or_default(),
            )
            .map_err(|e| self.sled_err(e))?;
        Ok(())
    }

    /// Applies every write of one acknowledged unit atomically, then flushes to disk.
    pub fn commit(&self, commit: &Commit) -> Result<(), LedgerError> {
        if commit.is_empty() {
            return Ok(());
        }
        fn batch<T: Serialize>(items: &[(String, T)]) -> sled::Batch {
            let mut b = sled::Batch::default();
            for (k, v) in items {
                b.insert(k.as_bytes(), serde_json::to_vec(v).unwrap_or_default());
            }
            b
        }
        let mut files = batch(&commit.files);
        for key in &commit.forget_files {
            files.remove(key.as_bytes());
        }
        let sessions = batch(&commit.sessions);
        let messages = batch(&commit.messages);
        let quarantine = optional(&commit.quarantine);
        let totals = batch(&commit.totals);
        fn optional<T: Serialize>(items: &[(String, Option<T>)]) -> sled::Batch {
            let mut b = sled::Batch::default();
            for (k, v) in items {
                match v {
                    Some(v) => b.insert(k.as_bytes(), serde_json::to_vec(v).unwrap_or_default()),
                    None => b.remove(k.as_bytes()),
                }
            }
            b
        }
        let facts = optional(&commit.facts);
        let usage = optional(&commit.usage);
        let deferred = optional(&commit.deferred);
        (
            &self.files,
            &self.sessions,
            &self.messages,
            &self.facts,
            &self.usage,
            &self.totals,
            &self.deferred,
            &self.quarantine,
        )
            .transaction(|(f, s, m, fa, u, t, d, q)| {
                f.apply_batch(&files)?;
                s.apply_batch(&sessions)?;
                m.apply_batch(&messages)?;
                fa.apply_batch(&facts)?;
                u.apply_batch(&usage)?;
                t.apply_batch(&totals)?;
                d.apply_batch(&deferred)?;
                q.apply_batch(&quarantine)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| match e {
                sled::transaction::TransactionError::Storage(e) => self.sled_err(e),
                sled::transaction::TransactionError::Abort(()) => {
                    self.sled_err(sled::Error::Unsupported("transaction aborted".into()))
                }
            })?;
        self.flush()
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
        let mut reset = 0;
        for key in session_keys {
            if let Some(mut rec) = self.session(key)? {
                rec.acked = None;
                self.sessions
                    .insert(key.as_bytes(), serde_json::to_vec(&rec).unwrap_or_default())
                    .map_err(|e| self.sled_err(e))?;
                reset += 1;
            }
        }
        for item in self.messages.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if let Ok(mut rec) = serde_json::from_slice::<MessageRecord>(&v)
                && wanted.contains(rec.session.as_str())
            {
                rec.hash = MessageRecord::UNKNOWN_HASH;
                self.messages
                    .insert(k, serde_json::to_vec(&rec).unwrap_or_default())
                    .map_err(|e| self.sled_err(e))?;
            }
        }
        self.flush()?;
        Ok(reset)
    }

    /// Makes a unit be read again from its start; its contribution to the fold is replaced on
    /// that read (`sync --force`).
    pub fn rewind_file(&self, unit_key: &str) -> Result<(), LedgerError> {
        if let Some(mut rec) = self.file(unit_key)? {
            rec.checkpoint = Checkpoint::default();
            rec.state = None;
            rec.len = 0;
            rec.mtime_ms = 0;
            self.files
                .insert(
                    unit_key.as_bytes(),
                    serde_json::to_vec(&rec).unwrap_or_default(),
                )
                .map_err(|e| self.sled_err(e))?;
        }
        Ok(())
    }

    /// Flushes to disk.
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush().map_err(|e| self.sled_err(e))?;
        Ok(())
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
