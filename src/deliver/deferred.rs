//! The writes held back for the server's dedup windows: when the next falls due, and sending
//! those that are due, each a message or a session update confirmed against what the server
//! holds.

use super::{MESSAGE_WINDOW_MS, SESSION_WINDOW_MS, WINDOW_MARGIN_MS};
use crate::engine::{Engine, EngineError, Outcome, Pause};
use crate::ledger::{Commit, Deferred};
use crate::model::MessagePayload;
use crate::plan::{self, PlannedMessage};
use crate::push::Client;

impl Engine {
    /// Epoch ms at which the next deferred write is due, if any.
    pub fn next_deferred_ms(&self) -> Result<Option<i64>, EngineError> {
        Ok(self.deferred_due_range()?.map(|(first, _)| first))
    }

    /// Epoch ms at which the last deferred write is due, if any (a one-shot `sync` waits for
    /// it and sends them all).
    pub fn last_deferred_ms(&self) -> Result<Option<i64>, EngineError> {
        Ok(self.deferred_due_range()?.map(|(_, last)| last))
    }

    /// When the first and the last deferred write are due, if any is deferred.
    fn deferred_due_range(&self) -> Result<Option<(i64, i64)>, EngineError> {
        let mut range: Option<(i64, i64)> = None;
        for item in self.ledger.deferred() {
            let (_, d) = item?;
            range = Some(range.map_or((d.due_ms, d.due_ms), |(first, last)| {
                (first.min(d.due_ms), last.max(d.due_ms))
            }));
        }
        Ok(range)
    }

    /// Sends the deferred writes whose window has passed (one commit each); those whose
    /// window is still open (the session was written again meanwhile) are rescheduled.
    pub async fn flush_deferred(&self) -> Result<Outcome, EngineError> {
        let Some(client) = self.client() else {
            return Ok(Outcome::Paused(Pause::Auth("not logged in".into())));
        };
        let now = self.now();
        let mut due: Vec<String> = Vec::new();
        for item in self.ledger.deferred() {
            let (key, d) = item?;
            if d.due_ms <= now {
                due.push(key);
            }
        }
        for key in due {
            let Some(entry) = self.ledger.deferred_entry(&key)? else {
                continue;
            };
            let _guard = self.session_locks.lock(&entry.session).await;
            // Read again under the lock: a push may have sent or replaced it meanwhile.
            let Some(entry) = self.ledger.deferred_entry(&key)? else {
                continue;
            };
            let mut commit = Commit::default();
            let sent = match &entry.message {
                Some((payload, hash)) => {
                    self.flush_message(&client, &key, &entry, payload, *hash, &mut commit)
                        .await
                }
                None => self.flush_session(&client, &key, &entry, &mut commit).await,
            };
            if let Err(outcome) = sent {
                return Ok(outcome);
            }
            self.ledger.commit(&commit)?;
        }
        Ok(Outcome::Done)
    }

    pub(super) async fn flush_message(
        &self,
        client: &Client,
        key: &str,
        entry: &Deferred,
        payload: &MessagePayload,
        hash: u128,
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        let prev = self.ledger.message(&payload.external_id).ok().flatten();
        if !entry.confirm && prev.as_ref().is_some_and(|p| p.hash == hash) {
            commit.deferred.push((key.to_string(), None));
            return Ok(());
        }
        if let Some(p) = &prev {
            let open_until = p.created_ms + MESSAGE_WINDOW_MS + WINDOW_MARGIN_MS;
            if self.now() < open_until {
                let mut later = entry.clone();
                later.due_ms = open_until;
                commit.deferred.push((key.to_string(), Some(later)));
                return Ok(());
            }
        }
        let planned = PlannedMessage {
            payload: payload.clone(),
            hash,
            server_created_ms: prev.as_ref().map(|p| p.created_ms),
            raw: None,
        };
        let acked = self
            .send_message(client, &planned, &entry.session, commit)
            .await?;
        commit.deferred.push((key.to_string(), None));
        if acked && let Ok(Some(mut rec)) = self.ledger.session(&entry.session) {
            rec.last_write_ms = self.now();
            commit.sessions.push((entry.session.clone(), rec));
        }
        Ok(())
    }

    pub(super) async fn flush_session(
        &self,
        client: &Client,
        key: &str,
        entry: &Deferred,
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        let Ok(Some(mut rec)) = self.ledger.session(&entry.session) else {
            commit.deferred.push((key.to_string(), None));
            return Ok(());
        };
        let set_back = rec.last_write_ms > self.now();
        let last = self.last_write(&mut rec);
        if self.now() - last < SESSION_WINDOW_MS {
            self.defer_session(&entry.session, last, entry.confirm, commit);
            if set_back {
                commit.sessions.push((entry.session.clone(), rec));
            }
            return Ok(());
        }
        let payload = self.shaping().session(&rec.state);
        commit.deferred.push((key.to_string(), None));
        if self
            .send_session(client, &payload, &entry.session, commit)
            .await?
        {
            rec.acked = Some(plan::held_after_write(rec.acked.as_ref(), &payload));
            rec.last_write_ms = self.now();
            commit.sessions.push((entry.session.clone(), rec));
        }
        Ok(())
    }
}
