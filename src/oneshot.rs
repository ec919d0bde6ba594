//! One-shot runs of the engine without the daemon's loop: `sync` (take the lock, push the
//! pending units, settle, exit — bounded: it gives up on a server that does not answer, and
//! after `--timeout`), `sync --dry-run` (what would be sent, read-only), `export` (parse
//! everything in memory and produce exactly the payloads a push would send, group by group on
//! every CPU, in a fixed order, streamed as JSON lines so memory stays bounded by a few
//! groups) and `synctest` (one test session and
//! message on the server).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, Paths};
use crate::engine::{LoneFollower, Outcome, now_ms};
use crate::fold::{self, MemoryStore, Mode};
use crate::ledger::Ledger;
use crate::lock;
use crate::model::{MessagePayload, SessionPayload, SourceId, Tokens};
use crate::pending::{self, DryRun};
use crate::plan::Shaping;
use crate::progress::{Meter, SyncProgress};
use crate::push::{Client, PushError};
use crate::selection::{Selection, SyncSummary, scan_units};
use crate::sources::{self, Access, ParseOptions, Record, Roots, Unit};
use crate::tail;
use crate::wiring;

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
            let Some(due) = last_deferred_ms(&engine)? else {
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

/// When the last of the deferred writes is due (epoch ms), if any is deferred.
fn last_deferred_ms(engine: &crate::engine::Engine) -> Result<Option<i64>> {
    let mut last: Option<i64> = None;
    for item in engine.ledger.deferred() {
        let (_, d) = item?;
        last = Some(last.map_or(d.due_ms, |l| l.max(d.due_ms)));
    }
    Ok(last)
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

/// One exported session: exactly what a push sends for it.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The session payload with totals (as `/sync/session` receives it).
    pub session: SessionPayload,
    /// Its messages in order, shaped as sent.
    pub messages: Vec<MessagePayload>,
    /// The fold's state of the session (what the daemon's ledger caches for it).
    #[serde(skip)]
    pub state: fold::SessionState,
}

/// Errors met while exporting that did not stop it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExportReport {
    /// Sessions written.
    pub sessions: usize,
    /// Messages written.
    pub messages: usize,
    /// Malformed lines skipped.
    pub malformed_lines: u64,
    /// Over-long lines skipped.
    pub skipped_long_lines: u64,
    /// Units that could not be read, with the reason.
    pub unreadable: Vec<String>,
    /// Units that vanished between the scan and the read (not an error).
    #[serde(default)]
    pub vanished: Vec<String>,
    /// Sessions left out because their project path matches an `exclude` pattern.
    #[serde(default)]
    pub excluded_sessions: usize,
    /// Sessions found with the `--session` id (all sessions when no id was asked for).
    #[serde(default)]
    pub matched_sessions: usize,
    /// Models with tokens but no price: sessions affected and tokens (left out of the costs).
    pub unpriced: BTreeMap<String, (usize, Tokens)>,
}

/// Parses every selected unit and calls `emit` once per session, in a deterministic order
/// (sources in registry order, then the groups of each source in key order). Units are read
/// group by group (a source puts the units of one session in one group, e.g. a Claude Code
/// transcript and its subagent files) and folded with the daemon's fold (`fold::fold_unit`),
/// so what is printed is what the daemon sends. Groups are parsed on `export_threads()`
/// threads; see [`export_json`] for the order and memory bounds.
pub fn export(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    emit: &mut dyn FnMut(Exported) -> Result<()>,
) -> Result<ExportReport> {
    let make = |shaping: &Shaping, state: fold::SessionState, messages: Vec<MessagePayload>| {
        Ok(Exported {
            session: shaping.session(&state),
            messages: messages.into_iter().map(|m| shaping.message(m)).collect(),
            state,
        })
    };
    export_with(
        cfg,
        sources_filter,
        session_filter,
        export_threads(),
        &make,
        emit,
    )
}

/// How many threads `export` parses on: one per CPU the process may use.
pub fn export_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `export`, written as JSON lines to `out` (one `{"session":…,"messages":[…]}` per session,
/// exactly `serde_json`'s encoding of [`Exported`]; messages through the faster
/// [`write_message_json`](crate::model::write_message_json), which writes the same bytes):
/// each message is shaped and encoded as soon as it is reached, so no session's shaped
/// payloads are held in memory.
///
/// The groups are parsed by `threads` workers (`1` parses them in order on one thread). The
/// output is the same bytes whatever the number: workers take groups in order, and a group's
/// lines are written only once every group before it was written. A worker does not start a
/// group more than a few places ahead of the writer, so memory stays bounded by a few groups.
pub fn export_json(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    threads: usize,
    out: &mut dyn std::io::Write,
) -> Result<ExportReport> {
    let make = |shaping: &Shaping, state: fold::SessionState, messages: Vec<MessagePayload>| {
        // Sized once for the whole line (a line that grew by doubling copied itself again
        // every time): the strings' bytes, plus room for escapes and each message's fields.
        let estimate = messages.iter().fold(1024usize, |n, m| {
            let text = m.text_content.as_ref().map_or(0, String::len);
            let parts = m.parts.iter().map(|p| raw_len(&p.content)).sum::<usize>();
            n.saturating_add((text + parts) / 8 * 9 + 512)
        });
        let mut line = Vec::with_capacity(estimate);
        line.extend_from_slice(b"{\"session\":");
        serde_json::to_writer(&mut line, &shaping.session(&state))?;
        line.extend_from_slice(b",\"messages\":[");
        for (i, message) in messages.into_iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            crate::model::write_message_json(&mut line, &shaping.message(message));
        }
        line.extend_from_slice(b"]}\n");
        Ok(line)
    };
    let mut write = |line: Vec<u8>| -> Result<()> {
        out.write_all(&line)?;
        Ok(())
    };
    export_with(
        cfg,
        sources_filter,
        session_filter,
        threads,
        &make,
        &mut write,
    )
}

/// About how many bytes `value` takes as JSON, from its strings' lengths (a size hint).
fn raw_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(raw_len).sum::<usize>() + 2,
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + 4 + raw_len(v)).sum(),
        _ => 8,
    }
}

/// Turns one session (its state and raw messages, in order) into what is emitted.
type MakeSession<'a, T> =
    dyn Fn(&Shaping, fold::SessionState, Vec<MessagePayload>) -> Result<T> + Sync + 'a;

/// What became of one session of a group.
enum Verdict<T> {
    /// Its project is excluded.
    Excluded,
    /// Nothing to create it with (the daemon would not create it either).
    NotWorth,
    /// Emitted: the item, its message count, its unpriced models.
    Emit(T, usize, Vec<(String, Tokens)>),
}

/// Everything one group produced, applied to the report and the output in group order.
struct GroupOutput<T> {
    /// Sessions in order of first appearance (those `--session` left out are not there).
    sessions: Vec<(String, Verdict<T>)>,
    malformed_lines: u64,
    skipped_long_lines: u64,
    unreadable: Vec<String>,
    vanished: Vec<String>,
}

/// The scheduling state shared by the workers and the writer.
struct Schedule {
    /// The next group a worker takes.
    next: usize,
    /// Groups written so far (all groups before this index).
    written: usize,
    /// The writer failed: workers stop.
    stop: bool,
}

fn export_with<T: Send>(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    threads: usize,
    make: &MakeSession<'_, T>,
    emit: &mut dyn FnMut(T) -> Result<()>,
) -> Result<ExportReport> {
    let shaping = wiring::build_engine_shaping(cfg)?;
    let roots = cfg.roots(&crate::config::process_env);
    let mut groups: Vec<(SourceId, Vec<Unit>)> = Vec::new();
    for source in cfg.enabled_sources() {
        if !sources_filter.is_empty() && !sources_filter.contains(&source) {
            continue;
        }
        let mut by_key: BTreeMap<String, Vec<Unit>> = BTreeMap::new();
        for unit in sources::scan(source, &roots) {
            by_key.entry(group_key(&unit)).or_default().push(unit);
        }
        groups.extend(by_key.into_values().map(|units| (source, units)));
    }
    let context = GroupContext {
        cfg,
        shaping: &shaping,
        roots: &roots,
        session_filter,
        make,
    };
    let mut report = ExportReport::default();
    // A session a later group touches again (OpenCode's JSON tree shadowed by its database)
    // was printed with the first group that had it.
    let mut emitted: HashSet<String> = HashSet::new();
    let mut apply = |output: GroupOutput<T>| -> Result<()> {
        report.malformed_lines += output.malformed_lines;
        report.skipped_long_lines += output.skipped_long_lines;
        report.unreadable.extend(output.unreadable);
        report.vanished.extend(output.vanished);
        for (key, verdict) in output.sessions {
            if !emitted.insert(key) {
                continue;
            }
            report.matched_sessions += 1;
            match verdict {
                Verdict::Excluded => report.excluded_sessions += 1,
                Verdict::NotWorth => {}
                Verdict::Emit(item, messages, unpriced) => {
                    report.sessions += 1;
                    report.messages += messages;
                    for (model, tokens) in unpriced {
                        let entry = report.unpriced.entry(model).or_default();
                        entry.0 += 1;
                        entry.1.add(&tokens);
                    }
                    emit(item)?;
                }
            }
        }
        Ok(())
    };
    let threads = threads.clamp(1, groups.len().max(1));
    if threads == 1 {
        let mut chunk = tail::Chunk::default();
        for (source, units) in &groups {
            apply(context.group(*source, units, &mut chunk)?)?;
        }
    } else {
        run_in_parallel(&groups, threads, &context, &mut apply)?;
    }
    Ok(report)
}

/// Runs the groups on `threads` workers and hands their outputs to `apply` in group order.
fn run_in_parallel<T: Send>(
    groups: &[(SourceId, Vec<Unit>)],
    threads: usize,
    context: &GroupContext<'_, T>,
    apply: &mut dyn FnMut(GroupOutput<T>) -> Result<()>,
) -> Result<()> {
    // How far ahead of the writer a worker may start a group: enough to keep every worker
    // busy behind a slow group, few enough that waiting outputs stay small.
    let window = threads * 4;
    let schedule = Mutex::new(Schedule {
        next: 0,
        written: 0,
        stop: false,
    });
    let progressed = Condvar::new();
    let (results, received) = std::sync::mpsc::channel::<(usize, Result<GroupOutput<T>>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let results = results.clone();
            let (schedule, progressed) = (&schedule, &progressed);
            scope.spawn(move || {
                let mut chunk = tail::Chunk::default();
                loop {
                    let index = {
                        let Ok(mut s) = schedule.lock() else { return };
                        loop {
                            if s.stop || s.next >= groups.len() {
                                return;
                            }
                            if s.next < s.written + window {
                                break;
                            }
                            s = match progressed.wait(s) {
                                Ok(s) => s,
                                Err(_) => return,
                            };
                        }
                        s.next += 1;
                        s.next - 1
                    };
                    let (source, units) = &groups[index];
                    let output = context.group(*source, units, &mut chunk);
                    if results.send((index, output)).is_err() {
                        return; // the writer gave up
                    }
                }
            });
        }
        drop(results);
        let mut waiting: BTreeMap<usize, Result<GroupOutput<T>>> = BTreeMap::new();
        let outcome = (|| -> Result<()> {
            for index in 0..groups.len() {
                let output = loop {
                    if let Some(output) = waiting.remove(&index) {
                        break output;
                    }
                    let (i, output) = received
                        .recv()
                        .map_err(|_| anyhow!("an export worker stopped unexpectedly"))?;
                    waiting.insert(i, output);
                };
                apply(output?)?;
                if let Ok(mut s) = schedule.lock() {
                    s.written = index + 1;
                }
                progressed.notify_all();
            }
            Ok(())
        })();
        if outcome.is_err() {
            if let Ok(mut s) = schedule.lock() {
                s.stop = true;
            }
            progressed.notify_all();
        }
        // Workers blocked in `send` are released when `received` is dropped here.
        drop(received);
        outcome
    })
}

/// What every group needs, shared by the workers.
struct GroupContext<'a, T> {
    cfg: &'a Config,
    shaping: &'a Shaping,
    roots: &'a sources::Roots,
    session_filter: Option<&'a str>,
    make: &'a MakeSession<'a, T>,
}

/// One session's messages as the fold hands them over, read after read: a message seen again
/// keeps its first position and takes the newest content.
#[derive(Default)]
struct SessionMessages {
    list: Vec<MessagePayload>,
    /// Position of each id in `list`; built only once a second read touches the session (the
    /// fold already gives each read's messages once).
    index: HashMap<String, usize>,
}

impl SessionMessages {
    fn absorb(&mut self, messages: Vec<MessagePayload>) {
        if self.list.is_empty() {
            self.list = messages;
            return;
        }
        for (i, m) in self.list.iter().enumerate().skip(self.index.len()) {
            self.index.insert(m.external_id.clone(), i);
        }
        for m in messages {
            match self.index.get(&m.external_id) {
                Some(&i) => self.list[i] = m,
                None => {
                    self.index.insert(m.external_id.clone(), self.list.len());
                    self.list.push(m);
                }
            }
        }
    }
}

impl<T> GroupContext<'_, T> {
    /// Reads and folds one group's units and makes its sessions. Memory is bounded by the
    /// group: its fold state lives in a store of its own, dropped at the end.
    fn group(
        &self,
        source: SourceId,
        units: &[Unit],
        chunk: &mut tail::Chunk,
    ) -> Result<GroupOutput<T>> {
        let mut output = GroupOutput {
            sessions: Vec::new(),
            malformed_lines: 0,
            skipped_long_lines: 0,
            unreadable: Vec::new(),
            vanished: Vec::new(),
        };
        let mut store = MemoryStore::default();
        let mut order: Vec<String> = Vec::new();
        let mut messages: HashMap<String, SessionMessages> = HashMap::new();
        for unit in units {
            let id = fold::unit_id(&unit.ledger_key());
            let mode = match unit.access {
                Access::Lines => Mode::Append,
                Access::Snapshot => Mode::ReplaceSessions,
            };
            let mut fold_records = |records: Vec<Record>| {
                for t in fold::fold_unit(&mut store, source, id, &[], mode, records) {
                    let entry = messages.entry(t.session_id.clone()).or_insert_with(|| {
                        order.push(t.session_id.clone());
                        SessionMessages::default()
                    });
                    entry.absorb(t.messages);
                }
            };
            match read_all(unit, self.cfg, chunk, &mut fold_records, &mut output) {
                Ok(()) => {}
                // Deleted since the scan: nothing to export, nothing wrong.
                Err(e) if is_not_found(&e) => output.vanished.push(unit.describe()),
                Err(e) => output.unreadable.push(format!("{}: {e}", unit.describe())),
            }
        }
        for sid in order {
            let key = fold::session_key(source, &sid);
            let state = fold::session_state(&mut store, source, &sid);
            store.forget(&key);
            let session_messages = messages.remove(&sid).unwrap_or_default().list;
            if self.session_filter.is_some_and(|want| want != sid) {
                continue;
            }
            // A session is excluded by its project once the fold knows the project; its
            // files were read (their paths did not match), but nothing of it is output.
            let excluded = state
                .facts
                .project_path
                .as_ref()
                .is_some_and(|p| self.roots.exclude().matches_project(&p.value));
            let verdict = if excluded {
                Verdict::Excluded
            } else if !fold::worth_creating(&state, !session_messages.is_empty()) {
                Verdict::NotWorth
            } else {
                let count = session_messages.len();
                let unpriced = state.totals(&self.shaping.pricing).unpriced_tokens;
                Verdict::Emit(
                    (self.make)(self.shaping, state, session_messages)?,
                    count,
                    unpriced,
                )
            };
            output.sessions.push((key, verdict));
        }
        Ok(output)
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// Units whose records belong to the same sessions share a group key (the source decides).
fn group_key(unit: &Unit) -> String {
    sources::source(unit.source).group_key(unit)
}

/// How much of a file `export` reads at a time: small enough that the bytes the kernel just
/// copied are still in the core's cache when they are checked and parsed (with 8 MiB reads,
/// the copy and every pass over the bytes after it went to memory).
const EXPORT_READ_BYTES: usize = 256 * 1024;

/// Reads a whole unit, handing its records to `fold` one read at a time (a snapshot unit may
/// take several reads). Lines are read into `chunk`'s buffer.
fn read_all<T>(
    unit: &Unit,
    cfg: &Config,
    chunk: &mut tail::Chunk,
    fold: &mut dyn FnMut(Vec<Record>),
    output: &mut GroupOutput<T>,
) -> Result<()> {
    match unit.access {
        Access::Lines => {
            let mut file = std::fs::File::open(&unit.path)?;
            let mut parser =
                sources::line_parser(unit, None, cfg.parse_options()).map_err(|e| anyhow!(e))?;
            let mut offset = 0;
            let mut records = Vec::new();
            loop {
                tail::read_lines_into(
                    &mut file,
                    offset,
                    EXPORT_READ_BYTES,
                    cfg.max_line_bytes,
                    chunk,
                )?;
                output.skipped_long_lines += chunk.skipped_long_lines;
                for line in chunk.iter_lines() {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    if parser.parse_line(line, &mut records).is_err() {
                        output.malformed_lines += 1;
                    }
                }
                fold(std::mem::take(&mut records));
                offset = chunk.end;
                if !chunk.more {
                    break;
                }
            }
        }
        Access::Snapshot => {
            let mut state: Option<serde_json::Value> = None;
            loop {
                let snap = sources::read_snapshot(unit, state.as_ref(), cfg.parse_options())
                    .map_err(|e| anyhow!(e.to_string()))?;
                fold(snap.records);
                state = Some(snap.state);
                if !snap.more {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// A path shown relative to home, for messages.
pub fn tilde(path: &Path) -> String {
    let home = crate::config::home_dir(&crate::config::process_env);
    match path.strip_prefix(&home) {
        Ok(rest) => PathBuf::from("~").join(rest).display().to_string(),
        Err(_) => path.display().to_string(),
    }
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

#[cfg(test)]
mod export_tests {
    use super::*;

    /// `export` on the repository's own fixtures (five sources, every kind of unit).
    fn fixture_config() -> Config {
        let dir = |name: &str| {
            vec![format!(
                "{}/tests/fixtures/{name}",
                env!("CARGO_MANIFEST_DIR")
            )]
        };
        Config {
            claude_dirs: dir("claude"),
            codex_dirs: dir("codex"),
            opencode_dirs: dir("opencode"),
            pi_dirs: dir("pi"),
            droid_dirs: dir("droid"),
            ..Config::default()
        }
    }

    #[test]
    fn export_output_is_the_same_on_any_number_of_threads() {
        let cfg = fixture_config();
        let sources = [
            SourceId::ClaudeCode,
            SourceId::CodexCli,
            SourceId::OpenCode,
            SourceId::Pi,
            SourceId::FactoryDroid,
        ];
        let run = |threads: usize| {
            let mut out = Vec::new();
            let report = export_json(&cfg, &sources, None, threads, &mut out).unwrap();
            (out, report.sessions, report.messages)
        };
        let (sequential, sessions, messages) = run(1);
        // Enough groups that workers finish out of order: every source has sessions.
        let lines: Vec<serde_json::Value> = sequential
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), sessions);
        assert!(sessions >= 10, "{sessions} sessions");
        assert!(messages > sessions, "{messages} messages");
        for source in [
            "claude-code",
            "codex-cli",
            "opencode",
            "pi",
            "factory-droid",
        ] {
            assert!(
                lines.iter().any(|l| l["session"]["source"] == source),
                "no {source} session in the fixtures' export"
            );
        }
        for threads in [2, 3, 8, 64] {
            let (parallel, s, m) = run(threads);
            assert_eq!((s, m), (sessions, messages), "{threads} threads");
            assert!(
                parallel == sequential,
                "{threads} threads wrote other bytes than one thread"
            );
        }
    }
}
