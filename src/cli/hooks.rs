//! `hook`, `setup` and `service`: how the tools and the service manager reach opensyncd.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{ServiceAction, SetupArgs, binary_path};
use crate::config::{self, Paths};
use crate::control::{self, Request};
use crate::setup::{self, Change, Tool};

/// `hook EVENT [ARGS]`: routes each tool's hook to its handler. Whatever happens, a hook
/// returns at once with exit 0: a hook must never slow or fail the tool that runs it.
pub(super) fn cmd_hook_dispatch(paths: &Paths, event: &str, args: &[String]) {
    let first = args.first().map(String::as_str);
    match event {
        "cursor" => cmd_hook_cursor(paths, first),
        "droid" => cmd_hook_droid(paths, first),
        // Claude Code (payload on stdin) and Codex's notify (payload as the last argument).
        _ => cmd_hook(paths, event, args.last().map(String::as_str)),
    }
}

/// Claude Code's and Codex's hooks: nudge the daemon, with the transcript when the payload
/// names it.
pub(super) fn cmd_hook(paths: &Paths, event: &str, payload: Option<&str>) {
    let payload = payload.map(str::to_string).or_else(read_stdin_briefly);
    nudge(paths, event, payload.as_deref().and_then(transcript_path));
}

/// `hook droid <event>`: Factory Droid's `Stop` / `SessionEnd` hooks. Prints nothing and exits
/// 0. Droid's documentation shows snake_case payloads and the builds seen in the wild send
/// camelCase, so both spellings are read.
pub(super) fn cmd_hook_droid(paths: &Paths, event: Option<&str>) {
    let payload = read_stdin_briefly();
    let event = format!("droid-{}", event.unwrap_or("event"));
    nudge(paths, &event, payload.as_deref().and_then(transcript_path));
}

/// `hook cursor <event>`: Cursor waits for the answer, so this reads the payload, spools the
/// event (`cursor_hook`), answers exactly what Cursor expects, and nudges a running daemon with
/// the spool file (never starts one: the daemon reads the spool whenever it runs). Whatever
/// happens, it answers and exits 0; a problem goes to stderr.
pub(super) fn cmd_hook_cursor(paths: &Paths, event: Option<&str>) {
    let stdin = read_stdin_until_closed(Duration::from_secs(2));
    // Cursor's default root only: the hook must not depend on a readable config file (a
    // transcript elsewhere is still found through the payload's `transcript_path`).
    let roots = [config::home_dir(&config::process_env).join(".cursor")];
    let spool_dir = crate::sources::cursor::spool_dir_in(&paths.state_dir);
    let outcome = crate::cursor_hook::handle_hook(&spool_dir, &roots, event, &stdin);
    let mut out = std::io::stdout();
    let _ = out.write_all(outcome.answer.as_bytes());
    let _ = out.flush();
    match outcome.spooled {
        Ok(spool_file) => nudge(
            paths,
            &format!("cursor-{}", event.unwrap_or_default()),
            Some(spool_file),
        ),
        Err(err) => eprintln!("opensyncd: {err}"),
    }
}

/// The transcript a hook payload names (`transcript_path` or `transcriptPath`).
fn transcript_path(payload: &str) -> Option<PathBuf> {
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    ["transcript_path", "transcriptPath"]
        .iter()
        .find_map(|k| value.get(k).and_then(|t| t.as_str()))
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
}

/// Tells the running daemon to look now. With no daemon, a hook does nothing at all — it
/// starts no process. A `sync` started from a hook would take the single-instance lock, and
/// the service (`opensyncd run`), starting meanwhile, would wait for it; a tool firing a hook
/// per turn (or per tool call) would pile such processes up while the server is slow. Nothing
/// is lost by doing nothing: the daemon's scan at start backfills everything written
/// meanwhile, and `status` says when no daemon runs.
fn nudge(paths: &Paths, event: &str, path: Option<PathBuf>) {
    let request = Request::Hook {
        event: event.to_string(),
        path,
    };
    // No daemon, or a busy one (it sees the change through its watcher anyway): nothing to do.
    let _ = control::request(paths, &request, Some(Duration::from_millis(80)));
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

/// The tools pass the hook payload on stdin; read it without ever blocking the tool.
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
    let binary = binary_path();
    let binary = binary
        .to_str()
        .context("the opensyncd binary path is not UTF-8")?
        .to_string();
    let named: Vec<Tool> = [
        (args.claude, Tool::Claude),
        (args.codex, Tool::Codex),
        (args.cursor, Tool::Cursor),
        (args.droid, Tool::Droid),
    ]
    .into_iter()
    .filter_map(|(on, tool)| on.then_some(tool))
    .collect();
    // No tool named: every installed tool.
    let all = named.is_empty();
    let env = &config::process_env;
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    for tool in Tool::ALL {
        if !all && !named.contains(&tool) {
            continue;
        }
        match setup::plan(tool, env, &binary, args.remove, !all) {
            Ok(Some(edit)) => edits.push(edit),
            Ok(None) => println!("{}: not installed here, skipped", tool.name()),
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    let mut wrote = false;
    for edit in &edits {
        let path = edit.path.display();
        let name = edit.tool.name();
        match (&edit.change, args.dry_run) {
            (Change::None, _) => println!("{}", edit.summary),
            (Change::Write(contents), true) => {
                println!("{name}: would write {path}:");
                for line in contents.lines() {
                    println!("    {line}");
                }
            }
            (Change::Restore(_), true) => println!(
                "{name}: would restore {path} to its original bytes (from {})",
                setup::backup_path(&edit.path).display()
            ),
            (Change::Delete, true) => println!("{name}: would remove {path} (setup created it)"),
            (change, false) => {
                let backup = setup::backup_path(&edit.path);
                let first_backup =
                    matches!(change, Change::Write(_)) && edit.path.exists() && !backup.exists();
                setup::apply(edit)?;
                wrote = true;
                if first_backup {
                    println!(
                        "{} (the previous version is kept in {})",
                        edit.summary,
                        backup.display()
                    );
                } else {
                    println!("{}", edit.summary);
                }
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}\n(the daemon's file watcher syncs these sessions anyway; hooks only make it faster)",
            problems.join("\n")
        );
    }
    if !args.remove && !args.dry_run && wrote {
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
        ServiceAction::Status { json } => {
            let status = service::status(&target);
            if json {
                let mut value = serde_json::to_value(&status)?;
                value["running"] = status.is_running().into();
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("{}", status.summary());
                if let Some(binary) = &status.runs_binary {
                    println!("runs: {binary}");
                }
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
    service::check_manager(&target)?;
    service::execute(&steps, &mut |line| println!("{line}"))?;
    if installing {
        println!(
            "opensyncd is installed as a {} and started.",
            match target.manager {
                service::Manager::Systemd => "systemd user service",
                service::Manager::Launchd => "LaunchAgent",
            }
        );
        if !target.environment.is_empty() {
            println!(
                "The service keeps these variables from this shell: {}.",
                target
                    .environment
                    .iter()
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if let Some(hint) = service::linger_hint(&target, config::process_env("USER").as_deref()) {
            println!("{hint}");
        }
        println!("Check it with `opensyncd status`.");
    } else {
        println!("opensyncd's service is stopped and removed (your settings and ledger are kept).");
    }
    Ok(())
}
