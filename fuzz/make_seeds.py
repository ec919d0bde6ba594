#!/usr/bin/env python3
"""Regenerates fuzz/corpus/<target>/ (the committed seed corpus).

Claude, OpenCode, pi and Droid seeds are cut from the project's own fixtures (tests/fixtures/**); Codex
seeds are written here by hand from /work/shared/spec/session-formats.md §1 (no Codex fixture
existed in tests/fixtures when the seeds were made). Nothing is taken from real user logs.

Run from anywhere:  python3 fuzz/make_seeds.py
"""
import hashlib
import json
import os
import pathlib

FUZZ = pathlib.Path(__file__).resolve().parent
REPO = FUZZ.parent
FIX = REPO / "tests" / "fixtures"
CORPUS = FUZZ / "corpus"

LINES_PER_CHUNK = 4


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def reset(target):
    d = CORPUS / target
    if d.is_dir():
        for f in d.iterdir():
            f.unlink()


def j(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- claude_line
def claude():
    reset("claude_line")
    root = FIX / "claude"
    files = sorted(root.rglob("*.jsonl")) if root.is_dir() else []
    for f in files:
        lines = f.read_bytes().split(b"\n")
        lines = [l for l in lines if l.strip()]
        for i in range(0, len(lines), LINES_PER_CHUNK):
            put("claude_line", b"\n".join(lines[i:i + LINES_PER_CHUNK]) + b"\n")
    # A few hand-written lines for shapes the fixtures may not have (spec §2).
    sid = "0b6f0a57-0000-4000-8000-000000000001"
    base = {"sessionId": sid, "cwd": "/home/x", "timestamp": "2026-01-01T00:00:00.000Z"}
    put("claude_line", "\n".join([
        j({**base, "type": "user", "uuid": "u1", "message": {"role": "user", "content": "<command-name>/clear</command-name>"}}),
        j({**base, "type": "user", "uuid": "u2", "isMeta": True, "message": {"role": "user", "content": "meta"}}),
        j({**base, "type": "user", "uuid": "u3", "message": {"role": "user", "content": [{"type": "text", "text": "fix the bug"}]}}),
        j({**base, "type": "assistant", "uuid": "a1", "requestId": "req_1", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "content": [{"type": "thinking", "thinking": "hmm"}, {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}}], "usage": {"input_tokens": 3, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 50, "output_tokens": 7}}}),
        j({**base, "type": "user", "uuid": "u4", "message": {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "a\nb"}]}]}}),
        j({**base, "type": "assistant", "uuid": "a2", "requestId": "req_1", "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "content": [{"type": "text", "text": "done"}], "usage": {"input_tokens": 3, "output_tokens": 42}}}),
        j({**base, "type": "assistant", "uuid": "a3", "isApiErrorMessage": True, "message": {"model": "<synthetic>", "content": [{"type": "text", "text": "API Error"}]}}),
        j({**base, "sessionId": "11111111-2222-4333-8444-555555555555", "type": "user", "uuid": "r1", "message": {"content": "replayed"}}),
        j({"type": "summary", "summary": "s", "leafUuid": "a2"}),
        j({**base, "type": "system", "subtype": "compact_boundary", "content": "c"}),
        j({**base, "type": "user", "uuid": "u5", "isCompactSummary": True, "message": {"content": "summary"}}),
        "not json",
        "",
    ]) + "\n")


# ---------------------------------------------------------------- codex_line
def codex():
    reset("codex_line")
    sid = "0b6f0a57-0000-4000-8000-000000000002"

    def env(ts, typ, payload):
        return j({"timestamp": f"2026-01-01T00:00:{ts:02d}.000Z", "type": typ, "payload": payload})

    def usage(i, c, o, r):
        return {"input_tokens": i, "cached_input_tokens": c, "output_tokens": o,
                "reasoning_output_tokens": r, "total_tokens": i + o}

    meta = env(0, "session_meta", {"id": sid, "timestamp": "2026-01-01T00:00:00.000Z", "cwd": "/home/x/repo",
                                   "originator": "codex_cli_rs", "cli_version": "0.125.0", "source": "cli",
                                   "model_provider": "openai", "git": {"branch": "main"}})
    turn = env(1, "turn_context", {"turn_id": "t1", "cwd": "/home/x/repo", "approval_policy": "on-request",
                                   "sandbox_policy": {"type": "workspace-write"}, "model": "gpt-5-codex", "summary": "auto"})
    full = [
        meta,
        env(1, "event_msg", {"type": "task_started", "turn_id": "t1", "model_context_window": 258400}),
        env(1, "response_item", {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "<permissions instructions>x</permissions instructions>"}]}),
        env(1, "response_item", {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<environment_context>\n<cwd>/home/x</cwd>\n</environment_context>"}]}),
        turn,
        env(2, "response_item", {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "show tools"}]}),
        env(2, "event_msg", {"type": "user_message", "message": "show tools", "images": [], "local_images": [], "text_elements": []}),
        env(3, "event_msg", {"type": "token_count", "info": None, "rate_limits": None}),
        env(3, "response_item", {"type": "reasoning", "summary": [{"type": "summary_text", "text": "**Thinking**"}], "content": None, "encrypted_content": "gAAAA"}),
        env(3, "event_msg", {"type": "agent_reasoning", "text": "**Thinking**"}),
        env(4, "response_item", {"type": "function_call", "name": "exec_command", "arguments": j({"cmd": "ls", "workdir": "/home/x"}), "call_id": "call_1"}),
        env(4, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(1000, 0, 20, 5), "last_token_usage": usage(1000, 0, 20, 5), "model_context_window": 258400}}),
        env(5, "response_item", {"type": "function_call_output", "call_id": "call_1", "output": j({"output": "a\nb\n", "metadata": {"exit_code": 0, "duration_seconds": 0.1}})}),
        env(5, "response_item", {"type": "custom_tool_call", "status": "completed", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch\n*** End Patch\n"}),
        env(5, "response_item", {"type": "custom_tool_call_output", "call_id": "call_2", "output": "Success"}),
        env(6, "response_item", {"type": "local_shell_call", "call_id": "call_3", "status": "completed", "action": {"type": "exec", "command": ["ls", "-l"], "working_directory": "/home/x"}}),
        env(6, "response_item", {"type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "rust"}}),
        env(7, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(2500, 900, 60, 10), "last_token_usage": usage(1500, 900, 40, 5)}}),
        env(7, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(2500, 900, 60, 10), "last_token_usage": usage(1500, 900, 40, 5)}}),
        env(8, "event_msg", {"type": "agent_message", "message": "Here are the tools."}),
        env(8, "response_item", {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Here are the tools."}], "phase": "final_answer"}),
        env(9, "event_msg", {"type": "task_complete", "turn_id": "t1", "last_agent_message": "Here are the tools."}),
        env(9, "compacted", {"message": "summary", "replacement_history": []}),
        env(9, "world_state", {}),
    ]
    for i in range(0, len(full), LINES_PER_CHUNK):
        # Each chunk keeps the header so the vintage and session id are set as in a real file.
        chunk = full[i:i + LINES_PER_CHUNK]
        if i:
            chunk = [meta] + chunk
        put("codex_line", "\n".join(chunk) + "\n")
    put("codex_line", "\n".join(full) + "\n")
    # Model switch and a counter reset (a total that decreases).
    put("codex_line", "\n".join([
        meta, turn,
        env(2, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(100, 40, 10, 2)}}),
        env(3, "turn_context", {"model": "gpt-5.1"}),
        env(4, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(250, 100, 30, 2)}}),
        env(5, "event_msg", {"type": "token_count", "info": {"total_token_usage": usage(50, 0, 5, 0)}}),
    ]) + "\n")
    # A fork: a second session_meta of another id (only the first is the file's session).
    put("codex_line", "\n".join([
        meta,
        env(1, "session_meta", {"id": "0b6f0a57-0000-4000-8000-0000000000ff", "cwd": "/elsewhere", "forked_from_id": sid}),
        env(2, "event_msg", {"type": "user_message", "message": "hi"}),
    ]) + "\n")
    # Pre-envelope vintage: bare header, record_type markers, bare ResponseItems.
    put("codex_line", "\n".join([
        j({"id": sid, "timestamp": "2025-08-01T10:00:00.000Z", "instructions": None, "cwd": "/home/x", "originator": "codex_cli_rs", "cli_version": "0.34.0", "git": {}}),
        j({"record_type": "state"}),
        j({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "<user_instructions>AGENTS</user_instructions>"}]}),
        j({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "explain this repo"}]}),
        j({"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "reading"}], "content": None}),
        j({"type": "function_call", "name": "shell", "arguments": "{\"command\":[\"ls\"]}", "call_id": "c1"}),
        j({"type": "function_call_output", "call_id": "c1", "output": "not json"}),
        j({"record_type": "state"}),
        j({"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is a daemon."}]}),
    ]) + "\n")
    put("codex_line", "[]\n{}\n\"x\"\n{\"type\":\"x\"}\n")


# ---------------------------------------------------------------- opencode_record
def opencode():
    reset("opencode_record")
    st = FIX / "opencode" / "storage"
    for info_path in sorted((st / "session").glob("*/*.json")):
        info = json.loads(info_path.read_text())
        sid = info["id"]
        lines = [j(info)]
        groups = []
        for m in sorted((st / "message" / sid).glob("*.json")):
            msg = json.loads(m.read_text())
            group = [j(msg)]
            for p in sorted((st / "part" / m.stem).glob("*.json")):
                group.append(j(json.loads(p.read_text())))
            groups.append("\n".join(group))
        put("opencode_record", "\n".join(lines) + "\n" + "\n\n".join(groups) + "\n")
        # Each message alone, too (small inputs mutate faster).
        for g in groups:
            put("opencode_record", lines[0] + "\n" + g + "\n")
    # Hand-written shapes from spec §3.3 the fixtures may lack.
    sid = "ses_fuzz"
    put("opencode_record", "\n".join([
        j({"id": sid, "directory": "/home/x", "title": "t", "time": {"created": 1767261600000, "updated": 1767261700000}}),
        j({"id": "msg_1", "sessionID": sid, "role": "user", "time": {"created": 1767261600100}}),
        j({"id": "prt_1", "sessionID": sid, "messageID": "msg_1", "type": "text", "text": "hello"}),
        j({"id": "prt_2", "sessionID": sid, "messageID": "msg_1", "type": "text", "text": "ctx", "synthetic": True}),
        j({"id": "prt_3", "sessionID": sid, "messageID": "msg_1", "type": "file", "mime": "text/plain", "url": "file:///x"}),
        "",
        j({"id": "msg_2", "sessionID": sid, "role": "assistant", "modelID": "gpt-5.1-codex", "providerID": "openai", "time": {"created": 1767261601000, "completed": 1767261602000}, "cost": 0.5, "tokens": {"input": 1, "output": 2, "reasoning": 1, "cache": {"read": 3, "write": 4}}, "finish": "tool-calls"}),
        j({"id": "prt_4", "type": "step-start"}),
        j({"id": "prt_5", "type": "reasoning", "text": "think", "metadata": {}}),
        j({"id": "prt_6", "type": "tool", "callID": "c1", "tool": "bash", "state": {"status": "completed", "input": {"command": "ls"}, "output": "a\nb", "title": "ls", "metadata": {}, "time": {"start": 1, "end": 2}}}),
        j({"id": "prt_7", "type": "tool", "callID": "c2", "tool": "read", "state": {"status": "error", "input": {"path": "/x"}, "error": "ENOENT", "time": {"start": 1, "end": 2}}}),
        j({"id": "prt_8", "type": "tool", "callID": "c3", "tool": "edit", "state": {"status": "pending", "input": {}, "raw": ""}}),
        j({"id": "prt_9", "type": "step-finish", "reason": "tool-calls", "cost": 0.5, "tokens": {"input": 1, "output": 2, "reasoning": 1, "cache": {"read": 3, "write": 4}}}),
        "",
        j({"id": "msg_3", "sessionID": sid, "role": "assistant", "time": {"created": 1767261603000}, "tokens": {"input": 0, "output": 0, "cache": {"read": 0, "write": 0}}}),
        j({"id": "prt_10", "type": "text", "text": "streaming..."}),
    ]) + "\n")


# ---------------------------------------------------------------- droid_line
def droid():
    """Droid transcripts from tests/fixtures/droid: whole (with their settings file after a NUL
    byte, the target's input layout) and in 4-line chunks; plus settings-only edge values."""
    reset("droid_line")
    root = FIX / "droid" / "sessions"
    files = sorted(root.rglob("*.jsonl")) if root.is_dir() else []
    for f in files:
        data = f.read_bytes()
        settings = f.with_name(f.name[: -len(".jsonl")] + ".settings.json")
        put("droid_line", data + (b"\0" + settings.read_bytes() if settings.is_file() else b""))
        lines = [l for l in data.split(b"\n") if l.strip()]
        for i in range(0, len(lines), LINES_PER_CHUNK):
            put("droid_line", b"\n".join(lines[i:i + LINES_PER_CHUNK]) + b"\n")
    start = j({"type": "session_start", "id": "s", "title": "t", "sessionTitleAutoStage": 2})
    for usage in [
        {"inputTokens": 18446744073709551615, "outputTokens": 18446744073709551615,
         "cacheReadTokens": 18446744073709551615, "cacheCreationTokens": 1, "thinkingTokens": 1},
        {"outputTokens": 10, "thinkingTokens": 18446744073709551615},
        {"inputTokens": -1, "outputTokens": 1.5, "thinkingTokens": "7", "cacheReadTokens": None},
    ]:
        put("droid_line", start + "\n\0" + j({"model": "custom:X-[Y]-0", "tokenUsage": usage}))


# ---------------------------------------------------------------- server_response
def cursor():
    """Cursor: transcript lines, an empty line, spool lines (the cursor_line input layout), one
    seed per conversation of tests/fixtures/cursor."""
    reset("cursor_line")
    fix = FIX / "cursor"
    convs = {}
    for p in sorted((fix / "projects").glob("*/agent-transcripts/**/*.jsonl")):
        if p.parent.name != "subagents":
            convs.setdefault(p.stem, [b"", b""])[0] = p.read_bytes()
    for p in sorted((fix / "spool").glob("*.jsonl")):
        convs.setdefault(p.stem, [b"", b""])[1] = p.read_bytes()
    for transcript, spool in convs.values():
        complete = transcript[: transcript.rfind(b"\n") + 1]
        put("cursor_line", (complete or b"\n") + b"\n" + spool)


def server():
    reset("server_response")

    def resp(status, json_ct, retry_after, body):
        return bytes([status >> 8, status & 0xFF, 1 if json_ct else 0]) + retry_after.encode() + b"\n" + body.encode()

    cases = [
        (401, True, "", '{"error":"Invalid API key"}'),
        (401, True, "", '{"error":"API key validation failed: timeout"}'),
        (401, True, "", '{"error":"Invalid API key format"}'),
        (403, True, "", '{"error":"Forbidden"}'),
        (404, False, "", "No matching routes found"),
        (405, False, "", "<html>Method Not Allowed</html>"),
        (408, True, "5", '{"error":"timeout"}'),
        (429, True, "120", '{"error":"rate limited"}'),
        (429, True, "Wed, 21 Oct 2015 07:28:00 GMT", '{"error":"rate limited"}'),
        (429, True, "Fri, 01 Jan 2027 00:00:00 GMT", "{}"),
        (413, True, "", '{"error":"Request body too large"}'),
        (400, True, "", '{"error":"Missing externalId"}'),
        (500, True, "", '{"error":"ArgumentValidationError: Object contains extra field `x`"}'),
        (500, True, "", '{"error":"Too many reads in a single function execution"}'),
        (500, True, "", '{"error":"Documents read from or written to the table changed"}'),
        (502, False, " 3 ", "<html>Bad Gateway</html>"),
        (503, True, "", '{"error":null}'),
        (200, False, "", "ok"),
        (302, False, "", ""),
    ]
    for c in cases:
        put("server_response", resp(*c))


# ---------------------------------------------------------------- pi_line
def pi():
    reset("pi_line")
    root = FIX / "pi"
    files = sorted(root.rglob("*.jsonl")) if root.is_dir() else []
    for f in files:
        data = f.read_bytes()
        # The whole file (they are small), then the header with each window of 3 entries: the
        # header decides whether anything else is read.
        put("pi_line", data)
        lines = [l for l in data.split(b"\n") if l.strip()]
        for i in range(1, len(lines), 3):
            put("pi_line", b"\n".join([lines[0]] + lines[i:i + 3]) + b"\n")
    # Hand-written shapes the fixtures may not have (spec section 2): a v3 fork of an absent
    # parent, numbers at the edges, a string toolCall argument, a second header.
    sid = "0b6f0a57-0000-4000-8000-000000000003"
    put("pi_line", "\n".join([
        j({"type": "session", "version": 3, "id": sid, "timestamp": "2026-01-02T00:00:00.000Z", "cwd": "/home/x",
           "parentSession": "/home/x/.pi/agent/sessions/--home-x--/2026-01-01T00-00-00-000Z_aaaaaaaa-0000-4000-8000-000000000000.jsonl"}),
        j({"type": "message", "id": "a1", "parentId": None, "timestamp": "2026-01-01T00:00:01.000Z",
           "message": {"role": "assistant", "content": [{"type": "toolCall", "id": "t", "name": "bash", "arguments": "ls"}],
                       "provider": "p", "model": "m", "usage": {"input": 18446744073709551615, "output": 1e300, "cacheRead": -1,
                                                               "cacheWrite": 0.5, "cost": {"total": 1e308}}, "timestamp": 1e300}}),
        j({"type": "session", "id": "other", "timestamp": "x"}),
        j({"type": "session_info", "id": "b1", "parentId": "a1", "timestamp": "2026-01-02T00:00:02.000Z", "name": "  "}),
        j({"type": "message", "id": "c1", "parentId": "b1", "timestamp": 5,
           "message": {"role": "bashExecution", "command": "x", "output": None, "exitCode": -9223372036854775808, "cancelled": "yes"}}),
    ]) + "\n")


# ---------------------------------------------------------------- config_value
def config():
    reset("config_value")
    for v in [
        "https://happy-cat-123.convex.cloud/",
        " https://happy-cat-123.convex.site ",
        "http://127.0.0.1:8080",
        "http://[::1]:9/",
        "http://localhost:3210",
        "http://example.com",
        "ftp://x",
        "https://user@host",
        "per-record", "batch",
        "true", "off", "1", "0", "-1", "4", "9223372036854775807", "262144", "65536",
        "info", "opensyncd=debug,warn", "text", "json",
        "claude-code, codex-cli,opencode",
        "~/.claude,/tmp/x",
        r"sk-[A-Za-z0-9]{20,}, (?i)secret=\w+",
        "~/.local/share/opencode/opencode.db",
        "",
    ]:
        put("config_value", v)


if __name__ == "__main__":
    claude()
    codex()
    opencode()
    pi()
    droid()
    cursor()
    server()
    config()
    total = 0
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        size = sum(f.stat().st_size for f in files)
        total += size
        print(f"{d.name}: {len(files)} seeds, {size} bytes")
    print(f"total: {total} bytes")
