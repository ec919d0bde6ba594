//! The OpenSync HTTP client: every route, typed errors classified into retry / split /
//! auth-paused / reject / wrong-URL, and full-jitter backoff honouring `Retry-After`.
//! STUB: the interface the engine programs against; filled in by the client work.

use std::time::Duration;

use crate::credentials::ApiKey;
use crate::model::{MessagePayload, SessionPayload};

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

/// A failed request, with enough context to explain it.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Not implemented yet (stub).
    #[error("the OpenSync client is not implemented yet")]
    Unimplemented,
}

impl PushError {
    /// The retry decision.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Retry
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        None
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
}

/// The OpenSync client (cheap to clone; shares one connection pool).
#[derive(Debug, Clone)]
pub struct Client {}

impl Client {
    /// Builds a client.
    pub fn new(_opts: ClientOptions) -> Result<Client, PushError> {
        Err(PushError::Unimplemented)
    }

    /// `POST /sync/session`.
    pub async fn upsert_session(&self, _p: &SessionPayload) -> Result<(), PushError> {
        Err(PushError::Unimplemented)
    }

    /// `POST /sync/message`.
    pub async fn upsert_message(&self, _p: &MessagePayload) -> Result<(), PushError> {
        Err(PushError::Unimplemented)
    }
}
