//! The benchmark driver behind `BENCHMARKS.md` (run it through `bash bench/run.sh`, which
//! builds the release binary and generates the corpora first).
//!
//! Every figure comes from the real release binary against the in-process OpenSync emulation
//! (`tests/support`), and every ratio is taken in the same run on the same files: opensyncd's
//! `export` against `cat` and `wc -l`, a one-line append against re-reading the whole file
//! (what the per-tool plugins do every turn). Process figures come from `/proc`: CPU time from
//! `schedstat` (nanoseconds, all threads), bytes read from `io:rchar`, memory from `VmHWM`.
//!
//! Usage: `bench --bin BIN --work DIR SCENARIO...` where scenarios are `parse`, `append`,
//! `latency`, `backfill`, `rtt`, `faults`, `idle`, `coldstart`, `vs-ccusage` (see
//! `bench/run.sh` for the corpora each needs; `vs-ccusage` takes ccusage from `--ccusage`, else
//! from `PATH`). `rtt` and `faults` end by checking that the server holds exactly what `export`
//! says (sessions, their tokens and titles, every message id, its text and parts).

#![allow(dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::Emulation;

const KEY: &str = "osk_benchKey000000000000000000000000000";

struct Opts {
    bin: PathBuf,
    work: PathBuf,
    corpus: PathBuf,
    corpus_small: PathBuf,
    corpus_tiny: PathBuf,
    fixtures: PathBuf,
    idle_secs: u64,
    rtt_delays_ms: Vec<u64>,
    rtt_baseline: bool,
    latency_appends: usize,
    append_samples: usize,
    transports: Vec<String>,
    /// ccusage's executable (`--ccusage`; empty: looked up on `PATH`).
    ccusage: String,
    scenarios: Vec<String>,
}

fn parse_args() -> Opts {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        bin: PathBuf::from("target/release/opensyncd"),
        work: PathBuf::from("/tmp/opensyncd-bench"),
        corpus: PathBuf::new(),
        corpus_small: PathBuf::new(),
        corpus_tiny: PathBuf::new(),
        fixtures: PathBuf::new(),
        idle_secs: 600,
        rtt_delays_ms: vec![50, 150],
        rtt_baseline: true,
        latency_appends: 1000,
        append_samples: 50,
        // Batch at scale measures the emulation (its batch path is quadratic), not opensyncd.
        transports: vec!["per-record".into()],
        ccusage: String::new(),
        scenarios: Vec::new(),
    };
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value");
        match a.as_str() {
            "--bin" => o.bin = val().into(),
            "--work" => o.work = val().into(),
            "--corpus" => o.corpus = val().into(),
            "--corpus-small" => o.corpus_small = val().into(),
            "--corpus-tiny" => o.corpus_tiny = val().into(),
            "--fixtures" => o.fixtures = val().into(),
            "--idle-secs" => o.idle_secs = val().parse().unwrap(),
            "--rtt-delays" => {
                o.rtt_delays_ms = val().split(',').map(|d| d.parse().unwrap()).collect()
            }
            "--no-rtt-baseline" => o.rtt_baseline = false,
            "--latency-appends" => o.latency_appends = val().parse().unwrap(),
            "--append-samples" => o.append_samples = val().parse().unwrap(),
            "--transports" => o.transports = val().split(',').map(String::from).collect(),
            "--ccusage" => o.ccusage = val(),
            s => o.scenarios.push(s.to_string()),
        }
    }
    o.bin = std::fs::canonicalize(&o.bin).expect("--bin exists");
    o
}

fn main() {
    let o = parse_args();
    std::fs::create_dir_all(&o.work).unwrap();
    println!(
        "# opensyncd {} benchmarks, {} ({} cores)\n",
        env!("CARGO_PKG_VERSION"),
        sh_out("date -u +%Y-%m-%dT%H:%MZ"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for s in o.scenarios.clone() {
        match s.as_str() {
            "parse" => parse(&o),
            "append" => append(&o),
            "latency" => latency(&o),
            "backfill" => backfill(&o),
            "rtt" => rtt(&o),
            "faults" => faults(&o),
            "idle" => idle(&o),
            "coldstart" => coldstart(&o),
            "vs-ccusage" => vs_ccusage(&o),
            other => panic!("unknown scenario {other}"),
        }
        std::io::stdout().flush().unwrap();
    }
}

// ---- measuring -------------------------------------------------------------------------------

fn sh_out(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Wall, user+sys CPU and peak RSS of a shell command (GNU time).
struct Timed {
    wall: f64,
    cpu: f64,
    max_rss_kb: u64,
}

fn timed(cmd: &str) -> Timed {
    let report = tempfile::NamedTempFile::new().unwrap();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(report.path())
        .args(["sh", "-c", cmd])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "`{cmd}` failed");
    let text = std::fs::read_to_string(report.path()).unwrap();
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    Timed {
        wall: f[0],
        cpu: f[1] + f[2],
        max_rss_kb: f[3] as u64,
    }
}

/// CPU time of every thread of `pid`, in nanoseconds.
fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += s
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Context switches (voluntary + involuntary) of every thread: each is a wakeup.
fn wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for line in status.lines() {
            if line.starts_with("voluntary_ctxt_switches")
                || line.starts_with("nonvoluntary_ctxt_switches")
            {
                total += line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    total
}

fn proc_field(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| {
            rest.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn rchar(pid: u32) -> u64 {
    proc_field(pid, "io", "rchar")
}

fn self_cpu_ns() -> u64 {
    cpu_ns(std::process::id())
}

/// Waits until `pid` is idle: less than 1% of a CPU over a whole `quiet` window (the file
/// watcher's debouncer ticks several times a second, so "no CPU at all" never happens).
fn wait_quiescent(pid: u32, quiet: Duration) {
    let budget = quiet.as_nanos() as u64 / 100;
    loop {
        let before = cpu_ns(pid);
        std::thread::sleep(quiet);
        if cpu_ns(pid) - before < budget {
            return;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Source files and bytes under a generated home.
fn corpus_size(home: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![
        home.join(".claude"),
        home.join(".codex"),
        home.join(".local/share/opencode"),
    ];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_048_576.0
}

// ---- the daemon ------------------------------------------------------------------------------

struct Env {
    home: PathBuf,
    state: PathBuf,
    extra: Vec<(String, String)>,
}

impl Env {
    fn new(o: &Opts, home: &Path, name: &str) -> Env {
        let state = o.work.join(format!("state-{name}"));
        let _ = std::fs::remove_dir_all(&state);
        // Experiments: `BENCH_DAEMON_ENV="K=V,K2=V2"` is passed to every opensyncd started.
        let extra = std::env::var("BENCH_DAEMON_ENV")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env {
            home: home.to_path_buf(),
            state,
            extra,
        }
    }

    fn cmd(&self, o: &Opts, args: &[&str]) -> Command {
        let mut c = Command::new(&o.bin);
        c.args(args)
            .env_clear()
            .env("HOME", &self.home)
            .env("OPENSYNCD_HOME", &self.state)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("OPENSYNCD_LOG_LEVEL", "warn");
        for (k, v) in &self.extra {
            c.env(k, v);
        }
        c
    }

    /// The same environment as a shell prefix (for `timed`).
    fn shell_prefix(&self, o: &Opts) -> String {
        let mut s = format!(
            "env -i HOME='{}' OPENSYNCD_HOME='{}' PATH=\"$PATH\" OPENSYNCD_LOG_LEVEL=warn",
            self.home.display(),
            self.state.display()
        );
        for (k, v) in &self.extra {
            s.push_str(&format!(" {k}='{v}'"));
        }
        format!("{s} '{}'", o.bin.display())
    }

    fn login(&self, o: &Opts, emu: &Emulation) {
        let mut c = self.cmd(o, &["login", "--url", &emu.url(), "--key-stdin"]);
        c.stdin(Stdio::piped()).stdout(Stdio::null());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(KEY.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "login failed");
    }

    fn spawn(&self, o: &Opts, log: &str) -> Child {
        let log = std::fs::File::create(o.work.join(log)).unwrap();
        self.cmd(o, &["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// Distinct message ids `export` predicts (the server keys messages by id globally, so a
    /// line replayed into another session's file is one row).
    fn expected_messages(&self, o: &Opts) -> usize {
        self.export(o).messages
    }

    /// What `export` says the server should hold.
    fn export(&self, o: &Opts) -> Exported {
        let out = self.cmd(o, &["export"]).output().unwrap();
        assert!(out.status.success());
        let mut ids = std::collections::HashSet::new();
        let mut sessions = std::collections::HashMap::new();
        let mut longest = 0;
        for l in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(l).unwrap();
            let msgs: Vec<serde_json::Value> =
                v["messages"].as_array().cloned().unwrap_or_default();
            longest = longest.max(msgs.len());
            for m in &msgs {
                ids.insert(m["externalId"].as_str().unwrap_or_default().to_string());
            }
            let sid = v["session"]["externalId"].as_str().unwrap().to_string();
            sessions.insert(sid, (v["session"].clone(), msgs));
        }
        Exported {
            messages: ids.len(),
            longest_session: longest,
            sessions,
        }
    }
}

/// `export`'s prediction: session id → (session payload, its messages).
struct Exported {
    messages: usize,
    /// Messages of the largest session (sent one after the other: the critical path).
    longest_session: usize,
    sessions: std::collections::HashMap<String, (serde_json::Value, Vec<serde_json::Value>)>,
}

/// The differences between what the emulation holds and what `export` predicts (empty when
/// they agree): session ids, tokens and titles; per session the message ids, each message's
/// text and number of parts; no row twice.
fn server_vs_export(emu: &Emulation, want: &Exported) -> Vec<String> {
    let mut diffs = Vec::new();
    let dups = emu.duplicate_rows();
    if !dups.is_empty() {
        diffs.push(format!("{} duplicate rows, e.g. {}", dups.len(), dups[0]));
    }
    let sessions = emu.sessions(emu.default_user());
    let by_row: std::collections::HashMap<&str, &str> = sessions
        .iter()
        .map(|s| (s.id.as_str(), s.external_id.as_str()))
        .collect();
    let mut stored: std::collections::HashMap<&str, Vec<support::StoredMessage>> =
        std::collections::HashMap::new();
    for m in emu.all_messages() {
        if let Some(sid) = by_row.get(m.session_id.as_str()) {
            stored.entry(sid).or_default().push(m);
        }
    }
    if sessions.len() != want.sessions.len() {
        diffs.push(format!(
            "{} sessions on the server, export has {}",
            sessions.len(),
            want.sessions.len()
        ));
    }
    for s in &sessions {
        let Some((payload, messages)) = want.sessions.get(&s.external_id) else {
            diffs.push(format!("session {} is not in export", s.external_id));
            continue;
        };
        let tokens = |k: &str| payload[k].as_u64().unwrap_or(0);
        if (s.prompt_tokens, s.completion_tokens)
            != (tokens("promptTokens"), tokens("completionTokens"))
            || s.title.as_deref() != payload["title"].as_str()
        {
            diffs.push(format!("session {}: tokens or title differ", s.external_id));
        }
        let have = stored.remove(s.external_id.as_str()).unwrap_or_default();
        let want_by_id: std::collections::HashMap<&str, &serde_json::Value> = messages
            .iter()
            .map(|m| (m["externalId"].as_str().unwrap_or_default(), m))
            .collect();
        if have.len() != want_by_id.len() {
            diffs.push(format!(
                "session {}: {} messages, export has {}",
                s.external_id,
                have.len(),
                want_by_id.len()
            ));
        }
        for m in &have {
            match want_by_id.get(m.external_id.as_str()) {
                None => diffs.push(format!("message {} is not in export", m.external_id)),
                Some(w) => {
                    if m.text_content.as_deref() != w["textContent"].as_str()
                        || m.parts.len() != w["parts"].as_array().map_or(0, Vec::len)
                    {
                        diffs.push(format!("message {}: text or parts differ", m.external_id));
                    }
                }
            }
        }
    }
    diffs
}

/// Waits (up to `within`) until the server equals `export`; the differences left otherwise.
fn wait_equal_to_export(emu: &Emulation, want: &Exported, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let diffs = server_vs_export(emu, want);
        if diffs.is_empty() || Instant::now() >= deadline {
            return diffs;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The check's verdict for a table cell.
fn verdict(diffs: &[String]) -> String {
    match diffs.first() {
        None => "yes".into(),
        Some(first) => format!("**no** ({} differences, e.g. {first})", diffs.len()),
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A real-shaped Claude user line of exactly `bytes` bytes (newline included).
fn claude_line(session: &str, uuid: &str, bytes: usize) -> String {
    let ts = "2026-12-02T08:00:00.000Z";
    let head = format!(
        r#"{{"parentUuid":null,"isSidechain":false,"userType":"external","cwd":"/home/dev/bench","sessionId":"{session}","version":"2.0.76","gitBranch":"main","type":"user","message":{{"role":"user","content":""#
    );
    let tail = format!(r#""}},"uuid":"{uuid}","timestamp":"{ts}"}}"#);
    let pad = bytes.saturating_sub(head.len() + tail.len() + 1);
    format!("{head}{}{tail}\n", "x".repeat(pad))
}

fn append_to(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn wait_messages(emu: &Emulation, want: usize, within: Duration) -> bool {
    emu.wait_for(within, |e| e.message_count() >= want)
}

// ---- scenarios -------------------------------------------------------------------------------

/// Scenario 1: Parse throughput: `export > /dev/null` vs `cat` and `wc -l` on the same files.
fn parse(o: &Opts) {
    let (files, bytes) = corpus_size(&o.corpus);
    let env = Env::new(o, &o.corpus, "parse");
    let dirs = format!(
        "'{0}/.claude' '{0}/.codex' '{0}/.local/share/opencode'",
        o.corpus.display()
    );
    let find = format!("find {dirs} -type f -print0");
    timed(&format!("{find} | xargs -0 cat > /dev/null")); // warm the page cache
    let cat = timed(&format!("{find} | xargs -0 cat > /dev/null"));
    let wc = timed(&format!("{find} | xargs -0 wc -l > /dev/null"));
    let export = timed(&format!("{} export > /dev/null", env.shell_prefix(o)));
    let rate = |t: &Timed| mb(bytes) / t.wall;
    println!(
        "## 1. Parse throughput ({files} files, {:.0} MiB, warm cache)\n",
        mb(bytes)
    );
    println!("| command | wall s | CPU s | MiB/s (wall) | MiB/s per CPU s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for (name, t) in [("cat", &cat), ("wc -l", &wc), ("opensyncd export", &export)] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.0} | {:.0} | {:.1} |",
            t.wall,
            t.cpu,
            rate(t),
            mb(bytes) / t.cpu.max(0.001),
            t.max_rss_kb as f64 / 1024.0
        );
    }
    println!(
        "\nexport / wc -l wall ratio: {:.2}x; export / cat: {:.2}x\n",
        export.wall / wc.wall,
        export.wall / cat.wall
    );
}

/// Scenario 2: Per-append cost on a 2 MB and a 200 MB session: CPU and bytes read for one 2 KB line
/// to be acknowledged, against re-parsing the whole file (the plugins' way).
fn append(o: &Opts) {
    println!("## 2. Per-append cost (one 2 KB line, acknowledged)\n");
    println!(
        "| session file | samples | CPU per append (median) | bytes read per append (median) | full re-parse of the file (plugin way): CPU | ratio |"
    );
    println!("|---|---|---|---|---|---|");
    for size_mb in [2u64, 200] {
        let home = o.work.join(format!("append-{size_mb}"));
        if !home.exists() {
            let status = Command::new("python3")
                .arg(gen_corpus())
                .args(["--out"])
                .arg(&home)
                .args([
                    "--size-mb",
                    "1",
                    "--big-session-mb",
                    &size_mb.to_string(),
                    "--seed",
                    &(100 + size_mb).to_string(),
                    "--quiet",
                    "--mix",
                    "claude=1",
                ])
                .status()
                .unwrap();
            assert!(status.success());
        }
        let big = biggest_file(&home);
        let session = big.file_stem().unwrap().to_str().unwrap().to_string();
        let emu = Emulation::with_key(KEY);
        emu.set_recording(false);
        let env = Env::new(o, &home, &format!("append-{size_mb}"));
        env.login(o, &emu);
        let want = env.expected_messages(o);
        let daemon = env.spawn(o, &format!("append-{size_mb}.log"));
        assert!(
            wait_messages(&emu, want, Duration::from_secs(1800)),
            "backfill did not finish"
        );
        wait_quiescent(daemon.id(), Duration::from_millis(500));
        let pid = daemon.id();
        // The idle rate (the watcher's debouncer ticks), subtracted from each sample's window.
        let (idle_c0, idle_t0) = (cpu_ns(pid), Instant::now());
        std::thread::sleep(Duration::from_secs(5));
        let idle_ns_per_s = (cpu_ns(pid) - idle_c0) as f64 / idle_t0.elapsed().as_secs_f64();
        let mut cpu = Vec::new();
        let mut read = Vec::new();
        for i in 0..o.append_samples {
            let uuid = format!(
                "b0000000-0000-4000-8000-{:012}",
                size_mb * 1_000_000 + i as u64
            );
            let (c0, r0, t0) = (cpu_ns(pid), rchar(pid), Instant::now());
            append_to(&big, &claude_line(&session, &uuid, 2048));
            assert!(emu.wait_for(Duration::from_secs(30), |e| e.has_message(&uuid)));
            wait_quiescent(pid, Duration::from_millis(300));
            let idle = idle_ns_per_s * t0.elapsed().as_secs_f64();
            cpu.push(((cpu_ns(pid) - c0) as f64 - idle).max(0.0) / 1e6);
            read.push((rchar(pid) - r0) as f64);
        }
        stop(daemon);
        cpu.sort_by(f64::total_cmp);
        read.sort_by(f64::total_cmp);
        let full = timed(&format!(
            "{} export --session {session} > /dev/null",
            env.shell_prefix(o)
        ));
        let median_cpu = percentile(&cpu, 0.5);
        println!(
            "| {:.0} MB | {} | {:.2} ms | {:.1} KB | {:.0} ms | {:.0}x |",
            mb(std::fs::metadata(&big).unwrap().len()),
            cpu.len(),
            median_cpu,
            percentile(&read, 0.5) / 1024.0,
            full.cpu * 1000.0,
            full.cpu * 1000.0 / median_cpu
        );
    }
    println!(
        "\n(CPU is the daemon's whole reaction (event, read, parse, plan, HTTP, ledger commit) minus its idle rate over the same window, measured for 5 s before the samples; bytes read count every `read` syscall, sockets included.)\n"
    );
}

fn gen_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_corpus.py")
}

fn biggest_file(home: &Path) -> PathBuf {
    let mut best = (0, PathBuf::new());
    let mut stack = vec![home.join(".claude")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.len() > best.0 && p.extension().is_some_and(|x| x == "jsonl") {
                best = (m.len(), p);
            }
        }
    }
    best.1
}

/// Scenario 3: Latency from an append to the server holding the message, default debounce.
fn latency(o: &Opts) {
    let home = o.work.join("latency-home");
    let _ = std::fs::remove_dir_all(&home);
    let project = home.join(".claude/projects/-home-dev-latency");
    std::fs::create_dir_all(&project).unwrap();
    let writers = 10;
    let files: Vec<(String, PathBuf)> = (0..writers)
        .map(|i| {
            let sid = format!("1a7e0000-0000-4000-8000-{i:012}");
            let path = project.join(format!("{sid}.jsonl"));
            std::fs::write(
                &path,
                claude_line(&sid, &format!("1a7e0000-0000-4000-9000-{i:012}"), 512),
            )
            .unwrap();
            (sid, path)
        })
        .collect();
    let emu = Emulation::with_key(KEY);
    emu.set_recording(false);
    let env = Env::new(o, &home, "latency");
    env.login(o, &emu);
    let daemon = env.spawn(o, "latency.log");
    assert!(wait_messages(&emu, writers, Duration::from_secs(60)));
    let per_writer = o.latency_appends.div_ceil(writers);
    let emu = std::sync::Arc::new(emu);
    let handles: Vec<_> = files
        .into_iter()
        .enumerate()
        .map(|(w, (sid, path))| {
            let emu = emu.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                for i in 0..per_writer {
                    // Stagger the writers so events do not arrive in lockstep.
                    std::thread::sleep(Duration::from_millis(((w * 37 + i * 11) % 100) as u64));
                    let uuid = format!("1a7e{w:04}-0000-4000-a000-{i:012}");
                    let t0 = Instant::now();
                    append_to(&path, &claude_line(&sid, &uuid, 1024));
                    assert!(emu.wait_for(Duration::from_secs(30), |e| e.has_message(&uuid)));
                    lat.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<f64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    stop(daemon);
    all.sort_by(f64::total_cmp);
    println!(
        "## 3. Latency: append → message on the server (debounce 500 ms, {writers} sessions written concurrently)\n"
    );
    println!("| appends | p50 ms | p90 ms | p99 ms | max ms | goal p99 |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.0} | {:.0} | {:.0} | ≤ 550 |\n",
        all.len(),
        percentile(&all, 0.5),
        percentile(&all, 0.9),
        percentile(&all, 0.99),
        all.last().unwrap()
    );
}

/// Scenarios 4 and 6: Backfill of the corpus: messages acknowledged per second, per-record and batch
/// transport, daemon CPU vs server CPU, and the daemon's peak RSS.
fn backfill(o: &Opts) {
    println!("## 4/6. Backfill against the emulation on loopback\n");
    println!(
        "| corpus | transport | messages | wall s | msgs/s | daemon CPU s | server (emulation) CPU s | daemon peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let corpora: Vec<&PathBuf> = [&o.corpus_small, &o.corpus]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    for corpus in corpora {
        let (_, bytes) = corpus_size(corpus);
        for transport in o.transports.iter().map(String::as_str) {
            let emu = Emulation::with_key(KEY);
            emu.set_recording(false);
            let mut env = Env::new(o, corpus, &format!("backfill-{transport}"));
            env.extra
                .push(("OPENSYNCD_TRANSPORT".into(), transport.into()));
            env.login(o, &emu);
            let want = env.expected_messages(o);
            let server0 = self_cpu_ns();
            let t0 = Instant::now();
            let daemon = env.spawn(o, &format!("backfill-{transport}.log"));
            let pid = daemon.id();
            let mut peak = 0;
            let trace = std::env::var_os("BENCH_TRACE_RATE").is_some();
            let mut last = Instant::now();
            let done = emu.wait_for(Duration::from_secs(3600), |e| {
                peak = peak.max(proc_field(pid, "status", "VmHWM"));
                if trace && last.elapsed() >= Duration::from_secs(2) {
                    last = Instant::now();
                    eprintln!(
                        "{:5.1} s: {} messages, RSS {} MiB",
                        t0.elapsed().as_secs_f64(),
                        e.message_count(),
                        proc_field(pid, "status", "VmRSS") / 1024
                    );
                }
                e.message_count() >= want
            });
            let wall = t0.elapsed().as_secs_f64();
            let daemon_cpu = cpu_ns(pid) as f64 / 1e9;
            peak = peak.max(proc_field(pid, "status", "VmHWM"));
            let server_cpu = (self_cpu_ns() - server0) as f64 / 1e9;
            stop(daemon);
            println!(
                "| {:.0} MiB | {transport} | {want}{} | {wall:.1} | {:.0} | {daemon_cpu:.1} | {server_cpu:.1} | {:.1} |",
                mb(bytes),
                if done { "" } else { " (NOT all acknowledged)" },
                want as f64 / wall,
                peak as f64 / 1024.0
            );
        }
    }
    println!();
}

/// One backfill against the emulation with a per-request delay: wall time to every message
/// and to a server equal to `export`, requests, and how busy the pool was.
struct RttRun {
    want: Exported,
    wall_messages: f64,
    wall_equal: f64,
    requests: u64,
    daemon_cpu: f64,
    peak_rss_mib: f64,
    diffs: Vec<String>,
}

fn rtt_run(o: &Opts, corpus: &Path, delay: Duration, extra: &[(&str, &str)], name: &str) -> RttRun {
    let emu = Emulation::with_key(KEY);
    emu.set_recording(std::env::var_os("BENCH_TRACE_RATE").is_some());
    emu.set_latency(delay);
    let mut env = Env::new(o, corpus, name);
    for (k, v) in extra {
        env.extra.push((k.to_string(), v.to_string()));
    }
    env.login(o, &emu);
    let want = env.export(o);
    let t0 = Instant::now();
    let daemon = env.spawn(o, &format!("{name}.log"));
    let pid = daemon.id();
    let mut peak = 0;
    let trace = std::env::var_os("BENCH_TRACE_RATE").is_some();
    let mut last = (Instant::now(), 0u64);
    let done = emu.wait_for(Duration::from_secs(7200), |e| {
        peak = peak.max(proc_field(pid, "status", "VmHWM"));
        if trace && last.0.elapsed() >= Duration::from_secs(1) {
            let n = e.request_count();
            eprintln!(
                "{:5.1} s: {} requests/s",
                t0.elapsed().as_secs_f64(),
                n - last.1
            );
            last = (Instant::now(), n);
        }
        e.message_count() >= want.messages
    });
    assert!(done, "{name}: not every message arrived");
    if trace {
        let reqs = emu.requests();
        let mut first: std::collections::HashMap<String, (usize, usize, usize)> =
            Default::default();
        for (i, r) in reqs.iter().enumerate() {
            let sid = r
                .body
                .as_ref()
                .and_then(|b| {
                    b["sessionExternalId"]
                        .as_str()
                        .or(b["externalId"].as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default();
            let e = first.entry(sid).or_insert((i, i, 0));
            e.1 = i;
            e.2 += 1;
        }
        let mut v: Vec<_> = first.into_iter().filter(|(_, x)| x.2 > 60).collect();
        v.sort_by_key(|(_, x)| x.0);
        for (sid, (a, b, n)) in v {
            eprintln!("session {sid}: requests #{a}..#{b} ({n})");
        }
    }
    let wall_messages = t0.elapsed().as_secs_f64();
    // Session totals may wait for the server's 10 s window (deferred writes).
    let diffs = wait_equal_to_export(&emu, &want, Duration::from_secs(120));
    let wall_equal = t0.elapsed().as_secs_f64();
    let daemon_cpu = cpu_ns(pid) as f64 / 1e9;
    peak = peak.max(proc_field(pid, "status", "VmHWM"));
    let requests = emu.request_count();
    stop(daemon);
    RttRun {
        want,
        wall_messages,
        wall_equal,
        requests,
        daemon_cpu,
        peak_rss_mib: peak as f64 / 1024.0,
        diffs,
    }
}

/// Scenario 8: backfill over a network: every request delayed by 50 ms and 150 ms (the
/// emulation sleeps before answering), default settings, the 16 MB and the 257 MiB corpora;
/// plus the old default width (4 requests at a time) on the 16 MB corpus at 50 ms, as the
/// in-run baseline. "Pool busy" is requests × delay / (wall × 16): how much of the time the
/// 16 slots had a request on the wire. The longest session's messages go one after the other,
/// so `messages × delay` of that session is a floor under the wall time.
fn rtt(o: &Opts) {
    println!("## 8. Backfill over a network (per-request delay), default settings\n");
    println!(
        "| corpus | delay | concurrency | messages | requests | wall s (all messages) | msgs/s | pool busy | longest session: messages, floor s | wall s (= export) | server = export | daemon CPU s | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let corpora: Vec<&PathBuf> = [&o.corpus_tiny, &o.corpus_small]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    let mut tiny_50 = (None, None);
    for corpus in corpora {
        let (_, bytes) = corpus_size(corpus);
        for &delay_ms in &o.rtt_delays_ms {
            let delay = Duration::from_millis(delay_ms);
            let mut widths: Vec<(&str, Vec<(&str, &str)>)> = vec![("16 (default)", vec![])];
            if o.rtt_baseline && corpus == &o.corpus_tiny && delay_ms == 50 {
                widths.push(("4 (old default)", vec![("OPENSYNCD_CONCURRENCY", "4")]));
            }
            for (width, extra) in widths {
                let name = format!("rtt-{delay_ms}-{}", width.split(' ').next().unwrap());
                let r = rtt_run(o, corpus, delay, &extra, &name);
                let rate = r.want.messages as f64 / r.wall_messages;
                let slots = if width.starts_with('4') { 4.0 } else { 16.0 };
                let busy = r.requests as f64 * delay.as_secs_f64() / (r.wall_messages * slots);
                println!(
                    "| {:.0} MiB | {delay_ms} ms | {width} | {} | {} | {:.1} | {rate:.0} | {:.0}% | {}, {:.1} | {:.1} | {} | {:.1} | {:.1} |",
                    mb(bytes),
                    r.want.messages,
                    r.requests,
                    r.wall_messages,
                    busy * 100.0,
                    r.want.longest_session,
                    r.want.longest_session as f64 * delay.as_secs_f64(),
                    r.wall_equal,
                    verdict(&r.diffs),
                    r.daemon_cpu,
                    r.peak_rss_mib
                );
                std::io::stdout().flush().unwrap();
                if corpus == &o.corpus_tiny && delay_ms == 50 {
                    match width.starts_with('4') {
                        false => tiny_50.0 = Some(rate),
                        true => tiny_50.1 = Some(rate),
                    }
                }
            }
        }
    }
    if let (Some(default), Some(old)) = tiny_50 {
        println!(
            "\nSmallest corpus at 50 ms: default / old width (4) = {:.2}x",
            default / old
        );
    }
    println!();
}

/// A copy of the real fixtures' Claude Code and Codex trees (about 720 messages), which the
/// `faults` scenario can add sessions to.
fn fixtures_home(o: &Opts) -> (PathBuf, Vec<(String, String)>) {
    assert!(
        o.fixtures.join("claude").is_dir(),
        "--fixtures must name the real fixtures (../shared/fixtures/real)"
    );
    let home = o.work.join("faults-home");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    for tool in ["claude", "codex"] {
        let status = Command::new("cp")
            .arg("-r")
            .arg(o.fixtures.join(tool))
            .arg(home.join(tool))
            .status()
            .unwrap();
        assert!(status.success());
    }
    // The copy is history being backfilled, so it must look old: a lone subagent file (the
    // fixtures have some without their main transcript) modified less than ORPHAN_WAIT
    // (10 min) ago is held back by the daemon waiting for its leader, which would make both
    // runs measure that wait instead of convergence. `cp -p` is not enough: the fixtures'
    // own mtimes are their checkout's.
    let an_hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let mut stack = vec![home.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(an_hour_ago))
                    .unwrap_or_else(|e| panic!("backdating {}: {e}", path.display()));
            }
        }
    }
    let env = vec![
        (
            "CLAUDE_CONFIG_DIR".to_string(),
            home.join("claude").display().to_string(),
        ),
        (
            "CODEX_HOME".to_string(),
            home.join("codex").display().to_string(),
        ),
    ];
    (home, env)
}

/// Scenario 9: convergence under heavy faults — 30% 5xx, 10% 429 (`Retry-After: 1`), 5% of
/// connections dropped before the write and 5% after it — on the real fixtures (Claude Code
/// and Codex), against a fault-free run of the same files in the same run; then a 60 s outage
/// during which 40 new sessions are written, and the return once it ends.
fn faults(o: &Opts) {
    let (home, extra) = fixtures_home(o);
    let run = |name: &str, faults: Option<support::Faults>| {
        let emu = Emulation::with_key(KEY);
        if let Some(f) = faults {
            emu.set_faults(f);
        }
        let mut env = Env::new(o, &home, name);
        env.extra = extra.clone();
        env.login(o, &emu);
        let want = env.export(o);
        let t0 = Instant::now();
        let daemon = env.spawn(o, &format!("{name}.log"));
        let diffs = wait_equal_to_export(&emu, &want, Duration::from_secs(600));
        let wall = t0.elapsed().as_secs_f64();
        (emu, env, daemon, want, wall, diffs)
    };
    let (clean_emu, _, clean_daemon, want, clean_wall, clean_diffs) = run("faults-none", None);
    let clean_requests = clean_emu.request_count();
    stop(clean_daemon);
    drop(clean_emu);
    let mix = support::Faults {
        error_rate: 0.3,
        rate_429: 0.1,
        retry_after_secs: 1,
        drop_before_rate: 0.05,
        drop_after_rate: 0.05,
        seed: 14,
    };
    let (emu, env, daemon, _, wall, diffs) = run("faults-mix", Some(mix));
    let requests = emu.request_count();
    let log = std::fs::read_to_string(o.work.join("faults-mix.log")).unwrap_or_default();
    let longest_wait_ms = log
        .lines()
        .filter_map(|l| l.split("retry_in_ms=").nth(1))
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    println!(
        "## 9. Convergence under faults (real fixtures: Claude Code + Codex, {} messages in {} sessions)\n",
        want.messages,
        want.sessions.len()
    );
    println!(
        "| run | server = export after s | requests | requests vs fault-free | longest single wait | server = export |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| fault-free | {clean_wall:.1} | {clean_requests} | 1.00x | – | {} |",
        verdict(&clean_diffs)
    );
    println!(
        "| 30% 5xx + 10% 429 + 5% drop before + 5% drop after | {wall:.1} | {requests} | {:.2}x | {:.1} s | {} |\n",
        requests as f64 / clean_requests as f64,
        longest_wait_ms as f64 / 1000.0,
        verdict(&diffs)
    );
    std::io::stdout().flush().unwrap();

    // An outage with many sessions waiting: the pool probes, it does not hammer.
    emu.set_faults(support::Faults::default());
    let project = home.join("claude/projects/-home-dev-outage");
    std::fs::create_dir_all(&project).unwrap();
    let before = emu.request_count();
    emu.start_outage();
    for i in 0..40u64 {
        let sid = format!("0a7a0000-0000-4000-8000-{i:012}");
        let mut text = String::new();
        for n in 0..5u64 {
            text.push_str(&claude_line(
                &sid,
                &format!("0a7a{i:04}-0000-4000-a000-{n:012}"),
                600,
            ));
        }
        std::fs::write(project.join(format!("{sid}.jsonl")), text).unwrap();
    }
    let outage = Duration::from_secs(60);
    std::thread::sleep(outage);
    let during = emu.request_count() - before;
    emu.end_outage();
    let t_end = Instant::now();
    let want_after = env.export(o);
    let after_diffs = wait_equal_to_export(&emu, &want_after, Duration::from_secs(300));
    let back = t_end.elapsed().as_secs_f64();
    stop(daemon);
    println!(
        "| outage | sessions waiting | requests during the outage | after it ends: server = export within | server = export |"
    );
    println!("|---|---|---|---|---|");
    println!(
        "| {} s, every connection dropped | 40 | {during} | {back:.1} s | {} |\n",
        outage.as_secs(),
        verdict(&after_diffs)
    );
}

/// Scenario 5: Idle cost with each corpus synced and watched: both corpora side by side (two
/// daemons, two emulations, in parallel: an idle daemon's CPU is its own whatever runs beside
/// it), so that "flat in file count" is read off one run.
fn idle(o: &Opts) {
    let corpora: Vec<PathBuf> = [&o.corpus_small, &o.corpus]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .cloned()
        .collect();
    let rows: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = corpora
            .iter()
            .enumerate()
            .map(|(i, corpus)| scope.spawn(move || idle_one(o, corpus, &format!("idle-{i}"))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("## 5. Idle (synced, watched, {} s)\n", o.idle_secs);
    println!(
        "| files | CPU s | CPU s per 10 min | wakeups (context switches) per s | requests | RSS MiB | goal |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    println!();
}

/// Backfills `corpus`, lets it settle, then measures `idle_secs` of nothing happening. The
/// large corpus's synced state is left for `coldstart`.
fn idle_one(o: &Opts, corpus: &Path, name: &str) -> String {
    let (files, _) = corpus_size(corpus);
    let emu = Emulation::with_key(KEY);
    emu.set_recording(false);
    let env = Env::new(o, corpus, name);
    env.login(o, &emu);
    let want = env.expected_messages(o);
    let daemon = env.spawn(o, &format!("{name}.log"));
    assert!(wait_messages(&emu, want, Duration::from_secs(3600)));
    // Let the settle re-sends (10 s window) and any trailing work finish.
    std::thread::sleep(Duration::from_secs(15));
    wait_quiescent(daemon.id(), Duration::from_millis(1000));
    let pid = daemon.id();
    let (c0, w0, r0) = (cpu_ns(pid), wakeups(pid), emu.request_count());
    std::thread::sleep(Duration::from_secs(o.idle_secs));
    let (c1, w1, r1) = (cpu_ns(pid), wakeups(pid), emu.request_count());
    let rss = proc_field(pid, "status", "VmRSS");
    stop(daemon);
    if corpus == o.corpus {
        // Leave the synced state for `coldstart`.
        let _ = std::fs::remove_dir_all(o.work.join("state-coldstart"));
        std::fs::rename(&env.state, o.work.join("state-coldstart")).unwrap();
    }
    format!(
        "| {files} | {:.3} | {:.3} | {:.2} | {} | {:.1} | < 1 s CPU / 10 min, RSS < 32 MiB |",
        (c1 - c0) as f64 / 1e9,
        (c1 - c0) as f64 / 1e9 * 600.0 / o.idle_secs as f64,
        (w1 - w0) as f64 / o.idle_secs as f64,
        r1 - r0,
        rss as f64 / 1024.0
    )
}

/// Scenario 7: Cold start with a large ledger: time to READY=1 (sd_notify) and to the first idle.
fn coldstart(o: &Opts) {
    let state = o.work.join("state-coldstart");
    assert!(
        state.exists(),
        "run `idle` first: it leaves a synced ledger behind"
    );
    let emu = Emulation::with_key(KEY);
    emu.set_recording(false);
    let env = Env {
        home: o.corpus.clone(),
        state: state.clone(),
        extra: Vec::new(),
    };
    env.login(o, &emu);
    let (files, _) = corpus_size(&o.corpus);
    let sock_path = o.work.join("notify.sock");
    let _ = std::fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    let t0 = Instant::now();
    let daemon = env
        .cmd(o, &["run"])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(o.work.join("coldstart.log")).unwrap())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 4096];
    let ready = loop {
        let n = sock.recv(&mut buf).unwrap();
        if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
            break t0.elapsed();
        }
    };
    let pid = daemon.id();
    wait_quiescent(pid, Duration::from_secs(1));
    let settled = t0.elapsed() - Duration::from_secs(1);
    let cpu = cpu_ns(pid) as f64 / 1e9;
    let requests = emu.request_count();
    let rss = proc_field(pid, "status", "VmHWM");
    let rss_idle = proc_field(pid, "status", "VmRSS");
    // What a full scan of the synced tree costs a running daemon (the hourly safety net's
    // walk): a reload (SIGHUP) rescans everything; nothing changed, so nothing is sent.
    let before_scan = cpu_ns(pid);
    let _ = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status();
    wait_quiescent(pid, Duration::from_secs(1));
    let scan_cpu = (cpu_ns(pid) - before_scan) as f64 / 1e9;
    let scan_requests = emu.request_count() - requests;
    stop(daemon);
    println!("## 7. Cold start with a synced ledger ({files} files known)\n");
    println!(
        "| to READY=1 | to first idle (startup scan done) | CPU s until idle | requests sent | peak RSS MiB | RSS once idle MiB | CPU s of a rescan (SIGHUP) | requests it sent |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} ms | {:.2} s | {cpu:.2} | {requests} | {:.1} | {:.1} | {scan_cpu:.2} | {scan_requests} |\n",
        ready.as_secs_f64() * 1000.0,
        settled.as_secs_f64(),
        rss as f64 / 1024.0,
        rss_idle as f64 / 1024.0
    );
}

/// The `vs-ccusage` scenario: `export --source claude` against ccusage's
/// `claude session --json --offline` on the Claude part of the 257 MiB corpus, alternating the
/// two commands three times in one run (warm page cache) and comparing the medians. ccusage
/// only totals usage (and loads files on several threads); `export` also builds, redacts and
/// writes every message, so this is the floor the parser is held to, not a like-for-like task.
/// Skipped, with a message, when ccusage is neither given (`--ccusage`, `BENCH_CCUSAGE` in
/// `bench/run.sh`) nor on `PATH`.
fn vs_ccusage(o: &Opts) {
    const ROUNDS: usize = 3;
    let ccusage = if o.ccusage.is_empty() {
        sh_out("command -v ccusage")
    } else {
        o.ccusage.clone()
    };
    let runs = !ccusage.is_empty()
        && sh_out(&format!("'{ccusage}' --version >/dev/null 2>&1 && echo ok")) == "ok";
    if !runs {
        println!(
            "## vs-ccusage: skipped — ccusage not found (set BENCH_CCUSAGE to its executable or \
             put it on PATH; e.g. `npm install ccusage @ccusage/ccusage-linux-x64` in a scratch \
             directory, then BENCH_CCUSAGE=<dir>/node_modules/.bin/ccusage)\n"
        );
        return;
    }
    let claude = o.corpus_small.join(".claude");
    let (files, bytes) = claude_size(&claude);
    let env = Env::new(o, &o.corpus_small, "vs-ccusage");
    // ccusage reads every tool it finds under HOME: an empty HOME leaves it the Claude files.
    let empty_home = o.work.join("vs-ccusage-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    // ccusage 20 (the version measured) names the tool (`ccusage claude session`); older
    // versions read only Claude and have no such subcommand.
    let subcommand = if sh_out(&format!(
        "'{ccusage}' claude --help >/dev/null 2>&1 && echo ok"
    )) == "ok"
    {
        "claude session"
    } else {
        "session"
    };
    let ccusage_cmd = format!(
        "env -i HOME='{}' CLAUDE_CONFIG_DIR='{}' PATH=\"$PATH\" '{ccusage}' {subcommand} --json --offline > /dev/null",
        empty_home.display(),
        claude.display()
    );
    // Its one-line summary on stderr is not part of the table (a failure still fails `timed`).
    let export_cmd = format!(
        "{} export --source claude > /dev/null 2>&1",
        env.shell_prefix(o)
    );
    timed(&format!(
        "find '{}' -type f -exec cat {{}} + > /dev/null",
        claude.display()
    )); // warm the cache
    let (mut export, mut cc) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        export.push(timed(&export_cmd));
        cc.push(timed(&ccusage_cmd));
    }
    let median = |runs: &[Timed], f: fn(&Timed) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        percentile(&v, 0.5)
    };
    println!(
        "## vs-ccusage: export vs ccusage on the Claude part of the 257 MiB corpus ({files} files, {:.1} MiB, warm cache, median of {ROUNDS} alternated runs)\n",
        mb(bytes)
    );
    println!("| command | wall s | CPU s | MiB/s (wall) | MiB/s per CPU-second | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    for (name, runs) in [
        ("opensyncd export --source claude".to_string(), &export),
        (format!("ccusage {subcommand} --json --offline"), &cc),
    ] {
        let (wall, cpu) = (median(runs, |t| t.wall), median(runs, |t| t.cpu));
        let rss = median(runs, |t| t.max_rss_kb as f64) / 1024.0;
        println!(
            "| {name} | {wall:.2} | {cpu:.2} | {:.0} | {:.0} | {rss:.1} |",
            mb(bytes) / wall.max(0.001),
            mb(bytes) / cpu.max(0.001)
        );
        walls.push(wall);
        cpus.push(cpu);
    }
    println!(
        "\nexport / ccusage, medians: wall {:.2}x, CPU {:.2}x (goal: wall below 1x; \
         ≥ 400 MB/s = 381 MiB/s per CPU-second)\n",
        walls[0] / walls[1].max(0.001),
        cpus[0] / cpus[1].max(0.001)
    );
}

/// Files and bytes under a Claude config directory.
fn claude_size(dir: &Path) -> (usize, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                bytes += m.len();
            }
        }
    }
    (files, bytes)
}
