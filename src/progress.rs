//! Progress in bytes: a rate meter over a sliding window (for ETAs), the progress of one
//! `sync` as the daemon streams it to the CLI, and the daemon's periodic backfill log line —
//! what turns "7/8 files" into "41.2 MiB of 150.0 MiB, 3.1 MiB/s, ~35s left".

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::health::human_bytes;
use crate::pause::human_secs;

/// How often the daemon logs backfill progress at info level.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// A rate meter: cumulative byte counts sampled over time, the rate over the last `window`.
#[derive(Debug, Clone)]
pub struct Meter {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    /// A meter averaging over `window`.
    pub fn new(window: Duration) -> Meter {
        Meter {
            window,
            samples: VecDeque::new(),
        }
    }

    /// Records the cumulative count `total` at `at`.
    pub fn record(&mut self, at: Instant, total: u64) {
        self.samples.push_back((at, total));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.duration_since(*t) > self.window)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window; `None` until two samples a moment apart exist.
    pub fn rate(&self) -> Option<f64> {
        let (t0, b0) = self.samples.front()?;
        let (t1, b1) = self.samples.back()?;
        let secs = t1.duration_since(*t0).as_secs_f64();
        (secs >= 0.5).then(|| b1.saturating_sub(*b0) as f64 / secs)
    }

    /// Seconds to read `left` bytes at the current rate; `None` when nothing moves.
    pub fn eta_secs(&self, left: u64) -> Option<u64> {
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some((left as f64 / rate).ceil() as u64)
    }
}

/// Where a `sync` stands, as the daemon streams it to the CLI (and the one-shot sync draws it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// Files (units) finished.
    pub units_done: usize,
    /// Files (units) selected.
    pub units_total: usize,
    /// Bytes read and acknowledged so far.
    pub bytes_done: u64,
    /// Bytes pending when the sync started.
    pub bytes_total: u64,
    /// Messages sent so far.
    pub messages_sent: u64,
    /// Bytes per second lately.
    #[serde(default)]
    pub rate: Option<f64>,
}

impl SyncProgress {
    /// `3/8 files, 1.2 MiB of 4.0 MiB (300.0 KiB/s, ~10s left), 120 messages sent`.
    pub fn line(&self) -> String {
        let left = self.bytes_total.saturating_sub(self.bytes_done);
        let speed = match self.rate {
            Some(rate) if rate > 0.0 => format!(
                " ({}/s, ~{} left)",
                human_bytes(rate as u64),
                human_secs((left as f64 / rate).ceil() as u64)
            ),
            _ => String::new(),
        };
        format!(
            "{}/{} files, {} of {}{speed}, {} messages sent",
            self.units_done,
            self.units_total,
            human_bytes(self.bytes_done.min(self.bytes_total)),
            human_bytes(self.bytes_total),
            self.messages_sent
        )
    }
}

/// The daemon's view of a busy period (a backfill, a burst of work): what it logs every
/// [`LOG_EVERY`] while it lasts, and once when it ends — never a line per file.
#[derive(Debug, Default)]
pub struct Backfill {
    period: Option<Period>,
}

#[derive(Debug)]
struct Period {
    started: Instant,
    last_log: Instant,
    logged: bool,
    bytes_at_start: u64,
    messages_at_start: u64,
    units_done: usize,
}

/// What the daemon knows at one tick.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// Now.
    pub now: Instant,
    /// Units queued or being processed.
    pub units_left: usize,
    /// Bytes acknowledged since the daemon started.
    pub bytes: u64,
    /// Messages sent since the daemon started.
    pub messages: u64,
    /// The meter's rate.
    pub rate: Option<f64>,
}

impl Backfill {
    /// A unit finished.
    pub fn unit_done(&mut self) {
        if let Some(p) = &mut self.period {
            p.units_done += 1;
        }
    }

    /// Advances at each tick; returns the line to log at info level, if one is due.
    pub fn tick(&mut self, t: Tick) -> Option<String> {
        match (&mut self.period, t.units_left > 0) {
            (None, false) => None,
            (None, true) => {
                self.period = Some(Period {
                    started: t.now,
                    last_log: t.now,
                    logged: false,
                    bytes_at_start: t.bytes,
                    messages_at_start: t.messages,
                    units_done: 0,
                });
                None
            }
            (Some(p), true) => {
                if t.now.duration_since(p.last_log) < LOG_EVERY {
                    return None;
                }
                p.last_log = t.now;
                p.logged = true;
                Some(format!(
                    "backfill: {} files done, {} to go; {} read, {} messages sent{}",
                    p.units_done,
                    t.units_left,
                    human_bytes(t.bytes.saturating_sub(p.bytes_at_start)),
                    t.messages.saturating_sub(p.messages_at_start),
                    t.rate
                        .map(|r| format!(" ({}/s)", human_bytes(r as u64)))
                        .unwrap_or_default()
                ))
            }
            (Some(p), false) => {
                let line = p.logged.then(|| {
                    format!(
                        "caught up: {} files, {} read, {} messages sent in {}",
                        p.units_done,
                        human_bytes(t.bytes.saturating_sub(p.bytes_at_start)),
                        t.messages.saturating_sub(p.messages_at_start),
                        human_secs(t.now.duration_since(p.started).as_secs())
                    )
                });
                self.period = None;
                line
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_bytes_over_the_window_and_the_eta_follows() {
        let t0 = Instant::now();
        let mut m = Meter::new(Duration::from_secs(30));
        assert_eq!(m.rate(), None);
        m.record(t0, 0);
        assert_eq!(m.rate(), None, "one sample is no rate");
        // 10 MiB in 10 s = 1 MiB/s; 5 MiB left = 5 s.
        m.record(t0 + Duration::from_secs(10), 10 * 1048576);
        assert_eq!(m.rate(), Some(1048576.0));
        assert_eq!(m.eta_secs(5 * 1048576), Some(5));
        // 40 s later with nothing new: the window (30 s) forgets the early samples and the
        // rate falls to 0, so no ETA is claimed.
        m.record(t0 + Duration::from_secs(50), 10 * 1048576);
        m.record(t0 + Duration::from_secs(60), 10 * 1048576);
        assert_eq!(m.rate(), Some(0.0));
        assert_eq!(m.eta_secs(1), None);
    }

    #[test]
    fn a_backfill_logs_every_few_seconds_and_once_when_it_ends_and_short_work_logs_nothing() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let tick = |s, left, bytes, messages| Tick {
            now: at(s),
            units_left: left,
            bytes,
            messages,
            rate: Some(2048.0),
        };
        let mut b = Backfill::default();
        // A short burst (under LOG_EVERY): nothing at info.
        assert_eq!(b.tick(tick(0, 2, 0, 0)), None);
        b.unit_done();
        assert_eq!(b.tick(tick(2, 0, 100, 1)), None);
        // A long backfill: a line at 6 s (≥ 5 s since it began), none at 8 s, one at 12 s, and
        // a summary when the queue is empty.
        assert_eq!(b.tick(tick(4, 10, 100, 1)), None);
        for _ in 0..3 {
            b.unit_done();
        }
        let first = b
            .tick(tick(10, 7, 100 + 3072, 31))
            .expect("a progress line");
        assert_eq!(
            first,
            "backfill: 3 files done, 7 to go; 3.0 KiB read, 30 messages sent (2.0 KiB/s)"
        );
        assert_eq!(b.tick(tick(12, 6, 5000, 40)), None);
        assert!(b.tick(tick(15, 5, 6000, 50)).is_some());
        let last = b.tick(tick(20, 0, 100 + 10240, 101)).expect("a summary");
        assert_eq!(
            last,
            "caught up: 3 files, 10.0 KiB read, 100 messages sent in 16s"
        );
    }

    #[test]
    fn a_progress_line_names_files_bytes_rate_and_time_left() {
        let p = SyncProgress {
            units_done: 3,
            units_total: 8,
            bytes_done: 1048576,
            bytes_total: 4 * 1048576,
            messages_sent: 120,
            // 3 MiB left at 512 KiB/s = 6 s.
            rate: Some(524288.0),
        };
        assert_eq!(
            p.line(),
            "3/8 files, 1.0 MiB of 4.0 MiB (512.0 KiB/s, ~6s left), 120 messages sent"
        );
    }
}
