//! Model prices and cost: LiteLLM's price table (bundled, or newer one installed by
//! `opensyncd prices update`), overridable by a user TOML file, the model-id normalisation that
//! finds a log's model in it, and the cost of tokens in a price band.
//!
//! Where prices come from: `assets/prices.json` is a subset of LiteLLM's
//! `model_prices_and_context_window.json` (the table ccusage and most cost tools use), written by
//! `scripts/update-prices.py` with its provenance. Entries keep LiteLLM's ids and per-token
//! field names, so a table downloaded by `prices update` goes through the same reader.
//!
//! How a call is billed (checked against LiteLLM's `_get_token_base_cost` and Anthropic's
//! published long-context rule): once a call's prompt (uncached input + cache reads + cache
//! writes) exceeds a threshold the model has a `*_above_<N>k_tokens` rate for, the **whole
//! call** (every input kind and the output) is billed at that tier's rates. The fold therefore
//! buckets usage per (model, [`Band`]), the band computed per call by [`band_of`], and prices
//! each bucket here. Cache writes are split by lifetime: 5-minute writes at
//! `cache_creation_input_token_cost`, 1-hour writes at `cache_creation_input_token_cost_above_1hr`
//! (else, for Anthropic models, 2x the input rate, as Anthropic bills them).
//!
//! Where ccusage (20.0.x, `cost.rs`/`pricing.rs`) differs, we follow the bill: it applies
//! `*_above_200k_tokens` rates per token kind to the tokens beyond 200k of that kind (a marginal
//! split), ignores the other thresholds LiteLLM carries (128k, 256k, 272k, …) and range tiers,
//! and always bills 1-hour writes at 2x input (the same as LiteLLM's 1-hour rate for every
//! Anthropic entry). It also patches LiteLLM with a built-in table and models.dev for models
//! LiteLLM lacks, and multiplies "fast mode" calls (`usage.speed`); we price from LiteLLM alone
//! and name what it cannot price, and [`Tokens`] does not carry a call's speed yet.
//!
//! A model the table does not know is never guessed from a neighbour (a newer model of the same
//! family often has a different price): it has no cost, and callers name it with the tokens it
//! affects.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Tokens;

/// The bundled table (see `scripts/update-prices.py`).
const BUNDLED_TABLE: &str = include_str!("../assets/prices.json");

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

/// Where a price table came from, as recorded next to it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The file or URL it was made from.
    #[serde(default)]
    pub source: Option<String>,
    /// LiteLLM release, when known.
    #[serde(default)]
    pub litellm_version: Option<String>,
    /// LiteLLM commit, when known.
    #[serde(default)]
    pub litellm_commit: Option<String>,
    /// sha256 of the source file.
    #[serde(default)]
    pub sha256: Option<String>,
    /// When it was generated or downloaded (ISO 8601).
    #[serde(default)]
    pub date: Option<String>,
}

/// Which table is in use.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TableOrigin {
    /// No table (tests).
    Empty,
    /// The table compiled into the binary.
    Bundled,
    /// A table installed by `prices update`.
    Installed {
        /// The file.
        path: PathBuf,
    },
}

/// The table in use and its provenance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableInfo {
    /// Bundled, installed or empty.
    pub origin: TableOrigin,
    /// What the table file says about itself.
    pub provenance: Provenance,
    /// Models (normalised ids) the table prices.
    pub models: usize,
    /// Models priced by the user's `pricing_file`.
    pub overridden: usize,
    /// Set when an installed table could not be read and the bundled one is used instead.
    pub warning: Option<String>,
}

/// A table entry, keyed by normalised id.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    price: Price,
    /// The LiteLLM id it was read from, or `pricing_file`.
    from: String,
    /// The undated id without region, which a user override of that id replaces.
    family: String,
    /// Preference among LiteLLM entries that normalise to the same id (lower wins).
    rank: (u8, usize, String),
}

/// How a model id was found in the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    /// The normalised id that matched.
    pub key: String,
    /// The LiteLLM entry (or `pricing_file`) the price comes from.
    pub from: String,
    /// The prices.
    pub price: Price,
}

/// A price table.
#[derive(Debug, Clone)]
pub struct Pricing {
    entries: HashMap<String, Entry>,
    info: TableInfo,
}

impl Pricing {
    /// What identifies this table's prices (for "did the prices change?": sessions are then
    /// re-priced and re-sent).
    pub fn fingerprint(&self) -> String {
        let mut entries: Vec<(&String, String)> = self
            .entries
            .iter()
            .map(|(k, e)| (k, format!("{:?}", e.price)))
            .collect();
        entries.sort();
        let text = entries
            .iter()
            .map(|(k, p)| format!("{k}={p}\n"))
            .collect::<String>();
        format!("{:032x}", crate::model::content_hash(text.as_bytes()))
    }
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing::empty()
    }
}

/// Why a price table was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TableError {
    /// Not JSON (a truncated download ends here).
    #[error("not valid JSON ({0}); a truncated or corrupted download?")]
    NotJson(String),
    /// JSON, but not a map of models.
    #[error("not a LiteLLM price table: {0}")]
    NotATable(String),
    /// Too few usable entries.
    #[error(
        "only {found} usable model prices (at least {needed} expected); refusing a partial table"
    )]
    TooFew {
        /// Usable entries found.
        found: usize,
        /// The floor.
        needed: usize,
    },
    /// A model every real table has is missing or implausibly priced.
    #[error("{0}")]
    Implausible(String),
}

/// Providers whose models our sources produce, with their preference when several LiteLLM
/// entries normalise to the same id (first-party first). `scripts/update-prices.py` keeps the
/// same list.
const PROVIDER_RANKS: &[(&str, u8)] = &[
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

/// Vendors in Bedrock ids (`[region.]vendor.model`) that our sources can produce.
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic",
    "mistral",
    "deepseek",
    "qwen",
    "moonshotai",
    "moonshot",
    "minimax",
    "openai",
    "zai",
];

/// Fewest usable entries a downloaded table must have (the bundled one has several hundred).
pub const MIN_TABLE_MODELS: usize = 100;

/// Models every real table prices, with a plausible input rate range (USD per million).
const SENTINELS: &[(&str, f64, f64)] = &[
    ("claude-sonnet-4-5", 0.5, 50.0),
    ("claude-haiku-4-5", 0.1, 20.0),
    ("gpt-5", 0.1, 50.0),
];

/// Highest believable rate, USD per million tokens; an entry above it is skipped.
const MAX_RATE_PER_MILLION: f64 = 10_000.0;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideFile {
    #[serde(default)]
    models: HashMap<String, OverridePrice>,
}

/// A user price, USD per million tokens (the `pricing_file` shape).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridePrice {
    input: f64,
    output: f64,
    #[serde(default)]
    cache_read: f64,
    #[serde(default)]
    cache_write: f64,
    #[serde(default)]
    cache_write_1h: Option<f64>,
}

impl Pricing {
    /// A table with no prices (every model unknown).
    pub fn empty() -> Pricing {
        Pricing {
            entries: HashMap::new(),
            info: TableInfo {
                origin: TableOrigin::Empty,
                provenance: Provenance::default(),
                models: 0,
                overridden: 0,
                warning: None,
            },
        }
    }

    /// The bundled table.
    pub fn bundled() -> Pricing {
        match Pricing::from_table_json(BUNDLED_TABLE, TableOrigin::Bundled) {
            Ok(pricing) => pricing,
            // A test keeps this from happening; if it ever does, costs go unpriced (and are
            // reported as such) rather than the program refusing to run.
            Err(e) => {
                tracing::error!("the bundled price table is unreadable: {e}");
                let mut pricing = Pricing::empty();
                pricing.info.warning = Some(format!("the bundled price table is unreadable: {e}"));
                pricing
            }
        }
    }

    /// Reads a table: LiteLLM's JSON as published, or the `{provenance, models}` file that
    /// `update-prices.py` and `prices update` write. Refuses anything that is not plausibly a
    /// complete table.
    pub fn from_table_json(text: &str, origin: TableOrigin) -> Result<Pricing, TableError> {
        let pricing = Pricing::parse_table(text, origin)?;
        pricing.check_plausible()?;
        Ok(pricing)
    }

    /// Reads a table without the completeness checks (small tables in tests).
    fn parse_table(text: &str, origin: TableOrigin) -> Result<Pricing, TableError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| TableError::NotJson(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(TableError::NotATable(
                "the top level is not an object".into(),
            ));
        };
        let (provenance, models) = match (top.get("provenance"), top.get("models")) {
            (Some(provenance), Some(Value::Object(models))) => (
                serde_json::from_value(provenance.clone())
                    .map_err(|e| TableError::NotATable(format!("provenance: {e}")))?,
                models.clone(),
            ),
            _ => (Provenance::default(), top),
        };
        let mut entries: HashMap<String, Entry> = HashMap::new();
        for (id, entry) in &models {
            let Some(parsed) = parse_litellm_entry(id, entry) else {
                continue;
            };
            match entries.get(&parsed.0) {
                Some(old) if old.rank <= parsed.1.rank => {}
                _ => {
                    entries.insert(parsed.0, parsed.1);
                }
            }
        }
        add_undated_families(&mut entries);
        Ok(Pricing {
            info: TableInfo {
                origin,
                provenance,
                models: entries.len(),
                overridden: 0,
                warning: None,
            },
            entries,
        })
    }

    fn check_plausible(&self) -> Result<(), TableError> {
        if self.entries.len() < MIN_TABLE_MODELS {
            return Err(TableError::TooFew {
                found: self.entries.len(),
                needed: MIN_TABLE_MODELS,
            });
        }
        for (model, low, high) in SENTINELS {
            let Some(price) = self.price(model) else {
                return Err(TableError::Implausible(format!(
                    "no price for {model}, which every LiteLLM table has"
                )));
            };
            let input = price.base.input;
            if !(*low..=*high).contains(&input) {
                return Err(TableError::Implausible(format!(
                    "{model} input is ${input}/M, outside the plausible ${low}..${high}/M"
                )));
            }
        }
        Ok(())
    }

    /// The table in use: the one installed by `prices update` (`installed`, when the file
    /// exists), else the bundled one; then the user's `pricing_file` on top.
    pub fn load(installed: Option<&Path>, override_file: Option<&Path>) -> Result<Pricing, String> {
        let mut pricing = match installed.filter(|p| p.exists()) {
            Some(path) => match std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    Pricing::from_table_json(
                        &text,
                        TableOrigin::Installed {
                            path: path.to_path_buf(),
                        },
                    )
                    .map_err(|e| e.to_string())
                }) {
                Ok(pricing) => pricing,
                Err(e) => {
                    // `prices update` validates before it installs, so this is a damaged file:
                    // say so everywhere the table is shown, and keep pricing with the bundled one.
                    let warning = format!(
                        "{}: {e}; using the bundled table (run `opensyncd prices update` to \
                         replace the file)",
                        path.display()
                    );
                    tracing::warn!("{warning}");
                    let mut pricing = Pricing::bundled();
                    pricing.info.warning = Some(warning);
                    pricing
                }
            },
            None => Pricing::bundled(),
        };
        if let Some(path) = override_file {
            pricing.apply_override_file(path)?;
        }
        Ok(pricing)
    }

    /// Applies a user TOML file, USD per million tokens:
    /// `[models."my-model"] input = 1.0  output = 2.0  cache_read = 0.1  cache_write = 1.25`
    /// (`cache_write_1h` optional). A user price replaces every table entry of that model
    /// (dated and regional spellings included).
    fn apply_override_file(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: OverrideFile =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut models: Vec<_> = file.models.into_iter().collect();
        models.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, price) in models {
            for (name, v) in [
                ("input", Some(price.input)),
                ("output", Some(price.output)),
                ("cache_read", Some(price.cache_read)),
                ("cache_write", Some(price.cache_write)),
                ("cache_write_1h", price.cache_write_1h),
            ] {
                if let Some(v) = v
                    && !(0.0..=MAX_RATE_PER_MILLION).contains(&v)
                {
                    return Err(format!(
                        "{}: models.{id}.{name} = {v} is not a plausible price",
                        path.display()
                    ));
                }
            }
            let ids = NormalisedId::parse(&id);
            let key = ids.base.clone();
            let cache_write_1h = price.cache_write_1h.unwrap_or(if ids.is_anthropic() {
                2.0 * price.input
            } else {
                price.cache_write
            });
            let family = ids.family();
            self.entries.retain(|_, e| e.family != family);
            self.entries.insert(
                key,
                Entry {
                    price: Price {
                        base: Rates {
                            input: price.input,
                            output: price.output,
                            cache_read: price.cache_read,
                            cache_write: price.cache_write,
                            cache_write_1h,
                        },
                        tiers: Vec::new(),
                        inclusive: false,
                    },
                    from: "pricing_file".into(),
                    family,
                    rank: (0, 0, String::new()),
                },
            );
            self.info.overridden += 1;
        }
        self.info.models = self.entries.len();
        Ok(())
    }

    /// Which table this is.
    pub fn info(&self) -> &TableInfo {
        &self.info
    }

    /// How `model` resolves: the first of its normalised spellings the table has.
    pub fn resolve(&self, model: &str) -> Option<Resolution> {
        candidates(model).into_iter().find_map(|key| {
            self.entries.get(&key).map(|e| Resolution {
                from: e.from.clone(),
                price: e.price.clone(),
                key,
            })
        })
    }

    /// The price of a model, if known.
    pub fn price(&self, model: &str) -> Option<&Price> {
        candidates(model)
            .into_iter()
            .find_map(|key| self.entries.get(&key))
            .map(|e| &e.price)
    }

    /// USD for `tokens` (the sum of calls that all fell in `band`) on `model`; `None` when the
    /// model has no known price.
    pub fn cost(&self, model: &str, band: Band, tokens: &Tokens) -> Option<f64> {
        Some(self.price(model)?.cost(band, tokens))
    }
}

/// Reads one LiteLLM entry: `(normalised id, entry)`, or `None` when it is not a model of ours
/// with per-token prices.
fn parse_litellm_entry(id: &str, entry: &Value) -> Option<(String, Entry)> {
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
/// prices with: the entries [`Pricing`] reads, each with `litellm_provider` and its rate fields
/// only. `prices update` installs this, `scripts/update-prices.py` writes the same subset.
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
fn add_undated_families(entries: &mut HashMap<String, Entry>) {
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

/// A model id taken apart: an optional Bedrock cross-region prefix and the base id (lower case,
/// provider decorations removed, dots and dashes as the table spells them).
#[derive(Debug, Clone, PartialEq)]
struct NormalisedId {
    region: Option<String>,
    base: String,
}

impl NormalisedId {
    fn parse(model: &str) -> NormalisedId {
        let mut s = model.trim().to_ascii_lowercase();
        if let Some(rest) = s.strip_prefix("custom:") {
            s = droid_byok_name(rest);
        }
        // Routing prefixes: `anthropic/`, `openai/`, `converse/`, `openrouter/<vendor>/`, ARNs.
        if let Some((_, last)) = s.rsplit_once('/') {
            s = last.to_string();
        }
        let mut region = None;
        if let Some((r, rest)) = bedrock_split(&s) {
            region = r.map(str::to_string);
            s = rest.to_string();
        }
        // Vertex: `claude-sonnet-4-5@20250929` is the dated id; `@latest`/`@default` add nothing.
        if let Some((head, tail)) = s.split_once('@') {
            s = if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
                format!("{head}-{tail}")
            } else {
                head.to_string()
            };
        }
        // Bedrock model versions: `-v1:0`, `-v2:0`, `-v1`, and `-1:0` (`openai.gpt-oss-120b-1:0`).
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if let Some(i) = s.rfind("-v") {
            let tail = &s[i + 2..];
            let (major, minor) = tail.split_once(':').unwrap_or((tail, "0"));
            if digits(major) && digits(minor) {
                s.truncate(i);
            }
        }
        if let Some((head, minor)) = s.rsplit_once(':')
            && let Some((model, major)) = head.rsplit_once('-')
            && digits(major)
            && digits(minor)
        {
            s = model.to_string();
        }
        // Anthropic ids use dashes (`claude-sonnet-4-5`); OpenRouter and display names use dots.
        if s.starts_with("claude") {
            s = s.replace('.', "-");
        }
        s = dotted_gpt_version(&s);
        NormalisedId { region, base: s }
    }

    fn is_anthropic(&self) -> bool {
        self.base.starts_with("claude")
    }

    /// The undated id without region.
    fn family(&self) -> String {
        strip_date(&self.base).unwrap_or(&self.base).to_string()
    }

    fn most_specific(&self) -> String {
        match &self.region {
            Some(r) => format!("{r}.{}", self.base),
            None => self.base.clone(),
        }
    }
}

/// The spellings to look a model up under, most specific first: regional before global, dated
/// before undated (the table has an undated id only where it prices like its dated ones).
pub fn candidates(model: &str) -> Vec<String> {
    let id = NormalisedId::parse(model);
    let mut bases = vec![id.base.clone()];
    if let Some(undated) = strip_date(&id.base) {
        bases.push(undated.to_string());
    }
    // `-latest` aliases (`claude-3-5-sonnet-latest`) price as their family.
    let latest: Vec<String> = bases
        .iter()
        .filter_map(|b| b.strip_suffix("-latest"))
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    bases.extend(latest);
    let mut out = Vec::new();
    if let Some(region) = &id.region {
        out.extend(bases.iter().map(|b| format!("{region}.{b}")));
    }
    out.extend(bases);
    out.dedup();
    out
}

/// `[region.]vendor.model` (Bedrock): `(region, model)` when `s` has a known vendor prefix.
fn bedrock_split(s: &str) -> Option<(Option<&str>, &str)> {
    let (first, rest) = s.split_once('.')?;
    if BEDROCK_VENDORS.contains(&first) {
        return Some((None, rest));
    }
    let (vendor, model) = rest.split_once('.')?;
    let region_ok = !first.is_empty()
        && first.len() <= 10
        && first.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    (region_ok && BEDROCK_VENDORS.contains(&vendor)).then_some((Some(first), model))
}

/// Droid bring-your-own-key names: `BYOK-GPT-5-MINI-0`, `Claude Sonnet 4.5-[Anthropic]-1`.
/// The display name is the user's, so this is best effort: the bracketed provider, the trailing
/// index and a leading `byok` go; what remains is looked up like any id (and is unpriced if
/// the table does not know it).
fn droid_byok_name(rest: &str) -> String {
    let mut name = String::new();
    let mut depth = 0u32;
    for c in rest.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => name.push(if c.is_whitespace() || c == '_' {
                '-'
            } else {
                c
            }),
            _ => {}
        }
    }
    let mut collapsed = String::new();
    for c in name.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    let mut s = collapsed.trim_matches('-').to_string();
    // The index Droid appends to every custom model.
    if let Some(i) = s.rfind('-')
        && s[i + 1..].bytes().all(|b| b.is_ascii_digit())
        && i + 1 < s.len()
    {
        s.truncate(i);
    }
    s.strip_prefix("byok-").map(str::to_string).unwrap_or(s)
}

/// A trailing date (`-20250514`, `-2025-11-13`) removed, if there is one.
fn strip_date(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let n = b.len();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    if n > 9 && b[n - 9] == b'-' && digits(n - 8..n) {
        return Some(&s[..n - 9]);
    }
    if n > 11
        && b[n - 11] == b'-'
        && digits(n - 10..n - 6)
        && b[n - 6] == b'-'
        && digits(n - 5..n - 3)
        && b[n - 3] == b'-'
        && digits(n - 2..n)
    {
        return Some(&s[..n - 11]);
    }
    None
}

/// `gpt-5-1-codex` → `gpt-5.1-codex` (Codex sometimes reports dashed versions).
fn dotted_gpt_version(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("gpt-") {
        let b = rest.as_bytes();
        if b.len() >= 3
            && b[0].is_ascii_digit()
            && b[1] == b'-'
            && b[2].is_ascii_digit()
            && b.get(3).is_none_or(|c| *c == b'-')
        {
            return format!("gpt-{}.{}", &rest[..1], &rest[2..]);
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    //! Expected costs are worked out by hand from LiteLLM 1.110.2's rates (USD per token in the
    //! table, written here per million), the arithmetic spelled out next to each figure.

    use super::*;

    fn tokens(input: u64, output: u64, cache_read: u64, cache_write: u64, cw_1h: u64) -> Tokens {
        Tokens {
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h: cw_1h,
            reasoning: 0,
        }
    }

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "got {actual}, expected {expected}"
        );
    }

    /// The key and input rate (USD per million) `model` resolves to in the bundled table.
    fn resolved(model: &str) -> Option<(String, f64)> {
        Pricing::bundled()
            .resolve(model)
            .map(|r| (r.key, r.price.base.input))
    }

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
    fn every_spelling_resolves_to_its_own_price() {
        let cases: &[(&str, &str, f64)] = &[
            // Provider prefixes.
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", 3.0),
            ("openai/gpt-5.1-codex-max", "gpt-5.1-codex-max", 1.25),
            (
                "converse/jp.anthropic.claude-haiku-4-5-20251001-v1:0",
                "jp.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "openrouter/anthropic/claude-sonnet-4.5",
                "claude-sonnet-4-5",
                3.0,
            ),
            ("openrouter/openai/gpt-5", "gpt-5", 1.25),
            // Bedrock cross-region profiles: regional ones cost 10% more for Claude 4.5+.
            (
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "us.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
                "eu.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
                "jp.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "apac.anthropic.claude-sonnet-4-20250514-v1:0",
                "apac.claude-sonnet-4-20250514",
                3.0,
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "global.claude-haiku-4-5-20251001",
                1.0,
            ),
            (
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                "claude-3-5-haiku-20241022",
                0.8,
            ),
            (
                "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                "us.claude-3-5-sonnet-20241022",
                3.0,
            ),
            // Vertex `@date`.
            (
                "claude-haiku-4-5@20251001",
                "claude-haiku-4-5-20251001",
                1.0,
            ),
            (
                "vertex_ai/claude-sonnet-4-5@20250929",
                "claude-sonnet-4-5-20250929",
                3.0,
            ),
            // Dated ids: their own entry, or the undated family when LiteLLM lists none.
            (
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20250929",
                3.0,
            ),
            ("claude-haiku-4-5-20991231", "claude-haiku-4-5", 1.0),
            ("claude-sonnet-4", "claude-sonnet-4", 3.0),
            ("claude-opus-4-20250514", "claude-opus-4-20250514", 15.0),
            ("openai.gpt-oss-120b-1:0", "gpt-oss-120b", 0.15),
            // Codex's dashed versions and dates; `-latest` aliases (OpenAI's own entries no
            // longer list codex-mini; Azure's list price fills the gap).
            ("codex-mini-latest", "codex-mini", 1.5),
            // (LiteLLM lists this dated id only under Azure, at OpenAI's list price.)
            ("gpt-5-1-codex-2025-11-13", "gpt-5.1-codex-2025-11-13", 1.25),
            ("gpt-5-1-codex-2099-01-01", "gpt-5.1-codex", 1.25),
            ("GPT-5.2", "gpt-5.2", 1.75),
            // Droid bring-your-own-key names.
            ("custom:BYOK-GPT-5-MINI-0", "gpt-5-mini", 0.25),
            (
                "custom:Claude Sonnet 4.5-[Anthropic]-1",
                "claude-sonnet-4-5",
                3.0,
            ),
            ("custom:GLM-4.6-[Z.ai]-0", "glm-4.6", 0.6),
        ];
        for (spelling, key, input) in cases {
            assert_eq!(
                resolved(spelling),
                Some((key.to_string(), *input)),
                "{spelling}"
            );
        }
    }

    #[test]
    fn no_guessing_across_versions() {
        // claude-opus-4-7 has its own price (5), not opus-4-1's (15).
        assert_eq!(
            resolved("claude-opus-4-7"),
            Some(("claude-opus-4-7".into(), 5.0))
        );
        assert_eq!(
            resolved("claude-opus-4-1"),
            Some(("claude-opus-4-1".into(), 15.0))
        );
        for unknown in [
            "claude-opus-4-9",
            "gpt-5.9-codex",
            "custom:My Local Llama-[Ollama]-0",
            "my-local-llama",
            "",
        ] {
            assert_eq!(resolved(unknown), None, "{unknown}");
            assert_eq!(
                Pricing::bundled().cost(unknown, Band::BASE, &tokens(1, 1, 1, 1, 0)),
                None
            );
        }
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
    fn the_bundled_table_is_complete_and_says_where_it_came_from() {
        let p = Pricing::bundled();
        let info = p.info();
        assert_eq!(info.origin, TableOrigin::Bundled);
        assert_eq!(info.warning, None);
        assert!(info.models >= 300, "{} models", info.models);
        assert!(info.provenance.litellm_version.is_some());
        assert_eq!(info.provenance.sha256.as_deref().map(str::len), Some(64));
        // Every bundled entry is of a provider the loader reads (update-prices.py keeps the
        // same list as PROVIDER_RANKS).
        let file: Value = serde_json::from_str(BUNDLED_TABLE).unwrap();
        for (id, entry) in file["models"].as_object().unwrap() {
            let provider = entry["litellm_provider"].as_str().unwrap();
            assert!(
                PROVIDER_RANKS.iter().any(|(p, _)| *p == provider),
                "{id}: {provider}"
            );
        }
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let bundled = BUNDLED_TABLE;
        let truncated = &bundled[..bundled.len() / 2];
        assert!(matches!(
            Pricing::from_table_json(truncated, TableOrigin::Empty),
            Err(TableError::NotJson(_))
        ));
        assert!(matches!(
            Pricing::from_table_json("[1, 2]", TableOrigin::Empty),
            Err(TableError::NotATable(_))
        ));
        let few = r#"{"gpt-5": {"litellm_provider": "openai", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05}}"#;
        assert_eq!(
            Pricing::from_table_json(few, TableOrigin::Empty).unwrap_err(),
            TableError::TooFew {
                found: 1,
                needed: MIN_TABLE_MODELS
            }
        );
        // A complete table whose Sonnet input is $1000/M is not believable.
        let mut file: Value = serde_json::from_str(bundled).unwrap();
        file["models"]["claude-sonnet-4-5"]["input_cost_per_token"] = serde_json::json!(0.001);
        let err = Pricing::from_table_json(&file.to_string(), TableOrigin::Empty).unwrap_err();
        assert!(err.to_string().contains("claude-sonnet-4-5"), "{err}");
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

    #[test]
    fn a_user_file_overrides_every_spelling_of_a_model_and_extends_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prices.toml");
        std::fs::write(
            &file,
            "[models.\"my-llama\"]\ninput = 1.0\noutput = 2.0\n\
             [models.\"claude-haiku-4-5\"]\ninput = 9\noutput = 9\ncache_write = 10\ncache_write_1h = 20\n\
             [models.\"claude-x\"]\ninput = 4\noutput = 4\n",
        )
        .unwrap();
        let p = Pricing::load(None, Some(&file)).unwrap();
        assert_eq!(p.info().overridden, 3);
        assert_eq!(p.price("my-llama").unwrap().base.output, 2.0);
        // The user's haiku price replaces the dated and regional table entries too.
        for spelling in [
            "claude-haiku-4-5",
            "claude-haiku-4-5-20251001",
            "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
        ] {
            assert_eq!(p.price(spelling).unwrap().base.input, 9.0, "{spelling}");
        }
        // 1_000_000 tokens written for an hour at the user's 20 → $20.
        close(
            p.cost(
                "claude-haiku-4-5",
                Band::BASE,
                &tokens(0, 0, 0, 1_000_000, 1_000_000),
            )
            .unwrap(),
            20.0,
        );
        // No `cache_write_1h` for a Claude model: 2 x input (4) = 8.
        assert_eq!(p.price("claude-x").unwrap().base.cache_write_1h, 8.0);
        std::fs::write(&file, "[models.x]\ninput = -1\noutput = 1\n").unwrap();
        assert!(
            Pricing::load(None, Some(&file))
                .unwrap_err()
                .contains("models.x.input")
        );
        std::fs::write(
            &file,
            "[models.x]\ninput = 1\noutput = 1\ncache_write_1h = 1e9\n",
        )
        .unwrap();
        assert!(
            Pricing::load(None, Some(&file))
                .unwrap_err()
                .contains("models.x.cache_write_1h")
        );
        std::fs::write(&file, "[models.x]\ninput = 1\n").unwrap();
        assert!(
            Pricing::load(None, Some(&file)).is_err(),
            "output is required"
        );
    }

    #[test]
    fn a_damaged_installed_table_falls_back_to_the_bundled_one_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let installed = dir.path().join("prices.json");
        std::fs::write(&installed, "{\"models\": {").unwrap();
        let p = Pricing::load(Some(&installed), None).unwrap();
        assert_eq!(p.info().origin, TableOrigin::Bundled);
        assert!(p.info().warning.as_deref().unwrap().contains("prices.json"));
        assert!(p.price("claude-sonnet-4-5").is_some());
        // A missing file is simply "not installed".
        let p = Pricing::load(Some(&dir.path().join("absent.json")), None).unwrap();
        assert_eq!(p.info().warning, None);
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
