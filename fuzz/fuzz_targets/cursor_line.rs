//! Cursor: agent-transcript lines and hook-spool lines → `sources::cursor::conversation_records`
//! (the merge the snapshot reader runs), through `Transcript::parse` and
//! `cursor_spool::parse_spool`, exactly as `read_conversation` feeds them.
//!
//! Input layout: transcript lines, then an empty line, then spool lines (both JSONL; a missing
//! empty line means no spool). The same transcript bytes are also read as a subagent's file.
//!
//! Besides "no panic" and the daemon's pipeline, it checks the merge's promise: message ids are
//! unique (`unique_ids`), and when the spool's `transcript_bytes` are known and never decrease
//! (as the hook writes them), a read of an earlier moment — the transcript cut in half, the
//! spool up to the first event that measured more — emits nothing that the full read drops or
//! re-times (`prefix_stable`).
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;
use opensyncd::sources::cursor::{Transcript, conversation_records};
use opensyncd::sources::cursor_spool::{SpoolEvent, parse_spool};
use opensyncd::sources::{ParseOptions, Record};

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

const CID: &str = "3f2b8c1e-5d4a-4e7b-9c60-2a1d8e4f7b93";
const CREATED_MS: i64 = 1_767_225_600_000;

fn times(records: &[Record]) -> HashMap<String, Option<i64>> {
    let mut out = HashMap::new();
    let mut ids = HashSet::new();
    for r in records {
        if let Record::Message(m) = r {
            common::check("unique_ids", ids.insert(m.external_id.clone()), || {
                format!("message id {} twice", m.external_id)
            });
            out.insert(m.external_id.clone(), m.created_at);
        }
    }
    out
}

fn merge(transcript: &[u8], events: &[SpoolEvent], opts: ParseOptions) -> Vec<Record> {
    let main = Transcript::parse(CID, transcript, CREATED_MS);
    let sub = Transcript::parse("sub-1", transcript, CREATED_MS);
    conversation_records(CID, Some(&main), &[sub], events, opts)
}

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        let split = data.windows(2).position(|w| w == b"\n\n");
        let (transcript, spool) = match split {
            Some(i) => (&data[..=i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let (events, _) = parse_spool(spool);
        for opts in [ParseOptions::default(), common::FLIPPED] {
            let records = merge(transcript, &events, opts);
            let full = times(&records);
            common::pipeline(SourceId::Cursor, records);

            let sizes: Option<Vec<u64>> = events.iter().map(|e| e.transcript_bytes).collect();
            let Some(sizes) = sizes else { continue };
            if sizes.windows(2).any(|w| w[0] > w[1]) {
                continue;
            }
            let cut = transcript.len() / 2;
            let seen: Vec<SpoolEvent> = events
                .iter()
                .take_while(|e| e.transcript_bytes.is_some_and(|s| s as usize <= cut))
                .cloned()
                .collect();
            let earlier = times(&merge(&transcript[..cut], &seen, opts));
            for (id, at) in &earlier {
                common::check("prefix_stable", full.get(id) == Some(at), || {
                    format!("{id} at {at:?} early, {:?} at the end", full.get(id))
                });
            }
        }
    });
});
