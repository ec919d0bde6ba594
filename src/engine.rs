//! One pass of work over a unit: read what is new, parse it, plan it against the ledger, push
//! it, and commit the ledger once the server acknowledged it. The daemon and the one-shot
//! `sync` both drive units through [`Engine::process_unit`]; they differ only in scheduling.
//!
//! Offsets move only on acknowledgement (Vector's rule): if pushing stops half-way (shutdown,
//! revoked key), nothing of the unit is committed and the next pass re-sends it; the server
//! upserts by id, so the overlap updates rows instead of duplicating them.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::fold::{self, Mode};
use crate::keyed_locks::KeyedLocks;
use crate::ledger::{
    Commit, FileRecord, Ledger, LedgerError, LedgerStore, MessageRecord, Quarantined,
};
use crate::model::SessionPayload;
use crate::plan::{self, Plan, SessionWork, Shaping};
use crate::push::{Backoff, Client, ErrorClass, PushError, RetryEnd};
use crate::sources::{self, Access, ParseOptions, Record, Unit};
use crate::tail::{self, Identity};

/// Why pushing stopped before the work was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pause {
    /// The key was refused (wrong or revoked): wait for new credentials.
    Auth(String),
    /// The URL does not answer like OpenSync: wait for a config change.
    WrongUrl(String),
}

impl std::fmt::Display for Pause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pause::Auth(why) => write!(
                f,
                "the server refused the API key ({why}); run `opensyncd login`"
            ),
            Pause::WrongUrl(why) => write!(
                f,
                "the server URL does not look like OpenSync ({why}); check `opensyncd config`"
            ),
        }
    }
}

/// How processing a unit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything readable was acknowledged and committed.
    Done,
    /// Pushing is paused; nothing past the last commit was committed.
    Paused(Pause),
    /// Shutdown was requested; nothing past the last commit was committed.
    Stopped,
}

/// A failure that stops work on a unit (reported, retried on the next pass).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The unit.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The ledger failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Reading an OpenCode store failed.
    #[error("{0}")]
    Source(String),
    /// The task working on the unit panicked (a bug); caught at the task boundary.
    #[error("internal error (panic) while processing: {0}")]
    Panicked(String),
}

/// `OPENSYNCD_TEST_FAULT=panic-once`: the first unit processed in this process panics, so
/// tests can prove a panic is contained at the task boundary and the unit retried. Unset in
/// normal use; costs one relaxed load per unit.
fn inject_test_panic() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !DONE.load(std::sync::atomic::Ordering::Relaxed)
        && std::env::var("OPENSYNCD_TEST_FAULT").as_deref() == Ok("panic-once")
        && !DONE.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        panic!("injected test fault (OPENSYNCD_TEST_FAULT=panic-once)");
    }
}

/// Counters the daemon reports in `status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Counters {
    /// Requests sent.
    pub requests: u64,
    /// Requests retried.
    pub retries: u64,
    /// Sessions written.
    pub sessions_sent: u64,
    /// Messages written.
    pub messages_sent: u64,
    /// Records the server rejected for good.
    pub rejected: u64,
    /// Lines that did not parse.
    pub malformed_lines: u64,
    /// Lines over the size cap.
    pub skipped_long_lines: u64,
    /// Epoch ms of the last acknowledged request.
    pub last_success_ms: Option<i64>,
    /// The last error, with its time.
    pub last_error: Option<(i64, String)>,
}

/// Everything the engine needs, shared by the workers.
pub struct Engine {
    /// The ledger.
    pub ledger: Ledger,
    /// Parser options.
    pub parse: ParseOptions,
    /// Payload shaping (pricing, redaction, caps).
    pub shaping: Shaping,
    /// The client; `None` = not logged in (nothing is pushed or committed). Swapped on reload.
    client: std::sync::RwLock<Option<Client>>,
    /// Read budget per chunk (bytes of complete lines).
    pub chunk_bytes: usize,
    /// Use `/sync/batch` for first-time inserts.
    pub batch: bool,
    /// A single line over this is skipped.
    pub max_line_bytes: usize,
    /// Counters for `status`.
    counters: Mutex<Counters>,
    /// Set to true to stop.
    pub stopping: watch::Receiver<bool>,
    /// Sessions whose last update may have fallen in the server's window.
    settle_pending: Mutex<BTreeSet<String>>,
    /// Per-session locks: one unit at a time may touch a session.
    session_locks: KeyedLocks,
    /// Per-unit locks: one task at a time reads and commits a unit.
    unit_locks: KeyedLocks,
}

/// The wall clock in epoch ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Engine {
    /// Builds an engine.
    pub fn new(
        ledger: Ledger,
        parse: ParseOptions,
        shaping: Shaping,
        client: Option<Client>,
        max_line_bytes: usize,
        stopping: watch::Receiver<bool>,
    ) -> Engine {
        Engine {
            ledger,
            parse,
            shaping,
            client: std::sync::RwLock::new(client),
            chunk_bytes: 4 * 1024 * 1024,
            batch: false,
            max_line_bytes,
            counters: Mutex::new(Counters::default()),
            stopping,
            settle_pending: Mutex::new(BTreeSet::new()),
            session_locks: KeyedLocks::default(),
            unit_locks: KeyedLocks::default(),
        }
    }

    /// Replaces the client (new credentials or URL).
    pub fn set_client(&self, client: Option<Client>) {
        *self.client.write().unwrap_or_else(|p| p.into_inner()) = client;
    }

    /// The current client.
    pub fn client(&self) -> Option<Client> {
        self.client
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        if let Ok(mut c) = self.counters.lock() {
            f(&mut c);
        }
    }

    fn stop_requested(&self) -> bool {
        *self.stopping.borrow()
    }

    /// Reads, pushes and commits everything new in `unit`. A unit whose source names a leader
    /// (a Claude Code subagent file's main transcript) is processed after its leader's unread
    /// lines, so a session is created from its main transcript — with its true start time and
    /// title — whatever order the files were found in.
    pub async fn process_unit(&self, unit: &Unit) -> Result<Outcome, EngineError> {
        inject_test_panic();
        if let Some(leader) = sources::source(unit.source).leader(unit)
            && self.has_unread(&leader)?
        {
            match self.process_one(&leader).await? {
                Outcome::Done => {}
                other => return Ok(other),
            }
        }
        self.process_one(unit).await
    }

    /// Whether a line unit has bytes the ledger has not acknowledged.
    fn has_unread(&self, unit: &Unit) -> Result<bool, EngineError> {
        let Ok(meta) = std::fs::metadata(&unit.path) else {
            return Ok(false);
        };
        let offset = self
            .ledger
            .file(&unit.ledger_key())?
            .map_or(0, |r| r.checkpoint.offset);
        Ok(meta.is_file() && meta.len() != offset)
    }

    async fn process_one(&self, unit: &Unit) -> Result<Outcome, EngineError> {
        // One task at a time per unit: the daemon never runs a unit twice, but a leader may
        // be pulled in by its followers while it is also queued.
        let _unit = self.unit_locks.lock(&unit.ledger_key()).await;
        loop {
            if self.stop_requested() {
                return Ok(Outcome::Stopped);
            }
            let step = match unit.access {
                Access::Lines => self.read_jsonl_step(unit)?,
                Access::Snapshot => self.read_snapshot_step(unit)?,
            };
            let Some(step) = step else {
                return Ok(Outcome::Done);
            };
            let more = step.more;
            match self.push_step(unit, step).await? {
                Outcome::Done if more => continue,
                other => return Ok(other),
            }
        }
    }

    /// Reads the next chunk of a JSONL unit; `None` when there is nothing new.
    fn read_jsonl_step(&self, unit: &Unit) -> Result<Option<Step>, EngineError> {
        let path = &unit.path;
        let key = unit.ledger_key();
        let io = |source| EngineError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Gone: what it contributed is retracted from the sessions it fed (what the
                // server holds of a session nothing feeds any more stays as it is).
                return self.gone_step(key);
            }
            Err(e) => return Err(io(e)),
        };
        let meta = file.metadata().map_err(io)?;
        let len = meta.len();
        let mut record = self.ledger.file(&key)?.unwrap_or_default();
        if tail::check_identity(&mut file, len, &record.checkpoint).map_err(io)?
            == Identity::Changed
        {
            tracing::info!(file = %path.display(), "file was truncated or replaced; reading it again from the start");
            record.checkpoint = tail::Checkpoint::default();
            record.state = None;
        }
        if len == record.checkpoint.offset {
            return Ok(None);
        }
        let mut parser = match sources::line_parser(unit, record.state.as_ref(), self.parse) {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(file = %path.display(), %err, "parser state unusable; reading the file again from the start");
                record.checkpoint = tail::Checkpoint::default();
                sources::line_parser(unit, None, self.parse)
                    .map_err(|e| EngineError::Source(e.to_string()))?
            }
        };
        // Read from the start by a unit that fed sessions before (rewritten, truncated,
        // rewound by `--force`): its old contribution is replaced, not added to.
        let mode = if record.checkpoint.offset == 0 && !record.sessions.is_empty() {
            Mode::Reset
        } else {
            Mode::Append
        };
        let chunk = tail::read_lines(
            &mut file,
            record.checkpoint.offset,
            self.chunk_bytes,
            self.max_line_bytes,
        )
        .map_err(io)?;
        if chunk.end == record.checkpoint.offset {
            return Ok(None); // only a partial line so far
        }
        let mut records = Vec::new();
        let mut malformed = 0u64;
        let mut first_error = None;
        for line in chunk.iter_lines() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Err(err) = parser.parse_line(line, &mut records) {
                malformed += 1;
                first_error.get_or_insert(err);
            }
        }
        // One warning per read, not per line: a binary file would otherwise log a line for
        // every newline byte in it. The count goes to the ledger and `status`.
        if let Some(err) = first_error {
            tracing::warn!(file = %path.display(), lines = malformed, first = %err, "skipped lines that do not parse");
        }
        record.checkpoint = tail::fingerprint(&mut file, chunk.end).map_err(io)?;
        record.state = Some(parser.save_state());
        record.len = len;
        record.mtime_ms = tail::mtime_ms(&meta);
        record.malformed_lines += malformed;
        record.skipped_long_lines += chunk.skipped_long_lines;
        self.count(|c| {
            c.malformed_lines += malformed;
            c.skipped_long_lines += chunk.skipped_long_lines;
        });
        Ok(Some(Step {
            key,
            file: record,
            records,
            mode,
            gone: false,
            more: chunk.more,
        }))
    }

    /// The step of a unit whose file is gone: if the ledger knows it, what it contributed is
    /// retracted and its record removed.
    fn gone_step(&self, key: String) -> Result<Option<Step>, EngineError> {
        Ok(self.ledger.file(&key)?.map(|file| Step {
            key,
            file,
            records: Vec::new(),
            mode: Mode::Reset,
            gone: true,
            more: false,
        }))
    }

    /// Reads a snapshot unit: the records are its whole contribution to the sessions they name.
    fn read_snapshot_step(&self, unit: &Unit) -> Result<Option<Step>, EngineError> {
        let key = unit.ledger_key();
        if !sources::source(unit.source).exists(unit) {
            // Gone (an OpenCode session deleted): retract what it contributed.
            return self.gone_step(key);
        }
        let mut record = self.ledger.file(&key)?.unwrap_or_default();
        let snapshot = sources::read_snapshot(unit, record.state.as_ref(), self.parse)
            .map_err(|e| EngineError::Source(e.to_string()))?;
        if snapshot.records.is_empty() && record.state.as_ref() == Some(&snapshot.state) {
            return Ok(None);
        }
        record.state = Some(snapshot.state);
        Ok(Some(Step {
            key,
            file: record,
            records: snapshot.records,
            mode: Mode::ReplaceSessions,
            gone: false,
            more: snapshot.more,
        }))
    }

    async fn push_step(&self, unit: &Unit, step: Step) -> Result<Outcome, EngineError> {
        let Some(client) = self.client() else {
            // Never commit without a server acknowledgement: nothing moves until logged in.
            return Ok(Outcome::Paused(Pause::Auth("not logged in".into())));
        };
        let source = unit.source;
        let Step {
            key: unit_key,
            mut file,
            records,
            mode,
            gone,
            more: _,
        } = step;
        let fed: BTreeSet<String> = records
            .iter()
            .map(|r| r.session_id())
            .filter(|sid| !sid.is_empty())
            .map(|sid| fold::session_key(source, sid))
            .collect();
        let mut lock_keys = fed.clone();
        if mode != Mode::Append {
            lock_keys.extend(file.sessions.iter().cloned());
        }
        let _guards = self.session_locks.lock_all(&lock_keys).await;
        let prior: Vec<String> = file
            .sessions
            .iter()
            .filter_map(|k| k.split_once('\0').map(|(_, sid)| sid.to_string()))
            .collect();
        let mut store = LedgerStore::new(&self.ledger);
        let touched = fold::fold_unit(
            &mut store,
            source,
            fold::unit_id(&unit_key),
            &prior,
            mode,
            records,
        );
        let Plan { works, .. } = plan::plan(
            &self.ledger,
            &mut store,
            source,
            touched,
            &self.shaping,
            now_ms(),
            gone,
        )?;
        let mut commit = Commit::default();
        store.into_commit(&mut commit)?;
        if mode == Mode::Reset {
            file.sessions.clear();
        }
        for key in fed {
            if !file.sessions.contains(&key) {
                file.sessions.push(key);
            }
        }
        if gone {
            commit.forget_files.push(unit_key);
        } else {
            file.unit = Some(unit.clone());
            commit.files.push((unit_key, file));
        }
        let mut works = works;
        if self.batch
            && let Err(outcome) = self.push_batches(&client, &mut works, &mut commit).await
        {
            return Ok(outcome);
        }
        for work in works {
            match self.push_work(&client, work, &mut commit).await {
                Ok(()) => {}
                Err(outcome) => return Ok(outcome),
            }
        }
        self.ledger.commit(&commit)?;
        Ok(Outcome::Done)
    }

    /// Pushes one session's work in order; fills `commit` with what was acknowledged.
    async fn push_work(
        &self,
        client: &Client,
        mut work: SessionWork,
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        if let Some(create) = work.create.take()
            && self
                .send_session(client, &create, &work.key, commit)
                .await?
        {
            work.record.acked = Some(create);
            work.record.last_write_ms = now_ms();
        }
        for msg in std::mem::take(&mut work.messages) {
            match self.send(|| client.upsert_message(&msg.payload)).await? {
                Sent::Acked => {
                    work.record.messages += 1;
                    work.record.last_write_ms = now_ms();
                    commit.messages.push((
                        msg.payload.external_id.clone(),
                        MessageRecord {
                            session: work.key.clone(),
                            hash: msg.hash,
                        },
                    ));
                    self.count(|c| c.messages_sent += 1);
                }
                Sent::Rejected(reason) => {
                    self.quarantine(
                        commit,
                        "message",
                        &msg.payload.external_id,
                        &reason,
                        msg.hash,
                        &msg.payload,
                    );
                }
            }
        }
        if let Some(update) = work.update.take() {
            let in_window = now_ms() - work.record.last_write_ms < plan::SESSION_WINDOW_MS;
            let may_be_skipped = work
                .record
                .acked
                .as_ref()
                .is_some_and(|prev| plan::server_would_skip(prev, &update));
            if self
                .send_session(client, &update, &work.key, commit)
                .await?
            {
                work.record.settle_due = in_window && may_be_skipped;
                if work.record.settle_due {
                    self.settle_pending
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(work.key.clone());
                }
                work.record.acked = Some(update);
                work.record.last_write_ms = now_ms();
            }
        }
        commit.sessions.push((work.key, work.record));
        Ok(())
    }

    /// The batch transport: first-time session inserts and never-sent messages go through
    /// `/sync/batch` (which cannot carry `createdAt`, and wipes the parts of messages that
    /// already exist — so only new ones are sent this way). Whatever the batch did not take
    /// stays in `works` for the per-record path, which reports each record's own error.
    async fn push_batches(
        &self,
        client: &Client,
        works: &mut [SessionWork],
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        const MAX_MESSAGES: usize = 200;
        let budget = self.shaping.max_body_bytes / 2;
        let mut sessions: Vec<(usize, SessionPayload)> = Vec::new();
        let mut messages: Vec<(usize, plan::PlannedMessage)> = Vec::new();
        for (i, work) in works.iter_mut().enumerate() {
            if let Some(create) = work.create.take() {
                sessions.push((i, create));
            }
            let mut keep = Vec::new();
            for m in std::mem::take(&mut work.messages) {
                let known = self
                    .ledger
                    .message(&m.payload.external_id)
                    .ok()
                    .flatten()
                    .is_some();
                if known {
                    keep.push(m)
                } else {
                    messages.push((i, m))
                }
            }
            work.messages = keep;
        }
        // Sessions go in the first batch so that messages never auto-create bare sessions.
        let mut pending_sessions = sessions;
        let mut rest = messages.into_iter().peekable();
        while !pending_sessions.is_empty() || rest.peek().is_some() {
            let batch_sessions = std::mem::take(&mut pending_sessions);
            let mut batch_messages = Vec::new();
            let mut size = 0;
            while let Some((_, m)) = rest.peek() {
                let len = serde_json::to_vec(&m.payload).map_or(0, |v| v.len());
                if !batch_messages.is_empty()
                    && (batch_messages.len() >= MAX_MESSAGES || size + len > budget)
                {
                    break;
                }
                size += len;
                batch_messages.extend(rest.next());
            }
            let s_payloads: Vec<SessionPayload> =
                batch_sessions.iter().map(|(_, s)| s.clone()).collect();
            let m_payloads: Vec<_> = batch_messages
                .iter()
                .map(|(_, m)| m.payload.clone())
                .collect();
            let answer = std::sync::Mutex::new(None);
            let sent = self
                .send(|| async {
                    let outcome = client.batch(&s_payloads, &m_payloads).await?;
                    *answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                    Ok(())
                })
                .await?;
            let outcome = match (sent, answer.into_inner().unwrap_or_else(|p| p.into_inner())) {
                (Sent::Acked, Some(outcome)) => outcome,
                // The batch as a whole was refused: every item goes the per-record way, which
                // tells them apart.
                _ => crate::push::BatchOutcome {
                    sessions_rejected: Some("batch refused".into()),
                    messages_rejected: Some("batch refused".into()),
                    ..Default::default()
                },
            };
            let failed: HashMap<&str, &str> = outcome
                .failed_messages
                .iter()
                .map(|(id, why)| (id.as_str(), why.as_str()))
                .collect();
            for (i, create) in batch_sessions {
                if outcome.sessions_rejected.is_some() {
                    works[i].create = Some(create); // per-record reports the real error
                } else {
                    works[i].record.acked = Some(create);
                    works[i].record.last_write_ms = now_ms();
                    self.count(|c| c.sessions_sent += 1);
                }
            }
            for (i, m) in batch_messages {
                if outcome.messages_rejected.is_some()
                    || failed.contains_key(m.payload.external_id.as_str())
                {
                    works[i].messages.push(m);
                    continue;
                }
                works[i].record.messages += 1;
                works[i].record.last_write_ms = now_ms();
                self.count(|c| c.messages_sent += 1);
                commit.messages.push((
                    m.payload.external_id.clone(),
                    MessageRecord {
                        session: works[i].key.clone(),
                        hash: m.hash,
                    },
                ));
            }
        }
        Ok(())
    }

    /// Sends a session payload; `Ok(false)` when it was rejected (and quarantined).
    async fn send_session(
        &self,
        client: &Client,
        payload: &SessionPayload,
        key: &str,
        commit: &mut Commit,
    ) -> Result<bool, Outcome> {
        match self.send(|| client.upsert_session(payload)).await? {
            Sent::Acked => {
                self.count(|c| c.sessions_sent += 1);
                Ok(true)
            }
            Sent::Rejected(reason) => {
                let hash = crate::model::json_hash(payload);
                self.quarantine(commit, "session", key, &reason, hash, payload);
                Ok(false)
            }
        }
    }

    fn quarantine<T: serde::Serialize>(
        &self,
        commit: &mut Commit,
        kind: &str,
        id: &str,
        reason: &str,
        hash: u128,
        _payload: &T,
    ) {
        tracing::warn!(kind, id = %id.replace('\0', "/"), %reason, "the server rejected a record; quarantined (see `opensyncd status`)");
        self.count(|c| c.rejected += 1);
        commit.quarantine.push((
            plan::quarantine_key(kind, id),
            Quarantined {
                kind: kind.into(),
                id: id.replace('\0', "/"),
                reason: reason.into(),
                at_ms: now_ms(),
                hash,
            },
        ));
    }

    /// Sends one request until it is acknowledged or rejected, backing off on transient
    /// failures. Returns `Err` when pushing must pause or stop.
    async fn send<'a, F, Fut>(&self, op: F) -> Result<Sent, Outcome>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), PushError>> + 'a,
    {
        let mut backoff = Backoff::default();
        let mut stopping = self.stopping.clone();
        let counted = || {
            self.count(|c| c.requests += 1);
            op()
        };
        let end = crate::push::retry(counted, &mut backoff, &mut stopping, |err, delay| {
            let message = err.to_string();
            self.count(|c| {
                c.retries += 1;
                c.last_error = Some((now_ms(), message.clone()));
            });
            tracing::warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "request failed; retrying");
        })
        .await;
        match end {
            RetryEnd::Acked => {
                self.count(|c| c.last_success_ms = Some(now_ms()));
                Ok(Sent::Acked)
            }
            RetryEnd::Stopped => Err(Outcome::Stopped),
            RetryEnd::Failed(err) => {
                let message = err.to_string();
                self.count(|c| c.last_error = Some((now_ms(), message.clone())));
                match err.class() {
                    // One record cannot be split further; our caps keep bodies far below the
                    // platform limit, so this is a record the server will not take.
                    ErrorClass::Split | ErrorClass::Reject | ErrorClass::Retry => {
                        Ok(Sent::Rejected(message))
                    }
                    ErrorClass::AuthPaused => Err(Outcome::Paused(Pause::Auth(message))),
                    ErrorClass::WrongUrl => Err(Outcome::Paused(Pause::WrongUrl(message))),
                }
            }
        }
    }

    /// Loads the sessions whose settle re-send is still due (after a restart).
    pub fn load_settle_pending(&self) -> Result<(), EngineError> {
        let mut pending = self
            .settle_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for item in self.ledger.sessions() {
            let (key, rec) = item?;
            if rec.settle_due {
                pending.insert(key);
            }
        }
        Ok(())
    }

    /// Epoch ms at which the next settle re-send is due, if any.
    pub fn next_settle_ms(&self) -> Result<Option<i64>, EngineError> {
        let keys: Vec<String> = self
            .settle_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut next: Option<i64> = None;
        for key in keys {
            if let Some(rec) = self.ledger.session(&key)?.filter(|r| r.settle_due) {
                let due = rec.last_write_ms + plan::SESSION_WINDOW_MS;
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        Ok(next)
    }

    /// Re-sends session payloads whose last update may have been dropped by the server's
    /// 10 s window, once the window has passed. Returns how many were sent.
    pub async fn settle(&self) -> Result<Outcome, EngineError> {
        let Some(client) = self.client() else {
            return Ok(Outcome::Paused(Pause::Auth("not logged in".into())));
        };
        let keys: Vec<String> = self
            .settle_pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for key in keys {
            let _guard = self.session_locks.lock(&key).await;
            let Some(mut rec) = self.ledger.session(&key)? else {
                continue;
            };
            let (true, Some(payload)) = (rec.settle_due, rec.acked.clone()) else {
                self.settle_pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                continue;
            };
            if now_ms() - rec.last_write_ms < plan::SESSION_WINDOW_MS {
                continue;
            }
            let mut commit = Commit::default();
            match self
                .send_session(&client, &payload, &key, &mut commit)
                .await
            {
                Ok(_) => {}
                Err(outcome) => return Ok(outcome),
            }
            rec.settle_due = false;
            rec.last_write_ms = now_ms();
            commit.sessions.push((key.clone(), rec));
            self.ledger.commit(&commit)?;
            self.settle_pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        }
        Ok(Outcome::Done)
    }
}

/// What reading produced: the records plus the unit record to commit with them.
struct Step {
    key: String,
    file: FileRecord,
    records: Vec<Record>,
    /// How the records relate to what the unit contributed before.
    mode: Mode,
    /// The unit's file is gone: its record is removed on commit.
    gone: bool,
    more: bool,
}

enum Sent {
    Acked,
    Rejected(String),
}

/// Default pause before re-probing a paused server.
pub const PAUSE_PROBE_INTERVAL: Duration = Duration::from_secs(300);
