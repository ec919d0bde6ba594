//! Adds and removes the tools' hooks that nudge the running daemon right after each turn:
//! Claude Code and Factory Droid command hooks (`Stop`, `SessionEnd`) in their
//! `settings.json`, Cursor's hooks in `~/.cursor/hooks.json`, and Codex's `notify` program in
//! `config.toml`.
//!
//! The hooks are an optimisation: the watcher sees every change anyway. So setup leaves no
//! trace beyond its own entries: JSON is edited in place ([`crate::json_edit`]: only our
//! entries' text is inserted or removed; key order and formatting stay), TOML through
//! `toml_edit` (comments and layout stay), the first backup of a file
//! (`<file>.opensyncd-backup`) is never overwritten, and `--remove` gives back the original
//! bytes when nothing but our entries changed since (otherwise it takes out exactly the entries
//! it recognises as its own: a command that runs `opensyncd hook ...`).
//!
//! One job, kept whole (about 650 lines of code, 730 with its tests): each tool's add and
//! remove, the plan that decides between writing, restoring and deleting, and the apply that
//! keeps the first backup are one reversible edit; apart, the remove would sit away from the add
//! it must undo exactly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::json_edit::{self, Node, Style, Value};

/// The Claude Code events we hook: after every assistant turn, and at the end of a session.
pub const CLAUDE_EVENTS: [&str; 2] = ["Stop", "SessionEnd"];
/// The Factory Droid events we hook (same meaning as Claude Code's).
pub const DROID_EVENTS: [&str; 2] = ["Stop", "SessionEnd"];
/// The Cursor events we hook: the turn's boundaries, the tool events (a failed tool call
/// included), the agent's thoughts (sent with `sync_thinking`) and the session's end (its
/// duration), so the spool sees every step of a session that the merge reads.
/// `afterMCPExecution` is left out: newer Cursor reports the same MCP call as `postToolUse`
/// too, and a second result for one call could be bound to another call of the same tool.
pub const CURSOR_EVENTS: [&str; 11] = [
    "beforeSubmitPrompt",
    "afterAgentResponse",
    "afterAgentThought",
    "stop",
    "beforeShellExecution",
    "afterShellExecution",
    "preToolUse",
    "postToolUse",
    "postToolUseFailure",
    "afterFileEdit",
    "sessionEnd",
];
/// The event name Codex's notify passes to `opensyncd hook`.
pub const CODEX_EVENT: &str = "codex-notify";
/// Suffix of the backup kept beside each edited file.
pub const BACKUP_SUFFIX: &str = "opensyncd-backup";

/// A tool whose hook configuration setup edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// Claude Code (`settings.json`).
    Claude,
    /// Codex CLI (`config.toml`).
    Codex,
    /// Cursor (`~/.cursor/hooks.json`).
    Cursor,
    /// Factory Droid (`~/.factory/settings.json`).
    Droid,
}

impl Tool {
    /// Every tool, in the order setup reports them.
    pub const ALL: [Tool; 4] = [Tool::Claude, Tool::Codex, Tool::Cursor, Tool::Droid];

    /// The tool's name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Claude => "Claude Code",
            Tool::Codex => "Codex CLI",
            Tool::Cursor => "Cursor",
            Tool::Droid => "Factory Droid",
        }
    }

    /// The file setup edits.
    pub fn config_path(self, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
        let home = crate::config::home_dir(env);
        match self {
            Tool::Claude => env("CLAUDE_CONFIG_DIR")
                // A comma list (honoured for transcripts) names several dirs; the first is
                // the one Claude Code writes its settings to.
                .and_then(|v| {
                    v.split(',')
                        .map(str::trim)
                        .find(|d| !d.is_empty())
                        .map(String::from)
                })
                .map(|d| crate::sources::expand_tilde(&d, &home))
                .unwrap_or_else(|| home.join(".claude"))
                .join("settings.json"),
            Tool::Codex => env("CODEX_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".codex"))
                .join("config.toml"),
            Tool::Cursor => home.join(".cursor/hooks.json"),
            Tool::Droid => home.join(".factory/settings.json"),
        }
    }

    /// The text with our hooks added (empty text = no file yet). Idempotent: an existing
    /// opensyncd entry is updated in place (a new binary path), never duplicated. The note
    /// says why something was left alone.
    pub fn add(self, text: &str, binary: &str) -> Result<(String, Option<String>)> {
        match self {
            Tool::Claude => claude_style_add(text, binary, &CLAUDE_EVENTS, "").map(|t| (t, None)),
            Tool::Droid => {
                claude_style_add(text, binary, &DROID_EVENTS, "droid ").map(|t| (t, None))
            }
            Tool::Cursor => cursor_add(text, binary).map(|t| (t, None)),
            Tool::Codex => codex_add(text, binary),
        }
    }

    /// The text with our hooks taken out (and nothing else).
    pub fn remove(self, text: &str) -> Result<String> {
        match self {
            Tool::Claude => claude_style_remove(text, &CLAUDE_EVENTS, ""),
            Tool::Droid => claude_style_remove(text, &DROID_EVENTS, "droid "),
            Tool::Cursor => cursor_remove(text),
            Tool::Codex => codex_remove(text),
        }
    }
}

/// The shell command a tool runs for `event`: `<binary> hook <prefix><event>`, the binary
/// quoted for the shell when it needs it.
pub fn hook_command(binary: &str, prefix: &str, event: &str) -> String {
    let plain = binary
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b));
    if plain {
        format!("{binary} hook {prefix}{event}")
    } else {
        format!("'{}' hook {prefix}{event}", binary.replace('\'', r"'\''"))
    }
}

/// The Claude Code command for `event` (kept for callers of the old name).
pub fn claude_hook_command(binary: &str, event: &str) -> String {
    hook_command(binary, "", event)
}

/// Is this command one of ours for one of `events` (any binary path)?
fn is_our_command(command: &str, prefix: &str, events: &[&str]) -> bool {
    let command = command.trim();
    events.iter().any(|event| {
        command
            .strip_suffix(&format!(" hook {prefix}{event}"))
            .map(|bin| bin.trim_matches('\'').ends_with("opensyncd"))
            .unwrap_or(false)
    })
}

fn parse_json_settings(text: &str, file: &str) -> Result<(String, Node)> {
    let text = if text.trim().is_empty() {
        "{}\n".to_string()
    } else {
        text.to_string()
    };
    let root = json_edit::parse(&text)
        .with_context(|| format!("{file} is not valid JSON; fix it first"))?;
    if !root.is_object() {
        bail!("{file} is not a JSON object; fix it first");
    }
    Ok((text, root))
}

/// Claude Code / Factory Droid: `{"hooks": {"<Event>": [{"hooks": [{"type": "command",
/// "command": …, "timeout": 5}]}]}}`.
fn claude_style_add(text: &str, binary: &str, events: &[&str], prefix: &str) -> Result<String> {
    let group = |event: &str| {
        Value::object([(
            "hooks",
            Value::Array(vec![Value::object([
                ("type", Value::string("command")),
                (
                    "command",
                    Value::string(hook_command(binary, prefix, event)),
                ),
                ("timeout", Value::Integer(5)),
            ])]),
        )])
    };
    let hooks = HooksFile {
        name: "settings.json",
        events,
        prefix,
        entry: &group,
        commands: claude_style_commands,
    };
    hooks.add(text, binary)
}

/// The commands of one event's groups in a Claude-style file (`[{"hooks": [{"command": …}]}]`).
fn claude_style_commands(groups: &Node) -> Vec<&Node> {
    groups
        .elements()
        .iter()
        .filter_map(|g| g.member("hooks"))
        .flat_map(|(_, list)| list.value.elements())
        .filter_map(|hook| hook.member("command"))
        .map(|(_, c)| &c.value)
        .collect()
}

/// Removes exactly our hooks; groups, events and `hooks` left empty by that go too.
fn claude_style_remove(text: &str, events: &[&str], prefix: &str) -> Result<String> {
    remove_hooks(text, "settings.json", |text, root, hooks_index, hooks| {
        for (event_index, event) in hooks.members().iter().enumerate() {
            for (group_index, group) in event.value.elements().iter().enumerate() {
                let Some((_, list)) = group.member("hooks") else {
                    continue;
                };
                let list = &list.value;
                for (hook_index, hook) in list.elements().iter().enumerate() {
                    let ours = hook
                        .member("command")
                        .and_then(|(_, c)| c.value.as_str())
                        .is_some_and(|c| is_our_command(c, prefix, events));
                    if !ours {
                        continue;
                    }
                    // The smallest thing that holds only ours goes.
                    return Some(if list.elements().len() > 1 {
                        json_edit::remove_element(text, list, hook_index)
                    } else if event.value.elements().len() > 1 {
                        json_edit::remove_element(text, &event.value, group_index)
                    } else if hooks.members().len() > 1 {
                        json_edit::remove_member(text, hooks, event_index)
                    } else {
                        json_edit::remove_member(text, root, hooks_index)
                    });
                }
            }
        }
        None
    })
}

/// Cursor: `{"version": 1, "hooks": {"<event>": [{"command": …}]}}`.
fn cursor_add(text: &str, binary: &str) -> Result<String> {
    let entry = |event: &str| {
        Value::object([(
            "command",
            Value::string(hook_command(binary, "cursor ", event)),
        )])
    };
    if text.trim().is_empty() {
        let hooks = Value::Object(
            CURSOR_EVENTS
                .iter()
                .map(|e| (e.to_string(), Value::Array(vec![entry(e)])))
                .collect(),
        );
        return Ok(Style::of("").document(&Value::Object(vec![
            ("version".into(), Value::Integer(1)),
            ("hooks".into(), hooks),
        ])));
    }
    let hooks = HooksFile {
        name: "hooks.json",
        events: &CURSOR_EVENTS,
        prefix: "cursor ",
        entry: &entry,
        commands: cursor_commands,
    };
    hooks.add(text, binary)
}

/// The commands of one event's entries in Cursor's file (`[{"command": …}]`).
fn cursor_commands(list: &Node) -> Vec<&Node> {
    list.elements()
        .iter()
        .filter_map(|e| e.member("command"))
        .map(|(_, c)| &c.value)
        .collect()
}

fn cursor_remove(text: &str) -> Result<String> {
    remove_hooks(text, "hooks.json", |text, root, hooks_index, hooks| {
        for (event_index, event) in hooks.members().iter().enumerate() {
            for (entry_index, entry) in event.value.elements().iter().enumerate() {
                let ours = entry
                    .member("command")
                    .and_then(|(_, c)| c.value.as_str())
                    .is_some_and(|c| is_our_command(c, "cursor ", &CURSOR_EVENTS));
                if !ours {
                    continue;
                }
                return Some(if event.value.elements().len() > 1 {
                    json_edit::remove_element(text, &event.value, entry_index)
                } else if hooks.members().len() > 1 {
                    json_edit::remove_member(text, hooks, event_index)
                } else {
                    json_edit::remove_member(text, root, hooks_index)
                });
            }
        }
        None
    })
}

/// A JSON hooks file (Claude Code, Droid, Cursor): `{"hooks": {"<event>": [...]}}`, where
/// the tools differ only in what an event's list holds.
struct HooksFile<'a> {
    /// The file's name, for errors.
    name: &'a str,
    /// The events we hook.
    events: &'a [&'a str],
    /// What our command says before the event (`droid `, `cursor `).
    prefix: &'a str,
    /// What runs our hook for an event, as the list holds it.
    entry: &'a dyn Fn(&str) -> Value,
    /// The command values an event's list holds.
    commands: fn(&Node) -> Vec<&Node>,
}

impl HooksFile<'_> {
    /// Adds our hook to every event that lacks it and updates a stale one (another binary
    /// path), touching nothing else.
    fn add(&self, text: &str, binary: &str) -> Result<String> {
        let style = Style::of(text);
        let (mut text, _) = parse_json_settings(text, self.name)?;
        // One edit per pass, re-parsed after each: spans move when text is inserted.
        'pass: loop {
            let root = json_edit::parse(&text)?;
            let Some((_, hooks)) = root.member("hooks") else {
                let all = Value::Object(
                    self.events
                        .iter()
                        .map(|e| (e.to_string(), Value::Array(vec![(self.entry)(e)])))
                        .collect(),
                );
                text = json_edit::insert_member(&text, &root, "hooks", &all, &style);
                continue;
            };
            let hooks = &hooks.value;
            if !hooks.is_object() {
                bail!("`hooks` in {} is not an object", self.name);
            }
            for event in self.events {
                let wanted = hook_command(binary, self.prefix, event);
                let Some((_, list)) = hooks.member(event) else {
                    text = json_edit::insert_member(
                        &text,
                        hooks,
                        event,
                        &Value::Array(vec![(self.entry)(event)]),
                        &style,
                    );
                    continue 'pass;
                };
                let list = &list.value;
                if !list.is_array() {
                    bail!("`hooks.{event}` in {} is not a list", self.name);
                }
                let ours: Vec<&Node> = (self.commands)(list)
                    .into_iter()
                    .filter(|c| {
                        c.as_str()
                            .is_some_and(|s| is_our_command(s, self.prefix, &[event]))
                    })
                    .collect();
                if ours.is_empty() {
                    text = json_edit::append_element(&text, list, &(self.entry)(event), &style);
                    continue 'pass;
                }
                if let Some(stale) = ours.iter().find(|c| c.as_str() != Some(wanted.as_str())) {
                    let quoted = serde_json::Value::String(wanted.clone()).to_string();
                    text = json_edit::splice(&text, stale.span.clone(), &quoted);
                    continue 'pass;
                }
            }
            return Ok(text);
        }
    }
}

/// Removes our hooks from a JSON hooks file one edit at a time: `next_edit` gets the text, its
/// root, the index of `hooks` among the root's members and `hooks` itself, and returns the text
/// with one of ours removed, or `None` when none is left.
fn remove_hooks(
    text: &str,
    file: &str,
    next_edit: impl Fn(&str, &Node, usize, &Node) -> Option<String>,
) -> Result<String> {
    if text.trim().is_empty() {
        return Ok(text.to_string());
    }
    let (mut text, _) = parse_json_settings(text, file)?;
    loop {
        let root = json_edit::parse(&text)?;
        let Some((hooks_index, hooks)) = root.member("hooks") else {
            return Ok(text);
        };
        match next_edit(&text, &root, hooks_index, &hooks.value) {
            Some(new) => text = new,
            None => return Ok(text),
        }
    }
}

fn is_our_codex_notify(value: &toml_edit::Item) -> bool {
    let Some(array) = value.as_array() else {
        return false;
    };
    let parts: Vec<&str> = array.iter().filter_map(|v| v.as_str()).collect();
    parts.len() == 3
        && parts[0].ends_with("opensyncd")
        && parts[1] == "hook"
        && parts[2] == CODEX_EVENT
}

/// Sets Codex's `notify` to our hook. Someone else's notify program is left alone (Codex runs
/// only one): the text comes back unchanged with a note saying so.
pub fn codex_add(text: &str, binary: &str) -> Result<(String, Option<String>)> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .context("config.toml is not valid TOML; fix it first")?;
    if let Some(existing) = doc.get("notify")
        && !is_our_codex_notify(existing)
    {
        let shown = existing
            .as_value()
            .map(|v| {
                let mut v = v.clone();
                v.decor_mut().clear();
                v.to_string()
            })
            .unwrap_or_else(|| existing.to_string());
        return Ok((
            text.to_string(),
            Some(format!(
                "already runs another notify program ({}); left alone, as Codex runs only one. \
                 Codex sessions still sync through the file watcher; to use opensyncd's hook \
                 instead, remove that `notify` line and run setup again",
                shown.trim()
            )),
        ));
    }
    let mut array = toml_edit::Array::new();
    array.push(binary);
    array.push("hook");
    array.push(CODEX_EVENT);
    doc["notify"] = toml_edit::value(array);
    Ok((doc.to_string(), None))
}

/// Removes `notify` when it is ours; anything else is left alone.
pub fn codex_remove(text: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .context("config.toml is not valid TOML; fix it first")?;
    if doc.get("notify").is_some_and(is_our_codex_notify) {
        doc.remove("notify");
    }
    Ok(doc.to_string())
}

/// What setup does to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Write these contents (the first backup is kept).
    Write(String),
    /// Give back the original bytes (the backup's) and drop the backup: nothing but our
    /// entries changed since setup.
    Restore(String),
    /// Delete the file: setup created it and nothing else changed since.
    Delete,
}

/// What setup would do (or did) to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The tool.
    pub tool: Tool,
    /// The file.
    pub path: PathBuf,
    /// The change.
    pub change: Change,
    /// One line for the user.
    pub summary: String,
}

/// Plans the edit for one tool. `explicit`: the user named this tool, so a missing tool is
/// an error rather than a skip. `Ok(None)`: not installed here.
pub fn plan(
    tool: Tool,
    env: &dyn Fn(&str) -> Option<String>,
    binary: &str,
    remove: bool,
    explicit: bool,
) -> Result<Option<Edit>> {
    let path = tool.config_path(env);
    let name = tool.name();
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        if explicit {
            bail!(
                "{name} does not seem to be installed: {} does not exist",
                dir.display()
            );
        }
        return Ok(None);
    }
    let existing = match std::fs::read(&path) {
        Ok(bytes) => Some(
            String::from_utf8(bytes)
                .with_context(|| format!("{name}: {} is not UTF-8 text", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let old = existing.clone().unwrap_or_default();
    let shown = path.display();
    let edit = |change: Change, summary: String| {
        Ok(Some(Edit {
            tool,
            path: path.clone(),
            change,
            summary,
        }))
    };
    if remove {
        if existing.is_none() {
            return edit(
                Change::None,
                format!("{name}: {shown} does not exist; nothing to remove"),
            );
        }
        // Nothing changed since setup but our entries: the original bytes come back.
        let backup = backup_path(&path);
        match std::fs::read(&backup) {
            Ok(bytes) => {
                if let Ok(original) = String::from_utf8(bytes)
                    && tool.add(&original, binary).is_ok_and(|(t, _)| t == old)
                {
                    return edit(
                        Change::Restore(original),
                        format!("{name}: {shown} restored to its original bytes"),
                    );
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && tool.add("", binary).is_ok_and(|(t, _)| t == old) =>
            {
                return edit(
                    Change::Delete,
                    format!("{name}: {shown} removed (setup had created it)"),
                );
            }
            Err(_) => {}
        }
        let new = tool
            .remove(&old)
            .with_context(|| format!("{name}: {shown}"))?;
        return if new == old {
            edit(
                Change::None,
                format!("{name}: {shown} has no opensyncd hooks"),
            )
        } else {
            edit(
                Change::Write(new),
                format!("{name}: opensyncd's hooks removed from {shown}"),
            )
        };
    }
    let (new, note) = tool
        .add(&old, binary)
        .with_context(|| format!("{name}: {shown}"))?;
    if let Some(note) = note {
        return edit(Change::None, format!("{name}: {shown} {note}"));
    }
    if new == old {
        edit(Change::None, format!("{name}: {shown} already as wanted"))
    } else {
        edit(Change::Write(new), format!("{name}: {shown} updated"))
    }
}

/// Plans the edit for Claude Code (kept for callers of the old name).
pub fn plan_claude(
    env: &dyn Fn(&str) -> Option<String>,
    binary: &str,
    remove: bool,
    explicit: bool,
) -> Result<Option<Edit>> {
    plan(Tool::Claude, env, binary, remove, explicit)
}

/// Plans the edit for Codex (kept for callers of the old name).
pub fn plan_codex(
    env: &dyn Fn(&str) -> Option<String>,
    binary: &str,
    remove: bool,
    explicit: bool,
) -> Result<Option<Edit>> {
    plan(Tool::Codex, env, binary, remove, explicit)
}

/// Carries out an edit. A write keeps the first backup (`<file>.opensyncd-backup`, never
/// overwritten) and replaces the file atomically, keeping its permissions; a restore or a
/// delete also drops the backup, so nothing of setup is left.
pub fn apply(edit: &Edit) -> Result<()> {
    let path = &edit.path;
    let backup = backup_path(path);
    match &edit.change {
        Change::None => Ok(()),
        Change::Write(contents) => {
            if path.exists() && !backup.exists() {
                std::fs::copy(path, &backup).with_context(|| {
                    format!("backing up {} to {}", path.display(), backup.display())
                })?;
            }
            write_keeping_permissions(path, contents)
        }
        Change::Restore(original) => {
            write_keeping_permissions(path, original)?;
            remove_if_present(&backup)
        }
        Change::Delete => {
            remove_if_present(path)?;
            remove_if_present(&backup)
        }
    }
}

fn write_keeping_permissions(path: &Path, contents: &str) -> Result<()> {
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let tmp = path.with_extension("opensyncd-tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    if let Some(permissions) = permissions {
        std::fs::set_permissions(&tmp, permissions)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// `<file>.opensyncd-backup`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(BACKUP_SUFFIX);
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_add_is_idempotent_and_updates_the_path() {
        let (once, _) = Tool::Claude.add("", "/a/opensyncd").unwrap();
        let (twice, _) = Tool::Claude.add(&once, "/b/opensyncd").unwrap();
        let v: serde_json::Value = serde_json::from_str(&twice).unwrap();
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 1);
        assert_eq!(stop[0]["hooks"][0]["command"], "/b/opensyncd hook Stop");
        assert_eq!(Tool::Claude.add(&twice, "/b/opensyncd").unwrap().0, twice);
        assert_eq!(Tool::Claude.remove(&twice).unwrap(), "{}\n");
    }

    #[test]
    fn quoted_binary_paths_are_recognised_as_ours() {
        let cmd = claude_hook_command("/Users/me/my bin/opensyncd", "Stop");
        assert_eq!(cmd, "'/Users/me/my bin/opensyncd' hook Stop");
        assert!(is_our_command(&cmd, "", &CLAUDE_EVENTS));
        assert!(!is_our_command("other-tool hook Stop", "", &CLAUDE_EVENTS));
        let droid = hook_command("/x/opensyncd", "droid ", "Stop");
        assert!(is_our_command(&droid, "droid ", &DROID_EVENTS));
        assert!(!is_our_command(&droid, "", &CLAUDE_EVENTS));
    }

    #[test]
    fn codex_leaves_a_foreign_notify_alone_with_a_note() {
        let theirs = "notify = [\"notify-send\", \"done\"]  # mine\n";
        let (text, note) = codex_add(theirs, "/x/opensyncd").unwrap();
        assert_eq!(text, theirs);
        let note = note.unwrap();
        assert!(
            note.contains("another notify program ([\"notify-send\", \"done\"])"),
            "{note}"
        );
        assert!(!note.contains("  "), "no runs of spaces: {note}");
    }

    #[test]
    fn cursor_entries_sit_beside_the_users_own() {
        let mine = "{\n  \"version\": 1,\n  \"hooks\": {\n    \"stop\": [\n      { \"command\": \"./hooks/audit.sh\", \"loop_limit\": 5 }\n    ]\n  }\n}\n";
        let (added, _) = Tool::Cursor.add(mine, "/x/opensyncd").unwrap();
        let v: serde_json::Value = serde_json::from_str(&added).unwrap();
        assert_eq!(v["hooks"]["stop"][0]["command"], "./hooks/audit.sh");
        assert_eq!(
            v["hooks"]["stop"][1]["command"],
            "/x/opensyncd hook cursor stop"
        );
        for event in CURSOR_EVENTS {
            assert_eq!(
                v["hooks"][event].as_array().unwrap().last().unwrap()["command"],
                format!("/x/opensyncd hook cursor {event}")
            );
        }
        assert_eq!(Tool::Cursor.remove(&added).unwrap(), mine);
        let (fresh, _) = Tool::Cursor.add("", "/x/opensyncd").unwrap();
        let v: serde_json::Value = serde_json::from_str(&fresh).unwrap();
        assert_eq!(v["version"], 1);
    }

    /// An install made when fewer events were hooked gains the new ones on `setup` again,
    /// without a second entry for the events it had, and `--remove` takes all of them out.
    #[test]
    fn an_older_cursor_install_gains_the_new_events_once() {
        let older_events = [
            "beforeSubmitPrompt",
            "afterAgentResponse",
            "stop",
            "beforeShellExecution",
            "afterShellExecution",
            "preToolUse",
            "postToolUse",
            "afterFileEdit",
        ];
        let hooks: serde_json::Map<String, serde_json::Value> = older_events
            .iter()
            .map(|e| {
                (
                    e.to_string(),
                    serde_json::json!([{ "command": format!("/x/opensyncd hook cursor {e}") }]),
                )
            })
            .collect();
        let older =
            serde_json::to_string_pretty(&serde_json::json!({"version": 1, "hooks": hooks}))
                .unwrap()
                + "\n";
        let (upgraded, _) = Tool::Cursor.add(&older, "/x/opensyncd").unwrap();
        let v: serde_json::Value = serde_json::from_str(&upgraded).unwrap();
        for event in ["afterAgentThought", "postToolUseFailure", "sessionEnd"] {
            assert_eq!(
                v["hooks"][event],
                serde_json::json!([{ "command": format!("/x/opensyncd hook cursor {event}") }]),
                "{event}"
            );
        }
        for event in older_events {
            assert_eq!(v["hooks"][event].as_array().unwrap().len(), 1, "{event}");
        }
        let removed: serde_json::Value =
            serde_json::from_str(&Tool::Cursor.remove(&upgraded).unwrap()).unwrap();
        assert_eq!(removed, serde_json::json!({"version": 1}));
    }

    #[test]
    fn bad_files_are_refused_in_words() {
        let err = Tool::Claude
            .add("{\"hooks\": [1]}", "/x/opensyncd")
            .unwrap_err();
        assert!(format!("{err:#}").contains("not an object"), "{err:#}");
        let err = Tool::Claude.add("{oops", "/x/opensyncd").unwrap_err();
        assert!(format!("{err:#}").contains("not valid JSON"), "{err:#}");
        let err = Tool::Cursor.add("[]", "/x/opensyncd").unwrap_err();
        assert!(format!("{err:#}").contains("not a JSON object"), "{err:#}");
    }
}
