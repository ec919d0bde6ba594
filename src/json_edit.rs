//! Format-preserving edits of a JSON document's text, for `setup`: the document is parsed
//! with the byte span of every value, and an edit inserts or removes only the text of one
//! member or element — the user's key order, indentation, spacing, line endings and comments
//! stay as they were. Inserted text copies the style of its neighbours (or of the document when
//! the container is empty), and removing an element takes exactly the separator that appending
//! it added, so append-then-remove gives back the original bytes.
//!
//! `//` and `/* */` comments (JSONC, which some tools accept in their settings) are read as
//! whitespace; anything else must be strict JSON.

use std::ops::Range;

use anyhow::{Context, Result, bail};

/// A parsed JSON value with its span in the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Bytes of the value (brackets included).
    pub span: Range<usize>,
    /// What it is.
    pub kind: Kind,
}

/// The kinds of value `setup` needs to tell apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// An object's members in text order.
    Object(Vec<Member>),
    /// An array's elements in text order.
    Array(Vec<Node>),
    /// A string (decoded).
    String(String),
    /// A number, `true`, `false` or `null`.
    Other,
}

/// One `"key": value` member.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The decoded key.
    pub key: String,
    /// Bytes of the key (quotes included).
    pub key_span: Range<usize>,
    /// The value.
    pub value: Node,
}

impl Member {
    /// From the key's opening quote to the value's end.
    pub fn span(&self) -> Range<usize> {
        self.key_span.start..self.value.span.end
    }
}

impl Node {
    /// The member named `key`, with its index.
    pub fn member(&self, key: &str) -> Option<(usize, &Member)> {
        match &self.kind {
            Kind::Object(members) => members.iter().enumerate().find(|(_, m)| m.key == key),
            _ => None,
        }
    }

    /// The members (empty for anything but an object).
    pub fn members(&self) -> &[Member] {
        match &self.kind {
            Kind::Object(members) => members,
            _ => &[],
        }
    }

    /// The elements (empty for anything but an array).
    pub fn elements(&self) -> &[Node] {
        match &self.kind {
            Kind::Array(items) => items,
            _ => &[],
        }
    }

    /// The string value, if a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(s) => Some(s),
            _ => None,
        }
    }

    /// Is it an object?
    pub fn is_object(&self) -> bool {
        matches!(self.kind, Kind::Object(_))
    }

    /// Is it an array?
    pub fn is_array(&self) -> bool {
        matches!(self.kind, Kind::Array(_))
    }
}

/// Parses `text` (strict JSON; serde_json's error on failure, with line and column).
pub fn parse(text: &str) -> Result<Node> {
    // serde_json is the judge of validity and words the error (on the text with its comments
    // blanked out, so that lines and columns still match); the walk below then only has to
    // record spans of a document known to be valid.
    serde_json::from_str::<serde::de::IgnoredAny>(&blank_comments(text))
        .context("not valid JSON")?;
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    parser.skip_ws();
    parser.value()
}

/// `text` with every comment replaced by spaces (newlines kept), byte for byte.
fn blank_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        match (in_string, bytes[i], bytes.get(i + 1)) {
            (true, b'\\', _) => i += 1,
            (_, b'"', _) => in_string = !in_string,
            (false, b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
                continue;
            }
            (false, b'/', Some(b'*')) => {
                let end = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |e| i + 2 + e + 2);
                for b in &mut out[i..end] {
                    if *b != b'\n' {
                        *b = b' ';
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    // Only whole comments were replaced, byte for byte, by ASCII spaces: still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    /// Skips whitespace and comments.
    fn skip_ws(&mut self) {
        loop {
            match (self.bytes.get(self.pos), self.bytes.get(self.pos + 1)) {
                (Some(b' ' | b'\t' | b'\n' | b'\r'), _) => self.pos += 1,
                (Some(b'/'), Some(b'/')) => {
                    while self.bytes.get(self.pos).is_some_and(|b| *b != b'\n') {
                        self.pos += 1;
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    self.pos = self.text[self.pos + 2..]
                        .find("*/")
                        .map_or(self.bytes.len(), |e| self.pos + 2 + e + 2);
                }
                _ => return,
            }
        }
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        self.skip_ws();
        if self.bytes.get(self.pos) != Some(&byte) {
            bail!("expected `{}` at byte {}", byte as char, self.pos);
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self) -> Result<Node> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        let key_start = self.pos;
                        let key = self.string()?;
                        let key_span = key_start..self.pos;
                        self.expect(b':')?;
                        let value = self.value()?;
                        members.push(Member {
                            key,
                            key_span,
                            value,
                        });
                        self.skip_ws();
                        match self.bytes.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => bail!("expected `,` or `}}` at byte {}", self.pos),
                        }
                    }
                }
                Kind::Object(members)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.bytes.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.skip_ws();
                        match self.bytes.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => bail!("expected `,` or `]` at byte {}", self.pos),
                        }
                    }
                }
                Kind::Array(items)
            }
            Some(b'"') => Kind::String(self.string()?),
            Some(_) => {
                while self.bytes.get(self.pos).is_some_and(|b| {
                    !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                }) {
                    self.pos += 1;
                }
                Kind::Other
            }
            None => bail!("unexpected end of the document"),
        };
        Ok(Node {
            span: start..self.pos,
            kind,
        })
    }

    fn string(&mut self) -> Result<String> {
        let start = self.pos;
        if self.bytes.get(self.pos) != Some(&b'"') {
            bail!("expected a string at byte {start}");
        }
        self.pos += 1;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'\\') => self.pos += 2,
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(_) => self.pos += 1,
                None => bail!("unterminated string at byte {start}"),
            }
        }
        serde_json::from_str(&self.text[start..self.pos]).context("decoding a string")
    }
}

/// A value to insert, with its members in the order they should be written (serde_json's
/// map would sort them).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An object.
    Object(Vec<(String, Value)>),
    /// An array.
    Array(Vec<Value>),
    /// A string.
    String(String),
    /// An integer.
    Integer(i64),
}

impl Value {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// An object from `(key, value)` pairs.
    pub fn object<const N: usize>(members: [(&str, Value); N]) -> Value {
        Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }
}

/// How the document is written: its line ending, its indentation unit, and whether its
/// containers spread over lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// `"\n"` or `"\r\n"`.
    pub newline: &'static str,
    /// One level of indentation (`"  "`, `"    "`, `"\t"`).
    pub indent: String,
    /// Containers are written over several lines.
    pub multiline: bool,
    /// `": "` or `":"`.
    pub colon: String,
    /// What follows a comma inside one line (`" "` or `""`).
    pub comma_space: String,
}

impl Style {
    /// Reads the style off `text`; an empty or blank text gets two-space indented lines.
    pub fn of(text: &str) -> Style {
        let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
        let indent = text
            .lines()
            .find_map(|line| {
                let trimmed = line.trim_start_matches([' ', '\t']);
                (trimmed.len() < line.len() && trimmed.starts_with('"'))
                    .then(|| line[..line.len() - trimmed.len()].to_string())
            })
            .unwrap_or_else(|| "  ".to_string());
        let body = text.trim();
        let multiline = body.is_empty() || body == "{}" || body.contains('\n');
        let colon = if text.contains("\": ") || !text.contains("\":") {
            ": ".to_string()
        } else {
            ":".to_string()
        };
        let comma_space = if multiline || text.contains(", ") || !text.contains(',') {
            " ".to_string()
        } else {
            String::new()
        };
        Style {
            newline,
            indent,
            multiline,
            colon,
            comma_space,
        }
    }

    /// `value` as text at an indentation of `base` (used for the lines after the first).
    pub fn render(&self, value: &Value, base: &str) -> String {
        let mut out = String::new();
        self.render_into(value, base, &mut out);
        out
    }

    fn render_into(&self, value: &Value, base: &str, out: &mut String) {
        match value {
            Value::String(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            Value::Integer(i) => out.push_str(&i.to_string()),
            Value::Array(items) => {
                self.render_container('[', ']', items.len(), base, out, |i, inner, out| {
                    self.render_into(&items[i], inner, out)
                })
            }
            Value::Object(members) => {
                self.render_container('{', '}', members.len(), base, out, |i, inner, out| {
                    let (key, value) = &members[i];
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push_str(&self.colon);
                    self.render_into(value, inner, out);
                })
            }
        }
    }

    fn render_container(
        &self,
        open: char,
        close: char,
        len: usize,
        base: &str,
        out: &mut String,
        item: impl Fn(usize, &str, &mut String),
    ) {
        out.push(open);
        if len == 0 {
            out.push(close);
            return;
        }
        let inner = format!("{base}{}", self.indent);
        for i in 0..len {
            if i > 0 {
                out.push(',');
                if !self.multiline {
                    out.push_str(&self.comma_space);
                }
            }
            if self.multiline {
                out.push_str(self.newline);
                out.push_str(&inner);
            }
            item(i, &inner, out);
        }
        if self.multiline {
            out.push_str(self.newline);
            out.push_str(base);
        }
        out.push(close);
    }

    /// A new document holding `value`.
    pub fn document(&self, value: &Value) -> String {
        let mut text = self.render(value, "");
        text.push_str(self.newline);
        text
    }
}

/// The whitespace that starts the line holding byte `at`.
fn line_indent(text: &str, at: usize) -> &str {
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[start..];
    let end = line
        .find(|c: char| c != ' ' && c != '\t')
        .unwrap_or(line.len());
    &line[..end]
}

/// Whether `span` of `text` spreads over more than one line.
fn spans_lines(text: &str, span: &Range<usize>) -> bool {
    text[span.clone()].contains('\n')
}

/// Replaces `range` of `text` with `with`.
pub fn splice(text: &str, range: Range<usize>, with: &str) -> String {
    format!("{}{with}{}", &text[..range.start], &text[range.end..])
}

/// Inserts `"key": value` as the last member of `object` (a node of `text`).
pub fn insert_member(text: &str, object: &Node, key: &str, value: &Value, style: &Style) -> String {
    let key_text = serde_json::Value::String(key.to_string()).to_string();
    match object.members().last() {
        Some(last) => {
            let multiline = spans_lines(text, &object.span);
            let colon = &text[last.key_span.end..last.value.span.start];
            let colon = if colon.trim() == ":" {
                colon
            } else {
                &style.colon
            };
            let at = last.value.span.end;
            let insert = if multiline {
                let indent = line_indent(text, last.key_span.start);
                format!(
                    ",{}{indent}{key_text}{colon}{}",
                    style.newline,
                    style.render(value, indent)
                )
            } else {
                let compact = Style {
                    multiline: false,
                    ..style.clone()
                };
                format!(
                    ",{}{key_text}{colon}{}",
                    separator_space(text, object, style),
                    compact.render(value, "")
                )
            };
            splice(text, at..at, &insert)
        }
        None => {
            let base = line_indent(text, object.span.start).to_string();
            let body = Value::Object(vec![(key.to_string(), value.clone())]);
            splice(text, object.span.clone(), &style.render(&body, &base))
        }
    }
}

/// Appends `value` as the last element of `array` (a node of `text`).
pub fn append_element(text: &str, array: &Node, value: &Value, style: &Style) -> String {
    match array.elements().last() {
        Some(last) => {
            let multiline = spans_lines(text, &array.span);
            let at = last.span.end;
            let insert = if multiline {
                let indent = line_indent(text, last.span.start);
                format!(",{}{indent}{}", style.newline, style.render(value, indent))
            } else {
                let compact = Style {
                    multiline: false,
                    ..style.clone()
                };
                format!(
                    ",{}{}",
                    separator_space(text, array, style),
                    compact.render(value, "")
                )
            };
            splice(text, at..at, &insert)
        }
        None => {
            let base = line_indent(text, array.span.start).to_string();
            let body = Value::Array(vec![value.clone()]);
            splice(text, array.span.clone(), &style.render(&body, &base))
        }
    }
}

/// What follows a comma in a one-line container (copied from the container itself).
fn separator_space(text: &str, container: &Node, style: &Style) -> String {
    let spans: Vec<Range<usize>> = match &container.kind {
        Kind::Object(m) => m.iter().map(Member::span).collect(),
        Kind::Array(items) => items.iter().map(|n| n.span.clone()).collect(),
        _ => Vec::new(),
    };
    match spans.as_slice() {
        [a, b, ..] => {
            let between = &text[a.end..b.start];
            between.trim_start().trim_start_matches(',').to_string()
        }
        _ => style.comma_space.clone(),
    }
}

/// Removes item `index` of a container whose items span `spans`, with exactly one separator:
/// the one before it (what appending added), or for the first item the one after it. The only
/// item leaves the container empty (`{}` / `[]`).
fn remove_item(
    text: &str,
    container: &Range<usize>,
    spans: &[Range<usize>],
    index: usize,
) -> String {
    if spans.len() == 1 {
        return splice(text, container.start + 1..container.end - 1, "");
    }
    if index > 0 {
        splice(text, spans[index - 1].end..spans[index].end, "")
    } else {
        splice(text, spans[0].start..spans[1].start, "")
    }
}

/// Removes member `index` of `object`.
pub fn remove_member(text: &str, object: &Node, index: usize) -> String {
    let spans: Vec<Range<usize>> = object.members().iter().map(Member::span).collect();
    remove_item(text, &object.span, &spans, index)
}

/// Removes element `index` of `array`.
pub fn remove_element(text: &str, array: &Node, index: usize) -> String {
    let spans: Vec<Range<usize>> = array.elements().iter().map(|n| n.span.clone()).collect();
    remove_item(text, &array.span, &spans, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        Value::object([("command", Value::string("/bin/x hook"))])
    }

    #[test]
    fn spans_and_decoded_strings() {
        let text = "{\"a\\u0041\": [1, \"x\\\"y\"], \"b\": {}}";
        let root = parse(text).unwrap();
        let (i, a) = root.member("aA").unwrap();
        assert_eq!(i, 0);
        assert_eq!(&text[a.value.span.clone()], "[1, \"x\\\"y\"]");
        assert_eq!(a.value.elements()[1].as_str(), Some("x\"y"));
        assert!(root.member("b").unwrap().1.value.is_object());
        assert!(parse("{\"a\": }").is_err());
        assert!(parse("{} trailing").is_err());
    }

    #[test]
    fn append_then_remove_gives_back_the_bytes_in_every_style() {
        let docs = [
            "{\n  \"a\": [\n    1,\n    2\n  ]\n}\n",
            "{\n    \"a\": [1, 2]\n}",
            "{\r\n\t\"a\": [\r\n\t\t1\r\n\t]\r\n}\r\n",
            "{\"a\":[1,2]}",
            "{ \"a\": [ 1 ] }",
        ];
        for doc in docs {
            let style = Style::of(doc);
            let root = parse(doc).unwrap();
            let array = &root.member("a").unwrap().1.value;
            let added = append_element(doc, array, &entry(), &style);
            let root2 = parse(&added).unwrap();
            let array2 = &root2.member("a").unwrap().1.value;
            assert_eq!(
                array2.elements().len(),
                array.elements().len() + 1,
                "{added}"
            );
            let removed = remove_element(&added, array2, array2.elements().len() - 1);
            assert_eq!(removed, doc, "round trip of {doc:?} via {added:?}");
        }
    }

    #[test]
    fn inserted_members_copy_their_neighbours() {
        let doc = "{\n    \"model\": \"opus\",\n    \"env\": {\"A\": \"1\"}\n}\n";
        let style = Style::of(doc);
        let root = parse(doc).unwrap();
        let added = insert_member(
            doc,
            &root,
            "hooks",
            &Value::object([("Stop", Value::Array(vec![entry()]))]),
            &style,
        );
        assert_eq!(
            added,
            "{\n    \"model\": \"opus\",\n    \"env\": {\"A\": \"1\"},\n    \"hooks\": {\n        \
             \"Stop\": [\n            {\n                \"command\": \"/bin/x hook\"\n            \
             }\n        ]\n    }\n}\n"
        );
        let root = parse(&added).unwrap();
        let (i, _) = root.member("hooks").unwrap();
        assert_eq!(remove_member(&added, &root, i), doc);

        // A one-line object stays on one line, with its own spacing.
        let doc = "{\"a\":1,\"b\":2}";
        let root = parse(doc).unwrap();
        let added = insert_member(doc, &root, "c", &entry(), &Style::of(doc));
        assert_eq!(
            added,
            "{\"a\":1,\"b\":2,\"c\":{\"command\":\"/bin/x hook\"}}"
        );
    }

    #[test]
    fn empty_containers_open_up_at_their_own_indentation() {
        let doc = "{\n  \"hooks\": {}\n}\n";
        let root = parse(doc).unwrap();
        let hooks = &root.member("hooks").unwrap().1.value;
        let added = insert_member(doc, hooks, "Stop", &Value::Array(vec![]), &Style::of(doc));
        assert_eq!(added, "{\n  \"hooks\": {\n    \"Stop\": []\n  }\n}\n");
        let root = parse(&added).unwrap();
        let hooks = &root.member("hooks").unwrap().1.value;
        assert_eq!(remove_member(&added, hooks, 0), doc);
        // The first of several items takes the separator after it.
        let doc = "[1, 2, 3]";
        let root = parse(doc).unwrap();
        assert_eq!(remove_element(doc, &root, 0), "[2, 3]");
        assert_eq!(remove_element(doc, &root, 1), "[1, 3]");
    }

    #[test]
    fn comments_are_whitespace_and_survive_a_round_trip() {
        let doc =
            "{\n  // my settings\n  \"a\": [1], /* trailing */\n  \"url\": \"http://x//y\"\n}\n";
        let root = parse(doc).unwrap();
        assert_eq!(
            root.member("url").unwrap().1.value.as_str(),
            Some("http://x//y")
        );
        let array = &root.member("a").unwrap().1.value;
        let added = append_element(doc, array, &Value::Integer(2), &Style::of(doc));
        assert!(added.contains("// my settings") && added.contains("/* trailing */"));
        let root2 = parse(&added).unwrap();
        let array2 = &root2.member("a").unwrap().1.value;
        assert_eq!(remove_element(&added, array2, 1), doc);
        let err = parse("{\n  // fine\n  \"a\": }").unwrap_err();
        assert!(format!("{err:#}").contains("line 3"), "{err:#}");
    }

    #[test]
    fn a_new_document_is_two_space_indented() {
        let style = Style::of("");
        assert_eq!(
            style.document(&Value::object([("version", Value::Integer(1))])),
            "{\n  \"version\": 1\n}\n"
        );
    }
}
