#!/usr/bin/env python3
"""Regenerate opensyncd's bundled price table (assets/prices.json) from LiteLLM's table.

This script is how the bundled table is refreshed. opensyncd prices every model from LiteLLM's
`model_prices_and_context_window.json`, the table ccusage, LiteLLM and most cost tools use. The
script keeps only what opensyncd prices with:

  * entries of the providers our sources can produce (Anthropic, OpenAI, Google, xAI, DeepSeek,
    Mistral, Moonshot, Qwen/DashScope, Z.ai/GLM, MiniMax, and their Bedrock / Vertex / OpenRouter
    spellings; Azure only where OpenAI's own entries lack a model);
  * in each entry, `litellm_provider` and the per-token rates: input, output, cache read, cache
    write (5 minutes), cache write 1 hour (`cache_creation_input_token_cost_above_1hr`), and
    every `*_above_<N>k_tokens` long-context variant of those.

Entries keep LiteLLM's ids and field names unchanged, so the file is a faithful subset of the
source: opensyncd (src/pricing/) reads the same shape from `opensyncd prices update`.

Usage (Python 3, standard library only):

    # From the copy inside the PyPI wheel (pip download --no-deps litellm):
    python3 scripts/update-prices.py /tmp/litellm-1.110.2-....whl
    # From a checkout or a downloaded file (say which LiteLLM version or commit it is):
    python3 scripts/update-prices.py path/to/model_prices_and_context_window.json --commit SHA
    # From a URL:
    python3 scripts/update-prices.py https://raw.githubusercontent.com/BerriAI/litellm/main/model_prices_and_context_window.json

Then run `cargo test --locked --lib pricing` and commit assets/prices.json. The provenance
(LiteLLM version or commit, the date, the sha256 of the source file) is written into the
file's "provenance" object, which `opensyncd prices show` prints.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import re
import sys
import urllib.request
import zipfile
from pathlib import Path

# Providers whose models our sources can produce. opensyncd's loader (src/pricing/litellm.rs,
# PROVIDER_RANKS) applies the same list to a table installed by `prices update`; a test checks
# that the bundled file holds no other provider.
PROVIDERS = {
    "anthropic",
    "openai",
    "gemini",
    "xai",
    "deepseek",
    "mistral",
    "moonshot",
    "dashscope",
    "zai",
    "minimax",
    "bedrock",
    "bedrock_converse",
    "vertex_ai-anthropic_models",
    "vertex_ai-language-models",
    "vertex_ai-mistral_models",
    "vertex_ai",
    "openrouter",
    # Only fills gaps (`codex-mini`); `azure/<region>/…` deployments are left out.
    "azure",
}

# Bedrock lists every vendor's models; keep those of the vendors above (`<vendor>.<model>`,
# optionally behind a cross-region prefix such as `us.` or `global.`).
BEDROCK_VENDORS = {"anthropic", "mistral", "deepseek", "qwen", "moonshotai", "moonshot", "minimax", "openai", "zai"}
BEDROCK_REGION = re.compile(r"^(?:[a-z]{2,6}(?:-[a-z]+)?\.)?([a-z0-9]+)\.")

# The rates we price with; every long-context (`_above_<N>k_tokens`) variant is kept too.
RATE = re.compile(
    r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost"
    r"|cache_creation_input_token_cost|cache_creation_input_token_cost_above_1hr)"
    r"(_above_\d+k?_tokens)?$"
)

# Modes that bill tokens of a chat turn (embedding, image, audio models are irrelevant).
MODES = {None, "chat", "responses", "completion"}

WHEEL_MEMBER = "litellm/model_prices_and_context_window_backup.json"


def read_source(source: str) -> tuple[bytes, dict]:
    """Returns the raw JSON bytes and what we know of their origin."""
    origin: dict = {"source": source}
    if re.match(r"^https?://", source):
        with urllib.request.urlopen(source, timeout=60) as response:  # noqa: S310 (asked for)
            return response.read(), origin
    path = Path(source)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(WHEEL_MEMBER)
            for name in wheel.namelist():
                if name.endswith(".dist-info/METADATA"):
                    for line in wheel.read(name).decode("utf-8", "replace").splitlines():
                        if line.startswith("Version:"):
                            origin["litellm_version"] = line.split(":", 1)[1].strip()
                            break
        origin["source"] = f"PyPI wheel {path.name}, member {WHEEL_MEMBER}"
        return data, origin
    return path.read_bytes(), origin


def is_rate(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def keep(model_id: str, entry: object) -> dict | None:
    """The fields we price with, or None when the entry is not a priced chat model of ours."""
    if model_id == "sample_spec" or not isinstance(entry, dict):
        return None  # sample_spec documents the format; it is not a model
    if entry.get("litellm_provider") not in PROVIDERS or entry.get("mode") not in MODES:
        return None
    if entry["litellm_provider"].startswith("bedrock"):
        # `bedrock/<aws-region>/…` ids are per-AWS-region deployments no log names.
        vendor = BEDROCK_REGION.match(model_id)
        if "/" in model_id or not vendor or vendor.group(1) not in BEDROCK_VENDORS:
            return None
    if entry["litellm_provider"] == "azure" and model_id.count("/") != 1:
        return None
    tiers = entry.get("tiered_pricing")
    if isinstance(tiers, list) and tiers:
        # Range tiers (Qwen): keep each tier's range and rates.
        kept_tiers = [
            {k: v for k, v in t.items() if k == "range" or (RATE.match(k) and is_rate(v))}
            for t in tiers
            if isinstance(t, dict) and isinstance(t.get("range"), list) and is_rate(t.get("input_cost_per_token"))
        ]
        if len(kept_tiers) == len(tiers):
            kept = {"litellm_provider": entry["litellm_provider"], "tiered_pricing": kept_tiers}
            if is_rate(entry.get("output_cost_per_token")):
                kept["output_cost_per_token"] = entry["output_cost_per_token"]
            return kept
    if not (is_rate(entry.get("input_cost_per_token")) and is_rate(entry.get("output_cost_per_token"))):
        return None
    kept = {"litellm_provider": entry["litellm_provider"]}
    for field, value in sorted(entry.items()):
        if RATE.match(field) and is_rate(value):
            kept[field] = value
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="LiteLLM JSON: a path, a URL, or a litellm wheel (.whl)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "assets" / "prices.json"))
    parser.add_argument("--litellm-version", help="LiteLLM release the file comes from")
    parser.add_argument("--commit", help="BerriAI/litellm commit the file comes from")
    parser.add_argument("--date", help="date to record (default: today, UTC)")
    args = parser.parse_args()

    raw, origin = read_source(args.source)
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as error:
        print(f"{args.source}: not JSON: {error}", file=sys.stderr)
        return 1
    if not isinstance(table, dict):
        print(f"{args.source}: not a JSON object of models", file=sys.stderr)
        return 1

    models = {}
    for model_id in sorted(table):
        kept = keep(model_id, table[model_id])
        if kept is not None:
            models[model_id] = kept
    # A sanity floor: a truncated or foreign file must not replace the table.
    for must in ("claude-sonnet-4-5", "gpt-5", "claude-haiku-4-5"):
        if must not in models:
            print(f"{args.source}: no priced entry for {must}; refusing to write", file=sys.stderr)
            return 1

    provenance = {
        "source": origin["source"],
        "litellm_version": args.litellm_version or origin.get("litellm_version"),
        "litellm_commit": args.commit,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "date": args.date or _dt.datetime.now(_dt.timezone.utc).date().isoformat(),
        "entries_in_source": len(table),
        "entries_kept": len(models),
        "generator": "scripts/update-prices.py",
    }
    # One model per line: small diffs when the table is refreshed.
    lines = ["{", f'"provenance": {json.dumps(provenance, sort_keys=True)},', '"models": {']
    items = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in models.items()]
    lines.append(",\n".join(items))
    lines.append("}}")
    out = Path(args.out)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    json.loads(tmp.read_text(encoding="utf-8"))  # never leave a broken file behind
    tmp.replace(out)
    print(
        f"wrote {out}: {len(models)} of {len(table)} entries, LiteLLM "
        f"{provenance['litellm_version'] or provenance['litellm_commit'] or '(version unknown)'}, "
        f"sha256 {provenance['sha256'][:16]}…",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
