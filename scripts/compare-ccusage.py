#!/usr/bin/env python3
"""Reference check: opensyncd's per-session cost and tokens against ccusage's, on the same logs.

Runs `ccusage claude session` and `ccusage codex session` (`--offline --json`, so both price
from their bundled tables) and `opensyncd export` on one directory laid out like
`fixtures/real` (`claude/` = a ~/.claude, `codex/` = a $CODEX_HOME), then prints, per session
and per source, both costs, the relative difference, and whether prompt and completion tokens
agree. The target is agreement within 1% per session; the exit status is 1 when a session is
off by more (or its tokens differ), so the script can gate a release check.

ccusage is not a dependency of the test suite. Install it in a scratch directory:

    mkdir -p /tmp/ccusage && cd /tmp/ccusage && npm install ccusage @ccusage/ccusage-linux-x64

and run (Python 3, standard library only):

    cargo build --locked
    python3 scripts/compare-ccusage.py --logs /work/shared/fixtures/real \\
        --ccusage /tmp/ccusage/node_modules/.bin/ccusage --opensyncd target/debug/opensyncd

Session matching: ccusage lists a legacy Claude Code subagent file (`agent-<id>.jsonl` next to
the transcript) as a session of its own; opensyncd folds it into its parent session (the
`sessionId` inside the file), so the script adds such rows to their parent before comparing.
Codex sessions are matched by the rollout file's UUID.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TOLERANCE = 0.01  # 1% per session


def run_json(cmd: list[str], env: dict) -> dict:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout)


def first_session_id(path: Path) -> str | None:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                sid = json.loads(line).get("sessionId")
            except json.JSONDecodeError:
                continue
            if sid:
                return sid
    return None


def ccusage_claude(ccusage: str, claude_dir: Path) -> dict:
    env = dict(os.environ, CLAUDE_CONFIG_DIR=str(claude_dir))
    data = run_json([ccusage, "claude", "session", "--offline", "--json"], env)
    sessions: dict = {}
    for s in data.get("sessions", []):
        sid = s["sessionId"]
        if sid.startswith("agent-"):
            # A legacy flat subagent file: it belongs to the session named inside it.
            candidate = claude_dir / "projects" / s.get("projectPath", "") / f"{sid}.jsonl"
            parent = first_session_id(candidate) if candidate.exists() else None
            sid = parent or sid
        row = sessions.setdefault(sid, {"cost": 0.0, "prompt": 0, "completion": 0, "models": set()})
        row["cost"] += s["totalCost"]
        row["prompt"] += s["inputTokens"] + s["cacheReadTokens"] + s["cacheCreationTokens"]
        row["completion"] += s["outputTokens"]
        row["models"].update(s.get("modelsUsed", []))
    return sessions


def ccusage_codex(ccusage: str, codex_dir: Path) -> dict:
    env = dict(os.environ, CODEX_HOME=str(codex_dir))
    data = run_json([ccusage, "codex", "session", "--offline", "--json"], env)
    sessions: dict = {}
    for s in data.get("sessions", []):
        sid = s["sessionId"][-36:]  # rollout-<timestamp>-<uuid>
        sessions[sid] = {
            "cost": s["costUSD"],
            # ccusage's Codex inputTokens exclude the cached part.
            "prompt": s["inputTokens"] + s["cacheReadTokens"] + s["cacheCreationTokens"],
            "completion": s["outputTokens"],
            "models": set(s.get("models", {})),
        }
    return sessions


def opensyncd_export(binary: str, logs: Path) -> tuple[dict, dict, str]:
    with tempfile.TemporaryDirectory() as home:
        env = dict(
            os.environ,
            OPENSYNCD_HOME=home,
            OPENSYNCD_CLAUDE_DIRS=str(logs / "claude"),
            OPENSYNCD_CODEX_DIRS=str(logs / "codex"),
            OPENSYNCD_SOURCES="claude-code,codex-cli",
        )
        out = subprocess.run([binary, "export"], env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"opensyncd export failed ({out.returncode}): {out.stderr.strip()}")
    by_source: dict = {"claude-code": {}, "codex-cli": {}}
    for line in out.stdout.splitlines():
        s = json.loads(line)["session"]
        by_source.setdefault(s["source"], {})[s["externalId"]] = {
            "cost": s.get("cost", 0.0),
            "prompt": s.get("promptTokens", 0),
            "completion": s.get("completionTokens", 0),
            "model": s.get("model"),
        }
    return by_source["claude-code"], by_source["codex-cli"], out.stderr


def long_context_calls(logs: Path) -> dict:
    """Calls whose prompt passes a long-context threshold, read straight from the logs.

    These are the only calls where opensyncd (the whole call at the tier rate, as providers
    bill) and ccusage (each token kind split at 200k) can disagree, so a difference in the
    tables above on such a session is expected and this says where to look.
    """
    prompts: dict = {}
    for path in sorted((logs / "claude").rglob("*.jsonl")):
        calls: dict = {}
        for line in path.open(encoding="utf-8", errors="replace"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            message = row.get("message") if isinstance(row, dict) else None
            usage = message.get("usage") if isinstance(message, dict) else None
            if not isinstance(usage, dict):
                continue
            key = (message.get("id"), row.get("requestId"))
            prompt = sum(int(usage.get(k) or 0) for k in
                         ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"))
            calls[key] = max(calls.get(key, 0), prompt)
        prompts.setdefault("claude-code", []).extend(calls.values())
    for path in sorted((logs / "codex").rglob("*.jsonl")):
        last = None
        for line in path.open(encoding="utf-8", errors="replace"):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            payload = row.get("payload") or {}
            info = payload.get("info") if payload.get("type") == "token_count" else None
            if not isinstance(info, dict) or info.get("total_token_usage") == last:
                continue
            last = info.get("total_token_usage")
            prompts.setdefault("codex-cli", []).append(int((info.get("last_token_usage") or {}).get("input_tokens") or 0))
    return {
        source: {"calls": len(p), "largest prompt": max(p, default=0),
                 "over 200k": sum(x > 200_000 for x in p), "over 272k": sum(x > 272_000 for x in p)}
        for source, p in prompts.items()
    }


def relative(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def compare(name: str, ours: dict, theirs: dict) -> tuple[bool, float, float]:
    ok = True
    print(f"\n{name}")
    print(f"  {'session':<38} {'opensyncd $':>12} {'ccusage $':>12} {'diff':>8}  tokens")
    for sid in sorted(set(ours) | set(theirs), key=lambda k: -(theirs.get(k, {}).get("cost", 0))):
        o, t = ours.get(sid), theirs.get(sid)
        if o is None or t is None:
            ok = False
            cost = lambda row: "—" if row is None else f"{row['cost']:.6f}"  # noqa: E731
            only = "ccusage" if o is None else "opensyncd"
            print(f"  {sid:<38} {cost(o):>12} {cost(t):>12}  only in {only}")
            continue
        diff = relative(o["cost"], t["cost"])
        tokens_ok = (o["prompt"], o["completion"]) == (t["prompt"], t["completion"])
        mark = "ok" if diff <= TOLERANCE and tokens_ok else "OFF"
        ok &= mark == "ok"
        tokens = "equal" if tokens_ok else (
            f"prompt {o['prompt']} vs {t['prompt']}, completion {o['completion']} vs {t['completion']}")
        print(f"  {sid:<38} {o['cost']:>12.6f} {t['cost']:>12.6f} {diff:>7.3%}  {tokens}  {mark}")
    total_ours = sum(o["cost"] for o in ours.values())
    total_theirs = sum(t["cost"] for t in theirs.values())
    print(f"  {'TOTAL':<38} {total_ours:>12.6f} {total_theirs:>12.6f} {relative(total_ours, total_theirs):>7.3%}")
    return ok and relative(total_ours, total_theirs) <= TOLERANCE, total_ours, total_theirs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, required=True, help="directory with claude/ and codex/")
    parser.add_argument("--ccusage", default="ccusage", help="the ccusage executable")
    parser.add_argument("--opensyncd", default="target/debug/opensyncd", help="the opensyncd executable")
    args = parser.parse_args()

    claude_ours, codex_ours, stderr = opensyncd_export(args.opensyncd, args.logs)
    ok = True
    if (args.logs / "claude").is_dir():
        good, _, _ = compare("Claude Code", claude_ours, ccusage_claude(args.ccusage, args.logs / "claude"))
        ok &= good
    if (args.logs / "codex").is_dir():
        good, _, _ = compare("Codex", codex_ours, ccusage_codex(args.ccusage, args.logs / "codex"))
        ok &= good
    print("\nlong-context calls (where whole-call and per-kind-split pricing can differ):")
    for source, facts in long_context_calls(args.logs).items():
        print(f"  {source}: " + ", ".join(f"{k} {v}" for k, v in facts.items()))
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    print("\nopensyncd export warnings:" if warnings else "\nopensyncd export: every model priced")
    for line in warnings:
        print(f"  {line}")
    print(f"\n{'AGREE' if ok else 'DIFFER'}: within {TOLERANCE:.0%} per session and per source" if ok
          else f"\nDIFFER: some sessions are off by more than {TOLERANCE:.0%} (see OFF rows)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
