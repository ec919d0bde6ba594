//! Repairing the differences an audit found: rounds that send the session payload and/or the
//! differing messages with their full parts through `/sync/session` and `/sync/message`
//! (never `/sync/batch`, which wipes parts and drops `createdAt`), then fetch again and
//! compare, up to [`REPAIR_ROUNDS`] times.
//!
//! Before sending, a round waits out the server's dedup windows, which would otherwise skip the
//! write silently: a session written in the last 10 s, a message whose stored `createdAt` is
//! within 5 s of now. A record the server refuses, or whose window ends too far ahead, is given
//! up for the rest of the run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Result;

use super::compare::compare_target;
use super::fetch::{fatal, refetch, with_retry};
use super::{Difference, Fetched, Fix, Progress, RepairReport, Report, Target};
use crate::clock::Clock;
use crate::model::SessionPayload;
use crate::push::{Client, ErrorClass, PushError, ServerSession};

/// The server skips a message update while `now - createdAt` is below this.
pub const MESSAGE_WINDOW_MS: i64 = 5_000;
/// The server skips a session update (same title, model, path, tokens) while `now - updatedAt`
/// is below this.
pub const SESSION_WINDOW_MS: i64 = 10_000;
/// Added to every window: our clock and the server's are not the same clock.
pub const WINDOW_MARGIN_MS: i64 = 1_000;
/// A window further away than this (a `createdAt` in the future) is not waited for.
pub const MAX_WINDOW_WAIT_MS: i64 = 60_000;
/// Send, fetch again, compare: at most this many times.
pub const REPAIR_ROUNDS: usize = 3;

/// Until when the server would skip a write made now (`None`: it would not): `last_ms` is
/// the server's timestamp the window runs from (a session's `updatedAt`, a message's
/// `createdAt`), `window_ms` its length.
pub fn window_until(last_ms: f64, window_ms: i64, now_ms: i64) -> Option<i64> {
    let until = (last_ms as i64)
        .saturating_add(window_ms)
        .saturating_add(WINDOW_MARGIN_MS);
    (now_ms < until).then_some(until)
}

/// One session's writes in a repair round.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    /// Index into the targets.
    index: usize,
    /// Send the session payload (first).
    session: bool,
    /// Indexes into the target's messages to send, in export's order.
    messages: Vec<usize>,
}

/// What one repair round sends, and how long it must wait before.
#[derive(Debug, Default, PartialEq)]
struct RoundPlan {
    plans: Vec<Planned>,
    /// Send no earlier than this (epoch ms, this machine's clock), and why.
    wait: Option<(i64, String)>,
    /// Messages not sent because their window ends too far ahead: (id, explanation).
    deferred: Vec<(String, String)>,
}

/// Records the server refused, or deferred past their window: not sent again in this run.
#[derive(Debug, Default)]
struct GivenUp {
    sessions: HashSet<String>,
    messages: HashSet<String>,
}

impl GivenUp {
    fn covers(&self, d: &Difference) -> bool {
        self.sessions.contains(&d.session)
            || d.message
                .as_ref()
                .is_some_and(|m| self.messages.contains(m))
    }
}

/// Whether the server's session dedup check, time aside, would skip writing `want` over
/// `have` (`sessions.upsert`): title, model and project path unchanged, and each token total
/// 0, absent or unchanged. Any other change (cost, duration, provider, project name) is then
/// dropped inside the window.
pub fn session_write_skippable(want: &SessionPayload, have: &ServerSession) -> bool {
    let same_total = |w: Option<u64>, h: f64| w.is_none_or(|w| w == 0 || w as f64 == h);
    want.title == have.title
        && want.model == have.model
        && want.project_path == have.project_path
        && same_total(want.prompt_tokens, have.prompt_tokens)
        && same_total(want.completion_tokens, have.completion_tokens)
}

/// Which records of each target a round sends, and the server windows it must wait for: a
/// session written less than 10 s ago (by its `updatedAt`) whose write the server would skip
/// ([`session_write_skippable`]; from the second round on, any such session, in case the
/// server's rule is not the one we know), a message whose stored `createdAt` is less than 5 s
/// ago, each plus [`WINDOW_MARGIN_MS`]. A message whose window ends more than
/// [`MAX_WINDOW_WAIT_MS`] ahead (its `createdAt` lies in the future) is deferred.
fn plan_round(
    targets: &[Target],
    diffs: &[Vec<Difference>],
    given_up: &GivenUp,
    round: usize,
    now: i64,
) -> RoundPlan {
    let mut out = RoundPlan::default();
    let later = |until: i64, reason: &dyn Fn() -> String, out: &mut RoundPlan| {
        if until > now && out.wait.as_ref().is_none_or(|(w, _)| until > *w) {
            out.wait = Some((until, reason()));
        }
    };
    for (index, (t, d)) in targets.iter().zip(diffs).enumerate() {
        if given_up.sessions.contains(t.id()) {
            continue;
        }
        let whole = d.iter().any(|x| x.fix == Fix::SendSession);
        let session = whole || d.iter().any(|x| x.fix == Fix::ResendSession);
        let wanted: HashSet<&str> = d
            .iter()
            .filter(|x| x.fix == Fix::ResendMessage)
            .filter_map(|x| x.message.as_deref())
            .collect();
        let stored_created: HashMap<&str, f64> = match &t.fetched {
            Fetched::Messages(server) => server
                .iter()
                .map(|m| (m.external_id.as_str(), m.created_at))
                .collect(),
            _ => HashMap::new(),
        };
        let mut messages = Vec::new();
        for (i, m) in t.messages.iter().enumerate() {
            let id = m.external_id.as_str();
            if !(whole || wanted.contains(id)) || given_up.messages.contains(id) {
                continue;
            }
            if let Some(until) = stored_created
                .get(id)
                .and_then(|c| window_until(*c, MESSAGE_WINDOW_MS, now))
            {
                if until - now > MAX_WINDOW_WAIT_MS {
                    out.deferred.push((
                        id.to_string(),
                        format!(
                            "message {id} of session {}: its stored createdAt is {}s ahead of \
                             this machine's clock, and the server ignores updates until 5 s \
                             after it; run audit --repair again later",
                            t.id(),
                            (until - now - MESSAGE_WINDOW_MS - WINDOW_MARGIN_MS) / 1000
                        ),
                    ));
                    continue;
                }
                later(
                    until,
                    &|| {
                        format!(
                            "message {id} was created less than 5 s ago by the server's \
                             record, and the server skips an update within 5 s of that"
                        )
                    },
                    &mut out,
                );
            }
            messages.push(i);
        }
        if let (true, Some(listed)) = (session, &t.listed)
            && (round > 1 || session_write_skippable(&t.session, listed))
            && let Some(until) = window_until(listed.updated_at, SESSION_WINDOW_MS, now)
        {
            let ago = (now - listed.updated_at as i64).max(0) / 1000;
            later(
                until,
                &|| {
                    format!(
                        "session {} was written {ago}s ago, and the server skips an update \
                         within 10 s of the last write",
                        t.id()
                    )
                },
                &mut out,
            );
        }
        if session || !messages.is_empty() {
            out.plans.push(Planned {
                index,
                session,
                messages,
            });
        }
    }
    out
}

/// Sends what differs, waits out the windows, fetches again and compares, up to
/// [`REPAIR_ROUNDS`] times.
pub(super) async fn repair(
    client: &Client,
    targets: &mut [Target],
    untargeted: &[Difference],
    report: &Report,
    progress: &mut dyn FnMut(Progress),
) -> Result<RepairReport> {
    let mut out = RepairReport::default();
    let mut diffs: Vec<Vec<Difference>> = targets.iter().map(compare_target).collect();
    let mut given_up = GivenUp::default();
    // The clock the engine plans its windows with (a test may drive it).
    let clock = Clock::from_env();
    for round in 1..=REPAIR_ROUNDS {
        let now = clock.now_ms();
        let plan = plan_round(targets, &diffs, &given_up, round, now);
        for (id, why) in plan.deferred {
            given_up.messages.insert(id);
            out.deferred.push(why);
        }
        if plan.plans.is_empty() {
            break;
        }
        out.rounds = round;
        if let Some((until, reason)) = plan.wait {
            let wait = Duration::from_millis(until.saturating_sub(now).max(0) as u64);
            progress(Progress::Waiting { wait, reason });
            tokio::time::sleep(wait).await;
            out.waited_ms += wait.as_millis() as u64;
        }
        progress(Progress::Sending {
            round,
            sessions: plan.plans.iter().filter(|p| p.session).count(),
            messages: plan.plans.iter().map(|p| p.messages.len()).sum(),
        });
        for p in &plan.plans {
            send_planned(client, &targets[p.index], p, &mut out, &mut given_up).await?;
        }
        let touched: Vec<usize> = plan.plans.iter().map(|p| p.index).collect();
        refetch(client, targets, &touched).await?;
        for &i in &touched {
            diffs[i] = compare_target(&targets[i]);
        }
        let pending = diffs
            .iter()
            .flatten()
            .any(|d| d.fix.repairable() && !given_up.covers(d));
        if !pending {
            break;
        }
    }
    let mut remaining: Vec<Difference> = diffs.into_iter().flatten().collect();
    remaining.extend(untargeted.iter().cloned());
    let now_keys: HashSet<_> = remaining.iter().map(Difference::key).collect();
    out.fixed = report
        .differences
        .iter()
        .filter(|d| d.fix.repairable() && !now_keys.contains(&d.key()))
        .count();
    out.remaining = remaining;
    Ok(out)
}

/// Sends one target's planned writes: the session payload first (so messages never
/// auto-create a bare session), then the messages in export's order.
async fn send_planned(
    client: &Client,
    t: &Target,
    plan: &Planned,
    out: &mut RepairReport,
    given_up: &mut GivenUp,
) -> Result<()> {
    if plan.session {
        match send(|| client.upsert_session(&t.session)).await? {
            None => out.sessions_sent += 1,
            Some(reason) => {
                out.refused.push(format!("session {}: {reason}", t.id()));
                given_up.sessions.insert(t.id().to_string());
                return Ok(());
            }
        }
    }
    for &i in &plan.messages {
        let m = &t.messages[i];
        match send(|| client.upsert_message(m)).await? {
            None => out.messages_sent += 1,
            Some(reason) => {
                out.refused.push(format!(
                    "message {} of session {}: {reason}",
                    m.external_id,
                    t.id()
                ));
                given_up.messages.insert(m.external_id.clone());
            }
        }
    }
    Ok(())
}

/// Sends one record: `Ok(None)` when acknowledged, `Ok(Some(reason))` when the server refuses
/// it for good, `Err` when nothing more can be sent (the key, the URL).
async fn send<F, Fut>(op: F) -> Result<Option<String>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), PushError>>,
{
    match with_retry(op).await {
        Ok(()) => Ok(None),
        Err(e) => match e.class() {
            ErrorClass::AuthPaused | ErrorClass::WrongUrl => Err(fatal(e, "repairing")),
            _ => Ok(Some(e.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{message, payload, server_session, stored};
    use super::*;
    use crate::model::MessagePayload;
    use crate::push::ServerMessage;

    #[test]
    fn windows_run_from_the_servers_timestamps_with_a_margin() {
        let now = 1_780_000_000_000;
        // Written 3 s ago: skipped until 10 s + 1 s margin after the write.
        assert_eq!(
            window_until((now - 3_000) as f64, SESSION_WINDOW_MS, now),
            Some(now - 3_000 + 10_000 + 1_000)
        );
        // Written 11 s ago: free.
        assert_eq!(
            window_until((now - 11_000) as f64, SESSION_WINDOW_MS, now),
            None
        );
        // A message created 2 s in the future: 5 s + 1 s after that.
        assert_eq!(
            window_until((now + 2_000) as f64, MESSAGE_WINDOW_MS, now),
            Some(now + 8_000)
        );
    }

    fn target_of(
        session: SessionPayload,
        messages: Vec<MessagePayload>,
        listed: ServerSession,
        stored: Vec<ServerMessage>,
    ) -> Target {
        Target {
            session,
            messages,
            listed: Some(listed),
            fetched: Fetched::Messages(stored),
            rows: 1,
        }
    }

    fn diff(session: &str, message: Option<&str>, field: &str, fix: Fix) -> Difference {
        Difference {
            session: session.into(),
            message: message.map(str::to_string),
            field: field.into(),
            server: None,
            export: None,
            fix,
        }
    }

    #[test]
    fn a_round_waits_for_the_latest_window_and_defers_a_future_message() {
        let now = 1_780_000_000_000;
        // s1: its cost differs, and it was written 3 s ago.
        let mut listed1 = server_session();
        listed1.updated_at = (now - 3_000) as f64;
        let t1 = target_of(payload(), vec![], listed1, vec![]);
        // s2: m1 created 1 s ago (window), m2 created 2 min in the future (deferred), m3 not
        // on the server (an insert: no window); the session itself was written long ago.
        let mut p2 = payload();
        p2.external_id = "s2".into();
        let msgs: Vec<MessagePayload> = ["m1", "m2", "m3"]
            .iter()
            .map(|id| message(id, "x", vec![]))
            .collect();
        let mut stored1 = stored(&msgs[0]);
        stored1.created_at = (now - 1_000) as f64;
        let mut stored2 = stored(&msgs[1]);
        stored2.created_at = (now + 120_000) as f64;
        let mut listed2 = server_session();
        listed2.external_id = "s2".into();
        listed2.updated_at = (now - 60_000) as f64;
        let t2 = target_of(p2.clone(), msgs, listed2.clone(), vec![stored1, stored2]);
        // s3: refused earlier in this run.
        let mut p3 = p2.clone();
        p3.external_id = "s3".into();
        let t3 = target_of(p3, vec![], listed2, vec![]);
        let diffs = vec![
            vec![diff("s1", None, "cost", Fix::ResendSession)],
            vec![
                diff("s2", Some("m1"), "textContent", Fix::ResendMessage),
                diff("s2", Some("m2"), "parts", Fix::ResendMessage),
                diff("s2", Some("m3"), "message", Fix::ResendMessage),
            ],
            vec![diff("s3", None, "title", Fix::ResendSession)],
        ];
        let mut given_up = GivenUp::default();
        given_up.sessions.insert("s3".into());
        let targets = [t1, t2, t3];
        let plan = plan_round(&targets, &diffs, &given_up, 1, now);
        assert_eq!(
            plan.plans,
            [
                Planned {
                    index: 0,
                    session: true,
                    messages: vec![]
                },
                Planned {
                    index: 1,
                    session: false,
                    messages: vec![0, 2]
                },
            ]
        );
        // s1's window: written at now - 3 s, + 10 s, + 1 s margin = now + 8 s; m1's ends at
        // now - 1 s + 5 s + 1 s = now + 5 s, earlier.
        let (until, reason) = plan.wait.unwrap();
        assert_eq!(until, now + 8_000);
        assert!(reason.contains("session s1 was written 3s ago"), "{reason}");
        assert_eq!(plan.deferred.len(), 1);
        assert_eq!(plan.deferred[0].0, "m2");
        assert!(
            plan.deferred[0].1.contains("120s ahead"),
            "{}",
            plan.deferred[0].1
        );

        // A title change is never skipped by the server: no need to wait for s1 in round 1
        // (m1's window remains), but a second round waits whatever changed.
        let mut targets = targets;
        targets[0].session.title = Some("new title".into());
        let plan = plan_round(&targets, &diffs, &given_up, 1, now);
        assert_eq!(plan.wait.unwrap().0, now + 5_000);
        let plan = plan_round(&targets, &diffs, &given_up, 2, now);
        assert_eq!(plan.wait.unwrap().0, now + 8_000);
    }

    #[test]
    fn the_session_window_skips_only_what_the_server_compares() {
        let have = server_session();
        assert!(session_write_skippable(&payload(), &have));
        let mut want = payload();
        want.cost = Some(5.0);
        want.duration_ms = Some(1);
        want.provider = Some("other".into());
        want.project_name = Some("other".into());
        want.completion_tokens = None; // absent: not compared
        assert!(
            session_write_skippable(&want, &have),
            "these changes are dropped"
        );
        let changes: [fn(&mut SessionPayload); 6] = [
            |p| p.title = Some("t".into()),
            |p| p.title = None,
            |p| p.model = Some("m".into()),
            |p| p.project_path = Some("/x".into()),
            |p| p.prompt_tokens = Some(1201),
            |p| p.completion_tokens = Some(81),
        ];
        for change in changes {
            let mut want = payload();
            change(&mut want);
            assert!(!session_write_skippable(&want, &have), "{want:?}");
        }
    }
}
