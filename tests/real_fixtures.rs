//! The real-fixture tier: logs written by the real tools, read from the directory named by
//! `OPENSYNCD_REAL_FIXTURES` (never copied into this repo). `.ci/run` sets the variable, and
//! then a missing directory is a failure, not a skip.

use std::path::PathBuf;

/// The real fixtures directory (`.../fixtures/real`), or `None` when the tier is not asked
/// for. Panics when the variable is set but the directory is missing.
pub fn dir() -> Option<PathBuf> {
    let raw = std::env::var_os("OPENSYNCD_REAL_FIXTURES")?;
    let dir = PathBuf::from(raw);
    assert!(
        dir.is_dir(),
        "OPENSYNCD_REAL_FIXTURES={} is set but is not a directory",
        dir.display()
    );
    Some(dir)
}
