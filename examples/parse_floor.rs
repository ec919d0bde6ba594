//! The floor under `export`'s parse throughput: what reading a tree of JSON-lines files costs
//! before anything is built from them, one step at a time.
//!
//! `export` reads each file through a 256 KiB buffer, splits it into lines, checks each line
//! is UTF-8 and reads it with `serde_json`. This program does the same reading and then stops
//! after a chosen step, so the cost of each step (and what is left for everything after it)
//! can be measured on the same files: with `valgrind --tool=callgrind` for instructions, or
//! `perf stat -e task-clock` for CPU time.
//!
//! ```text
//! cargo build --release --example parse_floor
//! target/release/examples/parse_floor <step> <dir>
//! ```
//!
//! `<step>` is one of:
//! - `read`: read the files and split the lines;
//! - `utf8`: and check each line is UTF-8;
//! - `skip`: and have `serde_json` check each line is JSON, building nothing (`IgnoredAny`):
//!   every byte passes through its scanner once, as in `export`;
//! - `value`: and build each line as a `serde_json::Value`.
//!
//! Every `*.jsonl` file under `<dir>` is read, in sorted order. A last line without its newline
//! is not counted: `export` too leaves it until it is complete.

use std::io::Read;
use std::path::{Path, PathBuf};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(step), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: parse_floor <read|utf8|skip|value> <dir>");
        std::process::exit(2);
    };
    if !matches!(step.as_str(), "read" | "utf8" | "skip" | "value") {
        eprintln!("unknown step {step:?}: one of read, utf8, skip, value");
        std::process::exit(2);
    }
    let mut files = Vec::new();
    if let Err(e) = collect(Path::new(&dir), &mut files) {
        eprintln!("cannot list {dir}: {e}");
        std::process::exit(1);
    }
    files.sort();

    let mut buffer = vec![0u8; 256 * 1024];
    let (mut bytes, mut lines, mut passed) = (0u64, 0u64, 0u64);
    for path in &files {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("cannot open {}: {e}", path.display());
                continue;
            }
        };
        // `held` bytes at the buffer's start are a line not yet complete.
        let mut held = 0usize;
        loop {
            if held == buffer.len() {
                buffer.resize(buffer.len() * 2, 0);
            }
            let n = match file.read(&mut buffer[held..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    eprintln!("cannot read {}: {e}", path.display());
                    break;
                }
            };
            bytes += n as u64;
            let end = held + n;
            let mut start = 0;
            while let Some(at) = memchr::memchr(b'\n', &buffer[start..end]) {
                let line = &buffer[start..start + at];
                if !line.is_empty() {
                    lines += 1;
                    passed += u64::from(check(&step, line));
                }
                start += at + 1;
            }
            buffer.copy_within(start..end, 0);
            held = end - start;
        }
    }
    eprintln!(
        "{step}: {} files, {bytes} bytes, {lines} lines, {passed} passed the step",
        files.len()
    );
}

/// Whether `line` passes `step`.
fn check(step: &str, line: &[u8]) -> bool {
    let text = || std::str::from_utf8(line).ok();
    match step {
        "read" => true,
        "utf8" => text().is_some(),
        "skip" => text().is_some_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok()),
        _ => text().is_some_and(|t| serde_json::from_str::<serde_json::Value>(t).is_ok()),
    }
}

/// Every `*.jsonl` file under `dir`.
fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "jsonl") {
            out.push(path);
        }
    }
    Ok(())
}
