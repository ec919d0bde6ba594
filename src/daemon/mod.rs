//! The long-running service's loop: it owns all scheduling state — the queue of dirty units,
//! the workers, pauses, waiting `sync` requests — and reacts to watcher hints, control
//! requests, signals, worker completions and timers; plus drain on SIGTERM, reload on SIGHUP,
//! systemd notifications and re-execution after a ledger I/O failure.
//!
//! Shape (after atuin's sync daemon): one loop owns all scheduling state and reacts to
//! messages — watcher hints, control requests, signals, worker completions and tickers — so no
//! state is shared between tasks except the engine (ledger + client) itself.
//!
//! This file holds the loop, the start and what reacts to messages (dispatching units to
//! workers, their results, reload, the pause probe); one submodule a job: `timers` when the
//! loop wakes by itself and what it does then, `requests` the answers to control requests
//! (and the state `status` reports), `waiters` the `sync` requests waiting for their units,
//! `reexec` restarting in place after a ledger I/O failure.

mod reexec;
mod requests;
mod timers;
mod waiters;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::backlog::Backlog;
use crate::config::{self, Config, Paths};
use crate::control::{self, ControlMsg, Reply};
use crate::engine::{Engine, EngineError, LoneFollower, Outcome, Pause, now_ms};
use crate::ledger::Ledger;
use crate::lock;
use crate::pause::{self, Hold, HoldKind};
use crate::progress::{Backfill, Meter};
use crate::selection::{Selection, for_each_unit_to_process};
use crate::sources::{self, Roots, Unit};
use crate::watch::{Hint, Watcher};
use crate::wiring::{build_client, build_engine};
use reexec::{LEDGER_RETRY, Why, mark_restarting, reexec};
use timers::Timers;
use waiters::SyncWaiter;

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
/// A `sync` waiting on the daemon is answered (and told why) once requests have been failing
/// this long: the daemon keeps retrying, the command does not wait for ever.
pub const SYNC_GIVE_UP: Duration = Duration::from_secs(60);
/// How long `pause` and `logout` wait for the requests already on the wire.
pub const HOLD_DRAIN: Duration = Duration::from_secs(30);
/// How often progress is looked at (the backfill log, `sync` progress lines, the rate meter)
/// while there is work or a `sync` waiting; never while idle.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

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
    // Copying a ledger from sled (once, at the first start after an upgrade) brings all of
    // sled into memory; a fresh image starts without it. A copy that fails is reported by
    // the open below, which tries it again.
    if let Ok(true) = Ledger::move_from_sled(&paths.ledger_dir()) {
        mark_restarting(&paths);
        drop(lock);
        return Err(reexec(Why::LedgerMoved, &paths));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("opensyncd")
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(Daemon::start(paths.clone(), cfg)?.run());
    // Dropping the runtime abandons anything still in flight after the drain timeout.
    rt.shutdown_timeout(Duration::from_secs(1));
    drop(lock);
    match result? {
        RunExit::Stopped => Ok(RunEnd::Stopped),
        RunExit::Reexec(why) => Err(reexec(why, &paths)),
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
#[derive(Debug, PartialEq, Eq)]
enum RunExit {
    /// A signal asked it to stop.
    Stopped,
    /// Start over in a fresh process image.
    Reexec(Why),
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
    /// When a ledger write first failed with an I/O error (disk full): pushing stops (nothing
    /// may be acknowledged that cannot be recorded) and, after a delay, the process
    /// re-executes itself to reopen the ledger from a clean start.
    ledger_failed: Option<Instant>,
    /// The ledger was started over: ask the server what it holds before pushing.
    reconcile: bool,
    /// The unit each worker task is processing, to release it if the task panics.
    task_units: HashMap<tokio::task::Id, Unit>,
    paused: Option<Pause>,
    /// The user's hold (`pause`, `logout`), as in the hold file: nothing is pushed while set.
    hold: Option<Hold>,
    waiters: Vec<SyncWaiter>,
    /// File watching; `None` until the main loop starts.
    watcher: Option<Watcher>,
    watch_warning: Option<String>,
    timers: Timers,
    /// Bytes acknowledged over time: the rate behind `status`'s ETA and the progress lines.
    meter: Meter,
    /// The periodic backfill log.
    backfill: Backfill,
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
            progress: None,
            release_when_idle: false,
            done_since_idle: 0,
            renew_after: timers::renew_after_units(),
            renew_pending: false,
        };
        let hold = load_hold(&paths);
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
            hold,
            waiters: Vec::new(),
            watcher: None,
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

    /// What to watch: each enabled source's plan under the current roots, re-evaluated at
    /// every refresh (what is watched may depend on what is on disk: OpenCode's JSON tree is
    /// not watched once its database exists).
    fn watch_plan(&self) -> crate::watch::Plan {
        let roots = self.roots.clone();
        let sources = self.cfg.enabled_sources();
        Box::new(move || {
            sources
                .iter()
                .flat_map(|source| roots.watch_plan(*source))
                .collect()
        })
    }

    /// Re-establishes the watches the plan asks for; true when anything is newly watched
    /// (files there may predate the watch, so the caller scans).
    fn refresh_watches(&mut self) -> bool {
        let Some(watcher) = self.watcher.as_mut() else {
            return false;
        };
        let added = match watcher.refresh() {
            Ok(added) => added,
            Err(err) => {
                tracing::error!(%err, "re-establishing watches failed");
                false
            }
        };
        if !added {
            tracing::debug!("watch plan re-evaluated");
        }
        self.watch_warning = watcher.degraded();
        added
    }

    async fn run(mut self) -> Result<RunExit> {
        let (hint_tx, mut hint_rx) = mpsc::unbounded_channel();
        let watcher = Watcher::start(
            self.watch_plan(),
            Duration::from_millis(self.cfg.debounce_ms),
            hint_tx,
        )
        .context("setting up file watching")?;
        self.watch_warning = watcher.degraded();
        self.watcher = Some(watcher);

        let (ctl_tx, mut ctl_rx) = mpsc::channel::<ControlMsg>(64);
        let socket = self.paths.control_socket();
        if let Some(delay) = timers::test_listen_delay()
            && self.paths.restarting_marker().exists()
        {
            // Tests widen the gap of a restart in place, to show that clients wait it out.
            tokio::time::sleep(delay).await;
        }
        let listener = control::bind_control_socket(&socket)?;
        tokio::spawn(control::accept_loop(
            listener,
            ctl_tx,
            self.paths.restarting_marker(),
        ));
        // Listening again after a restart in place: clients stop waiting for this image.
        let _ = std::fs::remove_file(self.paths.restarting_marker());

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

        let mut workers: JoinSet<(Unit, Result<Outcome, EngineError>)> = JoinSet::new();
        let (deferred_done_tx, mut deferred_done_rx) = mpsc::unbounded_channel::<()>();

        let mut end = RunExit::Stopped;
        loop {
            self.dispatch(&mut workers);
            if self.progress_may_have_changed() {
                end = RunExit::Reexec(Why::GiveBackMemory);
                break;
            }
            let wake = self.next_wake();
            tokio::select! {
                sig = signals.next() => match sig {
                    Some(signal_hook::consts::SIGHUP) => self.reload(),
                    _ => break,
                },
                Some(hint) = hint_rx.recv() => match hint {
                    Hint::Changed(paths) => {
                        for p in paths {
                            let unit = sources::unit_for_path(&p, &self.roots);
                            tracing::trace!(path = %p.display(), unit = unit.is_some(), "changed");
                            if let Some(unit) = unit {
                                self.enqueue(unit);
                            }
                        }
                    }
                    Hint::Refresh => {
                        // Only what is newly watched may hold files nobody saw change.
                        if self.refresh_watches() {
                            self.full_scan("new directories watched");
                        }
                    }
                    Hint::Rescan(reason) => {
                        tracing::debug!(%reason, "rescan requested by the watcher");
                        self.refresh_watches();
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

        match end {
            RunExit::Reexec(_) => {
                // From here until the new image listens, requests go unanswered: the marker
                // tells clients to wait and ask again instead of concluding no daemon runs.
                mark_restarting(&self.paths);
                tracing::info!("restarting in place: draining in-flight work");
            }
            RunExit::Stopped => tracing::info!("stopping: draining in-flight work"),
        }
        // A restart in place keeps the pid: to systemd it is a reload (the new image says
        // READY=1 once started), not a stop.
        let _ = sd_notify::notify(&[match end {
            RunExit::Reexec(_) => sd_notify::NotifyState::Reloading,
            RunExit::Stopped => sd_notify::NotifyState::Stopping,
        }]);
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
            // A restart in place leaves them unanswered: their clients see the marker and ask
            // the new image again.
            if end == RunExit::Stopped {
                let _ = w.reply.send(Reply::Error {
                    message: "the daemon is stopping".into(),
                });
            }
        }
        tracing::info!("stopped");
        Ok(end)
    }

    fn dispatch(&mut self, workers: &mut JoinSet<(Unit, Result<Outcome, EngineError>)>) {
        if self.paused.is_some() || self.hold.is_some() || self.ledger_failed.is_some() {
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
                self.timers.done_since_idle += 1;
                self.deferred_may_have_changed();
                if self.paused.take().is_some() {
                    tracing::info!("pushing resumed");
                }
            }
            Ok(Outcome::Stopped) => {}
            Ok(Outcome::Waiting { until_ms }) => {
                // No later event may come for a lone subagent file: look again when its wait
                // ends (a test's driven clock: every second).
                let mut wait = Duration::from_millis((until_ms - self.engine.now()).max(0) as u64);
                if self.engine.clock.is_driven() {
                    wait = wait.min(Duration::from_secs(1));
                }
                self.retry_later.push((Instant::now() + wait, unit.clone()));
            }
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

    fn reload(&mut self) {
        tracing::info!("reloading configuration and credentials");
        match config::load(&self.paths, &figment::value::Dict::new()) {
            Ok(cfg) => {
                let roots = cfg.roots(&config::process_env);
                let moved = roots != self.roots || cfg.sources != self.cfg.sources;
                self.roots = roots;
                self.cfg = cfg;
                // Other directories or other sources: watch what the new config names (a
                // scan follows below once logged in; before that nothing is pushed anyway).
                if moved {
                    self.log_roots();
                }
                let plan = self.watch_plan();
                if let Some(watcher) = self.watcher.as_mut() {
                    watcher.set_plan(plan);
                }
                self.refresh_watches();
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
                    self.deferred_may_have_changed();
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
                self.deferred_may_have_changed();
                self.full_scan("resume");
            }
            _ => {}
        }
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
