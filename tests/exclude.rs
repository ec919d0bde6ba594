//! The `exclude` setting: excluded files are never read (at scan and at file-event time),
//! `export` leaves out excluded files and sessions of excluded projects, and `status` counts
//! what was left out.

use std::time::Duration;

use crate::daemon::{KEY, Transcripts, start};
use crate::home::TestHome;
use crate::support::Emulation;

fn claude_session(home: &TestHome, project: &str, sid: &str) {
    let dir = home.claude_projects().join(project);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{sid}.jsonl")),
        Transcripts::claude_session(sid, 2),
    )
    .unwrap();
}

fn codex_session(home: &TestHome, id: &str) {
    let day = home.codex_home().join("sessions/2026/06/01");
    std::fs::create_dir_all(&day).unwrap();
    std::fs::write(
        day.join(format!("rollout-2026-06-01T10-00-00-{id}.jsonl")),
        Transcripts::codex_session(id, 2),
    )
    .unwrap();
}

fn exported_ids(home: &TestHome) -> (Vec<String>, String) {
    let out = home.run(&["export"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["session"]["externalId"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    (ids, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn export_and_status_leave_out_excluded_files_and_projects() {
    let home = TestHome::new();
    claude_session(
        &home,
        "-home-dev-project",
        "c1a0de00-0000-4000-8000-000000000001",
    );
    claude_session(
        &home,
        "-home-dev-secret",
        "c1a0de00-0000-4000-8000-000000000002",
    );
    claude_session(
        &home,
        "-home-dev-secret",
        "c1a0de00-0000-4000-8000-000000000003",
    );
    // The Codex session's cwd is /home/dev/codexproj (see Transcripts::codex_meta).
    codex_session(&home, "019e0000-0000-7000-8000-000000000001");
    let (all, _) = exported_ids(&home);
    assert_eq!(all.len(), 4);

    home.ok(&[
        "set",
        "exclude",
        "~/.claude/projects/-home-dev-secret,/home/dev/codexproj/**",
    ]);
    let (ids, err) = exported_ids(&home);
    assert_eq!(ids, ["c1a0de00-0000-4000-8000-000000000001"]);
    assert!(
        err.contains("1 session(s) in excluded projects left out"),
        "{err}"
    );

    let status: serde_json::Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    let claude = status["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == "claude-code")
        .unwrap();
    assert_eq!(claude["excluded_files"], 2);
    assert_eq!(claude["files"], 1);
    let text = home.status(&[]);
    assert!(
        text.contains("2 files never read") && text.contains("~/.claude/projects/-home-dev-secret"),
        "{text}"
    );
}

#[test]
fn the_daemon_never_reads_excluded_files_at_scan_or_at_event_time() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    claude_session(
        &home,
        "-home-dev-project",
        "c1a0de00-0000-4000-8000-000000000001",
    );
    claude_session(
        &home,
        "-home-dev-secret",
        "c1a0de00-0000-4000-8000-00000000000a",
    );
    home.ok(&["set", "exclude", "~/.claude/projects/-home-dev-secret/**"]);
    let daemon = start(&home, &emu);
    let user = emu.default_user();
    assert!(emu.wait_for(Duration::from_secs(60), |e| {
        e.session(user, "c1a0de00-0000-4000-8000-000000000001")
            .is_some()
    }));
    // Written while it runs: the secret one arrives through a file event only.
    claude_session(
        &home,
        "-home-dev-secret",
        "c1a0de00-0000-4000-8000-00000000000b",
    );
    claude_session(
        &home,
        "-home-dev-project",
        "c1a0de00-0000-4000-8000-000000000002",
    );
    assert!(emu.wait_for(Duration::from_secs(60), |e| {
        e.session(user, "c1a0de00-0000-4000-8000-000000000002")
            .is_some()
    }));
    // A sync through the daemon (a full scan) after the new good one arrived.
    home.ok(&["sync"]);
    let ids: Vec<String> = emu
        .sessions(user)
        .into_iter()
        .map(|s| s.external_id)
        .collect();
    assert!(
        !ids.iter().any(|id| id.ends_with('a') || id.ends_with('b')),
        "an excluded session reached the server: {ids:?}"
    );
    assert!(
        !daemon.log_text().contains("-home-dev-secret"),
        "an excluded file was touched: {}",
        daemon.log_text()
    );
    let status: serde_json::Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    assert_eq!(status["sources"][0]["source"], "claude-code");
    assert_eq!(status["sources"][0]["excluded_files"], 2, "{status}");

    // A pattern added while it runs applies at once.
    let out = home.ok(&[
        "set",
        "exclude",
        "~/.claude/projects/-home-dev-secret/**,~/.claude/projects/-home-dev-later",
    ]);
    assert!(out.contains("The running daemon reloaded"), "{out}");
    claude_session(
        &home,
        "-home-dev-later",
        "c1a0de00-0000-4000-8000-00000000000c",
    );
    claude_session(
        &home,
        "-home-dev-project",
        "c1a0de00-0000-4000-8000-000000000003",
    );
    assert!(emu.wait_for(Duration::from_secs(60), |e| {
        e.session(user, "c1a0de00-0000-4000-8000-000000000003")
            .is_some()
    }));
    home.ok(&["sync"]);
    assert!(
        emu.session(user, "c1a0de00-0000-4000-8000-00000000000c")
            .is_none(),
        "a session excluded while the daemon ran reached the server"
    );
}
