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

/// The command worked: success, or for `status` one of its documented states (3 degraded,
/// 4 paused, 5 not logged in) — 1 is a failure of the command itself.
fn worked(args: &[&str], out: &std::process::Output) -> bool {
    let status_state = args.contains(&"status") && matches!(out.status.code(), Some(3..=5));
    out.status.success() || status_state
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
        assert!(worked(&args, &out), "{args:?}: {}", stderr(&out));
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

#[test]
fn unknown_opensyncd_variables_never_break_a_command() {
    let home = TestHome::new()
        .with_env("OPENSYNCD_REAL_FIXTURES", "/somewhere/fixtures/real")
        .with_env("OPENSYNCD_CONCURENCY", "8");
    for args in [
        vec!["config"],
        vec!["status"],
        vec!["export"],
        vec!["verify"],
    ] {
        let out = home.run(&args);
        let err = stderr(&out);
        if args != ["verify"] {
            assert!(worked(&args, &out), "{args:?}: {err}");
        }
        let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
        assert_eq!(
            warnings,
            [
                "opensyncd: warning: ignoring OPENSYNCD_CONCURENCY: it is not an opensyncd \
                 setting (did you mean OPENSYNCD_CONCURRENCY?)"
            ],
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("config.toml"),
            "{args:?} blamed the file: {err}"
        );
    }
}

#[test]
fn config_errors_name_the_file_and_line_or_the_variable_in_plain_words() {
    let home = TestHome::new();
    let file = home.opensyncd_home().join("config/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "# tuned by hand\nconcurrency = 8\ntransport = \"foo\"\n",
    )
    .unwrap();
    let out = home.run(&["status"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(
        err.trim(),
        format!(
            "opensyncd: {}, line 3: `transport`: `foo` is not a valid transport; valid values: \
             per-record, batch",
            file.display()
        )
    );
    for internal in ["TOML source string", "default.", "figment"] {
        assert!(!err.contains(internal), "{internal} leaked: {err}");
    }

    std::fs::write(&file, "concurrency = 8\n").unwrap();
    let out = home
        .cmd(&["status"])
        .env("OPENSYNCD_CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "opensyncd: environment variable OPENSYNCD_CONCURRENCY: `lots` is not a whole number"
    );

    std::fs::write(&file, "concurrency = 8\nsync_thinking = \"yes\"\n").unwrap();
    let err = stderr(&home.run(&["config"]));
    assert!(
        err.contains("line 2: `sync_thinking`: \"yes\" is not a boolean (true/false)"),
        "{err}"
    );
    std::fs::write(&file, "concurrency = [\n").unwrap();
    let err = stderr(&home.run(&["config"]));
    assert!(
        err.contains(&format!("{}, line ", file.display())) && err.contains("not valid TOML"),
        "{err}"
    );
}

#[test]
fn set_refuses_what_would_break_the_daemon_and_names_the_valid_values() {
    let home = TestHome::new();
    let file = home.opensyncd_home().join("config/config.toml");
    for (key, value, expect) in [
        (
            "pricing_file",
            "/nonexistent/prices.toml",
            "/nonexistent/prices.toml does not exist",
        ),
        (
            "log_level",
            "verbose",
            "`verbose` is not a log level; valid: error, warn, info, debug, trace, off",
        ),
        (
            "transport",
            "foo",
            "`foo` is not a valid transport; valid values: per-record, batch",
        ),
        ("log_format", "xml", "valid values: text, json"),
    ] {
        let out = home.run(&["set", key, value]);
        assert!(!out.status.success(), "set {key} {value} was accepted");
        let err = stderr(&out);
        assert!(err.contains(expect), "set {key} {value}: {err}");
        assert!(!err.contains("TOML source string"), "{err}");
    }
    assert!(!file.exists(), "a refused value was written");

    // A real price file is accepted and stored as an absolute path.
    let prices = home.home.join("prices.toml");
    std::fs::write(
        &prices,
        "[models.\"my-model\"]\ninput = 1.0\noutput = 2.0\ncache_read = 0.1\ncache_write = 1.25\n",
    )
    .unwrap();
    let mut cmd = home.cmd(&["set", "pricing_file", "prices.toml"]);
    cmd.current_dir(&home.home);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["config", "--json"])).unwrap();
    assert_eq!(json["config"]["pricing_file"], prices.display().to_string());
    // A price file that does not parse is refused too.
    std::fs::write(&prices, "[models.\"x\"]\ninput = \"cheap\"\n").unwrap();
    let out = home.run(&["set", "pricing_file", prices.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("pricing_file"), "{}", stderr(&out));
}

#[test]
fn set_unset_removes_a_key_and_keeps_every_other_byte() {
    let home = TestHome::new();
    let file = home.opensyncd_home().join("config/config.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let original = "# opensyncd settings\n\n# slower disks here\ndebounce_ms = 2000   # ms\nsync_thinking = true\n";
    std::fs::write(&file, original).unwrap();

    home.ok(&["set", "concurrency", "8"]);
    let set = std::fs::read_to_string(&file).unwrap();
    assert_eq!(set, format!("{original}concurrency = 8\n"));
    let out = home.ok(&["set", "--unset", "concurrency"]);
    assert!(out.contains("concurrency removed"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);

    // Changing a value keeps its comment; removing a key keeps the comment above it.
    home.ok(&["set", "debounce_ms", "100"]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        original.replace("2000", "100")
    );
    home.ok(&["set", "--unset", "debounce_ms"]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "# opensyncd settings\n\n# slower disks here\nsync_thinking = true\n"
    );
    let json: serde_json::Value = serde_json::from_str(&home.ok(&["config", "--json"])).unwrap();
    assert_eq!(
        json["config"]["debounce_ms"], 500,
        "the default applies again"
    );

    let out = home.ok(&["set", "--unset", "redact"]);
    assert!(out.contains("redact is not set"), "{out}");
    let out = home.run(&["set", "--unset", "colour"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown key `colour`"),
        "{}",
        stderr(&out)
    );
    let out = home.run(&["set", "--unset", "redact", "true"]);
    assert!(!out.status.success(), "a value with --unset is refused");
}

#[test]
fn log_level_debug_is_ours_and_one_shot_commands_stay_quiet() {
    let home = TestHome::new();
    home.ok(&["set", "log_level", "debug"]);
    // The file's level is the daemon's: `status` prints no log lines at all.
    let out = home
        .cmd(&["status"])
        .env_remove("OPENSYNCD_LOG_LEVEL")
        .output()
        .unwrap();
    assert!(worked(&["status"], &out));
    assert!(stderr(&out).is_empty(), "status logged: {}", stderr(&out));

    // Asked for on the command line: opensyncd's debug lines, no other crate's.
    let out = home.run(&["--log-level", "debug", "--log-format", "json", "status"]);
    assert!(worked(&["status"], &out), "{}", stderr(&out));
    for line in stderr(&out).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let target = v["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("opensyncd"), "a library logged: {line}");
    }

    // The daemon at debug: its own debug lines, still nothing from sled, notify, hyper...
    let daemon = home.spawn_daemon(&[
        ("OPENSYNCD_LOG_FORMAT", "json"),
        ("OPENSYNCD_LOG_LEVEL", "debug"),
    ]);
    let log = daemon.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.iter().any(|v| v["level"] == "DEBUG"),
        "no debug line from opensyncd: {log}"
    );
    for v in &lines {
        let target = v["target"].as_str().unwrap_or_default();
        assert!(target.starts_with("opensyncd"), "a library logged: {v}");
    }
}

#[test]
fn login_against_a_web_page_says_so_in_one_line() {
    let home = TestHome::new();
    for status in [200, 404] {
        let url = crate::home::web_page_server(status);
        let mut cmd = home.cmd(&["login", "--url", &url, "--key-stdin"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(KEY.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success());
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.contains(&format!("{url} does not look like OpenSync"))
                && err.contains("an HTML page titled “Welcome to nginx!”")
                && err.contains(".convex.site"),
            "{err}"
        );
        for html in ["<html", "<h1", "<!DOCTYPE", "If you see this page"] {
            assert!(!err.contains(html), "{html} leaked: {err}");
        }
        assert!(!home.opensyncd_home().join("config/credentials").exists());
    }
}

#[test]
fn set_url_is_verified_like_login() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let file = home.opensyncd_home().join("config/config.toml");
    let before = std::fs::read_to_string(&file).unwrap();
    let web = crate::home::web_page_server(200);
    let out = home.run(&["set", "url", &web]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("url not saved") && err.contains("does not look like OpenSync"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    // The right URL (written differently) is accepted.
    home.ok(&["set", "url", &format!("{}/", emu.url())]);
}

#[test]
fn the_daemon_logs_one_line_for_a_web_page_answer_never_the_page() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    let sid = "c1a0de00-0000-4000-8000-00000000beef";
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        crate::daemon::Transcripts::claude_session(sid, 2),
    )
    .unwrap();
    // Point the saved config at a plain web server (as a mistaken edit would).
    let file = home.opensyncd_home().join("config/config.toml");
    let web = crate::home::web_page_server(404);
    std::fs::write(&file, format!("url = \"{web}\"\n")).unwrap();
    let daemon = home.spawn_daemon(&[]);
    assert!(
        crate::home::wait_until(std::time::Duration::from_secs(60), || daemon
            .log_text()
            .contains("HTML page")),
        "{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    for needle in [
        "<html",
        "<h1",
        "<!DOCTYPE",
        "If you see this page",
        "</html>",
    ] {
        assert!(
            !log.contains(needle),
            "the page leaked into the log ({needle}):\n{log}"
        );
    }
    let html_lines: Vec<&str> = log.lines().filter(|l| l.contains("HTML page")).collect();
    assert!(
        html_lines
            .iter()
            .all(|l| l.contains("an HTML page titled “Welcome to nginx!”")),
        "{log}"
    );
}

#[test]
fn export_of_an_unknown_session_fails_with_a_clear_message() {
    let home = TestHome::new();
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    let sid = "c1a0de00-0000-4000-8000-000000000001";
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        crate::daemon::Transcripts::claude_session(sid, 1),
    )
    .unwrap();
    let out = home.run(&["export", "--session", "no-such-session"]);
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out).contains("no session `no-such-session` found"),
        "{}",
        stderr(&out)
    );
    let out = home.run(&["export", "--session", sid]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
}

#[test]
fn every_command_help_has_an_example() {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = format!("{path} {}", sub.get_name()).trim().to_string();
            let mut sub = sub.clone();
            out.push((name.clone(), sub.render_long_help().to_string()));
            walk(&sub, &name, out);
        }
    }
    let mut helps = Vec::new();
    let mut root = opensyncd::cli::command();
    helps.push(("(root)".to_string(), root.render_long_help().to_string()));
    walk(&root, "", &mut helps);
    assert!(helps.len() > 18, "{}", helps.len());
    for (name, help) in &helps {
        assert!(
            help.contains("Examples:\n  opensyncd"),
            "`{name} --help` has no example:\n{help}"
        );
    }
    // And the real binary prints them.
    let home = TestHome::new();
    assert!(
        home.ok(&["set", "--help"])
            .contains("opensyncd set --unset log_level")
    );
}

#[test]
fn config_shows_where_each_value_came_from() {
    let home = TestHome::new();
    home.ok(&["set", "debounce_ms", "250"]);
    let out = home
        .cmd(&["--log-format", "json", "config"])
        .env("OPENSYNCD_CONCURRENCY", "3")
        .output()
        .unwrap();
    let text = stdout(&out);
    let line = |key: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("debounce_ms").ends_with("250   [config.toml line 1]"),
        "{text}"
    );
    assert!(
        line("concurrency").ends_with("3   [OPENSYNCD_CONCURRENCY]"),
        "{text}"
    );
    assert!(
        line("log_format").ends_with("\"json\"   [--log-format]"),
        "{text}"
    );
    assert!(line("redact").ends_with("true   [default]"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(
        &home
            .cmd(&["config", "--json"])
            .env("OPENSYNCD_CONCURRENCY", "3")
            .output()
            .unwrap()
            .stdout,
    ))
    .unwrap();
    assert_eq!(json["origins"]["concurrency"]["from"], "env");
    assert_eq!(
        json["origins"]["concurrency"]["var"],
        "OPENSYNCD_CONCURRENCY"
    );
    assert_eq!(json["origins"]["debounce_ms"]["from"], "file");
    assert_eq!(json["origins"]["debounce_ms"]["line"], 1);
    assert_eq!(json["origins"]["redact"]["from"], "default");
}

/// A transcript larger than one read chunk (8 MiB) is previewed whole: every chunk's messages
/// are counted.
#[test]
fn a_dry_run_counts_every_chunk_of_a_large_transcript() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    let sid = "c1a0de00-0000-4000-8000-0000000000b1";
    // 60 turns with a 160 KiB prompt each: ~9.4 MiB, more than one 8 MiB chunk.
    let turns = 60u32;
    let mut transcript = String::new();
    for n in 0..turns {
        let prompt = format!("question {n} ") + &"x".repeat(160 * 1024);
        transcript.push_str(&crate::daemon::Transcripts::claude_user(sid, n, &prompt));
        transcript.push('\n');
        transcript.push_str(&crate::daemon::Transcripts::claude_assistant(
            sid,
            n,
            &format!("answer {n}"),
            40,
        ));
        transcript.push('\n');
    }
    assert!(transcript.len() > 9 * 1024 * 1024);
    std::fs::write(project.join(format!("{sid}.jsonl")), &transcript).unwrap();

    let dry: serde_json::Value =
        serde_json::from_str(&home.ok(&["sync", "--dry-run", "--json"])).unwrap();
    // A prompt and an answer per turn.
    assert_eq!(dry["messages"], 2 * turns);
    assert_eq!(dry["sessions"], 1);
    assert_eq!(emu.message_count(), 0, "a dry run sent something");
}

#[test]
fn sync_and_its_dry_run_speak_json() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    for i in 0..2 {
        let sid = format!("c1a0de00-0000-4000-8000-00000000000{i}");
        std::fs::write(
            project.join(format!("{sid}.jsonl")),
            crate::daemon::Transcripts::claude_session(&sid, 2),
        )
        .unwrap();
    }
    let dry: serde_json::Value =
        serde_json::from_str(&home.ok(&["sync", "--dry-run", "--json"])).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["sent"], false);
    let claude = dry["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "claude-code")
        .unwrap();
    assert_eq!(claude["files"], 2);
    let bytes: u64 = std::fs::read_dir(&project)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(claude["bytes"], bytes);
    assert_eq!(emu.message_count(), 0, "a dry run sent something");

    let summary: serde_json::Value = serde_json::from_str(&home.ok(&["sync", "--json"])).unwrap();
    assert_eq!(summary["units"], 2);
    assert_eq!(summary["failed"], 0);
    // 2 sessions × 2 turns × (prompt + answer).
    assert_eq!(summary["messages_sent"], 8);
    assert_eq!(emu.message_count(), 8);
}

/// A stand-in for the daemon's control socket: accepts one request, answers `ok`, and hands
/// the request line back (what a running daemon would have received).
fn fake_daemon_socket(home: &TestHome) -> std::sync::mpsc::Receiver<String> {
    use std::io::{BufRead, BufReader, Write};
    let state = home.opensyncd_home().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(state.join("control.sock")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let _ = stream.write_all(b"{\"reply\":\"ok\"}\n");
            let _ = tx.send(line);
        }
    });
    rx
}

fn run_with_stdin(home: &TestHome, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut cmd = home.cmd(args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    crate::home::wait_bounded(child, std::time::Duration::from_secs(60))
}

#[test]
fn hook_droid_accepts_both_spellings_prints_nothing_and_nudges_with_the_transcript() {
    for payload in [
        r#"{"sessionId":"s1","transcriptPath":"/home/u/.factory/sessions/-x/s1.jsonl","hookEventName":"Stop"}"#,
        r#"{"session_id":"s1","transcript_path":"/home/u/.factory/sessions/-x/s1.jsonl","hook_event_name":"Stop"}"#,
    ] {
        let home = TestHome::new();
        let received = fake_daemon_socket(&home);
        let out = run_with_stdin(&home, &["hook", "droid", "Stop"], payload);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            out.stdout.is_empty(),
            "Droid shows stdout: {}",
            stdout(&out)
        );
        let request: serde_json::Value = serde_json::from_str(
            &received
                .recv_timeout(std::time::Duration::from_secs(30))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            request,
            serde_json::json!({"cmd": "hook", "event": "droid-Stop",
                "path": "/home/u/.factory/sessions/-x/s1.jsonl"})
        );
    }
    // Garbage on stdin, no daemon: still silent, still exit 0.
    let home = TestHome::new();
    let out = run_with_stdin(&home, &["hook", "droid", "SessionEnd"], "\u{0}not json");
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn hook_cursor_answers_what_cursor_expects_for_every_event() {
    for (event, answer) in [
        ("beforeSubmitPrompt", "{\"continue\":true}\n"),
        ("beforeShellExecution", "{\"permission\":\"allow\"}\n"),
        ("preToolUse", "{\"permission\":\"allow\"}\n"),
        ("stop", "{}\n"),
        ("afterAgentResponse", "{}\n"),
        ("afterShellExecution", "{}\n"),
        ("postToolUse", "{}\n"),
        ("afterFileEdit", "{}\n"),
    ] {
        let home = TestHome::new();
        let payload = format!(
            r#"{{"conversation_id":"c1","generation_id":"g1","hook_event_name":"{event}","transcript_path":null}}"#
        );
        let out = run_with_stdin(&home, &["hook", "cursor", event], &payload);
        assert!(out.status.success(), "{event}: {}", stderr(&out));
        assert_eq!(stdout(&out), answer, "{event}");
        assert!(!stdout(&out).contains("followup_message"));
    }
    // Garbage on stdin: still the right answer, exit 0.
    let home = TestHome::new();
    let out = run_with_stdin(&home, &["hook", "cursor", "preToolUse"], "\u{0}{not json");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "{\"permission\":\"allow\"}\n");
    // The event name may come only in the payload.
    let home = TestHome::new();
    let out = run_with_stdin(
        &home,
        &["hook", "cursor"],
        r#"{"hook_event_name":"beforeSubmitPrompt"}"#,
    );
    assert_eq!(stdout(&out), "{\"continue\":true}\n");
}

#[test]
fn logs_shows_and_follows_the_log_of_a_daemon_started_by_hand() {
    let home = TestHome::new().with_env("OPENSYNCD_SERVICE_MANAGER", "systemd");
    let out = home.run(&["logs"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no log yet"), "{}", stderr(&out));

    let daemon = home.spawn_daemon(&[]);
    let file = home.opensyncd_home().join("state/opensyncd.log");
    assert!(
        crate::home::wait_until(std::time::Duration::from_secs(30), || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.contains("opensyncd started"))
        }),
        "{}",
        daemon.log_text()
    );
    let out = home.ok(&["logs", "-n", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let out = home.ok(&["logs"]);
    assert!(out.contains("opensyncd started"), "{out}");
    // The same lines as stderr, without colour codes.
    assert!(!out.contains('\u{1b}'));

    // -f prints what is appended.
    let mut cmd = home.cmd(&["logs", "-f", "-n", "0"]);
    cmd.stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 1024];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let marker = "a line appended while following";
    let appended = crate::home::wait_until(std::time::Duration::from_secs(30), || {
        crate::daemon::append(&file, &format!("{marker}\n"));
        seen.lock().unwrap().contains(marker)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(appended, "{}", seen.lock().unwrap());
}

#[test]
fn status_documents_its_exit_codes_in_help_the_man_page_and_the_readme() {
    let home = TestHome::new();
    let help = home.ok(&["status", "--help"]);
    let man = home.ok(&["man"]);
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    for (code, meaning) in [
        ("0", "ok or syncing"),
        ("3", "degraded"),
        ("4", "paused"),
        ("5", "not logged in"),
    ] {
        assert!(
            help.contains(&format!("{code} {meaning}")),
            "--help: {code}\n{help}"
        );
        assert!(man.contains(&format!("{code} {meaning}")), "man: {code}");
    }
    for row in [
        "| `ok` | 0 |",
        "| `paused (why, until when, how to resume)` | 4 |",
        "| `not logged in (…)` | 5 |",
        "| `retrying (server unreachable or failing since …, next attempt in …)` | 3 |",
    ] {
        assert!(readme.contains(row), "README lacks {row}");
    }
    for cmd in ["pause", "resume"] {
        assert!(home.ok(&["--help"]).contains(cmd), "--help lacks {cmd}");
    }
    assert!(
        home.ok(&["sync", "--help"])
            .contains("--timeout <DURATION>")
    );
    let out = home.run(&["sync", "--timeout", "a while"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("is not a duration"),
        "{}",
        stderr(&out)
    );
}
