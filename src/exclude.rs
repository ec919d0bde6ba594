//! The `exclude` setting: glob patterns naming files, directories and projects that must never
//! leave the machine. Compiled once from the configuration; asked "is this path excluded?" at
//! scan and at file-event time (before a file is opened), and "is this project excluded?" once
//! a session's project path is known (before anything of it is sent).
//!
//! Pattern syntax (gitignore-like, documented in the README and the man page):
//! - `~` or `~/…` starts at the home directory;
//! - `*` is any run of characters except `/`, `**` any run including `/` (`a/**/b` also matches
//!   `a/b`), `?` one character except `/`, `[abc]` / `[!abc]` a character class;
//! - a pattern with a `/` is matched against the whole path (a relative one at any directory
//!   boundary); a pattern without `/` against every file or directory name in the path;
//! - a path is excluded when a pattern matches it or any directory above it, so `~/work/secret`
//!   and `~/work/secret/**` both exclude everything below `~/work/secret`.

use std::path::{Component, Path};

use regex::Regex;

/// Compiled `exclude` patterns. The default excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct Exclude {
    /// The patterns as configured (for display and equality).
    patterns: Vec<String>,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Clone)]
enum Matcher {
    /// Matched against the whole path and each of its ancestors.
    Path(Regex),
    /// Matched against each component (file or directory name).
    Name(Regex),
    /// A pattern that could not be compiled: fail closed (exclude everything) rather than
    /// send what the user meant to keep. `Config::validate` refuses such patterns first.
    Everything,
}

impl PartialEq for Exclude {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}

impl Exclude {
    /// Compiles `patterns`, expanding `~` to `home`. Never fails: a pattern that does not
    /// compile excludes everything (see [`Exclude::check`] for the error).
    pub fn new(patterns: &[String], home: &Path) -> Exclude {
        let matchers = patterns
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| compile(p, home).unwrap_or(Matcher::Everything))
            .collect();
        Exclude {
            patterns: patterns.to_vec(),
            matchers,
        }
    }

    /// Checks that `pattern` compiles; the error says why not.
    pub fn check(pattern: &str) -> Result<(), String> {
        if pattern.trim().is_empty() {
            return Err("an empty pattern".into());
        }
        compile(pattern, Path::new("/home")).map(drop)
    }

    /// No patterns.
    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// The patterns as configured.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `path` (a file or directory) or a directory above it is excluded.
    pub fn matches_path(&self, path: &Path) -> bool {
        if self.matchers.is_empty() {
            return false;
        }
        self.matchers.iter().any(|m| match m {
            Matcher::Everything => true,
            Matcher::Path(re) => path
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| re.is_match(&a.to_string_lossy())),
            Matcher::Name(re) => path.components().any(|c| match c {
                Component::Normal(name) => re.is_match(&name.to_string_lossy()),
                _ => false,
            }),
        })
    }

    /// Whether a session whose working directory is `project_path` is excluded (the same
    /// patterns, applied to the project's path).
    pub fn matches_project(&self, project_path: &str) -> bool {
        !project_path.is_empty() && self.matches_path(Path::new(project_path))
    }
}

fn compile(pattern: &str, home: &Path) -> Result<Matcher, String> {
    let pattern = pattern.trim();
    let expanded = if pattern == "~" {
        home.to_string_lossy().into_owned()
    } else if let Some(rest) = pattern.strip_prefix("~/") {
        format!("{}/{rest}", home.to_string_lossy().trim_end_matches('/'))
    } else {
        pattern.to_string()
    };
    let trimmed = if expanded.len() > 1 {
        expanded.trim_end_matches('/')
    } else {
        expanded.as_str()
    };
    let (regex, name_only) = if !trimmed.contains('/') {
        (glob_to_regex(trimmed, false), true)
    } else if trimmed.starts_with('/') {
        (glob_to_regex(trimmed, false), false)
    } else {
        (glob_to_regex(trimmed, true), false)
    };
    let re = Regex::new(&regex).map_err(|e| format!("`{pattern}` is not a valid pattern: {e}"))?;
    Ok(if name_only {
        Matcher::Name(re)
    } else {
        Matcher::Path(re)
    })
}

/// Translates a glob into an anchored regular expression. `anywhere`: the glob may start at
/// any directory boundary (relative patterns).
fn glob_to_regex(glob: &str, anywhere: bool) -> String {
    let mut re = String::from("^");
    if anywhere {
        re.push_str("(?:.*/)?");
    }
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            // A trailing `/**` also matches the directory itself (`~/work/secret/**` excludes a
            // session whose project is `~/work/secret`).
            '/' if chars[i + 1..] == ['*', '*'] => {
                re.push_str("(?:/.*)?");
                break;
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                if chars.get(i) == Some(&'/') {
                    // `**/` also matches no directory at all.
                    re.push_str("(?:.*/)?");
                    i += 1;
                } else {
                    re.push_str(".*");
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) if len > 0 => {
                    let class: String = chars[i + 1..i + 1 + len].iter().collect();
                    let (negate, body) = match class.strip_prefix('!') {
                        Some(rest) => (true, rest.to_string()),
                        None => (false, class),
                    };
                    re.push('[');
                    if negate {
                        re.push('^');
                    }
                    for c in body.chars() {
                        if matches!(c, '\\' | '[' | ']' | '^' | '&' | '~') {
                            re.push('\\');
                        }
                        re.push(c);
                    }
                    re.push(']');
                    i += len + 2;
                    continue;
                }
                _ => re.push_str(r"\["),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(patterns: &[&str]) -> Exclude {
        let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
        Exclude::new(&owned, Path::new("/home/u"))
    }

    #[test]
    fn a_directory_pattern_excludes_everything_below_it() {
        for p in ["~/work/secret", "~/work/secret/", "~/work/secret/**"] {
            let e = ex(&[p]);
            assert!(
                e.matches_path(Path::new("/home/u/work/secret/a/b.jsonl")),
                "{p}"
            );
            assert!(e.matches_project("/home/u/work/secret"), "{p}");
            assert!(e.matches_project("/home/u/work/secret/sub"), "{p}");
            assert!(!e.matches_project("/home/u/work/secret-old"), "{p}");
            assert!(!e.matches_project("/home/u/work"), "{p}");
        }
    }

    #[test]
    fn stars_stop_at_slashes_and_double_stars_do_not() {
        let e = ex(&["/data/*/private"]);
        assert!(e.matches_path(Path::new("/data/a/private/x")));
        assert!(!e.matches_path(Path::new("/data/a/b/private/x")));
        let e = ex(&["/data/**/private"]);
        assert!(e.matches_path(Path::new("/data/a/b/private/x")));
        assert!(e.matches_path(Path::new("/data/private")));
    }

    #[test]
    fn a_name_pattern_matches_any_component() {
        let e = ex(&["*.draft.jsonl", "scratch"]);
        assert!(e.matches_path(Path::new("/x/y/a.draft.jsonl")));
        assert!(e.matches_path(Path::new("/x/scratch/a.jsonl")));
        assert!(!e.matches_path(Path::new("/x/y/a.jsonl")));
        assert!(!e.matches_path(Path::new("/x/scratches/a.jsonl")));
    }

    #[test]
    fn relative_patterns_with_a_slash_match_at_any_directory_boundary() {
        let e = ex(&["projects/-home-u-work-secret"]);
        assert!(e.matches_path(Path::new(
            "/home/u/.claude/projects/-home-u-work-secret/s.jsonl"
        )));
        assert!(!e.matches_path(Path::new(
            "/home/u/.claude/projects/-home-u-work-secretive/s.jsonl"
        )));
    }

    #[test]
    fn classes_question_marks_and_literals() {
        let e = ex(&[
            "/a/file[0-9].jsonl",
            "/b/?.txt",
            "/c/a+b(1).jsonl",
            "/d/[!x]y",
        ]);
        assert!(e.matches_path(Path::new("/a/file7.jsonl")));
        assert!(!e.matches_path(Path::new("/a/fileX.jsonl")));
        assert!(e.matches_path(Path::new("/b/z.txt")));
        assert!(!e.matches_path(Path::new("/b/zz.txt")));
        assert!(e.matches_path(Path::new("/c/a+b(1).jsonl")));
        assert!(!e.matches_path(Path::new("/c/aab(1).jsonl")));
        assert!(e.matches_path(Path::new("/d/ay")));
        assert!(!e.matches_path(Path::new("/d/xy")));
        // An unclosed class is a literal.
        assert!(ex(&["/e/[oops"]).matches_path(Path::new("/e/[oops")));
    }

    #[test]
    fn nothing_configured_excludes_nothing() {
        let e = ex(&[]);
        assert!(e.is_empty());
        assert!(!e.matches_path(Path::new("/anything")));
        assert!(!e.matches_project(""));
        assert!(Exclude::check("").is_err());
        assert!(Exclude::check("~/ok/**").is_ok());
    }
}
