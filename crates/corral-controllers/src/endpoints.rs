//! The Endpoints controller: Kubernetes' `endpoint-controller` (`pkg/controller/endpoint`), run
//! by the Raft leader.
//!
//! Event handlers only queue keys (`namespace/name` of a Service): a Service's own changes; a
//! pod change that matters to endpoints (labels, IPs, readiness, termination, hostname,
//! subdomain, node, phase, ports) queues every Service of the pod's namespace whose selector
//! matches the pod before or after; an Endpoints object that is deleted or changed by someone
//! else queues its Service, so the controller puts it back. A sync of one key:
//!
//! 1. reads the Service, the pods of its namespace and the current Endpoints from the caches;
//! 2. asks [`decide`], a pure function, what the Endpoints should be: for a Service with a
//!    selector (and not `ExternalName`), every matching pod that has an IP, has not finished
//!    and is not terminating (unless `publishNotReadyAddresses`) is an address, ready or not
//!    ready by its `Ready` condition, with its ports resolved (a named `targetPort` is looked up
//!    among the pod's container ports), and the addresses are packed into subsets by the ports
//!    they share (Kubernetes' `RepackSubsets`), sorted, so the same state gives the same object;
//! 3. creates or updates the Endpoints (with the resourceVersion read) only when its subsets or
//!    labels differ, and deletes it when the Service is gone.
//!
//! Services without a selector are left alone: their Endpoints are the user's. On start, the
//! controller also looks at every Endpoints object once, and deletes those whose Service no
//! longer exists (Kubernetes' `checkLeftoverEndpoints`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral_api::ApiError;
use corral_api::object;
use corral_client::events::EventRecorder;
use corral_client::informer::index_by_namespace;
use corral_client::{Change, Client, DeleteOptions, Informer};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::runtime::{Action, ControllerOptions, Source, run_controller};

/// The label an Endpoints object of a headless Service carries (`service.kubernetes.io/headless`).
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// Event reasons, as Kubernetes' endpoints controller writes them.
pub const EVENT_FAILED_TO_CREATE: &str = "FailedToCreateEndpoint";
pub const EVENT_FAILED_TO_UPDATE: &str = "FailedToUpdateEndpoint";

/// The events' source, as Kubernetes names it.
const COMPONENT: &str = "endpoint-controller";

const NAMESPACE_INDEX: &str = "namespace";

/// How the controller runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointsOptions {
    /// Services synced at once (default 5, Kubernetes' `--concurrent-endpoint-syncs`).
    pub workers: usize,
    /// How often every Service is synced even when nothing changed (default 30 s).
    pub resync: Duration,
}

impl Default for EndpointsOptions {
    fn default() -> Self {
        Self {
            workers: 5,
            resync: Duration::from_secs(30),
        }
    }
}

/// What a sync can fail with. `BadKey` is logged and not retried; the others are retried with
/// back-off.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("workqueue key {0:?} is not namespace/name")]
    BadKey(String),
    #[error("Endpoints {key}: {action}: {source}")]
    Write {
        key: String,
        action: &'static str,
        source: Box<ApiError>,
    },
}

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// What one sync does to the Service's Endpoints.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Leave it as it is (up to date, or not this controller's).
    Nothing,
    /// Create it (it does not exist yet).
    Create(Value),
    /// Replace it (carries the resourceVersion read).
    Update(Value),
    /// Delete it: its Service is gone.
    Delete,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn key_of(obj: &Value) -> String {
    format!("{}/{}", object::namespace(obj), object::name(obj))
}

/// The Service's selector as labels, when it has a non-empty one (an empty selector is stored as
/// none in Kubernetes, and selects nothing here).
pub fn selector(svc: &Value) -> Option<BTreeMap<String, String>> {
    let map = svc.pointer("/spec/selector")?.as_object()?;
    if map.is_empty() {
        return None;
    }
    Some(
        map.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect(),
    )
}

fn selects(selector: &BTreeMap<String, String>, pod: &Value) -> bool {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v.as_str()))
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
}

/// The pod's IPs: `status.podIPs`, else `status.podIP`.
fn pod_ips(pod: &Value) -> Vec<&str> {
    let listed: Vec<&str> = pod
        .pointer("/status/podIPs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| str_at(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    let ip = str_at(pod, "/status/podIP");
    if ip.is_empty() { Vec::new() } else { vec![ip] }
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not finished (Succeeded/Failed), has an IP, and not
/// terminating unless `include_terminating` (`publishNotReadyAddresses`).
pub fn should_be_in_endpoints(pod: &Value, include_terminating: bool) -> bool {
    if matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed") {
        return false;
    }
    if pod_ips(pod).is_empty() {
        return false;
    }
    include_terminating || object::deletion_timestamp(pod).is_none()
}

/// The IP family the Service's endpoints use: its first `ipFamilies`, else its ClusterIP's.
fn service_family(svc: &Value) -> Option<bool> {
    let family = svc
        .pointer("/spec/ipFamilies/0")
        .and_then(Value::as_str)
        .unwrap_or("");
    match family {
        "IPv4" => Some(true),
        "IPv6" => Some(false),
        _ => str_at(svc, "/spec/clusterIP")
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.is_ipv4()),
    }
}

/// The pod's IP of the Service's family (any when the family is not known).
fn pod_ip_for(svc: &Value, pod: &Value) -> Option<String> {
    let ips = pod_ips(pod);
    match service_family(svc) {
        None => ips.first().map(|ip| ip.to_string()),
        Some(v4) => ips
            .into_iter()
            .find(|ip| ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4() == v4))
            .map(str::to_string),
    }
}

/// Kubernetes' `FindPort`: a numeric `targetPort` as it is; a named one is the `containerPort`
/// of the pod's container port with that name and the Service port's protocol (app containers
/// first, then sidecars: init containers with `restartPolicy: Always`). `None` when the pod has
/// no such port.
pub fn find_port(pod: &Value, service_port: &Value) -> Option<i64> {
    let protocol = match str_at(service_port, "/protocol") {
        "" => "TCP",
        p => p,
    };
    match service_port.get("targetPort") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n > 0) => n.as_i64(),
        Some(Value::String(name)) if !name.is_empty() => {
            let sidecars = pod
                .pointer("/spec/initContainers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|c| str_at(c, "/restartPolicy") == "Always");
            pod.pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .chain(sidecars)
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| {
                    str_at(p, "/name") == name
                        && match str_at(p, "/protocol") {
                            "" => "TCP",
                            other => other,
                        } == protocol
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        // Unset (admission defaults it to `port`).
        _ => service_port.get("port").and_then(Value::as_i64),
    }
}

/// One endpoint port: the Service port's name, protocol and appProtocol with the pod's number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Port {
    name: String,
    port: i64,
    protocol: String,
    app_protocol: String,
}

impl Port {
    fn to_json(&self) -> Value {
        let mut p = Map::new();
        if !self.name.is_empty() {
            p.insert("name".into(), json!(self.name));
        }
        p.insert("port".into(), json!(self.port));
        p.insert("protocol".into(), json!(self.protocol));
        if !self.app_protocol.is_empty() {
            p.insert("appProtocol".into(), json!(self.app_protocol));
        }
        Value::Object(p)
    }
}

/// What tells two addresses apart (Kubernetes' `addressKey`: the IP and the pod's uid), in the
/// order addresses are sorted.
type AddressKey = (String, String);

/// Kubernetes' `podToEndpointAddressForService` (plus the hostname rule of `ShouldSetHostname`).
fn address_of(svc: &Value, pod: &Value, ip: String) -> (AddressKey, Value) {
    let mut addr = Map::new();
    addr.insert("ip".into(), json!(ip));
    let hostname = str_at(pod, "/spec/hostname");
    if !hostname.is_empty()
        && str_at(pod, "/spec/subdomain") == object::name(svc)
        && object::namespace(pod) == object::namespace(svc)
    {
        addr.insert("hostname".into(), json!(hostname));
    }
    let node = str_at(pod, "/spec/nodeName");
    if !node.is_empty() {
        addr.insert("nodeName".into(), json!(node));
    }
    addr.insert(
        "targetRef".into(),
        json!({
            "kind": "Pod",
            "namespace": object::namespace(pod),
            "name": object::name(pod),
            "uid": object::uid(pod),
        }),
    );
    ((ip, object::uid(pod).to_string()), Value::Object(addr))
}

/// The Endpoints subsets of the Service over the pods (those of its namespace that its selector
/// matches are taken; the rest are ignored): Kubernetes' `syncService` loop followed by
/// `RepackSubsets`. Each address goes with each Service port the pod resolves; addresses that
/// offer the same set of ports share a subset; an address not ready for one port is not ready
/// for all of them. Subsets, addresses (by IP, then pod uid) and ports are sorted. A headless
/// Service without ports lists its addresses without ports.
pub fn subsets(svc: &Value, pods: &[Arc<Value>]) -> Vec<Value> {
    let Some(selector) = selector(svc) else {
        return Vec::new();
    };
    let publish_not_ready = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let service_ports: &[Value] = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let headless = str_at(svc, "/spec/clusterIP") == "None";
    // Every address once; per port (None: the no-ports sentinel), each address and whether it
    // is ready (not ready wins).
    let mut addresses: BTreeMap<AddressKey, Value> = BTreeMap::new();
    let mut by_port: BTreeMap<Option<Port>, BTreeMap<AddressKey, bool>> = BTreeMap::new();
    let mut add = |port: Option<Port>, key: &AddressKey, ready: bool| {
        let set = by_port.entry(port).or_default();
        let was = set.entry(key.clone()).or_insert(ready);
        *was = *was && ready;
    };
    for pod in pods {
        if object::namespace(pod) != object::namespace(svc)
            || !selects(&selector, pod)
            || !should_be_in_endpoints(pod, publish_not_ready)
        {
            continue;
        }
        let Some(ip) = pod_ip_for(svc, pod) else {
            continue;
        };
        let (key, address) = address_of(svc, pod, ip);
        let ready = publish_not_ready || is_ready(pod);
        if service_ports.is_empty() {
            if headless {
                addresses.entry(key.clone()).or_insert(address);
                add(None, &key, ready);
            }
            continue;
        }
        for sp in service_ports {
            let Some(number) = find_port(pod, sp) else {
                continue;
            };
            addresses
                .entry(key.clone())
                .or_insert_with(|| address.clone());
            let port = Port {
                name: str_at(sp, "/name").to_string(),
                port: number,
                protocol: match str_at(sp, "/protocol") {
                    "" => "TCP".to_string(),
                    p => p.to_string(),
                },
                app_protocol: str_at(sp, "/appProtocol").to_string(),
            };
            add(Some(port), &key, ready);
        }
    }
    // Group the ports by the exact set of addresses (with readiness) that offers them.
    let mut groups: BTreeMap<Vec<(AddressKey, bool)>, BTreeSet<Port>> = BTreeMap::new();
    for (port, set) in by_port {
        let members: Vec<(AddressKey, bool)> = set.into_iter().collect();
        let ports = groups.entry(members).or_default();
        if let Some(port) = port {
            ports.insert(port);
        }
    }
    groups
        .into_iter()
        .map(|(members, ports)| {
            let pick = |want: bool| -> Vec<Value> {
                members
                    .iter()
                    .filter(|(_, ready)| *ready == want)
                    .filter_map(|(key, _)| addresses.get(key).cloned())
                    .collect()
            };
            let mut subset = Map::new();
            let (ready, not_ready) = (pick(true), pick(false));
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert(
                    "ports".into(),
                    Value::Array(ports.iter().map(Port::to_json).collect()),
                );
            }
            Value::Object(subset)
        })
        .collect()
}

/// The labels the Service's Endpoints carry: the Service's, plus `service.kubernetes.io/headless`
/// for a Service without a ClusterIP.
pub fn labels_for(svc: &Value) -> Map<String, Value> {
    let mut labels = svc
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if matches!(str_at(svc, "/spec/clusterIP"), "" | "None") {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

fn subsets_of(ep: &Value) -> &[Value] {
    ep.get("subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// What the Service's Endpoints should be, given the Service (`None`: it is gone), the pods of
/// its namespace and the current Endpoints (`None`: there is none).
pub fn decide(svc: Option<&Value>, pods: &[Arc<Value>], current: Option<&Value>) -> Decision {
    let Some(svc) = svc else {
        return if current.is_some() {
            Decision::Delete
        } else {
            Decision::Nothing
        };
    };
    if str_at(svc, "/spec/type") == "ExternalName" || selector(svc).is_none() {
        return Decision::Nothing;
    }
    let subsets = subsets(svc, pods);
    let labels = labels_for(svc);
    let current_labels = current
        .and_then(|c| c.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(current) = current
        && subsets_of(current) == subsets.as_slice()
        && current_labels == labels
    {
        return Decision::Nothing;
    }
    let mut next = match current {
        Some(c) => c.clone(),
        None => json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": object::name(svc), "namespace": object::namespace(svc)},
        }),
    };
    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        if labels.is_empty() {
            meta.remove("labels");
        } else {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    if let Some(root) = next.as_object_mut() {
        if subsets.is_empty() {
            root.remove("subsets");
        } else {
            root.insert("subsets".into(), Value::Array(subsets));
        }
    }
    if current.is_some() {
        Decision::Update(next)
    } else {
        Decision::Create(next)
    }
}

/// What about a pod the endpoints depend on (Kubernetes' `podEndpointsChanged`, plus labels).
fn endpoint_view(pod: &Value) -> Value {
    json!({
        "labels": pod.pointer("/metadata/labels"),
        "terminating": object::deletion_timestamp(pod).is_some(),
        "ready": is_ready(pod),
        "ips": pod_ips(pod),
        "hostname": str_at(pod, "/spec/hostname"),
        "subdomain": str_at(pod, "/spec/subdomain"),
        "node": str_at(pod, "/spec/nodeName"),
        "phase": str_at(pod, "/status/phase"),
        "containers": pod.pointer("/spec/containers"),
        "initContainers": pod.pointer("/spec/initContainers"),
    })
}

// ---------------------------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------------------------

/// Runs the Endpoints controller until `cancel` fires.
pub async fn run(client: Client, opts: EndpointsOptions, cancel: CancellationToken) {
    let services = Informer::builder(client.clone(), "Service")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let pods = Informer::builder(client.clone(), "Pod")
        .index(NAMESPACE_INDEX, index_by_namespace)
        .start(cancel.clone());
    let endpoints = Informer::builder(client.clone(), "Endpoints").start(cancel.clone());
    let ctx = Arc::new(Ctx {
        events: EventRecorder::new(client.clone(), COMPONENT, ""),
        client,
        services: services.clone(),
        pods: pods.clone(),
        endpoints: endpoints.clone(),
    });
    let sources = vec![
        Source::informer(&services, |change: &Change| match change {
            Change::Added(s) | Change::Deleted(s) => vec![key_of(s)],
            Change::Modified { new, .. } => vec![key_of(new)],
            Change::Relisted => Vec::new(),
        }),
        Source::informer(&pods, {
            let ctx = Arc::clone(&ctx);
            move |change: &Change| ctx.pod_changed(change)
        }),
        Source::informer(&endpoints, |change: &Change| match change {
            Change::Deleted(ep) => vec![key_of(ep)],
            Change::Modified { old, new } if old.get("subsets") != new.get("subsets") => {
                vec![key_of(new)]
            }
            _ => Vec::new(),
        }),
    ];
    // The first time: every Endpoints too, so those whose Service went while no controller ran
    // are deleted (Kubernetes' `checkLeftoverEndpoints`).
    let first = AtomicBool::new(true);
    let all_keys = move || {
        let mut keys: BTreeSet<String> = services.list().iter().map(|s| key_of(s)).collect();
        if first.swap(false, Ordering::SeqCst) {
            keys.extend(endpoints.list().iter().map(|e| key_of(e)));
        }
        keys.into_iter().collect()
    };
    let reconcile = move |key: String| {
        let ctx = Arc::clone(&ctx);
        async move { ctx.sync(&key).await }
    };
    let opts = ControllerOptions::new(COMPONENT, opts.workers, opts.resync);
    run_controller(sources, all_keys, reconcile, opts, cancel).await;
}

struct Ctx {
    client: Client,
    services: Informer,
    pods: Informer,
    endpoints: Informer,
    events: EventRecorder,
}

impl Ctx {
    /// The Services of the pod's namespace whose selector matches it.
    fn memberships(&self, pod: &Value) -> Vec<String> {
        self.services
            .by_index(NAMESPACE_INDEX, object::namespace(pod))
            .iter()
            .filter(|svc| selector(svc).is_some_and(|s| selects(&s, pod)))
            .map(|svc| key_of(svc))
            .collect()
    }

    /// Kubernetes' `addPod` / `updatePod` / `deletePod`.
    fn pod_changed(&self, change: &Change) -> Vec<String> {
        match change {
            Change::Added(pod) | Change::Deleted(pod) => self.memberships(pod),
            Change::Modified { old, new } => {
                if endpoint_view(old) == endpoint_view(new) {
                    return Vec::new();
                }
                let mut keys: BTreeSet<String> = self.memberships(new).into_iter().collect();
                keys.extend(self.memberships(old));
                keys.into_iter().collect()
            }
            Change::Relisted => Vec::new(),
        }
    }

    /// Kubernetes' `syncService`.
    async fn sync(&self, key: &str) -> Result<Action, Error> {
        let Some((namespace, name)) = key.split_once('/') else {
            tracing::warn!(error = %Error::BadKey(key.to_string()), "endpoints: cannot sync");
            return Ok(Action::await_change());
        };
        let svc = self.services.get(namespace, name);
        let current = self.endpoints.get(namespace, name);
        let pods = match &svc {
            Some(_) => self.pods.by_index(NAMESPACE_INDEX, namespace),
            None => Vec::new(),
        };
        let write_error = |action: &'static str, source: ApiError| Error::Write {
            key: key.to_string(),
            action,
            source: Box::new(source),
        };
        match decide(svc.as_deref(), &pods, current.as_deref()) {
            Decision::Nothing => {}
            Decision::Delete => {
                let uid = current
                    .as_deref()
                    .map(object::uid)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string);
                let options = DeleteOptions {
                    uid,
                    ..DeleteOptions::default()
                };
                match self
                    .client
                    .delete("Endpoints", namespace, name, &options)
                    .await
                {
                    Ok(_) => tracing::info!(endpoints = %key, "deleted: its Service is gone"),
                    Err(ApiError::NotFound { .. }) => {}
                    Err(e) => return Err(write_error("deleting", e)),
                }
            }
            Decision::Create(ep) => match self.client.create(&ep).await {
                Ok(_) => tracing::debug!(endpoints = %key, "created"),
                // The namespace is being deleted: nothing can be created in it any more.
                Err(ApiError::BadRequest { message }) => {
                    tracing::info!(endpoints = %key, %message, "not created");
                }
                Err(e) => {
                    self.events.event(
                        &ep,
                        "Warning",
                        EVENT_FAILED_TO_CREATE,
                        format!("Failed to create endpoint for service {key}: {e}"),
                    );
                    return Err(write_error("creating", e));
                }
            },
            Decision::Update(ep) => match self.client.update(&ep).await {
                Ok(_) => tracing::debug!(endpoints = %key, "updated"),
                Err(e) => {
                    if !matches!(e, ApiError::Conflict { .. } | ApiError::NotFound { .. }) {
                        self.events.event(
                            &ep,
                            "Warning",
                            EVENT_FAILED_TO_UPDATE,
                            format!("Failed to update endpoint {key}: {e}"),
                        );
                    }
                    return Err(write_error("updating", e));
                }
            },
        }
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
               "spec": spec})
    }

    fn web() -> Value {
        service(
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                       "ipFamilies": ["IPv4"],
                       "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}),
        )
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Arc<Value> {
        Arc::new(json!({
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c",
                     "ports": [{"name": "http", "containerPort": 8080}, {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
    }

    fn with(pod: &Arc<Value>, pointer: &str, value: Value) -> Arc<Value> {
        let mut p = (**pod).clone();
        let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
        match p.pointer_mut(parent) {
            Some(Value::Object(m)) => {
                m.insert(key.to_string(), value);
            }
            _ => panic!("no object at {parent}"),
        }
        Arc::new(p)
    }

    fn ips(subset: &Value, key: &str) -> Vec<String> {
        subset
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|a| str_at(a, "/ip").to_string())
            .collect()
    }

    fn created(d: Decision) -> Value {
        match d {
            Decision::Create(v) => v,
            other => panic!("expected Create, got {other:?}"),
        }
    }

    #[test]
    fn ready_pods_are_addresses_and_the_rest_not_ready_addresses() {
        let pods = vec![
            pod("b", "10.0.0.2", true),
            pod("a", "10.0.0.1", true),
            pod("c", "10.0.0.3", false),
        ];
        let ep = created(decide(Some(&web()), &pods, None));
        assert_eq!(ep["metadata"]["name"], "web");
        assert_eq!(ep["metadata"]["labels"], json!({"app": "web"}));
        let subsets = ep["subsets"].as_array().expect("subsets");
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        assert_eq!(ips(&subsets[0], "addresses"), ["10.0.0.1", "10.0.0.2"]);
        assert_eq!(ips(&subsets[0], "notReadyAddresses"), ["10.0.0.3"]);
        assert_eq!(
            subsets[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(
            subsets[0]["addresses"][0],
            json!({"ip": "10.0.0.1", "nodeName": "n1",
                   "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}})
        );
    }

    #[test]
    fn unchanged_state_writes_nothing_and_a_change_updates_in_place() {
        let pods = vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)];
        let mut ep = created(decide(Some(&web()), &pods, None));
        ep["metadata"]["resourceVersion"] = json!("7");
        // The same pods in another order: nothing to write.
        let reversed: Vec<Arc<Value>> = pods.iter().rev().cloned().collect();
        assert_eq!(
            decide(Some(&web()), &reversed, Some(&ep)),
            Decision::Nothing
        );
        // b becomes ready: an update of the same object.
        let pods = vec![pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", true)];
        match decide(Some(&web()), &pods, Some(&ep)) {
            Decision::Update(next) => {
                assert_eq!(next["metadata"]["resourceVersion"], "7");
                assert_eq!(
                    ips(&next["subsets"][0], "addresses"),
                    ["10.0.0.1", "10.0.0.2"]
                );
                assert!(next["subsets"][0].get("notReadyAddresses").is_none());
            }
            other => panic!("expected Update, got {other:?}"),
        }
    }

    #[test]
    fn pods_without_ip_finished_terminating_or_unmatched_are_left_out() {
        let pods = vec![
            pod("a", "10.0.0.1", true),
            pod("no-ip", "", true),
            with(
                &pod("done", "10.0.0.3", false),
                "/status/phase",
                json!("Succeeded"),
            ),
            with(
                &pod("going", "10.0.0.4", true),
                "/metadata/deletionTimestamp",
                json!("2026-01-01T00:00:00Z"),
            ),
            with(
                &pod("other", "10.0.0.5", true),
                "/metadata/labels",
                json!({"app": "db"}),
            ),
            with(
                &pod("elsewhere", "10.0.0.6", true),
                "/metadata/namespace",
                json!("prod"),
            ),
        ];
        let ep = created(decide(Some(&web()), &pods, None));
        assert_eq!(ips(&ep["subsets"][0], "addresses"), ["10.0.0.1"]);
        assert!(ep["subsets"][0].get("notReadyAddresses").is_none());
        // publishNotReadyAddresses: every address is ready, terminating ones included.
        let mut publish = web();
        publish["spec"]["publishNotReadyAddresses"] = json!(true);
        let pods = vec![
            pod("a", "10.0.0.1", false),
            with(
                &pod("going", "10.0.0.4", false),
                "/metadata/deletionTimestamp",
                json!("2026-01-01T00:00:00Z"),
            ),
        ];
        let ep = created(decide(Some(&publish), &pods, None));
        assert_eq!(
            ips(&ep["subsets"][0], "addresses"),
            ["10.0.0.1", "10.0.0.4"]
        );
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_differing_pods_get_their_own_subsets() {
        let svc = service(
            json!({"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                      {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]}),
        );
        let a = pod("a", "10.0.0.1", true);
        // b serves http on another port, c has no port named http at all.
        let b = with(
            &pod("b", "10.0.0.2", true),
            "/spec/containers",
            json!([{"name": "c", "ports": [{"name": "http", "containerPort": 9090},
                                          {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]),
        );
        let c = with(
            &pod("c", "10.0.0.3", true),
            "/spec/containers",
            json!([{"name": "c", "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]),
        );
        let ep = created(decide(Some(&svc), &[a, b, c], None));
        let subsets = ep["subsets"].as_array().expect("subsets");
        let dns = json!({"name": "dns", "port": 53, "protocol": "UDP"});
        // The dns port is shared by all three; http differs: 8080 for a, 9090 for b, none for c.
        assert_eq!(subsets.len(), 3, "{subsets:?}");
        let all_ports: Vec<Value> = subsets.iter().map(|s| s["ports"].clone()).collect();
        assert!(all_ports.contains(&json!([dns])), "{all_ports:?}");
        assert!(all_ports.contains(&json!([{"name": "http", "port": 8080, "protocol": "TCP"}])));
        assert!(all_ports.contains(&json!([{"name": "http", "port": 9090, "protocol": "TCP"}])));
        let with_ports = |ports: Value| {
            subsets
                .iter()
                .find(|s| s["ports"] == ports)
                .map(|s| ips(s, "addresses"))
                .unwrap_or_default()
        };
        assert_eq!(
            with_ports(json!([{"name": "dns", "port": 53, "protocol": "UDP"}])),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            with_ports(json!([{"name": "http", "port": 8080, "protocol": "TCP"}])),
            ["10.0.0.1"]
        );
    }

    #[test]
    fn a_pod_named_by_the_service_gets_its_hostname() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None",
            "ports": [{"name": "web", "port": 80, "targetPort": 80, "protocol": "TCP"}]}));
        let named = with(
            &with(
                &pod("web-0", "10.0.0.1", true),
                "/spec/hostname",
                json!("web-0"),
            ),
            "/spec/subdomain",
            json!("web"),
        );
        let other_subdomain = with(
            &with(
                &pod("web-1", "10.0.0.2", true),
                "/spec/hostname",
                json!("web-1"),
            ),
            "/spec/subdomain",
            json!("nginx"),
        );
        let ep = created(decide(Some(&svc), &[named, other_subdomain], None));
        let addresses = ep["subsets"][0]["addresses"].as_array().expect("addresses");
        assert_eq!(addresses[0]["hostname"], "web-0");
        assert!(addresses[1].get("hostname").is_none());
        assert_eq!(
            ep["metadata"]["labels"][HEADLESS_LABEL], "",
            "headless Services' Endpoints are labelled"
        );
    }

    #[test]
    fn a_headless_service_without_ports_lists_bare_addresses() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let ep = created(decide(
            Some(&svc),
            &[pod("a", "10.0.0.1", true), pod("b", "10.0.0.2", false)],
            None,
        ));
        assert_eq!(ep["subsets"].as_array().map(Vec::len), Some(1));
        assert_eq!(ips(&ep["subsets"][0], "addresses"), ["10.0.0.1"]);
        assert_eq!(ips(&ep["subsets"][0], "notReadyAddresses"), ["10.0.0.2"]);
        assert!(ep["subsets"][0].get("ports").is_none());
        // With a ClusterIP and no ports there is nothing to list.
        let mut plain = svc.clone();
        plain["spec"]["clusterIP"] = json!("10.96.0.3");
        let ep = created(decide(Some(&plain), &[pod("a", "10.0.0.1", true)], None));
        assert!(ep.get("subsets").is_none());
    }

    #[test]
    fn services_without_selector_or_external_names_are_left_alone_and_gone_ones_deleted() {
        let user = service(json!({"clusterIP": "10.96.0.4", "ports": [{"port": 80}]}));
        let current = json!({"kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
                             "subsets": [{"addresses": [{"ip": "192.0.2.1"}]}]});
        let pods = [pod("a", "10.0.0.1", true)];
        assert_eq!(
            decide(Some(&user), &pods, Some(&current)),
            Decision::Nothing
        );
        assert_eq!(decide(Some(&user), &pods, None), Decision::Nothing);
        let empty_selector = service(json!({"selector": {}, "clusterIP": "10.96.0.4"}));
        assert_eq!(
            decide(Some(&empty_selector), &pods, None),
            Decision::Nothing
        );
        let external = service(
            json!({"type": "ExternalName", "externalName": "db.example.com",
                                      "selector": {"app": "web"}}),
        );
        assert_eq!(decide(Some(&external), &pods, None), Decision::Nothing);
        assert_eq!(decide(None, &pods, Some(&current)), Decision::Delete);
        assert_eq!(decide(None, &pods, None), Decision::Nothing);
    }

    #[test]
    fn the_pod_ip_of_the_service_family_is_taken() {
        let dual = with(
            &pod("a", "fd00::1", true),
            "/status/podIPs",
            json!([{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]),
        );
        let ep = created(decide(Some(&web()), &[dual], None));
        assert_eq!(ips(&ep["subsets"][0], "addresses"), ["10.0.0.1"]);
        let only_v6 = with(
            &pod("b", "fd00::2", true),
            "/status/podIPs",
            json!([{"ip": "fd00::2"}]),
        );
        let ep = created(decide(Some(&web()), &[only_v6], None));
        assert!(ep.get("subsets").is_none(), "no IPv4 address: left out");
    }

    #[test]
    fn not_ready_for_one_port_is_not_ready_for_all() {
        // One address (IP and pod uid) seen ready and not ready: not ready wins, as in
        // Kubernetes' RepackSubsets.
        let a = pod("a", "10.0.0.1", true);
        let a_again = pod("a", "10.0.0.1", false);
        let ep = created(decide(Some(&web()), &[a, a_again], None));
        assert_eq!(ips(&ep["subsets"][0], "notReadyAddresses"), ["10.0.0.1"]);
        assert!(ep["subsets"][0].get("addresses").is_none());
    }

    #[test]
    fn find_port_matches_name_and_protocol_and_sidecars() {
        let p = pod("a", "10.0.0.1", true);
        let sp = |target: Value, protocol: &str| json!({"port": 80, "targetPort": target, "protocol": protocol});
        assert_eq!(find_port(&p, &sp(json!("http"), "TCP")), Some(8080));
        assert_eq!(find_port(&p, &sp(json!("dns"), "UDP")), Some(53));
        assert_eq!(
            find_port(&p, &sp(json!("dns"), "TCP")),
            None,
            "protocol differs"
        );
        assert_eq!(find_port(&p, &sp(json!("metrics"), "TCP")), None);
        assert_eq!(find_port(&p, &sp(json!(9000), "TCP")), Some(9000));
        assert_eq!(find_port(&p, &json!({"port": 80})), Some(80));
        let sidecar = with(
            &p,
            "/spec/initContainers",
            json!([{"name": "proxy", "restartPolicy": "Always", "ports": [{"name": "proxy", "containerPort": 15001}]},
                   {"name": "init", "ports": [{"name": "setup", "containerPort": 1}]}]),
        );
        assert_eq!(find_port(&sidecar, &sp(json!("proxy"), "TCP")), Some(15001));
        assert_eq!(find_port(&sidecar, &sp(json!("setup"), "TCP")), None);
    }

    #[test]
    fn only_changes_that_matter_to_endpoints_queue_services() {
        let a = pod("a", "10.0.0.1", true);
        let mut touched = (*a).clone();
        touched["metadata"]["annotations"] = json!({"note": "x"});
        touched["status"]["containerStatuses"] = json!([{"name": "c", "restartCount": 1}]);
        assert_eq!(endpoint_view(&a), endpoint_view(&touched));
        let moved = with(&a, "/status/podIP", json!("10.0.0.9"));
        assert_ne!(endpoint_view(&a), endpoint_view(&moved));
        let unready = pod("a", "10.0.0.1", false);
        assert_ne!(endpoint_view(&a), endpoint_view(&unready));
    }
}
