//! A failed request: what went wrong (`PushError`) and what to do about it (`ErrorClass`:
//! retry, split, auth-paused, reject, wrong URL), from the status and the server's message.

use std::time::Duration;

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

/// What a request refused by a closed [`Gate`](super::Gate) says (how the daemon tells its own hold from a
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

    /// Whether this failure says the server is overloaded (429, 503, a request that timed
    /// out, or any answer carrying `Retry-After`): the whole pool should slow down, not just
    /// this request.
    pub fn is_overload(&self) -> bool {
        match self {
            PushError::Network { timeout, .. } => *timeout,
            PushError::Status {
                status,
                retry_after,
                ..
            } => matches!(status, 429 | 503) || retry_after.is_some(),
            _ => false,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn overload_is_told_apart_from_other_transient_failures() {
        let status = |status: u16, retry_after: Option<u64>| PushError::Status {
            route: "POST /sync/message".into(),
            status,
            message: String::new(),
            json: true,
            retry_after: retry_after.map(Duration::from_secs),
        };
        let network = |timeout| PushError::Network {
            route: "POST /sync/message".into(),
            detail: "x".into(),
            timeout,
        };
        assert!(status(429, None).is_overload());
        assert!(status(503, None).is_overload());
        assert!(status(500, Some(2)).is_overload());
        assert!(network(true).is_overload());
        assert!(
            !status(500, None).is_overload(),
            "an OCC conflict is not overload"
        );
        assert!(!status(502, None).is_overload());
        assert!(
            !network(false).is_overload(),
            "a dropped connection is not overload"
        );
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
}
