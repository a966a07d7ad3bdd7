//! Corral's node agent: registers its Node, heartbeats, watches the pods bound to it and runs
//! each in its own worker through a container runtime.
//!
//! Layout:
//! - `agent`: the top level (registration, pod watch, one worker per pod, orphan sweep);
//!   `node`: the Node object and heartbeat; `config`: flags.
//! - `worker`: one pod's reconciliation; `lifecycle`: its decisions as a pure function.
//! - `runtime`: the runtime interface, the `process` runtime (with `shim`, the per-container
//!   supervisor process, and `cgroup`, cgroup v2 limits) and the `docker` runtime (Docker Engine
//!   API: infra container per pod, labels, engine logs and exec).
//! - `pod_dns`: a pod's resolv.conf and host name as the kubelet works them out.
//! - `volumes`: volume directories of a pod (emptyDir, hostPath, configMap, secret, downwardAPI,
//!   projected service-account token) and the mounts of each container.
//! - `env`: a container's environment (`env`, `valueFrom`, `envFrom`) and `$(VAR)` expansion.
//! - `probe`: liveness, readiness and startup probes (exec, httpGet, tcpSocket).
//! - `logs`: the agent's `Agent.Logs` gRPC service over the log files on the node.

pub mod agent;
pub mod cgroup;
pub mod config;
pub mod env;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod pod_dns;
pub mod podip;
pub mod probe;
pub mod runtime;
pub mod shim;
pub mod volumes;
pub mod worker;

pub use agent::{AgentError, run};
pub use config::AgentConfig;
