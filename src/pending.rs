//! What is not yet acknowledged, unit by unit: the one definition `status` (its backlog),
//! `sync --dry-run` (what it lists) and `sync` (what it processes) share, so that they never
//! contradict each other — after a full sync all three find nothing.
//!
//! A line unit is pending when it holds a complete line past its checkpoint, or when it was
//! rewritten (the checkpoint's fingerprint no longer matches: it is read again from the start).
//! A snapshot unit (an OpenCode session or database, a Codex or Droid file rewritten in place)
//! is pending when reading it from its saved state yields records, exactly the test the engine
//! applies before reading it for real. A unit the ledger knows whose file is gone is pending:
//! processing it retracts what it contributed. A trailing partial line is not pending: it is
//! read once the tool finishes writing it.
//!
//! [`describe`] goes one step further for `sync --dry-run`: it parses the pending part of each
//! unit (never sending or writing anything) and names the sessions it would update.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use serde::{Deserialize, Serialize};

use crate::ledger::{FileRecord, Ledger, LedgerError};
use crate::sources::{self, Access, ParseOptions, Record, Unit};
use crate::tail::{self, Identity};

/// Why a unit is pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// Never acknowledged.
    New,
    /// Lines appended since the checkpoint.
    Appended,
    /// Rewritten, truncated or replaced: read again from the start.
    Rewritten,
    /// A snapshot unit whose content changed.
    Changed,
    /// Gone from disk: what it contributed is retracted.
    Gone,
}

/// A unit with something not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// The unit.
    pub unit: Unit,
    /// Why.
    pub why: Why,
    /// Bytes to read (line units; 0 for the others).
    pub bytes: u64,
}

/// Whether `unit` holds anything the ledger has not acknowledged. Errors reading the unit make
/// it pending (the engine will meet the same error and report it), never silently synced.
pub fn check(
    ledger: &Ledger,
    unit: &Unit,
    parse: ParseOptions,
) -> Result<Option<Pending>, LedgerError> {
    let record = ledger.file(&unit.ledger_key())?;
    let pending = |why, bytes| {
        Some(Pending {
            unit: unit.clone(),
            why,
            bytes,
        })
    };
    Ok(match unit.access {
        Access::Lines => match std::fs::metadata(&unit.path) {
            Err(_) if record.is_some() => pending(Why::Gone, 0),
            Err(_) => None,
            Ok(meta) => line_pending(unit, record.as_ref(), &meta).map(|(why, bytes)| Pending {
                unit: unit.clone(),
                why,
                bytes,
            }),
        },
        Access::Snapshot => {
            if !sources::source(unit.source).exists(unit) {
                return Ok(record.is_some().then(|| Pending {
                    unit: unit.clone(),
                    why: Why::Gone,
                    bytes: 0,
                }));
            }
            let state = record.as_ref().and_then(|r| r.state.as_ref());
            match sources::read_snapshot(unit, state, parse) {
                Ok(snap) if snap.records.is_empty() => None,
                Ok(_) | Err(_) => pending(
                    if record.is_some() {
                        Why::Changed
                    } else {
                        Why::New
                    },
                    0,
                ),
            }
        }
    })
}

/// The pending state of a line unit: `None` when everything up to its last complete line is
/// acknowledged.
fn line_pending(
    unit: &Unit,
    record: Option<&FileRecord>,
    meta: &std::fs::Metadata,
) -> Option<(Why, u64)> {
    let len = meta.len();
    let Some(record) = record else {
        return has_complete_line(unit, 0).then_some((Why::New, len));
    };
    let offset = record.checkpoint.offset;
    if len == offset && tail::mtime_ms(meta) == record.mtime_ms {
        return None;
    }
    let Ok(mut file) = std::fs::File::open(&unit.path) else {
        return Some((Why::Appended, len.saturating_sub(offset)));
    };
    match tail::check_identity(&mut file, len, &record.checkpoint) {
        Ok(Identity::Same) => (len > offset && has_complete_line(unit, offset))
            .then_some((Why::Appended, len - offset)),
        Ok(Identity::Changed) => Some((Why::Rewritten, len)),
        Err(_) => Some((Why::Appended, len.saturating_sub(offset))),
    }
}

/// Whether a newline follows `offset` (a complete line waits to be read). Reads only up to the
/// first newline.
fn has_complete_line(unit: &Unit, offset: u64) -> bool {
    let Ok(mut file) = std::fs::File::open(&unit.path) else {
        return true;
    };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return true;
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if memchr::memchr(b'\n', &buf[..n]).is_some() {
                    return true;
                }
            }
            Err(_) => return true,
        }
    }
}

/// The pending units among `units`, in their order.
pub fn filter(
    ledger: &Ledger,
    units: Vec<Unit>,
    parse: ParseOptions,
) -> Result<Vec<Pending>, LedgerError> {
    let mut out = Vec::new();
    for unit in units {
        if let Some(p) = check(ledger, &unit, parse)? {
            out.push(p);
        }
    }
    Ok(out)
}

/// A session the pending data of a unit touches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionPreview {
    /// The session's id (as `export` prints it).
    pub id: String,
    /// Its title, when the pending data gives one (first 80 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Messages in the pending data.
    pub messages: usize,
}

/// One unit as `sync --dry-run` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePreview {
    /// The source.
    pub source: String,
    /// The file (or the directory holding a multi-file unit).
    pub path: String,
    /// The part of `path` (an OpenCode session id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Why it is pending.
    pub why: Why,
    /// Bytes to read.
    pub bytes: u64,
    /// The sessions it would update.
    pub sessions: Vec<SessionPreview>,
    /// Set when the unit could not be read (the sync would report the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `sync --dry-run` found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DryRun {
    /// Every pending unit with the sessions it would update.
    pub files: Vec<FilePreview>,
    /// Writes already planned but held back for the server's dedup windows (what `status`
    /// shows as waiting): a sync sends them once their window has passed.
    #[serde(default)]
    pub deferred_writes: usize,
}

impl DryRun {
    /// Per source: pending units and their bytes.
    pub fn by_source(&self) -> BTreeMap<String, (usize, u64)> {
        let mut out: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for f in &self.files {
            let e = out.entry(f.source.clone()).or_default();
            e.0 += 1;
            e.1 += f.bytes;
        }
        out
    }

    /// Distinct sessions named, and the messages counted in them.
    pub fn totals(&self) -> (usize, usize) {
        let mut ids = std::collections::BTreeSet::new();
        let mut messages = 0;
        for f in &self.files {
            for s in &f.sessions {
                ids.insert((f.source.clone(), s.id.clone()));
                messages += s.messages;
            }
        }
        (ids.len(), messages)
    }
}

/// Parses the pending part of each unit and names the sessions it would update. Reads only;
/// memory stays bounded by one chunk of one unit.
pub fn describe(
    ledger: &Ledger,
    pending: &[Pending],
    parse: ParseOptions,
    max_line_bytes: usize,
) -> Result<DryRun, LedgerError> {
    let mut out = DryRun::default();
    for p in pending {
        let record = ledger.file(&p.unit.ledger_key())?;
        let mut preview = FilePreview {
            source: p.unit.source.as_str().to_string(),
            path: p.unit.path.display().to_string(),
            part: p.unit.part.clone(),
            why: p.why,
            bytes: p.bytes,
            sessions: Vec::new(),
            error: None,
        };
        let mut sessions: BTreeMap<String, SessionPreview> = BTreeMap::new();
        let mut take = |records: Vec<Record>| {
            for r in records {
                let id = r.session_id().to_string();
                if id.is_empty() {
                    continue;
                }
                let entry = sessions
                    .entry(id.clone())
                    .or_insert_with(|| SessionPreview {
                        id,
                        ..SessionPreview::default()
                    });
                match r {
                    Record::Message(_) => entry.messages += 1,
                    Record::Session(facts) => {
                        if let Some(t) = facts.title_override.or(facts.title)
                            && entry.title.is_none()
                        {
                            entry.title = Some(t.chars().take(80).collect());
                        }
                    }
                    Record::Usage(_) => {}
                }
            }
        };
        let result = match (p.why, p.unit.access) {
            (Why::Gone, _) => {
                // Nothing to read: the sessions it fed are updated without it.
                for key in record.iter().flat_map(|r| r.sessions.iter()) {
                    if let Some((_, sid)) = key.split_once('\0') {
                        take_gone(&mut sessions, sid);
                    }
                }
                Ok(())
            }
            (_, Access::Lines) => read_pending_lines(
                &p.unit,
                record.as_ref(),
                p.why,
                parse,
                max_line_bytes,
                &mut take,
            ),
            (_, Access::Snapshot) => {
                let state = record.as_ref().and_then(|r| r.state.as_ref());
                sources::read_snapshot(&p.unit, state, parse)
                    .map(|snap| take(snap.records))
                    .map_err(|e| e.to_string())
            }
        };
        preview.error = result.err();
        preview.sessions = sessions.into_values().collect();
        out.files.push(preview);
    }
    Ok(out)
}

fn take_gone(sessions: &mut BTreeMap<String, SessionPreview>, sid: &str) {
    sessions
        .entry(sid.to_string())
        .or_insert_with(|| SessionPreview {
            id: sid.to_string(),
            ..SessionPreview::default()
        });
}

/// Parses a line unit from its checkpoint (from the start when rewritten or new), handing the
/// records of each chunk to `take`.
fn read_pending_lines(
    unit: &Unit,
    record: Option<&FileRecord>,
    why: Why,
    parse: ParseOptions,
    max_line_bytes: usize,
    take: &mut dyn FnMut(Vec<Record>),
) -> Result<(), String> {
    let resume = record.filter(|_| why == Why::Appended);
    let mut file = std::fs::File::open(&unit.path).map_err(|e| e.to_string())?;
    let state = resume.and_then(|r| r.state.as_ref());
    let mut parser = match sources::line_parser(unit, state, parse) {
        Ok(p) => p,
        Err(_) => sources::line_parser(unit, None, parse).map_err(|e| e.to_string())?,
    };
    let mut offset = resume.map_or(0, |r| r.checkpoint.offset);
    // One buffer for all of the file's chunks: a large file is read in 8 MiB steps, and a
    // fresh buffer for each would be allocated and faulted in again every time.
    let mut chunk = tail::Chunk::default();
    loop {
        tail::read_lines_into(
            &mut file,
            offset,
            8 * 1024 * 1024,
            max_line_bytes,
            &mut chunk,
        )
        .map_err(|e| e.to_string())?;
        let mut records = Vec::new();
        // Lines that do not parse are the daemon's to count and report, not this check's.
        sources::parse_lines(&mut *parser, chunk.iter_lines(), &mut records);
        take(records);
        if !chunk.more || chunk.end == offset {
            return Ok(());
        }
        offset = chunk.end;
    }
}
