//! `sync`, `synctest` and `export`: moving data now, and showing exactly what would move.

use std::io::{IsTerminal, Write};

use anyhow::{Result, anyhow, bail};

use super::{ExportArgs, SyncArgs, parse_sources};
use crate::config::{Config, Paths};
use crate::control::{self, Reply, Request};
use crate::oneshot::{self, Progress};
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
        let report = oneshot::dry_run(paths, cfg, &selection)?;
        if args.json {
            let sources: Vec<serde_json::Value> = report
                .sources
                .iter()
                .map(|(source, (files, bytes))| {
                    serde_json::json!({ "source": source, "files": files, "bytes": bytes })
                })
                .collect();
            let value = serde_json::json!({ "dry_run": true, "sent": false, "sources": sources });
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        if report.sources.is_empty() {
            println!("Nothing to sync: everything on disk is acknowledged.");
        }
        for (source, (units, bytes)) in report.sources {
            println!(
                "{source}: {units} file(s) with unsynced data ({bytes} bytes); nothing was sent"
            );
        }
        return Ok(());
    }
    let summary = match control::request(
        paths,
        &Request::Sync {
            selection: selection.clone(),
        },
        None,
    )? {
        Some(Reply::Synced { summary }) => {
            if !args.json {
                println!("(through the running daemon)");
            }
            summary
        }
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let mut progress = |p: Progress| match (&bar, p) {
                (Some(bar), Progress::Start { units }) => bar.set_length(units as u64),
                (Some(bar), Progress::Unit { .. }) => bar.inc(1),
                (Some(bar), Progress::Settling { wait }) => {
                    bar.set_message(format!("settling ({}s)", wait.as_secs()))
                }
                (None, Progress::Start { units }) => eprintln!("syncing {units} file(s)"),
                (None, Progress::Unit { unit }) => eprintln!("done: {unit}"),
                (None, Progress::Settling { wait }) => eprintln!(
                    "waiting {}s for the server's 10 s update window before the final session update",
                    wait.as_secs()
                ),
            };
            let summary = oneshot::sync(paths, cfg, &selection, &mut progress)?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            summary
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
    if summary.failed > 0 {
        bail!("{} file(s) could not be synced", summary.failed);
    }
    Ok(())
}

fn print_summary(summary: &crate::selection::SyncSummary) {
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
