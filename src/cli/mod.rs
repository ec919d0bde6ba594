//! The command line: clap definitions (every flag with its environment variable where that
//! makes sense) and the dispatch of each command to its file below. This module tree is the
//! only place that prints for humans; everything it calls returns data or typed errors.

mod auth;
mod hooks;
mod inspect;
mod prices;
mod sync;

use auth::*;
use hooks::*;
use inspect::*;
use prices::*;
use sync::*;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, Config, Paths};
use crate::daemon::{self, RunEnd};
use crate::model::SourceId;

/// opensyncd keeps your AI coding sessions (Claude Code, Codex CLI, OpenCode) in your
/// OpenSync dashboard, without you ever running a sync command.
#[derive(Debug, Parser)]
#[command(
    name = "opensyncd",
    version,
    about,
    long_about = "opensyncd keeps your AI coding sessions (Claude Code, Codex CLI, OpenCode) in \
                  your OpenSync dashboard. It watches the tools' session logs, reads only what is \
                  new, and pushes it with retry: nothing is lost, nothing is duplicated.\n\n\
                  Set up: `opensyncd login`, then `opensyncd service install`. \
                  Check: `opensyncd status`.",
    after_help = "Run with no command (or --foreground) to start the daemon in the foreground."
)]
pub struct Cli {
    /// Run the daemon in the foreground (the same as `opensyncd run`).
    #[arg(long)]
    pub foreground: bool,

    /// Log level: error, warn, info, debug, trace (or a tracing filter directive).
    #[arg(long, global = true, env = "OPENSYNCD_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format.
    #[arg(long, global = true, env = "OPENSYNCD_LOG_FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// The command (default: run the daemon in the foreground).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (what the service runs).
    Run(RunArgs),
    /// Save the server URL and API key (verified against the server first).
    Login(LoginArgs),
    /// Remove the saved API key.
    Logout {
        /// Also delete the ledger (what has been synced) and the config file.
        #[arg(long)]
        purge: bool,
    },
    /// Show what is synced, what is pending, and any problem.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// List every record the server refused, with its reason.
        #[arg(long)]
        rejected: bool,
    },
    /// Check credentials, the connection, the service and each source directory.
    Verify,
    /// Sync now (through the running daemon if there is one).
    Sync(SyncArgs),
    /// Create a test session with one message on the server and report their ids.
    Synctest,
    /// Print, one JSON object per session, exactly what would be sent.
    Export(ExportArgs),
    /// Show the resolved configuration (the API key masked).
    Config {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Set a configuration key in config.toml.
    Set {
        /// The key (see `opensyncd config`).
        key: String,
        /// The value (lists: comma-separated).
        value: String,
    },
    /// Add (or remove) the tools' hooks that nudge the daemon right after each turn.
    Setup(SetupArgs),
    /// Called by the tools' hooks: nudges the daemon. Always fast, never fails the tool.
    /// `hook cursor <event>` answers Cursor and records the event for the daemon.
    Hook {
        /// The hook event (e.g. Stop, SessionEnd, codex-notify), or `cursor`.
        event: String,
        /// The hook's payload (JSON), when passed as an argument; after `cursor`, Cursor's
        /// event name (the payload is on stdin).
        payload: Option<String>,
    },
    /// Install, remove or inspect the background service (systemd user unit / LaunchAgent).
    Service {
        /// What to do.
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Show the model price table in use, or download LiteLLM's current one.
    Prices {
        /// What to do.
        #[command(subcommand)]
        action: PricesAction,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true)]
    Man,
}

/// `opensyncd run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Debounce for file events, in milliseconds.
    #[arg(long, env = "OPENSYNCD_DEBOUNCE_MS", value_name = "MS")]
    pub debounce_ms: Option<u64>,
}

/// `opensyncd login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The OpenSync URL (your Convex deployment's .convex.site or .convex.cloud URL).
    #[arg(long, env = "OPENSYNCD_URL")]
    pub url: Option<String>,
    /// Read the API key from standard input instead of prompting.
    #[arg(long)]
    pub key_stdin: bool,
}

/// `opensyncd sync`.
#[derive(Debug, Args, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct SyncArgs {
    /// Everything not yet synced (the default).
    #[arg(long, conflicts_with = "new")]
    pub all: bool,
    /// Only sessions that were never synced.
    #[arg(long)]
    pub new: bool,
    /// Only the N most recently changed files / sessions.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Re-send the selected sessions even if they were synced (safe: ids are stable).
    #[arg(long)]
    pub force: bool,
    /// Send again the records the server refused before (see `status --rejected`).
    #[arg(long)]
    pub retry_rejected: bool,
    /// Only this source (claude-code, codex-cli, opencode, cursor-sync); repeatable.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Show what would be sent without sending.
    #[arg(long)]
    pub dry_run: bool,
}

/// `opensyncd export`.
#[derive(Debug, Args, Default)]
pub struct ExportArgs {
    /// Only this source (claude-code, codex-cli, opencode, cursor-sync); repeatable.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Only this session id.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

/// `opensyncd setup`.
#[derive(Debug, Args, Default)]
pub struct SetupArgs {
    /// Codex CLI: set `notify` in config.toml.
    #[arg(long)]
    pub codex: bool,
    /// Claude Code: add hooks to settings.json.
    #[arg(long)]
    pub claude: bool,
    /// Remove what setup added.
    #[arg(long)]
    pub remove: bool,
    /// Show the changes without writing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `opensyncd prices ...`.
#[derive(Debug, Subcommand)]
pub enum PricesAction {
    /// Which table is in use (bundled or installed, LiteLLM version and date); with a model,
    /// what it resolves to and its rates.
    Show {
        /// A model id as the logs spell it (e.g. `us.anthropic.claude-haiku-4-5-20251001-v1:0`).
        model: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Download LiteLLM's current price table, check it, and install it in the state dir
    /// (where it wins over the bundled table). A bad download changes nothing.
    Update {
        /// Where to download it from (default: the `prices_url` key, else LiteLLM's file).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
}

/// `opensyncd service ...`.
#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the unit / agent for this binary, enable and start it.
    Install {
        /// Print the files and commands without doing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop, disable and remove everything `install` wrote.
    Uninstall {
        /// Print the files and commands without doing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Is the service installed, enabled, running?
    Status,
}

/// The whole clap command (completions, man page, tests).
pub fn command() -> clap::Command {
    Cli::command()
}

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
        Command::Hook { event, payload } => {
            cmd_hook(&paths, &event, payload.as_deref());
            Ok(())
        }
        Command::Set { key, value } => cmd_set(&paths, &key, &value),
        Command::Logout { purge } => cmd_logout(&paths, purge),
        other => {
            let cfg = load_config(&paths, &overrides)?;
            init_logging(&cfg, matches!(other, Command::Run(_)));
            match other {
                Command::Run(_) => cmd_run(paths, cfg),
                Command::Config { json } => cmd_config(&paths, &cfg, json),
                Command::Login(args) => cmd_login(&paths, &cfg, args),
                Command::Status { json, rejected } => cmd_status(&paths, &cfg, json, rejected),
                Command::Verify => cmd_verify(&paths, &cfg),
                Command::Sync(args) => cmd_sync(&paths, &cfg, args),
                Command::Synctest => cmd_synctest(&paths, &cfg),
                Command::Export(args) => cmd_export(&cfg, args),
                Command::Setup(args) => cmd_setup(args),
                Command::Service { action } => cmd_service(action),
                Command::Prices { action } => cmd_prices(&paths, &cfg, action),
                Command::Completions { .. }
                | Command::Man
                | Command::Hook { .. }
                | Command::Set { .. }
                | Command::Logout { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// Logs go to stderr (the journal under systemd, the log file under launchd). The daemon
/// logs at the configured level; one-shot commands only warn unless asked for more, so their
/// output stays readable.
fn init_logging(cfg: &Config, daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let level = if daemon || cfg.log_level != "info" {
        cfg.log_level.as_str()
    } else {
        "warn"
    };
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match cfg.log_format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
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

/// Loads the config, with a message that says which file to fix.
pub fn load_config(paths: &Paths, overrides: &figment::value::Dict) -> Result<Config> {
    config::load(paths, overrides)
        .with_context(|| format!("loading {}", paths.config_file().display()))
}

/// The directory holding the binary, for messages.
pub fn binary_path() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("opensyncd"))
}
