//! Delivering planned work to the server under its rules: per session the create (with
//! `createdAt`), the messages in order, the totals — each write sent only when the server would
//! apply it. The server silently skips a message update within 5 s of the message's
//! `createdAt`, and a session write that changes none of title, model, project path or tokens
//! within 10 s of the session's last write; such a write is not sent (or not counted as
//! applied) now but kept as a [`Deferred`] entry in the ledger and sent once the window has
//! passed ([`Engine::flush_deferred`]), surviving restarts and crashes.
//!
//! Also here: the optional batch transport (only for messages of sessions the server does not
//! have, since `/sync/batch` wipes the parts of existing messages and drops `createdAt`), the
//!
//! This file holds delivering one read's work (create, messages, totals, each write deferred
//! when the server would skip it) and the retry and quarantine around every request; one
//! submodule a job: `batch` the batch transport and learning which sessions the server has,
//! `deferred` sending the deferred writes once due, `resend` re-sending after the prices or
//! the shaping settings changed.

mod batch;
mod deferred;
mod resend;

use crate::engine::{Engine, Outcome, Pause};
use crate::ledger::{
    Commit, Deferred, MessageRecord, Quarantined, SessionRecord, deferred_message_key,
    deferred_session_key,
};
use crate::model::{MessagePayload, SessionPayload, json_hash};
use crate::plan::{self, PlannedMessage, SessionWork};
use crate::push::{Backoff, Client, ErrorClass, PushError, RetryEnd};

/// The server skips an update of a message this soon after the message's stored `createdAt`.
pub const MESSAGE_WINDOW_MS: i64 = 5_000;
/// The server skips a session write that changes none of title, model, project path and
/// tokens this soon after the session's last write (`updatedAt`).
pub const SESSION_WINDOW_MS: i64 = 10_000;
/// Added to every window: the client's and the server's clocks are not the same clock.
pub const WINDOW_MARGIN_MS: i64 = 1_000;

/// Whether the server may skip `next` when it holds `held` and the write falls in its window:
/// title, model and project path equal and every token field 0/absent or equal. When what the
/// server holds is unknown (`None`), it may. With `partly_unknown` (the row was created over
/// one the server may already have held), a field `held` has no value for may hold an older
/// one there, so it may be equal too.
pub fn session_write_may_be_skipped(
    held: Option<&SessionPayload>,
    next: &SessionPayload,
    partly_unknown: bool,
) -> bool {
    let Some(prev) = held else {
        return true;
    };
    let text_same =
        |a: &Option<String>, b: &Option<String>| a == b || (partly_unknown && a.is_none());
    let tokens_same = |a: Option<u64>, b: Option<u64>| {
        b.unwrap_or(0) == 0 || a == b || (partly_unknown && a.unwrap_or(0) == 0)
    };
    text_same(&prev.title, &next.title)
        && text_same(&prev.model, &next.model)
        && text_same(&prev.project_path, &next.project_path)
        && tokens_same(prev.prompt_tokens, next.prompt_tokens)
        && tokens_same(prev.completion_tokens, next.completion_tokens)
}

/// How one request ended.
pub(crate) enum Sent {
    Acked,
    Rejected(String),
}

impl Engine {
    /// Sends the works of one read, in order; fills `commit` with what was acknowledged or
    /// deferred. `Err` when pushing must pause or stop (nothing of the read is then committed).
    pub(crate) async fn deliver(
        &self,
        client: &Client,
        mut works: Vec<SessionWork>,
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        if self.batch {
            self.deliver_batches(client, &mut works, commit).await?;
        }
        for work in works {
            self.deliver_work(client, work, commit).await?;
        }
        Ok(())
    }

    /// The server's last write to the session, as far as this process can know: writes made
    /// before it started (another process, one killed mid-push) are unknown, so they are
    /// assumed to be as late as the start. One recorded in the future (the clock was set
    /// back since) is corrected to now in `record`: a write held back for the window then
    /// waits one window, not until the clock catches up with the ledger.
    fn last_write(&self, record: &mut SessionRecord) -> i64 {
        record.last_write_ms = record.last_write_ms.min(self.now());
        record.last_write_ms.max(self.start_ms)
    }

    async fn deliver_work(
        &self,
        client: &Client,
        mut work: SessionWork,
        commit: &mut Commit,
    ) -> Result<(), Outcome> {
        if let Some(create) = work.create.take() {
            // A session the server may already hold (a re-send after a crash, a lost ledger,
            // `--force`) and wrote less than 10 s ago skips this write: make sure of it later.
            let maybe_skipped = self.now() - self.last_write(&mut work.record) < SESSION_WINDOW_MS;
            // It may hold it whenever this process cannot rule it out: written before (the
            // ledger says so), or begun before this process started (a process before it may
            // have created it and died before its ledger said so). Then the fields this create
            // leaves absent or 0 may keep older values there.
            let may_exist = work.record.last_write_ms > 0
                || create.created_at.is_none_or(|at| at <= self.start_ms);
            if self
                .send_session(client, &create, &work.key, commit)
                .await?
            {
                if maybe_skipped {
                    self.defer_session(&work.key, self.now(), true, commit);
                }
                work.record.acked = Some(create);
                work.record.last_write_ms = self.now();
                work.record.held_partly_unknown = may_exist;
                self.note_server_session(&work.record.state.session_id);
            }
        }
        for msg in std::mem::take(&mut work.messages) {
            if let Some(created) = msg.server_created_ms {
                let open_until = created + MESSAGE_WINDOW_MS + WINDOW_MARGIN_MS;
                if self.now() < open_until {
                    commit.deferred.push((
                        deferred_message_key(&msg.payload.external_id),
                        Some(Deferred {
                            due_ms: open_until,
                            session: work.key.clone(),
                            message: Some((msg.payload, msg.hash)),
                            confirm: false,
                        }),
                    ));
                    continue;
                }
            }
            // A message this process has no record of, created before it started and still
            // in its window, may have been sent by a process killed mid-push: if so this is an
            // update the server skips, so it is sent again once the window has passed.
            let created = msg.payload.created_at.unwrap_or(i64::MAX);
            let maybe_known = msg.server_created_ms.is_none()
                && created <= self.start_ms
                && self.now() < created + MESSAGE_WINDOW_MS + WINDOW_MARGIN_MS;
            if self.send_message(client, &msg, &work.key, commit).await? {
                if msg.server_created_ms.is_none() {
                    work.record.messages += 1;
                }
                work.record.last_write_ms = self.now();
                if maybe_known {
                    commit.deferred.push((
                        deferred_message_key(&msg.payload.external_id),
                        Some(Deferred {
                            due_ms: created + MESSAGE_WINDOW_MS + WINDOW_MARGIN_MS,
                            session: work.key.clone(),
                            message: Some((msg.payload.clone(), msg.hash)),
                            confirm: true,
                        }),
                    ));
                }
            }
        }
        if let Some(update) = work.update.take() {
            let last = self.last_write(&mut work.record);
            let in_window = self.now() - last < SESSION_WINDOW_MS;
            if in_window
                && session_write_may_be_skipped(
                    work.record.acked.as_ref(),
                    &update,
                    work.record.held_partly_unknown,
                )
            {
                self.defer_session(&work.key, last, false, commit);
            } else if self
                .send_session(client, &update, &work.key, commit)
                .await?
            {
                work.record.acked =
                    Some(plan::held_after_write(work.record.acked.as_ref(), &update));
                work.record.last_write_ms = self.now();
                // This write carries the latest state, so a write held back for the window is
                // no longer needed — unless it is a confirmation: one queued because what the
                // server holds is not known for sure (a create over a row the server may have
                // had: after a crash, `--force` or a lost ledger). Then "this write changes
                // something" may be wrong inside the window, and the confirmation stays.
                let pending_confirmation = in_window
                    && self
                        .ledger
                        .deferred_entry(&deferred_session_key(&work.key))
                        .ok()
                        .flatten()
                        .is_some_and(|d| d.confirm);
                if !pending_confirmation {
                    commit
                        .deferred
                        .push((deferred_session_key(&work.key), None));
                }
            }
        }
        commit.sessions.push((work.key, work.record));
        Ok(())
    }

    /// Keeps a session write for after the window that started at `last_write`. `confirm`: it
    /// is sent whatever writes come meanwhile, because what the server holds is uncertain (a
    /// queued confirmation stays one).
    fn defer_session(&self, key: &str, last_write: i64, confirm: bool, commit: &mut Commit) {
        let deferred_key = deferred_session_key(key);
        let confirm = confirm
            || self
                .ledger
                .deferred_entry(&deferred_key)
                .ok()
                .flatten()
                .is_some_and(|d| d.confirm);
        commit.deferred.push((
            deferred_key,
            Some(Deferred {
                due_ms: last_write + SESSION_WINDOW_MS + WINDOW_MARGIN_MS,
                session: key.to_string(),
                message: None,
                confirm,
            }),
        ));
    }

    /// Sends one message; records it in `commit` when acknowledged (`Ok(true)`), quarantines
    /// it when refused (`Ok(false)`).
    async fn send_message(
        &self,
        client: &Client,
        msg: &PlannedMessage,
        session_key: &str,
        commit: &mut Commit,
    ) -> Result<bool, Outcome> {
        let id = &msg.payload.external_id;
        match self.send(|| client.upsert_message(&msg.payload)).await? {
            Sent::Acked => {
                let created_ms = msg
                    .server_created_ms
                    .or(msg.payload.created_at)
                    .unwrap_or_else(|| self.now());
                commit.messages.push((
                    id.clone(),
                    MessageRecord {
                        session: session_key.to_string(),
                        hash: msg.hash,
                        created_ms,
                    },
                ));
                commit.deferred.push((deferred_message_key(id), None));
                commit
                    .quarantine
                    .push((plan::quarantine_key("message", id), None));
                self.count(|c| c.messages_sent += 1);
                Ok(true)
            }
            Sent::Rejected(reason) => {
                let raw = msg.raw.clone().unwrap_or_else(|| msg.payload.clone());
                self.quarantine(commit, "message", id, &reason, msg.hash, Some(raw));
                Ok(false)
            }
        }
    }

    /// Sends a session payload; `Ok(false)` when it was refused (and quarantined).
    async fn send_session(
        &self,
        client: &Client,
        payload: &SessionPayload,
        key: &str,
        commit: &mut Commit,
    ) -> Result<bool, Outcome> {
        match self.send(|| client.upsert_session(payload)).await? {
            Sent::Acked => {
                self.count(|c| c.sessions_sent += 1);
                commit
                    .quarantine
                    .push((plan::quarantine_key("session", key), None));
                Ok(true)
            }
            Sent::Rejected(reason) => {
                self.quarantine(commit, "session", key, &reason, json_hash(payload), None);
                Ok(false)
            }
        }
    }

    fn quarantine(
        &self,
        commit: &mut Commit,
        kind: &str,
        id: &str,
        reason: &str,
        hash: u128,
        raw: Option<MessagePayload>,
    ) {
        tracing::warn!(kind, id = %id.replace('\0', "/"), %reason, "the server rejected a record; quarantined (see `opensyncd status --rejected`)");
        self.count(|c| c.rejected += 1);
        commit.quarantine.push((
            plan::quarantine_key(kind, id),
            Some(Quarantined {
                kind: kind.into(),
                id: id.replace('\0', "/"),
                reason: reason.into(),
                at_ms: self.now(),
                hash,
                key: id.to_string(),
                raw,
            }),
        ));
    }

    /// Sends one request until it is acknowledged or refused, backing off on transient
    /// failures. `Err` when pushing must pause or stop.
    pub(crate) async fn send<'a, F, Fut>(&self, op: F) -> Result<Sent, Outcome>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), PushError>> + 'a,
    {
        let mut backoff = Backoff::default();
        let mut stopping = self.stopping.clone();
        let counted = || {
            self.count(|c| c.requests += 1);
            op()
        };
        let end = crate::push::retry_paced(counted, &mut backoff, &self.flow, &mut stopping, |err, delay| {
            let message = err.to_string();
            let now = self.now();
            self.count(|c| {
                c.retries += 1;
                c.last_error = Some((now, message.clone()));
                c.failing_since_ms.get_or_insert(now);
                c.next_attempt_ms = Some(now + delay.as_millis() as i64);
            });
            tracing::warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "request failed; retrying");
        })
        .await;
        match end {
            RetryEnd::Acked => {
                let now = self.now();
                self.count(|c| {
                    c.last_success_ms = Some(now);
                    c.failing_since_ms = None;
                    c.next_attempt_ms = None;
                });
                Ok(Sent::Acked)
            }
            RetryEnd::Stopped => Err(Outcome::Stopped),
            RetryEnd::Failed(err) => {
                let message = err.to_string();
                let now = self.now();
                self.count(|c| c.last_error = Some((now, message.clone())));
                match err.class() {
                    // One record cannot be split further; our caps keep bodies far below the
                    // platform limit, so this is a record the server will not take.
                    ErrorClass::Split | ErrorClass::Reject | ErrorClass::Retry => {
                        Ok(Sent::Rejected(message))
                    }
                    ErrorClass::AuthPaused => Err(Outcome::Paused(Pause::Auth(message))),
                    ErrorClass::WrongUrl => Err(Outcome::Paused(Pause::WrongUrl(message))),
                }
            }
        }
    }
}
