//! `login` and `logout`: the server URL and the API key.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result, anyhow, bail};

use super::LoginArgs;
use crate::config::{self, Config, Paths};
use crate::control;
use crate::credentials::{self, ApiKey};

pub(super) fn cmd_logout(paths: &Paths, purge: bool) -> Result<()> {
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
    if purge {
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

pub(super) fn cmd_login(paths: &Paths, cfg: &Config, args: LoginArgs) -> Result<()> {
    let url = match args.url.or(cfg.url.clone()) {
        Some(u) => u,
        None if std::io::stdin().is_terminal() => {
            eprint!("OpenSync URL (https://<deployment>.convex.site): ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line
        }
        None => bail!("no URL: pass --url or set OPENSYNCD_URL"),
    };
    let url = config::normalize_url(&url).map_err(|e| anyhow!(e))?;
    let raw_key = if args.key_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the API key from stdin")?;
        s
    } else if let Some(k) =
        config::process_env("OPENSYNCD_API_KEY").filter(|k| !k.trim().is_empty())
    {
        k
    } else {
        read_key_interactively()?
    };
    let key = ApiKey::parse(&raw_key).map_err(|e| anyhow!(e))?;
    crate::wiring::verify_credentials(cfg, &url, &key)?;
    credentials::save(paths, &key)
        .with_context(|| format!("saving {}", paths.credentials_file().display()))?;
    config::write_key(paths, "url", Some(url.clone().into()))?;
    println!("Logged in to {url} with key {}.", key.masked());
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
