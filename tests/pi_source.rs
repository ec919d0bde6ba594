//! pi sessions: our own real-shaped fixtures (`tests/fixtures/pi`, described in its
//! `EXPECTED.md`, expected figures computed independently by `expected.py`), pi's v1→v3
//! rewrite (ids and totals survive it), forks (copied usage counted once), the
//! incremental == one-shot property, garbage input, and the daemon against the emulation.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use opensyncd::model::{SourceId, THINKING_MARKER, Tokens};
use opensyncd::pricing::{Pricing, band_of};
use opensyncd::sources::{LineParser, ParseOptions, Unit, line_parser};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::daemon::{KEY, append, assert_server_matches_export, hold, start, wait_converged};
use crate::home::{TestHome, copy_dir};
use crate::incremental::{self, Folded, copy_tree, cuts_for, one_shot, splits_strategy};
use crate::support::Emulation;
use opensyncd::fold::Mode;

const A: &str = "3f9c2a71-5b8e-4d20-9a61-0c7e4b2d8f13";
const B: &str = "c27e90d4-8a13-4b6f-9e25-71f3a0b84d59";
const C: &str = "8d41e6b0-27c3-4f95-b1a8-5e0d9c3f72a4";
const D: &str = "5a0f3c88-d1e2-47b9-a6c4-2b9e8d7f1035";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pi")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap()
}

fn jsonl(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "jsonl")
}

/// The fixture file of session `sid` (relative to the agent dir).
fn file_of(sid: &str) -> PathBuf {
    PathBuf::from(expected()[sid]["file"].as_str().unwrap())
}

/// A home whose `~/.pi/agent` is a copy of the fixture agent dir.
fn pi_home() -> TestHome {
    let home = TestHome::new();
    copy_dir(&fixture(), &agent_dir(&home));
    home
}

fn agent_dir(home: &TestHome) -> PathBuf {
    home.home.join(".pi/agent")
}

/// `opensyncd export --source pi`: (sessions by id, stderr).
fn export(home: &TestHome) -> (BTreeMap<String, Value>, String) {
    let out = home.run(&["export", "--source", "pi"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let sessions: BTreeMap<String, Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["session"]["externalId"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(
        sessions.len(),
        stdout.lines().count(),
        "a session exported twice"
    );
    (sessions, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn session_ids(want: &Value) -> HashSet<String> {
    want.as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .cloned()
        .collect()
}

fn tokens(v: &Value) -> Tokens {
    let n = |k: &str| v[k].as_u64().unwrap();
    Tokens {
        input: n("input"),
        cache_read: n("cache_read"),
        cache_write: n("cache_write"),
        output: n("output"),
        ..Tokens::default()
    }
}

/// The session cost expected.py implies: pi's own costs, plus the table's price for each call
/// pi recorded at $0, in the call's price band (the price table is another module's concern;
/// which usage it prices is this source's).
fn expected_cost(s: &Value) -> f64 {
    let pricing = Pricing::bundled();
    let table: f64 = s["priced_by_table"]
        .as_array()
        .unwrap()
        .iter()
        .map(|call| {
            let t = tokens(&call["tokens"]);
            let model = call["model"].as_str().unwrap();
            pricing.cost(model, band_of(t.prompt()), &t).unwrap_or(0.0)
        })
        .sum();
    s["tool_cost"].as_f64().unwrap() + table
}

fn assert_matches_expected(sessions: &BTreeMap<String, Value>, want: &Value) {
    let ids: HashSet<String> = sessions.keys().cloned().collect();
    assert_eq!(
        ids,
        session_ids(want),
        "notes.jsonl (no header) is not a session"
    );
    for (sid, got) in sessions {
        let s = &got["session"];
        let w = &want[sid];
        assert_eq!(s["source"], "pi");
        assert_eq!(
            s["promptTokens"].as_u64().unwrap_or(0),
            w["prompt_tokens"].as_u64().unwrap(),
            "{sid} promptTokens"
        );
        assert_eq!(
            s["completionTokens"].as_u64().unwrap_or(0),
            w["completion_tokens"].as_u64().unwrap(),
            "{sid} completionTokens"
        );
        let cost = s["cost"].as_f64().unwrap_or(0.0);
        assert!(
            (cost - expected_cost(w)).abs() < 2e-6,
            "{sid} cost {cost} vs {}",
            expected_cost(w)
        );
        assert_eq!(s["title"], w["title"], "{sid} title");
        assert_eq!(s["createdAt"], w["createdAt"], "{sid} createdAt");
        assert_eq!(s["durationMs"], w["duration_ms"], "{sid} durationMs");
        assert_eq!(s["projectPath"], w["project_path"], "{sid} projectPath");
        assert_eq!(s["model"], w["model"], "{sid} model");
        assert_eq!(s["provider"], w["provider"], "{sid} provider");

        let msgs = got["messages"].as_array().unwrap();
        let want_msgs = w["messages"].as_array().unwrap();
        let got_ids: Vec<&str> = msgs
            .iter()
            .map(|m| m["externalId"].as_str().unwrap())
            .collect();
        let want_ids: Vec<&str> = want_msgs
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(got_ids, want_ids, "{sid} message ids in order");
        for (m, e) in msgs.iter().zip(want_msgs) {
            let id = e["id"].as_str().unwrap();
            assert_eq!(m["role"], e["role"], "{id} role");
            assert_eq!(m["createdAt"], e["createdAt"], "{id} createdAt");
            assert_eq!(
                m["textContent"].as_str(),
                e["text"].as_str().filter(|t| !t.trim().is_empty()),
                "{id} text"
            );
            let kinds: Vec<&str> = m["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["type"].as_str().unwrap())
                .collect();
            let want_kinds: Vec<&str> = e["parts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            assert_eq!(kinds, want_kinds, "{id} parts");
            for p in m["parts"].as_array().unwrap() {
                match p["type"].as_str().unwrap() {
                    // `{result}`, or the bare value when it is falsy (`""`: see `Part::tool_result`).
                    "tool-result" => {
                        let shown = p["content"].get("result").unwrap_or(&p["content"]);
                        assert_eq!(shown, &e["result"], "{id}");
                    }
                    "tool-call" => assert!(p["content"]["name"].is_string(), "{id}"),
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn export_matches_the_independently_derived_figures() {
    let want = expected();
    let home = pi_home();
    let (sessions, stderr) = export(&home);
    assert_matches_expected(&sessions, &want);
    // D's torn line is skipped and counted; its partial last line waits.
    assert!(stderr.contains("skipped 1 malformed"), "{stderr}");

    // No message id twice across the tree (the fork C has its own ids for the copied turns).
    let mut seen = HashSet::new();
    for s in sessions.values() {
        for m in s["messages"].as_array().unwrap() {
            assert!(seen.insert(m["externalId"].as_str().unwrap().to_string()));
        }
    }
}

#[test]
fn pi_coding_agent_dir_and_pi_dirs_relocate_the_agent_dir() {
    let want = expected();
    // `~` in PI_CODING_AGENT_DIR is expanded, as pi's getAgentDir does.
    let home = TestHome::new().with_env("PI_CODING_AGENT_DIR", "~/elsewhere/agent");
    copy_dir(&fixture(), &home.home.join("elsewhere/agent"));
    let (sessions, _) = export(&home);
    assert_matches_expected(&sessions, &want);

    // `pi_dirs` in the config beats the variable.
    let home = TestHome::new()
        .with_env("PI_CODING_AGENT_DIR", "/nonexistent")
        .with_env("OPENSYNCD_PI_DIRS", "~/third/agent");
    copy_dir(&fixture(), &home.home.join("third/agent"));
    let (sessions, _) = export(&home);
    assert_matches_expected(&sessions, &want);
}

#[test]
fn thinking_is_opt_in_and_tool_messages_follow_sync_tool_calls() {
    let home = pi_home();
    let (plain, _) = export(&home);
    let parts = |sessions: &BTreeMap<String, Value>| -> Vec<String> {
        sessions
            .values()
            .flat_map(|s| s["messages"].as_array().unwrap().clone())
            .flat_map(|m| m["parts"].as_array().unwrap().clone())
            .map(|p| p["type"].as_str().unwrap().to_string())
            .collect()
    };
    let is_thinking = |p: &Value| {
        p["type"] == "text"
            && p["content"]
                .as_str()
                .is_some_and(|t| t.starts_with(THINKING_MARKER))
    };
    let thinking_parts = |sessions: &BTreeMap<String, Value>| -> usize {
        sessions
            .values()
            .flat_map(|s| s["messages"].as_array().unwrap().clone())
            .flat_map(|m| m["parts"].as_array().unwrap().clone())
            .filter(|p| is_thinking(p))
            .count()
    };
    assert_eq!(thinking_parts(&plain), 0, "thinking is off by default");

    let home = pi_home().with_env("OPENSYNCD_SYNC_THINKING", "true");
    let (thinking, _) = export(&home);
    let a = thinking[A]["messages"].as_array().unwrap();
    let thoughts = |id: &str| -> Vec<Value> {
        a.iter()
            .find(|m| m["externalId"] == format!("{A}-{id}"))
            .unwrap()["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| is_thinking(p))
            .cloned()
            .collect()
    };
    assert_eq!(
        thoughts("assistant-4"),
        vec![
            json!({"type": "text", "content": format!("{THINKING_MARKER}\nThe user wants the 401 handling. Read push.rs first.")})
        ]
    );
    assert!(
        thoughts("assistant-11").is_empty(),
        "redacted thinking is never sent"
    );
    // Thinking blocks: A has two (the second redacted), C its copy of A's first, B one, F two.
    assert_eq!(thinking_parts(&thinking), 5);

    let home = pi_home().with_env("OPENSYNCD_SYNC_TOOL_CALLS", "false");
    let (quiet, _) = export(&home);
    let kinds = parts(&quiet);
    assert!(!kinds.iter().any(|k| k.starts_with("tool-")), "{kinds:?}");
    for s in quiet.values() {
        for m in s["messages"].as_array().unwrap() {
            assert_ne!(m["role"], "tool");
        }
    }
    // Turning tool calls off changes no id and no total.
    for (sid, s) in &quiet {
        assert_eq!(s["session"], plain[sid]["session"]);
    }
}

#[test]
fn a_partial_last_line_is_read_once_it_is_complete() {
    let home = pi_home();
    let d_path = agent_dir(&home).join(file_of(D));
    let (before, _) = export(&home);
    // Complete D's last line (the generator cut it at 97 bytes) and add the newline.
    let text = String::from_utf8_lossy(&std::fs::read(&d_path).unwrap()).into_owned();
    let partial = &text[text.rfind('\n').unwrap() + 1..];
    let full = json!({"type":"message","timestamp":"2025-12-25T20:48:00.000Z","message":{"role":"assistant","content":[{"type":"text","text":"Also updating the README to say delta"}],"api":"anthropic-messages","provider":"anthropic","model":"claude-haiku-4-5","usage":{"input":2,"output":77,"cacheRead":6530,"cacheWrite":95,"totalTokens":6704,"cost":{"input":0.000002,"output":0.000385,"cacheRead":0.000653,"cacheWrite":0.00011875,"total":0.00115875}},"stopReason":"stop","timestamp":1766695677000u64}}).to_string();
    let mut bytes = std::fs::read(&d_path).unwrap();
    bytes.truncate(bytes.len() - partial.len());
    bytes.extend_from_slice(full.as_bytes());
    bytes.push(b'\n');
    std::fs::write(&d_path, bytes).unwrap();
    let (after, _) = export(&home);
    let n = |v: &Value, k: &str| v["session"][k].as_u64().unwrap();
    assert_eq!(
        n(&after[D], "promptTokens"),
        n(&before[D], "promptTokens") + 2 + 6530 + 95
    );
    assert_eq!(
        n(&after[D], "completionTokens"),
        n(&before[D], "completionTokens") + 77
    );
    let last = after[D]["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["externalId"], format!("{D}-assistant-6"));
}

#[test]
fn a_misplaced_root_file_and_its_moved_copy_count_once() {
    // pi ≥ 0.30.2 moves `<agent dir>/*.jsonl` into `sessions/<cwd dir>/`; a reader may see
    // both paths for a moment. Same session id, same order-derived ids and usage keys.
    let home = pi_home();
    let (before, _) = export(&home);
    let root_file = agent_dir(&home).join(file_of(D));
    let moved_dir = agent_dir(&home).join("sessions/--home-dev-gamma--");
    std::fs::copy(&root_file, moved_dir.join(root_file.file_name().unwrap())).unwrap();
    let (after, _) = export(&home);
    assert_eq!(after[D]["session"], before[D]["session"]);
    assert_eq!(after[D]["messages"], before[D]["messages"]);
}

// ------------------------------------------------------------------------------------------
// pi's v1 → v3 rewrite

/// A small deterministic generator for the "random" ids pi's migration assigns.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn hex8(&mut self) -> String {
        format!("{:08x}", self.next() as u32)
    }
}

/// Rewrites a session file the way pi's `setSessionFile` does when it opens a v1/v2 file
/// (session-manager.ts `loadEntriesFromFile`, `migrateV1ToV2`, `migrateV2ToV3`,
/// `_rewriteFile`): lines that do not parse (and a partial last line) are dropped, every v1
/// entry gets a new random 8-hex `id` and `parentId` = the previous entry's, v1 compaction's
/// `firstKeptEntryIndex` becomes `firstKeptEntryId`, role `hookMessage` becomes `custom`, the
/// header gets `version: 3`, and the whole file is written again.
fn migrate_like_pi(bytes: &[u8], seed: u64) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut entries: Vec<Value> = text
        .trim()
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let version = entries[0]["version"].as_u64().unwrap_or(1);
    let mut rng = XorShift(seed | 1);
    if version < 2 {
        let mut used = HashSet::new();
        let mut prev = Value::Null;
        for i in 0..entries.len() {
            if entries[i]["type"] == "session" {
                entries[i]["version"] = json!(2);
                continue;
            }
            let id = loop {
                let id = rng.hex8();
                if used.insert(id.clone()) {
                    break id;
                }
            };
            entries[i]["id"] = json!(id);
            entries[i]["parentId"] = prev.clone();
            prev = json!(id);
            if entries[i]["type"] == "compaction"
                && let Some(index) = entries[i]["firstKeptEntryIndex"].as_u64()
            {
                let target = entries[index as usize]["id"].clone();
                let obj = entries[i].as_object_mut().unwrap();
                obj.remove("firstKeptEntryIndex");
                obj.insert("firstKeptEntryId".into(), target);
            }
        }
    }
    for e in &mut entries {
        if e["type"] == "session" {
            e["version"] = json!(3);
        } else if e["type"] == "message" && e["message"]["role"] == "hookMessage" {
            e["message"]["role"] = json!("custom");
        }
    }
    let mut out: String = entries
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    out.push('\n');
    out
}

/// Every pi session file of a copied fixture tree (`notes.jsonl` excluded).
fn session_files(files: &[PathBuf]) -> Vec<PathBuf> {
    files
        .iter()
        .filter(|f| f.file_name().unwrap() != "notes.jsonl")
        .cloned()
        .collect()
}

/// Reads `path` from the start with a fresh parser (what the engine does when a file's head
/// changed) and folds the records into `folded` as a read of the unit `path` in `mode`.
fn read_from_start(path: &Path, folded: &mut Folded, mode: Mode) {
    let mut parser: Box<dyn LineParser> = line_parser(
        &Unit::lines(SourceId::Pi, path.to_path_buf()),
        None,
        ParseOptions::default(),
    )
    .unwrap();
    let text = std::fs::read(path).unwrap();
    let complete = &text[..text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)];
    let mut records = Vec::new();
    for line in complete.split(|b| *b == b'\n') {
        let _ = parser.parse_line(line, &mut records);
    }
    folded.apply_unit(SourceId::Pi, &path.display().to_string(), mode, records);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Whatever random ids pi picks, the v3 file yields the v1 file's ids and totals, and
    /// reading it again after having read the v1 file adds nothing — whether the reader
    /// notices the rewrite (the engine's `Reset`: the unit's earlier contribution is replaced)
    /// or not (a plain second `Append`: the same usage keys and message ids again).
    #[test]
    fn the_v1_to_v3_rewrite_keeps_every_id_and_total(seed in any::<u64>()) {
        let (_dir, files) = copy_tree(&fixture(), &jsonl);
        let files = session_files(&files);
        let before = one_shot(SourceId::Pi, &files, ParseOptions::default());

        let mut reset = Folded::in_ledger();
        let mut appended = Folded::in_ledger();
        for f in &files {
            read_from_start(f, &mut reset, Mode::Append);
            read_from_start(f, &mut appended, Mode::Append);
        }
        let mut rewritten = 0;
        for (i, f) in files.iter().enumerate() {
            let bytes = std::fs::read(f).unwrap();
            let header: Value = serde_json::from_slice(bytes.split(|b| *b == b'\n').next().unwrap()).unwrap();
            if header["version"].as_u64().unwrap_or(1) < 3 {
                std::fs::write(f, migrate_like_pi(&bytes, seed.wrapping_add(i as u64))).unwrap();
                rewritten += 1;
                read_from_start(f, &mut reset, Mode::Reset);
                read_from_start(f, &mut appended, Mode::Append);
            }
        }
        prop_assert_eq!(rewritten, 4, "A, B, C and D are v1/v2");
        let after = one_shot(SourceId::Pi, &files, ParseOptions::default());
        prop_assert_eq!(&after.sessions, &before.sessions);
        prop_assert_eq!(&reset.finish(SourceId::Pi, 0, 0).sessions, &before.sessions);
        prop_assert_eq!(&appended.finish(SourceId::Pi, 0, 0).sessions, &before.sessions);
    }
}

#[test]
fn the_rewritten_file_really_has_new_ids_and_a_v3_header() {
    let a = std::fs::read(fixture().join(file_of(A))).unwrap();
    let migrated = migrate_like_pi(&a, 7);
    let lines: Vec<Value> = migrated
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["version"], 3);
    assert!(lines[0].get("parentId").is_none());
    assert_eq!(lines[1]["parentId"], Value::Null);
    for pair in lines[1..].windows(2) {
        assert_eq!(pair[1]["parentId"], pair[0]["id"]);
        assert_eq!(pair[1]["id"].as_str().unwrap().len(), 8);
    }
    let compaction = lines.iter().find(|l| l["type"] == "compaction").unwrap();
    assert!(compaction.get("firstKeptEntryIndex").is_none());
    assert_eq!(compaction["firstKeptEntryId"], lines[13]["id"]);
}

// ------------------------------------------------------------------------------------------
// Forks

#[test]
fn a_fork_bills_copied_usage_to_its_parent_and_counts_it_when_the_parent_is_gone() {
    let want = expected();
    let home = pi_home();
    let (sessions, _) = export(&home);
    let prompt = |s: &BTreeMap<String, Value>, sid: &str| {
        s[sid]["session"]["promptTokens"].as_u64().unwrap_or(0)
    };
    // The tree's total is every assistant usage once: C's copies of A's turns are A's.
    let tree: u64 = sessions.keys().map(|sid| prompt(&sessions, sid)).sum();
    let t = tokens(&want["_tree"]["tokens"]);
    assert_eq!(tree, t.prompt());
    let twice = tokens(&want["_tree"]["tokens_counting_copies_twice"]);
    assert!(
        twice.prompt() > t.prompt(),
        "the fixture has copies to count"
    );
    assert!(
        want[C]["copied_entries"].as_u64().unwrap() > 0,
        "C copies A's entries"
    );
    // The fork starts at its own header, not at the copied entries' times.
    assert_eq!(
        sessions[C]["session"]["createdAt"].as_i64().unwrap(),
        opensyncd::model::parse_timestamp_ms("2025-11-28T09:31:17.442Z").unwrap()
    );

    // Without the parent, the fork is the only record of that usage: it counts it.
    std::fs::remove_file(agent_dir(&home).join(file_of(A))).unwrap();
    let (alone, _) = export(&home);
    let with_copies = tokens(&want[C]["tokens_including_copied"]);
    assert_eq!(prompt(&alone, C), with_copies.prompt());
    assert_eq!(
        alone[C]["session"]["completionTokens"].as_u64().unwrap(),
        with_copies.output
    );
    // The messages and their ids are the same either way.
    assert_eq!(alone[C]["messages"], sessions[C]["messages"]);
}

#[test]
fn a_v3_branched_session_of_a_migrated_parent_counts_copied_usage_once() {
    // The modern path: A is opened (rewritten as v3), then `/fork` (createBranchedSession)
    // writes a new file with A's entries up to the fork point, ids and all, and a header
    // naming A; new turns follow.
    let home = pi_home();
    let agent = agent_dir(&home);
    let a_path = agent.join(file_of(A));
    let a_v3 = migrate_like_pi(&std::fs::read(&a_path).unwrap(), 99);
    std::fs::write(&a_path, &a_v3).unwrap();
    let a_entries: Vec<Value> = a_v3
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fork_id = "0f0f0f0f-1111-4222-8333-444455556666";
    let header = json!({"type":"session","version":3,"id":fork_id,"timestamp":"2025-11-28T10:00:00.000Z","cwd":"/home/dev/alpha","parentSession":format!("/home/dev/.pi/agent/{}", file_of(A).display())});
    let mut lines = vec![header.to_string()];
    // Path to A's 11th entry (the answer to the second prompt).
    lines.extend(a_entries[1..=10].iter().map(Value::to_string));
    let last_id = a_entries[10]["id"].clone();
    let own = json!({"type":"message","id":"aa11bb22","parentId":last_id,"timestamp":"2025-11-28T10:00:09.000Z","message":{"role":"user","content":"and the 403 case?","timestamp":1764324008990u64}});
    let answer = json!({"type":"message","id":"bb22cc33","parentId":"aa11bb22","timestamp":"2025-11-28T10:00:15.000Z","message":{"role":"assistant","content":[{"type":"text","text":"403 is a wrong URL: it pauses too."}],"api":"anthropic-messages","provider":"anthropic","model":"claude-sonnet-4-5","usage":{"input":2,"output":40,"cacheRead":16000,"cacheWrite":300,"totalTokens":16342,"cost":{"input":0.000006,"output":0.0006,"cacheRead":0.0048,"cacheWrite":0.001125,"total":0.006531}},"stopReason":"stop","timestamp":1764324009000u64}});
    lines.push(own.to_string());
    lines.push(answer.to_string());
    let fork_path = agent.join(format!(
        "sessions/--home-dev-alpha--/2025-11-28T10-00-00-000Z_{fork_id}.jsonl"
    ));
    std::fs::write(&fork_path, lines.join("\n") + "\n").unwrap();

    let (sessions, _) = export(&home);
    let fork = &sessions[fork_id];
    assert_eq!(fork["session"]["promptTokens"], 2 + 16000 + 300);
    assert_eq!(fork["session"]["completionTokens"], 40);
    assert!((fork["session"]["cost"].as_f64().unwrap() - 0.006531).abs() < 1e-9);
    assert_eq!(
        fork["session"]["title"],
        "[Fork::3f9c2a71] look at src/push.rs and tell me why the retry loop gives up after a single 401..."
    );
    // pi-opensync's ids for the fork: the branch counted from its root.
    let ids: Vec<&str> = fork["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&format!("{fork_id}-user-1").as_str()));
    assert_eq!(ids.last(), Some(&format!("{fork_id}-assistant-8").as_str()));
    // A itself is unchanged by having been rewritten and forked.
    let want = expected();
    assert_eq!(
        sessions[A]["session"]["promptTokens"],
        want[A]["prompt_tokens"]
    );
}

// ------------------------------------------------------------------------------------------
// Incremental == one-shot, garbage

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_appends_yields_the_one_shot_payloads(
        (fractions, budget) in splits_strategy(7)
    ) {
        let (_dir, files) = copy_tree(&fixture(), &jsonl);
        prop_assert_eq!(files.len(), 7);
        let opts = ParseOptions::default();
        let reference = one_shot(SourceId::Pi, &files, opts);
        prop_assert_eq!(reference.sessions.len(), 6);
        let cuts = cuts_for(&files, &fractions);
        let stepped = incremental::run(SourceId::Pi, &files, &cuts, budget, 64 << 20, opts);
        prop_assert_eq!(stepped, reference);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn garbage_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"type\":\"(session|message|model_change|session_info|compaction)\",\"id\":(\"s\"|1|null),\"timestamp\":(\"2026-01-01T00:00:00Z\"|\"x\"|5),\"parentSession\":(\"/x/y_zzzzzzzzzz.jsonl\"|1),\"message\":\\{\"role\":\"(user|assistant|toolResult|bashExecution|custom)\",\"content\":(\"x\"|\\[\\]|null|1|\\[\\{\"type\":\"(text|toolCall|thinking|image)\"\\}\\]),\"usage\":(null|\\{\"input\":(1|-1|1e300|\"x\"),\"cost\":\\{\"total\":(1|-1|1e308|null)\\}\\}),\"timestamp\":(1|-1|1e300|\"x\")\\}\\}"
                .prop_map(String::into_bytes),
        ],
        1..20,
    )) {
        let path = Path::new("/nonexistent/sessions/--x--/2026-01-01T00-00-00-000Z_0b6f0a57-0000-4000-8000-000000000001.jsonl");
        let mut parser = line_parser(&Unit::lines(SourceId::Pi, path.to_path_buf()), None, ParseOptions::default()).unwrap();
        let mut out = Vec::new();
        for l in &lines {
            let _ = parser.parse_line(l, &mut out);
        }
        let state = parser.save_state();
        prop_assert!(line_parser(&Unit::lines(SourceId::Pi, path.to_path_buf()), Some(&state), ParseOptions::default()).is_ok());
        crate::incremental::Folded::default().apply(SourceId::Pi, out);
    }
}

#[test]
fn a_file_that_is_not_a_pi_session_yields_nothing_and_one_error() {
    let path = fixture().join("notes.jsonl");
    let mut parser = line_parser(
        &Unit::lines(SourceId::Pi, path.clone()),
        None,
        ParseOptions::default(),
    )
    .unwrap();
    let mut out = Vec::new();
    let results: Vec<bool> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| parser.parse_line(l.as_bytes(), &mut out).is_ok())
        .collect();
    assert_eq!(
        results,
        vec![false, true],
        "one error for the header, then quiet"
    );
    assert!(out.is_empty(), "{out:?}");
}

// ------------------------------------------------------------------------------------------
// The daemon against the emulation

#[test]
fn daemon_backfills_the_fixtures_and_live_appends_each_message_once() {
    let emu = Emulation::with_key(KEY);
    let home = pi_home();
    let _d = start(&home, &emu);
    wait_converged(&home, &emu, Duration::from_secs(90));

    // Live: pi appends one entry per line as a session goes on.
    let b_path = agent_dir(&home).join(file_of(B));
    let user = json!({"type":"message","id":"77aa88bb","parentId":"3d4e5f60","timestamp":"2026-01-03T14:09:00.000Z","message":{"role":"user","content":"also write a test","timestamp":1767449339990u64}});
    append(&b_path, &format!("{user}\n"));
    let answer = json!({"type":"message","id":"88bb99cc","parentId":"77aa88bb","timestamp":"2026-01-03T14:09:09.000Z","message":{"role":"assistant","content":[{"type":"text","text":"Added test_export.py."}],"api":"anthropic-messages","provider":"anthropic","model":"claude-opus-4-5","usage":{"input":3,"output":120,"cacheRead":12000,"cacheWrite":800,"totalTokens":12923,"cost":{"input":0.000015,"output":0.003,"cacheRead":0.006,"cacheWrite":0.005,"total":0.014015}},"stopReason":"stop","timestamp":1767449340000u64}});
    append(&b_path, &format!("{answer}\n"));
    wait_converged(&home, &emu, Duration::from_secs(60));
    let msgs = emu.messages_of_session(emu.default_user(), B);
    assert!(
        msgs.iter()
            .any(|m| m.external_id == format!("{B}-assistant-9"))
    );

    // A new session in a new cwd dir, written as pi writes it: nothing until the first
    // assistant message, then the header and the buffered entries one append each.
    let new_sid = "6e1d0c2b-3a49-4f57-8e6d-5c4b3a291807";
    let dir = agent_dir(&home).join("sessions/--home-dev-delta--");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("2026-03-01T08-00-00-000Z_{new_sid}.jsonl"));
    let lines = [
        json!({"type":"session","version":3,"id":new_sid,"timestamp":"2026-03-01T08:00:00.000Z","cwd":"/home/dev/delta"}),
        json!({"type":"model_change","id":"10000001","parentId":null,"timestamp":"2026-03-01T08:00:00.100Z","provider":"anthropic","modelId":"claude-haiku-4-5"}),
        json!({"type":"message","id":"10000002","parentId":"10000001","timestamp":"2026-03-01T08:00:05.000Z","message":{"role":"user","content":"list the crates","timestamp":1772352004990u64}}),
        json!({"type":"message","id":"10000003","parentId":"10000002","timestamp":"2026-03-01T08:00:07.000Z","message":{"role":"assistant","content":[{"type":"toolCall","id":"toolu_x","name":"bash","arguments":{"command":"ls crates"}}],"api":"anthropic-messages","provider":"anthropic","model":"claude-haiku-4-5","usage":{"input":4,"output":30,"cacheRead":0,"cacheWrite":5000,"totalTokens":5034,"cost":{"input":0.000004,"output":0.00015,"cacheRead":0,"cacheWrite":0.00625,"total":0.006404}},"stopReason":"toolUse","timestamp":1772352005000u64}}),
    ];
    for line in &lines {
        append(&path, &format!("{line}\n"));
    }
    let result = json!({"type":"message","id":"10000004","parentId":"10000003","timestamp":"2026-03-01T08:00:07.100Z","message":{"role":"toolResult","toolCallId":"toolu_x","toolName":"bash","content":[{"type":"text","text":"core\ncli\n"}],"isError":false,"timestamp":1772352007050u64}});
    append(&path, &format!("{result}\n"));
    wait_converged(&home, &emu, Duration::from_secs(60));
    let msgs = emu.messages_of_session(emu.default_user(), new_sid);
    let ids: Vec<&str> = msgs.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let session = emu
        .sessions(emu.default_user())
        .into_iter()
        .find(|s| s.external_id == new_sid)
        .unwrap();
    assert_eq!(session.prompt_tokens, 5004);
}

#[test]
fn kill_9_during_pi_rewriting_v1_files_as_v3_duplicates_nothing() {
    let emu = Emulation::with_key(KEY);
    let home = pi_home();
    home.login(&emu.url(), KEY);
    let agent = agent_dir(&home);
    let targets: Vec<PathBuf> = [A, B, C, D]
        .iter()
        .map(|sid| agent.join(file_of(sid)))
        .collect();
    let mut seed: u64 = 0x91_5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let originals: Vec<Vec<u8>> = targets.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let mut log = String::new();
    // Two rounds per file: to hit more moments, a file already rewritten is put back to its
    // v1/v2 bytes (itself a rewrite the reader must take) before pi rewrites it again.
    for round in 0..8 {
        let i = round % targets.len();
        let path = &targets[i];
        let mut d = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "50")]);
        if round >= targets.len() {
            std::fs::write(path, &originals[i]).unwrap();
        }
        // Let the daemon get going, then rewrite as pi does: truncate and write the whole
        // file, here in two writes with a pause, so a read can land in between.
        hold(Duration::from_millis(next() % 600));
        let migrated = migrate_like_pi(&originals[i], next());
        let (head, tail) = migrated.split_at(migrated.len() / 2);
        std::fs::write(path, head).unwrap();
        hold(Duration::from_millis(next() % 80));
        append(path, tail);
        // Kill at a random moment around the rewrite.
        hold(Duration::from_millis(next() % 300));
        log = d.log_text();
        d.kill9();
    }
    assert!(
        log.contains("truncated or replaced"),
        "no rewrite was noticed by a daemon; log:\n{log}"
    );
    let _d = home.spawn_daemon(&[("OPENSYNCD_DEBOUNCE_MS", "50")]);
    wait_converged(&home, &emu, Duration::from_secs(90));
    assert_server_matches_export(&home, &emu);
    // The server holds the figures of the files before the rewrite.
    let want = expected();
    let user = emu.default_user();
    for s in emu.sessions(user) {
        assert_eq!(
            s.prompt_tokens,
            want[&s.external_id]["prompt_tokens"].as_u64().unwrap(),
            "{}",
            s.external_id
        );
        let ids: Vec<String> = emu
            .messages_of_session(user, &s.external_id)
            .iter()
            .map(|m| m.external_id.clone())
            .collect();
        assert_eq!(
            ids.len(),
            want[&s.external_id]["messages"].as_array().unwrap().len(),
            "{}",
            s.external_id
        );
    }
}
