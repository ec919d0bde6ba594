//! OpenCode: our real-shaped JSON storage tree (`tests/fixtures/opencode`) and a database
//! built here with OpenCode's schema from the same data. Both must yield the same payloads;
//! expected totals are summed here straight from the message files.

use std::path::{Path, PathBuf};

use opensyncd::fold::{MemoryStore, Mode, fold_unit, session_state};
use opensyncd::model::{MessagePayload, SessionPayload, SourceId};
use opensyncd::pricing::Pricing;
use opensyncd::sources::opencode::{db_unit, json_unit, read_unit};
use opensyncd::sources::{ParseOptions, Record, Roots, Unit, scan, unit_for_path};
use serde_json::Value;

const PARENT: &str = "ses_4f1c2a9b8ffeAbCdEfGhIjKlMn";
const CHILD: &str = "ses_4f1c29f0e001ZyXwVuTsRqPoNm";
const STREAMING: &str = "msg_b3e3d5c30001Yy1Zz2Aa3Bb4Cc";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/opencode")
}

fn copy_fixture() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("opencode");
    crate::home::copy_dir(&fixture(), &data);
    (dir, data)
}

fn roots(data: &Path) -> Roots {
    let mut roots = Roots::default();
    roots.set(SourceId::OpenCode, vec![data.to_path_buf()]);
    roots
}

fn fold(records: Vec<Record>) -> Vec<(SessionPayload, Vec<MessagePayload>)> {
    let mut store = MemoryStore::default();
    let touched = fold_unit(
        &mut store,
        SourceId::OpenCode,
        1,
        &[],
        Mode::ReplaceSessions,
        records,
    );
    let mut out: Vec<(SessionPayload, Vec<MessagePayload>)> = touched
        .into_iter()
        .map(|t| {
            let state = session_state(&mut store, SourceId::OpenCode, &t.session_id);
            (state.payload(&Pricing::bundled()), t.messages)
        })
        .collect();
    out.sort_by(|a, b| a.0.external_id.cmp(&b.0.external_id));
    out
}

fn read_all(unit: &Unit, opts: ParseOptions) -> Vec<Record> {
    let mut state = None;
    let mut records = Vec::new();
    loop {
        let snap = read_unit(unit, state.as_ref(), opts).unwrap();
        records.extend(snap.records);
        state = Some(snap.state);
        if !snap.more {
            return records;
        }
    }
}

fn json_payloads(data: &Path) -> Vec<(SessionPayload, Vec<MessagePayload>)> {
    let mut records = Vec::new();
    for unit in scan(SourceId::OpenCode, &roots(data))
        .iter()
        .filter(|u| u.part.is_some())
    {
        records.extend(read_all(unit, ParseOptions::default()));
    }
    fold(records)
}

/// Expected (prompt, completion) per session: the sum over its complete assistant messages,
/// read straight from the files.
fn expected_tokens(data: &Path, session: &str) -> (u64, u64) {
    let mut prompt = 0;
    let mut completion = 0;
    for entry in std::fs::read_dir(data.join("storage/message").join(session)).unwrap() {
        let v: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if v["role"] != "assistant" || v["time"]["completed"].is_null() {
            continue;
        }
        let t = &v["tokens"];
        prompt += t["input"].as_u64().unwrap()
            + t["cache"]["read"].as_u64().unwrap()
            + t["cache"]["write"].as_u64().unwrap();
        completion += t["output"].as_u64().unwrap();
    }
    (prompt, completion)
}

#[test]
fn json_storage_gives_sessions_messages_and_totals() {
    let (_d, data) = copy_fixture();
    let payloads = json_payloads(&data);
    assert_eq!(payloads.len(), 2, "parent and child are separate sessions");
    for (session, messages) in &payloads {
        let (p, c) = expected_tokens(&data, &session.external_id);
        assert_eq!(
            session.prompt_tokens.unwrap_or(0),
            p,
            "{}",
            session.external_id
        );
        assert_eq!(
            session.completion_tokens.unwrap_or(0),
            c,
            "{}",
            session.external_id
        );
        assert_eq!(session.source, "opencode");
        assert_eq!(session.project_path.as_deref(), Some("/home/dev/webapp"));
        assert!(messages.iter().all(|m| m.external_id.starts_with("msg_")));
    }
    let (parent, msgs) = payloads
        .iter()
        .find(|(s, _)| s.external_id == PARENT)
        .unwrap();
    assert_eq!(parent.title.as_deref(), Some("Add a health check endpoint"));
    assert_eq!(
        parent.cost,
        Some(0.0421),
        "OpenCode's own cost is used when > 0"
    );
    assert_eq!(parent.created_at, Some(1_767_261_600_000));
    assert!(
        !msgs.iter().any(|m| m.external_id == STREAMING),
        "an incomplete reply was sent"
    );
    let user = &msgs[0];
    assert_eq!(
        user.text_content.as_deref(),
        Some("Add a /health endpoint that returns {\"status\":\"ok\"}")
    );
    let answer = &msgs[1];
    let kinds: Vec<&str> = answer.parts.iter().map(|p| p.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "text",
            "tool-call",
            "tool-result",
            "tool-call",
            "tool-result"
        ],
        "reasoning is off by default"
    );
    assert_eq!(answer.parts[4].content["result"], "Error: 1 test failed");
    let (child, _) = payloads
        .iter()
        .find(|(s, _)| s.external_id == CHILD)
        .unwrap();
    assert!(
        child.cost.unwrap() > 0.0,
        "priced from the table when OpenCode's cost is 0"
    );
}

#[test]
fn reasoning_is_sent_only_when_enabled() {
    let (_d, data) = copy_fixture();
    let unit = json_unit(data.join("storage"), PARENT.into());
    let opts = ParseOptions {
        sync_thinking: true,
        sync_tool_calls: true,
        ..ParseOptions::default()
    };
    let payloads = fold(read_all(&unit, opts));
    assert!(payloads[0].1.iter().any(|m| m.parts.iter().any(|p| {
        p.kind == "text"
            && p.content
                .as_str()
                .is_some_and(|t| t.starts_with("[thinking]\n"))
    })));
}

#[test]
fn rewrites_replace_tokens_and_complete_messages_appear() {
    let (_d, data) = copy_fixture();
    let unit = json_unit(data.join("storage"), PARENT.into());
    let first = read_unit(&unit, None, ParseOptions::default()).unwrap();
    // Unchanged files: nothing to read again.
    let again = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    assert!(again.records.is_empty());
    // The streaming reply completes (rewritten in place).
    let path = data
        .join("storage/message")
        .join(PARENT)
        .join(format!("{STREAMING}.json"));
    let mut msg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    msg["time"]["completed"] = 1_767_261_760_000u64.into();
    msg["finish"] = "stop".into();
    msg["tokens"] = serde_json::json!({"input": 100, "output": 50, "reasoning": 0, "cache": {"read": 1000, "write": 0}});
    std::fs::write(&path, serde_json::to_vec_pretty(&msg).unwrap()).unwrap();
    let mut records = first.records.clone();
    let second = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    assert!(!second.records.is_empty());
    records.extend(second.records);
    let payloads = fold(records);
    let (session, msgs) = &payloads[0];
    assert!(msgs.iter().any(|m| m.external_id == STREAMING));
    assert_eq!(
        (
            session.prompt_tokens.unwrap(),
            session.completion_tokens.unwrap()
        ),
        expected_tokens(&data, PARENT)
    );
}

#[test]
fn a_file_caught_mid_write_is_skipped_not_fatal() {
    let (_d, data) = copy_fixture();
    let path = data
        .join("storage/message")
        .join(PARENT)
        .join("msg_b3e3d5a10001Aa1Bb2Cc3Dd4Ee.json");
    std::fs::write(&path, b"{\"id\": \"msg_b3e3d5a1").unwrap();
    let payloads = json_payloads(&data);
    let (_, msgs) = payloads
        .iter()
        .find(|(s, _)| s.external_id == PARENT)
        .unwrap();
    assert!(
        !msgs
            .iter()
            .any(|m| m.external_id == "msg_b3e3d5a10001Aa1Bb2Cc3Dd4Ee")
    );
    assert!(!msgs.is_empty());
}

#[test]
fn changed_paths_map_to_their_session() {
    let (_d, data) = copy_fixture();
    let r = roots(&data);
    let storage = data.join("storage");
    let want = Some(json_unit(storage.clone(), PARENT.into()));
    let msg = storage
        .join("message")
        .join(PARENT)
        .join(format!("{STREAMING}.json"));
    assert_eq!(unit_for_path(&msg, &r), want);
    let part =
        storage.join("part/msg_b3e3d5c30001Yy1Zz2Aa3Bb4Cc/prt_b3e3d5c30002Dd5Ee6Ff7Gg8Hh.json");
    assert_eq!(unit_for_path(&part, &r), want);
}

/// Builds `opencode.db` with OpenCode's schema from the JSON tree.
fn build_db(data: &Path) -> PathBuf {
    let db = data.join("opencode.db");
    let conn = rusqlite_connection(&db);
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT, workspace_id TEXT, parent_id TEXT, slug TEXT, directory TEXT, path TEXT, title TEXT, version TEXT, share_url TEXT, cost REAL, tokens_input INTEGER, time_created INTEGER, time_updated INTEGER, time_archived INTEGER);
         CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);
         CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);",
    )
    .unwrap();
    let storage = data.join("storage");
    for project in std::fs::read_dir(storage.join("session")).unwrap() {
        for f in std::fs::read_dir(project.unwrap().path()).unwrap() {
            let v: Value =
                serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            conn.execute(
                "INSERT INTO session (id, project_id, parent_id, directory, title, time_created, time_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                rusqlite::params![v["id"].as_str(), v["projectID"].as_str(), v["parentID"].as_str(), v["directory"].as_str(), v["title"].as_str(), v["time"]["created"].as_i64(), v["time"]["updated"].as_i64()],
            )
            .unwrap();
        }
    }
    for ses in std::fs::read_dir(storage.join("message")).unwrap() {
        for f in std::fs::read_dir(ses.unwrap().path()).unwrap() {
            let mut v: Value =
                serde_json::from_slice(&std::fs::read(f.unwrap().path()).unwrap()).unwrap();
            let obj = v.as_object_mut().unwrap();
            let id = obj.remove("id").unwrap();
            let sid = obj.remove("sessionID").unwrap();
            let created = v["time"]["created"].as_i64();
            conn.execute(
                "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
                rusqlite::params![id.as_str(), sid.as_str(), created, v.to_string()],
            )
            .unwrap();
            let msg_id = id.as_str().unwrap();
            for p in std::fs::read_dir(storage.join("part").join(msg_id))
                .into_iter()
                .flatten()
            {
                let mut pv: Value =
                    serde_json::from_slice(&std::fs::read(p.unwrap().path()).unwrap()).unwrap();
                let po = pv.as_object_mut().unwrap();
                let pid = po.remove("id").unwrap();
                po.remove("messageID");
                po.remove("sessionID");
                conn.execute(
                    "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                    rusqlite::params![pid.as_str(), msg_id, sid.as_str(), created, pv.to_string()],
                )
                .unwrap();
            }
        }
    }
    db
}

fn rusqlite_connection(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn the_database_yields_the_same_payloads_as_the_json_tree() {
    let (_d, data) = copy_fixture();
    let db = build_db(&data);
    let from_json = json_payloads(&data);
    let unit = db_unit(db);
    let from_db = fold(read_all(&unit, ParseOptions::default()));
    assert_eq!(from_db, from_json);
}

#[test]
fn the_database_watermark_re_reads_only_changed_sessions() {
    let (_d, data) = copy_fixture();
    let db = build_db(&data);
    let unit = db_unit(db.clone());
    let first = read_unit(&unit, None, ParseOptions::default()).unwrap();
    let nothing = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    assert!(nothing.records.is_empty(), "no change, nothing re-read");
    // A writer (OpenCode, in WAL mode) updates the child's assistant message.
    let conn = rusqlite_connection(&db);
    conn.execute("UPDATE message SET time_updated = 1767262999000 WHERE id = 'msg_b3e3d5e50001Ss7Tt8Uu9Vv0Ww'", []).unwrap();
    let changed = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    let sessions: std::collections::BTreeSet<String> = changed
        .records
        .iter()
        .map(|r| match r {
            Record::Session(f) => f.session_id.clone(),
            Record::Message(m) => m.session_external_id.clone(),
            Record::Usage(u) => u.session_id.clone(),
        })
        .collect();
    assert_eq!(
        sessions.into_iter().collect::<Vec<_>>(),
        vec![CHILD.to_string()]
    );
    drop(conn);
}

/// Rows the plain `time_updated > watermark` rule never reads: one written in the
/// watermark's own millisecond, one committed late with an older `time_updated`. Both must
/// reach the next read (the trailing window), and an unchanged session is not read again.
#[test]
fn database_rows_at_or_behind_the_watermark_are_not_missed() {
    let (_d, data) = copy_fixture();
    let db = build_db(&data);
    let unit = db_unit(db.clone());
    let first = read_unit(&unit, None, ParseOptions::default()).unwrap();
    let watermark = first.state["watermark"].as_i64().unwrap();
    let nothing = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    assert!(nothing.records.is_empty(), "unchanged: nothing read again");
    let conn = rusqlite_connection(&db);
    let texts_of = |snap: &opensyncd::sources::Snapshot| -> Vec<String> {
        snap.records
            .iter()
            .filter_map(|r| match r {
                Record::Message(m) => m.text_content.clone(),
                _ => None,
            })
            .collect()
    };
    // A user message (complete as soon as it has text) added in the watermark's millisecond.
    let add = |msg: &str, part: &str, text: &str, t: i64| {
        conn.execute(
            "INSERT INTO message (id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?3, ?4)",
            rusqlite::params![msg, CHILD, t, serde_json::json!({"role": "user", "time": {"created": t}}).to_string()],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO part (id, message_id, session_id, time_created, time_updated, data) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            rusqlite::params![part, msg, CHILD, t, serde_json::json!({"type": "text", "text": text}).to_string()],
        )
        .unwrap();
    };
    add(
        "msg_zz0000000001",
        "prt_zz0000000001",
        "same millisecond",
        watermark,
    );
    let second = read_unit(&unit, Some(&first.state), ParseOptions::default()).unwrap();
    assert!(
        texts_of(&second).iter().any(|t| t == "same millisecond"),
        "a row in the watermark's millisecond is read"
    );
    // Committed late: its time is five seconds before the new watermark.
    add(
        "msg_zz0000000002",
        "prt_zz0000000002",
        "committed late",
        watermark - 5_000,
    );
    let third = read_unit(&unit, Some(&second.state), ParseOptions::default()).unwrap();
    assert!(
        texts_of(&third).iter().any(|t| t == "committed late"),
        "a row committed late with an older time is read"
    );
    let fourth = read_unit(&unit, Some(&third.state), ParseOptions::default()).unwrap();
    assert!(fourth.records.is_empty(), "and then nothing is read twice");
    drop(conn);
}

/// Files of the fixture tree, relative to it (session, message and part files).
fn fixture_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![fixture()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(fixture()).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

/// Payloads with each session's messages in `createdAt` order. OpenCode results are compared
/// this way: a reply that completes before the prompt it answers has its parts is emitted
/// first, and the server orders messages by `createdAt` anyway.
fn by_time(o: crate::incremental::Outcome) -> Vec<(String, SessionPayload, Vec<MessagePayload>)> {
    o.sessions
        .into_iter()
        .map(|(sid, (session, mut msgs))| {
            msgs.sort_by(|a, b| {
                (a.created_at, &a.external_id).cmp(&(b.created_at, &b.external_id))
            });
            (sid, session, msgs)
        })
        .collect()
}

/// One engine pass over every unit of the tree, each resumed from its persisted state.
fn pass(
    data: &Path,
    states: &mut std::collections::BTreeMap<String, String>,
    folded: &mut crate::incremental::Folded,
) {
    for unit in scan(SourceId::OpenCode, &roots(data)) {
        let key = unit.ledger_key();
        loop {
            let saved: Option<Value> = states.get(&key).map(|s| serde_json::from_str(s).unwrap());
            let snap = read_unit(&unit, saved.as_ref(), ParseOptions::default()).unwrap();
            folded.apply_unit(
                SourceId::OpenCode,
                &key,
                Mode::ReplaceSessions,
                snap.records,
            );
            states.insert(key.clone(), serde_json::to_string(&snap.state).unwrap());
            if !snap.more {
                break;
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// OpenCode's incremental == one-shot: the tree's files appear in any order (a message
    /// before its session, parts before their message), with engine passes at random points
    /// in between; the payloads at the end equal one read of the finished tree.
    #[test]
    fn files_arriving_in_any_order_yield_the_one_shot_payloads(
        order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just(
            (0..fixture_files().len()).collect::<Vec<_>>(),
        )),
        reads in proptest::collection::vec(proptest::bool::ANY, fixture_files().len()),
    ) {
        let files = fixture_files();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("opencode");
        std::fs::create_dir_all(data.join("storage")).unwrap();
        let mut states = std::collections::BTreeMap::new();
        let mut folded = crate::incremental::Folded::in_ledger();
        for (step, &i) in order.iter().enumerate() {
            let dest = data.join(&files[i]);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(fixture().join(&files[i]), &dest).unwrap();
            if reads[step] {
                pass(&data, &mut states, &mut folded);
            }
        }
        pass(&data, &mut states, &mut folded);
        let mut reference = crate::incremental::Folded::in_memory();
        pass(&data, &mut std::collections::BTreeMap::new(), &mut reference);
        proptest::prop_assert_eq!(by_time(folded.finish(SourceId::OpenCode, 0, 0)), by_time(reference.finish(SourceId::OpenCode, 0, 0)));
    }
}

/// The fixture tree as database rows (table, id, session, message, created, data), in a fixed
/// order, for inserting in any other.
fn db_rows(storage: &Path) -> Vec<(&'static str, Vec<rusqlite::types::Value>)> {
    use rusqlite::types::Value as Sql;
    let text = |v: &Value| v.as_str().map_or(Sql::Null, |s| Sql::Text(s.to_string()));
    let int = |v: &Value| v.as_i64().map_or(Sql::Null, Sql::Integer);
    let mut rows = Vec::new();
    let read =
        |p: PathBuf| -> Value { serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap() };
    let dirs = |d: PathBuf| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        v.sort();
        v
    };
    for project in dirs(storage.join("session")) {
        for f in dirs(project) {
            let v = read(f);
            rows.push((
                "session",
                vec![
                    text(&v["id"]),
                    text(&v["projectID"]),
                    text(&v["parentID"]),
                    text(&v["directory"]),
                    text(&v["title"]),
                    int(&v["time"]["created"]),
                ],
            ));
        }
    }
    for ses in dirs(storage.join("message")) {
        for f in dirs(ses) {
            let mut v = read(f);
            let obj = v.as_object_mut().unwrap();
            let id = obj.remove("id").unwrap();
            let sid = obj.remove("sessionID").unwrap();
            let created = int(&v["time"]["created"]);
            rows.push((
                "message",
                vec![
                    text(&id),
                    text(&sid),
                    created.clone(),
                    Sql::Text(v.to_string()),
                ],
            ));
            for p in dirs(storage.join("part").join(id.as_str().unwrap())) {
                let mut pv = read(p);
                let po = pv.as_object_mut().unwrap();
                let pid = po.remove("id").unwrap();
                po.remove("messageID");
                po.remove("sessionID");
                rows.push((
                    "part",
                    vec![
                        text(&pid),
                        text(&id),
                        text(&sid),
                        created.clone(),
                        Sql::Text(pv.to_string()),
                    ],
                ));
            }
        }
    }
    rows
}

fn insert_row(
    conn: &rusqlite::Connection,
    table: &str,
    values: &[rusqlite::types::Value],
    updated: i64,
) {
    let mut params: Vec<rusqlite::types::Value> = values.to_vec();
    params.push(rusqlite::types::Value::Integer(updated));
    let sql = match table {
        "session" => {
            "INSERT INTO session (id, project_id, parent_id, directory, title, time_created, time_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        }
        "message" => {
            "INSERT INTO message (id, session_id, time_created, data, time_updated) VALUES (?1, ?2, ?3, ?4, ?5)"
        }
        _ => {
            "INSERT INTO part (id, message_id, session_id, time_created, data, time_updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
        }
    };
    conn.execute(sql, rusqlite::params_from_iter(params))
        .unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// The same for `opencode.db`: a live writer inserts the rows in any order (each with a
    /// later `time_updated`), reads with the persisted watermark happen in between, and the
    /// end result equals one read of the finished database.
    #[test]
    fn database_rows_arriving_in_any_order_yield_the_one_shot_payloads(
        order in proptest::strategy::Strategy::prop_shuffle(proptest::strategy::Just(
            (0..db_rows(&fixture().join("storage")).len()).collect::<Vec<_>>(),
        )),
        reads in proptest::collection::vec(proptest::bool::ANY, db_rows(&fixture().join("storage")).len()),
    ) {
        let rows = db_rows(&fixture().join("storage"));
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("opencode.db");
        let conn = rusqlite_connection(&db);
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE session (id TEXT PRIMARY KEY, project_id TEXT, workspace_id TEXT, parent_id TEXT, slug TEXT, directory TEXT, path TEXT, title TEXT, version TEXT, share_url TEXT, cost REAL, tokens_input INTEGER, time_created INTEGER, time_updated INTEGER, time_archived INTEGER);
             CREATE TABLE message (id TEXT PRIMARY KEY, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);
             CREATE TABLE part (id TEXT PRIMARY KEY, message_id TEXT, session_id TEXT, time_created INTEGER, time_updated INTEGER, data TEXT);",
        ).unwrap();
        let unit = db_unit(db.clone());
        let mut state: Option<String> = None;
        let mut folded = crate::incremental::Folded::in_ledger();
        let read = |state: &mut Option<String>, folded: &mut crate::incremental::Folded| loop {
            let saved: Option<Value> = state.as_deref().map(|s| serde_json::from_str(s).unwrap());
            let snap = read_unit(&unit, saved.as_ref(), ParseOptions::default()).unwrap();
            folded.apply(SourceId::OpenCode, snap.records);
            *state = Some(serde_json::to_string(&snap.state).unwrap());
            if !snap.more {
                break;
            }
        };
        for (step, &i) in order.iter().enumerate() {
            let (table, values) = &rows[i];
            insert_row(&conn, table, values, 1_800_000_000_000 + step as i64);
            if reads[step] {
                read(&mut state, &mut folded);
            }
        }
        read(&mut state, &mut folded);
        let mut reference = crate::incremental::Folded::in_memory();
        read(&mut None, &mut reference);
        proptest::prop_assert_eq!(by_time(folded.finish(SourceId::OpenCode, 0, 0)), by_time(reference.finish(SourceId::OpenCode, 0, 0)));
    }
}
