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
//! ccusage differs on purpose in two ways, both documented in the README: it applies
//! `*_above_200k_tokens` rates per token kind to the tokens beyond 200k of that kind (a marginal
//! split), and it ignores other thresholds (LiteLLM also carries 32k, 128k, 256k, 272k, 512k).
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
        let pricing = Pricing {
            info: TableInfo {
                origin,
                provenance,
                models: entries.len(),
                overridden: 0,
                warning: None,
            },
            entries,
        };
        pricing.check_plausible()?;
        Ok(pricing)
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
    let fields = entry.as_object()?;
    let provider = fields.get("litellm_provider")?.as_str()?;
    let provider_rank = PROVIDER_RANKS
        .iter()
        .find(|(p, _)| *p == provider)
        .map(|(_, rank)| *rank)?;
    if provider.starts_with("bedrock") && (id.contains('/') || bedrock_split(id).is_none()) {
        return None;
    }
    let rate = |field: &str| -> Option<f64> {
        let v = fields.get(field)?.as_f64()?;
        let per_million = v * 1_000_000.0;
        // Round away float noise from the per-token form (3e-06 * 1e6 = 2.9999999999999996).
        let per_million = (per_million * 1e9).round() / 1e9;
        (0.0..=MAX_RATE_PER_MILLION)
            .contains(&per_million)
            .then_some(per_million)
    };
    let ids = NormalisedId::parse(id);
    let anthropic = ids.is_anthropic();
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
    let key = ids.most_specific();
    let entry = Entry {
        price: Price {
            base,
            tiers,
            inclusive: provider == "xai",
        },
        from: id.to_string(),
        family: ids.family(),
        rank: (provider_rank, id.matches('/').count(), id.to_string()),
    };
    Some((key, entry))
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
            .filter(|(k, _)| k == "litellm_provider" || is_rate_field(k))
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
        // Bedrock model versions: `-v1:0`, `-v2:0`, `-v1`.
        if let Some(i) = s.rfind("-v") {
            let tail = &s[i + 2..];
            let (major, minor) = tail.split_once(':').unwrap_or((tail, "0"));
            let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            if digits(major) && digits(minor) {
                s.truncate(i);
            }
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
