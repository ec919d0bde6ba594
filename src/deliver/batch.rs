//! The batch transport: `/sync/batch` only for the messages of sessions the server does not
//! have (it wipes the parts of existing messages and drops `createdAt`), which needs knowing
//! which sessions the server has (`reconcile`).

use std::collections::{HashMap, HashSet};

use super::Sent;
use crate::engine::{Engine, EngineError, Outcome};
use crate::ledger::{Commit, MessageRecord};
use crate::model::MessagePayload;
use crate::plan::{PlannedMessage, SessionWork};
use crate::push::Client;

impl Engine {
    /// Remembers that the server has this session now (for the batch transport's "is it new
    /// to the server?" test).
    pub(super) fn note_server_session(&self, session_id: &str) {
        if let Some(known) = self
            .server_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            known.insert(session_id.to_string());
        }
    }

    /// The sessions the server has, fetched once per engine (`None` when the server cannot
    /// say — a large account's list can exceed its read limits — and then nothing is batched).
    pub(super) async fn server_sessions(&self, client: &Client) -> Option<HashSet<String>> {
        if let Some(known) = self
            .server_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Some(known);
        }
        match client.list_sessions().await {
            Ok(ids) => {
                let known: HashSet<String> = ids.into_iter().collect();
                *self
                    .server_sessions
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(known.clone());
                Some(known)
            }
            Err(err) => {
                tracing::warn!(%err, "the server did not list its sessions; sending record by record");
                None
            }
        }
    }

    /// After the ledger was lost or set aside: learn which sessions the server already holds
    /// (`/sync/sessions/list`) instead of assuming it is empty. Those are then never sent
    /// through `/sync/batch` (which would wipe their messages' parts); everything is re-sent
    /// record by record, as updates of the same ids. Returns how many the server holds.
    pub async fn reconcile(&self) -> Result<Option<usize>, EngineError> {
        let Some(client) = self.client() else {
            return Ok(None);
        };
        let known = self.server_sessions(&client).await;
        if let Some(known) = &known {
            tracing::warn!(
                sessions = known.len(),
                "the ledger was started over: the server already holds these sessions; they \
                 are re-sent record by record as updates (nothing is duplicated)"
            );
            self.ledger.set_meta_u64("reconciled", 1)?;
        }
        Ok(known.map(|k| k.len()))
    }

    /// The batch transport, for what is certainly new to the server only: the messages of a
    /// session that `/sync/sessions/list` did not name when this process asked (so no message of
    /// it can exist there) and that this read creates. The session itself is created first by
    /// `/sync/session`, keeping its `createdAt`; the batched messages get the server's time as
    /// theirs (the batch route cannot carry one — README). Everything else, and whatever a
    /// batch did not take, goes record by record.
    pub(super) async fn deliver_batches(
        &self,
        client: &Client,
        works: &mut [SessionWork],
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        const MAX_MESSAGES: usize = 200;
        let candidates: Vec<usize> = works
            .iter()
            .enumerate()
            .filter(|(_, w)| w.create.is_some() && w.messages.len() > 1)
            .map(|(i, _)| i)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let Some(known) = self.server_sessions(client).await else {
            return Ok(());
        };
        let budget = self.shaping().max_body_bytes / 2;
        for i in candidates {
            let work = &mut works[i];
            if known.contains(&work.record.state.session_id) {
                continue;
            }
            let Some(create) = work.create.take() else {
                continue;
            };
            if !self
                .send_session(client, &create, &work.key, commit)
                .await?
            {
                continue;
            }
            work.record.acked = Some(create);
            work.record.last_write_ms = self.now();
            self.note_server_session(&work.record.state.session_id);
            let (new, known_msgs): (Vec<PlannedMessage>, Vec<PlannedMessage>) =
                std::mem::take(&mut work.messages)
                    .into_iter()
                    .partition(|m| m.server_created_ms.is_none());
            work.messages = known_msgs;
            let mut rest = new.into_iter().peekable();
            while rest.peek().is_some() {
                let mut chunk: Vec<PlannedMessage> = Vec::new();
                let mut size = 0;
                while let Some(m) = rest.peek() {
                    let len = serde_json::to_vec(&m.payload).map_or(0, |v| v.len());
                    if !chunk.is_empty() && (chunk.len() >= MAX_MESSAGES || size + len > budget) {
                        break;
                    }
                    size += len;
                    chunk.extend(rest.next());
                }
                let payloads: Vec<MessagePayload> =
                    chunk.iter().map(|m| m.payload.clone()).collect();
                let answer = std::sync::Mutex::new(None);
                let sent = self
                    .send(|| async {
                        let outcome = client.batch(&[], &payloads).await?;
                        *answer.lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
                        Ok(())
                    })
                    .await?;
                let outcome = match (sent, answer.into_inner().unwrap_or_else(|p| p.into_inner())) {
                    (Sent::Acked, Some(outcome)) => outcome,
                    // Refused as a whole: every item goes the per-record way, which tells them
                    // apart.
                    _ => crate::push::BatchOutcome {
                        messages_rejected: Some("batch refused".into()),
                        ..Default::default()
                    },
                };
                let failed: HashMap<&str, &str> = outcome
                    .failed_messages
                    .iter()
                    .map(|(id, why)| (id.as_str(), why.as_str()))
                    .collect();
                let now = self.now();
                for m in chunk {
                    if outcome.messages_rejected.is_some()
                        || failed.contains_key(m.payload.external_id.as_str())
                    {
                        work.messages.push(m);
                        continue;
                    }
                    work.record.messages += 1;
                    work.record.last_write_ms = now;
                    self.count(|c| c.messages_sent += 1);
                    commit.messages.push((
                        m.payload.external_id.clone(),
                        MessageRecord {
                            session: work.key.clone(),
                            hash: m.hash,
                            // The batch route stamps messages with the server's time.
                            created_ms: now,
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}
