//! The command line: clap definitions (every command with an example in its `--help`) and the
//! dispatch of each command to its file below. This module tree is the only place that prints
//! for humans; everything it calls returns data or typed errors.
//!
//! This file dispatches a parsed command line (and sets up logging for it); `args` holds the
//! clap definitions, and one file per group of commands does the work and the printing.

mod args;
mod audit;
mod auth;
mod hooks;
mod inspect;
mod logs;
mod prices;
mod sync;

use audit::*;
use auth::*;
use hooks::*;
use inspect::*;
use logs::*;
use prices::*;
use sync::*;

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, anyhow};

use crate::config::{self, Config, Loaded, Origin, Paths};
use crate::daemon::{self, RunEnd};
use crate::model::SourceId;

pub use args::{
    AuditArgs, Cli, ColorWhen, Command, ExportArgs, LoginArgs, LogsArgs, PricesAction, RunArgs,
    ServiceAction, SetArgs, SetupArgs, StatusArgs, SyncArgs, command, parse,
};

/// Runs the parsed command line. Errors are printed by `main` with their context chain.
pub fn run(cli: Cli) -> Result<()> {
    let paths = Paths::from_env(&config::process_env);
    let mut overrides = figment::value::Dict::new();
    if let Some(level) = &cli.log_level {
        overrides.insert("log_level".into(), level.clone().into());
    }
    if let Some(format) = &cli.log_format {
        overrides.insert("log_format".into(), format.clone().into());
    }
    let color = cli.color;
    let chosen = cli.command.unwrap_or(Command::Run(RunArgs::default()));
    if let Command::Run(args) = &chosen
        && let Some(ms) = args.debounce_ms
    {
        overrides.insert("debounce_ms".into(), ms.into());
    }
    match chosen {
        // Commands that must work even with a broken config file.
        Command::Completions { shell } => {
            std::io::stdout().write_all(&crate::assets::completions(shell, command()))?;
            Ok(())
        }
        Command::Man => {
            std::io::stdout().write_all(&crate::assets::man_page(command()))?;
            Ok(())
        }
        Command::Hook { event, args } => {
            cmd_hook_dispatch(&paths, &event, &args);
            Ok(())
        }
        Command::Set(args) => cmd_set(&paths, args),
        Command::Logout { purge } => cmd_logout(&paths, purge),
        Command::Pause { duration } => cmd_pause(&paths, duration.as_deref()),
        Command::Resume => cmd_resume(&paths),
        Command::Logs(args) => cmd_logs(&paths, args),
        other => {
            let daemon = matches!(other, Command::Run(_));
            let loaded = load_config(&paths, &overrides)?;
            init_logging(&paths, &loaded, daemon, color);
            for warning in &loaded.warnings {
                if daemon {
                    tracing::warn!("{warning}");
                } else {
                    eprintln!("opensyncd: warning: {warning}");
                }
            }
            let cfg = loaded.config.clone();
            match other {
                Command::Run(_) => cmd_run(paths, cfg),
                Command::Config { json } => cmd_config(&paths, &loaded, json),
                Command::Login(args) => cmd_login(&paths, &cfg, args),
                Command::Status(args) => cmd_status(&paths, &cfg, args),
                Command::Verify { json } => cmd_verify(&paths, &cfg, json),
                Command::Sync(args) => cmd_sync(&paths, &cfg, args),
                Command::Synctest => cmd_synctest(&paths, &cfg),
                Command::Export(args) => cmd_export(&cfg, args),
                Command::Audit(args) => cmd_audit(&paths, &cfg, args),
                Command::Setup(args) => cmd_setup(args),
                Command::Service { action } => cmd_service(action),
                Command::Prices { action } => cmd_prices(&paths, &cfg, action),
                Command::Completions { .. }
                | Command::Man
                | Command::Hook { .. }
                | Command::Set(_)
                | Command::Logs(_)
                | Command::Pause { .. }
                | Command::Resume
                | Command::Logout { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// Logs go to stderr (the journal under systemd, the log file under launchd; a daemon started
/// by hand also keeps its own log file for `opensyncd logs`). The daemon logs at the
/// configured level. One-shot commands log only warnings, unless this invocation asked for
/// more (`--log-level` or `OPENSYNCD_LOG_LEVEL`): the config file's level is the daemon's, and
/// `status` must stay readable with `log_level = "debug"` in it.
fn init_logging(paths: &Paths, loaded: &Loaded, daemon: bool, color: ColorWhen) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let cfg = &loaded.config;
    let asked_now = matches!(
        loaded.origins.get("log_level"),
        Some(Origin::Flag { .. } | Origin::Env { .. })
    );
    let level = if daemon || (asked_now && cfg.log_level.trim() != "info") {
        cfg.log_level.as_str()
    } else {
        "warn"
    };
    let filter = EnvFilter::try_new(config::log_filter(level))
        .unwrap_or_else(|_| EnvFilter::new("warn,opensyncd=info"));
    let own_file = (daemon && !crate::logfile::under_service_manager(&config::process_env))
        .then(|| crate::logfile::RotatingLog::open(&paths.own_log_file()).ok())
        .flatten();
    // A copy in a file is plain text whatever the terminal supports.
    let ansi = color.for_stderr() && own_file.is_none();
    let writer = match own_file {
        Some(file) => BoxMakeWriter::new(std::io::stderr.and(file)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let result = match (cfg.log_format, daemon) {
        // A JSON record names the module it came from (text lines stay short).
        (config::LogFormat::Json, _) => builder.json().with_target(true).try_init(),
        (config::LogFormat::Text, true) => builder.with_ansi(ansi).try_init(),
        // One-shot commands: a warning is a line for the user, not a log record.
        (config::LogFormat::Text, false) => builder.with_ansi(ansi).without_time().try_init(),
    };
    // Already initialised (tests calling `run` twice): keep the first.
    drop(result);
}

fn cmd_run(paths: Paths, cfg: Config) -> Result<()> {
    match daemon::run(paths, cfg)? {
        RunEnd::Stopped => Ok(()),
        RunEnd::AlreadyRunning(lock) => {
            println!(
                "opensyncd is already running (it holds {}); nothing to do.",
                lock.display()
            );
            Ok(())
        }
    }
}

fn parse_sources(names: &[String]) -> Result<Vec<SourceId>> {
    names
        .iter()
        .map(|n| {
            SourceId::parse(n).ok_or_else(|| {
                anyhow!(
                    "unknown source `{n}`; valid: {}",
                    SourceId::ALL.map(SourceId::as_str).join(", ")
                )
            })
        })
        .collect()
}

/// Loads the config with the origin of every value; errors already name the file and line,
/// the variable or the flag.
pub fn load_config(paths: &Paths, overrides: &figment::value::Dict) -> Result<Loaded> {
    Ok(config::load_with_origins(paths, overrides)?)
}

/// Ends the command with this exit status, after it printed what it had to say (`status`'s
/// states). `main` exits with the code and prints nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// The directory holding the binary, for messages.
pub fn binary_path() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("opensyncd"))
}
