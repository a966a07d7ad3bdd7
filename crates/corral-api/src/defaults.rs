//! Defaulting, the way the Kubernetes API server fills in what a manifest leaves out, so a stored
//! object reads the same as it would from Kubernetes. Fields of the wrong type are left alone for
//! validation to report.

use serde_json::{Map, Value, json};

use crate::kinds;
use crate::object::metadata_mut;

type Obj = Map<String, Value>;

fn is_unset(map: &Obj, key: &str) -> bool {
    matches!(map.get(key), None | Some(Value::Null))
}

/// Sets `key` when it is absent or null (a Go pointer field).
fn default_val(map: &mut Obj, key: &str, value: Value) {
    if is_unset(map, key) {
        map.insert(key.to_string(), value);
    }
}

/// Sets `key` when it is absent, null or `""` (a Go string field).
fn default_str(map: &mut Obj, key: &str, value: &str) {
    if is_unset(map, key) || map.get(key).and_then(Value::as_str) == Some("") {
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
}

/// Sets `key` when it is absent, null or 0 (a Go integer field).
fn default_nonzero(map: &mut Obj, key: &str, value: i64) {
    if is_unset(map, key) || map.get(key).and_then(Value::as_i64) == Some(0) {
        map.insert(key.to_string(), json!(value));
    }
}

/// The child object at `key`, if it is one.
fn child<'a>(map: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// The child object at `key`, created when absent or null.
fn ensure_child<'a>(map: &'a mut Obj, key: &str) -> Option<&'a mut Obj> {
    if is_unset(map, key) {
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    child(map, key)
}

/// The objects of the list at `key`.
fn each_child<'a>(map: &'a mut Obj, key: &str) -> impl Iterator<Item = &'a mut Obj> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// Fills in what Kubernetes would for this object's kind. Unknown kinds and non-objects are left as
/// they are. Namespaced kinds get `metadata.namespace: default` when it is empty; cluster-scoped
/// kinds lose any namespace (as the Kubernetes API server clears it).
pub fn apply_defaults(obj: &mut Value) {
    let Some(info) = obj
        .get("kind")
        .and_then(Value::as_str)
        .and_then(kinds::kind_info)
    else {
        return;
    };
    if let Some(meta) = metadata_mut(obj) {
        if info.namespaced {
            default_str(meta, "namespace", "default");
        } else {
            meta.remove("namespace");
        }
    }
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match info.kind {
        "Pod" => {
            if let Some(spec) = child(root, "spec") {
                default_pod_spec(spec);
                default_requests_to_limits(spec);
            }
        }
        "ReplicaSet" => {
            if let Some(spec) = child(root, "spec") {
                default_val(spec, "replicas", json!(1));
                default_template(spec);
            }
        }
        "Deployment" => {
            if let Some(spec) = child(root, "spec") {
                default_deployment(spec);
            }
        }
        "StatefulSet" => {
            if let Some(spec) = child(root, "spec") {
                default_statefulset(spec);
            }
        }
        "DaemonSet" => {
            if let Some(spec) = child(root, "spec") {
                default_daemonset(spec);
            }
        }
        "Job" => default_job(root),
        "CronJob" => {
            if let Some(spec) = child(root, "spec") {
                default_str(spec, "concurrencyPolicy", "Allow");
                default_val(spec, "suspend", json!(false));
                default_val(spec, "successfulJobsHistoryLimit", json!(3));
                default_val(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
                    default_template(job_spec);
                }
            }
        }
        "Service" => {
            if let Some(spec) = child(root, "spec") {
                default_service(spec);
            }
        }
        "Endpoints" => {
            for subset in each_child(root, "subsets") {
                for port in each_child(subset, "ports") {
                    default_str(port, "protocol", "TCP");
                }
            }
        }
        "PersistentVolumeClaim" => {
            if let Some(spec) = child(root, "spec") {
                default_str(spec, "volumeMode", "Filesystem");
            }
            if let Some(status) = ensure_child(root, "status") {
                default_str(status, "phase", "Pending");
            }
        }
        "PersistentVolume" => {
            if let Some(spec) = child(root, "spec") {
                default_str(spec, "persistentVolumeReclaimPolicy", "Retain");
                default_str(spec, "volumeMode", "Filesystem");
            }
            if let Some(status) = ensure_child(root, "status") {
                default_str(status, "phase", "Pending");
            }
        }
        "Secret" => default_str(root, "type", "Opaque"),
        "Namespace" => {
            let name = root
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .map(str::to_string);
            if let (Some(name), Some(labels)) = (
                name,
                child(root, "metadata").and_then(|m| ensure_child(m, "labels")),
            ) {
                labels.insert("kubernetes.io/metadata.name".into(), Value::String(name));
            }
            if let Some(status) = ensure_child(root, "status") {
                default_str(status, "phase", "Active");
            }
        }
        "Node" => {
            if let Some(status) = child(root, "status")
                && let Some(capacity) = status.get("capacity").filter(|c| c.is_object()).cloned()
            {
                default_val(status, "allocatable", capacity);
            }
        }
        "StorageClass" => {
            default_str(root, "reclaimPolicy", "Delete");
            default_str(root, "volumeBindingMode", "Immediate");
        }
        _ => {}
    }
}

fn default_template(spec: &mut Obj) {
    if let Some(pod_spec) = child(spec, "template").and_then(|t| child(t, "spec")) {
        default_pod_spec(pod_spec);
    }
}

fn default_deployment(spec: &mut Obj) {
    default_val(spec, "replicas", json!(1));
    if let Some(strategy) = ensure_child(spec, "strategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = ensure_child(strategy, "rollingUpdate")
        {
            default_val(rolling, "maxUnavailable", json!("25%"));
            default_val(rolling, "maxSurge", json!("25%"));
        }
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_val(spec, "progressDeadlineSeconds", json!(600));
    default_template(spec);
}

fn default_statefulset(spec: &mut Obj) {
    default_val(spec, "replicas", json!(1));
    default_str(spec, "podManagementPolicy", "OrderedReady");
    if let Some(strategy) = ensure_child(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = ensure_child(strategy, "rollingUpdate")
        {
            default_val(rolling, "partition", json!(0));
        }
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    if let Some(policy) = ensure_child(spec, "persistentVolumeClaimRetentionPolicy") {
        default_str(policy, "whenDeleted", "Retain");
        default_str(policy, "whenScaled", "Retain");
    }
    for claim in each_child(spec, "volumeClaimTemplates") {
        default_str(claim, "apiVersion", "v1");
        default_str(claim, "kind", "PersistentVolumeClaim");
        if let Some(claim_spec) = child(claim, "spec") {
            default_str(claim_spec, "volumeMode", "Filesystem");
        }
    }
    default_template(spec);
}

fn default_daemonset(spec: &mut Obj) {
    if let Some(strategy) = ensure_child(spec, "updateStrategy") {
        default_str(strategy, "type", "RollingUpdate");
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(rolling) = ensure_child(strategy, "rollingUpdate")
        {
            default_val(rolling, "maxUnavailable", json!(1));
            default_val(rolling, "maxSurge", json!(0));
        }
    }
    default_val(spec, "revisionHistoryLimit", json!(10));
    default_template(spec);
}

fn default_job(root: &mut Obj) {
    let template_labels = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.as_object().is_some_and(|l| !l.is_empty()))
        .cloned();
    // A Job without labels of its own takes its pod template's labels.
    if let (Some(labels), Some(meta)) = (template_labels, child(root, "metadata")) {
        let own_empty = match meta.get("labels") {
            None | Some(Value::Null) => true,
            Some(Value::Object(l)) => l.is_empty(),
            Some(_) => false,
        };
        if own_empty {
            meta.insert("labels".into(), labels);
        }
    }
    let Some(spec) = child(root, "spec") else {
        return;
    };
    // A non-parallel Job may leave both unset: both become 1. Completions stay unset (a work
    // queue) when only parallelism is given.
    if is_unset(spec, "completions") && is_unset(spec, "parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default_val(spec, "parallelism", json!(1));
    default_val(spec, "backoffLimit", json!(6));
    default_str(spec, "completionMode", "NonIndexed");
    default_val(spec, "suspend", json!(false));
    let replacement = if is_unset(spec, "podFailurePolicy") {
        "TerminatingOrFailed"
    } else {
        "Failed"
    };
    default_str(spec, "podReplacementPolicy", replacement);
    default_template(spec);
}

fn default_service(spec: &mut Obj) {
    default_str(spec, "type", "ClusterIP");
    default_str(spec, "sessionAffinity", "None");
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if service_type != "ExternalName" {
        default_str(spec, "internalTrafficPolicy", "Cluster");
        default_service_ips(spec);
    }
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP")
        && let Some(config) = ensure_child(spec, "sessionAffinityConfig")
        && let Some(client_ip) = ensure_child(config, "clientIP")
    {
        // Kubernetes' DefaultClientIPServiceAffinitySeconds: three hours.
        default_val(client_ip, "timeoutSeconds", json!(10800));
    }
    let external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if service_type == "NodePort"
        || service_type == "LoadBalancer"
        || (service_type == "ClusterIP" && external_ips)
    {
        default_str(spec, "externalTrafficPolicy", "Cluster");
    }
    for port in each_child(spec, "ports") {
        default_str(port, "protocol", "TCP");
        let unset = match port.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if unset && let Some(p) = port.get("port").filter(|p| p.is_number()).cloned() {
            port.insert("targetPort".into(), p);
        }
    }
}

/// A Service's `clusterIPs`, `ipFamilies` and `ipFamilyPolicy`, as Kubernetes' registry fills
/// them in a single-stack IPv4 cluster: `clusterIP` and `clusterIPs[0]` stand for each other
/// (whichever is given fills the other); the family is that of the address asked for, else IPv4;
/// the policy is `SingleStack`, except for a headless Service without a selector, which gets
/// `RequireDualStack` as in Kubernetes. Fields of the wrong type are left for validation.
fn default_service_ips(spec: &mut Obj) {
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let cluster_ips_unset = match spec.get("clusterIPs") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if !cluster_ip.is_empty() && cluster_ips_unset {
        spec.insert("clusterIPs".into(), json!([cluster_ip]));
    } else if cluster_ip.is_empty()
        && !cluster_ips_unset
        && let Some(first) = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .map(str::to_string)
    {
        spec.insert("clusterIP".into(), Value::String(first));
    }
    let cluster_ip = spec
        .get("clusterIP")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let headless = cluster_ip == "None";
    let has_selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    let policy = if headless && !has_selector {
        "RequireDualStack"
    } else {
        "SingleStack"
    };
    default_str(spec, "ipFamilyPolicy", policy);
    let families_unset = match spec.get("ipFamilies") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if families_unset {
        let family = match cluster_ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => "IPv6",
            _ => "IPv4",
        };
        spec.insert("ipFamilies".into(), json!([family]));
    }
}

/// Pod spec defaults, for Pods and for every pod template.
fn default_pod_spec(spec: &mut Obj) {
    default_str(spec, "restartPolicy", "Always");
    default_str(spec, "dnsPolicy", "ClusterFirst");
    default_str(spec, "schedulerName", "default-scheduler");
    default_val(spec, "terminationGracePeriodSeconds", json!(30));
    default_val(spec, "securityContext", json!({}));
    default_val(spec, "enableServiceLinks", json!(true));
    for key in ["initContainers", "containers"] {
        for container in each_child(spec, key) {
            default_container(container);
        }
    }
    for volume in each_child(spec, "volumes") {
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            if let Some(src) = child(volume, source) {
                default_val(src, "defaultMode", json!(420));
            }
        }
        if let Some(host_path) = child(volume, "hostPath") {
            default_val(host_path, "type", json!(""));
        }
    }
}

/// `Always` for `:latest` or an untagged image, `IfNotPresent` for any other tag or a digest.
pub fn default_pull_policy(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = match last_segment.split_once(':') {
        Some((_, tag)) => tag,
        None if digest => "",
        None => "latest",
    };
    if tag == "latest" {
        "Always"
    } else {
        "IfNotPresent"
    }
}

fn default_container(container: &mut Obj) {
    let image = container
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_str(container, "imagePullPolicy", default_pull_policy(&image));
    default_str(container, "terminationMessagePath", "/dev/termination-log");
    default_str(container, "terminationMessagePolicy", "File");
    for port in each_child(container, "ports") {
        default_str(port, "protocol", "TCP");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = child(container, probe) {
            default_nonzero(probe, "timeoutSeconds", 1);
            default_nonzero(probe, "periodSeconds", 10);
            default_nonzero(probe, "successThreshold", 1);
            default_nonzero(probe, "failureThreshold", 3);
            if let Some(http) = child(probe, "httpGet") {
                default_str(http, "path", "/");
                default_str(http, "scheme", "HTTP");
            }
        }
    }
    for env in each_child(container, "env") {
        if let Some(field_ref) = child(env, "valueFrom").and_then(|v| child(v, "fieldRef")) {
            default_str(field_ref, "apiVersion", "v1");
        }
    }
}

/// A Pod container that sets a limit but no request for a resource requests its limit.
fn default_requests_to_limits(spec: &mut Obj) {
    for key in ["initContainers", "containers"] {
        for container in each_child(spec, key) {
            let Some(resources) = child(container, "resources") else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            if limits.is_empty() {
                continue;
            }
            if let Some(requests) = ensure_child(resources, "requests") {
                for (name, limit) in limits {
                    requests.entry(name).or_insert(limit);
                }
            }
        }
    }
}

/// On update, keeps what the server allocated when the new version leaves it out, as Kubernetes
/// does (its Service registry's `patchAllocatedValues`): a Service's `clusterIP`/`clusterIPs`,
/// `ipFamilies` and `ipFamilyPolicy`. A Service that becomes `ExternalName` instead loses them when
/// the new version still carries the old values unchanged (`dropTypeDependentFields`), so an
/// update that only changes the type works. Call before defaulting the new version.
pub fn carry_forward_on_update(old: &Value, new: &mut Value) {
    if old.get("kind").and_then(Value::as_str) != Some("Service") {
        return;
    }
    let Some(old_spec) = old.get("spec") else {
        return;
    };
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let old_external = old_spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
        if !old_external {
            for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
                if spec.get(key).is_some() && spec.get(key) == old_spec.get(key) {
                    spec.remove(key);
                }
            }
        }
        return;
    }
    if old_external {
        return;
    }
    for key in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        let empty = match spec.get(key) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if let Some(old_value) = old_spec.get(key).filter(|v| !v.is_null())
            && empty
        {
            spec.insert(key.to_string(), old_value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(obj: Value) -> Value {
        let mut obj = obj;
        apply_defaults(&mut obj);
        obj
    }

    fn pod_template() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{
                "name": "web", "image": "nginx:1.14.2",
                "ports": [{"containerPort": 80}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
            }]}
        })
    }

    /// (manifest, JSON pointer, expected value after defaulting)
    fn table() -> Vec<(Value, &'static str, Value)> {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_template()["spec"].clone()});
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()}});
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "s"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web", "template": pod_template(),
                     "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "ds"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()}});
        let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()}});
        let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"}, "spec": {"template": pod_template()}});
        let work_queue = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "q"},
            "spec": {"parallelism": 3, "template": pod_template()}});
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": pod_template()}}}});
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        let node_port = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np"},
            "spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        vec![
            (pod.clone(), "/metadata/namespace", json!("default")),
            (pod.clone(), "/spec/restartPolicy", json!("Always")),
            (pod.clone(), "/spec/dnsPolicy", json!("ClusterFirst")),
            (
                pod.clone(),
                "/spec/schedulerName",
                json!("default-scheduler"),
            ),
            (
                pod.clone(),
                "/spec/terminationGracePeriodSeconds",
                json!(30),
            ),
            (pod.clone(), "/spec/enableServiceLinks", json!(true)),
            (pod.clone(), "/spec/securityContext", json!({})),
            (
                pod.clone(),
                "/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/terminationMessagePath",
                json!("/dev/termination-log"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/terminationMessagePolicy",
                json!("File"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/ports/0/protocol",
                json!("TCP"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/timeoutSeconds",
                json!(1),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/periodSeconds",
                json!(10),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/successThreshold",
                json!(1),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/failureThreshold",
                json!(3),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/httpGet/path",
                json!("/"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/livenessProbe/httpGet/scheme",
                json!("HTTP"),
            ),
            (
                pod.clone(),
                "/spec/containers/0/env/0/valueFrom/fieldRef/apiVersion",
                json!("v1"),
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "prod"}}),
                "/metadata/namespace",
                json!("prod"),
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "p", "namespace": ""}}),
                "/metadata/namespace",
                json!("default"),
            ),
            (
                json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": []}}),
                "/spec/restartPolicy",
                json!("Never"),
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "busybox"}]}}),
                "/spec/containers/0/imagePullPolicy",
                json!("Always"),
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "busybox", "imagePullPolicy": "Never"}]}}),
                "/spec/containers/0/imagePullPolicy",
                json!("Never"),
            ),
            (
                json!({"kind": "Pod", "spec": {"initContainers": [{"name": "a", "image": "busybox:latest"}], "containers": []}}),
                "/spec/initContainers/0/imagePullPolicy",
                json!("Always"),
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [{"name": "a", "image": "busybox", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}}}]}}),
                "/spec/containers/0/resources/requests",
                json!({"cpu": "100m", "memory": "128Mi"}),
            ),
            (
                json!({"kind": "Pod", "spec": {"containers": [], "volumes": [{"name": "c", "configMap": {"name": "x"}}]}}),
                "/spec/volumes/0/configMap/defaultMode",
                json!(420),
            ),
            (
                json!({"kind": "Node", "metadata": {"name": "n1", "namespace": "default"}}),
                "/metadata/namespace",
                Value::Null,
            ),
            (deploy.clone(), "/spec/replicas", json!(1)),
            (
                deploy.clone(),
                "/spec/strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
            ),
            (deploy.clone(), "/spec/revisionHistoryLimit", json!(10)),
            (deploy.clone(), "/spec/progressDeadlineSeconds", json!(600)),
            (
                deploy.clone(),
                "/spec/template/spec/restartPolicy",
                json!("Always"),
            ),
            (
                deploy.clone(),
                "/spec/template/spec/containers/0/ports/0/protocol",
                json!("TCP"),
            ),
            (
                json!({"kind": "Deployment", "spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}),
                "/spec",
                json!({"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}),
            ),
            (rs.clone(), "/spec/replicas", json!(1)),
            (
                rs.clone(),
                "/spec/template/spec/dnsPolicy",
                json!("ClusterFirst"),
            ),
            (sts.clone(), "/spec/replicas", json!(1)),
            (
                sts.clone(),
                "/spec/podManagementPolicy",
                json!("OrderedReady"),
            ),
            (
                sts.clone(),
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            ),
            (sts.clone(), "/spec/revisionHistoryLimit", json!(10)),
            (
                sts.clone(),
                "/spec/persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            ),
            (
                sts.clone(),
                "/spec/volumeClaimTemplates/0/spec/volumeMode",
                json!("Filesystem"),
            ),
            (
                sts.clone(),
                "/spec/template/spec/schedulerName",
                json!("default-scheduler"),
            ),
            (
                ds.clone(),
                "/spec/updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            ),
            (ds.clone(), "/spec/revisionHistoryLimit", json!(10)),
            (ds.clone(), "/spec/replicas", Value::Null),
            (job.clone(), "/spec/backoffLimit", json!(6)),
            (job.clone(), "/spec/completions", json!(1)),
            (job.clone(), "/spec/parallelism", json!(1)),
            (job.clone(), "/spec/completionMode", json!("NonIndexed")),
            (job.clone(), "/spec/suspend", json!(false)),
            (
                job.clone(),
                "/spec/podReplacementPolicy",
                json!("TerminatingOrFailed"),
            ),
            (job.clone(), "/metadata/labels", json!({"app": "web"})),
            (
                job.clone(),
                "/spec/template/spec/restartPolicy",
                json!("Always"),
            ),
            (work_queue.clone(), "/spec/completions", Value::Null),
            (work_queue.clone(), "/spec/parallelism", json!(3)),
            (cron.clone(), "/spec/concurrencyPolicy", json!("Allow")),
            (cron.clone(), "/spec/suspend", json!(false)),
            (cron.clone(), "/spec/successfulJobsHistoryLimit", json!(3)),
            (cron.clone(), "/spec/failedJobsHistoryLimit", json!(1)),
            (
                cron.clone(),
                "/spec/jobTemplate/spec/template/spec/containers/0/imagePullPolicy",
                json!("IfNotPresent"),
            ),
            (svc.clone(), "/spec/type", json!("ClusterIP")),
            (svc.clone(), "/spec/sessionAffinity", json!("None")),
            (svc.clone(), "/spec/internalTrafficPolicy", json!("Cluster")),
            (
                svc.clone(),
                "/spec/ports/0",
                json!({"port": 80, "protocol": "TCP", "targetPort": 80}),
            ),
            (svc.clone(), "/spec/ports/1/targetPort", json!("https")),
            (svc.clone(), "/spec/externalTrafficPolicy", Value::Null),
            (
                node_port.clone(),
                "/spec/externalTrafficPolicy",
                json!("Cluster"),
            ),
            (
                json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {}}),
                "/spec/volumeMode",
                json!("Filesystem"),
            ),
            (
                json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c"}, "spec": {}}),
                "/status/phase",
                json!("Pending"),
            ),
            (
                json!({"kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": {}}),
                "/spec/persistentVolumeReclaimPolicy",
                json!("Retain"),
            ),
            (
                json!({"kind": "PersistentVolume", "metadata": {"name": "v"}, "spec": {}}),
                "/spec/volumeMode",
                json!("Filesystem"),
            ),
            (
                json!({"kind": "PersistentVolume", "metadata": {"name": "v"}}),
                "/metadata/namespace",
                Value::Null,
            ),
            (
                json!({"kind": "Secret", "metadata": {"name": "s"}}),
                "/type",
                json!("Opaque"),
            ),
            (
                json!({"kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/tls"}),
                "/type",
                json!("kubernetes.io/tls"),
            ),
            (
                json!({"kind": "Namespace", "metadata": {"name": "prod"}}),
                "/metadata/labels",
                json!({"kubernetes.io/metadata.name": "prod"}),
            ),
            (
                json!({"kind": "Namespace", "metadata": {"name": "prod"}}),
                "/status/phase",
                json!("Active"),
            ),
            (
                json!({"kind": "StorageClass", "metadata": {"name": "fast"}, "provisioner": "x"}),
                "/reclaimPolicy",
                json!("Delete"),
            ),
            (
                json!({"kind": "StorageClass", "metadata": {"name": "fast"}, "provisioner": "x"}),
                "/volumeBindingMode",
                json!("Immediate"),
            ),
            (
                json!({"kind": "Node", "metadata": {"name": "n"}, "status": {"capacity": {"cpu": "4"}}}),
                "/status/allocatable",
                json!({"cpu": "4"}),
            ),
            (
                json!({"kind": "Endpoints", "subsets": [{"ports": [{"port": 80}]}]}),
                "/subsets/0/ports/0/protocol",
                json!("TCP"),
            ),
        ]
    }

    #[test]
    fn defaults_match_kubernetes() {
        for (manifest, pointer, want) in table() {
            let kind = manifest["kind"].clone();
            let got = defaulted(manifest);
            assert_eq!(
                got.pointer(pointer).cloned().unwrap_or(Value::Null),
                want,
                "{kind} {pointer}"
            );
        }
    }

    #[test]
    fn defaulting_twice_changes_nothing_more() {
        for (manifest, _, _) in table() {
            let once = defaulted(manifest);
            assert_eq!(defaulted(once.clone()), once);
        }
    }

    #[test]
    fn wrong_types_and_unknown_kinds_are_left_for_validation() {
        let odd = json!({"kind": "Pod", "metadata": "oops", "spec": {"containers": "nope"}});
        assert_eq!(defaulted(odd.clone())["spec"]["containers"], json!("nope"));
        assert_eq!(defaulted(odd.clone())["metadata"], json!("oops"));
        let widget = json!({"kind": "Widget", "spec": {}});
        assert_eq!(defaulted(widget.clone()), widget);
        assert_eq!(defaulted(json!("text")), json!("text"));
    }

    #[test]
    fn pull_policy_follows_the_image_tag() {
        let table = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.0", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:latest@sha256:abcd", "Always"),
        ];
        for (image, want) in table {
            assert_eq!(default_pull_policy(image), want, "{image}");
        }
    }

    #[test]
    fn an_update_keeps_the_allocated_cluster_ip() {
        let old = json!({"kind": "Service", "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]}});
        let mut new = json!({"kind": "Service", "spec": {"ports": [{"port": 81}]}});
        carry_forward_on_update(&old, &mut new);
        assert_eq!(new["spec"]["clusterIP"], json!("10.96.0.10"));
        assert_eq!(new["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let mut external = json!({"kind": "Service", "spec": {"type": "ExternalName", "externalName": "x.example.com"}});
        carry_forward_on_update(&old, &mut external);
        assert_eq!(external["spec"].get("clusterIP"), None);
        // The live object with only its type changed: the allocated fields go with the type.
        let mut retyped = old.clone();
        retyped["spec"]["type"] = json!("ExternalName");
        retyped["spec"]["externalName"] = json!("x.example.com");
        carry_forward_on_update(&old, &mut retyped);
        assert_eq!(retyped["spec"].get("clusterIP"), None);
        assert_eq!(retyped["spec"].get("clusterIPs"), None);
        // Back from ExternalName: nothing to carry, a new address is allocated.
        let mut back = json!({"kind": "Service", "spec": {"ports": [{"port": 80}]}});
        carry_forward_on_update(&retyped, &mut back);
        assert_eq!(back["spec"].get("clusterIP"), None);
    }

    #[test]
    fn services_get_single_stack_ipv4_families_and_matching_cluster_ips() {
        let svc = |spec: Value| {
            defaulted(
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec}),
            )
        };
        let plain = svc(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        assert_eq!(plain["spec"]["ipFamilies"], json!(["IPv4"]));
        assert_eq!(plain["spec"]["ipFamilyPolicy"], json!("SingleStack"));
        assert_eq!(plain["spec"].get("clusterIPs"), None, "allocated later");
        let asked = svc(json!({"clusterIP": "10.96.0.10", "ports": [{"port": 80}]}));
        assert_eq!(asked["spec"]["clusterIPs"], json!(["10.96.0.10"]));
        let listed = svc(json!({"clusterIPs": ["10.96.0.11"], "ports": [{"port": 80}]}));
        assert_eq!(listed["spec"]["clusterIP"], json!("10.96.0.11"));
        let headless = svc(json!({"clusterIP": "None", "selector": {"app": "web"}}));
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], json!("SingleStack"));
        let selectorless = svc(json!({"clusterIP": "None"}));
        assert_eq!(
            selectorless["spec"]["ipFamilyPolicy"],
            json!("RequireDualStack")
        );
        let v6 = svc(json!({"clusterIP": "fd00::10", "ports": [{"port": 80}]}));
        assert_eq!(v6["spec"]["ipFamilies"], json!(["IPv6"]));
        let sticky = svc(json!({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}));
        assert_eq!(
            sticky["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let external = svc(json!({"type": "ExternalName", "externalName": "db.example.com"}));
        for key in [
            "clusterIPs",
            "ipFamilies",
            "ipFamilyPolicy",
            "internalTrafficPolicy",
        ] {
            assert_eq!(external["spec"].get(key), None, "{key}");
        }
    }
}
