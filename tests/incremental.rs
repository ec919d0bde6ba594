//! The incremental == one-shot harness for the line-oriented sources (Claude Code, Codex).
//!
//! A fixture tree is copied to a temporary directory and each of its files is written again
//! as a series of appends at chosen byte offsets (mid-line included). After every append the
//! file is read the way the engine reads it: complete lines only, from the saved offset, with
//! a small read budget, by a parser rebuilt from its persisted state (a JSON round trip, as
//! through the ledger). Records are folded into session state that is itself round-tripped.
//! The payloads at the end must equal those of reading each file in one go.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use opensyncd::aggregate::{MemoryUsageKeys, SessionState};
use opensyncd::model::{MessagePayload, SessionPayload, SourceId};
use opensyncd::plan;
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

/// Session state and messages as the engine keeps them between runs.
#[derive(Default)]
pub struct Folded {
    states: BTreeMap<String, String>,
    messages: BTreeMap<String, Vec<MessagePayload>>,
    usage: MemoryUsageKeys,
}

impl Folded {
    /// Folds one pass's records in (state round-tripped through JSON, as in the ledger).
    pub fn apply(&mut self, source: SourceId, records: Vec<Record>) {
        for (sid, recs) in plan::group_by_session(records) {
            let mut state: SessionState = match self.states.get(&sid) {
                Some(json) => serde_json::from_str(json).unwrap(),
                None => SessionState::new(source, sid.clone()),
            };
            let new = plan::fold_session(&mut state, recs, &mut self.usage);
            let msgs = self.messages.entry(sid.clone()).or_default();
            for m in new {
                match msgs.iter_mut().find(|x| x.external_id == m.external_id) {
                    Some(slot) => *slot = m,
                    None => msgs.push(m),
                }
            }
            self.states
                .insert(sid, serde_json::to_string(&state).unwrap());
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
    let mut folded = Folded::default();
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
                folded.apply(source, records);
                offset = chunk.end;
                if !chunk.more {
                    break;
                }
            }
            state = Some(serde_json::to_string(&parser.save_state()).unwrap());
        }
    }
    folded.finish(malformed, skipped_long)
}

impl Folded {
    /// The payloads: per session, its totals and its messages in first-seen order.
    pub fn finish(mut self, malformed: usize, skipped_long: u64) -> Outcome {
        let pricing = Pricing::bundled();
        let sessions = self
            .states
            .iter()
            .map(|(sid, json)| {
                let state: SessionState = serde_json::from_str(json).unwrap();
                let msgs = self.messages.remove(sid).unwrap_or_default();
                (sid.clone(), (state.payload(&pricing), msgs))
            })
            .collect();
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
