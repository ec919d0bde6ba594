//! One fold, checked as a model: after any sequence of appends (mid-line too), rewrites,
//! truncations, deletions, OpenCode rewrites and reverts, restarts and aborted passes, the
//! daemon's per-session state — the fold as its ledger holds it, and the cached state of each
//! session record — equals what `export` folds from the files as they are now, for every
//! session `export` prints; and the server holds `export`'s totals.
//!
//! The daemon side is the real engine (`Engine::process_unit` over `selection::scan_units`,
//! ledger on disk, the emulated server); the export side is `oneshot::export`. Nothing here
//! recomputes a fold: the two production paths are compared with each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use opensyncd::config::Config;
use opensyncd::credentials::ApiKey;
use opensyncd::engine::{Engine, LoneFollower, Outcome};
use opensyncd::fold::{self, SessionState};
use opensyncd::ledger::{Ledger, LedgerStore};
use opensyncd::model::SourceId;
use opensyncd::oneshot;
use opensyncd::push::{Client, ClientOptions};
use opensyncd::selection::{Selection, scan_units};
use opensyncd::wiring;

use crate::support::Emulation;

const KEY: &str = "osk_foldPropertyKey0123456789abcdefgh";
/// 2026-01-01T00:00:00Z.
const BASE_MS: i64 = 1_767_225_600_000;

fn ts(offset_ms: i64) -> String {
    let (h, rest) = (offset_ms / 3_600_000, offset_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("2026-01-01T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

/// The append-only files of the world and how each line of each version reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    ClaudeMain,
    ClaudeSub,
    Codex,
}

const FILES: [FileKind; 3] = [FileKind::ClaudeMain, FileKind::ClaudeSub, FileKind::Codex];
const SESSION: &str = "1c2d3e4f-0000-4000-8000-00000000000a";
const ROLLOUT: &str = "019e0000-0000-7000-8000-0000000000aa";

/// Line `i` of version `v` of a file. Versions share ids and start times; later versions
/// carry different text and usage (a rewritten file).
fn line(kind: FileKind, v: u32, i: usize) -> String {
    let i64i = i as i64;
    let v64 = u64::from(v);
    match kind {
        FileKind::ClaudeMain | FileKind::ClaudeSub => {
            let sub = kind == FileKind::ClaudeSub;
            let prefix = if sub { "s" } else { "m" };
            // The subagent runs after the main transcript started.
            // A rewrite keeps each line's time (the server fixes a session's start at insert).
            let at = ts(if sub { 60_000 } else { 0 } + i64i * 1000);
            let envelope = |extra: serde_json::Value| {
                let mut base = json!({
                    "uuid": format!("{prefix}-{i}"), "sessionId": SESSION, "timestamp": at,
                    "cwd": "/home/dev/proj", "isSidechain": sub, "version": "2.1.7",
                });
                if sub {
                    base["agentId"] = json!("a1");
                }
                for (k, val) in extra.as_object().unwrap() {
                    base[k] = val.clone();
                }
                base.to_string()
            };
            match i % 3 {
                0 => envelope(json!({
                    "type": "user",
                    "message": {"role": "user", "content": format!("{prefix} prompt {i} v{v}")}
                })),
                1 => envelope(json!({
                    "type": "assistant", "requestId": format!("req-{prefix}-{}", i / 3),
                    "message": {
                        "id": format!("msg-{prefix}-{}", i / 3), "role": "assistant",
                        "model": if sub { "claude-haiku-4-5-20251001" } else { "claude-sonnet-4-5-20250929" },
                        "content": [{"type": "text", "text": format!("answer {i} v{v}")}],
                        "usage": {"input_tokens": 10 + v64, "cache_read_input_tokens": 1000,
                                  "cache_creation_input_tokens": 50, "output_tokens": 3}
                    }
                })),
                // The last line of the same API call: its output count is the final one.
                _ => envelope(json!({
                    "type": "assistant", "requestId": format!("req-{prefix}-{}", i / 3),
                    "message": {
                        "id": format!("msg-{prefix}-{}", i / 3), "role": "assistant",
                        "model": if sub { "claude-haiku-4-5-20251001" } else { "claude-sonnet-4-5-20250929" },
                        "content": [{"type": "tool_use", "id": format!("tu-{prefix}-{i}"),
                                     "name": "Read", "input": {"file_path": "/x"}}],
                        "usage": {"input_tokens": 10 + v64, "cache_read_input_tokens": 1000,
                                  "cache_creation_input_tokens": 50,
                                  "output_tokens": 40 + 7 * (i as u64) + v64}
                    }
                })),
            }
        }
        FileKind::Codex => {
            let at = ts(120_000 + i64i * 1000);
            match i {
                0 => json!({"timestamp": at, "type": "session_meta", "payload": {
                    "id": ROLLOUT, "timestamp": at, "cwd": "/home/dev/codex", "cli_version": "0.125.0"}})
                .to_string(),
                1 => json!({"timestamp": at, "type": "turn_context", "payload": {"model": "gpt-5.1-codex"}})
                    .to_string(),
                _ if i.is_multiple_of(2) => json!({"timestamp": at, "type": "event_msg", "payload": {
                    "type": "agent_message", "message": format!("codex says {i} v{v}")}})
                .to_string(),
                _ => {
                    let n = i as u64;
                    json!({"timestamp": at, "type": "event_msg", "payload": {"type": "token_count",
                        "info": {"total_token_usage": {"input_tokens": 1000 * n + v64,
                            "cached_input_tokens": 500 * n, "output_tokens": 20 * n + v64,
                            "reasoning_output_tokens": 0, "total_tokens": 1020 * n + 2 * v64}}}})
                    .to_string()
                }
            }
        }
    }
}

/// One file's state in the world.
#[derive(Debug, Clone)]
struct File {
    kind: FileKind,
    version: u32,
    /// Complete lines written.
    lines: usize,
    /// Bytes of the next line already written (a partial last line).
    partial: usize,
    exists: bool,
}

/// An OpenCode assistant message: (tokens in, tokens out, cost).
type OcMessage = (u64, u64, f64);

/// Everything the test does.
#[derive(Debug, Clone)]
enum Op {
    Append {
        file: usize,
        lines: usize,
        partial: bool,
    },
    Rewrite {
        file: usize,
        version: u32,
    },
    Truncate {
        file: usize,
        keep: usize,
    },
    Delete {
        file: usize,
    },
    OcSet {
        message: usize,
        tokens: u64,
    },
    OcRevert {
        message: usize,
    },
    Sync,
    Restart,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 1..5usize, any::<bool>()).prop_map(|(file, lines, partial)| Op::Append { file, lines, partial }),
        2 => (0..3usize, 1..4u32).prop_map(|(file, version)| Op::Rewrite { file, version }),
        1 => (0..3usize, 0..6usize).prop_map(|(file, keep)| Op::Truncate { file, keep }),
        1 => (0..3usize).prop_map(|file| Op::Delete { file }),
        2 => (0..4usize, 1..500u64).prop_map(|(message, tokens)| Op::OcSet { message, tokens }),
        1 => (0..4usize).prop_map(|message| Op::OcRevert { message }),
        4 => Just(Op::Sync),
        1 => Just(Op::Restart),
        1 => Just(Op::Abort),
    ]
}

struct World {
    dir: tempfile::TempDir,
    files: Vec<File>,
    oc: BTreeMap<usize, OcMessage>,
    /// A file was deleted at some point: what the server holds of its session is then allowed
    /// to keep more than `export` shows (a deletion takes nothing from the dashboard).
    deleted: [bool; 3],
    /// A file was truncated at some point: the server may then hold an earlier `createdAt`
    /// than `export` shows (it never changes `createdAt` after insert).
    truncated: [bool; 3],
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let world = World {
            dir,
            files: FILES
                .iter()
                .map(|&kind| File {
                    kind,
                    version: 0,
                    lines: 0,
                    partial: 0,
                    exists: false,
                })
                .collect(),
            oc: BTreeMap::new(),
            deleted: [false; 3],
            truncated: [false; 3],
        };
        std::fs::create_dir_all(world.oc_storage()).unwrap();
        world
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
    fn oc_storage(&self) -> PathBuf {
        self.opencode().join("storage")
    }

    fn path(&self, kind: FileKind) -> PathBuf {
        let project = self.claude().join("projects/-home-dev-proj");
        match kind {
            FileKind::ClaudeMain => project.join(format!("{SESSION}.jsonl")),
            FileKind::ClaudeSub => project.join(SESSION).join("subagents/agent-a1.jsonl"),
            FileKind::Codex => self.codex().join(format!(
                "sessions/2026/01/01/rollout-2026-01-01T00-02-00-{ROLLOUT}.jsonl"
            )),
        }
    }

    /// Writes a file as its state says (whole, atomically: a rewrite replaces the inode).
    fn write(&self, f: &File) {
        let path = self.path(f.kind);
        if !f.exists {
            let _ = std::fs::remove_file(&path);
            return;
        }
        let mut text = String::new();
        for i in 0..f.lines {
            text.push_str(&line(f.kind, f.version, i));
            text.push('\n');
        }
        let next = line(f.kind, f.version, f.lines);
        text.push_str(&next[..f.partial.min(next.len())]);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Appends to a file in place (what the tools do).
    fn append(&mut self, i: usize, lines: usize, partial: bool) {
        use std::io::Write;
        let path = self.path(self.files[i].kind);
        let f = &mut self.files[i];
        if !f.exists {
            f.exists = true;
            f.lines = 0;
            f.partial = 0;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        for _ in 0..lines {
            let next = line(f.kind, f.version, f.lines);
            out.write_all(&next.as_bytes()[f.partial.min(next.len())..])
                .unwrap();
            out.write_all(b"\n").unwrap();
            f.lines += 1;
            f.partial = 0;
        }
        if partial {
            let next = line(f.kind, f.version, f.lines);
            let cut = next.len() / 2;
            out.write_all(&next.as_bytes()[..cut]).unwrap();
            f.partial = cut;
        }
    }

    fn write_opencode(&self) {
        let storage = self.oc_storage();
        let sid = "ses_fold0001";
        let project = storage.join("session/global");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join(format!("{sid}.json")),
            json!({"id": sid, "directory": "/home/dev/oc", "title": "OpenCode work",
                   "time": {"created": BASE_MS + 300_000, "updated": BASE_MS + 301_000}})
            .to_string(),
        )
        .unwrap();
        let messages = storage.join("message").join(sid);
        let _ = std::fs::remove_dir_all(&messages);
        std::fs::create_dir_all(&messages).unwrap();
        for (&n, &(input, output, cost)) in &self.oc {
            let id = format!("msg_{n:012}");
            let created = BASE_MS + 300_000 + n as i64 * 1000;
            std::fs::write(
                messages.join(format!("{id}.json")),
                json!({"id": id, "sessionID": sid, "role": "assistant", "modelID": "gpt-5.1",
                       "providerID": "openai", "time": {"created": created, "completed": created + 500},
                       "cost": cost, "finish": "stop",
                       "tokens": {"input": input, "output": output, "reasoning": 0,
                                  "cache": {"read": 0, "write": 0}}})
                .to_string(),
            )
            .unwrap();
            let parts = storage.join("part").join(&id);
            std::fs::create_dir_all(&parts).unwrap();
            std::fs::write(
                parts.join("prt_000000000001.json"),
                json!({"id": "prt_000000000001", "sessionID": sid, "messageID": id,
                       "type": "text", "text": format!("opencode answer {n} ({input})")})
                .to_string(),
            )
            .unwrap();
        }
    }

    fn config(&self) -> Config {
        Config {
            claude_dirs: vec![self.claude().display().to_string()],
            codex_dirs: vec![self.codex().display().to_string()],
            opencode_dirs: vec![self.opencode().display().to_string()],
            sources: vec!["claude-code".into(), "codex-cli".into(), "opencode".into()],
            ..Config::default()
        }
    }
}

/// The daemon side: an engine over a ledger on disk, talking to the emulation.
struct Daemon {
    engine: Engine,
    stop: tokio::sync::watch::Sender<bool>,
    /// The engine's clock offset: each pass comes long enough after the last that a subagent
    /// file waiting for its main transcript (`engine::ORPHAN_WAIT`) is read. It outlives a
    /// restart: time does not run backwards for the next process.
    clock: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Daemon {
    fn start(
        world: &World,
        emu: &Emulation,
        clock: &std::sync::Arc<std::sync::atomic::AtomicI64>,
    ) -> Daemon {
        let (ledger, _) = Ledger::open(&world.dir.path().join("state/ledger")).unwrap();
        let client = Client::new(ClientOptions {
            url: emu.url(),
            api_key: ApiKey::parse(KEY).unwrap(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let clock = clock.clone();
        let engine = wiring::build_engine(
            &world.config(),
            ledger,
            Some(client),
            stop_rx,
            opensyncd::clock::Clock::shared(clock.clone()),
        )
        .unwrap();
        Daemon {
            engine,
            stop,
            clock,
        }
    }

    /// One pass over everything the scan selects; with `abort`, the pass is stopped before
    /// anything is sent (nothing may be committed).
    fn pass(&self, world: &World, rt: &tokio::runtime::Runtime, abort: bool) {
        let wait = opensyncd::engine::ORPHAN_WAIT.as_millis() as i64 + 1_000;
        self.clock
            .fetch_add(wait, std::sync::atomic::Ordering::Relaxed);
        let cfg = world.config();
        let roots = cfg.roots(&|_| None);
        let units = scan_units(
            &self.engine.ledger,
            &roots,
            &cfg.enabled_sources(),
            &Selection::default(),
        )
        .unwrap();
        self.stop.send_replace(abort);
        for unit in units {
            let outcome = rt
                .block_on(self.engine.process_unit(&unit, LoneFollower::Wait))
                .unwrap();
            let want = if abort {
                Outcome::Stopped
            } else {
                Outcome::Done
            };
            assert_eq!(outcome, want, "{}", unit.describe());
        }
        self.stop.send_replace(false);
        if !abort {
            // A quiet point: the writes held back for the server's windows (the client keeps
            // to them even though this emulation's are off) are due, and sent. A second more
            // than the window: the clock is the driven offset plus real time, and a write
            // made during the pass is due a window after it.
            let window = opensyncd::deliver::SESSION_WINDOW_MS
                + opensyncd::deliver::WINDOW_MARGIN_MS
                + 1_000;
            self.clock
                .fetch_add(window, std::sync::atomic::Ordering::Relaxed);
            let flushed = rt.block_on(self.engine.flush_deferred()).unwrap();
            assert_eq!(flushed, Outcome::Done);
        }
    }

    /// The fold state of a session as the ledger holds it, and the session record's cache.
    fn states(&self, source: SourceId, sid: &str) -> (SessionState, Option<SessionState>) {
        let ledger = &self.engine.ledger;
        let folded = fold::session_state(&mut LedgerStore::new(ledger), source, sid);
        let cached = ledger
            .session(&fold::session_key(source, sid))
            .unwrap()
            .map(|r| r.state);
        (folded, cached)
    }
}

fn export(world: &World) -> Vec<oneshot::Exported> {
    let mut out = Vec::new();
    oneshot::export(&world.config(), &[], None, &mut |e| {
        out.push(e);
        Ok(())
    })
    .unwrap();
    out
}

/// The daemon's state equals export's for every session export prints; the server holds
/// export's totals and start times.
fn check(world: &World, daemon: &Daemon, emu: &Emulation) -> Result<(), TestCaseError> {
    for e in export(world) {
        let (folded, cached) = daemon.states(e.state.source, &e.state.session_id);
        prop_assert_eq!(
            &folded,
            &e.state,
            "ledger fold vs export: {}",
            e.state.session_id
        );
        prop_assert_eq!(cached.as_ref(), Some(&e.state), "session record cache");
        let had_deletion = match e.state.source {
            SourceId::ClaudeCode => world.deleted[0] || world.deleted[1],
            SourceId::CodexCli => world.deleted[2],
            _ => false,
        };
        if had_deletion {
            continue;
        }
        let stored = emu
            .session(emu.default_user(), &e.session.external_id)
            .unwrap_or_else(|| panic!("{} not on the server", e.session.external_id));
        let truncated = match e.state.source {
            SourceId::ClaudeCode => world.truncated[0] || world.truncated[1],
            SourceId::CodexCli => world.truncated[2],
            _ => false,
        };
        if truncated {
            // The server keeps the start it was first given; a truncation can only have
            // moved export's later.
            prop_assert!(
                e.session.created_at.is_some_and(|c| stored.created_at <= c),
                "createdAt {} after export's {:?}",
                stored.created_at,
                e.session.created_at
            );
        } else {
            prop_assert_eq!(Some(stored.created_at), e.session.created_at, "createdAt");
        }
        prop_assert_eq!(stored.title.clone(), e.session.title.clone(), "title");
        if let Some(p) = e.session.prompt_tokens {
            prop_assert_eq!(stored.prompt_tokens, p, "promptTokens");
        }
        if let Some(c) = e.session.completion_tokens {
            prop_assert_eq!(stored.completion_tokens, c, "completionTokens");
        }
        if let Some(cost) = e.session.cost {
            prop_assert!(
                (stored.cost - cost).abs() < 1e-9,
                "cost {} vs {}",
                stored.cost,
                cost
            );
        }
    }
    Ok(())
}

/// The emulation (its dedup windows off: they are the truth model's subject; this test is
/// about the fold), a runtime for the engine and an empty world.
fn setup() -> (Emulation, tokio::runtime::Runtime, World) {
    let emu = Emulation::with_key(KEY);
    emu.disable_windows();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (emu, rt, World::new())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let (emu, rt, mut world) = setup();
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut daemon = Daemon::start(&world, &emu, &clock);
    for op in ops {
        match op {
            Op::Append {
                file,
                lines,
                partial,
            } => {
                // A subagent's file never appears before its session's transcript has a line.
                let main = &world.files[0];
                if file == 1 && !world.files[1].exists && !(main.exists && main.lines > 0) {
                    continue;
                }
                world.append(file, lines, partial)
            }
            Op::Rewrite { file, version } => {
                let f = &mut world.files[file];
                if f.exists {
                    f.version = version;
                    let f = f.clone();
                    world.write(&f);
                }
            }
            Op::Truncate { file, keep } => {
                let f = &mut world.files[file];
                if f.exists && keep < f.lines {
                    world.truncated[file] = true;
                    f.lines = keep;
                    f.partial = 0;
                    let f = f.clone();
                    world.write(&f);
                }
            }
            Op::Delete { file } => {
                world.deleted[file] |= world.files[file].exists;
                world.files[file].exists = false;
                let f = world.files[file].clone();
                world.write(&f);
            }
            Op::OcSet { message, tokens } => {
                world
                    .oc
                    .insert(message, (tokens, tokens / 3 + 1, tokens as f64 / 1000.0));
                world.write_opencode();
            }
            Op::OcRevert { message } => {
                world.oc.remove(&message);
                world.write_opencode();
            }
            Op::Sync => {
                daemon.pass(&world, &rt, false);
                check(&world, &daemon, &emu)?;
            }
            Op::Restart => {
                drop(daemon);
                daemon = Daemon::start(&world, &emu, &clock);
            }
            Op::Abort => daemon.pass(&world, &rt, true),
        }
    }
    daemon.pass(&world, &rt, false);
    check(&world, &daemon, &emu)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_daemons_fold_equals_exports_after_any_history(ops in proptest::collection::vec(op(), 1..28)) {
        run(ops)?;
    }
}

/// The case that tells the one fold from an additive one: a transcript rewritten with
/// different usage must not count the old usage too.
#[test]
fn a_rewritten_transcript_replaces_its_usage() {
    run(vec![
        Op::Append {
            file: 0,
            lines: 6,
            partial: false,
        },
        Op::Sync,
        Op::Rewrite {
            file: 0,
            version: 2,
        },
        Op::Sync,
        Op::Truncate { file: 0, keep: 3 },
        Op::Sync,
    ])
    .unwrap();
}

/// A subagent file read before its session's main transcript (the scan lists
/// `<id>/subagents/agent-*.jsonl` before `<id>.jsonl`): the session is still created from the
/// main transcript, with its start time and title.
#[test]
fn a_subagent_read_first_does_not_create_its_session() {
    run(vec![
        Op::Append {
            file: 0,
            lines: 3,
            partial: false,
        },
        Op::Append {
            file: 1,
            lines: 3,
            partial: false,
        },
        Op::Sync,
    ])
    .unwrap();
}

/// A main transcript truncated to nothing after its subagent was read: what it contributed
/// (title, start) is retracted, as `export` — which sees only the subagent — has it.
#[test]
fn a_main_transcript_truncated_to_nothing_is_retracted() {
    run(vec![
        Op::Append {
            file: 0,
            lines: 1,
            partial: false,
        },
        Op::Append {
            file: 1,
            lines: 1,
            partial: false,
        },
        Op::Sync,
        Op::Truncate { file: 0, keep: 0 },
        Op::Sync,
    ])
    .unwrap();
}

/// The clock set back between two runs of the daemon (the next process's time starts ten
/// minutes before the last write it finds in the ledger): a session write held back for the
/// server's window waits one window, not until the clock has caught up with the ledger.
#[test]
fn a_clock_set_back_across_a_restart_holds_a_write_one_window_at_most() {
    let (emu, rt, mut world) = setup();
    let ahead = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let daemon = Daemon::start(&world, &emu, &ahead);
    daemon.pass(&world, &rt, false);
    world.append(2, 3, false);
    daemon.pass(&world, &rt, false);
    check(&world, &daemon, &emu).unwrap();
    drop(daemon);

    let set_back = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let daemon = Daemon::start(&world, &emu, &set_back);
    world.append(2, 1, false);
    daemon.pass(&world, &rt, false);
    check(&world, &daemon, &emu).unwrap();
}
