//! Helpers shared by the pricing unit tests: token counts written out by kind, and a float
//! comparison for costs worked out by hand.

use crate::model::Tokens;

pub(super) fn tokens(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    cw_1h: u64,
) -> Tokens {
    Tokens {
        input,
        output,
        cache_read,
        cache_write,
        cache_write_1h: cw_1h,
        reasoning: 0,
    }
}

pub(super) fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "got {actual}, expected {expected}"
    );
}
