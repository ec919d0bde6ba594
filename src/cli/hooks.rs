//! `hook`, `setup` and `service`: how the tools and the service manager reach opensyncd.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{ServiceAction, SetupArgs, binary_path};
use crate::config::{self, Paths};
use crate::control::{self, Request};

/// `hook`: must return fast and never fail the tool that called it. It nudges the daemon; with
/// no daemon it starts a background `opensyncd sync` and returns at once.
pub(super) fn cmd_hook(paths: &Paths, event: &str, payload: Option<&str>) {
    if event == "cursor" {
        // `hook cursor <event>`: the second word is Cursor's event name.
        return cursor_hook(paths, payload);
    }
    let payload = payload.map(str::to_string).or_else(read_stdin_briefly);
    let path = payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|v| {
            v.get("transcript_path")
                .and_then(|t| t.as_str())
                .map(PathBuf::from)
        });
    let request = Request::Hook {
        event: event.to_string(),
        path,
    };
    match control::request(paths, &request, Some(Duration::from_millis(80))) {
        Ok(Some(_)) => {}
        Ok(None) => {
            // No daemon: sync in the background so the tool is not kept waiting.
            let _ = std::process::Command::new(binary_path())
                .arg("sync")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        Err(_) => {} // A busy daemon will see the change through its watcher anyway.
    }
}

/// `hook cursor <event>`: Cursor waits for the answer, so this reads the payload, spools the
/// event, answers, and nudges a running daemon (never starts one: the daemon reads the spool
/// whenever it runs). Whatever happens, it answers and exits 0; a problem goes to stderr.
fn cursor_hook(paths: &Paths, event: Option<&str>) {
    use std::io::Write;
    let stdin = read_stdin_until_closed(Duration::from_secs(2));
    // Cursor's default root only: the hook must not depend on a readable config file (a
    // transcript elsewhere is still found through the payload's `transcript_path`).
    let roots = [config::home_dir(&config::process_env).join(".cursor")];
    let spool_dir = crate::sources::cursor::spool_dir_in(&paths.state_dir);
    let outcome = crate::cursor_hook::handle_hook(&spool_dir, &roots, event, &stdin);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.answer.as_bytes());
    let _ = out.flush();
    match outcome.spooled {
        Ok(path) => {
            let request = Request::Hook {
                event: format!("cursor {}", event.unwrap_or_default()),
                path: Some(path),
            };
            // The daemon answers a hook at once; its watcher would see the spool anyway.
            let _ = control::request(paths, &request, Some(Duration::from_millis(50)));
        }
        Err(err) => eprintln!("opensyncd: {err}"),
    }
}

/// Cursor writes the payload and closes stdin. Reads until the end, or until what was read is a
/// whole JSON document (a writer that keeps stdin open), or `limit` passed (a writer that sends
/// nothing still gets its answer). On a busy machine the payload can take a while to arrive, so
/// `limit` is generous: it only ever runs out when no payload comes.
fn read_stdin_until_closed(limit: Duration) -> Vec<u8> {
    if std::io::stdin().is_terminal() {
        return Vec::new();
    }
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(chunk[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = std::time::Instant::now() + limit;
    let mut buf = Vec::new();
    while buf.len() < 64 * 1024 * 1024 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(bytes) => {
                buf.extend(bytes);
                // Only worth parsing when the bytes so far could end a JSON object.
                let ends_an_object = buf.trim_ascii_end().ends_with(b"}");
                if ends_an_object && serde_json::from_slice::<serde::de::IgnoredAny>(&buf).is_ok() {
                    break;
                }
            }
            // Closed (the end of stdin) or out of time.
            Err(_) => break,
        }
    }
    buf
}

/// Claude Code passes the hook payload on stdin; read it without ever blocking the tool.
pub(super) fn read_stdin_briefly() -> Option<String> {
    if std::io::stdin().is_terminal() {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = String::new();
        let _ = std::io::stdin().take(1024 * 1024).read_to_string(&mut buf);
        let _ = tx.send(buf);
    });
    rx.recv_timeout(Duration::from_millis(20))
        .ok()
        .filter(|s| !s.trim().is_empty())
}

pub(super) fn cmd_setup(args: SetupArgs) -> Result<()> {
    use crate::setup;
    let binary = binary_path();
    let binary = binary
        .to_str()
        .context("the opensyncd binary path is not UTF-8")?
        .to_string();
    // No tool named: every installed tool.
    let all = !args.claude && !args.codex;
    let env = &config::process_env;
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    let mut plan = |tool: &str, result: Result<Option<setup::Edit>>| match result {
        Ok(Some(edit)) => edits.push(edit),
        Ok(None) => println!("{tool}: not installed here, skipped"),
        Err(e) => problems.push(format!("{e:#}")),
    };
    if all || args.claude {
        plan(
            "Claude Code",
            setup::plan_claude(env, &binary, args.remove, args.claude),
        );
    }
    if all || args.codex {
        plan(
            "Codex CLI",
            setup::plan_codex(env, &binary, args.remove, args.codex),
        );
    }
    for edit in &edits {
        match (&edit.new_contents, args.dry_run) {
            (None, _) => println!("{}", edit.summary),
            (Some(contents), true) => {
                println!("{}: would write {}:", edit.tool, edit.path.display());
                for line in contents.lines() {
                    println!("    {line}");
                }
            }
            (Some(_), false) => {
                setup::apply(edit)?;
                println!(
                    "{} (previous version kept in {})",
                    edit.summary,
                    setup::backup_path(&edit.path).display()
                );
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}
(the daemon's file watcher syncs these sessions anyway; hooks only make it              faster)",
            problems.join("\n")
        );
    }
    if !args.remove && !args.dry_run && !edits.is_empty() {
        println!("The hooks nudge the running daemon after each turn; they never block the tool.");
    }
    Ok(())
}

pub(super) fn service_target() -> Result<crate::service::Target> {
    crate::service::Target::detect(&config::process_env, binary_path())
}

pub(super) fn cmd_service(action: ServiceAction) -> Result<()> {
    use crate::service;
    let target = service_target()?;
    let (steps, dry_run, installing) = match action {
        ServiceAction::Status => {
            let status = service::status(&target);
            println!("{}", status.summary());
            if let Some(binary) = &status.runs_binary {
                println!("runs: {binary}");
            }
            return Ok(());
        }
        ServiceAction::Install { dry_run } => (service::install_steps(&target)?, dry_run, true),
        ServiceAction::Uninstall { dry_run } => (service::uninstall_steps(&target), dry_run, false),
    };
    if installing && let Some(warning) = service::binary_warning(&target.binary) {
        eprintln!("warning: {warning}");
    }
    if dry_run {
        println!("Would do, in order:");
        for step in &steps {
            print!("{}", service::describe(step));
        }
        return Ok(());
    }
    service::execute(&steps, &mut |line| println!("{line}"))?;
    if installing {
        println!(
            "opensyncd is installed as a {} and started.",
            match target.manager {
                service::Manager::Systemd => "systemd user service",
                service::Manager::Launchd => "LaunchAgent",
            }
        );
        if let Some(hint) = service::linger_hint(&target, config::process_env("USER").as_deref()) {
            println!("{hint}");
        }
        println!("Check it with `opensyncd status`.");
    } else {
        println!("opensyncd's service is stopped and removed (your settings and ledger are kept).");
    }
    Ok(())
}

pub(super) fn service_verify_line(check: &mut dyn FnMut(bool, &str, String)) {
    match service_target() {
        Ok(target) => {
            let status = crate::service::status(&target);
            check(status.is_running(), "service", status.summary());
        }
        Err(e) => check(false, "service", format!("{e:#}")),
    }
}
