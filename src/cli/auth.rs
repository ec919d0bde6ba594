//! `login`, `logout`, `pause` and `resume`: whether opensyncd may push, and with which key.
//! `logout` and `pause` write the hold file first (so a daemon that restarts obeys them), then
//! tell the running daemon, which answers once nothing more is on the wire.

use std::io::{IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::LoginArgs;
use crate::config::{self, Config, Paths};
use crate::control::{self, Reply, Request};
use crate::credentials::{self, ApiKey};
use crate::pause::{self, Hold, HoldKind};
use crate::wiring::ServerProblem;

/// How many times an interactive `login` asks before giving up.
const LOGIN_ATTEMPTS: usize = 3;

/// How long `logout`, `pause` and `resume` wait for the daemon (it answers once the requests
/// on the wire have ended; it waits for them at most `daemon::HOLD_DRAIN`).
const HOLD_ANSWER: Duration = Duration::from_secs(45);

/// How long `logout --purge` waits for a stopping daemon to release the lock.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Tells the running daemon about a change of the hold; `Ok(Some(pid))` when one obeyed.
fn tell_daemon(paths: &Paths, request: Request) -> Result<Option<u32>> {
    match control::request(paths, &request, Some(HOLD_ANSWER))? {
        None => Ok(None),
        // The daemon holds the lock, and stamped it with its pid.
        Some(Reply::Ok) => Ok(Some(crate::lock::holder(paths).map_or(0, |h| h.pid))),
        Some(Reply::Error { message }) => bail!(
            "the running daemon did not take it ({message}); restart it (`opensyncd service \
             install` or stop and start `opensyncd run`) so that it obeys"
        ),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
    }
}

pub(super) fn cmd_logout(paths: &Paths, purge: bool) -> Result<()> {
    let now = crate::engine::now_ms();
    // First the hold: a daemon restarted from here on stays paused, whatever key it finds.
    pause::save(
        paths,
        &Hold {
            kind: HoldKind::LoggedOut,
            since_ms: now,
            until_ms: None,
        },
    )?;
    let removed = credentials::remove(paths)
        .with_context(|| format!("removing {}", paths.credentials_file().display()))?;
    if removed {
        println!(
            "Removed the API key ({}).",
            paths.credentials_file().display()
        );
    } else {
        println!(
            "No saved API key ({} does not exist).",
            paths.credentials_file().display()
        );
    }
    let daemon = match tell_daemon(paths, Request::Logout) {
        Ok(Some(pid)) => {
            println!(
                "The running daemon (pid {pid}) stopped pushing and forgot the key: nothing more \
                 is sent until `opensyncd login`."
            );
            true
        }
        Ok(None) => {
            println!(
                "Nothing is sent until `opensyncd login` (a daemon started later stays paused)."
            );
            false
        }
        Err(e) => {
            eprintln!("opensyncd: warning: {e:#}");
            true
        }
    };
    if config::process_env("OPENSYNCD_API_KEY").is_some_and(|k| !k.trim().is_empty()) {
        println!(
            "Note: OPENSYNCD_API_KEY is set in this environment; it is not used until \
             `opensyncd login`."
        );
    }
    if purge {
        purge_state(paths, daemon)?;
    }
    Ok(())
}

/// `logout --purge`: stops a running daemon first (it must not write its ledger while it is
/// deleted), then deletes the ledger and the config file while holding the lock, so that no
/// daemon or command can open them meanwhile.
fn purge_state(paths: &Paths, daemon_running: bool) -> Result<()> {
    if daemon_running {
        match control::request(paths, &Request::Stop, Some(Duration::from_secs(10)))? {
            Some(Reply::Ok) | None => {}
            Some(other) => bail!(
                "the daemon did not stop ({other:?}); stop it (`systemctl --user stop opensyncd`, \
                 or Ctrl-C in `opensyncd run`) and run `opensyncd logout --purge` again"
            ),
        }
    }
    let deadline = std::time::Instant::now() + STOP_WAIT;
    let lock = loop {
        if let Some(lock) = crate::lock::take_lock(paths)? {
            break lock;
        }
        if !daemon_running || std::time::Instant::now() >= deadline {
            bail!(
                "nothing was deleted: {}. Stop it, then run `opensyncd logout --purge` again",
                crate::lock::describe_holder(paths)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if daemon_running {
        println!("Stopped the daemon.");
    }
    for p in [paths.ledger_dir(), paths.config_file()] {
        let result = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match result {
            Ok(()) => println!("Removed {}.", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow!("removing {}: {e}", p.display())),
        }
    }
    drop(lock);
    if daemon_running {
        println!(
            "If it runs as a service, `opensyncd service uninstall` removes it; after \
             `opensyncd login`, `opensyncd service install` starts it again."
        );
    }
    Ok(())
}

pub(super) fn cmd_pause(paths: &Paths, duration: Option<&str>) -> Result<()> {
    let now = crate::engine::now_ms();
    if let Some(hold) = pause::load(paths, now)?
        && hold.kind == HoldKind::LoggedOut
    {
        println!(
            "You are logged out: nothing is sent anyway ({}).",
            hold.describe(now)
        );
        return Ok(());
    }
    let until_ms = duration
        .map(pause::parse_duration)
        .transpose()
        .map_err(|e| anyhow!(e))?
        .map(|d| now + d.as_millis() as i64);
    let hold = Hold {
        kind: HoldKind::Paused,
        since_ms: now,
        until_ms,
    };
    pause::save(paths, &hold)?;
    let how_long = match until_ms {
        Some(until) => format!(
            "for {}",
            pause::human_secs(((until - now) / 1000).max(0) as u64)
        ),
        None => "until `opensyncd resume`".to_string(),
    };
    match tell_daemon(paths, Request::Hold)? {
        Some(pid) => println!(
            "Paused {how_long}: the running daemon (pid {pid}) stopped pushing and keeps \
             watching; nothing written meanwhile is lost."
        ),
        None => println!("Paused {how_long} (a daemon started meanwhile stays paused)."),
    }
    Ok(())
}

pub(super) fn cmd_resume(paths: &Paths) -> Result<()> {
    let now = crate::engine::now_ms();
    match pause::load(paths, now)? {
        None => {
            // An expired pause may still be on disk: tidy it.
            pause::clear(paths)?;
            println!("Not paused.");
            return Ok(());
        }
        Some(hold) if hold.kind == HoldKind::LoggedOut => {
            bail!(
                "you are logged out ({}); `opensyncd login` resumes",
                hold.describe(now)
            )
        }
        Some(_) => {}
    }
    pause::clear(paths)?;
    match tell_daemon(paths, Request::Hold)? {
        Some(pid) => println!("Resumed: the running daemon (pid {pid}) is pushing again."),
        None => println!(
            "Resumed (no daemon is running: `opensyncd run` or `opensyncd service install`)."
        ),
    }
    Ok(())
}

pub(super) fn read_key_interactively() -> Result<String> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("OpenSync API key (osk_…, input hidden): ")
            .context("reading the API key")
    } else {
        bail!("no terminal to prompt on: pass the key with --key-stdin or OPENSYNCD_API_KEY")
    }
}

fn read_url_interactively() -> Result<String> {
    eprint!("OpenSync URL (https://<deployment>.convex.site): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        bail!("no URL given");
    }
    Ok(line)
}

/// Where the key comes from.
enum KeyFrom {
    /// `--key-stdin`, read once.
    Stdin(String),
    /// `OPENSYNCD_API_KEY`.
    Env(String),
    /// Asked for in the terminal (again after a refusal).
    Prompt,
}

/// Logs in. In a terminal, a URL or key that is refused is asked for again (up to three
/// attempts in all); a URL or key given by flag, stdin or environment is checked once.
pub(super) fn cmd_login(paths: &Paths, cfg: &Config, args: LoginArgs) -> Result<()> {
    let terminal = std::io::stdin().is_terminal();
    let key_from = if args.key_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the API key from stdin")?;
        KeyFrom::Stdin(s)
    } else if let Some(k) =
        config::process_env("OPENSYNCD_API_KEY").filter(|k| !k.trim().is_empty())
    {
        KeyFrom::Env(k)
    } else {
        KeyFrom::Prompt
    };
    // Asking again makes sense only for what the user types.
    let ask_url = terminal && !args.key_stdin;
    let ask_key = terminal && matches!(key_from, KeyFrom::Prompt);
    let mut url_given = args.url.or(cfg.url.clone());
    let mut key_kept: Option<ApiKey> = None;
    let mut attempt = 0;
    let (url, key) = loop {
        attempt += 1;
        let last = attempt >= LOGIN_ATTEMPTS;
        let raw_url = match url_given.take() {
            Some(u) => u,
            None if ask_url => read_url_interactively()?,
            None => bail!("no URL: pass --url or set OPENSYNCD_URL"),
        };
        let url = match config::normalize_url(&raw_url) {
            Ok(u) => u,
            Err(e) if ask_url && !last => {
                eprintln!("{e}; try again.");
                continue;
            }
            Err(e) => return Err(anyhow!(e)),
        };
        let key = match key_kept.take() {
            Some(k) => k,
            None => {
                let raw = match &key_from {
                    KeyFrom::Stdin(s) | KeyFrom::Env(s) => s.clone(),
                    KeyFrom::Prompt => read_key_interactively()?,
                };
                match ApiKey::parse(&raw) {
                    Ok(k) => k,
                    Err(e) if ask_key && !last => {
                        eprintln!("{e}; try again.");
                        url_given = Some(url);
                        continue;
                    }
                    Err(e) => return Err(anyhow!(e)),
                }
            }
        };
        match crate::wiring::verify_credentials(cfg, &url, &key) {
            Ok(()) => break (url, key),
            Err(problem) if !last => match &problem {
                ServerProblem::KeyRefused { .. } if ask_key => {
                    eprintln!("{problem}\nTry again.");
                    url_given = Some(url);
                }
                ServerProblem::WrongUrl { .. } | ServerProblem::Unreachable { .. } if ask_url => {
                    eprintln!("{problem}\nTry again.");
                    key_kept = Some(key);
                }
                _ => return Err(problem.into()),
            },
            Err(problem) => return Err(problem.into()),
        }
    };
    credentials::save(paths, &key)
        .with_context(|| format!("saving {}", paths.credentials_file().display()))?;
    config::write_key(paths, "url", Some(url.clone().into()))?;
    println!("Logged in to {url} with key {}.", key.masked());
    // Logging in lifts a logout's hold (a pause the user asked for stays).
    if pause::load(paths, crate::engine::now_ms())?.is_some_and(|h| h.kind == HoldKind::LoggedOut) {
        pause::clear(paths)?;
    }
    match control::notify_reload(paths) {
        Ok(true) => println!("The running daemon picked up the new credentials."),
        Ok(false) => println!(
            "Next: `opensyncd service install` (or `opensyncd run`), then `opensyncd status`."
        ),
        Err(e) => {
            println!("Could not reach the running daemon ({e}); restart it to use the new key.")
        }
    }
    Ok(())
}
