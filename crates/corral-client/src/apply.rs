//! `apply`: create the object, or bring the live one in line with the manifest.
//!
//! Like `kubectl apply`, the manifest is recorded in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation. On a later apply the new manifest
//! is merged onto the live object (objects merge key by key, lists and scalars are replaced, fields
//! that the previous manifest set and this one drops are removed), so fields the manifest never
//! named (a Service's allocated clusterIP, a Pod's nodeName, finalizers) stay as they are. The
//! result is sent as an update carrying the live resourceVersion; a Conflict re-reads and retries.

use corral_api::ApiError;
use serde_json::{Map, Value};

use crate::client::Client;

/// The annotation that keeps the last manifest applied, as kubectl names it.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// How many times `apply` re-reads and retries after a Conflict (or a vanished object).
const ATTEMPTS: usize = 5;

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applied {
    Created,
    Configured,
    Unchanged,
}

impl Applied {
    /// kubectl's word: `created`, `configured`, `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Client {
    /// Creates `manifest`, or updates the live object to match it (see the module doc). Answers
    /// the stored object and what was done.
    pub async fn apply(&self, manifest: &Value) -> Result<(Value, Applied), ApiError> {
        let kind = manifest
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| ApiError::bad_request("kind: required, the object names no kind"))?;
        let name = manifest
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("metadata.name: required to apply a {kind}"))
            })?;
        let mut namespace = manifest
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let recorded = last_applied_text(manifest);
        let wanted = with_annotation(manifest, &recorded);

        let mut exists = false;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            if !exists {
                match self.create(&wanted).await {
                    Ok(created) => return Ok((created, Applied::Created)),
                    Err(ApiError::AlreadyExists { namespace: ns, .. }) => {
                        if !ns.is_empty() {
                            namespace = ns;
                        }
                        exists = true;
                    }
                    Err(e) => return Err(e),
                }
            }
            let live = match self.get(kind, &namespace, name).await {
                Ok(live) => live,
                Err(e @ ApiError::NotFound { .. }) => {
                    // Deleted since: create it again.
                    exists = false;
                    last_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if is_unchanged(manifest, &live, &recorded) {
                return Ok((live, Applied::Unchanged));
            }
            let desired = merged(&live, &wanted);
            match self.update(&desired).await {
                Ok(updated) => return Ok((updated, Applied::Configured)),
                Err(e @ ApiError::Conflict { .. }) => last_error = Some(e),
                Err(e @ ApiError::NotFound { .. }) => {
                    exists = false;
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| ApiError::internal("apply gave up without an error")))
    }
}

/// The manifest as recorded in the annotation: compact JSON, without the annotation itself.
pub(crate) fn last_applied_text(manifest: &Value) -> String {
    let mut clean = manifest.clone();
    if let Some(annotations) = clean
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
        if annotations.is_empty()
            && let Some(metadata) = clean.get_mut("metadata").and_then(Value::as_object_mut)
        {
            metadata.remove("annotations");
        }
    }
    clean.to_string()
}

/// The manifest with the annotation set to `recorded`.
pub(crate) fn with_annotation(manifest: &Value, recorded: &str) -> Value {
    let mut out = manifest.clone();
    if let Some(object) = out.as_object_mut() {
        let metadata = object
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        if let Some(metadata) = metadata.as_object_mut() {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if !annotations.is_object() {
                *annotations = Value::Object(Map::new());
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    LAST_APPLIED_ANNOTATION.into(),
                    Value::String(recorded.into()),
                );
            }
        }
    }
    out
}

/// True when the live object already records this manifest and still holds every field it sets.
pub(crate) fn is_unchanged(manifest: &Value, live: &Value, recorded: &str) -> bool {
    let live_recorded = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str);
    if live_recorded != Some(recorded) {
        return false;
    }
    let Some(fields) = manifest.as_object() else {
        return false;
    };
    fields.iter().all(|(key, value)| match key.as_str() {
        "status" => true,
        "metadata" => value.as_object().is_some_and(|m| {
            m.iter().all(|(k, v)| {
                k == "resourceVersion"
                    || live
                        .get("metadata")
                        .and_then(|lm| lm.get(k))
                        .is_some_and(|l| contains(l, v))
            })
        }),
        _ => live.get(key).is_some_and(|l| contains(l, value)),
    })
}

/// Whether `live` holds everything `wanted` says: objects key by key (extra live keys, such as
/// server defaults, are fine), lists element by element, scalars equal.
pub(crate) fn contains(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (_, Value::Null) => true,
        (Value::Object(l), Value::Object(w)) => w.iter().all(|(k, wv)| {
            if wv.is_null() {
                !l.contains_key(k) || l[k].is_null()
            } else {
                l.get(k).is_some_and(|lv| contains(lv, wv))
            }
        }),
        (Value::Array(l), Value::Array(w)) => {
            l.len() == w.len() && l.iter().zip(w).all(|(lv, wv)| contains(lv, wv))
        }
        (l, w) => l == w,
    }
}

/// The object to send: `live`, minus the fields the previous manifest set and `wanted` drops, with
/// `wanted` merged on top, carrying the live resourceVersion.
pub(crate) fn merged(live: &Value, wanted: &Value) -> Value {
    let mut out = live.clone();
    let previous = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    if let Some(previous) = previous {
        remove_dropped(&mut out, &previous, wanted);
    }
    merge_into(&mut out, wanted);
    if let (Some(rv), Some(metadata)) = (
        live.pointer("/metadata/resourceVersion").cloned(),
        out.get_mut("metadata").and_then(Value::as_object_mut),
    ) {
        metadata.insert("resourceVersion".into(), rv);
    }
    out
}

/// Removes from `target` every key `previous` had and `wanted` no longer has, recursively through
/// objects present in both.
fn remove_dropped(target: &mut Value, previous: &Value, wanted: &Value) {
    let (Some(target), Some(previous)) = (target.as_object_mut(), previous.as_object()) else {
        return;
    };
    for (key, prev_value) in previous {
        match wanted.get(key) {
            None => {
                target.remove(key);
            }
            Some(wanted_value) if prev_value.is_object() && wanted_value.is_object() => {
                if let Some(t) = target.get_mut(key) {
                    remove_dropped(t, prev_value, wanted_value);
                }
            }
            Some(_) => {}
        }
    }
}

/// RFC 7386 merge of `patch` into `target`: objects merge, `null` removes, the rest replaces.
fn merge_into(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(target) = target.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_into(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(replicas: u64, labels: Value) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": labels},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        })
    }

    /// What a server would store: the manifest plus defaults and server-owned fields.
    fn stored(manifest: &Value) -> Value {
        let mut live = with_annotation(manifest, &last_applied_text(manifest));
        live["metadata"]["namespace"] = json!("default");
        live["metadata"]["resourceVersion"] = json!("12");
        live["metadata"]["uid"] = json!("u-1");
        live["metadata"]["finalizers"] = json!(["corral.io/keep"]);
        live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        live["spec"]["revisionHistoryLimit"] = json!(10);
        live["status"] = json!({"replicas": 3});
        live
    }

    #[test]
    fn the_recorded_manifest_leaves_out_its_own_annotation() {
        let m = with_annotation(&manifest(3, json!({"app": "web"})), "old");
        let text = last_applied_text(&m);
        assert!(!text.contains(LAST_APPLIED_ANNOTATION), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).ok(),
            Some(manifest(3, json!({"app": "web"})))
        );
    }

    #[test]
    fn the_same_manifest_over_defaulted_live_state_is_unchanged() {
        let m = manifest(3, json!({"app": "web"}));
        assert!(is_unchanged(&m, &stored(&m), &last_applied_text(&m)));
    }

    #[test]
    fn a_changed_field_or_a_drifted_live_object_is_not_unchanged() {
        let m = manifest(3, json!({"app": "web"}));
        let live = stored(&m);
        let m2 = manifest(4, json!({"app": "web"}));
        assert!(!is_unchanged(&m2, &live, &last_applied_text(&m2)));
        let mut drifted = live.clone();
        drifted["spec"]["replicas"] = json!(1);
        assert!(!is_unchanged(&m, &drifted, &last_applied_text(&m)));
    }

    #[test]
    fn merging_keeps_server_fields_and_takes_the_manifest_and_the_live_resource_version() {
        let m1 = manifest(3, json!({"app": "web", "tier": "front"}));
        let mut m2 = manifest(5, json!({"app": "web"}));
        m2["metadata"]["resourceVersion"] = json!("1");
        let wanted = with_annotation(&m2, &last_applied_text(&m2));
        let out = merged(&stored(&m1), &wanted);
        assert_eq!(out["spec"]["replicas"], 5);
        // Dropped from the manifest: removed. Never in a manifest: kept.
        assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(out["metadata"]["finalizers"], json!(["corral.io/keep"]));
        assert_eq!(out["metadata"]["uid"], "u-1");
        assert_eq!(out["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(out["metadata"]["resourceVersion"], "12");
        // Lists are replaced whole: the server defaults them again.
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c", "image": "nginx"}])
        );
        assert_eq!(
            out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION],
            json!(last_applied_text(&m2))
        );
    }

    #[test]
    fn null_in_a_manifest_removes_the_field() {
        let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_into(&mut target, &json!({"a": null, "b": {"c": null, "e": 4}}));
        assert_eq!(target, json!({"b": {"d": 3, "e": 4}}));
    }

    #[test]
    fn contains_is_a_subset_check_with_exact_lists() {
        assert!(contains(&json!({"a": 1, "b": 2}), &json!({"a": 1})));
        assert!(!contains(&json!({"a": 1}), &json!({"a": 2})));
        assert!(contains(&json!([{"x": 1, "y": 2}]), &json!([{"x": 1}])));
        assert!(!contains(&json!([1, 2]), &json!([1])));
        assert!(!contains(&json!({}), &json!({"a": 1})));
    }

    #[test]
    fn an_annotation_that_is_not_an_object_is_replaced() {
        let m = json!({"kind": "Pod", "metadata": {"name": "p", "annotations": "junk"}});
        let out = with_annotation(&m, "x");
        assert_eq!(out["metadata"]["annotations"][LAST_APPLIED_ANNOTATION], "x");
    }
}
