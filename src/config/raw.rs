//! The raw layer: the file as a JSON tree that keeps key order and records
//! duplicate keys.
//!
//! `serde_json::Value` would do neither: its map is sorted (instances must
//! stay in file order) and a repeated key silently replaces the earlier one,
//! so `"blocked_tags"` written twice would drop half of the rules without a
//! word. Here every object is a list of entries, and each duplicate is
//! recorded with its JSON path while parsing goes on, so that all of them are
//! reported in one run. The checked model is built from this tree by
//! `check`, which reports every wrong type and unknown key by path.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::Problem;

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// A JSON object in file order. Holds the first of duplicate keys (the
/// duplicates themselves are reported as errors, so which one is kept does
/// not matter: such a file never loads).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Object {
    pub(crate) entries: Vec<(String, Value)>,
}

impl Object {
    /// The value of `key`, if present.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find_map(|(k, v)| (k == key).then_some(v))
    }
}

impl Value {
    /// What the value is, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

impl fmt::Display for Value {
    /// Short rendering for messages: scalars as JSON, containers by kind.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(_) | Value::Object(_) => f.write_str(self.kind()),
        }
    }
}

/// Join a JSON path and a key: `instances` + `a` = `instances.a`.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Join a JSON path and an array index: `a.b` + 2 = `a.b[2]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Parse `text` as one JSON document. Duplicate keys come back as problems
/// beside the tree; a syntax error is the one problem, at `line:column`.
pub(crate) fn parse(text: &str) -> Result<(Value, Vec<Problem>), Problem> {
    let duplicates = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = ValueSeed {
        path: String::new(),
        duplicates: &duplicates,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(value) => Ok((value, duplicates.into_inner())),
        Err(e) => Err(syntax_problem(&e)),
    }
}

/// serde_json's message ends with " at line L column C"; the position
/// becomes the path so that the line reads `L:C: message`.
fn syntax_problem(e: &serde_json::Error) -> Problem {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full);
    Problem {
        path: format!("{}:{}", e.line(), e.column()),
        message: format!("invalid JSON: {message}"),
    }
}

/// Deserializes one value, knowing its path so a duplicate key can be named.
struct ValueSeed<'a> {
    path: String,
    duplicates: &'a RefCell<Vec<Problem>>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = ValueSeed {
                path: index(&self.path, items.len()),
                duplicates: self.duplicates,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Object::default();
        while let Some(key) = map.next_key::<String>()? {
            let path = join(&self.path, &key);
            let value = map.next_value_seed(ValueSeed {
                path: path.clone(),
                duplicates: self.duplicates,
            })?;
            if object.get(&key).is_some() {
                self.duplicates.borrow_mut().push(Problem {
                    path,
                    message: "duplicate key (one reading must win; write it once)".into(),
                });
            } else {
                object.entries.push((key, value));
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_reports_duplicates_with_paths() {
        let (v, dups) = parse(r#"{"b":1,"a":{"x":[1,{"y":2,"y":3}],"x":0},"b":2}"#).unwrap();
        let Value::Object(o) = v else { panic!() };
        let keys: Vec<_> = o.entries.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        let paths: Vec<_> = dups.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["a.x[1].y", "a.x", "b"]);
    }

    #[test]
    fn syntax_error_is_one_line_with_position() {
        let p = parse("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(p.path, "3:1");
        assert!(
            p.message.starts_with("invalid JSON: trailing comma"),
            "{}",
            p.message
        );
        let p = parse("{} x").unwrap_err();
        assert_eq!(p.path, "1:4");
        assert!(!parse("").unwrap_err().message.contains(" at line "));
    }
}
