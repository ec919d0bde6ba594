//! The daemon's queue of units waiting to be processed, in memory that does not grow with the
//! number of files: units named by file events and `sync` requests are kept in RAM (few, and
//! served first: they are what the user is looking at), while what a full scan finds — every
//! file of a first backfill — is written to an unlinked scratch file in the state directory
//! and read back a batch at a time as the workers drain it. The largest units of a scan are
//! kept apart and served first (longest first: a big session's messages are sent one after the
//! other, so starting it last would leave the pool idle at the end).

use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::sources::Unit;

/// Units read back from the scratch file at a time.
const BATCH: usize = 256;
/// The largest units of a scan kept in memory, served first.
const LONGEST_FIRST: usize = 512;

/// The queue. Units are unique within the in-memory part; a unit the scratch file names again
/// later is simply processed again (finding nothing new costs a `stat` and a ledger read).
#[derive(Debug)]
pub struct Backlog {
    dir: PathBuf,
    /// Named by events and requests, in arrival order.
    hinted: VecDeque<Unit>,
    /// The largest units of the last scan, largest first.
    longest: Vec<Unit>,
    /// The batch read back from the scratch file.
    scanned: VecDeque<Unit>,
    /// Everything above, for de-duplication.
    queued: HashSet<Unit>,
    spill: Option<Spill>,
}

#[derive(Debug)]
struct Spill {
    reader: BufReader<File>,
    remaining: usize,
}

/// A scan being written to the backlog ([`Backlog::scan_sink`]).
pub struct ScanSink<'a> {
    backlog: &'a mut Backlog,
    writer: Option<BufWriter<File>>,
    spilled: usize,
    /// (size, sequence, unit) of the largest units so far; a min-heap through `Reverse`.
    largest: BinaryHeap<std::cmp::Reverse<(u64, u64, Unit)>>,
    seq: u64,
}

impl Backlog {
    /// An empty backlog whose scratch files go in `dir` (the state directory).
    pub fn new(dir: &Path) -> Backlog {
        Backlog {
            dir: dir.to_path_buf(),
            hinted: VecDeque::new(),
            longest: Vec::new(),
            scanned: VecDeque::new(),
            queued: HashSet::new(),
            spill: None,
        }
    }

    /// Queues a unit named by an event or a request (once, however often it is named).
    pub fn push(&mut self, unit: Unit) {
        if self.queued.insert(unit.clone()) {
            self.hinted.push_back(unit);
        }
    }

    /// Starts replacing what the previous scan left with a new scan's units (a new scan
    /// finds everything the old one did that still needs work).
    pub fn scan_sink(&mut self) -> ScanSink<'_> {
        for unit in self.longest.drain(..).chain(self.scanned.drain(..)) {
            self.queued.remove(&unit);
        }
        self.spill = None;
        let writer = match scratch_file(&self.dir) {
            Ok(file) => Some(BufWriter::new(file)),
            Err(err) => {
                tracing::warn!(%err, dir = %self.dir.display(), "cannot write the scan backlog to disk; keeping it in memory");
                None
            }
        };
        ScanSink {
            backlog: self,
            writer,
            spilled: 0,
            largest: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// The next unit to process: named ones first, then the scan's largest, then the rest of
    /// the scan in its order.
    pub fn pop(&mut self) -> Option<Unit> {
        let unit = match self.hinted.pop_front() {
            Some(unit) => unit,
            None => match self.longest.pop() {
                Some(unit) => unit,
                None => {
                    if self.scanned.is_empty() {
                        self.refill();
                    }
                    self.scanned.pop_front()?
                }
            },
        };
        self.queued.remove(&unit);
        Some(unit)
    }

    /// Units waiting, in memory and on disk.
    pub fn len(&self) -> usize {
        self.hinted.len()
            + self.longest.len()
            + self.scanned.len()
            + self.spill.as_ref().map_or(0, |s| s.remaining)
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the next batch from the scratch file.
    fn refill(&mut self) {
        let Some(spill) = &mut self.spill else {
            return;
        };
        let mut line = String::new();
        while self.scanned.len() < BATCH && spill.remaining > 0 {
            line.clear();
            spill.remaining -= 1;
            match spill.reader.read_line(&mut line) {
                Ok(0) => {
                    spill.remaining = 0;
                }
                Ok(_) => match serde_json::from_str::<Unit>(line.trim_end()) {
                    Ok(unit) => {
                        if self.queued.insert(unit.clone()) {
                            self.scanned.push_back(unit);
                        }
                    }
                    Err(err) => {
                        tracing::error!(%err, "unreadable entry in the scan backlog; skipped (the next scan finds it)")
                    }
                },
                Err(err) => {
                    tracing::error!(%err, "reading the scan backlog failed; the rest waits for the next scan");
                    spill.remaining = 0;
                }
            }
        }
        if spill.remaining == 0 {
            self.spill = None;
        }
    }
}

impl ScanSink<'_> {
    /// Adds one unit of the scan; `size` orders the largest first.
    pub fn add(&mut self, size: u64, unit: Unit) {
        if self.backlog.queued.contains(&unit) {
            return;
        }
        self.seq += 1;
        self.largest
            .push(std::cmp::Reverse((size, u64::MAX - self.seq, unit)));
        if self.largest.len() > LONGEST_FIRST
            && let Some(std::cmp::Reverse((_, _, smallest))) = self.largest.pop()
        {
            self.spill_one(smallest);
        }
    }

    fn spill_one(&mut self, unit: Unit) {
        if let Some(writer) = &mut self.writer {
            let written = serde_json::to_writer(&mut *writer, &unit)
                .map_err(std::io::Error::other)
                .and_then(|()| writer.write_all(b"\n"));
            match written {
                Ok(()) => {
                    self.spilled += 1;
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "writing the scan backlog failed; keeping the rest in memory");
                    self.writer = None;
                }
            }
        }
        if self.backlog.queued.insert(unit.clone()) {
            self.backlog.scanned.push_back(unit);
        }
    }

    /// Ends the scan: the largest units go first, the scratch file is rewound for reading.
    /// Returns how many units the backlog holds.
    pub fn finish(mut self) -> usize {
        let mut longest: Vec<(u64, u64, Unit)> =
            self.largest.drain().map(|std::cmp::Reverse(e)| e).collect();
        // Ascending, so that `pop` takes the largest (and of equal sizes the first found).
        longest.sort();
        for (_, _, unit) in longest {
            if self.backlog.queued.insert(unit.clone()) {
                self.backlog.longest.push(unit);
            }
        }
        if let Some(writer) = self.writer.take() {
            let rewound = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|mut file| file.rewind().map(|()| file));
            match rewound {
                Ok(file) => {
                    self.backlog.spill = Some(Spill {
                        reader: BufReader::new(file),
                        remaining: self.spilled,
                    });
                }
                Err(err) => {
                    tracing::error!(%err, "the scan backlog could not be read back; the rest waits for the next scan");
                }
            }
        }
        self.backlog.len()
    }
}

/// A private scratch file in `dir`, unlinked at once: it lives as long as its handle, so no
/// list of the user's files is left behind by a crash.
fn scratch_file(dir: &Path) -> std::io::Result<File> {
    crate::private_fs::ensure_private_dir(dir)?;
    let path = dir.join(format!(".scan-backlog.{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceId;
    use crate::sources::Access;

    fn unit(name: &str) -> Unit {
        Unit {
            source: SourceId::ClaudeCode,
            access: Access::Lines,
            path: PathBuf::from(format!("/home/u/.claude/projects/p/{name}.jsonl")),
            part: None,
        }
    }

    fn drain(b: &mut Backlog) -> Vec<String> {
        std::iter::from_fn(|| b.pop())
            .map(|u| u.path.file_stem().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_large_scan_goes_through_the_disk_largest_first_and_hints_jump_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Backlog::new(dir.path());
        let n = LONGEST_FIRST + 3 * BATCH + 7;
        let mut sink = b.scan_sink();
        for i in 0..n {
            // Unit 5 is the largest, unit 9 the second largest; the others are all size 1.
            let size = match i {
                5 => 1_000,
                9 => 500,
                _ => 1,
            };
            sink.add(size, unit(&format!("u{i:05}")));
        }
        assert_eq!(sink.finish(), n);
        assert!(
            b.queued.len() <= LONGEST_FIRST,
            "only the largest are in memory before the first pop"
        );
        // Nothing of the scan is left on disk by name.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        b.push(unit("live"));
        b.push(unit("live"));
        let order = drain(&mut b);
        assert_eq!(order.len(), n + 1, "every unit once, the hint once");
        assert_eq!(&order[..3], ["live", "u00005", "u00009"]);
        let unique: HashSet<&String> = order.iter().collect();
        assert_eq!(unique.len(), n + 1);
        assert!(b.is_empty());
    }

    #[test]
    fn a_new_scan_replaces_what_the_previous_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Backlog::new(dir.path());
        let mut sink = b.scan_sink();
        for i in 0..(LONGEST_FIRST + 10) {
            sink.add(1, unit(&format!("old{i}")));
        }
        sink.finish();
        b.push(unit("live"));
        let mut sink = b.scan_sink();
        sink.add(1, unit("new"));
        assert_eq!(sink.finish(), 2);
        assert_eq!(drain(&mut b), ["live", "new"]);
    }

    #[test]
    fn an_unwritable_state_directory_keeps_the_scan_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"").unwrap();
        let mut b = Backlog::new(&file);
        let mut sink = b.scan_sink();
        for i in 0..(LONGEST_FIRST + 5) {
            sink.add(1, unit(&format!("u{i}")));
        }
        assert_eq!(sink.finish(), LONGEST_FIRST + 5);
        assert_eq!(drain(&mut b).len(), LONGEST_FIRST + 5);
    }
}
