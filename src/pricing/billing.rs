//! How a call is billed at a model's price (checked against LiteLLM's `_get_token_base_cost`
//! and Anthropic's published long-context rule): once a call's prompt (uncached input + cache
//! reads + cache writes) exceeds a threshold the model has a `*_above_<N>k_tokens` rate for, the
//! **whole call** (every input kind and the output) is billed at that tier's rates. The fold
//! therefore buckets usage per (model, [`Band`]), the band computed per call by [`band_of`], and
//! prices each bucket with [`Price::cost`]. Cache writes are split by lifetime: 5-minute and
//! 1-hour writes each have their own rate.
//!
//! Where ccusage (20.0.x, `cost.rs`/`pricing.rs`) differs, we follow the bill: it applies
//! `*_above_200k_tokens` rates per token kind to the tokens beyond 200k of that kind (a marginal
//! split), ignores the other thresholds LiteLLM carries (128k, 256k, 272k, …) and range tiers,
//! and always bills 1-hour writes at 2x input (the same as LiteLLM's 1-hour rate for every
//! Anthropic entry). It also multiplies "fast mode" calls (`usage.speed`); [`Tokens`] does not
//! carry a call's speed yet.

use serde::{Deserialize, Serialize};

use crate::model::Tokens;

/// Every long-context threshold LiteLLM's table carries (tokens; its `k` is 1000), plus a few
/// round values providers use. A band boundary sits at each threshold and one token above it,
/// so both "more than N" (most providers) and "at least N" (xAI) are exact.
const KNOWN_THRESHOLDS: [u64; 10] = [
    32_000, 64_000, 100_000, 128_000, 200_000, 256_000, 272_000, 400_000, 512_000, 1_000_000,
];

/// The price band an API call falls into, from its prompt size. Stored as the smallest prompt
/// size of the band, so a band keeps its meaning if the threshold list grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Band(u64);

impl Band {
    /// The normal rate: the prompt is below every threshold.
    pub const BASE: Band = Band(0);

    /// The smallest prompt size (tokens) in this band.
    pub fn min_prompt_tokens(self) -> u64 {
        self.0
    }
}

/// The band of an API call whose prompt (uncached input + cache reads + cache writes) is
/// `prompt_tokens`. Pure, independent of any table.
pub fn band_of(prompt_tokens: u64) -> Band {
    let mut band = 0;
    for threshold in KNOWN_THRESHOLDS {
        if prompt_tokens > threshold {
            band = threshold + 1;
        } else if prompt_tokens == threshold {
            band = threshold;
        }
    }
    Band(band)
}

/// Rates of one pricing tier, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    /// Uncached input.
    pub input: f64,
    /// Output (reasoning included).
    pub output: f64,
    /// Input read from the cache.
    pub cache_read: f64,
    /// Input written to the cache with the default (5-minute) lifetime.
    pub cache_write: f64,
    /// Input written to the cache with the 1-hour lifetime.
    pub cache_write_1h: f64,
}

impl Rates {
    /// USD for `tokens` at these rates.
    pub fn cost(&self, tokens: &Tokens) -> f64 {
        let per = |count: u64, rate: f64| count as f64 * rate / 1_000_000.0;
        let writes_1h = tokens.cache_write_1h.min(tokens.cache_write);
        per(tokens.input, self.input)
            + per(tokens.output, self.output)
            + per(tokens.cache_read, self.cache_read)
            + per(tokens.cache_write - writes_1h, self.cache_write)
            + per(writes_1h, self.cache_write_1h)
    }
}

/// Rates that apply to a whole call once its prompt passes `above` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tier {
    /// The threshold, in prompt tokens.
    pub above: u64,
    /// The rates for the whole call.
    pub rates: Rates,
}

/// One model's prices.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Price {
    /// Rates below every threshold.
    pub base: Rates,
    /// Long-context tiers, ascending by threshold.
    pub tiers: Vec<Tier>,
    /// The provider bills a tier once the prompt *reaches* the threshold (xAI), not only when it
    /// exceeds it.
    pub inclusive: bool,
}

impl Price {
    /// The rates a call in `band` is billed at: the highest tier its prompt passed.
    pub fn rates_in(&self, band: Band) -> &Rates {
        let mut rates = &self.base;
        for tier in &self.tiers {
            let passed = if self.inclusive {
                band.0 >= tier.above
            } else {
                band.0 > tier.above
            };
            if passed {
                rates = &tier.rates;
            }
        }
        rates
    }

    /// USD for `tokens`, all from calls in `band`.
    pub fn cost(&self, band: Band, tokens: &Tokens) -> f64 {
        self.rates_in(band).cost(tokens)
    }
}

#[cfg(test)]
mod tests {
    //! Expected costs are worked out by hand from LiteLLM 1.110.2's rates (USD per token in the
    //! table, written here per million), the arithmetic spelled out next to each figure.

    use super::super::test_support::{close, tokens};
    use super::super::{Pricing, TableOrigin};
    use super::*;

    #[test]
    fn bands_split_at_each_threshold_and_one_token_above_it() {
        assert_eq!(band_of(0), Band::BASE);
        assert_eq!(band_of(31_999), Band::BASE);
        assert_eq!(band_of(32_000), Band(32_000));
        assert_eq!(band_of(32_001), Band(32_001));
        assert_eq!(band_of(199_999), Band(128_001));
        assert_eq!(band_of(200_000), Band(200_000));
        assert_eq!(band_of(200_001), Band(200_001));
        assert_eq!(band_of(272_001), Band(272_001));
        assert_eq!(band_of(u64::MAX), Band(1_000_001));
        assert!(band_of(150_000) < band_of(250_000), "bands order by size");
        assert_eq!(serde_json::to_string(&Band(200_001)).unwrap(), "200001");
    }

    #[test]
    fn one_hour_cache_writes_cost_more_than_five_minute_ones() {
        let p = Pricing::bundled();
        // claude-sonnet-4-5: input 3, output 15, cache read 0.30, 5m write 3.75, 1h write 6.
        // 30_000 written, 20_000 of them for 1 hour:
        // 1_000*3 + 2_000*15 + 100_000*0.3 + 10_000*3.75 + 20_000*6
        //   = 3_000 + 30_000 + 30_000 + 37_500 + 120_000 = 220_500 per million = $0.2205.
        let t = tokens(1_000, 2_000, 100_000, 30_000, 20_000);
        close(
            p.cost("claude-sonnet-4-5-20250929", Band::BASE, &t)
                .unwrap(),
            0.2205,
        );
        // All 30_000 at 5 minutes: 3_000 + 30_000 + 30_000 + 30_000*3.75 = 175_500 → $0.1755.
        let t = tokens(1_000, 2_000, 100_000, 30_000, 0);
        close(
            p.cost("claude-sonnet-4-5-20250929", Band::BASE, &t)
                .unwrap(),
            0.1755,
        );
    }

    #[test]
    fn a_call_above_200k_is_billed_whole_at_the_long_context_rates() {
        let p = Pricing::bundled();
        // claude-sonnet-4-20250514 (from anthropic.claude-sonnet-4-20250514-v1:0): base
        // 3 / 15 / 0.30 / 3.75; above 200k input 6, output 22.5, cache read 0.60, write 7.50.
        // One call: 10_000 input + 200_000 cache read + 40_000 cache write = 250_000 prompt.
        let t = tokens(10_000, 5_000, 200_000, 40_000, 0);
        let band = band_of(t.prompt());
        // Whole call at the tier: 10_000*6 + 5_000*22.5 + 200_000*0.6 + 40_000*7.5
        //   = 60_000 + 112_500 + 120_000 + 300_000 = 592_500 → $0.5925.
        close(
            p.cost("claude-sonnet-4-20250514", band, &t).unwrap(),
            0.5925,
        );
        // The same tokens below the threshold: 30_000 + 75_000 + 60_000 + 150_000 → $0.315.
        // (ccusage's per-kind marginal split also gives $0.315 here: no single kind passes 200k.)
        close(
            p.cost("claude-sonnet-4-20250514", Band::BASE, &t).unwrap(),
            0.315,
        );
        // Exactly 200_000 is not above 200k (Anthropic: "more than 200K").
        let at = band_of(200_000);
        close(
            p.cost("claude-sonnet-4-20250514", at, &tokens(200_000, 0, 0, 0, 0))
                .unwrap(),
            200_000.0 * 3.0 / 1e6,
        );
    }

    #[test]
    fn other_thresholds_and_inclusive_providers() {
        let p = Pricing::bundled();
        // gpt-5.5: above 272k input 10 (base 5), output 45 (base 30), cache read 1 (base 0.5).
        let t = tokens(72_001, 1_000, 200_000, 0, 0);
        // 72_001*10 + 1_000*45 + 200_000*1 = 720_010 + 45_000 + 200_000 = 965_010 → $0.96501.
        close(p.cost("gpt-5.5", band_of(t.prompt()), &t).unwrap(), 0.96501);
        // 272_000 exactly stays at the base: 72_000*5 + 1_000*30 + 200_000*0.5 = 490_000.
        let t = tokens(72_000, 1_000, 200_000, 0, 0);
        close(p.cost("gpt-5.5", band_of(t.prompt()), &t).unwrap(), 0.49);
        // xAI bills the tier from the threshold itself (LiteLLM: inclusive for xai).
        // grok-4.20: input 1.25 → 2.5 at 200k. 200_000 * 2.5 = 500_000 → $0.50.
        let t = tokens(200_000, 0, 0, 0, 0);
        close(p.cost("xai/grok-4.20", band_of(200_000), &t).unwrap(), 0.5);
        // gemini-2.5-pro above 200k: input 2.5, output 15.
        // 250_000*2.5 + 10_000*15 = 625_000 + 150_000 = 775_000 → $0.775.
        let t = tokens(250_000, 10_000, 0, 0, 0);
        close(
            p.cost("gemini/gemini-2.5-pro", band_of(250_000), &t)
                .unwrap(),
            0.775,
        );
    }

    #[test]
    fn a_threshold_between_band_boundaries_is_never_over_applied() {
        // A table with an `above_150k` tier (not a known threshold): only bands that are surely
        // above it get the tier, so a call is never billed more than it was.
        let table = r#"{"m-x": {"litellm_provider": "openai", "input_cost_per_token": 1e-06,
            "output_cost_per_token": 1e-06, "input_cost_per_token_above_150k_tokens": 2e-06}}"#;
        let p = Pricing::parse_table(table, TableOrigin::Empty).unwrap();
        let price = p.price("m-x").unwrap();
        assert_eq!(
            price.rates_in(band_of(160_000)).input,
            1.0,
            "band 128_001.. is unsure"
        );
        assert_eq!(
            price.rates_in(band_of(210_000)).input,
            2.0,
            "band 200_001.. is above"
        );
    }

    #[test]
    fn absurd_token_counts_do_not_panic() {
        let p = Pricing::bundled();
        let t = tokens(u64::MAX, u64::MAX, u64::MAX, u64::MAX, u64::MAX);
        let c = p.cost("claude-sonnet-4-5", band_of(u64::MAX), &t).unwrap();
        assert!(c.is_finite() && c > 0.0);
        // More 1-hour writes than writes (a malformed log): capped at the writes.
        let c = p
            .cost("claude-sonnet-4-5", Band::BASE, &tokens(0, 0, 0, 10, 1_000))
            .unwrap();
        close(c, 10.0 * 6.0 / 1e6);
    }
}
