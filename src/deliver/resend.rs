//! Sending again what was sent or refused under other settings: sessions whose cost a new
//! price table changes, and the records the server refused, when redaction or caps changed or
//! `sync --retry-rejected` asks.

use crate::engine::{Engine, EngineError, Outcome, Pause};
use crate::ledger::{Commit, Deferred, Quarantined, deferred_session_key};
use crate::model::{SourceId, json_hash};
use crate::plan::{self, PlannedMessage};

impl Engine {
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
