//! OpenCode records → `sources::opencode::session_records`, the pure function both the JSON
//! storage reader and the SQLite reader build records with.
//!
//! Input layout (one JSON document per line, like the files of one session):
//!
//! ```text
//! <storage/session/<project>/ses_x.json>
//! <storage/message/ses_x/msg_a.json>
//! <storage/part/msg_a/prt_1.json>
//! <storage/part/msg_a/prt_2.json>
//!                                        ← an empty line starts the next message
//! <storage/message/ses_x/msg_b.json>
//! ...
//! ```
//!
//! Documents that do not parse are treated exactly as `read_json_session` treats unreadable
//! files: a bad session file becomes `{"id": <session id>}`, a bad message file drops that
//! message (and its parts), a bad part file drops that part.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;
use opensyncd::sources::ParseOptions;
use opensyncd::sources::opencode::session_records;
use serde_json::Value;

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

fn parse(doc: &[u8]) -> Option<Value> {
    serde_json::from_slice(doc).ok()
}

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        let mut lines = data.split(|b| *b == b'\n');
        let info = lines
            .next()
            .and_then(parse)
            .unwrap_or_else(|| serde_json::json!({ "id": "ses_fuzz" }));

        let mut groups: Vec<Vec<&[u8]>> = vec![Vec::new()];
        for line in lines {
            if line.is_empty() {
                groups.push(Vec::new());
            } else if let Some(g) = groups.last_mut() {
                g.push(line);
            }
        }
        let messages: Vec<(Value, Vec<Value>)> = groups
            .iter()
            .filter_map(|g| {
                let (msg, parts) = g.split_first()?;
                Some((parse(msg)?, parts.iter().filter_map(|p| parse(p)).collect()))
            })
            .collect();

        let records = session_records(&info, &messages, ParseOptions::default());
        common::pipeline(SourceId::OpenCode, records);
        let records = session_records(&info, &messages, common::FLIPPED);
        common::pipeline(SourceId::OpenCode, records);
        let all_on = ParseOptions {
            sync_thinking: true,
            sync_tool_calls: true,
            sync_subagents: true,
        };
        let records = session_records(&info, &messages, all_on);
        common::pipeline(SourceId::OpenCode, records);
    });
});
