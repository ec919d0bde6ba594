//! The command line's clap definitions: every command, its flags and arguments (each with an
//! example in its `--help`), the value parsers that check and complete them, and parsing the
//! process's arguments with `--color`/`NO_COLOR` honoured for clap's own output.

use std::ffi::OsStr;
use std::io::IsTerminal;

use anyhow::Result;
use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

use crate::config;
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
    after_help = "Run with no command (or --foreground) to start the daemon in the foreground.\n\n\
                  Examples:\n  \
                  opensyncd login                 # URL and API key, checked, saved\n  \
                  opensyncd service install       # run it in the background from now on\n  \
                  opensyncd status                # what is synced, what is pending\n  \
                  opensyncd set exclude '~/work/secret/**'"
)]
pub struct Cli {
    /// Run the daemon in the foreground (the same as `opensyncd run`).
    #[arg(long)]
    pub foreground: bool,

    /// Log level: error, warn, info, debug, trace, off (opensyncd's own logs; other crates stay
    /// at warn), or a full tracing filter such as `info,sled=debug`. Also
    /// OPENSYNCD_LOG_LEVEL. One-shot commands log only warnings unless this asks for more.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format (also OPENSYNCD_LOG_FORMAT).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,

    /// Colour in logs and help: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    /// The command (default: run the daemon in the foreground).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorWhen {
    /// When writing to a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorWhen {
    /// Whether to colour output written to stderr.
    pub fn for_stderr(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::io::stderr().is_terminal()
                    && config::process_env("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }

    /// The same choice for clap's own help and errors.
    pub fn for_clap(self) -> clap::ColorChoice {
        match self {
            ColorWhen::Always => clap::ColorChoice::Always,
            ColorWhen::Never => clap::ColorChoice::Never,
            ColorWhen::Auto => clap::ColorChoice::Auto,
        }
    }
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (what the service runs).
    #[command(after_help = "Examples:\n  opensyncd run\n  opensyncd --log-level debug run")]
    Run(RunArgs),
    /// Save the server URL and API key (verified against the server first).
    #[command(
        long_about = "Save the server URL and API key, after checking them with an \
                      authenticated request. In a terminal it asks for what is missing and asks \
                      again (up to 3 times) after a wrong URL or key.",
        after_help = "Examples:\n  opensyncd login\n  \
                      printf '%s' \"$OSK_KEY\" | opensyncd login --url https://happy-cat-123.convex.site --key-stdin"
    )]
    Login(LoginArgs),
    /// Log out: stop pushing now (in the running daemon too) and forget the API key.
    #[command(
        long_about = "Log out: the running daemon stops pushing at once (it answers once the \
                      requests already on the wire have ended, so nothing more is sent with the \
                      old key), and the saved API key is removed. It stays paused across \
                      restarts — even if OPENSYNCD_API_KEY still gives a key — until \
                      `opensyncd login`. --purge also stops the daemon and deletes the ledger \
                      and the config file.",
        after_help = "Examples:\n  opensyncd logout\n  opensyncd logout --purge"
    )]
    Logout {
        /// Also stop the daemon and delete the ledger (what has been synced) and the config
        /// file.
        #[arg(long)]
        purge: bool,
    },
    /// Stop pushing (in the running daemon too) until `opensyncd resume`, or for a while.
    #[command(
        long_about = "Stop pushing until `opensyncd resume`, or for DURATION. The running daemon \
                      stops at once (it answers once the requests already on the wire have \
                      ended) and keeps watching, so nothing is lost: everything written \
                      meanwhile is sent on resume. The pause survives restarts; `status` shows \
                      it, and exits 4 while it lasts.",
        after_help = "Examples:\n  opensyncd pause\n  opensyncd pause --for 2h\n  opensyncd resume"
    )]
    Pause {
        /// How long (90s, 30m, 2h, 1d, 1h30m); without it, until `opensyncd resume`.
        #[arg(long = "for", value_name = "DURATION", value_parser = duration_parser())]
        duration: Option<String>,
    },
    /// Lift a pause: pushing starts again at once.
    #[command(after_help = "Examples:\n  opensyncd resume")]
    Resume,
    /// Show what is synced, what is pending, and any problem; the exit status says the state.
    #[command(
        long_about = "Show the state of syncing first — ok, syncing (files, bytes left, ETA), \
                      retrying (since when, next attempt), unreachable, wrong URL, not running, \
                      paused (why, until when, how to resume), not logged in — then per source \
                      what is synced and pending. With a daemon running, it reports the outcome \
                      of the daemon's last requests; with none, it asks the server (/health and \
                      one authenticated request).",
        after_help = "Exit status: 0 ok or syncing; 1 the command itself failed; 3 degraded \
                      (server unreachable or failing, wrong URL, daemon not running); 4 paused; \
                      5 not logged in (no key, logged out, or the key was refused).\n\n\
                      Examples:\n  opensyncd status\n  opensyncd status --json | jq .health\n  \
                      opensyncd status --watch\n  opensyncd status --rejected\n  \
                      opensyncd status >/dev/null || echo \"needs attention: $?\""
    )]
    Status(StatusArgs),
    /// Check credentials, the connection, the daemon, the service and each source directory.
    #[command(after_help = "Examples:\n  opensyncd verify\n  opensyncd verify --json")]
    Verify {
        /// Machine-readable output (one object per check).
        #[arg(long)]
        json: bool,
    },
    /// Sync now (through the running daemon if there is one), or show what would be sent.
    #[command(
        long_about = "Sync what is pending now: through the running daemon if there is one \
                      (its progress is shown as it works), else in this process. It is bounded: \
                      it gives up when the server does not answer (at once when it is down \
                      before anything is sent, after 60 s of failures otherwise) and after \
                      --timeout, with a non-zero exit; what the server acknowledged is kept. \
                      --dry-run lists the files and sessions that would be sent, asking the \
                      daemon when one runs; it finds what `status` counts as backlog.",
        after_help = "Examples:\n  opensyncd sync\n  opensyncd sync --timeout 5m\n  \
                      opensyncd sync --source codex-cli --limit 5\n  \
                      opensyncd sync --dry-run\n  opensyncd sync --dry-run --json | jq '.files[].path'"
    )]
    Sync(SyncArgs),
    /// Create a test session with one message on the server and report their ids.
    #[command(after_help = "Examples:\n  opensyncd synctest")]
    Synctest,
    /// Print, one JSON object per session, exactly what would be sent.
    #[command(after_help = "Examples:\n  opensyncd export > sessions.jsonl\n  \
                      opensyncd export --source codex-cli --session 019b7f94-51b4-7593-922e-ba12b5b73b52")]
    Export(ExportArgs),
    /// Compare what the server holds with `export`, field by field; `--repair` re-sends what
    /// differs.
    #[command(
        after_help = "Examples:\n  opensyncd audit\n  opensyncd audit --limit 100 --json\n  \
                      opensyncd audit --session 019b7f94-51b4-7593-922e-ba12b5b73b52 --repair"
    )]
    Audit(AuditArgs),
    /// Show the resolved configuration and where each value came from (the API key masked).
    #[command(after_help = "Examples:\n  opensyncd config\n  opensyncd config --json")]
    Config {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Set (or with --unset, remove) a configuration key in config.toml.
    #[command(
        long_about = "Set a configuration key in config.toml, after checking the value (a value \
                      the daemon could not run with is refused). Only that key's text changes: \
                      comments and layout are kept. `--unset KEY` removes the key, so the \
                      default (or the environment) applies again.",
        after_help = "Examples:\n  opensyncd set concurrency 8\n  \
                      opensyncd set sources claude-code,codex-cli\n  \
                      opensyncd set exclude '~/work/secret/**,~/.claude/projects/-home-me-private'\n  \
                      opensyncd set --unset log_level"
    )]
    Set(SetArgs),
    /// Add (or remove) the tools' hooks that nudge the daemon right after each turn.
    #[command(
        long_about = "Add (or with --remove, take out) the hooks that nudge the daemon right \
                      after each turn: Claude Code and Factory Droid `Stop`/`SessionEnd` hooks, \
                      Cursor hooks, Codex's `notify`. Your own entries, key order and formatting \
                      are kept; the first backup of each file (<file>.opensyncd-backup) is never \
                      overwritten, and --remove gives back the original bytes when nothing else \
                      changed. With no tool named, every installed tool.",
        after_help = "Examples:\n  opensyncd setup --dry-run\n  opensyncd setup --claude --cursor\n  \
                      opensyncd setup --remove"
    )]
    Setup(SetupArgs),
    /// Called by the tools' hooks: nudges the daemon. Always fast, never fails the tool.
    #[command(
        long_about = "Called by the tools' hooks: nudges the daemon. It returns at once, prints \
                      nothing (Cursor: the answer Cursor expects), and exits 0 whatever happens. \
                      EVENT is the Claude Code event (Stop, SessionEnd), `codex-notify` (Codex \
                      passes its JSON payload as the last argument), or `cursor <event>` / \
                      `droid <event>` (payload on stdin).",
        after_help = "Examples:\n  opensyncd hook Stop < payload.json\n  \
                      opensyncd hook droid SessionEnd < payload.json\n  \
                      opensyncd hook cursor stop < payload.json"
    )]
    Hook {
        /// The hook event (Stop, SessionEnd, codex-notify) or the tool (cursor, droid).
        event: String,
        /// The payload (codex-notify), or the tool's event name (cursor, droid).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show the daemon's log (the journal under systemd, the log file otherwise).
    #[command(
        long_about = "Show the daemon's log: the user journal when the systemd unit is installed \
                      (journalctl --user -u opensyncd), the LaunchAgent's log file on macOS, and \
                      otherwise the log file a daemon started by hand writes \
                      (<state dir>/opensyncd.log, kept under 10 MiB with one older copy).",
        after_help = "Examples:\n  opensyncd logs\n  opensyncd logs -f\n  opensyncd logs -n 200"
    )]
    Logs(LogsArgs),
    /// Install, remove or inspect the background service (systemd user unit / LaunchAgent).
    #[command(
        after_help = "Examples:\n  opensyncd service install --dry-run\n  opensyncd service install\n  \
                      opensyncd service status --json"
    )]
    Service {
        /// What to do.
        #[command(subcommand)]
        action: ServiceAction,
    },
    /// Show the model price table in use, or download LiteLLM's current one.
    #[command(after_help = "Examples:\n  opensyncd prices show\n  \
                      opensyncd prices show us.anthropic.claude-haiku-4-5-20251001-v1:0\n  \
                      opensyncd prices update")]
    Prices {
        /// What to do.
        #[command(subcommand)]
        action: PricesAction,
    },
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  opensyncd completions bash > ~/.local/share/bash-completion/completions/opensyncd\n  \
                      opensyncd completions zsh > ~/.zfunc/_opensyncd\n  \
                      opensyncd completions fish > ~/.config/fish/completions/opensyncd.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(hide = true, after_help = "Examples:\n  opensyncd man | man -l -")]
    Man,
}

/// `opensyncd run`.
#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Debounce for file events, in milliseconds (also OPENSYNCD_DEBOUNCE_MS).
    #[arg(long, value_name = "MS")]
    pub debounce_ms: Option<u64>,
}

/// `opensyncd login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The OpenSync URL (your Convex deployment's .convex.site or .convex.cloud URL; also
    /// OPENSYNCD_URL).
    #[arg(long)]
    pub url: Option<String>,
    /// Read the API key from standard input instead of prompting.
    #[arg(long)]
    pub key_stdin: bool,
}

/// `opensyncd set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// Remove the key from config.toml instead of setting it.
    #[arg(long)]
    pub unset: bool,
    /// The key (see `opensyncd config`).
    #[arg(value_parser = config_key_parser())]
    pub key: String,
    /// The value (lists: comma-separated).
    #[arg(required_unless_present = "unset", conflicts_with = "unset")]
    pub value: Option<String>,
}

/// `opensyncd status`.
#[derive(Debug, Args, Default, Clone)]
pub struct StatusArgs {
    /// Machine-readable output (with --watch: one JSON object per line, per refresh).
    #[arg(long)]
    pub json: bool,
    /// List every record the server refused, with its reason.
    #[arg(long)]
    pub rejected: bool,
    /// Redraw every few seconds until interrupted (Ctrl-C).
    #[arg(long, conflicts_with = "rejected")]
    pub watch: bool,
    /// Seconds between two refreshes of --watch.
    #[arg(long, value_name = "SECS", default_value_t = 2, requires = "watch",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
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
    /// Only this source; repeatable.
    #[arg(long = "source", value_name = "SOURCE", value_parser = source_name_parser())]
    pub sources: Vec<String>,
    /// Show the files and sessions that would be sent, without sending (asks the running
    /// daemon when there is one).
    #[arg(long)]
    pub dry_run: bool,
    /// Give up after this long (90s, 5m, 1h…); what was acknowledged by then is kept and the
    /// exit status is non-zero. Through the daemon: stop waiting (it carries on).
    #[arg(long, value_name = "DURATION", value_parser = duration_parser(), conflicts_with = "dry_run")]
    #[serde(default)]
    pub timeout: Option<String>,
    /// Machine-readable output (the summary, or the dry run's findings).
    #[arg(long)]
    #[serde(default)]
    pub json: bool,
}

/// `opensyncd export`.
#[derive(Debug, Args, Default)]
pub struct ExportArgs {
    /// Only this source; repeatable.
    #[arg(long = "source", value_name = "SOURCE", value_parser = source_name_parser())]
    pub sources: Vec<String>,
    /// Only this session id (an id that matches nothing is an error).
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

/// `opensyncd audit`.
#[derive(Debug, Args, Default)]
pub struct AuditArgs {
    /// Only this session (its id as `export` prints it), found on the server by that id.
    #[arg(long, value_name = "ID", conflicts_with = "limit")]
    pub session: Option<String>,
    /// The N most recently updated sessions on the server (default 20); local sessions the
    /// server lacks are reported too.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit: Option<u32>,
    /// Re-send what differs through the per-record routes (after the server's dedup windows),
    /// then fetch again and report what is now equal.
    #[arg(long)]
    pub repair: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// `opensyncd setup`.
#[derive(Debug, Args, Default)]
pub struct SetupArgs {
    /// Claude Code: Stop and SessionEnd hooks in settings.json.
    #[arg(long)]
    pub claude: bool,
    /// Codex CLI: `notify` in config.toml (left alone when another program is set).
    #[arg(long)]
    pub codex: bool,
    /// Cursor: hooks in ~/.cursor/hooks.json.
    #[arg(long)]
    pub cursor: bool,
    /// Factory Droid: Stop and SessionEnd hooks in ~/.factory/settings.json.
    #[arg(long)]
    pub droid: bool,
    /// Remove what setup added.
    #[arg(long)]
    pub remove: bool,
    /// Show the changes without writing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `opensyncd logs`.
#[derive(Debug, Args, Default)]
pub struct LogsArgs {
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    pub follow: bool,
    /// How many of the last lines to show first.
    #[arg(short = 'n', long, default_value_t = 100, value_name = "N")]
    pub lines: usize,
}

/// `opensyncd prices ...`.
#[derive(Debug, Subcommand)]
pub enum PricesAction {
    /// Which table is in use (bundled or installed, LiteLLM version and date); with a model,
    /// what it resolves to and its rates.
    #[command(
        after_help = "Examples:\n  opensyncd prices show\n  opensyncd prices show gpt-5 --json"
    )]
    Show {
        /// A model id as the logs spell it (e.g. `us.anthropic.claude-haiku-4-5-20251001-v1:0`).
        model: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Download LiteLLM's current price table, check it, and install it in the state dir
    /// (where it wins over the bundled table). A bad download changes nothing.
    #[command(after_help = "Examples:\n  opensyncd prices update")]
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
    #[command(
        after_help = "Examples:\n  opensyncd service install --dry-run\n  opensyncd service install"
    )]
    Install {
        /// Print the files and commands without doing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop, disable and remove everything `install` wrote.
    #[command(after_help = "Examples:\n  opensyncd service uninstall")]
    Uninstall {
        /// Print the files and commands without doing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Is the service installed, enabled, running?
    #[command(
        after_help = "Examples:\n  opensyncd service status\n  opensyncd service status --json"
    )]
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

/// A value checked by a function and completed from a fixed list (config keys, source names):
/// the shell completions offer the list, the error says what is valid.
#[derive(Clone)]
struct NamedValue {
    names: fn() -> Vec<&'static str>,
    check: fn(&str) -> Result<(), String>,
}

impl TypedValueParser for NamedValue {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        let text = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "the value is not UTF-8\n",
            )
            .with_cmd(cmd)
        })?;
        (self.check)(text).map_err(|message| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{message}\n"))
                .with_cmd(cmd)
        })?;
        Ok(text.to_string())
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new((self.names)().into_iter().map(PossibleValue::new)))
    }
}

fn config_key_parser() -> NamedValue {
    NamedValue {
        names: || config::SETTABLE_KEYS.to_vec(),
        check: |key| {
            if config::SETTABLE_KEYS.contains(&key) {
                Ok(())
            } else {
                Err(config::ConfigError::UnknownKey {
                    key: key.to_string(),
                    origin: None,
                }
                .to_string())
            }
        },
    }
}

/// A `DURATION` argument (`90s`, `30m`, `2h`, `1d`, `1h30m`), checked when parsed.
fn duration_parser() -> impl TypedValueParser<Value = String> {
    clap::builder::NonEmptyStringValueParser::new()
        .try_map(|text: String| crate::pause::parse_duration(&text).map(|_| text))
}

fn source_name_parser() -> NamedValue {
    NamedValue {
        names: || SourceId::ALL.iter().map(|s| s.as_str()).collect(),
        check: |name| {
            SourceId::parse(name).map(drop).ok_or_else(|| {
                format!(
                    "unknown source `{name}`; valid: {}",
                    SourceId::ALL.map(SourceId::as_str).join(", ")
                )
            })
        },
    }
}

/// The whole clap command (completions, man page, tests).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the process's arguments, honouring `--color` and `NO_COLOR` for clap's own help and
/// errors too.
pub fn parse() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let color = color_from_args(&args);
    let matches = command().color(color.for_clap()).get_matches_from(args);
    use clap::FromArgMatches;
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// `--color` as given on the command line (before clap parses it: help and errors need it).
fn color_from_args(args: &[std::ffi::OsString]) -> ColorWhen {
    let mut chosen = ColorWhen::Auto;
    let mut iter = args.iter().map(|a| a.to_string_lossy());
    while let Some(arg) = iter.next() {
        let value = if let Some(v) = arg.strip_prefix("--color=") {
            Some(v.to_string())
        } else if arg == "--color" {
            iter.next().map(|v| v.to_string())
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| ColorWhen::from_str(&v, true).ok()) {
            chosen = v;
        }
    }
    if chosen == ColorWhen::Auto && config::process_env("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        ColorWhen::Never
    } else {
        chosen
    }
}
