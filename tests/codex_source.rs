//! Codex CLI rollouts: our own real-shaped fixtures of every vintage (`tests/fixtures/codex`,
//! described in its `EXPECTED.md`, expected figures computed independently by
//! `expected.py`), the incremental == one-shot property, and garbage input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use opensyncd::model::SourceId;
use opensyncd::sources::{ParseOptions, Unit, line_parser};
use proptest::prelude::*;
use serde_json::Value;

use crate::home::TestHome;
use crate::incremental::{self, copy_tree, cuts_for, one_shot, splits_strategy};

const BROKEN: &str = "019cf270-bb4f-7d0d-8840-06a10358c2d6";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/codex")
}

fn expected() -> Value {
    let v: Value =
        serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap();
    v["sessions"].clone()
}

fn export() -> (Vec<Value>, String) {
    let home = TestHome::new();
    crate::home::copy_dir(&fixture(), &home.codex_home());
    let out = home.run(&["export", "--source", "codex-cli"]);
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
fn every_vintage_exports_the_independently_derived_figures() {
    let want = expected();
    let (sessions, stderr) = export();
    let got: HashSet<&str> = sessions
        .iter()
        .map(|s| s["session"]["externalId"].as_str().unwrap())
        .collect();
    let want_ids: HashSet<&str> = want
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(got, want_ids, "one session per rollout, every vintage");
    let mut failures = Vec::new();
    for s in &sessions {
        let sid = s["session"]["externalId"].as_str().unwrap();
        let w = &want[sid];
        let t = &w["tokens"];
        let session = &s["session"];
        let mut check = |what: &str, got: Value, want: Value| {
            if got != want {
                failures.push(format!(
                    "{sid} ({}): {what}: got {got}, want {want}",
                    w["vintage"]
                ));
            }
        };
        check(
            "promptTokens",
            session["promptTokens"].as_u64().unwrap_or(0).into(),
            t["input"].as_u64().unwrap_or(0).into(),
        );
        check(
            "completionTokens",
            session["completionTokens"].as_u64().unwrap_or(0).into(),
            t["output"].as_u64().unwrap_or(0).into(),
        );
        if !w["last_model"].is_null() {
            check("model", session["model"].clone(), w["last_model"].clone());
        }
        if !w["cwd"].is_null() {
            check(
                "projectPath",
                session["projectPath"].clone(),
                w["cwd"].clone(),
            );
        }
        let messages = s["messages"].as_array().unwrap();
        let count = |role: &str| messages.iter().filter(|m| m["role"] == role).count() as u64;
        check(
            "user messages",
            count("user").into(),
            w["user_prompts"].clone(),
        );
        // Assistant text (one of the two duplicate streams); tool calls are counted below.
        let texts = messages
            .iter()
            .filter(|m| m["role"] == "assistant" && m["textContent"].is_string())
            .count() as u64;
        check(
            "assistant texts",
            texts.into(),
            w["assistant_texts"].clone(),
        );
        let parts = |kind: &str| {
            messages
                .iter()
                .flat_map(|m| m["parts"].as_array().unwrap())
                .filter(|p| p["type"] == kind)
                .count() as u64
        };
        check(
            "tool calls",
            parts("tool-call").into(),
            w["tool_calls"].clone(),
        );
        check(
            "tool results",
            parts("tool-result").into(),
            w["tool_outputs"].clone(),
        );
        // Nothing of the scaffolding (environment context, instructions) is a prompt.
        for m in messages.iter().filter(|m| m["role"] == "user") {
            let text = m["textContent"].as_str().unwrap_or("");
            if text.contains("<environment_context>") || text.contains("<user_instructions>") {
                failures.push(format!("{sid}: scaffolding sent as a prompt: {text:.80}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(stderr.contains("skipped 1 malformed"), "{stderr}");
    // The credentials in the fixture's git remote never leave the machine.
    let all = sessions.iter().map(Value::to_string).collect::<String>();
    assert!(
        !all.contains("ghp_FAKE"),
        "a repository credential was exported"
    );
}

#[test]
fn completing_the_partial_last_line_adds_its_tokens() {
    let want = expected();
    let (dir, files) = copy_tree(&fixture(), &|p: &Path| p.to_string_lossy().contains(BROKEN));
    assert_eq!(files.len(), 1);
    let before = one_shot(SourceId::CodexCli, &files, ParseOptions::default());
    let (session, _) = &before.sessions[BROKEN];
    assert_eq!(
        session.prompt_tokens.unwrap_or(0),
        want[BROKEN]["tokens"]["input"].as_u64().unwrap()
    );
    let rest = want[BROKEN]["partial_tail_completion"].as_str().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    use std::io::Write;
    f.write_all(format!("{rest}\n").as_bytes()).unwrap();
    drop(f);
    let after = one_shot(SourceId::CodexCli, &files, ParseOptions::default());
    let t = &want[BROKEN]["after_partial_tail_completed"]["tokens"];
    let session = &after.sessions[BROKEN].0;
    assert_eq!(session.prompt_tokens, t["input"].as_u64());
    assert_eq!(session.completion_tokens, t["output"].as_u64());
    drop(dir);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_appends_yields_the_one_shot_payloads(
        (fractions, budget) in splits_strategy(5)
    ) {
        let jsonl = |p: &Path| p.extension().is_some_and(|e| e == "jsonl");
        let (_dir, files) = copy_tree(&fixture(), &jsonl);
        prop_assert_eq!(files.len(), 5);
        let opts = ParseOptions { sync_thinking: true, ..ParseOptions::default() };
        let reference = one_shot(SourceId::CodexCli, &files, opts);
        let cuts = cuts_for(&files, &fractions);
        let stepped = incremental::run(SourceId::CodexCli, &files, &cuts, budget, 64 << 20, opts);
        prop_assert_eq!(stepped, reference);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn garbage_lines_never_panic(lines in proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            "\\{\"type\":\"(session_meta|turn_context|response_item|event_msg|compacted)\",\"payload\":(null|1|\"x\"|\\{\"type\":\"(message|function_call|token_count|user_message|agent_message)\"(,\"info\":null|,\"content\":\\[\\]|,\"message\":1)?\\})\\}"
                .prop_map(String::into_bytes),
        ],
        1..20,
    )) {
        let path = Path::new("/nonexistent/sessions/2026/01/01/rollout-2026-01-01T00-00-00-0b6f0a57-0000-4000-8000-000000000002.jsonl");
        let mut parser = line_parser(&Unit::lines(SourceId::CodexCli, path.to_path_buf()), None, ParseOptions::default()).unwrap();
        let mut out = Vec::new();
        for l in &lines {
            let _ = parser.parse_line(l, &mut out);
        }
        let state = parser.save_state();
        prop_assert!(line_parser(&Unit::lines(SourceId::CodexCli, path.to_path_buf()), Some(&state), ParseOptions::default()).is_ok());
    }
}

#[test]
fn absurd_token_counts_saturate_instead_of_panicking() {
    // Found by fuzzing (fuzz/regressions/codex_line): a counter near u64::MAX, then a reset.
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("rollout-2026-01-01T00-00-00-0b6f0a57-0000-4000-8000-000000000002.jsonl");
    std::fs::write(
        &path,
        concat!(
            r#"{"type":"session_meta","payload":{"id":"0b6f0a57-0000-4000-8000-000000000002"}}"#,
            "\n",
            r#"{"payload":{"info":{"total_token_usage":{"output_tokens":9223372036854775807}},"type":"token_count"},"type":"event_msg"}"#,
            "\n",
            r#"{"payload":{"info":{"total_token_usage":{"output_tokens":4}},"type":"token_count"},"type":"event_msg"}"#,
            "\n",
            r#"{"payload":{"info":{"total_token_usage":{"output_tokens":18446744073709551615}},"type":"token_count"},"type":"event_msg"}"#,
            "\n",
        ),
    )
    .unwrap();
    let out = one_shot(SourceId::CodexCli, &[path], ParseOptions::default());
    let (session, _) = &out.sessions["0b6f0a57-0000-4000-8000-000000000002"];
    assert_eq!(session.completion_tokens, Some(u64::MAX));
}
