//! The command line, driven as a user would: the real binary in a temporary home. Commands that
//! talk to a server use the in-process emulation.

use std::os::unix::fs::PermissionsExt;

use crate::home::TestHome;
use crate::support::Emulation;

const KEY: &str = "osk_cliTestKey0123456789abcdefghijklmn";

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_and_help_describe_every_command() {
    let home = TestHome::new();
    let version = home.ok(&["--version"]);
    assert!(version.starts_with("opensyncd "), "{version}");
    let help = home.ok(&["--help"]);
    for cmd in [
        "run",
        "login",
        "logout",
        "status",
        "verify",
        "sync",
        "synctest",
        "export",
        "config",
        "set",
        "setup",
        "hook",
        "service",
        "completions",
    ] {
        assert!(help.contains(cmd), "--help lacks {cmd}:\n{help}");
    }
    let sync_help = home.ok(&["sync", "--help"]);
    for flag in [
        "--all",
        "--new",
        "--limit",
        "--force",
        "--source",
        "--dry-run",
    ] {
        assert!(sync_help.contains(flag), "sync --help lacks {flag}");
    }
}

#[test]
fn login_saves_a_verified_key_privately_and_masks_it_everywhere() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);

    let cred = home.opensyncd_home().join("config/credentials");
    let mode = std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials file mode");
    let dir_mode = std::fs::metadata(home.opensyncd_home().join("config"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700, "config dir mode");
    assert_eq!(std::fs::read_to_string(&cred).unwrap().trim(), KEY);

    let mut all_output = String::new();
    for args in [
        vec!["config"],
        vec!["config", "--json"],
        vec!["status"],
        vec!["status", "--json"],
        vec!["--log-level", "trace", "status"],
    ] {
        let out = home.run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        all_output.push_str(&stdout(&out));
        all_output.push_str(&stderr(&out));
    }
    assert!(
        all_output.contains("osk_****"),
        "the masked key is shown:\n{all_output}"
    );
    assert!(
        !all_output.contains(&KEY[4..]),
        "the key leaked:\n{all_output}"
    );
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["config", "--json"])).unwrap();
    assert_eq!(json["api_key"], "osk_****klmn");
    assert_eq!(json["config"]["url"], emu.url());
}

#[test]
fn login_with_a_wrong_key_says_so_and_saves_nothing() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let mut cmd = home.cmd(&["login", "--url", &emu.url(), "--key-stdin"]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"osk_wrongwrongwrongwrongwrongwrong12")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Invalid API key"), "{err}");
    assert!(
        !err.contains("wrongwrongwrong"),
        "the rejected key leaked: {err}"
    );
    assert!(!home.opensyncd_home().join("config/credentials").exists());
}

#[test]
fn login_refuses_bad_urls_before_sending_anything() {
    let home = TestHome::new();
    for (url, expect) in [
        ("http://example.com", "refusing plain http://"),
        ("not a url", "is not a URL"),
        ("ftp://x.convex.site", "unsupported scheme"),
    ] {
        let out = home
            .cmd(&["login", "--url", url, "--key-stdin"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} accepted");
        assert!(stderr(&out).contains(expect), "{url}: {}", stderr(&out));
    }
    let out = home
        .cmd(&["login", "--url", "https://x.convex.site", "--key-stdin"])
        .output()
        .unwrap();
    // Empty stdin: the key check fails before any network use.
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
}

#[test]
fn convex_cloud_urls_are_rewritten_to_convex_site() {
    let home = TestHome::new();
    home.ok(&["set", "url", "https://happy-cat-123.convex.cloud/"]);
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["config", "--json"])).unwrap();
    // `set` stores what the user typed; the resolved URL used for requests is normalised.
    assert_eq!(json["config"]["url"], "https://happy-cat-123.convex.cloud/");
    assert_eq!(
        opensyncd::config::normalize_url("https://happy-cat-123.convex.cloud/").unwrap(),
        "https://happy-cat-123.convex.site"
    );
}

#[test]
fn set_validates_and_refuses_unknown_keys_with_the_list() {
    let home = TestHome::new();
    home.ok(&["set", "debounce_ms", "250"]);
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["config", "--json"])).unwrap();
    assert_eq!(json["config"]["debounce_ms"], 250);

    let out = home.run(&["set", "colour", "blue"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown key `colour`") && err.contains("debounce_ms"),
        "{err}"
    );

    let out = home.run(&["set", "concurrency", "zero"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not a whole number"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn environment_overrides_the_file_and_flags_override_the_environment() {
    let home = TestHome::new();
    home.ok(&["set", "log_level", "warn"]);
    let mut cmd = home.cmd(&["config", "--json"]);
    cmd.env_remove("OPENSYNCD_LOG_LEVEL")
        .env("OPENSYNCD_DEBOUNCE_MS", "900");
    let json: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    assert_eq!(json["config"]["debounce_ms"], 900);
    assert_eq!(json["config"]["log_level"], "warn");
    let mut cmd = home.cmd(&["--log-level", "debug", "config", "--json"]);
    cmd.env("OPENSYNCD_LOG_LEVEL", "error");
    let json: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    assert_eq!(json["config"]["log_level"], "debug");
}

#[test]
fn commands_that_need_a_login_say_so_instead_of_pretending() {
    let home = TestHome::new();
    for args in [vec!["sync"], vec!["synctest"]] {
        let out = home.run(&args);
        assert!(
            !out.status.success(),
            "{args:?} claimed success without a login"
        );
        assert!(
            stderr(&out).contains("not logged in"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = home.run(&["verify"]);
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("FAIL credentials"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn synctest_leaves_one_session_and_one_message() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let out = home.ok(&["synctest"]);
    assert!(out.contains("opensyncd-synctest-"), "{out}");
    let user = emu.default_user();
    let sessions = emu.sessions(user);
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let session = &sessions[0];
    assert!(session.external_id.starts_with("opensyncd-synctest-"));
    assert_eq!(session.title.as_deref(), Some("opensyncd synctest"));
    let messages = emu.messages_of_session(user, &session.external_id);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].role, "assistant");
    assert!(
        messages[0]
            .text_content
            .as_deref()
            .unwrap_or("")
            .contains("opensyncd synctest")
    );
    // Running it again updates the same rows.
    home.ok(&["synctest"]);
    assert_eq!(emu.sessions(user).len(), 1);
    assert!(emu.duplicate_rows().is_empty());
}

#[test]
fn hook_returns_quickly_without_a_daemon_and_never_fails() {
    let home = TestHome::new();
    // With no daemon the hook starts a background sync and returns at once; that sync fails
    // here (not logged in), but the hook itself must still succeed silently.
    let out = home.run(&[
        "hook",
        "Stop",
        r#"{"transcript_path":"/nonexistent.jsonl"}"#,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let out = home.run(&["hook", "codex-notify", "not json at all"]);
    assert!(out.status.success(), "{}", stderr(&out));
}
