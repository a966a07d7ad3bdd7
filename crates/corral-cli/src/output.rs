//! How objects and errors are written: kubectl's resource names (`deployment.apps/web`), its JSON
//! (four-space indent, `List` for collections), YAML, tables, and its one-line error messages.

use corral_api::ApiError;
use corral_api::kinds::{self, KindInfo};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use crate::columns;
use crate::table::Table;

/// `pod`, `deployment.apps`: the singular resource, qualified by its group unless core.
pub fn resource_ref(info: &KindInfo) -> String {
    match info.group() {
        "" => info.singular.to_string(),
        group => format!("{}.{group}", info.singular),
    }
}

/// The plural resource name a kind is known by (`pods`), or the kind in lower case.
pub fn plural_of(kind: &str) -> String {
    kinds::kind_info(kind)
        .or_else(|| kinds::resolve(kind))
        .map(|i| i.plural.to_string())
        .unwrap_or_else(|| kind.to_ascii_lowercase())
}

/// JSON as kubectl prints it: four-space indent, a trailing newline.
pub fn json_text(value: &Value) -> String {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut buf,
        serde_json::ser::PrettyFormatter::with_indent(b"    "),
    );
    value
        .serialize(&mut ser)
        .expect("a JSON value serializes into memory");
    let mut text = String::from_utf8(buf).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

/// YAML, ending in a newline.
pub fn yaml_text(value: &Value) -> String {
    let mut text = corral_api::object::to_yaml(value);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// A Kubernetes `List` holding `items`, read at `revision`.
pub fn list_object(items: Vec<Value>, revision: u64) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    })
}

/// The table `get` prints for `items` of one kind, with a NAMESPACE column first when
/// `namespace_column`.
pub fn objects_table(
    info: &KindInfo,
    items: &[Value],
    wide: bool,
    namespace_column: bool,
    now: Timestamp,
) -> Table {
    let mut headers = columns::headers(info.kind, wide);
    if namespace_column {
        headers.insert(0, "NAMESPACE".into());
    }
    let mut table = Table::new(headers);
    for item in items {
        table.push(object_row(info, item, wide, namespace_column, now));
    }
    table
}

/// One row of [`objects_table`].
pub fn object_row(
    info: &KindInfo,
    item: &Value,
    wide: bool,
    namespace_column: bool,
    now: Timestamp,
) -> Vec<String> {
    let mut row = columns::row(info.kind, item, wide, now);
    if namespace_column {
        row.insert(0, corral_api::object::namespace(item).to_string());
    }
    row
}

/// The one line kubectl would print for an API error.
pub fn api_error_line(e: &ApiError) -> String {
    api_error_line_in(e, None)
}

/// [`api_error_line`], naming the manifest the failed object came from.
pub fn api_error_line_in(e: &ApiError, source: Option<&str>) -> String {
    let context = source
        .map(|s| format!("error when applying \"{s}\": "))
        .unwrap_or_default();
    match e {
        ApiError::Unavailable { message, leader } => {
            let leader = leader
                .as_ref()
                .map(|l| format!(" (leader at {l})"))
                .unwrap_or_default();
            format!("Unable to connect to the server: {message}{leader}")
        }
        ApiError::NotFound { kind, name, .. } => {
            format!(
                "Error from server (NotFound): {context}{} \"{name}\" not found",
                plural_of(kind)
            )
        }
        ApiError::AlreadyExists { kind, name, .. } => {
            format!(
                "Error from server (AlreadyExists): {context}{} \"{name}\" already exists",
                plural_of(kind)
            )
        }
        ApiError::Invalid { .. } if source.is_none() => format!("The {e}"),
        ApiError::BadRequest { message } => {
            format!("Error from server (BadRequest): {context}{message}")
        }
        other => format!("Error from server ({:?}): {context}{other}", other.reason()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::Cause;

    fn info(kind: &str) -> &'static KindInfo {
        kinds::kind_info(kind).expect("registered kind")
    }

    #[test]
    fn resource_refs_carry_the_group_unless_core() {
        assert_eq!(resource_ref(info("Deployment")), "deployment.apps");
        assert_eq!(resource_ref(info("Pod")), "pod");
        assert_eq!(resource_ref(info("CronJob")), "cronjob.batch");
    }

    #[test]
    fn json_uses_kubectls_four_space_indent() {
        assert_eq!(
            json_text(&json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
    }

    #[test]
    fn collections_are_kubernetes_lists() {
        let list = list_object(vec![json!({"kind": "Pod"})], 42);
        assert_eq!(list["kind"], "List");
        assert_eq!(list["apiVersion"], "v1");
        assert_eq!(list["metadata"]["resourceVersion"], "42");
        assert_eq!(list["items"][0]["kind"], "Pod");
        assert!(yaml_text(&list).contains("kind: List"));
    }

    #[test]
    fn all_namespaces_puts_the_namespace_first() {
        let now: Timestamp = "2026-01-01T00:00:05Z".parse().expect("valid");
        let items = [
            json!({"metadata": {"name": "kube-dns", "namespace": "kube-system", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
            json!({"metadata": {"name": "x", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}}),
        ];
        let table = objects_table(info("ConfigMap"), &items, false, true, now);
        assert_eq!(
            table.render(false),
            "NAMESPACE     NAME       DATA   AGE\nkube-system   kube-dns   0      5s\ndefault       x          0      5s\n"
        );
    }

    #[test]
    fn errors_read_like_kubectls() {
        let nf = ApiError::NotFound {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "x".into(),
        };
        assert_eq!(
            api_error_line(&nf),
            "Error from server (NotFound): pods \"x\" not found"
        );
        let ae = ApiError::AlreadyExists {
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: "web".into(),
        };
        assert_eq!(
            api_error_line_in(&ae, Some("web.yaml")),
            "Error from server (AlreadyExists): error when applying \"web.yaml\": deployments \"web\" already exists"
        );
        let invalid = ApiError::Invalid {
            kind: "Deployment".into(),
            name: "web".into(),
            causes: vec![Cause::new("spec.replicas", "must be >= 0")],
        };
        assert_eq!(
            api_error_line(&invalid),
            "The Deployment \"web\" is invalid: spec.replicas: must be >= 0"
        );
        assert!(
            api_error_line_in(&invalid, Some("f.yaml"))
                .starts_with("Error from server (Invalid): error when applying \"f.yaml\": ")
        );
        let down = ApiError::unavailable(
            "no Corral server could serve the request (127.0.0.1:7070: refused)",
            None,
        );
        assert_eq!(
            api_error_line(&down),
            "Unable to connect to the server: no Corral server could serve the request (127.0.0.1:7070: refused)"
        );
        let conflict = ApiError::Conflict {
            kind: "Pod".into(),
            name: "x".into(),
            field: "metadata.resourceVersion".into(),
            expected: "3".into(),
            actual: "4".into(),
        };
        assert!(
            api_error_line(&conflict)
                .starts_with("Error from server (Conflict): conflict on Pod \"x\"")
        );
    }
}
