//! Restarting the daemon in place (same pid, arguments and environment): after a ledger I/O
//! failure, with a delay that grows with each restart; and once idle after a large backfill,
//! to give back the memory it leaves behind.

use std::time::Duration;

use anyhow::anyhow;

use crate::config::Paths;

/// How long to wait between opening attempts of a ledger on a failing disk.
pub(super) const LEDGER_RETRY: Duration = Duration::from_secs(30);

/// Re-executions so far (carried in the environment), for the growing delay between them.
const REEXEC_COUNT_VAR: &str = "OPENSYNCD_REEXEC_COUNT";

/// 10 s, doubling with each re-execution up to about 5 minutes: a disk that stays full must
/// not turn into a loop that re-sends the backlog every few seconds.
pub(super) fn reexec_delay() -> Duration {
    Duration::from_secs(10 << reexec_count().min(5))
}

/// How many times this process image was re-executed (0 for a normal start).
pub(super) fn reexec_count() -> u32 {
    std::env::var(REEXEC_COUNT_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Why the daemon restarts in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The ledger failed with an I/O error: reopen it (the delay before the next such
    /// restart grows).
    ReopenLedger,
    /// Idle after a large backfill: the heap stays fragmented for the life of the process;
    /// a fresh image holds what a daemon started on the synced ledger holds.
    GiveBackMemory,
    /// The ledger was just copied from sled: a fresh image holds none of sled's memory.
    LedgerMoved,
}

/// Writes the restart marker (`Paths::restarting_marker`, this pid): clients that find the
/// socket silent until the new image listens wait for it instead of reporting no daemon.
pub(super) fn mark_restarting(paths: &Paths) {
    let marker = paths.restarting_marker();
    if let Err(err) = std::fs::write(&marker, format!("{}\n", std::process::id())) {
        tracing::debug!(%err, marker = %marker.display(), "cannot write the restart marker");
    }
}

/// Replaces this process with a fresh copy of itself (same pid, arguments and environment).
/// A new image drops every handle and file lock (all opened close-on-exec) at once, whatever
/// state a failed write left them in. Only returns on error (the restart marker is then
/// removed: no new image is coming).
pub(super) fn reexec(why: Why, paths: &Paths) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let n = reexec_count();
    let (count, doing) = match why {
        Why::ReopenLedger => {
            tracing::warn!("restarting opensyncd in place to reopen the ledger");
            (n + 1, "reopen its ledger")
        }
        Why::GiveBackMemory => {
            tracing::info!(
                "backfill done: restarting in place (same pid) to give back the memory it used"
            );
            (n, "give back the backfill's memory")
        }
        Why::LedgerMoved => {
            tracing::info!(
                "ledger moved to SQLite: restarting in place (same pid) to give back the memory the copy used"
            );
            (n, "give back the ledger copy's memory")
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow!("finding the opensyncd binary to restart: {e}"),
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_COUNT_VAR, count.to_string())
        .exec();
    let _ = std::fs::remove_file(paths.restarting_marker());
    anyhow!("restarting opensyncd to {doing}: {err}")
}
