//! The OpenSync client against the emulation: every error class reached from the answer the
//! server really gives, the retry loop's timing under a paused tokio clock, and payloads that
//! never carry `null`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opensyncd::credentials::ApiKey;
use opensyncd::model::{MessagePayload, Part, Role, SessionPayload};
use opensyncd::push::{Backoff, Client, ClientOptions, ErrorClass, PushError, RetryEnd, retry};
use rand::SeedableRng;

use crate::support::{Emulation, Faults};

const KEY: &str = "osk_clientTestKey0123456789abcdefghij";

fn client(url: &str, key: &str) -> Client {
    Client::new(ClientOptions {
        url: url.to_string(),
        api_key: ApiKey::parse(key).expect("key"),
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
    })
    .expect("client")
}

fn session(id: &str) -> SessionPayload {
    SessionPayload {
        external_id: id.to_string(),
        source: "claude-code".into(),
        ..SessionPayload::default()
    }
}

fn message(session: &str, id: &str, parts: Vec<Part>) -> MessagePayload {
    MessagePayload {
        session_external_id: session.to_string(),
        external_id: id.to_string(),
        role: Role::Assistant,
        text_content: None,
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
        duration_ms: None,
        source: "claude-code".into(),
        parts,
        created_at: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn class_of(result: Result<(), PushError>) -> (ErrorClass, PushError) {
    let err = result.expect_err("the request should fail");
    (err.class(), err)
}

#[test]
fn each_error_class_is_reached_from_the_servers_real_answers() {
    let emu = Emulation::with_key(KEY);
    let rt = runtime();
    let ok = client(&emu.url(), KEY);
    rt.block_on(ok.upsert_session(&session("s1")))
        .expect("a valid session is accepted");

    // Retry: Convex's optimistic-concurrency 500, a 503 page, a dropped connection.
    emu.fail_next(
        500,
        "Documents read from or written to the \"sessions\" table changed while this mutation was being run and on every subsequent retry.",
        1,
    );
    let (class, _) = class_of(rt.block_on(ok.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::Retry);
    emu.start_outage();
    let (class, err) = class_of(rt.block_on(ok.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::Retry, "{err}");
    assert!(matches!(err, PushError::Network { .. }), "{err:?}");
    emu.end_outage();

    // Retry with the server's Retry-After.
    emu.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: 7,
        ..Faults::default()
    });
    let (class, err) = class_of(rt.block_on(ok.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::Retry);
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    emu.set_faults(Faults::default());

    // Auth paused: a wrong key, then a revoked one.
    let wrong = client(&emu.url(), "osk_notTheRightKey000000000000000000");
    let (class, err) = class_of(rt.block_on(wrong.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::AuthPaused, "{err}");
    emu.revoke_key(emu.default_user());
    let (class, _) = class_of(rt.block_on(ok.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::AuthPaused);
    emu.set_key(emu.default_user(), KEY);

    // Reject: the validator refuses a `$` field name in tool arguments, for good.
    let bad = message(
        "s1",
        "m-dollar",
        vec![Part::tool_call("Edit", serde_json::json!({"$ref": "#/x"}))],
    );
    let (class, err) = class_of(rt.block_on(ok.upsert_message(&bad)));
    assert_eq!(class, ErrorClass::Reject, "{err}");

    // Split: a body over the platform's request limit (our cap raised to let it through).
    let big = message(
        "s1",
        "m-big",
        vec![Part::text("x".repeat(17 * 1024 * 1024))],
    );
    let roomy = client(&emu.url(), KEY).with_max_body(64 * 1024 * 1024);
    let (class, err) = class_of(rt.block_on(roomy.upsert_message(&big)));
    assert_eq!(class, ErrorClass::Split, "{err}");
    // ... and with the default cap it never leaves the machine.
    let (class, err) = class_of(rt.block_on(ok.upsert_message(&big)));
    assert!(matches!(err, PushError::TooLarge { .. }));
    assert_eq!(class, ErrorClass::Split);

    // Wrong URL: something that is not OpenSync answers 404.
    let elsewhere = client(&format!("{}/not-opensync", emu.url()), KEY);
    let (class, err) = class_of(rt.block_on(elsewhere.upsert_session(&session("s1"))));
    assert_eq!(class, ErrorClass::WrongUrl, "{err}");

    // No error message carries the key.
    for e in [err.to_string(), format!("{err:?}"), format!("{ok:?}")] {
        assert!(!e.contains(KEY), "{e}");
    }
}

#[test]
fn absent_optional_fields_are_omitted_never_null() {
    let emu = Emulation::with_key(KEY);
    let rt = runtime();
    let c = client(&emu.url(), KEY);
    rt.block_on(c.upsert_session(&session("s-absent"))).unwrap();
    rt.block_on(c.upsert_message(&message("s-absent", "m-absent", vec![Part::text("hello")])))
        .unwrap();
    let writes: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(writes.len(), 2);
    for w in &writes {
        assert!(!w.raw.contains("null"), "{} sent a null: {}", w.path, w.raw);
        let body = w.body.as_ref().unwrap();
        assert!(body.get("model").is_none(), "{}", w.raw);
    }
    let stored = emu.messages_of_session(emu.default_user(), "s-absent");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].parts[0].kind, "text");
}

/// A scripted server answer for the retry loop.
fn status(code: u16, message: &str, retry_after: Option<u64>) -> PushError {
    PushError::Status {
        route: "POST /sync/message".into(),
        status: code,
        message: message.into(),
        json: true,
        retry_after: retry_after.map(Duration::from_secs),
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_loop_waits_out_retry_after_and_stays_under_the_cap() {
    // The answers a struggling server gives, in order; then success.
    let script = Mutex::new(vec![
        status(429, "Too Many Requests", Some(30)),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
        status(503, "Service Unavailable", None),
    ]);
    let calls = AtomicUsize::new(0);
    let sent_at = Mutex::new(Vec::new());
    let op = || {
        calls.fetch_add(1, Ordering::SeqCst);
        sent_at.lock().unwrap().push(tokio::time::Instant::now());
        let next = {
            let mut s = script.lock().unwrap();
            if s.is_empty() {
                None
            } else {
                Some(s.remove(0))
            }
        };
        async move { next.map_or(Ok(()), Err) }
    };
    let cap = Duration::from_secs(20);
    let mut backoff = Backoff::new(
        Duration::from_secs(1),
        cap,
        rand::rngs::StdRng::seed_from_u64(42),
    );
    let (_stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut delays = Vec::new();
    let end = retry(op, &mut backoff, &mut stop_rx, |_, d| delays.push(d)).await;
    assert!(matches!(end, RetryEnd::Acked), "{end:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    let at = sent_at.lock().unwrap().clone();
    // Retry-After 30 s is honoured even though it exceeds the backoff's first steps.
    assert!(
        at[1] - at[0] >= Duration::from_secs(30),
        "{:?}",
        at[1] - at[0]
    );
    // Every other gap is the delay the backoff chose, never above the cap.
    for (i, d) in delays.iter().enumerate().skip(1) {
        assert!(*d <= cap, "delay {i} = {d:?}");
        assert_eq!(at[i + 1] - at[i], *d);
    }
}

#[tokio::test(start_paused = true)]
async fn the_retry_loop_stops_at_once_on_shutdown_and_passes_hard_failures_up() {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut backoff = Backoff::default();
    let waiting = retry(
        || async { Err(status(503, "Service Unavailable", Some(600))) },
        &mut backoff,
        &mut stop_rx,
        |_, _| {
            let _ = stop_tx.send(true);
        },
    );
    let started = tokio::time::Instant::now();
    assert!(matches!(waiting.await, RetryEnd::Stopped));
    assert!(started.elapsed() < Duration::from_secs(1));

    let (_tx, mut rx) = tokio::sync::watch::channel(false);
    let end = retry(
        || async { Err(status(401, "Invalid API key", None)) },
        &mut Backoff::default(),
        &mut rx,
        |_, _| panic!("an auth failure is not retried"),
    )
    .await;
    assert!(matches!(end, RetryEnd::Failed(e) if e.class() == ErrorClass::AuthPaused));
}
