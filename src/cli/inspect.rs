//! `status`, `verify`, `config` and `set`: what opensyncd knows, checks and is set to.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};

use super::hooks::{service_target, service_verify_line};
use crate::config::{self, Config, Paths};
use crate::control::{self, Reply, Request};
use crate::credentials::{self};
use crate::oneshot::{self};

pub(super) fn cmd_status(paths: &Paths, cfg: &Config, json: bool, rejected: bool) -> Result<()> {
    let status = match control::request(paths, &Request::Status, Some(Duration::from_secs(10)))? {
        Some(Reply::Status { status }) => *status,
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => offline_status(paths, cfg)?,
    };
    let mut status = status;
    status.service = service_target()
        .ok()
        .map(|target| crate::service::status(&target));
    if rejected {
        if json {
            println!("{}", serde_json::to_string_pretty(&status.rejected)?);
        } else {
            print!("{}", crate::status::render_rejected(&status));
        }
        return Ok(());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", crate::status::render(&status));
    }
    Ok(())
}

pub(super) fn offline_status(paths: &Paths, cfg: &Config) -> Result<crate::status::Status> {
    let key = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?;
    let auth = match (&key, &cfg.url) {
        (None, _) | (_, None) => "not logged in: run `opensyncd login`".to_string(),
        _ => "daemon not running: nothing is being synced right now".to_string(),
    };
    let roots = cfg.roots(&config::process_env);
    let mut status = match crate::lock::take_lock(paths)? {
        Some(_lock) => {
            let (ledger, _) = crate::ledger::Ledger::open(&paths.ledger_dir())?;
            crate::status::collect(
                &ledger,
                &roots,
                &cfg.enabled_sources(),
                crate::engine::now_ms(),
            )?
        }
        None => crate::status::Status {
            warnings: vec![format!(
                "another opensyncd holds {} but does not answer on {}",
                paths.lock_file().display(),
                paths.control_socket().display()
            )],
            ..Default::default()
        },
    };
    status.version = env!("CARGO_PKG_VERSION").to_string();
    status.url = cfg.url.clone();
    status.api_key = key.map(|(k, _)| k.masked());
    status.auth = auth;
    Ok(status)
}

pub(super) fn cmd_verify(paths: &Paths, cfg: &Config) -> Result<()> {
    let mut failed = 0;
    let mut check = |ok: bool, what: &str, detail: String| {
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            failed += 1;
        }
    };
    check(true, "config", paths.config_file().display().to_string());
    let key = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?;
    match (&cfg.url, &key) {
        (Some(url), Some((key, _))) => {
            check(
                true,
                "credentials",
                format!("{url} with key {}", key.masked()),
            );
            match crate::wiring::verify_credentials(cfg, url, key) {
                Ok(()) => check(true, "server", "reachable, and the key is accepted".into()),
                Err(e) => check(false, "server", format!("{e:#}")),
            }
        }
        _ => check(
            false,
            "credentials",
            "not logged in: run `opensyncd login`".into(),
        ),
    }
    match control::request(paths, &Request::Status, Some(Duration::from_secs(5))) {
        Ok(Some(Reply::Status { status })) => check(
            true,
            "daemon",
            format!(
                "running (pid {}), sync {}",
                status.daemon_pid.unwrap_or(0),
                status.auth
            ),
        ),
        Ok(_) => check(
            false,
            "daemon",
            "not running: `opensyncd service install`".into(),
        ),
        Err(e) => check(false, "daemon", format!("{e:#}")),
    }
    service_verify_line(&mut check);
    let roots = cfg.roots(&config::process_env);
    for (source, (dirs, units)) in crate::sources::inventory(&roots, &cfg.enabled_sources()) {
        let detail = if dirs.is_empty() {
            format!(
                "no directory found (looked in {})",
                roots
                    .watch_dirs(source)
                    .iter()
                    .map(|d| oneshot::tilde(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "{units} session files in {}",
                dirs.iter()
                    .map(|d| oneshot::tilde(d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // A tool that is not installed is not a failure.
        println!(
            "{} {source}: {detail}",
            if dirs.is_empty() { "--  " } else { "ok  " }
        );
    }
    if failed > 0 {
        bail!("{failed} check(s) failed");
    }
    Ok(())
}

pub(super) fn cmd_config(paths: &Paths, cfg: &Config, json: bool) -> Result<()> {
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
            "price_table": prices.as_ref().ok().map(|p| p.info()),
            "api_key": masked,
            "api_key_source": key_source,
            "paths": {
                "config_file": paths.config_file(),
                "credentials_file": paths.credentials_file(),
                "state_dir": paths.state_dir,
                "ledger": paths.ledger_dir(),
                "control_socket": paths.control_socket(),
            },
            "roots": roots,
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
        "url",
        cfg.url
            .clone()
            .unwrap_or_else(|| "(not set: run `opensyncd login`)".into()),
    );
    line(
        &mut out,
        "api key",
        format!("{} ({key_source})", masked.unwrap_or_else(|| "-".into())),
    );
    let table = toml::Value::try_from(cfg)?;
    if let toml::Value::Table(t) = table {
        for (k, v) in t {
            if k == "url" {
                continue;
            }
            line(&mut out, &k, v.to_string());
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

pub(super) fn cmd_set(paths: &Paths, key: &str, value: &str) -> Result<()> {
    let parsed = config::parse_setting(key, value)?;
    config::write_key(paths, key, Some(parsed.clone()))?;
    // The file as a whole must still load (e.g. env or other keys may conflict).
    config::load(paths, &figment::value::Dict::new())?;
    println!("{key} = {parsed} (in {})", paths.config_file().display());
    Ok(())
}
