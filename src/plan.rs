//! Records plus ledger state become per-session work: the session create (first time only,
//! with `createdAt`), the new or changed messages in order, and the final totals — everything
//! redacted and capped exactly as it will be sent, so the hashes stored on acknowledgement
//! describe what the server really holds.

use std::collections::HashMap;

use crate::aggregate::{SessionState, UsageEntry, UsageKeys, session_key};
use crate::ledger::{Ledger, LedgerError, LedgerUsage, SessionRecord};
use crate::model::{MessagePayload, SessionPayload, SourceId, json_hash};
use crate::pricing::Pricing;
use crate::redact::{self, Redactor};
use crate::sources::Record;

/// The server ignores a session update within this long of the session's last write when
/// title, model, path and tokens are unchanged (its dedup window).
pub const SESSION_WINDOW_MS: i64 = 10_000;

/// What shapes payloads before they are sent.
#[derive(Debug, Clone)]
pub struct Shaping {
    /// Model prices.
    pub pricing: Pricing,
    /// Secret redaction.
    pub redactor: Redactor,
    /// Cap per text field / part.
    pub max_part_bytes: usize,
    /// Cap per request body.
    pub max_body_bytes: usize,
}

impl Shaping {
    /// Redacts and caps a message exactly as it will be sent.
    pub fn message(&self, mut msg: MessagePayload) -> MessagePayload {
        redact::sanitize_message(&mut msg, &self.redactor, self.max_part_bytes);
        msg
    }

    /// The session payload as it will be sent.
    pub fn session(&self, state: &SessionState) -> SessionPayload {
        let mut payload = state.payload(&self.pricing);
        redact::sanitize_session(&mut payload, &self.redactor);
        payload
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct PlannedMessage {
    /// The payload, shaped.
    pub payload: MessagePayload,
    /// Its hash (stored on acknowledgement).
    pub hash: u128,
}

/// The work for one session, in send order: `create`, `messages`, `update`.
#[derive(Debug, Clone)]
pub struct SessionWork {
    /// Ledger key of the session.
    pub key: String,
    /// Send first: the session is not on the server yet (carries `createdAt`).
    pub create: Option<SessionPayload>,
    /// New or changed messages, in the order the tool wrote them.
    pub messages: Vec<PlannedMessage>,
    /// Send last: the totals changed (or a settle re-send is due).
    pub update: Option<SessionPayload>,
    /// The session record to commit once everything above is acknowledged.
    pub record: SessionRecord,
}

impl SessionWork {
    /// Number of requests this work makes (per-record transport).
    pub fn requests(&self) -> usize {
        usize::from(self.create.is_some())
            + self.messages.len()
            + usize::from(self.update.is_some())
    }
}

/// Everything one unit's records turn into.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per session, in order of first appearance.
    pub works: Vec<SessionWork>,
    /// Usage entries to commit.
    pub usage: Vec<(String, UsageEntry)>,
    /// Messages skipped because another session already owns their id (replays).
    pub replayed_messages: u64,
}

/// Builds the plan for `records` read from a unit of `source`.
pub fn plan(
    ledger: &Ledger,
    source: SourceId,
    records: Vec<Record>,
    shaping: &Shaping,
    now_ms: i64,
) -> Result<Plan, LedgerError> {
    let mut usage = LedgerUsage::new(ledger);
    let mut out = Plan::default();
    for (sid, records) in group_by_session(records) {
        let key = session_key(source, &sid);
        let mut record = match ledger.session(&key)? {
            Some(r) => r,
            None => SessionRecord {
                state: SessionState::new(source, sid.clone()),
                acked: None,
                last_write_ms: 0,
                settle_due: false,
                messages: 0,
                unpriced_models: Vec::new(),
            },
        };
        let messages = fold_session(&mut record.state, records, &mut usage);

        let mut planned = Vec::new();
        for msg in messages {
            let shaped = shaping.message(msg);
            let hash = json_hash(&shaped);
            match ledger.message(&shaped.external_id)? {
                Some(prev) if prev.session != key => {
                    // The id belongs to another session (a resumed transcript replaying old
                    // lines): its own session already carries it.
                    out.replayed_messages += 1;
                    continue;
                }
                Some(prev) if prev.hash == hash => continue,
                _ => {}
            }
            if let Some(q) = ledger.quarantined(&quarantine_key("message", &shaped.external_id))?
                && q.hash == hash
            {
                continue;
            }
            planned.push(PlannedMessage {
                payload: shaped,
                hash,
            });
        }

        let payload = shaping.session(&record.state);
        record.unpriced_models = record.state.totals(&shaping.pricing).unpriced_models;
        let (create, update) = match &record.acked {
            None => (Some(payload), None),
            Some(prev) if *prev != payload => (None, Some(payload)),
            Some(prev)
                if record.settle_due && now_ms - record.last_write_ms >= SESSION_WINDOW_MS =>
            {
                (None, Some(prev.clone()))
            }
            Some(_) => (None, None),
        };
        out.works.push(SessionWork {
            key,
            create,
            messages: planned,
            update,
            record,
        });
    }
    out.usage = usage.into_writes();
    Ok(out)
}

/// Groups records by session id, keeping the order in which sessions and records first appear.
pub fn group_by_session(records: Vec<Record>) -> Vec<(String, Vec<Record>)> {
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

/// Folds one session's records into its state and returns its messages in order: a message
/// seen twice (OpenCode rewrites) keeps its first position and its newest content.
pub fn fold_session(
    state: &mut SessionState,
    records: Vec<Record>,
    usage: &mut dyn UsageKeys,
) -> Vec<MessagePayload> {
    let mut messages: Vec<MessagePayload> = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    for rec in records {
        match rec {
            Record::Session(facts) => state.apply_facts(&facts),
            Record::Usage(fact) => state.apply_usage(&fact, usage),
            Record::Message(msg) => match index_of.get(&msg.external_id) {
                Some(&i) => messages[i] = msg,
                None => {
                    index_of.insert(msg.external_id.clone(), messages.len());
                    messages.push(msg);
                }
            },
        }
    }
    messages
}

/// Whether the server would silently skip `next` as a duplicate of `prev` when sent within its
/// window: title, model and project path equal and every token field 0/absent or equal.
pub fn server_would_skip(prev: &SessionPayload, next: &SessionPayload) -> bool {
    let tokens_same = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0) == 0 || a == b;
    prev != next
        && prev.title == next.title
        && prev.model == next.model
        && prev.project_path == next.project_path
        && tokens_same(prev.prompt_tokens, next.prompt_tokens)
        && tokens_same(prev.completion_tokens, next.completion_tokens)
}

/// The quarantine tree key for a record.
pub fn quarantine_key(kind: &str, id: &str) -> String {
    format!("{kind}\0{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_prediction_matches_the_server_rule() {
        let base = SessionPayload {
            external_id: "s".into(),
            title: Some("t".into()),
            prompt_tokens: Some(10),
            source: "codex-cli".into(),
            ..SessionPayload::default()
        };
        let cost_only = SessionPayload {
            cost: Some(1.0),
            ..base.clone()
        };
        assert!(server_would_skip(&base, &cost_only));
        let more_tokens = SessionPayload {
            prompt_tokens: Some(11),
            ..base.clone()
        };
        assert!(!server_would_skip(&base, &more_tokens));
        assert!(
            !server_would_skip(&base, &base),
            "identical payloads need no re-send"
        );
    }
}
