//! The OpenSync HTTP client: every sync route and the two read routes `audit` uses, typed
//! errors classified into retry / split / auth-paused / reject / wrong-URL (the retry decision
//! lives on the error, as in atuin), and full-jitter backoff honouring `Retry-After`.
//!
//! The server answers `{"error": "..."}` with a status; the classification below follows the
//! server's code (see `spec/opensync-api.md`): which 401s mean "stop until the user logs in",
//! which 500s are validator rejections (never retry) and which are transient (OCC conflicts).
//!
//! This file holds the client itself: its gate (`pause`, `logout`), one request and the
//! routes, the parsing of their answers. One submodule a job: `error` the failures and their
//! classes, `server` the read routes' shapes, `retry` backoff and the retry loops.

mod error;
mod retry;
mod server;

use std::time::Duration;

use serde::Deserialize;

use crate::credentials::ApiKey;
use crate::model::{MessagePayload, SessionPayload};

pub use error::{ErrorClass, HELD, PushError, classify};
pub use retry::{
    Backoff, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, MAX_RETRY_AFTER, RetryEnd,
    parse_retry_after, retry, retry_paced,
};
use server::SessionListing;
pub use server::{ServerMessage, ServerSession, SessionDetail};

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Normalised base URL.
    pub url: String,
    /// The key.
    pub api_key: ApiKey,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

/// Result of `/sync/batch`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOutcome {
    /// Sessions inserted or updated.
    pub sessions: u64,
    /// Messages inserted or updated.
    pub messages: u64,
    /// The server's `errors[]`.
    pub errors: Vec<String>,
    /// The whole sessions array was rejected (validator error).
    pub sessions_rejected: Option<String>,
    /// The whole messages array was rejected (validator error).
    pub messages_rejected: Option<String>,
    /// Per-message failures: (externalId, reason).
    pub failed_messages: Vec<(String, String)>,
}

/// The OpenSync client (cheap to clone; shares one connection pool).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: String,
    max_body: usize,
    /// Shared by every clone: closing it stops all of them at once.
    gate: std::sync::Arc<Gate>,
}

/// What lets the daemon stop every request of a client at once (`pause`, `logout`) and know
/// when the last one already on the wire has ended: after that, nothing more is sent with this
/// client's key until the gate opens again.
#[derive(Debug, Default)]
pub struct Gate {
    closed: std::sync::atomic::AtomicBool,
    on_wire: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

/// A request on the wire (counted until dropped).
struct OnWire<'a>(&'a Gate);

impl Drop for OnWire<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.0.on_wire.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Gate {
    /// Counts a request as on the wire, unless the gate is closed. Counting before looking
    /// at `closed` means a request either sees the gate closed or is waited for by
    /// [`Gate::wait_idle`]; none slips between the two.
    fn enter(&self) -> Option<OnWire<'_>> {
        use std::sync::atomic::Ordering::SeqCst;
        self.on_wire.fetch_add(1, SeqCst);
        let guard = OnWire(self);
        (!self.closed.load(SeqCst)).then_some(guard)
    }

    /// Whether requests are refused.
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until no request is on the wire.
    async fn wait_idle(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.on_wire.load(SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// Installs the TLS crypto provider once per process (ring: see build-notes).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

impl Client {
    /// Builds a client.
    pub fn new(opts: ClientOptions) -> Result<Client, PushError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("opensyncd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .gzip(true)
            .build()
            .map_err(|e| PushError::Setup(e.to_string()))?;
        Ok(Client {
            http,
            base: opts.url.trim_end_matches('/').to_string(),
            auth: format!("Bearer {}", opts.api_key.expose()),
            max_body: 4 * 1024 * 1024,
            gate: std::sync::Arc::default(),
        })
    }

    /// Stops every request of this client and its clones: each one not yet sent fails with
    /// [`PushError::Held`] from now on. [`Client::quiet`] waits for those already on the wire.
    pub fn hold(&self) {
        self.gate
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Returns once no request of this client is on the wire (or `within` passed): after
    /// [`Client::hold`], nothing more is sent with this key once it returns.
    pub async fn quiet(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.gate.wait_idle()).await;
    }

    /// Lets requests through again after [`Client::hold`].
    pub fn release(&self) {
        self.gate
            .closed
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`Client::hold`] is in force.
    pub fn is_held(&self) -> bool {
        self.gate.is_closed()
    }

    /// Sets the request body cap.
    pub fn with_max_body(mut self, max_body: usize) -> Client {
        self.max_body = max_body;
        self
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Vec<u8>), PushError> {
        let route = format!("{method} {path}");
        let Some(_on_wire) = self.gate.enter() else {
            return Err(PushError::Held { route });
        };
        if let Some(b) = &body
            && b.len() > self.max_body
        {
            return Err(PushError::TooLarge {
                route,
                size: b.len(),
                max: self.max_body,
            });
        }
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.auth);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        let network = |e: reqwest::Error, route: &str| PushError::Network {
            route: route.to_string(),
            timeout: e.is_timeout(),
            // reqwest errors name the URL, never headers, so the key cannot leak here.
            detail: error_chain(&e),
        };
        let resp = req.send().await.map_err(|e| network(e, &route))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let bytes = resp.bytes().await.map_err(|e| network(e, &route))?.to_vec();
        if (200..300).contains(&status) {
            return Ok((status, bytes));
        }
        let parsed: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        let json = is_json || parsed.is_some();
        let message =
            (parsed.and_then(|b| b.error)).unwrap_or_else(|| crate::answer_text::describe(&bytes));
        Err(PushError::Status {
            route,
            status,
            message,
            json,
            retry_after,
        })
    }

    async fn post_json<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<serde_json::Value, PushError> {
        let bytes = serde_json::to_vec(body).map_err(|e| PushError::Setup(e.to_string()))?;
        let (_, resp) = self.send(reqwest::Method::POST, path, Some(bytes)).await?;
        parse_ok(&format!("POST {path}"), &resp)
    }

    /// `POST /sync/session`.
    pub async fn upsert_session(&self, p: &SessionPayload) -> Result<(), PushError> {
        self.post_json("/sync/session", p).await.map(drop)
    }

    /// `POST /sync/message`.
    pub async fn upsert_message(&self, p: &MessagePayload) -> Result<(), PushError> {
        self.post_json("/sync/message", p).await.map(drop)
    }

    /// `POST /sync/batch` for first-time inserts: `createdAt` is stripped (the batch validator
    /// rejects it) and ids are de-duplicated (duplicates in one batch can insert two rows).
    pub async fn batch(
        &self,
        sessions: &[SessionPayload],
        messages: &[MessagePayload],
    ) -> Result<BatchOutcome, PushError> {
        let mut seen = std::collections::HashSet::new();
        let mut s_out: Vec<SessionPayload> = Vec::new();
        for s in sessions.iter().rev() {
            if seen.insert(s.external_id.clone()) {
                s_out.push(SessionPayload {
                    created_at: None,
                    ..s.clone()
                });
            }
        }
        s_out.reverse();
        let mut seen = std::collections::HashSet::new();
        let mut m_out: Vec<MessagePayload> = Vec::new();
        for m in messages.iter().rev() {
            if seen.insert(m.external_id.clone()) {
                m_out.push(MessagePayload {
                    created_at: None,
                    ..m.clone()
                });
            }
        }
        m_out.reverse();
        let body = serde_json::json!({ "sessions": s_out, "messages": m_out });
        let v = self.post_json("/sync/batch", &body).await?;
        let mut out = BatchOutcome {
            sessions: v["sessions"].as_u64().unwrap_or(0),
            messages: v["messages"].as_u64().unwrap_or(0),
            ..BatchOutcome::default()
        };
        for e in v["errors"].as_array().into_iter().flatten() {
            let e = e.as_str().map_or_else(|| e.to_string(), str::to_string);
            if let Some(rest) = e.strip_prefix("Sessions batch error: ") {
                out.sessions_rejected = Some(rest.to_string());
            } else if let Some(rest) = e.strip_prefix("Messages batch error: ") {
                out.messages_rejected = Some(rest.to_string());
            } else if let Some((id, reason)) = e.split_once(": ") {
                out.failed_messages
                    .push((id.to_string(), reason.to_string()));
            }
            out.errors.push(e);
        }
        Ok(out)
    }

    /// `GET /sync/sessions/list`: the external ids of the user's sessions.
    pub async fn list_sessions(&self) -> Result<Vec<String>, PushError> {
        let (_, body) = self
            .send(reqwest::Method::GET, "/sync/sessions/list", None)
            .await?;
        let v = parse_ok("GET /sync/sessions/list", &body)?;
        Ok(v["sessionIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|id| id.as_str().map(str::to_string))
            .collect())
    }

    /// `GET /health` (does not check the key).
    pub async fn health(&self) -> Result<(), PushError> {
        let (_, body) = self.send(reqwest::Method::GET, "/health", None).await?;
        let v = parse_ok("GET /health", &body)?;
        if v["status"] == "ok" {
            Ok(())
        } else {
            Err(PushError::BadResponse {
                route: "GET /health".into(),
                detail: "no `status: ok`".into(),
            })
        }
    }

    /// `GET /api/sessions?limit=N`: the user's `limit` most recently updated sessions, newest
    /// first, as the server holds them (no pagination, no `source` field).
    pub async fn api_sessions(&self, limit: usize) -> Result<Vec<ServerSession>, PushError> {
        let route = "GET /api/sessions";
        let (_, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/api/sessions?limit={limit}"),
                None,
            )
            .await?;
        let listing: SessionListing = parse_as(route, &body)?;
        Ok(listing.sessions)
    }

    /// `GET /api/sessions/get?id=<convex id>`: one session with its messages and their parts,
    /// in the server's order (`createdAt`, then insertion). `Ok(None)` when the server answers
    /// its own 404 (`Session not found`: gone, or another user's). A session too big for the
    /// server's read limits fails with a [`PushError`] whose [`PushError::is_read_limit`] holds.
    pub async fn api_session(&self, id: &str) -> Result<Option<SessionDetail>, PushError> {
        let route = "GET /api/sessions/get";
        let path = format!("/api/sessions/get?id={}", percent_encode(id));
        match self.send(reqwest::Method::GET, &path, None).await {
            Ok((_, body)) => parse_as(route, &body).map(Some),
            Err(PushError::Status {
                status: 404,
                json: true,
                message,
                ..
            }) if message == "Session not found" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Checks the key with an authenticated request (`/health` does not look at keys).
    pub async fn check_auth(&self) -> Result<(), PushError> {
        let (_, body) = self
            .send(reqwest::Method::GET, "/api/sessions?limit=1", None)
            .await?;
        parse_ok("GET /api/sessions", &body).map(drop)
    }
}

/// Parses a 2xx body into `T`; anything else is not OpenSync's answer.
fn parse_as<T: serde::de::DeserializeOwned>(route: &str, body: &[u8]) -> Result<T, PushError> {
    serde_json::from_slice(body).map_err(|e| PushError::BadResponse {
        route: route.to_string(),
        detail: format!(
            "not OpenSync's JSON ({e}: {})",
            String::from_utf8_lossy(&body[..body.len().min(80)]).trim()
        ),
    })
}

/// Percent-encodes a query value (Convex ids are alphanumeric; anything else is escaped).
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_ok(route: &str, body: &[u8]) -> Result<serde_json::Value, PushError> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .filter(serde_json::Value::is_object)
        .ok_or_else(|| PushError::BadResponse {
            route: route.to_string(),
            detail: format!(
                "not OpenSync's JSON ({})",
                crate::answer_text::describe(body)
            ),
        })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_gate_refuses_new_requests_and_is_quiet_once_those_on_the_wire_end() {
        use futures_util::FutureExt;
        let gate = Gate::default();
        let on_wire = gate.enter().expect("an open gate lets a request through");
        gate.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            gate.enter().is_none(),
            "a closed gate refuses the next request"
        );
        assert!(
            gate.wait_idle().now_or_never().is_none(),
            "not quiet while a request is on the wire"
        );
        drop(on_wire);
        assert!(gate.wait_idle().now_or_never().is_some());
    }

    #[tokio::test]
    async fn a_held_client_sends_nothing_and_says_why_until_released() {
        // Nothing listens on port 1: a request that left would fail with a network error.
        let client = Client::new(ClientOptions {
            url: "http://127.0.0.1:1".into(),
            api_key: ApiKey::parse("osk_gateTestKey0123456789abcdef").unwrap(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        })
        .unwrap();
        let clone = client.clone();
        client.hold();
        client.quiet(Duration::from_secs(1)).await;
        let err = clone.health().await.unwrap_err();
        assert!(matches!(err, PushError::Held { .. }), "{err}");
        assert_eq!(err.class(), ErrorClass::AuthPaused);
        assert!(err.to_string().contains(HELD), "{err}");
        client.release();
        let err = clone.health().await.unwrap_err();
        assert!(matches!(err, PushError::Network { .. }), "{err}");
    }

    #[test]
    fn read_route_answers_parse_leniently_and_anything_else_is_a_bad_response() {
        // As api.ts answers: optional fields left out, numbers as JSON numbers (a fractional
        // one from another client must not break the read), fields added later ignored.
        let body = br#"{"session": {"id": "k57abc", "externalId": "s1", "promptTokens": 12.5,
            "completionTokens": 3, "totalTokens": 15.5, "cost": 0, "isPublic": false,
            "messageCount": 1, "createdAt": 1780000000000, "updatedAt": 1780000000001,
            "summary": "added by a newer server"},
            "messages": [{"id": "k58", "externalId": "m1", "role": "tool", "createdAt": 5,
            "parts": [{"type": "tool-result", "content": {"result": ""}}]}]}"#;
        let detail: SessionDetail = parse_as("GET /api/sessions/get", body).unwrap();
        assert_eq!(detail.session.prompt_tokens, 12.5);
        assert_eq!(detail.session.title, None);
        assert_eq!(detail.messages[0].text_content, None);
        assert_eq!(detail.messages[0].parts[0].content["result"], "");
        for garbage in [
            &b"<html>Not found</html>"[..],
            br#"{"error": "x"}"#,
            br#"{"session": {"id": 1}, "messages": []}"#,
            b"",
        ] {
            let e = parse_as::<SessionDetail>("GET /api/sessions/get", garbage).unwrap_err();
            assert_eq!(e.class(), ErrorClass::WrongUrl, "{e}");
        }
        assert_eq!(percent_encode("k57 a&b=c"), "k57%20a%26b%3Dc");
    }
}
