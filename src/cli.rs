//! The command line: clap definitions (every flag with its environment variable where that
//! makes sense) and the dispatch of each command. This is the only module that prints for
//! humans; everything it calls returns data or typed errors.

use clap::{Args, CommandFactory, Parser, Subcommand};

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
    Hook {
        /// The hook event (e.g. Stop, SessionEnd, codex-notify).
        event: String,
        /// The hook's payload (JSON), when passed as an argument.
        payload: Option<String>,
    },
    /// Install, remove or inspect the background service (systemd user unit / LaunchAgent).
    Service {
        /// What to do.
        #[command(subcommand)]
        action: ServiceAction,
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
    /// Only this source (claude-code, codex-cli, opencode); repeatable.
    #[arg(long = "source", value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Show what would be sent without sending.
    #[arg(long)]
    pub dry_run: bool,
}

/// `opensyncd export`.
#[derive(Debug, Args, Default)]
pub struct ExportArgs {
    /// Only this source (claude-code, codex-cli, opencode); repeatable.
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

