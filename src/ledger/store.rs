//! The fold's store over the ledger ([`LedgerStore`]): an overlay whose reads see pending
//! writes and whose writes join the unit's commit.

use std::collections::HashMap;

use super::records::Commit;
use super::{Ledger, LedgerError, usage_key};
use crate::fold::{Facts, FoldStore, UnitId, Usage, UsageRow};

/// The fold's store over the ledger, with an in-memory overlay: reads see pending writes;
/// the writes become part of the unit's commit (so the fold's state moves only with an
/// acknowledgement, like everything else in the ledger).
pub struct LedgerStore<'a> {
    ledger: &'a Ledger,
    facts: HashMap<String, std::collections::BTreeMap<UnitId, Option<Facts>>>,
    rows: HashMap<String, Option<UsageRow>>,
    totals: HashMap<String, Usage>,
    /// A read failed: the fold saw an incomplete state, so nothing of it may be committed.
    failed: Option<LedgerError>,
}

impl<'a> LedgerStore<'a> {
    /// An empty overlay.
    pub fn new(ledger: &'a Ledger) -> LedgerStore<'a> {
        LedgerStore {
            ledger,
            facts: HashMap::new(),
            rows: HashMap::new(),
            totals: HashMap::new(),
            failed: None,
        }
    }

    fn note<T: Default>(&mut self, result: Result<T, LedgerError>) -> T {
        match result {
            Ok(v) => v,
            Err(err) => {
                self.failed.get_or_insert(err);
                T::default()
            }
        }
    }

    /// Moves the pending writes into `commit`; fails if any read failed.
    pub fn into_commit(self, commit: &mut Commit) -> Result<(), LedgerError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        for (session, units) in self.facts {
            for (unit, facts) in units {
                commit.facts.push((facts_key(&session, unit), facts));
            }
        }
        commit.usage.extend(self.rows);
        commit.totals.extend(self.totals);
        Ok(())
    }
}

impl FoldStore for LedgerStore<'_> {
    fn unit_facts(&mut self, session: &str) -> Vec<(UnitId, Facts)> {
        let stored = self.ledger.unit_facts(session);
        let mut all: std::collections::BTreeMap<UnitId, Facts> =
            self.note(stored).into_iter().collect();
        if let Some(pending) = self.facts.get(session) {
            for (unit, facts) in pending {
                match facts {
                    Some(f) => {
                        all.insert(*unit, f.clone());
                    }
                    None => {
                        all.remove(unit);
                    }
                }
            }
        }
        all.into_iter().collect()
    }

    fn set_unit_facts(&mut self, session: &str, unit: UnitId, facts: Option<Facts>) {
        self.facts
            .entry(session.to_string())
            .or_default()
            .insert(unit, facts);
    }

    fn usage_row(&mut self, session: &str, key: &str) -> UsageRow {
        let k = usage_key(session, key);
        if let Some(row) = self.rows.get(&k) {
            return row.clone().unwrap_or_default();
        }
        let stored = self.ledger.usage_row(session, key);
        self.note(stored).unwrap_or_default()
    }

    fn set_usage_row(&mut self, session: &str, key: &str, row: UsageRow) {
        let value = (!row.0.is_empty()).then_some(row);
        self.rows.insert(usage_key(session, key), value);
    }

    fn usage_keys(&mut self, session: &str) -> Vec<String> {
        let stored = self.ledger.usage_keys(session);
        let mut keys: std::collections::BTreeSet<String> = self.note(stored).into_iter().collect();
        let prefix = format!("{session}\0");
        for (k, row) in &self.rows {
            if let Some(key) = k.strip_prefix(&prefix) {
                if row.is_some() {
                    keys.insert(key.to_string());
                } else {
                    keys.remove(key);
                }
            }
        }
        keys.into_iter().collect()
    }

    fn usage(&mut self, session: &str) -> Usage {
        if let Some(u) = self.totals.get(session) {
            return u.clone();
        }
        let stored = self.ledger.usage_totals(session);
        self.note(stored).unwrap_or_default()
    }

    fn set_usage(&mut self, session: &str, usage: Usage) {
        self.totals.insert(session.to_string(), usage);
    }
}

/// The `facts` tree key.
fn facts_key(session: &str, unit: UnitId) -> String {
    format!("{session}\0{unit:016x}")
}
