//! pi session lines → `PiParser` (via `sources::line_parser`).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use opensyncd::model::SourceId;

mod common;

libfuzzer_sys::fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    common::mutator::mutate(data, size, max_size, seed)
});

// A fork header's parent is looked up on disk (beside this path, among others); nothing exists
// under this directory, so every input gets the same answer and runs stay reproducible.
const PATH: &str = "/tmp/p/.pi/agent/sessions/--home-x--/2026-01-01T00-00-00-000Z_0b6f0a57-0000-4000-8000-000000000003.jsonl";

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        common::run_lines(SourceId::Pi, Path::new(PATH), data);
    });
});
