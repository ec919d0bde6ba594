//! `login` and `logout`: the server URL and the API key.

use std::io::{IsTerminal, Read, Write};

use anyhow::{Context, Result, anyhow, bail};

use super::LoginArgs;
use crate::config::{self, Config, Paths};
use crate::control;
use crate::credentials::{self, ApiKey};
use crate::wiring::ServerProblem;

/// How many times an interactive `login` asks before giving up.
const LOGIN_ATTEMPTS: usize = 3;

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
