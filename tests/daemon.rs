//! Process-level tests of the daemon: the real binary, a temporary home, the in-process server
//! emulation. Each test ends by comparing what the server holds with what `export` predicts,
//! and by checking that no row was stored twice.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::home::{DaemonProcess, TestHome, copy_dir, wait_until};
use crate::support::Emulation;

pub const KEY: &str = "osk_daemonTestKey0123456789abcdefghij";

/// Writes real-shaped Claude Code and Codex transcripts the tests append to.
pub struct Transcripts;

impl Transcripts {
    pub fn claude_user(session: &str, n: u32, text: &str) -> String {
        json!({
            "type": "user", "uuid": format!("{session}-u{n}"), "parentUuid": null,
            "sessionId": session, "timestamp": ts(n), "cwd": "/home/dev/project",
            "gitBranch": "main", "version": "2.1.7", "userType": "external", "isSidechain": false,
            "message": {"role": "user", "content": text}
        })
        .to_string()
    }

    pub fn claude_assistant(session: &str, n: u32, text: &str, output_tokens: u64) -> String {
        json!({
            "type": "assistant", "uuid": format!("{session}-a{n}"),
            "parentUuid": format!("{session}-u{n}"), "sessionId": session, "timestamp": ts(n),
            "cwd": "/home/dev/project", "version": "2.1.7", "isSidechain": false,
            "requestId": format!("req_{session}_{n}"),
            "message": {
                "id": format!("msg_{session}_{n}"), "type": "message", "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 12, "cache_creation_input_tokens": 100,
                          "cache_read_input_tokens": 1000, "output_tokens": output_tokens}
            }
        })
        .to_string()
    }

    /// A Claude session of `turns` prompt/answer pairs.
    pub fn claude_session(session: &str, turns: u32) -> String {
        let mut s = String::new();
        for n in 0..turns {
            s.push_str(&Self::claude_user(
                session,
                n,
                &format!("question {n} about the build"),
            ));
            s.push('\n');
            s.push_str(&Self::claude_assistant(
                session,
                n,
                &format!("answer {n}: run cargo test"),
                40 + u64::from(n),
            ));
            s.push('\n');
        }
        s
    }

    pub fn codex_meta(id: &str) -> String {
        json!({"timestamp": "2026-06-01T10:00:00.000Z", "type": "session_meta", "payload": {
            "id": id, "timestamp": "2026-06-01T10:00:00.000Z", "cwd": "/home/dev/codexproj",
            "originator": "codex_cli_rs", "cli_version": "0.125.0", "source": "cli",
            "model_provider": "openai", "git": {"branch": "main"}}})
        .to_string()
    }

    pub fn codex_turn(n: u32, total_in: u64, total_out: u64) -> String {
        let t = |k: u32| {
            format!(
                "2026-06-01T10:{:02}:{:02}.000Z",
                (n * 4 + k) / 60,
                (n * 4 + k) % 60
            )
        };
        [
            json!({"timestamp": t(0), "type": "turn_context", "payload": {"cwd": "/home/dev/codexproj", "model": "gpt-5.5", "approval_policy": "on-request", "summary": "auto"}}),
            json!({"timestamp": t(1), "type": "event_msg", "payload": {"type": "user_message", "message": format!("codex prompt {n}")}}),
            json!({"timestamp": t(2), "type": "event_msg", "payload": {"type": "agent_message", "message": format!("codex answer {n}")}}),
            json!({"timestamp": t(3), "type": "event_msg", "payload": {"type": "token_count", "info": {
                "total_token_usage": {"input_tokens": total_in, "cached_input_tokens": total_in / 2, "output_tokens": total_out, "reasoning_output_tokens": 0, "total_tokens": total_in + total_out},
                "last_token_usage": {"input_tokens": 100, "cached_input_tokens": 50, "output_tokens": 10, "reasoning_output_tokens": 0, "total_tokens": 110},
                "model_context_window": 200000}}}),
        ]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect()
    }

    pub fn codex_session(id: &str, turns: u32) -> String {
        let mut s = Self::codex_meta(id);
        s.push('\n');
        for n in 0..turns {
            s.push_str(&Self::codex_turn(
                n,
                1000 * u64::from(n + 1),
                50 * u64::from(n + 1),
            ));
        }
        s
    }
}

/// Lets time pass (an outage's length, a kill's random moment): fault timing, not
/// synchronisation — nothing waits on a result here.
pub fn hold(d: Duration) {
    let end = std::time::Instant::now() + d;
    while std::time::Instant::now() < end {
        std::thread::park_timeout(end - std::time::Instant::now());
    }
}

fn ts(n: u32) -> String {
    format!("2026-06-01T09:{:02}:{:02}.000Z", (n * 2) / 60, (n * 2) % 60)
}

/// Appends raw bytes to a file.
pub fn append(path: &Path, bytes: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(bytes.as_bytes()).unwrap();
}

/// A home with a few sessions of each JSONL tool plus the project's OpenCode fixture tree.
pub fn populated_home(claude_sessions: u32, codex_sessions: u32) -> (TestHome, Vec<PathBuf>) {
    let home = TestHome::new();
    let mut files = Vec::new();
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    for i in 0..claude_sessions {
        let sid = format!("c1a0de00-0000-4000-8000-{i:012}");
        let path = project.join(format!("{sid}.jsonl"));
        std::fs::write(&path, Transcripts::claude_session(&sid, 3 + i % 4)).unwrap();
        files.push(path);
    }
    let day = home.codex_home().join("sessions/2026/06/01");
    std::fs::create_dir_all(&day).unwrap();
    for i in 0..codex_sessions {
        let id = format!("019e0000-0000-7000-8000-{i:012}");
        let path = day.join(format!("rollout-2026-06-01T10-00-00-{id}.jsonl"));
        std::fs::write(&path, Transcripts::codex_session(&id, 2 + i % 3)).unwrap();
        files.push(path);
    }
    let opencode_fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opencode");
    if opencode_fixture.is_dir() {
        copy_dir(&opencode_fixture, &home.opencode_data());
    }
    (home, files)
}

/// What `export` says the server should hold: session id → (session, message id → message).
pub fn expected(home: &TestHome) -> BTreeMap<String, (Value, BTreeMap<String, Value>)> {
    let out = home.run(&["export"]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let id = v["session"]["externalId"].as_str().unwrap().to_string();
        let messages = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["externalId"].as_str().unwrap().to_string(), m.clone()))
            .collect();
        map.insert(id, (v["session"].clone(), messages));
    }
    map
}

/// Asserts the server holds exactly what `export` predicts, each row once.
pub fn assert_server_matches_export(home: &TestHome, emu: &Emulation) {
    let want = expected(home);
    let user = emu.default_user();
    assert!(
        emu.duplicate_rows().is_empty(),
        "duplicate rows: {:?}",
        emu.duplicate_rows()
    );
    let sessions = emu.sessions(user);
    let have: BTreeSet<String> = sessions.iter().map(|s| s.external_id.clone()).collect();
    let want_ids: BTreeSet<String> = want.keys().cloned().collect();
    assert_eq!(have, want_ids, "session ids differ");
    for (sid, (session, messages)) in &want {
        let stored = sessions.iter().find(|s| &s.external_id == sid).unwrap();
        let tokens = |k: &str| session[k].as_u64().unwrap_or(0);
        assert_eq!(
            stored.prompt_tokens,
            tokens("promptTokens"),
            "{sid} promptTokens"
        );
        assert_eq!(
            stored.completion_tokens,
            tokens("completionTokens"),
            "{sid} completionTokens"
        );
        assert_eq!(
            stored.title.as_deref(),
            session["title"].as_str(),
            "{sid} title"
        );
        let stored_msgs = emu.messages_of_session(user, sid);
        let ids: BTreeSet<String> = stored_msgs.iter().map(|m| m.external_id.clone()).collect();
        let want_msg_ids: BTreeSet<String> = messages.keys().cloned().collect();
        assert_eq!(ids, want_msg_ids, "{sid}: message ids differ");
        for m in &stored_msgs {
            let w = &messages[&m.external_id];
            assert_eq!(
                m.text_content.as_deref(),
                w["textContent"].as_str(),
                "{}: text",
                m.external_id
            );
            assert_eq!(
                m.parts.len(),
                w["parts"].as_array().map_or(0, Vec::len),
                "{}: parts",
                m.external_id
            );
        }
    }
}

/// Asserts the server holds export's `createdAt` for every session and message (the server
/// fixes it at insert, so a wrong one is never repaired by a later write).
pub fn assert_created_at_matches_export(home: &TestHome, emu: &Emulation) {
    let user = emu.default_user();
    for (sid, (session, messages)) in expected(home) {
        let stored = emu
            .session(user, &sid)
            .unwrap_or_else(|| panic!("{sid} is not on the server"));
        assert_eq!(
            Some(stored.created_at),
            session["createdAt"].as_i64(),
            "{sid} createdAt"
        );
        for m in emu.messages_of_session(user, &sid) {
            let want = messages
                .get(&m.external_id)
                .unwrap_or_else(|| panic!("{} is not in export", m.external_id));
            assert_eq!(
                Some(m.created_at),
                want["createdAt"].as_i64(),
                "{}",
                m.external_id
            );
        }
    }
}

pub fn start(home: &TestHome, emu: &Emulation) -> DaemonProcess {
    home.login(&emu.url(), KEY);
    home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100")])
}

/// Waits until the server matches `export` (the daemon works in the background).
pub fn wait_converged(home: &TestHome, emu: &Emulation, within: Duration) {
    let want = expected(home);
    let total: usize = want.values().map(|(_, m)| m.len()).sum();
    let user = emu.default_user();
    let ok = emu.wait_for(within, |_| {
        let sessions = emu.sessions(user);
        sessions.len() == want.len()
            && want.iter().all(|(sid, (s, msgs))| {
                sessions.iter().any(|st| {
                    &st.external_id == sid
                        && st.prompt_tokens == s["promptTokens"].as_u64().unwrap_or(0)
                        && st.completion_tokens == s["completionTokens"].as_u64().unwrap_or(0)
                }) && emu.messages_of_session(user, sid).len() == msgs.len()
            })
    });
    assert!(
        ok,
        "server did not converge to export ({} sessions, {total} messages)",
        want.len()
    );
    assert_server_matches_export(home, emu);
}

#[test]
fn backfill_sends_exactly_what_export_predicts() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(4, 3);
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
}

/// More files than the daemon's backlog keeps in memory (512): the rest of the scan goes
/// through its scratch file and is read back in batches; nothing is lost or sent twice, and
/// the scratch file leaves no trace in the state directory.
#[test]
fn a_backfill_larger_than_the_in_memory_backlog_converges() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let project = home.claude_projects().join("-home-dev-many");
    std::fs::create_dir_all(&project).unwrap();
    for i in 0..700u32 {
        let sid = format!("3a4e0000-0000-4000-8000-{i:012}");
        std::fs::write(
            project.join(format!("{sid}.jsonl")),
            Transcripts::claude_session(&sid, 1 + i % 2),
        )
        .unwrap();
    }
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(300));
    let mut leftovers = Vec::new();
    let mut dirs = vec![home.opensyncd_home()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.path().is_dir() {
                dirs.push(entry.path());
            } else if entry.file_name().to_string_lossy().contains("scan-backlog") {
                leftovers.push(entry.path());
            }
        }
    }
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_shot_sync_backfills_and_a_second_sync_sends_nothing() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(2, 2);
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert_server_matches_export(&home, &emu);
    let writes = emu.requests().len();
    let out = home.ok(&["sync"]);
    assert!(out.contains("0 message(s) sent"), "{out}");
    assert_eq!(emu.requests().len(), writes, "a second sync re-sent data");
}

#[test]
fn live_appends_and_new_codex_day_directories_are_picked_up() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(1, 1);
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));

    let claude = &files[0];
    let sid = claude.file_stem().unwrap().to_str().unwrap().to_string();
    append(
        claude,
        &format!(
            "{}\n",
            Transcripts::claude_user(&sid, 90, "a live question")
        ),
    );
    append(
        claude,
        &format!(
            "{}\n",
            Transcripts::claude_assistant(&sid, 90, "a live answer", 77)
        ),
    );
    let user = emu.default_user();
    assert!(
        emu.wait_for(Duration::from_secs(20), |_| emu
            .messages_of_session(user, &sid)
            .iter()
            .any(|m| m.text_content.as_deref() == Some("a live answer"))),
        "live append did not arrive"
    );

    // A new day directory with a rollout written into it at once.
    let day = home.codex_home().join("sessions/2026/06/02");
    std::fs::create_dir_all(&day).unwrap();
    let id = "019e0000-0000-7000-8000-00000000beef";
    std::fs::write(
        day.join(format!("rollout-2026-06-02T10-00-00-{id}.jsonl")),
        Transcripts::codex_session(id, 2),
    )
    .unwrap();
    assert!(
        emu.wait_for(Duration::from_secs(20), |_| emu
            .sessions(user)
            .iter()
            .any(|s| s.external_id == id)),
        "rollout in a new directory was not picked up"
    );
    wait_converged(&home, &emu, Duration::from_secs(30));
}

#[test]
fn a_second_instance_exits_zero_with_a_message() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(0, 0);
    let _d = start(&home, &emu);
    let out = home.run(&["run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already running"));
}

#[test]
fn sigterm_mid_push_exits_zero_within_the_drain_time_and_the_next_start_completes() {
    let emu = Emulation::with_key(KEY);
    emu.set_latency(Duration::from_millis(200));
    let (home, _) = populated_home(6, 4);
    let mut d = start(&home, &emu);
    assert!(emu.wait_for(Duration::from_secs(30), |_| !emu.requests().is_empty()));
    d.signal(15);
    let (status, took) = d.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}: {}", d.log_text());
    assert!(took < Duration::from_secs(15), "drain took {took:?}");
    emu.set_latency(Duration::ZERO);
    let _d2 = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100")]);
    wait_converged(&home, &emu, Duration::from_secs(60));
}

#[test]
fn kill_9_at_random_points_loses_and_duplicates_nothing() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(6, 4);
    home.login(&emu.url(), KEY);
    let claude = files[0].clone();
    let sid = claude.file_stem().unwrap().to_str().unwrap().to_string();
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..22u32 {
        let mut d = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "50")]);
        // Live appends between and during rounds, sometimes as a partial line.
        let line = format!(
            "{}\n",
            Transcripts::claude_user(&sid, 100 + round, &format!("round {round}"))
        );
        if round % 3 == 0 {
            let (a, b) = line.split_at(line.len() / 2);
            append(&claude, a);
            hold(Duration::from_millis(next() % 50));
            append(&claude, b);
        } else {
            append(&claude, &line);
        }
        // Kill at a random moment: fault injection, not synchronisation.
        hold(Duration::from_millis(next() % 400));
        d.kill9();
    }
    let _d = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "50")]);
    wait_converged(&home, &emu, Duration::from_secs(90));
}

#[test]
fn faults_and_an_outage_converge_without_a_hot_retry_loop() {
    let emu = Emulation::with_key(KEY);
    emu.set_faults(crate::support::Faults {
        error_rate: 0.3,
        rate_429: 0.1,
        retry_after_secs: 1,
        drop_before_rate: 0.05,
        drop_after_rate: 0.05,
        seed: 7,
    });
    let (home, _) = populated_home(3, 2);
    let _d = start(&home, &emu);
    // Full-jitter backoff under 30% errors can be slow on a loaded machine; what matters is
    // that it converges, not how fast.
    wait_converged(&home, &emu, Duration::from_secs(400));

    // An outage: the backlog waits on disk, requests stay few.
    emu.set_faults(crate::support::Faults::default());
    let before = emu.requests().len();
    emu.start_outage();
    let project = home.claude_projects().join("-home-dev-project");
    let sid = "c1a0de00-0000-4000-8000-0000000000ff";
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        Transcripts::claude_session(sid, 2),
    )
    .unwrap();
    hold(Duration::from_secs(60));
    let during = emu.requests().len() - before;
    emu.end_outage();
    assert!(
        during < 60,
        "{during} requests during a 60 s outage: a hot retry loop"
    );
    wait_converged(&home, &emu, Duration::from_secs(400));
}

#[test]
fn a_revoked_key_pauses_without_loss_and_a_new_login_resumes() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(1, 0);
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    let user = emu.default_user();
    emu.revoke_key(user);
    let claude = &files[0];
    let sid = claude.file_stem().unwrap().to_str().unwrap().to_string();
    append(
        claude,
        &format!(
            "{}\n",
            Transcripts::claude_user(&sid, 50, "after revocation")
        ),
    );
    assert!(
        wait_until(Duration::from_secs(30), || home
            .status(&[])
            .contains("not logged in (the server refused the API key")),
        "status does not show the pause"
    );
    let new_key = "osk_newKeyAfterRevoke0123456789abcdef";
    emu.set_key(user, new_key);
    home.login(&emu.url(), new_key);
    wait_converged(&home, &emu, Duration::from_secs(60));
}

#[test]
fn truncate_rewrite_delete_recreate_rename_and_partial_lines_end_correct() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(3, 0);
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));

    // Truncate and rewrite with the same first line and different content after it.
    let a = &files[0];
    let sid = a.file_stem().unwrap().to_str().unwrap().to_string();
    let first_line = std::fs::read_to_string(a)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    std::fs::write(
        a,
        format!(
            "{first_line}\n{}\n",
            Transcripts::claude_assistant(&sid, 0, "rewritten answer", 99)
        ),
    )
    .unwrap();

    // Delete and recreate with new content.
    let b = &files[1];
    let sid_b = b.file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(b).unwrap();
    std::fs::write(b, Transcripts::claude_session(&sid_b, 5)).unwrap();

    // Rename (content unchanged) and then append to the new name.
    let c = &files[2];
    let renamed = c.with_file_name("renamed.jsonl.tmp");
    std::fs::rename(c, &renamed).unwrap();
    std::fs::rename(&renamed, c).unwrap();
    let sid_c = c.file_stem().unwrap().to_str().unwrap().to_string();

    // A partial last line, completed later.
    let partial = format!(
        "{}\n",
        Transcripts::claude_user(&sid_c, 70, "completed later")
    );
    let (head, tail) = partial.split_at(30);
    append(c, head);
    let user = emu.default_user();
    assert!(emu.wait_for(Duration::from_secs(20), |_| {
        emu.messages_of_session(user, &sid)
            .iter()
            .any(|m| m.text_content.as_deref() == Some("rewritten answer"))
    }));
    assert!(
        !emu.messages_of_session(user, &sid_c)
            .iter()
            .any(|m| m.text_content.as_deref() == Some("completed later")),
        "a partial line was shipped"
    );
    append(c, tail);
    assert!(emu.wait_for(Duration::from_secs(20), |_| {
        emu.messages_of_session(user, &sid_c)
            .iter()
            .any(|m| m.text_content.as_deref() == Some("completed later"))
    }));
    // Rows of the old content stay on the server (it has no delete); everything the files
    // hold now is there, each once.
    assert!(emu.duplicate_rows().is_empty());
    let want = expected(&home);
    for (sid, (_, msgs)) in &want {
        let have: BTreeSet<String> = emu
            .messages_of_session(user, sid)
            .iter()
            .map(|m| m.external_id.clone())
            .collect();
        for id in msgs.keys() {
            assert!(have.contains(id), "{sid}: {id} missing");
        }
    }
}

#[test]
fn a_starting_daemon_waits_for_a_one_shot_command_holding_the_lock() {
    // A user running `opensyncd status` or `sync` while the service starts must not make the
    // service exit as "already running": only a holder that answers the socket is a daemon.
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 1);
    home.login(&emu.url(), KEY);
    let lock_path = home.opensyncd_home().join("state/opensyncd.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.try_lock().expect("the test takes the lock first");
    let mut cmd = home.cmd(&["run"]);
    let log = home.home.join("waiting-daemon.log");
    cmd.env("OPENSYNCD_DEBOUNCE_MS", "100")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = cmd.spawn().unwrap();
    let waiting = crate::home::wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("waiting for it to finish"))
    });
    assert!(
        waiting,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
    held.unlock().unwrap();
    wait_converged(&home, &emu, Duration::from_secs(60));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn backfill_of_every_fixture_of_the_three_tools_matches_export() {
    // Our richest fixtures: Claude (subagents in both layouts, a resumed session, a malformed
    // line, a partial line), Codex (every vintage, archived sessions), OpenCode JSON storage.
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    copy_dir(&fixtures.join("claude"), &home.home.join(".claude"));
    copy_dir(&fixtures.join("codex"), &home.codex_home());
    copy_dir(&fixtures.join("opencode"), &home.opencode_data());
    let want = expected(&home);
    for source in ["claude-code", "codex-cli", "opencode"] {
        assert!(
            want.values()
                .any(|(s, _)| s["source"].as_str() == Some(source)),
            "no {source} session in the fixtures"
        );
    }
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(90));
    assert!(
        emu.duplicate_rows().is_empty(),
        "{:?}",
        emu.duplicate_rows()
    );
}

/// The daemon with opensyncd's debug log (which says when and why it scans).
fn start_logging_scans(home: &TestHome, emu: &Emulation) -> DaemonProcess {
    home.login(&emu.url(), KEY);
    home.spawn_daemon(&[
        ("OPENSYNCD_DEBOUNCE_MS", "100"),
        ("OPENSYNCD_LOG_LEVEL", "debug"),
    ])
}

/// The full scans the daemon's log reports, by reason.
fn scans_logged(d: &DaemonProcess) -> Vec<String> {
    d.log_text()
        .lines()
        .filter(|l| l.contains(" scan ") && l.contains("reason="))
        .map(|l| l.split("reason=").nth(1).unwrap_or_default().to_string())
        .collect()
}

/// The daemon logged exactly `count` full scans (`which` names them, for the failure message).
fn assert_full_scans(d: &DaemonProcess, count: usize, which: &str) {
    assert_eq!(
        scans_logged(d).len(),
        count,
        "only {which} was expected; log:\n{}",
        d.log_text()
    );
}

/// Writes a two-turn Claude Code transcript for `sid` into `project` (created if missing) and
/// waits until its session is on the server (`what` says which session, for the failure
/// message).
fn write_claude_session_and_wait(
    emu: &Emulation,
    d: &DaemonProcess,
    project: &Path,
    sid: &str,
    what: &str,
) {
    std::fs::create_dir_all(project).unwrap();
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        Transcripts::claude_session(sid, 2),
    )
    .unwrap();
    let user = emu.default_user();
    assert!(
        emu.wait_for(Duration::from_secs(30), |_| emu
            .sessions(user)
            .iter()
            .any(|s| s.external_id == sid)),
        "{what} did not arrive; log:\n{}",
        d.log_text()
    );
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
}

/// A live pre-1.2 OpenCode (JSON storage, no database): a new session and a new message in
/// an old one, written in OpenCode 1.1's order (a user message before its parts, an
/// assistant message before its parts and rewritten complete after them), reach the server
/// through the watcher alone — new session and message directories are listed, not scanned.
#[test]
fn a_live_json_opencode_reaches_the_server_without_a_full_scan() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 0);
    let d = start_logging_scans(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert_full_scans(&d, 1, "the start scan");

    let storage = home.opencode_data().join("storage");
    let project = "4b0ea68d7af9a6031a7ffda7ad66e0cb83315750";
    let session = "ses_4f1c27e0d001LiveSessionAb";
    write_json(
        &storage.join(format!("session/{project}/{session}.json")),
        &json!({
            "id": session, "slug": "live-otter", "version": "1.1.40", "projectID": project,
            "directory": "/home/dev/webapp", "title": "A live session", "permission": [],
            "time": {"created": 1767262000000u64, "updated": 1767262000000u64}
        }),
    );
    // A user message as OpenCode 1.1 writes it: the message file, then its text part (in a
    // message directory that appears after the message file).
    let user_turn = |session: &str, msg: &str, part: &str, created: u64, text: &str| {
        write_json(
            &storage.join(format!("message/{session}/{msg}.json")),
            &json!({
                "id": msg, "sessionID": session, "role": "user",
                "time": {"created": created}, "agent": "build",
                "model": {"providerID": "anthropic", "modelID": "claude-sonnet-4-5"}
            }),
        );
        write_json(
            &storage.join(format!("part/{msg}/{part}.json")),
            &json!({
                "id": part, "sessionID": session, "messageID": msg, "type": "text", "text": text
            }),
        );
    };
    let user_msg = "msg_b3e3d6a10001LiveUserMsgAb";
    user_turn(
        session,
        user_msg,
        "prt_b3e3d6a10002LivePartAb",
        1767262000100,
        "a live question to opencode",
    );
    let reply = "msg_b3e3d6b20001LiveReplyAbc";
    let reply_info = |completed: bool| {
        let mut info = json!({
            "id": reply, "sessionID": session, "role": "assistant", "parentID": user_msg,
            "modelID": "claude-sonnet-4-5", "providerID": "anthropic", "mode": "build",
            "agent": "build", "path": {"cwd": "/home/dev/webapp", "root": "/home/dev/webapp"},
            "time": {"created": 1767262001000u64}, "cost": 0,
            "tokens": {"input": 0, "output": 0, "reasoning": 0, "cache": {"read": 0, "write": 0}}
        });
        if completed {
            info["time"]["completed"] = json!(1767262009000u64);
            info["tokens"] = json!({"input": 120, "output": 45, "reasoning": 0,
                                    "cache": {"read": 300, "write": 0}});
            info["cost"] = json!(0.001);
            info["finish"] = json!("stop");
        }
        info
    };
    let reply_file = storage.join(format!("message/{session}/{reply}.json"));
    write_json(&reply_file, &reply_info(false));
    write_json(
        &storage.join(format!("part/{reply}/prt_b3e3d6b20002LiveAnswerA.json")),
        &json!({
            "id": "prt_b3e3d6b20002LiveAnswerA", "sessionID": session, "messageID": reply,
            "type": "text", "text": "a live opencode answer"
        }),
    );
    write_json(&reply_file, &reply_info(true));

    // A follow-up in a session that existed at the start (its message directory did too).
    let old_session = "ses_4f1c2a9b8ffeAbCdEfGhIjKlMn";
    user_turn(
        old_session,
        "msg_b3e3d6c30001LiveFollowUpA",
        "prt_b3e3d6c30002LiveFollowUp",
        1767262100000,
        "a follow-up in an old session",
    );

    let user = emu.default_user();
    let has = |sid: &str, text: &str| {
        emu.messages_of_session(user, sid)
            .iter()
            .any(|m| m.text_content.as_deref() == Some(text))
    };
    assert!(
        emu.wait_for(Duration::from_secs(30), |_| has(
            session,
            "a live question to opencode"
        ) && has(
            session,
            "a live opencode answer"
        ) && has(
            old_session,
            "a follow-up in an old session"
        )),
        "the live OpenCode messages did not arrive; log:\n{}",
        d.log_text()
    );
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert_full_scans(&d, 1, "the start scan");
    assert!(d.log_text().contains("new directory"), "{}", d.log_text());
}

/// A Claude Code project directory that appears with a transcript already in it (moved in,
/// so the file predates any watch), and one created and written at once: both sessions reach
/// the server, and neither costs a full scan.
#[test]
fn a_new_claude_project_directory_with_a_transcript_in_it_is_picked_up() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 0);
    let d = start_logging_scans(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));

    let moved_sid = "c1a0de00-0000-4000-8000-00000000a001";
    let staging = home.home.join("staging/-home-dev-moved");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join(format!("{moved_sid}.jsonl")),
        Transcripts::claude_session(moved_sid, 2),
    )
    .unwrap();
    std::fs::rename(&staging, home.claude_projects().join("-home-dev-moved")).unwrap();

    let fresh_sid = "c1a0de00-0000-4000-8000-00000000a002";
    let fresh = home.claude_projects().join("-home-dev-fresh");
    std::fs::create_dir(&fresh).unwrap();
    std::fs::write(
        fresh.join(format!("{fresh_sid}.jsonl")),
        Transcripts::claude_session(fresh_sid, 2),
    )
    .unwrap();

    let user = emu.default_user();
    assert!(
        emu.wait_for(Duration::from_secs(30), |_| {
            let sessions = emu.sessions(user);
            [moved_sid, fresh_sid]
                .iter()
                .all(|sid| sessions.iter().any(|s| s.external_id == *sid))
        }),
        "the new project directories' sessions did not arrive; log:\n{}",
        d.log_text()
    );
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert_full_scans(&d, 1, "the start scan");
}

/// `set claude_dirs` while the daemon runs: from the reload on, the new directory is watched
/// (before, the daemon kept watching the old one until a restart, and a session written in
/// the new one waited for the hourly scan).
#[test]
fn a_changed_directory_setting_is_watched_from_the_reload_on() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 0);
    let d = start_logging_scans(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));

    let other = home.home.join("work-claude");
    std::fs::create_dir_all(other.join("projects")).unwrap();
    let said = home.ok(&["set", "claude_dirs", &other.display().to_string()]);
    assert!(said.contains("reloaded"), "{said}");

    write_claude_session_and_wait(
        &emu,
        &d,
        &other.join("projects/-home-dev-other"),
        "c1a0de00-0000-4000-8000-00000000b001",
        "the session in the newly configured directory",
    );
    assert_full_scans(&d, 2, "the start and reload scans");
}

/// Six Claude sessions and a daemon told to restart in place after a backfill of three units
/// or more (`extra_env` added), against an emulation slow enough (400 ms per request) that the
/// backfill spans the daemon's progress ticks (2 s apart), which is when it looks.
fn daemon_that_restarts_after_its_backfill(
    extra_env: &[(&str, &str)],
) -> (Emulation, TestHome, Vec<PathBuf>, DaemonProcess) {
    let emu = Emulation::with_key(KEY);
    emu.set_latency(Duration::from_millis(400));
    let (home, files) = populated_home(6, 0);
    home.login(&emu.url(), KEY);
    let mut env = vec![
        ("OPENSYNCD_DEBOUNCE_MS", "100"),
        ("OPENSYNCD_TEST_RENEW_AFTER_UNITS", "3"),
    ];
    env.extend_from_slice(extra_env);
    let d = home.spawn_daemon(&env);
    (emu, home, files, d)
}

/// A command sent while the daemon restarts in place — while the old image drains, or before
/// the new one listens — is answered by the new image, instead of being told that no daemon
/// runs (`status` would then show a stopped daemon) or that it is stopping. The new image is
/// made to wait 1.5 s before it listens, so that the command lands in that gap.
#[test]
fn a_command_during_a_restart_in_place_is_answered_by_the_new_image() {
    // `_emu`, not `_`: the emulation must outlive the test.
    let (_emu, home, _files, d) =
        daemon_that_restarts_after_its_backfill(&[("OPENSYNCD_TEST_LISTEN_DELAY_MS", "1500")]);
    let marker = home.opensyncd_home().join("state/restarting");
    assert!(
        wait_until(Duration::from_secs(120), || marker.exists()),
        "no restart in place after the backfill; log:\n{}",
        d.log_text()
    );
    let out = home.run(&["status", "--json"]);
    assert!(
        out.status.success(),
        "status during the restart failed: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log_text()
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["daemon_pid"],
        serde_json::json!(d.pid()),
        "status did not come from the daemon: {status}"
    );
    let log = d.log_text();
    assert_eq!(
        crate::home::started_pids(&log),
        vec![d.pid().to_string(); 2],
        "{log}"
    );
    assert!(!marker.exists(), "the new image left the restart marker");
}

/// Once idle after a backfill of at least `OPENSYNCD_TEST_RENEW_AFTER_UNITS` units (1,000 in
/// real life), the daemon restarts in place — same pid, same log — to give back the memory the
/// backfill left behind, once: the new image's start scan finds nothing to do, so it does not
/// restart again, and it keeps watching (a session written afterwards arrives).
#[test]
fn after_a_backfill_the_daemon_restarts_in_place_once_and_keeps_working() {
    let (emu, home, files, d) =
        daemon_that_restarts_after_its_backfill(&[("OPENSYNCD_LOG_LEVEL", "debug")]);
    wait_converged(&home, &emu, Duration::from_secs(120));
    let restarted = |d: &DaemonProcess| {
        d.log_text()
            .matches("backfill done: restarting in place")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(30), || restarted(&d) == 1
            && d.log_text().matches("opensyncd started").count() == 2
            && crate::home::daemon_answers(
                &home.opensyncd_home().join("state/control.sock")
            )),
        "no restart in place after the backfill; log:\n{}",
        d.log_text()
    );
    emu.set_latency(Duration::ZERO);

    write_claude_session_and_wait(
        &emu,
        &d,
        files[0].parent().unwrap(),
        "c1a0de00-0000-4000-8000-00000000c001",
        "a session written after the restart",
    );
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert!(
        emu.duplicate_rows().is_empty(),
        "{:?}",
        emu.duplicate_rows()
    );
    let log = d.log_text();
    assert_eq!(restarted(&d), 1, "restarted more than once; log:\n{log}");
    assert_eq!(
        crate::home::started_pids(&log),
        vec![d.pid().to_string(); 2],
        "{log}"
    );
}
