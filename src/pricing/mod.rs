//! Model prices: the price table in use and looking a model up in it. The table is LiteLLM's
//! (bundled, or a newer one installed by `opensyncd prices update`), with the user's TOML
//! `pricing_file` on top; a table is refused unless it is plausibly complete.
//!
//! Where prices come from: `assets/prices.json` is a subset of LiteLLM's
//! `model_prices_and_context_window.json` (the table ccusage and most cost tools use), written by
//! `scripts/update-prices.py` with its provenance. Entries keep LiteLLM's ids and per-token
//! field names, so a table downloaded by `prices update` goes through the same reader.
//! ccusage (20.0.x) also patches LiteLLM with a built-in table and models.dev for models LiteLLM
//! lacks; we price from LiteLLM alone and name what it cannot price.
//!
//! A model the table does not know is never guessed from a neighbour (a newer model of the same
//! family often has a different price): it has no cost, and callers name it with the tokens it
//! affects.
//!
//! The jobs around the table, one submodule each: `billing` (price bands and what a call
//! costs at a price), `litellm` (reading LiteLLM's entries into prices) and `model_id` (the
//! spellings a log's model id is looked up under).

mod billing;
mod litellm;
mod model_id;
#[cfg(test)]
mod test_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::Tokens;

use litellm::{add_undated_families, parse_litellm_entry};
use model_id::NormalisedId;

pub use billing::{Band, Price, Rates, Tier, band_of};
pub use litellm::litellm_subset;
pub use model_id::candidates;

/// The bundled table (see `scripts/update-prices.py`).
const BUNDLED_TABLE: &str = include_str!("../../assets/prices.json");

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

#[cfg(test)]
mod tests {
    use super::litellm::PROVIDER_RANKS;
    use super::test_support::{close, tokens};
    use super::*;

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
}
