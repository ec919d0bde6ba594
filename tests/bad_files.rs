//! Files that are not what their names promise: a binary `*.jsonl`, a FIFO, a symlink loop, a
//! dangling symlink, a name that is not UTF-8. Each gives one line in the log (or on `export`'s
//! stderr), never blocks a reader, never fails a command, and nothing else is lost.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::daemon::{KEY, Transcripts, start, wait_converged};
use crate::home::{TestHome, wait_bounded, wait_until};
use crate::support::Emulation;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `~/.claude/projects/-home-dev-project` with one good session in it.
fn project_with_one_session(home: &TestHome) -> PathBuf {
    let project = home.claude_projects().join("-home-dev-project");
    std::fs::create_dir_all(&project).unwrap();
    let sid = "c1a0de00-0000-4000-8000-000000000001";
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        Transcripts::claude_session(sid, 2),
    )
    .unwrap();
    project
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// Lines of `text` that name `file`.
fn lines_naming<'a>(text: &'a str, file: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(file)).collect()
}

#[test]
fn a_binary_jsonl_gives_one_warning_for_the_file_and_the_rest_is_counted() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let project = project_with_one_session(&home);
    // 20 KiB of bytes that are not JSON, with a newline every 256 bytes: 80 "lines".
    let binary: Vec<u8> = (0..20 * 1024u32)
        .map(|i| ((i * 37 + 11) % 256) as u8)
        .collect();
    let newlines = binary.iter().filter(|b| **b == b'\n').count();
    assert_eq!(newlines, 80);
    std::fs::write(project.join("garbage.jsonl"), &binary).unwrap();
    let daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    let status = |home: &TestHome| -> serde_json::Value {
        serde_json::from_str(&home.status(&["--json"])).unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(30), || status(&home)["malformed_lines"]
            .as_u64()
            .unwrap_or(0)
            > 0),
        "the garbage was never read"
    );
    // Every newline ends a line that does not parse; lines made only of whitespace bytes are
    // not counted (none here: every line holds other bytes too).
    assert_eq!(status(&home)["malformed_lines"], 80);
    let log = daemon.log_text();
    let warnings = lines_naming(&log, "garbage.jsonl");
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("lines=80"), "{}", warnings[0]);
}

#[test]
fn a_fifo_named_like_a_transcript_is_skipped_without_being_opened() {
    let home = TestHome::new();
    project_with_one_session(&home);
    let fifo = home.claude_projects().join("-home-dev-project/pipe.jsonl");
    mkfifo(&fifo);
    // Opening the FIFO would block export for ever: the bound only catches that.
    let out = wait_bounded(
        {
            let mut cmd = home.cmd(&["export"]);
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        },
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let err = stderr(&out);
    let named = lines_naming(&err, "pipe.jsonl");
    assert_eq!(named.len(), 1, "{err}");
    assert!(
        named[0].contains("a FIFO (named pipe), not a regular file"),
        "{err}"
    );
}

#[test]
fn the_daemon_skips_a_fifo_at_scan_and_at_event_time_and_still_stops_at_once() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let project = project_with_one_session(&home);
    mkfifo(&project.join("at-start.jsonl"));
    let mut daemon = start(&home, &emu);
    // One appearing while it runs goes through the file-event path.
    mkfifo(&project.join("later.jsonl"));
    let sid = "c1a0de00-0000-4000-8000-000000000002";
    std::fs::write(
        project.join(format!("{sid}.jsonl")),
        Transcripts::claude_session(sid, 1),
    )
    .unwrap();
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert!(
        wait_until(Duration::from_secs(30), || {
            let log = daemon.log_text();
            lines_naming(&log, "later.jsonl").len() == 1
        }),
        "{}",
        daemon.log_text()
    );
    // A sync through the daemon rescans: no second line for either FIFO.
    home.ok(&["sync"]);
    let log = daemon.log_text();
    assert_eq!(lines_naming(&log, "at-start.jsonl").len(), 1, "{log}");
    assert_eq!(lines_naming(&log, "later.jsonl").len(), 1, "{log}");
    // No worker is stuck in open(2): SIGTERM ends it (the bound only catches a hang).
    daemon.signal(15);
    let (status, _) = daemon.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{}", daemon.log_text());
}

#[test]
fn a_symlink_loop_gives_one_warning_not_repeated_errors() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let project = project_with_one_session(&home);
    std::os::unix::fs::symlink("loop.jsonl", project.join("loop.jsonl")).unwrap();
    let daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    home.ok(&["sync"]);
    home.ok(&["sync"]);
    let log = daemon.log_text();
    let named = lines_naming(&log, "loop.jsonl");
    assert_eq!(named.len(), 1, "{log}");
    assert!(
        named[0].contains("WARN") && named[0].contains("symlink loop"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_dangling_symlink_is_reported_and_skipped_and_export_succeeds() {
    let home = TestHome::new();
    let project = project_with_one_session(&home);
    std::os::unix::fs::symlink("/nonexistent/gone.jsonl", project.join("gone.jsonl")).unwrap();
    let out = home.run(&["export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
    let err = stderr(&out);
    let named = lines_naming(&err, "gone.jsonl");
    assert_eq!(named.len(), 1, "{err}");
    assert!(named[0].contains("dangling symlink"), "{err}");
}

#[test]
fn a_file_whose_name_is_not_utf8_is_synced_and_named() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    let project = project_with_one_session(&home);
    let name = std::ffi::OsStr::from_bytes(b"c1a0de00-\xff\xfe.jsonl");
    std::fs::write(
        project.join(name),
        Transcripts::claude_session("c1a0de00-odd", 1),
    )
    .unwrap();
    home.login(&emu.url(), KEY);
    let out = home.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The session is named after the file, with U+FFFD for each byte that is not UTF-8.
    let odd = "c1a0de00-\u{fffd}\u{fffd}";
    assert!(
        emu.session(emu.default_user(), odd).is_some(),
        "{:?}",
        emu.sessions(emu.default_user())
    );
    assert_eq!(emu.messages_of_session(emu.default_user(), odd).len(), 2);
    assert!(
        stderr(&out).contains("not valid UTF-8"),
        "named in the log: {}",
        stderr(&out)
    );
    let status = home.status(&[]);
    assert!(
        status.contains("1 file name(s) are not valid UTF-8") && status.contains(odd),
        "{status}"
    );
    // Synced once: a second sync sends nothing.
    let again = home.ok(&["sync"]);
    assert!(again.contains("Synced 0 file(s)"), "{again}");
}
