//! The answers to control requests (`status`, `sync`, `pause`, `resume`, `logout`, …) and the
//! state `status` reports; a hold is answered only once no request is on the wire.

use std::collections::HashSet;

use super::waiters::SyncWaiter;
use super::{Daemon, HOLD_DRAIN, load_hold};
use crate::config;
use crate::control::{Replier, Reply, Request};
use crate::credentials;
use crate::engine::{Pause, now_ms};
use crate::health::SyncState;
use crate::pause::HoldKind;
use crate::pending;
use crate::selection::{SyncSummary, scan_units};
use crate::sources::{self, Unit};
use crate::status::{self, Status};

impl Daemon {
    pub(super) fn control(&mut self, request: Request, reply: Replier) {
        match request {
            Request::Status => {
                let _ = reply.send(Reply::Status {
                    status: Box::new(self.status()),
                });
            }
            Request::Reload => {
                self.reload();
                let _ = reply.send(Reply::Ok);
            }
            Request::Hook { event, path } => {
                tracing::debug!(%event, "hook");
                match path
                    .as_deref()
                    .and_then(|p| sources::unit_for_path(p, &self.roots))
                {
                    Some(unit) => self.enqueue(unit),
                    None => self.full_scan("hook"),
                }
                let _ = reply.send(Reply::Ok);
            }
            Request::Hold => {
                self.hold = load_hold(&self.paths);
                match &self.hold {
                    Some(hold) => tracing::info!("paused ({})", hold.describe(now_ms())),
                    None => tracing::info!("resume requested"),
                }
                self.reply_when_quiet(reply);
            }
            Request::Logout => {
                self.hold = load_hold(&self.paths);
                tracing::info!("logged out: the key is forgotten and nothing more is sent");
                self.reply_when_quiet(reply);
                // The key is gone from memory too; `login` builds a new client.
                self.engine.set_client(None);
            }
            Request::Stop => {
                tracing::info!("asked to stop over the control socket");
                let _ = reply.send(Reply::Ok);
                // The same path as SIGTERM: drain, flush, exit.
                if let Err(err) = signal_hook::low_level::raise(signal_hook::consts::SIGTERM) {
                    tracing::error!(%err, "could not stop");
                }
            }
            Request::DryRun { selection } => {
                let engine = self.engine.clone();
                let roots = self.roots.clone();
                let sources = self.cfg.enabled_sources();
                let parse = self.cfg.parse_options();
                let max_line = self.cfg.max_line_bytes;
                // Reading the pending data can take a while: off the loop.
                tokio::task::spawn_blocking(move || {
                    let answer = crate::oneshot::dry_run_with(
                        &engine.ledger,
                        &roots,
                        &sources,
                        &selection,
                        parse,
                        max_line,
                    );
                    let _ = reply.send(match answer {
                        Ok(report) => Reply::DryRun { report },
                        Err(err) => Reply::Error {
                            message: format!("{err:#}"),
                        },
                    });
                });
            }
            Request::Sync {
                selection,
                progress: _,
            } => {
                if self.hold.is_some() {
                    // Answered at once by `answer_waiters`: nothing is sent while held.
                    self.waiters.push(SyncWaiter {
                        pending: HashSet::new(),
                        summary: SyncSummary::default(),
                        before: self.engine.counters(),
                        units_total: 0,
                        bytes_total: 0,
                        reply,
                    });
                    self.answer_waiters();
                    return;
                }
                if selection.retry_rejected {
                    let engine = self.engine.clone();
                    tokio::spawn(async move {
                        match engine.retry_rejected().await {
                            Ok((_, accepted)) => {
                                tracing::info!(accepted, "refused records sent again")
                            }
                            Err(err) => {
                                tracing::warn!(%err, "sending refused records again failed")
                            }
                        }
                    });
                }
                let sources = self.cfg.enabled_sources();
                let found = scan_units(&self.engine.ledger, &self.roots, &sources, &selection)
                    .map_err(|e| e.to_string())
                    .and_then(|units| {
                        pending::filter(&self.engine.ledger, units, self.cfg.parse_options())
                            .map_err(|e| e.to_string())
                    });
                match found {
                    Ok(units) => {
                        let bytes_total = units.iter().map(|p| p.bytes).sum();
                        let pending: HashSet<Unit> = units.iter().map(|p| p.unit.clone()).collect();
                        for p in units {
                            self.enqueue(p.unit);
                        }
                        let waiter = SyncWaiter {
                            units_total: pending.len(),
                            pending,
                            summary: SyncSummary::default(),
                            before: self.engine.counters(),
                            bytes_total,
                            reply,
                        };
                        if waiter.reply.wants_progress() {
                            let counters = self.engine.counters();
                            waiter
                                .reply
                                .progress(self.waiter_progress(&waiter, &counters));
                        }
                        self.waiters.push(waiter);
                        self.answer_waiters();
                    }
                    Err(message) => {
                        let _ = reply.send(Reply::Error { message });
                    }
                }
            }
        }
    }

    /// Applies the hold to the client and answers once no request is on the wire any more,
    /// so that when `pause` or `logout` returns, nothing more leaves.
    pub(super) fn reply_when_quiet(&mut self, reply: Replier) {
        self.apply_hold();
        // `sync`s waiting on the daemon are told it is paused.
        self.answer_waiters();
        let client = self.engine.client().filter(|_| self.hold.is_some());
        tokio::spawn(async move {
            if let Some(client) = client {
                client.quiet(HOLD_DRAIN).await;
            }
            let _ = reply.send(Reply::Ok);
        });
    }

    pub(super) fn status(&self) -> Status {
        let mut status = status::collect(
            &self.engine.ledger,
            &self.roots,
            &self.cfg.enabled_sources(),
            self.cfg.parse_options(),
            now_ms(),
        )
        .unwrap_or_else(|err| Status {
            warnings: vec![format!("ledger: {err}")],
            ..Status::default()
        });
        status.daemon_pid = Some(std::process::id());
        status.uptime_secs = Some(self.started.elapsed().as_secs());
        status.url = self.cfg.url.clone();
        status.api_key = credentials::load(&self.paths, &config::process_env)
            .ok()
            .flatten()
            .map(|(k, _)| k.masked());
        let health = self.health(&status);
        status.auth = health.headline(now_ms());
        status.health = Some(health);
        status.hold = self.hold.clone();
        status.watch_warning = self.watch_warning.clone();
        status.counters = Some((&self.engine.counters()).into());
        status
    }

    /// The state of syncing, from what this daemon knows: the user's hold, the server's pause,
    /// the outcome of its last requests, and the work left (`status`'s backlog and its queue).
    pub(super) fn health(&self, status: &Status) -> SyncState {
        let now = now_ms();
        if let Some(hold) = &self.hold {
            return match hold.kind {
                HoldKind::LoggedOut => SyncState::NotLoggedIn {
                    reason: hold.describe(now),
                },
                HoldKind::Paused => SyncState::Paused {
                    reason: hold.describe(now),
                    until_ms: hold.until_ms,
                },
            };
        }
        if self.engine.client().is_none() {
            return SyncState::NotLoggedIn {
                reason: "no API key or no server URL: run `opensyncd login`".into(),
            };
        }
        match &self.paused {
            Some(Pause::Auth(why)) => {
                return SyncState::NotLoggedIn {
                    reason: format!("the server refused the API key: {why}; run `opensyncd login`"),
                };
            }
            Some(Pause::WrongUrl(why)) => {
                return SyncState::WrongUrl {
                    reason: format!("{why}; check the url with `opensyncd config`"),
                };
            }
            None => {}
        }
        let counters = self.engine.counters();
        if let Some(since_ms) = counters.failing_since_ms {
            return SyncState::Retrying {
                since_ms,
                next_attempt_ms: counters.next_attempt_ms,
                error: counters
                    .last_error
                    .map_or_else(|| "no answer".into(), |(_, e)| e),
            };
        }
        // The backlog `status` shows (the same test as `sync --dry-run`); the queue may hold
        // units with nothing new (a rescan looks at them), which is not work left.
        let files: usize = status.sources.iter().map(|s| s.backlog_files).sum();
        let bytes_left: u64 = status.sources.iter().map(|s| s.backlog_bytes).sum();
        if files > 0 {
            SyncState::Syncing {
                files,
                bytes_left,
                eta_secs: self.meter.eta_secs(bytes_left),
            }
        } else {
            SyncState::Ok
        }
    }
}
