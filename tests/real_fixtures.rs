//! The real-fixture tier: logs written by the real tools, read from the directory named by
//! `OPENSYNCD_REAL_FIXTURES` (never copied into this repo). Every test here is `#[ignore]`d
//! with the reason, so a plain `cargo test` lists them as ignored instead of passing them
//! without looking at anything; `.ci/run` sets the variable and passes `--include-ignored`.
//! Run without the variable, or with a directory that is missing, they fail.
//!
//! Expected totals and message counts are derived here, independently of the parsers, from
//! the raw JSON lines (the rules of `spec/session-formats.md`), and compared with what
//! `opensyncd export` produces. Then the same files are synced into the server emulation:
//! every payload must be accepted and the server must hold exactly what `export` predicts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::daemon::{KEY, assert_server_matches_export};
use crate::home::TestHome;
use crate::support::Emulation;

/// The real fixtures directory (`.../fixtures/real`). Panics when the variable is not set or
/// the directory is missing: a real-fixture test that runs must read real files. (Always
/// `Some`; the `Option` keeps the tests' `let Some(root) = dir() else { return }` shape.)
pub fn dir() -> Option<PathBuf> {
    let Some(raw) = std::env::var_os("OPENSYNCD_REAL_FIXTURES") else {
        panic!(
            "OPENSYNCD_REAL_FIXTURES is not set: this real-fixture test reads logs written by \
             the real tools. Set it to their directory (../shared/fixtures/real), as .ci/run \
             does; a plain `cargo test` skips the tier because every such test is \
             #[ignore = \"real-fixture tier: ...\"]"
        )
    };
    let dir = PathBuf::from(raw);
    assert!(
        dir.is_dir(),
        "OPENSYNCD_REAL_FIXTURES={} is set but is not a directory",
        dir.display()
    );
    Some(dir)
}

/// Every `*.jsonl` under `dir`.
pub fn jsonl_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("real fixture lines are JSON"))
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Expect {
    prompt: u64,
    completion: u64,
    messages: usize,
}

/// Codex: the last non-null `total_token_usage`; messages = user/agent message events plus
/// tool calls and their outputs.
fn expected_codex(root: &Path) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    for file in jsonl_files(&root.join("codex")) {
        let mut sid = None;
        let mut e = Expect::default();
        for v in lines(&file) {
            let p = &v["payload"];
            match (v["type"].as_str(), p["type"].as_str()) {
                (Some("session_meta"), _) => sid = sid.or(p["id"].as_str().map(String::from)),
                (Some("event_msg"), Some("token_count")) if !p["info"].is_null() => {
                    let t = &p["info"]["total_token_usage"];
                    e.prompt = t["input_tokens"].as_u64().unwrap();
                    e.completion = t["output_tokens"].as_u64().unwrap();
                }
                (Some("event_msg"), Some("user_message" | "agent_message"))
                    if !p["message"].as_str().unwrap_or("").trim().is_empty() =>
                {
                    e.messages += 1
                }
                (
                    Some("response_item"),
                    Some(
                        "function_call"
                        | "custom_tool_call"
                        | "local_shell_call"
                        | "web_search_call"
                        | "function_call_output"
                        | "custom_tool_call_output",
                    ),
                ) => e.messages += 1,
                _ => {}
            }
        }
        out.insert(sid.expect("session_meta"), e);
    }
    out
}

/// Claude Code: usage grouped by (message.id, requestId) keeping each field's maximum, over
/// the session file and its subagent files; `<synthetic>` lines skipped. Messages = prompts,
/// tool-result lines, and assistant lines with non-blank text or tool calls, in the session
/// file and in its subagent files alike.
fn expected_claude(root: &Path) -> BTreeMap<String, Expect> {
    let projects = root.join("claude/projects");
    let mut usage: HashMap<String, HashMap<(String, String), [u64; 4]>> = HashMap::new();
    let mut messages: HashMap<String, usize> = HashMap::new();
    let mut sessions: HashSet<String> = HashSet::new();
    for file in jsonl_files(&projects) {
        let name = file.file_stem().unwrap().to_str().unwrap().to_string();
        let parent = file.parent().unwrap();
        let sub_parent = (parent.file_name().unwrap() == "subagents").then(|| {
            parent
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        });
        let is_sub = sub_parent.is_some() || name.starts_with("agent-");
        for v in lines(&file) {
            let line_sid = v["sessionId"].as_str().map(String::from);
            let sid = match (&sub_parent, is_sub) {
                (Some(p), _) => p.clone(),
                (None, true) => match &line_sid {
                    Some(s) => s.clone(),
                    None => continue,
                },
                (None, false) => name.clone(),
            };
            if !is_sub && line_sid.is_some() {
                sessions.insert(sid.clone());
            }
            // Subagent turns are messages of their parent session too (marked as theirs).
            {
                let m = &v["message"];
                let count = match v["type"].as_str() {
                    Some("user") => {
                        let meta = v["isMeta"] == true || v["isCompactSummary"] == true;
                        match &m["content"] {
                            Value::String(s) => !meta && !s.trim().is_empty(),
                            Value::Array(b) => {
                                b.iter().any(|x| x["type"] == "tool_result")
                                    || (!meta && b.iter().any(|x| x["type"] == "text"))
                            }
                            _ => false,
                        }
                    }
                    Some("assistant")
                        if m["model"] == "<synthetic>" && v["isApiErrorMessage"] != true =>
                    {
                        false
                    }
                    Some("assistant") => m["content"].as_array().is_some_and(|b| {
                        b.iter().any(|x| {
                            x["type"] == "tool_use"
                                || (x["type"] == "text"
                                    && !x["text"].as_str().unwrap_or("").trim().is_empty())
                        })
                    }),
                    _ => false,
                };
                if count {
                    *messages.entry(sid.clone()).or_default() += 1;
                }
            }
            if v["type"] != "assistant" || v["message"]["model"] == "<synthetic>" {
                continue;
            }
            let u = &v["message"]["usage"];
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            let key = (
                v["message"]["id"].as_str().unwrap_or("").to_string(),
                v["requestId"].as_str().unwrap_or("").to_string(),
            );
            let slot = usage.entry(sid).or_default().entry(key).or_insert([0; 4]);
            let cur = [
                n("input_tokens"),
                n("cache_read_input_tokens"),
                n("cache_creation_input_tokens"),
                n("output_tokens"),
            ];
            for i in 0..4 {
                slot[i] = slot[i].max(cur[i]);
            }
        }
    }
    let mut out = BTreeMap::new();
    for sid in sessions.iter().chain(usage.keys()) {
        let groups = usage.get(sid);
        let sum = |i: usize| groups.map_or(0, |g| g.values().map(|v| v[i]).sum::<u64>());
        out.insert(
            sid.clone(),
            Expect {
                prompt: sum(0) + sum(1) + sum(2),
                completion: sum(3),
                messages: messages.get(sid).copied().unwrap_or(0),
            },
        );
    }
    out
}

/// Factory Droid: tokens are the settings file's running total (`inputTokens` +
/// `cacheReadTokens` + `cacheCreationTokens`; `outputTokens`, plus `thinkingTokens` only when
/// it exceeds `outputTokens`); messages = lines of type `message` not marked `llm_only`, one
/// per line with text (not `<system-reminder>`) or tool results, plus one per `tool_use`.
fn expected_droid(root: &Path) -> BTreeMap<String, Expect> {
    let sessions = root.join("droid/.factory/sessions");
    assert!(
        sessions.is_dir(),
        "{} is missing from the real fixtures",
        sessions.display()
    );
    let mut out: BTreeMap<String, Expect> = BTreeMap::new();
    for file in jsonl_files(&sessions) {
        let sid = file.file_stem().unwrap().to_str().unwrap().to_string();
        let mut e = Expect::default();
        for v in lines(&file) {
            let m = &v["message"];
            if v["type"] != "message" || m["visibility"] == "llm_only" {
                continue;
            }
            let blocks = m["content"].as_array().cloned().unwrap_or_default();
            let injected =
                |t: &str| m["role"] == "user" && t.trim_start().starts_with("<system-reminder>");
            let texty = blocks.iter().any(|b| {
                b["type"] == "tool_result"
                    || (b["type"] == "text"
                        && b["text"]
                            .as_str()
                            .is_some_and(|t| !t.trim().is_empty() && !injected(t)))
            });
            e.messages += usize::from(texty);
            e.messages += blocks.iter().filter(|b| b["type"] == "tool_use").count();
        }
        let settings = file.with_extension("settings.json");
        if let Ok(text) = std::fs::read_to_string(&settings) {
            let v: Value = serde_json::from_str(&text).expect("real settings are JSON");
            let u = &v["tokenUsage"];
            let n = |k: &str| u[k].as_u64().unwrap_or(0);
            e.prompt = n("inputTokens") + n("cacheReadTokens") + n("cacheCreationTokens");
            e.completion = if n("thinkingTokens") > n("outputTokens") {
                n("outputTokens") + n("thinkingTokens")
            } else {
                n("outputTokens")
            };
        }
        out.insert(sid, e);
    }
    out
}

fn home_on(root: &Path) -> TestHome {
    TestHome::new()
        .with_env("CLAUDE_CONFIG_DIR", root.join("claude"))
        .with_env("CODEX_HOME", root.join("codex"))
        .with_env("PI_CODING_AGENT_DIR", root.join("pi/.pi/agent"))
        .with_env("OPENSYNCD_DROID_DIRS", root.join("droid/.factory"))
        .with_env("OPENSYNCD_CURSOR_DIRS", root.join("cursor/.cursor"))
}

/// pi: per session file (header line `{"type":"session","id"}`), the sum of every assistant
/// message's `usage` (input + cacheRead + cacheWrite, and output) — entries of a fork dated
/// before its header are skipped only when `parent_exists` says the parent file is there.
/// Messages = user messages with text, assistant messages with text, tool calls or an error
/// message, and every `toolResult` and `bashExecution`.
fn expected_pi(agent: &Path, parent_exists: &dyn Fn(&str) -> bool) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    for file in jsonl_files(agent) {
        let all = lines(&file);
        let header = &all[0];
        assert_eq!(header["type"], "session", "{}", file.display());
        let header_time = header["timestamp"].as_str().unwrap().to_string();
        let parent = header["parentSession"]
            .as_str()
            .or(header["branchedFrom"].as_str())
            .filter(|p| parent_exists(p));
        let mut e = Expect::default();
        for v in &all[1..] {
            // ISO strings of one format compare like the times they name.
            let copied =
                parent.is_some() && v["timestamp"].as_str().unwrap() < header_time.as_str();
            let m = &v["message"];
            if v["type"] != "message" {
                continue;
            }
            let text = |c: &Value| match c {
                Value::String(s) => !s.trim().is_empty(),
                Value::Array(b) => b.iter().any(|x| {
                    x["type"] == "image"
                        || (x["type"] == "text"
                            && !x["text"].as_str().unwrap_or("").trim().is_empty())
                }),
                _ => false,
            };
            match m["role"].as_str().unwrap() {
                "user" => e.messages += usize::from(text(&m["content"])),
                "toolResult" | "bashExecution" => e.messages += 1,
                "assistant" => {
                    let shown = text(&m["content"])
                        || m["content"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|x| x["type"] == "toolCall")
                        || !m["errorMessage"].as_str().unwrap_or("").trim().is_empty();
                    e.messages += usize::from(shown);
                    if !copied {
                        let u = &m["usage"];
                        let n = |k: &str| u[k].as_u64().unwrap_or(0);
                        e.prompt += n("input") + n("cacheRead") + n("cacheWrite");
                        e.completion += n("output");
                    }
                }
                _ => {}
            }
        }
        out.insert(header["id"].as_str().unwrap().to_string(), e);
    }
    out
}

fn exported(home: &TestHome, source: &str) -> BTreeMap<String, (Expect, Vec<String>)> {
    let out = home.run(&["export", "--source", source]);
    assert!(
        out.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped 0 malformed"),
        "export reported problems: {stderr}"
    );
    let mut map = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let s = &v["session"];
        let ids: Vec<String> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["externalId"].as_str().unwrap().to_string())
            .collect();
        let e = Expect {
            prompt: s["promptTokens"].as_u64().unwrap_or(0),
            completion: s["completionTokens"].as_u64().unwrap_or(0),
            messages: ids.len(),
        };
        map.insert(s["externalId"].as_str().unwrap().to_string(), (e, ids));
    }
    map
}

fn check(source: &str, want: BTreeMap<String, Expect>, root: &Path) {
    let home = home_on(root);
    let got = exported(&home, source);
    let mut all_ids = HashSet::new();
    for (sid, (_, ids)) in &got {
        for id in ids {
            assert!(
                all_ids.insert(id.clone()),
                "{source}: message id {id} appears twice ({sid})"
            );
        }
    }
    for (sid, e) in &want {
        let (g, _) = got
            .get(sid)
            .unwrap_or_else(|| panic!("{source}: session {sid} not exported"));
        assert_eq!(g, e, "{source} session {sid}: export vs independent count");
    }
    for sid in got.keys() {
        assert!(
            want.contains_key(sid),
            "{source}: exported an unexpected session {sid}"
        );
    }
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn codex_totals_and_counts_match_an_independent_reading() {
    let Some(root) = dir() else { return };
    check("codex-cli", expected_codex(&root), &root);
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn claude_totals_and_counts_match_an_independent_reading() {
    let Some(root) = dir() else { return };
    let want = expected_claude(&root);
    // The spec's measured keep-max output totals for three main files are contained in ours
    // (ours add subagent files).
    assert!(want["e9fb405b-169f-40eb-9396-7e75076f045d"].completion >= 10_099);
    assert!(want["c45af7b1-cb7c-4e51-93db-8cbb250a877a"].completion >= 1_480);
    assert_eq!(want["1af7fc5e-8455-4414-9ccd-011d40f70b2a"].completion, 953);
    check("claude-code", want, &root);
}

/// What `ccusage pi session --json --offline` (ccusage 20.0.24, `PI_AGENT_DIR` set to the
/// fixture's `sessions/` dir) reports: (session, input, cacheCreation, cacheRead, output).
/// ccusage counts the branched file's copies of its parent's turns again; the parent is not
/// among the fixtures, so here both readings agree.
const CCUSAGE_PI: [(&str, u64, u64, u64, u64); 2] = [
    (
        "d703a1a9-1b7b-4fb1-b512-c9738b1fe617",
        1_049,
        4_296_232,
        43_229_469,
        83_156,
    ),
    (
        "ffae836b-9420-4060-ac13-7745215f90ff",
        3_689,
        1_685_320,
        54_693_675,
        187_895,
    ),
];

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn pi_totals_and_counts_match_an_independent_reading_and_ccusage() {
    let Some(root) = dir() else { return };
    let agent = root.join("pi/.pi/agent");
    assert!(agent.is_dir(), "{} is missing", agent.display());
    let want = expected_pi(&agent, &|p| Path::new(p).is_file());
    assert_eq!(want.len(), 2);
    for (sid, input, cache_write, cache_read, output) in CCUSAGE_PI {
        assert_eq!(want[sid].prompt, input + cache_write + cache_read, "{sid}");
        assert_eq!(want[sid].completion, output, "{sid}");
    }
    check("pi", want, &root);
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn pi_branched_real_session_bills_its_copies_to_a_present_parent() {
    // Fixture #2 was branched (v1 `branchedFrom`) from a file that is not among the fixtures.
    // Put a parent there (a copy of the agent dir in a scratch home, never in the repo): the
    // 1001 entries dated before the branch's header are then the parent's, and the branch
    // keeps only its own (none of which used tokens).
    let Some(root) = dir() else { return };
    let home = TestHome::new();
    let agent = home.home.join(".pi/agent");
    crate::home::copy_dir(&root.join("pi/.pi/agent"), &agent);
    let branched = "ffae836b-9420-4060-ac13-7745215f90ff";
    let project = agent.join("sessions/--Users-badlogic-workspaces-pi-mono--");
    let parent_name = "2025-12-09T00-52-54-397Z_d97339c6-6c10-4827-846b-9ff1d9c3dc37.jsonl";
    std::fs::write(
        project.join(parent_name),
        "{\"type\":\"session\",\"id\":\"d97339c6-6c10-4827-846b-9ff1d9c3dc37\",\"timestamp\":\"2025-12-09T00:52:54.397Z\",\"cwd\":\"/Users/badlogic/workspaces/pi-mono\"}\n",
    )
    .unwrap();
    let want = expected_pi(&agent, &|p| p.ends_with(parent_name));
    assert_eq!(want[branched].prompt, 0);
    assert_eq!(want[branched].completion, 0);
    let got = exported(&home, "pi");
    assert_eq!(got[branched].0, want[branched]);
    assert_eq!(
        got["d703a1a9-1b7b-4fb1-b512-c9738b1fe617"].0,
        want["d703a1a9-1b7b-4fb1-b512-c9738b1fe617"]
    );
}

/// Cursor agent transcripts (no hooks were spooled for them): one message per line with text
/// (lines that are exactly `[REDACTED]` dropped) or tool calls; ids `<conversation>:<line>`;
/// times from the file's birth time and the line index; no tokens.
fn expected_cursor(root: &Path) -> BTreeMap<String, Expect> {
    let mut out = BTreeMap::new();
    for file in jsonl_files(&root.join("cursor")) {
        let cid = file.file_stem().unwrap().to_str().unwrap().to_string();
        let mut messages = 0;
        for v in lines(&file) {
            let blocks = v["message"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let text = blocks
                .iter()
                .filter(|b| b["type"] == "text")
                .flat_map(|b| b["text"].as_str().unwrap().lines())
                .any(|l| !l.trim().is_empty() && l.trim() != "[REDACTED]");
            let tools = blocks.iter().any(|b| b["type"] == "tool_use");
            if matches!(v["role"].as_str(), Some("user" | "assistant")) && (text || tools) {
                messages += 1;
            }
        }
        out.insert(
            cid,
            Expect {
                prompt: 0,
                completion: 0,
                messages,
            },
        );
    }
    out
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn cursor_messages_match_an_independent_reading() {
    let Some(root) = dir() else { return };
    let want = expected_cursor(&root);
    assert_eq!(want.len(), 1, "one real Cursor transcript");
    check("cursor-sync", want, &root);
    // Ids, times, prompts and tool calls, line by line.
    let home = home_on(&root);
    let out = home.ok(&["export", "--source", "cursor-sync"]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let file = &jsonl_files(&root.join("cursor"))[0];
    let cid = file.file_stem().unwrap().to_str().unwrap();
    let birth = std::fs::metadata(file)
        .unwrap()
        .created()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let raw = lines(file);
    let messages = v["messages"].as_array().unwrap();
    for m in messages {
        let id = m["externalId"].as_str().unwrap();
        let index: usize = id
            .strip_prefix(&format!("{cid}:"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(m["createdAt"].as_i64(), Some(birth + index as i64), "{id}");
        assert_eq!(m["role"], raw[index]["role"], "{id}");
        let calls = m["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["type"] == "tool-call")
            .count();
        let uses = raw[index]["message"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .count();
        assert_eq!(calls, uses, "{id}: tool calls");
        assert!(
            !m["textContent"]
                .as_str()
                .unwrap_or("")
                .contains("<user_query>")
        );
    }
    assert_eq!(
        messages[0]["textContent"],
        "Generate a file with all the HBO shows from the 90's in it"
    );
    assert_eq!(v["session"]["title"], messages[0]["textContent"]);
    assert_eq!(v["session"]["createdAt"].as_i64(), Some(birth));
    assert!(v["session"].get("promptTokens").is_none() && v["session"].get("cost").is_none());
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn droid_totals_and_counts_match_an_independent_reading() {
    let Some(root) = dir() else { return };
    let want = expected_droid(&root);
    // The one real session (git-ai's fixture, an OpenAI BYOK model): input 6743 + cache
    // read 42496 + cache write 0; output 1450 already holds the 1088 thinking tokens (see
    // src/sources/droid.rs). ccusage reports the same four fields and adds thinking to its
    // total (51 777 = 50 689 + 1088) and to the output it prices.
    assert_eq!(
        want["052cb8d0-4616-488a-99fe-bfbbbe9429b3"],
        Expect {
            prompt: 6743 + 42_496,
            completion: 1450,
            messages: 11,
        }
    );
    check("factory-droid", want, &root);
    // Priced from `settings.model` (`custom:BYOK-GPT-5-MINI-0` is gpt-5-mini: 0.25 / 2 / 0.025
    // USD per million input / output / cache read). ccusage says 0.00782415: the same minus
    // the 1088 thinking tokens it adds to the output (1088 x 2 / 10^6 = 0.002176).
    let out = home_on(&root).ok(&["export", "--source", "factory-droid"]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let cost = v["session"]["cost"].as_f64().unwrap();
    let want_cost = (6743.0 * 0.25 + 42_496.0 * 0.025 + 1450.0 * 2.0) / 1e6;
    assert!((cost - want_cost).abs() < 1e-6, "{cost} vs {want_cost}");
    assert!((0.007_824_15 - 1088.0 * 2.0 / 1e6 - want_cost).abs() < 1e-9);
}

#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn every_real_payload_is_accepted_by_the_server() {
    let Some(root) = dir() else { return };
    let emu = Emulation::with_key(KEY);
    let home = home_on(&root);
    home.login(&emu.url(), KEY);
    let out = home.ok(&["sync"]);
    assert!(out.contains(", 0 rejected"), "{out}");
    let status: Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    assert_eq!(status["quarantined"], 0, "{status}");
    assert_server_matches_export(&home, &emu);
    // After a full sync, `status`, `sync --dry-run` and `sync` agree that no file is pending;
    // the updates held back for the server's dedup windows are counted alike by both, and the
    // next sync sends them. After that, a sync sends nothing.
    for s in status["sources"].as_array().unwrap() {
        assert_eq!(s["backlog_files"], 0, "{s}");
    }
    let dry: Value = serde_json::from_str(&home.ok(&["sync", "--dry-run", "--json"])).unwrap();
    assert_eq!(dry["files"], serde_json::json!([]), "{dry}");
    assert_eq!(dry["deferred_writes"], status["deferred_writes"], "{dry}");
    assert!(home.ok(&["sync"]).contains("Synced 0 file(s)"));
    let status: Value = serde_json::from_str(&home.status(&["--json"])).unwrap();
    assert_eq!(status["deferred_writes"], 0, "{status}");
    let requests = emu.request_count();
    assert!(home.ok(&["sync"]).contains("Synced 0 file(s)"));
    assert_eq!(
        emu.request_count(),
        requests,
        "a sync after everything was sent sent something"
    );
    let rejected: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.status >= 400)
        .collect();
    assert!(
        rejected.is_empty(),
        "the server refused: {:?}",
        rejected
            .iter()
            .map(|r| (&r.path, r.status))
            .collect::<Vec<_>>()
    );
}
