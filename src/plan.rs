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
    /// The payload before shaping when shaping changed it (`None`: `payload` is the original),
    /// kept in case the server refuses it (a refused record is shaped again and retried when
    /// the settings change).
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
            // Kept only when shaping changed something (rare): otherwise the payload is the
            // original, and a backfill's steps would hold every message twice.
            let raw = (raw != shaped).then_some(raw);
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
                raw,
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
            // Only a write that changes what the server holds is sent: one that drops the
            // tokens to 0 or leaves a field out changes nothing there.
            Some(prev) if held_after_write(Some(prev), &payload) != *prev => (None, Some(payload)),
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

/// What the server holds after `sent` is written over `held` (`None`: nothing known, as after
/// an insert), by its update rules (`spec/opensync-api.md` §3): token totals are written only
/// when above 0, the other fields only when present, and `createdAt` never changes after
/// insert. The ledger records this, not `sent`, as what the server holds, so that the next
/// write's fate (changes something, or may fall in the server's 10 s window) is judged against
/// what is really there — a session whose tokens went to 0 and came back changes nothing.
pub fn held_after_write(held: Option<&SessionPayload>, sent: &SessionPayload) -> SessionPayload {
    let Some(held) = held else {
        return sent.clone();
    };
    let tokens = |new: Option<u64>, old: Option<u64>| new.filter(|t| *t > 0).or(old);
    let field = |new: &Option<String>, old: &Option<String>| new.clone().or_else(|| old.clone());
    SessionPayload {
        external_id: sent.external_id.clone(),
        title: field(&sent.title, &held.title),
        project_path: field(&sent.project_path, &held.project_path),
        project_name: field(&sent.project_name, &held.project_name),
        model: field(&sent.model, &held.model),
        provider: field(&sent.provider, &held.provider),
        source: sent.source.clone(),
        prompt_tokens: tokens(sent.prompt_tokens, held.prompt_tokens),
        completion_tokens: tokens(sent.completion_tokens, held.completion_tokens),
        cost: sent.cost.or(held.cost),
        duration_ms: sent.duration_ms.or(held.duration_ms),
        created_at: held.created_at.or(sent.created_at),
    }
}

/// The quarantine tree key for a record.
pub fn quarantine_key(kind: &str, id: &str) -> String {
    format!("{kind}\0{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(prompt: Option<u64>, title: Option<&str>, duration: Option<u64>) -> SessionPayload {
        SessionPayload {
            external_id: "s".into(),
            source: "opencode".into(),
            title: title.map(str::to_string),
            prompt_tokens: prompt,
            completion_tokens: prompt.map(|p| p / 10),
            duration_ms: duration,
            created_at: Some(1_000),
            ..SessionPayload::default()
        }
    }

    /// The server's update rules, written out from spec §3: 0 or absent tokens keep the old
    /// values, absent fields keep theirs, present ones overwrite, createdAt stays.
    #[test]
    fn the_server_keeps_what_a_write_leaves_out_or_zeroes() {
        let held = payload(Some(500), Some("first"), Some(10));
        let mut sent = payload(Some(0), None, Some(20));
        sent.created_at = Some(9_999);
        let after = held_after_write(Some(&held), &sent);
        assert_eq!(after.prompt_tokens, Some(500));
        assert_eq!(after.completion_tokens, Some(50));
        assert_eq!(after.title.as_deref(), Some("first"));
        assert_eq!(after.duration_ms, Some(20));
        assert_eq!(after.created_at, Some(1_000));
        let sent = payload(Some(700), Some("second"), None);
        let after = held_after_write(Some(&held), &sent);
        assert_eq!(after.prompt_tokens, Some(700));
        assert_eq!(after.title.as_deref(), Some("second"));
        assert_eq!(after.duration_ms, Some(10));
        // Nothing known: the write is what is held.
        assert_eq!(held_after_write(None, &sent), sent);
    }
}
