//! The truth test: with the server's dedup windows on (its clock and the engine's driven by
//! the test, no real waits), after random interleavings of Claude Code and Codex appends,
//! OpenCode JSON and database rewrites inside and beyond the 5 s window, OpenCode reverts,
//! restarts, kills mid-request, ledger deletion and corruption, `--force`, and switches
//! between transports, the server holds — at every quiet point — exactly what `export`
//! prints, field by field: sessions (createdAt, title, project, model, tokens, cost,
//! duration), messages (role, text, createdAt), parts; no row twice, no part lost.
//!
//! Allowed differences, each a documented property of the server, not of opensyncd: a message
//! an OpenCode revert removed stays on the server (there is no delete route); a message first
//! inserted through `/sync/batch` carries the server's time as `createdAt` (the batch route
//! cannot carry one).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use serde_json::{Value, json};

use opensyncd::clock::Clock;
use opensyncd::config::Config;
use opensyncd::credentials::ApiKey;
use opensyncd::engine::{Engine, LoneFollower, Outcome};
use opensyncd::ledger::Ledger;
use opensyncd::oneshot;
use opensyncd::push::{Client, ClientOptions};
use opensyncd::selection::{Selection, scan_units};
use opensyncd::wiring;

use crate::support::Emulation;

const KEY: &str = "osk_truthModelKey0123456789abcdefghij";
const CLAUDE_SID: &str = "7a7a7a7a-0000-4000-8000-000000000001";
const CODEX_SID: &str = "019e1111-0000-7000-8000-000000000002";
const OC_JSON_SID: &str = "ses_truthjson0001";
const OC_DB_SID: &str = "ses_truthdb00001";

fn rfc3339(ms: i64) -> String {
    // Days from civil (Howard Hinnant), inverted.
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// What the test does.
#[derive(Debug, Clone)]
enum Op {
    /// A Claude Code turn: a prompt and a two-line reply (main transcript or subagent).
    ClaudeTurn { subagent: bool },
    /// A Codex turn: prompt, reply, token count.
    CodexTurn,
    /// OpenCode (JSON tree or database): a new assistant step, finished with `tool-calls`.
    OcNew { db: bool },
    /// OpenCode: the last message gets another step (more text, more tokens).
    OcStep { db: bool },
    /// OpenCode undo: the last message is removed.
    OcRevert { db: bool },
    /// Time passes.
    Advance { ms: u64 },
    /// The daemon does a pass over everything.
    Pass,
    /// The daemon restarts.
    Restart,
    /// The daemon is killed while a request is in flight (the server applied it or not).
    Kill { after: u64, applied: bool },
    /// The ledger is deleted while the daemon is down.
    LoseLedger,
    /// The ledger is overwritten with garbage while the daemon is down.
    CorruptLedger,
    /// `sync --force`.
    Force,
    /// The transport is switched (per-record ↔ batch).
    SwitchTransport,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => any::<bool>().prop_map(|subagent| Op::ClaudeTurn { subagent }),
        3 => Just(Op::CodexTurn),
        3 => any::<bool>().prop_map(|db| Op::OcNew { db }),
        4 => any::<bool>().prop_map(|db| Op::OcStep { db }),
        1 => any::<bool>().prop_map(|db| Op::OcRevert { db }),
        6 => (200u64..12_000).prop_map(|ms| Op::Advance { ms }),
        6 => Just(Op::Pass),
        1 => Just(Op::Restart),
        2 => (0u64..6, any::<bool>()).prop_map(|(after, applied)| Op::Kill { after, applied }),
        1 => Just(Op::LoseLedger),
        1 => Just(Op::CorruptLedger),
        1 => Just(Op::Force),
        1 => Just(Op::SwitchTransport),
    ]
}

/// An OpenCode assistant message: id, created time, steps.
#[derive(Debug, Clone)]
struct OcMessage {
    id: String,
    created: i64,
    steps: u32,
}

struct World {
    dir: tempfile::TempDir,
    clock: Arc<AtomicI64>,
    claude_turns: u32,
    sub_turns: u32,
    codex_turns: u32,
    oc_json: Vec<OcMessage>,
    oc_db: Vec<OcMessage>,
    next_oc: u32,
    /// Messages an OpenCode revert removed (they stay on the server).
    reverted: HashSet<String>,
    /// When each OpenCode session was created (fixed, as OpenCode keeps it).
    oc_created: [Option<i64>; 2],
    batch: bool,
}

impl World {
    fn new(clock: Arc<AtomicI64>) -> World {
        let w = World {
            dir: tempfile::tempdir().unwrap(),
            clock,
            claude_turns: 0,
            sub_turns: 0,
            codex_turns: 0,
            oc_json: Vec::new(),
            oc_db: Vec::new(),
            next_oc: 0,
            reverted: HashSet::new(),
            oc_created: [None; 2],
            batch: false,
        };
        std::fs::create_dir_all(w.opencode()).unwrap();
        w.create_db();
        w
    }

    fn now(&self) -> i64 {
        Clock::shared(self.clock.clone()).now_ms()
    }
    fn claude(&self) -> PathBuf {
        self.dir.path().join("claude")
    }
    fn codex(&self) -> PathBuf {
        self.dir.path().join("codex")
    }
    fn opencode(&self) -> PathBuf {
        self.dir.path().join("opencode")
    }
    fn ledger_dir(&self) -> PathBuf {
        self.dir.path().join("state/ledger")
    }

    fn config(&self) -> Config {
        Config {
            claude_dirs: vec![self.claude().display().to_string()],
            codex_dirs: vec![self.codex().display().to_string()],
            opencode_dirs: vec![self.opencode().display().to_string()],
            sources: vec!["claude-code".into(), "codex-cli".into(), "opencode".into()],
            transport: if self.batch {
                opensyncd::config::Transport::Batch
            } else {
                opensyncd::config::Transport::PerRecord
            },
            ..Config::default()
        }
    }

    fn append(path: &std::path::Path, lines: &[Value]) {
        use std::io::Write;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    }

    fn claude_turn(&mut self, subagent: bool) {
        let project = self.claude().join("projects/-home-dev-truth");
        let (path, n, prefix) = if subagent {
            if self.claude_turns == 0 {
                return; // a subagent runs inside a session that has started
            }
            self.sub_turns += 1;
            (
                project.join(CLAUDE_SID).join("subagents/agent-b2.jsonl"),
                self.sub_turns,
                "s",
            )
        } else {
            self.claude_turns += 1;
            (
                project.join(format!("{CLAUDE_SID}.jsonl")),
                self.claude_turns,
                "m",
            )
        };
        let at = rfc3339(self.now());
        let base = json!({"sessionId": CLAUDE_SID, "timestamp": at, "cwd": "/home/dev/truth",
                          "isSidechain": subagent, "version": "2.1.7"});
        let with = |extra: Value| {
            let mut v = base.clone();
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        let model = if subagent {
            "claude-haiku-4-5-20251001"
        } else {
            "claude-sonnet-4-5-20250929"
        };
        let usage = |out: u64| {
            json!({"input_tokens": 20 + u64::from(n), "cache_read_input_tokens": 5000,
                   "cache_creation_input_tokens": 300, "output_tokens": out})
        };
        Self::append(
            &path,
            &[
                with(json!({"type": "user", "uuid": format!("{prefix}-u{n}"),
                    "message": {"role": "user", "content": format!("{prefix} question {n}")}})),
                with(
                    json!({"type": "assistant", "uuid": format!("{prefix}-a{n}"),
                    "requestId": format!("req-{prefix}-{n}"),
                    "message": {"id": format!("msg-{prefix}-{n}"), "role": "assistant", "model": model,
                        "content": [{"type": "text", "text": format!("{prefix} answer {n}")}], "usage": usage(2)}}),
                ),
                with(
                    json!({"type": "assistant", "uuid": format!("{prefix}-t{n}"),
                    "requestId": format!("req-{prefix}-{n}"),
                    "message": {"id": format!("msg-{prefix}-{n}"), "role": "assistant", "model": model,
                        "content": [{"type": "tool_use", "id": format!("tu-{prefix}-{n}"), "name": "Bash",
                                     "input": {"command": format!("ls {n}")}}], "usage": usage(60 + u64::from(n))}}),
                ),
                with(json!({"type": "user", "uuid": format!("{prefix}-r{n}"),
                    "message": {"role": "user", "content": [{"type": "tool_result",
                        "tool_use_id": format!("tu-{prefix}-{n}"), "content": if n % 3 == 0 { "" } else { "file.txt" }}]}})),
            ],
        );
    }

    fn codex_turn(&mut self) {
        let path = self.codex().join(format!(
            "sessions/2026/12/06/rollout-2026-12-06T00-00-00-{CODEX_SID}.jsonl"
        ));
        let at = rfc3339(self.now());
        let mut lines = Vec::new();
        if self.codex_turns == 0 {
            lines.push(json!({"timestamp": at, "type": "session_meta", "payload": {
                "id": CODEX_SID, "timestamp": at, "cwd": "/home/dev/codex", "cli_version": "0.125.0"}}));
            lines.push(json!({"timestamp": at, "type": "turn_context", "payload": {"model": "gpt-5.1-codex"}}));
        }
        self.codex_turns += 1;
        let n = u64::from(self.codex_turns);
        lines.push(
            json!({"timestamp": at, "type": "event_msg", "payload": {"type": "user_message",
            "message": format!("codex task {n}"), "kind": "plain"}}),
        );
        lines.push(json!({"timestamp": at, "type": "response_item", "payload": {"type": "custom_tool_call",
            "call_id": format!("c{n}"), "name": "apply_patch",
            "input": format!("*** Begin Patch\n*** Update File: a{n}.rs\n+line {n}\n*** End Patch")}}));
        lines.push(
            json!({"timestamp": at, "type": "event_msg", "payload": {"type": "agent_message",
            "message": format!("done {n}")}}),
        );
        lines.push(json!({"timestamp": at, "type": "response_item", "payload": {"type": "message",
            "role": "assistant", "content": [{"type": "output_text", "text": format!("done {n}")}]}}));
        lines.push(json!({"timestamp": at, "type": "event_msg", "payload": {"type": "token_count",
            "info": {"total_token_usage": {"input_tokens": 10_000 * n, "cached_input_tokens": 6_000 * n,
                "output_tokens": 300 * n, "reasoning_output_tokens": 100 * n, "total_tokens": 10_300 * n}}}}));
        Self::append(&path, &lines);
    }

    fn oc_message_json(&self, sid: &str, m: &OcMessage) -> Value {
        let steps = u64::from(m.steps);
        json!({"role": "assistant", "sessionID": sid, "modelID": "claude-sonnet-4-5",
               "providerID": "anthropic",
               "time": {"created": m.created, "completed": m.created + 100},
               "finish": "tool-calls", "cost": 0.001 * steps as f64,
               "tokens": {"input": 100 * steps, "output": 40 * steps, "reasoning": 0,
                          "cache": {"read": 1000 * steps, "write": 0}}})
    }

    fn oc_parts(m: &OcMessage) -> Vec<(String, Value)> {
        (1..=m.steps)
            .map(|k| {
                (
                    format!("prt_{}_{k:03}", &m.id[4..]),
                    json!({"type": "text", "text": format!("step {k} of {}", m.id)}),
                )
            })
            .collect()
    }

    fn write_oc_json(&self) {
        let storage = self.opencode().join("storage");
        let info = storage.join("session/global");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(
            info.join(format!("{OC_JSON_SID}.json")),
            json!({"id": OC_JSON_SID, "directory": "/home/dev/oc", "title": "OpenCode JSON",
                   "time": {"created": self.oc_created[0].unwrap_or_else(|| self.now()),
                            "updated": self.now()}})
            .to_string(),
        )
        .unwrap();
        let messages = storage.join("message").join(OC_JSON_SID);
        let _ = std::fs::remove_dir_all(&messages);
        std::fs::create_dir_all(&messages).unwrap();
        for m in &self.oc_json {
            let mut v = self.oc_message_json(OC_JSON_SID, m);
            v["id"] = json!(m.id);
            std::fs::write(messages.join(format!("{}.json", m.id)), v.to_string()).unwrap();
            let parts = storage.join("part").join(&m.id);
            let _ = std::fs::remove_dir_all(&parts);
            std::fs::create_dir_all(&parts).unwrap();
            for (pid, mut p) in Self::oc_parts(m) {
                p["id"] = json!(pid);
                p["messageID"] = json!(m.id);
                p["sessionID"] = json!(OC_JSON_SID);
                std::fs::write(parts.join(format!("{pid}.json")), p.to_string()).unwrap();
            }
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.opencode().join("opencode.db")).unwrap()
    }

    fn create_db(&self) {
        self.db()
            .execute_batch(
                "PRAGMA journal_mode=WAL;
                 CREATE TABLE session (id TEXT PRIMARY KEY, parent_id TEXT, directory TEXT, title TEXT, time_created INTEGER, time_updated INTEGER);
                 CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);
                 CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);",
            )
            .unwrap();
    }

    /// Writes the database session as OpenCode does: rows upserted with `time_updated = now`,
    /// removed rows deleted (a revert).
    fn write_oc_db(&self) {
        let now = self.now();
        let db = self.db();
        let created = self.oc_created[1].unwrap_or(now);
        db.execute(
            "INSERT INTO session (id, directory, title, time_created, time_updated) VALUES (?1, '/home/dev/ocdb', 'OpenCode DB', ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET time_updated = excluded.time_updated",
            rusqlite::params![OC_DB_SID, created, now],
        )
        .unwrap();
        let keep: BTreeSet<String> = self.oc_db.iter().map(|m| m.id.clone()).collect();
        let existing: Vec<String> = {
            let mut st = db
                .prepare("SELECT id FROM message WHERE session_id = ?1")
                .unwrap();
            st.query_map([OC_DB_SID], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        for id in existing.iter().filter(|id| !keep.contains(*id)) {
            db.execute("DELETE FROM message WHERE id = ?1", [id])
                .unwrap();
            db.execute("DELETE FROM part WHERE message_id = ?1", [id])
                .unwrap();
        }
        for m in &self.oc_db {
            let data = self.oc_message_json(OC_DB_SID, m).to_string();
            db.execute(
                "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(id) DO UPDATE SET time_updated = excluded.time_updated, data = excluded.data",
                rusqlite::params![m.id, OC_DB_SID, m.created, now, data],
            )
            .unwrap();
            for (pid, p) in Self::oc_parts(m) {
                db.execute(
                    "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO NOTHING",
                    rusqlite::params![pid, m.id, OC_DB_SID, m.created, now, p.to_string()],
                )
                .unwrap();
            }
        }
    }

    fn oc(&mut self, db: bool) -> &mut Vec<OcMessage> {
        let now = self.now();
        self.oc_created[usize::from(db)].get_or_insert(now);
        if db {
            &mut self.oc_db
        } else {
            &mut self.oc_json
        }
    }

    fn oc_changed(&self, db: bool) {
        if db {
            self.write_oc_db()
        } else {
            self.write_oc_json()
        }
    }
}

struct Daemon {
    engine: Engine,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Daemon {
    fn start(world: &World, emu: &Emulation) -> Daemon {
        let (ledger, _) = Ledger::open(&world.ledger_dir()).unwrap();
        let client = Client::new(ClientOptions {
            url: emu.url(),
            api_key: ApiKey::parse(KEY).unwrap(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let engine = wiring::build_engine(
            &world.config(),
            ledger,
            Some(client),
            stop_rx,
            Clock::shared(world.clock.clone()),
        )
        .unwrap();
        Daemon { engine, stop }
    }

    async fn pass(&self, world: &World, force: bool) {
        let cfg = world.config();
        let roots = cfg.roots(&|_| None);
        let selection = Selection {
            force,
            ..Selection::default()
        };
        let units = scan_units(
            &self.engine.ledger,
            &roots,
            &cfg.enabled_sources(),
            &selection,
        )
        .unwrap();
        for unit in units {
            let outcome = self
                .engine
                .process_unit(&unit, LoneFollower::Wait)
                .await
                .unwrap();
            assert!(
                matches!(outcome, Outcome::Done | Outcome::Waiting { .. }),
                "{}: {outcome:?}",
                unit.describe()
            );
        }
        assert_eq!(self.engine.flush_deferred().await.unwrap(), Outcome::Done);
    }
}

/// Everything quiet: the windows passed, every deferred write sent.
fn quiet(world: &World, daemon: &Daemon, rt: &tokio::runtime::Runtime) {
    for _ in 0..3 {
        world.clock.fetch_add(12_000, Ordering::Relaxed);
        rt.block_on(daemon.pass(world, false));
    }
    assert_eq!(
        daemon.engine.ledger.deferred_count(),
        0,
        "deferred writes left at a quiet point"
    );
}

/// The server holds exactly what `export` prints.
fn check(world: &World, emu: &Emulation) -> Result<(), TestCaseError> {
    let user = emu.default_user();
    prop_assert!(
        emu.duplicate_rows().is_empty(),
        "duplicates: {:?}",
        emu.duplicate_rows()
    );
    let batched: HashSet<String> = emu
        .requests()
        .iter()
        .filter(|r| r.path == "/sync/batch")
        .filter_map(|r| r.body.as_ref()?.get("messages")?.as_array().cloned())
        .flatten()
        .filter_map(|m| m["externalId"].as_str().map(str::to_string))
        .collect();
    let mut exported = Vec::new();
    oneshot::export(&world.config(), &[], None, &mut |e| {
        exported.push(e);
        Ok(())
    })
    .unwrap();
    for e in exported {
        let sid = &e.session.external_id;
        let stored = emu.session(user, sid);
        prop_assert!(stored.is_some(), "{} is not on the server", sid);
        let stored = stored.unwrap();
        let s = &e.session;
        prop_assert_eq!(Some(stored.created_at), s.created_at, "{} createdAt", sid);
        // The server never clears a field (an absent value or a 0 keeps the old one): where
        // export has nothing, whatever the server kept is right.
        fn same<T: PartialEq + std::fmt::Debug>(held: Option<T>, want: Option<T>) -> bool {
            want.is_none() || held == want
        }
        prop_assert!(
            same(stored.title.as_ref(), s.title.as_ref()),
            "{} title {:?} vs {:?}",
            sid,
            stored.title,
            s.title
        );
        prop_assert!(
            same(stored.project_path.as_ref(), s.project_path.as_ref()),
            "{} projectPath",
            sid
        );
        prop_assert!(
            same(stored.project_name.as_ref(), s.project_name.as_ref()),
            "{} projectName",
            sid
        );
        prop_assert!(
            same(stored.model.as_ref(), s.model.as_ref()),
            "{} model {:?} vs {:?}",
            sid,
            stored.model,
            s.model
        );
        prop_assert_eq!(
            stored.source.as_deref(),
            Some(s.source.as_str()),
            "{} source",
            sid
        );
        prop_assert!(
            same(Some(stored.prompt_tokens), s.prompt_tokens),
            "{} promptTokens {} vs {:?}",
            sid,
            stored.prompt_tokens,
            s.prompt_tokens
        );
        prop_assert!(
            same(Some(stored.completion_tokens), s.completion_tokens),
            "{} completionTokens {} vs {:?}",
            sid,
            stored.completion_tokens,
            s.completion_tokens
        );
        if let Some(cost) = s.cost {
            prop_assert!(
                (stored.cost - cost).abs() < 1e-9,
                "{} cost {} vs {}",
                sid,
                stored.cost,
                cost
            );
        }
        prop_assert!(
            same(stored.duration_ms, s.duration_ms),
            "{} durationMs {:?} vs {:?}",
            sid,
            stored.duration_ms,
            s.duration_ms
        );
        let rows = emu.messages_of_session(user, sid);
        let want: BTreeMap<&str, &opensyncd::model::MessagePayload> = e
            .messages
            .iter()
            .map(|m| (m.external_id.as_str(), m))
            .collect();
        for row in &rows {
            prop_assert!(
                want.contains_key(row.external_id.as_str())
                    || world.reverted.contains(&row.external_id),
                "{} holds {} which export does not print",
                sid,
                row.external_id
            );
        }
        for m in &e.messages {
            let row = rows.iter().find(|r| r.external_id == m.external_id);
            prop_assert!(
                row.is_some(),
                "{} is missing message {}",
                sid,
                m.external_id
            );
            let row = row.unwrap();
            let role = serde_json::to_value(m.role).unwrap();
            prop_assert_eq!(
                Some(row.role.as_str()),
                role.as_str(),
                "role of {}",
                m.external_id
            );
            prop_assert_eq!(
                &row.text_content,
                &m.text_content,
                "text of {}",
                m.external_id
            );
            if !batched.contains(&m.external_id) {
                prop_assert_eq!(
                    Some(row.created_at),
                    m.created_at,
                    "createdAt of {}",
                    m.external_id
                );
            }
            let parts: Vec<(String, Value)> = row
                .parts
                .iter()
                .map(|p| (p.kind.clone(), p.content.clone()))
                .collect();
            let want_parts: Vec<(String, Value)> = m
                .parts
                .iter()
                .map(|p| (p.kind.clone(), p.content.clone()))
                .collect();
            prop_assert_eq!(parts, want_parts, "parts of {}", m.external_id);
        }
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let emu = Emulation::with_key(KEY);
    let clock = emu.clock();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut world = World::new(clock.clone());
    let mut daemon = Daemon::start(&world, &emu);
    for op in ops {
        match op {
            Op::ClaudeTurn { subagent } => world.claude_turn(subagent),
            Op::CodexTurn => world.codex_turn(),
            Op::OcNew { db } => {
                world.next_oc += 1;
                let m = OcMessage {
                    id: format!("msg_{:012}", world.next_oc),
                    created: world.now(),
                    steps: 1,
                };
                world.oc(db).push(m);
                world.oc_changed(db);
            }
            Op::OcStep { db } => {
                if let Some(m) = world.oc(db).last_mut() {
                    m.steps += 1;
                    world.oc_changed(db);
                }
            }
            Op::OcRevert { db } => {
                if let Some(m) = world.oc(db).pop() {
                    world.reverted.insert(m.id);
                    world.oc_changed(db);
                }
            }
            Op::Advance { ms } => {
                clock.fetch_add(ms as i64, Ordering::Relaxed);
            }
            Op::Pass => rt.block_on(daemon.pass(&world, false)),
            Op::Restart => {
                drop(daemon);
                daemon = Daemon::start(&world, &emu);
            }
            Op::Kill { after, applied } => {
                let hung = emu.hang_after(after, applied);
                rt.block_on(async {
                    tokio::select! {
                        _ = daemon.pass(&world, false) => {}
                        _ = hung.notified() => {}
                    }
                });
                emu.clear_hang();
                let _ = daemon.stop.send(true);
                drop(daemon);
                daemon = Daemon::start(&world, &emu);
            }
            Op::LoseLedger => {
                drop(daemon);
                std::fs::remove_dir_all(world.ledger_dir()).unwrap();
                daemon = Daemon::start(&world, &emu);
                rt.block_on(daemon.engine.reconcile()).unwrap();
            }
            Op::CorruptLedger => {
                drop(daemon);
                std::fs::write(world.ledger_dir().join("db"), vec![0x5a; 4096]).unwrap();
                daemon = Daemon::start(&world, &emu);
                rt.block_on(daemon.engine.reconcile()).unwrap();
            }
            Op::Force => rt.block_on(daemon.pass(&world, true)),
            Op::SwitchTransport => {
                world.batch = !world.batch;
                drop(daemon);
                daemon = Daemon::start(&world, &emu);
            }
        }
    }
    quiet(&world, &daemon, &rt);
    check(&world, &emu)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, ..ProptestConfig::default() })]

    #[test]
    fn at_every_quiet_point_the_server_equals_export(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}

/// OpenCode's multi-step reply: sent after step 1, rewritten 3 s later — inside the server's
/// 5 s window, where the update would be skipped. The final text must reach the server.
#[test]
fn an_opencode_step_inside_the_window_reaches_the_server() {
    run(vec![
        Op::OcNew { db: false },
        Op::Pass,
        Op::Advance { ms: 3_000 },
        Op::OcStep { db: false },
        Op::Pass,
    ])
    .unwrap();
}

/// The same for the database.
#[test]
fn an_opencode_database_step_inside_the_window_reaches_the_server() {
    run(vec![
        Op::OcNew { db: true },
        Op::Pass,
        Op::Advance { ms: 2_000 },
        Op::OcStep { db: true },
        Op::Pass,
    ])
    .unwrap();
}

/// An undo in OpenCode takes the removed turn's tokens and cost out of the totals.
#[test]
fn an_opencode_revert_retracts_its_tokens() {
    run(vec![
        Op::OcNew { db: false },
        Op::Advance { ms: 6_000 },
        Op::OcNew { db: false },
        Op::Pass,
        Op::Advance { ms: 12_000 },
        Op::OcRevert { db: false },
        Op::Pass,
    ])
    .unwrap();
}

/// Undoing the only turn leaves the session with 0 tokens, which the server never writes (it
/// keeps the old totals); the next turn brings the tokens back to what the server holds, so
/// that write changes only cost and duration and falls in the server's 10 s window — it must
/// still arrive, not be counted as applied.
#[test]
fn a_turn_after_undoing_everything_reaches_the_server() {
    run(vec![
        Op::OcNew { db: false },
        Op::Pass,
        Op::Advance { ms: 2_000 },
        Op::OcRevert { db: false },
        Op::Pass,
        Op::Advance { ms: 3_000 },
        Op::OcNew { db: false },
        Op::Pass,
    ])
    .unwrap();
}

/// The same after `--force`: the re-created session's state on the server is not known for
/// sure, so the next turn's write inside the window is confirmed after it.
#[test]
fn a_turn_after_undoing_everything_and_forcing_reaches_the_server() {
    run(vec![
        Op::OcNew { db: false },
        Op::Pass,
        Op::Advance { ms: 1_000 },
        Op::OcRevert { db: false },
        Op::Force,
        Op::Advance { ms: 2_000 },
        Op::OcNew { db: false },
    ])
    .unwrap();
}

/// `sync --force` right after a message's second step: the server holds the message (created
/// at its first step) and skips updates for 5 s, so the re-send of the forgotten message waits
/// for that window instead of being sent as if new and dropped.
#[test]
fn a_step_inside_the_window_then_force_reaches_the_server() {
    run(vec![
        Op::Advance { ms: 200 },
        Op::OcNew { db: false },
        Op::Pass,
        Op::OcStep { db: false },
        Op::Force,
    ])
    .unwrap();
}

/// A session emptied by a revert, then the ledger lost, then a new message 10 s later: the
/// session's duration on the server is the one `export` prints.
#[test]
fn a_new_message_after_a_revert_and_a_lost_ledger_updates_the_duration() {
    run(vec![
        Op::OcNew { db: false },
        Op::Pass,
        Op::OcRevert { db: false },
        Op::LoseLedger,
        Op::Advance { ms: 9_998 },
        Op::Pass,
        Op::OcNew { db: false },
    ])
    .unwrap();
}

/// A session re-created after a lost ledger inside the 10 s window still ends right.
#[test]
fn a_lost_ledger_inside_the_session_window_converges() {
    run(vec![
        Op::ClaudeTurn { subagent: false },
        Op::Pass,
        Op::ClaudeTurn { subagent: false },
        Op::LoseLedger,
        Op::Pass,
    ])
    .unwrap();
}

/// Claude Code 2.0 writes its warmup subagent before the first prompt, so the daemon sees a
/// subagent file whose session has no main transcript yet: it waits for it, and the session is
/// created from the main transcript (its start, its title), as `export` prints it.
#[test]
fn a_subagent_written_before_its_main_transcript_waits_for_it() {
    let emu = Emulation::with_key(KEY);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut world = World::new(emu.clock());
    let daemon = Daemon::start(&world, &emu);
    // The warmup: a subagent line, written while the main transcript does not exist.
    world.claude_turns = 1; // lets `claude_turn` write a subagent file
    world.claude_turn(true);
    world.claude_turns = 0;
    rt.block_on(daemon.pass(&world, false));
    assert!(
        emu.session(emu.default_user(), CLAUDE_SID).is_none(),
        "the session waits for its main transcript"
    );
    emu.advance_clock(Duration::from_secs(8));
    world.claude_turn(false);
    quiet(&world, &daemon, &rt);
    check(&world, &emu).unwrap();
    let stored = emu.session(emu.default_user(), CLAUDE_SID).unwrap();
    assert_eq!(stored.title.as_deref(), Some("m question 1"));
}
