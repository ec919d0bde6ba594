//! Reading LiteLLM's price entries (`model_prices_and_context_window.json`) into prices: which
//! entries are ours (chat models of the providers our sources produce, first-party entries
//! preferred), their per-token rates as USD per million with LiteLLM's own fallbacks, their
//! long-context tiers (`*_above_<N>k_tokens` fields and `tiered_pricing` ranges), the undated
//! family of dated ids that price alike, and the subset of a table that `prices update` installs.
//!
//! Cache writes are split by lifetime: 5-minute writes at `cache_creation_input_token_cost`,
//! 1-hour writes at `cache_creation_input_token_cost_above_1hr` (else, for Anthropic models, 2x
//! the input rate, as Anthropic bills them). An absent cache rate bills cached tokens as input.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::model_id::{NormalisedId, bedrock_split, strip_date};
use super::{Entry, MAX_RATE_PER_MILLION, Price, Rates, TableError, Tier};

/// Providers whose models our sources produce, with their preference when several LiteLLM
/// entries normalise to the same id (first-party first). `scripts/update-prices.py` keeps the
/// same list.
pub(super) const PROVIDER_RANKS: &[(&str, u8)] = &[
    ("anthropic", 0),
    ("openai", 0),
    ("gemini", 0),
    ("xai", 0),
    ("deepseek", 0),
    ("mistral", 0),
    ("moonshot", 0),
    ("dashscope", 0),
    ("zai", 0),
    ("minimax", 0),
    ("bedrock_converse", 1),
    ("bedrock", 1),
    ("vertex_ai-anthropic_models", 2),
    ("vertex_ai-language-models", 2),
    ("vertex_ai-mistral_models", 2),
    ("vertex_ai", 2),
    ("openrouter", 3),
    // Only fills gaps (e.g. `codex-mini-latest`, which OpenAI's own entries no longer list).
    ("azure", 4),
];

/// Reads one LiteLLM entry: `(normalised id, entry)`, or `None` when it is not a model of ours
/// with per-token prices.
pub(super) fn parse_litellm_entry(id: &str, entry: &Value) -> Option<(String, Entry)> {
    if id == "sample_spec" {
        // LiteLLM's documentation of the format, not a model.
        return None;
    }
    let fields = entry.as_object()?;
    // Embedding, image and audio models bill nothing a coding session records.
    if fields
        .get("mode")
        .is_some_and(|m| !matches!(m.as_str(), Some("chat" | "responses" | "completion")))
    {
        return None;
    }
    let provider = fields.get("litellm_provider")?.as_str()?;
    let provider_rank = PROVIDER_RANKS
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, rank)| *rank)?;
    if provider.starts_with("bedrock") && (id.contains('/') || bedrock_split(id).is_none()) {
        return None;
    }
    if provider == "azure" && id.matches('/').count() != 1 {
        // `azure/<region>/…` are regional deployments with their own markup.
        return None;
    }
    let rate = |field: &str| per_million(fields, field);
    let ids = NormalisedId::parse(id);
    let anthropic = ids.is_anthropic();
    let (key, family) = (ids.most_specific(), ids.family());
    let rank = (provider_rank, id.matches('/').count(), id.to_string());
    let inclusive = provider == "xai";
    if let Some(price) = ranged_tiers(fields) {
        let entry = Entry {
            price: Price { inclusive, ..price },
            from: id.to_string(),
            family,
            rank,
        };
        return Some((key, entry));
    }
    let input = rate("input_cost_per_token")?;
    let output = rate("output_cost_per_token")?;
    // LiteLLM: an absent cache rate bills cached tokens as ordinary input.
    let cache_read_field = rate("cache_read_input_token_cost");
    let cache_write_field = rate("cache_creation_input_token_cost");
    let cache_write = cache_write_field.unwrap_or(input);
    let cache_write_1h_field = rate("cache_creation_input_token_cost_above_1hr");
    let base = Rates {
        input,
        output,
        cache_read: cache_read_field.unwrap_or(input),
        cache_write,
        cache_write_1h: cache_write_1h_field.unwrap_or(if anthropic {
            2.0 * input
        } else {
            cache_write
        }),
    };
    let mut thresholds: Vec<(u64, String)> =
        fields.keys().filter_map(|k| tier_threshold(k)).collect();
    thresholds.sort();
    thresholds.dedup();
    let mut tiers = Vec::new();
    let mut previous = base;
    for (above, suffix) in thresholds {
        let input = rate(&format!("input_cost_per_token_above_{suffix}")).unwrap_or(previous.input);
        let cache_write = rate(&format!("cache_creation_input_token_cost_above_{suffix}"))
            .unwrap_or(if cache_write_field.is_some() {
                previous.cache_write
            } else {
                input
            });
        let rates = Rates {
            input,
            output: rate(&format!("output_cost_per_token_above_{suffix}"))
                .unwrap_or(previous.output),
            cache_read: rate(&format!("cache_read_input_token_cost_above_{suffix}")).unwrap_or(
                if cache_read_field.is_some() {
                    previous.cache_read
                } else {
                    input
                },
            ),
            cache_write,
            // Anthropic bills 1-hour writes at 2x the input rate of the call's tier.
            cache_write_1h: rate(&format!(
                "cache_creation_input_token_cost_above_1hr_above_{suffix}"
            ))
            .unwrap_or(if anthropic {
                2.0 * input
            } else if cache_write_1h_field.is_some() {
                // LiteLLM keeps the untiered 1-hour rate when no tiered one is given.
                previous.cache_write_1h
            } else {
                cache_write
            }),
        };
        tiers.push(Tier { above, rates });
        previous = rates;
    }
    let entry = Entry {
        price: Price {
            base,
            tiers,
            inclusive,
        },
        from: id.to_string(),
        family,
        rank,
    };
    Some((key, entry))
}

/// A per-token rate field as USD per million, if present and believable.
fn per_million(fields: &serde_json::Map<String, Value>, field: &str) -> Option<f64> {
    let v = fields.get(field)?.as_f64()?;
    // Round away float noise from the per-token form (3e-06 * 1e6 = 2.9999999999999996).
    let per_million = (v * 1_000_000.0 * 1e9).round() / 1e9;
    (0.0..=MAX_RATE_PER_MILLION)
        .contains(&per_million)
        .then_some(per_million)
}

/// LiteLLM's other tier format, `tiered_pricing: [{range: [start, end], input_cost_per_token,
/// …}]` (Qwen): a call whose prompt is above `start` (and at most `end`) is billed whole at that
/// tier; above the last range, the last tier applies. Rates a tier lacks fall back to its input
/// rate (output: the model's own output rate), as in LiteLLM's `_get_tiered_base_costs`.
fn ranged_tiers(fields: &serde_json::Map<String, Value>) -> Option<Price> {
    let list = fields.get("tiered_pricing")?.as_array()?;
    let mut ranged: Vec<(u64, Rates)> = Vec::new();
    for tier in list {
        let tier = tier.as_object()?;
        let start = tier.get("range")?.as_array()?.first()?.as_f64()?;
        if !(0.0..=1e12).contains(&start) {
            return None;
        }
        let input = per_million(tier, "input_cost_per_token")?;
        let output = per_million(tier, "output_cost_per_token")
            .or_else(|| per_million(fields, "output_cost_per_token"))?;
        let cache_write = per_million(tier, "cache_creation_input_token_cost").unwrap_or(input);
        ranged.push((
            start as u64,
            Rates {
                input,
                output,
                cache_read: per_million(tier, "cache_read_input_token_cost").unwrap_or(input),
                cache_write,
                cache_write_1h: cache_write,
            },
        ));
    }
    ranged.sort_by_key(|(start, _)| *start);
    let mut ranged = ranged.into_iter();
    let (_, base) = ranged.next()?;
    Some(Price {
        base,
        tiers: ranged.map(|(above, rates)| Tier { above, rates }).collect(),
        inclusive: false,
    })
}

/// The part of a LiteLLM table (as published, or our `{provenance, models}` file) that opensyncd
/// prices with: the entries [`Pricing`](super::Pricing) reads, each with `litellm_provider` and
/// its rate fields only. `prices update` installs this, `scripts/update-prices.py` writes the
/// same subset.
pub fn litellm_subset(text: &str) -> Result<serde_json::Map<String, Value>, TableError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| TableError::NotJson(e.to_string()))?;
    let Value::Object(mut top) = value else {
        return Err(TableError::NotATable(
            "the top level is not an object".into(),
        ));
    };
    let models = match top.remove("models") {
        Some(Value::Object(models)) if top.contains_key("provenance") => models,
        Some(other) => {
            top.insert("models".into(), other);
            top
        }
        None => top,
    };
    let mut out = serde_json::Map::new();
    for (id, entry) in models {
        if parse_litellm_entry(&id, &entry).is_none() {
            continue;
        }
        let Value::Object(fields) = entry else {
            continue;
        };
        let kept: serde_json::Map<String, Value> = fields
            .into_iter()
            .filter_map(|(k, v)| match (k.as_str(), v) {
                // Range tiers keep their range and rates only, like the fields around them.
                ("tiered_pricing", Value::Array(tiers)) => {
                    let tiers = tiers
                        .into_iter()
                        .map(|tier| match tier {
                            Value::Object(t) => Value::Object(
                                t.into_iter()
                                    .filter(|(k, _)| k == "range" || is_rate_field(k))
                                    .collect(),
                            ),
                            other => other,
                        })
                        .collect();
                    Some((k, Value::Array(tiers)))
                }
                (_, v) if k == "litellm_provider" || is_rate_field(&k) => Some((k, v)),
                _ => None,
            })
            .collect();
        out.insert(id, Value::Object(kept));
    }
    Ok(out)
}

/// A field [`parse_litellm_entry`] reads.
fn is_rate_field(field: &str) -> bool {
    matches!(
        field,
        "input_cost_per_token"
            | "output_cost_per_token"
            | "cache_read_input_token_cost"
            | "cache_creation_input_token_cost"
            | "cache_creation_input_token_cost_above_1hr"
    ) || tier_threshold(field).is_some()
}

/// The threshold of a `*_above_<N>k_tokens` rate field: `(tokens, "<N>k_tokens")`.
fn tier_threshold(field: &str) -> Option<(u64, String)> {
    const PREFIXES: [&str; 5] = [
        "cache_creation_input_token_cost_above_1hr_above_",
        "cache_creation_input_token_cost_above_",
        "cache_read_input_token_cost_above_",
        "input_cost_per_token_above_",
        "output_cost_per_token_above_",
    ];
    let suffix = PREFIXES.iter().find_map(|p| field.strip_prefix(p))?;
    let number = suffix.strip_suffix("_tokens")?;
    let (digits, scale) = match number.strip_suffix('k') {
        Some(d) => (d, 1000),
        None => (number, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tokens = digits.parse::<u64>().ok()?.checked_mul(scale)?;
    Some((tokens, suffix.to_string()))
}

/// For every dated id whose undated family the table lacks, adds the family when all its dated
/// entries have the same price (so `claude-sonnet-4` resolves when LiteLLM lists only
/// `…-20250514`); a family whose dated entries differ stays unknown.
pub(super) fn add_undated_families(entries: &mut HashMap<String, Entry>) {
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in entries.keys() {
        if let Some(undated) = strip_date(key) {
            families
                .entry(undated.to_string())
                .or_default()
                .push(key.clone());
        }
    }
    for (family, mut members) in families {
        if entries.contains_key(&family) {
            continue;
        }
        members.sort();
        let Some(first) = members.first().and_then(|m| entries.get(m)).cloned() else {
            continue;
        };
        if members
            .iter()
            .all(|m| entries.get(m).is_some_and(|e| e.price == first.price))
        {
            entries.insert(family, first);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Expected costs are worked out by hand from LiteLLM 1.110.2's rates (USD per token in the
    //! table, written here per million), the arithmetic spelled out next to each figure.

    use super::super::test_support::{close, tokens};
    use super::super::{Band, Pricing, TableOrigin, band_of};
    use super::*;

    #[test]
    fn one_hour_writes_default_to_twice_the_input_rate_for_anthropic() {
        let p = Pricing::bundled();
        // anthropic.claude-opus-4-1-20250805-v1:0 has no `_above_1hr` rate: input 15, so a
        // 1-hour write is billed 2 x 15 = 30 per million. 1_000_000 1h writes → $30.
        let t = tokens(0, 0, 0, 1_000_000, 1_000_000);
        close(p.cost("claude-opus-4-1", Band::BASE, &t).unwrap(), 30.0);
        // gpt-5 (no cache-write rate at all): LiteLLM bills writes as input, 1.25 per million.
        close(p.cost("gpt-5", Band::BASE, &t).unwrap(), 1.25);
    }

    #[test]
    fn range_tiers_bill_the_whole_call_at_the_range_its_prompt_is_in() {
        let p = Pricing::bundled();
        // dashscope/qwen3-coder-plus: (0, 32k] 1 / 5, (32k, 128k] 1.8 / 9, (128k, 256k] 3 / 15,
        // above 256k 6 / 60; cache reads 0.1 / 0.18 / 0.3 / 0.6.
        let small = tokens(32_000, 1_000, 0, 0, 0);
        // 32_000*1 + 1_000*5 = 37_000 → $0.037 (32k is the top of the first range).
        close(
            p.cost("qwen3-coder-plus", band_of(small.prompt()), &small)
                .unwrap(),
            0.037,
        );
        let mid = tokens(10_000, 1_000, 90_000, 0, 0);
        // 100_000 prompt: 10_000*1.8 + 90_000*0.18 + 1_000*9 = 18_000 + 16_200 + 9_000 = 43_200.
        close(
            p.cost("qwen3-coder-plus", band_of(mid.prompt()), &mid)
                .unwrap(),
            0.0432,
        );
        let large = tokens(300_000, 1_000, 0, 0, 0);
        // 300_000*6 + 1_000*60 = 1_860_000 → $1.86.
        close(
            p.cost("qwen3-coder-plus", band_of(large.prompt()), &large)
                .unwrap(),
            1.86,
        );
    }

    #[test]
    fn an_undated_family_exists_only_when_its_dated_ids_agree() {
        let table = r#"{
            "same-1-20250101": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
            "same-1-20250601": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
            "diff-1-20250101": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
            "diff-1-20250601": {"litellm_provider": "openai", "input_cost_per_token": 3e-06, "output_cost_per_token": 2e-06}
        }"#;
        let p = Pricing::parse_table(table, TableOrigin::Empty).unwrap();
        assert_eq!(p.price("same-1").map(|x| x.base.input), Some(1.0));
        assert_eq!(p.price("same-1-20991231").map(|x| x.base.input), Some(1.0));
        assert_eq!(p.price("diff-1"), None);
        assert_eq!(p.price("diff-1-20250601").map(|x| x.base.input), Some(3.0));
    }

    #[test]
    fn first_party_entries_win_over_resellers() {
        let table = r#"{
            "vertex_ai/m-1": {"litellm_provider": "vertex_ai-language-models", "input_cost_per_token": 9e-06, "output_cost_per_token": 9e-06},
            "m-1": {"litellm_provider": "openai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
            "fireworks_ai/m-2": {"litellm_provider": "fireworks_ai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
        }"#;
        let p = Pricing::parse_table(table, TableOrigin::Empty).unwrap();
        assert_eq!(p.price("m-1").map(|x| x.base.input), Some(1.0));
        assert_eq!(
            p.price("m-2"),
            None,
            "providers our sources cannot produce are left out"
        );
    }

    #[test]
    fn the_subset_keeps_only_what_pricing_reads() {
        let table = r#"{
            "sample_spec": {"litellm_provider": "openai", "input_cost_per_token": "0.0"},
            "gpt-x": {"litellm_provider": "openai", "mode": "chat", "input_cost_per_token": 1e-06,
                      "output_cost_per_token": 2e-06, "input_cost_per_token_batches": 5e-07,
                      "input_cost_per_token_above_272k_tokens": 2e-06, "max_tokens": 100},
            "fal_ai/img": {"litellm_provider": "fal_ai", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
        }"#;
        let subset = litellm_subset(table).unwrap();
        assert_eq!(subset.keys().collect::<Vec<_>>(), vec!["gpt-x"]);
        let mut fields: Vec<&String> = subset["gpt-x"].as_object().unwrap().keys().collect();
        fields.sort();
        assert_eq!(
            fields,
            vec![
                "input_cost_per_token",
                "input_cost_per_token_above_272k_tokens",
                "litellm_provider",
                "output_cost_per_token"
            ]
        );
    }
}
