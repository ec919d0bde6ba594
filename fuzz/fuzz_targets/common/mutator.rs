//! A structure-aware mutator for JSON-lines inputs.
//!
//! libFuzzer's byte mutations rarely turn `"input_tokens":1200` into a *valid* edge value such
//! as `18446744073709551615` (inserting dictionary words leaves the old digits behind). This
//! mutator parses one line as JSON, changes one node (or every number in the line) to an
//! interesting value, adds a known key, or moves whole lines, and re-serialises; a third of the
//! time it falls back to libFuzzer's own mutations so malformed input stays covered.

use serde_json::{Map, Number, Value};

struct Rng(u64);

impl Rng {
    fn new(seed: u32) -> Rng {
        Rng((u64::from(seed) << 1 | 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Keys the parsers look at (src/sources/*.rs), for "add a key" mutations.
const KEYS: &[&str] = &[
    "type", "payload", "timestamp", "id", "uuid", "sessionId", "sessionID", "messageID",
    "requestId", "cwd", "directory", "role", "content", "text", "message", "model", "modelID",
    "providerID", "usage", "input_tokens", "output_tokens", "cache_read_input_tokens",
    "cache_creation_input_tokens", "cached_input_tokens", "reasoning_output_tokens", "info",
    "total_token_usage", "tokens", "input", "output", "reasoning", "cache", "read", "write",
    "cost", "time", "created", "completed", "updated", "finish", "isMeta", "isCompactSummary",
    "isApiErrorMessage", "record_type", "summary", "name", "arguments", "action", "state",
    "status", "tool", "synthetic", "ignored", "title", "parentID", "error", "thinking",
    // Factory Droid (src/sources/droid.rs)
    "visibility", "tool_use_id", "isSessionTitleManuallySet", "sessionTitleAutoStage",
    "chatCompletionReasoningContent", "tokenUsage", "inputTokens", "outputTokens",
    "cacheReadTokens", "cacheCreationTokens", "thinkingTokens", "providerLock",
    "assistantActiveTimeMs",
];

const STRINGS: &[&str] = &[
    "", " ", "\n", "<", "<synthetic>", "user", "assistant", "system", "tool", "developer",
    "message", "text", "tool_use", "tool_result", "thinking", "reasoning", "function_call",
    "function_call_output", "custom_tool_call", "local_shell_call", "web_search_call",
    "session_meta", "turn_context", "response_item", "event_msg", "user_message",
    "agent_message", "agent_reasoning", "token_count", "completed", "error", "step-start",
    "2026-01-01T00:00:00Z", "9999-12-31T23:59:60.999+23:59", "0000-01-01T00:00:00-23:59",
    "2026-02-30T24:00:00Z", "{\"output\":\"x\"}", "{", "\u{0}", "\u{feff}", "é", "🦀",
    "<command-name>/x</command-name>", "[Request interrupted by user]",
    "0b6f0a57-0000-4000-8000-000000000001", "ses_fuzz",
    "session_start", "todo_state", "llm_only", "<system-reminder>", "first_message",
];

fn number(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::from(u64::MAX),
        1 => Value::from(u64::MAX - 1),
        2 => Value::from(1u64 << 63),
        3 => Value::from(i64::MAX),
        4 => Value::from(i64::MIN),
        5 => Value::from(i64::MIN + 1),
        6 => Value::from(-1),
        7 => Value::from(0),
        8 => Value::from(1),
        9 => Value::from(u64::from(u32::MAX) + 1),
        10 => Number::from_f64(1e308).map_or(Value::Null, Value::Number),
        11 => Number::from_f64(-1e308).map_or(Value::Null, Value::Number),
        12 => Number::from_f64(0.5).map_or(Value::Null, Value::Number),
        13 => Number::from_f64(1.8446744073709552e19).map_or(Value::Null, Value::Number),
        14 => Value::from(rng.next() >> rng.below(64)),
        _ => Value::from(-((rng.next() >> (1 + rng.below(63))) as i64)),
    }
}

fn interesting(rng: &mut Rng) -> Value {
    match rng.below(10) {
        0..=4 => number(rng),
        5 | 6 => Value::from(STRINGS[rng.below(STRINGS.len())]),
        7 => Value::from("x".repeat(1 + rng.below(3000))),
        8 => [Value::Null, Value::Bool(true), Value::Bool(false)][rng.below(3)].clone(),
        _ => {
            if rng.below(2) == 0 {
                Value::Array(vec![])
            } else {
                Value::Object(Map::new())
            }
        }
    }
}

fn pointers(v: &Value, at: String, out: &mut Vec<String>, numbers: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                pointers(child, p, out, numbers);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out, numbers);
            }
        }
        Value::Number(_) => numbers.push(at.clone()),
        _ => {}
    }
    out.push(at);
}

/// Mutates one JSON line in place; false if the line is not JSON.
fn mutate_json(line: &mut Vec<u8>, rng: &mut Rng) -> bool {
    let Ok(mut v) = serde_json::from_slice::<Value>(line) else {
        return false;
    };
    let (mut all, mut nums) = (Vec::new(), Vec::new());
    pointers(&v, String::new(), &mut all, &mut nums);
    match rng.below(8) {
        // Every number in the line gets the same value (sums of several fields overflow).
        0 if !nums.is_empty() => {
            let n = number(rng);
            for p in &nums {
                if let Some(slot) = v.pointer_mut(p) {
                    *slot = n.clone();
                }
            }
        }
        // One number gets an edge value.
        1..=3 if !nums.is_empty() => {
            let p = &nums[rng.below(nums.len())];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = number(rng);
            }
        }
        // A new key with an interesting value in some object.
        4 | 5 => {
            let objects: Vec<&String> =
                all.iter().filter(|p| v.pointer(p).is_some_and(Value::is_object)).collect();
            if objects.is_empty() {
                return false;
            }
            let p = objects[rng.below(objects.len())].clone();
            let key = KEYS[rng.below(KEYS.len())];
            let value = interesting(rng);
            if let Some(Value::Object(m)) = v.pointer_mut(&p) {
                m.insert(key.to_string(), value);
            }
        }
        // Any node (the root included) becomes an interesting value.
        _ => {
            let p = &all[rng.below(all.len())];
            if let Some(slot) = v.pointer_mut(p) {
                *slot = interesting(rng);
            }
        }
    }
    match serde_json::to_vec(&v) {
        Ok(bytes) => {
            *line = bytes;
            true
        }
        Err(_) => false,
    }
}

/// The custom mutator body for the JSON-lines targets.
pub fn mutate(data: &mut [u8], size: usize, max_size: usize, seed: u32) -> usize {
    let mut rng = Rng::new(seed);
    if rng.below(3) == 0 || size == 0 {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    let mut lines: Vec<Vec<u8>> = data[..size].split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
    let changed = if rng.below(8) == 0 && lines.len() > 1 {
        // Line-level: duplicate a line somewhere else, or swap two lines.
        let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
        if rng.below(2) == 0 {
            let copy = lines[a].clone();
            lines.insert(b, copy);
        } else {
            lines.swap(a, b);
        }
        true
    } else {
        let json: Vec<usize> = (0..lines.len())
            .filter(|&i| serde_json::from_slice::<serde::de::IgnoredAny>(&lines[i]).is_ok())
            .collect();
        !json.is_empty() && {
            let i = json[rng.below(json.len())];
            mutate_json(&mut lines[i], &mut rng)
        }
    };
    let out = lines.join(&b'\n');
    if !changed || out.len() > max_size {
        return libfuzzer_sys::fuzzer_mutate(data, size, max_size);
    }
    data[..out.len()].copy_from_slice(&out);
    out.len()
}
