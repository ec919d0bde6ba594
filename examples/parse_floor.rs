//! The floor under `export`'s parse throughput: what reading a tree of JSON-lines files costs
//! before anything is built from them, one step at a time.
//!
//! The files are read as `export` reads them — the same reader (`tail::read_lines_into`), the
//! same read size (`oneshot::EXPORT_READ_BYTES`) and line cap, the same loop over each read's
//! lines (`sources::parse_lines`) — but each line goes to a "parser" that stops after a
//! chosen step, so the cost of each step (and what is left for everything after it) can be
//! measured on the same files: with `valgrind --tool=callgrind` for instructions, or
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

use std::path::{Path, PathBuf};

use opensyncd::sources::{self, LineError, LineParser, Record};
use opensyncd::{config::Config, oneshot::EXPORT_READ_BYTES, tail};

/// How far each line is taken.
#[derive(Clone, Copy)]
enum Step {
    Read,
    Utf8,
    Skip,
    Value,
}

/// A line "parser" that takes each line up to its step, building nothing it keeps.
struct Floor {
    step: Step,
    lines: u64,
}

impl LineParser for Floor {
    fn parse_line(&mut self, line: &[u8], _: &mut Vec<Record>) -> Result<(), LineError> {
        self.lines += 1;
        let text = || std::str::from_utf8(line).ok();
        let passed = match self.step {
            Step::Read => true,
            Step::Utf8 => text().is_some(),
            Step::Skip => {
                text().is_some_and(|t| serde_json::from_str::<serde::de::IgnoredAny>(t).is_ok())
            }
            Step::Value => {
                text().is_some_and(|t| serde_json::from_str::<serde_json::Value>(t).is_ok())
            }
        };
        if passed {
            Ok(())
        } else {
            Err(LineError::Malformed("refused".into()))
        }
    }

    fn save_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(step), Some(dir)) = (args.next(), args.next()) else {
        eprintln!("usage: parse_floor <read|utf8|skip|value> <dir>");
        std::process::exit(2);
    };
    let step = match step.as_str() {
        "read" => Step::Read,
        "utf8" => Step::Utf8,
        "skip" => Step::Skip,
        "value" => Step::Value,
        _ => {
            eprintln!("unknown step {step:?}: one of read, utf8, skip, value");
            std::process::exit(2);
        }
    };
    let mut files = Vec::new();
    if let Err(e) = collect(Path::new(&dir), &mut files) {
        eprintln!("cannot list {dir}: {e}");
        std::process::exit(1);
    }
    files.sort();

    let max_line = Config::default().max_line_bytes;
    let mut floor = Floor { step, lines: 0 };
    let mut chunk = tail::Chunk::default();
    let (mut bytes, mut refused) = (0u64, 0u64);
    for path in &files {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("cannot open {}: {e}", path.display());
                continue;
            }
        };
        let mut offset = 0;
        loop {
            let read =
                tail::read_lines_into(&mut file, offset, EXPORT_READ_BYTES, max_line, &mut chunk);
            if let Err(e) = read {
                eprintln!("cannot read {}: {e}", path.display());
                break;
            }
            refused += sources::parse_lines(&mut floor, chunk.iter_lines(), &mut Vec::new()).lines;
            bytes += chunk.end - offset;
            offset = chunk.end;
            if !chunk.more {
                break;
            }
        }
    }
    eprintln!(
        "{} files, {bytes} bytes, {} lines, {} passed the step",
        files.len(),
        floor.lines,
        floor.lines - refused
    );
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
