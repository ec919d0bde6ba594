//! Claude Code transcripts: our own real-shaped fixtures (`tests/fixtures/claude`, described in
//! its `EXPECTED.md`, expected figures computed independently by `expected.py`), the
//! incremental == one-shot property, huge lines, thinking opt-in, and garbage input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use opensyncd::model::SourceId;
use opensyncd::sources::{ParseOptions, Unit, line_parser};
use proptest::prelude::*;
use serde_json::Value;

use crate::home::TestHome;
use crate::incremental::{self, copy_tree, cuts_for, one_shot, splits_strategy};

const A: &str = "7c1e4a92-3b5d-4f08-a6e2-91d4c8b3f5a7";
const C: &str = "e5a9d3c7-21f4-4b8e-9d06-7a3c5e1b8f24";
const D: &str = "4d8b2f6a-9e17-4c35-b2a8-63f1e0c9d7b5";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/claude")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap()
}

fn jsonl(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "jsonl")
}

/// `opensyncd export` over a copy of the fixture tree: (sessions by id, stderr).
fn export(extra: &[(&str, &str)]) -> (Vec<Value>, String) {
    let home = TestHome::new();
    let claude = home.home.join(".claude");
    crate::home::copy_dir(&fixture(), &claude);
    let mut home = home;
    for (k, v) in extra {
        home = home.with_env(k, v);
    }
    let out = home.run(&["export", "--source", "claude-code"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (sessions, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn export_totals_match_the_independently_derived_figures() {
    let want = expected();
    let (sessions, stderr) = export(&[]);
    let ids: HashSet<&str> = sessions
        .iter()
        .map(|s| s["session"]["externalId"].as_str().unwrap())
        .collect();
    let want_ids: HashSet<&str> = want
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_') && *k != "global")
        .map(String::as_str)
        .collect();
    assert_eq!(ids, want_ids, "subagent files fold into their parents");
    for s in &sessions {
        let sid = s["session"]["externalId"].as_str().unwrap();
        let t = &want[sid]["tokens"];
        let n = |k: &str| t[k].as_u64().unwrap();
        assert_eq!(
            s["session"]["promptTokens"].as_u64().unwrap_or(0),
            n("input") + n("cache_creation") + n("cache_read"),
            "{sid} prompt tokens"
        );
        assert_eq!(
            s["session"]["completionTokens"].as_u64().unwrap_or(0),
            n("output"),
            "{sid} completion tokens"
        );
        let cwd = want[sid]["cwd"][0].as_str().unwrap();
        assert_eq!(s["session"]["projectPath"], cwd);
        assert!(s["session"]["cost"].as_f64().unwrap() > 0.0, "{sid} priced");
        let title = s["session"]["title"].as_str().unwrap_or("");
        assert!(
            !title.is_empty() && !title.contains("<command"),
            "{sid}: {title}"
        );
    }
    // The malformed line in D is skipped and counted; its partial last line waits.
    assert!(stderr.contains("skipped 1 malformed"), "{stderr}");

    // No message id twice, and the resumed session C re-sends none of A's replayed lines.
    let mut seen = HashSet::new();
    for s in &sessions {
        for m in s["messages"].as_array().unwrap() {
            let id = m["externalId"].as_str().unwrap();
            assert!(seen.insert(id.to_string()), "duplicate message id {id}");
        }
    }
    let a_file = fixture().join(format!("projects/-home-dev-alpha/{A}.jsonl"));
    let a_uuids: HashSet<String> = std::fs::read_to_string(a_file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<Value>(l).ok()?["uuid"]
                .as_str()
                .map(String::from)
        })
        .collect();
    let c = sessions
        .iter()
        .find(|s| s["session"]["externalId"] == C)
        .unwrap();
    for m in c["messages"].as_array().unwrap() {
        assert!(!a_uuids.contains(m["externalId"].as_str().unwrap()));
    }
}

#[test]
fn message_kinds_are_mapped_deliberately() {
    let (sessions, _) = export(&[]);
    let a = sessions
        .iter()
        .find(|s| s["session"]["externalId"] == A)
        .unwrap();
    let messages = a["messages"].as_array().unwrap();
    let kinds: Vec<&str> = messages
        .iter()
        .flat_map(|m| m["parts"].as_array().unwrap())
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"tool-call") && kinds.contains(&"tool-result"));
    assert!(
        !kinds.contains(&"reasoning"),
        "no part the dashboard cannot draw"
    );
    for m in messages {
        for p in m["parts"].as_array().unwrap() {
            if p["type"] == "tool-call" {
                assert!(p["content"]["name"].is_string() && p["content"].get("args").is_some());
            }
        }
        let text = m["textContent"].as_str().unwrap_or("");
        assert!(
            !text.contains("No response requested"),
            "synthetic line sent"
        );
    }
    // The first real prompt titles the session; isMeta / command lines are not prompts.
    let (thinking, _) = export(&[("OPENSYNCD_SYNC_THINKING", "true")]);
    let a = thinking
        .iter()
        .find(|s| s["session"]["externalId"] == A)
        .unwrap();
    assert!(
        a["messages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|m| m["parts"].as_array().unwrap())
            .any(|p| p["type"] == "text"
                && p["content"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("[thinking]\n"))),
        "sync_thinking sends thinking, as a marked text part the dashboard draws"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_appends_yields_the_one_shot_payloads(
        (fractions, budget) in splits_strategy(7)
    ) {
        let (_dir, files) = copy_tree(&fixture().join("projects"), &jsonl);
        prop_assert_eq!(files.len(), 7);
        let opts = ParseOptions::default();
        let reference = one_shot(SourceId::ClaudeCode, &files, opts);
        let cuts = cuts_for(&files, &fractions);
        let stepped = incremental::run(SourceId::ClaudeCode, &files, &cuts, budget, 64 << 20, opts);
        prop_assert_eq!(stepped, reference);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn garbage_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"type\":\"(user|assistant|system|summary)\",\"message\":\\{\"content\":(\"x\"|\\[\\]|null|1|\\[\\{\"type\":\"(text|tool_use|tool_result|thinking)\"\\}\\])\\}\\}"
                .prop_map(String::into_bytes),
        ],
        1..20,
    )) {
        let path = Path::new("/nonexistent/-home-x/0b6f0a57-0000-4000-8000-000000000001.jsonl");
        let mut parser = line_parser(&Unit::lines(SourceId::ClaudeCode, path.to_path_buf()), None, ParseOptions::default()).unwrap();
        let mut out = Vec::new();
        for l in &lines {
            let _ = parser.parse_line(l, &mut out);
        }
        let state = parser.save_state();
        prop_assert!(line_parser(&Unit::lines(SourceId::ClaudeCode, path.to_path_buf()), Some(&state), ParseOptions::default()).is_ok());
    }
}

#[test]
fn a_20_mb_line_is_capped_when_sent_and_skipped_past_the_line_cap() {
    let (dir, _) = copy_tree(&fixture().join("projects/-home-dev-gamma"), &jsonl);
    let path = dir.path().join(format!("{D}.jsonl"));
    // Keep D's complete lines, then add a 20 MB prompt and one normal line after it.
    let text = std::fs::read_to_string(&path).unwrap();
    let complete = &text[..text.rfind('\n').unwrap() + 1];
    let huge = serde_json::json!({
        "type": "user", "sessionId": D, "uuid": "00000000-0000-4000-8000-0000000020mb",
        "timestamp": "2026-03-01T10:00:00.000Z", "cwd": "/home/dev/gamma",
        "message": {"role": "user", "content": "y".repeat(20 * 1024 * 1024)}
    });
    let after = serde_json::json!({
        "type": "user", "sessionId": D, "uuid": "00000000-0000-4000-8000-000000000after",
        "timestamp": "2026-03-01T10:00:01.000Z", "cwd": "/home/dev/gamma",
        "message": {"role": "user", "content": "the line after the huge one"}
    });
    std::fs::write(&path, format!("{complete}{huge}\n{after}\n")).unwrap();
    let files = vec![path];

    // Under the default 64 MiB line cap: parsed; the planner caps what is sent.
    let read = one_shot(SourceId::ClaudeCode, &files, ParseOptions::default());
    let (_, msgs) = &read.sessions[D];
    assert!(msgs.iter().any(|m| m.external_id.ends_with("20mb")));
    assert!(msgs.iter().any(|m| m.external_id.ends_with("after")));
    let home = TestHome::new();
    crate::home::copy_dir(
        dir.path(),
        &home.home.join(".claude/projects/-home-dev-gamma"),
    );
    let out = home.ok(&["export", "--session", D]);
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let big = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["externalId"].as_str().unwrap().ends_with("20mb"))
        .unwrap();
    let sent = big["textContent"].as_str().unwrap();
    assert!(sent.len() < 300 * 1024, "capped to max_part_bytes");
    assert!(sent.contains("[truncated by opensyncd"), "visible marker");

    // Under a 1 MiB line cap: skipped and counted, and the next line still arrives.
    let capped = incremental::run(
        SourceId::ClaudeCode,
        &files,
        &[vec![complete.len() + 4096]],
        64 * 1024,
        1024 * 1024,
        ParseOptions::default(),
    );
    assert_eq!(capped.skipped_long, 1);
    let (_, msgs) = &capped.sessions[D];
    assert!(!msgs.iter().any(|m| m.external_id.ends_with("20mb")));
    assert!(msgs.iter().any(|m| m.external_id.ends_with("after")));
}
