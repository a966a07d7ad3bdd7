//! `corralctl set image KIND/NAME... CONTAINER=IMAGE...`, as kubectl sets images: every container,
//! init container and ephemeral container of that name in the pod template (or the pod) gets the
//! image (`*` names them all). Prints `deployment.apps/web image updated`; nothing when every
//! image was already the one asked for; `error: unable to find container named "x"` (exit 1) for a
//! name no container has.
//!
//! The object is written with an update carrying the resourceVersion it was read at; when another
//! write came first it is read again and changed again, a few times.

use corral_api::ApiError;
use serde_json::Value;

use crate::args::SetImageArgs;
use crate::commands::{Ctx, fetch_named};
use crate::error::CliError;
use crate::output::resource_ref;

/// How often a write that lost to another one is tried again from a fresh read.
const CONFLICT_ATTEMPTS: usize = 5;

/// `CONTAINER=IMAGE` pairs, in the order given.
pub type ImagePairs = Vec<(String, String)>;

/// Splits kubectl's `RESOURCE... NAME=VALUE...` arguments: the resources, then the pairs. A pair
/// is an argument holding `=` (not first), or ending in `-`; resources must all come first.
pub fn split_args(args: &[String]) -> Result<(Vec<String>, ImagePairs), CliError> {
    let mut resources = Vec::new();
    let mut pair_args = Vec::new();
    for arg in args {
        let is_pair =
            (arg.contains('=') && !arg.starts_with('=')) || (arg.ends_with('-') && arg != "-");
        match (pair_args.is_empty(), is_pair) {
            (_, true) => pair_args.push(arg.as_str()),
            (true, false) => resources.push(arg.clone()),
            (false, false) => {
                return Err(CliError::Usage(format!(
                    "all resources must be specified before image changes: {arg}"
                )));
            }
        }
    }
    let mut pairs = Vec::new();
    let mut invalid = Vec::new();
    for arg in pair_args {
        match arg.split_once('=') {
            Some((name, image)) if !name.is_empty() => pairs.push((name.into(), image.into())),
            _ => invalid.push(format!("'{arg}'")),
        }
    }
    if !invalid.is_empty() {
        return Err(CliError::Usage(format!(
            "invalid image format: {}",
            invalid.join(", ")
        )));
    }
    Ok((resources, pairs))
}

/// Where the pod spec of `kind` lives: the pod's own spec, a template's, or a CronJob's job's.
pub fn pod_spec_pointer(kind: &str) -> Option<&'static str> {
    match kind {
        "Pod" => Some("/spec"),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template/spec"),
        "CronJob" => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// Sets the images of `obj`'s pod spec at `pointer`. Answers whether anything changed and the
/// names (in the order given) that matched no container.
pub fn set_images(
    obj: &mut Value,
    pointer: &str,
    pairs: &[(String, String)],
) -> (bool, Vec<String>) {
    let before = obj.clone();
    let mut missing = Vec::new();
    for (name, image) in pairs {
        let mut found = false;
        if let Some(spec) = obj.pointer_mut(pointer) {
            for list in ["initContainers", "containers", "ephemeralContainers"] {
                let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                    continue;
                };
                for c in containers {
                    if name == "*" || c.get("name").and_then(Value::as_str) == Some(name) {
                        c["image"] = Value::String(image.clone());
                        found = true;
                    }
                }
            }
        }
        if !found && !missing.contains(name) {
            missing.push(name.clone());
        }
    }
    (*obj != before, missing)
}

pub async fn run(ctx: &mut Ctx<'_>, args: &SetImageArgs) -> Result<(), CliError> {
    let (resources, pairs) = split_args(&args.args)?;
    if resources.is_empty() {
        return Err(CliError::Usage(
            "one or more resources must be specified as <resource> <name> or <resource>/<name>"
                .into(),
        ));
    }
    if pairs.is_empty() {
        return Err(CliError::Usage(
            "at least one image update is required".into(),
        ));
    }
    let fetched = fetch_named(ctx, &resources, false).await?;
    let info = fetched.info;
    let total = fetched.objects.len() + fetched.failed;
    let mut failed = fetched.failed;
    let Some(pointer) = pod_spec_pointer(info.kind) else {
        for obj in &fetched.objects {
            ctx.warn(&format!(
                "error: {}/{} the object is not a pod or does not have a pod template",
                info.plural,
                corral_api::object::name(obj)
            ))?;
        }
        return Err(CliError::Reported {
            failed: total,
            total,
        });
    };
    for obj in fetched.objects {
        let name = corral_api::object::name(&obj).to_string();
        let namespace = corral_api::object::namespace(&obj).to_string();
        let mut current = obj;
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let mut next = current.clone();
            let (changed, missing) = set_images(&mut next, pointer, &pairs);
            let written = if changed {
                match ctx.client.update(&next).await {
                    Ok(_) => Ok(true),
                    Err(ApiError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                        match ctx.client.get(info.kind, &namespace, &name).await {
                            Ok(fresh) => {
                                current = fresh;
                                continue;
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Err(e) => Err(e),
                }
            } else {
                Ok(false)
            };
            let mut bad = !missing.is_empty();
            match written {
                Ok(true) => ctx.say(&format!("{}/{name} image updated", resource_ref(info)))?,
                Ok(false) => {}
                Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
                Err(e) => {
                    bad = true;
                    ctx.warn(&crate::output::api_error_line(&e))?;
                }
            }
            for m in missing {
                ctx.warn(&format!("error: unable to find container named \"{m}\""))?;
            }
            failed += usize::from(bad);
            break;
        }
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pair(n: &str, i: &str) -> (String, String) {
        (n.into(), i.into())
    }

    #[test]
    fn resources_come_first_then_pairs() {
        let (r, p) = split_args(&strings(&[
            "deploy/web",
            "nginx=nginx:1.28",
            "init=busybox",
        ]))
        .expect("valid");
        assert_eq!(r, strings(&["deploy/web"]));
        assert_eq!(p, [pair("nginx", "nginx:1.28"), pair("init", "busybox")]);
        let (r, p) = split_args(&strings(&["deployment", "web", "*=img=odd"])).expect("valid");
        assert_eq!(r, strings(&["deployment", "web"]));
        assert_eq!(p, [pair("*", "img=odd")]);

        let err = split_args(&strings(&["a=b", "deploy/web"])).expect_err("resource after pair");
        assert_eq!(
            err.to_string(),
            "error: all resources must be specified before image changes: deploy/web"
        );
        let err = split_args(&strings(&["deploy/web", "nginx-"])).expect_err("no removal");
        assert_eq!(err.to_string(), "error: invalid image format: 'nginx-'");
        // A leading '=' is no pair, so it is a resource name.
        let (r, p) = split_args(&strings(&["=x"])).expect("valid");
        assert_eq!((r, p.len()), (strings(&["=x"]), 0));
    }

    #[test]
    fn pod_templates_are_found_per_kind() {
        assert_eq!(pod_spec_pointer("Pod"), Some("/spec"));
        assert_eq!(pod_spec_pointer("Deployment"), Some("/spec/template/spec"));
        assert_eq!(pod_spec_pointer("DaemonSet"), Some("/spec/template/spec"));
        assert_eq!(
            pod_spec_pointer("CronJob"),
            Some("/spec/jobTemplate/spec/template/spec")
        );
        assert_eq!(pod_spec_pointer("ConfigMap"), None);
    }

    fn deployment() -> Value {
        json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [{"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]
        }}}})
    }

    #[test]
    fn images_are_set_in_containers_and_init_containers() {
        let mut d = deployment();
        let (changed, missing) = set_images(
            &mut d,
            "/spec/template/spec",
            &[
                pair("app", "app:2"),
                pair("init", "busybox:2"),
                pair("nope", "x"),
            ],
        );
        assert!(changed);
        assert_eq!(missing, ["nope"]);
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "app:2");
        assert_eq!(spec["containers"][1]["image"], "side:1");
        assert_eq!(spec["initContainers"][0]["image"], "busybox:2");

        let (changed, missing) = set_images(&mut d, "/spec/template/spec", &[pair("app", "app:2")]);
        assert!(
            !changed && missing.is_empty(),
            "the same image changes nothing"
        );

        let (changed, _) = set_images(&mut d, "/spec/template/spec", &[pair("*", "all:3")]);
        assert!(changed);
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(
            (
                &spec["containers"][0]["image"],
                &spec["containers"][1]["image"],
                &spec["initContainers"][0]["image"]
            ),
            (&json!("all:3"), &json!("all:3"), &json!("all:3"))
        );
    }

    #[test]
    fn an_object_without_a_pod_spec_matches_nothing() {
        let mut cm = json!({"kind": "ConfigMap"});
        let (changed, missing) = set_images(&mut cm, "/spec", &[pair("a", "b")]);
        assert_eq!((changed, missing), (false, strings(&["a"])));
    }
}
