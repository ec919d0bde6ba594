//! Adds and removes the tools' hooks that nudge the running daemon right after each turn:
//! Claude Code command hooks in `settings.json` and Codex's `notify` program in `config.toml`.
//!
//! The hooks are an optimisation: the watcher sees every change anyway. So setup merges into
//! the user's files without touching anything else (other hooks, comments and formatting in
//! TOML), keeps a backup of the previous version beside the file, and `--remove` takes out
//! exactly the entries it recognises as its own (a command that runs `opensyncd hook ...`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};

/// The Claude Code events we hook: after every assistant turn, and at the end of a session.
pub const CLAUDE_EVENTS: [&str; 2] = ["Stop", "SessionEnd"];
/// The event name Codex's notify passes to `opensyncd hook`.
pub const CODEX_EVENT: &str = "codex-notify";
/// Suffix of the backup kept beside each edited file.
pub const BACKUP_SUFFIX: &str = "opensyncd-backup";

/// What setup would do (or did) to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// The tool ("Claude Code", "Codex CLI").
    pub tool: &'static str,
    /// The file.
    pub path: PathBuf,
    /// The new contents, or None when nothing changes.
    pub new_contents: Option<String>,
    /// One line for the user.
    pub summary: String,
}

/// Where Claude Code keeps its user settings.
pub fn claude_settings_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("CLAUDE_CONFIG_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::config::home_dir(env).join(".claude"))
        .join("settings.json")
}

/// Where Codex keeps its config.
pub fn codex_config_path(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    env("CODEX_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::config::home_dir(env).join(".codex"))
        .join("config.toml")
}

/// The shell command Claude Code runs for `event` (the binary path quoted for the shell).
pub fn claude_hook_command(binary: &str, event: &str) -> String {
    let plain = binary
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b));
    if plain {
        format!("{binary} hook {event}")
    } else {
        format!("'{}' hook {event}", binary.replace('\'', r"'\''"))
    }
}

/// Is this hook command one of ours (any binary path, any of our events)?
fn is_our_claude_command(command: &str) -> bool {
    let command = command.trim();
    CLAUDE_EVENTS.iter().any(|event| {
        command
            .strip_suffix(&format!(" hook {event}"))
            .map(|bin| bin.trim_matches('\'').ends_with("opensyncd"))
            .unwrap_or(false)
    })
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

/// Adds our hooks to Claude Code settings text (empty text = a new file). Idempotent: an
/// existing opensyncd hook is updated in place, never duplicated.
pub fn claude_add(text: &str, binary: &str) -> Result<String> {
    let mut root = parse_settings(text)?;
    let obj = root
        .as_object_mut()
        .context("settings.json is not a JSON object")?;
    let hooks = obj
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .context("`hooks` in settings.json is not an object")?;
    for event in CLAUDE_EVENTS {
        let wanted = claude_hook_command(binary, event);
        let groups = hooks
            .entry(event)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .with_context(|| format!("`hooks.{event}` in settings.json is not a list"))?;
        let mut found = false;
        for group in groups.iter_mut() {
            if let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) {
                for hook in list.iter_mut() {
                    if hook
                        .get("command")
                        .and_then(Value::as_str)
                        .is_some_and(is_our_claude_command)
                    {
                        hook["command"] = Value::String(wanted.clone());
                        found = true;
                    }
                }
            }
        }
        if !found {
            groups.push(json!({
                "hooks": [{ "type": "command", "command": wanted, "timeout": 5 }]
            }));
        }
    }
    render_settings(&root)
}

/// Removes exactly our hooks; groups, events and `hooks` left empty by that go too.
pub fn claude_remove(text: &str) -> Result<String> {
    let mut root = parse_settings(text)?;
    let Some(hooks) = root.get_mut("hooks").and_then(Value::as_object_mut) else {
        return render_settings(&root);
    };
    let mut emptied_events = Vec::new();
    for (event, groups) in hooks.iter_mut() {
        let Some(groups) = groups.as_array_mut() else {
            continue;
        };
        let before = groups.len();
        let mut removed_any = false;
        groups.retain_mut(|group| {
            let Some(list) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
                return true;
            };
            let n = list.len();
            list.retain(|hook| {
                !hook
                    .get("command")
                    .and_then(Value::as_str)
                    .is_some_and(is_our_claude_command)
            });
            if list.len() != n {
                removed_any = true;
                return !list.is_empty();
            }
            true
        });
        if removed_any && groups.is_empty() && before > 0 {
            emptied_events.push(event.clone());
        }
    }
    for event in emptied_events {
        hooks.remove(&event);
    }
    if hooks.is_empty() {
        root.as_object_mut().map(|o| o.remove("hooks"));
    }
    render_settings(&root)
}

fn parse_settings(text: &str) -> Result<Value> {
    if text.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(text).context("settings.json is not valid JSON; fix it first")
}

fn render_settings(value: &Value) -> Result<String> {
    let mut out = serde_json::to_string_pretty(value)?;
    out.push('\n');
    Ok(out)
}

/// Sets Codex's `notify` to our hook. Refuses to replace someone else's notify program
/// (Codex runs only one).
pub fn codex_add(text: &str, binary: &str) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .context("config.toml is not valid TOML; fix it first")?;
    if let Some(existing) = doc.get("notify")
        && !is_our_codex_notify(existing)
    {
        bail!(
            "Codex already runs another notify program ({}); Codex allows only one. \
             opensyncd still syncs Codex sessions through its file watcher; to use its hook \
             instead, remove that `notify` line and run setup again",
            existing.to_string().trim()
        );
    }
    let mut array = toml_edit::Array::new();
    array.push(binary);
    array.push("hook");
    array.push(CODEX_EVENT);
    doc["notify"] = toml_edit::value(array);
    Ok(doc.to_string())
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

/// Plans the edit for one tool. `explicit`: the user named this tool, so a missing tool is
/// an error rather than a skip.
pub fn plan_claude(
    env: &dyn Fn(&str) -> Option<String>,
    binary: &str,
    remove: bool,
    explicit: bool,
) -> Result<Option<Edit>> {
    let path = claude_settings_path(env);
    plan_file("Claude Code", path, explicit, |text| {
        if remove {
            claude_remove(text)
        } else {
            claude_add(text, binary)
        }
    })
}

/// Plans the edit for Codex.
pub fn plan_codex(
    env: &dyn Fn(&str) -> Option<String>,
    binary: &str,
    remove: bool,
    explicit: bool,
) -> Result<Option<Edit>> {
    let path = codex_config_path(env);
    plan_file("Codex CLI", path, explicit, |text| {
        if remove {
            codex_remove(text)
        } else {
            codex_add(text, binary)
        }
    })
}

fn plan_file(
    tool: &'static str,
    path: PathBuf,
    explicit: bool,
    change: impl FnOnce(&str) -> Result<String>,
) -> Result<Option<Edit>> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        if explicit {
            bail!(
                "{tool} does not seem to be installed: {} does not exist",
                dir.display()
            );
        }
        return Ok(None);
    }
    let old = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new = change(&old).with_context(|| format!("{tool}: {}", path.display()))?;
    let unchanged = new == old || (old.is_empty() && new.trim() == "{}");
    Ok(Some(Edit {
        tool,
        summary: if unchanged {
            format!("{tool}: {} already as wanted", path.display())
        } else {
            format!("{tool}: {} updated", path.display())
        },
        new_contents: (!unchanged).then_some(new),
        path,
    }))
}

/// Writes an edit: the previous version goes to `<file>.opensyncd-backup`, the new one is
/// written beside the file and renamed over it (keeping the file's permissions).
pub fn apply(edit: &Edit) -> Result<()> {
    let Some(contents) = &edit.new_contents else {
        return Ok(());
    };
    let path = &edit.path;
    let backup = backup_path(path);
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    if path.exists() {
        std::fs::copy(path, &backup)
            .with_context(|| format!("backing up {} to {}", path.display(), backup.display()))?;
    }
    let tmp = path.with_extension("opensyncd-tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    if let Some(permissions) = permissions {
        std::fs::set_permissions(&tmp, permissions)?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
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
        let once = claude_add("", "/a/opensyncd").unwrap();
        let twice = claude_add(&once, "/b/opensyncd").unwrap();
        let v: Value = serde_json::from_str(&twice).unwrap();
        let stop = v["hooks"]["Stop"].as_array().unwrap();
        assert_eq!(stop.len(), 1);
        assert_eq!(stop[0]["hooks"][0]["command"], "/b/opensyncd hook Stop");
        assert_eq!(claude_remove(&twice).unwrap().trim(), "{}");
    }

    #[test]
    fn quoted_binary_paths_are_recognised_as_ours() {
        let cmd = claude_hook_command("/Users/me/my bin/opensyncd", "Stop");
        assert_eq!(cmd, "'/Users/me/my bin/opensyncd' hook Stop");
        assert!(is_our_claude_command(&cmd));
        assert!(!is_our_claude_command("other-tool hook Stop"));
    }

    #[test]
    fn codex_refuses_a_foreign_notify() {
        let err = codex_add("notify = [\"notify-send\", \"done\"]\n", "/x/opensyncd").unwrap_err();
        assert!(format!("{err:#}").contains("another notify program"));
    }
}
