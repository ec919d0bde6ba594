//! Claude Code transcript lines → `ClaudeParser` (via `sources::line_parser`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

const PATH: &str = "/tmp/p/-home-x/0b6f0a57-0000-4000-8000-000000000001.jsonl";

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        common::run_lines(SourceId::ClaudeCode, Path::new(PATH), data);
    });
});
