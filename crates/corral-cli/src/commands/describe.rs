//! `corralctl describe KIND [NAME]`: a human summary of objects in kubectl's shape (Name,
//! Namespace, Labels, Annotations, CreationTimestamp, the spec and status as indented YAML), then
//! the Events about the object. Without a name, every object of the kind in the namespace.

use corral_api::ApiError;
use corral_api::kinds::KindInfo;
use corral_client::ListOptions;
use jiff::Timestamp;
use serde_json::Value;

use crate::args::DescribeArgs;
use crate::columns::s;
use crate::commands::{Ctx, targets};
use crate::error::CliError;
use crate::output::{api_error_line, yaml_text};
use crate::table::{Table, age};

/// Where values start: after the longest key kubectl puts in the header, `CreationTimestamp:`.
const KEY_WIDTH: usize = 20;

pub async fn run(ctx: &mut Ctx<'_>, args: &DescribeArgs) -> Result<(), CliError> {
    let rest: Vec<String> = args.name.iter().cloned().collect();
    let (info, names) = targets(&args.kind, &rest)?;
    let namespace = ctx.object_namespace(info);
    let mut objects = Vec::new();
    let mut failed = 0;
    if names.is_empty() {
        let list = ctx
            .client
            .list(
                info.kind,
                ctx.list_namespace(info).as_deref(),
                &ListOptions::default(),
            )
            .await?;
        objects = list.items;
        objects.sort_by(|a, b| corral_api::object::name(a).cmp(corral_api::object::name(b)));
        if objects.is_empty() {
            let scope = match ctx.list_namespace(info) {
                Some(ns) => format!(" in {ns} namespace"),
                None => String::new(),
            };
            ctx.warn(&format!("No resources found{scope}."))?;
        }
    } else {
        for name in &names {
            match ctx.client.get(info.kind, &namespace, name).await {
                Ok(o) => objects.push(o),
                Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
                Err(e) => {
                    failed += 1;
                    ctx.warn(&api_error_line(&e))?;
                }
            }
        }
    }
    for (i, object) in objects.iter().enumerate() {
        let events = events_about(ctx, info, object).await;
        let mut text = describe_text(info, object, &events, Timestamp::now());
        if i + 1 < objects.len() {
            text.push('\n');
        }
        ctx.out
            .write_all(text.as_bytes())
            .map_err(CliError::Output)?;
    }
    if failed > 0 {
        return Err(CliError::Reported {
            failed,
            total: names.len(),
        });
    }
    Ok(())
}

/// The Events whose involvedObject is `object`, oldest first; an error message when they cannot
/// be listed.
async fn events_about(
    ctx: &Ctx<'_>,
    info: &KindInfo,
    object: &Value,
) -> Result<Vec<Value>, String> {
    let name = corral_api::object::name(object);
    let namespace = corral_api::object::namespace(object);
    let scope = (!namespace.is_empty()).then_some(namespace);
    let by_name = ListOptions {
        field_selector: format!("involvedObject.name={name}"),
        ..Default::default()
    };
    let list = match ctx.client.list("Event", scope, &by_name).await {
        Ok(list) => list,
        // A server that cannot select on this field: select here instead.
        Err(ApiError::BadRequest { .. }) => ctx
            .client
            .list("Event", scope, &ListOptions::default())
            .await
            .map_err(|e| api_error_line(&e))?,
        Err(e) => return Err(api_error_line(&e)),
    };
    let mut events: Vec<Value> = list
        .items
        .into_iter()
        .filter(|e| {
            s(e, "/involvedObject/name") == name
                && matches!(s(e, "/involvedObject/kind").as_str(), k if k.is_empty() || k == info.kind)
                && matches!(s(e, "/involvedObject/namespace").as_str(), ns if ns.is_empty() || ns == namespace)
        })
        .collect();
    events.sort_by_key(|e| last_seen(e).and_then(|t| t.parse::<Timestamp>().ok()));
    Ok(events)
}

fn last_seen(event: &Value) -> Option<&str> {
    [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| {
        event
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    })
}

/// The whole description of one object.
pub fn describe_text(
    info: &KindInfo,
    obj: &Value,
    events: &Result<Vec<Value>, String>,
    now: Timestamp,
) -> String {
    let mut out = String::new();
    if info.kind == "Pod" {
        let labels: Vec<String> = corral_api::object::labels(obj)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let annotations: Vec<String> = corral_api::object::annotations(obj)
            .iter()
            .filter(|(k, _)| k.as_str() != corral_client::LAST_APPLIED_ANNOTATION)
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        out.push_str(&super::describe_pod::pod_text(obj, &labels, &annotations));
        events_section(&mut out, events, now);
        return out;
    }
    field(&mut out, "Name", corral_api::object::name(obj));
    if info.namespaced {
        field(&mut out, "Namespace", corral_api::object::namespace(obj));
    }
    let labels: Vec<String> = corral_api::object::labels(obj)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    multiline(&mut out, "Labels", &labels);
    let annotations: Vec<String> = corral_api::object::annotations(obj)
        .iter()
        .filter(|(k, _)| k.as_str() != corral_client::LAST_APPLIED_ANNOTATION)
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    multiline(&mut out, "Annotations", &annotations);
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    field(
        &mut out,
        "CreationTimestamp",
        &created.map(rfc1123).unwrap_or_else(|| "<unset>".into()),
    );
    if let Some(deleted) = corral_api::object::deletion_timestamp(obj) {
        field(
            &mut out,
            "Terminating",
            &format!("since {}", rfc1123(deleted)),
        );
    }
    let controller = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| {
            refs.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        });
    if let Some(owner) = controller {
        field(
            &mut out,
            "Controlled By",
            &format!("{}/{}", s(owner, "/kind"), s(owner, "/name")),
        );
    }
    let finalizers = corral_api::object::finalizers(obj);
    if !finalizers.is_empty() {
        field(
            &mut out,
            "Finalizers",
            &format!("[{}]", finalizers.join(" ")),
        );
    }

    // The body: spec first, status last, the other top-level fields (data, type, ...) between.
    let mut keys: Vec<&String> = obj
        .as_object()
        .map(|m| {
            m.keys()
                .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                .collect()
        })
        .unwrap_or_default();
    keys.sort_by_key(|k| (k.as_str() != "spec", k.as_str() == "status", k.as_str()));
    for key in keys {
        let value = &obj[key.as_str()];
        let title = title(key);
        match value {
            Value::Object(map) if map.is_empty() => field(&mut out, &title, "<none>"),
            Value::Array(items) if items.is_empty() => field(&mut out, &title, "<none>"),
            Value::Object(map) if info.kind == "Secret" && key == "data" => {
                out.push_str(&format!("{title}:\n"));
                for (k, v) in map {
                    out.push_str(&format!(
                        "  {k}:  {} bytes\n",
                        decoded_len(v.as_str().unwrap_or_default())
                    ));
                }
            }
            Value::Object(_) | Value::Array(_) => {
                out.push_str(&format!("{title}:\n"));
                for line in yaml_text(value).lines() {
                    out.push_str(&format!("  {line}\n"));
                }
            }
            Value::String(text) => field(&mut out, &title, text),
            Value::Null => field(&mut out, &title, "<none>"),
            other => field(&mut out, &title, &other.to_string()),
        }
    }

    events_section(&mut out, events, now);
    out
}

fn events_section(out: &mut String, events: &Result<Vec<Value>, String>, now: Timestamp) {
    match events {
        Ok(events) if events.is_empty() => field(out, "Events", "<none>"),
        Ok(events) => {
            out.push_str("Events:\n");
            let mut table = Table::new(
                ["Type", "Reason", "Age", "From", "Message"]
                    .map(String::from)
                    .to_vec(),
            );
            table.push(
                ["----", "------", "----", "----", "-------"]
                    .map(String::from)
                    .to_vec(),
            );
            for e in events {
                table.push(vec![
                    s(e, "/type"),
                    s(e, "/reason"),
                    event_age(e, now),
                    event_source(e),
                    s(e, "/message"),
                ]);
            }
            for line in table.render(false).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        }
        Err(message) => field(out, "Events", &format!("<cannot list: {message}>")),
    }
}

fn field(out: &mut String, key: &str, value: &str) {
    let label = format!("{key}:");
    // Long keys (`AllowVolumeExpansion:`) still get two spaces before their value.
    let width = KEY_WIDTH.max(label.len() + 2);
    out.push_str(&format!("{label:<width$}{value}\n"));
}

fn multiline(out: &mut String, key: &str, lines: &[String]) {
    match lines.split_first() {
        None => field(out, key, "<none>"),
        Some((first, rest)) => {
            field(out, key, first);
            for line in rest {
                out.push_str(&format!("{:KEY_WIDTH$}{line}\n", ""));
            }
        }
    }
}

/// `spec` → `Spec`, `binaryData` → `BinaryData`.
fn title(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// kubectl's describe time: `Thu, 01 Jan 2026 00:00:00 +0000`; the text itself when unreadable.
fn rfc1123(text: &str) -> String {
    match text.parse::<Timestamp>() {
        Ok(t) => t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string(),
        Err(_) => text.to_string(),
    }
}

/// The length of base64 `text` once decoded.
fn decoded_len(text: &str) -> usize {
    let text = text.trim();
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

fn event_age(event: &Value, now: Timestamp) -> String {
    let last = age(last_seen(event), now);
    let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
    match event.get("firstTimestamp").and_then(Value::as_str) {
        Some(first) if count > 1 => format!("{last} (x{count} over {})", age(Some(first), now)),
        _ => last,
    }
}

fn event_source(event: &Value) -> String {
    let component = s(event, "/source/component");
    if component.is_empty() {
        s(event, "/reportingComponent")
    } else {
        component
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn info(kind: &str) -> &'static KindInfo {
        corral_api::kinds::kind_info(kind).expect("registered")
    }

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().expect("valid")
    }

    #[test]
    fn an_object_reads_like_kubectl_describe() {
        let pod = json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": true}]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"}
        });
        let text = describe_text(info("ReplicaSet"), &pod, &Ok(vec![]), now());
        assert_eq!(
            text,
            "Name:               web-0\n\
             Namespace:          default\n\
             Labels:             app=web\n\
             \x20                   tier=front\n\
             Annotations:        <none>\n\
             CreationTimestamp:  Thu, 01 Jan 2026 00:00:00 +0000\n\
             Controlled By:      StatefulSet/web\n\
             Spec:\n\
             \x20 containers:\n\
             \x20 - image: busybox\n\
             \x20   name: c\n\
             Status:\n\
             \x20 phase: Running\n\
             Events:             <none>\n"
        );
    }

    #[test]
    fn events_are_a_table_with_repeat_counts() {
        let node = json!({"kind": "Node", "metadata": {"name": "n1"}});
        let events = vec![
            json!({"type": "Warning", "reason": "NotReady", "message": "heartbeat missed",
            "count": 3, "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:09:00Z",
            "source": {"component": "corral-node-lifecycle"}}),
        ];
        let text = describe_text(info("Node"), &node, &Ok(events), now());
        assert!(!text.contains("Namespace:"), "{text}");
        assert!(
            text.ends_with(
                "Events:\n\
                 \x20 Type      Reason     Age                 From                    Message\n\
                 \x20 ----      ------     ----                ----                    -------\n\
                 \x20 Warning   NotReady   60s (x3 over 10m)   corral-node-lifecycle   heartbeat missed\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn secrets_show_sizes_not_values() {
        let secret = json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
            "type": "Opaque", "data": {"password": "cGFzc3dvcmQ="}});
        let text = describe_text(info("Secret"), &secret, &Err("unreachable".into()), now());
        assert!(text.contains("Data:\n  password:  8 bytes\n"), "{text}");
        assert!(text.contains("Type:               Opaque\n"), "{text}");
        assert!(
            text.contains("Events:             <cannot list: unreachable>"),
            "{text}"
        );
        assert!(!text.contains("cGFzc3dvcmQ="));
    }
}
