//! Waiting between attempts: full-jitter backoff honouring `Retry-After`, and the retry loops
//! (one request alone, or paced by the pool's [`Flow`]).

use std::time::Duration;

use super::error::{ErrorClass, PushError};
use crate::flow::{Ended, Flow};

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])?
        + 1;
    let iso = format!(
        "{}-{:02}-{:02}T{}Z",
        parts[3],
        month,
        parts[1].parse::<u32>().ok()?,
        parts[4]
    );
    let at = crate::model::parse_timestamp_ms(&iso)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some(Duration::from_millis((at - now).max(0) as u64))
}

/// Full-jitter exponential backoff: `random(0, min(cap, base * 2^attempt))`, never less than
/// the server's `Retry-After` (itself capped at `max_retry_after`).
///
/// The defaults (100 ms doubling to 8 s) keep one request's retries short: a session's
/// messages are sent in order, so every second one message waits is a second its whole session
/// waits. What protects a struggling server is the pool-wide [`Flow`] (fewer
/// requests in flight on overload, one probe at a time when it is down), not long sleeps.
#[derive(Debug)]
pub struct Backoff {
    /// First step.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Largest `Retry-After` honoured.
    pub max_retry_after: Duration,
    attempt: u32,
    rng: rand::rngs::StdRng,
}

/// First backoff step of a request.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest backoff of a request between two attempts (seconds, not minutes).
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(8);
/// Longest `Retry-After` honoured: a server asking for more is asked again then.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

impl Default for Backoff {
    fn default() -> Self {
        use rand::SeedableRng;
        Backoff::new(
            DEFAULT_BACKOFF_BASE,
            DEFAULT_BACKOFF_CAP,
            rand::rngs::StdRng::from_rng(&mut rand::rng()),
        )
    }
}

impl Backoff {
    /// A backoff with its own random source (seed it for deterministic tests).
    pub fn new(base: Duration, cap: Duration, rng: rand::rngs::StdRng) -> Backoff {
        Backoff {
            base,
            cap,
            max_retry_after: MAX_RETRY_AFTER,
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        use rand::RngExt;
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let jittered = Duration::from_millis(self.rng.random_range(0..=ceiling.as_millis() as u64));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// How [`retry`] ended.
#[derive(Debug)]
pub enum RetryEnd {
    /// The server acknowledged the request.
    Acked,
    /// A failure that retrying cannot fix (any class but [`ErrorClass::Retry`]).
    Failed(PushError),
    /// Shutdown was requested while waiting.
    Stopped,
}

/// Sends `op` until it succeeds, fails for a reason other than a transient one, or `stopping`
/// turns true. Transient failures wait `backoff.next_delay(Retry-After)` on the tokio clock
/// (so tests can run it under a paused clock); `on_retry` sees each failure and its delay.
/// One request at a time, no pool: [`retry_paced`] is the version that shares a [`Flow`].
pub async fn retry<F, Fut>(
    op: F,
    backoff: &mut Backoff,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    on_retry: impl FnMut(&PushError, Duration),
) -> RetryEnd
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), PushError>>,
{
    retry_paced(op, backoff, &Flow::unlimited(), stopping, on_retry).await
}

/// [`retry`] through a shared [`Flow`]: each attempt holds a permit only while it is on the
/// wire (a request waiting to be retried holds no slot), and tells the flow how it ended, so
/// that overload shrinks the whole pool and an outage is probed by one request at a time.
pub async fn retry_paced<F, Fut>(
    op: F,
    backoff: &mut Backoff,
    flow: &Flow,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    mut on_retry: impl FnMut(&PushError, Duration),
) -> RetryEnd
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), PushError>>,
{
    loop {
        if *stopping.borrow() {
            return RetryEnd::Stopped;
        }
        let permit = tokio::select! {
            permit = flow.acquire() => permit,
            _ = stopping.wait_for(|s| *s) => return RetryEnd::Stopped,
        };
        let err = tokio::select! {
            result = op() => match result {
                Ok(()) => {
                    permit.end(Ended::Success);
                    return RetryEnd::Acked;
                }
                Err(err) => err,
            },
            _ = stopping.wait_for(|s| *s) => return RetryEnd::Stopped,
        };
        if err.class() != ErrorClass::Retry {
            permit.end(Ended::Neutral);
            return RetryEnd::Failed(err);
        }
        permit.end(if err.is_overload() {
            Ended::Overloaded
        } else {
            Ended::Failed
        });
        let delay = backoff.next_delay(err.retry_after());
        on_retry(&err, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return RetryEnd::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_is_bounded_by_the_cap_and_honours_retry_after() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
            rand::rngs::StdRng::seed_from_u64(1),
        );
        for attempt in 0..40 {
            let d = b.next_delay(None);
            let ceiling =
                Duration::from_secs(1u64 << attempt.min(20)).min(Duration::from_secs(300));
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        b.reset();
        assert!(b.next_delay(Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(100_000)))
                .max(Duration::from_secs(900)),
            Duration::from_secs(900)
        );
    }

    #[test]
    fn default_backoff_waits_seconds_not_minutes_and_retry_after_is_honoured_up_to_two_minutes() {
        let mut b = Backoff::default();
        for attempt in 0..60 {
            let d = b.next_delay(None);
            // 100 ms × 2^attempt, capped at 8 s.
            let ceiling =
                Duration::from_millis(100u64 << attempt.min(20)).min(Duration::from_secs(8));
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        assert!(b.next_delay(Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        let long = b.next_delay(Some(Duration::from_secs(3600)));
        assert!(
            long >= Duration::from_secs(8) && long <= Duration::from_secs(120),
            "{long:?}"
        );
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
