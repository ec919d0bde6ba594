//! Cursor: the transcript + hook-spool merge (a model of how Cursor and its hooks write, read at
//! arbitrary moments: every message id ever emitted survives with the same `createdAt`, and
//! nothing is emitted twice in either arrival order), our own real-shaped fixtures
//! (`tests/fixtures/cursor`, figures derived independently by `expected.py`), the hook's
//! answers, spool appends and concurrency, and garbage input.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use opensyncd::model::{MessagePayload, Role};
use opensyncd::sources::cursor::{Transcript, conversation_records};
use opensyncd::sources::cursor_spool::parse_spool;
use opensyncd::sources::{ParseOptions, Record};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::home::TestHome;

const CID: &str = "3f2b8c1e-5d4a-4e7b-9c60-2a1d8e4f7b93";

/// The files of one conversation as Cursor and the hook write them, in memory.
#[derive(Default, Clone)]
struct World {
    transcript: Vec<u8>,
    transcript_created: Option<i64>,
    spool: Vec<u8>,
    clock: i64,
}

impl World {
    fn tick(&mut self) -> i64 {
        self.clock += 1000;
        1_767_225_600_000 + self.clock
    }

    /// A hook event, spooled with the transcript's current size (as the hook measures it).
    fn hook(&mut self, event: &str, mut payload: Value) {
        let at = self.tick();
        payload["conversation_id"] = json!(CID);
        payload["hook_event_name"] = json!(event);
        let line = json!({
            "v": 1, "received_ms": at, "event": event,
            "transcript_bytes": self.transcript.len(), "payload": payload,
        });
        self.spool.extend(serde_json::to_vec(&line).unwrap());
        self.spool.push(b'\n');
    }

    /// A transcript line.
    fn line(&mut self, v: Value) {
        let at = self.tick();
        self.transcript_created.get_or_insert(at);
        self.transcript.extend(serde_json::to_vec(&v).unwrap());
        self.transcript.push(b'\n');
    }

    fn read(&self, opts: ParseOptions) -> Vec<MessagePayload> {
        let main = self
            .transcript_created
            .map(|created| Transcript::parse(CID, &self.transcript, created));
        let (events, bad) = parse_spool(&self.spool);
        assert_eq!(bad, 0);
        conversation_records(CID, main.as_ref(), &[], &events, opts)
            .into_iter()
            .filter_map(|r| match r {
                Record::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }
}

fn user_line(prompt: &str) -> Value {
    json!({"role": "user", "message": {"content": [{"type": "text",
        "text": format!("<user_info>OS: linux</user_info>\n<user_query>\n{prompt}\n</user_query>")}]}})
}

fn assistant_line(text: Option<&str>, tool: Option<(&str, Value)>) -> Value {
    let mut content = Vec::new();
    if let Some(t) = text {
        content.push(json!({"type": "text", "text": t}));
    }
    if let Some((name, input)) = tool {
        content.push(json!({"type": "tool_use", "name": name, "input": input}));
    }
    json!({"role": "assistant", "message": {"content": content}})
}

/// One action of the world, in one of two queues (the hook's, Cursor's transcript writer).
#[derive(Debug, Clone)]
enum Action {
    Hook(&'static str, Value),
    Line(Value),
}

/// A generated conversation: the actions of each queue, and which must precede which.
#[derive(Debug, Clone)]
struct Script {
    hooks: Vec<Action>,
    lines: Vec<Action>,
    /// (hook index, line index): the hook comes before the line.
    hook_before_line: Vec<(usize, usize)>,
    /// (line index, hook index): the line comes before the hook.
    line_before_hook: Vec<(usize, usize)>,
    prompts: usize,
    replies: Vec<String>,
}

#[derive(Debug, Clone)]
struct TurnSpec {
    prompt: usize,
    steps: Vec<bool>,
    reply_hook_first: bool,
    tool_hooks_first: bool,
}

const PROMPTS: [&str; 4] = [
    "continue",
    "fix the failing tests in the parser",
    "continue",
    "add a CSV export to the report page",
];

/// Builds the actions of `turns`: hooks from turn `hooked_from` on, transcripts on or off.
/// A prompt line is written after its hook (Cursor runs `beforeSubmitPrompt` before it
/// submits the prompt); replies and tool calls are flushed before or after their hooks, and
/// the transcript may lag any number of turns behind the hooks. The turns before the hooks
/// were installed are on disk by the time they are (installing takes the user a while).
fn script(turns: &[TurnSpec], hooked_from: usize, transcripts: bool) -> Script {
    let mut s = Script {
        hooks: Vec::new(),
        lines: Vec::new(),
        hook_before_line: Vec::new(),
        line_before_hook: Vec::new(),
        prompts: 0,
        replies: Vec::new(),
    };
    let mut last_stop: Option<usize> = None;
    for (k, turn) in turns.iter().enumerate() {
        let hooked = k >= hooked_from;
        let generation = format!("gen-{k}");
        let prompt = PROMPTS[turn.prompt % PROMPTS.len()];
        let reply = format!("Done with step {k}: the change is in place and the tests pass.");
        if hooked || transcripts {
            s.prompts += 1;
            s.replies.push(reply.clone());
        }
        let hook = |s: &mut Script, event: &'static str, payload: Value| {
            let mut payload = payload;
            payload["generation_id"] = json!(generation);
            payload["model"] = json!("claude-4.5-sonnet");
            payload["workspace_roots"] = json!(["/home/dev/shop"]);
            s.hooks.push(Action::Hook(event, payload));
            s.hooks.len() - 1
        };
        let prompt_hook =
            hooked.then(|| hook(&mut s, "beforeSubmitPrompt", json!({"prompt": prompt})));
        if k == hooked_from {
            let before: Vec<(usize, usize)> = (0..s.lines.len()).map(|l| (l, 0)).collect();
            s.line_before_hook.extend(before);
        }
        let user = transcripts.then(|| {
            s.lines.push(Action::Line(user_line(prompt)));
            s.lines.len() - 1
        });
        // The user submits this prompt after the previous turn stopped.
        if let (Some(stop), Some(u)) = (last_stop, user) {
            s.hook_before_line.push((stop, u));
        }
        if let (Some(h), Some(u)) = (prompt_hook, user) {
            s.hook_before_line.push((h, u));
        }
        for (j, with_tool) in turn.steps.iter().enumerate() {
            let input = json!({"path": format!("src/file{k}_{j}.rs")});
            let line = transcripts.then(|| {
                let tool = with_tool.then(|| ("Read", input.clone()));
                s.lines.push(Action::Line(assistant_line(
                    Some(&format!("Looking at step {k}.{j}.")),
                    tool,
                )));
                s.lines.len() - 1
            });
            if *with_tool && hooked {
                let h = hook(
                    &mut s,
                    "postToolUse",
                    json!({"tool_name": "Read",
                    "tool_input": input, "tool_output": format!("contents {k}.{j}")}),
                );
                match line {
                    Some(l) if turn.tool_hooks_first => s.hook_before_line.push((h, l)),
                    Some(l) => s.line_before_hook.push((l, h)),
                    None => {}
                }
            }
        }
        let final_line = transcripts.then(|| {
            s.lines.push(Action::Line(assistant_line(
                Some(&format!("{reply}\n\n[REDACTED]")),
                None,
            )));
            s.lines.len() - 1
        });
        if hooked {
            let h = hook(&mut s, "afterAgentResponse", json!({"text": reply}));
            match final_line {
                Some(l) if turn.reply_hook_first => s.hook_before_line.push((h, l)),
                Some(l) => s.line_before_hook.push((l, h)),
                None => {}
            }
            last_stop = Some(hook(&mut s, "stop", json!({"status": "completed"})));
        }
    }
    s
}

fn turn_strategy() -> impl Strategy<Value = TurnSpec> {
    (
        0usize..4,
        proptest::collection::vec(any::<bool>(), 0..3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(prompt, steps, reply_hook_first, tool_hooks_first)| TurnSpec {
                prompt,
                steps,
                reply_hook_first,
                tool_hooks_first,
            },
        )
}

/// Runs `script` with queue choices from `picks` and reads where `reads` says; returns every
/// read's messages and the final read's.
fn play(
    s: &Script,
    picks: &[u8],
    reads: &[bool],
    opts: ParseOptions,
) -> (Vec<Vec<MessagePayload>>, Vec<MessagePayload>) {
    let mut world = World::default();
    let (mut h, mut l) = (0usize, 0usize);
    let mut snapshots = Vec::new();
    let mut step = 0usize;
    while h < s.hooks.len() || l < s.lines.len() {
        let hook_ready =
            h < s.hooks.len() && s.line_before_hook.iter().all(|&(li, hi)| hi != h || li < l);
        let line_ready =
            l < s.lines.len() && s.hook_before_line.iter().all(|&(hi, li)| li != l || hi < h);
        assert!(
            hook_ready || line_ready,
            "the script's constraints deadlock"
        );
        let take_hook = match (hook_ready, line_ready) {
            (true, true) => picks.get(step).is_none_or(|p| p % 2 == 0),
            (hook, _) => hook,
        };
        let action = if take_hook {
            h += 1;
            &s.hooks[h - 1]
        } else {
            l += 1;
            &s.lines[l - 1]
        };
        match action {
            Action::Hook(event, payload) => world.hook(event, payload.clone()),
            Action::Line(v) => world.line(v.clone()),
        }
        if reads.get(step).copied().unwrap_or(false) {
            snapshots.push(world.read(opts));
        }
        step += 1;
    }
    let last = world.read(opts);
    (snapshots, last)
}

fn by_id(msgs: &[MessagePayload]) -> HashMap<&str, &MessagePayload> {
    let mut out = HashMap::new();
    for m in msgs {
        assert!(
            out.insert(m.external_id.as_str(), m).is_none(),
            "id {} twice in one read",
            m.external_id
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever order Cursor and the hook write in, and whenever the daemon reads: every id a
    /// read emits is emitted by every later read with the same createdAt (the server keeps the
    /// first createdAt and never deletes), and the final read holds each prompt and reply once.
    #[test]
    fn reads_at_any_moment_agree_with_the_final_read(
        turns in proptest::collection::vec(turn_strategy(), 1..5),
        hooked_from in 0usize..5,
        transcripts in any::<bool>(),
        picks in proptest::collection::vec(any::<u8>(), 0..64),
        reads in proptest::collection::vec(any::<bool>(), 0..64),
    ) {
        let s = script(&turns, hooked_from, transcripts);
        let opts = ParseOptions::default();
        let (snapshots, last) = play(&s, &picks, &reads, opts);
        let final_ids = by_id(&last);
        for snap in &snapshots {
            for (id, m) in by_id(snap) {
                let Some(f) = final_ids.get(id) else {
                    return Err(TestCaseError::fail(format!("{id} was emitted, then dropped")));
                };
                prop_assert_eq!(m.created_at, f.created_at, "{} changed its createdAt", id);
                prop_assert_eq!(m.role, f.role);
            }
        }
        let users = last.iter().filter(|m| m.role == Role::User).count();
        prop_assert_eq!(users, s.prompts, "each prompt exactly once");
        for reply in &s.replies {
            let n = last.iter().filter(|m| m.text_content.as_deref() == Some(reply.as_str())).count();
            prop_assert_eq!(n, 1, "reply {:?} once", reply);
        }
        prop_assert!(last.iter().all(|m| m.created_at.is_some()));
    }
}

#[test]
fn with_hooks_the_transcript_takes_the_hook_times_ids_and_results() {
    let turns = vec![
        TurnSpec {
            prompt: 1,
            steps: vec![true, false],
            reply_hook_first: true,
            tool_hooks_first: false,
        },
        TurnSpec {
            prompt: 3,
            steps: vec![true],
            reply_hook_first: false,
            tool_hooks_first: true,
        },
    ];
    let s = script(&turns, 0, true);
    // Hooks first wherever allowed (picks all even).
    let (_, last) = play(&s, &[0; 64], &[], ParseOptions::default());
    let prompts: Vec<&MessagePayload> = last.iter().filter(|m| m.role == Role::User).collect();
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[0].external_id, format!("{CID}:gen-0:prompt"));
    assert_eq!(prompts[0].text_content.as_deref(), Some(PROMPTS[1]));
    // The first hook ran at tick 1: 1_767_225_600_000 + 1000.
    assert_eq!(prompts[0].created_at, Some(1_767_225_601_000));
    // Reply hook before its line: the line takes the hook's id.
    let reply0 = last
        .iter()
        .find(|m| {
            m.text_content
                .as_deref()
                .is_some_and(|t| t.starts_with("Done with step 0"))
        })
        .unwrap();
    assert_eq!(reply0.external_id, format!("{CID}:gen-0:reply:0"));
    assert_eq!(reply0.model.as_deref(), Some("claude-4.5-sonnet"));
    // Reply line written before its hook: the line keeps its own id (line index 3).
    let reply1 = last
        .iter()
        .find(|m| {
            m.text_content
                .as_deref()
                .is_some_and(|t| t.starts_with("Done with step 1"))
        })
        .unwrap();
    assert!(
        reply1.external_id.starts_with(&format!("{CID}:")),
        "{}",
        reply1.external_id
    );
    assert!(
        !reply1.external_id.contains("gen-"),
        "{}",
        reply1.external_id
    );
    // Tool results come from postToolUse and sit right after their call.
    let with_results: Vec<&MessagePayload> = last
        .iter()
        .filter(|m| m.parts.iter().any(|p| p.kind == "tool-result"))
        .collect();
    assert_eq!(with_results.len(), 2);
    for m in with_results {
        let kinds: Vec<&str> = m.parts.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["text", "tool-call", "tool-result"]);
    }
}

#[test]
fn without_a_transcript_prompts_replies_and_tools_come_from_the_hooks() {
    let turns = vec![TurnSpec {
        prompt: 1,
        steps: vec![true],
        reply_hook_first: true,
        tool_hooks_first: true,
    }];
    let s = script(&turns, 0, false);
    let (_, last) = play(&s, &[], &[], ParseOptions::default());
    let ids: Vec<&str> = last.iter().map(|m| m.external_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{CID}:gen-0:prompt"),
            format!("{CID}:gen-0:reply:0")
        ]
    );
    let kinds: Vec<&str> = last[1].parts.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(kinds, ["text", "tool-call", "tool-result"]);
    assert_eq!(last[1].parts[2].content, json!({"result": "contents 0.0"}));
}

#[test]
fn without_hooks_times_come_from_the_file_creation_and_line_positions() {
    let turns = vec![TurnSpec {
        prompt: 0,
        steps: vec![false],
        reply_hook_first: true,
        tool_hooks_first: true,
    }];
    let s = script(&turns, 9, true);
    let (_, last) = play(&s, &[], &[], ParseOptions::default());
    let created = 1_767_225_601_000; // the first line's tick
    let got: Vec<(String, i64)> = last
        .iter()
        .map(|m| (m.external_id.clone(), m.created_at.unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (format!("{CID}:0"), created),
            (format!("{CID}:1"), created + 1),
            (format!("{CID}:2"), created + 2),
        ]
    );
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let t = Transcript::parse(CID, b"not json\n[1,2]\n{\"role\":\"user\"}\n{\"role\":7,\"message\":{\"content\":5}}\n{\"type\":\"turn_ended\",\"status\":\"ok\"}\n\n{\"partial\":", 0);
    assert_eq!(t.malformed, 2);
    assert!(t.lines.is_empty());
    let (events, bad) =
        parse_spool(b"{}\nnull\n{\"received_ms\":1,\"event\":\"stop\",\"payload\":{}}\n\xff\xfe\n");
    assert_eq!((events.len(), bad), (1, 3));
    assert!(conversation_records(CID, Some(&t), &[], &events, ParseOptions::default()).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn garbage_transcripts_and_spools_never_panic(
        transcript in proptest::collection::vec(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..120),
            "\\{\"role\":\"(user|assistant|system)\",\"message\":\\{\"content\":(\"x\"|\\[\\]|null|1|\\[\\{\"type\":\"(text|tool_use|thinking)\"(,\"text\":\"<user_query>a\")?\\}\\])\\}\\}".prop_map(String::into_bytes),
        ], 0..12),
        spool in proptest::collection::vec(prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..120),
            "\\{\"received_ms\":(-?[0-9]{1,19}),\"event\":\"(beforeSubmitPrompt|afterAgentResponse|postToolUse|afterShellExecution|subagentStart|stop)\",\"transcript_bytes\":([0-9]{1,20}|null|-1),\"payload\":\\{\"generation_id\":\"g\",\"prompt\":\"a\",\"text\":\"a\",\"tool_name\":\"Read\",\"tool_input\":(\"\\{\"|null|1),\"subagent_id\":\"s\"\\}\\}".prop_map(String::into_bytes),
        ], 0..12),
        created in any::<i64>(),
        thinking in any::<bool>(),
    ) {
        let join = |lines: &[Vec<u8>]| lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect::<Vec<u8>>();
        let t = Transcript::parse(CID, &join(&transcript), created);
        let sub = Transcript::parse("s", &join(&transcript), created);
        let (events, _) = parse_spool(&join(&spool));
        let opts = ParseOptions { sync_thinking: thinking, ..ParseOptions::default() };
        let records = conversation_records(CID, Some(&t), &[sub], &events, opts);
        let mut ids = HashSet::new();
        for r in &records {
            if let Record::Message(m) = r {
                prop_assert!(ids.insert(m.external_id.clone()), "duplicate id {}", m.external_id);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixtures (tests/fixtures/cursor, EXPECTED.md), through `opensyncd export`.

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cursor")
}

fn expected() -> Value {
    serde_json::from_slice(&std::fs::read(fixture().join("expected.json")).unwrap()).unwrap()
}

/// A home with the fixture's `projects/` as `~/.cursor/projects` and its `spool/` as
/// opensyncd's `<state>/cursor`.
fn fixture_home() -> TestHome {
    let home = TestHome::new();
    crate::home::copy_dir(
        &fixture().join("projects"),
        &home.home.join(".cursor/projects"),
    );
    crate::home::copy_dir(
        &fixture().join("spool"),
        &home.opensyncd_home().join("state/cursor-spool"),
    );
    home
}

/// `export --source cursor-sync` (extra env as given): sessions by id, and stderr.
fn export(home: &TestHome, env: &[(&str, &str)]) -> (BTreeMap<String, Value>, String) {
    let mut cmd = home.cmd(&["export", "--source", "cursor-sync"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sessions = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|s| (s["session"]["externalId"].as_str().unwrap().to_string(), s))
        .collect();
    (sessions, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Epoch ms of a file's creation (the OS's birth time of the copied fixture file).
fn birth_ms(path: &Path) -> i64 {
    let created = std::fs::metadata(path).unwrap().created().unwrap();
    created
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An expected createdAt: absolute, or relative to a copied transcript's birth time.
fn resolve(home: &TestHome, at: &Value) -> i64 {
    match at.get("ms") {
        Some(ms) => ms.as_i64().unwrap(),
        None => {
            let rel = at["birth_of"].as_str().unwrap();
            let rel = rel.strip_prefix("projects/").unwrap();
            birth_ms(&home.home.join(".cursor/projects").join(rel)) + at["plus"].as_i64().unwrap()
        }
    }
}

#[test]
fn export_matches_the_independently_derived_messages() {
    let want = expected();
    let home = fixture_home();
    let (sessions, stderr) = export(&home, &[("OPENSYNCD_LOG_LEVEL", "debug")]);
    let want_ids: HashSet<&str> = want
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.starts_with('_'))
        .map(String::as_str)
        .collect();
    let got_ids: HashSet<&str> = sessions.keys().map(String::as_str).collect();
    assert_eq!(
        got_ids, want_ids,
        "the legacy .txt transcript is not a session"
    );
    assert!(
        stderr.contains("legacy .txt"),
        "one log line says .txt files are skipped: {stderr}"
    );
    for (cid, session) in &sessions {
        let w = &want[cid.as_str()];
        let s = &session["session"];
        assert_eq!(s["source"], "cursor-sync");
        let messages = session["messages"].as_array().unwrap();
        let got: HashMap<&str, &Value> = messages
            .iter()
            .map(|m| (m["externalId"].as_str().unwrap(), m))
            .collect();
        assert_eq!(got.len(), messages.len(), "{cid}: an id twice");
        let want_msgs = w["messages"].as_array().unwrap();
        let want_set: HashSet<&str> = want_msgs
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            got.keys().copied().collect::<HashSet<_>>(),
            want_set,
            "{cid}: message ids"
        );
        let mut times = Vec::new();
        for wm in want_msgs {
            let id = wm["id"].as_str().unwrap();
            let m = got[id];
            assert_eq!(m["role"], wm["role"], "{id}");
            assert_eq!(
                m.get("textContent").unwrap_or(&Value::Null),
                &wm["text"],
                "{id}"
            );
            let mut parts: Vec<Value> = wm["text"]
                .as_str()
                .map(|t| json!({"type": "text", "content": t}))
                .into_iter()
                .collect();
            parts.extend(wm["extra_parts"].as_array().unwrap().iter().cloned());
            assert_eq!(m["parts"], Value::Array(parts), "{id}: parts");
            assert_eq!(
                m.get("model").unwrap_or(&Value::Null),
                &wm["model"],
                "{id}: model"
            );
            let at = resolve(&home, &wm["created_at"]);
            assert_eq!(m["createdAt"].as_i64(), Some(at), "{id}: createdAt");
            assert!(m.get("promptTokens").is_none() && m.get("completionTokens").is_none());
            times.push(at);
        }
        let sent: Vec<i64> = messages
            .iter()
            .map(|m| m["createdAt"].as_i64().unwrap())
            .collect();
        assert!(
            sent.windows(2).all(|w| w[0] <= w[1]),
            "{cid}: sent in time order"
        );
        // The session: earliest message, span incl. events, the hooks' facts, no totals.
        let first = *times.iter().min().unwrap();
        let last = times
            .iter()
            .copied()
            .chain(w["last_event_ms"].as_i64())
            .max()
            .unwrap();
        let duration = (last - first).max(w["session_end_duration_ms"].as_i64().unwrap_or(0));
        assert_eq!(s["createdAt"].as_i64(), Some(first), "{cid}: createdAt");
        assert_eq!(
            s["durationMs"].as_i64().unwrap_or(0),
            duration,
            "{cid}: durationMs"
        );
        assert_eq!(
            s.get("projectPath").unwrap_or(&Value::Null),
            &w["project_path"],
            "{cid}"
        );
        assert_eq!(s.get("model").unwrap_or(&Value::Null), &w["model"], "{cid}");
        for absent in ["promptTokens", "completionTokens", "cost"] {
            assert!(s.get(absent).is_none(), "{cid}: {absent} must stay absent");
        }
        let first_prompt = want_msgs
            .iter()
            .filter(|m| m["role"] == "user")
            .min_by_key(|m| resolve(&home, &m["created_at"]))
            .unwrap();
        let title = first_prompt["text"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>();
        assert_eq!(s["title"], title.join(" "), "{cid}: title");
        if w["malformed_lines"].as_u64().unwrap() > 0 {
            assert!(
                stderr.contains(cid.as_str()),
                "{cid}: malformed lines reported: {stderr}"
            );
        }
    }
}

#[test]
fn sync_thinking_adds_the_hooks_thoughts() {
    let want = expected();
    let home = fixture_home();
    let (sessions, _) = export(&home, &[("OPENSYNCD_SYNC_THINKING", "true")]);
    for (cid, session) in &sessions {
        let ids: HashSet<&str> = session["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["externalId"].as_str().unwrap())
            .collect();
        let want_ids: HashSet<&str> = want[cid.as_str()]["messages_with_sync_thinking"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ids, want_ids, "{cid}");
    }
    let (plain, _) = export(&home, &[]);
    let count = |s: &BTreeMap<String, Value>| -> usize {
        s.values()
            .map(|v| v["messages"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(
        count(&sessions),
        count(&plain) + 1,
        "one thought in the fixtures"
    );
}

#[test]
fn tool_calls_off_removes_calls_and_results_but_keeps_ids_and_times() {
    let home = fixture_home();
    let (with, _) = export(&home, &[]);
    let (without, _) = export(&home, &[("OPENSYNCD_SYNC_TOOL_CALLS", "false")]);
    for (cid, session) in &without {
        for m in session["messages"].as_array().unwrap() {
            for p in m["parts"].as_array().unwrap() {
                assert_eq!(p["type"], "text", "{cid}: {p}");
            }
            let id = m["externalId"].as_str().unwrap();
            let twin = with[cid]["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["externalId"] == id)
                .unwrap_or_else(|| panic!("{id} exists with tool calls on"));
            assert_eq!(twin["createdAt"], m["createdAt"], "{id}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `opensyncd hook cursor <event>`, the real binary.

/// Runs `hook cursor <event>` with `stdin`; returns (exit code, stdout, stderr).
fn hook(home: &TestHome, event: Option<&str>, stdin: &[u8]) -> (i32, Vec<u8>, String) {
    use std::io::Write;
    let mut args = vec!["hook", "cursor"];
    args.extend(event);
    let mut cmd = home.cmd(&args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn payload(event: &str, extra: Value) -> Vec<u8> {
    let mut p = json!({
        "conversation_id": CID, "generation_id": "g-1", "model": "claude-4.5-sonnet",
        "hook_event_name": event, "cursor_version": "2.3.14", "workspace_roots": ["/w"],
        "user_email": "dev@example.invalid", "transcript_path": null,
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    serde_json::to_vec(&p).unwrap()
}

fn spool_lines(home: &TestHome) -> Vec<Value> {
    let path = home
        .opensyncd_home()
        .join(format!("state/cursor-spool/{CID}.jsonl"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every spool line is whole JSON"))
        .collect()
}

#[test]
fn the_hook_answers_every_event_family_byte_exactly_and_spools_each_call() {
    let home = TestHome::new();
    let families: [(&str, &[u8]); 20] = [
        ("beforeSubmitPrompt", b"{\"continue\":true}\n"),
        ("beforeShellExecution", b"{\"permission\":\"allow\"}\n"),
        ("beforeMCPExecution", b"{\"permission\":\"allow\"}\n"),
        ("beforeReadFile", b"{\"permission\":\"allow\"}\n"),
        ("beforeTabFileRead", b"{\"permission\":\"allow\"}\n"),
        ("preToolUse", b"{\"permission\":\"allow\"}\n"),
        ("subagentStart", b"{\"permission\":\"allow\"}\n"),
        ("stop", b"{}\n"),
        ("subagentStop", b"{}\n"),
        ("afterAgentResponse", b"{}\n"),
        ("afterAgentThought", b"{}\n"),
        ("afterFileEdit", b"{}\n"),
        ("afterShellExecution", b"{}\n"),
        ("afterMCPExecution", b"{}\n"),
        ("postToolUse", b"{}\n"),
        ("postToolUseFailure", b"{}\n"),
        ("sessionStart", b"{}\n"),
        ("sessionEnd", b"{}\n"),
        ("preCompact", b"{}\n"),
        ("afterTabFileEdit", b"{}\n"),
    ];
    for (i, (event, answer)) in families.iter().enumerate() {
        let (code, stdout, stderr) = hook(
            &home,
            Some(event),
            &payload(event, json!({"prompt": "p", "text": "t"})),
        );
        assert_eq!(code, 0, "{event}: {stderr}");
        assert_eq!(stdout, *answer, "{event}");
        assert!(!String::from_utf8_lossy(&stdout).contains("followup_message"));
        let lines = spool_lines(&home);
        assert_eq!(lines.len(), i + 1, "{event}: one line per call");
        let last = &lines[i];
        assert_eq!(last["event"], *event);
        assert_eq!(last["v"], 1);
        assert!(last["received_ms"].as_i64().unwrap() > 1_700_000_000_000);
        assert_eq!(last["transcript_bytes"], 0, "no transcript yet");
        assert_eq!(last["payload"]["generation_id"], "g-1");
        assert!(
            last["payload"].get("user_email").is_none(),
            "the email is not kept"
        );
    }
    // Without the event argument, the payload's hook_event_name decides the answer.
    let (_, stdout, _) = hook(&home, None, &payload("beforeSubmitPrompt", json!({})));
    assert_eq!(stdout, b"{\"continue\":true}\n");
    // Private files, like the rest of the state dir.
    use std::os::unix::fs::PermissionsExt;
    let dir = home.opensyncd_home().join("state/cursor-spool");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(format!("{CID}.jsonl"))), 0o600);
}

#[test]
fn the_hook_measures_the_transcript_it_will_be_merged_with() {
    let home = TestHome::new();
    let dir = home.home.join(format!(
        ".cursor/projects/home-dev-w/agent-transcripts/{CID}"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let line =
        b"{\"role\":\"user\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\n";
    std::fs::write(dir.join(format!("{CID}.jsonl")), line).unwrap();
    // Found by conversation id even when the payload does not name it.
    hook(&home, Some("stop"), &payload("stop", json!({})));
    assert_eq!(spool_lines(&home)[0]["transcript_bytes"], line.len());
}

#[test]
fn bad_input_still_gets_an_answer_and_exit_0_and_nothing_is_spooled() {
    let home = TestHome::new();
    let cases: [(&str, &[u8]); 6] = [
        ("beforeSubmitPrompt", b"not json at all"),
        ("preToolUse", b""),
        ("stop", b"[1,2,3]"),
        ("stop", b"{\"conversation_id\":\"../../etc/passwd\"}"),
        ("stop", b"{\"generation_id\":\"no conversation\"}"),
        ("beforeShellExecution", b"\xff\xfe\x00garbage"),
    ];
    for (event, stdin) in cases {
        let (code, stdout, stderr) = hook(&home, Some(event), stdin);
        assert_eq!(code, 0, "{event} {stdin:?}");
        assert_eq!(stdout, opensyncd::cursor_hook::answer(event).as_bytes());
        assert!(stderr.contains("event not recorded"), "{stderr}");
    }
    assert!(
        !home.opensyncd_home().join("state/cursor-spool").exists()
            || std::fs::read_dir(home.opensyncd_home().join("state/cursor-spool"))
                .unwrap()
                .count()
                == 0
    );
    // An unwritable spool: still the answer, still exit 0, and the reason on stderr.
    std::fs::create_dir_all(home.opensyncd_home().join("state")).unwrap();
    std::fs::write(
        home.opensyncd_home().join("state/cursor-spool"),
        b"a file, not a dir",
    )
    .unwrap();
    let (code, stdout, stderr) = hook(
        &home,
        Some("beforeSubmitPrompt"),
        &payload("beforeSubmitPrompt", json!({})),
    );
    assert_eq!(
        (code, stdout.as_slice()),
        (0, &b"{\"continue\":true}\n"[..])
    );
    assert!(stderr.contains("writing"), "{stderr}");
}

#[test]
fn concurrent_hooks_write_whole_lines() {
    let home = TestHome::new();
    // Big enough that a torn or interleaved write would show.
    let big = "x".repeat(200_000);
    let children: Vec<std::process::Child> = (0..8)
        .map(|i| {
            let mut cmd = home.cmd(&["hook", "cursor", "afterAgentResponse"]);
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let body = payload("afterAgentResponse", json!({"text": format!("{i}:{big}")}));
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&body).unwrap();
            child
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{}\n");
    }
    let lines = spool_lines(&home);
    assert_eq!(lines.len(), 8);
    let mut seen: Vec<String> = lines
        .iter()
        .map(|l| {
            l["payload"]["text"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["0", "1", "2", "3", "4", "5", "6", "7"]);
    for l in &lines {
        assert_eq!(l["payload"]["text"].as_str().unwrap().len(), 2 + big.len());
    }
    let times: Vec<i64> = lines
        .iter()
        .map(|l| l["received_ms"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "times taken under the lock: {times:?}"
    );
}

#[test]
fn spooled_events_reach_export_without_a_daemon() {
    let home = TestHome::new();
    hook(
        &home,
        Some("beforeSubmitPrompt"),
        &payload("beforeSubmitPrompt", json!({"prompt": "Explain the build"})),
    );
    hook(
        &home,
        Some("afterAgentResponse"),
        &payload("afterAgentResponse", json!({"text": "It uses cargo."})),
    );
    let (sessions, _) = export(&home, &[]);
    let s = &sessions[CID];
    let texts: Vec<&str> = s["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["textContent"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Explain the build", "It uses cargo."]);
    assert_eq!(s["session"]["projectPath"], "/w");
}

// ---------------------------------------------------------------------------------------------
// The daemon against the server emulation.

#[test]
fn the_daemon_backfills_the_fixtures_exactly_as_export_prints_them() {
    let emu = crate::support::Emulation::with_key(crate::daemon::KEY);
    let home = fixture_home();
    let _d = crate::daemon::start(&home, &emu);
    crate::daemon::wait_converged(&home, &emu, std::time::Duration::from_secs(60));
    crate::daemon::assert_server_matches_export(&home, &emu);
    crate::daemon::assert_created_at_matches_export(&home, &emu);
}

#[test]
fn hook_events_while_the_daemon_is_down_reach_the_server_later_and_the_transcript_adds_no_duplicate()
 {
    use std::time::Duration;
    // The server's dedup windows stay on: the transcript lands within seconds of the hooks, so
    // its version of a message is an update inside the 5 s window, which the daemon must defer
    // and send after it.
    let emu = crate::support::Emulation::with_key(crate::daemon::KEY);
    let home = TestHome::new();
    // Cursor runs with the hooks installed and no daemon: only the spool grows.
    let turn = |home: &TestHome, generation: &str, prompt: &str, reply: &str| {
        let p = |event: &str, extra: Value| {
            let mut body: Value = serde_json::from_slice(&payload(event, extra)).unwrap();
            body["generation_id"] = json!(generation);
            serde_json::to_vec(&body).unwrap()
        };
        hook(
            home,
            Some("beforeSubmitPrompt"),
            &p("beforeSubmitPrompt", json!({"prompt": prompt})),
        );
        hook(
            home,
            Some("afterAgentResponse"),
            &p("afterAgentResponse", json!({"text": reply})),
        );
        hook(
            home,
            Some("stop"),
            &p("stop", json!({"status": "completed"})),
        );
    };
    turn(
        &home,
        "g-1",
        "Explain the build",
        "It uses cargo with two workspaces.",
    );
    let daemon = crate::daemon::start(&home, &emu);
    crate::daemon::wait_converged(&home, &emu, Duration::from_secs(60));
    assert_eq!(emu.messages_of_session(emu.default_user(), CID).len(), 2);

    // Live: a hook fires while the daemon runs.
    turn(
        &home,
        "g-2",
        "Now add a release profile",
        "Added [profile.release] with lto = true.",
    );
    let user = emu.default_user();
    assert!(
        emu.wait_for(Duration::from_secs(20), |_| emu
            .messages_of_session(user, CID)
            .len()
            == 4),
        "the live hook event did not arrive; log:\n{}",
        daemon.log_text()
    );

    // The transcript is flushed late, after the hooks: its lines take over the hooks' messages.
    let dir = home.home.join(format!(
        ".cursor/projects/home-dev-w/agent-transcripts/{CID}"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut transcript = String::new();
    for (prompt, reply) in [
        ("Explain the build", "It uses cargo with two workspaces."),
        (
            "Now add a release profile",
            "Added [profile.release] with lto = true.",
        ),
    ] {
        // The transcript knows more than the hook: the tool call that made the change.
        let edit = ("StrReplace", json!({"path": "Cargo.toml"}));
        let line = assistant_line(Some(reply), Some(edit));
        transcript.push_str(&format!("{}\n{line}\n", user_line(prompt)));
    }
    std::fs::write(dir.join(format!("{CID}.jsonl")), transcript).unwrap();
    let reply_id = format!("{CID}:g-2:reply:0");
    assert!(
        emu.wait_for(Duration::from_secs(40), |_| emu
            .messages_of_session(user, CID)
            .iter()
            .any(|m| m.external_id == reply_id && m.parts.len() == 2)),
        "the transcript's version of the reply did not arrive; log:\n{}",
        daemon.log_text()
    );
    crate::daemon::wait_converged(&home, &emu, Duration::from_secs(30));
    assert_eq!(
        emu.messages_of_session(user, CID).len(),
        4,
        "the transcript's lines are the hooks' messages, not new ones"
    );
    crate::daemon::assert_server_matches_export(&home, &emu);
    crate::daemon::assert_created_at_matches_export(&home, &emu);
}

// ---------------------------------------------------------------------------------------------
// Incremental == one-shot, through the files: the fixture conversations replayed as they were
// written (each spool line right after the transcript bytes it measured, transcript bytes in
// arbitrary pieces, mid-line included), read whenever, folded the daemon's way (ledger) and
// compared with one read folded export's way.

/// One write of a replay.
enum Write {
    Transcript(Vec<u8>),
    Spool(Vec<u8>),
    /// A subagent's file, written whole when its `subagentStart` has been spooled.
    Subagent(PathBuf, Vec<u8>),
}

/// The writes that rebuild `cid`'s fixture files, transcript bytes cut at `cuts` (fractions).
fn replay(cid: &str, cuts: &[u32]) -> Vec<Write> {
    let want = expected();
    let files = &want[cid]["files"];
    let read = |rel: &Value| {
        rel.as_str()
            .map(|r| std::fs::read(fixture().join(r)).unwrap())
    };
    let transcript = read(&files["main"]).unwrap_or_default();
    let spool = read(&files["spool"]).unwrap_or_default();
    let subagents: Vec<(String, Vec<u8>)> = files["subs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r.as_str().unwrap().to_string(), read(r).unwrap()))
        .collect();
    // Transcript offsets where a write may end: the sizes the spool measured, and the cuts.
    let mut writes = Vec::new();
    let mut written = 0usize;
    let mut pieces: Vec<usize> = cuts
        .iter()
        .map(|c| transcript.len() * *c as usize / 10_000)
        .collect();
    pieces.sort_unstable();
    let mut advance = |to: usize, writes: &mut Vec<Write>| {
        let to = to.min(transcript.len());
        let stops: Vec<usize> = pieces
            .iter()
            .copied()
            .filter(|c| *c > written && *c < to)
            .chain([to])
            .collect();
        for cut in stops {
            if cut > written {
                writes.push(Write::Transcript(transcript[written..cut].to_vec()));
                written = cut;
            }
        }
    };
    for line in spool.split_inclusive(|b| *b == b'\n') {
        let v: Option<Value> = serde_json::from_slice(line).ok();
        let measured = v.as_ref().and_then(|v| v["transcript_bytes"].as_u64());
        if let Some(size) = measured {
            advance(size as usize, &mut writes);
        }
        writes.push(Write::Spool(line.to_vec()));
        if let Some(v) = &v
            && v["event"] == "subagentStart"
        {
            for (rel, bytes) in &subagents {
                if rel.contains(v["payload"]["subagent_id"].as_str().unwrap()) {
                    writes.push(Write::Subagent(PathBuf::from(rel), bytes.clone()));
                }
            }
        }
    }
    advance(transcript.len(), &mut writes);
    writes
}

/// Plays `writes` into a fresh root and spool dir, reading after the writes `reads` selects;
/// returns every read's (message id → createdAt) and the final payloads folded the daemon's
/// way, then the final payloads of one read folded export's way.
fn play_files(
    cid: &str,
    writes: &[Write],
    reads: &[bool],
) -> (
    Vec<HashMap<String, i64>>,
    crate::incremental::Outcome,
    crate::incremental::Outcome,
) {
    use opensyncd::fold::Mode;
    use opensyncd::model::SourceId;
    use opensyncd::sources::cursor::read_conversation;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(".cursor");
    let spool_dir = dir.path().join("state/cursor-spool");
    std::fs::create_dir_all(&spool_dir).unwrap();
    let want = expected();
    let main_rel = want[cid]["files"]["main"].as_str().map(str::to_string);
    let append = |path: &Path, bytes: &[u8]| {
        use std::io::Write as _;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(bytes).unwrap();
    };
    let opts = ParseOptions::default();
    let unit = format!("cursor {cid}");
    let mut folded = crate::incremental::Folded::in_ledger();
    let mut state: Option<Value> = None;
    let mut seen = Vec::new();
    let read = |folded: &mut crate::incremental::Folded, state: &mut Option<Value>| {
        let r = read_conversation(&root, &spool_dir, cid, state.as_ref(), opts).unwrap();
        *state = Some(r.state);
        let times = r
            .records
            .iter()
            .filter_map(|rec| match rec {
                Record::Message(m) => Some((m.external_id.clone(), m.created_at.unwrap())),
                _ => None,
            })
            .collect();
        folded.apply_unit(SourceId::Cursor, &unit, Mode::ReplaceSessions, r.records);
        times
    };
    for (i, w) in writes.iter().enumerate() {
        match w {
            Write::Transcript(bytes) => {
                let rel = main_rel
                    .as_deref()
                    .unwrap()
                    .strip_prefix("projects/")
                    .unwrap();
                append(&root.join("projects").join(rel), bytes);
            }
            Write::Spool(bytes) => append(&spool_dir.join(format!("{cid}.jsonl")), bytes),
            Write::Subagent(rel, bytes) => {
                let rel = rel.strip_prefix("projects/").unwrap();
                append(&root.join("projects").join(rel), bytes);
            }
        }
        if reads.get(i).copied().unwrap_or(false) {
            seen.push(read(&mut folded, &mut state));
        }
    }
    seen.push(read(&mut folded, &mut state));
    let stepped = folded.finish(SourceId::Cursor, 0, 0);
    let mut reference = crate::incremental::Folded::in_memory();
    let r = read_conversation(&root, &spool_dir, cid, None, opts).unwrap();
    reference.apply_unit(SourceId::Cursor, &unit, Mode::ReplaceSessions, r.records);
    (seen, stepped, reference.finish(SourceId::Cursor, 0, 0))
}

fn sorted(o: crate::incremental::Outcome) -> BTreeMap<String, (Value, BTreeMap<String, Value>)> {
    o.sessions
        .into_iter()
        .map(|(sid, (session, msgs))| {
            let msgs = msgs
                .into_iter()
                .map(|m| (m.external_id.clone(), serde_json::to_value(m).unwrap()))
                .collect();
            (sid, (serde_json::to_value(session).unwrap(), msgs))
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn fixture_conversations_read_at_any_moment_end_as_one_read(
        which in 0usize..4,
        cuts in proptest::collection::vec(0u32..=10_000, 0..10),
        reads in proptest::collection::vec(any::<bool>(), 0..48),
    ) {
        let cid = [
            "a3c1f0e2-7b44-4d51-9e2a-5f0c8d1b6e73",
            "5c8f2a61-93d4-4e7b-8a1c-0b6d4f9e2c37",
            "9b1e5d3a-6f72-4c08-a4d9-3e8f1b7c2a60",
            "4e9a7c21-0d3b-4f86-b1e5-7a2c9d0f3b58",
        ][which];
        let writes = replay(cid, &cuts);
        let (seen, stepped, reference) = play_files(cid, &writes, &reads);
        // What one read of the final files says (an unchanged unit reads as nothing new).
        let last: HashMap<String, i64> = reference
            .sessions
            .values()
            .flat_map(|(_, msgs)| msgs.iter().map(|m| (m.external_id.clone(), m.created_at.unwrap())))
            .collect();
        for snap in &seen {
            for (id, at) in snap {
                prop_assert_eq!(last.get(id), Some(at), "{} changed or vanished", id);
            }
        }
        prop_assert_eq!(sorted(stepped), sorted(reference));
    }
}

#[test]
fn a_caller_that_keeps_stdin_open_still_gets_its_answer() {
    use std::io::Write;
    let home = TestHome::new();
    for body in [
        payload("beforeSubmitPrompt", json!({"prompt": "p"})),
        Vec::new(),
    ] {
        let mut cmd = home.cmd(&["hook", "cursor", "beforeSubmitPrompt"]);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&body).unwrap();
        stdin.flush().unwrap();
        // `stdin` stays open until the hook has exited.
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert!(out.status.success());
        assert_eq!(out.stdout, b"{\"continue\":true}\n");
    }
    // The complete payload was recorded; the empty one could not be.
    assert_eq!(spool_lines(&home).len(), 1);
}
