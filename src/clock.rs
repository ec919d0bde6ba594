//! The wall clock the engine plans with. Normally the system clock; in tests a clock the test
//! advances — a shared offset for an engine in the test's own process, or a file holding the
//! offset (`OPENSYNCD_TEST_CLOCK_FILE`) for the real binary — so that the server's dedup
//! windows (5 s, 10 s) can be driven without real waits.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Epoch milliseconds of the system clock.
pub fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A clock: the system's, shifted by an offset a test controls.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Option<Offset>,
}

#[derive(Debug, Clone)]
enum Offset {
    Shared(Arc<AtomicI64>),
    File(PathBuf),
}

impl Clock {
    /// The system clock, unless `OPENSYNCD_TEST_CLOCK_FILE` names a file holding an offset in
    /// milliseconds (tests of the real binary).
    pub fn from_env() -> Clock {
        match std::env::var_os("OPENSYNCD_TEST_CLOCK_FILE") {
            Some(path) => Clock {
                offset: Some(Offset::File(PathBuf::from(path))),
            },
            None => Clock::default(),
        }
    }

    /// A clock shifted by `offset` milliseconds, which the caller may advance at any time.
    pub fn shared(offset: Arc<AtomicI64>) -> Clock {
        Clock {
            offset: Some(Offset::Shared(offset)),
        }
    }

    /// Whether a test drives this clock (the daemon then re-checks its timers on every
    /// control request, since its sleeps run on real time).
    pub fn is_driven(&self) -> bool {
        self.offset.is_some()
    }

    /// Now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let offset = match &self.offset {
            None => 0,
            Some(Offset::Shared(o)) => o.load(Ordering::Relaxed),
            Some(Offset::File(path)) => std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
        };
        system_ms().saturating_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_offset_moves_the_clock() {
        let offset = Arc::new(AtomicI64::new(0));
        let clock = Clock::shared(offset.clone());
        let before = clock.now_ms();
        offset.store(3_600_000, Ordering::Relaxed);
        assert!(clock.now_ms() - before >= 3_600_000);
        assert!(clock.is_driven());
        assert!(!Clock::default().is_driven());
    }
}
