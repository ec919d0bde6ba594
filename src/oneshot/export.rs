//! `export`: every unit the selection covers parsed in memory into exactly the payloads a push
//! would send (the same fold and shaping), group by group on every CPU, written in a fixed
//! order as JSON lines so that memory stays bounded by a few groups and the output does not
//! depend on the number of threads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Condvar, Mutex};

use anyhow::{Result, anyhow};
use serde::Serialize;

use crate::config::Config;
use crate::fold::{self, MemoryStore, Mode};
use crate::model::{MessagePayload, SessionPayload, SourceId, Tokens};
use crate::plan::Shaping;
use crate::sources::{self, Access, Record, Unit};
use crate::tail;
use crate::wiring;

/// One exported session: exactly what a push sends for it.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The session payload with totals (as `/sync/session` receives it).
    pub session: SessionPayload,
    /// Its messages in order, shaped as sent.
    pub messages: Vec<MessagePayload>,
    /// The fold's state of the session (what the daemon's ledger caches for it).
    #[serde(skip)]
    pub state: fold::SessionState,
}

/// Errors met while exporting that did not stop it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ExportReport {
    /// Sessions written.
    pub sessions: usize,
    /// Messages written.
    pub messages: usize,
    /// Malformed lines skipped.
    pub malformed_lines: u64,
    /// Over-long lines skipped.
    pub skipped_long_lines: u64,
    /// Units that could not be read, with the reason.
    pub unreadable: Vec<String>,
    /// Units that vanished between the scan and the read (not an error).
    #[serde(default)]
    pub vanished: Vec<String>,
    /// Sessions left out because their project path matches an `exclude` pattern.
    #[serde(default)]
    pub excluded_sessions: usize,
    /// Sessions found with the `--session` id (all sessions when no id was asked for).
    #[serde(default)]
    pub matched_sessions: usize,
    /// Models with tokens but no price: sessions affected and tokens (left out of the costs).
    pub unpriced: BTreeMap<String, (usize, Tokens)>,
}

/// Parses every selected unit and calls `emit` once per session, in a deterministic order
/// (sources in registry order, then the groups of each source in key order). Units are read
/// group by group (a source puts the units of one session in one group, e.g. a Claude Code
/// transcript and its subagent files) and folded with the daemon's fold (`fold::fold_unit`),
/// so what is printed is what the daemon sends. Groups are parsed on `export_threads()`
/// threads; see [`export_json`] for the order and memory bounds.
pub fn export(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    emit: &mut dyn FnMut(Exported) -> Result<()>,
) -> Result<ExportReport> {
    let make = |shaping: &Shaping, state: fold::SessionState, messages: Vec<MessagePayload>| {
        Ok(Exported {
            session: shaping.session(&state),
            messages: messages.into_iter().map(|m| shaping.message(m)).collect(),
            state,
        })
    };
    export_with(
        cfg,
        sources_filter,
        session_filter,
        export_threads(),
        &make,
        emit,
    )
}

/// How many threads `export` parses on: one per CPU the process may use.
pub fn export_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `export`, written as JSON lines to `out` (one `{"session":…,"messages":[…]}` per session,
/// exactly `serde_json`'s encoding of [`Exported`]; messages through the faster
/// [`write_message_json`](crate::model::write_message_json), which writes the same bytes):
/// each message is shaped and encoded as soon as it is reached, so no session's shaped
/// payloads are held in memory.
///
/// The groups are parsed by `threads` workers (`1` parses them in order on one thread). The
/// output is the same bytes whatever the number: workers take groups in order, and a group's
/// lines are written only once every group before it was written. A worker does not start a
/// group more than a few places ahead of the writer, so memory stays bounded by a few groups.
pub fn export_json(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    threads: usize,
    out: &mut dyn std::io::Write,
) -> Result<ExportReport> {
    let make = |shaping: &Shaping, state: fold::SessionState, messages: Vec<MessagePayload>| {
        // Sized once for the whole line (a line that grew by doubling copied itself again
        // every time): the strings' bytes, plus room for escapes and each message's fields.
        let estimate = messages.iter().fold(1024usize, |n, m| {
            let text = m.text_content.as_ref().map_or(0, String::len);
            let parts = m.parts.iter().map(|p| raw_len(&p.content)).sum::<usize>();
            n.saturating_add((text + parts) / 8 * 9 + 512)
        });
        let mut line = Vec::with_capacity(estimate);
        line.extend_from_slice(b"{\"session\":");
        serde_json::to_writer(&mut line, &shaping.session(&state))?;
        line.extend_from_slice(b",\"messages\":[");
        for (i, message) in messages.into_iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            crate::model::write_message_json(&mut line, &shaping.message(message));
        }
        line.extend_from_slice(b"]}\n");
        Ok(line)
    };
    let mut write = |line: Vec<u8>| -> Result<()> {
        out.write_all(&line)?;
        Ok(())
    };
    export_with(
        cfg,
        sources_filter,
        session_filter,
        threads,
        &make,
        &mut write,
    )
}

/// About how many bytes `value` takes as JSON, from its strings' lengths (a size hint).
fn raw_len(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::String(s) => s.len() + 2,
        Value::Array(items) => items.iter().map(raw_len).sum::<usize>() + 2,
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + 4 + raw_len(v)).sum(),
        _ => 8,
    }
}

/// Turns one session (its state and raw messages, in order) into what is emitted.
type MakeSession<'a, T> =
    dyn Fn(&Shaping, fold::SessionState, Vec<MessagePayload>) -> Result<T> + Sync + 'a;

/// What became of one session of a group.
enum Verdict<T> {
    /// Its project is excluded.
    Excluded,
    /// Nothing to create it with (the daemon would not create it either).
    NotWorth,
    /// Emitted: the item, its message count, its unpriced models.
    Emit(T, usize, Vec<(String, Tokens)>),
}

/// Everything one group produced, applied to the report and the output in group order.
struct GroupOutput<T> {
    /// Sessions in order of first appearance (those `--session` left out are not there).
    sessions: Vec<(String, Verdict<T>)>,
    malformed_lines: u64,
    skipped_long_lines: u64,
    unreadable: Vec<String>,
    vanished: Vec<String>,
}

/// The scheduling state shared by the workers and the writer.
struct Schedule {
    /// The next group a worker takes.
    next: usize,
    /// Groups written so far (all groups before this index).
    written: usize,
    /// The writer failed: workers stop.
    stop: bool,
}

fn export_with<T: Send>(
    cfg: &Config,
    sources_filter: &[SourceId],
    session_filter: Option<&str>,
    threads: usize,
    make: &MakeSession<'_, T>,
    emit: &mut dyn FnMut(T) -> Result<()>,
) -> Result<ExportReport> {
    let shaping = wiring::build_engine_shaping(cfg)?;
    let roots = cfg.roots(&crate::config::process_env);
    let mut groups: Vec<(SourceId, Vec<Unit>)> = Vec::new();
    for source in cfg.enabled_sources() {
        if !sources_filter.is_empty() && !sources_filter.contains(&source) {
            continue;
        }
        let mut by_key: BTreeMap<String, Vec<Unit>> = BTreeMap::new();
        for unit in sources::scan(source, &roots) {
            by_key.entry(group_key(&unit)).or_default().push(unit);
        }
        groups.extend(by_key.into_values().map(|units| (source, units)));
    }
    let context = GroupContext {
        cfg,
        shaping: &shaping,
        roots: &roots,
        session_filter,
        make,
    };
    let mut report = ExportReport::default();
    // A session a later group touches again (OpenCode's JSON tree shadowed by its database)
    // was printed with the first group that had it.
    let mut emitted: HashSet<String> = HashSet::new();
    let mut apply = |output: GroupOutput<T>| -> Result<()> {
        report.malformed_lines += output.malformed_lines;
        report.skipped_long_lines += output.skipped_long_lines;
        report.unreadable.extend(output.unreadable);
        report.vanished.extend(output.vanished);
        for (key, verdict) in output.sessions {
            if !emitted.insert(key) {
                continue;
            }
            report.matched_sessions += 1;
            match verdict {
                Verdict::Excluded => report.excluded_sessions += 1,
                Verdict::NotWorth => {}
                Verdict::Emit(item, messages, unpriced) => {
                    report.sessions += 1;
                    report.messages += messages;
                    for (model, tokens) in unpriced {
                        let entry = report.unpriced.entry(model).or_default();
                        entry.0 += 1;
                        entry.1.add(&tokens);
                    }
                    emit(item)?;
                }
            }
        }
        Ok(())
    };
    let threads = threads.clamp(1, groups.len().max(1));
    if threads == 1 {
        let mut chunk = tail::Chunk::default();
        for (source, units) in &groups {
            apply(context.group(*source, units, &mut chunk)?)?;
        }
    } else {
        run_in_parallel(&groups, threads, &context, &mut apply)?;
    }
    Ok(report)
}

/// Runs the groups on `threads` workers and hands their outputs to `apply` in group order.
fn run_in_parallel<T: Send>(
    groups: &[(SourceId, Vec<Unit>)],
    threads: usize,
    context: &GroupContext<'_, T>,
    apply: &mut dyn FnMut(GroupOutput<T>) -> Result<()>,
) -> Result<()> {
    // How far ahead of the writer a worker may start a group: enough to keep every worker
    // busy behind a slow group, few enough that waiting outputs stay small.
    let window = threads * 4;
    let schedule = Mutex::new(Schedule {
        next: 0,
        written: 0,
        stop: false,
    });
    let progressed = Condvar::new();
    let (results, received) = std::sync::mpsc::channel::<(usize, Result<GroupOutput<T>>)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let results = results.clone();
            let (schedule, progressed) = (&schedule, &progressed);
            scope.spawn(move || {
                let mut chunk = tail::Chunk::default();
                loop {
                    let index = {
                        let Ok(mut s) = schedule.lock() else { return };
                        loop {
                            if s.stop || s.next >= groups.len() {
                                return;
                            }
                            if s.next < s.written + window {
                                break;
                            }
                            s = match progressed.wait(s) {
                                Ok(s) => s,
                                Err(_) => return,
                            };
                        }
                        s.next += 1;
                        s.next - 1
                    };
                    let (source, units) = &groups[index];
                    let output = context.group(*source, units, &mut chunk);
                    if results.send((index, output)).is_err() {
                        return; // the writer gave up
                    }
                }
            });
        }
        drop(results);
        let mut waiting: BTreeMap<usize, Result<GroupOutput<T>>> = BTreeMap::new();
        let outcome = (|| -> Result<()> {
            for index in 0..groups.len() {
                let output = loop {
                    if let Some(output) = waiting.remove(&index) {
                        break output;
                    }
                    let (i, output) = received
                        .recv()
                        .map_err(|_| anyhow!("an export worker stopped unexpectedly"))?;
                    waiting.insert(i, output);
                };
                apply(output?)?;
                if let Ok(mut s) = schedule.lock() {
                    s.written = index + 1;
                }
                progressed.notify_all();
            }
            Ok(())
        })();
        if outcome.is_err() {
            if let Ok(mut s) = schedule.lock() {
                s.stop = true;
            }
            progressed.notify_all();
        }
        // Workers blocked in `send` are released when `received` is dropped here.
        drop(received);
        outcome
    })
}

/// What every group needs, shared by the workers.
struct GroupContext<'a, T> {
    cfg: &'a Config,
    shaping: &'a Shaping,
    roots: &'a sources::Roots,
    session_filter: Option<&'a str>,
    make: &'a MakeSession<'a, T>,
}

/// One session's messages as the fold hands them over, read after read: a message seen again
/// keeps its first position and takes the newest content.
#[derive(Default)]
struct SessionMessages {
    list: Vec<MessagePayload>,
    /// Position of each id in `list`; built only once a second read touches the session (the
    /// fold already gives each read's messages once).
    index: HashMap<String, usize>,
}

impl SessionMessages {
    fn absorb(&mut self, messages: Vec<MessagePayload>) {
        if self.list.is_empty() {
            self.list = messages;
            return;
        }
        for (i, m) in self.list.iter().enumerate().skip(self.index.len()) {
            self.index.insert(m.external_id.clone(), i);
        }
        for m in messages {
            match self.index.get(&m.external_id) {
                Some(&i) => self.list[i] = m,
                None => {
                    self.index.insert(m.external_id.clone(), self.list.len());
                    self.list.push(m);
                }
            }
        }
    }
}

impl<T> GroupContext<'_, T> {
    /// Reads and folds one group's units and makes its sessions. Memory is bounded by the
    /// group: its fold state lives in a store of its own, dropped at the end.
    fn group(
        &self,
        source: SourceId,
        units: &[Unit],
        chunk: &mut tail::Chunk,
    ) -> Result<GroupOutput<T>> {
        let mut output = GroupOutput {
            sessions: Vec::new(),
            malformed_lines: 0,
            skipped_long_lines: 0,
            unreadable: Vec::new(),
            vanished: Vec::new(),
        };
        let mut store = MemoryStore::default();
        let mut order: Vec<String> = Vec::new();
        let mut messages: HashMap<String, SessionMessages> = HashMap::new();
        for unit in units {
            let id = fold::unit_id(&unit.ledger_key());
            let mode = match unit.access {
                Access::Lines => Mode::Append,
                Access::Snapshot => Mode::ReplaceSessions,
            };
            let mut fold_records = |records: Vec<Record>| {
                for t in fold::fold_unit(&mut store, source, id, &[], mode, records) {
                    let entry = messages.entry(t.session_id.clone()).or_insert_with(|| {
                        order.push(t.session_id.clone());
                        SessionMessages::default()
                    });
                    entry.absorb(t.messages);
                }
            };
            match read_all(unit, self.cfg, chunk, &mut fold_records, &mut output) {
                Ok(()) => {}
                // Deleted since the scan: nothing to export, nothing wrong.
                Err(e) if is_not_found(&e) => output.vanished.push(unit.describe()),
                Err(e) => output.unreadable.push(format!("{}: {e}", unit.describe())),
            }
        }
        for sid in order {
            let key = fold::session_key(source, &sid);
            let state = fold::session_state(&mut store, source, &sid);
            store.forget(&key);
            let session_messages = messages.remove(&sid).unwrap_or_default().list;
            if self.session_filter.is_some_and(|want| want != sid) {
                continue;
            }
            // A session is excluded by its project once the fold knows the project; its
            // files were read (their paths did not match), but nothing of it is output.
            let excluded = state
                .facts
                .project_path
                .as_ref()
                .is_some_and(|p| self.roots.exclude().matches_project(&p.value));
            let verdict = if excluded {
                Verdict::Excluded
            } else if !fold::worth_creating(&state, !session_messages.is_empty()) {
                Verdict::NotWorth
            } else {
                let count = session_messages.len();
                let unpriced = state.totals(&self.shaping.pricing).unpriced_tokens;
                Verdict::Emit(
                    (self.make)(self.shaping, state, session_messages)?,
                    count,
                    unpriced,
                )
            };
            output.sessions.push((key, verdict));
        }
        Ok(output)
    }
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
    })
}

/// Units whose records belong to the same sessions share a group key (the source decides).
fn group_key(unit: &Unit) -> String {
    sources::source(unit.source).group_key(unit)
}

/// How much of a file `export` reads at a time: small enough that the bytes the kernel just
/// copied are still in the core's cache when they are checked and parsed (with 8 MiB reads,
/// the copy and every pass over the bytes after it went to memory).
pub const EXPORT_READ_BYTES: usize = 256 * 1024;

/// Reads a whole unit, handing its records to `fold` one read at a time (a snapshot unit may
/// take several reads). Lines are read into `chunk`'s buffer.
fn read_all<T>(
    unit: &Unit,
    cfg: &Config,
    chunk: &mut tail::Chunk,
    fold: &mut dyn FnMut(Vec<Record>),
    output: &mut GroupOutput<T>,
) -> Result<()> {
    match unit.access {
        Access::Lines => {
            let mut file = std::fs::File::open(&unit.path)?;
            let mut parser =
                sources::line_parser(unit, None, cfg.parse_options()).map_err(|e| anyhow!(e))?;
            let mut offset = 0;
            let mut records = Vec::new();
            loop {
                tail::read_lines_into(
                    &mut file,
                    offset,
                    EXPORT_READ_BYTES,
                    cfg.max_line_bytes,
                    chunk,
                )?;
                output.skipped_long_lines += chunk.skipped_long_lines;
                output.malformed_lines +=
                    sources::parse_lines(&mut *parser, chunk.iter_lines(), &mut records).lines;
                fold(std::mem::take(&mut records));
                offset = chunk.end;
                if !chunk.more {
                    break;
                }
            }
        }
        Access::Snapshot => {
            let mut state: Option<serde_json::Value> = None;
            loop {
                let snap = sources::read_snapshot(unit, state.as_ref(), cfg.parse_options())
                    .map_err(|e| anyhow!(e.to_string()))?;
                fold(snap.records);
                state = Some(snap.state);
                if !snap.more {
                    break;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `export` on the repository's own fixtures (five sources, every kind of unit).
    fn fixture_config() -> Config {
        let dir = |name: &str| {
            vec![format!(
                "{}/tests/fixtures/{name}",
                env!("CARGO_MANIFEST_DIR")
            )]
        };
        Config {
            claude_dirs: dir("claude"),
            codex_dirs: dir("codex"),
            opencode_dirs: dir("opencode"),
            pi_dirs: dir("pi"),
            droid_dirs: dir("droid"),
            ..Config::default()
        }
    }

    #[test]
    fn export_output_is_the_same_on_any_number_of_threads() {
        let cfg = fixture_config();
        let sources = [
            SourceId::ClaudeCode,
            SourceId::CodexCli,
            SourceId::OpenCode,
            SourceId::Pi,
            SourceId::FactoryDroid,
        ];
        let run = |threads: usize| {
            let mut out = Vec::new();
            let report = export_json(&cfg, &sources, None, threads, &mut out).unwrap();
            (out, report.sessions, report.messages)
        };
        let (sequential, sessions, messages) = run(1);
        // Enough groups that workers finish out of order: every source has sessions.
        let lines: Vec<serde_json::Value> = sequential
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), sessions);
        assert!(sessions >= 10, "{sessions} sessions");
        assert!(messages > sessions, "{messages} messages");
        for source in [
            "claude-code",
            "codex-cli",
            "opencode",
            "pi",
            "factory-droid",
        ] {
            assert!(
                lines.iter().any(|l| l["session"]["source"] == source),
                "no {source} session in the fixtures' export"
            );
        }
        for threads in [2, 3, 8, 64] {
            let (parallel, s, m) = run(threads);
            assert_eq!((s, m), (sessions, messages), "{threads} threads");
            assert!(
                parallel == sequential,
                "{threads} threads wrote other bytes than one thread"
            );
        }
    }
}
