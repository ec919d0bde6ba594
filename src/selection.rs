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
    let mut on_disk: HashSet<String> = HashSet::new();
    let wanted = |source: &SourceId| {
        sources.contains(source)
            && (selection.sources.is_empty() || selection.sources.contains(source))
    };
    for source in sources {
        if !wanted(source) {
            continue;
        }
        for unit in sources::scan(*source, roots) {
            on_disk.insert(unit.ledger_key());
            let record = ledger.file(&unit.ledger_key())?;
            if selection.new_only && record.is_some() {
                continue;
            }
            let mtime = match (unit.access, &unit.part) {
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
                    mtime
                }
                // A multi-file snapshot unit has no single mtime: the last commit's.
                (Access::Snapshot, Some(_)) => record.as_ref().map_or(0, |r| r.mtime_ms),
                (Access::Snapshot, None) => std::fs::metadata(&unit.path)
                    .map(|m| mtime_ms(&m))
                    .unwrap_or(0),
            };
            units.push((mtime, unit));
        }
    }
    // Units the ledger knows that are gone (deleted while nobody watched): processing them
    // retracts what they contributed.
    if !selection.new_only {
        for item in ledger.files() {
            let (key, record) = item?;
            if let Some(unit) = record.unit
                && wanted(&unit.source)
                && !on_disk.contains(&key)
            {
                units.push((0, unit));
            }
        }
    }
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
