//! Shared harness code for the fuzz targets.
//!
//! Besides "no panic", the line targets check the invariant `src/sources/mod.rs` promises:
//! processing a file in several append steps (save_state → new parser resumed from it) yields
//! exactly the records and the final state of processing it in one go. Every record set is then
//! pushed through the same pure pipeline the daemon uses before sending (fold →
//! redact/cap → session payload), because parser output is untrusted input for that code too.

#![allow(dead_code)]

pub mod mutator;

use std::path::Path;
use std::sync::OnceLock;

use opensyncd::fold::{self, MemoryStore, Mode};
use opensyncd::model::{SourceId, json_hash};
use opensyncd::plan::Shaping;
use opensyncd::pricing::Pricing;
use opensyncd::redact::Redactor;
use opensyncd::sources::{LineParser, ParseOptions, Record, Unit, line_parser};

/// A property check (beyond "no panic"). A check that has fired and been reported can be
/// switched off for further runs with `FUZZ_ALLOW=<name>[,<name>...]`, so the run keeps looking
/// for other problems instead of stopping at the known one.
pub fn check(name: &str, ok: bool, msg: impl FnOnce() -> String) {
    static ALLOW: OnceLock<Vec<String>> = OnceLock::new();
    let allow = ALLOW.get_or_init(|| {
        std::env::var("FUZZ_ALLOW")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if !ok && !allow.iter().any(|a| a == name) {
        panic!("property `{name}` violated: {}", msg());
    }
}

/// Runs one fuzz input. A panic whose backtrace contains one of the comma-separated
/// `file:line:` entries of `FUZZ_KNOWN` (e.g. `src/aggregate.rs:229:`) is a bug already reported:
/// the input is dropped quietly instead of aborting, so a run is not spent re-finding it. Every
/// other panic aborts as usual (libFuzzer saves the input). Unset, every panic is reported.
pub fn guarded(f: impl FnOnce()) {
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind, set_hook, take_hook};
    use std::sync::Once;

    thread_local! {
        static KNOWN_HIT: Cell<bool> = const { Cell::new(false) };
    }
    static INIT: Once = Once::new();
    static KNOWN: OnceLock<Vec<String>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        std::env::var("FUZZ_KNOWN")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    });
    if known.is_empty() {
        return f();
    }
    INIT.call_once(|| {
        // libfuzzer-sys's hook (print, then abort) stays in charge of everything not known.
        let abort_hook = take_hook();
        set_hook(Box::new(move |info| {
            let mut text = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_default();
            text.push_str(&std::backtrace::Backtrace::force_capture().to_string());
            let known = KNOWN.get().map(Vec::as_slice).unwrap_or_default();
            if known.iter().any(|k| text.contains(k.as_str())) {
                KNOWN_HIT.with(|h| h.set(true));
            } else {
                abort_hook(info);
            }
        }));
    });
    KNOWN_HIT.with(|h| h.set(false));
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        if !KNOWN_HIT.with(Cell::get) {
            resume_unwind(payload);
        }
    }
}

/// The options the resumed pass uses: the other branch of every switch.
pub const FLIPPED: ParseOptions = ParseOptions {
    sync_thinking: true,
    sync_tool_calls: false,
    sync_subagents: false,
};

fn shaping() -> &'static Shaping {
    static SHAPING: OnceLock<Shaping> = OnceLock::new();
    SHAPING.get_or_init(|| Shaping {
        pricing: Pricing::bundled(),
        redactor: Redactor::new(true, &[]).expect("bundled redaction patterns compile"),
        // The smallest values `config::validate` accepts, so truncation paths are reachable
        // with small inputs.
        max_part_bytes: 1024,
        max_body_bytes: 64 * 1024,
    })
}

/// Runs parser output through the daemon's pure pipeline (fold in memory, then shaping).
pub fn pipeline(source: SourceId, records: Vec<Record>) {
    let shaping = shaping();
    let mut store = MemoryStore::default();
    let unit = fold::unit_id("fuzz");
    for touched in fold::fold_unit(&mut store, source, unit, &[], Mode::Append, records) {
        for msg in touched.messages {
            let shaped = shaping.message(msg);
            let _ = json_hash(&shaped);
        }
        let state = fold::session_state(&mut store, source, &touched.session_id);
        let payload = shaping.session(&state);
        let _ = json_hash(&payload);
    }
}

fn new_parser(
    source: SourceId,
    path: &Path,
    state: Option<&serde_json::Value>,
    opts: ParseOptions,
) -> Box<dyn LineParser> {
    match line_parser(&Unit::lines(source, path.to_path_buf()), state, opts) {
        Ok(p) => p,
        Err(e) => panic!("line_parser({source:?}, resume={}) failed: {e}", state.is_some()),
    }
}

/// Persists a parser state the way a ledger would (JSON bytes) and reads it back.
fn persist(state: &serde_json::Value) -> serde_json::Value {
    let bytes = serde_json::to_vec(state).expect("parser state serialises");
    serde_json::from_slice(&bytes).expect("parser state deserialises")
}

fn feed(p: &mut dyn LineParser, lines: &[&[u8]], out: &mut Vec<Record>) {
    for line in lines {
        // Errors are fine (the engine counts and skips them); panics are not.
        let _ = p.parse_line(line, out);
    }
}

/// The line-parser harness: `data` is a JSONL file.
pub fn run_lines(source: SourceId, path: &Path, data: &[u8]) {
    let lines: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let opts = ParseOptions::default();

    // 1. One pass over the whole file with a fresh parser.
    let mut whole = new_parser(source, path, None, opts);
    let mut out_whole = Vec::new();
    feed(whole.as_mut(), &lines, &mut out_whole);
    let state_whole = whole.save_state();

    // 2. Round trip: a parser resumed from that state (with the other options) must be
    //    constructible and must survive the same lines again (a rewritten file).
    let mut again = new_parser(source, path, Some(&persist(&state_whole)), FLIPPED);
    let mut out_again = Vec::new();
    feed(again.as_mut(), &lines, &mut out_again);

    // 3. The same file in two append steps must give the same records and state as pass 1.
    let cut = lines.len() / 2;
    let mut first = new_parser(source, path, None, opts);
    let mut out_split = Vec::new();
    feed(first.as_mut(), &lines[..cut], &mut out_split);
    let mid = persist(&first.save_state());
    let mut second = new_parser(source, path, Some(&mid), opts);
    feed(second.as_mut(), &lines[cut..], &mut out_split);
    check("split_records", out_split == out_whole, || {
        format!("{source:?}: records differ when the file is read in two steps (cut after line {cut})\nwhole: {out_whole:?}\nsplit: {out_split:?}")
    });
    let state_split = second.save_state();
    check("split_state", state_split == state_whole, || {
        format!("{source:?}: final parser state differs when the file is read in two steps (cut after line {cut})\nwhole: {state_whole}\nsplit: {state_split}")
    });

    // 4. What the daemon does with the records next.
    pipeline(source, out_whole);
    pipeline(source, out_again);
}
