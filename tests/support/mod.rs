//! An in-process emulation of the OpenSync server (its Convex HTTP actions), faithful to
//! `spec/opensync-api.md`: the same routes, auth answers, validators, upsert semantics and
//! traps (global message ids, dedup windows, batch wiping parts, `ok` on failure), plus fault
//! injection. Its read routes (`/api/sessions`, `/api/sessions/get`) answer like the server's
//! `convex/api.ts` (fields, order, Convex's read limits, errors), and test-only helpers damage
//! its state so `audit` can be tested against a server that differs from `export`. It runs on 127.0.0.1:0 on its own thread and runtime, so blocking process tests
//! and async tests can both use it; it stops when dropped.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use serde_json::{Map, Value, json};

/// A user of the emulated deployment.
pub type UserId = usize;

/// A stored session row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// Convex document id.
    pub id: String,
    /// Owner.
    pub user: UserId,
    /// Client id.
    pub external_id: String,
    /// Title.
    pub title: Option<String>,
    /// Project path.
    pub project_path: Option<String>,
    /// Project name.
    pub project_name: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Provider.
    pub provider: Option<String>,
    /// Source id.
    pub source: Option<String>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Recomputed total.
    pub total_tokens: u64,
    /// USD.
    pub cost: f64,
    /// Duration.
    pub duration_ms: Option<u64>,
    /// Newly inserted messages counted.
    pub message_count: u64,
    /// Epoch ms (client-supplied on insert, else server time).
    pub created_at: i64,
    /// Server time of the last write.
    pub updated_at: i64,
}

/// A stored part.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPart {
    /// `type`.
    pub kind: String,
    /// `content`.
    pub content: Value,
}

/// A stored message row.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// Convex document id.
    pub id: String,
    /// The session document id it belongs to (never changes).
    pub session_id: String,
    /// Client id (looked up globally).
    pub external_id: String,
    /// Role.
    pub role: String,
    /// Text.
    pub text_content: Option<String>,
    /// Model.
    pub model: Option<String>,
    /// Prompt tokens (as sent; float64 like every Convex number).
    pub prompt_tokens: Option<f64>,
    /// Completion tokens.
    pub completion_tokens: Option<f64>,
    /// Duration.
    pub duration_ms: Option<f64>,
    /// Epoch ms.
    pub created_at: i64,
    /// Parts in order.
    pub parts: Vec<StoredPart>,
    /// Insert order.
    pub seq: u64,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// The status sent, or 0 when the connection was dropped.
    pub status: u16,
    /// The body, when JSON.
    pub body: Option<Value>,
    /// Raw body text.
    pub raw: String,
    /// The Authorization header carried a known key.
    pub authorized: bool,
}

/// Convex's per-function read limits (`limits.mdx`): a query that exceeds one fails with
/// `Too many reads` / `Too many documents read` / `Too many bytes read`.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Index ranges (`db.get` / `db.query` calls): 4,096.
    pub index_ranges: usize,
    /// Documents scanned: 32,000.
    pub documents: usize,
    /// Bytes read: 16 MiB (documents measured as their JSON).
    pub bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            index_ranges: 4096,
            documents: 32_000,
            bytes: 16 * 1024 * 1024,
        }
    }
}

/// Fault injection settings.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Share of requests answered with a transient 5xx.
    pub error_rate: f64,
    /// Share answered 429 with `Retry-After`.
    pub rate_429: f64,
    /// The `Retry-After` value for 429s.
    pub retry_after_secs: u64,
    /// Share whose connection is dropped before the write is applied.
    pub drop_before_rate: f64,
    /// Share whose connection is dropped after the write is applied (ack lost).
    pub drop_after_rate: f64,
    /// Seed of the fault sequence.
    pub seed: u64,
}

#[derive(Default)]
struct State {
    keys: Vec<Option<String>>,
    sessions: Vec<StoredSession>,
    messages: Vec<StoredMessage>,
    requests: Vec<RecordedRequest>,
    faults: Faults,
    rng: u64,
    outage: bool,
    latency: Duration,
    windows: bool,
    next_id: u64,
    fail_next: VecDeque<(u16, String)>,
    /// Failures for one route only: (route, status, error).
    fail_route: VecDeque<(String, u16, String)>,
    read_limits: ReadLimits,
    /// One `apiLogs` row per successful `/api/*` call: the endpoint.
    api_logs: Vec<String>,
    generation: u64,
    /// Keep every request (tests) or only count them (benchmarks of large backfills).
    recording: bool,
    /// Milliseconds added to the system clock: tests advance it to cross the dedup windows
    /// without waiting (shared with the engines under test, or written to `clock_file`).
    clock: Arc<std::sync::atomic::AtomicI64>,
    /// Where the offset is also written, for a daemon process reading it
    /// (`OPENSYNCD_TEST_CLOCK_FILE`).
    clock_file: Option<std::path::PathBuf>,
    /// A request to hang on (a client killed mid-request): after this many more requests,
    /// whether the write is applied before hanging.
    hang: Option<(u64, bool)>,
    /// Told when a request hangs.
    hung: Arc<tokio::sync::Notify>,
    request_count: u64,
    /// Lookup indexes (rebuilt after the batch paths' reshuffles): message external id → first
    /// row; session row id → row; (user, session external id) → first row.
    msg_index: HashMap<String, usize>,
    session_by_id: HashMap<String, usize>,
    session_by_ext: HashMap<(UserId, String), usize>,
}

struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

/// The running emulation.
pub struct Emulation {
    inner: Arc<Inner>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl State {
    /// The server's now: the system clock plus the offset tests advance.
    fn now(&self) -> i64 {
        now_ms() + self.clock.load(std::sync::atomic::Ordering::Relaxed)
    }
}

enum Answer {
    Respond(u16, Value, Vec<(&'static str, String)>),
    Text(u16, String),
    Drop,
}

impl Emulation {
    /// Starts an emulation with no users.
    pub fn start() -> Emulation {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                windows: true,
                recording: true,
                rng: 0x9e37_79b9_7f4a_7c15,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_inner = inner.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("emulation runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let mut stop_rx = stop_rx;
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let inner = server_inner.clone();
                            tokio::spawn(async move {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let service = hyper::service::service_fn(move |req| {
                                    let inner = inner.clone();
                                    async move { handle(inner, req).await }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .keep_alive(true)
                                    .serve_connection(io, service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        let addr = addr_rx.recv().expect("emulation address");
        Emulation {
            inner,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Starts an emulation with one user holding `key` (user 0).
    pub fn with_key(key: &str) -> Emulation {
        let emu = Emulation::start();
        emu.add_user(key);
        emu
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a user with `key`.
    pub fn add_user(&self, key: &str) -> UserId {
        let mut s = self.lock();
        s.keys.push(Some(key.to_string()));
        s.keys.len() - 1
    }

    /// The first user.
    pub fn default_user(&self) -> UserId {
        0
    }

    /// Revokes a user's key (every request with it gets 401 `Invalid API key`).
    pub fn revoke_key(&self, user: UserId) {
        self.lock().keys[user] = None;
    }

    /// Gives a user a new key.
    pub fn set_key(&self, user: UserId, key: &str) {
        self.lock().keys[user] = Some(key.to_string());
    }

    /// Sets fault injection.
    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.lock();
        s.rng = faults.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        s.faults = faults;
    }

    /// Adds latency to every request.
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Every request's connection is dropped until `end_outage`.
    pub fn start_outage(&self) {
        self.lock().outage = true;
    }

    /// Ends an outage.
    pub fn end_outage(&self) {
        self.lock().outage = false;
    }

    /// The next request(s) get this status and `{"error": body}`.
    pub fn fail_next(&self, status: u16, error: &str, times: usize) {
        let mut s = self.lock();
        for _ in 0..times {
            s.fail_next.push_back((status, error.to_string()));
        }
    }

    /// Stops keeping request bodies (only counts them): for benchmarks with large backfills.
    pub fn set_recording(&self, on: bool) {
        self.lock().recording = on;
    }

    /// Requests received so far (recorded or not).
    pub fn request_count(&self) -> u64 {
        self.lock().request_count
    }

    /// Stored messages, all users.
    pub fn message_count(&self) -> usize {
        self.lock().messages.len()
    }

    /// Whether a message with this external id is stored.
    pub fn has_message(&self, external_id: &str) -> bool {
        self.lock().msg_index.contains_key(external_id)
    }

    /// The clock offset (ms) the server runs on; give it to an engine in this process
    /// (`Clock::shared`) so that both see the same time.
    pub fn clock(&self) -> Arc<std::sync::atomic::AtomicI64> {
        self.lock().clock.clone()
    }

    /// A file holding the clock offset, kept up to date, for a daemon process
    /// (`OPENSYNCD_TEST_CLOCK_FILE`).
    pub fn clock_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("test-clock");
        let mut s = self.lock();
        let offset = s.clock.load(std::sync::atomic::Ordering::Relaxed);
        std::fs::write(&path, offset.to_string()).expect("clock file");
        s.clock_file = Some(path.clone());
        path
    }

    /// Moves the server's clock (and the clock file, if any) forward.
    pub fn advance_clock(&self, by: Duration) {
        let s = self.lock();
        let offset = s
            .clock
            .fetch_add(by.as_millis() as i64, std::sync::atomic::Ordering::Relaxed)
            + by.as_millis() as i64;
        if let Some(path) = &s.clock_file {
            // Written whole then renamed: a reader never sees half a number.
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, offset.to_string()).expect("clock file");
            std::fs::rename(&tmp, path).expect("clock file");
        }
    }

    /// Makes the request after the next `requests` hang for ever, with or without applying its
    /// write first — the server side of a client killed mid-request. Returns what is told
    /// when it hangs.
    pub fn hang_after(&self, requests: u64, apply: bool) -> Arc<tokio::sync::Notify> {
        let mut s = self.lock();
        s.hang = Some((requests, apply));
        s.hung.clone()
    }

    /// Cancels a hang that has not happened.
    pub fn clear_hang(&self) {
        self.lock().hang = None;
    }

    /// Switches the dedup windows off (for tests that are not about them).
    pub fn disable_windows(&self) {
        self.lock().windows = false;
    }

    /// Switches the dedup windows back on.
    pub fn enable_windows(&self) {
        self.lock().windows = true;
    }

    /// The next `times` requests to `route` (a path without query, e.g. `/api/sessions/get`)
    /// get this status and `{"error": error}`; other routes are unaffected.
    pub fn fail_next_on(&self, route: &str, status: u16, error: &str, times: usize) {
        let mut s = self.lock();
        for _ in 0..times {
            s.fail_route
                .push_back((route.to_string(), status, error.to_string()));
        }
    }

    /// Sets Convex's read limits for the read routes (lower them to make a session too large
    /// to return).
    pub fn set_read_limits(&self, limits: ReadLimits) {
        self.lock().read_limits = limits;
    }

    /// The `apiLogs` rows written so far (one endpoint per successful `/api/*` call).
    pub fn api_logs(&self) -> Vec<String> {
        self.lock().api_logs.clone()
    }

    /// Test-only damage: changes a stored session row in place (no write is recorded and
    /// `updatedAt` does not move, as if the row had been like this all along).
    pub fn edit_session(
        &self,
        user: UserId,
        external_id: &str,
        edit: impl FnOnce(&mut StoredSession),
    ) {
        let mut s = self.lock();
        let row = s
            .sessions
            .iter_mut()
            .find(|x| x.user == user && x.external_id == external_id)
            .unwrap_or_else(|| panic!("no session {external_id}"));
        edit(row);
        row.total_tokens = row.prompt_tokens + row.completion_tokens;
        s.generation += 1;
        self.inner.changed.notify_all();
    }

    /// Test-only damage: changes a stored message row in place (text, parts, role, ...).
    pub fn edit_message(&self, external_id: &str, edit: impl FnOnce(&mut StoredMessage)) {
        let mut s = self.lock();
        let i = *s
            .msg_index
            .get(external_id)
            .unwrap_or_else(|| panic!("no message {external_id}"));
        edit(&mut s.messages[i]);
        s.generation += 1;
        self.inner.changed.notify_all();
    }

    /// Test-only damage: deletes a message row and its parts.
    pub fn delete_message(&self, external_id: &str) {
        let mut s = self.lock();
        s.messages.retain(|m| m.external_id != external_id);
        reindex(&mut s);
        s.generation += 1;
        self.inner.changed.notify_all();
    }

    /// Test-only damage: deletes a session row with its messages (as the dashboard's delete
    /// does).
    pub fn delete_session(&self, user: UserId, external_id: &str) {
        let mut s = self.lock();
        let ids: Vec<String> = s
            .sessions
            .iter()
            .filter(|x| x.user == user && x.external_id == external_id)
            .map(|x| x.id.clone())
            .collect();
        s.sessions
            .retain(|x| !(x.user == user && x.external_id == external_id));
        s.messages.retain(|m| !ids.contains(&m.session_id));
        reindex(&mut s);
        s.generation += 1;
        self.inner.changed.notify_all();
    }

    /// Test-only damage: stores a message the client never sent (another tool's plugin, say)
    /// in a session, with the given parts.
    pub fn add_foreign_message(
        &self,
        user: UserId,
        session_external_id: &str,
        external_id: &str,
        role: &str,
        text: &str,
        created_at: i64,
    ) {
        let mut s = self.lock();
        let session_id = s
            .sessions
            .iter()
            .find(|x| x.user == user && x.external_id == session_external_id)
            .map(|x| x.id.clone())
            .unwrap_or_else(|| panic!("no session {session_external_id}"));
        let id = new_id(&mut s, "messages");
        let seq = s.next_id;
        s.messages.push(StoredMessage {
            id,
            session_id,
            external_id: external_id.to_string(),
            role: role.to_string(),
            text_content: Some(text.to_string()),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
            duration_ms: None,
            created_at,
            parts: vec![StoredPart {
                kind: "text".into(),
                content: Value::String(text.to_string()),
            }],
            seq,
        });
        reindex(&mut s);
        s.generation += 1;
        self.inner.changed.notify_all();
    }

    /// All requests so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// A user's sessions.
    pub fn sessions(&self, user: UserId) -> Vec<StoredSession> {
        self.lock()
            .sessions
            .iter()
            .filter(|s| s.user == user)
            .cloned()
            .collect()
    }

    /// One session by external id.
    pub fn session(&self, user: UserId, external_id: &str) -> Option<StoredSession> {
        self.lock()
            .sessions
            .iter()
            .find(|s| s.user == user && s.external_id == external_id)
            .cloned()
    }

    /// Every message row.
    pub fn all_messages(&self) -> Vec<StoredMessage> {
        self.lock().messages.clone()
    }

    /// A session's messages in insertion order.
    pub fn messages_of_session(&self, user: UserId, external_id: &str) -> Vec<StoredMessage> {
        let s = self.lock();
        let Some(session) = s
            .sessions
            .iter()
            .find(|x| x.user == user && x.external_id == external_id)
        else {
            return Vec::new();
        };
        s.messages
            .iter()
            .filter(|m| m.session_id == session.id)
            .cloned()
            .collect()
    }

    /// External ids stored more than once (sessions per user, messages globally).
    pub fn duplicate_rows(&self) -> Vec<String> {
        let s = self.lock();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for x in &s.sessions {
            *counts
                .entry(format!("session {}:{}", x.user, x.external_id))
                .or_default() += 1;
        }
        for m in &s.messages {
            *counts
                .entry(format!("message {}", m.external_id))
                .or_default() += 1;
        }
        let mut dups: Vec<String> = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect();
        dups.sort();
        dups
    }

    /// Waits until `pred` holds (re-checked on every state change) or `timeout` passes.
    pub fn wait_for(&self, timeout: Duration, mut pred: impl FnMut(&Emulation) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let generation = self.lock().generation;
            if pred(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let guard = self.lock();
            if guard.generation == generation {
                // Wake on the next change; re-check at least every 250 ms for predicates that
                // depend on things outside the server (files, processes).
                let wait = (deadline - now).min(Duration::from_millis(250));
                let _ = self.inner.changed.wait_timeout(guard, wait);
            }
        }
    }
}

impl Drop for Emulation {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn next_random(s: &mut State) -> f64 {
    s.rng ^= s.rng << 13;
    s.rng ^= s.rng >> 7;
    s.rng ^= s.rng << 17;
    (s.rng >> 11) as f64 / (1u64 << 53) as f64
}

async fn handle(
    inner: Arc<Inner>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let latency = inner
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut hang = None;
    let answer = {
        let mut s = inner.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((left, apply)) = s.hang {
            if left == 0 {
                s.hang = None;
                hang = Some((apply, s.hung.clone()));
            } else {
                s.hang = Some((left - 1, apply));
            }
        }
        let answer = if matches!(hang, Some((false, _))) {
            Answer::Drop
        } else {
            decide(&mut s, &method, &path, auth.as_deref(), &body)
        };
        let status = match &answer {
            Answer::Respond(st, ..) | Answer::Text(st, _) => *st,
            Answer::Drop => 0,
        };
        s.request_count += 1;
        if s.recording {
            let raw = String::from_utf8_lossy(&body).into_owned();
            let authorized = auth
                .as_deref()
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|k| s.keys.iter().flatten().any(|known| known == k));
            s.requests.push(RecordedRequest {
                method,
                path,
                status,
                body: serde_json::from_slice(&body).ok(),
                raw,
                authorized,
            });
        }
        s.generation += 1;
        inner.changed.notify_all();
        answer
    };
    if let Some((_, hung)) = hang {
        // The client is killed while it waits: this answer never comes.
        hung.notify_one();
        std::future::pending::<()>().await;
    }
    match answer {
        Answer::Drop => Err(std::io::Error::other(
            "connection dropped by fault injection",
        )),
        Answer::Respond(status, value, headers) => {
            let mut resp = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
                .header("Content-Type", "application/json")
                .header("Access-Control-Allow-Origin", "*");
            for (k, v) in headers {
                resp = resp.header(k, v);
            }
            Ok(resp
                .body(Full::new(Bytes::from(value.to_string())))
                .expect("response"))
        }
        Answer::Text(status, text) => Ok(Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND))
            .header("Content-Type", "text/plain")
            .body(Full::new(Bytes::from(text)))
            .expect("response")),
    }
}

fn err(status: u16, msg: impl Into<String>) -> Answer {
    Answer::Respond(status, json!({ "error": msg.into() }), Vec::new())
}

/// Decides the answer and applies writes. Everything happens under the state lock, so each
/// request is one serializable transaction (like a Convex mutation).
fn decide(s: &mut State, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Answer {
    if s.outage {
        return Answer::Drop;
    }
    if body.len() > 16 * 1024 * 1024 {
        return err(413, "Request body too large");
    }
    let route = path.split('?').next().unwrap_or_default();
    let known = matches!(
        (method, route),
        ("POST", "/sync/session" | "/sync/message" | "/sync/batch")
            | (
                "GET",
                "/sync/sessions/list" | "/api/sessions" | "/api/sessions/get" | "/health"
            )
    );
    if !known {
        return Answer::Text(404, "No matching routes found".into());
    }
    if route == "/health" {
        return Answer::Respond(
            200,
            json!({"status": "ok", "timestamp": s.now()}),
            Vec::new(),
        );
    }
    if let Some((status, msg)) = s.fail_next.pop_front() {
        return err(status, msg);
    }
    if let Some(i) = s.fail_route.iter().position(|(r, ..)| r == route)
        && let Some((_, status, msg)) = s.fail_route.remove(i)
    {
        return err(status, msg);
    }
    // Random faults.
    let f = s.faults.clone();
    if f.drop_before_rate > 0.0 && next_random(s) < f.drop_before_rate {
        return Answer::Drop;
    }
    if f.rate_429 > 0.0 && next_random(s) < f.rate_429 {
        return Answer::Respond(
            429,
            json!({"error": "Too Many Requests"}),
            vec![("Retry-After", f.retry_after_secs.to_string())],
        );
    }
    if f.error_rate > 0.0 && next_random(s) < f.error_rate {
        return if next_random(s) < 0.5 {
            err(
                500,
                "Documents read from or written to the \"sessions\" table changed while this mutation was being run and on every subsequent retry.",
            )
        } else {
            Answer::Text(503, "Service Unavailable".into())
        };
    }
    // Auth.
    let user = match auth_user(s, route, auth) {
        Ok(u) => u,
        Err(a) => return a,
    };
    let answer = match (method, route) {
        ("GET", "/sync/sessions/list") => {
            let ids: Vec<String> = s
                .sessions
                .iter()
                .filter(|x| x.user == user)
                .map(|x| x.external_id.clone())
                .collect();
            Answer::Respond(200, json!({"sessionIds": ids}), Vec::new())
        }
        ("GET", "/api/sessions") => api_sessions(s, user, path),
        ("GET", "/api/sessions/get") => api_session_get(s, user, path),
        ("POST", "/sync/session") => match parse_body(body) {
            Err(e) => err(500, e),
            Ok(v) => sync_session(s, user, &v),
        },
        ("POST", "/sync/message") => match parse_body(body) {
            Err(e) => err(500, e),
            Ok(v) => match sync_message(s, user, &v, false) {
                Ok(id) => Answer::Respond(200, json!({"ok": true, "messageId": id}), Vec::new()),
                Err(e) => err(500, e),
            },
        },
        ("POST", "/sync/batch") => match parse_body(body) {
            Err(e) => err(500, e),
            Ok(v) => sync_batch(s, user, &v),
        },
        _ => Answer::Text(404, "No matching routes found".into()),
    };
    if f.drop_after_rate > 0.0 && next_random(s) < f.drop_after_rate {
        return Answer::Drop;
    }
    answer
}

fn auth_user(s: &State, route: &str, auth: Option<&str>) -> Result<UserId, Answer> {
    let list = route == "/sync/sessions/list";
    let Some(header) = auth else {
        return Err(err(
            401,
            if list {
                "Invalid API key format"
            } else {
                "Missing Authorization header"
            },
        ));
    };
    let Some(key) = header.strip_prefix("Bearer osk_").map(|_| &header[7..]) else {
        return Err(err(
            401,
            if list {
                "Invalid API key format"
            } else {
                "Invalid or expired token"
            },
        ));
    };
    s.keys
        .iter()
        .position(|k| k.as_deref() == Some(key))
        .ok_or_else(|| err(401, "Invalid API key"))
}

fn parse_body(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("SyntaxError: {e}"))?;
    if v.is_null() {
        return Err("TypeError: Cannot read properties of null".into());
    }
    Ok(v)
}

fn new_id(s: &mut State, table: &str) -> String {
    s.next_id += 1;
    format!("{table}_{:08}", s.next_id)
}

/// Convex's `v.optional(v.string())` etc.: absent is fine, `null` or a wrong type is not.
fn opt_string(v: &Value, key: &str) -> Result<Option<String>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::String(x)) => Ok(Some(x.clone())),
        Some(other) => Err(format!(
            "ArgumentValidationError: Value does not match validator.\nPath: .{key}\nValue: {other}\nValidator: v.string()"
        )),
    }
}

fn opt_number(v: &Value, key: &str) -> Result<Option<f64>, String> {
    match v.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(format!(
            "ArgumentValidationError: Value does not match validator.\nPath: .{key}\nValue: {other}\nValidator: v.float64()"
        )),
    }
}

fn check_field_names(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                if k.starts_with('$') {
                    return Err(format!(
                        "Field name {k} starts with a '$', which is reserved."
                    ));
                }
                if !k.is_ascii() || k.chars().any(char::is_control) {
                    return Err(format!("Field name {k} has invalid character"));
                }
                check_field_names(inner)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_field_names),
        _ => Ok(()),
    }
}

const SESSION_FIELDS: &[&str] = &[
    "externalId",
    "title",
    "projectPath",
    "projectName",
    "model",
    "provider",
    "source",
    "promptTokens",
    "completionTokens",
    "cost",
    "durationMs",
];
const MESSAGE_FIELDS: &[&str] = &[
    "sessionExternalId",
    "externalId",
    "role",
    "textContent",
    "model",
    "promptTokens",
    "completionTokens",
    "durationMs",
    "source",
    "parts",
];

fn sync_session(s: &mut State, user: UserId, v: &Value) -> Answer {
    let external = v
        .get("externalId")
        .and_then(Value::as_str)
        .filter(|x| !x.is_empty())
        .or_else(|| {
            v.get("sessionId")
                .and_then(Value::as_str)
                .filter(|x| !x.is_empty())
        });
    let Some(external) = external.map(str::to_string) else {
        return err(400, "Missing externalId or sessionId");
    };
    match upsert_session(s, user, &external, v, true, true) {
        Ok(id) => Answer::Respond(200, json!({"ok": true, "sessionId": id}), Vec::new()),
        Err(e) => err(500, e),
    }
}

fn upsert_session(
    s: &mut State,
    user: UserId,
    external: &str,
    v: &Value,
    with_created_at: bool,
    full_window_check: bool,
) -> Result<String, String> {
    let title = opt_string(v, "title")?;
    let project_path = opt_string(v, "projectPath")?;
    let project_name = opt_string(v, "projectName")?;
    let model = opt_string(v, "model")?;
    let provider = opt_string(v, "provider")?;
    let source = opt_string(v, "source")?;
    let prompt = opt_number(v, "promptTokens")?.unwrap_or(0.0) as u64;
    let completion = opt_number(v, "completionTokens")?.unwrap_or(0.0) as u64;
    let cost = opt_number(v, "cost")?;
    let duration = opt_number(v, "durationMs")?.map(|d| d as u64);
    let created_at = if with_created_at {
        opt_number(v, "createdAt")?.map(|c| c as i64)
    } else {
        None
    };
    let now = s.now();
    let windows = s.windows;
    if let Some(row) = s
        .sessions
        .iter_mut()
        .find(|x| x.user == user && x.external_id == external)
    {
        let same_tokens = |new: u64, old: u64| new == 0 || new == old;
        let skip = windows
            && now - row.updated_at < 10_000
            && title == row.title
            && model == row.model
            && (!full_window_check || project_path == row.project_path)
            && same_tokens(prompt, row.prompt_tokens)
            && (!full_window_check || same_tokens(completion, row.completion_tokens));
        if skip {
            return Ok(row.id.clone());
        }
        if prompt > 0 {
            row.prompt_tokens = prompt;
        }
        if completion > 0 {
            row.completion_tokens = completion;
        }
        row.total_tokens = row.prompt_tokens + row.completion_tokens;
        if let Some(c) = cost {
            row.cost = c;
        }
        if duration.is_some() {
            row.duration_ms = duration;
        }
        for (slot, value) in [
            (&mut row.title, title),
            (&mut row.project_path, project_path),
            (&mut row.project_name, project_name),
            (&mut row.model, model),
            (&mut row.provider, provider),
            (&mut row.source, source),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        row.updated_at = now;
        return Ok(row.id.clone());
    }
    let id = new_id(s, "sessions");
    let source = Some(match source.as_deref() {
        None => "opencode".to_string(),
        Some("cursor") => "cursor-sync".to_string(),
        Some(other) => other.to_string(),
    });
    s.session_by_id.insert(id.clone(), s.sessions.len());
    s.session_by_ext
        .entry((user, external.to_string()))
        .or_insert(s.sessions.len());
    s.sessions.push(StoredSession {
        id: id.clone(),
        user,
        external_id: external.to_string(),
        title,
        project_path,
        project_name,
        model,
        provider,
        source,
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cost: cost.unwrap_or(0.0),
        duration_ms: duration,
        message_count: 0,
        created_at: created_at.unwrap_or(now),
        updated_at: now,
    });
    Ok(id)
}

fn validate_parts(v: &Value) -> Result<Option<Vec<StoredPart>>, String> {
    let Some(parts) = v.get("parts") else {
        return Ok(None);
    };
    let Value::Array(items) = parts else {
        return Err("ArgumentValidationError: Value does not match validator.\nPath: .parts\nValidator: v.array(...)".into());
    };
    if items.len() > 8192 {
        return Err("Array length is too long (8192 maximum)".into());
    }
    let mut out = Vec::new();
    for (i, p) in items.iter().enumerate() {
        let Value::Object(map) = p else {
            return Err(format!(
                "ArgumentValidationError: Value does not match validator.\nPath: .parts[{i}]"
            ));
        };
        for k in map.keys() {
            if k != "type" && k != "content" {
                return Err(format!(
                    "ArgumentValidationError: Object contains extra field `{k}` that is not in the validator.\nPath: .parts[{i}]"
                ));
            }
        }
        let Some(Value::String(kind)) = map.get("type") else {
            return Err(format!(
                "ArgumentValidationError: Object is missing the required field `type`.\nPath: .parts[{i}]"
            ));
        };
        let content = map.get("content").cloned().unwrap_or(Value::Null);
        check_field_names(&content)?;
        if content.to_string().len() > 1024 * 1024 {
            return Err("Value is too large (document size limit 1 MiB)".into());
        }
        out.push(StoredPart {
            kind: kind.clone(),
            content,
        });
    }
    Ok(Some(out))
}

fn sync_message(s: &mut State, user: UserId, v: &Value, via_batch: bool) -> Result<String, String> {
    let session_external = match v.get("sessionExternalId") {
        Some(Value::String(x)) => x.clone(),
        _ => return Err(
            "ArgumentValidationError: Object is missing the required field `sessionExternalId`."
                .into(),
        ),
    };
    let external = match v.get("externalId") {
        Some(Value::String(x)) => x.clone(),
        _ => {
            return Err(
                "ArgumentValidationError: Object is missing the required field `externalId`."
                    .into(),
            );
        }
    };
    let role = match v.get("role").and_then(Value::as_str) {
        Some(r @ ("user" | "assistant" | "system" | "tool" | "unknown")) => r.to_string(),
        _ => {
            return Err(
                "ArgumentValidationError: Value does not match validator.\nPath: .role".into(),
            );
        }
    };
    let text = opt_string(v, "textContent")?;
    let model = opt_string(v, "model")?;
    let source = opt_string(v, "source")?;
    let prompt_tokens = opt_number(v, "promptTokens")?;
    let completion_tokens = opt_number(v, "completionTokens")?;
    let duration_ms = opt_number(v, "durationMs")?;
    let created_at = if via_batch {
        None
    } else {
        opt_number(v, "createdAt")?.map(|c| c as i64)
    };
    if text.as_ref().is_some_and(|t| t.len() > 1024 * 1024) {
        return Err("Value is too large (document size limit 1 MiB)".into());
    }
    let parts = validate_parts(v)?;
    let now = s.now();
    let windows = s.windows;
    // The trap: looked up by externalId alone, across users and sessions.
    if let Some(i) = s.msg_index.get(&external).copied() {
        let m = &mut s.messages[i];
        if windows && now - m.created_at < 5_000 {
            return Ok(m.id.clone());
        }
        if text.is_some() {
            m.text_content = text;
        }
        if model.is_some() {
            m.model = model;
        }
        // `??`: an omitted field keeps its old value.
        for (slot, value) in [
            (&mut m.prompt_tokens, prompt_tokens),
            (&mut m.completion_tokens, completion_tokens),
            (&mut m.duration_ms, duration_ms),
        ] {
            if value.is_some() {
                *slot = value;
            }
        }
        // The session is patched (and its `updatedAt` bumped) only when the update carries
        // text parts to append to its search text (`convex/messages.ts`).
        let has_text = parts.as_ref().is_some_and(|ps| {
            ps.iter().any(|p| {
                p.kind == "text"
                    && match &p.content {
                        Value::String(t) => !t.is_empty(),
                        Value::Object(o) => o
                            .get("text")
                            .or_else(|| o.get("content"))
                            .and_then(Value::as_str)
                            .is_some_and(|t| !t.is_empty()),
                        _ => false,
                    }
            })
        });
        // Parts are deleted, then re-inserted — except through batch (the server bug).
        m.parts = if via_batch {
            Vec::new()
        } else {
            parts.unwrap_or_default()
        };
        let session_id = m.session_id.clone();
        let id = m.id.clone();
        if has_text && let Some(&p) = s.session_by_id.get(&session_id) {
            s.sessions[p].updated_at = now;
        }
        return Ok(id);
    }
    let session_id = match s
        .session_by_ext
        .get(&(user, session_external.clone()))
        .copied()
    {
        Some(i) => s.sessions[i].id.clone(),
        None => {
            let bare = json!({"source": source.clone().unwrap_or_else(|| "opencode".into()), "model": model});
            let bare = Value::Object(
                bare.as_object()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, v)| !v.is_null())
                    .collect::<Map<_, _>>(),
            );
            upsert_session(s, user, &session_external, &bare, false, true)?
        }
    };
    let id = new_id(s, "messages");
    let seq = s.next_id;
    s.msg_index
        .entry(external.clone())
        .or_insert(s.messages.len());
    s.messages.push(StoredMessage {
        id: id.clone(),
        session_id: session_id.clone(),
        external_id: external,
        role,
        text_content: text,
        model,
        prompt_tokens,
        completion_tokens,
        duration_ms,
        created_at: created_at.unwrap_or(now),
        parts: parts.unwrap_or_default(),
        seq,
    });
    if let Some(&p) = s.session_by_id.get(&session_id) {
        let sess = &mut s.sessions[p];
        sess.message_count += 1;
        sess.updated_at = now;
    }
    Ok(id)
}

/// Rebuilds the lookup indexes from the rows (after rows were removed or reordered).
fn reindex(s: &mut State) {
    s.msg_index.clear();
    for (i, m) in s.messages.iter().enumerate() {
        s.msg_index.entry(m.external_id.clone()).or_insert(i);
    }
    s.session_by_id.clear();
    s.session_by_ext.clear();
    for (i, x) in s.sessions.iter().enumerate() {
        s.session_by_id.insert(x.id.clone(), i);
        s.session_by_ext
            .entry((x.user, x.external_id.clone()))
            .or_insert(i);
    }
}

fn strict(items: &[Value], allowed: &[&str], required: &[&str]) -> Result<(), String> {
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(format!(
                "ArgumentValidationError: Value does not match validator.\nPath: [{i}]"
            ));
        };
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(format!(
                    "ArgumentValidationError: Object contains extra field `{k}` that is not in the validator.\nPath: [{i}]"
                ));
            }
        }
        for r in required {
            if !map.contains_key(*r) {
                return Err(format!(
                    "ArgumentValidationError: Object is missing the required field `{r}`.\nPath: [{i}]"
                ));
            }
        }
    }
    Ok(())
}

fn sync_batch(s: &mut State, user: UserId, v: &Value) -> Answer {
    let Value::Object(body) = v else {
        return err(500, "TypeError: body is not an object");
    };
    let mut errors: Vec<String> = Vec::new();
    let mut sessions_done = 0u64;
    let mut messages_done = 0u64;
    if let Some(Value::Array(items)) = body.get("sessions") {
        match strict(items, SESSION_FIELDS, &["externalId"]) {
            Err(e) => errors.push(format!("Sessions batch error: {e}")),
            Ok(()) => {
                // Promise.all: every lookup happens before any insert, so duplicates both insert.
                let existing: Vec<bool> = items
                    .iter()
                    .map(|it| {
                        let ext = it["externalId"].as_str().unwrap_or_default();
                        s.sessions
                            .iter()
                            .any(|x| x.user == user && x.external_id == ext)
                    })
                    .collect();
                for (item, exists) in items.iter().zip(existing) {
                    let ext = item["externalId"].as_str().unwrap_or_default().to_string();
                    let result = if exists {
                        upsert_session(s, user, &ext, item, false, false)
                    } else {
                        insert_session_unconditionally(s, user, &ext, item)
                    };
                    match result {
                        Ok(_) => sessions_done += 1,
                        Err(e) => errors.push(format!("{ext}: {e}")),
                    }
                }
            }
        }
    }
    if let Some(Value::Array(items)) = body.get("messages") {
        match strict(
            items,
            MESSAGE_FIELDS,
            &["sessionExternalId", "externalId", "role"],
        ) {
            Err(e) => errors.push(format!("Messages batch error: {e}")),
            Ok(()) => {
                let existing: Vec<bool> = items
                    .iter()
                    .map(|it| {
                        let ext = it["externalId"].as_str().unwrap_or_default();
                        s.msg_index.contains_key(ext)
                    })
                    .collect();
                for (item, exists) in items.iter().zip(existing) {
                    let ext = item["externalId"].as_str().unwrap_or_default().to_string();
                    let result = if exists {
                        sync_message(s, user, item, true)
                    } else {
                        // Looked up before the inserts: a duplicate id in the same batch inserts again.
                        sync_message_insert_only(s, user, item)
                    };
                    match result {
                        Ok(_) => messages_done += 1,
                        Err(e) => errors.push(format!("{ext}: {e}")),
                    }
                }
            }
        }
    }
    Answer::Respond(
        200,
        json!({"ok": true, "sessions": sessions_done, "messages": messages_done, "errors": errors}),
        Vec::new(),
    )
}

fn insert_session_unconditionally(
    s: &mut State,
    user: UserId,
    ext: &str,
    item: &Value,
) -> Result<String, String> {
    // Pretend no row exists (the batch looked before anything was inserted).
    let hidden: Vec<StoredSession> = s
        .sessions
        .iter()
        .filter(|x| x.user == user && x.external_id == ext)
        .cloned()
        .collect();
    s.sessions
        .retain(|x| !(x.user == user && x.external_id == ext));
    reindex(s);
    let r = upsert_session(s, user, ext, item, false, false);
    s.sessions.extend(hidden);
    reindex(s);
    r
}

fn sync_message_insert_only(s: &mut State, user: UserId, item: &Value) -> Result<String, String> {
    let ext = item["externalId"].as_str().unwrap_or_default().to_string();
    let hidden: Vec<StoredMessage> = s
        .messages
        .iter()
        .filter(|m| m.external_id == ext)
        .cloned()
        .collect();
    s.messages.retain(|m| m.external_id != ext);
    reindex(s);
    let r = sync_message(s, user, item, true);
    let inserted: Vec<StoredMessage> = s
        .messages
        .iter()
        .filter(|m| m.external_id == ext)
        .cloned()
        .collect();
    s.messages.retain(|m| m.external_id != ext);
    s.messages.extend(hidden);
    s.messages.extend(inserted);
    reindex(s);
    r
}

/// `URLSearchParams.get(name)`: the first value of `name` in the query, decoded.
fn query_param(path: &str, name: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JavaScript's `parseInt(s)`: optional whitespace and sign, then the leading digits; `None`
/// for NaN.
fn parse_int(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse::<i64>().ok().map(|n| sign * n)
}

/// Counts what one query reads against Convex's limits (`TransactionReadSet`): every `db.get`
/// or `db.query` adds an index range, every document returned adds to the document and byte
/// counts; the first limit crossed fails the query with Convex's message.
struct ReadBudget {
    limits: ReadLimits,
    ranges: usize,
    documents: usize,
    bytes: usize,
}

const OVER_LIMIT_HELP: &str = "Consider using smaller limits in your queries, paginating your \
queries, or using indexed queries with a selective index range expressions.";

impl ReadBudget {
    fn new(limits: ReadLimits) -> ReadBudget {
        ReadBudget {
            limits,
            ranges: 0,
            documents: 0,
            bytes: 0,
        }
    }

    fn range(&mut self) -> Result<(), String> {
        self.ranges += 1;
        if self.ranges > self.limits.index_ranges {
            return Err(format!(
                "Uncaught Error: Too many reads in a single function execution (limit: {}). \
                 {OVER_LIMIT_HELP}",
                self.limits.index_ranges
            ));
        }
        Ok(())
    }

    fn document(&mut self, doc: &Value) -> Result<(), String> {
        self.documents += 1;
        self.bytes += doc.to_string().len();
        if self.documents > self.limits.documents {
            return Err(format!(
                "Uncaught Error: Too many documents read in a single function execution \
                 (limit: {}). {OVER_LIMIT_HELP}",
                self.limits.documents
            ));
        }
        if self.bytes > self.limits.bytes {
            return Err(format!(
                "Uncaught Error: Too many bytes read in a single function execution (limit: \
                 {} bytes). {OVER_LIMIT_HELP}",
                self.limits.bytes
            ));
        }
        Ok(())
    }
}

/// A session as `api.ts` returns it: optional fields left out when unset (JSON.stringify
/// drops `undefined`), no `source`.
fn session_json(x: &StoredSession) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(x.id));
    m.insert("externalId".into(), json!(x.external_id));
    for (k, v) in [
        ("title", &x.title),
        ("projectPath", &x.project_path),
        ("projectName", &x.project_name),
        ("model", &x.model),
        ("provider", &x.provider),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    m.insert("promptTokens".into(), json!(x.prompt_tokens));
    m.insert("completionTokens".into(), json!(x.completion_tokens));
    m.insert("totalTokens".into(), json!(x.total_tokens));
    m.insert("cost".into(), json!(x.cost));
    if let Some(d) = x.duration_ms {
        m.insert("durationMs".into(), json!(d));
    }
    m.insert("isPublic".into(), json!(false));
    m.insert("messageCount".into(), json!(x.message_count));
    m.insert("createdAt".into(), json!(x.created_at));
    m.insert("updatedAt".into(), json!(x.updated_at));
    Value::Object(m)
}

fn message_json(x: &StoredMessage) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(x.id));
    m.insert("externalId".into(), json!(x.external_id));
    m.insert("role".into(), json!(x.role));
    if let Some(t) = &x.text_content {
        m.insert("textContent".into(), json!(t));
    }
    if let Some(t) = &x.model {
        m.insert("model".into(), json!(t));
    }
    for (k, v) in [
        ("promptTokens", x.prompt_tokens),
        ("completionTokens", x.completion_tokens),
        ("durationMs", x.duration_ms),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    m.insert("createdAt".into(), json!(x.created_at));
    m.insert(
        "parts".into(),
        Value::Array(
            x.parts
                .iter()
                .map(|p| json!({"type": p.kind, "content": p.content}))
                .collect(),
        ),
    );
    Value::Object(m)
}

/// `GET /api/sessions?limit=N` (`api.listSessions`): `parseInt(limit || "50")`, then
/// `by_user_updated` descending (`updatedAt`, then creation, newest first), `take(limit)`.
fn api_sessions(s: &mut State, user: UserId, path: &str) -> Answer {
    let raw = query_param(path, "limit")
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "50".into());
    // NaN or a negative count makes Convex's `take` throw; its exact message is not known
    // here, so this one only says what went wrong.
    let Some(limit) = parse_int(&raw).and_then(|n| usize::try_from(n).ok()) else {
        return err(
            500,
            format!("Uncaught Error: take() expects a non-negative integer, got {raw}"),
        );
    };
    let mut list: Vec<(usize, &StoredSession)> = s
        .sessions
        .iter()
        .enumerate()
        .filter(|(_, x)| x.user == user)
        .collect();
    list.sort_by_key(|(i, x)| std::cmp::Reverse((x.updated_at, *i)));
    let mut budget = ReadBudget::new(s.read_limits);
    if let Err(e) = budget.range() {
        return err(500, e);
    }
    let mut items = Vec::new();
    for (_, x) in list.into_iter().take(limit) {
        let doc = session_json(x);
        if let Err(e) = budget.document(&doc) {
            return err(500, e);
        }
        items.push(doc);
    }
    s.api_logs.push("/api/sessions".into());
    Answer::Respond(200, json!({"sessions": items}), Vec::new())
}

/// `GET /api/sessions/get?id=` (`api.getSession`): 400 without an id, a validator error for
/// something that is not a sessions id, 404 for a session that is gone or another user's;
/// messages by `(sessionId, createdAt)` (ties in insertion order), one parts query per
/// message, so a session with more messages than the read limits allow fails with 500.
fn api_session_get(s: &mut State, user: UserId, path: &str) -> Answer {
    let Some(id) = query_param(path, "id").filter(|i| !i.is_empty()) else {
        return err(400, "Missing session ID");
    };
    if !id.starts_with("sessions_") {
        return err(
            500,
            format!(
                "ArgumentValidationError: Value does not match validator.\nPath: .sessionId\n\
                 Value: {id:?}\nValidator: v.id(\"sessions\")"
            ),
        );
    }
    let mut budget = ReadBudget::new(s.read_limits);
    let Some(session) = s.session_by_id.get(&id).map(|&i| &s.sessions[i]) else {
        return err(404, "Session not found");
    };
    if session.user != user {
        return err(404, "Session not found");
    }
    let session_doc = session_json(session);
    let result = (|| -> Result<Value, String> {
        budget.range()?;
        budget.document(&session_doc)?;
        budget.range()?;
        let mut messages: Vec<&StoredMessage> =
            s.messages.iter().filter(|m| m.session_id == id).collect();
        messages.sort_by_key(|m| (m.created_at, m.seq));
        let mut out = Vec::new();
        for m in &messages {
            budget.document(&message_json(&StoredMessage {
                parts: Vec::new(),
                ..(*m).clone()
            }))?;
        }
        for m in messages {
            budget.range()?;
            for p in &m.parts {
                budget.document(&json!({"type": p.kind, "content": p.content}))?;
            }
            out.push(message_json(m));
        }
        Ok(json!({"session": session_doc, "messages": out}))
    })();
    match result {
        Ok(body) => {
            s.api_logs.push("/api/sessions/get".into());
            Answer::Respond(200, body, Vec::new())
        }
        Err(e) => err(500, e),
    }
}
