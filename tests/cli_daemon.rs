//! The commands a user trusts to act on a running daemon, driven with the real binary, a
//! temporary home and the server emulation: `logout` and `pause`/`resume` stop the daemon's
//! pushing at once (counted on the server), `status` tells the truth about the server and
//! exits with its state, one-shot commands are bounded, the daemon says what it watches and
//! how a backfill goes, `sync` through the daemon streams progress, and `sync --dry-run`
//! agrees with `status` (and works while the daemon runs).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{
    KEY, Transcripts, append, assert_server_matches_export, populated_home, start, wait_converged,
};
use crate::home::{TestHome, wait_bounded, wait_until};
use crate::support::Emulation;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `status` run with extra environment: its exit code and its output.
fn status_with(home: &TestHome, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = home.cmd(&["status"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

fn status_code(home: &TestHome) -> (i32, String) {
    status_with(home, &[])
}

/// `status --json`'s `health.state`.
fn state(home: &TestHome) -> String {
    let v: Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    v["health"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A loopback URL nothing listens on (connections are refused).
fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A session's id from its transcript's file name.
fn sid_of(path: &Path) -> String {
    path.file_stem().unwrap().to_str().unwrap().to_string()
}

/// A prompt and its answer, as two transcript lines.
fn turn(sid: &str, n: u32) -> String {
    format!(
        "{}\n{}\n",
        Transcripts::claude_user(sid, n, &format!("later question {n}")),
        Transcripts::claude_assistant(sid, n, &format!("later answer {n}"), 7)
    )
}

/// A child whose stdout and stderr are collected as they come.
struct Watched {
    child: Option<Child>,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watched {
    fn spawn(mut cmd: std::process::Command) -> Watched {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let err = Arc::new(Mutex::new(String::new()));
        type Pipe = (Box<dyn Read + Send>, Arc<Mutex<String>>);
        let pipes: Vec<Pipe> = vec![
            (Box::new(child.stdout.take().unwrap()), out.clone()),
            (Box::new(child.stderr.take().unwrap()), err.clone()),
        ];
        let readers = pipes
            .into_iter()
            .map(|(mut pipe, sink)| {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = pipe.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock()
                            .unwrap()
                            .push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                })
            })
            .collect();
        Watched {
            child: Some(child),
            out,
            err,
            readers,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn stdout(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    /// Waits until `cond` holds for (stdout, stderr).
    fn wait_for(&self, what: &str, cond: impl Fn(&str, &str) -> bool) {
        let ok = wait_until(Duration::from_secs(60), || {
            cond(&self.stdout(), &self.stderr())
        });
        assert!(
            ok,
            "never saw {what}; stdout so far:\n{}\nstderr so far:\n{}",
            self.stdout(),
            self.stderr()
        );
    }

    /// Waits for the exit (bounded): its status, stdout and stderr.
    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let mut child = self.child.take().unwrap();
        let ok = wait_until(Duration::from_secs(120), || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        if !ok {
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        assert!(ok, "did not finish; stderr:\n{}", self.stderr());
        for r in std::mem::take(&mut self.readers) {
            let _ = r.join();
        }
        (status, self.stdout(), self.stderr())
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn logout_stops_the_running_daemon_at_once_and_it_stays_logged_out_across_a_restart() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(2, 0);
    let mut daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));

    // A slow server and a long new stretch of a session: logout lands while the daemon sends.
    emu.set_latency(Duration::from_millis(150));
    let sid = sid_of(&files[0]);
    let before = emu.message_count();
    append(
        &files[0],
        &(100..120).map(|n| turn(&sid, n)).collect::<String>(),
    );
    assert!(
        emu.wait_for(Duration::from_secs(60), |e| e.message_count() > before),
        "the daemon never started sending the new turns"
    );
    let out = home.ok(&["logout"]);
    assert!(out.contains("stopped pushing and forgot the key"), "{out}");
    // From here on the server must see nothing more from this machine.
    let requests = emu.request_count();
    let messages = emu.message_count();
    assert!(
        messages < before + 40,
        "the whole stretch (20 turns = 40 messages) was sent before logout; the test proves nothing"
    );

    // The daemon was told: a sync through it sends nothing and says why.
    append(&files[1], &turn(&sid_of(&files[1]), 200));
    let out = home.run(&["sync"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("you logged out"), "{}", stderr(&out));
    let (code, text) = status_code(&home);
    assert_eq!(code, 5, "{text}");
    assert!(text.contains("not logged in (you logged out"), "{text}");
    assert!(text.contains("api key          (not set)"), "{text}");
    assert_eq!(emu.request_count(), requests, "requests after logout");

    // A restart — even with the key still in the environment — stays logged out.
    daemon.signal(15);
    daemon.wait_exit(Duration::from_secs(30));
    let daemon = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100"), ("OPENSYNCD_API_KEY", KEY)]);
    let out = home.run(&["sync"]);
    assert!(!out.status.success());
    assert_eq!(state(&home), "not_logged_in");
    assert_eq!(emu.request_count(), requests, "requests after the restart");
    assert_eq!(emu.message_count(), messages);

    // `login` lifts it: everything written meanwhile arrives, once.
    emu.set_latency(Duration::ZERO);
    home.login(&emu.url(), KEY);
    wait_converged(&home, &emu, Duration::from_secs(120));
    drop(daemon);
}

#[test]
fn logout_purge_stops_the_daemon_before_deleting_its_ledger() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 0);
    let mut daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    let out = home.ok(&["logout", "--purge"]);
    assert!(out.contains("Stopped the daemon."), "{out}");
    let (status, _) = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", daemon.log_text());
    let state = home.opensyncd_home().join("state");
    assert!(!state.join("ledger").exists(), "the ledger is still there");
    assert!(!home.opensyncd_home().join("config/config.toml").exists());
    assert!(!home.opensyncd_home().join("config/credentials").exists());
    assert!(
        out.contains(&format!("Removed {}", state.join("ledger").display())),
        "{out}"
    );
}

#[test]
fn pause_and_resume_hold_the_daemon_across_a_restart_and_a_timed_pause_ends_by_itself() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(1, 0);
    let mut daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    let sid = sid_of(&files[0]);

    let out = home.ok(&["pause"]);
    assert!(out.contains("Paused until `opensyncd resume`"), "{out}");
    assert!(out.contains("stopped pushing"), "{out}");
    let (code, text) = status_code(&home);
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains("paused (by `opensyncd pause`")
            && text.contains("until you run `opensyncd resume`"),
        "{text}"
    );
    let requests = emu.request_count();
    append(&files[0], &turn(&sid, 300));
    let out = home.run(&["sync"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("paused"), "{}", stderr(&out));
    // The daemon saw the new turn (status counts it) and sent nothing.
    let v: Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    assert_eq!(v["sources"][0]["backlog_files"], 1, "{v}");
    assert_eq!(emu.request_count(), requests);

    // A restart keeps the pause.
    daemon.signal(15);
    daemon.wait_exit(Duration::from_secs(30));
    let mut daemon = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100")]);
    assert_eq!(status_code(&home).0, 4);
    assert_eq!(emu.request_count(), requests);

    let out = home.ok(&["resume"]);
    assert!(out.contains("is pushing again"), "{out}");
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(30), || status_code(&home).0 == 0));

    // `pause --for`: shown with its end, and lifted by the daemon when it comes.
    let out = home.ok(&["pause", "--for", "2s"]);
    assert!(out.contains("Paused for 2s"), "{out}");
    append(&files[0], &turn(&sid, 301));
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert!(!home.opensyncd_home().join("state/pause.json").exists());

    // Without a daemon: the pause is kept for the next start, and `status` says so.
    daemon.signal(15);
    daemon.wait_exit(Duration::from_secs(30));
    let out = home.ok(&["pause", "--for", "1h"]);
    assert!(
        out.contains("a daemon started meanwhile stays paused"),
        "{out}"
    );
    let (code, text) = status_code(&home);
    assert_eq!(code, 4, "{text}");
    assert!(
        text.contains("for another 59m") || text.contains("for another 60m"),
        "{text}"
    );
    home.ok(&["resume"]);
    assert_eq!(status_code(&home).0, 3, "no daemon runs: degraded");
    let out = home.run(&["pause", "--for", "soon"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not a duration"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn status_tells_the_truth_about_the_server_and_exits_with_the_state() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(1, 0);
    let (code, text) = status_code(&home);
    assert_eq!(code, 5, "{text}");
    assert!(
        text.contains("state            not logged in (no API key"),
        "{text}"
    );

    home.login(&emu.url(), KEY);
    let (code, text) = status_code(&home);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("state            not running"), "{text}");

    // No daemon: the server is asked. Refused connections, a 503 page, someone else's site.
    let refused = refused_url();
    let (code, text) = status_with(&home, &[("OPENSYNCD_URL", &refused)]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("state            unreachable ("), "{text}");
    let down = crate::home::web_page_server(503);
    let (code, text) = status_with(&home, &[("OPENSYNCD_URL", &down)]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("unreachable (") && text.contains("HTTP 503"),
        "{text}"
    );
    let nginx = crate::home::web_page_server(200);
    let (code, text) = status_with(&home, &[("OPENSYNCD_URL", &nginx)]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("state            wrong URL ("), "{text}");
    assert!(
        !text.contains("sync ok") && !text.contains("<html"),
        "{text}"
    );

    // With a daemon: its own outcome. Healthy, then the server goes away while it has work.
    let _daemon = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100")]);
    wait_converged(&home, &emu, Duration::from_secs(60));
    assert!(wait_until(Duration::from_secs(30), || status_code(&home).0 == 0));
    assert!(status_code(&home).1.contains("state            ok"));
    emu.start_outage();
    append(&files[0], &turn(&sid_of(&files[0]), 400));
    assert!(
        wait_until(Duration::from_secs(60), || state(&home) == "retrying"),
        "status never said retrying: {}",
        status_code(&home).1
    );
    let (code, text) = status_code(&home);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("retrying (server unreachable or failing since")
            && text.contains("next attempt"),
        "{text}"
    );
    emu.end_outage();
    wait_converged(&home, &emu, Duration::from_secs(120));
    assert!(wait_until(Duration::from_secs(60), || status_code(&home).0 == 0));
}

#[test]
fn status_watch_redraws_until_interrupted_and_shows_a_change() {
    let emu = Emulation::with_key(KEY);
    let home = TestHome::new();
    home.login(&emu.url(), KEY);
    let watch = Watched::spawn(home.cmd(&["status", "--watch", "--interval", "1"]));
    watch.wait_for("a first refresh", |out, _| {
        out.contains("refresh 1 (every 1s") && out.contains("not running")
    });
    home.ok(&["pause"]);
    // A later refresh shows the pause.
    watch.wait_for("the pause in a later refresh", |out, _| {
        out.split("opensyncd status, refresh ")
            .skip(2)
            .any(|frame| frame.contains("state            paused (by `opensyncd pause`"))
    });
    let frames = watch.stdout().matches("opensyncd status, refresh ").count();
    assert!(frames >= 2, "{}", watch.stdout());
}

#[test]
fn a_one_shot_sync_gives_up_on_a_server_that_does_not_answer() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(2, 0);
    home.login(&emu.url(), KEY);
    let run = |url: &str, args: &[&str]| {
        let mut cmd = home.cmd(args);
        cmd.env("OPENSYNCD_URL", url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        wait_bounded(cmd.spawn().unwrap(), Duration::from_secs(120))
    };
    let out = run(&refused_url(), &["sync"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("the server is unreachable (") && err.contains("nothing was sent"),
        "{err}"
    );
    let out = run(&crate::home::web_page_server(200), &["sync"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("does not answer like OpenSync"),
        "{}",
        stderr(&out)
    );
    assert_eq!(emu.message_count(), 0);

    // /health answers, then the server hangs on the first write: --timeout ends it.
    emu.hang_after(1, false);
    let out = run(&emu.url(), &["sync", "--timeout", "2s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("gave up after 2s (--timeout)"), "{err}");
    assert!(
        err.contains("what the server acknowledged is kept"),
        "{err}"
    );
    // Nothing is lost: the next sync finishes the job.
    let out = run(&emu.url(), &["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_server_matches_export(&home, &emu);
}

/// Processes whose environment points at this test home and whose command line contains
/// `word` (e.g. a `sync` a hook started).
fn processes_of(home: &TestHome, word: &str) -> Vec<String> {
    let marker = format!("OPENSYNCD_HOME={}", home.opensyncd_home().display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let dir = entry.path();
        let (Ok(env), Ok(cmdline)) = (
            std::fs::read(dir.join("environ")),
            std::fs::read(dir.join("cmdline")),
        ) else {
            continue;
        };
        let env = String::from_utf8_lossy(&env);
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if env.split('\0').any(|v| v == marker) && cmdline.contains(word) {
            found.push(cmdline);
        }
    }
    found
}

#[test]
fn a_hook_without_a_daemon_starts_no_process() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(1, 0);
    home.login(&emu.url(), KEY);
    // A sync started by the hook would still be waiting for this answer when the hook returns.
    emu.set_latency(Duration::from_secs(5));
    let payload = format!(r#"{{"transcript_path":"{}"}}"#, files[0].display());
    let out = home.run(&["hook", "Stop", &payload]);
    assert!(out.status.success());
    let found = processes_of(&home, " sync");
    assert!(found.is_empty(), "the hook started: {found:?}");
    assert!(
        !home.opensyncd_home().join("state/ledger").exists(),
        "something opened the ledger"
    );
}

#[test]
fn status_names_the_command_holding_the_lock_that_the_daemon_waits_for() {
    let emu = Emulation::with_key(KEY);
    let (home, _) = populated_home(1, 0);
    home.login(&emu.url(), KEY);
    // /health answers, the first write hangs: the one-shot sync holds the lock meanwhile.
    emu.hang_after(1, false);
    let sync = Watched::spawn(home.cmd(&["sync"]));
    let lock = home.opensyncd_home().join("state/opensyncd.lock");
    let sync_pid = sync.pid();
    assert!(
        wait_until(Duration::from_secs(60), || std::fs::read_to_string(&lock)
            .is_ok_and(|t| t.starts_with(&format!("{sync_pid}\n")))),
        "the sync never took the lock"
    );
    let daemon = Watched::spawn(home.cmd(&["run"]));
    let daemon_pid = daemon.pid();
    daemon.wait_for("the daemon waiting", |_, err| {
        err.contains("holds the lock; waiting")
    });
    let (code, text) = status_code(&home);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains(&format!("lock             pid {sync_pid} (`")) && text.contains(" sync`)"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "the daemon (pid {daemon_pid}) waits for it to finish"
        )),
        "{text}"
    );
    assert!(
        daemon.stderr().contains(&format!("pid {sync_pid}")),
        "{}",
        daemon.stderr()
    );
    drop(sync);
}

#[test]
fn the_daemon_says_what_it_watches_and_logs_backfill_progress_not_files() {
    let emu = Emulation::with_key(KEY);
    let empty = TestHome::new();
    empty.login(&emu.url(), KEY);
    let daemon = empty.spawn_daemon(&[]);
    let log = daemon.log_text();
    assert!(log.contains("found none of the tools ("), "{log}");
    assert!(log.contains("claude-code: not found (looked in"), "{log}");
    drop(daemon);

    // 8 sessions of 3 to 6 turns: at least 8 × (1 + 6) = 56 requests; at 500 ms each, 4 at a
    // time, the backfill lasts at least 7 s — more than the 5 s between progress lines plus
    // the 2 s tick.
    let (home, files) = populated_home(8, 0);
    emu.set_latency(Duration::from_millis(500));
    let daemon = start(&home, &emu);
    // Meanwhile `status` says it is syncing, with what is left.
    let mut seen = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            seen = status_code(&home).1;
            seen.contains("state            syncing (")
        }),
        "{seen}"
    );
    assert!(seen.contains(" left, "), "{seen}");
    assert_eq!(status_code(&home).0, 0);
    wait_converged(&home, &emu, Duration::from_secs(180));
    assert!(
        wait_until(Duration::from_secs(30), || daemon
            .log_text()
            .contains("caught up: ")),
        "{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    let claude_dir = home.claude_projects();
    assert!(
        log.contains(&format!("claude-code: watching {}", claude_dir.display())),
        "{log}"
    );
    assert!(log.contains("pi: not found (looked in"), "{log}");
    let progress: Vec<&str> = log.lines().filter(|l| l.contains("backfill: ")).collect();
    assert!(!progress.is_empty(), "{log}");
    for line in &progress {
        assert!(
            line.contains(" INFO ")
                && line.contains("files done")
                && line.contains("messages sent"),
            "{line}"
        );
    }
    // Never a line per file at info.
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let per_file = log
            .lines()
            .filter(|l| l.contains(name) && l.contains(" INFO "))
            .count();
        assert_eq!(per_file, 0, "{name} named at info:\n{log}");
    }
}

#[test]
fn sync_through_the_daemon_streams_progress_before_its_summary() {
    let emu = Emulation::with_key(KEY);
    let (home, files) = populated_home(2, 0);
    let _daemon = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(60));
    // While the server is away the new turns cannot be acknowledged: the sync is still running
    // when its first progress line arrives.
    emu.start_outage();
    for f in &files {
        append(f, &turn(&sid_of(f), 500));
    }
    let sync = Watched::spawn(home.cmd(&["sync"]));
    sync.wait_for("a progress line", |_, err| {
        err.contains("syncing 2 file(s), ")
    });
    assert!(
        sync.stdout().is_empty(),
        "the summary came before the work was done"
    );
    emu.end_outage();
    let (status, summary, err) = sync.finish();
    assert!(status.success(), "{err}");
    assert!(
        summary.contains("(through the running daemon)"),
        "{summary}"
    );
    assert!(summary.contains("Synced 2 file(s)"), "{summary}");
    wait_converged(&home, &emu, Duration::from_secs(60));
}

/// `sync --dry-run --json` per source: (files, bytes).
fn dry_by_source(v: &Value) -> std::collections::BTreeMap<String, (u64, u64)> {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["source"].as_str().unwrap().to_string(),
                (s["files"].as_u64().unwrap(), s["bytes"].as_u64().unwrap()),
            )
        })
        .collect()
}

/// `status --json`'s backlog per source, for the sources with one: (files, bytes).
fn status_backlog(home: &TestHome) -> std::collections::BTreeMap<String, (u64, u64)> {
    let v: Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["backlog_files"].as_u64() != Some(0))
        .map(|s| {
            (
                s["source"].as_str().unwrap().to_string(),
                (
                    s["backlog_files"].as_u64().unwrap(),
                    s["backlog_bytes"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn dry_run_agrees_with_status_names_what_it_would_send_and_works_through_the_daemon() {
    let emu = Emulation::with_key(KEY);
    // Claude Code transcripts and the OpenCode fixture tree (snapshot units).
    let (home, files) = populated_home(2, 0);
    home.login(&emu.url(), KEY);
    let dry = |home: &TestHome| -> Value {
        serde_json::from_str(&home.ok(&["sync", "--dry-run", "--json"])).unwrap()
    };
    let before = dry(&home);
    assert_eq!(dry_by_source(&before), status_backlog(&home));
    assert!(dry_by_source(&before).contains_key("opencode"), "{before}");

    home.ok(&["sync"]);
    let after = dry(&home);
    assert_eq!(after["files"], serde_json::json!([]), "{after}");
    assert!(status_backlog(&home).is_empty());
    assert!(home.ok(&["sync", "--dry-run"]).contains("Nothing to sync"));
    let requests = emu.request_count();
    let out = home.ok(&["sync"]);
    assert!(out.contains("Synced 0 file(s)"), "{out}");
    assert_eq!(
        emu.request_count(),
        requests,
        "a second sync sent something"
    );

    // One new turn (a prompt and its answer: 2 messages) in one transcript.
    let sid = sid_of(&files[0]);
    let added = turn(&sid, 600);
    append(&files[0], &added);
    let v = dry(&home);
    let listed = v["files"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{v}");
    assert_eq!(listed[0]["path"], files[0].display().to_string());
    assert_eq!(listed[0]["why"], "appended");
    assert_eq!(listed[0]["bytes"], added.len() as u64);
    assert_eq!(listed[0]["sessions"][0]["id"], sid);
    assert_eq!(listed[0]["sessions"][0]["messages"], 2);
    assert_eq!(v["messages"], 2);
    assert_eq!(
        status_backlog(&home),
        [("claude-code".to_string(), (1, added.len() as u64))].into()
    );
    let text = home.ok(&["sync", "--dry-run"]);
    assert!(
        text.contains(&format!("claude-code {}: appended", files[0].display()))
            && text.contains(&format!("session {sid}"))
            && text.contains(": 2 message(s)"),
        "{text}"
    );

    // While the daemon runs (paused, so that the turn stays pending): it answers.
    home.ok(&["pause"]);
    let requests = emu.request_count();
    let _daemon = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "100")]);
    let through = dry(&home);
    assert_eq!(through["files"], v["files"], "{through}");
    assert_eq!(emu.request_count(), requests);
}
