//! `opensyncd set <key> <value>` values → `config::parse_setting` for every settable key, and
//! server URLs → `config::normalize_url`.
//!
//! The input is the value (lossy UTF-8: values arrive as command-line strings).
#![no_main]

use libfuzzer_sys::fuzz_target;
use opensyncd::config::{SETTABLE_KEYS, normalize_url, parse_setting};

mod common;
use common::check;

/// The text `set` would need to be given to store `v` again.
fn render(v: &toml_edit::Value) -> String {
    if let Some(s) = v.as_str() {
        s.to_string()
    } else if let Some(a) = v.as_array() {
        a.iter()
            .map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        v.to_string().trim().to_string()
    }
}

fuzz_target!(|data: &[u8]| {
    common::guarded(|| {
        let value = String::from_utf8_lossy(data);
        let value = value.as_ref();

        let url = normalize_url(value);
        if let Ok(u) = &url {
            let lower = u.to_ascii_lowercase();
            check("url_scheme", lower.starts_with("https://") || lower.starts_with("http://"), || {
                format!("normalize_url({value:?}) = {u:?} has no http(s) scheme")
            });
            let again = normalize_url(u);
            check("url_idempotent", again.as_ref() == Ok(u), || {
                format!("normalize_url not idempotent: {value:?} -> {u:?} -> {again:?}")
            });
        }

        for key in SETTABLE_KEYS {
            let parsed = parse_setting(key, value);
            if *key == "url" {
                check("url_setting_agrees", parsed.is_ok() == url.is_ok(), || {
                    format!(
                        "parse_setting(\"url\", {value:?}) ok={} but normalize_url ok={}",
                        parsed.is_ok(),
                        url.is_ok()
                    )
                });
            }
            if let Ok(v) = &parsed {
                let text = render(v);
                let again = parse_setting(key, &text);
                check(
                    "setting_idempotent",
                    again.as_ref().map(|a| a.to_string()).ok() == Some(v.to_string()),
                    || format!("set {key} {value:?} stores {v}, but set {key} {text:?} gives {again:?}"),
                );
            }
        }
    });
});
