//! `corralctl scale KIND/NAME... --replicas N [--current-replicas N] [--resource-version RV]`, as
//! kubectl scales: a JSON merge patch of `spec.replicas`, printing `deployment.apps/web scaled`.
//!
//! With a precondition the object is read and checked first (kubectl's `Expected replicas to be 2,
//! was 3`), and the patch carries the resourceVersion read, so a write in between is a Conflict;
//! the command then reads again and checks again, a few times.

use corral_api::ApiError;
use corral_api::kinds::KindInfo;
use serde_json::{Value, json};

use crate::args::ScaleArgs;
use crate::commands::{Ctx, fetch_named, group_resource, targets};
use crate::error::CliError;
use crate::output::resource_ref;

/// The kinds with a size.
pub const SCALABLE: &[&str] = &["Deployment", "ReplicaSet", "StatefulSet"];

/// How often a write that lost to another one is tried again from a fresh read.
const CONFLICT_ATTEMPTS: usize = 5;

/// What must hold before scaling.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The current `spec.replicas`.
    pub replicas: Option<i64>,
    /// The current `metadata.resourceVersion`.
    pub resource_version: Option<String>,
}

impl Preconditions {
    fn is_empty(&self) -> bool {
        self.replicas.is_none() && self.resource_version.is_none()
    }
}

/// `spec.replicas`; 1 when unset (the API's default).
pub fn replicas_of(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// kubectl's precondition error when `obj` does not satisfy `pre`.
pub fn check_preconditions(obj: &Value, pre: &Preconditions) -> Result<(), String> {
    if let Some(want) = pre.replicas {
        let actual = replicas_of(obj);
        if actual != want {
            return Err(format!("Expected replicas to be {want}, was {actual}"));
        }
    }
    if let Some(want) = &pre.resource_version {
        let actual = obj
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if actual != want {
            return Err(format!(
                "Expected resource version to be {want}, was {actual}"
            ));
        }
    }
    Ok(())
}

/// The merge patch setting the size, guarded by `resource_version` when given.
pub fn scale_patch(replicas: i64, resource_version: Option<&str>) -> Value {
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    patch
}

pub async fn run(ctx: &mut Ctx<'_>, args: &ScaleArgs) -> Result<(), CliError> {
    let replicas = match args.replicas {
        Some(n) if n >= 0 => n,
        _ => {
            return Err(CliError::Usage(
                "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0"
                    .into(),
            ));
        }
    };
    let pre = Preconditions {
        replicas: (args.current_replicas >= 0).then_some(args.current_replicas),
        resource_version: args.resource_version.clone().filter(|rv| !rv.is_empty()),
    };
    if let Some((first, rest)) = args.args.split_first() {
        let (info, _) = targets(first, rest)?;
        check_scalable(info)?;
    }
    let fetched = fetch_named(ctx, &args.args, false).await?;
    let info = fetched.info;
    let total = fetched.objects.len() + fetched.failed;
    let mut failed = fetched.failed;
    for obj in fetched.objects {
        let name = corral_api::object::name(&obj).to_string();
        match scale_one(ctx, info, obj, replicas, &pre).await {
            Ok(()) => ctx.say(&format!("{}/{name} scaled", resource_ref(info)))?,
            Err(e @ CliError::Api(ApiError::Unavailable { .. })) => return Err(e),
            Err(e) => {
                failed += 1;
                ctx.warn(&e.to_string())?;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

fn check_scalable(info: &KindInfo) -> Result<(), CliError> {
    if SCALABLE.contains(&info.kind) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "cannot scale {}: only deployments, replicasets and statefulsets have a size",
            group_resource(info)
        )))
    }
}

async fn scale_one(
    ctx: &mut Ctx<'_>,
    info: &KindInfo,
    mut current: Value,
    replicas: i64,
    pre: &Preconditions,
) -> Result<(), CliError> {
    let namespace = corral_api::object::namespace(&current).to_string();
    let name = corral_api::object::name(&current).to_string();
    if pre.is_empty() {
        ctx.client
            .patch(
                info.kind,
                &namespace,
                &name,
                &scale_patch(replicas, None),
                false,
            )
            .await?;
        return Ok(());
    }
    for attempt in 1..=CONFLICT_ATTEMPTS {
        check_preconditions(&current, pre).map_err(CliError::Usage)?;
        let rv = current
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let patch = scale_patch(replicas, Some(rv.as_str()).filter(|rv| !rv.is_empty()));
        match ctx
            .client
            .patch(info.kind, &namespace, &name, &patch, false)
            .await
        {
            Ok(_) => return Ok(()),
            Err(ApiError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                current = ctx.client.get(info.kind, &namespace, &name).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: Option<i64>, rv: &str) -> Value {
        let mut d = json!({"kind": "Deployment", "metadata": {"name": "web", "resourceVersion": rv}, "spec": {}});
        if let Some(n) = replicas {
            d["spec"]["replicas"] = json!(n);
        }
        d
    }

    #[test]
    fn the_size_defaults_to_one() {
        assert_eq!(replicas_of(&deployment(None, "1")), 1);
        assert_eq!(replicas_of(&deployment(Some(0), "1")), 0);
        assert_eq!(replicas_of(&deployment(Some(7), "1")), 7);
    }

    #[test]
    fn preconditions_fail_with_kubectls_words() {
        let d = deployment(Some(3), "12");
        assert_eq!(check_preconditions(&d, &Preconditions::default()), Ok(()));
        let pre = Preconditions {
            replicas: Some(3),
            resource_version: Some("12".into()),
        };
        assert_eq!(check_preconditions(&d, &pre), Ok(()));
        let pre = Preconditions {
            replicas: Some(2),
            ..Default::default()
        };
        assert_eq!(
            check_preconditions(&d, &pre),
            Err("Expected replicas to be 2, was 3".into())
        );
        let pre = Preconditions {
            resource_version: Some("11".into()),
            ..Default::default()
        };
        assert_eq!(
            check_preconditions(&d, &pre),
            Err("Expected resource version to be 11, was 12".into())
        );
    }

    #[test]
    fn the_patch_sets_replicas_and_guards_on_the_version_read() {
        assert_eq!(scale_patch(4, None), json!({"spec": {"replicas": 4}}));
        assert_eq!(
            scale_patch(0, Some("9")),
            json!({"spec": {"replicas": 0}, "metadata": {"resourceVersion": "9"}})
        );
    }

    #[test]
    fn only_kinds_with_a_size_scale() {
        for kind in SCALABLE {
            let info = corral_api::kinds::kind_info(kind).expect("registered");
            assert!(check_scalable(info).is_ok(), "{kind}");
        }
        let pod = corral_api::kinds::kind_info("Pod").expect("registered");
        let err = check_scalable(pod).expect_err("pods have no size");
        assert!(
            err.to_string().starts_with("error: cannot scale pods"),
            "{err}"
        );
        let ds = corral_api::kinds::kind_info("DaemonSet").expect("registered");
        assert!(
            check_scalable(ds)
                .expect_err("one pod per node")
                .to_string()
                .contains("daemonsets.apps")
        );
    }
}
