//! The fold's session states plus what the ledger says the server holds become per-session
//! work: the session create (first time only, with `createdAt`), the new or changed messages
//! in order, and the final totals — everything redacted and capped exactly as it will be
//! sent, so the hashes stored on acknowledgement describe what the server really holds.

use crate::fold::{self, FoldStore, SessionState, Touched, session_key};
use crate::ledger::{Ledger, LedgerError, SessionRecord};
use crate::model::{MessagePayload, SessionPayload, SourceId, json_hash};
use crate::pricing::Pricing;
use crate::redact::{self, Redactor};

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
    now_ms: i64,
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
        let (create, update) = match &record.acked {
            // Nothing feeds the session any more, or only a file went away: what the server
            // holds stays as it is.
            _ if !contributors || quiet => (None, None),
            // Only usage so far (e.g. a subagent file whose lines carry no time): the session
            // is created once something gives it its start time, or a message needs it.
            None if !fold::worth_creating(&record.state, !planned.is_empty()) => (None, None),
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
    Ok(out)
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
