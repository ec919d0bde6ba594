//! The OpenSync HTTP client: every sync route and the two read routes `audit` uses, typed
//! errors classified into retry / split / auth-paused / reject / wrong-URL (the retry decision
//! lives on the error, as in atuin), and full-jitter backoff honouring `Retry-After`.
//!
//! The server answers `{"error": "..."}` with a status; the classification below follows the
//! server's code (see `spec/opensync-api.md`): which 401s mean "stop until the user logs in",
//! which 500s are validator rejections (never retry) and which are transient (OCC conflicts).

use std::time::Duration;

use serde::Deserialize;

use crate::credentials::ApiKey;
use crate::model::{MessagePayload, Part, SessionPayload};

/// What the caller should do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient: back off and send the same request again.
    Retry,
    /// The request is too big for the server: split it and send the halves.
    Split,
    /// The key is missing, wrong or revoked: stop pushing until credentials change.
    AuthPaused,
    /// The server will never accept this record: quarantine it and move on.
    Reject,
    /// The URL points at something that is not OpenSync: stop pushing and say so.
    WrongUrl,
}

/// A failed request, with enough context to explain it. Never contains the key.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Connecting, sending or receiving failed.
    #[error("{route}: network error: {detail}")]
    Network {
        /// `POST /sync/message` etc.
        route: String,
        /// What failed.
        detail: String,
        /// The request timed out.
        timeout: bool,
    },
    /// The server answered with an error status.
    #[error("{route}: HTTP {status}: {message}")]
    Status {
        /// The route.
        route: String,
        /// HTTP status.
        status: u16,
        /// The server's `error` string, or the start of the body.
        message: String,
        /// The body was JSON (OpenSync always answers JSON; Convex's own 404 is not).
        json: bool,
        /// `Retry-After`, when sent.
        retry_after: Option<Duration>,
    },
    /// A 2xx whose body is not what OpenSync sends.
    #[error("{route}: unexpected answer: {detail}")]
    BadResponse {
        /// The route.
        route: String,
        /// What was wrong.
        detail: String,
    },
    /// The body would exceed the configured cap; split before sending.
    #[error("{route}: request body of {size} bytes exceeds the {max}-byte cap")]
    TooLarge {
        /// The route.
        route: String,
        /// Body size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The client could not be built.
    #[error("building the HTTP client: {0}")]
    Setup(String),
    /// Not sent: pushing is on hold on this machine (`opensyncd pause`, `logout`).
    #[error("{route}: not sent: {HELD} (paused or logged out)")]
    Held {
        /// The route.
        route: String,
    },
}

/// What a request refused by a closed [`Gate`] says (how the daemon tells its own hold from a
/// server's refusal).
pub const HELD: &str = "pushing is on hold on this machine";

/// 401 messages that mean the key itself is wrong (stop until the user logs in again).
const AUTH_FATAL: &[&str] = &[
    "Invalid API key",
    "Missing Authorization header",
    "Invalid or expired token",
];
/// 500 messages that mean the payload will never be accepted.
const REJECT_MARKERS: &[&str] = &[
    "ArgumentValidationError",
    "extra field",
    "does not match validator",
    "Field name",
    "Value is too large",
    "too large",
    "is not a valid",
    "Missing externalId",
];
/// Convex's read-limit errors (index ranges, bytes, documents per function execution).
const READ_LIMIT_MARKERS: &[&str] = &[
    "Too many reads",
    "Too many bytes read",
    "Too many documents read",
];
/// Messages that mean "too much in one request".
const SPLIT_MARKERS: &[&str] = &["Too many reads", "Too many writes", "Too many documents"];

impl PushError {
    /// The retry decision.
    pub fn class(&self) -> ErrorClass {
        match self {
            PushError::Network { .. } => ErrorClass::Retry,
            PushError::BadResponse { .. } => ErrorClass::WrongUrl,
            PushError::TooLarge { .. } => ErrorClass::Split,
            PushError::Setup(_) => ErrorClass::WrongUrl,
            // Stop this unit's pushing: the daemon resumes it when the hold is lifted.
            PushError::Held { .. } => ErrorClass::AuthPaused,
            PushError::Status {
                status,
                message,
                json,
                ..
            } => classify(*status, message, *json),
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PushError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server could not answer because the request reads more than a Convex function may
    /// (`Too many reads` / `Too many bytes read` / `Too many documents read`): for a read
    /// route this means the data is too large to return, not that anything is wrong.
    pub fn is_read_limit(&self) -> bool {
        matches!(self, PushError::Status { message, .. }
            if READ_LIMIT_MARKERS.iter().any(|m| message.contains(m)))
    }

    /// A 401 the server says is transient (its key lookup failed): retry a few times only.
    pub fn is_transient_auth(&self) -> bool {
        matches!(self, PushError::Status { status: 401, message, .. }
            if message.starts_with("API key validation failed") || message.starts_with("Auth failed"))
    }
}

/// Classifies a status and the server's message.
pub fn classify(status: u16, message: &str, json: bool) -> ErrorClass {
    let has = |markers: &[&str]| markers.iter().any(|m| message.contains(m));
    match status {
        401 if has(AUTH_FATAL) || message.contains("Invalid API key format") => {
            ErrorClass::AuthPaused
        }
        401 => ErrorClass::Retry, // "API key validation failed: ..." / "Auth failed: ..."
        403 => ErrorClass::AuthPaused,
        404 | 405 => ErrorClass::WrongUrl,
        408 | 429 => ErrorClass::Retry,
        413 => ErrorClass::Split,
        400 => ErrorClass::Reject,
        _ if !json && (200..500).contains(&status) => ErrorClass::WrongUrl,
        _ if has(SPLIT_MARKERS) => ErrorClass::Split,
        500 if has(REJECT_MARKERS) => ErrorClass::Reject,
        s if s >= 500 => ErrorClass::Retry,
        _ => ErrorClass::Reject,
    }
}

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

/// A session as the read routes (`/api/sessions`, `/api/sessions/get`) return it. Numbers are
/// Convex float64s, so they are read as `f64` (a fractional value written by another client
/// must not make the whole answer unreadable).
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerSession {
    /// The server's document id (what `/api/sessions/get?id=` takes).
    pub id: String,
    /// The client's session id.
    pub external_id: String,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Project path.
    #[serde(default)]
    pub project_path: Option<String>,
    /// Project name.
    #[serde(default)]
    pub project_name: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Prompt tokens (0 when never set).
    #[serde(default)]
    pub prompt_tokens: f64,
    /// Completion tokens (0 when never set).
    #[serde(default)]
    pub completion_tokens: f64,
    /// Prompt + completion, recomputed by the server.
    #[serde(default)]
    pub total_tokens: f64,
    /// USD (0 when never set).
    #[serde(default)]
    pub cost: f64,
    /// Duration.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Shared publicly.
    #[serde(default)]
    pub is_public: bool,
    /// Messages inserted (never decremented, never recomputed).
    #[serde(default)]
    pub message_count: f64,
    /// Epoch ms, fixed at insert.
    pub created_at: f64,
    /// Epoch ms (server clock) of the last write to the session or one of its messages.
    pub updated_at: f64,
}

/// A message as `/api/sessions/get` returns it.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerMessage {
    /// The server's document id.
    pub id: String,
    /// The client's message id.
    pub external_id: String,
    /// `user`, `assistant`, `system`, `tool` or `unknown`.
    pub role: String,
    /// Text.
    #[serde(default)]
    pub text_content: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Prompt tokens.
    #[serde(default)]
    pub prompt_tokens: Option<f64>,
    /// Completion tokens.
    #[serde(default)]
    pub completion_tokens: Option<f64>,
    /// Duration.
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// Epoch ms, fixed at insert.
    pub created_at: f64,
    /// Parts in order.
    #[serde(default)]
    pub parts: Vec<Part>,
}

/// The answer of `/api/sessions/get`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct SessionDetail {
    /// The session.
    pub session: ServerSession,
    /// Its messages, ordered by `createdAt` (ties in insertion order).
    pub messages: Vec<ServerMessage>,
}

#[derive(Deserialize)]
struct SessionListing {
    sessions: Vec<ServerSession>,
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

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
    let parts: Vec<&str> = value.split_whitespace().collect();
    if parts.len() != 6 || parts[5] != "GMT" {
        return None;
    }
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == parts[2])?
        + 1;
    let iso = format!(
        "{}-{:02}-{:02}T{}Z",
        parts[3],
        month,
        parts[1].parse::<u32>().ok()?,
        parts[4]
    );
    let at = crate::model::parse_timestamp_ms(&iso)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as i64;
    Some(Duration::from_millis((at - now).max(0) as u64))
}

/// Full-jitter exponential backoff: `random(0, min(cap, base * 2^attempt))`, never less than
/// the server's `Retry-After` (itself capped at `max_retry_after`).
#[derive(Debug)]
pub struct Backoff {
    /// First step.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Largest `Retry-After` honoured.
    pub max_retry_after: Duration,
    attempt: u32,
    rng: rand::rngs::StdRng,
}

impl Default for Backoff {
    fn default() -> Self {
        use rand::SeedableRng;
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
            rand::rngs::StdRng::from_rng(&mut rand::rng()),
        )
    }
}

impl Backoff {
    /// A backoff with its own random source (seed it for deterministic tests).
    pub fn new(base: Duration, cap: Duration, rng: rand::rngs::StdRng) -> Backoff {
        Backoff {
            base,
            cap,
            max_retry_after: Duration::from_secs(900),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Duration {
        use rand::RngExt;
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX));
        let ceiling = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let jittered = Duration::from_millis(self.rng.random_range(0..=ceiling.as_millis() as u64));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max_retry_after)),
            None => jittered,
        }
    }

    /// Call after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// How [`retry`] ended.
#[derive(Debug)]
pub enum RetryEnd {
    /// The server acknowledged the request.
    Acked,
    /// A failure that retrying cannot fix (any class but [`ErrorClass::Retry`]).
    Failed(PushError),
    /// Shutdown was requested while waiting.
    Stopped,
}

/// Sends `op` until it succeeds, fails for a reason other than a transient one, or `stopping`
/// turns true. Transient failures wait `backoff.next_delay(Retry-After)` on the tokio clock
/// (so tests can run it under a paused clock); `on_retry` sees each failure and its delay.
pub async fn retry<F, Fut>(
    op: F,
    backoff: &mut Backoff,
    stopping: &mut tokio::sync::watch::Receiver<bool>,
    mut on_retry: impl FnMut(&PushError, Duration),
) -> RetryEnd
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), PushError>>,
{
    loop {
        if *stopping.borrow() {
            return RetryEnd::Stopped;
        }
        let err = tokio::select! {
            result = op() => match result {
                Ok(()) => return RetryEnd::Acked,
                Err(err) => err,
            },
            _ = stopping.wait_for(|s| *s) => return RetryEnd::Stopped,
        };
        if err.class() != ErrorClass::Retry {
            return RetryEnd::Failed(err);
        }
        let delay = backoff.next_delay(err.retry_after());
        on_retry(&err, delay);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopping.wait_for(|s| *s) => return RetryEnd::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

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
    fn statuses_and_bodies_map_to_the_right_class() {
        let c = |s, m: &str| classify(s, m, true);
        assert_eq!(c(401, "Invalid API key"), ErrorClass::AuthPaused);
        assert_eq!(
            c(401, "Missing Authorization header"),
            ErrorClass::AuthPaused
        );
        assert_eq!(c(401, "Invalid or expired token"), ErrorClass::AuthPaused);
        assert_eq!(c(401, "Invalid API key format"), ErrorClass::AuthPaused);
        assert_eq!(
            c(401, "API key validation failed: timeout"),
            ErrorClass::Retry
        );
        assert_eq!(
            c(400, "Missing externalId or sessionId"),
            ErrorClass::Reject
        );
        assert_eq!(
            c(
                500,
                "ArgumentValidationError: Object contains extra field `toolName`"
            ),
            ErrorClass::Reject
        );
        assert_eq!(
            c(
                500,
                "Documents read from or written to the table changed while this mutation was being run"
            ),
            ErrorClass::Retry
        );
        assert_eq!(
            c(
                500,
                "Too many reads in a single function execution (limit: 4096)"
            ),
            ErrorClass::Split
        );
        assert_eq!(c(413, ""), ErrorClass::Split);
        assert_eq!(c(429, ""), ErrorClass::Retry);
        assert_eq!(c(408, ""), ErrorClass::Retry);
        assert_eq!(c(502, "Bad gateway"), ErrorClass::Retry);
        assert_eq!(c(503, ""), ErrorClass::Retry);
        assert_eq!(c(404, "No matching routes found"), ErrorClass::WrongUrl);
        assert_eq!(classify(404, "<html>", false), ErrorClass::WrongUrl);
    }

    #[test]
    fn backoff_is_bounded_by_the_cap_and_honours_retry_after() {
        let mut b = Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(300),
            rand::rngs::StdRng::seed_from_u64(1),
        );
        for attempt in 0..40 {
            let d = b.next_delay(None);
            let ceiling =
                Duration::from_secs(1u64 << attempt.min(20)).min(Duration::from_secs(300));
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        b.reset();
        assert!(b.next_delay(Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(100_000)))
                .max(Duration::from_secs(900)),
            Duration::from_secs(900)
        );
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

    #[test]
    fn read_limit_errors_are_told_apart() {
        let status = |message: &str| PushError::Status {
            route: "GET /api/sessions/get".into(),
            status: 500,
            message: message.into(),
            json: true,
            retry_after: None,
        };
        for m in [
            "Uncaught Error: Too many reads in a single function execution (limit: 4096).",
            "Too many bytes read in a single function execution (limit: 16777216 bytes).",
            "Too many documents read in a single function execution (limit: 32000).",
        ] {
            assert!(status(m).is_read_limit(), "{m}");
        }
        assert!(!status("Documents read from or written to the table changed").is_read_limit());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
