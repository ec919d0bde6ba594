//! Prices as a user meets them, through the real binary: `prices update` against a local HTTP
//! server (a good table is installed; malformed, truncated, too small, or HTTP errors are
//! refused and the old table stays), `prices show`, and `export`'s warning naming the models it
//! could not price. Expected costs are worked out by hand from LiteLLM's rates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::home::TestHome;

/// A one-thread HTTP server on 127.0.0.1 answering every path from a fixed table of
/// (path, status, body); unknown paths get 404. It stops when dropped.
struct StaticServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    fn start(routes: Vec<(&'static str, u16, Vec<u8>)>) -> StaticServer {
        let routes: std::sync::Arc<Vec<(&'static str, u16, Bytes)>> = std::sync::Arc::new(
            routes
                .into_iter()
                .map(|(p, s, b)| (p, s, Bytes::from(b)))
                .collect(),
        );
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let routes = routes.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                                    let routes = routes.clone();
                                    async move {
                                        let (status, body) = routes
                                            .iter()
                                            .find(|(p, _, _)| *p == req.uri().path())
                                            .map(|(_, s, b)| (*s, b.clone()))
                                            .unwrap_or((404, Bytes::from_static(b"not found")));
                                        let mut response = Response::new(Full::new(body));
                                        *response.status_mut() = StatusCode::from_u16(status).expect("status");
                                        Ok::<_, Infallible>(response)
                                    }
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        });
        StaticServer {
            addr: addr_rx.recv().expect("server address"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bundled_table() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/prices.json");
    serde_json::from_slice(&std::fs::read(path).expect("assets/prices.json")).expect("JSON")
}

/// A LiteLLM table as published (a flat map of models), made from the bundled subset plus a
/// model the bundled table does not have: `claude-test-9` at input $2/M, output $8/M, cache
/// read $0.20/M, 5-minute write $2.50/M, 1-hour write $4/M.
fn published_table() -> Vec<u8> {
    let mut models = bundled_table()["models"].clone();
    models["claude-test-9"] = serde_json::json!({
        "litellm_provider": "anthropic",
        "mode": "chat",
        "max_input_tokens": 200000,
        "input_cost_per_token": 2e-06,
        "output_cost_per_token": 8e-06,
        "cache_read_input_token_cost": 2e-07,
        "cache_creation_input_token_cost": 2.5e-06,
        "cache_creation_input_token_cost_above_1hr": 4e-06,
        "supports_vision": true
    });
    serde_json::to_vec_pretty(&models).expect("serialise")
}

fn installed_file(home: &TestHome) -> PathBuf {
    home.opensyncd_home().join("state/prices.json")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes a Claude Code transcript with one user prompt and one assistant call per
/// `(model, input, cache read, 5m writes, 1h writes, output)`.
fn claude_session(home: &TestHome, session: &str, calls: &[(&str, u64, u64, u64, u64, u64)]) {
    let dir = home.claude_projects().join("-home-dev-pricing");
    std::fs::create_dir_all(&dir).expect("project dir");
    let mut lines = vec![serde_json::json!({
        "parentUuid": null, "isSidechain": false, "userType": "external", "cwd": "/home/dev/pricing",
        "sessionId": session, "version": "2.1.12", "type": "user",
        "message": {"role": "user", "content": "Price this."},
        "uuid": "u-0", "timestamp": "2026-02-03T09:00:00.000Z"
    })];
    for (i, (model, input, read, w5, w1, output)) in calls.iter().enumerate() {
        lines.push(serde_json::json!({
            "parentUuid": "u-0", "isSidechain": false, "userType": "external", "cwd": "/home/dev/pricing",
            "sessionId": session, "version": "2.1.12", "type": "assistant",
            "message": {"model": model, "id": format!("msg_{i}"), "type": "message", "role": "assistant",
                "content": [{"type": "text", "text": format!("answer {i}")}],
                "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": input, "cache_read_input_tokens": read,
                    "cache_creation_input_tokens": w5 + w1,
                    "cache_creation": {"ephemeral_5m_input_tokens": w5, "ephemeral_1h_input_tokens": w1},
                    "output_tokens": output, "service_tier": "standard"}},
            "requestId": format!("req_{i}"), "uuid": format!("a-{i}"),
            "timestamp": format!("2026-02-03T09:00:0{}.000Z", i + 1)
        }));
    }
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join(format!("{session}.jsonl")), text).expect("transcript");
}

fn export(home: &TestHome) -> (Vec<Value>, String) {
    let out = home.run(&["export", "--source", "claude-code"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sessions = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("export line")["session"].clone())
        .collect();
    (sessions, stderr(&out))
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "got {actual}, expected {expected}"
    );
}

#[test]
fn prices_update_installs_a_good_table_that_then_prices_new_models() {
    let server = StaticServer::start(vec![("/prices.json", 200, published_table())]);
    let home = TestHome::new();
    claude_session(
        &home,
        "0b0e5a1c-7d2f-4c3e-9a8b-1f2e3d4c5b6a",
        &[("claude-test-9", 1_000, 50_000, 10_000, 20_000, 2_000)],
    );
    // Before: the bundled table does not know claude-test-9.
    let (_, warning) = export(&home);
    assert!(
        warning.contains("no price for 1 model(s): claude-test-9"),
        "{warning}"
    );

    let out = home.run(&["prices", "update", "--url", &server.url("/prices.json")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("installed"), "{stdout}");
    assert!(installed_file(&home).exists());

    let show = home.ok(&["prices", "show", "claude-test-9"]);
    assert!(show.contains("table: installed ("), "{show}");
    assert!(
        show.contains(&server.url("/prices.json")),
        "provenance names the URL: {show}"
    );
    assert!(
        show.contains("input 2 · output 8 · cache read 0.2 · cache write 5m 2.5 · 1h 4"),
        "{show}"
    );

    let config = home.ok(&["config"]);
    assert!(
        config.contains("installed ("),
        "config names the table: {config}"
    );

    // 1_000*2 + 2_000*8 + 50_000*0.2 + 10_000*2.5 + 20_000*4
    //   = 2_000 + 16_000 + 10_000 + 25_000 + 80_000 = 133_000 per million → $0.133.
    let (sessions, warning) = export(&home);
    close(sessions[0]["cost"].as_f64().expect("cost"), 0.133);
    assert!(!warning.contains("no price"), "{warning}");
}

#[test]
fn bad_downloads_are_refused_and_the_installed_table_stays() {
    let good = published_table();
    let truncated = good[..good.len() / 3].to_vec();
    let few = br#"{"gpt-5": {"litellm_provider": "openai", "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05}}"#.to_vec();
    let server = StaticServer::start(vec![
        ("/good.json", 200, good),
        ("/truncated.json", 200, truncated),
        (
            "/html",
            200,
            b"<html><body>rate limited</body></html>".to_vec(),
        ),
        ("/few.json", 200, few),
        ("/error", 500, b"internal error".to_vec()),
    ]);
    let home = TestHome::new();
    home.ok(&["prices", "update", "--url", &server.url("/good.json")]);
    let before = std::fs::read(installed_file(&home)).expect("installed table");

    for (path, reason) in [
        ("/truncated.json", "not valid JSON"),
        ("/html", "not valid JSON"),
        ("/few.json", "usable model prices"),
        ("/error", "HTTP 500"),
        ("/missing", "HTTP 404"),
    ] {
        let out = home.run(&["prices", "update", "--url", &server.url(path)]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{path} was accepted");
        assert!(err.contains(reason), "{path}: {err}");
        assert!(err.contains("nothing was installed"), "{path}: {err}");
        assert_eq!(
            std::fs::read(installed_file(&home)).expect("still installed"),
            before,
            "{path} changed the installed table"
        );
    }
    let show = home.ok(&["prices", "show", "claude-test-9"]);
    assert!(show.contains("claude-test-9 → claude-test-9"), "{show}");
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(home.opensyncd_home().join("state"))
        .expect("state dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_refused_first_download_leaves_the_bundled_table_in_use() {
    let server = StaticServer::start(vec![("/error", 503, b"busy".to_vec())]);
    let home = TestHome::new();
    let out = home.run(&["prices", "update", "--url", &server.url("/error")]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 503"), "{}", stderr(&out));
    assert!(!installed_file(&home).exists());
    assert!(
        home.ok(&["prices", "show"])
            .contains("table: bundled, LiteLLM ")
    );
}

#[test]
fn the_prices_url_key_is_used_without_a_flag_and_must_be_http() {
    let server = StaticServer::start(vec![("/mirror.json", 200, published_table())]);
    let home = TestHome::new();
    home.ok(&["set", "prices_url", &server.url("/mirror.json")]);
    home.ok(&["prices", "update"]);
    assert!(installed_file(&home).exists());
    let out = home.run(&[
        "prices",
        "update",
        "--url",
        "ftp://example.invalid/prices.json",
    ]);
    assert!(!out.status.success(), "an ftp URL was fetched");
    assert!(
        stderr(&out).contains("not an http(s) URL"),
        "{}",
        stderr(&out)
    );
    let out = home.run(&["set", "prices_url", "ftp://example.invalid/prices.json"]);
    assert!(!out.status.success(), "an ftp URL was accepted");
    assert!(stderr(&out).contains("prices_url"), "{}", stderr(&out));
}

#[test]
fn prices_show_names_the_table_and_explains_an_unknown_model() {
    let home = TestHome::new();
    let show = home.ok(&["prices", "show"]);
    assert!(show.starts_with("table: bundled, LiteLLM "), "{show}");
    let show = home.ok(&[
        "prices",
        "show",
        "us.anthropic.claude-haiku-4-5-20251001-v1:0",
    ]);
    assert!(
        show.contains(
            "→ us.claude-haiku-4-5-20251001 (from us.anthropic.claude-haiku-4-5-20251001-v1:0)"
        ),
        "{show}"
    );
    let show = home.ok(&["prices", "show", "claude-opus-9"]);
    assert!(show.contains("claude-opus-9: no price"), "{show}");
    let json: Value =
        serde_json::from_str(&home.ok(&["prices", "show", "--json", "gpt-5.5"])).expect("JSON");
    assert_eq!(json["table"]["origin"]["kind"], "bundled");
    assert_eq!(json["resolution"]["price"]["tiers"][0]["above"], 272_000);
}

#[test]
fn a_mixed_session_is_costed_for_its_priced_part_and_the_rest_is_named() {
    let home = TestHome::new();
    claude_session(
        &home,
        "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c",
        &[
            // claude-sonnet-4-5: 3 / 15 / 0.30 / 3.75 (5m) / 6 (1h).
            ("claude-sonnet-4-5-20250929", 2_000, 40_000, 8_000, 0, 1_000),
            // Not in any table.
            ("claude-nonesuch-1", 500, 7_000, 0, 0, 300),
        ],
    );
    let (sessions, warning) = export(&home);
    // Priced part only: 2_000*3 + 1_000*15 + 40_000*0.3 + 8_000*3.75
    //   = 6_000 + 15_000 + 12_000 + 30_000 = 63_000 per million → $0.063.
    close(sessions[0]["cost"].as_f64().expect("cost"), 0.063);
    // Tokens count both models: prompt 2_000+40_000+8_000 + 500+7_000 = 57_500; output 1_300.
    assert_eq!(sessions[0]["promptTokens"], 57_500);
    assert_eq!(sessions[0]["completionTokens"], 1_300);
    assert!(
        warning.contains(
            "no price for 1 model(s): claude-nonesuch-1 (1 session(s), 7500 prompt + 300 completion tokens)"
        ),
        "{warning}"
    );
    assert!(warning.contains("priced part only"), "{warning}");
}

#[test]
fn a_fully_priced_export_prints_no_price_warning() {
    let home = TestHome::new();
    claude_session(
        &home,
        "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        &[("claude-haiku-4-5-20251001", 100, 0, 0, 0, 10)],
    );
    let (sessions, warning) = export(&home);
    // 100*1 + 10*5 = 150 per million → $0.00015.
    close(sessions[0]["cost"].as_f64().expect("cost"), 0.00015);
    assert!(!warning.contains("no price"), "{warning}");
}

/// The reference check, frozen: per-session costs that ccusage 20.0.26 (`--offline`, its own
/// code and bundled prices) reports for the real fixtures, produced by
/// `scripts/compare-ccusage.py` (which adds ccusage's rows for legacy subagent files to their
/// parent session, as opensyncd folds them). `opensyncd export` must agree within 1% per
/// session. Runs in the real-fixture tier only; npm is never needed.
#[test]
#[ignore = "real-fixture tier: set OPENSYNCD_REAL_FIXTURES=<dir> and pass --include-ignored (.ci/run does)"]
fn real_fixture_costs_agree_with_ccusage_within_one_percent() {
    let Some(real) = crate::real_fixtures::dir() else {
        return;
    };
    let ccusage: &[(&str, f64)] = &[
        // Claude Code (ccusage claude session)
        ("e9fb405b-169f-40eb-9396-7e75076f045d", 1.316666),
        ("491e126e-1e71-469c-ade2-fcc8af567c74", 0.519593),
        ("258c7280-ae70-4798-800f-63464d01a85d", 0.371808),
        // 0.215972 + agent-36541525 0.063714 + agent-50243ee8 0.019869 (jp. Bedrock Haiku)
        ("4c2ddfdc-b619-4525-8d03-1950fb1b0257", 0.299555),
        ("ba79134d-b6e9-4867-af0c-6941038c9e4b", 0.245664),
        ("d6e0bada-1959-4eec-a9d2-0bfade768d8f", 0.226645),
        ("55604662-cf2a-4331-851a-ec234028f8ca", 0.144448),
        ("1af7fc5e-8455-4414-9ccd-011d40f70b2a", 0.093157),
        ("fed8ce56-bc79-401f-a83e-af084253362f", 0.077797),
        // 0.040442 + agent-af1ff21 0.001488
        ("c45af7b1-cb7c-4e51-93db-8cbb250a877a", 0.041930),
        ("06090cb1-3e64-433a-bc7e-a621c0f596d2", 0.012409),
        // Codex (ccusage codex session)
        ("019e1625-789d-76c0-80ab-3724b5ddb799", 8.369808),
        ("019c4895-344c-79b1-83b2-00413ff7f9a9", 1.652416),
        ("019e9625-802f-7e91-840a-cfe88d14117a", 0.019107),
        ("019b7f94-51b4-7593-922e-ba12b5b73b52", 0.014389),
    ];
    let home = TestHome::new()
        .with_env("OPENSYNCD_CLAUDE_DIRS", real.join("claude"))
        .with_env("OPENSYNCD_CODEX_DIRS", real.join("codex"))
        .with_env("OPENSYNCD_SOURCES", "claude-code,codex-cli");
    let out = home.run(&["export"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ours: std::collections::HashMap<String, f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let s = serde_json::from_str::<Value>(l).expect("export line")["session"].clone();
            (
                s["externalId"].as_str().expect("id").to_string(),
                s["cost"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(ours.len(), ccusage.len(), "{ours:?}");
    for (session, reference) in ccusage {
        let cost = ours[*session];
        assert!(
            (cost - reference).abs() <= 0.01 * reference,
            "{session}: opensyncd ${cost} vs ccusage ${reference}"
        );
    }
    assert!(!stderr(&out).contains("no price"), "{}", stderr(&out));
}

/// `scripts/update-prices.py` and opensyncd's loader keep the same entries: the script's output
/// on a small LiteLLM-shaped table (with entries each filter must drop) equals what
/// `prices update` would install from it, and carries its provenance.
#[test]
fn the_update_script_keeps_what_the_loader_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("model_prices_and_context_window.json");
    let out = dir.path().join("prices.json");
    let table = serde_json::json!({
        "sample_spec": {"litellm_provider": "openai", "input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "chat"},
        "claude-sonnet-4-5": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
            "output_cost_per_token": 1.5e-05, "cache_read_input_token_cost": 3e-07,
            "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
            "max_input_tokens": 200000, "supports_vision": true},
        "claude-haiku-4-5": {"litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06},
        "gpt-5": {"litellm_provider": "openai", "mode": "responses", "input_cost_per_token": 1.25e-06,
            "output_cost_per_token": 1e-05, "input_cost_per_token_priority": 2.5e-06,
            "input_cost_per_token_above_272k_tokens": 2.5e-06, "input_cost_per_token_above_272k_tokens_batches": 1e-06},
        "jp.anthropic.claude-haiku-4-5-20251001-v1:0": {"litellm_provider": "bedrock_converse", "mode": "chat",
            "input_cost_per_token": 1.1e-06, "output_cost_per_token": 5.5e-06},
        "bedrock/us-gov-east-1/anthropic.claude-haiku-4-5-20251001-v1:0": {"litellm_provider": "bedrock", "mode": "chat",
            "input_cost_per_token": 1.2e-06, "output_cost_per_token": 6e-06},
        "amazon.nova-pro-v1:0": {"litellm_provider": "bedrock_converse", "mode": "chat", "input_cost_per_token": 8e-07, "output_cost_per_token": 3.2e-06},
        "azure/codex-mini": {"litellm_provider": "azure", "mode": "responses", "input_cost_per_token": 1.5e-06, "output_cost_per_token": 6e-06},
        "azure/eu/codex-mini": {"litellm_provider": "azure", "mode": "responses", "input_cost_per_token": 1.65e-06, "output_cost_per_token": 6.6e-06},
        "dashscope/qwen3-coder-plus": {"litellm_provider": "dashscope", "mode": "chat", "tiered_pricing": [
            {"range": [0, 32000.0], "input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06},
            {"range": [32000.0, 128000.0], "input_cost_per_token": 1.8e-06, "output_cost_per_token": 9e-06}]},
        "text-embedding-3-small": {"litellm_provider": "openai", "mode": "embedding", "input_cost_per_token": 2e-08, "output_cost_per_token": 0.0},
        "fireworks_ai/some-model": {"litellm_provider": "fireworks_ai", "mode": "chat", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06}
    });
    std::fs::write(&source, serde_json::to_vec(&table).expect("json")).expect("write source");
    let run = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/update-prices.py"))
        .arg(&source)
        .args([
            "--out",
            out.to_str().expect("utf-8 path"),
            "--commit",
            "0123abc",
            "--date",
            "2026-01-02",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(&out).expect("output")).expect("JSON");
    let mut script_ids: Vec<&String> = written["models"]
        .as_object()
        .expect("models")
        .keys()
        .collect();
    script_ids.sort();
    assert_eq!(
        script_ids,
        vec![
            "azure/codex-mini",
            "claude-haiku-4-5",
            "claude-sonnet-4-5",
            "dashscope/qwen3-coder-plus",
            "gpt-5",
            "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
        ]
    );
    // The loader's subset of the same source is the same, field for field.
    let loader = opensyncd::pricing::litellm_subset(&table.to_string()).expect("subset");
    assert_eq!(Value::Object(loader), written["models"]);
    let provenance = &written["provenance"];
    assert_eq!(provenance["litellm_commit"], "0123abc");
    assert_eq!(provenance["date"], "2026-01-02");
    assert_eq!(provenance["sha256"].as_str().map(str::len), Some(64));
}

/// An unpriced model is named, with its tokens, in the `sync` summary, in `status` (read from
/// the ledger), and once in the daemon's log.
#[test]
fn an_unpriced_model_is_named_in_sync_status_and_the_daemon_log() {
    let emu = crate::support::Emulation::with_key(crate::daemon::KEY);
    emu.disable_windows();
    let home = TestHome::new();
    claude_session(
        &home,
        "6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d",
        &[
            ("claude-sonnet-4-5-20250929", 2_000, 40_000, 8_000, 0, 1_000),
            ("claude-nonesuch-1", 500, 7_000, 0, 0, 300),
        ],
    );
    home.login(&emu.url(), crate::daemon::KEY);
    let out = home.run(&["sync"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let named = "claude-nonesuch-1 (1 session(s), 7500 prompt + 300 completion tokens)";
    assert!(stderr(&out).contains(named), "sync: {}", stderr(&out));
    let status = home.status(&[]);
    assert!(status.contains(named), "status: {status}");
    // The daemon logs it once, however often the session is read.
    let dir = home.claude_projects().join("-home-dev-pricing");
    std::fs::remove_dir_all(home.opensyncd_home().join("state/ledger")).expect("ledger");
    let mut daemon = home.spawn_daemon(&[]);
    assert!(crate::home::wait_until(Duration::from_secs(30), || {
        daemon.log_text().contains("no price known for this model")
    }));
    let more = r#"{"parentUuid":"a-1","isSidechain":false,"type":"assistant","sessionId":"6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d","cwd":"/home/dev/pricing","message":{"model":"claude-nonesuch-1","id":"msg_9","role":"assistant","content":[{"type":"text","text":"more"}],"usage":{"input_tokens":1,"output_tokens":1}},"requestId":"req_9","uuid":"a-9","timestamp":"2026-02-03T09:00:09.000Z"}"#;
    crate::daemon::append(
        &dir.join("6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d.jsonl"),
        &format!("{more}\n"),
    );
    assert!(emu.wait_for(Duration::from_secs(30), |e| e.has_message("a-9")));
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(Duration::from_secs(20));
    assert_eq!(
        daemon
            .log_text()
            .matches("no price known for this model")
            .count(),
        1,
        "{}",
        daemon.log_text()
    );
}

/// A new price table re-prices: a session whose cost changes is sent again (once, after the
/// server's 10 s window — the clock is driven here), with the new cost.
#[test]
fn a_new_price_table_re_sends_the_sessions_whose_cost_changed() {
    let emu = crate::support::Emulation::with_key(crate::daemon::KEY);
    let home = TestHome::new();
    let clock = emu.clock_file(&home.home);
    let home = home.with_env("OPENSYNCD_TEST_CLOCK_FILE", &clock);
    let sid = "7b6c5d4e-3f2a-4b1c-8d9e-0f1a2b3c4d5e";
    claude_session(
        &home,
        sid,
        &[("claude-test-9", 1_000, 50_000, 10_000, 20_000, 2_000)],
    );
    home.login(&emu.url(), crate::daemon::KEY);
    home.ok(&["sync"]);
    // The bundled table does not know claude-test-9: no cost yet.
    assert_eq!(
        emu.session(emu.default_user(), sid).expect("session").cost,
        0.0
    );
    let server = StaticServer::start(vec![("/prices.json", 200, published_table())]);
    let out = home.run(&["prices", "update", "--url", &server.url("/prices.json")]);
    assert!(out.status.success(), "{}", stderr(&out));
    emu.advance_clock(Duration::from_secs(11));
    let before = emu.request_count();
    home.ok(&["sync"]);
    // Priced now (see prices_update_installs_a_good_table…): $0.133, sent in one request.
    close(
        emu.session(emu.default_user(), sid).expect("session").cost,
        0.133,
    );
    let sessions_sent = emu
        .requests()
        .iter()
        .skip(before as usize)
        .filter(|r| r.path == "/sync/session")
        .count();
    assert_eq!(sessions_sent, 1);
    // Nothing changes again: no further request.
    emu.advance_clock(Duration::from_secs(11));
    let before = emu.request_count();
    home.ok(&["sync"]);
    assert_eq!(emu.request_count(), before);
}
