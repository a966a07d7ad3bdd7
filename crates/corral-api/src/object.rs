//! Helpers on objects as Kubernetes JSON (`serde_json::Value`): identity and storage keys, metadata
//! accessors, and reading manifests (multi-document YAML or JSON, `List`s expanded).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::kinds::{self, KindInfo};

/// Which object: its kind, namespace (`""` for cluster-scoped kinds) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The registry entry of this key's kind, if the kind is registered.
    pub fn kind_info(&self) -> Option<&'static KindInfo> {
        kinds::kind_info(&self.kind)
    }

    /// Where the object lives in the store: `/{plural}/{namespace}/{name}` for namespaced kinds,
    /// `/{plural}/{name}` for cluster-scoped ones. An unregistered kind uses its lowercased name as
    /// the plural and is taken as namespaced when the key has a namespace.
    pub fn storage_key(&self) -> String {
        let (plural, namespaced) = match self.kind_info() {
            Some(info) => (info.plural.to_string(), info.namespaced),
            None => (self.kind.to_ascii_lowercase(), !self.namespace.is_empty()),
        };
        if namespaced {
            format!("/{plural}/{}/{}", self.namespace, self.name)
        } else {
            format!("/{plural}/{}", self.name)
        }
    }
}

impl fmt::Display for ObjectKey {
    /// `Pod default/web-0`, `Node n1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// The store prefix that lists a kind: `/{plural}/` for all namespaces (or a cluster-scoped kind),
/// `/{plural}/{namespace}/` for one namespace of a namespaced kind.
pub fn list_prefix(kind: &KindInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kind.namespaced && !ns.is_empty() => format!("/{}/{ns}/", kind.plural),
        _ => format!("/{}/", kind.plural),
    }
}

/// The key of an object: its `kind` must be registered and `metadata.name` set; a namespaced kind
/// needs `metadata.namespace` (callers default it first), a cluster-scoped kind's namespace is ignored.
pub fn key_of(obj: &Value) -> Result<ObjectKey, ApiError> {
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
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
    let name = meta_str(obj, "name").map_err(ApiError::bad_request)?;
    if name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{kind} has no `metadata.name`"
        )));
    }
    let namespace = if info.namespaced {
        let ns = meta_str(obj, "namespace").map_err(ApiError::bad_request)?;
        if ns.is_empty() {
            return Err(ApiError::bad_request(format!(
                "{kind} \"{name}\" has no `metadata.namespace`: {kind} is a namespaced kind"
            )));
        }
        ns
    } else {
        ""
    };
    Ok(ObjectKey::new(kind, namespace, name))
}

/// The BadRequest for a kind Corral does not serve.
pub fn unknown_kind(kind: &str) -> ApiError {
    ApiError::bad_request(format!("no kind \"{kind}\" is registered"))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Result<&'a str, String> {
    match obj.get("metadata").and_then(|m| m.get(field)) {
        None | Some(Value::Null) => Ok(""),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`metadata.{field}` must be a string, got {other}")),
    }
}

fn meta_field<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    obj.get("metadata").and_then(|m| m.get(field))
}

/// `kind`, or `""`.
pub fn kind(obj: &Value) -> &str {
    obj.get("kind").and_then(Value::as_str).unwrap_or("")
}

/// `apiVersion`, or `""`.
pub fn api_version(obj: &Value) -> &str {
    obj.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

/// `metadata.name`, or `""`.
pub fn name(obj: &Value) -> &str {
    meta_field(obj, "name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.namespace`, or `""`.
pub fn namespace(obj: &Value) -> &str {
    meta_field(obj, "namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.uid`, or `""`.
pub fn uid(obj: &Value) -> &str {
    meta_field(obj, "uid").and_then(Value::as_str).unwrap_or("")
}

/// `metadata.resourceVersion` as a revision: 0 when absent or empty, an error when it is not a
/// decimal number (Corral's resourceVersions are store revisions).
pub fn resource_version(obj: &Value) -> Result<u64, ApiError> {
    match meta_field(obj, "resourceVersion") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) if s.is_empty() => Ok(0),
        Some(Value::String(s)) => s.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "metadata.resourceVersion \"{s}\" is not a revision: it must be a decimal number from a read"
            ))
        }),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!("metadata.resourceVersion {n} is not a revision: it must be a non-negative integer"))
        }),
        Some(other) => {
            Err(ApiError::bad_request(format!("metadata.resourceVersion must be a string, got {other}")))
        }
    }
}

/// The object's `metadata`, created when absent or null. `None` when `obj` is not an object or its
/// `metadata` is something other than an object (left for validation to report).
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let map = obj.as_object_mut()?;
    let meta = map.entry("metadata").or_insert(Value::Null);
    if meta.is_null() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut()
}

/// Sets `metadata.resourceVersion` to the revision, as Kubernetes does, as a string.
pub fn set_resource_version(obj: &mut Value, revision: u64) {
    if let Some(meta) = metadata_mut(obj) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
}

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.labels` (entries whose value is not a string are skipped).
pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    string_map(meta_field(obj, "labels"))
}

/// `metadata.annotations` (entries whose value is not a string are skipped).
pub fn annotations(obj: &Value) -> BTreeMap<String, String> {
    string_map(meta_field(obj, "annotations"))
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    meta_field(obj, "finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `metadata.deletionTimestamp`, when the object is being deleted.
pub fn deletion_timestamp(obj: &Value) -> Option<&str> {
    meta_field(obj, "deletionTimestamp")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.generation`, or 0.
pub fn generation(obj: &Value) -> i64 {
    meta_field(obj, "generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// What is wrong with a manifest file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}{}: {message}", line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ManifestError {
    /// 1-based position of the document in the file (`---` separated; a JSON file is document 1).
    pub document: usize,
    /// 1-based line in the whole file, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl From<ManifestError> for ApiError {
    fn from(e: ManifestError) -> Self {
        ApiError::bad_request(e.to_string())
    }
}

/// Reads a manifest file: multi-document YAML (`---` separated; empty documents skipped) or JSON (one
/// object, or an array of objects). Objects of kind `List` are replaced by their `items`. Every
/// object must be a mapping with a string `kind`.
pub fn parse_manifests(text: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = text.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let value: Value = serde_json::from_str(text).map_err(|e| ManifestError {
            document: 1,
            line: Some(e.line()),
            message: format!("invalid JSON: {e}"),
        })?;
        push_object(value, 1, None, &mut out)?;
        return Ok(out);
    }
    for (index, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document = index + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError {
            document,
            line: e.location().map(|l| l.line()),
            message: format!("invalid YAML: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        push_object(value, document, None, &mut out)?;
    }
    Ok(out)
}

fn push_object(
    value: Value,
    document: usize,
    within: Option<&str>,
    out: &mut Vec<Value>,
) -> Result<(), ManifestError> {
    let err = |message: String| ManifestError {
        document,
        line: None,
        message,
    };
    let context = within.map(|w| format!("{w}: ")).unwrap_or_default();
    match value {
        Value::Array(items) if within.is_none() => {
            for (i, item) in items.into_iter().enumerate() {
                push_object(item, document, Some(&format!("item [{i}]")), out)?;
            }
            Ok(())
        }
        Value::Object(map) => {
            let kind = match map.get("kind") {
                Some(Value::String(k)) if !k.is_empty() => k.clone(),
                None | Some(Value::Null) => {
                    return Err(err(format!(
                        "{context}object has no `kind` (e.g. kind: Deployment)"
                    )));
                }
                Some(other) => {
                    return Err(err(format!(
                        "{context}`kind` must be a string, got {other}"
                    )));
                }
            };
            if kind == "List"
                || (kind.ends_with("List")
                    && map.contains_key("items")
                    && !map.contains_key("spec"))
            {
                let items = match map.get("items") {
                    None | Some(Value::Null) => return Ok(()),
                    Some(Value::Array(items)) => items.clone(),
                    Some(other) => {
                        return Err(err(format!(
                            "{context}{kind}.items must be a list, got {other}"
                        )));
                    }
                };
                for (i, item) in items.into_iter().enumerate() {
                    let label = format!("{context}items[{i}]");
                    if item.is_array() {
                        return Err(err(format!("{label}: must be an object, got a list")));
                    }
                    push_object(item, document, Some(&label), out)?;
                }
                return Ok(());
            }
            out.push(Value::Object(map));
            Ok(())
        }
        other => Err(err(format!(
            "{context}must be an object (a mapping with apiVersion, kind, metadata), got {}",
            type_name(&other)
        ))),
    }
}

/// `a string`, `a list`, ...: for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The object as YAML, as `corralctl get -o yaml` prints it.
pub fn to_yaml(obj: &Value) -> String {
    serde_norway::to_string(obj)
        .expect("a JSON value has string keys and always serializes to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn storage_keys_follow_scope() {
        let table = [
            (
                ObjectKey::new("Pod", "default", "web-0"),
                "/pods/default/web-0",
            ),
            (
                ObjectKey::new("Deployment", "prod", "api"),
                "/deployments/prod/api",
            ),
            (ObjectKey::new("Node", "", "n1"), "/nodes/n1"),
            (
                ObjectKey::new("Namespace", "", "kube-system"),
                "/namespaces/kube-system",
            ),
            (
                ObjectKey::new("PersistentVolume", "", "pv1"),
                "/persistentvolumes/pv1",
            ),
        ];
        for (key, want) in table {
            assert_eq!(key.storage_key(), want);
        }
    }

    #[test]
    fn list_prefixes_cover_one_or_all_namespaces() {
        let pod = kinds::kind_info("Pod").expect("registered");
        let node = kinds::kind_info("Node").expect("registered");
        assert_eq!(list_prefix(pod, None), "/pods/");
        assert_eq!(list_prefix(pod, Some("default")), "/pods/default/");
        assert_eq!(list_prefix(pod, Some("")), "/pods/");
        assert_eq!(list_prefix(node, Some("default")), "/nodes/");
        // A namespace prefix never matches a longer namespace name.
        assert!(!"/pods/defaultx/a".starts_with(&list_prefix(pod, Some("default"))));
    }

    #[test]
    fn key_of_reads_kind_namespace_and_name() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a", "namespace": "ns1"}});
        assert_eq!(key_of(&pod).ok(), Some(ObjectKey::new("Pod", "ns1", "a")));
        let node = json!({"kind": "Node", "metadata": {"name": "n1", "namespace": "ignored"}});
        assert_eq!(key_of(&node).ok(), Some(ObjectKey::new("Node", "", "n1")));
    }

    #[test]
    fn key_of_names_the_missing_field() {
        let table = [
            (json!({"metadata": {"name": "a"}}), "kind"),
            (
                json!({"kind": "Widget", "metadata": {"name": "a"}}),
                "no kind \"Widget\" is registered",
            ),
            (
                json!({"kind": "Pod", "metadata": {"namespace": "x"}}),
                "metadata.name",
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "a"}}),
                "metadata.namespace",
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": 5, "namespace": "x"}}),
                "metadata.name` must be a string",
            ),
        ];
        for (obj, want) in table {
            let err = key_of(&obj).expect_err("must fail");
            assert_eq!(err.reason(), crate::Reason::BadRequest);
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn accessors_read_metadata() {
        let mut obj = json!({"kind": "Pod", "metadata": {
            "name": "a", "namespace": "ns", "uid": "u1", "resourceVersion": "42", "generation": 3,
            "labels": {"app": "web", "bad": 1}, "annotations": {"note": "x"},
            "finalizers": ["f1", "f2"], "deletionTimestamp": "2024-01-01T00:00:00Z"
        }});
        assert_eq!((name(&obj), namespace(&obj), uid(&obj)), ("a", "ns", "u1"));
        assert_eq!(resource_version(&obj).ok(), Some(42));
        assert_eq!(generation(&obj), 3);
        assert_eq!(
            labels(&obj),
            BTreeMap::from([("app".to_string(), "web".to_string())])
        );
        assert_eq!(annotations(&obj).get("note").map(String::as_str), Some("x"));
        assert_eq!(finalizers(&obj), vec!["f1", "f2"]);
        assert_eq!(deletion_timestamp(&obj), Some("2024-01-01T00:00:00Z"));
        set_resource_version(&mut obj, 43);
        assert_eq!(obj["metadata"]["resourceVersion"], json!("43"));
    }

    #[test]
    fn resource_version_is_zero_when_absent_and_an_error_when_not_a_number() {
        assert_eq!(resource_version(&json!({"kind": "Pod"})).ok(), Some(0));
        assert_eq!(
            resource_version(&json!({"metadata": {"resourceVersion": ""}})).ok(),
            Some(0)
        );
        let err = resource_version(&json!({"metadata": {"resourceVersion": "abc"}}))
            .expect_err("not a number");
        assert!(err.to_string().contains("\"abc\""), "{err}");
        let mut bare = json!({"kind": "Pod"});
        set_resource_version(&mut bare, 7);
        assert_eq!(resource_version(&bare).ok(), Some(7));
    }

    #[test]
    fn multi_document_yaml_skips_empty_documents_and_expands_lists() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n---\n# only a comment\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: b\n\
                    - apiVersion: v1\n  kind: Service\n  metadata:\n    name: c\n";
        let objs = parse_manifests(text).expect("valid");
        let names: Vec<_> = objs.iter().map(name).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }

    #[test]
    fn json_object_array_and_list_are_read() {
        let one = parse_manifests(r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}"#)
            .expect("valid");
        assert_eq!(one.len(), 1);
        let list = parse_manifests(
            r#"{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"p"}},{"kind":"Pod","metadata":{"name":"q"}}]}"#,
        )
        .expect("valid");
        assert_eq!(list.iter().map(name).collect::<Vec<_>>(), vec!["p", "q"]);
        let typed_list = parse_manifests(
            r#"{"kind":"PodList","items":[{"kind":"Pod","metadata":{"name":"p"}}]}"#,
        )
        .expect("valid");
        assert_eq!(typed_list.len(), 1);
        let array = parse_manifests(r#"[{"kind":"Pod","metadata":{"name":"p"}}]"#).expect("valid");
        assert_eq!(array.len(), 1);
        assert_eq!(
            parse_manifests("").expect("empty is fine"),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn bad_manifests_say_which_document_and_what() {
        let table: [(&str, usize, &str); 5] = [
            (
                "kind: Pod\nmetadata:\n  name: a\n---\nkind: Pod\nmetadata: [1\n",
                2,
                "invalid YAML",
            ),
            ("kind: Pod\n---\njust a string\n", 2, "must be an object"),
            ("kind: Pod\n---\nmetadata:\n  name: x\n", 2, "no `kind`"),
            ("{\"kind\": \"Pod\",}", 1, "invalid JSON"),
            (
                "kind: List\nitems:\n- 3\n",
                1,
                "items[0]: must be an object",
            ),
        ];
        for (text, document, want) in table {
            let err = parse_manifests(text).expect_err("must fail");
            assert_eq!(err.document, document, "{err}");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn document_numbers_count_empty_documents_too() {
        let text = "kind: Pod\nmetadata:\n  name: a\n---\n---\nkind: Pod\nmetadata: [1\n";
        let err = parse_manifests(text).expect_err("bad");
        assert_eq!(err.document, 3, "{err}");
    }

    #[test]
    fn yaml_errors_carry_a_line_number() {
        let err =
            parse_manifests("kind: Pod\nmetadata:\n  name: a\n---\nkind: Pod\nmetadata: [1\n")
                .expect_err("bad");
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn to_yaml_round_trips() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let text = to_yaml(&obj);
        assert!(text.contains("kind: ConfigMap"));
        assert_eq!(parse_manifests(&text).expect("round trip"), vec![obj]);
    }
}
