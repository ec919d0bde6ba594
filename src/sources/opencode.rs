//! OpenCode sessions, from its JSON storage tree and from `opencode.db` (SQLite, ≥ 1.2.0).
//!
//! OpenCode rewrites its files and rows in place while a reply streams, so this is not a line
//! parser: a unit is re-read as a whole snapshot, and the planner sends only what changed (by
//! content hash). Units:
//! - a JSON session unit — one session of a `storage/` tree (`session/<project>/<ses>.json`,
//!   `message/<ses>/<msg>.json`, `part/<msg>/<prt>.json`); its state is a fingerprint of those
//!   files (sizes and mtimes), so an unchanged session is not re-read;
//! - a database unit — its state is the largest `time_updated` acknowledged plus the sessions
//!   read in the last minute behind it with their row count; each read re-emits the sessions
//!   with rows updated since a minute before the watermark whose rows changed (a bounded
//!   number at a time), so rows written in the watermark's millisecond or committed late are
//!   never missed, and content hashes drop what was already sent.
//!
//! Both paths build records with the same function, so a session present in both (OpenCode
//! imports its JSON tree into the database on upgrade) yields identical payloads.
//!
//! What is sent: user messages once they have parts; assistant messages once complete
//! (`time.completed` or `finish`), since the server ignores updates within 5 s of a message's
//! `createdAt`. Text parts (not `synthetic` or `ignored` ones) become the text; `tool` parts a
//! `tool-call` plus, when completed or failed, a `tool-result`; `reasoning` only with
//! `sync_thinking`. `step-start`/`step-finish`/`patch`/`snapshot`/`file`/`agent`/`compaction`
//! parts carry nothing to show and are skipped. Tokens and cost are the assistant messages' own
//! (`UsageMerge::Replace` by message id, so a rewrite replaces rather than adds); child sessions
//! (`parentID`) are separate sessions.
//!
//! Watching (`watch_plan`): each data dir by its entries; its JSON tree only while no database
//! sits next to it, and then without a watch per message directory.
//!
//! `~/.opencode` (`Roots::opencode_legacy`): the formats spec found no store there in any
//! OpenCode release; if it holds a `storage/` tree of the layout above, it is read like one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::model::{MessagePayload, Part, Role, SourceId, Tokens, content_hash};
use crate::sources::{
    ParseOptions, Record, SessionFacts, Snapshot, Source, SourceError, Unit, UsageFact, UsageMerge,
    WatchDir,
};

/// How far behind its watermark a database read looks again (ms): rows written in the
/// watermark's millisecond, or committed late with an older `time_updated`, are never missed.
const DB_TRAIL_MS: i64 = 60_000;

/// Sessions re-emitted per database read (bounds memory; the rest follow with `more`).
const DB_SESSIONS_PER_READ: usize = 64;

/// A failure reading an OpenCode store.
#[derive(Debug, thiserror::Error)]
pub enum OpenCodeError {
    /// The database could not be read.
    #[error("{path}: {source}")]
    Db {
        /// The database.
        path: PathBuf,
        /// The error.
        source: rusqlite::Error,
    },
}

/// OpenCode as a [`Source`]. Its roots are data dirs (each may hold `storage/` and
/// `opencode*.db`), plus, as a root of its own, a database file named by `OPENCODE_DB`.
pub struct OpenCode;

impl Source for OpenCode {
    fn id(&self) -> SourceId {
        SourceId::OpenCode
    }

    fn default_roots(&self, env: &dyn Fn(&str) -> Option<String>, home: &Path) -> Vec<PathBuf> {
        let data = env("XDG_DATA_HOME")
            .filter(|s| !s.trim().is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/share"))
            .join("opencode");
        let mut roots = vec![data.clone(), home.join(".opencode")];
        if let Some(db) = env("OPENCODE_DB").filter(|s| !s.trim().is_empty()) {
            // OPENCODE_DB may be relative to the data dir.
            roots.push(data.join(super::expand_tilde(&db, home)));
        }
        roots
    }

    fn watch_dirs(&self, roots: &[PathBuf]) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for root in roots {
            if is_db_file(root) {
                dirs.extend(root.parent().map(Path::to_path_buf));
            } else {
                dirs.push(root.clone());
            }
        }
        dirs
    }

    /// Watching the JSON tree recursively meant a watch per message (`storage/part/<msg>/`:
    /// 24,572 of the 29,468 directories of the bench corpus, 12 MiB in notify's tables), so:
    /// - each data dir by its entries: `opencode*.db`, its `-wal`/`-shm` and `storage/`
    ///   appearing are seen (an entry appearing makes the watcher re-evaluate this plan);
    /// - with a database in that dir (≥ 1.2.0 imported the JSON tree and no longer writes it):
    ///   nothing under `storage/` (scans still read it);
    /// - without (≤ 1.1, live JSON): `storage/session/` and `storage/message/` as trees (a
    ///   directory per project and per session), `storage/part/` by its entries plus, for a
    ///   while, each message directory that appears in it.
    ///
    /// Why the new message directories must be watched for a while, not only seen appearing
    /// (OpenCode 1.1's `session/prompt.ts` and `session/processor.ts`, JSON era): an assistant
    /// message file is written first (no `time.completed`), its parts stream into
    /// `part/<msg>/`, and the message file is rewritten after the last part (tokens at each
    /// step-finish, `time.completed` at the end, after tool parts left running are marked
    /// aborted) — the rewrite alone would be enough. But `createUserMessage` writes the user
    /// message file *before* its parts (`updateMessage(info)`, then `updatePart` for each),
    /// and so do the error replies of commands (a completed assistant message, then its text
    /// part): those parts land in a directory that appeared after the message file, so the
    /// watcher watches it when it appears and lists it (parts written before its watch
    /// existed). Parts rewritten in an old message's directory without a message rewrite
    /// (compaction's `time.compacted` on old tool outputs) wait for the next scan; nothing
    /// sent depends on them.
    fn watch_plan(&self, roots: &[PathBuf]) -> Vec<WatchDir> {
        // Every database, found in a data dir or named as a root (`OPENCODE_DB`): one that sits
        // in a data dir freezes that dir's JSON tree.
        let databases = db_files(roots);
        let mut plan = Vec::new();
        for root in roots {
            if is_db_file(root) {
                plan.extend(
                    root.parent()
                        .map(|dir| WatchDir::entries(dir.to_path_buf())),
                );
                continue;
            }
            plan.push(WatchDir::entries(root.clone()));
            if databases
                .iter()
                .any(|db| db.parent() == Some(root.as_path()))
            {
                continue;
            }
            let storage = root.join("storage");
            plan.push(WatchDir::tree(storage.join("session")));
            plan.push(WatchDir::tree(storage.join("message")));
            plan.push(WatchDir::entries_and_new_dirs(storage.join("part")));
        }
        plan
    }

    fn scan(&self, roots: &[PathBuf]) -> Vec<Unit> {
        let mut units = Vec::new();
        for storage in storage_dirs(roots) {
            for project in std::fs::read_dir(storage.join("session"))
                .into_iter()
                .flatten()
                .flatten()
            {
                for file in std::fs::read_dir(project.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let p = file.path();
                    if let Some(id) = session_file_id(&p) {
                        units.push(json_unit(storage.clone(), id));
                    }
                }
            }
        }
        units.extend(db_files(roots).into_iter().map(db_unit));
        units
    }

    fn unit_for_path(&self, path: &Path, roots: &[PathBuf]) -> Option<Unit> {
        let name = path.file_name()?.to_str()?;
        for db in db_files(roots) {
            let db_name = db.file_name()?.to_str()?;
            if path.parent() == db.parent()
                && (name == db_name
                    || name == format!("{db_name}-wal")
                    || name == format!("{db_name}-shm"))
            {
                return Some(db_unit(db));
            }
        }
        for storage in storage_dirs(roots) {
            let Ok(rel) = path.strip_prefix(&storage) else {
                continue;
            };
            let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
            let session_id = match parts.as_slice() {
                ["session", _, file] => file.strip_suffix(".json").map(str::to_string),
                ["message", ses, _] => Some(ses.to_string()),
                ["part", _, _] => {
                    read_json(path).and_then(|v| v["sessionID"].as_str().map(str::to_string))
                }
                _ => None,
            }?;
            return session_id
                .starts_with("ses_")
                .then(|| json_unit(storage, session_id));
        }
        None
    }

    fn exists(&self, unit: &Unit) -> bool {
        match &unit.part {
            Some(session_id) => session_info_path(&unit.path, session_id).is_some(),
            None => unit.path.is_file(),
        }
    }

    fn read_snapshot(
        &self,
        unit: &Unit,
        state: Option<&Value>,
        opts: ParseOptions,
    ) -> Result<Snapshot, SourceError> {
        match &unit.part {
            Some(session_id) => Ok(read_json_session(&unit.path, session_id, state, opts)),
            None => read_db(&unit.path, state, opts).map_err(|e| SourceError::Read(e.to_string())),
        }
    }
}

/// The unit of one session in a JSON `storage/` tree.
pub fn json_unit(storage: PathBuf, session_id: String) -> Unit {
    Unit::snapshot(SourceId::OpenCode, storage, Some(session_id))
}

/// The unit of a database.
pub fn db_unit(path: PathBuf) -> Unit {
    Unit::snapshot(SourceId::OpenCode, path, None)
}

fn is_db_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "db")
}

fn storage_dirs(roots: &[PathBuf]) -> Vec<PathBuf> {
    roots
        .iter()
        .filter(|r| !is_db_file(r))
        .map(|d| d.join("storage"))
        .collect()
}

fn db_files(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for root in roots {
        if is_db_file(root) {
            if root.is_file() {
                out.push(root.clone());
            }
            continue;
        }
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "opencode.db" || (name.starts_with("opencode-") && name.ends_with(".db")) {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn session_file_id(p: &Path) -> Option<String> {
    let stem = p.file_stem()?.to_str()?;
    (p.extension().is_some_and(|e| e == "json") && stem.starts_with("ses_"))
        .then(|| stem.to_string())
}

/// Reads one unit, resuming from `state`.
pub fn read_unit(
    unit: &Unit,
    state: Option<&Value>,
    opts: ParseOptions,
) -> Result<Snapshot, SourceError> {
    OpenCode.read_snapshot(unit, state, opts)
}

/// A file that does not parse (mid-write) is skipped this time; it will change again.
fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    // Message and part ids sort ascending by creation.
    files.sort();
    files
}

/// `storage/session/<project>/<ses>.json`, wherever the project is.
fn session_info_path(storage: &Path, session_id: &str) -> Option<PathBuf> {
    std::fs::read_dir(storage.join("session"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|project| project.path().join(format!("{session_id}.json")))
        .find(|p| p.is_file())
}

fn read_json_session(
    storage: &Path,
    session_id: &str,
    state: Option<&Value>,
    opts: ParseOptions,
) -> Snapshot {
    let info_path = session_info_path(storage, session_id);
    let mut files: Vec<PathBuf> = info_path.iter().cloned().collect();
    let message_files = json_files(&storage.join("message").join(session_id));
    let mut part_files: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    for m in &message_files {
        let msg_id = m.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let parts = json_files(&storage.join("part").join(msg_id));
        files.extend(parts.iter().cloned());
        part_files.push((m.clone(), parts));
    }
    files.extend(message_files.iter().cloned());
    let fingerprint = fingerprint(&files);
    if state
        .and_then(|s| s.get("fingerprint"))
        .and_then(Value::as_str)
        == Some(fingerprint.as_str())
    {
        return Snapshot {
            records: Vec::new(),
            state: state.cloned().unwrap_or(Value::Null),
            more: false,
        };
    }
    let info = info_path
        .as_deref()
        .and_then(read_json)
        .unwrap_or_else(|| serde_json::json!({ "id": session_id }));
    let messages: Vec<(Value, Vec<Value>)> = part_files
        .iter()
        .filter_map(|(m, parts)| {
            Some((
                read_json(m)?,
                parts.iter().filter_map(|p| read_json(p)).collect(),
            ))
        })
        .collect();
    Snapshot {
        records: session_records(&info, &messages, opts),
        state: serde_json::json!({ "fingerprint": fingerprint }),
        more: false,
    }
}

fn fingerprint(files: &[PathBuf]) -> String {
    let mut text = String::new();
    for f in files {
        if let Ok(meta) = std::fs::metadata(f) {
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            text.push_str(&format!("{}\0{}\0{mtime}\n", f.display(), meta.len()));
        }
    }
    format!("{:032x}", content_hash(text.as_bytes()))
}

fn read_db(
    path: &Path,
    state: Option<&Value>,
    opts: ParseOptions,
) -> Result<Snapshot, OpenCodeError> {
    let err = |source| OpenCodeError::Db {
        path: path.to_path_buf(),
        source,
    };
    let watermark = state
        .and_then(|s| s.get("watermark"))
        .and_then(Value::as_i64)
        .unwrap_or(i64::MIN);
    // Sessions read within the trailing window, with what they looked like then.
    let mut recent: BTreeMap<String, (i64, i64)> = state
        .and_then(|s| s.get("recent"))
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    // Read-only, in place (not a copy): SQLite then honours the WAL, so committed rows that
    // are still only in `-wal` are seen.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(err)?;
    conn.busy_timeout(std::time::Duration::from_secs(2))
        .map_err(err)?;
    // Sessions with rows changed since a little before the watermark. The trailing window
    // catches rows written in the watermark's millisecond and rows committed late with an
    // older `time_updated`; a session whose rows are as they were when it was last read
    // (same latest time, same number of rows) is not read again.
    let since = watermark.saturating_sub(DB_TRAIL_MS);
    let mut stmt = conn
        .prepare(
            "SELECT id FROM session WHERE time_updated > ?1
             UNION SELECT session_id FROM message WHERE time_updated > ?1
             UNION SELECT session_id FROM part WHERE time_updated > ?1",
        )
        .map_err(err)?;
    let candidates: Vec<String> = stmt
        .query_map([since], |r| r.get::<_, String>(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    let mut fingerprint = conn
        .prepare(
            "SELECT MAX(t), COUNT(*) FROM (
                SELECT time_updated AS t FROM session WHERE id = ?1
                UNION ALL SELECT time_updated FROM message WHERE session_id = ?1
                UNION ALL SELECT time_updated FROM part WHERE session_id = ?1
             )",
        )
        .map_err(err)?;
    let mut changed: Vec<(String, i64, i64)> = Vec::new();
    for sid in candidates {
        let (max, count): (Option<i64>, i64) = fingerprint
            .query_row([&sid], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        let max = max.unwrap_or(i64::MIN);
        if recent.get(&sid) != Some(&(max, count)) {
            changed.push((sid, max, count));
        }
    }
    // Oldest change first.
    changed.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    // Take a bounded batch, never splitting sessions that share the cut-off time.
    let mut take = changed.len().min(DB_SESSIONS_PER_READ);
    while take < changed.len() && take > 0 && changed[take].1 == changed[take - 1].1 {
        take += 1;
    }
    let more = take < changed.len();
    let mut records = Vec::new();
    let mut new_watermark = watermark;
    for (sid, updated, count) in &changed[..take] {
        new_watermark = new_watermark.max(*updated);
        recent.insert(sid.clone(), (*updated, *count));
        let info = conn
            .query_row(
                "SELECT id, parent_id, directory, title, time_created, time_updated FROM session WHERE id = ?1",
                [sid],
                |r| {
                    Ok(serde_json::json!({
                        "id": r.get::<_, String>(0)?,
                        "parentID": r.get::<_, Option<String>>(1)?,
                        "directory": r.get::<_, Option<String>>(2)?,
                        "title": r.get::<_, Option<String>>(3)?,
                        "time": { "created": r.get::<_, Option<i64>>(4)?, "updated": r.get::<_, Option<i64>>(5)? },
                    }))
                },
            )
            .unwrap_or_else(|_| serde_json::json!({ "id": sid }));
        let mut parts_by_msg: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let mut pstmt = conn
            .prepare("SELECT id, message_id, data FROM part WHERE session_id = ?1 ORDER BY id")
            .map_err(err)?;
        let rows = pstmt
            .query_map([sid], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(err)?;
        for row in rows {
            let (id, msg, data) = row.map_err(err)?;
            if let Some(v) = with_ids(
                &data,
                &[("id", &id), ("messageID", &msg), ("sessionID", sid)],
            ) {
                parts_by_msg.entry(msg).or_default().push(v);
            }
        }
        let mut mstmt = conn
            .prepare("SELECT id, data FROM message WHERE session_id = ?1 ORDER BY id")
            .map_err(err)?;
        let rows = mstmt
            .query_map([sid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(err)?;
        let mut messages = Vec::new();
        for row in rows {
            let (id, data) = row.map_err(err)?;
            if let Some(v) = with_ids(&data, &[("id", &id), ("sessionID", sid)]) {
                let parts = parts_by_msg.remove(&id).unwrap_or_default();
                messages.push((v, parts));
            }
        }
        records.extend(session_records(&info, &messages, opts));
    }
    recent.retain(|_, (max, _)| *max > new_watermark.saturating_sub(DB_TRAIL_MS));
    Ok(Snapshot {
        records,
        state: serde_json::json!({ "watermark": new_watermark, "recent": recent }),
        more,
    })
}

/// A row's `data` JSON with the ids the table keeps in columns put back.
fn with_ids(data: &str, ids: &[(&str, &str)]) -> Option<Value> {
    let mut v: Map<String, Value> = serde_json::from_str(data).ok()?;
    for (k, id) in ids {
        v.insert((*k).to_string(), Value::String((*id).to_string()));
    }
    Some(Value::Object(v))
}

/// Records for one session from its info, messages and parts (JSON and DB alike).
pub fn session_records(
    info: &Value,
    messages: &[(Value, Vec<Value>)],
    opts: ParseOptions,
) -> Vec<Record> {
    let Some(sid) = info["id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let facts = |at: Option<i64>| SessionFacts {
        session_id: sid.clone(),
        at_ms: at,
        ..SessionFacts::default()
    };
    let mut head = facts(info["time"]["created"].as_i64());
    head.title_override = info["title"].as_str().map(str::to_string);
    head.project_path = info["directory"].as_str().map(str::to_string);
    out.push(Record::Session(head));
    out.push(Record::Session(facts(info["time"]["updated"].as_i64())));
    for (msg, parts) in messages {
        let Some(id) = msg["id"].as_str() else {
            continue;
        };
        let role = msg["role"].as_str().unwrap_or_default();
        let created = msg["time"]["created"].as_i64();
        let assistant = role == "assistant";
        let complete =
            !assistant || !msg["time"]["completed"].is_null() || !msg["finish"].is_null();
        if !complete {
            continue;
        }
        if assistant {
            let t = &msg["tokens"];
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            let tokens = Tokens {
                input: n(&t["input"]),
                output: n(&t["output"]),
                reasoning: n(&t["reasoning"]),
                cache_read: n(&t["cache"]["read"]),
                cache_write: n(&t["cache"]["write"]),
                cache_write_1h: 0,
            };
            let model = msg["modelID"].as_str().map(str::to_string);
            let mut f = facts(msg["time"]["completed"].as_i64().or(created));
            f.model = model.clone();
            f.provider = msg["providerID"].as_str().map(str::to_string);
            out.push(Record::Session(f));
            out.push(Record::Usage(UsageFact {
                session_id: sid.clone(),
                key: id.to_string(),
                merge: UsageMerge::Replace,
                model,
                tokens,
                cost: msg["cost"].as_f64(),
            }));
        }
        let mut texts = Vec::new();
        let mut extra = Vec::new();
        for part in parts {
            match part["type"].as_str().unwrap_or_default() {
                "text" if part["synthetic"] != true && part["ignored"] != true => {
                    if let Some(t) = part["text"].as_str().filter(|t| !t.trim().is_empty()) {
                        texts.push(t.to_string());
                    }
                }
                "tool" if opts.sync_tool_calls => {
                    let state = &part["state"];
                    let name = part["tool"].as_str().unwrap_or("tool");
                    extra.push(Part::tool_call(name, state["input"].clone()));
                    match state["status"].as_str() {
                        Some("completed") => extra.push(Part::tool_result(state["output"].clone())),
                        Some("error") => extra.push(Part::tool_result(state["error"].clone())),
                        _ => {}
                    }
                }
                "reasoning" if opts.sync_thinking => {
                    if let Some(t) = part["text"].as_str().filter(|t| !t.trim().is_empty()) {
                        extra.push(Part::thinking(t));
                    }
                }
                _ => {}
            }
        }
        if !assistant && parts.is_empty() {
            continue; // a user message's parts arrive after it: wait for them
        }
        let text = Some(texts.join("\n\n")).filter(|t| !t.is_empty());
        if text.is_none() && extra.is_empty() {
            continue;
        }
        let mut all: Vec<Part> = text.iter().map(|t| Part::text(t.clone())).collect();
        all.extend(extra);
        let t = &msg["tokens"];
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        let prompt = n(&t["input"])
            .saturating_add(n(&t["cache"]["read"]))
            .saturating_add(n(&t["cache"]["write"]));
        out.push(Record::Message(MessagePayload {
            session_external_id: sid.clone(),
            external_id: id.to_string(),
            role: match role {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" => Role::System,
                _ => Role::Unknown,
            },
            text_content: text,
            model: if assistant {
                msg["modelID"].as_str().map(str::to_string)
            } else {
                None
            },
            prompt_tokens: Some(prompt).filter(|p| assistant && *p > 0),
            completion_tokens: Some(n(&t["output"])).filter(|c| assistant && *c > 0),
            duration_ms: match (created, msg["time"]["completed"].as_i64()) {
                (Some(a), Some(b)) if b >= a && assistant => Some(b.abs_diff(a)),
                _ => None,
            },
            source: SourceId::OpenCode.as_str().into(),
            parts: all,
            created_at: created,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::WatchDepth;

    fn plan(roots: &[PathBuf]) -> Vec<(PathBuf, WatchDepth)> {
        OpenCode
            .watch_plan(roots)
            .into_iter()
            .map(|d| (d.path, d.depth))
            .collect()
    }

    fn json_tree(data: &Path) {
        let storage = data.join("storage");
        std::fs::create_dir_all(storage.join("session/proj")).unwrap();
        std::fs::create_dir_all(storage.join("message/ses_1")).unwrap();
        std::fs::create_dir_all(storage.join("part/msg_1")).unwrap();
        std::fs::create_dir_all(storage.join("part/msg_2")).unwrap();
    }

    /// Before 1.2 the JSON tree is live: its session and message trees are watched, the part
    /// directory by its entries only (no directory per message).
    #[test]
    fn a_live_json_tree_is_watched_without_its_message_directories() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("opencode");
        json_tree(&data);
        let storage = data.join("storage");
        assert_eq!(
            plan(std::slice::from_ref(&data)),
            vec![
                (data.clone(), WatchDepth::Entries),
                (storage.join("session"), WatchDepth::Tree),
                (storage.join("message"), WatchDepth::Tree),
                (storage.join("part"), WatchDepth::EntriesAndNewDirs),
            ]
        );
    }

    /// With a database next to it (any `opencode*.db`, or the one `OPENCODE_DB` names) the
    /// JSON tree is frozen: nothing under `storage/` is watched.
    #[test]
    fn with_a_database_nothing_under_storage_is_watched() {
        for db_name in ["opencode.db", "opencode-beta.db"] {
            let dir = tempfile::tempdir().unwrap();
            let data = dir.path().join("opencode");
            json_tree(&data);
            std::fs::write(data.join(db_name), b"").unwrap();
            assert_eq!(
                plan(std::slice::from_ref(&data)),
                vec![(data.clone(), WatchDepth::Entries)],
                "{db_name}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("opencode");
        json_tree(&data);
        let named = data.join("custom.db");
        std::fs::write(&named, b"").unwrap();
        assert_eq!(
            plan(&[data.clone(), named]),
            vec![
                (data.clone(), WatchDepth::Entries),
                (data, WatchDepth::Entries)
            ]
        );
    }

    /// A root that does not exist yet plans the same directories (the watcher covers them
    /// by their nearest existing ancestor until they appear).
    #[test]
    fn a_missing_data_dir_plans_the_live_layout() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("absent");
        let planned = plan(std::slice::from_ref(&data));
        assert_eq!(planned.len(), 4);
        assert_eq!(planned[0], (data, WatchDepth::Entries));
    }
}
