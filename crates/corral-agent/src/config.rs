//! The agent's configuration (from `corral agent` flags, or set by `corral up`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use crate::lifecycle::Backoff;
use crate::pod_dns::ClusterDns;
use crate::podip::LoopbackRange;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Node's name.
    pub name: String,
    /// Where pods' volumes, logs and runtime state live.
    pub data_dir: PathBuf,
    /// The node's address (pod IP of process-runtime pods); `None`: the address this machine
    /// uses to reach the first server.
    pub node_ip: Option<IpAddr>,
    /// Process runtime: a range inside 127.0.0.0/8 giving each pod its own address (`None`:
    /// pods have the node's address). See [`crate::podip`].
    pub pod_ip_range: Option<LoopbackRange>,
    /// Where the agent's own gRPC service (logs) listens.
    pub listen: SocketAddr,
    /// Capacity overrides (Kubernetes quantities); `None`: detected.
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub max_pods: u32,
    pub labels: BTreeMap<String, String>,
    /// Taints of a first registration (`key[=value]:Effect`, parsed).
    pub taints: Vec<Value>,
    /// Lease renewal and Node status period.
    pub heartbeat: Duration,
    pub lease_duration: Duration,
    pub backoff: Backoff,
    /// Every pod is looked at again this often even when nothing was heard of it.
    pub resync: Duration,
    /// Where the local-path provisioner makes this node's volumes (`None`:
    /// `<data_dir>/local-path`); published on the Node as `corral.io/local-path-root`.
    pub local_path_root: Option<PathBuf>,
    /// The cluster DNS given to pods (`--cluster-dns`, `--cluster-domain`).
    pub dns: ClusterDns,
}

impl AgentConfig {
    /// Defaults for a node named `name` (data in `./corral-agent-data`).
    pub fn new(name: impl Into<String>) -> AgentConfig {
        AgentConfig {
            name: name.into(),
            data_dir: PathBuf::from("corral-agent-data"),
            node_ip: None,
            pod_ip_range: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 10250)),
            cpu: None,
            memory: None,
            max_pods: 110,
            labels: BTreeMap::new(),
            taints: Vec::new(),
            heartbeat: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            backoff: Backoff::default(),
            resync: Duration::from_secs(10),
            local_path_root: None,
            dns: ClusterDns::default(),
        }
    }

    /// The local-path root as an absolute path (a relative one is taken from the current
    /// directory), as published on the Node.
    pub fn local_path_root(&self) -> PathBuf {
        let root = self
            .local_path_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("local-path"));
        if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&root))
                .unwrap_or(root)
        }
    }

    #[cfg(test)]
    pub fn for_test(name: &str) -> AgentConfig {
        AgentConfig::new(name)
    }

    /// The port published as the Node's kubelet endpoint.
    pub fn advertised_port(&self) -> u16 {
        self.listen.port()
    }
}

/// Parses `key=value` node labels.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} is not key=value"))?;
    corral_api::validation::check_qualified_name(k)
        .map_err(|why| format!("label key {k:?}: {why}"))?;
    corral_api::validation::check_label_value(v)
        .map_err(|why| format!("label value {v:?}: {why}"))?;
    Ok((k.to_string(), v.to_string()))
}

/// Parses a taint as kubectl writes it: `key[=value]:NoSchedule|PreferNoSchedule|NoExecute`.
pub fn parse_taint(text: &str) -> Result<Value, String> {
    let (kv, effect) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {text:?} is not key[=value]:Effect"))?;
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "taint {text:?}: effect {effect:?} is not one of NoSchedule, PreferNoSchedule, NoExecute"
        ));
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    corral_api::validation::check_qualified_name(key)
        .map_err(|why| format!("taint key {key:?}: {why}"))?;
    let mut t = json!({"key": key, "effect": effect});
    if let Some(v) = value {
        corral_api::validation::check_label_value(v)
            .map_err(|why| format!("taint value {v:?}: {why}"))?;
        t["value"] = json!(v);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_as_kubectl_writes_them() {
        assert_eq!(
            parse_taint("dedicated=db:NoSchedule"),
            Ok(json!({"key": "dedicated", "value": "db", "effect": "NoSchedule"}))
        );
        assert_eq!(
            parse_taint("node-role.kubernetes.io/master:NoSchedule"),
            Ok(json!({"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"}))
        );
        assert!(parse_taint("a=b:Sometimes").is_err_and(|e| e.contains("not one of")));
        assert!(parse_taint("nocolon").is_err());
    }

    #[test]
    fn labels_are_checked() {
        assert_eq!(
            parse_label("disktype=ssd"),
            Ok(("disktype".into(), "ssd".into()))
        );
        assert!(parse_label("bad key=x").is_err());
        assert!(parse_label("novalue").is_err());
    }
}
