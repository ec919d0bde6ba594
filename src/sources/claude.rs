//! STUB: Claude parser, filled in by the claude parser work.

use std::path::{Path, PathBuf};

use crate::sources::{LineError, LineParser, ParseOptions, Record, Unit};

/// Lists every claude unit under the roots.
pub fn scan(_roots: &[PathBuf]) -> Vec<Unit> {
    Vec::new()
}

/// Maps a changed path to its unit.
pub fn unit_for_path(_path: &Path, _roots: &[PathBuf]) -> Option<Unit> {
    None
}

/// Incremental parser of one file.
pub struct ClaudeParser {}

impl ClaudeParser {
    /// Creates a parser for `path`, resuming from `state`.
    pub fn new(
        _path: &Path,
        _state: Option<&serde_json::Value>,
        _opts: ParseOptions,
    ) -> Result<ClaudeParser, LineError> {
        Ok(ClaudeParser {})
    }
}

impl LineParser for ClaudeParser {
    fn parse_line(&mut self, _line: &[u8], _out: &mut Vec<Record>) -> Result<(), LineError> {
        Ok(())
    }
    fn save_state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
