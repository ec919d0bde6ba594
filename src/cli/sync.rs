//! `sync` (its progress bar and lines, `--timeout`, `--dry-run`), `synctest` and `export`:
//! moving data now, and showing exactly what would move.

use std::io::{IsTerminal, Write};

use anyhow::{Result, anyhow, bail};

use super::{ExportArgs, SyncArgs, parse_sources};
use crate::config::{Config, Paths};
use crate::control::{self, Reply, Request};
use crate::oneshot::{self, Progress};
use crate::progress::SyncProgress;
use crate::selection::Selection;

pub(super) fn sync_selection(args: &SyncArgs) -> Result<Selection> {
    Ok(Selection {
        sources: parse_sources(&args.sources)?,
        new_only: args.new,
        limit: args.limit,
        force: args.force,
        retry_rejected: args.retry_rejected,
    })
}

pub(super) fn cmd_sync(paths: &Paths, cfg: &Config, args: SyncArgs) -> Result<()> {
    let selection = sync_selection(&args)?;
    if args.dry_run {
        return dry_run(paths, cfg, &selection, args.json);
    }
    let timeout = args
        .timeout
        .as_deref()
        .map(crate::pause::parse_duration)
        .transpose()
        .map_err(|e| anyhow!(e))?;
    let mut view = ProgressView::new(args.json);
    let answer = control::request_with_progress(
        paths,
        &Request::Sync {
            selection: selection.clone(),
            progress: true,
        },
        timeout,
        &mut |p| view.daemon(&p),
    );
    let summary = match answer {
        Ok(Some(Reply::Synced { summary })) => {
            view.finish();
            if !args.json {
                println!("(through the running daemon)");
            }
            summary
        }
        Ok(Some(Reply::Error { message })) => bail!("the daemon answered: {message}"),
        Ok(Some(other)) => bail!("unexpected reply from the daemon: {other:?}"),
        Err(e) if control::is_timeout(&e) => {
            view.finish();
            bail!(
                "stopped waiting after {} (--timeout); the daemon carries on in the background \
                 (`opensyncd status` shows where it stands)",
                args.timeout.as_deref().unwrap_or_default()
            );
        }
        Err(e) => return Err(e),
        Ok(None) => {
            let bounds = oneshot::Bounds { timeout };
            let result = oneshot::sync(paths, cfg, &selection, bounds, &mut |p| view.local(p));
            view.finish();
            result?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if let Some(paused) = summary.paused {
        bail!("pushing stopped: {paused}");
    }
    if let Some(why) = summary.gave_up {
        bail!("{why}");
    }
    if summary.failed > 0 {
        bail!("{} file(s) could not be synced", summary.failed);
    }
    Ok(())
}

/// How `sync` shows its progress: on a terminal, a bar counting bytes with rate and ETA
/// (files when nothing is counted in bytes, e.g. OpenCode sessions); otherwise plain lines on
/// stderr — one per finished file, and one every few seconds while a large file is read.
struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    /// The bar counts bytes (else files).
    bytes: bool,
    last_line: Option<std::time::Instant>,
    quiet: bool,
    /// Something is being synced (nothing is shown for an empty sync).
    started: bool,
}

/// How often a plain progress line is printed while nothing finishes.
const PLAIN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl ProgressView {
    fn new(json: bool) -> ProgressView {
        ProgressView {
            bar: None,
            bytes: false,
            last_line: None,
            // `--json` keeps stderr for errors only.
            quiet: json,
            started: false,
        }
    }

    fn terminal(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// Starts the bar (on a terminal) for `units` files holding `bytes` bytes.
    fn start(&mut self, units: usize, bytes: u64) {
        if self.quiet || units == 0 || self.started {
            return;
        }
        self.started = true;
        if !self.terminal() {
            eprintln!(
                "syncing {units} file(s), {}",
                crate::health::human_bytes(bytes)
            );
            self.last_line = Some(std::time::Instant::now());
            return;
        }
        self.bytes = bytes > 0;
        let (len, template) = if self.bytes {
            (
                bytes,
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec}, ETA {eta} {msg}",
            )
        } else {
            (units as u64, "{bar:30} {pos}/{len} files {msg}")
        };
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    /// Where the sync stands.
    fn update(&mut self, p: &SyncProgress, finished: Option<&str>) {
        if self.quiet || !self.started {
            return;
        }
        if let Some(bar) = &self.bar {
            if self.bytes {
                bar.set_position(p.bytes_done.min(p.bytes_total));
                bar.set_message(format!("({}/{} files)", p.units_done, p.units_total));
            } else {
                bar.set_position(p.units_done as u64);
            }
            return;
        }
        let due = self.last_line.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
        match finished {
            Some(unit) => eprintln!("[{}] done: {unit}", p.line()),
            None if due => eprintln!("[{}]", p.line()),
            None => return,
        }
        self.last_line = Some(std::time::Instant::now());
    }

    /// A progress line from the daemon (the first one carries the totals).
    fn daemon(&mut self, p: &SyncProgress) {
        self.start(p.units_total, p.bytes_total);
        self.update(p, None);
    }

    /// Progress of a sync in this process.
    fn local(&mut self, p: Progress) {
        match p {
            Progress::Start { units, bytes } => self.start(units, bytes),
            Progress::Moving(p) => self.update(&p, None),
            Progress::Unit { unit, progress } => self.update(&progress, Some(&unit)),
            Progress::Settling { wait } => {
                let text = format!(
                    "waiting {}s for the server's 10 s update window before the final session update",
                    wait.as_secs()
                );
                match &self.bar {
                    Some(bar) => bar.set_message(text),
                    None if !self.quiet => eprintln!("{text}"),
                    None => {}
                }
            }
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `sync --dry-run`: asks the running daemon, or reads the ledger here when none runs.
fn dry_run(paths: &Paths, cfg: &Config, selection: &Selection, json: bool) -> Result<()> {
    let report = match control::request(
        paths,
        &Request::DryRun {
            selection: selection.clone(),
        },
        Some(std::time::Duration::from_secs(300)),
    )? {
        Some(Reply::DryRun { report }) => report,
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => oneshot::dry_run(paths, cfg, selection)?,
    };
    let (sessions, messages) = report.totals();
    if json {
        let sources: Vec<serde_json::Value> = report
            .by_source()
            .iter()
            .map(|(source, (files, bytes))| {
                serde_json::json!({ "source": source, "files": files, "bytes": bytes })
            })
            .collect();
        let value = serde_json::json!({
            "dry_run": true,
            "sent": false,
            "sources": sources,
            "files": report.files,
            "sessions": sessions,
            "messages": messages,
            "deferred_writes": report.deferred_writes,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let waiting = (report.deferred_writes > 0).then(|| {
        format!(
            "{} update(s) already planned wait for the server's dedup window; a sync sends them \
             once it has passed",
            report.deferred_writes
        )
    });
    if report.files.is_empty() {
        println!("Nothing to sync: everything on disk is acknowledged.");
        if let Some(line) = waiting {
            println!("{line}.");
        }
        return Ok(());
    }
    for f in &report.files {
        let what = match f.why {
            crate::pending::Why::New => "new",
            crate::pending::Why::Appended => "appended",
            crate::pending::Why::Rewritten => "rewritten, read again",
            crate::pending::Why::Changed => "changed",
            crate::pending::Why::Gone => "gone, its sessions are updated without it",
        };
        let size = if f.bytes > 0 {
            format!(", {}", crate::health::human_bytes(f.bytes))
        } else {
            String::new()
        };
        let part = f
            .part
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        println!("{} {}{part}: {what}{size}", f.source, f.path);
        for s in &f.sessions {
            let title = s
                .title
                .as_deref()
                .map(|t| format!(" \"{t}\""))
                .unwrap_or_default();
            println!("    session {}{title}: {} message(s)", s.id, s.messages);
        }
        if let Some(e) = &f.error {
            println!("    cannot be read: {e}");
        }
    }
    for (source, (units, bytes)) in report.by_source() {
        println!(
            "{source}: {units} file(s) with unsynced data ({})",
            crate::health::human_bytes(bytes)
        );
    }
    if let Some(line) = waiting {
        println!("{line}.");
    }
    println!(
        "Would update {sessions} session(s) with {messages} message(s) read; nothing was sent."
    );
    Ok(())
}

fn print_summary(summary: &crate::selection::SyncSummary) {
    if !summary.unpriced.is_empty() {
        eprintln!("{}", super::prices::unpriced_summary(&summary.unpriced));
    }
    println!(
        "Synced {} file(s): {} session update(s), {} message(s) sent, {} rejected{}.",
        summary.units,
        summary.sessions_sent,
        summary.messages_sent,
        summary.rejected,
        if summary.failed > 0 {
            format!(", {} failed (see the log)", summary.failed)
        } else {
            String::new()
        }
    );
}

pub(super) fn cmd_synctest(paths: &Paths, cfg: &Config) -> Result<()> {
    let client = crate::wiring::build_client(cfg, paths)?
        .ok_or_else(|| anyhow!("not logged in: run `opensyncd login` first"))?;
    let report = crate::oneshot::synctest(&client)?;
    println!(
        "Created session {} and message {} on the server.",
        report.session_id, report.message_id
    );
    println!("{}", report.visible);
    Ok(())
}

pub(super) fn cmd_export(cfg: &Config, args: ExportArgs) -> Result<()> {
    let sources = parse_sources(&args.sources)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let session = args.session.clone();
    let threads = oneshot::export_threads();
    let report = match oneshot::export_json(cfg, &sources, session.as_deref(), threads, &mut out) {
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        other => other?,
    };
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    eprintln!(
        "exported {} session(s), {} message(s); skipped {} malformed and {} over-long line(s){}",
        report.sessions,
        report.messages,
        report.malformed_lines,
        report.skipped_long_lines,
        if report.excluded_sessions > 0 {
            format!(
                "; {} session(s) in excluded projects left out",
                report.excluded_sessions
            )
        } else {
            String::new()
        }
    );
    for v in &report.vanished {
        eprintln!("skipped (deleted while exporting): {v}");
    }
    if let Some(id) = &args.session
        && report.matched_sessions == 0
    {
        bail!(
            "no session `{id}` found{}; `opensyncd export` without --session lists every session",
            if args.sources.is_empty() {
                String::new()
            } else {
                format!(" in {}", args.sources.join(", "))
            }
        );
    }
    if !report.unpriced.is_empty() {
        eprintln!("{}", super::prices::unpriced_summary(&report.unpriced));
    }
    if !report.unreadable.is_empty() {
        for u in &report.unreadable {
            eprintln!("unreadable: {u}");
        }
        bail!(
            "{} source file(s) could not be read",
            report.unreadable.len()
        );
    }
    Ok(())
}

pub(super) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}
