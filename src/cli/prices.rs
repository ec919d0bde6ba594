//! `opensyncd prices show|update` and the unpriced-models warning: printing only; the table
//! logic is in `crate::prices` and `crate::pricing`.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use super::PricesAction;
use crate::config::{Config, Paths};
use crate::model::Tokens;

/// The warning line for models without a price: each named with the sessions and tokens it
/// affects, and what the exported costs then mean.
pub(super) fn unpriced_summary(unpriced: &BTreeMap<String, (usize, Tokens)>) -> String {
    let models: Vec<String> = unpriced
        .iter()
        .map(|(model, (sessions, tokens))| {
            let name = if model.is_empty() {
                "(model not recorded)"
            } else {
                model
            };
            format!(
                "{name} ({sessions} session(s), {} prompt + {} completion tokens)",
                tokens.prompt(),
                tokens.output
            )
        })
        .collect();
    format!(
        "warning: no price for {} model(s): {}; their tokens are counted but not costed, so those \
         sessions' cost is the priced part only (add the models to a pricing_file, or run \
         `opensyncd prices update`)",
        unpriced.len(),
        models.join(", ")
    )
}

pub(super) fn cmd_prices(paths: &Paths, cfg: &Config, action: PricesAction) -> Result<()> {
    match action {
        PricesAction::Update { url } => {
            let url = crate::prices::update_url(cfg, url.as_deref());
            eprintln!("downloading {url} ...");
            let done = crate::prices::update(paths, cfg, &url)?;
            println!(
                "installed {} ({} models priced, {} before; {} bytes, sha256 {})",
                done.path.display(),
                done.models,
                done.previous_models,
                done.bytes,
                done.sha256
            );
            // A running daemon switches to it now; sessions whose cost changes are sent again.
            match crate::control::notify_reload(paths) {
                Ok(true) => println!(
                    "The running daemon uses it now; sessions whose cost changed are sent again."
                ),
                _ => println!(
                    "It is used from the next sync (sessions whose cost changed are sent again)."
                ),
            }
            Ok(())
        }
        PricesAction::Show { model, json } => {
            let pricing =
                crate::prices::load(paths, cfg).map_err(|e| anyhow!("pricing_file: {e}"))?;
            let resolution = model.as_deref().map(|m| pricing.resolve(m));
            if json {
                let out = serde_json::json!({
                    "table": pricing.info(),
                    "model": model,
                    "resolution": resolution,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("table: {}", crate::prices::describe(&pricing));
                if let Some(warning) = &pricing.info().warning {
                    println!("warning: {warning}");
                }
                if let (Some(model), Some(resolution)) = (model, resolution) {
                    print!(
                        "{}",
                        crate::prices::describe_model(&model, resolution.as_ref())
                    );
                }
            }
            Ok(())
        }
    }
}
