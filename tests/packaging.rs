//! Where opensyncd lives on a user's machine: the systemd unit and LaunchAgent it renders, the
//! `service` commands against a service manager faked only at the process boundary (a stub
//! `systemctl`/`launchctl` on PATH), `setup`'s reversible hook edits, the hook's speed, and
//! the committed completions and man page.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::home::{TestHome, binary};

/// Every file and directory under `root` with its contents (directories as None).
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else {
                out.insert(rel, Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}

/// A stub service manager: logs its arguments, answers the status queries.
fn stub_manager(dir: &Path, name: &str, log: &Path) {
    let script = format!(
        "#!/bin/sh\necho \"{name} $*\" >> '{}'\ncase \"$*\" in\n  *is-active*) echo active;;\n  \
         *is-enabled*) echo enabled;;\n  print*) echo '    state = running';;\nesac\nexit 0\n",
        log.display()
    );
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A home whose PATH starts with a directory of stub service managers.
fn service_home(manager: &str) -> (TestHome, PathBuf) {
    let base = TestHome::new();
    let stubs = base.home.join("stub-bin");
    std::fs::create_dir_all(&stubs).unwrap();
    let log = base.home.join("stub.log");
    stub_manager(&stubs, "systemctl", &log);
    stub_manager(&stubs, "launchctl", &log);
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = base
        .with_env("PATH", path)
        .with_env("OPENSYNCD_SERVICE_MANAGER", manager);
    (home, log)
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = opensyncd::service::render_systemd_unit(binary().to_str().unwrap());
    assert!(unit.contains(&format!("ExecStart={} run\n", binary().display())));
    for required in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StartLimitBurst=",
        "WantedBy=default.target",
    ] {
        assert!(unit.contains(required), "unit lacks {required}");
    }
    let available = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        eprintln!("systemd-analyze not installed: only the unit's keys were checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opensyncd.service");
    std::fs::write(&path, &unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are warnings with exit code 0: any line naming the unit
    // is a finding.
    let findings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("opensyncd.service"))
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );
}

#[test]
fn the_launch_agent_is_a_valid_plist_with_the_required_keys() {
    let text = opensyncd::service::render_launchd_plist(
        "/Users/dev/.cargo/bin/opensyncd",
        "/Users/dev/Library/Logs/opensyncd.log",
    );
    let value = plist::Value::from_reader_xml(text.as_bytes()).expect("valid XML plist");
    let dict = value.as_dictionary().expect("a dictionary");
    assert_eq!(
        dict.get("Label").and_then(|v| v.as_string()),
        Some(opensyncd::service::LAUNCHD_LABEL)
    );
    let args: Vec<&str> = dict["ProgramArguments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    assert_eq!(args, ["/Users/dev/.cargo/bin/opensyncd", "run"]);
    assert_eq!(dict["RunAtLoad"].as_boolean(), Some(true));
    let keep_alive = dict["KeepAlive"].as_dictionary().expect("KeepAlive dict");
    assert_eq!(keep_alive["SuccessfulExit"].as_boolean(), Some(false));
    assert!(dict["ThrottleInterval"].as_signed_integer().unwrap() >= 10);
    assert_eq!(dict["ProcessType"].as_string(), Some("Background"));
    for key in ["StandardOutPath", "StandardErrorPath"] {
        assert_eq!(
            dict[key].as_string(),
            Some("/Users/dev/Library/Logs/opensyncd.log")
        );
    }
}

#[test]
fn service_install_dry_run_prints_the_files_and_commands_and_changes_nothing() {
    let (home, log) = service_home("systemd");
    let before = tree(&home.home);
    let out = home.ok(&["service", "install", "--dry-run"]);
    let unit = home.home.join(".config/systemd/user/opensyncd.service");
    assert!(out.contains(&format!("write {}:", unit.display())), "{out}");
    assert!(
        out.contains(&format!("ExecStart={} run", binary().display())),
        "{out}"
    );
    for cmd in [
        "run: systemctl --user daemon-reload",
        "run: systemctl --user enable opensyncd.service",
        "run: systemctl --user restart opensyncd.service",
    ] {
        assert!(out.contains(cmd), "dry run lacks `{cmd}`:\n{out}");
    }
    let out = home.ok(&["service", "uninstall", "--dry-run"]);
    assert!(out.contains(&format!("remove {}", unit.display())), "{out}");
    assert!(out.contains("run: systemctl --user disable --now opensyncd.service"));
    assert_eq!(tree(&home.home), before, "a dry run changed files");
    assert!(!log.exists(), "a dry run ran the service manager");
}

#[test]
fn systemd_install_then_uninstall_leaves_nothing_behind() {
    let (home, log) = service_home("systemd");
    // ~/.config exists on any desktop; install creates only systemd/user inside it.
    std::fs::create_dir_all(home.home.join(".config")).unwrap();
    let before = tree(&home.home);
    home.ok(&["service", "install"]);
    let unit = home.home.join(".config/systemd/user/opensyncd.service");
    let text = std::fs::read_to_string(&unit).expect("unit written");
    assert!(text.contains(&format!("ExecStart={} run", binary().display())));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            // Checked first, so that an install never stops half-way.
            "systemctl --user show-environment",
            "systemctl --user daemon-reload",
            "systemctl --user enable opensyncd.service",
            "systemctl --user restart opensyncd.service",
        ]
    );

    // `service status`, `status` and `verify` all report it.
    let status = home.ok(&["service", "status"]);
    assert!(status.contains("enabled, active"), "{status}");
    let overall = home.status(&[]);
    assert!(overall.contains("service"), "{overall}");
    let verify = home.run(&["verify"]);
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains("ok   service: systemd user unit"),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    home.ok(&["service", "uninstall"]);
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("systemctl --user disable --now opensyncd.service"));
    std::fs::remove_file(&log).unwrap();
    // Anything opensyncd's own commands created under its home is not the service's.
    let mut after = tree(&home.home);
    after.retain(|p, _| !p.starts_with(".opensyncd-test"));
    let mut before = before;
    before.retain(|p, _| !p.starts_with(".opensyncd-test"));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
}

#[test]
fn launchd_install_then_uninstall_leaves_nothing_behind() {
    let (home, log) = service_home("launchd");
    let agents = home.home.join("Library/LaunchAgents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::create_dir_all(home.home.join("Library/Logs")).unwrap();
    let before = tree(&home.home);
    home.ok(&["service", "install"]);
    let plist_path = agents.join("dev.opensyncd.opensyncd.plist");
    let value = plist::Value::from_file(&plist_path).expect("plist written");
    let args = value.as_dictionary().unwrap()["ProgramArguments"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(args[0].as_string(), binary().to_str());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains(&format!(
        "launchctl bootstrap gui/{} {}",
        std::fs::metadata(&home.home).map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid()
        })
        .unwrap(),
        plist_path.display()
    )));
    home.ok(&["service", "uninstall"]);
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("launchctl bootout gui/")
    );
    std::fs::remove_file(&log).unwrap();
    assert_eq!(tree(&home.home), before);
}

const CLAUDE_SETTINGS: &str = r#"{
  "$schema": "https://json.schemastore.org/claude-code-settings.json",
  "model": "opus",
  "permissions": {
    "allow": ["Bash(npm run lint)", "Read(~/.zshrc)"],
    "deny": ["Read(./.env)"]
  },
  "hooks": {
    "PreToolUse": [
      {
        "matcher": "Bash",
        "hooks": [{ "type": "command", "command": "~/.claude/hooks/check-bash.sh" }]
      }
    ],
    "Stop": [
      {
        "hooks": [{ "type": "command", "command": "afplay /System/Library/Sounds/Glass.aiff" }]
      }
    ]
  },
  "env": { "DISABLE_TELEMETRY": "1" },
  "statusLine": { "type": "command", "command": "~/.claude/statusline.sh" }
}
"#;

const CODEX_CONFIG: &str = r#"# Codex configuration
model = "gpt-5-codex"
model_reasoning_effort = "high"
approval_policy = "on-request"

[sandbox_workspace_write]
network_access = false

# MCP servers
[mcp_servers.docs]
command = "npx"
args = ["-y", "mcp-server-docs"]

[profiles.fast]
model = "gpt-5-codex-mini"
"#;

fn setup_home() -> TestHome {
    let home = TestHome::new();
    std::fs::create_dir_all(home.home.join(".claude")).unwrap();
    std::fs::create_dir_all(home.codex_home()).unwrap();
    std::fs::write(home.home.join(".claude/settings.json"), CLAUDE_SETTINGS).unwrap();
    std::fs::write(home.codex_home().join("config.toml"), CODEX_CONFIG).unwrap();
    home
}

#[test]
fn setup_adds_hooks_beside_the_users_own_and_remove_restores_the_files() {
    let home = setup_home();
    let settings_path = home.home.join(".claude/settings.json");
    let codex_path = home.codex_home().join("config.toml");

    let out = home.ok(&["setup"]);
    assert!(out.contains("Claude Code"), "{out}");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    let stop = settings["hooks"]["Stop"].as_array().unwrap();
    assert_eq!(stop.len(), 2, "the user's Stop hook is kept beside ours");
    assert_eq!(
        stop[0]["hooks"][0]["command"],
        "afplay /System/Library/Sounds/Glass.aiff"
    );
    assert_eq!(
        stop[1]["hooks"][0]["command"],
        format!("{} hook Stop", binary().display())
    );
    assert!(settings["hooks"]["SessionEnd"].is_array());
    assert_eq!(
        settings["hooks"]["PreToolUse"][0]["matcher"], "Bash",
        "other hooks untouched"
    );
    let codex: toml::Table = std::fs::read_to_string(&codex_path)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        codex["notify"].as_array().unwrap().clone(),
        vec![
            toml::Value::from(binary().to_str().unwrap()),
            "hook".into(),
            "codex-notify".into()
        ]
    );
    // Backups of the previous versions.
    assert_eq!(
        std::fs::read_to_string(home.home.join(".claude/settings.json.opensyncd-backup")).unwrap(),
        CLAUDE_SETTINGS
    );
    assert_eq!(
        std::fs::read_to_string(home.codex_home().join("config.toml.opensyncd-backup")).unwrap(),
        CODEX_CONFIG
    );

    // Only our entries' text was inserted: the user's order and formatting are untouched
    // (the expected text is the fixture with the two entries written in by hand).
    assert_eq!(
        std::fs::read_to_string(&settings_path).unwrap(),
        claude_settings_with_our_hooks(&binary().display().to_string())
    );

    // Running it again changes nothing (no duplicate hooks).
    let again = home.ok(&["setup"]);
    assert!(again.contains("already as wanted"), "{again}");

    let before_remove = tree(&home.home);
    home.ok(&["setup", "--remove"]);
    // The original bytes are back and the backups are gone: no trace of setup.
    assert_eq!(
        std::fs::read_to_string(&settings_path).unwrap(),
        CLAUDE_SETTINGS
    );
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), CODEX_CONFIG);
    let mut after = tree(&home.home);
    after.retain(|p, _| !p.starts_with(".opensyncd-test"));
    let mut original = before_remove;
    original.retain(|p, _| !p.to_string_lossy().contains("opensyncd"));
    original.insert(
        PathBuf::from(".claude/settings.json"),
        Some(CLAUDE_SETTINGS.as_bytes().to_vec()),
    );
    original.insert(
        PathBuf::from(".codex/config.toml"),
        Some(CODEX_CONFIG.as_bytes().to_vec()),
    );
    assert_eq!(after, original);
}

/// `CLAUDE_SETTINGS` with our two hooks, as a person would add them in its style.
fn claude_settings_with_our_hooks(bin: &str) -> String {
    let ours = |event: &str, indent: &str| {
        format!(
            "{indent}{{\n{indent}  \"hooks\": [\n{indent}    {{\n{indent}      \"type\": \"command\",\n\
             {indent}      \"command\": \"{bin} hook {event}\",\n{indent}      \"timeout\": 5\n\
             {indent}    }}\n{indent}  ]\n{indent}}}"
        )
    };
    CLAUDE_SETTINGS.replace(
        "        \"hooks\": [{ \"type\": \"command\", \"command\": \"afplay /System/Library/Sounds/Glass.aiff\" }]\n      }\n    ]\n",
        &format!(
            "        \"hooks\": [{{ \"type\": \"command\", \"command\": \"afplay /System/Library/Sounds/Glass.aiff\" }}]\n      }},\n{}\n    ],\n    \"SessionEnd\": [\n{}\n    ]\n",
            ours("Stop", "      "),
            ours("SessionEnd", "      ")
        ),
    )
}

#[test]
fn setup_leaves_another_codex_notify_program_alone_and_says_so() {
    let home = setup_home();
    let codex_path = home.codex_home().join("config.toml");
    let theirs = format!("notify = [\"notify-send\", \"Codex\"]\n{CODEX_CONFIG}");
    std::fs::write(&codex_path, &theirs).unwrap();
    let out = home.run(&["setup", "--codex"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "already runs another notify program ([\"notify-send\", \"Codex\"]); left alone"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("  "), "a run of spaces in: {stdout}");
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), theirs);
    assert!(
        !home
            .codex_home()
            .join("config.toml.opensyncd-backup")
            .exists()
    );
    // --remove leaves someone else's notify alone.
    home.ok(&["setup", "--codex", "--remove"]);
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), theirs);
}

#[test]
fn setup_dry_run_writes_nothing_and_a_missing_tool_is_named() {
    let home = setup_home();
    let before = tree(&home.home);
    let out = home.ok(&["setup", "--dry-run"]);
    assert!(out.contains("would write"), "{out}");
    assert_eq!(tree(&home.home), before);

    let bare = TestHome::new();
    let out = bare.run(&["setup", "--claude"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not seem to be installed"));
    let out = bare.ok(&["setup"]);
    assert!(out.contains("not installed here, skipped"), "{out}");
}

/// `original` is `edited` with some text taken out: the edit only inserted text (every
/// character of the original is still there, in order).
fn assert_only_insertions(original: &str, edited: &str) {
    let mut rest = edited.chars();
    for (i, c) in original.chars().enumerate() {
        assert!(
            rest.any(|e| e == c),
            "character {i} ({c:?}) of the original was changed or moved:\n{edited}"
        );
    }
}

const CURSOR_HOOKS: &str = "{\n    \"version\": 1,\n    \"hooks\": {\n        \"afterFileEdit\": [{\"command\": \"./hooks/format.sh\"}],\n        \"stop\": [\n            {\"command\": \"./hooks/audit.sh\", \"loop_limit\": 5}\n        ]\n    }\n}\n";

const DROID_SETTINGS: &str = "{\r\n\t\"model\": \"claude-sonnet-4-5\",\r\n\t\"autonomyLevel\": \"medium\",\r\n\t\"hooks\": {\r\n\t\t\"SessionStart\": [{\"hooks\": [{\"type\": \"command\", \"command\": \"echo hi\"}]}]\r\n\t}\r\n}\r\n";

#[test]
fn setup_cursor_and_droid_merge_beside_the_users_hooks_and_remove_gives_back_the_bytes() {
    let home = TestHome::new();
    let cursor = home.home.join(".cursor/hooks.json");
    let droid = home.home.join(".factory/settings.json");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    std::fs::create_dir_all(droid.parent().unwrap()).unwrap();
    std::fs::write(&cursor, CURSOR_HOOKS).unwrap();
    std::fs::write(&droid, DROID_SETTINGS).unwrap();
    let before = tree(&home.home);
    let bin = binary().display().to_string();

    let out = home.ok(&["setup", "--cursor", "--droid"]);
    assert!(
        out.contains("Cursor") && out.contains("Factory Droid"),
        "{out}"
    );

    let text = std::fs::read_to_string(&cursor).unwrap();
    assert_only_insertions(CURSOR_HOOKS, &text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["hooks"]["stop"][0]["command"], "./hooks/audit.sh");
    assert_eq!(
        v["hooks"]["afterFileEdit"][0]["command"],
        "./hooks/format.sh"
    );
    for event in [
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
    ] {
        let list = v["hooks"][event].as_array().unwrap();
        let ours: Vec<_> = list
            .iter()
            .filter(|e| e["command"] == format!("{bin} hook cursor {event}"))
            .collect();
        assert_eq!(ours.len(), 1, "{event}: {list:?}");
    }
    // Four-space indentation, copied from the file.
    assert!(
        text.contains(&format!(
            "        \"beforeSubmitPrompt\": [\n            {{\n                \"command\": \"{bin} hook cursor beforeSubmitPrompt\"\n            }}\n        ]"
        )),
        "{text}"
    );

    let text = std::fs::read_to_string(&droid).unwrap();
    assert_only_insertions(DROID_SETTINGS, &text);
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "CRLF line endings kept: {text:?}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["hooks"]["SessionStart"][0]["hooks"][0]["command"],
        "echo hi"
    );
    for event in ["Stop", "SessionEnd"] {
        assert_eq!(
            v["hooks"][event][0]["hooks"][0]["command"],
            format!("{bin} hook droid {event}")
        );
        assert_eq!(v["hooks"][event][0]["hooks"][0]["type"], "command");
    }
    assert!(text.contains("\t\t\"Stop\": [\r\n\t\t\t{\r\n"), "{text:?}");

    // Idempotent.
    let again = home.ok(&["setup", "--cursor", "--droid"]);
    assert_eq!(again.matches("already as wanted").count(), 2, "{again}");

    home.ok(&["setup", "--cursor", "--droid", "--remove"]);
    // Byte-identical, and no backup left behind.
    let mut after = tree(&home.home);
    after.retain(|p, _| !p.starts_with(".opensyncd-test"));
    assert_eq!(after, before);
    assert_eq!(std::fs::read_to_string(&cursor).unwrap(), CURSOR_HOOKS);
    assert_eq!(std::fs::read_to_string(&droid).unwrap(), DROID_SETTINGS);
}

#[test]
fn a_hooks_file_setup_created_is_removed_again() {
    let home = TestHome::new();
    std::fs::create_dir_all(home.home.join(".cursor")).unwrap();
    let before = tree(&home.home);
    home.ok(&["setup", "--cursor"]);
    let created = home.home.join(".cursor/hooks.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&created).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["hooks"]["stop"].as_array().unwrap().len(), 1);
    let out = home.ok(&["setup", "--cursor", "--remove"]);
    assert!(out.contains("removed (setup had created it)"), "{out}");
    let mut after = tree(&home.home);
    after.retain(|p, _| !p.starts_with(".opensyncd-test"));
    assert_eq!(after, before);
}

#[test]
fn the_first_backup_is_never_overwritten_and_a_changed_file_keeps_the_users_changes() {
    let home = setup_home();
    let settings = home.home.join(".claude/settings.json");
    let backup = home.home.join(".claude/settings.json.opensyncd-backup");
    home.ok(&["setup", "--claude"]);
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), CLAUDE_SETTINGS);

    // The user changes something else: remove takes out only our entries, the change stays.
    let edited = std::fs::read_to_string(&settings)
        .unwrap()
        .replace("\"model\": \"opus\"", "\"model\": \"sonnet\"");
    std::fs::write(&settings, &edited).unwrap();
    home.ok(&["setup", "--claude", "--remove"]);
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        CLAUDE_SETTINGS.replace("\"model\": \"opus\"", "\"model\": \"sonnet\"")
    );
    // Setup again, and again: the backup is still the very first version.
    home.ok(&["setup", "--claude"]);
    home.ok(&["setup", "--claude", "--remove"]);
    home.ok(&["setup", "--claude"]);
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), CLAUDE_SETTINGS);
}

#[test]
fn setup_refuses_a_broken_settings_file_in_words_and_leaves_it_alone() {
    let home = TestHome::new();
    std::fs::create_dir_all(home.home.join(".claude")).unwrap();
    let settings = home.home.join(".claude/settings.json");
    for broken in ["{\"model\": \"opus\",", "[1, 2]", "{\"hooks\": \"none\"}"] {
        std::fs::write(&settings, broken).unwrap();
        let out = home.run(&["setup", "--claude"]);
        assert!(!out.status.success(), "{broken}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("settings.json")
                && (err.contains("not valid JSON")
                    || err.contains("not a JSON object")
                    || err.contains("not an object")),
            "{broken}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), broken);
    }
}

/// A `systemctl` that cannot reach a user manager (a container, WSL, an SSH session).
fn stub_without_bus(dir: &Path, log: &Path) {
    let script = format!(
        "#!/bin/sh\necho \"systemctl $*\" >> '{}'\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n",
        log.display()
    );
    let path = dir.join("systemctl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn home_without_bus() -> (TestHome, PathBuf) {
    let base = TestHome::new();
    let stubs = base.home.join("stub-bin");
    std::fs::create_dir_all(&stubs).unwrap();
    let log = base.home.join("stub.log");
    stub_without_bus(&stubs, &log);
    let path = format!(
        "{}:{}",
        stubs.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = base
        .with_env("PATH", path)
        .with_env("OPENSYNCD_SERVICE_MANAGER", "systemd");
    (home, log)
}

#[test]
fn service_install_without_a_user_manager_changes_nothing_and_says_what_to_do() {
    let (home, log) = home_without_bus();
    std::fs::create_dir_all(home.home.join(".config")).unwrap();
    let before = tree(&home.home);
    let out = home.run(&["service", "install"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no systemd user manager is reachable")
            && err.contains("Failed to connect to bus")
            && err.contains("nothing was changed")
            && err.contains("loginctl enable-linger"),
        "{err}"
    );
    // Only the check ran; no unit file was written.
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .collect::<Vec<_>>(),
        ["systemctl --user show-environment"]
    );
    let mut after = tree(&home.home);
    after.retain(|p, _| !p.starts_with(".opensyncd-test") && !p.starts_with("stub.log"));
    assert_eq!(after, before);
}

#[test]
fn verify_passes_without_a_user_manager_while_the_daemon_runs() {
    let emu = crate::support::Emulation::with_key(crate::daemon::KEY);
    let (home, _log) = home_without_bus();
    home.login(&emu.url(), crate::daemon::KEY);
    let _daemon = home.spawn_daemon(&[]);
    let out = home.run(&["verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("--   service: could not check the service")
            && stdout.contains("Failed to connect to bus")
            && stdout.contains("the daemon runs (pid"),
        "{stdout}"
    );
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["verify", "--json"])).unwrap();
    assert_eq!(json["ok"], true);
    let service = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "service")
        .unwrap();
    assert_eq!(service["state"], "skip");
    let status: serde_json::Value =
        serde_json::from_str(&home.ok(&["service", "status", "--json"])).unwrap();
    assert_eq!(status["running"], false);
    assert!(
        status["unreachable"]
            .as_str()
            .unwrap()
            .contains("Failed to connect to bus"),
        "{status}"
    );
}

#[test]
fn the_unit_and_the_agent_keep_the_tools_variables_from_the_install_shell() {
    let (home, _log) = service_home("systemd");
    let home = home
        .with_env("CLAUDE_CONFIG_DIR", "/home/u/claude dirs/a,/b")
        .with_env("CODEX_HOME", "/home/u/100%codex")
        .with_env("PI_CODING_AGENT_DIR", "/home/u/.pi/agent")
        .with_env("OPENSYNCD_API_KEY", "osk_neverInAUnitFile0123456789abcdef");
    std::fs::create_dir_all(home.home.join(".config")).unwrap();
    let out = home.ok(&["service", "install"]);
    assert!(
        out.contains("keeps these variables from this shell: OPENSYNCD_HOME, CLAUDE_CONFIG_DIR, CODEX_HOME, PI_CODING_AGENT_DIR"),
        "{out}"
    );
    let unit =
        std::fs::read_to_string(home.home.join(".config/systemd/user/opensyncd.service")).unwrap();
    assert!(
        unit.contains("Environment=\"CLAUDE_CONFIG_DIR=/home/u/claude dirs/a,/b\"\n"),
        "{unit}"
    );
    assert!(
        unit.contains("Environment=\"CODEX_HOME=/home/u/100%%codex\"\n"),
        "{unit}"
    );
    assert!(
        unit.contains("Environment=\"PI_CODING_AGENT_DIR=/home/u/.pi/agent\"\n"),
        "{unit}"
    );
    assert!(
        !unit.contains("osk_"),
        "the key must never be in a unit file"
    );
    // systemd reads the lines back as set.
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opensyncd.service");
        std::fs::write(&path, &unit).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.lines().any(|l| l.contains("opensyncd.service")),
            "{stderr}"
        );
    }

    let (home, _log) = service_home("launchd");
    let home = home.with_env("CODEX_HOME", "/Users/u/x&y");
    std::fs::create_dir_all(home.home.join("Library/LaunchAgents")).unwrap();
    home.ok(&["service", "install"]);
    let plist = plist::Value::from_file(
        home.home
            .join("Library/LaunchAgents/dev.opensyncd.opensyncd.plist"),
    )
    .unwrap();
    let env = plist.as_dictionary().unwrap()["EnvironmentVariables"]
        .as_dictionary()
        .unwrap()
        .clone();
    assert_eq!(env["CODEX_HOME"].as_string(), Some("/Users/u/x&y"));
    assert!(env.contains_key("OPENSYNCD_HOME"));
}

#[test]
fn logs_reads_the_journal_when_the_unit_is_installed() {
    let (home, log) = service_home("systemd");
    let stubs = home.home.join("stub-bin");
    let journal = format!(
        "#!/bin/sh\necho \"journalctl $*\" >> '{}'\necho 'Jun 01 10:00:00 host opensyncd[1]: opensyncd started'\n",
        log.display()
    );
    std::fs::write(stubs.join("journalctl"), journal).unwrap();
    std::fs::set_permissions(
        stubs.join("journalctl"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::create_dir_all(home.home.join(".config")).unwrap();
    home.ok(&["service", "install"]);
    let out = home.ok(&["logs", "-n", "5"]);
    assert!(out.contains("opensyncd started"), "{out}");
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls
            .lines()
            .any(|l| l == "journalctl --user -u opensyncd.service -n 5 --no-pager"),
        "{calls}"
    );
}

#[test]
fn hook_returns_at_once_and_succeeds_without_a_daemon_or_credentials() {
    // The figure that matters (well under 100 ms) is measured in BENCHMARKS.md; this bound only
    // catches a hook that blocks (e.g. waiting on stdin or the network).
    let home = TestHome::new();
    let mut cmd = home.cmd(&["hook", "codex-notify", r#"{"type":"agent-turn-complete"}"#]);
    let started = Instant::now();
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));

    // Claude passes its payload on stdin and may keep stdin open.
    let mut cmd = home.cmd(&["hook", "Stop"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let _stdin_kept_open = child.stdin.take();
    let started = Instant::now();
    let out = crate::home::wait_bounded(child, Duration::from_secs(10));
    assert!(out.status.success());
    assert!(started.elapsed() < Duration::from_secs(5));
}

fn bless_or_compare(path: &str, generated: Vec<u8>) -> Option<String> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("OPENSYNCD_BLESS").is_some() {
        std::fs::write(&full, &generated).unwrap();
        return None;
    }
    let committed = std::fs::read(&full).unwrap_or_default();
    (committed != generated).then(|| path.to_string())
}

#[test]
fn committed_completions_and_man_page_are_up_to_date() {
    use clap_complete::Shell;
    let cmd = opensyncd::cli::command;
    let stale: Vec<String> = [
        (
            "packaging/completions/opensyncd.bash",
            opensyncd::assets::completions(Shell::Bash, cmd()),
        ),
        (
            "packaging/completions/_opensyncd",
            opensyncd::assets::completions(Shell::Zsh, cmd()),
        ),
        (
            "packaging/completions/opensyncd.fish",
            opensyncd::assets::completions(Shell::Fish, cmd()),
        ),
        (
            "packaging/man/opensyncd.1",
            opensyncd::assets::man_page(cmd()),
        ),
    ]
    .into_iter()
    .filter_map(|(path, generated)| bless_or_compare(path, generated))
    .collect();
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `OPENSYNCD_BLESS=1 cargo test packaging` and commit"
    );
}

#[test]
fn the_man_page_is_one_page_with_every_command_key_file_and_variable() {
    let page = String::from_utf8(opensyncd::assets::man_page(opensyncd::cli::command())).unwrap();
    let cmd = opensyncd::cli::command();
    for sub in cmd.get_subcommands() {
        let page_name = format!("opensyncd\\-{}", sub.get_name());
        assert!(
            !page.contains(&page_name),
            "a reference to an unshipped page {page_name}(1)"
        );
    }
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH COMMANDS",
        ".SH CONFIGURATION",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXIT STATUS",
    ] {
        assert!(page.contains(section), "{section}");
    }
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let heading = format!(".SS \"opensyncd {}", sub.get_name());
        assert!(page.contains(&heading), "{heading}");
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
        {
            if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                assert!(
                    page.contains(&format!("\\-\\-{}", long.replace('-', "\\-"))),
                    "{} --{long}",
                    sub.get_name()
                );
            }
        }
    }
    for leaf in ["install", "uninstall", "status"] {
        assert!(
            page.contains(&format!(".SS \"opensyncd service {leaf}")),
            "{leaf}"
        );
    }
    for key in opensyncd::config::SETTABLE_KEYS {
        assert!(
            page.contains(&format!("\\fB{}\\fR", key.replace('-', "\\-"))),
            "{key}"
        );
        assert!(
            page.contains(&format!("OPENSYNCD_{}", key.to_uppercase())),
            "{key}"
        );
    }
    for var in [
        "OPENSYNCD_HOME",
        "OPENSYNCD_API_KEY",
        "CLAUDE_CONFIG_DIR",
        "CODEX_HOME",
        "NO_COLOR",
    ] {
        assert!(page.contains(var), "{var}");
    }
    for file in [
        "config.toml",
        "credentials",
        "control.sock",
        "opensyncd.log",
        "opensyncd.service",
    ] {
        assert!(page.contains(file), "{file}");
    }
    // `man` renders it without warnings, when it is installed.
    let man = std::process::Command::new("man").arg("--version").output();
    if man.is_ok_and(|o| o.status.success()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opensyncd.1");
        std::fs::write(&path, &page).unwrap();
        let out = std::process::Command::new("man")
            .args(["--warnings", "-l"])
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let warnings = String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("CONFIGURATION"), "{text}");
        assert!(warnings.trim().is_empty(), "{warnings}");
    }
}

#[test]
fn completions_offer_config_keys_and_source_names() {
    use clap_complete::Shell;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let text = String::from_utf8(opensyncd::assets::completions(
            shell,
            opensyncd::cli::command(),
        ))
        .unwrap();
        for word in [
            "debounce_ms",
            "exclude",
            "pricing_file",
            "claude-code",
            "codex-cli",
            "opencode",
        ] {
            assert!(text.contains(word), "{shell:?} completions lack {word}");
        }
    }
}
