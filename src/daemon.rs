//! The long-running service: single-instance lock, ledger, watcher, scheduler of dirty units,
//! signals (TERM/INT drain, HUP reload), the control socket, and systemd notifications. Also the
//! control-socket client the CLI uses to reach a running daemon.
//!
//! Shape (after atuin's sync daemon): one loop owns all scheduling state and reacts to
//! messages — watcher hints, control requests, signals, worker completions and tickers — so no
//! state is shared between tasks except the engine (ledger + client) itself.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::config::{self, Config, Paths};
use crate::credentials::{self, ApiKey};
use crate::engine::{Engine, EngineError, Outcome, Pause, now_ms};
use crate::ledger::Ledger;
use crate::model::SourceId;
use crate::plan::Shaping;
use crate::push::{Client, ClientOptions};
use crate::redact::Redactor;
use crate::sources::{self, Roots, Unit};
use crate::status::{self, Status};
use crate::watch::{Hint, Watcher};

/// How long shutdown waits for in-flight work before abandoning it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a paused daemon re-checks its credentials.
pub const PAUSE_PROBE: Duration = Duration::from_secs(300);
/// How long an errored unit waits before it is tried again.
pub const UNIT_RETRY: Duration = Duration::from_secs(30);

/// How `run` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Stopped by a signal after draining.
    Stopped,
    /// Another instance holds the lock.
    AlreadyRunning(PathBuf),
}

/// A request over the control socket (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Current status.
    Status,
    /// Scan and push now; the reply comes when the selected work is done.
    Sync {
        /// Selection.
        selection: Selection,
    },
    /// A tool's hook fired: look now (reply at once).
    Hook {
        /// Event name.
        event: String,
        /// A path worth looking at first (e.g. Claude's `transcript_path`).
        path: Option<PathBuf>,
    },
    /// Reload config and credentials (after `login`).
    Reload,
}

/// A reply over the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// Status.
    Status {
        /// The status.
        status: Box<Status>,
    },
    /// The sync finished.
    Synced {
        /// Summary.
        summary: SyncSummary,
    },
    /// Accepted.
    Ok,
    /// Failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Which units a `sync` covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Selection {
    /// Only these sources (empty = all enabled).
    pub sources: Vec<SourceId>,
    /// Only units never acknowledged.
    pub new_only: bool,
    /// Only the N most recently modified units.
    pub limit: Option<usize>,
    /// Re-send the selected units' sessions.
    pub force: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncSummary {
    /// Units processed.
    pub units: usize,
    /// Units that failed (reason in the log).
    pub failed: usize,
    /// Sessions written.
    pub sessions_sent: u64,
    /// Messages written.
    pub messages_sent: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Set when pushing paused (credentials, URL).
    pub paused: Option<String>,
}

/// Payload shaping (pricing, redaction, caps) from the config.
pub fn build_engine_shaping(cfg: &Config) -> Result<Shaping> {
    let pricing = crate::prices::load_configured(cfg).map_err(|e| anyhow!("pricing_file: {e}"))?;
    let redactor = Redactor::new(cfg.redact, &cfg.redact_patterns)
        .map_err(|e| anyhow!("redact_patterns: {e}"))?;
    let shaping = Shaping {
        pricing,
        redactor,
        max_part_bytes: cfg.max_part_bytes,
        max_body_bytes: cfg.max_body_bytes,
    };
    Ok(shaping)
}

/// Everything the engine needs, built from config + credentials.
pub fn build_engine(
    cfg: &Config,
    ledger: Ledger,
    client: Option<Client>,
    stopping: watch::Receiver<bool>,
) -> Result<Engine> {
    let shaping = build_engine_shaping(cfg)?;
    let client = client.map(|c| c.with_max_body(cfg.max_body_bytes));
    let mut engine = Engine::new(
        ledger,
        cfg.parse_options(),
        shaping,
        client,
        cfg.max_line_bytes,
        stopping,
    );
    engine.batch = cfg.transport == config::Transport::Batch;
    Ok(engine)
}

/// Builds a client from config + the stored key; `Ok(None)` when not logged in.
pub fn build_client(cfg: &Config, paths: &Paths) -> Result<Option<Client>> {
    let Some((key, _)) = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?
    else {
        return Ok(None);
    };
    let Some(url) = cfg.url.as_deref() else {
        return Ok(None);
    };
    let url = config::normalize_url(url).map_err(|e| anyhow!(e))?;
    Ok(Some(client_for(cfg, &url, &key)?))
}

fn client_for(cfg: &Config, url: &str, key: &ApiKey) -> Result<Client> {
    Client::new(ClientOptions {
        url: url.to_string(),
        api_key: key.clone(),
        request_timeout: Duration::from_secs(cfg.request_timeout_secs),
        connect_timeout: Duration::from_secs(cfg.connect_timeout_secs),
    })
    .map_err(|e| anyhow!("creating the HTTP client: {e}"))
}

/// Checks a key against the server with an authenticated request (used by `login`).
pub fn verify_credentials(cfg: &Config, url: &str, key: &ApiKey) -> Result<()> {
    let client = client_for(cfg, url, key)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(client.check_auth())
        .map_err(|e| anyhow!("{url}: {e}"))
}

/// Opens (creating) the lock file in the private state dir.
fn open_lock_file(paths: &Paths) -> Result<File> {
    credentials::ensure_private_dir(&paths.state_dir)
        .with_context(|| format!("creating {}", paths.state_dir.display()))?;
    let path = paths.lock_file();
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))
}

/// Records the holder's pid in a lock file just taken (for humans reading it).
fn stamp_pid(file: &mut File) {
    let _ = file.set_len(0);
    let _ = writeln!(file, "{}", std::process::id());
}

/// Takes the single-instance lock (non-blocking). `Ok(None)` when another process holds it.
pub fn take_lock(paths: &Paths) -> Result<Option<File>> {
    let mut file = open_lock_file(paths)?;
    match file.try_lock() {
        Ok(()) => {
            stamp_pid(&mut file);
            Ok(Some(file))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", paths.lock_file().display()))
        }
    }
}

/// Takes the lock for the daemon. Only a daemon answers on the control socket, so a holder
/// that answers is a running daemon (`Ok(None)`: exit, it is already running); a holder that
/// does not is a one-shot command (`status`, `sync`, `export`) that will release it soon, and
/// the daemon waits for it rather than exiting (which would leave a service stopped because
/// the user happened to run `opensyncd status` while it started).
fn wait_for_lock(paths: &Paths) -> Result<Option<File>> {
    if let Some(lock) = take_lock(paths)? {
        return Ok(Some(lock));
    }
    // Block on the lock in a helper thread (woken by the kernel the moment it is released,
    // so a busy one-shot command cannot starve us), while this thread watches the socket for
    // a daemon that holds it.
    let path = paths.lock_file();
    let file = open_lock_file(paths)?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut file = file;
        let result = file.lock().map(|()| {
            stamp_pid(&mut file);
            file
        });
        let _ = tx.send(result);
    });
    tracing::info!(
        lock = %path.display(),
        "another opensyncd command holds the lock; waiting for it to finish"
    );
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Ok(file)) => return Ok(Some(file)),
            Ok(Err(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(anyhow!("the lock waiter for {} stopped", path.display()));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(_)) = request(paths, &Request::Status, Some(Duration::from_secs(2)))
                {
                    return Ok(None);
                }
            }
        }
    }
}

/// Scans the enabled sources and returns the units that may hold unacknowledged data.
pub fn scan_units(
    ledger: &Ledger,
    roots: &Roots,
    sources: &[SourceId],
    selection: &Selection,
) -> Result<Vec<Unit>, EngineError> {
    let mut units: Vec<(i64, Unit)> = Vec::new();
    for source in sources {
        if !selection.sources.is_empty() && !selection.sources.contains(source) {
            continue;
        }
        for unit in sources::scan(*source, roots) {
            let record = ledger.file(&unit.ledger_key())?;
            if selection.new_only && record.is_some() {
                continue;
            }
            let mtime = match &unit {
                Unit::Jsonl { path, .. } => {
                    let Ok(meta) = std::fs::metadata(path) else {
                        continue;
                    };
                    let mtime = mtime_ms(&meta);
                    if let Some(rec) = &record
                        && !selection.force
                        && meta.len() == rec.checkpoint.offset
                        && mtime == rec.mtime_ms
                    {
                        continue; // nothing new
                    }
                    mtime
                }
                Unit::OpenCodeSession {
                    storage,
                    session_id,
                } => {
                    let _ = (storage, session_id);
                    record.as_ref().map_or(0, |r| r.mtime_ms)
                }
                Unit::OpenCodeDb { path } => {
                    std::fs::metadata(path).map(|m| mtime_ms(&m)).unwrap_or(0)
                }
            };
            units.push((mtime, unit));
        }
    }
    if let Some(limit) = selection.limit {
        units.sort_by_key(|(mtime, _)| std::cmp::Reverse(*mtime));
        units.truncate(limit);
    }
    if selection.force {
        let mut sessions = Vec::new();
        for (_, unit) in &units {
            if let Some(rec) = ledger.file(&unit.ledger_key())? {
                sessions.extend(rec.sessions);
            }
            ledger.forget_file(&unit.ledger_key())?;
        }
        ledger.reset_acks(&sessions)?;
    }
    Ok(units.into_iter().map(|(_, u)| u).collect())
}

fn mtime_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the daemon until SIGTERM/SIGINT. Blocks.
pub fn run(paths: Paths, cfg: Config) -> Result<RunEnd> {
    let Some(lock) = wait_for_lock(&paths)? else {
        return Ok(RunEnd::AlreadyRunning(paths.lock_file()));
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("opensyncd")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(Daemon::start(paths, cfg)?.run());
    // Dropping the runtime abandons anything still in flight after the drain timeout.
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(lock);
    match result? {
        RunExit::Stopped => Ok(RunEnd::Stopped),
        RunExit::Reexec => Err(reexec()),
    }
}

/// The panic payload of a failed task, for the log.
fn panic_message(err: &tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return err.to_string();
    }
    format!("task {} panicked", err.id())
}

/// How the main loop ended.
enum RunExit {
    /// A signal asked it to stop.
    Stopped,
    /// The ledger failed with an I/O error: start over in a fresh process image.
    Reexec,
}

/// How long to wait between opening attempts of a ledger on a failing disk.
const LEDGER_RETRY: Duration = Duration::from_secs(30);

/// Re-executions so far (carried in the environment), for the growing delay between them.
const REEXEC_COUNT_VAR: &str = "OPENSYNCD_REEXEC_COUNT";

/// 10 s, doubling with each re-execution up to about 5 minutes: a disk that stays full must
/// not turn into a loop that re-sends the backlog every few seconds.
fn reexec_delay() -> Duration {
    Duration::from_secs(10 << reexec_count().min(5))
}

/// How many times this process image was re-executed (0 for a normal start).
fn reexec_count() -> u32 {
    std::env::var(REEXEC_COUNT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Replaces this process with a fresh copy of itself (same pid, arguments and environment).
/// sled cannot be reopened in-process while anything still holds the old handle; a new image
/// drops every handle and file lock (all opened close-on-exec) at once. Only returns on error.
fn reexec() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let n = reexec_count();
    tracing::warn!("restarting opensyncd in place to reopen the ledger");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow!("finding the opensyncd binary to restart: {e}"),
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_COUNT_VAR, (n + 1).to_string())
        .exec();
    anyhow!("restarting opensyncd to reopen its ledger: {err}")
}

struct Daemon {
    paths: Paths,
    cfg: Config,
    roots: Roots,
    engine: Arc<Engine>,
    stop_tx: watch::Sender<bool>,
    started: Instant,
    queue: VecDeque<Unit>,
    queued: HashSet<Unit>,
    in_flight: HashSet<Unit>,
    redo: HashSet<Unit>,
    retry_later: Vec<(Instant, Unit)>,
    /// When a ledger write first failed with an I/O error (disk full): sled refuses writes
    /// from then on, so pushing stops and the process re-executes itself to reopen it.
    ledger_failed: Option<Instant>,
    /// The unit each worker task is processing, to release it if the task panics.
    task_units: HashMap<tokio::task::Id, Unit>,
    paused: Option<Pause>,
    waiters: Vec<SyncWaiter>,
    watch_warning: Option<String>,
}

struct SyncWaiter {
    pending: HashSet<Unit>,
    summary: SyncSummary,
    before: crate::engine::Counters,
    reply: oneshot::Sender<Reply>,
}

type ControlMsg = (Request, oneshot::Sender<Reply>);

impl Daemon {
    fn start(paths: Paths, cfg: Config) -> Result<Daemon> {
        let (ledger, outcome) = loop {
            match Ledger::open(&paths.ledger_dir()) {
                Ok(opened) => break opened,
                Err(err) if err.is_io() => {
                    // A full or failing disk: wait for it rather than crash-looping.
                    tracing::error!(%err, "cannot open the ledger; retrying in {LEDGER_RETRY:?}");
                    std::thread::sleep(LEDGER_RETRY);
                }
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("opening the ledger in {}", paths.ledger_dir().display())
                    });
                }
            }
        };
        if let crate::ledger::OpenOutcome::Rebuilt { moved_to, reason } = &outcome {
            tracing::error!(moved_to = %moved_to.display(), %reason, "started with a fresh ledger");
        }
        let client = build_client(&cfg, &paths)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let paused = match &client {
            Some(_) => None,
            None => Some(Pause::Auth("not logged in".into())),
        };
        let engine = Arc::new(build_engine(&cfg, ledger, client, stop_rx)?);
        engine.load_settle_pending()?;
        let roots = cfg.roots(&config::process_env);
        Ok(Daemon {
            paths,
            cfg,
            roots,
            engine,
            stop_tx,
            started: Instant::now(),
            queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashSet::new(),
            redo: HashSet::new(),
            retry_later: Vec::new(),
            paused,
            waiters: Vec::new(),
            watch_warning: None,
            ledger_failed: None,
            task_units: HashMap::new(),
        })
    }

    fn enqueue(&mut self, unit: Unit) {
        if self.in_flight.contains(&unit) {
            self.redo.insert(unit);
        } else if self.queued.insert(unit.clone()) {
            self.queue.push_back(unit);
        }
    }

    fn full_scan(&mut self, reason: &str) {
        let sources = self.cfg.enabled_sources();
        match scan_units(
            &self.engine.ledger,
            &self.roots,
            &sources,
            &Selection::default(),
        ) {
            Ok(units) => {
                tracing::debug!(reason, units = units.len(), "scan");
                for u in units {
                    self.enqueue(u);
                }
            }
            Err(err) => tracing::error!(%err, "scan failed"),
        }
    }

    async fn run(mut self) -> Result<RunExit> {
        let (hint_tx, mut hint_rx) = mpsc::unbounded_channel();
        let mut watch_dirs = Vec::new();
        for source in self.cfg.enabled_sources() {
            watch_dirs.extend(self.roots.watch_dirs(source));
        }
        let mut watcher = Watcher::start(
            watch_dirs,
            Duration::from_millis(self.cfg.debounce_ms),
            hint_tx,
        )
        .context("setting up file watching")?;
        self.watch_warning = watcher.degraded.clone();

        let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMsg>(64);
        let socket = self.paths.control_socket();
        let listener = bind_control_socket(&socket)?;
        tokio::spawn(accept_loop(listener, ctl_tx));

        let mut signals = signal_hook_tokio::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])
        .context("installing signal handlers")?;

        self.full_scan("start");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!(
            pid = std::process::id(),
            version = env!("CARGO_PKG_VERSION"),
            url = self.cfg.url.as_deref().unwrap_or("(not set)"),
            state = %self.paths.state_dir.display(),
            "opensyncd started"
        );
        if let Some(p) = &self.paused {
            tracing::warn!("{p}; watching, nothing is pushed until then");
        }

        let mut rescan = tokio::time::interval(Duration::from_secs(self.cfg.rescan_interval_secs));
        rescan.tick().await;
        let watchdog_every = sd_notify::watchdog_enabled()
            .map(|d| d / 2)
            .unwrap_or(Duration::from_secs(3600));
        let mut watchdog = tokio::time::interval(watchdog_every);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(2));
        let mut last_probe = Instant::now();
        let mut workers: JoinSet<(Unit, Result<Outcome, EngineError>)> = JoinSet::new();
        let mut settle_task: Option<tokio::task::JoinHandle<()>> = None;

        let mut end = RunExit::Stopped;
        loop {
            self.dispatch(&mut workers);
            tokio::select! {
                sig = signals.next() => match sig {
                    Some(signal_hook::consts::SIGHUP) => self.reload(),
                    _ => break,
                },
                Some(hint) = hint_rx.recv() => match hint {
                    Hint::Changed(paths) => {
                        for p in paths {
                            if let Some(unit) = sources::unit_for_path(&p, &self.roots) {
                                self.enqueue(unit);
                            }
                        }
                    }
                    Hint::Rescan(reason) => {
                        tracing::debug!(%reason, "rescan requested by the watcher");
                        if let Err(err) = watcher.refresh() {
                            tracing::error!(%err, "re-establishing watches failed");
                        }
                        self.watch_warning = watcher.degraded.clone();
                        self.full_scan(&reason);
                    }
                },
                Some((request, reply)) = ctl_rx.recv() => self.control(request, reply),
                Some(joined) = workers.join_next_with_id(), if !workers.is_empty() => {
                    match joined {
                        Ok((id, (unit, result))) => {
                            self.task_units.remove(&id);
                            self.finished(unit, result);
                        }
                        Err(err) => {
                            // A panic is a bug, but it stays inside its task: the unit is
                            // released and retried later like any failed unit.
                            let message = panic_message(&err);
                            match self.task_units.remove(&err.id()) {
                                Some(unit) => self.finished(unit, Err(EngineError::Panicked(message))),
                                None => tracing::error!(%message, "a worker task failed"),
                            }
                        }
                    }
                }
                _ = rescan.tick() => self.full_scan("periodic"),
                _ = watchdog.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
                _ = housekeeping.tick() => {
                    let now = Instant::now();
                    if let Some(failed_at) = self.ledger_failed
                        && self.in_flight.is_empty()
                        && failed_at.elapsed() >= reexec_delay()
                    {
                        end = RunExit::Reexec;
                        break;
                    }
                    let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry_later).into_iter().partition(|(t, _)| *t <= now);
                    self.retry_later = later;
                    for (_, u) in due { self.enqueue(u); }
                    if self.paused.is_some() && last_probe.elapsed() >= PAUSE_PROBE {
                        last_probe = Instant::now();
                        self.probe().await;
                    }
                    let settle_idle = settle_task.as_ref().is_none_or(|t: &tokio::task::JoinHandle<()>| t.is_finished());
                    if self.paused.is_none() && settle_idle
                        && self.engine.next_settle_ms().ok().flatten().is_some_and(|due| due <= now_ms())
                    {
                        let engine = self.engine.clone();
                        settle_task = Some(tokio::spawn(async move {
                            match engine.settle().await {
                                Ok(Outcome::Done | Outcome::Stopped) => {}
                                Ok(Outcome::Paused(p)) => tracing::debug!(%p, "settle paused"),
                                Err(err) => tracing::warn!(%err, "settle failed; retrying later"),
                            }
                        }));
                    }
                    self.answer_waiters();
                }
            }
        }

        tracing::info!("stopping: draining in-flight work");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = self.stop_tx.send(true);
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while let Some(joined) = workers.join_next().await {
                if let Ok((unit, result)) = joined {
                    self.finished(unit, result);
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "in-flight work did not finish within {DRAIN_TIMEOUT:?}; abandoned (it is re-sent next start)"
            );
            workers.abort_all();
        }
        if let Err(err) = self.engine.ledger.flush() {
            // Whatever was not flushed is re-sent next start (stable ids): not worth a failure.
            tracing::error!(%err, "flushing the ledger failed");
        }
        let _ = std::fs::remove_file(&socket);
        for w in self.waiters.drain(..) {
            let _ = w.reply.send(Reply::Error {
                message: "the daemon is stopping".into(),
            });
        }
        tracing::info!("stopped");
        Ok(end)
    }

    fn dispatch(&mut self, workers: &mut JoinSet<(Unit, Result<Outcome, EngineError>)>) {
        if self.paused.is_some() || self.ledger_failed.is_some() {
            return;
        }
        while self.in_flight.len() < self.cfg.concurrency {
            let Some(unit) = self.queue.pop_front() else {
                break;
            };
            self.queued.remove(&unit);
            self.in_flight.insert(unit.clone());
            let engine = self.engine.clone();
            let task_unit = unit.clone();
            let handle = workers.spawn(async move {
                let result = engine.process_unit(&task_unit).await;
                (task_unit, result)
            });
            self.task_units.insert(handle.id(), unit);
        }
    }

    fn finished(&mut self, unit: Unit, result: Result<Outcome, EngineError>) {
        self.in_flight.remove(&unit);
        let mut failed = false;
        match result {
            Ok(Outcome::Done) => {
                if self.paused.take().is_some() {
                    tracing::info!("pushing resumed");
                }
            }
            Ok(Outcome::Stopped) => {}
            Ok(Outcome::Paused(pause)) => {
                if self.paused.is_none() {
                    tracing::error!("{pause}; pushing paused (still watching; nothing is lost)");
                }
                self.paused = Some(pause);
                self.enqueue(unit.clone());
            }
            Err(err) => {
                failed = true;
                if matches!(&err, EngineError::Ledger(e) if e.is_io())
                    && self.ledger_failed.is_none()
                {
                    tracing::error!(%err, "the ledger cannot be written (disk full?); pushing stops until it is reopened");
                    self.ledger_failed = Some(Instant::now());
                }
                tracing::error!(unit = %unit.describe(), %err, "unit failed; retrying later");
                self.retry_later
                    .push((Instant::now() + UNIT_RETRY, unit.clone()));
            }
        }
        if self.redo.remove(&unit) {
            self.enqueue(unit.clone());
        }
        for w in &mut self.waiters {
            if w.pending.remove(&unit) {
                w.summary.units += 1;
                if failed {
                    w.summary.failed += 1;
                }
            }
        }
        self.answer_waiters();
    }

    fn answer_waiters(&mut self) {
        let paused = self.paused.as_ref().map(ToString::to_string);
        let counters = self.engine.counters();
        let mut still = Vec::new();
        for mut w in self.waiters.drain(..) {
            if w.pending.is_empty() || paused.is_some() {
                w.summary.sessions_sent = counters.sessions_sent - w.before.sessions_sent;
                w.summary.messages_sent = counters.messages_sent - w.before.messages_sent;
                w.summary.rejected = counters.rejected - w.before.rejected;
                w.summary.paused = paused.clone();
                let _ = w.reply.send(Reply::Synced { summary: w.summary });
            } else {
                still.push(w);
            }
        }
        self.waiters = still;
    }

    fn reload(&mut self) {
        tracing::info!("reloading configuration and credentials");
        match config::load(&self.paths, &figment::value::Dict::new()) {
            Ok(cfg) => {
                self.roots = cfg.roots(&config::process_env);
                self.cfg = cfg;
            }
            Err(err) => {
                tracing::error!(%err, "config reload failed; keeping the previous configuration")
            }
        }
        match build_client(&self.cfg, &self.paths) {
            Ok(client) => {
                let logged_in = client.is_some();
                self.engine.set_client(client);
                if logged_in {
                    self.paused = None;
                    self.full_scan("reload");
                } else {
                    self.paused = Some(Pause::Auth("not logged in".into()));
                }
            }
            Err(err) => tracing::error!(%err, "credentials reload failed"),
        }
    }

    async fn probe(&mut self) {
        let Some(client) = self.engine.client() else {
            return;
        };
        match client.check_auth().await {
            Ok(()) => {
                tracing::info!("the server accepts the key again; resuming");
                self.paused = None;
                self.full_scan("resume");
            }
            Err(err) => tracing::debug!(%err, "still paused"),
        }
    }

    fn status(&self) -> Status {
        let mut status = status::collect(
            &self.engine.ledger,
            &self.roots,
            &self.cfg.enabled_sources(),
            now_ms(),
        )
        .unwrap_or_else(|err| Status {
            warnings: vec![format!("ledger: {err}")],
            ..Status::default()
        });
        status.daemon_pid = Some(std::process::id());
        status.uptime_secs = Some(self.started.elapsed().as_secs());
        status.url = self.cfg.url.clone();
        status.api_key = credentials::load(&self.paths, &config::process_env)
            .ok()
            .flatten()
            .map(|(k, _)| k.masked());
        status.auth = match &self.paused {
            None => "ok".into(),
            Some(p) => format!("paused: {p}"),
        };
        status.watch_warning = self.watch_warning.clone();
        status.counters = Some((&self.engine.counters()).into());
        status
    }

    fn control(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Status => {
                let _ = reply.send(Reply::Status {
                    status: Box::new(self.status()),
                });
            }
            Request::Reload => {
                self.reload();
                let _ = reply.send(Reply::Ok);
            }
            Request::Hook { event, path } => {
                tracing::debug!(%event, "hook");
                match path
                    .as_deref()
                    .and_then(|p| sources::unit_for_path(p, &self.roots))
                {
                    Some(unit) => self.enqueue(unit),
                    None => self.full_scan("hook"),
                }
                let _ = reply.send(Reply::Ok);
            }
            Request::Sync { selection } => {
                let sources = self.cfg.enabled_sources();
                match scan_units(&self.engine.ledger, &self.roots, &sources, &selection) {
                    Ok(units) => {
                        let pending: HashSet<Unit> = units.iter().cloned().collect();
                        for u in units {
                            self.enqueue(u);
                        }
                        self.waiters.push(SyncWaiter {
                            pending,
                            summary: SyncSummary::default(),
                            before: self.engine.counters(),
                            reply,
                        });
                        self.answer_waiters();
                    }
                    Err(err) => {
                        let _ = reply.send(Reply::Error {
                            message: err.to_string(),
                        });
                    }
                }
            }
        }
    }
}

fn bind_control_socket(path: &Path) -> Result<tokio::net::UnixListener> {
    // A socket file left by a crashed daemon: we hold the lock, so nobody else is listening.
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    Ok(listener)
}

async fn accept_loop(listener: tokio::net::UnixListener, tx: mpsc::Sender<ControlMsg>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = tokio::io::BufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else {
                return;
            };
            let reply = match serde_json::from_str::<Request>(&line) {
                Ok(request) => {
                    let (reply_tx, reply_rx) = oneshot::channel();
                    if tx.send((request, reply_tx)).await.is_err() {
                        return;
                    }
                    reply_rx.await.unwrap_or(Reply::Error {
                        message: "the daemon is stopping".into(),
                    })
                }
                Err(err) => Reply::Error {
                    message: format!("bad request: {err}"),
                },
            };
            let mut text = serde_json::to_string(&reply).unwrap_or_default();
            text.push('\n');
            let _ = write.write_all(text.as_bytes()).await;
        });
    }
}

/// Sends `request` to the running daemon. `Ok(None)` when no daemon is listening.
pub fn request(
    paths: &Paths,
    request: &Request,
    timeout: Option<Duration>,
) -> Result<Option<Reply>> {
    let path = paths.control_socket();
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout.or(Some(Duration::from_secs(5))))?;
    let mut text = serde_json::to_string(request)?;
    text.push('\n');
    (&stream).write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .with_context(|| format!("waiting for the daemon on {}", path.display()))?;
    if line.trim().is_empty() {
        return Err(anyhow!(
            "the daemon closed the connection without answering"
        ));
    }
    Ok(Some(
        serde_json::from_str(&line).context("reading the daemon's reply")?,
    ))
}

/// Asks a running daemon to reload; `Ok(false)` when none runs.
pub fn notify_reload(paths: &Paths) -> Result<bool> {
    Ok(request(paths, &Request::Reload, Some(Duration::from_secs(5)))?.is_some())
}

/// Summarises which sources exist on disk (for `verify`).
pub fn source_inventory(
    roots: &Roots,
    sources: &[SourceId],
) -> BTreeMap<SourceId, (Vec<PathBuf>, usize)> {
    let mut out = BTreeMap::new();
    for source in sources {
        let dirs: Vec<PathBuf> = roots
            .watch_dirs(*source)
            .into_iter()
            .filter(|d| d.exists())
            .collect();
        out.insert(*source, (dirs, sources::scan(*source, roots).len()));
    }
    out
}

/// What `synctest` created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynctestReport {
    /// The test session's external id.
    pub session_id: String,
    /// The test message's external id.
    pub message_id: String,
    /// How its visibility was confirmed.
    pub visible: String,
}

/// Creates (or updates) a test session with one message and confirms the server lists it.
/// The ids are fixed per machine, so running it again updates the same rows.
pub fn synctest(client: &Client) -> Result<SynctestReport> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let session_id = format!("opensyncd-synctest-{host}");
    let message_id = format!("{session_id}:message-1");
    let now = now_ms();
    let text = "opensyncd synctest: if you can read this, opensyncd can sync to this dashboard. \
                Safe to delete.";
    let session = crate::model::SessionPayload {
        external_id: session_id.clone(),
        title: Some("opensyncd synctest".into()),
        source: SourceId::OpenCode.as_str().into(),
        created_at: Some(now),
        ..Default::default()
    };
    let message = crate::model::MessagePayload {
        session_external_id: session_id.clone(),
        external_id: message_id.clone(),
        role: crate::model::Role::Assistant,
        text_content: Some(text.into()),
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        duration_ms: None,
        source: SourceId::OpenCode.as_str().into(),
        parts: vec![crate::model::Part::text(text)],
        created_at: Some(now),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        client
            .upsert_session(&session)
            .await
            .map_err(|e| anyhow!("creating the session: {e}"))?;
        client
            .upsert_message(&message)
            .await
            .map_err(|e| anyhow!("creating the message: {e}"))?;
        let listed = client
            .list_sessions()
            .await
            .map_err(|e| anyhow!("listing sessions: {e}"))?;
        if !listed.contains(&session_id) {
            return Err(anyhow!(
                "the server acknowledged the session but /sync/sessions/list does not show it"
            ));
        }
        Ok(SynctestReport {
            session_id: session_id.clone(),
            message_id: message_id.clone(),
            visible: "The session is listed by the server (/sync/sessions/list); open your \
                      dashboard to see it."
                .into(),
        })
    })
}
