//! Binding pods to nodes, many at a time: the scheduler's write. Every binding of a request goes
//! into one independent store transaction (one Raft entry), so binding a thousand pods costs one
//! replication round, while each binding still succeeds or fails on its own preconditions.

use corral_api::ApiError;
use corral_api::kinds::kind_info;
use corral_api::meta;
use corral_proto::v1::{BindResponse, BindResult, Binding};
use corral_store::{Action, Failure, Op, Pre, Txn, TxnResult};
use serde_json::{Value, json};

use super::{Objects, conflict, key_for, not_found, str_at};

/// Most bindings one call may carry (a batch's entry stays well under the object size limit
/// per pod times this).
pub const MAX_BINDINGS: usize = 1000;

impl Objects {
    /// Binds each pod to its node: the pod must exist with the given uid (and resourceVersion,
    /// when non-zero), must not be bound or terminating, and the node must be named. The pod gets
    /// `spec.nodeName` and the condition PodScheduled=True.
    pub async fn bind(&self, bindings: &[Binding]) -> Result<BindResponse, ApiError> {
        if bindings.len() > MAX_BINDINGS {
            return Err(ApiError::bad_request(format!(
                "a Bind call carries at most {MAX_BINDINGS} bindings, not {}",
                bindings.len()
            )));
        }
        let info = kind_info("Pod").ok_or_else(|| ApiError::internal("no Pod kind"))?;
        let mut errors: Vec<Option<ApiError>> = Vec::with_capacity(bindings.len());
        let mut ops = Vec::new();
        let mut op_of = Vec::with_capacity(bindings.len());
        let now = meta::now_rfc3339();
        for b in bindings {
            match self.binding_op(info, b, &now) {
                Ok(op) => {
                    op_of.push(Some(ops.len()));
                    ops.push(op);
                    errors.push(None);
                }
                Err(e) => {
                    op_of.push(None);
                    errors.push(Some(e));
                }
            }
        }
        let mut revision = 0;
        let mut outcomes: Vec<Result<(), Failure>> = Vec::new();
        if !ops.is_empty() {
            match self.commit(Txn::each(ops)).await? {
                TxnResult::Each {
                    revision: r,
                    results,
                } => {
                    revision = r;
                    outcomes = results.into_iter().map(|r| r.map(|_| ())).collect();
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "a batch of bindings came back as {other:?}"
                    )));
                }
            }
        }
        let mut results = Vec::with_capacity(bindings.len());
        for ((b, err), op) in bindings.iter().zip(errors).zip(op_of) {
            let r = match (err, op.and_then(|i| outcomes.get(i).cloned())) {
                (Some(e), _) => Err(e),
                (None, Some(Ok(()))) => Ok(bound_identity(b, revision)),
                (None, Some(Err(f))) => Err(failure_error(b, f)),
                (None, None) => Err(ApiError::internal("a binding has no outcome")),
            };
            results.push(match r {
                Ok(object) => BindResult {
                    error: String::new(),
                    object,
                },
                Err(e) => BindResult {
                    error: String::from_utf8_lossy(&e.to_details()).into_owned(),
                    object: String::new(),
                },
            });
        }
        Ok(BindResponse { results, revision })
    }

    fn binding_op(
        &self,
        info: &'static corral_api::kinds::KindInfo,
        b: &Binding,
        now: &str,
    ) -> Result<Op, ApiError> {
        let key = key_for(info, &b.namespace, &b.name)?;
        if b.node.is_empty() {
            return Err(ApiError::Invalid {
                kind: "Binding".into(),
                name: b.name.clone(),
                causes: vec![corral_api::Cause::new("target.name", "Required value")],
            });
        }
        let (rev, mut pod) = self.stored(&key)?.ok_or_else(|| not_found(&key))?;
        if b.resource_version != 0 && b.resource_version != rev {
            return Err(conflict(&key, b.resource_version, rev));
        }
        let uid = str_at(&pod, "/metadata/uid");
        if !b.uid.is_empty() && uid != b.uid {
            return Err(ApiError::Conflict {
                kind: "Pod".into(),
                name: b.name.clone(),
                field: "metadata.uid".into(),
                expected: b.uid.clone(),
                actual: uid,
            });
        }
        let bound = str_at(&pod, "/spec/nodeName");
        if !bound.is_empty() {
            return Err(ApiError::Conflict {
                kind: "Pod".into(),
                name: b.name.clone(),
                field: "spec.nodeName".into(),
                expected: String::new(),
                actual: bound,
            });
        }
        if pod.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::bad_request(format!(
                "pod {}/{} is being deleted, cannot be assigned to a host",
                b.namespace, b.name
            )));
        }
        pod["spec"]["nodeName"] = Value::String(b.node.clone());
        set_scheduled(&mut pod, now);
        let text = serde_json::to_string(&pod).map_err(ApiError::internal)?;
        Ok(Op {
            key: key.storage_key(),
            pre: vec![Pre::Revision(rev)],
            action: Action::Put(text),
        })
    }
}

/// What a successful binding answers: the pod's identity at the binding's revision (as
/// Kubernetes' PartialObjectMetadata, kind Pod), not the whole pod: the scheduler needs no more,
/// and a batch of whole pods would double the answer's cost.
fn bound_identity(b: &Binding, revision: u64) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": b.name,
            "namespace": b.namespace,
            "uid": b.uid,
            "resourceVersion": revision.to_string(),
        },
        "spec": {"nodeName": b.node},
    })
    .to_string()
}

/// Sets PodScheduled=True, replacing an earlier PodScheduled condition (an Unschedulable one).
fn set_scheduled(pod: &mut Value, now: &str) {
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if status.get("phase").is_none() {
        status["phase"] = Value::String("Pending".into());
    }
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(conds) = status["conditions"].as_array_mut() {
        conds.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
        conds.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": now,
        }));
    }
}

fn failure_error(b: &Binding, f: Failure) -> ApiError {
    match f {
        Failure::Revision {
            expected, actual, ..
        } => ApiError::Conflict {
            kind: "Pod".into(),
            name: b.name.clone(),
            field: "metadata.resourceVersion".into(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        },
        Failure::Absent { .. } => ApiError::NotFound {
            kind: "Pod".into(),
            namespace: b.namespace.clone(),
            name: b.name.clone(),
        },
        other => ApiError::internal(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_condition_replaces_unschedulable() {
        let mut pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        ]}});
        set_scheduled(&mut pod, "2026-01-01T00:00:00Z");
        let conds = pod["status"]["conditions"].as_array().expect("conditions");
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0]["status"], "True");
        assert_eq!(conds[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn a_pod_without_status_gets_pending() {
        let mut pod = json!({"spec": {}});
        set_scheduled(&mut pod, "t");
        assert_eq!(pod["status"]["phase"], "Pending");
        assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
    }
}
