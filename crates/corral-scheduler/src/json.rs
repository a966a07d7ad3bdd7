//! Typed reads of Kubernetes JSON with field paths: a missing field or a `null` is "unset", a
//! value of the wrong type is an [`InvalidField`].

use serde_json::{Map, Value};

use crate::error::InvalidField;

/// `parent.key`, or `key` at the root.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The field, unless it is missing or `null`.
pub(crate) fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn wrong_type(path: String, value: &Value, expected: &str) -> InvalidField {
    InvalidField::new(path, value, format!("must be {expected}"))
}

/// A list field; unset is the empty list.
pub(crate) fn array<'a>(
    obj: &'a Value,
    key: &str,
    path: &str,
) -> Result<&'a [Value], InvalidField> {
    match field(obj, key) {
        None => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(other) => Err(wrong_type(join(path, key), other, "a list")),
    }
}

/// An object field.
pub(crate) fn object<'a>(
    obj: &'a Value,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, InvalidField> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(wrong_type(join(path, key), other, "an object")),
    }
}

/// A string field.
pub(crate) fn string<'a>(
    obj: &'a Value,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, InvalidField> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(join(path, key), other, "a string")),
    }
}

/// An integer field.
pub(crate) fn integer(obj: &Value, key: &str, path: &str) -> Result<Option<i64>, InvalidField> {
    match field(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| wrong_type(join(path, key), v, "an integer")),
    }
}

/// A boolean field.
pub(crate) fn boolean(obj: &Value, key: &str, path: &str) -> Result<Option<bool>, InvalidField> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(join(path, key), other, "a boolean")),
    }
}

/// A map of strings (`nodeSelector`, `labels`); entries must be strings.
pub(crate) fn string_map(
    obj: &Value,
    key: &str,
    path: &str,
) -> Result<std::collections::BTreeMap<String, String>, InvalidField> {
    let mut out = std::collections::BTreeMap::new();
    if let Some(map) = object(obj, key, path)? {
        for (k, v) in map {
            let s = v
                .as_str()
                .ok_or_else(|| wrong_type(format!("{}[{k}]", join(path, key)), v, "a string"))?;
            out.insert(k.clone(), s.to_string());
        }
    }
    Ok(out)
}
