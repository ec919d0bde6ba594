//! Soak: the release daemon runs for a while against the OpenSync emulation while sessions
//! grow live and the server misbehaves on a schedule — 5xx bursts, 429s with Retry-After,
//! outages, writes applied but the answer lost, the key revoked and a new one logged in —
//! then the server is compared with `opensyncd export`: every message present once, with its
//! content, and every session's totals.
//!
//! `cargo run --release --example soak -- --minutes 10 [--sessions 40] [--work DIR]`
//! (RELIABILITY.md quotes its output).

#![allow(dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Emulation, Faults};

fn main() {
    let mut minutes = 10.0f64;
    let mut sessions = 40usize;
    let mut work = PathBuf::from("/tmp/opensyncd-soak");
    let mut bin = PathBuf::from("target/release/opensyncd");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().expect("a value");
        match a.as_str() {
            "--minutes" => minutes = v().parse().unwrap(),
            "--sessions" => sessions = v().parse().unwrap(),
            "--work" => work = v().into(),
            "--bin" => bin = v().into(),
            other => panic!("unknown argument {other}"),
        }
    }
    let bin = std::fs::canonicalize(&bin).expect("build the release binary first");
    let _ = std::fs::remove_dir_all(&work);
    let home = work.join("home");
    let state = work.join("state");
    let project = home.join(".claude/projects/-home-dev-soak");
    let codex_day = home.join(".codex/sessions/2026/12/02");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::create_dir_all(&codex_day).unwrap();

    let emu = Emulation::start();
    emu.set_recording(false);
    let user = emu.add_user(&key(0));
    let run = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args)
            .env_clear()
            .env("HOME", &home)
            .env("OPENSYNCD_HOME", &state)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c
    };
    let login = |k: &str| {
        let mut c = run(&["login", "--url", &emu.url(), "--key-stdin"]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(k.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "login");
    };
    login(&key(0));
    let daemon: Child = run(&["run"])
        .env("OPENSYNCD_LOG_LEVEL", "warn")
        .stderr(std::fs::File::create(work.join("daemon.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = daemon.id();

    // The sessions: half Claude, half Codex, grown by one writer thread.
    let files: Vec<(bool, String, PathBuf)> = (0..sessions)
        .map(|i| {
            if i % 2 == 0 {
                let sid = format!("50a40000-0000-4000-8000-{i:012}");
                let p = project.join(format!("{sid}.jsonl"));
                (true, sid, p)
            } else {
                let sid = format!("019e5a40-0000-7000-8000-{i:012}");
                let p = codex_day.join(format!("rollout-2026-12-02T08-00-00-{sid}.jsonl"));
                std::fs::write(&p, codex_meta(&sid)).unwrap();
                (false, sid, p)
            }
        })
        .collect();

    let deadline = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let started = Instant::now();
    let mut rng = 0x50a4u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n.max(1)
    };
    let mut turns = vec![0u32; sessions];
    let mut appended = 0u64;
    let mut key_n = 0;
    let mut phase_log = Vec::new();
    let mut peak_rss = 0u64;
    let phase_len = Duration::from_secs(20);
    let mut phase_start = Instant::now();
    let mut phase = 0usize;
    set_phase(&emu, user, 0, &mut key_n, &login, &mut phase_log);
    while Instant::now() < deadline {
        if phase_start.elapsed() >= phase_len {
            phase = (phase + 1) % 7;
            phase_start = Instant::now();
            set_phase(&emu, user, phase, &mut key_n, &login, &mut phase_log);
        }
        let i = next(sessions as u64) as usize;
        let (claude, sid, path) = &files[i];
        turns[i] += 1;
        let n = turns[i];
        let text = if *claude {
            claude_turn(sid, n)
        } else {
            codex_turn(n)
        };
        // Sometimes the line arrives in two writes, as tools flush.
        if next(5) == 0 {
            let (a, b) = text.split_at(text.len() / 2);
            append(path, a);
            std::thread::sleep(Duration::from_millis(next(30)));
            append(path, b);
        } else {
            append(path, &text);
        }
        appended += 1;
        peak_rss = peak_rss.max(vm(pid, "VmHWM"));
        std::thread::sleep(Duration::from_millis(20 + next(60)));
    }
    // Back to a healthy server with a valid key (the last phase may have revoked it).
    set_phase(&emu, user, 6, &mut key_n, &login, &mut phase_log);
    set_phase(&emu, user, 0, &mut key_n, &login, &mut phase_log);
    let want = export(&run);
    let want_msgs: usize = want.values().map(|(_, m)| m.len()).sum();
    let converged = emu.wait_for(Duration::from_secs(900), |e| e.message_count() >= want_msgs);
    // Settle: the session totals are re-sent after the server's 10 s window.
    std::thread::sleep(Duration::from_secs(15));
    let elapsed = started.elapsed();
    let status: Value =
        serde_json::from_slice(&run(&["status", "--json"]).output().unwrap().stdout)
            .unwrap_or(Value::Null);
    peak_rss = peak_rss.max(vm(pid, "VmHWM"));
    let _ = Command::new("kill").arg(pid.to_string()).status();

    // Compare.
    let stored = emu.all_messages();
    let mut seen = BTreeMap::<&str, usize>::new();
    for m in &stored {
        *seen.entry(m.external_id.as_str()).or_default() += 1;
    }
    let duplicates = seen.values().filter(|&&c| c > 1).count() + emu.duplicate_rows().len();
    let mut lost = 0;
    let mut wrong_content = 0;
    for (_, msgs) in want.values() {
        for (id, m) in msgs {
            match stored.iter().find(|s| &s.external_id == id) {
                None => lost += 1,
                Some(s) if s.text_content.as_deref() != m["textContent"].as_str() => {
                    wrong_content += 1
                }
                Some(_) => {}
            }
        }
    }
    let want_ids: BTreeSet<&str> = want
        .values()
        .flat_map(|(_, m)| m.keys().map(String::as_str))
        .collect();
    let extra = seen.keys().filter(|id| !want_ids.contains(*id)).count();
    let mut wrong_totals = 0;
    for (sid, (s, _)) in &want {
        let stored = emu.session(user, sid);
        let ok = stored.is_some_and(|st| {
            st.prompt_tokens == s["promptTokens"].as_u64().unwrap_or(0)
                && st.completion_tokens == s["completionTokens"].as_u64().unwrap_or(0)
        });
        if !ok {
            wrong_totals += 1;
        }
    }
    let counters = &status["counters"];
    println!("## Soak: {minutes} min, {sessions} sessions (half Claude Code, half Codex)\n");
    println!(
        "fault schedule (20 s phases, repeating): {}\n",
        phase_log
            .iter()
            .take(7)
            .cloned()
            .collect::<Vec<_>>()
            .join(" → ")
    );
    println!(
        "| lines appended | messages expected | converged | lost | duplicates | wrong content | unexpected | wrong session totals | requests (server) | daemon requests / retries | peak RSS MiB | wall |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {appended} | {want_msgs} | {converged} | {lost} | {duplicates} | {wrong_content} | {extra} | {wrong_totals} | {} | {} / {} | {:.1} | {:.0} s |",
        emu.request_count(),
        counters["requests"],
        counters["retries"],
        peak_rss as f64 / 1024.0,
        elapsed.as_secs_f64()
    );
    let clean = converged
        && lost == 0
        && duplicates == 0
        && wrong_content == 0
        && extra == 0
        && wrong_totals == 0;
    std::process::exit(if clean { 0 } else { 1 });
}

fn key(n: usize) -> String {
    format!("osk_soakKey{n:04}00000000000000000000000000")
}

fn set_phase(
    emu: &Emulation,
    user: usize,
    phase: usize,
    key_n: &mut usize,
    login: &dyn Fn(&str),
    log: &mut Vec<String>,
) {
    emu.set_faults(Faults::default());
    emu.end_outage();
    let name = match phase {
        0 => "healthy",
        1 => {
            emu.set_faults(Faults {
                error_rate: 0.3,
                seed: 1,
                ..Faults::default()
            });
            "30% 5xx"
        }
        2 => {
            emu.set_faults(Faults {
                rate_429: 0.2,
                retry_after_secs: 1,
                seed: 2,
                ..Faults::default()
            });
            "20% 429 + Retry-After 1 s"
        }
        3 => {
            emu.start_outage();
            "outage (every connection dropped)"
        }
        4 => {
            emu.set_faults(Faults {
                drop_before_rate: 0.1,
                drop_after_rate: 0.1,
                seed: 3,
                ..Faults::default()
            });
            "10% dropped before, 10% applied then dropped"
        }
        5 => {
            emu.revoke_key(user);
            "key revoked"
        }
        _ => {
            // The user makes a new key and logs in with it.
            *key_n += 1;
            emu.set_key(user, &key(*key_n));
            login(&key(*key_n));
            "new key, `opensyncd login`"
        }
    };
    log.push(name.to_string());
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn ts(n: u32) -> String {
    format!("2026-12-02T08:{:02}:{:02}.000Z", (n / 60) % 60, n % 60)
}

fn claude_turn(sid: &str, n: u32) -> String {
    let user = json!({
        "type": "user", "uuid": format!("{sid}-u{n}"), "sessionId": sid, "timestamp": ts(n),
        "cwd": "/home/dev/soak", "message": {"role": "user", "content": format!("prompt {n}")}
    });
    let assistant = json!({
        "type": "assistant", "uuid": format!("{sid}-a{n}"), "sessionId": sid, "requestId": format!("req_{n}"),
        "timestamp": ts(n), "cwd": "/home/dev/soak",
        "message": {"id": format!("msg_{sid}_{n}"), "role": "assistant", "model": "claude-sonnet-4-5-20250929",
            "content": [{"type": "text", "text": format!("answer {n}")}],
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 20 + n}}
    });
    format!("{user}\n{assistant}\n")
}

fn codex_meta(id: &str) -> String {
    format!(
        "{}\n",
        json!({"timestamp": ts(0), "type": "session_meta", "payload": {"id": id, "timestamp": ts(0),
            "cwd": "/home/dev/soak", "originator": "codex_cli_rs", "cli_version": "0.104.0"}})
    )
}

fn codex_turn(n: u32) -> String {
    let n64 = u64::from(n);
    let lines = [
        json!({"timestamp": ts(n), "type": "turn_context", "payload": {"model": "gpt-5-codex", "cwd": "/home/dev/soak"}}),
        json!({"timestamp": ts(n), "type": "event_msg", "payload": {"type": "user_message", "message": format!("prompt {n}")}}),
        json!({"timestamp": ts(n), "type": "event_msg", "payload": {"type": "agent_message", "message": format!("answer {n}")}}),
        json!({"timestamp": ts(n), "type": "event_msg", "payload": {"type": "token_count", "info": {
            "total_token_usage": {"input_tokens": 1000 * n64, "cached_input_tokens": 500 * n64, "output_tokens": 50 * n64, "reasoning_output_tokens": 0, "total_tokens": 1050 * n64},
            "last_token_usage": {"input_tokens": 1000, "cached_input_tokens": 500, "output_tokens": 50, "reasoning_output_tokens": 0, "total_tokens": 1050}}}}),
    ];
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn vm(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| {
            r.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

type Export = BTreeMap<String, (Value, BTreeMap<String, Value>)>;

fn export(run: &dyn Fn(&[&str]) -> Command) -> Export {
    let out = run(&["export"]).output().unwrap();
    assert!(out.status.success(), "export failed");
    let mut map = Export::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let msgs = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["externalId"].as_str().unwrap().to_string(), m.clone()))
            .collect();
        map.insert(
            v["session"]["externalId"].as_str().unwrap().to_string(),
            (v["session"].clone(), msgs),
        );
    }
    map
}
