//! Codex CLI rollout lines → `CodexParser` (via `sources::line_parser`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

const PATH: &str =
    "/tmp/p/sessions/2026/01/01/rollout-2026-01-01T00-00-00-0b6f0a57-0000-4000-8000-000000000002.jsonl";

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        common::run_lines(SourceId::CodexCli, Path::new(PATH), data);
    });
});
