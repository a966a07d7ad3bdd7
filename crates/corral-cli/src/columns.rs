//! The columns `corralctl get` shows for each kind, computed from the object as kubectl computes
//! them. Kinds without their own columns show NAME and AGE.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::{age, human_duration};

/// The headers for `kind` (a registered kind name such as `Pod`); `wide` appends `-o wide`'s extra
/// columns.
pub fn headers(kind: &str, wide: bool) -> Vec<String> {
    let (base, extra): (&[&str], &[&str]) = match kind {
        "Pod" => (
            &["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            &["IP", "NODE"],
        ),
        "Deployment" => (
            &["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "ReplicaSet" => (
            &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "StatefulSet" => (&["NAME", "READY", "AGE"], &["CONTAINERS", "IMAGES"]),
        "DaemonSet" => (
            &[
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "Job" => (
            &["NAME", "COMPLETIONS", "DURATION", "AGE"],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "CronJob" => (
            &[
                "NAME",
                "SCHEDULE",
                "TIMEZONE",
                "SUSPEND",
                "ACTIVE",
                "LAST SCHEDULE",
                "AGE",
            ],
            &["CONTAINERS", "IMAGES", "SELECTOR"],
        ),
        "Service" => (
            &[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
            ],
            &["SELECTOR"],
        ),
        "Node" => (
            &["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
            &[
                "INTERNAL-IP",
                "EXTERNAL-IP",
                "OS-IMAGE",
                "KERNEL-VERSION",
                "CONTAINER-RUNTIME",
            ],
        ),
        "Namespace" => (&["NAME", "STATUS", "AGE"], &[]),
        "PersistentVolumeClaim" => (
            &[
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS MODES",
                "STORAGECLASS",
                "AGE",
            ],
            &["VOLUMEMODE"],
        ),
        "PersistentVolume" => (
            &[
                "NAME",
                "CAPACITY",
                "ACCESS MODES",
                "RECLAIM POLICY",
                "STATUS",
                "CLAIM",
                "STORAGECLASS",
                "REASON",
                "AGE",
            ],
            &["VOLUMEMODE"],
        ),
        "ConfigMap" => (&["NAME", "DATA", "AGE"], &[]),
        "Secret" => (&["NAME", "TYPE", "DATA", "AGE"], &[]),
        "Endpoints" => (&["NAME", "ENDPOINTS", "AGE"], &[]),
        "ServiceAccount" => (&["NAME", "SECRETS", "AGE"], &[]),
        "Event" => (&["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], &[]),
        "StorageClass" => (
            &[
                "NAME",
                "PROVISIONER",
                "RECLAIMPOLICY",
                "VOLUMEBINDINGMODE",
                "ALLOWVOLUMEEXPANSION",
                "AGE",
            ],
            &[],
        ),
        "Lease" => (&["NAME", "HOLDER", "AGE"], &[]),
        "ControllerRevision" => (&["NAME", "CONTROLLER", "REVISION", "AGE"], &[]),
        _ => (&["NAME", "AGE"], &[]),
    };
    let extra = if wide { extra } else { &[] };
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// The cells of one object, matching [`headers`].
pub fn row(kind: &str, obj: &Value, wide: bool, now: Timestamp) -> Vec<String> {
    let name = s(obj, "/metadata/name");
    let created = age(
        obj.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now,
    );
    let (base, extra): (Vec<String>, Vec<String>) = match kind {
        "Pod" => {
            let p = pod_summary(obj);
            (
                vec![
                    name,
                    format!("{}/{}", p.ready, p.total),
                    p.status,
                    p.restarts.to_string(),
                    created,
                ],
                vec![
                    or_none(s(obj, "/status/podIP")),
                    or_none(s(obj, "/spec/nodeName")),
                ],
            )
        }
        "Deployment" => (
            vec![
                name,
                format!("{}/{}", n(obj, "/status/readyReplicas"), replicas(obj)),
                n(obj, "/status/updatedReplicas").to_string(),
                n(obj, "/status/availableReplicas").to_string(),
                created,
            ],
            template_columns(obj, true),
        ),
        "ReplicaSet" => (
            vec![
                name,
                replicas(obj).to_string(),
                n(obj, "/status/replicas").to_string(),
                n(obj, "/status/readyReplicas").to_string(),
                created,
            ],
            template_columns(obj, true),
        ),
        "StatefulSet" => (
            vec![
                name,
                format!("{}/{}", n(obj, "/status/readyReplicas"), replicas(obj)),
                created,
            ],
            template_columns(obj, false),
        ),
        "DaemonSet" => (
            vec![
                name,
                n(obj, "/status/desiredNumberScheduled").to_string(),
                n(obj, "/status/currentNumberScheduled").to_string(),
                n(obj, "/status/numberReady").to_string(),
                n(obj, "/status/updatedNumberScheduled").to_string(),
                n(obj, "/status/numberAvailable").to_string(),
                or_none(map_text(obj.pointer("/spec/template/spec/nodeSelector"))),
                created,
            ],
            template_columns(obj, true),
        ),
        "Job" => (
            vec![name, job_completions(obj), job_duration(obj, now), created],
            template_columns(obj, true),
        ),
        "CronJob" => (
            vec![
                name,
                s(obj, "/spec/schedule"),
                or_none(s(obj, "/spec/timeZone")),
                obj.pointer("/spec/suspend")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
                obj.pointer("/status/active")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
                    .to_string(),
                match obj
                    .pointer("/status/lastScheduleTime")
                    .and_then(Value::as_str)
                {
                    Some(t) => age(Some(t), now),
                    None => "<none>".into(),
                },
                created,
            ],
            {
                let job_template = obj
                    .pointer("/spec/jobTemplate")
                    .cloned()
                    .unwrap_or(Value::Null);
                template_columns(&job_template, true)
            },
        ),
        "Service" => (
            vec![
                name,
                service_type(obj),
                service_cluster_ip(obj),
                service_external_ip(obj),
                service_ports(obj),
                created,
            ],
            vec![or_none(map_text(obj.pointer("/spec/selector")))],
        ),
        "Node" => (
            vec![
                name,
                node_status(obj),
                node_roles(obj),
                created,
                s(obj, "/status/nodeInfo/kubeletVersion"),
            ],
            vec![
                or_none(node_address(obj, "InternalIP")),
                or_none(node_address(obj, "ExternalIP")),
                or_none(s(obj, "/status/nodeInfo/osImage")),
                or_none(s(obj, "/status/nodeInfo/kernelVersion")),
                or_none(s(obj, "/status/nodeInfo/containerRuntimeVersion")),
            ],
        ),
        "Namespace" => {
            let phase = s(obj, "/status/phase");
            (
                vec![
                    name,
                    if phase.is_empty() {
                        "Active".into()
                    } else {
                        phase
                    },
                    created,
                ],
                vec![],
            )
        }
        "PersistentVolumeClaim" => {
            let phase = s(obj, "/status/phase");
            (
                vec![
                    name,
                    if phase.is_empty() {
                        "Pending".into()
                    } else {
                        phase
                    },
                    s(obj, "/spec/volumeName"),
                    quantity(obj.pointer("/status/capacity/storage")),
                    access_modes(obj.pointer("/status/accessModes")),
                    storage_class(obj),
                    created,
                ],
                vec![volume_mode(obj)],
            )
        }
        "PersistentVolume" => {
            let claim = match (
                s(obj, "/spec/claimRef/namespace"),
                s(obj, "/spec/claimRef/name"),
            ) {
                (_, c) if c.is_empty() => String::new(),
                (ns, c) => format!("{ns}/{c}"),
            };
            let policy = s(obj, "/spec/persistentVolumeReclaimPolicy");
            (
                vec![
                    name,
                    quantity(obj.pointer("/spec/capacity/storage")),
                    access_modes(obj.pointer("/spec/accessModes")),
                    if policy.is_empty() {
                        "Retain".into()
                    } else {
                        policy
                    },
                    s(obj, "/status/phase"),
                    claim,
                    storage_class(obj),
                    s(obj, "/status/reason"),
                    created,
                ],
                vec![volume_mode(obj)],
            )
        }
        "ConfigMap" => (
            vec![
                name,
                (len(obj, "/data") + len(obj, "/binaryData")).to_string(),
                created,
            ],
            vec![],
        ),
        "Secret" => {
            let t = s(obj, "/type");
            (
                vec![
                    name,
                    if t.is_empty() { "Opaque".into() } else { t },
                    (len(obj, "/data") + len(obj, "/stringData")).to_string(),
                    created,
                ],
                vec![],
            )
        }
        "Endpoints" => (vec![name, endpoints(obj), created], vec![]),
        "ServiceAccount" => (
            vec![name, len(obj, "/secrets").to_string(), created],
            vec![],
        ),
        "Event" => (
            vec![
                event_last_seen(obj, now),
                s(obj, "/type"),
                s(obj, "/reason"),
                format!(
                    "{}/{}",
                    s(obj, "/involvedObject/kind").to_ascii_lowercase(),
                    s(obj, "/involvedObject/name")
                ),
                s(obj, "/message"),
            ],
            vec![],
        ),
        "StorageClass" => {
            let policy = s(obj, "/reclaimPolicy");
            let binding = s(obj, "/volumeBindingMode");
            let default = obj
                .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                .and_then(Value::as_str)
                == Some("true");
            (
                vec![
                    if default {
                        format!("{name} (default)")
                    } else {
                        name
                    },
                    s(obj, "/provisioner"),
                    if policy.is_empty() {
                        "Delete".into()
                    } else {
                        policy
                    },
                    if binding.is_empty() {
                        "Immediate".into()
                    } else {
                        binding
                    },
                    obj.pointer("/allowVolumeExpansion")
                        .and_then(Value::as_bool)
                        .unwrap_or(false)
                        .to_string(),
                    created,
                ],
                vec![],
            )
        }
        "Lease" => (vec![name, s(obj, "/spec/holderIdentity"), created], vec![]),
        "ControllerRevision" => (
            vec![name, revision_controller(obj), s(obj, "/revision"), created],
            vec![],
        ),
        _ => (vec![name, created], vec![]),
    };
    let mut cells = base;
    if wide {
        cells.extend(extra);
    }
    cells
}

/// kubectl's CONTROLLER column of a ControllerRevision: `statefulset.apps/web`, `<none>`
/// without a controller.
fn revision_controller(obj: &Value) -> String {
    let controller = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true));
    match controller {
        Some(r) => {
            let kind = r["kind"].as_str().unwrap_or("").to_ascii_lowercase();
            let group = r["apiVersion"]
                .as_str()
                .and_then(|v| v.split_once('/'))
                .map(|(g, _)| format!(".{g}"))
                .unwrap_or_default();
            format!("{kind}{group}/{}", r["name"].as_str().unwrap_or(""))
        }
        None => "<none>".into(),
    }
}

/// The string at a JSON pointer, `""` when absent; numbers and booleans are written out.
pub(crate) fn s(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(v)) => v.to_string(),
        Some(Value::Bool(v)) => v.to_string(),
        _ => String::new(),
    }
}

/// The integer at a JSON pointer, 0 when absent.
fn n(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn len(obj: &Value, pointer: &str) -> usize {
    match obj.pointer(pointer) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

/// `spec.replicas`, defaulting to 1 as Kubernetes does.
fn replicas(obj: &Value) -> i64 {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

/// `k=v,k2=v2` for a string map, `""` for none.
fn map_text(map: Option<&Value>) -> String {
    map.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// CONTAINERS, IMAGES and (when `selector`) SELECTOR of a workload with a pod template.
fn template_columns(obj: &Value, selector: bool) -> Vec<String> {
    let containers = obj
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names = containers
        .iter()
        .map(|c| s(c, "/name"))
        .collect::<Vec<_>>()
        .join(",");
    let images = containers
        .iter()
        .map(|c| s(c, "/image"))
        .collect::<Vec<_>>()
        .join(",");
    let mut cells = vec![names, images];
    if selector {
        cells.push(or_none(selector_text(obj.pointer("/spec/selector"))));
    }
    cells
}

/// A label selector as kubectl prints it: `app=web,tier in (a,b)`.
pub(crate) fn selector_text(selector: Option<&Value>) -> String {
    let Some(selector) = selector else {
        return String::new();
    };
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels") {
        let text = map_text(Some(labels));
        if !text.is_empty() {
            parts.push(text);
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(expr, "/key");
        let values = expr.get("values").and_then(Value::as_array).map(|v| {
            v.iter()
                .map(|x| x.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        });
        parts.push(match s(expr, "/operator").as_str() {
            "In" => format!("{key} in ({})", values.unwrap_or_default()),
            "NotIn" => format!("{key} notin ({})", values.unwrap_or_default()),
            "Exists" => key,
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    parts.join(",")
}

/// What kubectl's pod printer computes: ready and total containers, restarts, the STATUS word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodSummary {
    pub ready: usize,
    pub total: usize,
    pub restarts: i64,
    pub status: String,
}

pub(crate) fn pod_summary(pod: &Value) -> PodSummary {
    let empty = Vec::new();
    let array = |p: &str| pod.pointer(p).and_then(Value::as_array).unwrap_or(&empty);
    let total = array("/spec/containers").len();
    let init_total = array("/spec/initContainers").len();
    let mut reason = s(pod, "/status/phase");
    if reason.is_empty() {
        reason = "Pending".into();
    }
    let status_reason = s(pod, "/status/reason");
    if !status_reason.is_empty() {
        reason = status_reason.clone();
    }
    let mut restarts = 0;
    let mut initializing = false;
    for (i, c) in array("/status/initContainerStatuses").iter().enumerate() {
        restarts += n(c, "/restartCount");
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = s(c, "/state/waiting/reason");
        if let Some(t) = terminated {
            if n(t, "/exitCode") == 0 {
                continue;
            }
            let r = s(t, "/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if n(t, "/signal") != 0 {
                format!("Init:Signal:{}", n(t, "/signal"))
            } else {
                format!("Init:ExitCode:{}", n(t, "/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{init_total}");
        }
        initializing = true;
        break;
    }
    let mut ready = 0;
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        for c in array("/status/containerStatuses").iter().rev() {
            restarts += n(c, "/restartCount");
            let waiting_reason = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason;
            } else if let Some(t) = terminated {
                let r = s(t, "/reason");
                reason = if !r.is_empty() {
                    r
                } else if n(t, "/signal") != 0 {
                    format!("Signal:{}", n(t, "/signal"))
                } else {
                    format!("ExitCode:{}", n(t, "/exitCode"))
                };
            } else if c.pointer("/state/running").is_some()
                && c.get("ready").and_then(Value::as_bool) == Some(true)
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = array("/status/conditions")
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty())
    {
        reason = if status_reason == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    PodSummary {
        ready,
        total,
        restarts,
        status: reason,
    }
}

fn job_completions(job: &Value) -> String {
    let succeeded = n(job, "/status/succeeded");
    match (
        job.pointer("/spec/completions").and_then(Value::as_i64),
        job.pointer("/spec/parallelism").and_then(Value::as_i64),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, Some(p)) if p > 1 => format!("{succeeded}/1 of {p}"),
        _ => format!("{succeeded}/1"),
    }
}

fn job_duration(job: &Value, now: Timestamp) -> String {
    let time = |p: &str| {
        job.pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    match (time("/status/startTime"), time("/status/completionTime")) {
        (None, _) => String::new(),
        (Some(start), Some(end)) => human_duration(end.as_second() - start.as_second()),
        (Some(start), None) => human_duration(now.as_second() - start.as_second()),
    }
}

fn service_type(svc: &Value) -> String {
    let t = s(svc, "/spec/type");
    if t.is_empty() { "ClusterIP".into() } else { t }
}

fn service_cluster_ip(svc: &Value) -> String {
    if service_type(svc) == "ExternalName" {
        return "<none>".into();
    }
    or_none(s(svc, "/spec/clusterIP"))
}

fn service_external_ip(svc: &Value) -> String {
    let external_ips: Vec<String> = svc
        .pointer("/spec/externalIPs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    match service_type(svc).as_str() {
        "ExternalName" => s(svc, "/spec/externalName"),
        "LoadBalancer" => {
            let mut ips: Vec<String> = svc
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|i| {
                            if s(i, "/ip").is_empty() {
                                s(i, "/hostname")
                            } else {
                                s(i, "/ip")
                            }
                        })
                        .filter(|v| !v.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            ips.extend(external_ips);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        _ if !external_ips.is_empty() => external_ips.join(","),
        _ => "<none>".into(),
    }
}

fn service_ports(svc: &Value) -> String {
    let ports: Vec<String> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| {
                    let protocol = match s(p, "/protocol") {
                        pr if pr.is_empty() => "TCP".to_string(),
                        pr => pr,
                    };
                    match n(p, "/nodePort") {
                        0 => format!("{}/{protocol}", n(p, "/port")),
                        node_port => format!("{}:{node_port}/{protocol}", n(p, "/port")),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

fn node_status(node: &Value) -> String {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| s(c, "/type") == "Ready"))
        .map(|c| s(c, "/status"));
    let mut status = match ready.as_deref() {
        Some("True") => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    status
}

fn node_roles(node: &Value) -> String {
    let mut roles: Vec<String> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| {
                    if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                        Some(role.to_string())
                    } else if k == "kubernetes.io/role" {
                        v.as_str().map(str::to_string)
                    } else {
                        None
                    }
                })
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    roles.dedup();
    or_none(roles.join(","))
}

fn node_address(node: &Value, kind: &str) -> String {
    node.pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|addr| s(addr, "/type") == kind))
        .map(|addr| s(addr, "/address"))
        .unwrap_or_default()
}

fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(q)) => q.to_string(),
        _ => String::new(),
    }
}

fn access_modes(modes: Option<&Value>) -> String {
    modes
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn storage_class(obj: &Value) -> String {
    let class = s(obj, "/spec/storageClassName");
    if class.is_empty() {
        "<unset>".into()
    } else {
        class
    }
}

fn volume_mode(obj: &Value) -> String {
    let mode = s(obj, "/spec/volumeMode");
    if mode.is_empty() {
        "Filesystem".into()
    } else {
        mode
    }
}

/// kubectl's `formatEndpoints`: for each subset, each port with each ready address
/// (`ip:port`; the bare IP for a subset without ports), the first three, then how many more.
fn endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let mut list = Vec::new();
    let mut count = 0usize;
    for subset in ep
        .pointer("/subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let addresses: Vec<String> = subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| s(a, "/ip"))
            .collect();
        let ports: Vec<i64> = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(|p| p.iter().map(|p| n(p, "/port")).collect())
            .unwrap_or_default();
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().cloned());
            continue;
        }
        for port in ports {
            count += addresses.len();
            list.extend(addresses.iter().map(|ip| {
                if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                }
            }));
        }
    }
    list.truncate(MAX);
    match count {
        0 => "<none>".into(),
        n if n > MAX => format!("{} + {} more...", list.join(","), n - MAX),
        _ => list.join(","),
    }
}

fn event_last_seen(ev: &Value, now: Timestamp) -> String {
    let when = [
        "/lastTimestamp",
        "/eventTime",
        "/firstTimestamp",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| {
        ev.pointer(p)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
    });
    age(when, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T01:00:00Z".parse().expect("valid")
    }

    #[test]
    fn every_row_has_one_cell_per_header() {
        let kinds = [
            "Pod",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
            "DaemonSet",
            "Job",
            "CronJob",
            "Service",
            "Node",
            "Namespace",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "ConfigMap",
            "Secret",
            "Endpoints",
            "ServiceAccount",
            "Event",
            "StorageClass",
            "Lease",
            "ControllerRevision",
            "Whatever",
        ];
        for kind in kinds {
            for wide in [false, true] {
                assert_eq!(
                    headers(kind, wide).len(),
                    row(kind, &json!({}), wide, now()).len(),
                    "{kind} wide={wide}"
                );
            }
        }
    }

    #[test]
    fn a_running_pod_shows_ready_restarts_ip_and_node() {
        let pod = json!({
            "metadata": {"name": "web-0", "creationTimestamp": "2026-01-01T00:55:00Z"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "ready": false, "restartCount": 1, "state": {"running": {}}}
            ]}
        });
        assert_eq!(
            row("Pod", &pod, true, now()),
            ["web-0", "1/2", "Running", "3", "5m", "10.1.0.5", "n1"]
        );
    }

    #[test]
    fn pod_status_follows_kubectl() {
        let crash = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Running", "containerStatuses": [
            {"name": "a", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}});
        assert_eq!(pod_summary(&crash).status, "CrashLoopBackOff");
        let init = json!({"spec": {"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
                {"name": "i2", "state": {"running": {}}}]}});
        assert_eq!(pod_summary(&init).status, "Init:1/2");
        let failed = json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Failed", "containerStatuses": [
            {"name": "a", "state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(pod_summary(&failed).status, "ExitCode:3");
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_summary(&deleting).status, "Terminating");
        assert_eq!(pod_summary(&json!({})).status, "Pending");
    }

    #[test]
    fn deployments_count_ready_against_desired() {
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            row("Deployment", &d, true, now()),
            [
                "web",
                "2/3",
                "3",
                "2",
                "<unknown>",
                "nginx",
                "nginx:1.27",
                "app=web"
            ]
        );
    }

    #[test]
    fn statefulsets_and_their_revisions_read_like_kubectl() {
        let sts = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2},
            "status": {"readyReplicas": 1}});
        assert_eq!(
            row("StatefulSet", &sts, false, now()),
            ["web", "1/2", "<unknown>"]
        );
        let rev = json!({"metadata": {"name": "web-6b8c9d7f5", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
            "revision": 2});
        assert_eq!(
            row("ControllerRevision", &rev, false, now()),
            ["web-6b8c9d7f5", "statefulset.apps/web", "2", "<unknown>"]
        );
        assert_eq!(
            row(
                "ControllerRevision",
                &json!({"metadata": {"name": "x"}, "revision": 1}),
                false,
                now()
            )[1],
            "<none>"
        );
    }

    #[test]
    fn services_show_type_ips_and_ports() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}});
        assert_eq!(
            row("Service", &svc, false, now()),
            [
                "web",
                "NodePort",
                "10.96.0.10",
                "<none>",
                "80:30080/TCP,53/UDP",
                "<unknown>"
            ]
        );
        let lb = json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.11"}});
        assert_eq!(service_external_ip(&lb), "<pending>");
        let headless = json!({"spec": {"clusterIP": "None"}});
        assert_eq!(service_cluster_ip(&headless), "None");
    }

    #[test]
    fn nodes_show_readiness_roles_and_version() {
        let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "corral-0.1.0"}}});
        assert_eq!(
            row("Node", &node, false, now()),
            [
                "n1",
                "Ready,SchedulingDisabled",
                "control-plane",
                "<unknown>",
                "corral-0.1.0"
            ]
        );
    }

    #[test]
    fn jobs_show_completions_and_duration() {
        let job = json!({"spec": {"completions": 3}, "status": {"succeeded": 1,
            "startTime": "2026-01-01T00:00:00Z", "completionTime": "2026-01-01T00:00:42Z"}});
        assert_eq!(
            (job_completions(&job), job_duration(&job, now())),
            ("1/3".into(), "42s".into())
        );
        let parallel = json!({"spec": {"parallelism": 2}});
        assert_eq!(job_completions(&parallel), "0/1 of 2");
    }

    #[test]
    fn selectors_print_labels_then_expressions() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]}, {"key": "gpu", "operator": "DoesNotExist"}]});
        assert_eq!(selector_text(Some(&sel)), "app=web,tier in (a,b),!gpu");
    }

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]});
        assert_eq!(
            endpoints(&ep),
            "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."
        );
        let headless = json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}]});
        assert_eq!(endpoints(&headless), "10.0.0.1,fd00::1");
        let v6 = json!({"subsets": [{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints(&v6), "[fd00::1]:80");
        let not_ready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]});
        assert_eq!(endpoints(&not_ready), "<none>");
        assert_eq!(endpoints(&json!({})), "<none>");
    }
}
