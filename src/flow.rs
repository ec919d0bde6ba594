//! How many requests may be in flight to the server at once, adapted to its answers, and the
//! pool-wide retry budget: every request of the process (whatever unit or session it belongs
//! to) takes a [`Permit`] from one [`Flow`] for the time it is on the wire — never while it
//! waits to be retried — and reports how it ended.
//!
//! - **Adaptive concurrency (AIMD).** The limit starts at the configured maximum (a Convex
//!   deployment takes 16 concurrent mutations on the small plans). An answer that says the
//!   server is overloaded (429, 503, a timeout) halves it, at most once per round trip (a burst
//!   of 429s to requests that were all sent at the same limit is one signal, not sixteen); each
//!   success adds `1/L` at a whole limit of `L`, so the limit climbs back by one per round
//!   trip.
//! - **Retry budget.** Transient failures of different requests are not independent: when
//!   `down_after` requests in a row failed with no success between them, the server is taken to
//!   be down and the pool sends one probe at a time, spaced by its own full-jitter exponential
//!   backoff — so an outage costs a few requests a minute however many sessions are waiting —
//!   and the first success lifts it at once (full speed again, the limit untouched by 5xx).
//!
//! - **Longest first.** Requests waiting for a slot are served by priority — about how many
//!   requests the unit they belong to still has to send (the engine's `read_priority`, set
//!   with [`with_priority`]) — then in arrival order. A
//!   session's messages go one after the other, so a 200-message session is the critical path
//!   of a backfill: its next message must not queue behind one-message sessions.
//!
//! It decides nothing about what is sent; `push::retry_paced` holds the permits and the
//! per-request backoff.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

/// What a [`Flow`] is allowed, and how it backs off when the server is down.
#[derive(Debug, Clone, Copy)]
pub struct FlowOptions {
    /// Most requests in flight at once (the limit never grows past it).
    pub max: usize,
    /// Failures in a row, across the pool, after which the server is treated as down.
    pub down_after: u32,
    /// First delay between probes while down.
    pub probe_base: Duration,
    /// Longest delay between probes while down.
    pub probe_cap: Duration,
}

impl FlowOptions {
    /// The daemon's and `sync`'s settings for at most `max` requests in flight.
    pub fn with_max(max: usize) -> FlowOptions {
        FlowOptions {
            max: max.max(1),
            down_after: 8,
            probe_base: Duration::from_millis(500),
            probe_cap: Duration::from_secs(30),
        }
    }
}

/// The shared gate every request passes through.
#[derive(Debug)]
pub struct Flow {
    state: Mutex<State>,
    /// Told whenever a slot frees, the limit moves or the server comes back.
    changed: Notify,
}

#[derive(Debug)]
struct State {
    opts: FlowOptions,
    /// The current limit (fractional so that additive increase can be `1/limit`).
    limit: f64,
    in_flight: usize,
    /// Bumped at each decrease: a permit taken before it does not decrease again.
    epoch: u64,
    /// Transient failures since the last success, across the pool.
    failures_in_row: u32,
    /// While down: no probe before this.
    next_probe: Option<Instant>,
    rng: rand::rngs::StdRng,
    /// Requests waiting for a slot, in the order they are served: highest priority first,
    /// then first come.
    waiting: BTreeSet<(Reverse<u64>, u64)>,
    next_ticket: u64,
}

tokio::task_local! {
    /// The priority of the requests sent by the current task (see [`with_priority`]).
    static PRIORITY: u64;
}

/// Runs `work` with its requests served at `priority` (higher first) when they wait for a
/// slot; requests sent outside such a scope have priority 0.
pub async fn with_priority<F: std::future::Future>(priority: u64, work: F) -> F::Output {
    PRIORITY.scope(priority, work).await
}

/// How a request that held a permit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Acknowledged.
    Success,
    /// The server says it is overloaded (429, 503, timeout): shrink the pool.
    Overloaded,
    /// A transient failure (5xx, connection dropped): counts toward "the server is down".
    Failed,
    /// Answered, but nothing to learn about the server's health (a refused record, a
    /// rejected key) — or abandoned (shutdown).
    Neutral,
}

/// One request's place in the pool; released when [`Permit::end`] is called or on drop.
#[derive(Debug)]
pub struct Permit<'a> {
    flow: &'a Flow,
    epoch: u64,
    ended: bool,
}

impl Flow {
    /// A flow with these options.
    pub fn new(opts: FlowOptions) -> Flow {
        Flow {
            state: Mutex::new(State {
                limit: opts.max.max(1) as f64,
                opts,
                in_flight: 0,
                epoch: 0,
                failures_in_row: 0,
                next_probe: None,
                rng: rand::rngs::StdRng::from_rng(&mut rand::rng()),
                waiting: BTreeSet::new(),
                next_ticket: 0,
            }),
            changed: Notify::new(),
        }
    }

    /// A flow whose probe delays come from a seeded generator (deterministic tests).
    pub fn seeded(opts: FlowOptions, seed: u64) -> Flow {
        let flow = Flow::new(opts);
        flow.lock().rng = rand::rngs::StdRng::seed_from_u64(seed);
        flow
    }

    /// No limit and no pool-wide backoff (callers that send one request at a time).
    pub fn unlimited() -> Flow {
        Flow::new(FlowOptions {
            max: usize::MAX / 2,
            down_after: u32::MAX,
            probe_base: Duration::ZERO,
            probe_cap: Duration::ZERO,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a slot: below the current limit, first in the waiting order, and while the
    /// server is down, for the single probe slot once the probe delay has passed.
    pub async fn acquire(&self) -> Permit<'_> {
        let priority = PRIORITY.try_with(|p| *p).unwrap_or(0);
        let place = {
            let mut s = self.lock();
            let place = (Reverse(priority), s.next_ticket);
            s.next_ticket += 1;
            s.waiting.insert(place);
            place
        };
        // Leaves the line however this ends (a caller that stops waiting included).
        let mut in_line = InLine {
            flow: self,
            place: Some(place),
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wait_until = {
                let mut s = self.lock();
                match s.admit(Instant::now()) {
                    Admit::Now if s.waiting.first() == Some(&place) => {
                        s.waiting.remove(&place);
                        in_line.place = None;
                        s.in_flight += 1;
                        let more = !s.waiting.is_empty() && s.in_flight < s.cap();
                        let permit = Permit {
                            flow: self,
                            epoch: s.epoch,
                            ended: false,
                        };
                        drop(s);
                        if more {
                            // The next in line may fit too.
                            self.changed.notify_waiters();
                        }
                        return permit;
                    }
                    Admit::Now | Admit::WhenFreed => None,
                    Admit::At(t) => Some(t),
                }
            };
            match wait_until {
                Some(t) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(t) => {}
                        _ = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The current limit (whole requests).
    pub fn limit(&self) -> usize {
        self.lock().cap()
    }

    /// Requests on the wire now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight
    }

    /// Whether the pool currently treats the server as down.
    pub fn is_down(&self) -> bool {
        self.lock().is_down()
    }

    fn release(&self, epoch: u64, ended: Ended) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.learn(epoch, ended, Instant::now());
        drop(s);
        self.changed.notify_waiters();
    }
}

enum Admit {
    Now,
    At(Instant),
    WhenFreed,
}

impl State {
    fn is_down(&self) -> bool {
        self.failures_in_row >= self.opts.down_after
    }

    /// The number of requests allowed on the wire now.
    fn cap(&self) -> usize {
        if self.is_down() {
            1
        } else {
            self.whole_limit().clamp(1, self.opts.max)
        }
    }

    /// The limit in whole requests. The epsilon absorbs the rounding of many `1/limit` steps
    /// (5 + 5 × 0.2 is a little under 6.0 in floating point).
    fn whole_limit(&self) -> usize {
        (self.limit + 1e-9).floor() as usize
    }

    fn admit(&self, now: Instant) -> Admit {
        if self.is_down()
            && let Some(t) = self.next_probe
            && now < t
        {
            return Admit::At(t);
        }
        if self.in_flight < self.cap() {
            Admit::Now
        } else {
            Admit::WhenFreed
        }
    }

    fn learn(&mut self, epoch: u64, ended: Ended, now: Instant) {
        match ended {
            Ended::Success => {
                self.failures_in_row = 0;
                self.next_probe = None;
                // One more per round trip: 1/L per success at a whole limit of L.
                let step = 1.0 / self.whole_limit().max(1) as f64;
                self.limit = (self.limit + step).min(self.opts.max as f64);
            }
            Ended::Overloaded => {
                if epoch == self.epoch {
                    self.limit = (self.limit / 2.0).max(1.0);
                    self.epoch += 1;
                }
                self.count_failure(now);
            }
            Ended::Failed => self.count_failure(now),
            Ended::Neutral => {}
        }
    }

    fn count_failure(&mut self, now: Instant) {
        self.failures_in_row = self.failures_in_row.saturating_add(1);
        if self.is_down() {
            let over = self.failures_in_row - self.opts.down_after;
            let ceiling = self
                .opts
                .probe_base
                .saturating_mul(1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX))
                .min(self.opts.probe_cap);
            let delay =
                Duration::from_millis(self.rng.random_range(0..=ceiling.as_millis() as u64));
            self.next_probe = Some(now + delay);
        }
    }
}

/// A place in the line for a slot; leaving it (by dropping) lets the next one go.
struct InLine<'a> {
    flow: &'a Flow,
    place: Option<(Reverse<u64>, u64)>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(place) = self.place.take() {
            self.flow.lock().waiting.remove(&place);
            self.flow.changed.notify_waiters();
        }
    }
}

impl Permit<'_> {
    /// Releases the slot and tells the pool how the request ended.
    pub fn end(mut self, ended: Ended) {
        self.ended = true;
        self.flow.release(self.epoch, ended);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.flow.release(self.epoch, Ended::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(max: usize) -> FlowOptions {
        FlowOptions {
            max,
            down_after: 3,
            probe_base: Duration::from_secs(1),
            probe_cap: Duration::from_secs(8),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overload_halves_the_limit_once_per_round_trip_and_successes_grow_it_back() {
        // (Not so many failures in a row that the server counts as down: another test.)
        let flow = Flow::new(FlowOptions {
            down_after: 100,
            ..opts(16)
        });
        assert_eq!(flow.limit(), 16);
        // Sixteen requests sent at the same limit, all answered 429: one halving.
        let permits: Vec<_> = futures_util::future::join_all((0..16).map(|_| flow.acquire())).await;
        assert_eq!(flow.in_flight(), 16);
        for p in permits {
            p.end(Ended::Overloaded);
        }
        assert_eq!(flow.limit(), 8);
        // A request sent after the halving that is refused again halves again.
        flow.acquire().await.end(Ended::Overloaded);
        assert_eq!(flow.limit(), 4);
        // Additive increase: 1/limit per success, so from 4 to 8 takes 4+5+6+7 = 22.
        for _ in 0..21 {
            flow.acquire().await.end(Ended::Success);
        }
        assert_eq!(flow.limit(), 7);
        flow.acquire().await.end(Ended::Success);
        assert_eq!(flow.limit(), 8);
        assert!(!flow.is_down(), "the successes reset the failure count");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_than_the_limit_is_in_flight() {
        let flow = std::sync::Arc::new(Flow::new(opts(2)));
        let a = flow.acquire().await;
        let _b = flow.acquire().await;
        let third = {
            let flow = flow.clone();
            tokio::spawn(async move {
                flow.acquire().await.end(Ended::Success);
            })
        };
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!third.is_finished(), "a third request went out at limit 2");
        a.end(Ended::Success);
        third.await.unwrap();
        assert_eq!(flow.in_flight(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_is_down_gets_one_probe_at_a_time_and_one_success_restores_it() {
        let flow = Flow::seeded(opts(16), 7);
        for _ in 0..3 {
            flow.acquire().await.end(Ended::Failed);
        }
        assert!(flow.is_down());
        assert_eq!(flow.limit(), 1, "one probe at a time while down");
        // Probes are spaced by the pool's full-jitter backoff: ceilings 1, 2, 4, then 8 s, so
        // after the first 7 s a gap averages 4 s — about 15 probes in a minute. Without the
        // budget, sixteen waiting requests would each retry on their own schedule.
        let start = Instant::now();
        let mut probes = 0;
        while start.elapsed() < Duration::from_secs(60) {
            flow.acquire().await.end(Ended::Failed);
            probes += 1;
        }
        assert!((5..=30).contains(&probes), "{probes} probes in 60 s");
        assert_eq!(flow.limit(), 1);
        flow.acquire().await.end(Ended::Success);
        assert!(!flow.is_down());
        assert_eq!(
            flow.limit(),
            16,
            "5xx never shrank the pool: back to full speed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_requests_are_served_highest_priority_first_then_in_arrival_order() {
        let flow = std::sync::Arc::new(Flow::new(opts(1)));
        let held = flow.acquire().await;
        let served = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (name, priority) in [("short-a", 1), ("long", 200), ("short-b", 1), ("none", 0)] {
            let (flow, served) = (flow.clone(), served.clone());
            tasks.push(tokio::spawn(with_priority(priority, async move {
                let permit = flow.acquire().await;
                served.lock().unwrap().push(name);
                permit.end(Ended::Success);
            })));
            // Each is in line before the next arrives.
            tokio::task::yield_now().await;
        }
        // One that gives up waiting leaves the line without blocking it.
        let quitter = {
            let flow = flow.clone();
            tokio::spawn(with_priority(500, async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), flow.acquire()).await;
            }))
        };
        quitter.await.unwrap();
        held.end(Ended::Success);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            *served.lock().unwrap(),
            ["long", "short-a", "short-b", "none"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_permit_frees_its_slot_without_teaching_anything() {
        let flow = Flow::new(opts(1));
        drop(flow.acquire().await);
        assert_eq!(flow.in_flight(), 0);
        assert_eq!(flow.limit(), 1);
        flow.acquire().await.end(Ended::Neutral);
        assert!(!flow.is_down());
    }
}
