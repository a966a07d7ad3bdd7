//! The agent's Node: registration (capacity and allocatable, labels, taints, addresses, the
//! agent's endpoint) and the heartbeat: the Lease `kube-node-lease/<node>` renewed every
//! `heartbeat`, and the Node's Ready condition with its `lastHeartbeatTime`.

use std::net::IpAddr;
use std::time::Duration;

use corral_api::ApiError;
use corral_client::Client;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::lifecycle::rfc3339;

/// The namespace of node heartbeat leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the machine has, as Node capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    pub cpu: String,
    pub memory: String,
    pub pods: String,
}

impl Capacity {
    /// Detected from the machine, then overridden by the configuration.
    pub fn of(cfg: &AgentConfig) -> Capacity {
        let cpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| mem_total_kib(&text))
            .unwrap_or(1 << 20);
        Capacity {
            cpu: cfg.cpu.clone().unwrap_or_else(|| cpu.to_string()),
            memory: cfg
                .memory
                .clone()
                .unwrap_or_else(|| format!("{memory_kib}Ki")),
            pods: cfg.max_pods.to_string(),
        }
    }
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn ready_condition(now: &str, since: &str) -> Value {
    json!({
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "kubelet is posting ready status",
        "lastHeartbeatTime": now,
        "lastTransitionTime": since,
    })
}

fn pressure_conditions(now: &str, since: &str) -> Vec<Value> {
    [
        (
            "MemoryPressure",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (
            "DiskPressure",
            "KubeletHasNoDiskPressure",
            "kubelet has no disk pressure",
        ),
        (
            "PIDPressure",
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    ]
    .iter()
    .map(|(t, reason, message)| {
        json!({"type": t, "status": "False", "reason": reason, "message": message,
               "lastHeartbeatTime": now, "lastTransitionTime": since})
    })
    .collect()
}

/// The Node's status as this agent reports it. `since` keeps the Ready transition time of the
/// stored Node when it was already Ready.
pub fn node_status(cfg: &AgentConfig, ip: IpAddr, runtime: &str, old: Option<&Value>) -> Value {
    let now = rfc3339(std::time::SystemTime::now());
    let ready_since = old
        .and_then(|n| n.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter().find(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
        .and_then(|c| c.get("lastTransitionTime").and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(|| now.clone());
    let cap = Capacity::of(cfg);
    let mut conditions = pressure_conditions(&now, &ready_since);
    conditions.push(ready_condition(&now, &ready_since));
    let os = std::env::consts::OS;
    let arch = go_arch();
    json!({
        "capacity": {"cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods},
        "allocatable": {"cpu": cap.cpu, "memory": cap.memory, "pods": cap.pods},
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": ip.to_string()},
            {"type": "Hostname", "address": cfg.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": cfg.advertised_port()}},
        "nodeInfo": {
            "machineID": machine_id(),
            "systemUUID": "",
            "bootID": boot_id(),
            "kernelVersion": kernel_version(),
            "osImage": os_image(),
            "containerRuntimeVersion": format!("{runtime}://corral-{}", env!("CARGO_PKG_VERSION")),
            "kubeletVersion": format!("v1.34.0-corral-{}", env!("CARGO_PKG_VERSION")),
            "kubeProxyVersion": "",
            "operatingSystem": os,
            "architecture": arch,
        },
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn machine_id() -> String {
    read_trimmed("/etc/machine-id")
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id")
}

fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "Linux".into())
}

/// The annotations this agent owns on its Node: where the local-path provisioner makes this
/// node's volumes (`corral.io/local-path-root`).
pub fn node_annotations(cfg: &AgentConfig) -> Value {
    json!({
        (corral_api::storage::LOCAL_PATH_ROOT_ANNOTATION): cfg.local_path_root().display().to_string(),
    })
}

/// The Node object of a first registration.
pub fn new_node(cfg: &AgentConfig, ip: IpAddr, runtime: &str) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(cfg.name));
    labels.insert("kubernetes.io/os".into(), json!(std::env::consts::OS));
    labels.insert("kubernetes.io/arch".into(), json!(go_arch()));
    for (k, v) in &cfg.labels {
        labels.insert(k.clone(), json!(v));
    }
    let mut node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": labels, "annotations": node_annotations(cfg)},
        "spec": {},
        "status": node_status(cfg, ip, runtime, None),
    });
    if !cfg.taints.is_empty() {
        node["spec"]["taints"] = json!(cfg.taints);
    }
    node
}

/// Registers the Node: creates it, or, when it exists (an agent restart), refreshes the labels
/// this agent owns and its status. Taints from the configuration apply at first registration
/// only, as the kubelet's `--register-with-taints` does.
pub async fn register(
    client: &Client,
    cfg: &AgentConfig,
    ip: IpAddr,
    runtime: &str,
) -> Result<Value, ApiError> {
    match client.create(&new_node(cfg, ip, runtime)).await {
        Ok(v) => Ok(v),
        Err(ApiError::AlreadyExists { .. }) => {
            let old = client.get("Node", "", &cfg.name).await?;
            let mut labels = serde_json::Map::new();
            labels.insert("kubernetes.io/hostname".into(), json!(cfg.name));
            labels.insert("kubernetes.io/os".into(), json!(std::env::consts::OS));
            labels.insert("kubernetes.io/arch".into(), json!(go_arch()));
            for (k, v) in &cfg.labels {
                labels.insert(k.clone(), json!(v));
            }
            client
                .patch(
                    "Node",
                    "",
                    &cfg.name,
                    &json!({"metadata": {"labels": labels, "annotations": node_annotations(cfg)}}),
                    false,
                )
                .await?;
            client
                .patch(
                    "Node",
                    "",
                    &cfg.name,
                    &json!({"status": node_status(cfg, ip, runtime, Some(&old))}),
                    true,
                )
                .await
        }
        Err(e) => Err(e),
    }
}

fn lease(cfg: &AgentConfig, node_uid: &str) -> Value {
    let now = micro_time(std::time::SystemTime::now());
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": cfg.name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": cfg.name, "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": cfg.name,
            "leaseDurationSeconds": cfg.lease_duration.as_secs(),
            "renewTime": now,
        },
    })
}

/// RFC 3339 with microseconds, as Kubernetes' MicroTime.
pub fn micro_time(t: std::time::SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => "1970-01-01T00:00:00.000000Z".into(),
    }
}

/// Renews the Lease and the Node's Ready condition every `cfg.heartbeat` until cancelled.
/// A failed beat is logged and retried at the next tick: the servers may be changing leader.
pub async fn heartbeat(
    client: Client,
    cfg: AgentConfig,
    ip: IpAddr,
    runtime: &'static str,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(cfg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = beat(&client, &cfg, ip, runtime).await {
            tracing::warn!(node = %cfg.name, error = %e, "heartbeat failed; retrying");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            let _ = beat(&client, &cfg, ip, runtime).await;
        }
    }
}

async fn beat(
    client: &Client,
    cfg: &AgentConfig,
    ip: IpAddr,
    runtime: &str,
) -> Result<(), ApiError> {
    let node = match client.get("Node", "", &cfg.name).await {
        Ok(n) => n,
        // Deleted by someone: register again, as the kubelet does.
        Err(ApiError::NotFound { .. }) => register(client, cfg, ip, runtime).await?,
        Err(e) => return Err(e),
    };
    let uid = node
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let renew = json!({"spec": {"renewTime": micro_time(std::time::SystemTime::now()), "holderIdentity": cfg.name}});
    match client
        .patch("Lease", LEASE_NAMESPACE, &cfg.name, &renew, false)
        .await
    {
        Ok(_) => {}
        Err(ApiError::NotFound { .. }) => {
            client.create(&lease(cfg, &uid)).await?;
        }
        Err(e) => return Err(e),
    }
    client
        .patch(
            "Node",
            "",
            &cfg.name,
            &json!({"status": node_status(cfg, ip, runtime, Some(&node))}),
            true,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_total_memory() {
        let text = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(mem_total_kib(text), Some(24_576_000));
        assert_eq!(mem_total_kib("nothing"), None);
    }

    #[test]
    fn a_new_node_has_capacity_labels_taints_and_its_endpoint() {
        let mut cfg = AgentConfig::for_test("n1");
        cfg.cpu = Some("4".into());
        cfg.memory = Some("8Gi".into());
        cfg.labels.insert("disktype".into(), "ssd".into());
        cfg.taints = vec![json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"})];
        let n = new_node(&cfg, "10.1.2.3".parse().expect("ip"), "process");
        assert_eq!(n["status"]["capacity"]["cpu"], "4");
        assert_eq!(n["status"]["allocatable"]["memory"], "8Gi");
        assert_eq!(n["status"]["capacity"]["pods"], "110");
        assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert_eq!(n["metadata"]["labels"]["disktype"], "ssd");
        assert_eq!(n["spec"]["taints"][0]["key"], "dedicated");
        assert_eq!(n["status"]["addresses"][0]["address"], "10.1.2.3");
        let ready = n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
    }

    #[test]
    fn micro_time_has_six_fraction_digits() {
        let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(micro_time(t), "1970-01-01T00:00:01.500000Z");
    }
}
