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
//! retry loop around every request, and quarantine for records the server refuses.

use std::collections::{HashMap, HashSet};

use crate::engine::{Engine, EngineError, Outcome, Pause};
use crate::ledger::{
    Commit, Deferred, MessageRecord, Quarantined, SessionRecord, deferred_message_key,
    deferred_session_key,
};
use crate::model::{MessagePayload, SessionPayload, SourceId, json_hash};
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
/// server holds is unknown (`None`), it may.
pub fn session_write_may_be_skipped(held: Option<&SessionPayload>, next: &SessionPayload) -> bool {
    let Some(prev) = held else {
        return true;
    };
    let tokens_same = |a: Option<u64>, b: Option<u64>| b.unwrap_or(0) == 0 || a == b;
    prev.title == next.title
        && prev.model == next.model
        && prev.project_path == next.project_path
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
    /// assumed to be as late as the start.
    fn last_write(&self, record: &SessionRecord) -> i64 {
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
            let maybe_skipped = self.now() - self.last_write(&work.record) < SESSION_WINDOW_MS;
            if self
                .send_session(client, &create, &work.key, commit)
                .await?
            {
                if maybe_skipped {
                    self.defer_session(&work.key, self.now(), true, commit);
                }
                work.record.acked = Some(create);
                work.record.last_write_ms = self.now();
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
            let last = self.last_write(&work.record);
            let in_window = self.now() - last < SESSION_WINDOW_MS;
            if in_window && session_write_may_be_skipped(work.record.acked.as_ref(), &update) {
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
        let end = crate::push::retry(counted, &mut backoff, &mut stopping, |err, delay| {
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

    /// Remembers that the server has this session now (for the batch transport's "is it new
    /// to the server?" test).
    fn note_server_session(&self, session_id: &str) {
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
    async fn server_sessions(&self, client: &Client) -> Option<HashSet<String>> {
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
    async fn deliver_batches(
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

    /// Epoch ms at which the next deferred write is due, if any.
    pub fn next_deferred_ms(&self) -> Result<Option<i64>, EngineError> {
        let mut next: Option<i64> = None;
        for item in self.ledger.deferred() {
            let (_, d) = item?;
            next = Some(next.map_or(d.due_ms, |n: i64| n.min(d.due_ms)));
        }
        Ok(next)
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

    async fn flush_message(
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

    async fn flush_session(
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
        let last = self.last_write(&rec);
        if self.now() - last < SESSION_WINDOW_MS {
            self.defer_session(&entry.session, last, entry.confirm, commit);
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

    /// When the price table changed since the sessions were last sent (a `prices update`, a new
    /// bundled table, an edited `pricing_file`): every session whose cost is now different is
    /// sent again, once, as a session update through the deferred queue (so the server's 10 s
    /// window is respected). Returns how many were queued.
    pub fn reprice_if_prices_changed(&self) -> Result<usize, EngineError> {
        let shaping = self.shaping();
        let fingerprint = shaping.pricing.fingerprint();
        let before = self.ledger.meta_string("prices")?;
        if before.as_deref() == Some(fingerprint.as_str()) {
            return Ok(0);
        }
        let mut queued = 0;
        if before.is_some() {
            let mut commit = Commit::default();
            for item in self.ledger.sessions() {
                let (key, rec) = item?;
                let Some(acked) = &rec.acked else {
                    continue;
                };
                if shaping.session(&rec.state).cost != acked.cost {
                    commit.deferred.push((
                        deferred_session_key(&key),
                        Some(Deferred {
                            due_ms: self.now(),
                            session: key,
                            message: None,
                            confirm: false,
                        }),
                    ));
                    queued += 1;
                }
            }
            self.ledger.commit(&commit)?;
            tracing::info!(
                sessions = queued,
                "the price table changed: sessions whose cost changed are sent again"
            );
        }
        self.ledger.set_meta_string("prices", &fingerprint)?;
        self.ledger.flush()?;
        Ok(queued)
    }

    /// Retries the refused records when the settings that shape payloads (redaction, caps)
    /// changed since they were refused: what the server refused may be acceptable now.
    pub async fn retry_rejected_if_shaping_changed(&self) -> Result<Outcome, EngineError> {
        let fingerprint = self.shaping().fingerprint();
        let before = self.ledger.meta_string("shaping")?;
        if before.as_deref() == Some(fingerprint.as_str()) {
            return Ok(Outcome::Done);
        }
        let mut outcome = Outcome::Done;
        if before.is_some() && self.ledger.quarantine().next().is_some() {
            tracing::info!("redaction or size caps changed: sending the refused records again");
            let (o, accepted) = self.retry_rejected().await?;
            tracing::info!(accepted, "refused records sent again");
            outcome = o;
        }
        if outcome == Outcome::Done {
            self.ledger.set_meta_string("shaping", &fingerprint)?;
        }
        Ok(outcome)
    }

    /// Sends the records the server refused before again, shaped with the current settings
    /// (`sync --retry-rejected`, or a change of redaction or caps). Returns how many were
    /// accepted this time.
    pub async fn retry_rejected(&self) -> Result<(Outcome, usize), EngineError> {
        let Some(client) = self.client() else {
            return Ok((Outcome::Paused(Pause::Auth("not logged in".into())), 0));
        };
        let mut accepted = 0;
        let entries: Vec<(String, Quarantined)> =
            self.ledger.quarantine().collect::<Result<_, _>>()?;
        for (qkey, q) in entries {
            let mut commit = Commit::default();
            let ok = match (q.kind.as_str(), q.raw) {
                ("message", Some(raw)) => {
                    let Some(source) = SourceId::parse(&raw.source) else {
                        continue;
                    };
                    let session = crate::fold::session_key(source, &raw.session_external_id);
                    let _guard = self.session_locks.lock(&session).await;
                    let payload = self.shaping().message(raw.clone());
                    let prev = self.ledger.message(&payload.external_id)?;
                    let planned = PlannedMessage {
                        hash: json_hash(&payload),
                        payload,
                        server_created_ms: prev.map(|p| p.created_ms),
                        raw: Some(raw),
                    };
                    match self
                        .send_message(&client, &planned, &session, &mut commit)
                        .await
                    {
                        Ok(ok) => ok,
                        Err(outcome) => return Ok((outcome, accepted)),
                    }
                }
                ("session", _) => {
                    let _guard = self.session_locks.lock(&q.key).await;
                    let Some(mut rec) = self.ledger.session(&q.key)? else {
                        commit.quarantine.push((qkey.clone(), None));
                        self.ledger.commit(&commit)?;
                        continue;
                    };
                    let payload = self.shaping().session(&rec.state);
                    match self
                        .send_session(&client, &payload, &q.key, &mut commit)
                        .await
                    {
                        Ok(true) => {
                            rec.acked = Some(plan::held_after_write(rec.acked.as_ref(), &payload));
                            rec.last_write_ms = self.now();
                            commit.sessions.push((q.key.clone(), rec));
                            true
                        }
                        Ok(false) => false,
                        Err(outcome) => return Ok((outcome, accepted)),
                    }
                }
                // An entry from before payloads were kept: nothing to send again; it is
                // retried when its file changes.
                _ => continue,
            };
            if ok {
                accepted += 1;
            }
            self.ledger.commit(&commit)?;
        }
        Ok((Outcome::Done, accepted))
    }
}
