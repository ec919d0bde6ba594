//! Model-id normalisation: the spellings a model id from a log is looked up under in the price
//! table, most specific first. Provider and routing prefixes go (`anthropic/`, `openrouter/…/`,
//! ARNs), Bedrock ids keep their cross-region prefix and lose their version (`-v1:0`), Vertex
//! `@date` becomes the dated id, a trailing date and a `-latest` alias fall back to the family,
//! Claude's dots and Codex's dashed GPT versions are spelt as the table spells them, and Droid's
//! bring-your-own-key display names are reduced to the model they name.

/// Vendors in Bedrock ids (`[region.]vendor.model`) that our sources can produce.
const BEDROCK_VENDORS: &[&str] = &[
    "anthropic",
    "mistral",
    "deepseek",
    "qwen",
    "moonshotai",
    "moonshot",
    "minimax",
    "openai",
    "zai",
];

/// A model id taken apart: an optional Bedrock cross-region prefix and the base id (lower case,
/// provider decorations removed, dots and dashes as the table spells them).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct NormalisedId {
    region: Option<String>,
    pub(super) base: String,
}

impl NormalisedId {
    pub(super) fn parse(model: &str) -> NormalisedId {
        let mut s = model.trim().to_ascii_lowercase();
        if let Some(rest) = s.strip_prefix("custom:") {
            s = droid_byok_name(rest);
        }
        // Routing prefixes: `anthropic/`, `openai/`, `converse/`, `openrouter/<vendor>/`, ARNs.
        if let Some((_, last)) = s.rsplit_once('/') {
            s = last.to_string();
        }
        let mut region = None;
        if let Some((r, rest)) = bedrock_split(&s) {
            region = r.map(str::to_string);
            s = rest.to_string();
        }
        // Vertex: `claude-sonnet-4-5@20250929` is the dated id; `@latest`/`@default` add nothing.
        if let Some((head, tail)) = s.split_once('@') {
            s = if tail.len() == 8 && tail.bytes().all(|b| b.is_ascii_digit()) {
                format!("{head}-{tail}")
            } else {
                head.to_string()
            };
        }
        // Bedrock model versions: `-v1:0`, `-v2:0`, `-v1`, and `-1:0` (`openai.gpt-oss-120b-1:0`).
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if let Some(i) = s.rfind("-v") {
            let tail = &s[i + 2..];
            let (major, minor) = tail.split_once(':').unwrap_or((tail, "0"));
            if digits(major) && digits(minor) {
                s.truncate(i);
            }
        }
        if let Some((head, minor)) = s.rsplit_once(':')
            && let Some((model, major)) = head.rsplit_once('-')
            && digits(major)
            && digits(minor)
        {
            s = model.to_string();
        }
        // Anthropic ids use dashes (`claude-sonnet-4-5`); OpenRouter and display names use dots.
        if s.starts_with("claude") {
            s = s.replace('.', "-");
        }
        s = dotted_gpt_version(&s);
        NormalisedId { region, base: s }
    }

    pub(super) fn is_anthropic(&self) -> bool {
        self.base.starts_with("claude")
    }

    /// The undated id without region.
    pub(super) fn family(&self) -> String {
        strip_date(&self.base).unwrap_or(&self.base).to_string()
    }

    pub(super) fn most_specific(&self) -> String {
        match &self.region {
            Some(r) => format!("{r}.{}", self.base),
            None => self.base.clone(),
        }
    }
}

/// The spellings to look a model up under, most specific first: regional before global, dated
/// before undated (the table has an undated id only where it prices like its dated ones).
pub fn candidates(model: &str) -> Vec<String> {
    let id = NormalisedId::parse(model);
    let mut bases = vec![id.base.clone()];
    if let Some(undated) = strip_date(&id.base) {
        bases.push(undated.to_string());
    }
    // `-latest` aliases (`claude-3-5-sonnet-latest`) price as their family.
    let latest: Vec<String> = bases
        .iter()
        .filter_map(|b| b.strip_suffix("-latest"))
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect();
    bases.extend(latest);
    let mut out = Vec::new();
    if let Some(region) = &id.region {
        out.extend(bases.iter().map(|b| format!("{region}.{b}")));
    }
    out.extend(bases);
    out.dedup();
    out
}

/// `[region.]vendor.model` (Bedrock): `(region, model)` when `s` has a known vendor prefix.
pub(super) fn bedrock_split(s: &str) -> Option<(Option<&str>, &str)> {
    let (first, rest) = s.split_once('.')?;
    if BEDROCK_VENDORS.contains(&first) {
        return Some((None, rest));
    }
    let (vendor, model) = rest.split_once('.')?;
    let region_ok = !first.is_empty()
        && first.len() <= 10
        && first.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    (region_ok && BEDROCK_VENDORS.contains(&vendor)).then_some((Some(first), model))
}

/// Droid bring-your-own-key names: `BYOK-GPT-5-MINI-0`, `Claude Sonnet 4.5-[Anthropic]-1`.
/// The display name is the user's, so this is best effort: the bracketed provider, the trailing
/// index and a leading `byok` go; what remains is looked up like any id (and is unpriced if
/// the table does not know it).
fn droid_byok_name(rest: &str) -> String {
    let mut name = String::new();
    let mut depth = 0u32;
    for c in rest.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            _ if depth == 0 => name.push(if c.is_whitespace() || c == '_' {
                '-'
            } else {
                c
            }),
            _ => {}
        }
    }
    let mut collapsed = String::new();
    for c in name.chars() {
        if !(c == '-' && collapsed.ends_with('-')) {
            collapsed.push(c);
        }
    }
    let mut s = collapsed.trim_matches('-').to_string();
    // The index Droid appends to every custom model.
    if let Some(i) = s.rfind('-')
        && s[i + 1..].bytes().all(|b| b.is_ascii_digit())
        && i + 1 < s.len()
    {
        s.truncate(i);
    }
    s.strip_prefix("byok-").map(str::to_string).unwrap_or(s)
}

/// A trailing date (`-20250514`, `-2025-11-13`) removed, if there is one.
pub(super) fn strip_date(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    let n = b.len();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    if n > 9 && b[n - 9] == b'-' && digits(n - 8..n) {
        return Some(&s[..n - 9]);
    }
    if n > 11
        && b[n - 11] == b'-'
        && digits(n - 10..n - 6)
        && b[n - 6] == b'-'
        && digits(n - 5..n - 3)
        && b[n - 3] == b'-'
        && digits(n - 2..n)
    {
        return Some(&s[..n - 11]);
    }
    None
}

/// `gpt-5-1-codex` → `gpt-5.1-codex` (Codex sometimes reports dashed versions).
fn dotted_gpt_version(s: &str) -> String {
    if let Some(rest) = s.strip_prefix("gpt-") {
        let b = rest.as_bytes();
        if b.len() >= 3
            && b[0].is_ascii_digit()
            && b[1] == b'-'
            && b[2].is_ascii_digit()
            && b.get(3).is_none_or(|c| *c == b'-')
        {
            return format!("gpt-{}.{}", &rest[..1], &rest[2..]);
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tokens;
    use super::super::{Band, Pricing};

    /// The key and input rate (USD per million) `model` resolves to in the bundled table.
    fn resolved(model: &str) -> Option<(String, f64)> {
        Pricing::bundled()
            .resolve(model)
            .map(|r| (r.key, r.price.base.input))
    }

    #[test]
    fn every_spelling_resolves_to_its_own_price() {
        let cases: &[(&str, &str, f64)] = &[
            // Provider prefixes.
            ("anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", 3.0),
            ("openai/gpt-5.1-codex-max", "gpt-5.1-codex-max", 1.25),
            (
                "converse/jp.anthropic.claude-haiku-4-5-20251001-v1:0",
                "jp.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "openrouter/anthropic/claude-sonnet-4.5",
                "claude-sonnet-4-5",
                3.0,
            ),
            ("openrouter/openai/gpt-5", "gpt-5", 1.25),
            // Bedrock cross-region profiles: regional ones cost 10% more for Claude 4.5+.
            (
                "us.anthropic.claude-haiku-4-5-20251001-v1:0",
                "us.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "eu.anthropic.claude-haiku-4-5-20251001-v1:0",
                "eu.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "jp.anthropic.claude-haiku-4-5-20251001-v1:0",
                "jp.claude-haiku-4-5-20251001",
                1.1,
            ),
            (
                "apac.anthropic.claude-sonnet-4-20250514-v1:0",
                "apac.claude-sonnet-4-20250514",
                3.0,
            ),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                "global.claude-haiku-4-5-20251001",
                1.0,
            ),
            (
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                "claude-3-5-haiku-20241022",
                0.8,
            ),
            (
                "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
                "us.claude-3-5-sonnet-20241022",
                3.0,
            ),
            // Vertex `@date`.
            (
                "claude-haiku-4-5@20251001",
                "claude-haiku-4-5-20251001",
                1.0,
            ),
            (
                "vertex_ai/claude-sonnet-4-5@20250929",
                "claude-sonnet-4-5-20250929",
                3.0,
            ),
            // Dated ids: their own entry, or the undated family when LiteLLM lists none.
            (
                "claude-sonnet-4-5-20250929",
                "claude-sonnet-4-5-20250929",
                3.0,
            ),
            ("claude-haiku-4-5-20991231", "claude-haiku-4-5", 1.0),
            ("claude-sonnet-4", "claude-sonnet-4", 3.0),
            ("claude-opus-4-20250514", "claude-opus-4-20250514", 15.0),
            ("openai.gpt-oss-120b-1:0", "gpt-oss-120b", 0.15),
            // Codex's dashed versions and dates; `-latest` aliases (OpenAI's own entries no
            // longer list codex-mini; Azure's list price fills the gap).
            ("codex-mini-latest", "codex-mini", 1.5),
            // (LiteLLM lists this dated id only under Azure, at OpenAI's list price.)
            ("gpt-5-1-codex-2025-11-13", "gpt-5.1-codex-2025-11-13", 1.25),
            ("gpt-5-1-codex-2099-01-01", "gpt-5.1-codex", 1.25),
            ("GPT-5.2", "gpt-5.2", 1.75),
            // Droid bring-your-own-key names.
            ("custom:BYOK-GPT-5-MINI-0", "gpt-5-mini", 0.25),
            (
                "custom:Claude Sonnet 4.5-[Anthropic]-1",
                "claude-sonnet-4-5",
                3.0,
            ),
            ("custom:GLM-4.6-[Z.ai]-0", "glm-4.6", 0.6),
        ];
        for (spelling, key, input) in cases {
            assert_eq!(
                resolved(spelling),
                Some((key.to_string(), *input)),
                "{spelling}"
            );
        }
    }

    #[test]
    fn no_guessing_across_versions() {
        // claude-opus-4-7 has its own price (5), not opus-4-1's (15).
        assert_eq!(
            resolved("claude-opus-4-7"),
            Some(("claude-opus-4-7".into(), 5.0))
        );
        assert_eq!(
            resolved("claude-opus-4-1"),
            Some(("claude-opus-4-1".into(), 15.0))
        );
        for unknown in [
            "claude-opus-4-9",
            "gpt-5.9-codex",
            "custom:My Local Llama-[Ollama]-0",
            "my-local-llama",
            "",
        ] {
            assert_eq!(resolved(unknown), None, "{unknown}");
            assert_eq!(
                Pricing::bundled().cost(unknown, Band::BASE, &tokens(1, 1, 1, 1, 0)),
                None
            );
        }
    }
}
