//! The long-running service's loop: it owns all scheduling state — the queue of dirty units,
//! the workers, pauses, waiting `sync` requests — and reacts to watcher hints, control
//! requests, signals, worker completions and timers; plus drain on SIGTERM, reload on SIGHUP,
//! systemd notifications and re-execution after a ledger I/O failure.
//!
//! Shape (after atuin's sync daemon): one loop owns all scheduling state and reacts to
//! messages — watcher hints, control requests, signals, worker completions and tickers — so no
//! state is shared between tasks except the engine (ledger + client) itself.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{self, Config, Paths};
use crate::control::{self, ControlMsg, Replier, Reply, Request};
use crate::credentials;
use crate::engine::{Engine, EngineError, LoneFollower, Outcome, Pause, now_ms};
use crate::health::SyncState;
use crate::ledger::Ledger;
use crate::lock;
use crate::pause::{self, Hold, HoldKind};
use crate::pending;
use crate::progress::{Backfill, Meter, SyncProgress, Tick};
use crate::selection::{Selection, SyncSummary, scan_units};
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
/// A `sync` waiting on the daemon is answered (and told why) once requests have been failing
/// this long: the daemon keeps retrying, the command does not wait for ever.
pub const SYNC_GIVE_UP: Duration = Duration::from_secs(60);
/// How long `pause` and `logout` wait for the requests already on the wire.
pub const HOLD_DRAIN: Duration = Duration::from_secs(30);

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
    queue: VecDeque<Unit>,
    queued: HashSet<Unit>,
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
    /// The user's hold (`pause`, `logout`), as in the hold file: nothing is pushed while set.
    hold: Option<Hold>,
    waiters: Vec<SyncWaiter>,
    watch_warning: Option<String>,
    /// Bytes acknowledged over time: the rate behind `status`'s ETA and the progress lines.
    meter: Meter,
    /// The periodic backfill log.
    backfill: Backfill,
}

struct SyncWaiter {
    pending: HashSet<Unit>,
    summary: SyncSummary,
    before: crate::engine::Counters,
    /// Units and bytes pending when the sync was asked for (its progress lines' totals).
    units_total: usize,
    bytes_total: u64,
    reply: Replier,
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
        let hold = load_hold(&paths);
        Ok(Daemon {
            paths,
            cfg,
            roots,
            engine,
            stop_tx,
            started: Instant::now(),
            reconcile,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashSet::new(),
            redo: HashSet::new(),
            retry_later: Vec::new(),
            paused,
            hold,
            waiters: Vec::new(),
            watch_warning: None,
            meter: Meter::new(Duration::from_secs(30)),
            backfill: Backfill::default(),
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
        let listener = control::bind_control_socket(&socket)?;
        tokio::spawn(control::accept_loop(listener, ctl_tx));

        let mut signals = signal_hook_tokio::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ])
        .context("installing signal handlers")?;

        // Before any request: a pause or a logout outlives a restart.
        self.apply_hold();
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
        if let Err(err) = self.engine.reprice_if_prices_changed() {
            tracing::warn!(%err, "could not re-price the sessions");
        }
        self.log_roots();
        self.full_scan("start");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        tracing::info!(
            pid = std::process::id(),
            version = env!("CARGO_PKG_VERSION"),
            url = self.cfg.url.as_deref().unwrap_or("(not set)"),
            state = %self.paths.state_dir.display(),
            "opensyncd started"
        );
        if let Some(hold) = &self.hold {
            tracing::warn!(
                "paused ({}); watching, nothing is pushed until then",
                hold.describe(now_ms())
            );
        } else if let Some(p) = &self.paused {
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
        let mut deferred_task: Option<tokio::task::JoinHandle<()>> = None;

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
                    self.flush_deferred_if_due(&mut deferred_task);
                    self.every_tick();
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

    /// Sends the writes held for the server's dedup windows once they are due (one task at a
    /// time).
    fn flush_deferred_if_due(&self, task: &mut Option<tokio::task::JoinHandle<()>>) {
        let idle = task.as_ref().is_none_or(|t| t.is_finished());
        let due = self
            .engine
            .next_deferred_ms()
            .ok()
            .flatten()
            .is_some_and(|due| due <= self.engine.now());
        if self.paused.is_none() && self.hold.is_none() && idle && due {
            let engine = self.engine.clone();
            *task = Some(tokio::spawn(async move {
                match engine.flush_deferred().await {
                    Ok(Outcome::Done | Outcome::Stopped) => {}
                    Ok(Outcome::Paused(p)) => tracing::debug!(%p, "deferred writes paused"),
                    Err(err) => tracing::warn!(%err, "deferred writes failed; retrying later"),
                }
            }));
        }
    }

    fn dispatch(&mut self, workers: &mut JoinSet<(Unit, Result<Outcome, EngineError>)>) {
        if self.paused.is_some() || self.hold.is_some() || self.ledger_failed.is_some() {
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
            // A unit an explicit `sync` waits for is read as it is; one found by watching may
            // wait for its main transcript.
            let lone = if self.waiters.iter().any(|w| w.pending.contains(&unit)) {
                LoneFollower::Read
            } else {
                LoneFollower::Wait
            };
            let handle = workers.spawn(async move {
                let result = engine.process_unit(&task_unit, lone).await;
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
            // Stopped by the user's hold (its requests refused by the client's gate), not by
            // the server: the unit waits for the hold to be lifted.
            Ok(Outcome::Paused(pause))
                if self.hold.is_some()
                    || matches!(&pause, Pause::Auth(why) if why.contains(crate::push::HELD)) =>
            {
                self.enqueue(unit.clone())
            }
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
        self.backfill.unit_done();
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
        let now = now_ms();
        let paused = match (&self.hold, &self.paused) {
            (Some(hold), _) => Some(format!("paused {}", hold.describe(now))),
            (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        };
        let counters = self.engine.counters();
        // The server has been failing for a while: answer (the daemon keeps retrying).
        let gave_up = counters
            .failing_since_ms
            .filter(|since| now - since >= SYNC_GIVE_UP.as_millis() as i64)
            .map(|since| {
                format!(
                    "requests have been failing for {} ({}); the daemon keeps retrying on its own",
                    pause::human_secs(((now - since) / 1000).max(0) as u64),
                    counters
                        .last_error
                        .as_ref()
                        .map_or("no answer", |(_, e)| e.as_str())
                )
            });
        let mut still = Vec::new();
        for mut w in self.waiters.drain(..) {
            if w.pending.is_empty() || paused.is_some() || gave_up.is_some() {
                w.summary.gave_up = gave_up.clone().filter(|_| !w.pending.is_empty());
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
        // New prices, redaction or caps: shaping is rebuilt; sessions whose cost changed and
        // records refused before are sent again.
        match crate::wiring::build_engine_shaping(&self.cfg) {
            Ok(shaping) => {
                self.engine.set_shaping(shaping);
                if let Err(err) = self.engine.reprice_if_prices_changed() {
                    tracing::warn!(%err, "could not re-price the sessions");
                }
                let engine = self.engine.clone();
                tokio::spawn(async move {
                    if let Err(err) = engine.retry_rejected_if_shaping_changed().await {
                        tracing::warn!(%err, "could not send the refused records again");
                    }
                });
            }
            Err(err) => tracing::error!(%err, "prices or redaction could not be reloaded"),
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
        // `login` lifts a logout's hold; the new client must obey the one in force.
        self.hold = load_hold(&self.paths);
        self.apply_hold();
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
            self.cfg.parse_options(),
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
        let health = self.health(&status);
        status.auth = health.headline(now_ms());
        status.health = Some(health);
        status.hold = self.hold.clone();
        status.watch_warning = self.watch_warning.clone();
        status.counters = Some((&self.engine.counters()).into());
        status
    }

    /// The state of syncing, from what this daemon knows: the user's hold, the server's pause,
    /// the outcome of its last requests, and the work left (`status`'s backlog and its queue).
    fn health(&self, status: &Status) -> SyncState {
        let now = now_ms();
        if let Some(hold) = &self.hold {
            return match hold.kind {
                HoldKind::LoggedOut => SyncState::NotLoggedIn {
                    reason: hold.describe(now),
                },
                HoldKind::Paused => SyncState::Paused {
                    reason: hold.describe(now),
                    until_ms: hold.until_ms,
                },
            };
        }
        if self.engine.client().is_none() {
            return SyncState::NotLoggedIn {
                reason: "no API key or no server URL: run `opensyncd login`".into(),
            };
        }
        match &self.paused {
            Some(Pause::Auth(why)) => {
                return SyncState::NotLoggedIn {
                    reason: format!("the server refused the API key: {why}; run `opensyncd login`"),
                };
            }
            Some(Pause::WrongUrl(why)) => {
                return SyncState::WrongUrl {
                    reason: format!("{why}; check the url with `opensyncd config`"),
                };
            }
            None => {}
        }
        let counters = self.engine.counters();
        if let Some(since_ms) = counters.failing_since_ms {
            return SyncState::Retrying {
                since_ms,
                next_attempt_ms: counters.next_attempt_ms,
                error: counters
                    .last_error
                    .map_or_else(|| "no answer".into(), |(_, e)| e),
            };
        }
        // The backlog `status` shows (the same test as `sync --dry-run`); the queue may hold
        // units with nothing new (a rescan looks at them), which is not work left.
        let files: usize = status.sources.iter().map(|s| s.backlog_files).sum();
        let bytes_left: u64 = status.sources.iter().map(|s| s.backlog_bytes).sum();
        if files > 0 {
            SyncState::Syncing {
                files,
                bytes_left,
                eta_secs: self.meter.eta_secs(bytes_left),
            }
        } else {
            SyncState::Ok
        }
    }

    /// Says at start which directories are watched for each source, or that none of the
    /// tools was found (so an empty dashboard is explained by the first lines of the log).
    fn log_roots(&self) {
        let inventory = sources::inventory(&self.roots, &self.cfg.enabled_sources());
        let mut found = 0;
        for (source, (dirs, units)) in &inventory {
            if dirs.is_empty() {
                tracing::info!(
                    "{source}: not found (looked in {})",
                    self.roots
                        .watch_dirs(*source)
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            } else {
                found += 1;
                tracing::info!(
                    "{source}: watching {} ({units} session files)",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if found == 0 {
            tracing::warn!(
                "found none of the tools ({}): nothing to sync until one of them writes a session \
                 (see `opensyncd config` for the directories, `opensyncd set <tool>_dirs` to change them)",
                inventory
                    .keys()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    /// Housekeeping of this module's own state, every tick: the hold's end, the rate meter,
    /// the backfill log and the progress lines of waiting `sync`s.
    fn every_tick(&mut self) {
        let now = now_ms();
        if let Some(hold) = &self.hold
            && hold.expired(now)
        {
            tracing::info!("the pause has ended; pushing resumes");
            if let Err(err) = pause::clear(&self.paths) {
                tracing::warn!(%err, "could not remove the pause file");
            }
            self.hold = None;
            self.apply_hold();
        }
        let counters = self.engine.counters();
        let at = Instant::now();
        self.meter.record(at, counters.bytes_committed);
        let tick = Tick {
            now: at,
            units_left: self.queue.len() + self.in_flight.len(),
            bytes: counters.bytes_committed,
            messages: counters.messages_sent,
            rate: self.meter.rate(),
        };
        if let Some(line) = self.backfill.tick(tick) {
            tracing::info!("{line}");
        }
        for w in &self.waiters {
            if w.reply.wants_progress() {
                w.reply.progress(self.waiter_progress(w, &counters));
            }
        }
    }

    fn waiter_progress(&self, w: &SyncWaiter, counters: &crate::engine::Counters) -> SyncProgress {
        SyncProgress {
            units_done: w.summary.units,
            units_total: w.units_total,
            bytes_done: counters
                .bytes_committed
                .saturating_sub(w.before.bytes_committed)
                .min(w.bytes_total),
            bytes_total: w.bytes_total,
            messages_sent: counters
                .messages_sent
                .saturating_sub(w.before.messages_sent),
            rate: self.meter.rate(),
        }
    }

    /// Makes the client obey the hold: with one, no request leaves (those on the wire end);
    /// without, requests flow again and the units held back are looked at.
    fn apply_hold(&mut self) {
        let Some(client) = self.engine.client() else {
            return;
        };
        match (&self.hold, client.is_held()) {
            (Some(_), false) => client.hold(),
            (None, true) => {
                client.release();
                tracing::info!("resumed: pushing again");
                self.full_scan("resume");
            }
            _ => {}
        }
    }

    fn control(&mut self, request: Request, reply: Replier) {
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
            Request::Hold => {
                self.hold = load_hold(&self.paths);
                match &self.hold {
                    Some(hold) => tracing::info!("paused ({})", hold.describe(now_ms())),
                    None => tracing::info!("resume requested"),
                }
                self.reply_when_quiet(reply);
            }
            Request::Logout => {
                self.hold = load_hold(&self.paths);
                tracing::info!("logged out: the key is forgotten and nothing more is sent");
                self.reply_when_quiet(reply);
                // The key is gone from memory too; `login` builds a new client.
                self.engine.set_client(None);
            }
            Request::Stop => {
                tracing::info!("asked to stop over the control socket");
                let _ = reply.send(Reply::Ok);
                // The same path as SIGTERM: drain, flush, exit.
                if let Err(err) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                    tracing::error!(%err, "could not stop");
                }
            }
            Request::DryRun { selection } => {
                let engine = self.engine.clone();
                let roots = self.roots.clone();
                let sources = self.cfg.enabled_sources();
                let parse = self.cfg.parse_options();
                let max_line = self.cfg.max_line_bytes;
                // Reading the pending data can take a while: off the loop.
                tokio::task::spawn_blocking(move || {
                    let answer = crate::oneshot::dry_run_with(
                        &engine.ledger,
                        &roots,
                        &sources,
                        &selection,
                        parse,
                        max_line,
                    );
                    let _ = reply.send(match answer {
                        Ok(report) => Reply::DryRun { report },
                        Err(err) => Reply::Error {
                            message: format!("{err:#}"),
                        },
                    });
                });
            }
            Request::Sync {
                selection,
                progress: _,
            } => {
                if self.hold.is_some() {
                    // Answered at once by `answer_waiters`: nothing is sent while held.
                    self.waiters.push(SyncWaiter {
                        pending: HashSet::new(),
                        summary: SyncSummary::default(),
                        before: self.engine.counters(),
                        units_total: 0,
                        bytes_total: 0,
                        reply,
                    });
                    self.answer_waiters();
                    return;
                }
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
                let found = scan_units(&self.engine.ledger, &self.roots, &sources, &selection)
                    .map_err(|e| e.to_string())
                    .and_then(|units| {
                        pending::filter(&self.engine.ledger, units, self.cfg.parse_options())
                            .map_err(|e| e.to_string())
                    });
                match found {
                    Ok(units) => {
                        let bytes_total = units.iter().map(|p| p.bytes).sum();
                        let pending: HashSet<Unit> = units.iter().map(|p| p.unit.clone()).collect();
                        for p in units {
                            self.enqueue(p.unit);
                        }
                        let waiter = SyncWaiter {
                            units_total: pending.len(),
                            pending,
                            summary: SyncSummary::default(),
                            before: self.engine.counters(),
                            bytes_total,
                            reply,
                        };
                        if waiter.reply.wants_progress() {
                            let counters = self.engine.counters();
                            waiter
                                .reply
                                .progress(self.waiter_progress(&waiter, &counters));
                        }
                        self.waiters.push(waiter);
                        self.answer_waiters();
                    }
                    Err(message) => {
                        let _ = reply.send(Reply::Error { message });
                    }
                }
            }
        }
    }

    /// Applies the hold to the client and answers once no request is on the wire any more,
    /// so that when `pause` or `logout` returns, nothing more leaves.
    fn reply_when_quiet(&mut self, reply: Replier) {
        self.apply_hold();
        // `sync`s waiting on the daemon are told it is paused.
        self.answer_waiters();
        let client = self.engine.client().filter(|_| self.hold.is_some());
        tokio::spawn(async move {
            if let Some(client) = client {
                client.quiet(HOLD_DRAIN).await;
            }
            let _ = reply.send(Reply::Ok);
        });
    }
}

/// The hold in force, as the hold file says (an unreadable file is logged and obeyed as a
/// pause: when in doubt, send nothing).
fn load_hold(paths: &Paths) -> Option<Hold> {
    match pause::load(paths, now_ms()) {
        Ok(hold) => hold,
        Err(err) => {
            tracing::error!(%err, "cannot read the pause file; pausing until it can be read");
            Some(Hold {
                kind: HoldKind::Paused,
                since_ms: now_ms(),
                until_ms: None,
            })
        }
    }
}
