//! Typed, borrowed and lenient reading of the JSON the parsers look at.
//!
//! A transcript line is mostly bytes no parser reads (a second copy of every tool result,
//! file snapshots, progress payloads) around a few fields it does. Building a
//! `serde_json::Value` tree of a line allocates every string and map of it; the types here read
//! only the fields a parser names, borrow strings from the line (a string is copied only when
//! it holds escapes), and let the JSON reader skip everything else without building it.
//!
//! They are *lenient* the way `Value` lookups are: a field of another type than expected reads
//! as that type's "nothing" instead of failing the line (`"model": 5` is no model, as
//! `v.get("model").and_then(Value::as_str)` says), a nested object that is something else reads
//! as an empty one (the defaults of [`Lenient`]), and a key given twice keeps its last value,
//! as a `Value` map does. A line still fails when it is not JSON, so malformed lines are
//! counted as before.
//!
//! Use `json_object!` to declare the fields of an object, [`Field`] for a scalar (string,
//! number, bool), [`List`] for an array, [`TextOrList`] for the "string or array of blocks"
//! fields, [`Present`] where a key's mere presence matters, and [`Payload`]
//! for content that is sent as JSON (tool inputs and results), which is kept as a `Value`
//! because it is part of the payload.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// What a lenient type makes of each kind of JSON value. Every method has a default — "not
/// what I read", giving `Self::default()` after skipping the value — so a type overrides only
/// the kinds it takes.
pub trait Lenient<'de>: Sized + Default {
    /// A JSON object.
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }

    /// A JSON array.
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Self::default())
    }

    /// A JSON string (borrowed from the input unless it held escapes).
    fn string(_text: Cow<'de, str>) -> Self {
        Self::default()
    }

    /// `null`, a bool or a number.
    fn scalar(_value: Field<'de>) -> Self {
        Self::default()
    }
}

/// Deserializes any JSON value into `T` through its [`Lenient`] methods.
pub fn lenient<'de, D: Deserializer<'de>, T: Lenient<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(LenientVisitor(PhantomData))
}

struct LenientVisitor<T>(PhantomData<T>);

impl<'de, T: Lenient<'de>> Visitor<'de> for LenientVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<T, E> {
        Ok(T::scalar(Field::Null))
    }

    fn visit_none<E>(self) -> Result<T, E> {
        Ok(T::scalar(Field::Null))
    }

    fn visit_bool<E>(self, v: bool) -> Result<T, E> {
        Ok(T::scalar(Field::Bool(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<T, E> {
        Ok(T::scalar(Field::Number(v.into())))
    }

    fn visit_i64<E>(self, v: i64) -> Result<T, E> {
        Ok(T::scalar(Field::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<T, E> {
        // JSON has no NaN or infinity, so `from_f64` always succeeds on parsed input.
        Ok(T::scalar(
            Number::from_f64(v).map_or(Field::Null, Field::Number),
        ))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<T, E> {
        Ok(T::string(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v.to_string())))
    }

    fn visit_string<E>(self, v: String) -> Result<T, E> {
        Ok(T::string(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
        T::array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::object(map)
    }
}

/// A field read as a scalar: its string, number or bool. An array or an object is skipped;
/// only its kind is kept. Absent and `null` are told apart, as `Value::get` does.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Field<'a> {
    /// The key is not there.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    Str(Cow<'a, str>),
    /// An array (not read).
    Array,
    /// An object (not read).
    Object,
}

impl<'a> Field<'a> {
    /// The string, if it is one (`Value::as_str`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The string, if it is one and not blank.
    pub fn non_blank(&self) -> Option<&str> {
        self.as_str().filter(|s| !s.trim().is_empty())
    }

    /// The bool, if it is one (`Value::as_bool`).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Field::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether it is `true`.
    pub fn is_true(&self) -> bool {
        self.as_bool() == Some(true)
    }

    /// A non-negative integer (`Value::as_u64`).
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Field::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// An integer that fits `i64` (`Value::as_i64`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Field::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// Any number as `f64` (`Value::as_f64`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Field::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// Whether the key is there (with any value, `null` included).
    pub fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }

    /// The string moved out, if it is one (no copy when it was borrowed and `'a` outlives the
    /// use).
    pub fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Field::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Lenient<'de> for Field<'de> {
    fn object<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Object)
    }

    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }

    fn string(text: Cow<'de, str>) -> Self {
        Field::Str(text)
    }

    fn scalar(value: Field<'de>) -> Self {
        value
    }
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// An array of `T` (each element read leniently); anything else reads as an empty list.
#[derive(Debug, Clone, PartialEq)]
pub struct List<T> {
    /// Whether the value was an array.
    pub is_array: bool,
    /// The elements.
    pub items: Vec<T>,
}

impl<T> Default for List<T> {
    fn default() -> Self {
        List {
            is_array: false,
            items: Vec::new(),
        }
    }
}

impl<T> List<T> {
    /// The elements.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for List<T> {
    fn array<A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<T>()? {
            items.push(item);
        }
        Ok(List {
            is_array: true,
            items,
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// A `content` field that is either a string or an array of blocks `T`.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum TextOrList<'a, T> {
    /// Absent, or neither a string nor an array.
    #[default]
    Other,
    /// A string.
    Text(Cow<'a, str>),
    /// An array.
    List(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Lenient<'de> for TextOrList<'de, T> {
    fn array<A: SeqAccess<'de>>(seq: A) -> Result<Self, A::Error> {
        List::<T>::array(seq).map(|l| TextOrList::List(l.items))
    }

    fn string(text: Cow<'de, str>) -> Self {
        TextOrList::Text(text)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOrList<'de, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d)
    }
}

/// Content that is sent as JSON (a tool's input or result): built as a `Value`. `None` when
/// the key is absent; `null` is `Some(Value::Null)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload(pub Option<Value>);

impl Payload {
    /// The value, `Value::Null` when absent (`v.get(k).cloned().unwrap_or(Value::Null)`).
    pub fn or_null(self) -> Value {
        self.0.unwrap_or(Value::Null)
    }
}

impl Payload {
    /// A tool result's content as sent (Claude Code and Droid write results alike): text
    /// blocks joined as text, anything else as JSON, nothing (absent or `null`) as empty text.
    pub fn tool_result(self) -> Value {
        match self.0 {
            Some(Value::Array(items)) => {
                let texts: Vec<&str> = items
                    .iter()
                    .filter_map(|i| i.get("text").and_then(Value::as_str))
                    .collect();
                if texts.len() == items.len() {
                    Value::String(texts.join("\n"))
                } else {
                    Value::Array(items)
                }
            }
            Some(Value::Null) | None => Value::String(String::new()),
            Some(other) => other,
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(|v| Payload(Some(v)))
    }
}

/// A field whose presence matters whatever its value (`v.get(k).is_some()`): `present` is
/// true when the key is there, `null` included; `value` is read leniently.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Present<T> {
    /// Whether the key is there.
    pub present: bool,
    /// Its value (the default when absent).
    pub value: T,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|value| Present {
            present: true,
            value,
        })
    }
}

/// An object key, borrowed unless it holds escapes.
pub struct Key<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Declares a struct read leniently from a JSON object: each field is read from its key
/// (`name: Type = "key"`; the type must be `Default` and `Deserialize`), unknown keys are
/// skipped unread, a repeated key keeps its last value, and a value that is not an object
/// reads as the default with `is_object` false. The struct carries a lifetime `'a` for the
/// strings it borrows from the input.
///
/// `deny_duplicates;` before the struct makes a repeated known key an error instead (what a
/// derived `Deserialize` does), for readers that always refused such lines.
macro_rules! json_object {
    (deny_duplicates; $($rest:tt)*) => {
        $crate::sources::json::json_object!(@impl true; $($rest)*);
    };
    (@impl $deny:expr;
        $(#[$meta:meta])*
        $vis:vis struct $name:ident<'a> {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        $vis struct $name<'a> {
            /// Whether the value was a JSON object.
            pub is_object: bool,
            $( $(#[$fmeta])* pub $field: $ty, )*
            _input: ::std::marker::PhantomData<&'a str>,
        }

        impl<'de> $crate::sources::json::Lenient<'de> for $name<'de> {
            fn object<A: ::serde::de::MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
                #[derive(Default)]
                struct Seen {
                    $( $field: bool, )*
                }
                let mut seen = Seen::default();
                let mut out = Self::default();
                out.is_object = true;
                while let Some(key) = map.next_key::<$crate::sources::json::Key<'de>>()? {
                    match &*key.0 {
                        $(
                            $key => {
                                if $deny && seen.$field {
                                    return Err(<A::Error as ::serde::de::Error>::custom(
                                        format_args!("duplicate field `{}`", $key),
                                    ));
                                }
                                seen.$field = true;
                                out.$field = map.next_value()?;
                            }
                        )*
                        _ => {
                            map.next_value::<::serde::de::IgnoredAny>()?;
                        }
                    }
                }
                let _ = seen;
                Ok(out)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name<'de> {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::sources::json::lenient(d)
            }
        }

        impl $crate::sources::json::IsObject for $name<'_> {
            fn is_object(&self) -> bool {
                self.is_object
            }
        }
    };
    ($($rest:tt)*) => {
        $crate::sources::json::json_object!(@impl false; $($rest)*);
    };
}
pub(crate) use json_object;

/// Reads a line as the object `T`: parsed from text already checked to be UTF-8 (so strings
/// are not validated a second time). Fails when the line is not JSON or not an object.
pub fn parse_object<'a, T>(text: &'a str) -> Result<T, String>
where
    T: Deserialize<'a> + IsObject,
{
    let value: T = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("not a JSON object".to_string())
    }
}

/// Whether a value read by a `json_object!` type was an object.
pub trait IsObject {
    /// Whether it was.
    fn is_object(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::sources::json::json_object! {
        struct Inner<'a> {
            name: Field<'a> = "name",
        }
    }

    crate::sources::json::json_object! {
        struct Outer<'a> {
            kind: Field<'a> = "type",
            count: Field<'a> = "count",
            inner: Inner<'a> = "inner",
            blocks: List<Inner<'a>> = "blocks",
            content: TextOrList<'a, Inner<'a>> = "content",
            input: Payload = "input",
        }
    }

    crate::sources::json::json_object! {
        deny_duplicates;
        struct Strict<'a> {
            kind: Field<'a> = "type",
        }
    }

    fn outer(text: &str) -> Outer<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fields_read_like_value_lookups() {
        let o = outer(
            r#"{"type":"a","count":3,"inner":{"name":"n","x":[1,{"y":2}]},"skip":{"deep":[1,2,3]},
               "blocks":[{"name":"b1"},7,{"name":null}],"content":"text","input":{"k":[1]}}"#,
        );
        assert!(o.is_object);
        assert_eq!(o.kind.as_str(), Some("a"));
        assert_eq!(o.count.as_u64(), Some(3));
        assert_eq!(o.inner.name.as_str(), Some("n"));
        assert!(o.inner.is_object);
        assert_eq!(o.blocks.items.len(), 3);
        assert_eq!(o.blocks.items[0].name.as_str(), Some("b1"));
        assert!(
            !o.blocks.items[1].is_object,
            "a number reads as an empty object"
        );
        assert!(o.blocks.items[2].name.is_null());
        assert!(matches!(o.content, TextOrList::Text(ref t) if t == "text"));
        assert_eq!(o.input.0, Some(serde_json::json!({"k": [1]})));
    }

    #[test]
    fn other_types_read_as_nothing_instead_of_failing() {
        let o = outer(r#"{"type":5,"count":"3","inner":"str","blocks":{"a":1},"content":7}"#);
        assert_eq!(o.kind.as_str(), None);
        assert!(o.kind.is_present());
        assert_eq!(o.count.as_u64(), None);
        assert!(!o.inner.is_object);
        assert!(!o.blocks.is_array && o.blocks.items.is_empty());
        assert!(matches!(o.content, TextOrList::Other));
        assert_eq!(o.input.0, None);
        let o = outer(r#"{"count":-1,"input":null}"#);
        assert_eq!(o.count.as_u64(), None);
        assert_eq!(o.count.as_i64(), Some(-1));
        assert_eq!(o.input.0, Some(Value::Null));
        assert!(!o.kind.is_present());
    }

    #[test]
    fn numbers_read_as_value_numbers_do() {
        for text in [
            "0",
            "12",
            "-3",
            "1.5",
            "1e300",
            "18446744073709551615",
            "18446744073709551616",
        ] {
            let line = format!(r#"{{"count":{text}}}"#);
            let o = outer(&line);
            let v: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(o.count.as_u64(), v["count"].as_u64(), "{text}");
            assert_eq!(o.count.as_i64(), v["count"].as_i64(), "{text}");
            assert_eq!(o.count.as_f64(), v["count"].as_f64(), "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped_and_repeats_keep_the_last() {
        let o = outer(r#"{"type":"plain","inner":{"name":"a\"b"}}"#);
        assert!(matches!(o.kind, Field::Str(Cow::Borrowed("plain"))));
        assert!(matches!(o.inner.name, Field::Str(Cow::Owned(ref s)) if s == "a\"b"));
        let o = outer(r#"{"type":"first","type":"second","t\u0079pe":"third"}"#);
        assert_eq!(o.kind.as_str(), Some("third"));
        let strict: Result<Strict<'_>, _> = serde_json::from_str(r#"{"type":1,"type":2}"#);
        assert!(
            strict
                .unwrap_err()
                .to_string()
                .contains("duplicate field `type`")
        );
        let strict: Strict<'_> = serde_json::from_str(r#"{"type":1,"other":2,"other":3}"#).unwrap();
        assert_eq!(strict.kind.as_u64(), Some(1));
    }

    #[test]
    fn bad_json_still_fails() {
        for bad in [
            r#"{"type":"#,
            r#"{"skip":[1,}"#,
            r#"{"a":1} x"#,
            r#"{"s":"\q"}"#,
            "[1",
        ] {
            assert!(serde_json::from_str::<Outer<'_>>(bad).is_err(), "{bad}");
        }
        assert!(parse_object::<Outer<'_>>("[1,2]").is_err());
        assert!(parse_object::<Outer<'_>>("\"s\"").is_err());
        assert!(parse_object::<Outer<'_>>(" {} ").is_ok());
    }
}
