//! The long-running service's loop: it owns all scheduling state — the queue of dirty units,
//! the workers, pauses, waiting `sync` requests — and reacts to watcher hints, control
//! requests, signals, worker completions and timers; plus drain on SIGTERM, reload on SIGHUP,
//! systemd notifications and re-execution after a ledger I/O failure.
//!
//! Shape (after atuin's sync daemon): one loop owns all scheduling state and reacts to
//! messages — watcher hints, control requests, signals, worker completions and tickers — so no
//! state is shared between tasks except the engine (ledger + client) itself.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::backlog::Backlog;
use crate::config::{self, Config, Paths};
use crate::control::{self, ControlMsg, Reply, Request};
use crate::credentials;
use crate::engine::{Engine, EngineError, Outcome, Pause, now_ms};
use crate::ledger::Ledger;
use crate::lock;
use crate::selection::{Selection, SyncSummary, for_each_unit_to_process, scan_units};
use crate::sources::{self, Roots, Unit};
use crate::status::{self, Status};
use crate::watch::{Hint, Watcher};
use crate::wiring::{build_client, build_engine};

/// How long shutdown waits for in-flight work before abandoning it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a paused daemon re-checks its credentials.
pub const PAUSE_PROBE: Duration = Duration::from_secs(300);
/// How long an errored unit waits before it is tried again.
pub const UNIT_RETRY: Duration = Duration::from_secs(30);
/// The safety-net scan period while file watching is degraded (the watch limit was hit, so
/// events are missing for part of the tree), whatever `rescan_interval_secs` says.
pub const DEGRADED_RESCAN: Duration = Duration::from_secs(120);
/// After a unit commits, deferred writes are looked at within this long (not after every
/// unit: during a backfill thousands finish per minute, and the deferred tree is read whole).
const DEFERRED_CHECK: Duration = Duration::from_secs(1);
/// Units processed at once for each request the pool may have in flight: a unit spends part
/// of its time reading, committing or waiting to retry, when it holds no request slot.
const UNITS_PER_REQUEST_SLOT: usize = 2;

/// How `run` ended.
#[derive(Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// Stopped by a signal after draining.
    Stopped,
    /// Another instance holds the lock.
    AlreadyRunning(PathBuf),
}

/// Runs the daemon until SIGTERM/SIGINT. Blocks.
pub fn run(paths: Paths, cfg: Config) -> Result<RunEnd> {
    let Some(lock) = lock::wait_for_lock(&paths)? else {
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
    backlog: Backlog,
    in_flight: HashSet<Unit>,
    redo: HashSet<Unit>,
    retry_later: Vec<(Instant, Unit)>,
    /// When a ledger write first failed with an I/O error (disk full): sled refuses writes
    /// from then on, so pushing stops and the process re-executes itself to reopen it.
    ledger_failed: Option<Instant>,
    /// The ledger was started over: ask the server what it holds before pushing.
    reconcile: bool,
    /// The unit each worker task is processing, to release it if the task panics.
    task_units: HashMap<tokio::task::Id, Unit>,
    paused: Option<Pause>,
    waiters: Vec<SyncWaiter>,
    watch_warning: Option<String>,
    timers: Timers,
}

/// When the loop must wake up by itself. Everything else it does is a reaction to a message;
/// with nothing queued, paused or deferred, the only timer left is the safety-net scan (an
/// hour by default) and, under systemd with a watchdog, its keep-alive.
struct Timers {
    next_rescan: Instant,
    /// When to look at the deferred writes again (`None`: nothing deferred).
    deferred_check: Option<Instant>,
    /// A flush of deferred writes is running (its task reports its end).
    deferred_running: bool,
    last_probe: Instant,
    watchdog: Option<(Duration, Instant)>,
}

struct SyncWaiter {
    pending: HashSet<Unit>,
    summary: SyncSummary,
    before: crate::engine::Counters,
    reply: oneshot::Sender<Reply>,
}

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
        let reconcile = outcome.started_over();
        let client = build_client(&cfg, &paths)?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let paused = match &client {
            Some(_) => None,
            None => Some(Pause::Auth("not logged in".into())),
        };
        let engine = Arc::new(build_engine(
            &cfg,
            ledger,
            client,
            stop_rx,
            crate::clock::Clock::from_env(),
        )?);
        let roots = cfg.roots(&config::process_env);
        let now = Instant::now();
        let timers = Timers {
            next_rescan: now + Duration::from_secs(cfg.rescan_interval_secs),
            // Whatever a previous run deferred is looked at once at start.
            deferred_check: Some(now),
            deferred_running: false,
            last_probe: now,
            watchdog: sd_notify::watchdog_enabled().map(|every| (every / 2, now + every / 2)),
        };
        Ok(Daemon {
            backlog: Backlog::new(&paths.state_dir),
            timers,
            paths,
            cfg,
            roots,
            engine,
            stop_tx,
            started: now,
            reconcile,
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
        } else {
            self.backlog.push(unit);
        }
    }

    /// Scans every enabled source and streams what needs work into the backlog (replacing
    /// what an earlier scan left there), then schedules the next safety-net scan.
    fn full_scan(&mut self, reason: &str) {
        let sources = self.cfg.enabled_sources();
        let in_flight = &self.in_flight;
        let redo = &mut self.redo;
        let mut sink = self.backlog.scan_sink();
        let scanned = for_each_unit_to_process(
            &self.engine.ledger,
            &self.roots,
            &sources,
            &Selection::default(),
            |found| {
                if in_flight.contains(&found.unit) {
                    redo.insert(found.unit);
                } else {
                    sink.add(found.size, found.unit);
                }
            },
        );
        let queued = sink.finish();
        match scanned {
            Ok(()) => tracing::debug!(reason, queued, "scan"),
            Err(err) => tracing::error!(%err, "scan failed"),
        }
        self.timers.next_rescan = Instant::now() + self.rescan_every();
    }

    /// The safety-net scan period: long while the watcher is trusted, short while it is not.
    fn rescan_every(&self) -> Duration {
        let configured = Duration::from_secs(self.cfg.rescan_interval_secs);
        match self.watch_warning {
            Some(_) => configured.min(DEGRADED_RESCAN),
            None => configured,
        }
    }

    /// The earliest moment the loop has something to do by itself, if any.
    fn next_wake(&self) -> Instant {
        let t = &self.timers;
        let mut wake = t.next_rescan;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                wake = wake.min(at);
            }
        };
        consider(self.retry_later.iter().map(|(at, _)| *at).min());
        consider(t.watchdog.map(|(_, at)| at));
        if self.paused.is_some() {
            consider(Some(t.last_probe + PAUSE_PROBE));
        } else if !t.deferred_running {
            consider(t.deferred_check);
        }
        consider(self.ledger_failed.map(|at| at + reexec_delay()));
        wake
    }

    /// Does whatever is due; `Some` when the loop must end.
    async fn on_timers(&mut self, deferred_done: &mpsc::UnboundedSender<()>) -> Option<RunExit> {
        let now = Instant::now();
        if let Some(failed_at) = self.ledger_failed
            && self.in_flight.is_empty()
            && failed_at.elapsed() >= reexec_delay()
        {
            return Some(RunExit::Reexec);
        }
        if let Some((every, at)) = self.timers.watchdog
            && at <= now
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            self.timers.watchdog = Some((every, now + every));
        }
        if self.timers.next_rescan <= now {
            self.full_scan("periodic");
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry_later)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.retry_later = later;
        for (_, u) in due {
            self.enqueue(u);
        }
        if self.paused.is_some() && self.timers.last_probe.elapsed() >= PAUSE_PROBE {
            self.timers.last_probe = Instant::now();
            self.probe().await;
        }
        if self.timers.deferred_check.is_some_and(|at| at <= now) {
            self.check_deferred(deferred_done);
        }
        self.answer_waiters();
        None
    }

    /// Something may have been deferred (a unit committed, a flush ended): look within
    /// [`DEFERRED_CHECK`], unless a look is already planned sooner.
    fn deferred_may_have_changed(&mut self) {
        let soon = Instant::now() + DEFERRED_CHECK;
        let t = &mut self.timers;
        t.deferred_check = Some(t.deferred_check.map_or(soon, |at| at.min(soon)));
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
        let listener = control::bind_control_socket(&socket)?;
        tokio::spawn(control::accept_loop(listener, ctl_tx));

        let mut signals = signal_hook_tokio::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])
        .context("installing signal handlers")?;

        if self.reconcile {
            // Before the first unit is pushed: what the server holds decides what may be
            // batched, and nothing is assumed empty.
            if let Err(err) = self.engine.reconcile().await {
                tracing::warn!(%err, "could not ask the server what it holds");
            }
        }
        if let Err(err) = self.engine.retry_rejected_if_shaping_changed().await {
            tracing::warn!(%err, "could not send the refused records again");
        }
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

        let mut workers: JoinSet<(Unit, Result<Outcome, EngineError>)> = JoinSet::new();
        let (deferred_done_tx, mut deferred_done_rx) = mpsc::unbounded_channel::<()>();

        let mut end = RunExit::Stopped;
        loop {
            self.dispatch(&mut workers);
            let wake = self.next_wake();
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
                Some(()) = deferred_done_rx.recv() => {
                    self.timers.deferred_running = false;
                    self.deferred_may_have_changed();
                }
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
                _ = tokio::time::sleep_until(wake.into()) => {
                    if let Some(exit) = self.on_timers(&deferred_done_tx).await {
                        end = exit;
                        break;
                    }
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

    /// Looks at the writes held for the server's dedup windows: sends those that are due (one
    /// task at a time, which reports its end on `done`) and plans the next look for when the
    /// earliest of the others falls due — or none, when nothing is deferred.
    fn check_deferred(&mut self, done: &mpsc::UnboundedSender<()>) {
        self.timers.deferred_check = None;
        if self.paused.is_some() || self.timers.deferred_running {
            // Looked at again when pushing resumes or the running flush ends.
            return;
        }
        let next = match self.engine.next_deferred_ms() {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(%err, "reading the deferred writes failed; retrying later");
                self.timers.deferred_check = Some(Instant::now() + UNIT_RETRY);
                return;
            }
        };
        let Some(due_ms) = next else {
            return;
        };
        let wait_ms = due_ms - self.engine.now();
        if wait_ms > 0 {
            let mut wait = Duration::from_millis(wait_ms as u64);
            if self.engine.clock.is_driven() {
                // A test moves this clock forward at will: look again every second.
                wait = wait.min(Duration::from_secs(1));
            }
            self.timers.deferred_check = Some(Instant::now() + wait);
            return;
        }
        self.timers.deferred_running = true;
        let engine = self.engine.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // Reports the end however the flush ends (a panic included).
            struct Done(mpsc::UnboundedSender<()>);
            impl Drop for Done {
                fn drop(&mut self) {
                    let _ = self.0.send(());
                }
            }
            let _done = Done(done);
            match engine.flush_deferred().await {
                Ok(Outcome::Done | Outcome::Stopped) => {}
                Ok(Outcome::Paused(p)) => tracing::debug!(%p, "deferred writes paused"),
                Err(err) => tracing::warn!(%err, "deferred writes failed; retrying later"),
            }
        });
    }

    fn dispatch(&mut self, workers: &mut JoinSet<(Unit, Result<Outcome, EngineError>)>) {
        if self.paused.is_some() || self.ledger_failed.is_some() {
            return;
        }
        let max_units = self.cfg.concurrency * UNITS_PER_REQUEST_SLOT;
        while self.in_flight.len() < max_units {
            let Some(unit) = self.backlog.pop() else {
                break;
            };
            if self.in_flight.contains(&unit) {
                // Found again by a scan while it runs: read it once more afterwards.
                self.redo.insert(unit);
                continue;
            }
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
                self.deferred_may_have_changed();
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
                    self.deferred_may_have_changed();
                    self.full_scan("reload");
                } else {
                    self.paused = Some(Pause::Auth("not logged in".into()));
                }
            }
            Err(err) => tracing::error!(%err, "credentials reload failed"),
        }
        self.answer_waiters();
    }

    async fn probe(&mut self) {
        let Some(client) = self.engine.client() else {
            return;
        };
        match client.check_auth().await {
            Ok(()) => {
                tracing::info!("the server accepts the key again; resuming");
                self.paused = None;
                self.deferred_may_have_changed();
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
                if selection.retry_rejected {
                    let engine = self.engine.clone();
                    tokio::spawn(async move {
                        match engine.retry_rejected().await {
                            Ok((_, accepted)) => {
                                tracing::info!(accepted, "refused records sent again")
                            }
                            Err(err) => {
                                tracing::warn!(%err, "sending refused records again failed")
                            }
                        }
                    });
                }
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
