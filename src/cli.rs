//! The command line: clap definitions (every flag with its environment variable where that
//! makes sense) and the dispatch of each command. This is the only module that prints for
//! humans; everything it calls returns data or typed errors.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, Config, Paths};
use crate::credentials::{self, ApiKey};
use crate::daemon::{self, Reply, Request, RunEnd, Selection};
use crate::model::SourceId;
use crate::oneshot::{self, Progress};

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
                Command::Status { json } => cmd_status(&paths, &cfg, json),
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
                anyhow!("unknown source `{n}`; valid: claude-code, codex-cli, opencode")
            })
        })
        .collect()
}

fn cmd_status(paths: &Paths, cfg: &Config, json: bool) -> Result<()> {
    let status = match daemon::request(paths, &Request::Status, Some(Duration::from_secs(10)))? {
        Some(Reply::Status { status }) => *status,
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => offline_status(paths, cfg)?,
    };
    let mut status = status;
    status.service = service_target()
        .ok()
        .map(|target| crate::service::status(&target));
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", crate::status::render(&status));
    }
    Ok(())
}

fn offline_status(paths: &Paths, cfg: &Config) -> Result<crate::status::Status> {
    let key = credentials::load(paths, &config::process_env).map_err(|e| anyhow!(e))?;
    let auth = match (&key, &cfg.url) {
        (None, _) | (_, None) => "not logged in: run `opensyncd login`".to_string(),
        _ => "daemon not running: nothing is being synced right now".to_string(),
    };
    let roots = cfg.roots(&config::process_env);
    let mut status = match daemon::take_lock(paths)? {
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

fn cmd_verify(paths: &Paths, cfg: &Config) -> Result<()> {
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
            match daemon::verify_credentials(cfg, url, key) {
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
    match daemon::request(paths, &Request::Status, Some(Duration::from_secs(5))) {
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
    for (source, (dirs, units)) in daemon::source_inventory(&roots, &cfg.enabled_sources()) {
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

fn sync_selection(args: &SyncArgs) -> Result<Selection> {
    Ok(Selection {
        sources: parse_sources(&args.sources)?,
        new_only: args.new,
        limit: args.limit,
        force: args.force,
    })
}

fn cmd_sync(paths: &Paths, cfg: &Config, args: SyncArgs) -> Result<()> {
    let selection = sync_selection(&args)?;
    if args.dry_run {
        let report = oneshot::dry_run(paths, cfg, &selection)?;
        if report.sources.is_empty() {
            println!("Nothing to sync: everything on disk is acknowledged.");
        }
        for (source, (units, bytes)) in report.sources {
            println!(
                "{source}: {units} file(s) with unsynced data ({bytes} bytes); nothing was sent"
            );
        }
        return Ok(());
    }
    let summary = match daemon::request(
        paths,
        &Request::Sync {
            selection: selection.clone(),
        },
        None,
    )? {
        Some(Reply::Synced { summary }) => {
            println!("(through the running daemon)");
            summary
        }
        Some(Reply::Error { message }) => bail!("the daemon answered: {message}"),
        Some(other) => bail!("unexpected reply from the daemon: {other:?}"),
        None => {
            let bar = std::io::stderr().is_terminal().then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} files {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                bar
            });
            let mut progress = |p: Progress| match (&bar, p) {
                (Some(bar), Progress::Start { units }) => bar.set_length(units as u64),
                (Some(bar), Progress::Unit { .. }) => bar.inc(1),
                (Some(bar), Progress::Settling { wait }) => {
                    bar.set_message(format!("settling ({}s)", wait.as_secs()))
                }
                (None, Progress::Start { units }) => eprintln!("syncing {units} file(s)"),
                (None, Progress::Unit { unit }) => eprintln!("done: {unit}"),
                (None, Progress::Settling { wait }) => eprintln!(
                    "waiting {}s for the server's 10 s update window before the final session update",
                    wait.as_secs()
                ),
            };
            let summary = oneshot::sync(paths, cfg, &selection, &mut progress)?;
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            summary
        }
    };
    println!(
        "Synced {} file(s): {} session update(s), {} message(s) sent, {} rejected{}.",
        summary.units,
        summary.sessions_sent,
        summary.messages_sent,
        summary.rejected,
        if summary.failed > 0 {
            format!(", {} failed (see the log)", summary.failed)
        } else {
            String::new()
        }
    );
    if let Some(paused) = summary.paused {
        bail!("pushing stopped: {paused}");
    }
    if summary.failed > 0 {
        bail!("{} file(s) could not be synced", summary.failed);
    }
    Ok(())
}

fn cmd_synctest(paths: &Paths, cfg: &Config) -> Result<()> {
    let client = daemon::build_client(cfg, paths)?
        .ok_or_else(|| anyhow!("not logged in: run `opensyncd login` first"))?;
    let report = crate::daemon::synctest(&client)?;
    println!(
        "Created session {} and message {} on the server.",
        report.session_id, report.message_id
    );
    println!("{}", report.visible);
    Ok(())
}

fn cmd_export(cfg: &Config, args: ExportArgs) -> Result<()> {
    let sources = parse_sources(&args.sources)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut emit = |e: oneshot::Exported| -> Result<()> {
        serde_json::to_writer(&mut out, &e)?;
        out.write_all(b"\n")?;
        Ok(())
    };
    let report = match oneshot::export(cfg, &sources, args.session.as_deref(), &mut emit) {
        Err(e) if is_broken_pipe(&e) => return Ok(()),
        other => other?,
    };
    match out.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other?,
    }
    eprintln!(
        "exported {} session(s), {} message(s); skipped {} malformed and {} over-long line(s)",
        report.sessions, report.messages, report.malformed_lines, report.skipped_long_lines
    );
    if !report.unpriced.is_empty() {
        eprintln!("{}", unpriced_summary(&report.unpriced));
    }
    if !report.unreadable.is_empty() {
        for u in &report.unreadable {
            eprintln!("unreadable: {u}");
        }
        bail!(
            "{} source file(s) could not be read",
            report.unreadable.len()
        );
    }
    Ok(())
}

/// The warning line for models without a price: each named with the sessions and tokens it
/// affects, and what the exported costs then mean.
fn unpriced_summary(
    unpriced: &std::collections::BTreeMap<String, (usize, crate::model::Tokens)>,
) -> String {
    let models: Vec<String> = unpriced
        .iter()
        .map(|(model, (sessions, tokens))| {
            let name = if model.is_empty() {
                "(model not recorded)"
            } else {
                model
            };
            format!(
                "{name} ({sessions} session(s), {} prompt + {} completion tokens)",
                tokens.prompt(),
                tokens.output
            )
        })
        .collect();
    format!(
        "warning: no price for {} model(s): {}; their tokens are counted but not costed, so those \
         sessions' cost is the priced part only (add the models to a pricing_file, or run \
         `opensyncd prices update`)",
        unpriced.len(),
        models.join(", ")
    )
}

fn cmd_prices(paths: &Paths, cfg: &Config, action: PricesAction) -> Result<()> {
    match action {
        PricesAction::Update { url } => {
            let url = crate::prices::update_url(cfg, url.as_deref());
            eprintln!("downloading {url} ...");
            let done = crate::prices::update(paths, cfg, &url)?;
            println!(
                "installed {} ({} models priced, {} before; {} bytes, sha256 {})",
                done.path.display(),
                done.models,
                done.previous_models,
                done.bytes,
                done.sha256
            );
            println!("It is used from the next sync; restart a running daemon to use it now.");
            Ok(())
        }
        PricesAction::Show { model, json } => {
            let pricing =
                crate::prices::load(paths, cfg).map_err(|e| anyhow!("pricing_file: {e}"))?;
            let resolution = model.as_deref().map(|m| pricing.resolve(m));
            if json {
                let out = serde_json::json!({
                    "table": pricing.info(),
                    "model": model,
                    "resolution": resolution,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("table: {}", crate::prices::describe(&pricing));
                if let Some(warning) = &pricing.info().warning {
                    println!("warning: {warning}");
                }
                if let (Some(model), Some(resolution)) = (model, resolution) {
                    print!(
                        "{}",
                        crate::prices::describe_model(&model, resolution.as_ref())
                    );
                }
            }
            Ok(())
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// `hook`: must return fast and never fail the tool that called it. It nudges the daemon; with
/// no daemon it starts a background `opensyncd sync` and returns at once.
fn cmd_hook(paths: &Paths, event: &str, payload: Option<&str>) {
    let payload = payload.map(str::to_string).or_else(read_stdin_briefly);
    let path = payload
        .as_deref()
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|v| {
            v.get("transcript_path")
                .and_then(|t| t.as_str())
                .map(PathBuf::from)
        });
    let request = Request::Hook {
        event: event.to_string(),
        path,
    };
    match daemon::request(paths, &request, Some(Duration::from_millis(80))) {
        Ok(Some(_)) => {}
        Ok(None) => {
            // No daemon: sync in the background so the tool is not kept waiting.
            let _ = std::process::Command::new(binary_path())
                .arg("sync")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        Err(_) => {} // A busy daemon will see the change through its watcher anyway.
    }
}

/// Claude Code passes the hook payload on stdin; read it without ever blocking the tool.
fn read_stdin_briefly() -> Option<String> {
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

fn cmd_setup(args: SetupArgs) -> Result<()> {
    use crate::setup;
    let binary = binary_path();
    let binary = binary
        .to_str()
        .context("the opensyncd binary path is not UTF-8")?
        .to_string();
    // No tool named: every installed tool.
    let all = !args.claude && !args.codex;
    let env = &config::process_env;
    let mut edits = Vec::new();
    let mut problems = Vec::new();
    let mut plan = |tool: &str, result: Result<Option<setup::Edit>>| match result {
        Ok(Some(edit)) => edits.push(edit),
        Ok(None) => println!("{tool}: not installed here, skipped"),
        Err(e) => problems.push(format!("{e:#}")),
    };
    if all || args.claude {
        plan(
            "Claude Code",
            setup::plan_claude(env, &binary, args.remove, args.claude),
        );
    }
    if all || args.codex {
        plan(
            "Codex CLI",
            setup::plan_codex(env, &binary, args.remove, args.codex),
        );
    }
    for edit in &edits {
        match (&edit.new_contents, args.dry_run) {
            (None, _) => println!("{}", edit.summary),
            (Some(contents), true) => {
                println!("{}: would write {}:", edit.tool, edit.path.display());
                for line in contents.lines() {
                    println!("    {line}");
                }
            }
            (Some(_), false) => {
                setup::apply(edit)?;
                println!(
                    "{} (previous version kept in {})",
                    edit.summary,
                    setup::backup_path(&edit.path).display()
                );
            }
        }
    }
    if !problems.is_empty() {
        bail!(
            "{}
(the daemon's file watcher syncs these sessions anyway; hooks only make it              faster)",
            problems.join("\n")
        );
    }
    if !args.remove && !args.dry_run && !edits.is_empty() {
        println!("The hooks nudge the running daemon after each turn; they never block the tool.");
    }
    Ok(())
}

fn service_target() -> Result<crate::service::Target> {
    crate::service::Target::detect(&config::process_env, binary_path())
}

fn cmd_service(action: ServiceAction) -> Result<()> {
    use crate::service;
    let target = service_target()?;
    let (steps, dry_run, installing) = match action {
        ServiceAction::Status => {
            let status = service::status(&target);
            println!("{}", status.summary());
            if let Some(binary) = &status.runs_binary {
                println!("runs: {binary}");
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
    service::execute(&steps, &mut |line| println!("{line}"))?;
    if installing {
        println!(
            "opensyncd is installed as a {} and started.",
            match target.manager {
                service::Manager::Systemd => "systemd user service",
                service::Manager::Launchd => "LaunchAgent",
            }
        );
        if let Some(hint) = service::linger_hint(&target, config::process_env("USER").as_deref()) {
            println!("{hint}");
        }
        println!("Check it with `opensyncd status`.");
    } else {
        println!("opensyncd's service is stopped and removed (your settings and ledger are kept).");
    }
    Ok(())
}

fn service_verify_line(check: &mut dyn FnMut(bool, &str, String)) {
    match service_target() {
        Ok(target) => {
            let status = crate::service::status(&target);
            check(status.is_running(), "service", status.summary());
        }
        Err(e) => check(false, "service", format!("{e:#}")),
    }
}

/// Loads the config, with a message that says which file to fix.
pub fn load_config(paths: &Paths, overrides: &figment::value::Dict) -> Result<Config> {
    config::load(paths, overrides)
        .with_context(|| format!("loading {}", paths.config_file().display()))
}

fn cmd_config(paths: &Paths, cfg: &Config, json: bool) -> Result<()> {
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
    for (name, dirs) in [
        ("claude roots", &roots.claude),
        ("codex roots", &roots.codex),
        ("opencode roots", &roots.opencode),
    ] {
        line(
            &mut out,
            name,
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    print!("{out}");
    Ok(())
}

fn cmd_set(paths: &Paths, key: &str, value: &str) -> Result<()> {
    let parsed = config::parse_setting(key, value)?;
    config::write_key(paths, key, Some(parsed.clone()))?;
    // The file as a whole must still load (e.g. env or other keys may conflict).
    config::load(paths, &figment::value::Dict::new())?;
    println!("{key} = {parsed} (in {})", paths.config_file().display());
    Ok(())
}

fn cmd_logout(paths: &Paths, purge: bool) -> Result<()> {
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

fn read_key_interactively() -> Result<String> {
    if std::io::stdin().is_terminal() {
        rpassword::prompt_password("OpenSync API key (osk_…, input hidden): ")
            .context("reading the API key")
    } else {
        bail!("no terminal to prompt on: pass the key with --key-stdin or OPENSYNCD_API_KEY")
    }
}

fn cmd_login(paths: &Paths, cfg: &Config, args: LoginArgs) -> Result<()> {
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
    crate::daemon::verify_credentials(cfg, &url, &key)?;
    credentials::save(paths, &key)
        .with_context(|| format!("saving {}", paths.credentials_file().display()))?;
    config::write_key(paths, "url", Some(url.clone().into()))?;
    println!("Logged in to {url} with key {}.", key.masked());
    match crate::daemon::notify_reload(paths) {
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

/// The directory holding the binary, for messages.
pub fn binary_path() -> PathBuf {
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("opensyncd"))
}
