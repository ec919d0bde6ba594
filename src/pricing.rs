//! Model prices (a bundled table, overridable by a user file) and cost computation.
//!
//! Prices are USD per million tokens: input (uncached), output, cache read, cache write —
//! list prices as published by Anthropic and OpenAI (recorded 2025-12; OpenAI charges no cache
//! writes). A model id is normalised (provider prefixes, Bedrock/Vertex decorations and date
//! suffixes removed) and then looked up exactly: a model the table does not know costs 0 and
//! is reported by `status`, never guessed from a neighbour (a newer model of the same family
//! often has a different price).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::model::Tokens;

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Price {
    /// Uncached input.
    pub input: f64,
    /// Output (reasoning included).
    pub output: f64,
    /// Input read from the cache.
    #[serde(default)]
    pub cache_read: f64,
    /// Input written to the cache.
    #[serde(default)]
    pub cache_write: f64,
}

const fn p(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
    Price {
        input,
        output,
        cache_read,
        cache_write,
    }
}

/// The bundled table (normalised ids).
const BUNDLED: &[(&str, Price)] = &[
    // Anthropic
    ("claude-opus-4-5", p(5.0, 25.0, 0.50, 6.25)),
    ("claude-opus-4-1", p(15.0, 75.0, 1.50, 18.75)),
    ("claude-opus-4", p(15.0, 75.0, 1.50, 18.75)),
    ("claude-3-opus", p(15.0, 75.0, 1.50, 18.75)),
    ("claude-sonnet-4-5", p(3.0, 15.0, 0.30, 3.75)),
    ("claude-sonnet-4", p(3.0, 15.0, 0.30, 3.75)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 0.30, 3.75)),
    ("claude-3-5-sonnet", p(3.0, 15.0, 0.30, 3.75)),
    ("claude-haiku-4-5", p(1.0, 5.0, 0.10, 1.25)),
    ("claude-3-5-haiku", p(0.80, 4.0, 0.08, 1.0)),
    ("claude-3-haiku", p(0.25, 1.25, 0.03, 0.30)),
    // OpenAI (cached input at the cache-read rate; no cache-write charge)
    ("gpt-5", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5-codex", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5-chat", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5-mini", p(0.25, 2.0, 0.025, 0.0)),
    ("gpt-5-nano", p(0.05, 0.40, 0.005, 0.0)),
    ("gpt-5-pro", p(15.0, 120.0, 15.0, 0.0)),
    ("gpt-5.1", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5.1-codex", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5.1-codex-max", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5.1-codex-mini", p(0.25, 2.0, 0.025, 0.0)),
    ("gpt-5.1-chat", p(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5.2", p(1.75, 14.0, 0.175, 0.0)),
    ("gpt-5.2-codex", p(1.75, 14.0, 0.175, 0.0)),
    ("gpt-4.1", p(2.0, 8.0, 0.50, 0.0)),
    ("gpt-4.1-mini", p(0.40, 1.60, 0.10, 0.0)),
    ("gpt-4.1-nano", p(0.10, 0.40, 0.025, 0.0)),
    ("gpt-4o", p(2.50, 10.0, 1.25, 0.0)),
    ("gpt-4o-mini", p(0.15, 0.60, 0.075, 0.0)),
    ("o1", p(15.0, 60.0, 7.50, 0.0)),
    ("o3", p(2.0, 8.0, 0.50, 0.0)),
    ("o3-mini", p(1.10, 4.40, 0.55, 0.0)),
    ("o4-mini", p(1.10, 4.40, 0.275, 0.0)),
    ("codex-mini-latest", p(1.50, 6.0, 0.375, 0.0)),
];

/// A price table.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    prices: HashMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    models: HashMap<String, Price>,
}

impl Pricing {
    /// A table with no prices (every model unknown).
    pub fn empty() -> Pricing {
        Pricing::default()
    }

    /// The bundled table.
    pub fn bundled() -> Pricing {
        Pricing {
            prices: BUNDLED
                .iter()
                .map(|(id, price)| (id.to_string(), *price))
                .collect(),
        }
    }

    /// The bundled table, overridden and extended by a user TOML file:
    /// `[models."my-model"] input = 1.0  output = 2.0  cache_read = 0.1  cache_write = 1.25`.
    pub fn load(override_file: Option<&Path>) -> Result<Pricing, String> {
        let mut pricing = Pricing::bundled();
        let Some(path) = override_file else {
            return Ok(pricing);
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: OverrideFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (id, price) in file.models {
            for (name, v) in [
                ("input", price.input),
                ("output", price.output),
                ("cache_read", price.cache_read),
                ("cache_write", price.cache_write),
            ] {
                if !(0.0..=10_000.0).contains(&v) {
                    return Err(format!(
                        "{}: models.{id}.{name} = {v} is not a plausible price",
                        path.display()
                    ));
                }
            }
            pricing.prices.insert(normalize(&id), price);
        }
        Ok(pricing)
    }

    /// The price of a model, if known.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.prices.get(&normalize(model)).copied()
    }

    /// Cost of `tokens` on `model`, or `None` when the model has no known price.
    pub fn cost(&self, model: &str, tokens: &Tokens) -> Option<f64> {
        let p = self.price(model)?;
        let per = |count: u64, rate: f64| count as f64 * rate / 1_000_000.0;
        Some(
            per(tokens.input, p.input)
                + per(tokens.output, p.output)
                + per(tokens.cache_read, p.cache_read)
                + per(tokens.cache_write, p.cache_write),
        )
    }
}

/// The price band of one API call, from its prompt size (uncached input + cache reads +
/// cache writes). Every call is in the base band until the table knows long-context tiers.
pub fn band_of(_prompt_tokens: u64) -> u8 {
    0
}

impl Pricing {
    /// Cost of `tokens` (calls that all fell in `band`) on `model`; `None` when unpriced.
    pub fn cost_in_band(&self, model: &str, _band: u8, tokens: &Tokens) -> Option<f64> {
        self.cost(model, tokens)
    }
}

/// Normalises a model id: lower case; provider prefixes (`anthropic/`, `openai/`,
/// `anthropic.`, `us.anthropic.`), Bedrock version suffixes (`-v1:0`), Vertex `@date`, and date
/// suffixes (`-20250514`, `-2025-11-13`) removed; `gpt-5-1` spelled `gpt-5.1`.
pub fn normalize(model: &str) -> String {
    let mut m = model.trim().to_ascii_lowercase();
    if let Some((_, rest)) = m.rsplit_once('/') {
        m = rest.to_string();
    }
    for prefix in [
        "us.anthropic.",
        "eu.anthropic.",
        "apac.anthropic.",
        "global.anthropic.",
        "anthropic.",
    ] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    if let Some((head, _)) = m.split_once('@') {
        m = head.to_string();
    }
    if let Some(i) = m.find("-v1:").or_else(|| m.find("-v2:")) {
        m.truncate(i);
    }
    // Trailing dates: -YYYYMMDD or -YYYY-MM-DD.
    let bytes = m.as_bytes();
    let n = bytes.len();
    let digits = |r: std::ops::Range<usize>| {
        r.clone()
            .all(|i| bytes.get(i).is_some_and(u8::is_ascii_digit))
    };
    if n > 9 && bytes[n - 9] == b'-' && digits(n - 8..n) {
        m.truncate(n - 9);
    } else if n > 11
        && bytes[n - 11] == b'-'
        && digits(n - 10..n - 6)
        && bytes[n - 6] == b'-'
        && bytes[n - 3] == b'-'
    {
        m.truncate(n - 11);
    }
    // gpt-5-1-codex → gpt-5.1-codex (Codex sometimes reports dashed versions).
    if let Some(rest) = m.strip_prefix("gpt-") {
        let b = rest.as_bytes();
        if b.len() >= 3
            && b[0].is_ascii_digit()
            && b[1] == b'-'
            && b[2].is_ascii_digit()
            && b.get(3).is_none_or(|c| *c == b'-')
        {
            m = format!("gpt-{}.{}", &rest[..1], &rest[2..]);
        }
    }
    m.strip_suffix("-latest")
        .filter(|s| !s.is_empty() && *s != "codex-mini")
        .map(str::to_string)
        .unwrap_or(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_normalise_to_table_entries() {
        assert_eq!(normalize("claude-sonnet-4-5-20250929"), "claude-sonnet-4-5");
        assert_eq!(
            normalize("anthropic.claude-3-5-haiku-20241022-v1:0"),
            "claude-3-5-haiku"
        );
        assert_eq!(
            normalize("us.anthropic.claude-opus-4-1-20250805-v1:0"),
            "claude-opus-4-1"
        );
        assert_eq!(normalize("claude-sonnet-4@20250514"), "claude-sonnet-4");
        assert_eq!(normalize("openai/gpt-5.1-codex-max"), "gpt-5.1-codex-max");
        assert_eq!(normalize("gpt-5-1-codex-2025-11-13"), "gpt-5.1-codex");
        assert_eq!(normalize("codex-mini-latest"), "codex-mini-latest");
    }

    #[test]
    fn costs_use_all_four_rates_and_unknown_models_cost_nothing() {
        let p = Pricing::bundled();
        let t = Tokens {
            input: 1_000_000,
            output: 1_000_000,
            cache_read: 1_000_000,
            cache_write: 1_000_000,
            cache_write_1h: 0,
            reasoning: 0,
        };
        let c = p.cost("claude-sonnet-4-5-20250929", &t).unwrap();
        assert!((c - (3.0 + 15.0 + 0.30 + 3.75)).abs() < 1e-9, "{c}");
        assert_eq!(
            p.cost("claude-opus-4-7", &t),
            None,
            "no guessing across versions"
        );
        assert_eq!(p.cost("my-local-llama", &t), None);
    }

    #[test]
    fn a_user_file_overrides_and_extends() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prices.toml");
        std::fs::write(&file, "[models.\"my-llama\"]\ninput = 1.0\noutput = 2.0\n[models.\"gpt-5\"]\ninput = 9\noutput = 9\n").unwrap();
        let p = Pricing::load(Some(&file)).unwrap();
        assert_eq!(p.price("my-llama").unwrap().output, 2.0);
        assert_eq!(p.price("gpt-5").unwrap().input, 9.0);
        std::fs::write(&file, "[models.x]\ninput = -1\noutput = 1\n").unwrap();
        assert!(
            Pricing::load(Some(&file))
                .unwrap_err()
                .contains("models.x.input")
        );
    }
}
