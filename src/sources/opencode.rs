//! STUB: OpenCode reader, filled in by the OpenCode work.

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
