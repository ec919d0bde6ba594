//! When the loop wakes by itself — the safety-net scan, units to retry, the pause probe, the
//! deferred writes, the watchdog, progress, the end of a `pause --for` — and what it does then.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::reexec::{Why, reexec_delay};
use super::{
    DEFERRED_CHECK, DEGRADED_RESCAN, Daemon, PAUSE_PROBE, PROGRESS_EVERY, RunExit, UNIT_RETRY,
};
use crate::engine::{Outcome, now_ms};
use crate::pause;
use crate::progress::Tick;

/// A busy period that completed this many units restarts the daemon in place once it is
/// over ([`Daemon::progress_may_have_changed`]). glibc keeps most of the heap a backfill
/// fragmented for the life of the process (`BENCHMARKS.md` section 5 has the figures with and
/// without the restart). Only units that were done count, so the restart
/// cannot repeat itself: its start scan finds none of them again. A live day of work stays far
/// below it (a few units per busy period).
pub(super) const RENEW_AFTER_UNITS: usize = 1_000;

/// [`RENEW_AFTER_UNITS`], unless a test asks for fewer.
pub(super) fn renew_after_units() -> usize {
    std::env::var("OPENSYNCD_TEST_RENEW_AFTER_UNITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(RENEW_AFTER_UNITS)
}

/// How long a restarted image waits before it listens again, when a test asks for a wider gap
/// (`OPENSYNCD_TEST_LISTEN_DELAY_MS`); none in real life.
pub(super) fn test_listen_delay() -> Option<Duration> {
    std::env::var("OPENSYNCD_TEST_LISTEN_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
}

/// When the loop must wake up by itself. Everything else it does is a reaction to a message;
/// with nothing queued, paused or deferred, the only timer left is the safety-net scan (an
/// hour by default) and, under systemd with a watchdog, its keep-alive.
pub(super) struct Timers {
    pub(super) next_rescan: Instant,
    /// When to look at the deferred writes again (`None`: nothing deferred).
    pub(super) deferred_check: Option<Instant>,
    /// A flush of deferred writes is running (its task reports its end).
    pub(super) deferred_running: bool,
    pub(super) last_probe: Instant,
    pub(super) watchdog: Option<(Duration, Instant)>,
    /// When to look at progress next (`None`: nothing to report, so no timer).
    pub(super) progress: Option<Instant>,
    /// A backfill ran since the daemon was last idle: once idle, its memory is given back.
    pub(super) release_when_idle: bool,
    /// Units done (read to their end and acknowledged) since the daemon was last idle.
    pub(super) done_since_idle: usize,
    /// [`RENEW_AFTER_UNITS`], or what a test sets (`OPENSYNCD_TEST_RENEW_AFTER_UNITS`).
    pub(super) renew_after: usize,
    /// A large backfill is over: restart in place once nothing lives only in memory.
    pub(super) renew_pending: bool,
}

impl Daemon {
    /// The safety-net scan period: long while the watcher is trusted, short while it is not.
    pub(super) fn rescan_every(&self) -> Duration {
        let configured = Duration::from_secs(self.cfg.rescan_interval_secs);
        match self.watch_warning {
            Some(_) => configured.min(DEGRADED_RESCAN),
            None => configured,
        }
    }

    /// The earliest moment the loop has something to do by itself, if any.
    pub(super) fn next_wake(&self) -> Instant {
        let t = &self.timers;
        let mut wake = t.next_rescan;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                wake = wake.min(at);
            }
        };
        consider(self.retry_later.iter().map(|(at, _)| *at).min());
        consider(t.watchdog.map(|(_, at)| at));
        if self.paused.is_some() {
            consider(Some(t.last_probe + PAUSE_PROBE));
        } else if !t.deferred_running {
            consider(t.deferred_check);
        }
        consider(self.ledger_failed.map(|at| at + reexec_delay()));
        consider(t.progress);
        consider(self.hold_ends());
        wake
    }

    /// When a `pause --for` ends by itself, as an instant of this process's clock.
    pub(super) fn hold_ends(&self) -> Option<Instant> {
        let until = self.hold.as_ref()?.until_ms?;
        let left = Duration::from_millis((until - now_ms()).max(0) as u64);
        Some(Instant::now() + left)
    }

    /// Keeps the progress timer running exactly while there is something to report: units
    /// queued or in flight, or a `sync` waiting. Once idle after a backfill, gives its memory
    /// back: returns true when that takes a restart in place ([`RENEW_AFTER_UNITS`]).
    pub(super) fn progress_may_have_changed(&mut self) -> bool {
        let busy = !self.backlog.is_empty()
            || !self.in_flight.is_empty()
            || !self.waiters.is_empty()
            || self.backfill.active();
        self.timers.release_when_idle |= self.backfill.active();
        if !busy && std::mem::take(&mut self.timers.release_when_idle) {
            if self.timers.done_since_idle >= self.timers.renew_after {
                self.timers.renew_pending = true;
            } else {
                release_freed_memory();
            }
        }
        if !busy {
            self.timers.done_since_idle = 0;
        }
        // Waits, idle, for what lives only in memory to be settled (deferred writes being
        // sent, a unit to retry).
        let renew = !busy && self.timers.renew_pending && self.nothing_held();
        match (busy, self.timers.progress) {
            (true, None) => self.timers.progress = Some(Instant::now() + PROGRESS_EVERY),
            (false, Some(_)) => self.timers.progress = None,
            _ => {}
        }
        renew
    }

    /// Nothing lives only in this process's memory: no unit waiting to be retried, no pause,
    /// hold or failed ledger, no deferred writes being sent. A restart in place then loses
    /// nothing and repeats nothing (everything else is in the ledger or found by the start
    /// scan).
    fn nothing_held(&self) -> bool {
        self.retry_later.is_empty()
            && self.redo.is_empty()
            && self.paused.is_none()
            && self.hold.is_none()
            && self.ledger_failed.is_none()
            && !self.timers.deferred_running
    }

    /// Does whatever is due; `Some` when the loop must end.
    pub(super) async fn on_timers(
        &mut self,
        deferred_done: &mpsc::UnboundedSender<()>,
    ) -> Option<RunExit> {
        let now = Instant::now();
        if let Some(failed_at) = self.ledger_failed
            && self.in_flight.is_empty()
            && failed_at.elapsed() >= reexec_delay()
        {
            return Some(RunExit::Reexec(Why::ReopenLedger));
        }
        if let Some((every, at)) = self.timers.watchdog
            && at <= now
        {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            self.timers.watchdog = Some((every, now + every));
        }
        if self.timers.next_rescan <= now {
            // While degraded, each safety-net scan first tries to watch in full again (the
            // user may have raised the limit since).
            if self.watch_warning.is_some() {
                self.refresh_watches();
            }
            self.full_scan("periodic");
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry_later)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.retry_later = later;
        for (_, u) in due {
            self.enqueue(u);
        }
        if self.paused.is_some() && self.timers.last_probe.elapsed() >= PAUSE_PROBE {
            self.timers.last_probe = Instant::now();
            self.probe().await;
        }
        if self.timers.deferred_check.is_some_and(|at| at <= now) {
            self.check_deferred(deferred_done);
        }
        let hold_ended = self.hold_ends().is_some_and(|at| at <= now);
        if hold_ended || self.timers.progress.is_some_and(|at| at <= now) {
            self.timers.progress = None;
            self.every_tick();
        }
        self.answer_waiters();
        self.progress_may_have_changed();
        None
    }

    /// Something may have been deferred (a unit committed, a flush ended): look within
    /// [`DEFERRED_CHECK`], unless a look is already planned sooner.
    pub(super) fn deferred_may_have_changed(&mut self) {
        let soon = Instant::now() + DEFERRED_CHECK;
        let t = &mut self.timers;
        t.deferred_check = Some(t.deferred_check.map_or(soon, |at| at.min(soon)));
    }

    /// Looks at the writes held for the server's dedup windows: sends those that are due (one
    /// task at a time, which reports its end on `done`) and plans the next look for when the
    /// earliest of the others falls due — or none, when nothing is deferred.
    pub(super) fn check_deferred(&mut self, done: &mpsc::UnboundedSender<()>) {
        self.timers.deferred_check = None;
        if self.paused.is_some() || self.hold.is_some() || self.timers.deferred_running {
            // Looked at again when pushing resumes or the running flush ends.
            return;
        }
        let next = match self.engine.next_deferred_ms() {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(%err, "reading the deferred writes failed; retrying later");
                self.timers.deferred_check = Some(Instant::now() + UNIT_RETRY);
                return;
            }
        };
        let Some(due_ms) = next else {
            return;
        };
        let wait_ms = due_ms - self.engine.now();
        if wait_ms > 0 {
            let mut wait = Duration::from_millis(wait_ms as u64);
            if self.engine.clock.is_driven() {
                // A test moves this clock forward at will: look again every second.
                wait = wait.min(Duration::from_secs(1));
            }
            self.timers.deferred_check = Some(Instant::now() + wait);
            return;
        }
        self.timers.deferred_running = true;
        let engine = self.engine.clone();
        let done = done.clone();
        tokio::spawn(async move {
            // Reports the end however the flush ends (a panic included).
            struct Done(mpsc::UnboundedSender<()>);
            impl Drop for Done {
                fn drop(&mut self) {
                    let _ = self.0.send(());
                }
            }
            let _done = Done(done);
            match engine.flush_deferred().await {
                Ok(Outcome::Done | Outcome::Stopped | Outcome::Waiting { .. }) => {}
                Ok(Outcome::Paused(p)) => tracing::debug!(%p, "deferred writes paused"),
                Err(err) => tracing::warn!(%err, "deferred writes failed; retrying later"),
            }
        });
    }

    /// Housekeeping of this module's own state, every tick: the hold's end, the rate meter,
    /// the backfill log and the progress lines of waiting `sync`s.
    pub(super) fn every_tick(&mut self) {
        let now = now_ms();
        if let Some(hold) = &self.hold
            && hold.expired(now)
        {
            tracing::info!("the pause has ended; pushing resumes");
            if let Err(err) = pause::clear(&self.paths) {
                tracing::warn!(%err, "could not remove the pause file");
            }
            self.hold = None;
            self.apply_hold();
        }
        let counters = self.engine.counters();
        let at = Instant::now();
        self.meter.record(at, counters.bytes_committed);
        let tick = Tick {
            now: at,
            units_left: self.backlog.len() + self.in_flight.len(),
            bytes: counters.bytes_committed,
            messages: counters.messages_sent,
            rate: self.meter.rate(),
        };
        if let Some(line) = self.backfill.tick(tick) {
            tracing::info!("{line}");
        }
        for w in &self.waiters {
            if w.reply.wants_progress() {
                w.reply.progress(self.waiter_progress(w, &counters));
            }
        }
    }
}

/// Gives the heap's free memory back to the system. A backfill's buffers and payloads are
/// freed when it ends, but glibc's allocator keeps the pages for reuse, so an idle daemon
/// would go on holding the backfill's peak for days. Called once per backfill, when the
/// daemon becomes idle (never per file: trimming walks the heap).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: `malloc_trim` has no preconditions; it only returns free pages of the heap to
    // the kernel and is thread-safe (it takes the allocator's locks).
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "backfill over: freed memory given back"
    );
}

/// Other allocators (macOS, musl) return freed memory by themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed_memory() {}
