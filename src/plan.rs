//! The fold's session states plus what the ledger says the server holds become per-session
//! work: the session create (first time only, with `createdAt`), the new or changed messages
//! in order, and the final totals — everything redacted and capped exactly as it will be
//! sent, so the hashes stored on acknowledgement describe what the server really holds.

use crate::fold::{self, FoldStore, SessionState, Touched, session_key};
use crate::ledger::{Ledger, LedgerError, SessionRecord};
use crate::model::{MessagePayload, SessionPayload, SourceId, json_hash};
use crate::pricing::Pricing;
use crate::redact::{self, Redactor};

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
    /// What identifies these settings for "has the shaping changed?" (refused records are
    /// retried when it has).
    pub fn fingerprint(&self) -> String {
        format!(
            "{:x}",
            crate::model::content_hash(
                format!(
                    "{:?}/{}/{}",
                    self.redactor, self.max_part_bytes, self.max_body_bytes
                )
                .as_bytes()
            )
        )
    }

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
    /// The server has the message already (this is an update): the `createdAt` it stored,
    /// from which its 5 s window for updates runs.
    pub server_created_ms: Option<i64>,
    /// The payload before shaping, kept in case the server refuses it (a refused record is
    /// shaped again and retried when the settings change).
    pub raw: Option<MessagePayload>,
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

/// Everything one read of a unit turns into.
#[derive(Debug, Default)]
pub struct Plan {
    /// Per session, in order of first appearance.
    pub works: Vec<SessionWork>,
    /// Messages skipped because another session already owns their id (replays).
    pub replayed_messages: u64,
}

/// Builds the work for the sessions a fold step touched: their state is read back from the
/// fold's `store` (so it includes the step), their messages are diffed against what the
/// ledger says the server holds. With `quiet` (the step only retracted a unit whose file is
/// gone) nothing is sent: a deleted transcript — Claude Code removes them after 30 days —
/// takes nothing away from what the dashboard shows.
pub fn plan(
    ledger: &Ledger,
    store: &mut dyn FoldStore,
    source: SourceId,
    touched: Vec<Touched>,
    shaping: &Shaping,
    quiet: bool,
) -> Result<Plan, LedgerError> {
    let mut out = Plan::default();
    for Touched {
        session_id,
        messages,
    } in touched
    {
        let key = session_key(source, &session_id);
        let mut record = ledger
            .session(&key)?
            .unwrap_or_else(|| SessionRecord::new(SessionState::new(source, &session_id)));
        record.state = fold::session_state(store, source, &session_id);
        let totals = record.state.totals(&shaping.pricing);
        record.unpriced_models = totals
            .unpriced_tokens
            .iter()
            .map(|(m, _)| m.clone())
            .collect();
        let contributors = fold::has_units(store, source, &session_id);

        let mut planned = Vec::new();
        for msg in messages {
            let raw = msg.clone();
            let shaped = shaping.message(msg);
            let hash = json_hash(&shaped);
            let prev = ledger.message(&shaped.external_id)?;
            match &prev {
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
                server_created_ms: prev.map(|p| p.created_ms),
                raw: Some(raw),
            });
        }

        let payload = shaping.session(&record.state);
        let (create, update) = match &record.acked {
            // Nothing feeds the session any more, or only a file went away: what the server
            // holds stays as it is.
            _ if !contributors || quiet => (None, None),
            // Only usage so far (e.g. a subagent file whose lines carry no time): the session
            // is created once something gives it its start time, or a message needs it.
            None if !fold::worth_creating(&record.state, !planned.is_empty()) => (None, None),
            None => (Some(payload), None),
            Some(prev) if *prev != payload => (None, Some(payload)),
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
    Ok(out)
}

/// The quarantine tree key for a record.
pub fn quarantine_key(kind: &str, id: &str) -> String {
    format!("{kind}\0{id}")
}
