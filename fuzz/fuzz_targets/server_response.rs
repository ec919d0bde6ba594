//! Server error answers → `push::classify` and `push::parse_retry_after`.
//!
//! Input layout: bytes 0-1 the HTTP status (big-endian u16), byte 2 bit 0 "Content-Type
//! contains json", then the `Retry-After` header value up to the first `\n`, then the body.
//! The body → (message, json) step mirrors the private code in `Client::send` (push/mod.rs), which
//! is not reachable without a live HTTP exchange.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use opensyncd::push::{ErrorClass, PushError, classify, parse_retry_after};

mod common;
use common::check;

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        if data.len() < 3 {
            return;
        }
        let status = u16::from_be_bytes([data[0], data[1]]);
        let is_json = data[2] & 1 == 1;
        let rest = &data[3..];
        let (header, body) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };

        // reqwest's HeaderValue::to_str accepts visible ASCII only; parse_retry_after takes any &str,
        // so feed it every valid UTF-8 value.
        let retry_after = std::str::from_utf8(header).ok().and_then(parse_retry_after);
        if let Some(d) = retry_after {
            // Delta-seconds or a date: never more than u64 seconds, always representable.
            let _ = d.checked_add(Duration::ZERO);
        }

        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let json = is_json || parsed.is_some();
        let message = parsed.and_then(|b| b.error).unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            text.chars().take(200).collect::<String>().trim().to_string()
        });

        let class = classify(status, &message, json);
        let err = PushError::Status {
            route: "POST /sync/message".into(),
            status,
            message: message.clone(),
            json,
            retry_after,
        };
        check("class_agrees", err.class() == class, || {
            format!("PushError::class {:?} != classify {class:?}", err.class())
        });
        let _ = err.to_string();
        let _ = err.is_transient_auth();
        let _ = err.retry_after();
        // Spot checks of the documented rules that hold for every message.
        let expected = match status {
            403 => Some(ErrorClass::AuthPaused),
            404 | 405 => Some(ErrorClass::WrongUrl),
            408 | 429 => Some(ErrorClass::Retry),
            413 => Some(ErrorClass::Split),
            400 => Some(ErrorClass::Reject),
            _ => None,
        };
        check("status_rule", expected.is_none_or(|e| e == class), || {
            format!("status {status} classified {class:?}, expected {expected:?}")
        });
    });
});
