//! `opensyncd prices`: loading the price table in use (installed, else bundled, plus the user's
//! `pricing_file`), and `prices update`: download LiteLLM's table, refuse anything that is not
//! plausibly complete, and install it atomically in the state dir, where it wins over the
//! bundled table. Nothing here runs unless asked: opensyncd never fetches prices by itself.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;

use crate::config::{self, Config, Paths};
use crate::model::civil_from_days;
use crate::pricing::{Pricing, Provenance, Rates, Resolution, TableOrigin};

/// LiteLLM's table, as ccusage and LiteLLM itself fetch it.
pub const DEFAULT_PRICES_URL: &str =
    "https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json";

/// The largest download accepted (the real file is a few MiB).
const MAX_TABLE_BYTES: usize = 64 * 1024 * 1024;

/// The table in use for this configuration: `<state>/prices.json` if `prices update` installed
/// one, else the bundled table; then the `pricing_file` overrides.
pub fn load(paths: &Paths, cfg: &Config) -> Result<Pricing, String> {
    Pricing::load(
        Some(&paths.prices_file()),
        cfg.pricing_file.as_deref().map(Path::new),
    )
}

/// [`load`] with the paths from the process environment (what every command uses).
pub fn load_configured(cfg: &Config) -> Result<Pricing, String> {
    load(&Paths::from_env(&config::process_env), cfg)
}

/// The URL `prices update` uses: the flag, else the `prices_url` key, else LiteLLM's.
pub fn update_url(cfg: &Config, flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| cfg.prices_url.clone())
        .unwrap_or_else(|| DEFAULT_PRICES_URL.to_string())
}

/// What `prices update` installed.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// The file written.
    pub path: PathBuf,
    /// Where it came from.
    pub url: String,
    /// Bytes downloaded.
    pub bytes: usize,
    /// sha256 of the download.
    pub sha256: String,
    /// Models (normalised ids) the new table prices.
    pub models: usize,
    /// Models the table in use before priced.
    pub previous_models: usize,
}

/// Downloads the table at `url`, validates it and installs it as `paths.prices_file()`. On any
/// failure the installed file (or the bundled table) stays exactly as it was.
pub fn update(paths: &Paths, cfg: &Config, url: &str) -> Result<Installed> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("{url}: not an http(s) URL");
    }
    let previous_models = load(paths, cfg)
        .map(|p| p.info().models)
        .unwrap_or_default();
    let body = download(url, cfg).with_context(|| format!("downloading {url}"))?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| anyhow!("{url}: the table is not UTF-8 text ({e}); nothing was installed"))?;
    let path = paths.prices_file();
    let pricing = Pricing::from_table_json(text, TableOrigin::Installed { path: path.clone() })
        .map_err(|e| {
            anyhow!("{url}: refused: {e}; nothing was installed, the table in use is unchanged")
        })?;
    let sha256 = sha256_hex(&body);
    let provenance = Provenance {
        source: Some(url.to_string()),
        litellm_version: None,
        litellm_commit: None,
        sha256: Some(sha256.clone()),
        date: Some(today_utc()),
    };
    let subset = crate::pricing::litellm_subset(text)
        .map_err(|e| anyhow!("{url}: refused: {e}; nothing was installed"))?;
    let file = serde_json::json!({ "provenance": provenance, "models": subset });
    let bytes = serde_json::to_vec(&file).context("serialising the price table")?;
    write_atomically(&paths.state_dir, &path, &bytes)?;
    Ok(Installed {
        path,
        url: url.to_string(),
        bytes: body.len(),
        sha256,
        models: pricing.info().models,
        previous_models,
    })
}

fn download(url: &str, cfg: &Config) -> Result<Vec<u8>> {
    crate::push::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .user_agent(concat!("opensyncd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            // The table is a few MiB: allow more than an API call's timeout.
            .timeout(Duration::from_secs(cfg.request_timeout_secs.max(120)))
            .gzip(true)
            .build()
            .context("building the HTTP client")?;
        let mut response = client.get(url).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("the server answered HTTP {status}; nothing was installed");
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_TABLE_BYTES {
                bail!(
                    "the table is larger than {} MiB; nothing was installed",
                    MAX_TABLE_BYTES / (1024 * 1024)
                );
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory, synced and renamed,
/// so a crash leaves either the old table or the new one.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Persist the rename; not every platform can sync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(anyhow!("writing {}: {e}", path.display()));
    }
    Ok(())
}

/// SHA-256 (hex) through the TLS stack's hash, so no extra crate is needed.
fn sha256_hex(data: &[u8]) -> String {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(suite) => suite
            .common
            .hash_provider
            .hash(data)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        #[allow(unreachable_patterns)]
        _ => String::new(),
    }
}

/// Today's date (UTC), `YYYY-MM-DD`.
fn today_utc() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// One line describing the table in use: `installed (…/prices.json), LiteLLM 1.110.2, 2026-12-06`.
pub fn describe(pricing: &Pricing) -> String {
    let info = pricing.info();
    let origin = match &info.origin {
        TableOrigin::Empty => "none".to_string(),
        TableOrigin::Bundled => "bundled".to_string(),
        TableOrigin::Installed { path } => format!("installed ({})", path.display()),
    };
    let p = &info.provenance;
    let version = match (&p.litellm_version, &p.litellm_commit, &p.source) {
        (Some(v), _, _) => format!("LiteLLM {v}"),
        (None, Some(c), _) => format!("LiteLLM commit {c}"),
        (None, None, Some(source)) => format!("LiteLLM table from {source}"),
        _ => "LiteLLM table".to_string(),
    };
    let mut line = format!(
        "{origin}, {version}, {}, {} models",
        p.date.as_deref().unwrap_or("date unknown"),
        info.models
    );
    if info.overridden > 0 {
        line.push_str(&format!(", {} from pricing_file", info.overridden));
    }
    line
}

/// What `model` resolves to and its rates (USD per million tokens), one fact per line.
pub fn describe_model(model: &str, resolution: Option<&Resolution>) -> String {
    let Some(r) = resolution else {
        return format!(
            "{model}: no price (tried {}); its tokens are counted but cost nothing — add it to a \
             pricing_file or run `opensyncd prices update`\n",
            crate::pricing::candidates(model).join(", ")
        );
    };
    let rates = |r: &Rates| {
        format!(
            "input {} · output {} · cache read {} · cache write 5m {} · 1h {}",
            r.input, r.output, r.cache_read, r.cache_write, r.cache_write_1h
        )
    };
    let mut out = format!("{model} → {} (from {})\n", r.key, r.from);
    out.push_str(&format!(
        "  USD per million tokens: {}\n",
        rates(&r.price.base)
    ));
    for tier in &r.price.tiers {
        out.push_str(&format!(
            "  whole call when the prompt is {} {} tokens: {}\n",
            if r.price.inclusive {
                "at least"
            } else {
                "over"
            },
            tier.above,
            rates(&tier.rates)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_fips_test_vector() {
        // FIPS 180-2, appendix B.1: SHA-256("abc").
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn the_url_comes_from_the_flag_then_the_config_then_the_default() {
        let mut cfg = Config::default();
        assert_eq!(update_url(&cfg, None), DEFAULT_PRICES_URL);
        cfg.prices_url = Some("http://mirror/prices.json".into());
        assert_eq!(update_url(&cfg, None), "http://mirror/prices.json");
        assert_eq!(
            update_url(&cfg, Some("http://flag/x.json")),
            "http://flag/x.json"
        );
    }
}
