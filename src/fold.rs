//! The one fold: how the records of a session's units become the session's state — its
//! metadata and its token totals per model and price band — and that state's payload. The same
//! code serves `export` (state kept in memory) and the daemon (state kept in the ledger), so
//! the server ends up holding exactly what `export` prints; the daemon's persisted state is a
//! cache of this fold, never a second computation.
//!
//! What each unit (a transcript file, a snapshot) contributes to a session is kept apart,
//! keyed by the unit:
//! - **facts**: one small summary per (session, unit) — first title, project path, latest
//!   model, time span — see [`Facts`];
//! - **usage**: per (session, usage key), the entry each unit gave for that key
//!   ([`UsageRow`]); within a unit repeats merge by the fact's rule (`Max` for Claude's
//!   streaming snapshots, `Replace` for rewritten OpenCode messages), across units by `Max`
//!   (a resumed or archived copy of the same call counts once).
//!
//! A session's state combines its units' contributions with rules that do not depend on the
//! order in which units were read ([`combine`]). When a unit is read again from its start (a
//! file rewritten or truncated, a snapshot re-read, an OpenCode revert), its old contribution
//! is replaced, not added to ([`Mode`]); a deleted unit's is removed. Token totals are kept as
//! integer sums per (model, band) so that retracting is exact and costs are computed at payload
//! time: a new price table re-prices without re-reading anything.
//!
//! Over 700 lines only with its tests (~660 lines of code): the fold and its store interface
//! are one job, and its unit tests are the place the retraction rules are pinned down.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::model::{MessagePayload, SessionPayload, SourceId, Tokens, project_name};
use crate::pricing::{self, Band, Pricing};
use crate::sources::{Record, SessionFacts, UsageFact, UsageMerge};

/// A unit's identity inside the fold: a hash of its ledger key (stable across runs).
pub type UnitId = u64;

/// The fold id of a unit key.
pub fn unit_id(unit_key: &str) -> UnitId {
    xxhash_rust::xxh3::xxh3_64(unit_key.as_bytes())
}

/// The key a session is stored under: tools could in theory reuse each other's ids.
pub fn session_key(source: SourceId, session_id: &str) -> String {
    format!("{}\0{}", source.as_str(), session_id)
}

/// A value with the time of the record it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    /// The value.
    pub value: String,
    /// Epoch ms of the record, when it had one.
    pub at: Option<i64>,
}

/// The facts one unit gave about one session (or, after [`combine`], the session's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// From a secondary file (a subagent transcript): used only where no primary unit says.
    #[serde(default)]
    pub secondary: bool,
    /// Title candidate: the first one in the unit.
    pub title: Option<Stamped>,
    /// The tool's own title (OpenCode): the last one in the unit; beats `title`.
    pub title_override: Option<Stamped>,
    /// Working directory: the first one in the unit.
    pub project_path: Option<Stamped>,
    /// Model: the last one in the unit.
    pub model: Option<Stamped>,
    /// Provider: the last one in the unit.
    pub provider: Option<Stamped>,
    /// Earliest activity (epoch ms).
    pub first_at: Option<i64>,
    /// Latest activity (epoch ms).
    pub last_at: Option<i64>,
    /// Largest explicit duration reported.
    pub duration_ms: Option<u64>,
}

impl Facts {
    /// Merges one record's facts, in file order.
    pub fn absorb(&mut self, f: &SessionFacts) {
        let stamp = |v: &Option<String>| {
            v.as_ref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Stamped {
                    value: v.clone(),
                    at: f.at_ms,
                })
        };
        if f.secondary {
            self.secondary = true;
        }
        if self.title.is_none() {
            self.title = stamp(&f.title);
        }
        if self.project_path.is_none() {
            self.project_path = stamp(&f.project_path);
        }
        for (slot, value) in [
            (&mut self.title_override, &f.title_override),
            (&mut self.model, &f.model),
            (&mut self.provider, &f.provider),
        ] {
            if let Some(s) = stamp(value) {
                *slot = Some(s);
            }
        }
        if let Some(at) = f.at_ms {
            self.first_at = Some(self.first_at.map_or(at, |x| x.min(at)));
            self.last_at = Some(self.last_at.map_or(at, |x| x.max(at)));
        }
        if let Some(d) = f.duration_ms {
            self.duration_ms = Some(self.duration_ms.map_or(d, |x| x.max(d)));
        }
    }
}

/// A session's facts from its units' facts, whatever order the units were read in: primary
/// units are preferred for every value they give, the start time included; "first" values
/// (title, project path) are the earliest stamped, "latest" values (the tool's title, model,
/// provider) the latest; the end of the span is the latest activity of any unit. Ties go to
/// the smaller unit id.
pub fn combine(units: &[(UnitId, Facts)]) -> Facts {
    let primary: Vec<&(UnitId, Facts)> = units.iter().filter(|(_, f)| !f.secondary).collect();
    let secondary: Vec<&(UnitId, Facts)> = units.iter().filter(|(_, f)| f.secondary).collect();
    let pick = |get: &dyn Fn(&Facts) -> Option<&Stamped>, earliest: bool| -> Option<Stamped> {
        for group in [&primary, &secondary] {
            let candidates = group.iter().filter_map(|(id, f)| get(f).map(|s| (*id, s)));
            let best = if earliest {
                candidates.min_by_key(|(id, s)| (s.at.unwrap_or(i64::MAX), *id))
            } else {
                candidates.max_by_key(|(id, s)| (s.at.unwrap_or(i64::MIN), std::cmp::Reverse(*id)))
            };
            if let Some((_, s)) = best {
                return Some(s.clone());
            }
        }
        None
    };
    Facts {
        secondary: primary.is_empty() && !secondary.is_empty(),
        title: pick(&|f| f.title.as_ref(), true),
        title_override: pick(&|f| f.title_override.as_ref(), false),
        project_path: pick(&|f| f.project_path.as_ref(), true),
        model: pick(&|f| f.model.as_ref(), false),
        provider: pick(&|f| f.provider.as_ref(), false),
        // A session starts with its main transcript: a subagent that ran before it (Claude
        // Code 2.0's "Warmup" agent starts before the first prompt) does not move its start.
        first_at: primary
            .iter()
            .filter_map(|(_, f)| f.first_at)
            .min()
            .or_else(|| secondary.iter().filter_map(|(_, f)| f.first_at).min()),
        last_at: units.iter().filter_map(|(_, f)| f.last_at).max(),
        duration_ms: units.iter().filter_map(|(_, f)| f.duration_ms).max(),
    }
}

/// The usage a unit gave under one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Model the usage is priced with.
    pub model: Option<String>,
    /// Tokens.
    pub tokens: Tokens,
    /// The tool's own cost (USD), if it gave one.
    pub cost: Option<f64>,
}

impl UsageEntry {
    fn from_fact(f: &UsageFact) -> UsageEntry {
        UsageEntry {
            model: f.model.clone(),
            tokens: f.tokens,
            cost: f.cost,
        }
    }

    /// Merges a repeat of the same key within one unit.
    fn merge(&self, f: &UsageFact) -> UsageEntry {
        match f.merge {
            UsageMerge::Replace => UsageEntry::from_fact(f),
            UsageMerge::Max => {
                let mut tokens = self.tokens;
                tokens.max_with(&f.tokens);
                UsageEntry {
                    model: f.model.clone().or_else(|| self.model.clone()),
                    tokens,
                    cost: max_cost(self.cost, f.cost),
                }
            }
        }
    }
}

fn max_cost(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Every unit's entry for one usage key of a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageRow(pub BTreeMap<UnitId, UsageEntry>);

impl UsageRow {
    /// What the key counts for in the session: the field-wise maximum over units (copies of
    /// one API call in a resumed or archived file count once), the model of the first unit
    /// that names one, the largest tool cost.
    pub fn effective(&self) -> Option<UsageEntry> {
        let mut entries = self.0.values();
        let mut out = entries.next()?.clone();
        for e in entries {
            out.tokens.max_with(&e.tokens);
            if out.model.is_none() {
                out.model = e.model.clone();
            }
            out.cost = max_cost(out.cost, e.cost);
        }
        Some(out)
    }
}

/// Totals of one (model, band) bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// All tokens of the bucket.
    pub tokens: Tokens,
    /// The part of `tokens` without a tool-supplied cost (priced from the table).
    pub priced: Tokens,
    /// Tool-supplied costs, in nanodollars (integers, so that retracting is exact).
    pub tool_cost_nanos: i64,
}

/// A session's usage: model → price band → bucket (`""` = model unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage(pub BTreeMap<String, BTreeMap<Band, Bucket>>);

impl Usage {
    /// Swaps a usage key's effective entry `old` for `new`; whether anything changed.
    pub fn replace(&mut self, old: Option<&UsageEntry>, new: Option<&UsageEntry>) -> bool {
        if old == new {
            return false;
        }
        if let Some(old) = old {
            self.change(old, false);
        }
        if let Some(new) = new {
            self.change(new, true);
        }
        true
    }

    /// Adds (`add`) or removes one effective usage entry.
    pub fn change(&mut self, entry: &UsageEntry, add: bool) {
        let model = entry.model.clone().unwrap_or_default();
        let band = pricing::band_of(entry.tokens.prompt());
        let bands = self.0.entry(model.clone()).or_default();
        let bucket = bands.entry(band).or_default();
        let tool_nanos = entry
            .cost
            .filter(|c| c.is_finite() && *c > 0.0)
            .map(|c| (c * 1e9).round().min(i64::MAX as f64) as i64);
        let apply = |total: &mut Tokens| {
            if add {
                total.add(&entry.tokens)
            } else {
                total.sub(&entry.tokens)
            }
        };
        apply(&mut bucket.tokens);
        match tool_nanos {
            Some(n) if add => bucket.tool_cost_nanos = bucket.tool_cost_nanos.saturating_add(n),
            Some(n) => bucket.tool_cost_nanos = bucket.tool_cost_nanos.saturating_sub(n),
            None => apply(&mut bucket.priced),
        }
        if bucket.tokens.is_zero() && bucket.tool_cost_nanos == 0 {
            bands.remove(&band);
            if bands.is_empty() {
                self.0.remove(&model);
            }
        }
    }
}

/// Session totals ready for the payload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Sum over models.
    pub tokens: Tokens,
    /// USD: tool-supplied costs plus the priced part.
    pub cost: f64,
    /// Models that had tokens to price but no price, with those tokens (their cost is not in
    /// `cost`).
    pub unpriced_tokens: Vec<(String, Tokens)>,
}

/// Everything known about one session: its combined facts and usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Tool.
    pub source: SourceId,
    /// External id.
    pub session_id: String,
    /// Combined facts.
    pub facts: Facts,
    /// Combined usage.
    pub usage: Usage,
}

impl SessionState {
    /// An empty state.
    pub fn new(source: SourceId, session_id: impl Into<String>) -> SessionState {
        SessionState {
            source,
            session_id: session_id.into(),
            facts: Facts::default(),
            usage: Usage::default(),
        }
    }

    /// The key the session is stored under.
    pub fn key(&self) -> String {
        session_key(self.source, &self.session_id)
    }

    /// Token and cost totals.
    pub fn totals(&self, pricing: &Pricing) -> Totals {
        let mut totals = Totals::default();
        let mut tool_nanos: i64 = 0;
        for (model, bands) in &self.usage.0 {
            let mut unpriced = Tokens::default();
            for (band, bucket) in bands {
                totals.tokens.add(&bucket.tokens);
                tool_nanos = tool_nanos.saturating_add(bucket.tool_cost_nanos.max(0));
                if bucket.priced.is_zero() {
                    continue;
                }
                match pricing.cost(model, *band, &bucket.priced) {
                    Some(c) => totals.cost += c,
                    None => unpriced.add(&bucket.priced),
                }
            }
            if !unpriced.is_zero() {
                totals.unpriced_tokens.push((model.clone(), unpriced));
            }
        }
        totals.cost += tool_nanos as f64 / 1e9;
        // Round to a millionth of a dollar so float noise never makes a payload "changed".
        totals.cost = (totals.cost * 1e6).round() / 1e6;
        totals
    }

    /// The session payload with absolute totals. `createdAt` is included; the batch
    /// transport strips it.
    pub fn payload(&self, pricing: &Pricing) -> SessionPayload {
        let totals = self.totals(pricing);
        let f = &self.facts;
        let span = match (f.first_at, f.last_at) {
            (Some(first), Some(last)) if last > first => Some(last.abs_diff(first)),
            _ => None,
        };
        let duration_ms = match (span, f.duration_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let value = |s: &Option<Stamped>| s.as_ref().map(|s| s.value.clone());
        let project_path = value(&f.project_path);
        SessionPayload {
            external_id: self.session_id.clone(),
            title: value(&f.title_override).or_else(|| value(&f.title)),
            project_name: project_path.as_deref().and_then(project_name),
            project_path,
            model: value(&f.model),
            provider: value(&f.provider),
            source: self.source.as_str().to_string(),
            // The server ignores 0 (keeps the old value), so 0 is sent as absent.
            prompt_tokens: Some(totals.tokens.prompt()).filter(|t| *t > 0),
            completion_tokens: Some(totals.tokens.output).filter(|t| *t > 0),
            cost: Some(totals.cost).filter(|c| *c > 0.0),
            duration_ms,
            created_at: f.first_at,
        }
    }
}

/// Where the fold keeps unit contributions and session totals: memory for `export`, the
/// ledger (through a write overlay that becomes the unit's commit) for the daemon.
pub trait FoldStore {
    /// Every unit's facts for the session.
    fn unit_facts(&mut self, session: &str) -> Vec<(UnitId, Facts)>;
    /// Sets (or with `None` removes) one unit's facts for the session.
    fn set_unit_facts(&mut self, session: &str, unit: UnitId, facts: Option<Facts>);
    /// The row of one usage key (empty when none).
    fn usage_row(&mut self, session: &str, key: &str) -> UsageRow;
    /// Stores one usage row (an empty row removes it).
    fn set_usage_row(&mut self, session: &str, key: &str, row: UsageRow);
    /// Every usage key of the session.
    fn usage_keys(&mut self, session: &str) -> Vec<String>;
    /// The session's usage totals.
    fn usage(&mut self, session: &str) -> Usage;
    /// Stores the session's usage totals.
    fn set_usage(&mut self, session: &str, usage: Usage);
}

/// How a read of a unit relates to what the unit contributed before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The records continue the unit (new lines of an append-only file).
    Append,
    /// For each session the records name, they are the unit's whole contribution (a snapshot).
    ReplaceSessions,
    /// The unit is read again from its start (or is gone): everything it contributed to any
    /// session is removed first.
    Reset,
}

/// A session a fold step touched, with its messages from the step's records (a message seen
/// twice keeps its first position and its newest content).
#[derive(Debug, Clone)]
pub struct Touched {
    /// External id.
    pub session_id: String,
    /// Messages in order.
    pub messages: Vec<MessagePayload>,
}

/// Folds one read of a unit into `store`. `prior_sessions` are the sessions the unit fed
/// before (for [`Mode::Reset`]). Returns the touched sessions in order of first appearance
/// (sessions only retracted from come last, with no messages).
pub fn fold_unit(
    store: &mut dyn FoldStore,
    source: SourceId,
    unit: UnitId,
    prior_sessions: &[String],
    mode: Mode,
    records: Vec<Record>,
) -> Vec<Touched> {
    let grouped = group_by_session(records);
    let mut retract: Vec<String> = match mode {
        Mode::Append => Vec::new(),
        Mode::ReplaceSessions => grouped.iter().map(|(sid, _)| sid.clone()).collect(),
        Mode::Reset => {
            let mut all: Vec<String> = prior_sessions.to_vec();
            all.extend(grouped.iter().map(|(sid, _)| sid.clone()));
            all
        }
    };
    retract.sort();
    retract.dedup();
    for sid in &retract {
        retract_unit(store, &session_key(source, sid), unit);
    }
    let mut touched = Vec::new();
    for (sid, records) in grouped {
        let key = session_key(source, &sid);
        let mut facts = store
            .unit_facts(&key)
            .into_iter()
            .find(|(id, _)| *id == unit)
            .map(|(_, f)| f)
            .unwrap_or_default();
        let mut usage = store.usage(&key);
        let mut messages: Vec<MessagePayload> = Vec::new();
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for record in records {
            match record {
                Record::Session(f) => facts.absorb(&f),
                Record::Usage(f) => {
                    let mut row = store.usage_row(&key, &f.key);
                    let old = row.effective();
                    let entry = match row.0.get(&unit) {
                        Some(prev) => prev.merge(&f),
                        None => UsageEntry::from_fact(&f),
                    };
                    if row.0.get(&unit) == Some(&entry) {
                        continue;
                    }
                    row.0.insert(unit, entry);
                    usage.replace(old.as_ref(), row.effective().as_ref());
                    store.set_usage_row(&key, &f.key, row);
                }
                Record::Message(msg) => match index_of.get(&msg.external_id) {
                    Some(&i) => messages[i] = msg,
                    None => {
                        index_of.insert(msg.external_id.clone(), messages.len());
                        messages.push(msg);
                    }
                },
            }
        }
        store.set_usage(&key, usage);
        store.set_unit_facts(&key, unit, Some(facts));
        retract.retain(|r| *r != sid);
        touched.push(Touched {
            session_id: sid,
            messages,
        });
    }
    touched.extend(retract.into_iter().map(|session_id| Touched {
        session_id,
        messages: Vec::new(),
    }));
    touched
}

/// Removes everything `unit` contributed to the session.
fn retract_unit(store: &mut dyn FoldStore, key: &str, unit: UnitId) {
    let had_facts = store.unit_facts(key).iter().any(|(id, _)| *id == unit);
    if had_facts {
        store.set_unit_facts(key, unit, None);
    }
    let mut usage = store.usage(key);
    let mut changed = false;
    for usage_key in store.usage_keys(key) {
        let mut row = store.usage_row(key, &usage_key);
        if !row.0.contains_key(&unit) {
            continue;
        }
        let old = row.effective();
        row.0.remove(&unit);
        changed |= usage.replace(old.as_ref(), row.effective().as_ref());
        store.set_usage_row(key, &usage_key, row);
    }
    if changed {
        store.set_usage(key, usage);
    }
}

/// The session's state as the fold has it now.
pub fn session_state(
    store: &mut dyn FoldStore,
    source: SourceId,
    session_id: &str,
) -> SessionState {
    let key = session_key(source, session_id);
    SessionState {
        source,
        session_id: session_id.to_string(),
        facts: combine(&store.unit_facts(&key)),
        usage: store.usage(&key),
    }
}

/// Whether a session not yet on the server should be created now: once something gave it its
/// start time (the server fixes `createdAt` at insert), or when a message needs it. A session
/// known only from usage waits.
pub fn worth_creating(state: &SessionState, has_messages: bool) -> bool {
    state.facts.first_at.is_some() || has_messages
}

/// Whether any unit still contributes to the session.
pub fn has_units(store: &mut dyn FoldStore, source: SourceId, session_id: &str) -> bool {
    !store
        .unit_facts(&session_key(source, session_id))
        .is_empty()
}

/// Groups records by session id, keeping the order in which sessions and records first
/// appear. Records without a session id are dropped.
pub fn group_by_session(records: Vec<Record>) -> Vec<(String, Vec<Record>)> {
    // Almost every read holds the records of one session: then there is nothing to group.
    if let Some(first) = records.first().map(Record::session_id)
        && !first.is_empty()
        && records.iter().all(|r| r.session_id() == first)
    {
        return vec![(first.to_string(), records)];
    }
    let mut order: Vec<String> = Vec::new();
    let mut grouped: HashMap<String, Vec<Record>> = HashMap::new();
    for record in records {
        let sid = match &record {
            Record::Session(f) => &f.session_id,
            Record::Message(m) => &m.session_external_id,
            Record::Usage(u) => &u.session_id,
        };
        if sid.is_empty() {
            continue;
        }
        if !grouped.contains_key(sid) {
            order.push(sid.clone());
        }
        grouped.entry(sid.clone()).or_default().push(record);
    }
    order
        .into_iter()
        .map(|sid| {
            let records = grouped.remove(&sid).unwrap_or_default();
            (sid, records)
        })
        .collect()
}

/// A [`FoldStore`] in memory (`export`, tests).
#[derive(Debug, Default)]
pub struct MemoryStore {
    facts: HashMap<String, BTreeMap<UnitId, Facts>>,
    usage_rows: HashMap<String, BTreeMap<String, UsageRow>>,
    usage: HashMap<String, Usage>,
}

impl MemoryStore {
    /// Forgets a session (after `export` wrote it), so memory stays bounded.
    pub fn forget(&mut self, key: &str) {
        self.facts.remove(key);
        self.usage_rows.remove(key);
        self.usage.remove(key);
    }
}

impl FoldStore for MemoryStore {
    fn unit_facts(&mut self, session: &str) -> Vec<(UnitId, Facts)> {
        self.facts
            .get(session)
            .map(|m| m.iter().map(|(id, f)| (*id, f.clone())).collect())
            .unwrap_or_default()
    }
    fn set_unit_facts(&mut self, session: &str, unit: UnitId, facts: Option<Facts>) {
        let units = self.facts.entry(session.to_string()).or_default();
        match facts {
            Some(f) => {
                units.insert(unit, f);
            }
            None => {
                units.remove(&unit);
            }
        }
        if units.is_empty() {
            self.facts.remove(session);
        }
    }
    fn usage_row(&mut self, session: &str, key: &str) -> UsageRow {
        self.usage_rows
            .get(session)
            .and_then(|rows| rows.get(key))
            .cloned()
            .unwrap_or_default()
    }
    fn set_usage_row(&mut self, session: &str, key: &str, row: UsageRow) {
        let rows = self.usage_rows.entry(session.to_string()).or_default();
        if row.0.is_empty() {
            rows.remove(key);
        } else {
            rows.insert(key.to_string(), row);
        }
    }
    fn usage_keys(&mut self, session: &str) -> Vec<String> {
        self.usage_rows
            .get(session)
            .map(|rows| rows.keys().cloned().collect())
            .unwrap_or_default()
    }
    fn usage(&mut self, session: &str) -> Usage {
        self.usage.get(session).cloned().unwrap_or_default()
    }
    fn set_usage(&mut self, session: &str, usage: Usage) {
        self.usage.insert(session.to_string(), usage);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(key: &str, merge: UsageMerge, input: u64, output: u64) -> Record {
        Record::Usage(UsageFact {
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
        })
    }

    fn facts(title: &str, at: i64, secondary: bool) -> Record {
        Record::Session(SessionFacts {
            session_id: "s".into(),
            title: Some(title.into()),
            at_ms: Some(at),
            secondary,
            ..SessionFacts::default()
        })
    }

    #[test]
    fn records_are_grouped_by_session_in_first_seen_order() {
        let of = |sid: &str, title: &str| {
            Record::Session(SessionFacts {
                session_id: sid.into(),
                title: Some(title.into()),
                ..SessionFacts::default()
            })
        };
        let shape = |groups: Vec<(String, Vec<Record>)>| -> Vec<(String, Vec<String>)> {
            groups
                .into_iter()
                .map(|(sid, records)| {
                    let titles = records
                        .iter()
                        .map(|r| match r {
                            Record::Session(f) => f.title.clone().unwrap_or_default(),
                            _ => String::new(),
                        })
                        .collect();
                    (sid, titles)
                })
                .collect()
        };
        let own = |sid: &str, titles: &[&str]| {
            (
                sid.to_string(),
                titles.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            )
        };
        // One session (the common read): one group, every record in order.
        assert_eq!(
            shape(group_by_session(vec![of("a", "1"), of("a", "2")])),
            [own("a", &["1", "2"])]
        );
        // Mixed: sessions in the order first seen, records without a session dropped.
        assert_eq!(
            shape(group_by_session(vec![
                of("b", "1"),
                of("", "x"),
                of("a", "2"),
                of("b", "3")
            ])),
            [own("b", &["1", "3"]), own("a", &["2"])]
        );
        // Only records without a session: nothing.
        assert!(group_by_session(vec![of("", "x"), of("", "y")]).is_empty());
        assert!(group_by_session(Vec::new()).is_empty());
    }

    fn totals(store: &mut MemoryStore) -> (u64, u64) {
        let t = session_state(store, SourceId::ClaudeCode, "s").totals(&Pricing::empty());
        (t.tokens.input, t.tokens.output)
    }

    #[test]
    fn max_merge_keeps_the_largest_output_per_key() {
        let mut store = MemoryStore::default();
        let records = vec![
            usage("a", UsageMerge::Max, 10, 1),
            usage("a", UsageMerge::Max, 10, 50),
            usage("a", UsageMerge::Max, 10, 3),
            usage("b", UsageMerge::Max, 5, 5),
        ];
        fold_unit(
            &mut store,
            SourceId::ClaudeCode,
            1,
            &[],
            Mode::Append,
            records,
        );
        assert_eq!(totals(&mut store), (15, 55));
        let t = session_state(&mut store, SourceId::ClaudeCode, "s").totals(&Pricing::empty());
        assert_eq!(t.unpriced_tokens.len(), 1);
        assert_eq!(t.unpriced_tokens[0].0, "m");
    }

    #[test]
    fn replace_merge_swaps_the_old_value_out() {
        let mut store = MemoryStore::default();
        for (i, o) in [(0, 0), (100, 20), (90, 25)] {
            fold_unit(
                &mut store,
                SourceId::ClaudeCode,
                1,
                &[],
                Mode::Append,
                vec![usage("msg", UsageMerge::Replace, i, o)],
            );
        }
        assert_eq!(totals(&mut store), (90, 25));
    }

    #[test]
    fn a_copy_in_another_unit_counts_once_and_a_reset_retracts_only_its_unit() {
        let mut store = MemoryStore::default();
        let a = vec![
            usage("k1", UsageMerge::Max, 10, 10),
            usage("k2", UsageMerge::Max, 1, 1),
        ];
        let b = vec![
            usage("k1", UsageMerge::Max, 10, 10),
            usage("k3", UsageMerge::Max, 7, 7),
        ];
        fold_unit(&mut store, SourceId::ClaudeCode, 1, &[], Mode::Append, a);
        fold_unit(&mut store, SourceId::ClaudeCode, 2, &[], Mode::Append, b);
        assert_eq!(totals(&mut store), (18, 18));
        // Unit 2 rewritten: only k3 remains, and smaller.
        fold_unit(
            &mut store,
            SourceId::ClaudeCode,
            2,
            &["s".into()],
            Mode::Reset,
            vec![usage("k3", UsageMerge::Max, 2, 2)],
        );
        assert_eq!(totals(&mut store), (13, 13));
        // Unit 1 deleted.
        let touched = fold_unit(
            &mut store,
            SourceId::ClaudeCode,
            1,
            &["s".into()],
            Mode::Reset,
            vec![],
        );
        assert_eq!(touched.len(), 1);
        assert_eq!(totals(&mut store), (2, 2));
    }

    #[test]
    fn facts_combine_the_same_whatever_the_read_order() {
        let main = vec![
            facts("main prompt", 1_000, false),
            facts("later", 5_000, false),
        ];
        let sub = vec![facts("task prompt", 2_000, true), facts("x", 9_000, true)];
        let mut one = MemoryStore::default();
        fold_unit(
            &mut one,
            SourceId::ClaudeCode,
            7,
            &[],
            Mode::Append,
            main.clone(),
        );
        fold_unit(
            &mut one,
            SourceId::ClaudeCode,
            3,
            &[],
            Mode::Append,
            sub.clone(),
        );
        let mut two = MemoryStore::default();
        fold_unit(
            &mut two,
            SourceId::ClaudeCode,
            3,
            &[],
            Mode::Append,
            sub.clone(),
        );
        fold_unit(&mut two, SourceId::ClaudeCode, 7, &[], Mode::Append, main);
        let p1 = session_state(&mut one, SourceId::ClaudeCode, "s").payload(&Pricing::empty());
        let p2 = session_state(&mut two, SourceId::ClaudeCode, "s").payload(&Pricing::empty());
        assert_eq!(p1, p2);
        assert_eq!(p1.title.as_deref(), Some("main prompt"));
        assert_eq!(p1.created_at, Some(1_000));
        assert_eq!(p1.duration_ms, Some(8_000));
        // A subagent that ran before the first prompt (a warmup) does not move the start.
        let warmup = vec![facts("Warmup", 500, true)];
        fold_unit(&mut one, SourceId::ClaudeCode, 9, &[], Mode::Append, warmup);
        let p1 = session_state(&mut one, SourceId::ClaudeCode, "s").payload(&Pricing::empty());
        assert_eq!(p1.created_at, Some(1_000));
        // Only the subagent: its facts stand in.
        let mut three = MemoryStore::default();
        fold_unit(&mut three, SourceId::ClaudeCode, 3, &[], Mode::Append, sub);
        let p3 = session_state(&mut three, SourceId::ClaudeCode, "s").payload(&Pricing::empty());
        assert_eq!(p3.title.as_deref(), Some("task prompt"));
        assert_eq!(p3.created_at, Some(2_000));
    }

    #[test]
    fn tool_costs_add_and_retract_exactly() {
        let mut store = MemoryStore::default();
        let with_cost = |key: &str, cost: f64| {
            Record::Usage(UsageFact {
                session_id: "s".into(),
                key: key.into(),
                merge: UsageMerge::Replace,
                model: Some("m".into()),
                tokens: Tokens {
                    input: 1,
                    ..Tokens::default()
                },
                cost: Some(cost),
            })
        };
        let recs = vec![
            with_cost("a", 0.1),
            with_cost("b", 0.2),
            with_cost("c", 0.3),
        ];
        fold_unit(
            &mut store,
            SourceId::OpenCode,
            1,
            &[],
            Mode::ReplaceSessions,
            recs,
        );
        let cost = |store: &mut MemoryStore| {
            session_state(store, SourceId::OpenCode, "s")
                .totals(&Pricing::empty())
                .cost
        };
        assert_eq!(cost(&mut store), 0.6);
        // A revert removes "c".
        let recs = vec![with_cost("a", 0.1), with_cost("b", 0.2)];
        fold_unit(
            &mut store,
            SourceId::OpenCode,
            1,
            &[],
            Mode::ReplaceSessions,
            recs,
        );
        assert_eq!(cost(&mut store), 0.3);
    }
}
