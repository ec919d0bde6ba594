//! `opensyncd audit` against the server emulation: a real-shaped home is synced, the server's
//! state is then damaged in known ways (the test-only helpers of `support`), and `audit` must
//! report exactly those differences — derived here from the damage, not from audit's output —
//! and `--repair` must make the server equal `export` again, except what the server's rules
//! make unrepairable, which it must report.

use std::collections::BTreeSet;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::daemon::{
    KEY, assert_server_matches_export, expected, populated_home, start, wait_converged,
};
use crate::home::TestHome;
use crate::support::{Emulation, ReadLimits, StoredPart};

/// A home with 3 Claude Code sessions, 2 Codex sessions and the OpenCode fixture, synced into
/// `emu` (windows off for the sync, so it does not wait) and checked equal to `export`.
fn synced_home(emu: &Emulation) -> TestHome {
    let (home, _) = populated_home(3, 2);
    emu.disable_windows();
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert_server_matches_export(&home, emu);
    home
}

fn claude(i: u32) -> String {
    format!("c1a0de00-0000-4000-8000-{i:012}")
}

fn codex(i: u32) -> String {
    format!("019e0000-0000-7000-8000-{i:012}")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `audit --json` with `args`, returning the exit success and the parsed report.
fn audit_json(home: &TestHome, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let out = home.run(&all);
    let (stdout, stderr) = text(&out);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("audit --json is not JSON ({e}):\n{stdout}\nstderr: {stderr}"));
    (out.status.success(), report)
}

/// (session, message, field, repairable) of a list of differences.
fn keys(list: &Value) -> BTreeSet<(String, Option<String>, String, bool)> {
    list.as_array()
        .expect("a list of differences")
        .iter()
        .map(|d| {
            (
                d["session"].as_str().unwrap().to_string(),
                d["message"].as_str().map(str::to_string),
                d["field"].as_str().unwrap().to_string(),
                d["fix"]["repair"] != "impossible",
            )
        })
        .collect()
}

fn key(
    session: &str,
    message: Option<&str>,
    field: &str,
    repairable: bool,
) -> (String, Option<String>, String, bool) {
    (
        session.to_string(),
        message.map(str::to_string),
        field.to_string(),
        repairable,
    )
}

/// The export's message ids of a session, in order.
fn message_ids(home: &TestHome, session: &str) -> Vec<String> {
    let out = home.ok(&["export", "--session", session]);
    let v: Value = serde_json::from_str(out.lines().next().expect("one session")).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["externalId"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_intact_server_has_no_differences_and_the_json_report_parses() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let sessions = expected(&home).len();
    let logged_before = emu.api_logs().len(); // login's own check
    let out = home.run(&["audit"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{sessions} compared, {sessions} equal"))
            && stdout.contains("0 difference(s)"),
        "{stdout}"
    );
    let (ok, report) = audit_json(&home, &[]);
    assert!(ok);
    assert_eq!(report["compared"], sessions);
    assert_eq!(report["equal"], sessions);
    assert_eq!(report["differences"], json!([]));
    assert_eq!(report["missingOnServer"], 0);
    assert_eq!(report["notLocal"], json!([]));
    // Each run lists once and reads each session once; every /api/* call is logged.
    let logs = emu.api_logs().split_off(logged_before);
    let lists = logs.iter().filter(|l| *l == "/api/sessions").count();
    let gets = logs.iter().filter(|l| *l == "/api/sessions/get").count();
    assert_eq!((lists, gets), (2, 2 * sessions));
}

#[test]
fn each_kind_of_damage_is_reported_and_repair_restores_export() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let user = emu.default_user();
    let (a, b, c) = (claude(0), claude(1), codex(0));
    let a_ids = message_ids(&home, &a);
    let b_ids = message_ids(&home, &b);
    // Claude messages alternate user, assistant: [u0, a0, u1, a1, ...].
    let (a_user1, a_answer1) = (&a_ids[2], &a_ids[3]);
    let (b_answer0, b_answer1, b_user2) = (&b_ids[1], &b_ids[3], &b_ids[4]);
    let true_created = emu.session(user, &a).unwrap().created_at;

    emu.edit_session(user, &a, |s| {
        s.title = Some("a title nobody wrote".into());
        s.prompt_tokens = 1;
        s.cost = 99.0;
        s.created_at += 86_400_000;
    });
    emu.edit_session(user, &c, |s| s.completion_tokens = 1);
    emu.edit_message(a_answer1, |m| {
        m.text_content = Some("edited on the server".into())
    });
    emu.edit_message(a_user1, |m| m.role = "assistant".into());
    emu.edit_message(b_answer0, |m| {
        m.parts = vec![StoredPart {
            kind: "text".into(),
            content: json!("not what the tool wrote"),
        }]
    });
    emu.edit_message(b_answer1, |m| m.parts.clear());
    emu.delete_message(b_user2);
    emu.add_foreign_message(user, &b, "foreign-plugin-msg-1", "user", "from a plugin", 1);

    let want: BTreeSet<_> = [
        key(&a, None, "title", true),
        key(&a, None, "promptTokens", true),
        key(&a, None, "cost", true),
        key(&a, None, "createdAt", false),
        key(&a, Some(a_answer1), "textContent", true),
        key(&a, Some(a_user1), "role", false),
        key(&b, Some(b_answer0), "parts", true),
        key(&b, Some(b_answer1), "parts", true),
        key(&b, Some(b_user2), "message", true),
        key(&b, Some("foreign-plugin-msg-1"), "message", false),
        key(&c, None, "completionTokens", true),
    ]
    .into_iter()
    .collect();

    // Human output: one line per difference, naming where, and a failing exit status.
    let out = home.run(&["audit"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("11 difference(s)") && stderr.contains("8 can be repaired"),
        "{stderr}"
    );
    for (session, message, field, repairable) in &want {
        let place = match message {
            Some(m) => format!("{session} message {m}: {field}: "),
            None => format!("{session}: {field}: "),
        };
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&place))
            .unwrap_or_else(|| panic!("no line for {place}\n{stdout}"));
        assert_eq!(line.contains("cannot be repaired"), !repairable, "{line}");
    }
    assert!(stdout.contains(r#"the server has "a title nobody wrote", export has "#));

    let (ok, report) = audit_json(&home, &[]);
    assert!(!ok);
    assert_eq!(keys(&report["differences"]), want);

    // Repair: every repairable difference is fixed; the rest is reported, still there.
    let out = home.run(&["audit", "--repair"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stdout.contains("8 of the 8 repairable difference(s) are now equal"),
        "{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains("3 difference(s) remain after the repair"),
        "{stderr}"
    );
    let (_, report) = audit_json(&home, &[]);
    let unrepairable: BTreeSet<_> = want.iter().filter(|k| !k.3).cloned().collect();
    assert_eq!(keys(&report["differences"]), unrepairable);

    // What repair restored, checked against export directly.
    let exported = expected(&home);
    let (a_session, _) = &exported[&a];
    let stored = emu.session(user, &a).unwrap();
    assert_eq!(stored.title.as_deref(), a_session["title"].as_str());
    assert!((stored.cost - a_session["cost"].as_f64().unwrap()).abs() < 1e-9);
    let (_, b_messages) = &exported[&b];
    let b0 = emu
        .messages_of_session(user, &b)
        .into_iter()
        .find(|m| &m.external_id == b_answer0)
        .unwrap();
    let want_parts: Vec<Value> = b_messages[b_answer0]["parts"].as_array().unwrap().clone();
    let have_parts: Vec<Value> = b0
        .parts
        .iter()
        .map(|p| json!({"type": p.kind, "content": p.content}))
        .collect();
    assert_eq!(have_parts, want_parts);
    let restored = emu
        .messages_of_session(user, &b)
        .into_iter()
        .find(|m| &m.external_id == b_user2)
        .expect("the deleted message was sent again");
    assert_eq!(
        Some(restored.created_at),
        b_messages[b_user2]["createdAt"].as_i64()
    );

    // Undo by hand what no route can (as a dashboard admin would): then the server is export.
    emu.edit_session(user, &a, |s| s.created_at = true_created);
    emu.edit_message(a_user1, |m| m.role = "user".into());
    emu.delete_message("foreign-plugin-msg-1");
    assert_server_matches_export(&home, &emu);
    let (ok, report) = audit_json(&home, &[]);
    assert!(ok, "{report}");
}

/// An RFC 3339 UTC timestamp `offset_ms` from now (civil-from-days, written out here so the
/// test shares nothing with the code under test).
fn iso_from_now(offset_ms: i64) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + offset_ms;
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[test]
fn repair_waits_out_the_servers_dedup_windows() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = TestHome::new();
    let project = home.claude_projects().join("-home-dev-live");
    std::fs::create_dir_all(&project).unwrap();
    let sid = "c1a0de00-0000-4000-8000-00000000f00d";
    // A conversation happening right now: its messages' createdAt are within the server's 5 s
    // window, and the sync writes the session within its 10 s window.
    let lines = [
        json!({"type": "user", "uuid": "live-u0", "parentUuid": null, "sessionId": sid,
               "timestamp": iso_from_now(-1_000), "cwd": "/home/dev/live", "version": "2.1.7",
               "message": {"role": "user", "content": "is the build green?"}}),
        json!({"type": "assistant", "uuid": "live-a0", "parentUuid": "live-u0", "sessionId": sid,
               "timestamp": iso_from_now(0), "cwd": "/home/dev/live", "version": "2.1.7",
               "requestId": "req_live_0",
               "message": {"id": "msg_live_0", "type": "message", "role": "assistant",
                           "model": "claude-sonnet-4-5-20250929",
                           "content": [{"type": "text", "text": "yes, all 312 tests pass"}],
                           "stop_reason": "end_turn",
                           "usage": {"input_tokens": 20, "cache_creation_input_tokens": 0,
                                     "cache_read_input_tokens": 500, "output_tokens": 9}}}),
    ];
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(project.join(format!("{sid}.jsonl")), body).unwrap();
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert_server_matches_export(&home, &emu);

    // From now on the server skips writes inside its windows, as the real one does.
    emu.enable_windows();
    let user = emu.default_user();
    // A cost change alone is what the 10 s window drops; the text is inside the 5 s window.
    emu.edit_session(user, sid, |s| s.cost += 1.0);
    emu.edit_message("live-a0", |m| m.text_content = Some("no".into()));

    let out = home.run(&["audit", "--repair"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("for the server's dedup window"), "{stderr}");
    assert!(
        stdout.contains("The audited sessions now equal export."),
        "{stdout}"
    );
    assert_server_matches_export(&home, &emu);
    let exported = expected(&home);
    let stored = emu.session(user, sid).unwrap();
    assert!((stored.cost - exported[sid].0["cost"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn a_session_too_large_to_read_is_reported_as_such_and_its_fields_still_compared() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let exported = expected(&home);
    // A get reads the session, the message range, and one parts range per message: with 2 + 6
    // ranges allowed, every session of more than 6 messages is too large.
    emu.set_read_limits(ReadLimits {
        index_ranges: 2 + 6,
        ..ReadLimits::default()
    });
    let too_large: BTreeSet<String> = exported
        .iter()
        .filter(|(_, (_, messages))| messages.len() > 6)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!too_large.is_empty() && too_large.len() < exported.len());
    let (ok, report) = audit_json(&home, &[]);
    assert!(ok, "too large is not a difference: {report}");
    let reported: BTreeSet<String> = report["tooLarge"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["session"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported, too_large);
    assert!(
        report["tooLarge"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("Too many reads")
    );
    let out = home.ok(&["audit"]);
    assert!(out.contains("too large for the server to return"), "{out}");

    // Its session fields come from the listing: a damaged title is found and repaired.
    let big = too_large.iter().next().unwrap().clone();
    let user = emu.default_user();
    emu.edit_session(user, &big, |s| s.title = Some("wrong".into()));
    let (ok, report) = audit_json(&home, &[]);
    assert!(!ok);
    assert_eq!(
        keys(&report["differences"]),
        [key(&big, None, "title", true)].into_iter().collect()
    );
    let (ok, report) = audit_json(&home, &["--repair"]);
    assert!(ok, "{report}");
    assert_eq!(report["repair"]["fixed"], 1);
    assert_server_matches_export(&home, &emu);

    // A listing itself too large to return (here: more than 3 documents) says what to do.
    emu.set_read_limits(ReadLimits {
        documents: 3,
        ..ReadLimits::default()
    });
    let out = home.run(&["audit"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot list 20 sessions at once") && stderr.contains("smaller --limit"),
        "{stderr}"
    );
}

#[test]
fn session_option_sends_a_session_the_server_lost_with_its_true_start() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let user = emu.default_user();
    let gone = claude(2);
    emu.delete_session(user, &gone);

    let (ok, report) = audit_json(&home, &["--session", &gone]);
    assert!(!ok);
    assert_eq!(
        keys(&report["differences"]),
        [key(&gone, None, "session", true)].into_iter().collect()
    );
    // An intact session alone is clean.
    let (ok, _) = audit_json(&home, &["--session", &claude(0)]);
    assert!(ok);

    let out = home.run(&["audit", "--session", &gone, "--repair"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_server_matches_export(&home, &emu);
    let exported = expected(&home);
    assert_eq!(
        Some(emu.session(user, &gone).unwrap().created_at),
        exported[&gone].0["createdAt"].as_i64(),
        "re-created with its true createdAt, not the repair's time"
    );

    let out = home.run(&["audit", "--session", "no-such-session"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("there is no session no-such-session"),
        "{stderr}"
    );
}

#[test]
fn missing_sessions_are_all_reported_and_repair_sends_at_most_limit_per_run() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let user = emu.default_user();
    // The two Codex sessions: rollouts of 2 and 3 turns, both starting 2026-06-01T10:00Z, so
    // which one is "newest" is a tie; the test only counts.
    emu.delete_session(user, &codex(0));
    emu.delete_session(user, &codex(1));
    let (ok, report) = audit_json(&home, &["--limit", "1"]);
    assert!(!ok);
    assert_eq!(report["missingOnServer"], 2);
    assert_eq!(
        keys(&report["differences"])
            .into_iter()
            .filter(|k| k.2 == "session")
            .count(),
        2
    );

    let (ok, report) = audit_json(&home, &["--limit", "1", "--repair"]);
    assert!(!ok, "one missing session is left for the next run");
    assert_eq!(report["repair"]["fixed"], 1);
    assert_eq!(keys(&report["repair"]["remaining"]).len(), 1);
    let (ok, report) = audit_json(&home, &["--limit", "1", "--repair"]);
    assert!(ok, "{report}");
    assert_server_matches_export(&home, &emu);
}

#[test]
fn a_listed_session_that_is_gone_is_reported_and_transient_errors_are_retried() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let sessions = expected(&home).len();
    emu.fail_next_on("/api/sessions/get", 404, "Session not found", 1);
    let (ok, report) = audit_json(&home, &[]);
    assert!(ok, "a 404 is reported, not fatal: {report}");
    assert_eq!(report["notFound"].as_array().unwrap().len(), 1);
    assert_eq!(report["compared"], sessions - 1);

    emu.fail_next_on("/api/sessions/get", 503, "Service Unavailable", 2);
    emu.fail_next_on("/api/sessions", 500, "Documents read from or written to the \"sessions\" table changed while this mutation was being run and on every subsequent retry.", 1);
    let (ok, report) = audit_json(&home, &[]);
    assert!(ok, "{report}");
    assert_eq!(report["compared"], sessions);
}

#[test]
fn bad_credentials_and_bad_arguments_fail_clearly() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    emu.revoke_key(emu.default_user());
    let out = home.run(&["audit"]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("refused the API key") && stderr.contains("opensyncd login"),
        "{stderr}"
    );

    // A 200 that is not OpenSync's answer: a clear error, not a panic or a wrong report.
    emu.set_key(emu.default_user(), KEY);
    emu.fail_next_on("/api/sessions", 200, "not a listing", 1);
    let out = home.run(&["audit"]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("does not answer like OpenSync"), "{stderr}");

    let fresh = TestHome::new();
    let out = fresh.run(&["audit"]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("not logged in"), "{}", text(&out).1);

    for args in [
        &["audit", "--limit", "0"][..],
        &["audit", "--limit", "many"][..],
        &["audit", "--session", "x", "--limit", "3"][..],
    ] {
        let out = home.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?} is a usage error");
    }
}

#[test]
fn a_record_the_server_refuses_is_reported_and_the_rest_is_repaired() {
    let emu = Emulation::with_key(KEY);
    let home = synced_home(&emu);
    let ids = message_ids(&home, &claude(0));
    emu.edit_message(&ids[1], |m| m.parts.clear());
    emu.edit_message(&ids[3], |m| m.parts.clear());
    emu.fail_next_on(
        "/sync/message",
        500,
        "ArgumentValidationError: Object contains extra field `x` that is not in the validator.",
        1,
    );
    let (ok, report) = audit_json(&home, &["--repair"]);
    assert!(!ok);
    let refused = report["repair"]["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{report}");
    assert!(
        refused[0]
            .as_str()
            .unwrap()
            .contains("ArgumentValidationError")
    );
    assert_eq!(report["repair"]["fixed"], 1);
    assert_eq!(keys(&report["repair"]["remaining"]).len(), 1);
    // Nothing is lost: the next run sends it.
    let (ok, report) = audit_json(&home, &["--repair"]);
    assert!(ok, "{report}");
    assert_server_matches_export(&home, &emu);
}

#[test]
fn repair_works_while_the_daemon_runs() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let (home, _) = populated_home(2, 1);
    let _daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    let user = emu.default_user();
    let ids = message_ids(&home, &claude(1));
    emu.edit_message(&ids[1], |m| m.parts.clear());
    emu.edit_session(user, &claude(0), |s| s.title = Some("wrong".into()));
    let out = home.run(&["audit", "--repair"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_server_matches_export(&home, &emu);
}

/// The real-fixture tier: logs written by the real tools, synced, then audited. The comparison
/// rules must hold on real data (unicode, tool JSON, floats): what audit reports must be
/// exactly what a direct comparison of the emulation's rows with `export` finds — nothing,
/// `createdAt` included.
#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn real_fixtures_audit_matches_a_direct_comparison_after_a_sync() {
    let Some(root) = crate::real_fixtures::dir() else {
        return;
    };
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = TestHome::new()
        .with_env("CLAUDE_CONFIG_DIR", root.join("claude"))
        .with_env("CODEX_HOME", root.join("codex"));
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert_server_matches_export(&home, &emu);
    let exported = expected(&home);
    let user = emu.default_user();
    let wrong_start: BTreeSet<_> = exported
        .iter()
        .filter(|(sid, (s, _))| {
            s["createdAt"].as_i64() != Some(emu.session(user, sid).unwrap().created_at)
        })
        .map(|(sid, _)| key(sid, None, "createdAt", false))
        .collect();
    // Every session starts where export says, whichever file was read first (a flat
    // subagent file that started before its main transcript does not move the start).
    assert!(wrong_start.is_empty(), "createdAt differs: {wrong_start:?}");
    let (ok, report) = audit_json(&home, &["--limit", "1000"]);
    assert_eq!(keys(&report["differences"]), wrong_start);
    assert!(ok);
    assert_eq!(report["compared"], exported.len());
    assert_eq!(report["equal"], exported.len());
}

mod read_routes {
    //! The emulation's `/api/sessions` and `/api/sessions/get` answer as the server's
    //! `convex/http.ts` + `convex/api.ts` do, driven through the client's methods (and raw
    //! HTTP where the client never goes: no id, no limit).

    use std::time::Duration;

    use opensyncd::credentials::ApiKey;
    use opensyncd::model::{MessagePayload, Part, Role, SessionPayload};
    use opensyncd::push::{Client, ClientOptions, ErrorClass};
    use serde_json::{Value, json};

    use crate::support::{Emulation, ReadLimits};

    const KEY: &str = "osk_readRoutesKey0123456789abcdefghij";
    const OTHER: &str = "osk_readRoutesOther0123456789abcdefgh";

    fn client(emu: &Emulation, key: &str) -> Client {
        Client::new(ClientOptions {
            url: emu.url(),
            api_key: ApiKey::parse(key).unwrap(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn session(id: &str) -> SessionPayload {
        SessionPayload {
            external_id: id.into(),
            title: Some(format!("title of {id}")),
            source: "codex-cli".into(),
            prompt_tokens: Some(100),
            created_at: Some(1_000),
            ..SessionPayload::default()
        }
    }

    fn message(session: &str, id: &str, created_at: i64) -> MessagePayload {
        MessagePayload {
            session_external_id: session.into(),
            external_id: id.into(),
            role: Role::Assistant,
            text_content: Some(format!("text of {id}")),
            model: None,
            prompt_tokens: Some(7),
            completion_tokens: None,
            duration_ms: Some(250),
            source: "codex-cli".into(),
            parts: vec![
                Part::text(format!("text of {id}")),
                Part::tool_call("bash", json!({"cmd": "ls"})),
            ],
            created_at: Some(created_at),
        }
    }

    /// `GET` a path with the key, as raw JSON and status.
    async fn raw(emu: &Emulation, path: &str) -> (u16, Value) {
        opensyncd::push::install_crypto_provider();
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", emu.url()))
            .header("Authorization", format!("Bearer {KEY}"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    #[test]
    fn listing_and_reading_a_session_follow_the_servers_code() {
        let emu = Emulation::with_key(KEY);
        emu.disable_windows();
        emu.add_user(OTHER);
        let c = client(&emu, KEY);
        runtime().block_on(async {
            c.upsert_session(&session("a")).await.unwrap();
            c.upsert_session(&session("b")).await.unwrap();
            // The messages come a moment later (the server's clock, driven: under load both
            // could otherwise land in the same millisecond, and the order would be a tie).
            emu.advance_clock(std::time::Duration::from_millis(10));
            // Inserted out of createdAt order; m2 and m3 tie on createdAt.
            for (id, at) in [("m2", 2_000), ("m1", 1_000), ("m3", 2_000)] {
                c.upsert_message(&message("a", id, at)).await.unwrap();
            }
            // "a" was written last (its messages bump updatedAt): newest first.
            let listed = c.api_sessions(10).await.unwrap();
            let order: Vec<&str> = listed.iter().map(|s| s.external_id.as_str()).collect();
            assert_eq!(order, ["a", "b"]);
            assert_eq!(c.api_sessions(1).await.unwrap().len(), 1);
            let a = &listed[0];
            assert_eq!(
                (a.prompt_tokens, a.completion_tokens, a.total_tokens),
                (100.0, 0.0, 100.0)
            );
            assert_eq!((a.message_count, a.created_at), (3.0, 1_000.0));

            // Exactly api.ts's fields; unset optionals left out; no `source`.
            let (status, body) = raw(&emu, "/api/sessions?limit=1").await;
            assert_eq!(status, 200);
            let keys: Vec<&str> = body["sessions"][0]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut keys = keys;
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "completionTokens",
                    "cost",
                    "createdAt",
                    "externalId",
                    "id",
                    "isPublic",
                    "messageCount",
                    "promptTokens",
                    "title",
                    "totalTokens",
                    "updatedAt"
                ]
            );

            let detail = c.api_session(&a.id).await.unwrap().expect("found");
            let ids: Vec<&str> = detail
                .messages
                .iter()
                .map(|m| m.external_id.as_str())
                .collect();
            assert_eq!(
                ids,
                ["m1", "m2", "m3"],
                "by createdAt, ties in insertion order"
            );
            let m1 = &detail.messages[0];
            assert_eq!(
                (m1.prompt_tokens, m1.completion_tokens, m1.duration_ms),
                (Some(7.0), None, Some(250.0))
            );
            assert_eq!(m1.parts, message("a", "m1", 1_000).parts);

            // Errors, each as the server words it.
            assert_eq!(
                raw(&emu, "/api/sessions/get").await,
                (400, json!({"error": "Missing session ID"}))
            );
            assert_eq!(raw(&emu, "/api/sessions/get?id=").await.0, 400);
            let wrong_table = c.api_session("messages_00000001").await.unwrap_err();
            assert_eq!(wrong_table.class(), ErrorClass::Reject, "{wrong_table}");
            assert_eq!(c.api_session("sessions_99999999").await.unwrap(), None);
            let theirs = client(&emu, OTHER);
            assert_eq!(
                theirs.api_session(&a.id).await.unwrap(),
                None,
                "another user's"
            );
            assert!(theirs.api_sessions(10).await.unwrap().is_empty());
        });
        // One apiLogs row per successful /api/* call, none for the errors: the listings of
        // 10, 1, raw 1 and the other user's, and the one session read = 5.
        assert_eq!(emu.api_logs().len(), 5);
    }

    #[test]
    fn the_listing_takes_50_without_a_limit() {
        let emu = Emulation::with_key(KEY);
        let c = client(&emu, KEY);
        runtime().block_on(async {
            for i in 0..51 {
                c.upsert_session(&session(&format!("s{i}"))).await.unwrap();
            }
            let (status, body) = raw(&emu, "/api/sessions").await;
            assert_eq!(status, 200);
            assert_eq!(body["sessions"].as_array().unwrap().len(), 50);
            // parseInt: "3abc" is 3; "abc" is NaN, which Convex's take refuses.
            let (_, body) = raw(&emu, "/api/sessions?limit=3abc").await;
            assert_eq!(body["sessions"].as_array().unwrap().len(), 3);
            assert_eq!(raw(&emu, "/api/sessions?limit=abc").await.0, 500);
        });
    }

    #[test]
    fn reads_past_convexs_limits_fail_as_convex_words_them() {
        let emu = Emulation::with_key(KEY);
        emu.disable_windows();
        let c = client(&emu, KEY);
        runtime().block_on(async {
            c.upsert_session(&session("a")).await.unwrap();
            for (i, at) in [1_000, 2_000, 3_000].into_iter().enumerate() {
                c.upsert_message(&message("a", &format!("m{i}"), at))
                    .await
                    .unwrap();
            }
            let id = c.api_sessions(1).await.unwrap()[0].id.clone();
            // 1 get + 1 message range + 3 parts ranges = 5 ranges.
            emu.set_read_limits(ReadLimits {
                index_ranges: 5,
                ..ReadLimits::default()
            });
            assert!(c.api_session(&id).await.unwrap().is_some());
            emu.set_read_limits(ReadLimits {
                index_ranges: 4,
                ..ReadLimits::default()
            });
            let e = c.api_session(&id).await.unwrap_err();
            assert!(e.is_read_limit(), "{e}");
            assert!(
                e.to_string()
                    .contains("Too many reads in a single function execution (limit: 4)"),
                "{e}"
            );
            // 1 session + 3 messages + 6 parts = 10 documents.
            emu.set_read_limits(ReadLimits {
                documents: 9,
                ..ReadLimits::default()
            });
            let e = c.api_session(&id).await.unwrap_err();
            assert!(
                e.is_read_limit() && e.to_string().contains("Too many documents read"),
                "{e}"
            );
            emu.set_read_limits(ReadLimits {
                bytes: 100,
                ..ReadLimits::default()
            });
            let e = c.api_session(&id).await.unwrap_err();
            assert!(
                e.is_read_limit() && e.to_string().contains("Too many bytes read"),
                "{e}"
            );
            let e = c.api_sessions(1).await.unwrap_err();
            assert!(e.is_read_limit(), "the listing reads documents too: {e}");
        });
    }
}
