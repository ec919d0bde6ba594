//! One-shot runs of the engine without the daemon's loop: `sync` (take the lock, push the
//! pending units, settle, exit — bounded: it gives up on a server that does not answer, and
//! after `--timeout`) and `sync --dry-run` (what would be sent, read-only) here; `export`
//! (every unit parsed in memory into exactly the payloads a push would send, in parallel,
//! streamed in a fixed order) and `synctest` (one test session and message on the server) in
//! `export.rs` and `synctest.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Paths};
use crate::engine::{LoneFollower, Outcome};
use crate::ledger::Ledger;
use crate::lock;
use crate::model::{SourceId, Tokens};
use crate::pending::{self, DryRun};
use crate::progress::{Meter, SyncProgress};
use crate::push::{Client, PushError};
use crate::selection::{Selection, SyncSummary, scan_units};
use crate::sources::{ParseOptions, Roots, Unit};
use crate::wiring;

mod export;
mod synctest;

pub use export::{EXPORT_READ_BYTES, ExportReport, Exported, export, export_json, export_threads};
pub use synctest::{SynctestReport, synctest};

/// Progress of a one-shot sync.
#[derive(Debug, Clone)]
pub enum Progress {
    /// The units to process and their pending bytes.
    Start {
        /// How many.
        units: usize,
        /// Their bytes not yet acknowledged.
        bytes: u64,
    },
    /// Where it stands (a few times a second).
    Moving(SyncProgress),
    /// One unit finished.
    Unit {
        /// Which.
        unit: String,
        /// Where it stands.
        progress: SyncProgress,
    },
    /// Waiting for the server's dedup window before a final session update.
    Settling {
        /// How long.
        wait: Duration,
    },
}

/// How long a one-shot sync keeps trying while every request fails (server down, refusing
/// connections, answering 5xx) before it gives up with a non-zero exit. The daemon, not a
/// one-shot command, is what retries for as long as it takes.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// Limits of a one-shot sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    /// Stop after this long (`sync --timeout`); what was acknowledged by then is kept.
    pub timeout: Option<Duration>,
}

/// Syncs the pending units of the selection in this process. Fails when another process
/// holds the lock, when the server does not answer before anything is sent, and (with a
/// summary saying why) when it keeps failing or `bounds.timeout` runs out.
pub fn sync(
    paths: &Paths,
    cfg: &Config,
    selection: &Selection,
    bounds: Bounds,
    progress: &mut dyn FnMut(Progress),
) -> Result<SyncSummary> {
    let started = Instant::now();
    let Some(_lock) = lock::take_lock(paths)? else {
        bail!("{}; wait for it or stop it", lock::describe_holder(paths));
    };
    let (ledger, opened) = Ledger::open(&paths.ledger_dir())?;
    let client = wiring::build_client(cfg, paths)?
        .ok_or_else(|| anyhow!("not logged in: run `opensyncd login` first"))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = Arc::new(wiring::build_engine(
        cfg,
        ledger,
        Some(client.clone()),
        stop_rx,
        crate::clock::Clock::from_env(),
    )?);
    let roots = cfg.roots(&crate::config::process_env);
    let units = scan_units(&engine.ledger, &roots, &cfg.enabled_sources(), selection)?;
    let units = pending::filter(&engine.ledger, units, cfg.parse_options())?;
    let bytes_total: u64 = units.iter().map(|p| p.bytes).sum();
    let units_total = units.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if !units.is_empty() || opened.started_over() || selection.retry_rejected {
        rt.block_on(preflight(&client))?;
    }
    progress(Progress::Start {
        units: units_total,
        bytes: bytes_total,
    });
    let concurrency = cfg.concurrency;
    let mut summary = SyncSummary::default();
    let mut meter = Meter::new(Duration::from_secs(10));
    let deadline = bounds.timeout.map(|t| started + t);
    let now_progress = |summary: &SyncSummary, meter: &Meter| {
        let c = engine.counters();
        SyncProgress {
            units_done: summary.units,
            units_total,
            bytes_done: c.bytes_committed.min(bytes_total),
            bytes_total,
            messages_sent: c.messages_sent,
            rate: meter.rate(),
        }
    };
    rt.block_on(async {
        if opened.started_over() {
            engine.reconcile().await?;
        }
        engine.reprice_if_prices_changed()?;
        let retried = if selection.retry_rejected {
            engine.retry_rejected().await?.0
        } else {
            engine.retry_rejected_if_shaping_changed().await?
        };
        if let Outcome::Paused(p) = retried {
            summary.paused = Some(p.to_string());
        }
        let mut queue = units.into_iter().map(|p| p.unit);
        let mut workers: JoinSet<(Unit, Result<Outcome, crate::engine::EngineError>)> =
            JoinSet::new();
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            while workers.len() < concurrency
                && summary.paused.is_none()
                && summary.gave_up.is_none()
            {
                let Some(unit) = queue.next() else { break };
                let engine = engine.clone();
                workers.spawn(async move {
                    let r = engine.process_unit(&unit, LoneFollower::Read).await;
                    (unit, r)
                });
            }
            if workers.is_empty() {
                break;
            }
            tokio::select! {
                joined = workers.join_next() => {
                    let Some(joined) = joined else { break };
                    let (unit, result) = joined.context("a sync task failed")?;
                    match result {
                        // (`Waiting` does not happen here: a sync reads lone followers.)
                        Ok(Outcome::Done | Outcome::Waiting { .. }) => summary.units += 1,
                        // Stopped by the bound below: not finished.
                        Ok(Outcome::Stopped) => {}
                        Ok(Outcome::Paused(p)) => summary.paused = Some(p.to_string()),
                        Err(err) => {
                            summary.units += 1;
                            summary.failed += 1;
                            tracing::error!(unit = %unit.describe(), %err, "unit failed");
                        }
                    }
                    meter.record(Instant::now(), engine.counters().bytes_committed);
                    progress(Progress::Unit {
                        unit: unit.describe(),
                        progress: now_progress(&summary, &meter),
                    });
                }
                _ = ticker.tick() => {
                    meter.record(Instant::now(), engine.counters().bytes_committed);
                    progress(Progress::Moving(now_progress(&summary, &meter)));
                    if summary.gave_up.is_none()
                        && let Some(why) = out_of_bounds(&engine.counters(), deadline, bounds, engine.now())
                    {
                        summary.gave_up = Some(why);
                        let _ = stop_tx.send(true);
                    }
                }
            }
        }
        // Writes held back because the server would have skipped them (its 5 s and 10 s
        // windows) are sent once their window has passed. Each round waits for the last of
        // them to be due and sends them all (the sync cannot end before the last one anyway);
        // a write can be due again only if its session was written meanwhile (a confirmation),
        // so two rounds are the rule.
        for _ in 0..4 {
            if summary.paused.is_some() || summary.gave_up.is_some() {
                break;
            }
            let Some(due) = engine.last_deferred_ms()? else {
                break;
            };
            let wait = Duration::from_millis((due - engine.now()).max(0) as u64);
            if deadline.is_some_and(|d| Instant::now() + wait > d) {
                summary.gave_up = Some(format!(
                    "--timeout ran out before the final session update(s), which wait for the \
                     server's update window ({}s); they are sent by the daemon or the next sync",
                    wait.as_secs()
                ));
                break;
            }
            progress(Progress::Settling { wait });
            tokio::time::sleep(wait).await;
            if let Outcome::Paused(p) = engine.flush_deferred().await? {
                summary.paused = Some(p.to_string());
            }
        }
        anyhow::Ok(())
    })?;
    let c = engine.counters();
    summary.sessions_sent = c.sessions_sent;
    summary.messages_sent = c.messages_sent;
    summary.rejected = c.rejected;
    if summary.gave_up.is_some() {
        summary.gave_up = summary.gave_up.map(|why| {
            format!(
                "{why}; {} of {units_total} file(s) finished, what the server acknowledged is kept",
                summary.units
            )
        });
    }
    summary.unpriced = unpriced_in_ledger(&engine)?;
    Ok(summary)
}

/// Why a one-shot sync must stop now, if it must: its `--timeout` ran out, or every request
/// has been failing for [`GIVE_UP_AFTER`] (or the whole timeout, when shorter).
fn out_of_bounds(
    counters: &crate::engine::Counters,
    deadline: Option<Instant>,
    bounds: Bounds,
    now_ms: i64,
) -> Option<String> {
    if deadline.is_some_and(|d| Instant::now() >= d) {
        return Some(format!(
            "gave up after {} (--timeout)",
            crate::pause::human_secs(bounds.timeout.unwrap_or_default().as_secs())
        ));
    }
    let window = bounds
        .timeout
        .map_or(GIVE_UP_AFTER, |t| t.min(GIVE_UP_AFTER));
    let since = counters.failing_since_ms?;
    (now_ms - since >= window.as_millis() as i64).then(|| {
        format!(
            "gave up: every request has failed for {} ({})",
            crate::pause::human_secs(((now_ms - since) / 1000).max(0) as u64),
            counters
                .last_error
                .as_ref()
                .map_or("no answer", |(_, e)| e.as_str())
        )
    })
}

/// Asks the server's `/health` before anything is read for sending, so that a server that is
/// down, refuses connections or is not OpenSync ends the command at once with the reason,
/// instead of a backoff. A transient failure is tried twice more, a second apart.
async fn preflight(client: &Client) -> Result<()> {
    let mut last = None;
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        match client.health().await {
            Ok(()) => return Ok(()),
            Err(err) if err.class() == crate::push::ErrorClass::Retry => last = Some(err),
            Err(err) => {
                return Err(anyhow!(
                    "the server does not answer like OpenSync ({}); nothing was sent — check the \
                     url with `opensyncd config` or `opensyncd verify`",
                    one_line(&err)
                ));
            }
        }
    }
    let err = last.map_or_else(|| "no answer".to_string(), |e| one_line(&e));
    Err(anyhow!(
        "the server is unreachable ({err}); nothing was sent. The daemon retries on its own; \
         or run `opensyncd sync` again later"
    ))
}

/// An error in one line (a network error's chain can span several).
fn one_line(err: &PushError) -> String {
    err.to_string().replace('\n', " ")
}

/// What a sync of `selection` would send, read-only: the pending units (the same test as
/// `sync` and `status`) and the sessions each would update. Takes the lock; fails when a
/// daemon runs (ask it instead) or another command holds it.
pub fn dry_run(paths: &Paths, cfg: &Config, selection: &Selection) -> Result<DryRun> {
    let Some(_lock) = lock::take_lock(paths)? else {
        bail!(
            "{}; try again when it is done",
            lock::describe_holder(paths)
        );
    };
    let (ledger, _) = Ledger::open(&paths.ledger_dir())?;
    let roots = cfg.roots(&crate::config::process_env);
    dry_run_with(
        &ledger,
        &roots,
        &cfg.enabled_sources(),
        selection,
        cfg.parse_options(),
        cfg.max_line_bytes,
    )
}

/// [`dry_run`] on an open ledger (the daemon answers `sync --dry-run` with it).
pub fn dry_run_with(
    ledger: &Ledger,
    roots: &Roots,
    sources: &[SourceId],
    selection: &Selection,
    parse: ParseOptions,
    max_line_bytes: usize,
) -> Result<DryRun> {
    // Never force in a dry run: forcing rewrites the ledger.
    let selection = Selection {
        force: false,
        ..selection.clone()
    };
    let units = scan_units(ledger, roots, sources, &selection)?;
    let pending = pending::filter(ledger, units, parse)?;
    let mut report = pending::describe(ledger, &pending, parse, max_line_bytes)?;
    report.deferred_writes = ledger.deferred_count();
    Ok(report)
}

/// A path shown relative to home, for messages.
pub fn tilde(path: &Path) -> String {
    let home = crate::config::home_dir(&crate::config::process_env);
    match path.strip_prefix(&home) {
        Ok(rest) => PathBuf::from("~").join(rest).display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// Models without a price across the sessions the ledger knows, with how many sessions and
/// tokens each leaves out of the costs (what `sync` and `status` report).
pub fn unpriced_in_ledger(
    engine: &crate::engine::Engine,
) -> Result<BTreeMap<String, (usize, Tokens)>> {
    let pricing = engine.shaping().pricing.clone();
    let mut out: BTreeMap<String, (usize, Tokens)> = BTreeMap::new();
    for item in engine.ledger.sessions() {
        let (_, rec) = item?;
        if rec.unpriced_models.is_empty() {
            continue;
        }
        for (model, tokens) in rec.state.totals(&pricing).unpriced_tokens {
            let entry = out.entry(model).or_default();
            entry.0 += 1;
            entry.1.add(&tokens);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing_since(ms: Option<i64>) -> crate::engine::Counters {
        crate::engine::Counters {
            failing_since_ms: ms,
            last_error: ms.map(|at| (at, "POST /sync/message: HTTP 503: down".to_string())),
            ..Default::default()
        }
    }

    #[test]
    fn a_one_shot_sync_gives_up_after_a_minute_of_failures_or_its_timeout() {
        let now = 1_000_000;
        let none = Bounds::default();
        // Failing for 59 s: keep trying; for 60 s (GIVE_UP_AFTER): give up, saying why.
        assert_eq!(
            out_of_bounds(&failing_since(Some(now - 59_000)), None, none, now),
            None
        );
        let why =
            out_of_bounds(&failing_since(Some(now - 60_000)), None, none, now).expect("gives up");
        assert!(why.contains("every request has failed for 60s"), "{why}");
        assert!(why.contains("HTTP 503: down"), "{why}");
        // Requests that succeed never trigger it.
        assert_eq!(out_of_bounds(&failing_since(None), None, none, now), None);
        // A --timeout shorter than the window shortens it: 10 s of failures with --timeout 10s.
        let short = Bounds {
            timeout: Some(Duration::from_secs(10)),
        };
        let later = Some(Instant::now() + Duration::from_secs(3600));
        assert!(out_of_bounds(&failing_since(Some(now - 10_000)), later, short, now).is_some());
        assert_eq!(
            out_of_bounds(&failing_since(Some(now - 9_000)), later, short, now),
            None
        );
        // The deadline itself.
        let passed = Some(Instant::now());
        let why = out_of_bounds(&failing_since(None), passed, short, now).expect("timed out");
        assert_eq!(why, "gave up after 10s (--timeout)");
    }
}
