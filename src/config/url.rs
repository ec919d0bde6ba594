//! The server URL: `.convex.cloud` rewritten to `.convex.site`, and plain HTTP refused except
//! to loopback (the API key must not travel unencrypted).
/// Normalises a server URL: trims it, rewrites a host ending in `.convex.cloud` (any case) to
/// `.convex.site`, strips a trailing slash, and refuses anything but `https://`, or `http://`
/// to a loopback host.
pub fn normalize_url(raw: &str) -> Result<String, String> {
    let url = raw.trim().trim_end_matches('/');
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!("`{url}` is not a URL (expected https://<deployment>.convex.site)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || authority.contains(char::is_whitespace) {
        return Err(format!("`{url}` has no valid host"));
    }
    let host = host_of(authority);
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "refusing plain http:// to {host}: the API key would travel unencrypted \
                 (http is allowed only to localhost / 127.0.0.1 / [::1])"
            ));
        }
        other => return Err(format!("unsupported scheme `{other}` (use https://)")),
    }
    // Only the host's own suffix is rewritten: the authority is `host[:port]`, and the
    // suffix sits right before the port (or at the end).
    const CLOUD: &str = ".convex.cloud";
    if !host.ends_with(CLOUD) {
        return Ok(url.to_string());
    }
    let authority_start = scheme.len() + "://".len();
    let host_end = authority_start
        + match authority.rfind(':') {
            Some(i) if !authority.starts_with('[') => i,
            _ => authority.len(),
        };
    let suffix_start = host_end - CLOUD.len();
    Ok(format!(
        "{}.convex.site{}",
        &url[..suffix_start],
        &url[host_end..]
    ))
}

fn host_of(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest
            .split(']')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
    }
    authority
        .rsplit_once(':')
        .map_or(authority, |(h, _)| h)
        .to_ascii_lowercase()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_http_is_loopback_only() {
        assert_eq!(
            normalize_url(" https://happy-cat-123.convex.cloud/ ").unwrap(),
            "https://happy-cat-123.convex.site"
        );
        assert_eq!(
            normalize_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(normalize_url("http://[::1]:9").unwrap(), "http://[::1]:9");
        assert_eq!(
            normalize_url("http://localhost:3210/").unwrap(),
            "http://localhost:3210"
        );
        assert!(
            normalize_url("http://example.com")
                .unwrap_err()
                .contains("refusing")
        );
        assert!(normalize_url("http://10.0.0.1").is_err());
        assert!(normalize_url("ftp://x.convex.site").is_err());
        assert!(normalize_url("not a url").is_err());
        assert!(normalize_url("https://user:pw@x.convex.site").is_err());
    }

    /// The fuzzing finding (`fuzz/regressions/config_value/`): only the host's suffix is
    /// rewritten, in any case, and normalising twice changes nothing.
    #[test]
    fn the_convex_cloud_rewrite_touches_the_host_suffix_only() {
        let cases = [
            (
                "https://evil.convex.cloud.example.convex.cloud/",
                "https://evil.convex.cloud.example.convex.site",
            ),
            ("https://A.CONVEX.CLOUD", "https://A.convex.site"),
            (
                "https://a.convex.cloud:443/x.convex.cloud?q=.convex.cloud",
                "https://a.convex.site:443/x.convex.cloud?q=.convex.cloud",
            ),
            (
                "https://a.convex.site/p.convex.cloud",
                "https://a.convex.site/p.convex.cloud",
            ),
        ];
        for (input, want) in cases {
            let got = normalize_url(input).unwrap();
            assert_eq!(got, want, "{input}");
            assert_eq!(normalize_url(&got).unwrap(), got, "idempotent: {input}");
        }
        let regression = include_str!(
            "../../fuzz/regressions/config_value/normalize_url-rewrites-first-convex-cloud-not-host-suffix"
        );
        let got = normalize_url(regression).unwrap();
        assert!(got.to_ascii_lowercase().ends_with(".convex.site"), "{got}");
        assert_eq!(normalize_url(&got).unwrap(), got);
    }
}
