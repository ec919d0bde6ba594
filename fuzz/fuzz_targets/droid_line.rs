//! Factory Droid transcript lines → `DroidParser` (via `sources::line_parser`), and the settings
//! snapshot → `sources::droid::settings_records`.
//!
//! Input layout: the transcript (JSONL), then optionally a NUL byte and the bytes of the
//! sibling `<session>.settings.json`. Besides the line harness's properties (two append steps
//! give the records and state of one pass; the parser resumes from its own state), the settings
//! part must yield at most one usage fact, under the fixed key with `Replace` (a running total
//! that replaces, never adds), with an output that is never below `outputTokens`.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;
use opensyncd::sources::droid::{USAGE_KEY, settings_records};
use opensyncd::sources::{Record, UsageMerge};
use serde_json::Value;

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

const SESSION: &str = "0b6f0a57-0000-4000-8000-000000000003";
const PATH: &str = "/tmp/p/.factory/sessions/-home-x/0b6f0a57-0000-4000-8000-000000000003.jsonl";

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        let (transcript, settings) = match data.iter().position(|b| *b == 0) {
            Some(i) => (&data[..i], Some(&data[i + 1..])),
            None => (data, None),
        };
        common::run_lines(SourceId::FactoryDroid, Path::new(PATH), transcript);

        // What `read_settings` does once the file is read: a JSON object or an error.
        let Some(value) = settings
            .and_then(|s| serde_json::from_slice::<Value>(s).ok())
            .filter(Value::is_object)
        else {
            return;
        };
        let records = settings_records(SESSION, &value);
        let usage: Vec<_> = records
            .iter()
            .filter_map(|r| match r {
                Record::Usage(u) => Some(u),
                _ => None,
            })
            .collect();
        common::check("settings_one_usage", usage.len() <= 1, || {
            format!("{} usage facts from one settings file", usage.len())
        });
        for u in &usage {
            common::check(
                "settings_replace",
                u.key == USAGE_KEY && u.merge == UsageMerge::Replace && u.session_id == SESSION,
                || format!("{u:?}"),
            );
            let raw_output = value["tokenUsage"]["outputTokens"].as_u64().unwrap_or(0);
            common::check("settings_output", u.tokens.output >= raw_output, || {
                format!("output {} below outputTokens {raw_output}", u.tokens.output)
            });
        }
        common::pipeline(SourceId::FactoryDroid, records);
    });
});
