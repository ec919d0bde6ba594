//! The incremental == one-shot harness for the line-oriented sources (Claude Code, Codex).
//!
//! A fixture tree is copied to a temporary directory and each of its files is written again
//! as a series of appends at chosen byte offsets (mid-line included). After every append the
//! file is read the way the engine reads it: complete lines only, from the saved offset, with
//! a small read budget, by a parser rebuilt from its persisted state (a JSON round trip, as
//! through the ledger). Records are folded the daemon's way, into a real ledger committed
//! after every read; the payloads at the end must equal those of reading each file in one go
//! with the fold in memory, `export`'s way.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use opensyncd::fold::{self, MemoryStore, Mode, SessionState};
use opensyncd::ledger::{Commit, Ledger, LedgerStore};
use opensyncd::model::{MessagePayload, SessionPayload, SourceId};
use opensyncd::pricing::Pricing;
use opensyncd::sources::{ParseOptions, Record, Unit, line_parser};
use opensyncd::tail;

/// What a run produced: per session (sorted by id), its payload and messages in order, and
/// the number of malformed lines skipped.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// Session id → (session payload, messages in first-seen order).
    pub sessions: BTreeMap<String, (SessionPayload, Vec<MessagePayload>)>,
    /// Lines the parser refused.
    pub malformed: usize,
    /// Lines over the cap, skipped by the reader.
    pub skipped_long: u64,
}

/// Copies `fixture` into a fresh temporary directory; returns it and every file under it
/// that `keep` selects, sorted.
pub fn copy_tree(
    fixture: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    crate::home::copy_dir(fixture, dir.path());
    let mut files = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                files.push(p);
            }
        }
    }
    files.sort();
    (dir, files)
}

/// Session state and messages as the fold keeps them between runs: either in memory (what
/// `export` does) or in a real ledger, every pass committed and read back (what the daemon
/// does).
pub struct Folded {
    store: Store,
    sessions: Vec<String>,
    messages: BTreeMap<String, Vec<MessagePayload>>,
}

enum Store {
    Memory(MemoryStore),
    /// The ledger and the directory it lives in (kept until the end of the run).
    Ledger(#[allow(dead_code)] tempfile::TempDir, Ledger),
}

impl Default for Folded {
    fn default() -> Self {
        Folded::in_memory()
    }
}

impl Folded {
    /// Fold state kept in memory (`export`).
    pub fn in_memory() -> Folded {
        Folded {
            store: Store::Memory(MemoryStore::default()),
            sessions: Vec::new(),
            messages: BTreeMap::new(),
        }
    }

    /// Fold state kept in a ledger, committed after every pass (the daemon).
    pub fn in_ledger() -> Folded {
        let dir = tempfile::tempdir().unwrap();
        let (ledger, _) = Ledger::open(&dir.path().join("ledger")).unwrap();
        Folded {
            store: Store::Ledger(dir, ledger),
            sessions: Vec::new(),
            messages: BTreeMap::new(),
        }
    }

    /// Folds one pass's records of `unit` in (`Append` for a line unit, `ReplaceSessions` for
    /// a snapshot).
    pub fn apply_unit(&mut self, source: SourceId, unit: &str, mode: Mode, records: Vec<Record>) {
        let id = fold::unit_id(unit);
        let touched = match &mut self.store {
            Store::Memory(store) => fold::fold_unit(store, source, id, &[], mode, records),
            Store::Ledger(_, ledger) => {
                let mut store = LedgerStore::new(ledger);
                let touched = fold::fold_unit(&mut store, source, id, &[], mode, records);
                let mut commit = Commit::default();
                store.into_commit(&mut commit).unwrap();
                ledger.commit(&commit).unwrap();
                touched
            }
        };
        for t in touched {
            if !self.sessions.contains(&t.session_id) {
                self.sessions.push(t.session_id.clone());
            }
            let msgs = self.messages.entry(t.session_id).or_default();
            for m in t.messages {
                match msgs.iter_mut().find(|x| x.external_id == m.external_id) {
                    Some(slot) => *slot = m,
                    None => msgs.push(m),
                }
            }
        }
    }

    /// Folds one pass of a snapshot source (one unit per source in these tests).
    pub fn apply(&mut self, source: SourceId, records: Vec<Record>) {
        self.apply_unit(source, "snapshot", Mode::ReplaceSessions, records);
    }

    fn state(&mut self, source: SourceId, sid: &str) -> SessionState {
        match &mut self.store {
            Store::Memory(store) => fold::session_state(store, source, sid),
            Store::Ledger(_, ledger) => {
                fold::session_state(&mut LedgerStore::new(ledger), source, sid)
            }
        }
    }
}

/// Reads each of `files` (already holding their full contents) as appends at `splits[i]`
/// (offsets into file i; sorted, any values, clamped), with `budget` bytes per read.
pub fn run(
    source: SourceId,
    files: &[PathBuf],
    splits: &[Vec<usize>],
    budget: usize,
    max_line: usize,
    opts: ParseOptions,
) -> Outcome {
    let contents: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    // Every file exists (empty) from the start, as a tool's files do once created: a parser
    // that looks at its neighbours (Claude's replay detection) sees the same tree each time.
    for f in files {
        std::fs::write(f, b"").unwrap();
    }
    // One read of everything is export's way (state in memory); several reads are the daemon's
    // (state in the ledger, committed after each).
    let mut folded = if splits.iter().all(Vec::is_empty) && budget >= 64 << 20 {
        Folded::in_memory()
    } else {
        Folded::in_ledger()
    };
    let mut malformed = 0;
    let mut skipped_long = 0;
    for (i, path) in files.iter().enumerate() {
        let bytes = &contents[i];
        let mut cuts: Vec<usize> = splits
            .get(i)
            .map(|s| s.iter().map(|&c| c.min(bytes.len())).collect())
            .unwrap_or_default();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut written = 0usize;
        let mut offset = 0u64;
        let mut state: Option<String> = None;
        for cut in cuts {
            let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            file.write_all(&bytes[written..cut]).unwrap();
            written = cut;
            // One engine pass: resume the parser from its saved state, read to the end.
            let saved: Option<serde_json::Value> =
                state.as_deref().map(|s| serde_json::from_str(s).unwrap());
            let mut parser = line_parser(
                &Unit::lines(source, path.to_path_buf()),
                saved.as_ref(),
                opts,
            )
            .unwrap();
            let mut reader = std::fs::File::open(path).unwrap();
            loop {
                let chunk = tail::read_lines(&mut reader, offset, budget, max_line).unwrap();
                let mut records = Vec::new();
                for line in chunk.iter_lines() {
                    if parser.parse_line(line, &mut records).is_err() {
                        malformed += 1;
                    }
                }
                skipped_long += chunk.skipped_long_lines;
                folded.apply_unit(source, &path.display().to_string(), Mode::Append, records);
                offset = chunk.end;
                if !chunk.more {
                    break;
                }
            }
            state = Some(serde_json::to_string(&parser.save_state()).unwrap());
        }
    }
    folded.finish(source, malformed, skipped_long)
}

impl Folded {
    /// The payloads: per session, its totals and its messages in first-seen order.
    pub fn finish(mut self, source: SourceId, malformed: usize, skipped_long: u64) -> Outcome {
        let pricing = Pricing::bundled();
        let mut sessions = BTreeMap::new();
        for sid in std::mem::take(&mut self.sessions) {
            let state = self.state(source, &sid);
            let msgs = self.messages.remove(&sid).unwrap_or_default();
            sessions.insert(sid, (state.payload(&pricing), msgs));
        }
        Outcome {
            sessions,
            malformed,
            skipped_long,
        }
    }
}

/// Reads every file in one go (the reference).
pub fn one_shot(source: SourceId, files: &[PathBuf], opts: ParseOptions) -> Outcome {
    run(source, files, &[], 64 << 20, 64 << 20, opts)
}

/// Proptest strategy: for `n` files, up to 8 cut points each (as fractions of the file, so
/// one strategy fits files of any size), and a read budget.
pub fn splits_strategy(
    n: usize,
) -> impl proptest::strategy::Strategy<Value = (Vec<Vec<u32>>, usize)> {
    use proptest::prelude::*;
    (
        proptest::collection::vec(proptest::collection::vec(0u32..=10_000, 0..8), n),
        prop_oneof![Just(1usize), Just(200), Just(4096), Just(1 << 20)],
    )
}

/// Turns fractional cut points into byte offsets for `files`.
pub fn cuts_for(files: &[PathBuf], fractions: &[Vec<u32>]) -> Vec<Vec<usize>> {
    files
        .iter()
        .zip(fractions)
        .map(|(f, fr)| {
            let len = std::fs::metadata(f).unwrap().len() as usize;
            fr.iter().map(|&x| len * x as usize / 10_000).collect()
        })
        .collect()
}
