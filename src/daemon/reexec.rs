//! Restarting the daemon in place (same pid, arguments and environment) after a ledger I/O
//! failure, with a delay that grows with each restart.

use std::time::Duration;

use anyhow::anyhow;

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

/// Replaces this process with a fresh copy of itself (same pid, arguments and environment).
/// sled cannot be reopened in-process while anything still holds the old handle; a new image
/// drops every handle and file lock (all opened close-on-exec) at once. Only returns on error.
pub(super) fn reexec() -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let n = reexec_count();
    tracing::warn!("restarting opensyncd in place to reopen the ledger");
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow!("finding the opensyncd binary to restart: {e}"),
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(REEXEC_COUNT_VAR, (n + 1).to_string())
        .exec();
    anyhow!("restarting opensyncd to reopen its ledger: {err}")
}
