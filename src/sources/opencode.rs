//! OpenCode (JSON storage and `opencode.db`). NOT BUILT YET: no units are found, so OpenCode
//! sessions are not synced by this build.

use std::path::Path;

use crate::sources::{Roots, Unit};

/// Lists every OpenCode unit under the roots.
pub fn scan(_roots: &Roots) -> Vec<Unit> {
    Vec::new()
}

/// Maps a changed path to its unit.
pub fn unit_for_path(_path: &Path, _roots: &Roots) -> Option<Unit> {
    None
}

/// Everything read from one OpenCode unit in one pass.
pub struct Snapshot {
    /// The records.
    pub records: Vec<crate::sources::Record>,
    /// State to persist once `records` are acknowledged.
    pub state: serde_json::Value,
    /// The read stopped at a size bound; call again.
    pub more: bool,
}

/// Reads one unit. Not built yet: `scan` finds no OpenCode units, so this is never reached.
pub fn read_unit(
    unit: &Unit,
    _state: Option<&serde_json::Value>,
    _opts: crate::sources::ParseOptions,
) -> Result<Snapshot, String> {
    Err(format!(
        "{}: OpenCode support is not built yet",
        unit.describe()
    ))
}
