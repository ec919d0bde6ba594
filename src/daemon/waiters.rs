//! `sync` requests waiting on the daemon: answered when their units are done, when pushing is
//! paused or the server has been failing too long, with progress lines meanwhile.

use std::collections::HashSet;

use super::{Daemon, SYNC_GIVE_UP};
use crate::control::{Replier, Reply};
use crate::engine::now_ms;
use crate::pause;
use crate::progress::SyncProgress;
use crate::selection::SyncSummary;
use crate::sources::Unit;

pub(super) struct SyncWaiter {
    pub(super) pending: HashSet<Unit>,
    pub(super) summary: SyncSummary,
    pub(super) before: crate::engine::Counters,
    /// Units and bytes pending when the sync was asked for (its progress lines' totals).
    pub(super) units_total: usize,
    pub(super) bytes_total: u64,
    pub(super) reply: Replier,
}

impl Daemon {
    pub(super) fn answer_waiters(&mut self) {
        let now = now_ms();
        let paused = match (&self.hold, &self.paused) {
            (Some(hold), _) => Some(format!("paused {}", hold.describe(now))),
            (None, Some(p)) => Some(p.to_string()),
            (None, None) => None,
        };
        let counters = self.engine.counters();
        // The server has been failing for a while: answer (the daemon keeps retrying).
        let gave_up = counters
            .failing_since_ms
            .filter(|since| now - since >= SYNC_GIVE_UP.as_millis() as i64)
            .map(|since| {
                format!(
                    "requests have been failing for {} ({}); the daemon keeps retrying on its own",
                    pause::human_secs(((now - since) / 1000).max(0) as u64),
                    counters
                        .last_error
                        .as_ref()
                        .map_or("no answer", |(_, e)| e.as_str())
                )
            });
        let mut still = Vec::new();
        for mut w in self.waiters.drain(..) {
            if w.pending.is_empty() || paused.is_some() || gave_up.is_some() {
                w.summary.gave_up = gave_up.clone().filter(|_| !w.pending.is_empty());
                w.summary.sessions_sent = counters.sessions_sent - w.before.sessions_sent;
                w.summary.messages_sent = counters.messages_sent - w.before.messages_sent;
                w.summary.rejected = counters.rejected - w.before.rejected;
                w.summary.paused = paused.clone();
                let _ = w.reply.send(Reply::Synced { summary: w.summary });
            } else {
                still.push(w);
            }
        }
        self.waiters = still;
    }

    pub(super) fn waiter_progress(
        &self,
        w: &SyncWaiter,
        counters: &crate::engine::Counters,
    ) -> SyncProgress {
        SyncProgress {
            units_done: w.summary.units,
            units_total: w.units_total,
            bytes_done: counters
                .bytes_committed
                .saturating_sub(w.before.bytes_committed)
                .min(w.bytes_total),
            bytes_total: w.bytes_total,
            messages_sent: counters
                .messages_sent
                .saturating_sub(w.before.messages_sent),
            rate: self.meter.rate(),
        }
    }
}
