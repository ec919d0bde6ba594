//! Which units a pass covers: the `sync` selection (`--all`, `--new`, `--limit`, `--force`,
//! `--source`) applied to a scan, what a sync reports back, and the cheap "anything new?" test
//! that keeps unchanged files from being opened at all.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::engine::EngineError;
use crate::ledger::Ledger;
use crate::model::SourceId;
use crate::sources::{self, Access, Roots, Unit};
use crate::tail::mtime_ms;

/// Which units a `sync` covers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Selection {
    /// Only these sources (empty = all enabled).
    pub sources: Vec<SourceId>,
    /// Only units never acknowledged.
    pub new_only: bool,
    /// Only the N most recently modified units.
    pub limit: Option<usize>,
    /// Re-send the selected units' sessions.
    pub force: bool,
    /// First send again the records the server refused before.
    #[serde(default)]
    pub retry_rejected: bool,
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SyncSummary {
    /// Units processed.
    pub units: usize,
    /// Models without a price met (their cost is left out), with the sessions and tokens
    /// affected.
    #[serde(default)]
    pub unpriced: std::collections::BTreeMap<String, (usize, crate::model::Tokens)>,
    /// Units that failed (reason in the log).
    pub failed: usize,
    /// Sessions written.
    pub sessions_sent: u64,
    /// Messages written.
    pub messages_sent: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Set when pushing paused (credentials, URL, `opensyncd pause`).
    pub paused: Option<String>,
    /// Set when the sync stopped before the end: its `--timeout` ran out, or the server kept
    /// failing (what was acknowledged is kept; the rest is sent later).
    #[serde(default)]
    pub gave_up: Option<String>,
}

/// Scans the enabled sources and returns the units that may hold unacknowledged data.
pub fn scan_units(
    ledger: &Ledger,
    roots: &Roots,
    sources: &[SourceId],
    selection: &Selection,
) -> Result<Vec<Unit>, EngineError> {
    let mut units: Vec<(i64, Unit)> = Vec::new();
    for_each_unit_to_process(ledger, roots, sources, selection, |found| {
        units.push((found.mtime_ms, found.unit));
    })?;
    if let Some(limit) = selection.limit {
        units.sort_by_key(|(mtime, _)| std::cmp::Reverse(*mtime));
        units.truncate(limit);
    }
    if selection.force {
        let mut sessions = Vec::new();
        for (_, unit) in &units {
            if let Some(rec) = ledger.file(&unit.ledger_key())? {
                sessions.extend(rec.sessions);
            }
            ledger.rewind_file(&unit.ledger_key())?;
        }
        ledger.reset_acks(&sessions)?;
    }
    Ok(units.into_iter().map(|(_, u)| u).collect())
}

/// A unit a scan found work in.
#[derive(Debug)]
pub struct Found {
    /// The unit.
    pub unit: Unit,
    /// Its file's modification time (0 when unknown or gone).
    pub mtime_ms: i64,
    /// Its file's size (0 for multi-file units and gone ones): larger units are started first.
    pub size: u64,
}

/// Scans the enabled sources and hands each unit that may hold unacknowledged data to `each`,
/// as it is found, instead of collecting them (the daemon streams a scan of a whole home into
/// its backlog). Ignores `limit` and `force`, which need the whole list ([`scan_units`]).
/// What is kept in memory meanwhile: one source's list of units and a 64-bit hash of every
/// unit key on disk (for the "gone from disk" test).
pub fn for_each_unit_to_process(
    ledger: &Ledger,
    roots: &Roots,
    sources: &[SourceId],
    selection: &Selection,
    mut each: impl FnMut(Found),
) -> Result<(), EngineError> {
    let mut on_disk: HashSet<u64> = HashSet::new();
    let wanted = |source: &SourceId| {
        sources.contains(source)
            && (selection.sources.is_empty() || selection.sources.contains(source))
    };
    for source in sources {
        if !wanted(source) {
            continue;
        }
        for unit in sources::scan(*source, roots) {
            let key = unit.ledger_key();
            on_disk.insert(key_hash(&key));
            let record = ledger.file(&key)?;
            if selection.new_only && record.is_some() {
                continue;
            }
            let (mtime_ms, size) = match (unit.access, &unit.part) {
                (Access::Lines, _) => {
                    let Ok(meta) = std::fs::metadata(&unit.path) else {
                        continue;
                    };
                    let mtime = mtime_ms(&meta);
                    if let Some(rec) = &record
                        && !selection.force
                        && meta.len() == rec.checkpoint.offset
                        && mtime == rec.mtime_ms
                    {
                        continue; // nothing new
                    }
                    (mtime, meta.len())
                }
                // A multi-file snapshot unit has no single mtime: the last commit's.
                (Access::Snapshot, Some(_)) => (record.as_ref().map_or(0, |r| r.mtime_ms), 0),
                (Access::Snapshot, None) => std::fs::metadata(&unit.path)
                    .map(|m| (mtime_ms(&m), m.len()))
                    .unwrap_or((0, 0)),
            };
            each(Found {
                unit,
                mtime_ms,
                size,
            });
        }
    }
    // Units the ledger knows that are gone (deleted while nobody watched): processing them
    // retracts what they contributed.
    if !selection.new_only {
        for item in ledger.files() {
            let (key, record) = item?;
            if let Some(unit) = record.unit
                && wanted(&unit.source)
                && !on_disk.contains(&key_hash(&key))
            {
                each(Found {
                    unit,
                    mtime_ms: 0,
                    size: 0,
                });
            }
        }
    }
    Ok(())
}

/// A unit key's 64-bit hash: the set of keys on disk is kept as hashes so that a scan of a
/// home with a hundred thousand files does not hold a hundred thousand strings. Two keys with
/// the same hash (about one chance in 10^10 for 10^5 files) would only delay noticing that
/// one of them is gone until a later scan.
fn key_hash(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes())
}
