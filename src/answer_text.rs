//! One line describing an HTTP answer body that is not OpenSync's JSON — a web server's HTML
//! page, the Convex dashboard, a proxy's text — so that error messages, `login` and the
//! daemon's log name what came back without ever printing the body itself.

/// The longest excerpt of a text body that is quoted.
const MAX_EXCERPT: usize = 80;

/// Describes `body` in one line: `an HTML page titled “Welcome”`, `an empty body`, or the
/// first line of a text body, quoted and cut at 80 characters.
pub fn describe(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "an empty body".into();
    }
    let head: String = text
        .chars()
        .take(2048)
        .collect::<String>()
        .to_ascii_lowercase();
    if head.starts_with('<') || head.contains("<html") || head.contains("<!doctype") {
        return match title(text) {
            Some(t) => format!("an HTML page titled “{t}”"),
            None => "an HTML page".into(),
        };
    }
    let first = text.lines().next().unwrap_or_default();
    format!("“{}”", one_line(first, MAX_EXCERPT))
}

/// The page's `<title>`, whitespace collapsed and cut at 60 characters.
fn title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let t = one_line(html.get(start..end)?, 60);
    (!t.is_empty()).then_some(t)
}

/// Whitespace runs collapsed to one space, control characters dropped, cut at `max` chars
/// (with an ellipsis).
fn one_line(s: &str, max: usize) -> String {
    let collapsed = s
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect::<String>();
    if collapsed.chars().count() > max {
        format!("{}…", collapsed.chars().take(max).collect::<String>())
    } else {
        collapsed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_pages_are_named_by_their_title_and_never_quoted() {
        let page = b"<!DOCTYPE html>\n<html>\n<head>\n  <title>\n    Welcome to nginx!\n  </title>\n</head>\n<body>\n<h1>Welcome</h1>\n<p>If you see this page...</p>\n</body>\n</html>\n";
        assert_eq!(describe(page), "an HTML page titled “Welcome to nginx!”");
        assert_eq!(describe(b"<html><body>hi</body></html>"), "an HTML page");
        let described = describe(page);
        assert!(!described.contains('\n') && !described.contains("<h1>"));
    }

    #[test]
    fn text_bodies_are_one_short_line() {
        assert_eq!(describe(b""), "an empty body");
        assert_eq!(describe(b"  \n "), "an empty body");
        assert_eq!(describe(b"Bad Gateway\nmore\n"), "“Bad Gateway”");
        let long = "x".repeat(500);
        let d = describe(long.as_bytes());
        assert_eq!(d.chars().count(), 80 + 3, "{d}");
        assert_eq!(describe(b"a\tb\x07c"), "“a bc”");
    }
}
