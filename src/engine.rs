//! One pass of work over a unit: read what is new, parse it, plan it against the ledger, push
//! it, and commit the ledger once the server acknowledged it. The daemon and the one-shot
//! `sync` both drive units through [`Engine::process_unit`]; they differ only in scheduling.
//!
//! Offsets move only on acknowledgement (Vector's rule): if pushing stops half-way (shutdown,
//! revoked key), nothing of the unit is committed and the next pass re-sends it; the server
//! upserts by id, so the overlap updates rows instead of duplicating them.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::clock::Clock;
use crate::flow::{Flow, FlowOptions};
use crate::fold::{self, Mode};
use crate::keyed_locks::KeyedLocks;
use crate::ledger::{Commit, FileRecord, Ledger, LedgerError, LedgerStore};
use crate::plan::{self, Plan, Shaping};
use crate::push::Client;
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
    /// A follower file waits for its leader (see [`LoneFollower::Wait`]); nothing was read.
    /// Look at it again at `until_ms` (epoch ms), when it is read as it is if still alone.
    Waiting {
        /// When the wait ends.
        until_ms: i64,
    },
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
    /// Models without a price met this run, with the tokens their cost leaves out.
    pub unpriced: std::collections::BTreeMap<String, crate::model::Tokens>,
    /// The last error, with its time.
    pub last_error: Option<(i64, String)>,
    /// Bytes of line units read and acknowledged (progress, rate and ETA).
    pub bytes_committed: u64,
    /// Since when requests have been failing in a row with transient errors (server down,
    /// unreachable, 5xx); cleared by the next acknowledged request.
    pub failing_since_ms: Option<i64>,
    /// When the next attempt of a failing request is due.
    pub next_attempt_ms: Option<i64>,
}

/// Everything the engine needs, shared by the workers.
pub struct Engine {
    /// The ledger.
    pub ledger: Ledger,
    /// Parser options.
    pub parse: ParseOptions,
    /// Payload shaping (pricing, redaction, caps); replaced on reload.
    shaping: std::sync::RwLock<Arc<Shaping>>,
    /// Models already reported as having no price (the log says so once per model).
    warned_unpriced: Mutex<HashSet<String>>,
    /// The client; `None` = not logged in (nothing is pushed or committed). Swapped on reload.
    client: std::sync::RwLock<Option<Client>>,
    /// Read budget per chunk (bytes of complete lines).
    pub chunk_bytes: usize,
    /// What full-size reads in flight may hold together, in KiB (see [`READ_BUDGET_BYTES`]).
    read_budget: Arc<Semaphore>,
    /// Use `/sync/batch` for first-time inserts.
    pub batch: bool,
    /// A single line over this is skipped.
    pub max_line_bytes: usize,
    /// Counters for `status`.
    counters: Mutex<Counters>,
    /// Set to true to stop.
    pub stopping: watch::Receiver<bool>,
    /// Per-session locks: one unit at a time may touch a session.
    pub(crate) session_locks: KeyedLocks,
    /// Per-unit locks: one task at a time reads and commits a unit.
    unit_locks: KeyedLocks,
    /// The clock writes are planned with (driven by tests).
    pub clock: Clock,
    /// When this engine started (epoch ms): the server may hold writes from before that this
    /// process knows nothing about (a process killed mid-push), so its windows are assumed
    /// open until 10 s after.
    pub(crate) start_ms: i64,
    /// The sessions `/sync/sessions/list` named, once asked (the batch transport only).
    pub(crate) server_sessions: Mutex<Option<HashSet<String>>>,
    /// The pool every request goes through: adaptive concurrency and the retry budget.
    pub flow: Flow,
}

/// Requests in flight at most when the configuration does not say (a Convex deployment on
/// the small plans runs 16 mutations at once).
pub const DEFAULT_REQUESTS_IN_FLIGHT: usize = 16;

/// Bytes of complete lines read from a unit at a time. 1 MiB is a few hundred messages per
/// ledger commit: fewer commits (and parser-state writes) per byte than smaller reads.
pub const DEFAULT_CHUNK_BYTES: usize = 1024 * 1024;

/// Bytes of full-size reads ([`DEFAULT_CHUNK_BYTES`]) all units in flight may hold at once.
/// A read's records, plans and payloads take a few times its bytes until the server
/// acknowledged them, and a backfill has two units per request slot in flight (32 by
/// default): without a shared budget, 32 large files read at once held ~80 MiB. A unit that
/// finds the budget taken reads [`SMALL_READ_BYTES`] instead, so it never waits for memory —
/// request slots stay busy — and only large files are read in smaller steps while memory is
/// short.
pub const READ_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// A read that takes nothing from the budget: a file with at most this much unread, or one
/// read while the budget is taken.
pub const SMALL_READ_BYTES: usize = 128 * 1024;

/// The wall clock in epoch ms (the system's).
pub fn now_ms() -> i64 {
    crate::clock::system_ms()
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
        clock: Clock,
    ) -> Engine {
        Engine {
            ledger,
            parse,
            shaping: std::sync::RwLock::new(Arc::new(shaping)),
            warned_unpriced: Mutex::new(HashSet::new()),
            client: std::sync::RwLock::new(client),
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            read_budget: Arc::new(Semaphore::new(READ_BUDGET_BYTES / 1024)),
            batch: false,
            max_line_bytes,
            counters: Mutex::new(Counters::default()),
            stopping,
            session_locks: KeyedLocks::default(),
            unit_locks: KeyedLocks::default(),
            start_ms: clock.now_ms(),
            clock,
            server_sessions: Mutex::new(None),
            flow: Flow::new(FlowOptions::with_max(DEFAULT_REQUESTS_IN_FLIGHT)),
        }
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The shaping in use (prices, redaction, caps).
    pub fn shaping(&self) -> Arc<Shaping> {
        self.shaping
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the shaping (new prices, redaction or caps, on reload).
    pub fn set_shaping(&self, shaping: Shaping) {
        *self.shaping.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(shaping);
    }

    /// Says once per model, in the log and the counters, that a model has no price.
    fn note_unpriced(&self, session: &str, unpriced: &[(String, crate::model::Tokens)]) {
        for (model, tokens) in unpriced {
            self.count(|c| c.unpriced.entry(model.clone()).or_default().add(tokens));
            let first = self
                .warned_unpriced
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(model.clone());
            if first {
                tracing::warn!(
                    model = %model,
                    session = %session,
                    tokens = tokens.prompt() + tokens.output,
                    "no price known for this model: its cost is left out of session costs \
                     (run `opensyncd prices update`, or add it to a pricing_file)"
                );
            }
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

    pub(crate) fn count(&self, f: impl FnOnce(&mut Counters)) {
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
    /// title — whatever order the files were found in; `lone` says what to do when the leader
    /// does not exist (yet).
    pub async fn process_unit(
        &self,
        unit: &Unit,
        lone: LoneFollower,
    ) -> Result<Outcome, EngineError> {
        inject_test_panic();
        if self.stop_requested() {
            return Ok(Outcome::Stopped);
        }
        let source = sources::source(unit.source);
        if let Some(leader) = source.leader(unit) {
            if self.has_unread(&leader)? {
                match self.process_one(&leader).await? {
                    Outcome::Done => {}
                    other => return Ok(other),
                }
            } else if lone == LoneFollower::Wait
                && !source.exists(&leader)
                && let Some(until_ms) = self.orphan_wait_until(unit)?
            {
                // A subagent file whose main transcript does not exist yet (Claude Code 2.0
                // writes its warmup agent before the first prompt): wait for it, or it would
                // create the session with the subagent's facts. It is read on a later pass;
                // a file that stays alone for ORPHAN_WAIT is read as it is.
                tracing::debug!(file = %unit.describe(), "waiting for the session's main transcript");
                return Ok(Outcome::Waiting { until_ms });
            }
        }
        self.process_one(unit).await
    }

    /// For a unit never read and modified less than [`ORPHAN_WAIT`] ago, when its wait for
    /// its leader ends (epoch ms); `None` when it is not to wait.
    fn orphan_wait_until(&self, unit: &Unit) -> Result<Option<i64>, EngineError> {
        if self.ledger.file(&unit.ledger_key())?.is_some() {
            return Ok(None);
        }
        let modified = std::fs::metadata(&unit.path)
            .map(|m| tail::mtime_ms(&m))
            .unwrap_or(0);
        let until = modified + ORPHAN_WAIT.as_millis() as i64;
        Ok((self.now() < until).then_some(until))
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
        let changed = tail::check_identity(&mut file, len, &record.checkpoint).map_err(io)?
            == Identity::Changed;
        if changed {
            tracing::info!(file = %path.display(), "file was truncated or replaced; reading it again from the start");
            record.checkpoint = tail::Checkpoint::default();
            record.state = None;
        }
        // Truncated to nothing complete (empty, or one partial line): what it contributed
        // before is retracted now, as `export` no longer sees it; its lines, when they come,
        // are read from the start.
        let emptied = |mut record: FileRecord| {
            record.len = len;
            record.mtime_ms = tail::mtime_ms(&meta);
            Some(Step {
                key: key.clone(),
                file: record,
                records: Vec::new(),
                mode: Mode::Reset,
                gone: false,
                more: false,
                bytes: 0,
                budget_share: None,
            })
        };
        if len == record.checkpoint.offset {
            return Ok(if changed && !record.sessions.is_empty() {
                emptied(record)
            } else {
                None
            });
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
        let from = record.checkpoint.offset;
        let (read_bytes, budget_share) = reserve_read(
            &self.read_budget,
            self.chunk_bytes,
            len.saturating_sub(from),
        );
        let chunk =
            tail::read_lines(&mut file, from, read_bytes, self.max_line_bytes).map_err(io)?;
        if chunk.end == record.checkpoint.offset {
            // Only a partial line so far.
            return Ok(if mode == Mode::Reset {
                emptied(record)
            } else {
                None
            });
        }
        let mut records = Vec::new();
        let unparsed = sources::parse_lines(&mut *parser, chunk.iter_lines(), &mut records);
        let malformed = unparsed.lines;
        // One warning per read, not per line: a binary file would otherwise log a line for
        // every newline byte in it. The count goes to the ledger and `status`.
        if let Some(err) = unparsed.first {
            tracing::warn!(file = %path.display(), lines = malformed, first = %err, "skipped lines that do not parse");
        }
        let bytes = chunk.end.saturating_sub(record.checkpoint.offset);
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
            bytes,
            budget_share,
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
            bytes: 0,
            budget_share: None,
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
            bytes: 0,
            budget_share: None,
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
            bytes,
            // Held until the step is committed: its records are in memory until then.
            budget_share: _budget_share,
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
            &self.shaping(),
            gone,
        )?;
        for work in &works {
            let unpriced = work
                .record
                .state
                .totals(&self.shaping().pricing)
                .unpriced_tokens;
            if !unpriced.is_empty() {
                self.note_unpriced(&work.record.state.session_id, &unpriced);
            }
        }
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
        // What the file still holds past this read (for the requests' priority, below).
        let left = file.len.saturating_sub(file.checkpoint.offset);
        if gone {
            commit.forget_files.push(unit_key);
        } else {
            file.unit = Some(unit.clone());
            commit.files.push((unit_key, file));
        }
        // The requests of a long session go first when the pool is full: its messages are sent
        // one after the other, so it is what the whole backfill waits for at the end.
        let requests: usize = works.iter().map(|w| w.messages.len() + 2).sum();
        let priority = read_priority(requests, bytes, left);
        let delivered =
            crate::flow::with_priority(priority, self.deliver(&client, works, &mut commit)).await;
        if let Err(outcome) = delivered {
            return Ok(outcome);
        }
        self.ledger.commit(&commit)?;
        self.count(|c| c.bytes_committed += bytes);
        Ok(Outcome::Done)
    }
}

/// What [`Engine::process_unit`] does with a new follower file (a Claude Code subagent) whose
/// leader (its main transcript) does not exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoneFollower {
    /// Leave it for a later pass, up to [`ORPHAN_WAIT`] after it was written: the daemon, which
    /// comes back, so the session is created from its main transcript when that appears.
    Wait,
    /// Read it as it is: an explicit `sync`, which promises that the server holds what
    /// `export` prints when it returns (there is no later pass to wait for).
    Read,
}

/// How long a subagent file whose session has no main transcript waits for one before it is
/// read on its own.
pub const ORPHAN_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How much to read of a file with `unread` bytes left when a full read is `full` bytes, and
/// the share of `budget` (KiB) that read holds until committed: a full read when the budget
/// has room for it, else [`SMALL_READ_BYTES`] — never a wait (see [`READ_BUDGET_BYTES`]).
fn reserve_read(
    budget: &Arc<Semaphore>,
    full: usize,
    unread: u64,
) -> (usize, Option<OwnedSemaphorePermit>) {
    if unread <= SMALL_READ_BYTES as u64 || full <= SMALL_READ_BYTES {
        return (full, None);
    }
    let kib = unread.min(full as u64).div_ceil(1024) as u32;
    match budget.clone().try_acquire_many_owned(kib) {
        Ok(share) => (full, Some(share)),
        Err(_) => (SMALL_READ_BYTES, None),
    }
}

/// The priority of a read's requests in the pool ([`crate::flow::with_priority`]): what the
/// unit still has to send, one request after another. A read of `bytes` that leaves `left`
/// bytes of its file unread is extrapolated to the whole rest at the read's own density, so
/// a long session read in small steps (the read budget was taken) ranks as what it is, not as
/// its first step — which let shorter sessions read whole go first, and left the longest
/// session of a backfill running alone at its end.
fn read_priority(requests: usize, bytes: u64, left: u64) -> u64 {
    let requests = requests as u64;
    if bytes == 0 {
        return requests;
    }
    requests.saturating_mul(bytes.saturating_add(left)) / bytes
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
    /// Bytes of the file this step covers (line units), counted once committed.
    bytes: u64,
    /// The share of [`READ_BUDGET_BYTES`] a full-size read holds until it is committed.
    budget_share: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn a_read_ranks_by_what_its_file_still_holds() {
        // A whole file read at once: its own requests.
        assert_eq!(read_priority(80, 300_000, 0), 80);
        // The first 128 KiB of a 746 KB file, 30 requests in them: about 170 in all.
        assert_eq!(read_priority(30, 131_072, 746_607 - 131_072), 170);
        // A snapshot (no bytes counted) and an empty read.
        assert_eq!(read_priority(5, 0, 0), 5);
        assert_eq!(read_priority(0, 1_000, 5_000), 0);
    }

    #[test]
    fn full_reads_share_the_budget_and_the_rest_read_small_steps() {
        let budget = Arc::new(Semaphore::new(READ_BUDGET_BYTES / 1024));
        // A file with little left takes nothing from the budget.
        let (size, share) = reserve_read(&budget, MIB, 100 * 1024);
        assert_eq!((size, share.is_none()), (MIB, true));
        // Large files: each full read holds what it may read (1 MiB, or the rest when less).
        let mut shares = Vec::new();
        let (size, share) = reserve_read(&budget, MIB, 300 * 1024);
        assert_eq!(
            (size, share.as_ref().map(|s| s.num_permits())),
            (MIB, Some(300))
        );
        shares.push(share);
        while budget.available_permits() >= 1024 {
            let (size, share) = reserve_read(&budget, MIB, 50 * MIB as u64);
            assert_eq!(
                (size, share.as_ref().map(|s| s.num_permits())),
                (MIB, Some(1024))
            );
            shares.push(share);
        }
        // 300 KiB + 7 x 1 MiB: the 8 MiB budget has 724 KiB left, not enough for a full read.
        assert_eq!(shares.len(), 8);
        let (size, share) = reserve_read(&budget, MIB, 50 * MIB as u64);
        assert_eq!((size, share.is_none()), (SMALL_READ_BYTES, true));
        // A committed step gives its share back.
        shares.pop();
        let (size, share) = reserve_read(&budget, MIB, 50 * MIB as u64);
        assert_eq!((size, share.map(|s| s.num_permits())), (MIB, Some(1024)));
    }

    #[test]
    fn reads_no_larger_than_a_small_read_never_take_from_the_budget() {
        let budget = Arc::new(Semaphore::new(1));
        let (size, share) = reserve_read(&budget, 64 * 1024, 50 * MIB as u64);
        assert_eq!((size, share.is_none()), (64 * 1024, true));
        assert_eq!(budget.available_permits(), 1);
    }
}
