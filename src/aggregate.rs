//! Folds parser records into per-session state (metadata and token totals) and turns that
//! state into the session payload. The same fold serves `export` (in memory) and the daemon
//! (state persisted in the ledger), so both send exactly the same totals.
//!
//! Usage de-duplication needs the value last stored under each usage key. Those entries live
//! behind [`UsageKeys`], so the daemon can keep them in sled (one small row per key) instead of
//! re-serialising a growing map on every append.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{SessionPayload, SourceId, Tokens, project_name};
use crate::pricing::{Band, Pricing};
use crate::sources::{SessionFacts, UsageFact, UsageMerge};

/// The value stored under one usage key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Model the usage is priced with.
    pub model: Option<String>,
    /// Tokens.
    pub tokens: Tokens,
    /// The tool's own cost, if it gave one.
    pub cost: Option<f64>,
}

/// Storage for usage entries, keyed by (session key, usage key).
pub trait UsageKeys {
    /// The entry stored under `key` for the session, if any.
    fn get(&mut self, session: &str, key: &str) -> Option<UsageEntry>;
    /// Stores (or replaces) the entry.
    fn put(&mut self, session: &str, key: &str, entry: UsageEntry);
}

/// An in-memory [`UsageKeys`] (export, tests).
#[derive(Debug, Default)]
pub struct MemoryUsageKeys(HashMap<(String, String), UsageEntry>);

impl UsageKeys for MemoryUsageKeys {
    fn get(&mut self, session: &str, key: &str) -> Option<UsageEntry> {
        self.0.get(&(session.to_string(), key.to_string())).cloned()
    }
    fn put(&mut self, session: &str, key: &str, entry: UsageEntry) {
        self.0.insert((session.to_string(), key.to_string()), entry);
    }
}

/// Totals for one model within a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelUsage {
    /// All tokens billed to this model.
    pub tokens: Tokens,
    /// The part of `tokens` with no tool-supplied cost (priced from the table).
    pub priced: Tokens,
    /// Sum of tool-supplied costs.
    pub tool_cost: f64,
}

/// Everything known about one session, folded from its records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Tool.
    pub source: SourceId,
    /// External id.
    pub session_id: String,
    /// First title candidate seen.
    pub title: Option<String>,
    /// The tool's own (latest) title.
    pub title_override: Option<String>,
    /// First project path seen.
    pub project_path: Option<String>,
    /// Latest model.
    pub model: Option<String>,
    /// Latest provider.
    pub provider: Option<String>,
    /// Earliest activity (epoch ms).
    pub first_at: Option<i64>,
    /// Latest activity (epoch ms).
    pub last_at: Option<i64>,
    /// Largest explicit duration reported.
    pub duration_ms: Option<u64>,
    /// Usage totals per model (`""` = model unknown).
    pub by_model: BTreeMap<String, ModelUsage>,
}

/// Session totals ready for the payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Sum over models.
    pub tokens: Tokens,
    /// USD.
    pub cost: f64,
    /// Models that had tokens but no price (cost counted as 0).
    pub unpriced_models: Vec<String>,
    /// The tokens each unpriced model used (left out of `cost`, which is the priced part).
    pub unpriced_tokens: BTreeMap<String, Tokens>,
}

impl SessionState {
    /// An empty state.
    pub fn new(source: SourceId, session_id: impl Into<String>) -> SessionState {
        SessionState {
            source,
            session_id: session_id.into(),
            title: None,
            title_override: None,
            project_path: None,
            model: None,
            provider: None,
            first_at: None,
            last_at: None,
            duration_ms: None,
            by_model: BTreeMap::new(),
        }
    }

    /// The key sessions are stored under: tools could in theory reuse each other's ids.
    pub fn key(&self) -> String {
        session_key(self.source, &self.session_id)
    }

    /// Merges session facts.
    pub fn apply_facts(&mut self, facts: &SessionFacts) {
        fn first(slot: &mut Option<String>, value: &Option<String>) {
            if slot.is_none()
                && let Some(v) = value.as_ref().filter(|v| !v.trim().is_empty())
            {
                *slot = Some(v.clone());
            }
        }
        fn latest(slot: &mut Option<String>, value: &Option<String>) {
            if let Some(v) = value.as_ref().filter(|v| !v.trim().is_empty()) {
                *slot = Some(v.clone());
            }
        }
        first(&mut self.title, &facts.title);
        latest(&mut self.title_override, &facts.title_override);
        first(&mut self.project_path, &facts.project_path);
        latest(&mut self.model, &facts.model);
        latest(&mut self.provider, &facts.provider);
        if let Some(at) = facts.at_ms {
            self.first_at = Some(self.first_at.map_or(at, |f| f.min(at)));
            self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        }
        if let Some(d) = facts.duration_ms {
            self.duration_ms = Some(self.duration_ms.map_or(d, |old| old.max(d)));
        }
    }

    /// Merges a usage fact, de-duplicated through `keys`.
    pub fn apply_usage(&mut self, fact: &UsageFact, keys: &mut dyn UsageKeys) {
        let session = self.key();
        let old = keys.get(&session, &fact.key);
        let new = match (&old, fact.merge) {
            (Some(old), UsageMerge::Max) => {
                let mut tokens = old.tokens;
                tokens.max_with(&fact.tokens);
                UsageEntry {
                    model: fact.model.clone().or_else(|| old.model.clone()),
                    tokens,
                    cost: max_cost(old.cost, fact.cost),
                }
            }
            _ => UsageEntry {
                model: fact.model.clone(),
                tokens: fact.tokens,
                cost: fact.cost,
            },
        };
        if old.as_ref() == Some(&new) {
            return;
        }
        if let Some(old) = &old {
            self.bucket(old, false);
        }
        self.bucket(&new, true);
        keys.put(&session, &fact.key, new);
    }

    /// Adds (or removes) one usage entry to its model bucket.
    fn bucket(&mut self, entry: &UsageEntry, add: bool) {
        let model = entry.model.clone().unwrap_or_default();
        let bucket = self.by_model.entry(model.clone()).or_default();
        let tool_cost = entry.cost.filter(|c| *c > 0.0);
        let change = |total: &mut Tokens, t: &Tokens| {
            if add {
                total.add(t);
            } else {
                total.sub(t);
            }
        };
        change(&mut bucket.tokens, &entry.tokens);
        match tool_cost {
            Some(c) => bucket.tool_cost += if add { c } else { -c },
            None => change(&mut bucket.priced, &entry.tokens),
        }
        if bucket.tokens.is_zero() && bucket.tool_cost.abs() < 1e-12 {
            self.by_model.remove(&model);
        }
    }

    /// Token and cost totals.
    pub fn totals(&self, pricing: &Pricing) -> Totals {
        let mut totals = Totals::default();
        for (model, usage) in &self.by_model {
            totals.tokens.add(&usage.tokens);
            totals.cost += usage.tool_cost.max(0.0);
            if usage.priced.is_zero() {
                continue;
            }
            // The lead's fold buckets usage per (model, band); until then all of it is priced at
            // the base rate.
            match pricing.cost(model, Band::BASE, &usage.priced) {
                Some(c) => totals.cost += c,
                None => {
                    totals.unpriced_models.push(model.clone());
                    totals.unpriced_tokens.insert(model.clone(), usage.priced);
                }
            }
        }
        // Round to a millionth of a dollar so float noise never makes a payload "changed".
        totals.cost = (totals.cost * 1e6).round() / 1e6;
        totals
    }

    /// The session payload with absolute totals. `createdAt` is included; the batch
    /// transport strips it.
    pub fn payload(&self, pricing: &Pricing) -> SessionPayload {
        let totals = self.totals(pricing);
        let duration = match (self.first_at, self.last_at) {
            (Some(f), Some(l)) if l > f => Some(l.abs_diff(f)),
            _ => None,
        };
        let duration_ms = match (duration, self.duration_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let title = self.title_override.clone().or_else(|| self.title.clone());
        SessionPayload {
            external_id: self.session_id.clone(),
            title,
            project_name: self.project_path.as_deref().and_then(project_name),
            project_path: self.project_path.clone(),
            model: self.model.clone(),
            provider: self.provider.clone(),
            source: self.source.as_str().to_string(),
            // The server ignores 0 (keeps the old value), so 0 is sent as absent.
            prompt_tokens: Some(totals.tokens.prompt()).filter(|t| *t > 0),
            completion_tokens: Some(totals.tokens.output).filter(|t| *t > 0),
            cost: Some(totals.cost).filter(|c| *c > 0.0),
            duration_ms,
            created_at: self.first_at,
        }
    }
}

fn max_cost(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The key a session is stored under.
pub fn session_key(source: SourceId, session_id: &str) -> String {
    format!("{}\0{}", source.as_str(), session_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(key: &str, merge: UsageMerge, input: u64, output: u64) -> UsageFact {
        UsageFact {
            session_id: "s".into(),
            key: key.into(),
            merge,
            model: Some("m".into()),
            tokens: Tokens {
                input,
                output,
                ..Tokens::default()
            },
            cost: None,
        }
    }

    #[test]
    fn max_merge_keeps_the_largest_output_per_key() {
        let mut s = SessionState::new(SourceId::ClaudeCode, "s");
        let mut keys = MemoryUsageKeys::default();
        s.apply_usage(&usage("a", UsageMerge::Max, 10, 1), &mut keys);
        s.apply_usage(&usage("a", UsageMerge::Max, 10, 50), &mut keys);
        s.apply_usage(&usage("a", UsageMerge::Max, 10, 3), &mut keys);
        s.apply_usage(&usage("b", UsageMerge::Max, 5, 5), &mut keys);
        let t = s.totals(&Pricing::empty());
        assert_eq!((t.tokens.input, t.tokens.output), (15, 55));
        assert_eq!(t.unpriced_models, vec!["m".to_string()]);
    }

    #[test]
    fn replace_merge_swaps_the_old_value_out() {
        let mut s = SessionState::new(SourceId::OpenCode, "s");
        let mut keys = MemoryUsageKeys::default();
        s.apply_usage(&usage("msg", UsageMerge::Replace, 0, 0), &mut keys);
        s.apply_usage(&usage("msg", UsageMerge::Replace, 100, 20), &mut keys);
        s.apply_usage(&usage("msg", UsageMerge::Replace, 90, 25), &mut keys);
        let t = s.totals(&Pricing::empty());
        assert_eq!((t.tokens.input, t.tokens.output), (90, 25));
    }

    #[test]
    fn facts_merge_first_latest_and_span() {
        let mut s = SessionState::new(SourceId::CodexCli, "s");
        s.apply_facts(&SessionFacts {
            session_id: "s".into(),
            title: Some("first".into()),
            model: Some("a".into()),
            at_ms: Some(2000),
            ..Default::default()
        });
        s.apply_facts(&SessionFacts {
            session_id: "s".into(),
            title: Some("second".into()),
            model: Some("b".into()),
            at_ms: Some(1000),
            ..Default::default()
        });
        let p = s.payload(&Pricing::empty());
        assert_eq!(p.title.as_deref(), Some("first"));
        assert_eq!(p.model.as_deref(), Some("b"));
        assert_eq!(p.created_at, Some(1000));
        assert_eq!(p.duration_ms, Some(1000));
        assert_eq!(p.prompt_tokens, None);
    }
}
