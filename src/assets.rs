//! Shell completions and the man page, generated from the clap definitions and the config key
//! table so they can never drift from the real command line (a test compares them with the
//! committed copies).
//!
//! The man page is one page: every command with its options and examples, every config key
//! with its default and variable, the environment, the files and the exit status. (clap_mangen
//! renders one page per subcommand and points at `opensyncd-<cmd>(1)` pages that no package
//! ships, so the page is written here instead.)

use std::fmt::Write as _;

use crate::config;

/// Shell completions for `shell`. Config keys (`set <TAB>`) and source names (`--source`)
/// complete from the lists the commands accept.
pub fn completions(shell: clap_complete::Shell, mut cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "opensyncd", &mut out);
    if shell == clap_complete::Shell::Fish {
        out.extend_from_slice(fish_positional_values(&cmd).as_bytes());
    }
    out
}

/// The values an argument takes that its help shows (hidden ones left out).
fn visible_values(arg: &clap::Arg) -> Vec<String> {
    arg.get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect()
}

/// clap_complete's fish script completes only options' values; the values of positional
/// arguments (`set KEY`, `completions SHELL`) are added here in the same form.
fn fish_positional_values(cmd: &clap::Command) -> String {
    let mut out = String::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments().filter(|a| a.is_positional()) {
            let values = visible_values(arg);
            if values.is_empty() {
                continue;
            }
            let _ = writeln!(
                out,
                "complete -c opensyncd -n \"__fish_opensyncd_using_subcommand {}\" -f -a \"{}\"",
                sub.get_name(),
                values.join(" ")
            );
        }
    }
    out
}

/// The man page (roff).
pub fn man_page(cmd: clap::Command) -> Vec<u8> {
    let mut cmd = cmd;
    cmd.build();
    let mut m = String::new();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let _ = writeln!(
        m,
        ".TH OPENSYNCD 1 \"\" \"opensyncd {}\" \"User Commands\"",
        esc(&version)
    );
    m.push_str(".SH NAME\n");
    let _ = writeln!(
        m,
        "opensyncd \\- {}",
        esc(&text(cmd.get_about()).replace('\n', " "))
    );
    m.push_str(".SH SYNOPSIS\n");
    m.push_str("\\fBopensyncd\\fR [\\fIOPTIONS\\fR] [\\fICOMMAND\\fR] [\\fIARGS\\fR]\n");
    m.push_str(".SH DESCRIPTION\n");
    paragraphs(&mut m, &text(cmd.get_long_about().or(cmd.get_about())));
    m.push_str(".SH OPTIONS\n");
    m.push_str("These options apply to every command.\n");
    options(&mut m, &cmd);
    m.push_str(".SH COMMANDS\n");
    for sub in visible_subcommands(&cmd) {
        command_section(&mut m, "opensyncd", sub);
    }
    config_section(&mut m);
    environment_section(&mut m);
    files_section(&mut m);
    m.push_str(".SH EXIT STATUS\n");
    m.push_str(
        "0 on success; 1 when the command failed (the message says why); 2 when the command \
         line is wrong. \\fBopensyncd hook\\fR always exits 0.\n",
    );
    let _ = writeln!(
        m,
        ".PP\n\\fBopensyncd status\\fR exits with the state of syncing: {}.",
        esc(crate::health::EXIT_CODES_HELP
            .trim_start_matches("Exit status: ")
            .trim_end_matches('.'))
    );
    m.push_str(".SH SEE ALSO\n");
    m.push_str("\\fBsystemctl\\fR(1), \\fBjournalctl\\fR(1), \\fBlaunchctl\\fR(1)\n");
    m.into_bytes()
}

/// Subcommands worth a section: not hidden, and not clap's own `help`.
fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// `s` ending with a full stop (clap drops it from one-line abouts).
fn sentence(s: &str) -> String {
    let trimmed = s.trim_end();
    if trimmed.is_empty() || trimmed.ends_with(['.', '?', '!']) {
        trimmed.to_string()
    } else {
        format!("{trimmed}.")
    }
}

fn text(s: Option<&clap::builder::StyledStr>) -> String {
    s.map(|s| s.to_string()).unwrap_or_default()
}

/// Escapes text for roff: backslashes, hyphens (so they stay hyphens), and a line start that
/// would read as a request.
fn esc(s: &str) -> String {
    let mut out = s.replace('\\', "\\e").replace('-', "\\-");
    if out.starts_with('.') || out.starts_with('\'') {
        out.insert_str(0, "\\&");
    }
    out
}

/// Text with blank-line paragraphs; lines indented by two spaces are kept as examples.
fn paragraphs(m: &mut String, body: &str) {
    let mut in_example = false;
    for line in body.lines() {
        let example = line.starts_with("  ");
        if example && !in_example {
            m.push_str(".PP\n.RS 4\n.nf\n");
            in_example = true;
        } else if !example && in_example {
            m.push_str(".fi\n.RE\n");
            in_example = false;
        }
        if example {
            let _ = writeln!(m, "{}", esc(line.trim_start()));
        } else if line.trim().is_empty() {
            m.push_str(".PP\n");
        } else {
            for piece in esc(line.trim()).lines() {
                let _ = writeln!(m, "{piece}");
            }
        }
    }
    if in_example {
        m.push_str(".fi\n.RE\n");
    }
}

fn options(m: &mut String, cmd: &clap::Command) {
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        let mut head = String::new();
        if let Some(short) = arg.get_short() {
            let _ = write!(head, "\\fB\\-{short}\\fR, ");
        }
        let names: Vec<String> = arg
            .get_value_names()
            .map(|v| v.iter().map(|n| n.to_string()).collect())
            .unwrap_or_default();
        if let Some(long) = arg.get_long() {
            let _ = write!(head, "\\fB\\-\\-{}\\fR", esc(long));
            let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
            if takes_value {
                let name = names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| id.to_ascii_uppercase());
                let _ = write!(head, " \\fI{}\\fR", esc(&name));
            }
        } else {
            let name = names
                .first()
                .cloned()
                .unwrap_or_else(|| id.to_ascii_uppercase());
            let _ = write!(head, "\\fI{}\\fR", esc(&name));
        }
        m.push_str(".TP\n");
        let _ = writeln!(m, "{head}");
        let mut help = text(arg.get_long_help().or(arg.get_help()))
            .trim()
            .replace('\n', " ");
        // clap drops the final period of a one-sentence help; put it back before more text.
        if !help.is_empty() && !help.ends_with('.') {
            help.push('.');
        }
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let values = visible_values(arg);
        if !values.is_empty() && values.len() <= 30 {
            let _ = write!(help, " Values: {}.", values.join(", "));
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        if !defaults.is_empty() && takes_value {
            let _ = write!(help, " Default: {}.", defaults.join(", "));
        }
        let _ = writeln!(m, "{}", esc(&help));
    }
}

fn command_section(m: &mut String, parent: &str, cmd: &clap::Command) {
    let full = format!("{parent} {}", cmd.get_name());
    let subs: Vec<&clap::Command> = visible_subcommands(cmd).collect();
    let usage = if subs.is_empty() {
        let mut parts = vec![full.clone()];
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" || arg.is_global_set() {
                continue;
            }
            if arg.is_positional() {
                let name = arg
                    .get_value_names()
                    .and_then(|v| v.first().map(|n| n.to_string()))
                    .unwrap_or_else(|| id.to_ascii_uppercase());
                parts.push(if arg.is_required_set() {
                    name
                } else {
                    format!("[{name}]")
                });
            } else if let Some(long) = arg.get_long() {
                parts.push(format!("[--{long}]"));
            }
        }
        parts.join(" ")
    } else {
        format!(
            "{full} {}",
            subs.iter()
                .map(|s| s.get_name())
                .collect::<Vec<_>>()
                .join("|")
        )
    };
    let _ = writeln!(m, ".SS \"{}\"", esc(&usage));
    paragraphs(
        m,
        &sentence(&text(cmd.get_long_about().or(cmd.get_about()))),
    );
    let own: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| {
            let id = a.get_id().as_str();
            !a.is_hide_set() && !a.is_global_set() && id != "help" && id != "version"
        })
        .collect();
    if !own.is_empty() {
        let mut shown = cmd.clone();
        shown = shown.mut_args(|a| if a.is_global_set() { a.hide(true) } else { a });
        options(m, &shown);
    }
    if let Some(after) = cmd.get_after_help() {
        m.push_str(".PP\n");
        paragraphs(m, &after.to_string());
    }
    for sub in subs {
        command_section(m, &full, sub);
    }
}

/// The font a definition list's terms are set in.
#[derive(Debug, Clone, Copy)]
enum Font {
    Bold,
    Italic,
}

/// A definition list (`.TP`): each term in `font` on its own line, its description below.
fn definitions(m: &mut String, font: Font, items: &[(&str, &str)]) {
    let font = match font {
        Font::Bold => 'B',
        Font::Italic => 'I',
    };
    for (term, doc) in items {
        let _ = writeln!(m, ".TP\n\\f{font}{}\\fR\n{}", esc(term), esc(doc));
    }
}

fn config_section(m: &mut String) {
    m.push_str(".SH CONFIGURATION\n");
    paragraphs(
        m,
        "Settings are read from config.toml (see FILES), then from OPENSYNCD_* environment \
         variables, then from flags; each layer overrides the one before. `opensyncd config` \
         shows every value and where it came from; `opensyncd set KEY VALUE` and `opensyncd \
         set --unset KEY` edit the file. Lists are TOML arrays in the file and comma-separated \
         in the environment and on the command line.",
    );
    let defaults = toml::Value::try_from(config::Config::default()).ok();
    for key in config::SETTABLE_KEYS {
        let default = defaults
            .as_ref()
            .and_then(|t| t.get(key))
            .map(toml::Value::to_string)
            .unwrap_or_else(|| "not set".into());
        m.push_str(".TP\n");
        let _ = writeln!(m, "\\fB{}\\fR", esc(key));
        let _ = writeln!(
            m,
            "{} Default: {}. Environment: {}.",
            esc(&sentence(config::key_doc(key))),
            esc(&default),
            esc(&config::env_var_of(key))
        );
    }
}

fn environment_section(m: &mut String) {
    m.push_str(".SH ENVIRONMENT\n");
    m.push_str(".TP\n\\fBOPENSYNCD_\\fR\\fIKEY\\fR\n");
    m.push_str(
        "Any configuration key, upper-cased (see CONFIGURATION). An OPENSYNCD_* variable that \
         is neither a key nor one of those below is ignored with a warning.\n",
    );
    definitions(m, Font::Bold, config::NON_CONFIG_VARS);
    let others: [(&str, &str); 10] = [
        (
            "CLAUDE_CONFIG_DIR",
            "Claude Code's config dirs (a comma list); its transcripts are under projects/.",
        ),
        ("CODEX_HOME", "Codex CLI's home (default ~/.codex)."),
        (
            "XDG_DATA_HOME",
            "OpenCode's data lives in $XDG_DATA_HOME/opencode (default ~/.local/share).",
        ),
        ("OPENCODE_DB", "OpenCode's database file."),
        (
            "PI_CODING_AGENT_DIR",
            "pi's agent dir (default ~/.pi/agent).",
        ),
        (
            "XDG_CONFIG_HOME",
            "opensyncd's config dir is $XDG_CONFIG_HOME/opensyncd on Linux.",
        ),
        (
            "XDG_STATE_HOME",
            "opensyncd's state dir is $XDG_STATE_HOME/opensyncd on Linux.",
        ),
        (
            "NO_COLOR",
            "When set and not empty, no colour (unless --color always).",
        ),
        (
            "INVOCATION_ID",
            "Set by systemd: the daemon then logs only to the journal, not to its own file.",
        ),
        (
            "XPC_SERVICE_NAME",
            "Set by launchd: the daemon then logs only to the LaunchAgent's file.",
        ),
    ];
    definitions(m, Font::Bold, &others);
    m.push_str(
        ".PP\n`opensyncd service install` keeps OPENSYNCD_HOME, the XDG_* directories and the \
         tools' variables above in the unit (Environment=) or the LaunchAgent \
         (EnvironmentVariables) when they are set in the shell it runs in.\n",
    );
}

fn files_section(m: &mut String) {
    m.push_str(".SH FILES\n");
    let files: [(&str, &str); 12] = [
        (
            "~/.config/opensyncd/config.toml",
            "Settings (macOS: ~/Library/Application Support/opensyncd/config.toml). Mode 0600.",
        ),
        (
            "~/.config/opensyncd/credentials",
            "The API key, mode 0600, in a 0700 directory.",
        ),
        (
            "~/.local/state/opensyncd/ledger/",
            "What the server acknowledged (macOS: ~/Library/Application Support/opensyncd/).",
        ),
        (
            "~/.local/state/opensyncd/opensyncd.lock",
            "Held by the one process that syncs.",
        ),
        (
            "~/.local/state/opensyncd/control.sock",
            "The daemon's control socket (mode 0600).",
        ),
        (
            "~/.local/state/opensyncd/pause.json",
            "The hold put by `opensyncd pause` or `logout` (kept across restarts; `resume` or `login` removes it).",
        ),
        (
            "~/.local/state/opensyncd/daemon-waiting",
            "The pid of a daemon waiting for the lock (`status` names who holds it).",
        ),
        (
            "~/.local/state/opensyncd/opensyncd.log",
            "The log of a daemon started by hand (not under systemd or launchd), rotated at 10 MiB to opensyncd.log.1.",
        ),
        (
            "~/.config/systemd/user/opensyncd.service",
            "The systemd user unit `service install` writes; its log is in the user journal.",
        ),
        (
            "~/Library/LaunchAgents/dev.opensyncd.opensyncd.plist",
            "The LaunchAgent (macOS); its log is ~/Library/Logs/opensyncd.log.",
        ),
        (
            "~/.claude/settings.json, ~/.factory/settings.json, ~/.cursor/hooks.json, ~/.codex/config.toml",
            "The tools' hook settings `setup` edits.",
        ),
        (
            "<file>.opensyncd-backup",
            "The version of a hook settings file before setup first changed it (never overwritten).",
        ),
    ];
    definitions(m, Font::Italic, &files);
}
