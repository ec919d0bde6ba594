//! `status` (its states, exit codes and `--watch`), `verify`, `config` and `set`: what
//! opensyncd knows, checks and is set to.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde::Serialize;

use super::hooks::service_target;
use super::{SetArgs, StatusArgs};
use crate::config::{self, Config, Loaded, Origin, Paths};
use crate::control::{self, Reply, Request};
use crate::credentials::{self};
use crate::health::SyncState;
use crate::oneshot::{self};
use crate::pause::HoldKind;
use crate::wiring::ServerProblem;

pub(super) fn cmd_status(paths: &Paths, cfg: &Config, args: StatusArgs) -> Result<()> {
    if args.watch {
        return watch_status(paths, cfg, &args);
    }
    let status = gather_status(paths, cfg, &mut ProbeCache::default())?;
    if args.rejected {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&status.rejected)?);
        } else {
            print!("{}", crate::status::render_rejected(&status));
        }
        return Ok(());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", crate::status::render(&status));
    }
    exit_for(&status)
}

/// `status`'s exit code for its state (0 when healthy).
fn exit_for(status: &crate::status::Status) -> Result<()> {
    match status.health.as_ref().map_or(1, SyncState::exit_code) {
        0 => Ok(()),
        code => Err(super::Exit(code).into()),
    }
}

/// `status --watch`: the status again every `--interval` seconds until interrupted. On a
/// terminal the screen is redrawn; otherwise each refresh is printed after the previous one
/// (with --json, one object per line).
fn watch_status(paths: &Paths, cfg: &Config, args: &StatusArgs) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let terminal = std::io::stdout().is_terminal();
    let mut probes = ProbeCache::default();
    let mut refresh = 0u64;
    loop {
        refresh += 1;
        let status = gather_status(paths, cfg, &mut probes)?;
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&status)?)?;
        } else {
            if terminal {
                // Home and clear: a redraw, not a scroll.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            writeln!(
                out,
                "opensyncd status, refresh {refresh} (every {}s; Ctrl-C to stop)\n",
                args.interval
            )?;
            write!(out, "{}", crate::status::render(&status))?;
            if !terminal {
                writeln!(out)?;
            }
        }
        out.flush()?;
        drop(out);
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// The status from the running daemon, or computed here when none answers.
fn gather_status(
    paths: &Paths,
    cfg: &Config,
    probes: &mut ProbeCache,
) -> Result<crate::status::Status> {
    let mut status = match control::request(paths, &Request::Status, Some(Duration::from_secs(10)))?
    {
        Some(Reply::Status { status }) => *status,
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => offline_status(paths, cfg, probes)?,
    };
    crate::status::note_transport(&mut status, cfg.transport);
    status.service = service_target()
        .ok()
        .map(|target| crate::service::status(&target));
    Ok(status)
}

/// The server's answer, kept for a while so that `status --watch` does not ask every refresh.
#[derive(Default)]
struct ProbeCache {
    last: Option<(std::time::Instant, Option<SyncState>)>,
}

/// How long a probe's answer is reused by `status --watch`.
const PROBE_REUSE: Duration = Duration::from_secs(30);

impl ProbeCache {
    fn get(&mut self, cfg: &Config, paths: &Paths) -> Option<SyncState> {
        if let Some((at, answer)) = &self.last
            && at.elapsed() < PROBE_REUSE
        {
            return answer.clone();
        }
        let answer = probe_server(cfg, paths);
        self.last = Some((std::time::Instant::now(), answer.clone()));
        answer
    }
}

/// With no daemon to report its last request, asks the server: `/health`, then one cheap
/// authenticated request. `None` when both answer as OpenSync does with a good key.
fn probe_server(cfg: &Config, paths: &Paths) -> Option<SyncState> {
    use crate::push::{ErrorClass, PushError};
    // A status must come back quickly, whatever the configured timeouts.
    let quick = Config {
        connect_timeout_secs: cfg.connect_timeout_secs.min(3),
        request_timeout_secs: cfg.request_timeout_secs.min(5),
        ..cfg.clone()
    };
    let client = match crate::wiring::build_client(&quick, paths) {
        Ok(Some(client)) => client,
        Ok(None) => return None,
        Err(e) => {
            return Some(SyncState::WrongUrl {
                reason: format!("{e:#}"),
            });
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let outcome = rt.block_on(async {
        client.health().await?;
        client.check_auth().await
    });
    let err = outcome.err()?;
    let line = err.to_string().replace('\n', " ");
    Some(match (&err, err.class()) {
        (
            PushError::Status {
                json: false,
                status,
                ..
            },
            _,
        ) if *status < 500 => SyncState::WrongUrl {
            reason: format!("{line}; check the url with `opensyncd config`"),
        },
        (_, ErrorClass::AuthPaused) => SyncState::NotLoggedIn {
            reason: format!("the server refused the API key: {line}; run `opensyncd login`"),
        },
        (_, ErrorClass::WrongUrl) => SyncState::WrongUrl {
            reason: format!("{line}; check the url with `opensyncd config`"),
        },
        _ => SyncState::Unreachable { error: line },
    })
}

/// The status with no daemon answering: the ledger read here (when the lock is free), the
/// hold file, the credentials, and the server's answer.
fn offline_status(
    paths: &Paths,
    cfg: &Config,
    probes: &mut ProbeCache,
) -> Result<crate::status::Status> {
    let now = crate::engine::now_ms();
    let key = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?;
    let hold = crate::pause::load(paths, now)?;
    let roots = cfg.roots(&config::process_env);
    let mut status = match crate::lock::take_lock(paths)? {
        Some(_lock) => {
            let (ledger, _) = crate::ledger::Ledger::open(&paths.ledger_dir())?;
            crate::status::collect(
                &ledger,
                &roots,
                &cfg.enabled_sources(),
                cfg.parse_options(),
                now,
            )?
        }
        None => crate::status::Status {
            lock_holder: Some(crate::lock::describe_holder(paths)),
            ..Default::default()
        },
    };
    let health = match (&hold, &key, &cfg.url) {
        (Some(h), _, _) if h.kind == HoldKind::LoggedOut => SyncState::NotLoggedIn {
            reason: h.describe(now),
        },
        (_, None, _) => SyncState::NotLoggedIn {
            reason: "no API key: run `opensyncd login`".into(),
        },
        (_, _, None) => SyncState::NotLoggedIn {
            reason: "no server URL: run `opensyncd login`".into(),
        },
        (Some(h), _, _) => SyncState::Paused {
            reason: h.describe(now),
            until_ms: h.until_ms,
        },
        (None, Some(_), Some(_)) => probes.get(cfg, paths).unwrap_or(SyncState::NotRunning),
    };
    status.version = env!("CARGO_PKG_VERSION").to_string();
    status.url = cfg.url.clone();
    status.api_key = key.map(|(k, _)| k.masked());
    status.auth = health.headline(now);
    status.health = Some(health);
    status.hold = hold;
    Ok(status)
}

/// One line of `verify`.
#[derive(Debug, Clone, Serialize)]
struct Check {
    /// What was checked.
    name: String,
    /// `ok`, `fail`, or `skip` (could not be checked, or does not apply here).
    state: &'static str,
    /// What was found.
    detail: String,
}

pub(super) fn cmd_verify(paths: &Paths, cfg: &Config, json: bool) -> Result<()> {
    let mut checks: Vec<Check> = Vec::new();
    let mut check = |state: &'static str, name: &str, detail: String| {
        checks.push(Check {
            name: name.to_string(),
            state,
            detail,
        })
    };
    let ok = |good: bool| if good { "ok" } else { "fail" };
    check("ok", "config", paths.config_file().display().to_string());
    let key = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?;
    match (&cfg.url, &key) {
        (Some(url), Some((key, _))) => {
            check(
                "ok",
                "credentials",
                format!("{url} with key {}", key.masked()),
            );
            let url = config::normalize_url(url).map_err(|e| anyhow!(e))?;
            match crate::wiring::verify_credentials(cfg, &url, key) {
                Ok(()) => check("ok", "server", "reachable, and the key is accepted".into()),
                Err(e) => check("fail", "server", e.to_string()),
            }
        }
        _ => check(
            "fail",
            "credentials",
            "not logged in: run `opensyncd login`".into(),
        ),
    }
    let daemon_pid = match control::request(paths, &Request::Status, Some(Duration::from_secs(5))) {
        Ok(Some(Reply::Status { status })) => {
            check(
                "ok",
                "daemon",
                format!(
                    "running (pid {}), sync {}",
                    status.daemon_pid.unwrap_or(0),
                    status.auth
                ),
            );
            Some(status.daemon_pid.unwrap_or(0))
        }
        Ok(_) => {
            check(
                "fail",
                "daemon",
                "not running: `opensyncd service install` (or `opensyncd run`)".into(),
            );
            None
        }
        Err(e) => {
            check("fail", "daemon", format!("{e:#}"));
            None
        }
    };
    match service_target() {
        Ok(target) => {
            let status = crate::service::status(&target);
            match (&status.unreachable, daemon_pid) {
                // No service manager to ask (a container, WSL, an SSH session without a user
                // manager): not a failure when the daemon runs anyway.
                (Some(problem), Some(pid)) => check(
                    "skip",
                    "service",
                    format!(
                        "could not check the service ({problem}); the daemon runs (pid {pid}) \
                         without it"
                    ),
                ),
                _ => check(ok(status.is_running()), "service", status.summary()),
            }
        }
        Err(e) => check("fail", "service", format!("{e:#}")),
    }
    let roots = cfg.roots(&config::process_env);
    for (source, (dirs, units)) in crate::sources::inventory(&roots, &cfg.enabled_sources()) {
        // A tool that is not installed is not a failure.
        if dirs.is_empty() {
            check(
                "skip",
                source.as_str(),
                format!(
                    "no directory found (looked in {})",
                    roots
                        .watch_dirs(source)
                        .iter()
                        .map(|d| oneshot::tilde(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        } else {
            check(
                "ok",
                source.as_str(),
                format!(
                    "{units} session files in {}",
                    dirs.iter()
                        .map(|d| oneshot::tilde(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    let failed = checks.iter().filter(|c| c.state == "fail").count();
    if json {
        let value = serde_json::json!({ "ok": failed == 0, "checks": checks });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for c in &checks {
            let mark = match c.state {
                "ok" => "ok  ",
                "fail" => "FAIL",
                _ => "--  ",
            };
            println!("{mark} {}: {}", c.name, c.detail);
        }
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

pub(super) fn cmd_config(paths: &Paths, loaded: &Loaded, json: bool) -> Result<()> {
    let cfg = &loaded.config;
    let key = credentials::load(paths, &config::process_env);
    let masked = match &key {
        Ok(Some((k, _))) => Some(k.masked()),
        _ => None,
    };
    let key_source = match &key {
        Ok(Some((_, credentials::KeySource::Environment))) => "OPENSYNCD_API_KEY",
        Ok(Some((_, credentials::KeySource::File))) => "credentials file",
        Ok(None) => "not set",
        Err(_) => "unreadable",
    };
    let roots = cfg.roots(&config::process_env);
    let prices = crate::prices::load(paths, cfg);
    if json {
        let value = serde_json::json!({
            "config": cfg,
            "origins": loaded.origins,
            "price_table": prices.as_ref().ok().map(|p| p.info()),
            "api_key": masked,
            "api_key_source": key_source,
            "paths": {
                "config_file": paths.config_file(),
                "credentials_file": paths.credentials_file(),
                "state_dir": paths.state_dir,
                "ledger": paths.ledger_dir(),
                "control_socket": paths.control_socket(),
                "log_file": paths.own_log_file(),
            },
            "roots": roots,
            "warnings": loaded.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let mut out = String::new();
    let line = |out: &mut String, k: &str, v: String| out.push_str(&format!("{k:<22} {v}\n"));
    line(
        &mut out,
        "config file",
        paths.config_file().display().to_string(),
    );
    line(
        &mut out,
        "api key",
        format!("{} ({key_source})", masked.unwrap_or_else(|| "-".into())),
    );
    let table = toml::Value::try_from(cfg)?;
    for key in config::SETTABLE_KEYS {
        let value = table
            .get(key)
            .map(toml::Value::to_string)
            .unwrap_or_else(|| match *key {
                "url" => "(not set: run `opensyncd login`)".into(),
                _ => "(not set)".into(),
            });
        let origin = match loaded.origins.get(*key) {
            Some(Origin::Default) | None => "default".to_string(),
            Some(Origin::File { line, .. }) => format!("config.toml line {line}"),
            Some(Origin::Env { var }) => var.clone(),
            Some(Origin::Flag { flag }) => flag.clone(),
        };
        line(&mut out, key, format!("{value}   [{origin}]"));
        if *key == "transport" && cfg.transport == config::Transport::Batch {
            // The one setting that changes what the dashboard shows; say so where it is set.
            line(
                &mut out,
                "",
                "  batch: messages of sessions new to the server get the sync time as createdAt"
                    .into(),
            );
        }
    }
    line(&mut out, "state dir", paths.state_dir.display().to_string());
    line(
        &mut out,
        "price table",
        match &prices {
            Ok(p) => crate::prices::describe(p),
            Err(e) => format!("unreadable pricing_file: {e}"),
        },
    );
    for (source, dirs) in &roots.0 {
        line(
            &mut out,
            &format!("{source} roots"),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    print!("{out}");
    Ok(())
}

pub(super) fn cmd_set(paths: &Paths, args: SetArgs) -> Result<()> {
    let key = args.key.as_str();
    let file = paths.config_file();
    let overridden_by = config::opensyncd_env()
        .into_iter()
        .find(|(var, value)| {
            *var == config::env_var_of(key)
                && value.as_deref().is_some_and(|v| !v.trim().is_empty())
        })
        .map(|(var, _)| var);
    let before = std::fs::read(&file).ok();
    if args.unset {
        if !config::remove_key(paths, key)? {
            println!("{key} is not set in {}; nothing to do.", file.display());
            return Ok(());
        }
        if let Err(e) = config::load(paths, &figment::value::Dict::new()) {
            restore(paths, before.as_deref())?;
            bail!("{key} was not removed: without it the configuration does not load: {e}");
        }
        println!(
            "{key} removed from {}; the default applies again{}.",
            file.display(),
            overridden_by
                .as_deref()
                .map(|v| format!(" (but {v} is set in this environment and wins)"))
                .unwrap_or_default()
        );
        tell_the_daemon(paths);
        return Ok(());
    }
    let Some(raw) = args.value.as_deref() else {
        bail!("give a value, or --unset to remove {key}");
    };
    let value = match key {
        "pricing_file" => check_pricing_file(raw)?,
        _ => raw.to_string(),
    };
    let parsed = config::parse_setting(key, &value)?;
    if key == "url" {
        check_url_like_login(paths, &value)?;
    }
    config::write_key(paths, key, Some(parsed.clone()))?;
    // The file as a whole must still load (another key may conflict with this value).
    if let Err(e) = config::load(paths, &figment::value::Dict::new()) {
        restore(paths, before.as_deref())?;
        bail!("{key} was not saved: {e}");
    }
    println!("{key} = {parsed} (in {})", file.display());
    if let Some(var) = overridden_by {
        println!("Note: {var} is set in this environment and overrides the file.");
    }
    tell_the_daemon(paths);
    Ok(())
}

/// A running daemon reloads its configuration at once (an `exclude` must not wait for a
/// restart).
fn tell_the_daemon(paths: &Paths) {
    match control::notify_reload(paths) {
        Ok(true) => println!("The running daemon reloaded its configuration."),
        Ok(false) => {}
        Err(e) => eprintln!(
            "opensyncd: warning: could not reach the running daemon ({e:#}); restart it to \
             apply the change"
        ),
    }
}

/// Puts `config.toml` back as it was (or removes it when it did not exist).
fn restore(paths: &Paths, before: Option<&[u8]>) -> Result<()> {
    let file = paths.config_file();
    match before {
        Some(bytes) => crate::private_fs::write_atomic(&file, bytes, 0o600)?,
        None => {
            let _ = std::fs::remove_file(&file);
        }
    }
    Ok(())
}

/// A pricing file must exist and load now: the daemon refuses to start without it (a restart
/// loop under systemd). Relative and `~` paths are stored absolute, because the service does
/// not run from this directory.
fn check_pricing_file(raw: &str) -> Result<String> {
    let home = config::home_dir(&config::process_env);
    let mut path = crate::sources::expand_tilde(raw.trim(), &home);
    if path.is_relative() {
        path = std::env::current_dir()?.join(path);
    }
    if !path.is_file() {
        bail!(
            "invalid value for `pricing_file`: {} does not exist (the daemon would refuse to \
             start)",
            path.display()
        );
    }
    let text = path
        .to_str()
        .ok_or_else(|| anyhow!("invalid value for `pricing_file`: the path is not UTF-8"))?
        .to_string();
    let probe = Config {
        pricing_file: Some(text.clone()),
        ..Config::default()
    };
    crate::wiring::build_engine_shaping(&probe)
        .map_err(|e| anyhow!("invalid value for `pricing_file`: {e:#}"))?;
    Ok(text)
}

/// `set url` is checked like `login` when a key is saved: a URL that is not OpenSync, or that
/// refuses the key, is not stored. An unreachable server is stored with a warning (it may be
/// down for a moment).
fn check_url_like_login(paths: &Paths, raw: &str) -> Result<()> {
    let url = config::normalize_url(raw).map_err(|e| anyhow!(e))?;
    let Some((key, _)) = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?
    else {
        return Ok(());
    };
    let cfg = config::load(paths, &figment::value::Dict::new()).unwrap_or_default();
    match crate::wiring::verify_credentials(&cfg, &url, &key) {
        Ok(()) => Ok(()),
        Err(problem @ ServerProblem::Unreachable { .. }) => {
            eprintln!(
                "opensyncd: warning: {problem}; saved anyway (check with `opensyncd verify`)"
            );
            Ok(())
        }
        Err(problem) => bail!("url not saved: {problem}"),
    }
}
