//! `corralctl rollout status|history|undo|pause|resume|restart`, as kubectl does them.
//!
//! - `status KIND/NAME [--watch=false] [--timeout D] [--revision N]`: lists the object, then watches
//!   it, printing kubectl's progress line whenever it changes (`Waiting for deployment "web"
//!   rollout to finish: 1 out of 3 new replicas have been updated...`) until the rollout is done
//!   (`deployment "web" successfully rolled out`). A Deployment past its progress deadline, a
//!   deleted object, or the timeout end it with an error. Deployments, DaemonSets and StatefulSets.
//! - `history deployment/NAME [--revision N]`: the REVISION / CHANGE-CAUSE table from the
//!   ReplicaSets the Deployment controls (`deployment.kubernetes.io/revision`,
//!   `kubernetes.io/change-cause`), or one revision's pod template. `history statefulset/NAME`:
//!   the same from the ControllerRevisions the StatefulSet controls (their `revision` and
//!   annotations).
//! - `undo deployment/NAME [--to-revision N]`: kubectl's rollback: the template of that revision's
//!   ReplicaSet (default: the previous revision), without its `pod-template-hash` label, goes back
//!   into the Deployment with an update carrying the resourceVersion read. `undo
//!   statefulset/NAME`: the template of that ControllerRevision (default: the one before the
//!   newest) goes back into the StatefulSet the same way.
//! - `pause` / `resume deployment/NAME`: `spec.paused`.
//! - `restart KIND/NAME`: the `kubectl.kubernetes.io/restartedAt` annotation on the pod template
//!   (Deployments, DaemonSets, StatefulSets).
//!
//! The pure parts (status texts, history, the rollback, the patches) are functions of objects,
//! tested here; the commands around them only read and write through the API.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use corral_api::ApiError;
use corral_api::kinds::KindInfo;
use corral_client::{EventType, ListOptions};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::args::{
    RolloutCommand, RolloutHistoryArgs, RolloutStatusArgs, RolloutTargetArgs, RolloutUndoArgs,
};
use crate::commands::{Ctx, fetch_named, group_resource, targets};
use crate::error::CliError;
use crate::output::{api_error_line, resource_ref};

/// The revision a Deployment and its ReplicaSets carry.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// Why a revision was made (`kubectl ... --record`, or set by hand).
pub const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
/// The label the Deployment controller adds to each ReplicaSet's template.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// What `rollout restart` sets on the pod template.
pub const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Annotations a rollback keeps from the Deployment instead of taking them from the ReplicaSet.
const ANNOTATIONS_TO_SKIP: &[&str] = &[
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

/// How often a write that lost to another one is tried again from a fresh read.
const CONFLICT_ATTEMPTS: usize = 5;

pub async fn run(ctx: &mut Ctx<'_>, command: &RolloutCommand) -> Result<(), CliError> {
    match command {
        RolloutCommand::Status(a) => status(ctx, a).await,
        RolloutCommand::History(a) => history(ctx, a).await,
        RolloutCommand::Undo(a) => undo(ctx, a).await,
        RolloutCommand::Pause(a) => patch_each(ctx, a, Change::Pause).await,
        RolloutCommand::Resume(a) => patch_each(ctx, a, Change::Resume).await,
        RolloutCommand::Restart(a) => patch_each(ctx, a, Change::Restart).await,
    }
}

// ---------------------------------------------------------------------------------------------
// status

/// One reading of a rollout: kubectl's line, and whether the rollout is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutStatus {
    pub message: String,
    pub done: bool,
}

/// Reads an object's rollout status; the error is the message the command fails with.
pub type StatusViewer = fn(&Value, i64) -> Result<RolloutStatus, String>;

/// The status viewer for `kind`, if it has rollouts.
pub fn status_viewer(kind: &str) -> Option<StatusViewer> {
    match kind {
        "Deployment" => Some(deployment_status),
        "DaemonSet" => Some(daemon_set_status),
        "StatefulSet" => Some(stateful_set_status),
        _ => None,
    }
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn waiting(message: String) -> Result<RolloutStatus, String> {
    Ok(RolloutStatus {
        message,
        done: false,
    })
}

fn finished(message: String) -> Result<RolloutStatus, String> {
    Ok(RolloutStatus {
        message,
        done: true,
    })
}

/// `deployment.kubernetes.io/revision` of an object: 0 when absent, an error when not a number.
pub fn revision_of(obj: &Value) -> Result<i64, String> {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION_ANNOTATION))
    {
        None | Some(Value::Null) => Ok(0),
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| format!("strconv.ParseInt: parsing \"{s}\": invalid syntax")),
        Some(other) => Err(format!("the revision annotation {other} is not a string")),
    }
}

/// The reason of the status condition of `type_`, if there is one.
fn condition_reason<'a>(obj: &'a Value, type_: &str) -> Option<&'a str> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        .map(|c| text(c, "/reason"))
}

/// kubectl's Deployment status: observedGeneration first, then the Progressing condition, the
/// updated, old and available replica counts.
pub fn deployment_status(d: &Value, revision: i64) -> Result<RolloutStatus, String> {
    let name = corral_api::object::name(d);
    if revision > 0 {
        let current = revision_of(d)
            .map_err(|e| format!("cannot get the revision of deployment \"{name}\": {e}"))?;
        if revision != current {
            return Err(format!(
                "desired revision ({revision}) is different from the running revision ({current})"
            ));
        }
    }
    if corral_api::object::generation(d) > int(d, "/status/observedGeneration") {
        return waiting("Waiting for deployment spec update to be observed...".into());
    }
    if condition_reason(d, "Progressing") == Some("ProgressDeadlineExceeded") {
        return Err(format!(
            "deployment \"{name}\" exceeded its progress deadline"
        ));
    }
    // The API defaults spec.replicas to 1.
    let wanted = d
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int(d, "/status/updatedReplicas");
    let replicas = int(d, "/status/replicas");
    let available = int(d, "/status/availableReplicas");
    if updated < wanted {
        return waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ));
    }
    if replicas > updated {
        return waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ));
    }
    if available < updated {
        return waiting(format!(
            "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available..."
        ));
    }
    finished(format!("deployment \"{name}\" successfully rolled out"))
}

/// The update strategy's type, `RollingUpdate` (the API's default) when unset.
fn strategy_type(obj: &Value) -> &str {
    match text(obj, "/spec/updateStrategy/type") {
        "" => "RollingUpdate",
        t => t,
    }
}

/// kubectl's DaemonSet status.
pub fn daemon_set_status(ds: &Value, _revision: i64) -> Result<RolloutStatus, String> {
    if strategy_type(ds) != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let name = corral_api::object::name(ds);
    if corral_api::object::generation(ds) > int(ds, "/status/observedGeneration") {
        return waiting("Waiting for daemon set spec update to be observed...".into());
    }
    let desired = int(ds, "/status/desiredNumberScheduled");
    let updated = int(ds, "/status/updatedNumberScheduled");
    let available = int(ds, "/status/numberAvailable");
    if updated < desired {
        return waiting(format!(
            "Waiting for daemon set \"{name}\" rollout to finish: {updated} out of {desired} new pods have been updated..."
        ));
    }
    if available < desired {
        return waiting(format!(
            "Waiting for daemon set \"{name}\" rollout to finish: {available} of {desired} updated pods are available..."
        ));
    }
    finished(format!("daemon set \"{name}\" successfully rolled out"))
}

/// kubectl's StatefulSet status. The API defaults a RollingUpdate strategy's partition to 0, so
/// a StatefulSet whose pods are all ready reports the partitioned roll out.
pub fn stateful_set_status(sts: &Value, _revision: i64) -> Result<RolloutStatus, String> {
    if strategy_type(sts) != "RollingUpdate" {
        return Err("rollout status is only available for RollingUpdate strategy type".into());
    }
    let observed = int(sts, "/status/observedGeneration");
    if observed == 0 || corral_api::object::generation(sts) > observed {
        return waiting("Waiting for statefulset spec update to be observed...".into());
    }
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = int(sts, "/status/readyReplicas");
    if ready < replicas {
        return waiting(format!(
            "Waiting for {} pods to be ready...",
            replicas - ready
        ));
    }
    let updated = int(sts, "/status/updatedReplicas");
    if sts
        .pointer("/spec/updateStrategy/rollingUpdate")
        .is_some_and(Value::is_object)
    {
        let partition = int(sts, "/spec/updateStrategy/rollingUpdate/partition");
        if updated < replicas - partition {
            return waiting(format!(
                "Waiting for partitioned roll out to finish: {updated} out of {} new pods have been updated...",
                replicas - partition
            ));
        }
        return finished(format!(
            "partitioned roll out complete: {updated} new pods have been updated..."
        ));
    }
    let update_revision = text(sts, "/status/updateRevision");
    let current_revision = text(sts, "/status/currentRevision");
    if update_revision != current_revision {
        return waiting(format!(
            "waiting for statefulset rolling update to complete {updated} pods at revision {update_revision}..."
        ));
    }
    finished(format!(
        "statefulset rolling update complete {} pods at revision {current_revision}...",
        int(sts, "/status/currentReplicas")
    ))
}

/// `Deployment.apps`, as kubectl names a kind in "not implemented" errors.
fn group_kind(info: &KindInfo) -> String {
    match info.group() {
        "" => info.kind.to_string(),
        group => format!("{}.{group}", info.kind),
    }
}

async fn status(ctx: &mut Ctx<'_>, args: &RolloutStatusArgs) -> Result<(), CliError> {
    if args.revision < 0 {
        return Err(CliError::Usage(format!(
            "revision must be a positive integer: {}",
            args.revision
        )));
    }
    let Some((first, rest)) = args.args.split_first() else {
        return Err(CliError::Usage("required resource not specified".into()));
    };
    let (info, names) = targets(first, rest)?;
    let viewer = status_viewer(info.kind).ok_or_else(|| {
        CliError::Usage(format!(
            "no status viewer has been implemented for {}",
            group_kind(info)
        ))
    })?;
    let namespace = ctx.object_namespace(info);
    let name = match names.as_slice() {
        [one] => one.clone(),
        [] => {
            let fetched = fetch_named(ctx, &args.args, true).await?;
            match fetched.objects.as_slice() {
                [one] => corral_api::object::name(one).to_string(),
                many => return Err(only_one(many.len())),
            }
        }
        many => return Err(only_one(many.len())),
    };
    // As kubectl reads the object first: a missing one is NotFound, not an endless wait.
    ctx.client.get(info.kind, &namespace, &name).await?;
    let watching = watch_status(ctx, info, &namespace, &name, viewer, args);
    if args.timeout.is_zero() {
        watching.await
    } else {
        match tokio::time::timeout(args.timeout, watching).await {
            Ok(result) => result,
            Err(_) => Err(CliError::Usage(
                "timed out waiting for the condition".into(),
            )),
        }
    }
}

fn only_one(found: usize) -> CliError {
    CliError::Usage(format!(
        "rollout status is only supported on individual resources and resource collections - {found} resources were found"
    ))
}

/// Lists the object, then watches it (listing again when the watch expires), printing each new
/// status line, until the rollout is done (or at once without `--watch`).
async fn watch_status(
    ctx: &mut Ctx<'_>,
    info: &KindInfo,
    namespace: &str,
    name: &str,
    viewer: StatusViewer,
    args: &RolloutStatusArgs,
) -> Result<(), CliError> {
    let options = ListOptions {
        field_selector: format!("metadata.name={name}"),
        ..Default::default()
    };
    let mut last: Option<String> = None;
    loop {
        let (list, mut stream) = ctx
            .client
            .list_then_watch(info.kind, Some(namespace), &options, 0)
            .await?;
        for obj in list
            .items
            .iter()
            .filter(|o| corral_api::object::name(o) == name)
        {
            if show_status(ctx, viewer, obj, args, &mut last)? {
                return Ok(());
            }
        }
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if event.r#type == EventType::Bookmark
                        || corral_api::object::name(&event.object) != name
                    {
                        continue;
                    }
                    if event.r#type == EventType::Deleted {
                        return Err(CliError::Usage("object has been deleted".into()));
                    }
                    if show_status(ctx, viewer, &event.object, args, &mut last)? {
                        return Ok(());
                    }
                }
                // The history moved past us: list again.
                Err(ApiError::Expired { .. }) => break,
                Err(e @ ApiError::Unavailable { .. }) => {
                    ctx.warn(&format!("warning: {}; still trying", api_error_line(&e)))?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Prints the object's status line unless it is the line printed last; answers whether to stop.
fn show_status(
    ctx: &mut Ctx<'_>,
    viewer: StatusViewer,
    obj: &Value,
    args: &RolloutStatusArgs,
    last: &mut Option<String>,
) -> Result<bool, CliError> {
    let status = viewer(obj, args.revision).map_err(CliError::Usage)?;
    if last.as_deref() != Some(status.message.as_str()) {
        ctx.say(&status.message)?;
        ctx.out.flush().map_err(CliError::Output)?;
        *last = Some(status.message);
    }
    Ok(status.done || !args.watch)
}

// ---------------------------------------------------------------------------------------------
// history

/// Whether `obj` has a controller ownerReference to the object with `uid`.
pub fn is_controlled_by(obj: &Value, uid: &str) -> bool {
    !uid.is_empty()
        && obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|refs| {
                refs.iter().any(|r| {
                    r.get("controller").and_then(Value::as_bool) == Some(true)
                        && r.get("uid").and_then(Value::as_str) == Some(uid)
                })
            })
}

/// The ReplicaSets among `replica_sets` that `deployment` controls.
pub fn owned_replica_sets<'a>(deployment: &Value, replica_sets: &'a [Value]) -> Vec<&'a Value> {
    let uid = corral_api::object::uid(deployment);
    replica_sets
        .iter()
        .filter(|rs| is_controlled_by(rs, uid))
        .collect()
}

/// Revision → that revision's pod template, carrying the ReplicaSet's change cause as an
/// annotation. A ReplicaSet whose revision does not parse is left out (kubectl warns and skips it).
pub fn revisions(replica_sets: &[&Value]) -> BTreeMap<i64, Value> {
    let mut history = BTreeMap::new();
    for rs in replica_sets {
        let Ok(revision) = revision_of(rs) else {
            continue;
        };
        let mut template = rs
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(cause) = rs
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            && let Some(t) = template.as_object_mut()
        {
            let meta = t.entry("metadata").or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            let annotations = &mut meta["annotations"];
            if !annotations.is_object() {
                *annotations = json!({});
            }
            annotations[CHANGE_CAUSE_ANNOTATION] = Value::String(cause.to_string());
        }
        history.insert(revision, template);
    }
    history
}

/// What `rollout history` prints after the object's name: the REVISION / CHANGE-CAUSE table, or
/// with `revision` > 0 that revision's pod template.
pub fn history_text(history: &BTreeMap<i64, Value>, revision: i64) -> Result<String, String> {
    if history.is_empty() {
        return Ok("No rollout history found.".into());
    }
    if revision > 0 {
        let template = history
            .get(&revision)
            .ok_or_else(|| "unable to find the specified revision".to_string())?;
        return Ok(pod_template_text(template));
    }
    let rows: Vec<(String, String)> = history
        .iter()
        .map(|(revision, template)| {
            let cause = template
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .unwrap_or("<none>");
            (revision.to_string(), cause.to_string())
        })
        .collect();
    // kubectl's tabwriter: the first column as wide as its widest cell plus two spaces.
    let width = rows
        .iter()
        .map(|(r, _)| r.len())
        .chain(["REVISION".len()])
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = format!("{:<width$}CHANGE-CAUSE\n", "REVISION");
    for (revision, cause) in rows {
        let _ = writeln!(out, "{revision:<width$}{cause}");
    }
    Ok(out)
}

fn check_has_history(info: &KindInfo, what: &str) -> Result<(), CliError> {
    match info.kind {
        "Deployment" | "StatefulSet" => Ok(()),
        "DaemonSet" => Err(CliError::Usage(format!(
            "rollout {what} is not supported yet for {}: Corral keeps revisions of deployments and statefulsets only",
            group_resource(info)
        ))),
        _ => Err(CliError::Usage(format!(
            "no {} has been implemented for {}",
            if what == "undo" {
                "rollbacker"
            } else {
                "history viewer"
            },
            group_kind(info)
        ))),
    }
}

async fn replica_sets_of(ctx: &mut Ctx<'_>, deployment: &Value) -> Result<Vec<Value>, CliError> {
    let namespace = corral_api::object::namespace(deployment);
    let list = ctx
        .client
        .list("ReplicaSet", Some(namespace), &ListOptions::default())
        .await?;
    let uid = corral_api::object::uid(deployment);
    Ok(list
        .items
        .into_iter()
        .filter(|rs| is_controlled_by(rs, uid))
        .collect())
}

/// The ControllerRevisions a StatefulSet controls.
async fn controller_revisions_of(ctx: &mut Ctx<'_>, sts: &Value) -> Result<Vec<Value>, CliError> {
    let namespace = corral_api::object::namespace(sts);
    let list = ctx
        .client
        .list(
            "ControllerRevision",
            Some(namespace),
            &ListOptions::default(),
        )
        .await?;
    let uid = corral_api::object::uid(sts);
    Ok(list
        .items
        .into_iter()
        .filter(|r| is_controlled_by(r, uid))
        .collect())
}

/// The pod template a StatefulSet's ControllerRevision holds (`data.spec.template`, without
/// the `$patch` directive).
pub fn controller_revision_template(rev: &Value) -> Value {
    let mut template = rev
        .pointer("/data/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        t.remove("$patch");
    }
    template
}

/// Revision → that ControllerRevision's pod template, carrying the revision's change cause as an
/// annotation (kubectl's StatefulSet history).
pub fn revision_templates(controller_revisions: &[&Value]) -> BTreeMap<i64, Value> {
    let mut history = BTreeMap::new();
    for rev in controller_revisions {
        let number = int(rev, "/revision");
        let mut template = controller_revision_template(rev);
        if let Some(cause) = rev
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            && let Some(t) = template.as_object_mut()
        {
            let meta = t.entry("metadata").or_insert_with(|| json!({}));
            if !meta.is_object() {
                *meta = json!({});
            }
            let annotations = &mut meta["annotations"];
            if !annotations.is_object() {
                *annotations = json!({});
            }
            annotations[CHANGE_CAUSE_ANNOTATION] = Value::String(cause.to_string());
        }
        history.insert(number, template);
    }
    history
}

/// kubectl's rollback of a StatefulSet to `to_revision` (0: the revision before the newest),
/// given the ControllerRevisions it controls: that revision's template goes back into it.
pub fn stateful_set_rollback(
    sts: &Value,
    owned: &[&Value],
    to_revision: i64,
) -> Result<Rollback, String> {
    if to_revision < 0 {
        return Err(revision_not_found(to_revision));
    }
    if to_revision == 0 && owned.len() <= 1 {
        return Err("no last revision to roll back to".into());
    }
    let mut sorted: Vec<&Value> = owned.to_vec();
    sorted.sort_by_key(|r| int(r, "/revision"));
    let target = if to_revision == 0 {
        sorted.get(sorted.len().saturating_sub(2)).copied()
    } else {
        sorted
            .iter()
            .copied()
            .find(|r| int(r, "/revision") == to_revision)
    }
    .ok_or_else(|| revision_not_found(to_revision))?;
    let template = controller_revision_template(target);
    let empty = json!({});
    let current = sts.pointer("/spec/template").unwrap_or(&empty);
    if pruned(&template) == pruned(current) {
        return Ok(Rollback::Skip);
    }
    let mut next = sts.clone();
    next["spec"]["template"] = template;
    Ok(Rollback::Update(next))
}

async fn history(ctx: &mut Ctx<'_>, args: &RolloutHistoryArgs) -> Result<(), CliError> {
    if args.revision < 0 {
        return Err(CliError::Usage(format!(
            "revision must be a positive integer: {}",
            args.revision
        )));
    }
    if let Some((first, rest)) = args.args.split_first() {
        check_has_history(targets(first, rest)?.0, "history")?;
    }
    let fetched = fetch_named(ctx, &args.args, true).await?;
    let total = fetched.objects.len() + fetched.failed;
    let mut failed = fetched.failed;
    for deployment in &fetched.objects {
        let history = if fetched.info.kind == "StatefulSet" {
            let owned = controller_revisions_of(ctx, deployment).await?;
            revision_templates(&owned.iter().collect::<Vec<_>>())
        } else {
            let owned = replica_sets_of(ctx, deployment).await?;
            revisions(&owned.iter().collect::<Vec<_>>())
        };
        match history_text(&history, args.revision) {
            Ok(text) => {
                let with_revision = if args.revision > 0 {
                    format!("with revision #{}", args.revision)
                } else {
                    String::new()
                };
                // kubectl's name printer with the history as the "operation".
                let block = format!(
                    "{}/{} {with_revision}\n{text}\n",
                    resource_ref(fetched.info),
                    corral_api::object::name(deployment)
                );
                ctx.out
                    .write_all(block.as_bytes())
                    .map_err(CliError::Output)?;
            }
            Err(message) => {
                failed += 1;
                ctx.warn(&format!("error: {message}"))?;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// undo

/// What a rollback does to a Deployment.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// The Deployment already runs that revision's template: nothing to write.
    Skip,
    /// The Deployment to write back (it keeps the resourceVersion it was read at).
    Update(Value),
}

fn revision_not_found(revision: i64) -> String {
    format!("unable to find specified revision {revision} in history")
}

/// The ReplicaSet of `to_revision` among the Deployment's, or (0) the one of the revision before
/// the latest.
pub fn replica_set_for_revision<'a>(
    deployment: &Value,
    owned: &[&'a Value],
    to_revision: i64,
) -> Result<&'a Value, String> {
    let mut latest: Option<(i64, &Value)> = None;
    let mut previous: Option<(i64, &Value)> = None;
    for rs in owned {
        let Ok(v) = revision_of(rs) else { continue };
        if to_revision == 0 {
            if latest.is_none_or(|(l, _)| l < v) {
                previous = latest;
                latest = Some((v, rs));
            } else if previous.is_none_or(|(p, _)| p < v) {
                previous = Some((v, rs));
            }
        } else if v == to_revision {
            return Ok(rs);
        }
    }
    if to_revision > 0 {
        return Err(revision_not_found(to_revision));
    }
    previous.map(|(_, rs)| rs).ok_or_else(|| {
        format!(
            "no rollout history found for deployment \"{}\"",
            corral_api::object::name(deployment)
        )
    })
}

/// A copy of `template` without the `pod-template-hash` label (and without labels at all when
/// that was the only one).
pub fn without_hash_label(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
        if labels.is_empty()
            && let Some(meta) = t.get_mut("metadata").and_then(Value::as_object_mut)
        {
            meta.remove("labels");
        }
    }
    t
}

/// `value` without nulls, empty objects and empty arrays, at any depth: what Go's semantic
/// equality of typed objects ignores (an empty map equals an absent one).
fn pruned(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), pruned(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(pruned).collect()),
        other => other.clone(),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Whether two pod templates are the same but for the `pod-template-hash` label.
pub fn equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    pruned(&without_hash_label(a)) == pruned(&without_hash_label(b))
}

/// kubectl's rollback of `deployment` to `to_revision` (0: the previous revision), given the
/// ReplicaSets it controls.
pub fn rollback(
    deployment: &Value,
    owned: &[&Value],
    to_revision: i64,
) -> Result<Rollback, String> {
    if to_revision < 0 {
        return Err(revision_not_found(to_revision));
    }
    let rs = replica_set_for_revision(deployment, owned, to_revision)?;
    if deployment.pointer("/spec/paused").and_then(Value::as_bool) == Some(true) {
        return Err("you cannot rollback a paused deployment; resume it first with 'corralctl rollout resume' and try again".into());
    }
    let empty = json!({});
    let rs_template = rs.pointer("/spec/template").unwrap_or(&empty);
    let current = deployment.pointer("/spec/template").unwrap_or(&empty);
    if equal_ignoring_hash(rs_template, current) {
        return Ok(Rollback::Skip);
    }
    // Annotations: the Deployment's own bookkeeping ones stay, the rest come from the revision.
    let mut annotations = Map::new();
    let deployment_annotations = corral_api::object::annotations(deployment);
    for key in ANNOTATIONS_TO_SKIP {
        if let Some(v) = deployment_annotations.get(*key) {
            annotations.insert(key.to_string(), Value::String(v.clone()));
        }
    }
    for (k, v) in corral_api::object::annotations(rs) {
        if !ANNOTATIONS_TO_SKIP.contains(&k.as_str()) {
            annotations.insert(k, Value::String(v));
        }
    }
    let mut next = deployment.clone();
    next["spec"]["template"] = without_hash_label(rs_template);
    if let Some(meta) = corral_api::object::metadata_mut(&mut next) {
        if annotations.is_empty() {
            meta.remove("annotations");
        } else {
            meta.insert("annotations".into(), Value::Object(annotations));
        }
    }
    Ok(Rollback::Update(next))
}

async fn undo(ctx: &mut Ctx<'_>, args: &RolloutUndoArgs) -> Result<(), CliError> {
    if let Some((first, rest)) = args.args.split_first() {
        check_has_history(targets(first, rest)?.0, "undo")?;
    }
    let fetched = fetch_named(ctx, &args.args, true).await?;
    let total = fetched.objects.len() + fetched.failed;
    let mut failed = fetched.failed;
    for deployment in fetched.objects {
        let name = corral_api::object::name(&deployment).to_string();
        match undo_one(ctx, deployment, args.to_revision).await {
            Ok(outcome) => ctx.say(&format!("{}/{name} {outcome}", resource_ref(fetched.info)))?,
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

async fn undo_one(
    ctx: &mut Ctx<'_>,
    mut deployment: Value,
    to_revision: i64,
) -> Result<String, CliError> {
    let namespace = corral_api::object::namespace(&deployment).to_string();
    let name = corral_api::object::name(&deployment).to_string();
    let kind = corral_api::object::kind(&deployment).to_string();
    for attempt in 1..=CONFLICT_ATTEMPTS {
        let decided = if kind == "StatefulSet" {
            let owned = controller_revisions_of(ctx, &deployment).await?;
            stateful_set_rollback(&deployment, &owned.iter().collect::<Vec<_>>(), to_revision)
        } else {
            let owned = replica_sets_of(ctx, &deployment).await?;
            rollback(&deployment, &owned.iter().collect::<Vec<_>>(), to_revision)
        };
        match decided.map_err(CliError::Usage)? {
            Rollback::Skip => {
                return Ok(format!(
                    "skipped rollback (current template already matches revision {to_revision})"
                ));
            }
            Rollback::Update(next) => match ctx.client.update(&next).await {
                Ok(_) => return Ok("rolled back".into()),
                Err(ApiError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    deployment = ctx.client.get(&kind, &namespace, &name).await?;
                }
                Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
                Err(e) => {
                    return Err(CliError::Usage(format!(
                        "failed restoring revision {to_revision}: {e}"
                    )));
                }
            },
        }
    }
    Err(CliError::Usage(format!(
        "failed restoring revision {to_revision}: the {} kept changing",
        kind.to_ascii_lowercase()
    )))
}

// ---------------------------------------------------------------------------------------------
// pause, resume, restart

/// A change `rollout pause|resume|restart` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    Restart,
}

impl Change {
    /// What kubectl prints after the object's name.
    fn done(self) -> &'static str {
        match self {
            Change::Pause => "paused",
            Change::Resume => "resumed",
            Change::Restart => "restarted",
        }
    }
}

/// The merge patch making `change` to `obj` (of kind `kind`), or kubectl's reason it cannot
/// (printed after the object, as in `deployments.apps "web" is already paused`). `now` is the
/// RFC 3339 time a restart records.
pub fn change_patch(kind: &str, obj: &Value, change: Change, now: &str) -> Result<Value, String> {
    let paused = obj.pointer("/spec/paused").and_then(Value::as_bool) == Some(true);
    match (change, kind) {
        (Change::Pause, "Deployment") if paused => Err("is already paused".into()),
        (Change::Pause, "Deployment") => Ok(json!({"spec": {"paused": true}})),
        (Change::Pause, _) => Err("pausing is not supported".into()),
        (Change::Resume, "Deployment") if !paused => Err("is not paused".into()),
        (Change::Resume, "Deployment") => Ok(json!({"spec": {"paused": false}})),
        (Change::Resume, _) => Err("resuming is not supported".into()),
        (Change::Restart, "Deployment") if paused => {
            Err("can't restart paused deployment (run rollout resume first)".into())
        }
        (Change::Restart, "Deployment" | "DaemonSet" | "StatefulSet") => {
            let already = obj
                .pointer("/spec/template/metadata/annotations")
                .and_then(|a| a.get(RESTARTED_AT_ANNOTATION))
                .and_then(Value::as_str);
            if already == Some(now) {
                return Err(format!(
                    "failed to create patch for {}: if restart has already been triggered within the past second, please wait before attempting to trigger another",
                    corral_api::object::name(obj)
                ));
            }
            Ok(
                json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}}),
            )
        }
        (Change::Restart, _) => Err("restarting is not supported".into()),
    }
}

/// Now, as Go's `time.RFC3339` in the local zone (`Z` for UTC).
fn now_rfc3339() -> String {
    let text = jiff::Zoned::now()
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string();
    match text.strip_suffix("+00:00") {
        Some(utc) => format!("{utc}Z"),
        None => text,
    }
}

async fn patch_each(
    ctx: &mut Ctx<'_>,
    args: &RolloutTargetArgs,
    change: Change,
) -> Result<(), CliError> {
    let fetched = fetch_named(ctx, &args.args, true).await?;
    let info = fetched.info;
    let total = fetched.objects.len() + fetched.failed;
    let mut failed = fetched.failed;
    let now = now_rfc3339();
    for obj in &fetched.objects {
        let name = corral_api::object::name(obj);
        let patch = match change_patch(info.kind, obj, change, &now) {
            Ok(patch) => patch,
            Err(why) => {
                failed += 1;
                let line = if why.starts_with("failed to create patch") {
                    format!("error: {why}")
                } else {
                    format!("error: {} \"{name}\" {why}", group_resource(info))
                };
                ctx.warn(&line)?;
                continue;
            }
        };
        match ctx
            .client
            .patch(
                info.kind,
                corral_api::object::namespace(obj),
                name,
                &patch,
                false,
            )
            .await
        {
            Ok(_) => ctx.say(&format!("{}/{name} {}", resource_ref(info), change.done()))?,
            Err(e @ ApiError::Unavailable { .. }) => return Err(e.into()),
            Err(e) => {
                failed += 1;
                ctx.warn(&format!("failed to patch: {}", api_error_line(&e)))?;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Reported { failed, total });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kubectl's pod template description (`rollout history --revision N`): describe's prefix writer
// straight into text, so the separators are tabs, as kubectl prints them.

fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    value
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn array<'a>(obj: &'a Value, key: &str) -> &'a [Value] {
    obj.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A scalar as Go's `%v` prints it (strings bare).
fn plain(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn labels_multiline(out: &mut String, title: &str, labels: &BTreeMap<String, String>) {
    let _ = write!(out, "{title}:\t");
    if labels.is_empty() {
        out.push_str("<none>\n");
        return;
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i != 0 {
            out.push('\t');
        }
        let _ = writeln!(out, "{k}={v}");
    }
}

fn annotations_multiline(out: &mut String, title: &str, annotations: &BTreeMap<String, String>) {
    const MAX_LEN: usize = 140;
    let _ = write!(out, "{title}:\t");
    let keys: Vec<_> = annotations
        .iter()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED_ANNOTATION)
        .collect();
    if keys.is_empty() {
        out.push_str("<none>\n");
        return;
    }
    for (i, (k, v)) in keys.into_iter().enumerate() {
        if i != 0 {
            out.push('\t');
        }
        let value = v.strip_suffix('\n').unwrap_or(v);
        if value.len() + k.len() + 2 > MAX_LEN || value.contains('\n') {
            let _ = writeln!(out, "{k}:");
            for line in value.split('\n') {
                let short = if line.len() > MAX_LEN - 2 {
                    let cut = (0..=MAX_LEN - 5)
                        .rev()
                        .find(|i| line.is_char_boundary(*i))
                        .unwrap_or(0);
                    format!("{}...", &line[..cut])
                } else {
                    line.to_string()
                };
                let _ = writeln!(out, "\t  {short}");
            }
        } else {
            let _ = writeln!(out, "{k}: {value}");
        }
    }
}

fn probe_text(p: &Value) -> String {
    let num = |k: &str, d: i64| p.get(k).and_then(Value::as_i64).unwrap_or(d);
    let attrs = format!(
        "delay={}s timeout={}s period={}s #success={} #failure={}",
        num("initialDelaySeconds", 0),
        num("timeoutSeconds", 1),
        num("periodSeconds", 10),
        num("successThreshold", 1),
        num("failureThreshold", 3)
    );
    if let Some(exec) = p.get("exec") {
        let argv: Vec<String> = array(exec, "command")
            .iter()
            .map(|a| plain(Some(a)))
            .collect();
        format!("exec [{}] {attrs}", argv.join(" "))
    } else if let Some(h) = p.get("httpGet") {
        let scheme = text(h, "/scheme").to_lowercase();
        let scheme = if scheme.is_empty() {
            "http".into()
        } else {
            scheme
        };
        let host = text(h, "/host");
        let port = plain(h.get("port"));
        let host = if port.is_empty() {
            host.to_string()
        } else if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        format!("http-get {scheme}://{host}{} {attrs}", text(h, "/path"))
    } else if let Some(t) = p.get("tcpSocket") {
        format!(
            "tcp-socket {}:{} {attrs}",
            text(t, "/host"),
            plain(t.get("port"))
        )
    } else if let Some(g) = p.get("grpc") {
        format!(
            "grpc <pod>:{} {} {attrs}",
            plain(g.get("port")),
            text(g, "/service")
        )
    } else {
        format!("unknown {attrs}")
    }
}

fn ports_text(ports: &[Value], field: &str) -> String {
    ports
        .iter()
        .map(|p| {
            let number = p.get(field).and_then(Value::as_i64).unwrap_or(0);
            let protocol = match text(p, "/protocol") {
                "" => "TCP",
                proto => proto,
            };
            format!("{number}/{protocol}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "<none>".into()
    } else {
        text
    }
}

fn container_text(out: &mut String, c: &Value) {
    let _ = writeln!(out, "   {}:", text(c, "/name"));
    let _ = writeln!(out, "    Image:\t{}", text(c, "/image"));
    let ports = array(c, "ports");
    let container_ports = ports_text(ports, "containerPort");
    let title = if container_ports.contains(',') {
        "Ports"
    } else {
        "Port"
    };
    let _ = writeln!(out, "    {title}:\t{}", or_none(container_ports));
    let host_ports = ports_text(ports, "hostPort");
    let title = if host_ports.contains(',') {
        "Host Ports"
    } else {
        "Host Port"
    };
    let _ = writeln!(out, "    {title}:\t{}", or_none(host_ports));
    if let Some(policy) = c.get("restartPolicy").and_then(Value::as_str) {
        let _ = writeln!(out, "    Restart Policy:\t{policy}");
    }
    for (key, title) in [("command", "Command"), ("args", "Args")] {
        let items = array(c, key);
        if !items.is_empty() {
            let _ = writeln!(out, "    {title}:");
            for item in items {
                for line in plain(Some(item)).split('\n') {
                    let _ = writeln!(out, "      {line}");
                }
            }
        }
    }
    for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
        let amounts = string_map(c.pointer(&format!("/resources/{key}")));
        if !amounts.is_empty() {
            let _ = writeln!(out, "    {title}:");
            for (resource, quantity) in amounts {
                let _ = writeln!(out, "      {resource}:\t{quantity}");
            }
        }
    }
    for (key, title) in [
        ("livenessProbe", "Liveness"),
        ("readinessProbe", "Readiness"),
        ("startupProbe", "Startup"),
    ] {
        if let Some(p) = c.get(key) {
            let _ = writeln!(out, "    {title}:\t{}", probe_text(p));
        }
    }
    let env_from = array(c, "envFrom");
    if !env_from.is_empty() {
        out.push_str("    Environment Variables from:\n");
        for e in env_from {
            let (from, source) = if let Some(r) = e.get("configMapRef") {
                ("ConfigMap", r)
            } else if let Some(r) = e.get("secretRef") {
                ("Secret", r)
            } else {
                ("", &Value::Null)
            };
            let optional = source.get("optional").and_then(Value::as_bool) == Some(true);
            let name = text(source, "/name");
            match text(e, "/prefix") {
                "" => {
                    let _ = writeln!(out, "      {name}\t{from}\tOptional: {optional}");
                }
                prefix => {
                    let _ = writeln!(
                        out,
                        "      {name}\t{from} with prefix '{prefix}'\tOptional: {optional}"
                    );
                }
            }
        }
    }
    let env = array(c, "env");
    if env.is_empty() {
        out.push_str("    Environment:\t<none>\n");
    } else {
        out.push_str("    Environment:\n");
    }
    for e in env {
        let name = text(e, "/name");
        let Some(from) = e.get("valueFrom") else {
            for (i, line) in text(e, "/value").split('\n').enumerate() {
                if i == 0 {
                    let _ = writeln!(out, "      {name}:\t{line}");
                } else {
                    let _ = writeln!(out, "      \t{line}");
                }
            }
            continue;
        };
        let optional = |r: &Value| r.get("optional").and_then(Value::as_bool) == Some(true);
        if let Some(r) = from.get("fieldRef") {
            let _ = writeln!(
                out,
                "      {name}:\t ({}:{})",
                text(r, "/apiVersion"),
                text(r, "/fieldPath")
            );
        } else if let Some(r) = from.get("resourceFieldRef") {
            let _ = writeln!(out, "      {name}:\t ({})", text(r, "/resource"));
        } else if let Some(r) = from.get("secretKeyRef") {
            let _ = writeln!(
                out,
                "      {name}:\t<set to the key '{}' in secret '{}'>\tOptional: {}",
                text(r, "/key"),
                text(r, "/name"),
                optional(r)
            );
        } else if let Some(r) = from.get("configMapKeyRef") {
            let _ = writeln!(
                out,
                "      {name}:\t<set to the key '{}' of config map '{}'>\tOptional: {}",
                text(r, "/key"),
                text(r, "/name"),
                optional(r)
            );
        }
    }
    let mut mounts: Vec<&Value> = array(c, "volumeMounts").iter().collect();
    mounts.sort_by(|a, b| text(a, "/mountPath").cmp(text(b, "/mountPath")));
    if mounts.is_empty() {
        out.push_str("    Mounts:\t<none>\n");
    } else {
        out.push_str("    Mounts:\n");
    }
    for m in mounts {
        let mut flags = vec![
            if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                "ro".to_string()
            } else {
                "rw".to_string()
            },
        ];
        if let Some(sub) = m
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            flags.push(format!("path=\"{sub}\""));
        }
        let _ = writeln!(
            out,
            "      {} from {} ({})",
            text(m, "/mountPath"),
            text(m, "/name"),
            flags.join(",")
        );
    }
}

fn containers_text(out: &mut String, label: &str, containers: &[Value]) {
    let none = if containers.is_empty() { " <none>" } else { "" };
    let _ = writeln!(out, "  {label}:{none}");
    for c in containers {
        container_text(out, c);
    }
}

fn volume_text(out: &mut String, v: &Value) {
    let _ = writeln!(out, "   {}:", text(v, "/name"));
    let bool_of = |src: &Value, k: &str| src.get(k).and_then(Value::as_bool) == Some(true);
    if let Some(src) = v.get("emptyDir") {
        let size = match plain(src.get("sizeLimit")) {
            s if s.is_empty() => "<unset>".to_string(),
            s => s,
        };
        let _ = write!(
            out,
            "    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t{}\n    SizeLimit:\t{size}\n",
            text(src, "/medium")
        );
    } else if let Some(src) = v.get("hostPath") {
        let _ = write!(
            out,
            "    Type:\tHostPath (bare host directory volume)\n    Path:\t{}\n    HostPathType:\t{}\n",
            text(src, "/path"),
            text(src, "/type")
        );
    } else if let Some(src) = v.get("configMap") {
        let _ = write!(
            out,
            "    Type:\tConfigMap (a volume populated by a ConfigMap)\n    Name:\t{}\n    Optional:\t{}\n",
            text(src, "/name"),
            bool_of(src, "optional")
        );
    } else if let Some(src) = v.get("secret") {
        let _ = write!(
            out,
            "    Type:\tSecret (a volume populated by a Secret)\n    SecretName:\t{}\n    Optional:\t{}\n",
            text(src, "/secretName"),
            bool_of(src, "optional")
        );
    } else if let Some(src) = v.get("persistentVolumeClaim") {
        let _ = write!(
            out,
            "    Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n    ClaimName:\t{}\n    ReadOnly:\t{}\n",
            text(src, "/claimName"),
            bool_of(src, "readOnly")
        );
    } else if v.get("downwardAPI").is_some() {
        out.push_str("    Type:\tDownwardAPI (a volume populated by information about the pod)\n");
    } else if v.get("projected").is_some() {
        out.push_str(
            "    Type:\tProjected (a volume that contains injected data from multiple sources)\n",
        );
    } else {
        out.push_str("  <unknown>\n");
    }
}

fn tolerations_text(out: &mut String, tolerations: &[Value]) {
    out.push_str("  Tolerations:\t");
    if tolerations.is_empty() {
        out.push_str("<none>\n");
        return;
    }
    for (i, t) in tolerations.iter().enumerate() {
        if i != 0 {
            out.push('\t');
        }
        let (key, value, effect) = (text(t, "/key"), text(t, "/value"), text(t, "/effect"));
        out.push_str(key);
        if !value.is_empty() {
            let _ = write!(out, "={value}");
        }
        if !effect.is_empty() {
            let _ = write!(out, ":{effect}");
        }
        if text(t, "/operator") == "Exists" && value.is_empty() {
            out.push_str(if key.is_empty() && effect.is_empty() {
                "op=Exists"
            } else {
                " op=Exists"
            });
        }
        if let Some(s) = t.get("tolerationSeconds").and_then(Value::as_i64) {
            let _ = write!(out, " for {s}s");
        }
        out.push('\n');
    }
}

/// kubectl's `DescribePodTemplate`, as `rollout history --revision N` prints it.
pub fn pod_template_text(template: &Value) -> String {
    let mut out = String::from("Pod Template:\n");
    labels_multiline(
        &mut out,
        "  Labels",
        &string_map(template.pointer("/metadata/labels")),
    );
    let annotations = string_map(template.pointer("/metadata/annotations"));
    if !annotations.is_empty() {
        annotations_multiline(&mut out, "  Annotations", &annotations);
    }
    let empty = json!({});
    let spec = template.get("spec").unwrap_or(&empty);
    if let Some(sa) = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(out, "  Service Account:\t{sa}");
    }
    let init = array(spec, "initContainers");
    if !init.is_empty() {
        containers_text(&mut out, "Init Containers", init);
    }
    containers_text(&mut out, "Containers", array(spec, "containers"));
    let volumes = array(spec, "volumes");
    if volumes.is_empty() {
        out.push_str("  Volumes:\t<none>\n");
    } else {
        out.push_str("  Volumes:\n");
        for v in volumes {
            volume_text(&mut out, v);
        }
    }
    let spread = array(spec, "topologySpreadConstraints");
    if !spread.is_empty() {
        out.push_str("  Topology Spread Constraints:\t");
        for (i, c) in spread.iter().enumerate() {
            if i != 0 {
                out.push_str("  \t");
            }
            let _ = write!(
                out,
                "{}:{} when max skew {} is exceeded",
                text(c, "/topologyKey"),
                text(c, "/whenUnsatisfiable"),
                int(c, "/maxSkew")
            );
            let selector = string_map(c.pointer("/labelSelector/matchLabels"));
            if !selector.is_empty() {
                let terms: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let _ = write!(out, " for selector {}", terms.join(","));
            }
            out.push('\n');
        }
    }
    if let Some(pc) = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(out, "  Priority Class Name:\t{pc}");
    }
    labels_multiline(
        &mut out,
        "  Node-Selectors",
        &string_map(spec.get("nodeSelector")),
    );
    tolerations_text(&mut out, array(spec, "tolerations"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(generation: i64, status: Value) -> Value {
        json!({
            "kind": "Deployment",
            "metadata": {"name": "nginx", "generation": generation, "uid": "d-1",
                         "annotations": {REVISION_ANNOTATION: "3"}},
            "spec": {"replicas": 3},
            "status": status,
        })
    }

    fn message(d: &Value) -> (String, bool) {
        let s = deployment_status(d, 0).expect("a status");
        (s.message, s.done)
    }

    #[test]
    fn deployment_status_reads_like_kubectl() {
        let d = deployment(2, json!({"observedGeneration": 1}));
        assert_eq!(
            message(&d),
            (
                "Waiting for deployment spec update to be observed...".into(),
                false
            )
        );
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1}),
        );
        assert_eq!(
            message(&d).0,
            "Waiting for deployment \"nginx\" rollout to finish: 1 out of 3 new replicas have been updated..."
        );
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 3}),
        );
        assert_eq!(
            message(&d).0,
            "Waiting for deployment \"nginx\" rollout to finish: 2 old replicas are pending termination..."
        );
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
        );
        assert_eq!(
            message(&d).0,
            "Waiting for deployment \"nginx\" rollout to finish: 1 of 3 updated replicas are available..."
        );
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(
            message(&d),
            ("deployment \"nginx\" successfully rolled out".into(), true)
        );
        // Scaled to zero and observed: done.
        let mut zero = deployment(1, json!({"observedGeneration": 1}));
        zero["spec"]["replicas"] = json!(0);
        assert!(message(&zero).1);
    }

    #[test]
    fn a_deployment_past_its_deadline_or_revision_is_an_error() {
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
            ]}),
        );
        assert_eq!(
            deployment_status(&d, 0),
            Err("deployment \"nginx\" exceeded its progress deadline".into())
        );
        // Not observed yet: the condition is about the previous generation.
        let mut older = d.clone();
        older["metadata"]["generation"] = json!(3);
        assert!(deployment_status(&older, 0).is_ok());

        let d = deployment(1, json!({"observedGeneration": 1}));
        assert!(deployment_status(&d, 3).is_ok());
        assert_eq!(
            deployment_status(&d, 2),
            Err("desired revision (2) is different from the running revision (3)".into())
        );
    }

    #[test]
    fn daemon_set_and_stateful_set_status_read_like_kubectl() {
        let ds = |status: Value| json!({"kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1}, "spec": {}, "status": status});
        let s = daemon_set_status(
            &ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1})),
            0,
        )
        .expect("status");
        assert_eq!(
            s.message,
            "Waiting for daemon set \"agent\" rollout to finish: 1 out of 3 new pods have been updated..."
        );
        let s = daemon_set_status(
            &ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2})),
            0,
        )
        .expect("status");
        assert_eq!(
            s.message,
            "Waiting for daemon set \"agent\" rollout to finish: 2 of 3 updated pods are available..."
        );
        let s = daemon_set_status(
            &ds(json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3})),
            0,
        )
        .expect("status");
        assert_eq!(
            (s.message.as_str(), s.done),
            ("daemon set \"agent\" successfully rolled out", true)
        );
        let mut on_delete = ds(json!({}));
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert_eq!(
            daemon_set_status(&on_delete, 0),
            Err("rollout status is only available for RollingUpdate strategy type".into())
        );

        let sts = |status: Value| {
            json!({"kind": "StatefulSet", "metadata": {"name": "web", "generation": 2},
                   "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}},
                   "status": status})
        };
        let msg = |v: Value| stateful_set_status(&v, 0).expect("status");
        assert_eq!(
            msg(sts(json!({"observedGeneration": 0}))).message,
            "Waiting for statefulset spec update to be observed..."
        );
        assert_eq!(
            msg(sts(json!({"observedGeneration": 2, "readyReplicas": 1}))).message,
            "Waiting for 2 pods to be ready..."
        );
        assert_eq!(
            msg(sts(
                json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1})
            ))
            .message,
            "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated..."
        );
        let done = msg(sts(
            json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}),
        ));
        assert_eq!(
            (done.message.as_str(), done.done),
            (
                "partitioned roll out complete: 2 new pods have been updated...",
                true
            )
        );
        assert!(status_viewer("ReplicaSet").is_none());

        // Without `rollingUpdate`, kubectl reads the revisions.
        let plain = |status: Value| {
            json!({"kind": "StatefulSet", "metadata": {"name": "web", "generation": 1},
                   "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
                   "status": status})
        };
        assert_eq!(
            msg(plain(
                json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 1,
                             "currentRevision": "web-a", "updateRevision": "web-b"})
            ))
            .message,
            "waiting for statefulset rolling update to complete 1 pods at revision web-b..."
        );
        let done = msg(plain(
            json!({"observedGeneration": 1, "readyReplicas": 2, "updatedReplicas": 2,
            "currentReplicas": 2, "currentRevision": "web-b", "updateRevision": "web-b"}),
        ));
        assert_eq!(
            (done.message.as_str(), done.done),
            (
                "statefulset rolling update complete 2 pods at revision web-b...",
                true
            )
        );
    }

    fn controller_revision(number: i64, image: &str, cause: Option<&str>) -> Value {
        let mut rev = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": format!("web-{number}"), "ownerReferences": [
                {"kind": "StatefulSet", "name": "web", "uid": "sts-uid", "controller": true}]},
            "data": {"spec": {"template": {"$patch": "replace", "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": image}]}}}},
            "revision": number});
        if let Some(cause) = cause {
            rev["metadata"]["annotations"] = json!({CHANGE_CAUSE_ANNOTATION: cause});
        }
        rev
    }

    #[test]
    fn statefulset_history_and_undo_use_its_controller_revisions() {
        let revs = [
            controller_revision(1, "busybox", None),
            controller_revision(3, "busybox:1.36", Some("set image")),
            controller_revision(2, "busybox:1.35", None),
        ];
        let refs: Vec<&Value> = revs.iter().collect();
        let history = revision_templates(&refs);
        assert_eq!(
            history_text(&history, 0).expect("a table"),
            "REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n3         set image\n"
        );
        assert!(history[&2].get("$patch").is_none());
        assert!(
            history_text(&history, 2)
                .expect("a template")
                .contains("busybox:1.35")
        );

        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "uid": "sts-uid", "resourceVersion": "9"},
            "spec": {"template": controller_revision_template(&revs[1])}});
        // Default: the revision before the newest.
        match stateful_set_rollback(&sts, &refs, 0).expect("a rollback") {
            Rollback::Update(next) => {
                assert_eq!(
                    next["spec"]["template"]["spec"]["containers"][0]["image"],
                    "busybox:1.35"
                );
                assert_eq!(next["metadata"]["resourceVersion"], "9");
            }
            Rollback::Skip => panic!("not the current template"),
        }
        assert_eq!(stateful_set_rollback(&sts, &refs, 3), Ok(Rollback::Skip));
        assert_eq!(
            stateful_set_rollback(&sts, &refs, 7),
            Err("unable to find specified revision 7 in history".into())
        );
        assert_eq!(
            stateful_set_rollback(&sts, &refs[..1], 0),
            Err("no last revision to roll back to".into())
        );
    }

    fn rs(
        name: &str,
        owner: &str,
        revision: Option<&str>,
        image: &str,
        cause: Option<&str>,
    ) -> Value {
        let mut annotations = serde_json::Map::new();
        if let Some(r) = revision {
            annotations.insert(REVISION_ANNOTATION.into(), json!(r));
        }
        if let Some(c) = cause {
            annotations.insert(CHANGE_CAUSE_ANNOTATION.into(), json!(c));
        }
        annotations.insert(
            "deployment.kubernetes.io/desired-replicas".into(),
            json!("3"),
        );
        json!({
            "kind": "ReplicaSet",
            "metadata": {"name": name, "annotations": annotations,
                         "ownerReferences": [{"kind": "Deployment", "name": "nginx", "uid": owner, "controller": true}]},
            "spec": {"template": {
                "metadata": {"labels": {"app": "nginx", POD_TEMPLATE_HASH_LABEL: name}},
                "spec": {"containers": [{"name": "nginx", "image": image, "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
            }}
        })
    }

    #[test]
    fn only_replica_sets_the_deployment_controls_count() {
        let d = deployment(1, json!({}));
        let mut not_controller = rs("c", "d-1", Some("9"), "x", None);
        not_controller["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        let all = vec![
            rs("a", "d-1", Some("1"), "nginx:1", None),
            rs("b", "other", Some("2"), "nginx:2", None),
            not_controller,
        ];
        let owned = owned_replica_sets(&d, &all);
        assert_eq!(owned.len(), 1);
        assert_eq!(corral_api::object::name(owned[0]), "a");
        assert!(!is_controlled_by(&all[0], ""));
    }

    #[test]
    fn history_is_a_table_of_revisions_and_causes() {
        let all = [
            rs(
                "c",
                "d-1",
                Some("10"),
                "nginx:3",
                Some("kubectl set image deployment/nginx nginx=nginx:3"),
            ),
            rs("a", "d-1", Some("1"), "nginx:1", None),
            rs("bad", "d-1", Some("x"), "nginx:0", None),
            rs("b", "d-1", Some("2"), "nginx:2", Some("")),
        ];
        let owned: Vec<&Value> = all.iter().collect();
        let history = revisions(&owned);
        assert_eq!(history.keys().copied().collect::<Vec<_>>(), [1, 2, 10]);
        assert_eq!(
            history_text(&history, 0).expect("table"),
            "REVISION  CHANGE-CAUSE\n\
             1         <none>\n\
             2         <none>\n\
             10        kubectl set image deployment/nginx nginx=nginx:3\n"
        );
        assert_eq!(
            history_text(&BTreeMap::new(), 0).expect("text"),
            "No rollout history found."
        );
        assert_eq!(
            history_text(&history, 4),
            Err("unable to find the specified revision".into())
        );
        // A ReplicaSet with no revision annotation is revision 0.
        let unannotated = rs("z", "d-1", None, "nginx:0", None);
        assert_eq!(
            revisions(&[&unannotated])
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [0]
        );
    }

    #[test]
    fn one_revision_prints_its_pod_template_like_kubectl() {
        let all = [rs(
            "abc",
            "d-1",
            Some("3"),
            "nginx:1.16.1",
            Some("kubectl set image deployment/nginx nginx=nginx:1.16.1"),
        )];
        let owned: Vec<&Value> = all.iter().collect();
        let text = history_text(&revisions(&owned), 3).expect("template");
        assert_eq!(
            text,
            "Pod Template:\n\
             \x20 Labels:\tapp=nginx\n\
             \tpod-template-hash=abc\n\
             \x20 Annotations:\tkubernetes.io/change-cause: kubectl set image deployment/nginx nginx=nginx:1.16.1\n\
             \x20 Containers:\n\
             \x20  nginx:\n\
             \x20   Image:\tnginx:1.16.1\n\
             \x20   Port:\t80/TCP\n\
             \x20   Host Port:\t0/TCP\n\
             \x20   Environment:\t<none>\n\
             \x20   Mounts:\t<none>\n\
             \x20 Volumes:\t<none>\n\
             \x20 Node-Selectors:\t<none>\n\
             \x20 Tolerations:\t<none>\n"
        );
    }

    #[test]
    fn a_richer_template_shows_every_section() {
        let template = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "serviceAccountName": "builder",
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sh", "-c", "true"]}],
                "containers": [{
                    "name": "app", "image": "app:2",
                    "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP", "hostPort": 53}],
                    "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                    "env": [{"name": "MODE", "value": "prod"},
                            {"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/data", "readOnly": true}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                                {"operator": "Exists"}]
            }
        });
        let text = pod_template_text(&template);
        for expected in [
            "  Service Account:\tbuilder\n",
            "  Init Containers:\n   init:\n    Image:\tbusybox\n    Port:\t<none>\n    Host Port:\t<none>\n    Command:\n      sh\n      -c\n      true\n",
            "    Ports:\t80/TCP, 53/UDP\n    Host Ports:\t0/TCP, 53/UDP\n",
            "    Limits:\n      cpu:\t500m\n      memory:\t128Mi\n",
            "    Readiness:\thttp-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3\n",
            "    Environment:\n      MODE:\tprod\n      POD:\t (v1:metadata.name)\n",
            "    Mounts:\n      /var/data from data (ro)\n",
            "  Volumes:\n   data:\n    Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n    Medium:\t\n    SizeLimit:\t<unset>\n",
            "  Node-Selectors:\tdisk=ssd\n",
            "  Tolerations:\tdedicated=web:NoSchedule\n\top=Exists\n",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
    }

    #[test]
    fn undo_finds_the_previous_revision_and_restores_its_template() {
        let mut d = deployment(5, json!({}));
        d["metadata"]["resourceVersion"] = json!("42");
        d["metadata"]["annotations"] = json!({
            REVISION_ANNOTATION: "3",
            LAST_APPLIED_ANNOTATION: "{}",
            "team": "web",
        });
        d["spec"]["template"] = json!({
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:3", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
        });
        let all = [
            rs("r1", "d-1", Some("1"), "nginx:1", None),
            rs("r3", "d-1", Some("3"), "nginx:3", None),
            rs("r2", "d-1", Some("2"), "nginx:2", Some("set image 2")),
        ];
        let owned: Vec<&Value> = all.iter().collect();

        // The default is the revision before the latest.
        let Ok(Rollback::Update(next)) = rollback(&d, &owned, 0) else {
            panic!("a rollback")
        };
        assert_eq!(
            next["spec"]["template"],
            json!({
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:2", "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}
            })
        );
        assert_eq!(next["metadata"]["resourceVersion"], "42");
        assert_eq!(
            next["metadata"]["annotations"],
            json!({
                REVISION_ANNOTATION: "3",
                LAST_APPLIED_ANNOTATION: "{}",
                CHANGE_CAUSE_ANNOTATION: "set image 2",
            }),
            "bookkeeping annotations stay, the rest come from the revision"
        );
        assert_eq!(next["spec"]["replicas"], d["spec"]["replicas"]);

        let Ok(Rollback::Update(next)) = rollback(&d, &owned, 1) else {
            panic!("a rollback")
        };
        assert_eq!(
            next["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:1"
        );
        assert_eq!(rollback(&d, &owned, 3), Ok(Rollback::Skip));
        assert_eq!(
            rollback(&d, &owned, 5),
            Err("unable to find specified revision 5 in history".into())
        );
        assert_eq!(
            rollback(&d, &owned, -1),
            Err("unable to find specified revision -1 in history".into())
        );
        assert_eq!(
            rollback(&d, &owned[..1], 0),
            Err("no rollout history found for deployment \"nginx\"".into())
        );
        assert_eq!(
            rollback(&d, &[], 0),
            Err("no rollout history found for deployment \"nginx\"".into())
        );
        let mut paused = d.clone();
        paused["spec"]["paused"] = json!(true);
        assert!(
            rollback(&paused, &owned, 0)
                .expect_err("paused")
                .starts_with("you cannot rollback a paused deployment")
        );
    }

    #[test]
    fn templates_compare_without_the_hash_label_and_empty_fields() {
        let a = json!({"metadata": {"labels": {"app": "x", POD_TEMPLATE_HASH_LABEL: "h1"}, "annotations": {}},
                       "spec": {"containers": [{"name": "c", "image": "i", "env": []}]}});
        let b = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        assert!(equal_ignoring_hash(&a, &b));
        let c = json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "c", "image": "j"}]}});
        assert!(!equal_ignoring_hash(&a, &c));
        let only_hash = json!({"metadata": {"labels": {POD_TEMPLATE_HASH_LABEL: "h"}}});
        assert_eq!(without_hash_label(&only_hash), json!({"metadata": {}}));
    }

    #[test]
    fn pause_resume_and_restart_patches() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {}});
        let now = "2026-01-02T03:04:05Z";
        assert_eq!(
            change_patch("Deployment", &d, Change::Pause, now),
            Ok(json!({"spec": {"paused": true}}))
        );
        assert_eq!(
            change_patch("Deployment", &d, Change::Resume, now),
            Err("is not paused".into())
        );
        let mut paused = d.clone();
        paused["spec"]["paused"] = json!(true);
        assert_eq!(
            change_patch("Deployment", &paused, Change::Pause, now),
            Err("is already paused".into())
        );
        assert_eq!(
            change_patch("Deployment", &paused, Change::Resume, now),
            Ok(json!({"spec": {"paused": false}}))
        );
        assert_eq!(
            change_patch("Deployment", &paused, Change::Restart, now),
            Err("can't restart paused deployment (run rollout resume first)".into())
        );
        assert_eq!(
            change_patch("StatefulSet", &d, Change::Pause, now),
            Err("pausing is not supported".into())
        );
        assert_eq!(
            change_patch("ReplicaSet", &d, Change::Restart, now),
            Err("restarting is not supported".into())
        );
        let patch = change_patch("DaemonSet", &d, Change::Restart, now).expect("a patch");
        assert_eq!(
            patch,
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}})
        );
        let mut restarted = d.clone();
        restarted["spec"]["template"] =
            json!({"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}});
        assert!(
            change_patch("Deployment", &restarted, Change::Restart, now)
                .expect_err("same second")
                .contains("within the past second")
        );
    }

    #[test]
    fn restart_times_look_like_gos_rfc3339() {
        let now = now_rfc3339();
        assert!(now.parse::<jiff::Timestamp>().is_ok(), "{now}");
        assert!(now.len() >= 20 && now.as_bytes()[10] == b'T', "{now}");
    }
}
