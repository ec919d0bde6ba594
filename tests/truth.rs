//! One test per fault of "what the dashboard shows is true" that is not a property of the
//! model test (`truth_model.rs`): the batch transport never destroys what the server holds,
//! refused records are listed and retried, Codex replies that exist only as response items,
//! TypeScript-era rollouts without a final newline, Claude Code subagent conversations, and —
//! for every source — every message renders in the dashboard (its `MessageBubble` /
//! `SessionViewer` rules, from `src/pages/Dashboard.tsx` and `src/components/SessionViewer.tsx`
//! of the OpenSync repository).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::daemon::{KEY, assert_server_matches_export, expected};
use crate::home::{TestHome, copy_dir};
use crate::support::Emulation;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A home holding every fixture of every source.
fn home_with_every_fixture() -> TestHome {
    let home = TestHome::new();
    copy_dir(&fixtures().join("claude"), &home.home.join(".claude"));
    copy_dir(&fixtures().join("codex"), &home.home.join(".codex"));
    copy_dir(
        &fixtures().join("opencode"),
        &home.home.join(".local/share/opencode"),
    );
    copy_dir(&fixtures().join("pi"), &home.home.join(".pi/agent"));
    copy_dir(&fixtures().join("droid"), &home.home.join(".factory"));
    // Cursor: transcripts in ~/.cursor, and the hook events they merge with in the state dir.
    copy_dir(
        &fixtures().join("cursor/projects"),
        &home.home.join(".cursor/projects"),
    );
    copy_dir(
        &fixtures().join("cursor/spool"),
        &home.opensyncd_home().join("state/cursor-spool"),
    );
    home
}

// ---- the dashboard's rendering rules --------------------------------------------------------

/// JavaScript truthiness of a JSON value.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

/// `a || b` in JavaScript.
fn or<'a>(a: &'a Value, b: &'a Value) -> &'a Value {
    if truthy(a) { a } else { b }
}

/// What `SessionViewer`'s `MessageBlock` draws for a message, part by part (the text it puts on
/// screen), following its code: text parts (`string`, `{text}`, `{content}`), tool calls (the
/// name and `JSON.stringify(args, null, 2)`), tool results (`content.result || content.output
/// || content`, a string as is, anything else stringified); other part types draw nothing; with
/// no displayable part, `textContent` is drawn instead.
fn render(message: &Value) -> Vec<String> {
    let parts = message["parts"].as_array().cloned().unwrap_or_default();
    let text_of = |c: &Value| -> String {
        match c {
            Value::String(s) => s.clone(),
            Value::Object(_) => or(&c["text"], &c["content"])
                .as_str()
                .unwrap_or("")
                .to_string(),
            _ => String::new(),
        }
    };
    let displayable = parts.iter().any(|p| match p["type"].as_str() {
        Some("text") => !text_of(&p["content"]).trim().is_empty(),
        Some("tool-call") => {
            truthy(&p["content"]) && truthy(or(&p["content"]["name"], &p["content"]["toolName"]))
        }
        Some("tool-result") => {
            let c = &p["content"];
            let r = or(or(&c["result"], &c["output"]), c);
            !r.is_null()
        }
        _ => false,
    });
    if !displayable {
        return message["textContent"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(|t| vec![t.to_string()])
            .unwrap_or_default();
    }
    let mut out = Vec::new();
    for p in &parts {
        let c = &p["content"];
        match p["type"].as_str() {
            Some("text") => {
                let t = text_of(c);
                if !t.is_empty() {
                    out.push(t);
                }
            }
            Some("tool-call") => {
                let name = or(&c["name"], &c["toolName"]);
                let args = or(or(&c["args"], &c["arguments"]), &c["input"]);
                let args = if truthy(args) {
                    args.clone()
                } else {
                    json!({})
                };
                out.push(format!(
                    "{}\n{}",
                    name.as_str().unwrap_or("Unknown Tool"),
                    serde_json::to_string_pretty(&args).unwrap()
                ));
            }
            Some("tool-result") => {
                let r = or(or(&c["result"], &c["output"]), c);
                out.push(match r {
                    Value::String(s) => s.clone(),
                    other => serde_json::to_string_pretty(other).unwrap(),
                });
            }
            _ => {}
        }
    }
    out
}

/// Every message sent renders: no empty bubble, no `{ "result": "" }`, no tool argument that is
/// one escaped line of a multi-line text.
#[test]
fn every_message_of_every_source_renders_in_the_dashboard() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = home_with_every_fixture().with_env("OPENSYNCD_SYNC_THINKING", "true");
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert_server_matches_export(&home, &emu);
    for m in emu.all_messages() {
        let stored = json!({
            "textContent": m.text_content,
            "parts": m.parts.iter().map(|p| json!({"type": p.kind, "content": p.content})).collect::<Vec<_>>(),
        });
        let drawn = render(&stored);
        assert!(
            drawn.iter().any(|t| !t.trim().is_empty())
                || m.parts.iter().any(|p| p.kind == "tool-result"),
            "{} renders as an empty bubble: {stored}",
            m.external_id
        );
        for t in &drawn {
            assert!(
                !t.contains("\"result\": \"\"") && !t.contains("\"output\": \"\""),
                "{} draws an empty result as an object: {t}",
                m.external_id
            );
        }
        for p in &m.parts {
            assert!(
                matches!(p.kind.as_str(), "text" | "tool-call" | "tool-result"),
                "{} has a `{}` part the dashboard does not draw",
                m.external_id,
                p.kind
            );
            if p.kind == "tool-call" {
                let args = or(&p.content["args"], &p.content["input"]);
                assert!(
                    !args.as_str().is_some_and(|s| s.contains('\n')),
                    "{}: multi-line tool arguments would render as one escaped line",
                    m.external_id
                );
            }
        }
    }
    // Every source's fixtures were synced (ids differ in shape per source).
    let sessions = emu.sessions(emu.default_user());
    let by_source: std::collections::BTreeSet<String> =
        sessions.iter().filter_map(|s| s.source.clone()).collect();
    for want in [
        "claude-code",
        "codex-cli",
        "opencode",
        "pi",
        "factory-droid",
        "cursor-sync",
    ] {
        assert!(
            by_source.contains(want),
            "no {want} session synced: {by_source:?}"
        );
    }
}

#[test]
fn the_renderer_follows_the_dashboards_rules() {
    // Checked against the dashboard's code on hand-written parts, so that the test above
    // judges with the dashboard's eyes.
    let empty_result = json!({"parts": [{"type": "tool-result", "content": {"result": ""}}]});
    assert_eq!(render(&empty_result), ["{\n  \"result\": \"\"\n}"]);
    let bare = json!({"parts": [{"type": "tool-result", "content": ""}]});
    assert_eq!(render(&bare), [""]);
    let reasoning = json!({"textContent": null, "parts": [{"type": "reasoning", "content": "hm"}]});
    assert!(
        render(&reasoning).is_empty(),
        "a reasoning part draws nothing"
    );
    let fallback = json!({"textContent": "hi", "parts": [{"type": "reasoning", "content": "x"}]});
    assert_eq!(render(&fallback), ["hi"]);
}

// ---- the batch transport --------------------------------------------------------------------

/// After the ledger is lost, everything is re-sent; with the batch transport that must not
/// wipe the parts of messages the server already holds, nor give sessions the sync time as
/// their start.
#[test]
fn batch_never_destroys_what_the_server_holds() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = home_with_every_fixture();
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    let before: Vec<(String, usize)> = emu
        .all_messages()
        .iter()
        .map(|m| (m.external_id.clone(), m.parts.len()))
        .collect();
    let starts: Vec<(String, i64)> = emu
        .sessions(emu.default_user())
        .iter()
        .map(|s| (s.external_id.clone(), s.created_at))
        .collect();
    // The ledger is lost; the transport is batch; then `sync --force` for good measure.
    std::fs::remove_dir_all(home.opensyncd_home().join("state/ledger")).unwrap();
    home.ok(&["set", "transport", "batch"]);
    home.ok(&["sync"]);
    home.ok(&["sync", "--force"]);
    for (id, parts) in before {
        let now = emu
            .all_messages()
            .into_iter()
            .find(|m| m.external_id == id)
            .unwrap();
        assert_eq!(now.parts.len(), parts, "{id} lost parts");
    }
    for (id, created) in starts {
        assert_eq!(
            emu.session(emu.default_user(), &id).unwrap().created_at,
            created,
            "{id}"
        );
    }
    assert_server_matches_export(&home, &emu);
    assert!(
        !emu.requests().iter().any(|r| r.path == "/sync/batch"),
        "nothing the server holds went through /sync/batch"
    );
}

/// On a fresh server the batch transport is used for new sessions' messages, and the sessions
/// keep their start time (created record by record first).
#[test]
fn batch_creates_sessions_with_their_start_and_sends_new_messages_in_batches() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = home_with_every_fixture().with_env("OPENSYNCD_TRANSPORT", "batch");
    home.login(&emu.url(), KEY);
    home.ok(&["sync"]);
    assert!(emu.requests().iter().any(|r| r.path == "/sync/batch"));
    let want = expected(&home);
    for (sid, (session, _)) in &want {
        assert_eq!(
            Some(emu.session(emu.default_user(), sid).unwrap().created_at),
            session["createdAt"].as_i64(),
            "{sid} createdAt"
        );
    }
    // What batch costs is said where the user looks: status and the key's documentation.
    let status = home.status(&[]);
    assert!(
        status.contains("transport = batch") && status.contains("sync time as their createdAt"),
        "{status}"
    );
    let config = home.ok(&["config"]);
    assert!(config.contains("sync time as createdAt"), "{config}");
}

// ---- refused records ------------------------------------------------------------------------

#[test]
fn refused_records_are_listed_and_retried() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = TestHome::new();
    copy_dir(&fixtures().join("codex"), &home.home.join(".codex"));
    home.login(&emu.url(), KEY);
    // The server refuses the first message it is sent, for good (a validator error).
    emu.fail_next_on(
        "/sync/message",
        500,
        "ArgumentValidationError: Object contains extra field `nope` that is not in the validator",
        1,
    );
    home.ok(&["sync"]);
    let listed = home.status(&["--rejected"]);
    assert!(listed.contains("message"), "{listed}");
    assert!(
        listed.contains("extra field"),
        "the reason is shown: {listed}"
    );
    let json: Value = serde_json::from_str(&home.status(&["--rejected", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    // Retried on request: accepted now.
    home.ok(&["sync", "--retry-rejected"]);
    let json: Value = serde_json::from_str(&home.status(&["--rejected", "--json"])).unwrap();
    assert!(json.as_array().unwrap().is_empty(), "{json}");
    assert_server_matches_export(&home, &emu);
}

#[test]
fn refused_records_are_retried_when_the_shaping_changes() {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let home = TestHome::new();
    copy_dir(&fixtures().join("codex"), &home.home.join(".codex"));
    home.login(&emu.url(), KEY);
    emu.fail_next_on(
        "/sync/message",
        500,
        "Value is too large (document size limit 1 MiB)",
        1,
    );
    home.ok(&["sync"]);
    assert!(home.status(&["--rejected"]).contains("too large"));
    // Nothing changed: a sync does not try again.
    home.ok(&["sync"]);
    assert!(home.status(&["--rejected"]).contains("too large"));
    // Smaller caps: the refused record is shaped again and sent.
    home.ok(&["set", "max_part_bytes", "65536"]);
    home.ok(&["sync"]);
    assert!(
        home.status(&["--rejected"]).contains("refused no record"),
        "retried after the caps changed"
    );
}

// ---- parsers --------------------------------------------------------------------------------

fn codex_home(lines: &[Value], name: &str, final_newline: bool) -> TestHome {
    let home = TestHome::new();
    let dir = home.home.join(".codex/sessions/2026/05/01");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = lines
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    if final_newline {
        text.push('\n');
    }
    std::fs::write(dir.join(name), text).unwrap();
    home
}

fn exported_texts(home: &TestHome) -> Vec<(String, String)> {
    let out = home.ok(&["export"]);
    out.lines()
        .flat_map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap().to_string(),
                        m["textContent"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Codex Desktop 0.128 writes the assistant's replies only as `response_item` messages (no
/// `agent_message` events): they are sent. Where both exist, each reply is sent once.
#[test]
fn codex_replies_that_exist_only_as_response_items_are_sent_once() {
    let at = "2026-05-01T10:00:00.000Z";
    let sid = "019e2222-0000-7000-8000-000000000001";
    let meta = json!({"timestamp": at, "type": "session_meta", "payload": {"id": sid, "timestamp": at, "cwd": "/w", "originator": "Codex Desktop", "cli_version": "0.128.0"}});
    let user = |t: &str| json!({"timestamp": at, "type": "event_msg", "payload": {"type": "user_message", "message": t}});
    let item = |t: &str| json!({"timestamp": at, "type": "response_item", "payload": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": t}]}});
    let event = |t: &str| json!({"timestamp": at, "type": "event_msg", "payload": {"type": "agent_message", "message": t}});
    let only_items = codex_home(
        &[
            meta.clone(),
            user("first"),
            item("reply one"),
            user("second"),
            item("reply two"),
        ],
        &format!("rollout-2026-05-01T10-00-00-{sid}.jsonl"),
        true,
    );
    let texts = exported_texts(&only_items);
    assert_eq!(
        texts,
        [
            ("user".to_string(), "first".to_string()),
            ("assistant".to_string(), "reply one".to_string()),
            ("user".to_string(), "second".to_string()),
            ("assistant".to_string(), "reply two".to_string()),
        ]
    );
    // Both forms, either order: each reply once.
    let both = codex_home(
        &[
            meta,
            user("first"),
            event("reply one"),
            item("reply one"),
            user("second"),
            item("reply two"),
            event("reply two"),
        ],
        &format!("rollout-2026-05-01T10-00-00-{sid}.jsonl"),
        true,
    );
    let replies: Vec<String> = exported_texts(&both)
        .into_iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(replies, ["reply one", "reply two"]);
}

/// A TypeScript-era `rollout-*.json` (one JSON document) without a final newline is read.
#[test]
fn a_typescript_era_rollout_without_a_final_newline_is_read() {
    let doc = json!({"session": {"id": "4f0c7f6e-0000-4000-8000-000000000001", "timestamp": "2025-04-01T10:00:00.000Z", "instructions": ""},
                     "items": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello codex"}]},
                               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hello human"}]}]});
    let home = TestHome::new();
    let dir = home.home.join(".codex/sessions");
    std::fs::create_dir_all(&dir).unwrap();
    // Pretty-printed, as the TypeScript CLI wrote it, with no newline at the end.
    std::fs::write(
        dir.join("rollout-2025-04-01-4f0c7f6e-0000-4000-8000-000000000001.json"),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
    let texts = exported_texts(&home);
    assert!(
        texts.contains(&("assistant".to_string(), "hello human".to_string())),
        "{texts:?}"
    );
}

/// A Claude Code subagent's conversation is sent with its parent session, every message marked
/// as the subagent's (text and tool calls); `sync_subagents = false` leaves it out (its tokens
/// still count).
#[test]
fn claude_subagent_conversations_are_sent_marked_and_can_be_left_out() {
    let home = TestHome::new();
    copy_dir(&fixtures().join("claude"), &home.home.join(".claude"));
    let out = home.ok(&["export", "--source", "claude-code"]);
    let mut marked = 0;
    let mut marked_tools = 0;
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for m in v["messages"].as_array().unwrap() {
            if m["textContent"]
                .as_str()
                .is_some_and(|t| t.starts_with("[subagent "))
            {
                marked += 1;
            }
            for p in m["parts"].as_array().unwrap() {
                if p["type"] == "tool-call"
                    && p["content"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("[subagent "))
                {
                    marked_tools += 1;
                }
            }
        }
    }
    assert!(
        marked > 0 && marked_tools > 0,
        "{marked} marked texts, {marked_tools} marked tool calls"
    );
    let tokens = |out: &str| -> Vec<(String, i64)> {
        out.lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["session"]["externalId"].as_str().unwrap().to_string(),
                    v["session"]["promptTokens"].as_i64().unwrap_or(0),
                )
            })
            .collect()
    };
    let off = home.run(&["export", "--source", "claude-code"]);
    let home_off = TestHome::new().with_env("OPENSYNCD_SYNC_SUBAGENTS", "false");
    copy_dir(&fixtures().join("claude"), &home_off.home.join(".claude"));
    let without = home_off.ok(&["export", "--source", "claude-code"]);
    assert!(
        !without.contains("[subagent "),
        "sync_subagents = false sends none of them"
    );
    assert_eq!(
        tokens(&without),
        tokens(&String::from_utf8_lossy(&off.stdout)),
        "their tokens count either way"
    );
}
