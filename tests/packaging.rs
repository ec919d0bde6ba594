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
            "systemctl --user daemon-reload",
            "systemctl --user enable opensyncd.service",
            "systemctl --user restart opensyncd.service",
        ]
    );

    // `service status`, `status` and `verify` all report it.
    let status = home.ok(&["service", "status"]);
    assert!(status.contains("enabled, active"), "{status}");
    let overall = home.ok(&["status"]);
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

    // Running it again changes nothing (no duplicate hooks).
    let again = home.ok(&["setup"]);
    assert!(again.contains("already as wanted"), "{again}");

    home.ok(&["setup", "--remove"]);
    let restored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    let original: serde_json::Value = serde_json::from_str(CLAUDE_SETTINGS).unwrap();
    assert_eq!(restored, original);
    // TOML keeps comments and layout: the text itself is back.
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), CODEX_CONFIG);
}

#[test]
fn setup_never_replaces_another_codex_notify_program() {
    let home = setup_home();
    let codex_path = home.codex_home().join("config.toml");
    let theirs = format!("notify = [\"notify-send\", \"Codex\"]\n{CODEX_CONFIG}");
    std::fs::write(&codex_path, &theirs).unwrap();
    let out = home.run(&["setup", "--codex"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another notify program"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&codex_path).unwrap(), theirs);
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
