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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sled::Transactional;

use crate::fold::{Facts, FoldStore, SessionState, UnitId, Usage, UsageRow};
use crate::model::SessionPayload;
use crate::tail::Checkpoint;

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

/// What is stored per unit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// JSONL units: where reading stopped.
    pub checkpoint: Checkpoint,
    /// Parser / snapshot state at the checkpoint.
    pub state: Option<serde_json::Value>,
    /// Length and mtime seen at the last commit (cheap "unchanged?" test for scans).
    pub len: u64,
    /// Modification time (ms) at the last commit.
    pub mtime_ms: i64,
    /// Lines that did not parse (cumulative).
    pub malformed_lines: u64,
    /// Lines over the size cap (cumulative).
    pub skipped_long_lines: u64,
    /// Session keys this unit has fed (their contributions are retracted when the unit is
    /// read again from its start or is gone).
    #[serde(default)]
    pub sessions: Vec<String>,
    /// The unit itself, so that one whose file is gone can still be processed (retracted).
    #[serde(default)]
    pub unit: Option<crate::sources::Unit>,
}

/// What is stored per session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Folded metadata and totals.
    pub state: SessionState,
    /// The last acknowledged session payload; `None` = never created on the server.
    pub acked: Option<SessionPayload>,
    /// Wall-clock ms of the last acknowledged write touching this session (session or
    /// message: both bump the server's `updatedAt`, which starts its 10 s window).
    pub last_write_ms: i64,
    /// Number of messages acknowledged.
    pub messages: u64,
    /// Models without a price (cost counted as 0).
    pub unpriced_models: Vec<String>,
}

impl SessionRecord {
    /// A session never sent.
    pub fn new(state: SessionState) -> SessionRecord {
        SessionRecord {
            state,
            acked: None,
            last_write_ms: 0,
            messages: 0,
            unpriced_models: Vec::new(),
        }
    }
}

/// What is stored per message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The session key it was sent under.
    pub session: String,
    /// Hash of the acknowledged payload.
    pub hash: u128,
    /// The `createdAt` the server stored at insert (epoch ms): its 5 s window for updates
    /// runs from there.
    #[serde(default)]
    pub created_ms: i64,
}

/// A write held back because the server would silently skip it now (its dedup windows), to
/// be sent once the window has passed. Kept in the ledger, so it survives restarts and crashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    /// When it may be sent (epoch ms).
    pub due_ms: i64,
    /// The session key.
    pub session: String,
    /// The message payload (shaped, as it will be sent) and its hash; `None` for a session
    /// write, which sends the session's state as it is at that moment.
    pub message: Option<(crate::model::MessagePayload, u128)>,
    /// Send it even if the ledger already records this content as acknowledged: the
    /// acknowledgement may have been for a write the server skipped. For a session write: send
    /// it even if a later write seems to carry the same state, because what the server holds
    /// is uncertain until a write outside its window.
    #[serde(default)]
    pub confirm: bool,
}

/// The `deferred` tree key of a message write.
pub fn deferred_message_key(external_id: &str) -> String {
    format!("m\0{external_id}")
}

/// The `deferred` tree key of a session write.
pub fn deferred_session_key(session_key: &str) -> String {
    format!("s\0{session_key}")
}

/// A record the server rejected for good.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// `session` or `message`.
    pub kind: String,
    /// Its external id.
    pub id: String,
    /// The server's reason.
    pub reason: String,
    /// When (epoch ms).
    pub at_ms: i64,
    /// Hash of the rejected payload (a changed payload is tried again).
    pub hash: u128,
    /// The ledger key of the record (a session key, a message id).
    #[serde(default)]
    pub key: String,
    /// A refused message as it was before shaping, to be shaped again and retried when the
    /// settings change or on `sync --retry-rejected`.
    #[serde(default)]
    pub raw: Option<crate::model::MessagePayload>,
}

/// All writes from one acknowledged unit of work.
#[derive(Debug, Default)]
pub struct Commit {
    /// Unit key → new file record.
    pub files: Vec<(String, FileRecord)>,
    /// Units whose file is gone: their records are removed.
    pub forget_files: Vec<String>,
    /// Session key → new session record.
    pub sessions: Vec<(String, SessionRecord)>,
    /// Message id → record.
    pub messages: Vec<(String, MessageRecord)>,
    /// Fold: (session key, unit id) → facts (`None` removes).
    pub facts: Vec<(String, Option<Facts>)>,
    /// Fold: (session key, usage key) → row (`None` removes).
    pub usage: Vec<(String, Option<UsageRow>)>,
    /// Fold: session key → usage totals.
    pub totals: Vec<(String, Usage)>,
    /// Writes held for the server's windows (`None` removes one that was sent).
    pub deferred: Vec<(String, Option<Deferred>)>,
    /// Quarantined records (`None` releases one the server took after all).
    pub quarantine: Vec<(String, Option<Quarantined>)>,
}

impl Commit {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.forget_files.is_empty()
            && self.sessions.is_empty()
            && self.messages.is_empty()
            && self.facts.is_empty()
            && self.usage.is_empty()
            && self.totals.is_empty()
            && self.deferred.is_empty()
            && self.quarantine.is_empty()
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
    fn stamp_id(&self, dir: &Path, outcome: &OpenOutcome) -> Result<(), LedgerError> {
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

    fn open_plain(dir: &Path) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError::Sled {
            path: dir.to_path_buf(),
            source,
        };
        // A small cache: the working set is one unit's records; memory must stay flat.
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
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

    fn check_schema(&self) -> Result<(), LedgerError> {
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
    pub fn reset_acks(&self, session_keys: &[String]) -> Result<usize, LedgerError> {
        let wanted: std::collections::HashSet<&str> =
            session_keys.iter().map(String::as_str).collect();
        let mut reset = 0;
        for key in session_keys {
            if let Some(mut rec) = self.session(key)? {
                rec.acked = None;
                rec.messages = 0;
                self.sessions
                    .insert(key.as_bytes(), serde_json::to_vec(&rec).unwrap_or_default())
                    .map_err(|e| self.sled_err(e))?;
                reset += 1;
            }
        }
        for item in self.messages.iter() {
            let (k, v) = item.map_err(|e| self.sled_err(e))?;
            if let Ok(rec) = serde_json::from_slice::<MessageRecord>(&v)
                && wanted.contains(rec.session.as_str())
            {
                self.messages.remove(k).map_err(|e| self.sled_err(e))?;
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

    /// Migrates a version 1 ledger (before the one fold): what the server acknowledged
    /// (message hashes, the last session payloads, quarantine) is kept; the fold's state is
    /// dropped together with every read checkpoint, so every unit is read again from its start
    /// and the fold rebuilt. The rebuilt payloads are compared with the acknowledged ones, so
    /// only what really differs is sent again.
    fn migrate_v1(&self) -> Result<(), LedgerError> {
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

/// The fold's store over the ledger, with an in-memory overlay: reads see pending writes;
/// the writes become part of the unit's commit (so the fold's state moves only with an
/// acknowledgement, like everything else in the ledger).
pub struct LedgerStore<'a> {
    ledger: &'a Ledger,
    facts: HashMap<String, std::collections::BTreeMap<UnitId, Option<Facts>>>,
    rows: HashMap<String, Option<UsageRow>>,
    totals: HashMap<String, Usage>,
    /// A read failed: the fold saw an incomplete state, so nothing of it may be committed.
    failed: Option<LedgerError>,
}

impl<'a> LedgerStore<'a> {
    /// An empty overlay.
    pub fn new(ledger: &'a Ledger) -> LedgerStore<'a> {
        LedgerStore {
            ledger,
            facts: HashMap::new(),
            rows: HashMap::new(),
            totals: HashMap::new(),
            failed: None,
        }
    }

    fn note<T: Default>(&mut self, result: Result<T, LedgerError>) -> T {
        match result {
            Ok(v) => v,
            Err(err) => {
                self.failed.get_or_insert(err);
                T::default()
            }
        }
    }

    /// Moves the pending writes into `commit`; fails if any read failed.
    pub fn into_commit(self, commit: &mut Commit) -> Result<(), LedgerError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        for (session, units) in self.facts {
            for (unit, facts) in units {
                commit.facts.push((facts_key(&session, unit), facts));
            }
        }
        commit.usage.extend(self.rows);
        commit.totals.extend(self.totals);
        Ok(())
    }
}

impl FoldStore for LedgerStore<'_> {
    fn unit_facts(&mut self, session: &str) -> Vec<(UnitId, Facts)> {
        let stored = self.ledger.unit_facts(session);
        let mut all: std::collections::BTreeMap<UnitId, Facts> =
            self.note(stored).into_iter().collect();
        if let Some(pending) = self.facts.get(session) {
            for (unit, facts) in pending {
                match facts {
                    Some(f) => {
                        all.insert(*unit, f.clone());
                    }
                    None => {
                        all.remove(unit);
                    }
                }
            }
        }
        all.into_iter().collect()
    }

    fn set_unit_facts(&mut self, session: &str, unit: UnitId, facts: Option<Facts>) {
        self.facts
            .entry(session.to_string())
            .or_default()
            .insert(unit, facts);
    }

    fn usage_row(&mut self, session: &str, key: &str) -> UsageRow {
        let k = usage_key(session, key);
        if let Some(row) = self.rows.get(&k) {
            return row.clone().unwrap_or_default();
        }
        let stored = self.ledger.usage_row(session, key);
        self.note(stored).unwrap_or_default()
    }

    fn set_usage_row(&mut self, session: &str, key: &str, row: UsageRow) {
        let value = (!row.0.is_empty()).then_some(row);
        self.rows.insert(usage_key(session, key), value);
    }

    fn usage_keys(&mut self, session: &str) -> Vec<String> {
        let stored = self.ledger.usage_keys(session);
        let mut keys: std::collections::BTreeSet<String> = self.note(stored).into_iter().collect();
        let prefix = format!("{session}\0");
        for (k, row) in &self.rows {
            if let Some(key) = k.strip_prefix(&prefix) {
                if row.is_some() {
                    keys.insert(key.to_string());
                } else {
                    keys.remove(key);
                }
            }
        }
        keys.into_iter().collect()
    }

    fn usage(&mut self, session: &str) -> Usage {
        if let Some(u) = self.totals.get(session) {
            return u.clone();
        }
        let stored = self.ledger.usage_totals(session);
        self.note(stored).unwrap_or_default()
    }

    fn set_usage(&mut self, session: &str, usage: Usage) {
        self.totals.insert(session.to_string(), usage);
    }
}

/// The `facts` tree key.
fn facts_key(session: &str, unit: UnitId) -> String {
    format!("{session}\0{unit:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceId;

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
        assert!(ledger.message("m").unwrap().is_none());
    }

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
