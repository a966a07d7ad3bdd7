//! The namespace controller: Kubernetes' `namespace-controller` (the namespaced resources
//! deleter), run by the Raft leader.
//!
//! Corral's API server does what Kubernetes' does for namespaces: a new namespace gets the
//! finalizer `kubernetes` in `spec.finalizers` (an update cannot remove it while the namespace is
//! active); deleting a namespace that holds it sets `deletionTimestamp` and `status.phase:
//! Terminating` instead of removing it; nothing new can be created in a terminating namespace;
//! and an update that leaves a terminating namespace without any finalizer (in `spec` and in
//! `metadata`) deletes it. (A namespace created before the API server added the finalizer has
//! none, and is removed at once when deleted, its content left where it is.)
//!
//! For each terminating namespace that still holds `kubernetes`, the controller lists every
//! namespaced kind in it and deletes each object not already being deleted (Background
//! propagation, with the object's uid as precondition). Objects that stay (held by finalizers,
//! pods finishing their graceful termination) are reported in the namespace's conditions as
//! Kubernetes reports them (`NamespaceContentRemaining`, `NamespaceFinalizersRemaining`,
//! `NamespaceDeletionContentFailure`, ...), and the namespace is looked at again with a back-off.
//! Once a pass finds the namespace empty, the controller removes `kubernetes` from
//! `spec.finalizers` with the namespace's resourceVersion as precondition, and the API server
//! deletes the namespace (or keeps it while other finalizers remain).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use corral_api::kinds::{self, KindInfo};
use corral_api::{ApiError, object};
use corral_client::informer::{Change, Informer};
use corral_client::{Client, DeleteOptions, ListOptions, PropagationPolicy};
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The finalizer in `spec.finalizers` of every namespace the API server creates.
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

/// The namespace condition types of Kubernetes' namespace controller.
pub const CONDITION_DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const CONDITION_GROUP_VERSION_PARSING_FAILURE: &str =
    "NamespaceDeletionGroupVersionParsingFailure";
pub const CONDITION_CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONDITION_CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const CONDITION_FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

const FIRST_RETRY: Duration = Duration::from_millis(100);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Settings of the namespace controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceOptions {
    /// How often every terminating namespace is looked at even when nothing changed.
    pub resync_period: Duration,
}

impl Default for NamespaceOptions {
    fn default() -> Self {
        Self {
            resync_period: Duration::from_secs(30),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// Whether the namespace is terminating and still waits for this controller.
pub fn needs_deletion(ns: &Value) -> bool {
    object::deletion_timestamp(ns).is_some() && spec_finalizers(ns).contains(&NAMESPACE_FINALIZER)
}

fn spec_finalizers(ns: &Value) -> Vec<&str> {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The merge patch that removes `kubernetes` from the namespace's `spec.finalizers`, on the
/// condition that the namespace is still at the version read.
pub fn finalize_patch(ns: &Value) -> Value {
    let rest: Vec<&str> = spec_finalizers(ns)
        .into_iter()
        .filter(|f| *f != NAMESPACE_FINALIZER)
        .collect();
    let finalizers = if rest.is_empty() {
        Value::Null
    } else {
        json!(rest)
    };
    json!({
        "metadata": {"resourceVersion": object::resource_version(ns).unwrap_or(0).to_string()},
        "spec": {"finalizers": finalizers},
    })
}

/// How Kubernetes names a resource in its messages: `pods`, `deployments.apps`.
pub fn group_resource(info: &KindInfo) -> String {
    match info.group() {
        "" => info.plural.to_string(),
        group => format!("{}.{group}", info.plural),
    }
}

/// What one pass over a terminating namespace found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentReport {
    /// Objects found (deleted by the pass, or still there): the namespace is empty only after a
    /// pass that found none.
    pub found: usize,
    /// Objects still there after the pass, by resource (`pods`, `deployments.apps`).
    pub remaining: BTreeMap<String, usize>,
    /// Finalizers holding the remaining objects, with how many each holds.
    pub finalizers: BTreeMap<String, usize>,
    /// What could not be listed or deleted.
    pub failures: Vec<String>,
}

impl ContentReport {
    /// Counts an object that is still there after the pass.
    pub fn remains(&mut self, resource: &str, obj: &Value) {
        *self.remaining.entry(resource.to_string()).or_default() += 1;
        for f in object::finalizers(obj) {
            *self.finalizers.entry(f).or_default() += 1;
        }
    }

    /// Whether the namespace can be finalized: nothing found and nothing failed.
    pub fn empty(&self) -> bool {
        self.found == 0 && self.failures.is_empty()
    }
}

fn condition(type_: &str, failed: bool, reason: &str, message: String) -> Value {
    json!({
        "type": type_,
        "status": if failed { "True" } else { "False" },
        "reason": reason,
        "message": message,
    })
}

/// The namespace's conditions after a pass, in Kubernetes' words: the five deletion conditions
/// (in Kubernetes' order, each keeping its `lastTransitionTime` while its status is unchanged),
/// then any other condition the namespace had.
pub fn deletion_conditions(
    report: &ContentReport,
    existing: &[Value],
    now: Timestamp,
) -> Vec<Value> {
    let remaining: Vec<String> = report
        .remaining
        .iter()
        .map(|(r, n)| format!("{r} has {n} resource instances"))
        .collect();
    let finalizers: Vec<String> = report
        .finalizers
        .iter()
        .map(|(f, n)| format!("{f} in {n} resource instances"))
        .collect();
    let wanted = [
        condition(
            CONDITION_DISCOVERY_FAILURE,
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".into(),
        ),
        condition(
            CONDITION_GROUP_VERSION_PARSING_FAILURE,
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into(),
        ),
        if report.failures.is_empty() {
            condition(
                CONDITION_CONTENT_FAILURE,
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into(),
            )
        } else {
            condition(
                CONDITION_CONTENT_FAILURE,
                true,
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    report.failures.len(),
                    report.failures.join(", ")
                ),
            )
        },
        if remaining.is_empty() {
            condition(
                CONDITION_CONTENT_REMAINING,
                false,
                "ContentRemoved",
                "All content successfully removed".into(),
            )
        } else {
            condition(
                CONDITION_CONTENT_REMAINING,
                true,
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", remaining.join(", ")),
            )
        },
        if finalizers.is_empty() {
            condition(
                CONDITION_FINALIZERS_REMAINING,
                false,
                "ContentHasNoFinalizers",
                "All content-preserving finalizers finished".into(),
            )
        } else {
            condition(
                CONDITION_FINALIZERS_REMAINING,
                true,
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizers.join(", ")
                ),
            )
        },
    ];
    let type_of = |c: &Value| {
        c.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let now = crate::node_lifecycle::format_time(now);
    let mut out: Vec<Value> = wanted
        .into_iter()
        .map(|mut c| {
            let before = existing.iter().find(|e| type_of(e) == type_of(&c));
            let since = match before {
                Some(b) if b.get("status") == c.get("status") => b
                    .get("lastTransitionTime")
                    .cloned()
                    .unwrap_or_else(|| json!(now)),
                _ => json!(now),
            };
            c["lastTransitionTime"] = since;
            c
        })
        .collect();
    let ours: Vec<String> = out.iter().map(type_of).collect();
    out.extend(
        existing
            .iter()
            .filter(|e| !ours.contains(&type_of(e)))
            .cloned(),
    );
    out
}

fn existing_conditions(ns: &Value) -> Vec<Value> {
    ns.pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Carrying it out
// ---------------------------------------------------------------------------------------------

/// What is next for a namespace after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Finalized, gone, or not terminating: nothing more.
    Done,
    /// Content remains: look again after a back-off.
    Again,
}

fn is_conflict(e: &ApiError) -> bool {
    matches!(e, ApiError::Conflict { .. })
}

fn is_not_found(e: &ApiError) -> bool {
    matches!(e, ApiError::NotFound { .. })
}

/// Deletes everything in the namespace; answers what it found.
async fn delete_content(client: &Client, namespace: &str) -> ContentReport {
    let mut report = ContentReport::default();
    for info in kinds::all().iter().filter(|k| k.namespaced) {
        let resource = group_resource(info);
        let list = match client
            .list(info.kind, Some(namespace), &ListOptions::default())
            .await
        {
            Ok(list) => list,
            Err(e) => {
                report.failures.push(format!("listing {resource}: {e}"));
                continue;
            }
        };
        for obj in list.items {
            report.found += 1;
            if object::deletion_timestamp(&obj).is_some() {
                report.remains(&resource, &obj);
                continue;
            }
            let options = DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Background),
                uid: Some(object::uid(&obj).to_string()).filter(|u| !u.is_empty()),
                ..DeleteOptions::default()
            };
            match client
                .delete(info.kind, namespace, object::name(&obj), &options)
                .await
            {
                // Answered as it now stands: still there when something holds it.
                Ok(after) if object::deletion_timestamp(&after).is_some() => {
                    report.remains(&resource, &after)
                }
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                // Replaced by another object of that name since the list: the next pass sees it.
                Err(e) if is_conflict(&e) => {}
                Err(e) => report
                    .failures
                    .push(format!("deleting {resource} {:?}: {e}", object::name(&obj))),
            }
        }
    }
    report
}

/// One pass over the namespace `name`.
async fn sync(client: &Client, name: &str) -> Result<Next, ApiError> {
    let ns = match client.get("Namespace", "", name).await {
        Ok(ns) => ns,
        Err(e) if is_not_found(&e) => return Ok(Next::Done),
        Err(e) => return Err(e),
    };
    if !needs_deletion(&ns) {
        return Ok(Next::Done);
    }
    let report = delete_content(client, name).await;
    if report.empty() {
        return match client
            .patch("Namespace", "", name, &finalize_patch(&ns), false)
            .await
        {
            Ok(_) => {
                tracing::info!(
                    namespace = name,
                    "namespace controller: namespace emptied and finalized"
                );
                Ok(Next::Done)
            }
            Err(e) if is_not_found(&e) => Ok(Next::Done),
            Err(e) if is_conflict(&e) => Ok(Next::Again),
            Err(e) => Err(e),
        };
    }
    let existing = existing_conditions(&ns);
    let conditions = deletion_conditions(&report, &existing, Timestamp::now());
    if conditions != existing {
        let patch = json!({
            "metadata": {"resourceVersion": object::resource_version(&ns).unwrap_or(0).to_string()},
            "status": {"conditions": conditions},
        });
        match client.patch("Namespace", "", name, &patch, true).await {
            Ok(_) => {}
            Err(e) if is_conflict(&e) || is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(namespace = name, error = %e, "namespace controller: could not write the namespace's conditions")
            }
        }
    }
    if !report.failures.is_empty() {
        tracing::warn!(namespace = name, failures = ?report.failures, "namespace controller: some content could not be deleted");
    }
    Ok(Next::Again)
}

/// Runs the namespace controller until `cancel` fires.
pub async fn run(client: Client, opts: NamespaceOptions, cancel: CancellationToken) {
    let namespaces = Informer::builder(client.clone(), "Namespace").start(cancel.clone());
    let mut changes = namespaces.subscribe();
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = namespaces.wait_synced() => {}
    }
    tracing::info!("namespace controller: caches synced, watching namespaces");
    // Namespace → when it is to be looked at next; and its current back-off.
    let mut due: HashMap<String, Instant> = HashMap::new();
    let mut backoff: HashMap<String, Duration> = HashMap::new();
    let all_terminating = |due: &mut HashMap<String, Instant>| {
        for ns in namespaces.list() {
            if needs_deletion(&ns) {
                due.insert(object::name(&ns).to_string(), Instant::now());
            }
        }
    };
    all_terminating(&mut due);
    let mut resync = tokio::time::interval(opts.resync_period.max(Duration::from_secs(1)));
    resync.tick().await;
    loop {
        let now = Instant::now();
        let mut ready: Vec<String> = due
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        ready.sort();
        for name in ready {
            due.remove(&name);
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = sync(&client, &name) => r,
            };
            match result {
                Ok(Next::Done) => {
                    backoff.remove(&name);
                }
                Ok(Next::Again) | Err(_) => {
                    if let Err(e) = result {
                        tracing::warn!(namespace = %name, error = %e, "namespace controller: pass failed");
                    }
                    let wait = backoff.get(&name).copied().unwrap_or(FIRST_RETRY);
                    backoff.insert(name.clone(), (wait * 2).min(LONGEST_RETRY));
                    let at = Instant::now() + wait;
                    let entry = due.entry(name).or_insert(at);
                    *entry = (*entry).min(at);
                }
            }
        }
        if cancel.is_cancelled() {
            break;
        }
        let next = due.values().min().copied();
        tokio::select! {
            _ = cancel.cancelled() => break,
            change = changes.recv() => match change {
                None => break,
                Some(Change::Added(ns)) | Some(Change::Modified { new: ns, .. }) => {
                    if needs_deletion(&ns) {
                        let name = object::name(&ns).to_string();
                        // A new deletion is looked at now; one already under way keeps its back-off.
                        if !backoff.contains_key(&name) {
                            due.insert(name, Instant::now());
                        }
                    }
                }
                Some(Change::Deleted(ns)) => {
                    let name = object::name(&ns);
                    due.remove(name);
                    backoff.remove(name);
                }
                Some(Change::Relisted) => all_terminating(&mut due),
            },
            _ = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {}
            _ = resync.tick() => all_terminating(&mut due),
        }
    }
    tracing::info!("namespace controller: stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a test time")
    }

    #[test]
    fn only_terminating_namespaces_holding_the_finalizer_need_deletion() {
        let active = json!({"metadata": {"name": "a", "resourceVersion": "4"},
                            "spec": {"finalizers": ["kubernetes"]}});
        let mut terminating = active.clone();
        terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut finalized = terminating.clone();
        finalized["spec"] = json!({});
        assert!(!needs_deletion(&active));
        assert!(needs_deletion(&terminating));
        assert!(!needs_deletion(&finalized));
        assert_eq!(
            finalize_patch(&terminating),
            json!({"metadata": {"resourceVersion": "4"}, "spec": {"finalizers": null}})
        );
        let mut two = terminating.clone();
        two["spec"]["finalizers"] = json!(["example.com/x", "kubernetes"]);
        assert_eq!(
            finalize_patch(&two)["spec"]["finalizers"],
            json!(["example.com/x"])
        );
    }

    #[test]
    fn resources_are_named_as_kubernetes_names_them() {
        let name = |k: &str| group_resource(kinds::kind_info(k).expect("a kind"));
        assert_eq!(name("Pod"), "pods");
        assert_eq!(name("Deployment"), "deployments.apps");
        assert_eq!(name("Lease"), "leases.coordination.k8s.io");
    }

    #[test]
    fn a_report_counts_what_remains_and_what_holds_it() {
        let mut report = ContentReport::default();
        assert!(report.empty());
        report.found = 3;
        report.remains("pods", &json!({"metadata": {"name": "p"}}));
        report.remains(
            "configmaps",
            &json!({"metadata": {"name": "c", "finalizers": ["example.com/hold"]}}),
        );
        report.remains(
            "configmaps",
            &json!({"metadata": {"name": "d", "finalizers": ["example.com/hold", "x.io/y"]}}),
        );
        assert!(!report.empty());
        assert_eq!(report.remaining["configmaps"], 2);
        assert_eq!(report.finalizers["example.com/hold"], 2);
        let conds = deletion_conditions(&report, &[], at("2026-01-01T00:00:00Z"));
        let types: Vec<&str> = conds
            .iter()
            .map(|c| c["type"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            types,
            [
                CONDITION_DISCOVERY_FAILURE,
                CONDITION_GROUP_VERSION_PARSING_FAILURE,
                CONDITION_CONTENT_FAILURE,
                CONDITION_CONTENT_REMAINING,
                CONDITION_FINALIZERS_REMAINING
            ]
        );
        assert_eq!(
            conds[3],
            json!({"type": "NamespaceContentRemaining", "status": "True",
                   "reason": "SomeResourcesRemain",
                   "message": "Some resources are remaining: configmaps has 2 resource instances, pods has 1 resource instances",
                   "lastTransitionTime": "2026-01-01T00:00:00Z"})
        );
        assert_eq!(
            conds[4]["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 2 resource instances, x.io/y in 1 resource instances"
        );
        assert_eq!(conds[2]["status"], "False");
        assert_eq!(conds[2]["reason"], "ContentDeleted");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let mut report = ContentReport {
            found: 1,
            ..ContentReport::default()
        };
        report.remains("pods", &json!({}));
        let first = deletion_conditions(&report, &[], at("2026-01-01T00:00:00Z"));
        let other = json!({"type": "Custom", "status": "True"});
        let mut existing = first.clone();
        existing.push(other.clone());
        // Same state later: nothing changes (so nothing is written).
        assert_eq!(
            deletion_conditions(&report, &existing, at("2026-01-01T00:05:00Z")),
            existing
        );
        // A failure: that condition moves, the others keep their times; foreign ones are kept.
        report
            .failures
            .push("deleting pods \"p\": unavailable".into());
        let next = deletion_conditions(&report, &existing, at("2026-01-01T00:05:00Z"));
        assert_eq!(next[2]["status"], "True");
        assert_eq!(next[2]["reason"], "ContentDeletionFailed");
        assert_eq!(
            next[2]["message"],
            "Failed to delete all resource types, 1 remaining: deleting pods \"p\": unavailable"
        );
        assert_eq!(next[2]["lastTransitionTime"], "2026-01-01T00:05:00Z");
        assert_eq!(next[3]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(next[5], other);
    }
}
