//! Validation of objects before they are stored: every problem found is reported, each as a
//! [`Cause`] with its field path and a message worded as Kubernetes words it (`Required value`,
//! `Invalid value: "x": ...`, `Unsupported value: ...`, `Duplicate value: ...`, `Forbidden: ...`).
//!
//! Objects are expected to be defaulted first ([`crate::defaults::apply_defaults`]), as in
//! Kubernetes; an absent `restartPolicy` is read as its default `Always`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ApiError, Cause, MAX_OBJECT_BYTES};
use crate::kinds::{self, KindInfo};
use crate::object::unknown_kind;
use crate::quantity::{Quantity, parse_quantity};
use crate::selector::from_label_selector_json;

// ---------------------------------------------------------------------------------------------
// Name and label rules (Kubernetes' apimachinery validation, with its messages).

const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const IMMUTABLE: &str = "field is immutable";

/// Longest DNS-1123 label / DNS-1035 label / label value / qualified-name name part.
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN_LEN: usize = 253;
/// Largest total size of an object's annotations.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// Largest total size of a ConfigMap's or Secret's data.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;
/// Longest CronJob name (its Jobs append an 11-character suffix).
pub const MAX_CRONJOB_NAME_LEN: usize = 52;

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label_shape(s: &str, inner: impl Fn(char) -> bool, edge: impl Fn(char) -> bool) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    edge(first) && edge(last) && s.chars().all(|c| inner(c) || edge(c))
}

/// A lowercase RFC 1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > MAX_LABEL_LEN {
        errs.push(too_long(MAX_LABEL_LEN));
    }
    if !is_label_shape(s, |c| c == '-', alnum_lower) {
        errs.push(DNS1123_LABEL_MSG.to_string());
    }
    join(errs)
}

/// A lowercase RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn check_dns1123_subdomain(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > MAX_SUBDOMAIN_LEN {
        errs.push(too_long(MAX_SUBDOMAIN_LEN));
    }
    if !s
        .split('.')
        .all(|part| is_label_shape(part, |c| c == '-', alnum_lower))
    {
        errs.push(DNS1123_SUBDOMAIN_MSG.to_string());
    }
    join(errs)
}

/// A DNS-1035 label: like an RFC 1123 label but starting with a letter (Service names).
pub fn check_dns1035_label(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > MAX_LABEL_LEN {
        errs.push(too_long(MAX_LABEL_LEN));
    }
    let starts_alpha = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_alpha || !is_label_shape(s, |c| c == '-', alnum_lower) {
        errs.push(DNS1035_LABEL_MSG.to_string());
    }
    join(errs)
}

fn is_name_part(s: &str) -> bool {
    is_label_shape(
        s,
        |c| matches!(c, '-' | '_' | '.'),
        |c| c.is_ascii_alphanumeric(),
    )
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name of at most 63
/// characters of `[A-Za-z0-9._-]` starting and ending with an alphanumeric.
pub fn check_qualified_name(s: &str) -> Result<(), String> {
    let parts: Vec<&str> = s.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return Err(format!(
                "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName') (got \"{s}\")"
            ));
        }
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else if let Err(e) = check_dns1123_subdomain(prefix) {
            errs.push(format!("prefix part {e}"));
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        if name.len() > MAX_LABEL_LEN {
            errs.push(format!("name part {}", too_long(MAX_LABEL_LEN)));
        }
        if !is_name_part(name) {
            errs.push(QUALIFIED_NAME_MSG.to_string());
        }
    }
    join(errs)
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9._-]` starting and ending with an
/// alphanumeric.
pub fn check_label_value(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > MAX_LABEL_LEN {
        errs.push(too_long(MAX_LABEL_LEN));
    }
    if !s.is_empty() && !is_name_part(s) {
        errs.push(LABEL_VALUE_MSG.to_string());
    }
    join(errs)
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn check_config_key(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > MAX_SUBDOMAIN_LEN {
        errs.push(too_long(MAX_SUBDOMAIN_LEN));
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        errs.push(CONFIG_KEY_MSG.to_string());
    }
    if s == "." || s == ".." {
        errs.push(format!("must not be '{s}'"));
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    join(errs)
}

/// An IANA service name (a named port): at most 15 lowercase alphanumerics or `-`, with at least
/// one letter, no `--`, not starting or ending with `-`.
pub fn check_port_name(s: &str) -> Result<(), String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(too_long(15));
    }
    if !s.chars().all(|c| alnum_lower(c) || c == '-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    join(errs)
}

fn join(errs: Vec<String>) -> Result<(), String> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join(", "))
    }
}

// ---------------------------------------------------------------------------------------------
// Collecting causes.

/// Renders a value the way a cause quotes it: strings in quotes, the rest as JSON.
fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Errs {
    causes: Vec<Cause>,
}

impl Errs {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        let cause = Cause::new(field, message);
        if !self.causes.contains(&cause) {
            self.causes.push(cause);
        }
    }
    fn required(&mut self, field: impl Into<String>) {
        self.push(field, "Required value");
    }
    fn required_because(&mut self, field: impl Into<String>, why: &str) {
        self.push(field, format!("Required value: {why}"));
    }
    fn invalid(&mut self, field: impl Into<String>, value: &Value, why: &str) {
        self.push(field, format!("Invalid value: {}: {why}", show(value)));
    }
    fn invalid_str(&mut self, field: impl Into<String>, value: &str, why: &str) {
        self.push(field, format!("Invalid value: {value:?}: {why}"));
    }
    fn unsupported(&mut self, field: impl Into<String>, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                show(value),
                list.join(", ")
            ),
        );
    }
    fn duplicate(&mut self, field: impl Into<String>, value: &str) {
        self.push(field, format!("Duplicate value: {value:?}"));
    }
    fn forbidden(&mut self, field: impl Into<String>, why: &str) {
        self.push(field, format!("Forbidden: {why}"));
    }
    fn not_found(&mut self, field: impl Into<String>, value: &str) {
        self.push(field, format!("Not found: {value:?}"));
    }
    fn has_field(&self, field: &str) -> bool {
        self.causes.iter().any(|c| c.field == field)
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|v| !v.is_null())
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The string at `key`, treating an absent or empty string as absent.
fn get_nonempty<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get_str(v, key).filter(|s| !s.is_empty())
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn entries<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn join_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `value` at `key` must be one of `supported` when it is a non-empty string.
fn one_of(errs: &mut Errs, v: &Value, key: &str, path: &str, supported: &[&str]) {
    if let Some(value) = get(v, key) {
        match value.as_str() {
            Some(s) if s.is_empty() || supported.contains(&s) => {}
            Some(_) => errs.unsupported(join_path(path, key), value, supported),
            None => {} // a wrong type is reported by the typed check
        }
    }
}

/// An integer field, when present, must be at least `min`.
fn at_least(errs: &mut Errs, v: &Value, key: &str, path: &str, min: i64) {
    if let Some(value) = get(v, key)
        && value.as_i64().is_some_and(|n| n < min)
    {
        let why = if min == 0 {
            "must be greater than or equal to 0".to_string()
        } else {
            format!("must be greater than or equal to {min}")
        };
        errs.invalid(join_path(path, key), value, &why);
    }
}

fn port_in_range(errs: &mut Errs, field: String, value: &Value) {
    if let Some(n) = value.as_i64()
        && !(1..=65535).contains(&n)
    {
        errs.invalid(field, value, "must be between 1 and 65535, inclusive");
    }
}

/// Parses a quantity given as a string or a number.
fn quantity_of(value: &Value) -> Option<Result<Quantity, String>> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(parse_quantity(&text).map_err(|e| e.to_string()))
}

/// A quantity field: it must parse and not be negative. Returns the parsed value.
fn quantity_field(errs: &mut Errs, field: String, value: &Value) -> Option<Quantity> {
    match quantity_of(value)? {
        Ok(q) if q.is_negative() => {
            errs.invalid(field, value, "must be greater than or equal to 0");
            None
        }
        Ok(q) => Some(q),
        Err(why) => {
            let why = why.split(" (got").next().unwrap_or(&why).to_string();
            errs.invalid(field, value, &why);
            None
        }
    }
}

fn invalid_kind(kind: &str, obj: &Value, causes: Vec<Cause>) -> ApiError {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| get_nonempty(m, "name").or_else(|| get_nonempty(m, "generateName")))
        .unwrap_or("")
        .to_string();
    ApiError::Invalid {
        kind: kind.to_string(),
        name,
        causes,
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// Refuses an object whose JSON form is over [`MAX_OBJECT_BYTES`].
pub fn check_size(json_len: usize) -> Result<(), ApiError> {
    if json_len > MAX_OBJECT_BYTES {
        Err(ApiError::TooLarge {
            size: json_len,
            limit: MAX_OBJECT_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Validates an object for create: every problem is reported at once as [`ApiError::Invalid`]. An
/// unknown or missing kind is a BadRequest.
pub fn validate(obj: &Value) -> Result<(), ApiError> {
    let (info, errs) = check(obj)?;
    finish(info, obj, errs)
}

/// Validates an update: [`validate`] of the new version plus the fields that may not change.
pub fn validate_update(old: &Value, new: &Value) -> Result<(), ApiError> {
    let (info, mut errs) = check(new)?;
    immutability(&mut errs, info, old, new);
    finish(info, new, errs)
}

fn finish(info: &KindInfo, obj: &Value, errs: Errs) -> Result<(), ApiError> {
    if errs.causes.is_empty() {
        Ok(())
    } else {
        Err(invalid_kind(info.kind, obj, errs.causes))
    }
}

fn check(obj: &Value) -> Result<(&'static KindInfo, Errs), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(format!(
            "an object must be a JSON object with apiVersion, kind and metadata, got {}",
            crate::object::type_name(obj)
        )));
    }
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(ApiError::bad_request(
                "object has no `kind`: every object needs one (e.g. kind: Pod)",
            ));
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "`kind` must be a string, got {other}"
            )));
        }
    };
    let info = kinds::kind_info(kind).ok_or_else(|| unknown_kind(kind))?;
    let mut errs = Errs::default();
    match obj.get("apiVersion") {
        None | Some(Value::Null) => errs.required("apiVersion"),
        Some(Value::String(v)) if v == info.api_version => {}
        Some(v) => errs.unsupported("apiVersion", v, &[info.api_version]),
    }
    metadata(&mut errs, info, obj);
    kind_rules(&mut errs, info, obj);
    typed_check(&mut errs, info, obj);
    Ok((info, errs))
}

// ---------------------------------------------------------------------------------------------
// Metadata.

fn metadata(errs: &mut Errs, info: &KindInfo, obj: &Value) {
    let meta = match obj.get("metadata") {
        None | Some(Value::Null) => {
            errs.required_because("metadata.name", "name or generateName is required");
            return;
        }
        Some(m) if m.is_object() => m,
        Some(_) => return, // reported by the typed check
    };
    let name_rule: fn(&str) -> Result<(), String> = match info.kind {
        "Namespace" => check_dns1123_label,
        "Service" => check_dns1035_label,
        _ => check_dns1123_subdomain,
    };
    match get_nonempty(meta, "name") {
        Some(name) => {
            if let Err(why) = name_rule(name) {
                errs.invalid_str("metadata.name", name, &why);
            }
            if info.kind == "CronJob" && name.len() > MAX_CRONJOB_NAME_LEN {
                errs.invalid_str("metadata.name", name, &too_long(MAX_CRONJOB_NAME_LEN));
            }
        }
        None if get_nonempty(meta, "generateName").is_none() => {
            errs.required_because("metadata.name", "name or generateName is required");
        }
        None => {}
    }
    if let Some(prefix) = get_nonempty(meta, "generateName") {
        // The prefix is checked as it will be used: cut and with a random suffix appended.
        let kept: String = prefix
            .chars()
            .take(crate::meta::MAX_GENERATE_NAME_PREFIX)
            .collect();
        if let Err(why) = name_rule(&format!("{kept}x")) {
            errs.invalid_str("metadata.generateName", prefix, &why);
        }
    }
    if let Some(ns) = get_nonempty(meta, "namespace") {
        if !info.namespaced {
            errs.forbidden("metadata.namespace", "not allowed on this type");
        } else if let Err(why) = check_dns1123_label(ns) {
            errs.invalid_str("metadata.namespace", ns, &why);
        }
    }
    labels(errs, meta.get("labels"), "metadata.labels");
    annotations(errs, meta.get("annotations"), "metadata.annotations");
    for (i, finalizer) in items(meta, "finalizers").iter().enumerate() {
        if let Some(f) = finalizer.as_str()
            && let Err(why) = check_qualified_name(f)
        {
            errs.invalid_str(format!("metadata.finalizers[{i}]"), f, &why);
        }
    }
}

fn labels(errs: &mut Errs, labels: Option<&Value>, path: &str) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (key, value) in map {
        if let Err(why) = check_qualified_name(key) {
            errs.invalid_str(path, key, &why);
        }
        if let Some(v) = value.as_str()
            && let Err(why) = check_label_value(v)
        {
            errs.invalid_str(path, v, &why);
        }
    }
}

fn annotations(errs: &mut Errs, annotations: Option<&Value>, path: &str) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0;
    for (key, value) in map {
        if let Err(why) = check_qualified_name(&key.to_ascii_lowercase()) {
            errs.invalid_str(path, key, &why);
        }
        total += key.len() + value.as_str().map(str::len).unwrap_or(0);
    }
    if total > MAX_ANNOTATIONS_BYTES {
        errs.push(
            path,
            format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Typed check: the whole object must deserialize into its k8s-openapi type.

fn typed_as<T: DeserializeOwned>(
    value: Value,
) -> Option<(Vec<serde_path_to_error::Segment>, String)> {
    serde_path_to_error::deserialize::<_, T>(value)
        .err()
        .map(|e| {
            (
                e.path().iter().cloned().collect(),
                e.into_inner().to_string(),
            )
        })
}

#[allow(deprecated)] // Endpoints is deprecated upstream in favour of EndpointSlice; Corral serves it.
fn typed_error(kind: &str, value: Value) -> Option<(Vec<serde_path_to_error::Segment>, String)> {
    use k8s_openapi::api::{apps, batch, coordination, core, storage};
    match kind {
        "Namespace" => typed_as::<core::v1::Namespace>(value),
        "Pod" => typed_as::<core::v1::Pod>(value),
        "Node" => typed_as::<core::v1::Node>(value),
        "Service" => typed_as::<core::v1::Service>(value),
        "Endpoints" => typed_as::<core::v1::Endpoints>(value),
        "ConfigMap" => typed_as::<core::v1::ConfigMap>(value),
        "Secret" => typed_as::<core::v1::Secret>(value),
        "ServiceAccount" => typed_as::<core::v1::ServiceAccount>(value),
        "ReplicaSet" => typed_as::<apps::v1::ReplicaSet>(value),
        "Deployment" => typed_as::<apps::v1::Deployment>(value),
        "StatefulSet" => typed_as::<apps::v1::StatefulSet>(value),
        "DaemonSet" => typed_as::<apps::v1::DaemonSet>(value),
        "ControllerRevision" => typed_as::<apps::v1::ControllerRevision>(value),
        "Job" => typed_as::<batch::v1::Job>(value),
        "CronJob" => typed_as::<batch::v1::CronJob>(value),
        "PersistentVolume" => typed_as::<core::v1::PersistentVolume>(value),
        "PersistentVolumeClaim" => typed_as::<core::v1::PersistentVolumeClaim>(value),
        "StorageClass" => typed_as::<storage::v1::StorageClass>(value),
        "Event" => typed_as::<core::v1::Event>(value),
        "Lease" => typed_as::<coordination::v1::Lease>(value),
        _ => None,
    }
}

fn typed_check(errs: &mut Errs, info: &KindInfo, obj: &Value) {
    let mut clone = obj.clone();
    if let Some(map) = clone.as_object_mut() {
        // apiVersion and kind are checked above; the typed structs insist on them too.
        map.insert("apiVersion".into(), Value::String(info.api_version.into()));
        map.insert("kind".into(), Value::String(info.kind.into()));
        if map.get("metadata").is_none_or(Value::is_null) {
            map.insert("metadata".into(), Value::Object(Map::new()));
        }
    }
    let Some((segments, message)) = typed_error(info.kind, clone) else {
        return;
    };
    let mut path = String::new();
    let mut current = Some(obj);
    for segment in &segments {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                path.push_str(&format!("[{index}]"));
                current = current.and_then(|v| v.get(*index));
            }
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                let plain = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if plain {
                    path = join_path(&path, key);
                } else {
                    path.push_str(&format!("[{key}]"));
                }
                current = current.and_then(|v| v.get(key));
            }
            serde_path_to_error::Segment::Unknown => current = None,
        }
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
    {
        let field_path = join_path(&path, field);
        if !errs.has_field(&field_path) {
            errs.required(field_path);
        }
        return;
    }
    let field_path = if path.is_empty() {
        "<root>".to_string()
    } else {
        path
    };
    match current {
        Some(value) => errs.invalid(field_path, value, &message),
        None => errs.push(field_path, message),
    }
}

// ---------------------------------------------------------------------------------------------
// Kind rules.

const POD_RESTART_POLICIES: &[&str] = &["Always", "OnFailure", "Never"];
const PROTOCOLS: &[&str] = &["TCP", "UDP", "SCTP"];
const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];
const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

fn kind_rules(errs: &mut Errs, info: &KindInfo, obj: &Value) {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    match info.kind {
        "Pod" => pod_spec(errs, get(obj, "spec"), "spec", POD_RESTART_POLICIES),
        "ReplicaSet" | "Deployment" | "StatefulSet" | "DaemonSet" => {
            workload(errs, info.kind, spec)
        }
        "Job" => job_spec(errs, spec, "spec"),
        "CronJob" => cronjob(errs, spec),
        "Service" => service(errs, spec),
        "Endpoints" => endpoints(errs, obj),
        "ConfigMap" => config_map(errs, obj),
        "Secret" => secret(errs, obj),
        "PersistentVolume" => persistent_volume(errs, spec),
        "PersistentVolumeClaim" => claim_spec(errs, get(obj, "spec"), "spec"),
        "StorageClass" => storage_class(errs, obj),
        "Lease" => at_least(errs, spec, "leaseDurationSeconds", "spec", 1),
        "ControllerRevision" => {
            // As Kubernetes' ValidateControllerRevision: data and revision are required, and the
            // revision is not negative.
            if is_blank(obj.get("data").unwrap_or(&Value::Null)) {
                errs.required("data");
            }
            if obj.get("revision").is_none_or(Value::is_null) {
                errs.required("revision");
            }
            at_least(errs, obj, "revision", "", 0);
        }
        _ => {}
    }
}

fn pod_spec(errs: &mut Errs, spec: Option<&Value>, path: &str, restart_policies: &[&str]) {
    let Some(spec) = spec else {
        errs.required(join_path(path, "containers"));
        return;
    };
    if !spec.is_object() {
        return; // reported by the typed check
    }
    let mut volume_names = BTreeSet::new();
    for (i, volume) in items(spec, "volumes").iter().enumerate() {
        let vp = format!("{path}.volumes[{i}]");
        match get_nonempty(volume, "name") {
            None => errs.required(format!("{vp}.name")),
            Some(name) => {
                if let Err(why) = check_dns1123_label(name) {
                    errs.invalid_str(format!("{vp}.name"), name, &why);
                }
                if !volume_names.insert(name.to_string()) {
                    errs.duplicate(format!("{vp}.name"), name);
                }
            }
        }
    }
    if items(spec, "containers").is_empty()
        && spec
            .get("containers")
            .is_none_or(|c| c.is_array() || c.is_null())
    {
        errs.required(join_path(path, "containers"));
    }
    let mut names = BTreeSet::new();
    let mut port_names = BTreeSet::new();
    for key in ["initContainers", "containers"] {
        for (i, c) in items(spec, key).iter().enumerate() {
            container(
                errs,
                c,
                &format!("{path}.{key}[{i}]"),
                &mut names,
                &mut port_names,
                &volume_names,
            );
        }
    }
    let restart = get(spec, "restartPolicy")
        .cloned()
        .unwrap_or_else(|| Value::String("Always".into()));
    if let Some(policy) = restart.as_str()
        && !restart_policies.contains(&policy)
    {
        errs.unsupported(join_path(path, "restartPolicy"), &restart, restart_policies);
    }
    one_of(
        errs,
        spec,
        "dnsPolicy",
        path,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if get_str(spec, "dnsPolicy") == Some("None") && get(spec, "dnsConfig").is_none() {
        errs.required_because(
            join_path(path, "dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        );
    }
    if let Some(value) = get(spec, "activeDeadlineSeconds")
        && value.as_i64().is_some_and(|n| n < 1)
    {
        errs.invalid(
            join_path(path, "activeDeadlineSeconds"),
            value,
            "must be between 1 and 2147483647, inclusive",
        );
    }
    for key in ["hostname", "subdomain"] {
        if let Some(value) = get_nonempty(spec, key)
            && let Err(why) = check_dns1123_label(value)
        {
            errs.invalid_str(join_path(path, key), value, &why);
        }
    }
    labels(
        errs,
        spec.get("nodeSelector"),
        &join_path(path, "nodeSelector"),
    );
    for (i, toleration) in items(spec, "tolerations").iter().enumerate() {
        let tp = format!("{path}.tolerations[{i}]");
        one_of(errs, toleration, "operator", &tp, &["Exists", "Equal"]);
        one_of(
            errs,
            toleration,
            "effect",
            &tp,
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
        if get_str(toleration, "operator") == Some("Exists")
            && get_nonempty(toleration, "value").is_some()
        {
            errs.invalid(
                format!("{tp}.operator"),
                &toleration["operator"],
                "value must be empty when `operator` is 'Exists'",
            );
        }
    }
}

fn container(
    errs: &mut Errs,
    c: &Value,
    path: &str,
    names: &mut BTreeSet<String>,
    port_names: &mut BTreeSet<String>,
    volume_names: &BTreeSet<String>,
) {
    if !c.is_object() {
        return;
    }
    match get_nonempty(c, "name") {
        None => errs.required(format!("{path}.name")),
        Some(name) => {
            if let Err(why) = check_dns1123_label(name) {
                errs.invalid_str(format!("{path}.name"), name, &why);
            }
            if !names.insert(name.to_string()) {
                errs.duplicate(format!("{path}.name"), name);
            }
        }
    }
    match get_nonempty(c, "image") {
        None => errs.required(format!("{path}.image")),
        Some(image) if image.trim() != image => {
            errs.invalid_str(
                format!("{path}.image"),
                image,
                "must not have leading or trailing whitespace",
            );
        }
        Some(_) => {}
    }
    one_of(
        errs,
        c,
        "imagePullPolicy",
        path,
        &["Always", "IfNotPresent", "Never"],
    );
    for (j, port) in items(c, "ports").iter().enumerate() {
        let pp = format!("{path}.ports[{j}]");
        match get(port, "containerPort") {
            None => errs.required(format!("{pp}.containerPort")),
            Some(value) if value.as_i64() == Some(0) => {
                errs.required(format!("{pp}.containerPort"))
            }
            Some(value) => port_in_range(errs, format!("{pp}.containerPort"), value),
        }
        if let Some(value) = get(port, "hostPort")
            && value.as_i64() != Some(0)
        {
            port_in_range(errs, format!("{pp}.hostPort"), value);
        }
        one_of(errs, port, "protocol", &pp, PROTOCOLS);
        if let Some(name) = get_nonempty(port, "name") {
            if let Err(why) = check_port_name(name) {
                errs.invalid_str(format!("{pp}.name"), name, &why);
            } else if !port_names.insert(name.to_string()) {
                errs.duplicate(format!("{pp}.name"), name);
            }
        }
    }
    if let Some(resources) = get(c, "resources") {
        let mut parsed: BTreeMap<&str, BTreeMap<&str, Quantity>> = BTreeMap::new();
        for kind in ["limits", "requests"] {
            let Some(map) = entries(resources, kind) else {
                continue;
            };
            for (resource, value) in map {
                let field = format!("{path}.resources.{kind}[{resource}]");
                if let Err(why) = check_qualified_name(resource) {
                    errs.invalid_str(field.clone(), resource, &why);
                }
                if let Some(q) = quantity_field(errs, field, value) {
                    parsed.entry(kind).or_default().insert(resource, q);
                }
            }
        }
        if let (Some(limits), Some(requests)) = (parsed.get("limits"), parsed.get("requests")) {
            for (resource, request) in requests {
                if let Some(limit) = limits.get(resource)
                    && request.milli_value() > limit.milli_value()
                {
                    errs.invalid_str(
                        format!("{path}.resources.requests[{resource}]"),
                        request.as_str(),
                        &format!("must be less than or equal to {resource} limit of {limit}"),
                    );
                }
            }
        }
    }
    for (j, env) in items(c, "env").iter().enumerate() {
        if env.is_object() && get_nonempty(env, "name").is_none() {
            errs.required(format!("{path}.env[{j}].name"));
        }
    }
    for (j, mount) in items(c, "volumeMounts").iter().enumerate() {
        if !mount.is_object() {
            continue;
        }
        let mp = format!("{path}.volumeMounts[{j}]");
        match get_nonempty(mount, "name") {
            None => errs.required(format!("{mp}.name")),
            Some(name) if !volume_names.contains(name) => {
                errs.not_found(format!("{mp}.name"), name)
            }
            Some(_) => {}
        }
        if get_nonempty(mount, "mountPath").is_none() {
            errs.required(format!("{mp}.mountPath"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = get(c, probe).filter(|p| p.is_object()) {
            let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
                .iter()
                .filter(|h| get(p, h).is_some())
                .count();
            if handlers == 0 {
                errs.required_because(format!("{path}.{probe}"), "must specify a handler type");
            } else if handlers > 1 {
                errs.forbidden(
                    format!("{path}.{probe}"),
                    "may not specify more than 1 handler type",
                );
            }
        }
    }
}

fn pod_template(errs: &mut Errs, template: Option<&Value>, path: &str, restart_policies: &[&str]) {
    let Some(template) = template.filter(|t| t.is_object()) else {
        if template.is_none() {
            errs.required(path);
        }
        return;
    };
    if let Some(meta) = get(template, "metadata") {
        labels(errs, meta.get("labels"), &format!("{path}.metadata.labels"));
        annotations(
            errs,
            meta.get("annotations"),
            &format!("{path}.metadata.annotations"),
        );
    }
    pod_spec(
        errs,
        get(template, "spec"),
        &format!("{path}.spec"),
        restart_policies,
    );
}

/// Checks `selector` (required unless `optional`) and that it selects the template's labels.
fn selector_matches_template(
    errs: &mut Errs,
    kind: &str,
    spec: &Value,
    path: &str,
    optional: bool,
) {
    let selector_path = join_path(path, "selector");
    let Some(selector_json) = get(spec, "selector") else {
        if !optional {
            errs.required(selector_path);
        }
        return;
    };
    if !selector_json.is_object() {
        return;
    }
    let selector = match from_label_selector_json(selector_json) {
        Ok(s) => s,
        Err(e) => {
            let why = match &e {
                ApiError::BadRequest { message } => message.clone(),
                other => other.to_string(),
            };
            errs.invalid(selector_path, selector_json, &why);
            return;
        }
    };
    if selector.is_empty() {
        errs.invalid(
            selector_path,
            selector_json,
            &format!(
                "empty selector is invalid for {}",
                kind.to_ascii_lowercase()
            ),
        );
        return;
    }
    let template_labels = spec
        .get("template")
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"));
    let labels: BTreeMap<String, String> = template_labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    if !selector.matches(&labels) {
        let shown = template_labels
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        errs.invalid(
            format!("{path}.template.metadata.labels"),
            &shown,
            "`selector` does not match template `labels`",
        );
    }
}

fn int_or_percent(
    errs: &mut Errs,
    v: &Value,
    key: &str,
    path: &str,
    max_percent: Option<i64>,
) -> Option<i64> {
    let value = get(v, key)?;
    let field = join_path(path, key);
    match value {
        Value::Number(n) => match n.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => {
                errs.invalid(field, value, "must be greater than or equal to 0");
                None
            }
        },
        Value::String(s) => {
            let Some(pct) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                errs.invalid(field, value, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')");
                return None;
            };
            if pct < 0 {
                errs.invalid(field, value, "must be greater than or equal to 0");
            } else if max_percent.is_some_and(|max| pct > max) {
                errs.invalid(field, value, "must not be greater than 100%");
            }
            Some(pct)
        }
        _ => None,
    }
}

fn workload(errs: &mut Errs, kind: &str, spec: &Value) {
    if kind != "DaemonSet" {
        at_least(errs, spec, "replicas", "spec", 0);
    }
    at_least(errs, spec, "minReadySeconds", "spec", 0);
    at_least(errs, spec, "revisionHistoryLimit", "spec", 0);
    selector_matches_template(errs, kind, spec, "spec", false);
    let mut template = get(spec, "template").cloned();
    if kind == "StatefulSet" {
        // Each volumeClaimTemplate becomes a volume of every pod: mounts may name it.
        add_claim_volumes(template.as_mut(), spec);
    }
    pod_template(errs, template.as_ref(), "spec.template", &["Always"]);
    match kind {
        "Deployment" => {
            at_least(errs, spec, "progressDeadlineSeconds", "spec", 1);
            if let Some(strategy) = get(spec, "strategy") {
                one_of(
                    errs,
                    strategy,
                    "type",
                    "spec.strategy",
                    &["Recreate", "RollingUpdate"],
                );
                let rolling = get(strategy, "rollingUpdate");
                if get_str(strategy, "type") == Some("Recreate") && rolling.is_some() {
                    errs.forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    );
                }
                if let Some(rolling) = rolling {
                    let p = "spec.strategy.rollingUpdate";
                    let unavailable = int_or_percent(errs, rolling, "maxUnavailable", p, Some(100));
                    let surge = int_or_percent(errs, rolling, "maxSurge", p, None);
                    if unavailable == Some(0) && surge == Some(0) {
                        errs.invalid(
                            format!("{p}.maxUnavailable"),
                            &rolling["maxUnavailable"],
                            "may not be 0 when `maxSurge` is 0",
                        );
                    }
                }
            }
        }
        "StatefulSet" => {
            one_of(
                errs,
                spec,
                "podManagementPolicy",
                "spec",
                &["OrderedReady", "Parallel"],
            );
            if let Some(strategy) = get(spec, "updateStrategy") {
                one_of(
                    errs,
                    strategy,
                    "type",
                    "spec.updateStrategy",
                    &["RollingUpdate", "OnDelete"],
                );
                if let Some(rolling) = get(strategy, "rollingUpdate") {
                    at_least(
                        errs,
                        rolling,
                        "partition",
                        "spec.updateStrategy.rollingUpdate",
                        0,
                    );
                }
            }
            if let Some(service) = get_nonempty(spec, "serviceName")
                && let Err(why) = check_dns1123_label(service)
            {
                errs.invalid_str("spec.serviceName", service, &why);
            }
            let mut claim_names = BTreeSet::new();
            for (i, claim) in items(spec, "volumeClaimTemplates").iter().enumerate() {
                let cp = format!("spec.volumeClaimTemplates[{i}]");
                match claim.get("metadata").and_then(|m| get_nonempty(m, "name")) {
                    None => errs.required(format!("{cp}.metadata.name")),
                    Some(name) => {
                        if let Err(why) = check_dns1123_subdomain(name) {
                            errs.invalid_str(format!("{cp}.metadata.name"), name, &why);
                        }
                        if !claim_names.insert(name) {
                            errs.duplicate(format!("{cp}.metadata.name"), name);
                        }
                    }
                }
                claim_spec(errs, get(claim, "spec"), &format!("{cp}.spec"));
            }
        }
        "DaemonSet" => {
            if let Some(strategy) = get(spec, "updateStrategy") {
                one_of(
                    errs,
                    strategy,
                    "type",
                    "spec.updateStrategy",
                    &["RollingUpdate", "OnDelete"],
                );
                if let Some(rolling) = get(strategy, "rollingUpdate") {
                    let p = "spec.updateStrategy.rollingUpdate";
                    let unavailable = int_or_percent(errs, rolling, "maxUnavailable", p, Some(100));
                    let surge = int_or_percent(errs, rolling, "maxSurge", p, Some(100));
                    if unavailable == Some(0) && surge.is_none_or(|s| s == 0) {
                        errs.invalid(
                            format!("{p}.maxUnavailable"),
                            &rolling["maxUnavailable"],
                            "may not be 0 when `maxSurge` is 0",
                        );
                    }
                }
            }
        }
        _ => {}
    }
}

fn add_claim_volumes(template: Option<&mut Value>, spec: &Value) {
    let Some(pod_spec) = template
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let volumes = pod_spec.entry("volumes").or_insert(Value::Null);
    if volumes.is_null() {
        *volumes = Value::Array(Vec::new());
    }
    let Some(volumes) = volumes.as_array_mut() else {
        return;
    };
    for claim in items(spec, "volumeClaimTemplates") {
        if let Some(name) = claim.get("metadata").and_then(|m| get_nonempty(m, "name")) {
            let mut volume = Map::new();
            volume.insert("name".into(), Value::String(name.into()));
            let mut source = Map::new();
            source.insert("claimName".into(), Value::String(name.into()));
            volume.insert("persistentVolumeClaim".into(), Value::Object(source));
            volumes.push(Value::Object(volume));
        }
    }
}

fn job_spec(errs: &mut Errs, spec: &Value, path: &str) {
    for key in ["parallelism", "completions", "backoffLimit"] {
        at_least(errs, spec, key, path, 0);
    }
    at_least(errs, spec, "activeDeadlineSeconds", path, 1);
    at_least(errs, spec, "ttlSecondsAfterFinished", path, 0);
    one_of(
        errs,
        spec,
        "completionMode",
        path,
        &["NonIndexed", "Indexed"],
    );
    if get_str(spec, "completionMode") == Some("Indexed") && get(spec, "completions").is_none() {
        errs.required_because(
            join_path(path, "completions"),
            "when completion mode is Indexed",
        );
    }
    // The selector is generated at admission when absent; one given must select the template.
    selector_matches_template(errs, "Job", spec, path, true);
    pod_template(
        errs,
        get(spec, "template"),
        &join_path(path, "template"),
        &["OnFailure", "Never"],
    );
}

/// A cron schedule: five fields or a predefined `@` schedule; no time zone prefix.
fn check_schedule(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.starts_with("TZ=") || s.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(macro_name) = s.strip_prefix('@') {
        let known = [
            "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly",
        ];
        if known.contains(&macro_name) || macro_name.starts_with("every ") {
            return Ok(());
        }
        return Err(format!("unrecognized descriptor: @{macro_name}"));
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {s}",
            fields.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "*/,-?".contains(c);
    if let Some(bad) = fields.iter().find(|f| !f.chars().all(allowed)) {
        return Err(format!("unparseable field {bad:?}"));
    }
    Ok(())
}

fn cronjob(errs: &mut Errs, spec: &Value) {
    match get_str(spec, "schedule") {
        None | Some("") => {
            if !spec
                .get("schedule")
                .is_some_and(|s| !s.is_string() && !s.is_null())
            {
                errs.required("spec.schedule");
            }
        }
        Some(schedule) => {
            if let Err(why) = check_schedule(schedule) {
                errs.invalid_str("spec.schedule", schedule, &why);
            }
        }
    }
    one_of(
        errs,
        spec,
        "concurrencyPolicy",
        "spec",
        &["Allow", "Forbid", "Replace"],
    );
    for key in [
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
    ] {
        at_least(errs, spec, key, "spec", 0);
    }
    match spec.get("jobTemplate").filter(|t| !t.is_null()) {
        None => errs.required("spec.jobTemplate"),
        Some(template) => {
            let null = Value::Null;
            job_spec(
                errs,
                template.get("spec").unwrap_or(&null),
                "spec.jobTemplate.spec",
            );
        }
    }
}

/// Kubernetes' `ValidateService` (single-stack IPv4 view of its dual-stack rules).
fn service(errs: &mut Errs, spec: &Value) {
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    const FAMILIES: &[&str] = &["IPv4", "IPv6"];
    const POLICIES: &[&str] = &["PreferDualStack", "RequireDualStack", "SingleStack"];
    const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
    /// The kubelet's port, which a LoadBalancer may not expose.
    const KUBELET_PORT: i64 = 10250;
    one_of(errs, spec, "type", "spec", TYPES);
    one_of(errs, spec, "sessionAffinity", "spec", &["ClientIP", "None"]);
    let service_type = get_nonempty(spec, "type").unwrap_or("ClusterIP");
    let cluster_ip = get_nonempty(spec, "clusterIP");
    let headless = cluster_ip == Some("None");
    let ports = items(spec, "ports");
    match service_type {
        "ExternalName" => {
            match get_nonempty(spec, "externalName") {
                None => errs.required("spec.externalName"),
                Some(name) => {
                    // A trailing dot marks the name as fully qualified.
                    if let Err(why) = check_dns1123_subdomain(name.trim_end_matches('.')) {
                        errs.invalid_str("spec.externalName", name, &why);
                    }
                }
            }
            if cluster_ip.is_some() || !items(spec, "clusterIPs").is_empty() {
                errs.forbidden(
                    "spec.clusterIPs",
                    "may not be set for ExternalName services",
                );
            }
            if !items(spec, "ipFamilies").is_empty() {
                errs.forbidden(
                    "spec.ipFamilies",
                    "may not be set for ExternalName services",
                );
            }
            if get(spec, "ipFamilyPolicy").is_some() {
                errs.forbidden(
                    "spec.ipFamilyPolicy",
                    "may not be set for ExternalName services",
                );
            }
        }
        "NodePort" | "LoadBalancer" if headless => {
            let why = format!("may not be set to 'None' for {service_type} services");
            errs.invalid_str("spec.clusterIPs[0]", "None", &why);
            if service_type == "LoadBalancer" {
                errs.invalid_str("spec.clusterIP", "None", &why);
            }
        }
        _ => {}
    }
    if service_type == "LoadBalancer" {
        for (i, port) in ports.iter().enumerate() {
            if get(port, "port").and_then(Value::as_i64) == Some(KUBELET_PORT) {
                errs.invalid(
                    format!("spec.ports[{i}]"),
                    &Value::from(KUBELET_PORT),
                    &format!(
                        "may not expose port {KUBELET_PORT} externally since it is used by kubelet"
                    ),
                );
            }
        }
    }
    if ports.is_empty()
        && service_type != "ExternalName"
        && !headless
        && spec.get("ports").is_none_or(Value::is_array)
    {
        errs.required("spec.ports");
    }
    let mut names = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    let mut port_keys = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        match get_nonempty(port, "name") {
            None if ports.len() > 1 => errs.required(format!("{pp}.name")),
            None => {}
            Some(name) => {
                if let Err(why) = check_dns1123_label(name) {
                    errs.invalid_str(format!("{pp}.name"), name, &why);
                }
                if !names.insert(name) {
                    errs.duplicate(format!("{pp}.name"), name);
                }
            }
        }
        match get(port, "port") {
            None => errs.required(format!("{pp}.port")),
            Some(value) => port_in_range(errs, format!("{pp}.port"), value),
        }
        one_of(errs, port, "protocol", &pp, PROTOCOLS);
        let protocol = get_nonempty(port, "protocol").unwrap_or("TCP");
        match get(port, "targetPort") {
            Some(value @ Value::Number(_)) if value.as_i64() != Some(0) => {
                port_in_range(errs, format!("{pp}.targetPort"), value);
            }
            Some(Value::String(name)) if !name.is_empty() => {
                if let Err(why) = check_port_name(name) {
                    errs.invalid_str(format!("{pp}.targetPort"), name, &why);
                }
            }
            _ => {}
        }
        if let Some(app_protocol) = get_nonempty(port, "appProtocol")
            && let Err(why) = check_qualified_name(app_protocol)
        {
            errs.invalid_str(format!("{pp}.appProtocol"), app_protocol, &why);
        }
        if let Some(node_port) = get(port, "nodePort").filter(|p| p.as_i64() != Some(0)) {
            if service_type == "ClusterIP" || service_type == "ExternalName" {
                errs.forbidden(
                    format!("{pp}.nodePort"),
                    &format!("may not be used when `type` is '{service_type}'"),
                );
            } else {
                port_in_range(errs, format!("{pp}.nodePort"), node_port);
                if let Some(n) = node_port.as_i64()
                    && !node_ports.insert((protocol, n))
                {
                    errs.push(format!("{pp}.nodePort"), format!("Duplicate value: {n}"));
                }
            }
        }
        if let Some(n) = get(port, "port").and_then(Value::as_i64)
            && !port_keys.insert((protocol, n))
        {
            errs.push(
                pp.clone(),
                format!("Duplicate value: {{\"port\":{n},\"protocol\":\"{protocol}\"}}"),
            );
        }
    }
    labels(errs, spec.get("selector"), "spec.selector");
    match get_nonempty(spec, "sessionAffinity") {
        Some("ClientIP") => {
            if let Some(timeout) = spec.pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
                && timeout.as_i64().is_some_and(|t| !(1..=86400).contains(&t))
            {
                errs.invalid(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    timeout,
                    "must be greater than 0 and less than 86400",
                );
            }
        }
        Some("None") | None => {
            if get(spec, "sessionAffinityConfig").is_some() {
                errs.forbidden(
                    "spec.sessionAffinityConfig",
                    "must not be set when session affinity is None",
                );
            }
        }
        Some(_) => {}
    }
    for (i, ip) in items(spec, "externalIPs").iter().enumerate() {
        if let Some(text) = ip.as_str()
            && text.parse::<IpAddr>().is_err()
        {
            errs.invalid_str(
                format!("spec.externalIPs[{i}]"),
                text,
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            );
        }
    }
    let externally_accessible = matches!(service_type, "NodePort" | "LoadBalancer")
        || (service_type == "ClusterIP" && !items(spec, "externalIPs").is_empty());
    if externally_accessible {
        one_of(
            errs,
            spec,
            "externalTrafficPolicy",
            "spec",
            TRAFFIC_POLICIES,
        );
    } else if let Some(policy) = get_nonempty(spec, "externalTrafficPolicy") {
        errs.invalid_str(
            "spec.externalTrafficPolicy",
            policy,
            "may only be set for externally-accessible services",
        );
    }
    if service_type != "ExternalName" {
        one_of(
            errs,
            spec,
            "internalTrafficPolicy",
            "spec",
            TRAFFIC_POLICIES,
        );
        cluster_ips(errs, spec, cluster_ip, FAMILIES, POLICIES);
    }
}

/// Kubernetes' `ValidateServiceClusterIPsRelatedFields`: `clusterIP` and `clusterIPs[0]` agree,
/// every address is valid (`None` only alone), at most one per family, each of the family
/// `ipFamilies` names.
fn cluster_ips(
    errs: &mut Errs,
    spec: &Value,
    cluster_ip: Option<&str>,
    families: &[&str],
    policies: &[&str],
) {
    // Admission fills `clusterIPs` from `clusterIP`; a manifest as written may leave it out.
    let listed = items(spec, "clusterIPs");
    let ips: Vec<Value> = match cluster_ip {
        Some(ip) if listed.is_empty() => vec![Value::String(ip.to_string())],
        _ => listed.to_vec(),
    };
    let shown = || Value::Array(ips.clone());
    match cluster_ip {
        Some(ip) if ips.first().and_then(Value::as_str) != Some(ip) => errs.invalid(
            "spec.clusterIPs",
            &shown(),
            "first value must match `clusterIP`",
        ),
        None if !ips.is_empty() => errs.invalid(
            "spec.clusterIPs",
            &shown(),
            "must be empty when `clusterIP` is not specified",
        ),
        _ => {}
    }
    let mut seen = BTreeSet::new();
    for (i, family) in items(spec, "ipFamilies").iter().enumerate() {
        let Some(f) = family.as_str() else { continue };
        if !families.contains(&f) {
            errs.unsupported(format!("spec.ipFamilies[{i}]"), family, families);
        }
        if !seen.insert(f) {
            errs.duplicate(format!("spec.ipFamilies[{i}]"), f);
        }
    }
    one_of(errs, spec, "ipFamilyPolicy", "spec", policies);
    let mut bad_ip = false;
    let mut parsed = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let Some(text) = ip.as_str() else { continue };
        if i == 0 && text == "None" {
            if ips.len() > 1 {
                bad_ip = true;
                errs.invalid(
                    "spec.clusterIPs",
                    &shown(),
                    "'None' must be the first and only value",
                );
            }
            continue;
        }
        match text.parse::<IpAddr>() {
            Ok(addr) => parsed.push(addr),
            Err(_) => {
                bad_ip = true;
                // `clusterIP` is reported under its own name when it is the culprit.
                let field = if i == 0 && cluster_ip == Some(text) {
                    "spec.clusterIP".to_string()
                } else {
                    format!("spec.clusterIPs[{i}]")
                };
                let why = if field == "spec.clusterIP" {
                    "must be empty, 'None', or a valid IP address"
                } else {
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                };
                errs.invalid_str(field, text, why);
            }
        }
    }
    if ips.len() > 2 {
        errs.invalid("spec.clusterIPs", &shown(), "may only hold up to 2 values");
    }
    if bad_ip {
        return;
    }
    if parsed.len() > 1 && parsed[0].is_ipv4() == parsed[1].is_ipv4() {
        errs.invalid(
            "spec.clusterIPs",
            &shown(),
            "may specify no more than one IP for each IP family",
        );
    }
    if cluster_ip != Some("None") {
        for (i, (ip, family)) in parsed
            .iter()
            .zip(items(spec, "ipFamilies").iter().filter_map(Value::as_str))
            .enumerate()
        {
            let want_v4 = family == "IPv4";
            if family_known(family) && ip.is_ipv4() != want_v4 {
                errs.invalid_str(
                    format!("spec.clusterIPs[{i}]"),
                    &ip.to_string(),
                    &format!("expected an {family} value as indicated by `ipFamilies[{i}]`"),
                );
            }
        }
    }
}

fn family_known(family: &str) -> bool {
    family == "IPv4" || family == "IPv6"
}

fn endpoints(errs: &mut Errs, obj: &Value) {
    for (i, subset) in items(obj, "subsets").iter().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            for (j, address) in items(subset, key).iter().enumerate() {
                let field = format!("subsets[{i}].{key}[{j}].ip");
                match get_nonempty(address, "ip") {
                    None => errs.required(field),
                    Some(ip) if ip.parse::<IpAddr>().is_err() => {
                        errs.invalid_str(field, ip, "must be a valid IP address")
                    }
                    Some(_) => {}
                }
                if let Some(hostname) = get_nonempty(address, "hostname")
                    && let Err(why) = check_dns1123_label(hostname)
                {
                    errs.invalid_str(format!("subsets[{i}].{key}[{j}].hostname"), hostname, &why);
                }
                if let Some(node) = get_nonempty(address, "nodeName")
                    && let Err(why) = check_dns1123_subdomain(node)
                {
                    errs.invalid_str(format!("subsets[{i}].{key}[{j}].nodeName"), node, &why);
                }
            }
        }
        let ports = items(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            match get_nonempty(port, "name") {
                None if ports.len() > 1 => errs.required(format!("subsets[{i}].ports[{j}].name")),
                None => {}
                Some(name) => {
                    if let Err(why) = check_dns1123_label(name) {
                        errs.invalid_str(format!("subsets[{i}].ports[{j}].name"), name, &why);
                    }
                }
            }
            match get(port, "port") {
                None => errs.required(format!("subsets[{i}].ports[{j}].port")),
                Some(value) => port_in_range(errs, format!("subsets[{i}].ports[{j}].port"), value),
            }
            one_of(
                errs,
                port,
                "protocol",
                &format!("subsets[{i}].ports[{j}]"),
                PROTOCOLS,
            );
        }
    }
}

/// Keys of `data`-like maps; returns the total size of their values (decoded when base64).
fn data_keys(errs: &mut Errs, obj: &Value, key: &str, base64: bool) -> usize {
    let Some(map) = entries(obj, key) else {
        return 0;
    };
    let mut total = 0;
    for (k, v) in map {
        let field = format!("{key}[{k}]");
        if let Err(why) = check_config_key(k) {
            errs.invalid_str(field.clone(), k, &why);
        }
        let Some(text) = v.as_str() else {
            continue;
        };
        if base64 {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => total += bytes.len(),
                Err(e) => errs.invalid_str(
                    field,
                    "<value omitted>",
                    &format!("must be base64-encoded: {e}"),
                ),
            }
        } else {
            total += text.len();
        }
    }
    total
}

fn config_map(errs: &mut Errs, obj: &Value) {
    let mut total = data_keys(errs, obj, "data", false);
    total += data_keys(errs, obj, "binaryData", true);
    if let (Some(data), Some(binary)) = (entries(obj, "data"), entries(obj, "binaryData")) {
        for k in data.keys().filter(|k| binary.contains_key(*k)) {
            errs.invalid_str(
                format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            );
        }
    }
    if total > MAX_DATA_BYTES {
        errs.push(
            "data",
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        );
    }
}

fn secret(errs: &mut Errs, obj: &Value) {
    let mut total = data_keys(errs, obj, "data", true);
    total += data_keys(errs, obj, "stringData", false);
    if total > MAX_DATA_BYTES {
        errs.push(
            "data",
            format!("Too long: must have at most {MAX_DATA_BYTES} bytes"),
        );
    }
    let has = |key: &str| {
        entries(obj, "data").is_some_and(|d| d.contains_key(key))
            || entries(obj, "stringData").is_some_and(|d| d.contains_key(key))
    };
    let required: &[&str] = match get_str(obj, "type").unwrap_or("Opaque") {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        _ => &[],
    };
    for key in required {
        if !has(key) {
            errs.required(format!("data[{key}]"));
        }
    }
    if get_str(obj, "type") == Some("kubernetes.io/basic-auth")
        && !has("username")
        && !has("password")
    {
        errs.required_because(
            "data[username]",
            "must have at least one of username or password",
        );
    }
}

fn access_modes(errs: &mut Errs, spec: &Value, path: &str) {
    let modes = items(spec, "accessModes");
    if modes.is_empty() {
        errs.required_because(
            join_path(path, "accessModes"),
            "at least 1 access mode is required",
        );
    }
    for (i, mode) in modes.iter().enumerate() {
        if mode.as_str().is_some_and(|m| !ACCESS_MODES.contains(&m)) {
            errs.unsupported(format!("{path}.accessModes[{i}]"), mode, ACCESS_MODES);
        }
    }
}

fn claim_spec(errs: &mut Errs, spec: Option<&Value>, path: &str) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        if spec.is_none() {
            errs.required(path);
        }
        return;
    };
    access_modes(errs, spec, path);
    let storage = spec
        .get("resources")
        .and_then(|r| r.get("requests"))
        .and_then(|r| get(r, "storage"));
    let field = format!("{path}.resources.requests[storage]");
    match storage {
        None => errs.required(format!("{path}.resources[storage]")),
        Some(value) => {
            if let Some(q) = quantity_field(errs, field.clone(), value)
                && q.milli_value() == 0
            {
                errs.invalid(field, value, "must be greater than zero");
            }
        }
    }
    one_of(errs, spec, "volumeMode", path, VOLUME_MODES);
    if let Some(class) = get_nonempty(spec, "storageClassName")
        && let Err(why) = check_dns1123_subdomain(class)
    {
        errs.invalid_str(join_path(path, "storageClassName"), class, &why);
    }
    if let Some(selector) = get(spec, "selector")
        && let Err(e) = from_label_selector_json(selector)
    {
        errs.invalid(join_path(path, "selector"), selector, &e.to_string());
    }
}

/// The volume sources Corral can mount: a directory on a node.
const PV_SOURCES: &[&str] = &["hostPath", "local"];
const NODE_SELECTOR_OPERATORS: &[&str] = &["DoesNotExist", "Exists", "Gt", "In", "Lt", "NotIn"];

fn persistent_volume(errs: &mut Errs, spec: &Value) {
    if !spec.is_object() {
        if spec.is_null() {
            errs.required("spec");
        }
        return;
    }
    match entries(spec, "capacity") {
        None => errs.required("spec.capacity"),
        Some(capacity) => {
            match capacity.get("storage").filter(|v| !v.is_null()) {
                None => errs.required("spec.capacity[storage]"),
                Some(value) => {
                    quantity_field(errs, "spec.capacity[storage]".into(), value);
                }
            }
            if capacity.keys().any(|k| k != "storage") {
                errs.unsupported(
                    "spec.capacity",
                    &Value::Object(capacity.clone()),
                    &["storage"],
                );
            }
        }
    }
    access_modes(errs, spec, "spec");
    one_of(
        errs,
        spec,
        "persistentVolumeReclaimPolicy",
        "spec",
        &["Retain", "Delete", "Recycle"],
    );
    one_of(errs, spec, "volumeMode", "spec", VOLUME_MODES);
    if let Some(class) = get_nonempty(spec, "storageClassName")
        && let Err(why) = check_dns1123_subdomain(class)
    {
        errs.invalid_str("spec.storageClassName", class, &why);
    }
    if let Some(r) = get(spec, "claimRef").filter(|r| r.is_object()) {
        for key in ["name", "namespace"] {
            if get_nonempty(r, key).is_none() {
                errs.required(format!("spec.claimRef.{key}"));
            }
        }
    }
    const NOT_SOURCES: &[&str] = &[
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeMode",
        "volumeAttributesClassName",
    ];
    let sources: Vec<&String> = spec
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, v)| !v.is_null() && !NOT_SOURCES.contains(&k.as_str()))
                .map(|(k, _)| k)
                .collect()
        })
        .unwrap_or_default();
    if sources.is_empty() {
        errs.required_because("spec", "must specify a volume type");
    } else if sources.len() > 1 {
        errs.forbidden("spec", "may not specify more than 1 volume type");
    }
    for source in &sources {
        if !PV_SOURCES.contains(&source.as_str()) {
            errs.forbidden(
                format!("spec.{source}"),
                "Corral can only mount hostPath and local persistent volumes (a directory on a node)",
            );
        }
    }
    let reclaim = get_str(spec, "persistentVolumeReclaimPolicy").unwrap_or("");
    for source in ["hostPath", "local"] {
        let Some(src) = get(spec, source) else {
            continue;
        };
        let path_field = format!("spec.{source}.path");
        match get_nonempty(src, "path") {
            None => errs.required(path_field),
            Some(path) => {
                if source == "local" && !path.starts_with('/') {
                    errs.invalid_str(path_field.clone(), path, "must be an absolute path");
                }
                if path.split('/').any(|part| part == "..") {
                    errs.invalid_str(path_field, path, "must not contain '..'");
                }
                if source == "hostPath"
                    && reclaim == "Recycle"
                    && path.trim_end_matches('/').is_empty()
                {
                    errs.forbidden(
                        "spec.persistentVolumeReclaimPolicy",
                        "may not be 'recycle' for a hostPath mount of '/'",
                    );
                }
            }
        }
    }
    match get(spec, "nodeAffinity") {
        Some(affinity) => match get(affinity, "required") {
            Some(required) => node_selector(errs, required, "spec.nodeAffinity.required"),
            None if get(spec, "local").is_some() => errs.required_because(
                "spec.nodeAffinity.required",
                "Local volume requires node affinity",
            ),
            None => {}
        },
        None if get(spec, "local").is_some() => {
            errs.required_because("spec.nodeAffinity", "Local volume requires node affinity")
        }
        None => {}
    }
}

/// A `v1.NodeSelector` (`nodeSelectorTerms`): at least one term, known operators, values as
/// each operator wants them.
fn node_selector(errs: &mut Errs, selector: &Value, path: &str) {
    let terms = items(selector, "nodeSelectorTerms");
    if terms.is_empty() {
        errs.required_because(
            format!("{path}.nodeSelectorTerms"),
            "must have at least one node selector term",
        );
    }
    for (i, term) in terms.iter().enumerate() {
        let term_path = format!("{path}.nodeSelectorTerms[{i}]");
        for (j, expr) in items(term, "matchExpressions").iter().enumerate() {
            let p = format!("{term_path}.matchExpressions[{j}]");
            match get_nonempty(expr, "key") {
                None => errs.required(format!("{p}.key")),
                Some(key) => {
                    if let Err(why) = check_qualified_name(key) {
                        errs.invalid_str(format!("{p}.key"), key, &why);
                    }
                }
            }
            let values = items(expr, "values");
            match get_str(expr, "operator") {
                None | Some("") => errs.required(format!("{p}.operator")),
                Some("In" | "NotIn") if values.is_empty() => errs.required_because(
                    format!("{p}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ),
                Some("Exists" | "DoesNotExist") if !values.is_empty() => errs.forbidden(
                    format!("{p}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
                Some("Gt" | "Lt") => {
                    let one_int = values.len() == 1
                        && values[0].as_str().is_some_and(|v| v.parse::<i64>().is_ok());
                    if !one_int {
                        errs.required_because(
                            format!("{p}.values"),
                            "must be specified single value when `operator` is 'Lt' or 'Gt'",
                        );
                    }
                }
                Some(op) if !NODE_SELECTOR_OPERATORS.contains(&op) => errs.unsupported(
                    format!("{p}.operator"),
                    &Value::String(op.to_string()),
                    NODE_SELECTOR_OPERATORS,
                ),
                Some(_) => {}
            }
        }
    }
}

/// A StorageClass: a provisioner name, known reclaim policy and binding mode, and
/// `allowedTopologies` terms of label keys with values.
fn storage_class(errs: &mut Errs, obj: &Value) {
    match get_nonempty(obj, "provisioner") {
        None => errs.required("provisioner"),
        Some(p) => {
            if let Err(why) = check_qualified_name(p) {
                errs.invalid_str("provisioner", p, &why);
            }
        }
    }
    one_of(errs, obj, "reclaimPolicy", "", &["Delete", "Retain"]);
    one_of(
        errs,
        obj,
        "volumeBindingMode",
        "",
        &["Immediate", "WaitForFirstConsumer"],
    );
    if let Some(params) = entries(obj, "parameters") {
        if params.len() > 512 {
            errs.push(
                "parameters",
                format!("Too many: {}: must have at most 512 items", params.len()),
            );
        }
        for (k, v) in params {
            if !v.is_string() {
                errs.invalid(format!("parameters[{k}]"), v, "must be a string");
            }
        }
    }
    for (i, term) in items(obj, "allowedTopologies").iter().enumerate() {
        let term_path = format!("allowedTopologies[{i}]");
        let exprs = items(term, "matchLabelExpressions");
        if exprs.is_empty() {
            errs.required_because(
                format!("{term_path}.matchLabelExpressions"),
                "must have at least one label expression",
            );
        }
        for (j, expr) in exprs.iter().enumerate() {
            let p = format!("{term_path}.matchLabelExpressions[{j}]");
            match get_nonempty(expr, "key") {
                None => errs.required(format!("{p}.key")),
                Some(key) => {
                    if let Err(why) = check_qualified_name(key) {
                        errs.invalid_str(format!("{p}.key"), key, &why);
                    }
                }
            }
            if items(expr, "values").is_empty() {
                errs.required_because(format!("{p}.values"), "must specify at least one value");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Immutability on update.

fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    path.iter()
        .try_fold(v, |cur, key| cur.get(*key))
        .unwrap_or(&NULL)
}

/// Absent, null, `""`, `{}` and `[]` all count as unset.
fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

fn same(a: &Value, b: &Value) -> bool {
    a == b || (is_blank(a) && is_blank(b))
}

fn unchanged(errs: &mut Errs, old: &Value, new: &Value, path: &[&str]) {
    let (o, n) = (at(old, path), at(new, path));
    if !same(o, n) {
        errs.invalid(path.join("."), n, IMMUTABLE);
    }
}

/// The keys of two objects whose values differ.
fn changed_keys(old: &Value, new: &Value) -> Vec<String> {
    let empty = Map::new();
    let (o, n) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            !same(
                o.get(*k).unwrap_or(&Value::Null),
                n.get(*k).unwrap_or(&Value::Null),
            )
        })
        .cloned()
        .collect()
}

fn immutability(errs: &mut Errs, info: &KindInfo, old: &Value, new: &Value) {
    if get_str(old, "kind") != get_str(new, "kind") {
        errs.invalid("kind", at(new, &["kind"]), IMMUTABLE);
    }
    unchanged(errs, old, new, &["metadata", "name"]);
    if info.namespaced {
        unchanged(errs, old, new, &["metadata", "namespace"]);
    }
    // The server carries uid and creationTimestamp forward; a client that sends them may not change them.
    for key in ["uid", "creationTimestamp"] {
        let (o, n) = (at(old, &["metadata", key]), at(new, &["metadata", key]));
        if !is_blank(o) && !is_blank(n) && o != n {
            errs.invalid(format!("metadata.{key}"), n, IMMUTABLE);
        }
    }
    match info.kind {
        "ReplicaSet" | "Deployment" | "DaemonSet" => {
            unchanged(errs, old, new, &["spec", "selector"])
        }
        "StatefulSet" => statefulset_update(errs, old, new),
        "ControllerRevision" => unchanged(errs, old, new, &["data"]),
        "Job" => {
            if !is_blank(at(old, &["spec", "selector"])) {
                unchanged(errs, old, new, &["spec", "selector"]);
                unchanged(errs, old, new, &["spec", "template"]);
            }
            unchanged(errs, old, new, &["spec", "completions"]);
            unchanged(errs, old, new, &["spec", "completionMode"]);
        }
        "Service" => {
            let old_ip = at(old, &["spec", "clusterIP"]);
            let new_type = get_str(at(new, &["spec"]), "type").unwrap_or("ClusterIP");
            if !is_blank(old_ip)
                && new_type != "ExternalName"
                && at(new, &["spec", "clusterIP"]) != old_ip
            {
                errs.invalid("spec.clusterIP", at(new, &["spec", "clusterIP"]), IMMUTABLE);
            }
        }
        "PersistentVolumeClaim" => claim_update(errs, old, new),
        "PersistentVolume" => volume_update(errs, old, new),
        "Pod" => pod_update(errs, old, new),
        "ConfigMap" | "Secret" => {
            if at(old, &["immutable"]) == &Value::Bool(true) {
                const WHY: &str = "field is immutable when `immutable` is set";
                for key in ["data", "binaryData", "stringData"] {
                    if !same(at(old, &[key]), at(new, &[key])) {
                        errs.forbidden(key, WHY);
                    }
                }
                if at(new, &["immutable"]) != &Value::Bool(true) {
                    errs.forbidden("immutable", WHY);
                }
            }
            if info.kind == "Secret" {
                let old_type = get_nonempty(old, "type").unwrap_or("Opaque");
                let new_type = get_nonempty(new, "type").unwrap_or("Opaque");
                if old_type != new_type {
                    errs.invalid_str("type", new_type, IMMUTABLE);
                }
            }
        }
        "StorageClass" => {
            for key in [
                "provisioner",
                "parameters",
                "reclaimPolicy",
                "volumeBindingMode",
            ] {
                unchanged(errs, old, new, &[key]);
            }
        }
        _ => {}
    }
}

fn statefulset_update(errs: &mut Errs, old: &Value, new: &Value) {
    const MUTABLE: &[&str] = &[
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    for key in changed_keys(at(old, &["spec"]), at(new, &["spec"])) {
        if !MUTABLE.contains(&key.as_str()) {
            errs.forbidden(
                format!("spec.{key}"),
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }
}

fn without(spec: &Value, strip: impl Fn(&mut Map<String, Value>)) -> Value {
    let mut copy = spec.clone();
    if let Some(map) = copy.as_object_mut() {
        strip(map);
    }
    copy
}

/// Kubernetes' `ValidatePersistentVolumeClaimUpdate`: the spec is immutable, except that
/// `volumeName` may be set once (binding), and the storage request of a Bound claim may grow
/// (never shrink).
fn claim_update(errs: &mut Errs, old: &Value, new: &Value) {
    let old_spec = at(old, &["spec"]);
    let binding = is_blank(at(old_spec, &["volumeName"]));
    let bound = at(old, &["status", "phase"]).as_str() == Some("Bound");
    let strip = |map: &mut Map<String, Value>| {
        map.remove("volumeAttributesClassName");
        if binding {
            map.remove("volumeName");
        }
        if bound
            && let Some(requests) = map
                .get_mut("resources")
                .and_then(Value::as_object_mut)
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
        {
            requests.remove("storage");
        }
    };
    let changed = changed_keys(
        &without(old_spec, strip),
        &without(at(new, &["spec"]), strip),
    );
    if !changed.is_empty() {
        errs.forbidden(
            "spec",
            &format!(
                "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims (changed: {})",
                changed.join(", ")
            ),
        );
    }
    let size = |v: &Value| {
        quantity_of(at(v, &["spec", "resources", "requests", "storage"]))
            .and_then(Result::ok)
            .map(|q| q.milli_value())
    };
    if let (Some(before), Some(after)) = (size(old), size(new))
        && after < before
    {
        errs.forbidden(
            "spec.resources.requests.storage",
            "field can not be less than previous value",
        );
    }
}

/// Kubernetes' `ValidatePersistentVolumeUpdate`: the volume source, the volume mode and a set
/// node affinity do not change.
fn volume_update(errs: &mut Errs, old: &Value, new: &Value) {
    const NOT_SOURCES: &[&str] = &[
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeMode",
        "volumeAttributesClassName",
    ];
    let source = |v: &Value| {
        without(at(v, &["spec"]), |m| {
            m.retain(|k, _| !NOT_SOURCES.contains(&k.as_str()))
        })
    };
    if !same(&source(old), &source(new)) {
        errs.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        );
    }
    let mode = |v: &Value| {
        at(v, &["spec", "volumeMode"])
            .as_str()
            .unwrap_or("Filesystem")
            .to_string()
    };
    if mode(old) != mode(new) {
        errs.invalid(
            "spec.volumeMode",
            at(new, &["spec", "volumeMode"]),
            IMMUTABLE,
        );
    }
    if !is_blank(at(old, &["spec", "nodeAffinity"])) {
        unchanged(errs, old, new, &["spec", "nodeAffinity"]);
    }
}

fn pod_update(errs: &mut Errs, old: &Value, new: &Value) {
    let old_spec = at(old, &["spec"]);
    let new_spec = at(new, &["spec"]);
    // Binding sets nodeName once; the scheduler's write is an update like any other in Corral.
    let binding = is_blank(at(old_spec, &["nodeName"]));
    let strip = |map: &mut Map<String, Value>| {
        map.remove("activeDeadlineSeconds");
        map.remove("tolerations");
        if binding {
            map.remove("nodeName");
        }
        for key in ["containers", "initContainers"] {
            if let Some(list) = map.get_mut(key).and_then(Value::as_array_mut) {
                for c in list.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
    };
    let changed = changed_keys(&without(old_spec, strip), &without(new_spec, strip));
    if !changed.is_empty() {
        errs.forbidden(
            "spec",
            &format!(
                "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to existing tolerations) (changed: {})",
                changed.join(", ")
            ),
        );
    }
    let new_tolerations = items(new_spec, "tolerations");
    for (i, toleration) in items(old_spec, "tolerations").iter().enumerate() {
        if !new_tolerations.contains(toleration) {
            errs.forbidden(
                format!("spec.tolerations[{i}]"),
                "existing toleration can not be modified except its tolerationSeconds",
            );
        }
    }
    let old_deadline = at(old_spec, &["activeDeadlineSeconds"]).as_i64();
    let new_deadline = at(new_spec, &["activeDeadlineSeconds"]);
    if let Some(old_deadline) = old_deadline {
        match new_deadline.as_i64() {
            None => errs.invalid(
                "spec.activeDeadlineSeconds",
                new_deadline,
                "must not update from a positive integer to nil value",
            ),
            Some(n) if n > old_deadline => errs.invalid(
                "spec.activeDeadlineSeconds",
                new_deadline,
                "must be less than or equal to previous value",
            ),
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Reason;
    use crate::defaults::apply_defaults;
    use crate::object::parse_manifests;
    use serde_json::json;

    const NGINX_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
"#;

    const WEB_STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx # has to match .spec.template.metadata.labels
  serviceName: "nginx"
  replicas: 3 # by default is 1
  minReadySeconds: 10 # by default is 0
  template:
    metadata:
      labels:
        app: nginx # has to match .spec.selector.matchLabels
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      storageClassName: "my-storage-class"
      resources:
        requests:
          storage: 1Gi
"#;

    const OTHERS: &str = r#"
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers:
          - name: hello
            image: busybox:1.28
            imagePullPolicy: IfNotPresent
            command:
            - /bin/sh
            - -c
            - date; echo Hello from the Kubernetes cluster
          restartPolicy: OnFailure
---
apiVersion: v1
kind: Secret
metadata:
  name: mysecret
type: Opaque
data:
  USER_NAME: YWRtaW4=
  PASSWORD: MWYyZDFlMmU2N2Rm
---
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  template:
    spec:
      containers:
      - name: pi
        image: perl:5.34.0
        command: ["perl",  "-Mbignum=bpi", "-wle", "print bpi(2000)"]
      restartPolicy: Never
  backoffLimit: 4
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: fluentd-elasticsearch
  namespace: kube-system
  labels:
    k8s-app: fluentd-logging
spec:
  selector:
    matchLabels:
      name: fluentd-elasticsearch
  template:
    metadata:
      labels:
        name: fluentd-elasticsearch
    spec:
      tolerations:
      - key: node-role.kubernetes.io/control-plane
        operator: Exists
        effect: NoSchedule
      containers:
      - name: fluentd-elasticsearch
        image: quay.io/fluentd_elasticsearch/fluentd:v2.5.2
        resources:
          limits:
            memory: 200Mi
          requests:
            cpu: 100m
            memory: 200Mi
        volumeMounts:
        - name: varlog
          mountPath: /var/log
      terminationGracePeriodSeconds: 30
      volumes:
      - name: varlog
        hostPath:
          path: /var/log
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: frontend
  labels:
    app: guestbook
    tier: frontend
spec:
  replicas: 3
  selector:
    matchLabels:
      tier: frontend
  template:
    metadata:
      labels:
        tier: frontend
    spec:
      containers:
      - name: php-redis
        image: us-docker.pkg.dev/google-samples/containers/gke/gb-frontend:v5
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: game-demo
data:
  player_initial_lives: "3"
  ui_properties_file_name: "user-interface.properties"
  game.properties: |
    enemy.types=aliens,monsters
    player.maximum-lives=5
  user-interface.properties: |
    color.good=purple
---
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
---
apiVersion: v1
kind: Service
metadata:
  name: my-database
spec:
  type: ExternalName
  externalName: my.database.example.com
---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: task-pv-volume
  labels:
    type: local
spec:
  storageClassName: manual
  capacity:
    storage: 10Gi
  accessModes:
    - ReadWriteOnce
  hostPath:
    path: "/mnt/data"
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: task-pv-claim
spec:
  storageClassName: manual
  accessModes:
    - ReadWriteOnce
  resources:
    requests:
      storage: 3Gi
---
apiVersion: v1
kind: Pod
metadata:
  labels:
    test: liveness
  name: liveness-exec
spec:
  containers:
  - name: liveness
    image: registry.k8s.io/busybox:1.27.2
    args:
    - /bin/sh
    - -c
    - touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600
    resources:
      limits:
        cpu: 1
        memory: 64Mi
    livenessProbe:
      exec:
        command:
        - cat
        - /tmp/healthy
      initialDelaySeconds: 5
      periodSeconds: 5
---
apiVersion: v1
kind: Namespace
metadata:
  name: development
---
apiVersion: v1
kind: Node
metadata:
  name: node-1
status:
  capacity:
    cpu: "4"
    memory: 8Gi
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-storage
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: corral-scheduler
  namespace: kube-system
spec:
  holderIdentity: server-1
  leaseDurationSeconds: 15
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: build-robot
---
apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: web-7b6d9c5f8d
  labels:
    app: nginx
    controller.kubernetes.io/hash: 7b6d9c5f8d
data:
  spec:
    template:
      $patch: replace
      metadata:
        labels:
          app: nginx
      spec:
        containers:
        - name: nginx
          image: busybox
revision: 1
---
apiVersion: v1
kind: Event
metadata:
  name: web-0.17a0d1b2c3
involvedObject:
  kind: Pod
  name: web-0
  namespace: default
reason: Scheduled
message: Successfully assigned default/web-0 to node-1
type: Normal
---
apiVersion: v1
kind: Endpoints
metadata:
  name: my-service
subsets:
  - addresses:
      - ip: 192.0.2.42
    ports:
      - port: 9376
"#;

    fn manifests(text: &str) -> Vec<Value> {
        parse_manifests(text).expect("test manifests parse")
    }

    fn nginx() -> Value {
        manifests(NGINX_DEPLOYMENT).remove(0)
    }

    fn statefulset() -> Value {
        manifests(WEB_STATEFULSET).remove(1)
    }

    fn of_kind(kind: &str) -> Value {
        manifests(OTHERS)
            .into_iter()
            .find(|o| o["kind"] == kind)
            .expect("the test manifests have each kind")
    }

    /// A copy of `obj` with the value at the JSON pointer set (parents must exist) or removed (null).
    fn with(obj: &Value, pointer: &str, value: Value) -> Value {
        let mut obj = obj.clone();
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        let key = key.replace("~1", "/").replace("~0", "~");
        let parent = obj
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent for {pointer}"));
        match parent {
            Value::Object(map) if value.is_null() => {
                map.remove(&key);
            }
            Value::Object(map) => {
                map.insert(key, value);
            }
            Value::Array(list) => {
                let index: usize = key.parse().expect("an array index");
                list[index] = value;
            }
            _ => panic!("parent of {pointer} is not a container"),
        }
        obj
    }

    fn causes(result: Result<(), ApiError>) -> Vec<Cause> {
        match result {
            Err(ApiError::Invalid { causes, .. }) => causes,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn kubernetes_docs_manifests_are_valid_as_written_and_after_defaulting() {
        let mut all = manifests(NGINX_DEPLOYMENT);
        all.extend(manifests(WEB_STATEFULSET));
        all.extend(manifests(OTHERS));
        assert_eq!(all.len(), 22);
        let mut kinds: BTreeSet<String> = BTreeSet::new();
        for obj in all {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            assert_eq!(validate(&obj), Ok(()), "{kind} as written");
            let mut defaulted = obj.clone();
            apply_defaults(&mut defaulted);
            assert_eq!(validate(&defaulted), Ok(()), "{kind} defaulted");
            assert_eq!(
                validate_update(&defaulted, &defaulted),
                Ok(()),
                "{kind} unchanged update"
            );
            kinds.insert(kind);
        }
        assert_eq!(
            kinds.len(),
            kinds::all().len(),
            "every kind is covered: {kinds:?}"
        );
    }

    #[test]
    fn each_bad_field_is_reported_at_its_path() {
        let deploy = nginx();
        let pod = of_kind("Pod");
        let job = of_kind("Job");
        let svc = of_kind("Service");
        let c0 = "/spec/template/spec/containers/0";
        let table: Vec<(Value, &str, &str)> = vec![
            (
                with(
                    &deploy,
                    "/spec/template/metadata/labels",
                    json!({"app": "web"}),
                ),
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
            ),
            (
                with(&deploy, "/spec/selector", Value::Null),
                "spec.selector",
                "Required value",
            ),
            (
                with(&deploy, "/spec/selector", json!({})),
                "spec.selector",
                "empty selector is invalid for deployment",
            ),
            (
                with(&deploy, "/spec/replicas", json!(-1)),
                "spec.replicas",
                "must be greater than or equal to 0",
            ),
            (
                with(
                    &deploy,
                    "/spec/template/spec/restartPolicy",
                    json!("OnFailure"),
                ),
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"OnFailure\": supported values: \"Always\"",
            ),
            (
                with(&deploy, &format!("{c0}/ports/0/containerPort"), json!("80")),
                "spec.template.spec.containers[0].ports[0].containerPort",
                "Invalid value: \"80\": invalid type: string \"80\", expected i32",
            ),
            (
                with(
                    &deploy,
                    &format!("{c0}/ports/0/containerPort"),
                    json!(70000),
                ),
                "spec.template.spec.containers[0].ports[0].containerPort",
                "must be between 1 and 65535, inclusive",
            ),
            (
                with(&deploy, &format!("{c0}/ports/0/protocol"), json!("HTTP")),
                "spec.template.spec.containers[0].ports[0].protocol",
                "Unsupported value: \"HTTP\"",
            ),
            (
                with(&deploy, &format!("{c0}/name"), json!("Nginx_1")),
                "spec.template.spec.containers[0].name",
                "RFC 1123 label",
            ),
            (
                with(&deploy, &format!("{c0}/name"), Value::Null),
                "spec.template.spec.containers[0].name",
                "Required value",
            ),
            (
                with(&deploy, &format!("{c0}/image"), Value::Null),
                "spec.template.spec.containers[0].image",
                "Required value",
            ),
            (
                with(
                    &deploy,
                    &format!("{c0}/resources"),
                    json!({"limits": {"cpu": "lots"}}),
                ),
                "spec.template.spec.containers[0].resources.limits[cpu]",
                "Invalid value: \"lots\": quantities must match the regular expression",
            ),
            (
                with(
                    &deploy,
                    &format!("{c0}/resources"),
                    json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "1"}}),
                ),
                "spec.template.spec.containers[0].resources.requests[cpu]",
                "must be less than or equal to cpu limit of 500m",
            ),
            (
                with(
                    &deploy,
                    &format!("{c0}/resources"),
                    json!({"requests": {"memory": "-1Mi"}}),
                ),
                "spec.template.spec.containers[0].resources.requests[memory]",
                "must be greater than or equal to 0",
            ),
            (
                with(&deploy, "/metadata/name", json!("Nginx_Deployment")),
                "metadata.name",
                "RFC 1123 subdomain",
            ),
            (
                with(&deploy, "/metadata/name", json!("a".repeat(254))),
                "metadata.name",
                "must be no more than 253 characters",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"-bad": "x"})),
                "metadata.labels",
                "name part must consist of",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"a/b/c": "x"})),
                "metadata.labels",
                "qualified name",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"Example.com/x": "x"})),
                "metadata.labels",
                "prefix part",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"app": "a b"})),
                "metadata.labels",
                "a valid label must be",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"app": "x".repeat(64)})),
                "metadata.labels",
                "no more than 63",
            ),
            (
                with(&deploy, "/metadata/labels", json!({"app": 1})),
                "metadata.labels.app",
                "invalid type: integer",
            ),
            (
                with(&deploy, "/metadata/annotations", json!({"bad key": "x"})),
                "metadata.annotations",
                "name part",
            ),
            (
                with(&deploy, "/metadata/namespace", json!("Prod_NS")),
                "metadata.namespace",
                "RFC 1123 label",
            ),
            (
                with(&deploy, "/apiVersion", json!("extensions/v1beta1")),
                "apiVersion",
                "supported values: \"apps/v1\"",
            ),
            (
                with(&deploy, "/apiVersion", Value::Null),
                "apiVersion",
                "Required value",
            ),
            (
                with(&deploy, "/spec/template", Value::Null),
                "spec.template",
                "Required value",
            ),
            (
                with(
                    &deploy,
                    "/spec/strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "0%"}}),
                ),
                "spec.strategy.rollingUpdate.maxUnavailable",
                "may not be 0 when `maxSurge` is 0",
            ),
            (
                with(
                    &deploy,
                    "/spec/strategy",
                    json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
                ),
                "spec.strategy.rollingUpdate",
                "Forbidden",
            ),
            (
                with(&pod, "/spec/containers", json!([])),
                "spec.containers",
                "Required value",
            ),
            (
                with(&pod, "/spec/restartPolicy", json!("Sometimes")),
                "spec.restartPolicy",
                "supported values: \"Always\", \"OnFailure\", \"Never\"",
            ),
            (
                with(
                    &pod,
                    "/spec/initContainers",
                    json!([{"name": "liveness", "image": "busybox"}]),
                ),
                "spec.containers[0].name",
                "Duplicate value: \"liveness\"",
            ),
            (
                with(
                    &pod,
                    "/spec/containers/0/volumeMounts",
                    json!([{"name": "data", "mountPath": "/data"}]),
                ),
                "spec.containers[0].volumeMounts[0].name",
                "Not found: \"data\"",
            ),
            (
                with(
                    &pod,
                    "/spec/containers/0/readinessProbe",
                    json!({"periodSeconds": 3}),
                ),
                "spec.containers[0].readinessProbe",
                "must specify a handler type",
            ),
            (
                with(&pod, "/metadata/name", Value::Null),
                "metadata.name",
                "name or generateName is required",
            ),
            (
                with(&pod, "/metadata/generateName", json!("Web_")),
                "metadata.generateName",
                "RFC 1123 subdomain",
            ),
            (
                with(
                    &pod,
                    "/spec/containers/0/ports",
                    json!([{"containerPort": 0}]),
                ),
                "spec.containers[0].ports[0].containerPort",
                "Required value",
            ),
            (
                with(
                    &pod,
                    "/spec/containers/0/ports",
                    json!([{"containerPort": 80, "name": "this-name-is-too-long"}]),
                ),
                "spec.containers[0].ports[0].name",
                "must be no more than 15 characters",
            ),
            (
                with(&pod, "/spec/containers/0/env", json!([{"value": "x"}])),
                "spec.containers[0].env[0].name",
                "Required value",
            ),
            (
                with(&pod, "/spec/nodeSelector", json!({"disk": "fast ssd"})),
                "spec.nodeSelector",
                "a valid label",
            ),
            (
                with(&job, "/spec/template/spec/restartPolicy", json!("Always")),
                "spec.template.spec.restartPolicy",
                "supported values: \"OnFailure\", \"Never\"",
            ),
            (
                with(&job, "/spec/template/spec/restartPolicy", Value::Null),
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"Always\"",
            ),
            (
                with(
                    &job,
                    "/spec/selector",
                    json!({"matchLabels": {"job": "pi"}}),
                ),
                "spec.template.metadata.labels",
                "`selector` does not match template `labels`",
            ),
            (
                with(&job, "/spec/backoffLimit", json!(-2)),
                "spec.backoffLimit",
                "must be greater than or equal to 0",
            ),
            (
                with(&job, "/spec/completionMode", json!("Indexed")),
                "spec.completions",
                "when completion mode is Indexed",
            ),
            (
                with(&of_kind("CronJob"), "/spec/schedule", json!("")),
                "spec.schedule",
                "Required value",
            ),
            (
                with(&of_kind("CronJob"), "/spec/schedule", json!("every minute")),
                "spec.schedule",
                "expected exactly 5 fields",
            ),
            (
                with(
                    &of_kind("CronJob"),
                    "/spec/schedule",
                    json!("TZ=UTC * * * * *"),
                ),
                "spec.schedule",
                "use timeZone field",
            ),
            (
                with(&of_kind("CronJob"), "/metadata/name", json!("c".repeat(53))),
                "metadata.name",
                "no more than 52 characters",
            ),
            (
                with(
                    &of_kind("CronJob"),
                    "/spec/jobTemplate/spec/template/spec/restartPolicy",
                    json!("Always"),
                ),
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "Unsupported value",
            ),
            (
                with(
                    &of_kind("CronJob"),
                    "/spec/concurrencyPolicy",
                    json!("Sometimes"),
                ),
                "spec.concurrencyPolicy",
                "supported values: \"Allow\"",
            ),
            (
                with(&svc, "/spec/type", json!("Magic")),
                "spec.type",
                "Unsupported value: \"Magic\"",
            ),
            (
                with(&svc, "/metadata/name", json!("1-service")),
                "metadata.name",
                "DNS-1035 label",
            ),
            (
                with(&svc, "/spec/ports/0/port", json!(0)),
                "spec.ports[0].port",
                "must be between 1 and 65535",
            ),
            (
                with(&svc, "/spec/ports", json!([])),
                "spec.ports",
                "Required value",
            ),
            (
                with(&svc, "/spec/ports", json!([{"port": 80}, {"port": 443}])),
                "spec.ports[1].name",
                "Required value",
            ),
            (
                with(&svc, "/spec/ports/0/nodePort", json!(30080)),
                "spec.ports[0].nodePort",
                "may not be used when `type` is 'ClusterIP'",
            ),
            (
                with(&svc, "/spec/clusterIP", json!("10.0.0.999")),
                "spec.clusterIP",
                "valid IP address",
            ),
            (
                with(&svc, "/spec/type", json!("ExternalName")),
                "spec.externalName",
                "Required value",
            ),
            (
                with(&svc, "/spec/selector", json!({"app": "my app"})),
                "spec.selector",
                "a valid label",
            ),
            (
                with(&svc, "/spec/ports/0/targetPort", json!("http--web")),
                "spec.ports[0].targetPort",
                "must not contain consecutive hyphens",
            ),
            (
                with(&svc, "/spec/ports/0/targetPort", json!(70000)),
                "spec.ports[0].targetPort",
                "must be between 1 and 65535",
            ),
            (
                with(&svc, "/spec/ports/0/protocol", json!("HTTP")),
                "spec.ports[0].protocol",
                "Unsupported value: \"HTTP\": supported values: \"TCP\", \"UDP\", \"SCTP\"",
            ),
            (
                with(
                    &svc,
                    "/spec/ports",
                    json!([{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
                ),
                "spec.ports[1].name",
                "Duplicate value: \"a\"",
            ),
            (
                with(
                    &svc,
                    "/spec/ports",
                    json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
                ),
                "spec.ports[1]",
                "Duplicate value: {\"port\":80,\"protocol\":\"TCP\"}",
            ),
            (
                with(
                    &with(&svc, "/spec/type", json!("NodePort")),
                    "/spec/clusterIP",
                    json!("None"),
                ),
                "spec.clusterIPs[0]",
                "may not be set to 'None' for NodePort services",
            ),
            (
                with(
                    &with(&svc, "/spec/type", json!("LoadBalancer")),
                    "/spec/ports/0/port",
                    json!(10250),
                ),
                "spec.ports[0]",
                "may not expose port 10250 externally since it is used by kubelet",
            ),
            (
                with(
                    &with(&svc, "/spec/type", json!("ExternalName")),
                    "/spec/externalName",
                    json!("Not_A_Name"),
                ),
                "spec.externalName",
                "RFC 1123 subdomain",
            ),
            (
                with(
                    &with(
                        &with(&svc, "/spec/type", json!("ExternalName")),
                        "/spec/externalName",
                        json!("db.example.com."),
                    ),
                    "/spec/clusterIP",
                    json!("10.96.0.5"),
                ),
                "spec.clusterIPs",
                "Forbidden: may not be set for ExternalName services",
            ),
            (
                with(&svc, "/spec/sessionAffinity", json!("Sticky")),
                "spec.sessionAffinity",
                "Unsupported value: \"Sticky\"",
            ),
            (
                with(
                    &with(&svc, "/spec/sessionAffinity", json!("ClientIP")),
                    "/spec/sessionAffinityConfig",
                    json!({"clientIP": {"timeoutSeconds": 0}}),
                ),
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                "must be greater than 0 and less than 86400",
            ),
            (
                with(
                    &svc,
                    "/spec/sessionAffinityConfig",
                    json!({"clientIP": {"timeoutSeconds": 10}}),
                ),
                "spec.sessionAffinityConfig",
                "must not be set when session affinity is None",
            ),
            (
                with(
                    &with(&svc, "/spec/clusterIP", json!("10.96.0.5")),
                    "/spec/clusterIPs",
                    json!(["10.96.0.6"]),
                ),
                "spec.clusterIPs",
                "first value must match `clusterIP`",
            ),
            (
                with(
                    &with(&svc, "/spec/clusterIP", json!("fd00::5")),
                    "/spec/ipFamilies",
                    json!(["IPv4"]),
                ),
                "spec.clusterIPs[0]",
                "expected an IPv4 value as indicated by `ipFamilies[0]`",
            ),
            (
                with(&svc, "/spec/ipFamilyPolicy", json!("DualStack")),
                "spec.ipFamilyPolicy",
                "Unsupported value: \"DualStack\"",
            ),
            (
                with(&svc, "/spec/externalTrafficPolicy", json!("Local")),
                "spec.externalTrafficPolicy",
                "may only be set for externally-accessible services",
            ),
            (
                with(&svc, "/spec/externalIPs", json!(["1.2.3"])),
                "spec.externalIPs[0]",
                "must be a valid IP address",
            ),
            (
                with(
                    &of_kind("Endpoints"),
                    "/subsets",
                    json!([{"addresses": [{"ip": "10.0.0.1", "hostname": "Web_0"}], "ports": [{"port": 80}]}]),
                ),
                "subsets[0].addresses[0].hostname",
                "RFC 1123 label",
            ),
            (
                with(&of_kind("Secret"), "/data/PASSWORD", json!("not base64!")),
                "data[PASSWORD]",
                "must be base64-encoded",
            ),
            (
                with(&of_kind("Secret"), "/data/bad key", json!("YQ==")),
                "data[bad key]",
                "a valid config key",
            ),
            (
                with(&of_kind("Secret"), "/type", json!("kubernetes.io/tls")),
                "data[tls.crt]",
                "Required value",
            ),
            (
                with(&of_kind("ConfigMap"), "/data/bad~1key", json!("x")),
                "data[bad/key]",
                "a valid config key",
            ),
            (
                with(&of_kind("ConfigMap"), "/data/n", json!(3)),
                "data.n",
                "invalid type: integer",
            ),
            (
                with(
                    &of_kind("ConfigMap"),
                    "/binaryData",
                    json!({"game.properties": "eA=="}),
                ),
                "data[game.properties]",
                "duplicate of key",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/capacity/storage",
                    json!("lots"),
                ),
                "spec.capacity[storage]",
                "quantities must match",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/accessModes",
                    json!(["ReadWriteSometimes"]),
                ),
                "spec.accessModes[0]",
                "Unsupported value: \"ReadWriteSometimes\"",
            ),
            (
                with(&of_kind("PersistentVolume"), "/spec/hostPath", Value::Null),
                "spec",
                "must specify a volume type",
            ),
            (
                with(
                    &with(&of_kind("PersistentVolume"), "/spec/hostPath", Value::Null),
                    "/spec/nfs",
                    json!({"server": "nfs.example.com", "path": "/exports"}),
                ),
                "spec.nfs",
                "only mount hostPath and local",
            ),
            (
                with(
                    &with(&of_kind("PersistentVolume"), "/spec/hostPath", Value::Null),
                    "/spec/local",
                    json!({"path": "/mnt/disks/ssd1"}),
                ),
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/local",
                    json!({"path": "/mnt/disks/ssd1"}),
                ),
                "spec",
                "may not specify more than 1 volume type",
            ),
            (
                with(
                    &with(
                        &of_kind("PersistentVolume"),
                        "/spec/hostPath/path",
                        json!("/"),
                    ),
                    "/spec/persistentVolumeReclaimPolicy",
                    json!("Recycle"),
                ),
                "spec.persistentVolumeReclaimPolicy",
                "may not be 'recycle' for a hostPath mount of '/'",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/hostPath/path",
                    json!("/data/../etc"),
                ),
                "spec.hostPath.path",
                "must not contain '..'",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/nodeAffinity",
                    json!({"required": {"nodeSelectorTerms": []}}),
                ),
                "spec.nodeAffinity.required.nodeSelectorTerms",
                "at least one node selector term",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/nodeAffinity",
                    json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "Near", "values": ["n1"]}]}]}}),
                ),
                "spec.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0].operator",
                "Unsupported value: \"Near\"",
            ),
            (
                with(
                    &of_kind("PersistentVolume"),
                    "/spec/capacity/cpu",
                    json!("1"),
                ),
                "spec.capacity",
                "supported values: \"storage\"",
            ),
            (
                with(
                    &of_kind("PersistentVolumeClaim"),
                    "/spec/storageClassName",
                    json!("Fast_Disks"),
                ),
                "spec.storageClassName",
                "RFC 1123 subdomain",
            ),
            (
                with(
                    &of_kind("StorageClass"),
                    "/provisioner",
                    json!("not a name!"),
                ),
                "provisioner",
                "Invalid value: \"not a name!\"",
            ),
            (
                with(
                    &of_kind("StorageClass"),
                    "/allowedTopologies",
                    json!([{"matchLabelExpressions": [{"key": "disktype", "values": []}]}]),
                ),
                "allowedTopologies[0].matchLabelExpressions[0].values",
                "at least one value",
            ),
            (
                with(&of_kind("StorageClass"), "/reclaimPolicy", json!("Recycle")),
                "reclaimPolicy",
                "Unsupported value: \"Recycle\"",
            ),
            (
                with(
                    &of_kind("PersistentVolumeClaim"),
                    "/spec/resources",
                    Value::Null,
                ),
                "spec.resources[storage]",
                "Required value",
            ),
            (
                with(
                    &of_kind("PersistentVolumeClaim"),
                    "/spec/accessModes",
                    json!([]),
                ),
                "spec.accessModes",
                "at least 1 access mode",
            ),
            (
                with(
                    &of_kind("PersistentVolumeClaim"),
                    "/spec/resources/requests/storage",
                    json!("0"),
                ),
                "spec.resources.requests[storage]",
                "must be greater than zero",
            ),
            (
                with(
                    &statefulset(),
                    "/spec/volumeClaimTemplates/0/spec/accessModes",
                    Value::Null,
                ),
                "spec.volumeClaimTemplates[0].spec.accessModes",
                "Required value",
            ),
            (
                with(&statefulset(), "/spec/podManagementPolicy", json!("Random")),
                "spec.podManagementPolicy",
                "supported values",
            ),
            (
                with(&of_kind("Namespace"), "/metadata/name", json!("dev.team")),
                "metadata.name",
                "RFC 1123 label",
            ),
            (
                with(&of_kind("Node"), "/metadata/namespace", json!("default")),
                "metadata.namespace",
                "Forbidden: not allowed on this type",
            ),
            (
                with(&of_kind("StorageClass"), "/provisioner", Value::Null),
                "provisioner",
                "Required value",
            ),
            (
                with(
                    &of_kind("Endpoints"),
                    "/subsets/0/addresses/0/ip",
                    json!("host"),
                ),
                "subsets[0].addresses[0].ip",
                "valid IP",
            ),
            (
                with(&of_kind("Lease"), "/spec/leaseDurationSeconds", json!("15")),
                "spec.leaseDurationSeconds",
                "invalid type",
            ),
            (
                with(&of_kind("Event"), "/involvedObject", json!("web-0")),
                "involvedObject",
                "invalid type",
            ),
            (
                with(&of_kind("ControllerRevision"), "/revision", json!(-1)),
                "revision",
                "greater than or equal to 0",
            ),
            (
                with(&of_kind("ControllerRevision"), "/data", Value::Null),
                "data",
                "Required",
            ),
            (
                with(&of_kind("ControllerRevision"), "/revision", Value::Null),
                "revision",
                "Required",
            ),
        ];
        let mut missed = Vec::new();
        for (obj, field, message) in table {
            let result = validate(&obj);
            let found = match &result {
                Err(ApiError::Invalid { causes, .. }) => causes.clone(),
                _ => Vec::new(),
            };
            if !found
                .iter()
                .any(|c| c.field == field && c.message.contains(message))
            {
                missed.push(format!("expected {field}: ...{message}... got {result:?}"));
            }
        }
        assert!(missed.is_empty(), "{missed:#?}");
    }

    #[test]
    fn every_cause_is_reported_not_just_the_first() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "Bad_Name", "labels": {"app": "a b"}},
            "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "c"}, {"name": "c", "image": "x"}]}
        });
        let err = validate(&pod).expect_err("invalid");
        assert_eq!(err.reason(), Reason::Invalid);
        let fields: Vec<String> = causes(Err(err.clone()))
            .into_iter()
            .map(|c| c.field)
            .collect();
        for want in [
            "metadata.name",
            "metadata.labels",
            "spec.restartPolicy",
            "spec.containers[0].image",
            "spec.containers[1].name",
        ] {
            assert!(
                fields.iter().any(|f| f == want),
                "{want} missing from {fields:?}"
            );
        }
        assert!(
            err.to_string().starts_with("Pod \"Bad_Name\" is invalid: "),
            "{err}"
        );
    }

    #[test]
    fn missing_required_typed_fields_name_the_field_once() {
        let deploy = with(
            &nginx(),
            "/spec/template/spec/containers/0/ports/0",
            json!({"name": "http"}),
        );
        let found = causes(validate(&deploy));
        let port_causes: Vec<_> = found
            .iter()
            .filter(|c| c.field.ends_with("containerPort"))
            .collect();
        assert_eq!(port_causes.len(), 1, "{found:#?}");
        assert_eq!(
            port_causes[0].field,
            "spec.template.spec.containers[0].ports[0].containerPort"
        );
        assert_eq!(port_causes[0].message, "Required value");
    }

    #[test]
    fn unknown_or_missing_kinds_are_bad_requests() {
        let table = [
            (
                json!({"apiVersion": "v1", "kind": "Widget", "metadata": {"name": "a"}}),
                "no kind \"Widget\" is registered",
            ),
            (
                json!({"apiVersion": "v1", "metadata": {"name": "a"}}),
                "no `kind`",
            ),
            (
                json!({"apiVersion": "v1", "kind": 3}),
                "`kind` must be a string",
            ),
            (json!(["not", "an", "object"]), "must be a JSON object"),
        ];
        for (obj, want) in table {
            let err = validate(&obj).expect_err("must fail");
            assert_eq!(err.reason(), Reason::BadRequest, "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn generate_name_stands_in_for_a_name() {
        let pod = with(
            &with(&of_kind("Pod"), "/metadata/name", Value::Null),
            "/metadata/generateName",
            json!("liveness-"),
        );
        assert_eq!(validate(&pod), Ok(()));
    }

    #[test]
    fn names_labels_and_keys_follow_the_kubernetes_rules() {
        let max_label = "x".repeat(63);
        let ok_labels = ["a", "a-b", "123-abc", max_label.as_str()];
        for s in ok_labels {
            assert_eq!(check_dns1123_label(s), Ok(()), "{s}");
        }
        for s in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            assert!(check_dns1123_label(s).is_err(), "{s:?}");
        }
        for s in ["example.com", "a", "a-b.c-d", "0.1"] {
            assert_eq!(check_dns1123_subdomain(s), Ok(()), "{s}");
        }
        for s in ["", ".a", "a.", "a..b", "A.com", "a_b"] {
            assert!(check_dns1123_subdomain(s).is_err(), "{s:?}");
        }
        assert!(check_dns1035_label("1abc").is_err());
        assert_eq!(check_dns1035_label("abc-1"), Ok(()));
        for s in [
            "app",
            "app.kubernetes.io/name",
            "MyName",
            "my_name",
            "a.b-c_d",
            "example.com/My.Name",
        ] {
            assert_eq!(check_qualified_name(s), Ok(()), "{s}");
        }
        for s in [
            "",
            "/a",
            "a/",
            "-a",
            "a-",
            "a b",
            "a/b/c",
            "Example.com/a",
            &"x".repeat(64),
        ] {
            assert!(check_qualified_name(s).is_err(), "{s:?}");
        }
        for s in ["", "v1", "a.b_c-d", "MyValue"] {
            assert_eq!(check_label_value(s), Ok(()), "{s}");
        }
        for s in ["-a", "a b", "a/b", &"x".repeat(64)] {
            assert!(check_label_value(s).is_err(), "{s:?}");
        }
        for s in [
            "key",
            "KEY_NAME",
            "key.name",
            "key-name",
            ".dockerconfigjson",
        ] {
            assert_eq!(check_config_key(s), Ok(()), "{s}");
        }
        for s in ["", ".", "..", "..a", "a/b", "a b"] {
            assert!(check_config_key(s).is_err(), "{s:?}");
        }
        for s in ["http", "web", "h2c", "metrics-9090"] {
            assert_eq!(check_port_name(s), Ok(()), "{s}");
        }
        for s in ["8080", "-web", "web-", "we--b", "Web", "abcdefghijklmnop"] {
            assert!(check_port_name(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn size_limit_is_one_and_a_half_mebibytes() {
        assert_eq!(check_size(MAX_OBJECT_BYTES), Ok(()));
        assert_eq!(
            check_size(MAX_OBJECT_BYTES + 1),
            Err(ApiError::TooLarge {
                size: MAX_OBJECT_BYTES + 1,
                limit: MAX_OBJECT_BYTES
            })
        );
    }

    fn defaulted(obj: Value) -> Value {
        let mut obj = obj;
        apply_defaults(&mut obj);
        obj
    }

    #[test]
    fn allowed_updates_pass() {
        let deploy = defaulted(nginx());
        let sts = defaulted(statefulset());
        let pod = defaulted(with(
            &of_kind("Pod"),
            "/spec/tolerations",
            json!([{"key": "a", "operator": "Exists"}]),
        ));
        let claim = defaulted(of_kind("PersistentVolumeClaim"));
        let svc = defaulted(with(
            &of_kind("Service"),
            "/spec/clusterIP",
            json!("10.96.0.10"),
        ));
        let mut table: Vec<(&str, Value, Value)> = vec![
            (
                "deployment replicas",
                deploy.clone(),
                with(&deploy, "/spec/replicas", json!(5)),
            ),
            (
                "deployment image",
                deploy.clone(),
                with(
                    &deploy,
                    "/spec/template/spec/containers/0/image",
                    json!("nginx:1.25"),
                ),
            ),
            (
                "deployment labels",
                deploy.clone(),
                with(
                    &deploy,
                    "/metadata/labels",
                    json!({"app": "nginx", "tier": "web"}),
                ),
            ),
            (
                "statefulset replicas",
                sts.clone(),
                with(&sts, "/spec/replicas", json!(1)),
            ),
            (
                "statefulset template",
                sts.clone(),
                with(
                    &sts,
                    "/spec/template/spec/containers/0/image",
                    json!("nginx:2"),
                ),
            ),
            (
                "pod image",
                pod.clone(),
                with(&pod, "/spec/containers/0/image", json!("busybox:1.36")),
            ),
            (
                "pod binding",
                pod.clone(),
                with(&pod, "/spec/nodeName", json!("node-1")),
            ),
            (
                "pod toleration added",
                pod.clone(),
                with(
                    &pod,
                    "/spec/tolerations",
                    json!([{"key": "a", "operator": "Exists"}, {"key": "b", "operator": "Exists"}]),
                ),
            ),
            (
                "pod deadline set",
                pod.clone(),
                with(&pod, "/spec/activeDeadlineSeconds", json!(60)),
            ),
            (
                "pod status",
                pod.clone(),
                with(&pod, "/status", json!({"phase": "Running"})),
            ),
            (
                "bound claim grows",
                with(&claim, "/status/phase", json!("Bound")),
                with(
                    &with(&claim, "/status/phase", json!("Bound")),
                    "/spec/resources/requests/storage",
                    json!("5Gi"),
                ),
            ),
            (
                "volume reclaim policy and capacity",
                defaulted(of_kind("PersistentVolume")),
                with(
                    &with(
                        &defaulted(of_kind("PersistentVolume")),
                        "/spec/persistentVolumeReclaimPolicy",
                        json!("Delete"),
                    ),
                    "/spec/capacity/storage",
                    json!("20Gi"),
                ),
            ),
            (
                "claim bound",
                claim.clone(),
                with(&claim, "/spec/volumeName", json!("task-pv-volume")),
            ),
            (
                "service ports",
                svc.clone(),
                with(&svc, "/spec/ports/0/port", json!(8080)),
            ),
            (
                "service to ExternalName",
                svc.clone(),
                with(
                    &with(
                        &with(
                            &with(
                                &with(
                                    &with(&svc, "/spec/type", json!("ExternalName")),
                                    "/spec/externalName",
                                    json!("db.example.com"),
                                ),
                                "/spec/clusterIPs",
                                Value::Null,
                            ),
                            "/spec/ipFamilies",
                            Value::Null,
                        ),
                        "/spec/ipFamilyPolicy",
                        Value::Null,
                    ),
                    "/spec/clusterIP",
                    Value::Null,
                ),
            ),
            (
                "service to ExternalName, as the server drops what went with the type",
                svc.clone(),
                {
                    let mut next = with(&svc, "/spec/type", json!("ExternalName"));
                    next["spec"]["externalName"] = json!("db.example.com");
                    crate::defaults::carry_forward_on_update(&svc, &mut next);
                    next
                },
            ),
            (
                "configmap data",
                of_kind("ConfigMap"),
                with(
                    &of_kind("ConfigMap"),
                    "/data/player_initial_lives",
                    json!("5"),
                ),
            ),
        ];
        let job = defaulted(of_kind("Job"));
        let generated = with(
            &with(
                &job,
                "/spec/selector",
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}),
            ),
            "/spec/template/metadata",
            json!({"labels": {"batch.kubernetes.io/controller-uid": "u-1"}}),
        );
        table.push(("job selector generated", job, generated));
        for (what, old, new) in table {
            assert_eq!(validate_update(&old, &new), Ok(()), "{what}");
        }
    }

    #[test]
    fn immutable_fields_are_refused_on_update() {
        let deploy = defaulted(nginx());
        let sts = defaulted(statefulset());
        let pod = defaulted(with(
            &of_kind("Pod"),
            "/spec/tolerations",
            json!([{"key": "a", "operator": "Exists"}]),
        ));
        let job = defaulted(with(
            &of_kind("Job"),
            "/spec/selector",
            json!({"matchLabels": {"job": "pi"}}),
        ));
        let job = with(
            &job,
            "/spec/template/metadata",
            json!({"labels": {"job": "pi"}}),
        );
        let claim = defaulted(of_kind("PersistentVolumeClaim"));
        let svc = defaulted(with(
            &of_kind("Service"),
            "/spec/clusterIP",
            json!("10.96.0.10"),
        ));
        let secret = with(&of_kind("Secret"), "/immutable", json!(true));
        let cm = with(&of_kind("ConfigMap"), "/immutable", json!(true));
        let with_uid = with(&deploy, "/metadata/uid", json!("u-1"));
        let table: Vec<(Value, Value, &str, &str)> = vec![
            (
                deploy.clone(),
                with(&deploy, "/metadata/name", json!("other")),
                "metadata.name",
                IMMUTABLE,
            ),
            (
                deploy.clone(),
                with(&deploy, "/metadata/namespace", json!("prod")),
                "metadata.namespace",
                IMMUTABLE,
            ),
            (
                with_uid.clone(),
                with(&with_uid, "/metadata/uid", json!("u-2")),
                "metadata.uid",
                IMMUTABLE,
            ),
            (
                deploy.clone(),
                with(
                    &with(&deploy, "/spec/selector/matchLabels", json!({"app": "web"})),
                    "/spec/template/metadata/labels",
                    json!({"app": "web"}),
                ),
                "spec.selector",
                IMMUTABLE,
            ),
            (
                sts.clone(),
                with(&sts, "/spec/serviceName", json!("other")),
                "spec.serviceName",
                "updates to statefulset spec",
            ),
            (
                sts.clone(),
                with(
                    &sts,
                    "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
                    json!("2Gi"),
                ),
                "spec.volumeClaimTemplates",
                "Forbidden",
            ),
            (
                sts.clone(),
                with(&sts, "/spec/podManagementPolicy", json!("Parallel")),
                "spec.podManagementPolicy",
                "Forbidden",
            ),
            (
                job.clone(),
                with(
                    &job,
                    "/spec/template/spec/containers/0/image",
                    json!("perl:5.36"),
                ),
                "spec.template",
                IMMUTABLE,
            ),
            (
                job.clone(),
                with(&job, "/spec/completions", json!(3)),
                "spec.completions",
                IMMUTABLE,
            ),
            (
                svc.clone(),
                with(&svc, "/spec/clusterIP", json!("10.96.0.11")),
                "spec.clusterIP",
                IMMUTABLE,
            ),
            (
                claim.clone(),
                with(&claim, "/spec/accessModes", json!(["ReadWriteMany"])),
                "spec",
                "changed: accessModes",
            ),
            (
                claim.clone(),
                with(&claim, "/spec/storageClassName", json!("fast")),
                "spec",
                "spec is immutable after creation",
            ),
            (
                claim.clone(),
                with(&claim, "/spec/resources/requests/storage", json!("5Gi")),
                "spec",
                "changed: resources",
            ),
            (
                with(&claim, "/status/phase", json!("Bound")),
                with(
                    &with(&claim, "/status/phase", json!("Bound")),
                    "/spec/resources/requests/storage",
                    json!("1Gi"),
                ),
                "spec.resources.requests.storage",
                "can not be less than previous value",
            ),
            (
                defaulted(of_kind("PersistentVolume")),
                with(
                    &defaulted(of_kind("PersistentVolume")),
                    "/spec/hostPath/path",
                    json!("/elsewhere"),
                ),
                "spec.persistentvolumesource",
                "immutable after creation",
            ),
            (
                pod.clone(),
                with(&pod, "/spec/containers/0/args", json!(["sleep", "1"])),
                "spec",
                "changed: containers",
            ),
            (
                pod.clone(),
                with(&pod, "/spec/restartPolicy", json!("Never")),
                "spec",
                "pod updates may not change fields",
            ),
            (
                pod.clone(),
                with(&pod, "/spec/tolerations", json!([])),
                "spec.tolerations[0]",
                "Forbidden",
            ),
            (
                with(&pod, "/spec/nodeName", json!("node-1")),
                with(&pod, "/spec/nodeName", json!("node-2")),
                "spec",
                "changed: nodeName",
            ),
            (
                with(&pod, "/spec/activeDeadlineSeconds", json!(30)),
                with(&pod, "/spec/activeDeadlineSeconds", json!(60)),
                "spec.activeDeadlineSeconds",
                "less than or equal to previous value",
            ),
            (
                secret.clone(),
                with(&secret, "/data/PASSWORD", json!("YQ==")),
                "data",
                "field is immutable when `immutable` is set",
            ),
            (
                secret.clone(),
                with(&secret, "/type", json!("kubernetes.io/basic-auth")),
                "type",
                IMMUTABLE,
            ),
            (
                cm.clone(),
                with(&cm, "/immutable", json!(false)),
                "immutable",
                "field is immutable when `immutable` is set",
            ),
            (
                cm.clone(),
                with(&cm, "/data/player_initial_lives", json!("5")),
                "data",
                "Forbidden",
            ),
            (
                of_kind("StorageClass"),
                with(
                    &of_kind("StorageClass"),
                    "/provisioner",
                    json!("example.com/nfs"),
                ),
                "provisioner",
                IMMUTABLE,
            ),
            (
                of_kind("ControllerRevision"),
                with(
                    &of_kind("ControllerRevision"),
                    "/data/spec/template/spec/containers/0/image",
                    json!("busybox:2"),
                ),
                "data",
                IMMUTABLE,
            ),
        ];
        for (old, new, field, message) in table {
            let found = causes(validate_update(&old, &new));
            assert!(
                found
                    .iter()
                    .any(|c| c.field == field && c.message.contains(message)),
                "expected {field}: ...{message}... in {found:#?}"
            );
        }
    }

    #[test]
    fn an_update_is_also_validated_as_an_object() {
        let deploy = defaulted(nginx());
        let found = causes(validate_update(
            &deploy,
            &with(&deploy, "/spec/replicas", json!(-3)),
        ));
        assert!(
            found.iter().any(|c| c.field == "spec.replicas"),
            "{found:#?}"
        );
    }
}
