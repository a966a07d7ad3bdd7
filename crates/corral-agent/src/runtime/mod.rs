//! Container runtimes: what the pod workers ask of whatever runs containers on this node.
//!
//! A runtime starts one container from a fully resolved [`ContainerSpec`] (command, env, mounts
//! and limits already worked out by the worker), reports every container it knows of (running or
//! exited, including ones started before the agent restarted), stops them gracefully, runs
//! commands inside them (exec probes), and keeps each container's log on the node at
//! [`log_path`]. It never decides anything about pods: restart policy, back-off and probes are the
//! worker's.
//!
//! Layout on the node (`root` is the agent's `--data-dir`):
//! ```text
//! <root>/pods/<pod-uid>/logs/<container>/<restart-count>.log   stdout+stderr of one run
//! <root>/pods/<pod-uid>/volumes/...                             volume directories (see volumes.rs)
//! <root>/pods/<pod-uid>/containers/<container>-<restart>/        the runtime's own state of one run
//! <root>/pods/<pod-uid>/resolv.conf                              the pod's DNS (docker runtime)
//! ```
//!
//! A runtime that gives each pod a network namespace of its own (docker: the infra container)
//! makes it in [`Runtime::ensure_sandbox`] and answers the pod's IP; one that keeps its logs
//! itself (docker: the engine's) serves them through [`Runtime::logs`].

pub mod docker;
pub mod process;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::Stream;

/// Everything needed to start one run of one container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContainerSpec {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The container's name in the pod spec.
    pub name: String,
    /// Which run this is: 0 for the first, then one more for every restart. Names the log file.
    pub restart_count: u32,
    /// Recorded, not pulled, by the process runtime.
    pub image: String,
    /// The argv to run: `command` + `args` with `$(VAR)` already expanded. Never empty for the
    /// process runtime; empty means "the image's entrypoint and command" for one that runs images.
    pub argv: Vec<String>,
    /// `command` alone, expanded (empty: not set; a runtime that runs images keeps the image's
    /// ENTRYPOINT).
    #[serde(default)]
    pub command: Vec<String>,
    /// `args` alone, expanded (empty: not set; the image's CMD applies only when `command` is
    /// not set either, as in Kubernetes).
    #[serde(default)]
    pub args: Vec<String>,
    /// `imagePullPolicy` (`Always`, `IfNotPresent`, `Never`); no runtime pulls, it only names the
    /// waiting reason of a missing image.
    #[serde(default)]
    pub image_pull_policy: String,
    /// The whole environment of the process, in order (later entries win).
    pub env: Vec<(String, String)>,
    /// The working directory (`workingDir`); `None`: the run's own directory under `containers/`.
    pub working_dir: Option<PathBuf>,
    /// Volume directories to appear at paths inside the container.
    pub mounts: Vec<Mount>,
    pub limits: Limits,
    /// A hosts file to appear at `/etc/hosts` (for `hostAliases`), when the pod asks for one.
    pub hosts_file: Option<PathBuf>,
}

/// A host directory or file that appears at `container_path` for the container.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: PathBuf,
    pub read_only: bool,
}

/// Resource limits of one container (`resources.limits`), already converted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpu_millis: Option<u64>,
}

/// What a container is doing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    Running {
        started_at: SystemTime,
    },
    Exited {
        started_at: SystemTime,
        finished_at: SystemTime,
        exit_code: i32,
        /// Set when the process was ended by a signal (exit_code is then 128 + signal).
        signal: Option<i32>,
        /// Kubernetes' terminated reason: `Completed` (exit 0), `Error`, `OOMKilled`.
        reason: String,
    },
}

/// One run of one container, as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// Runtime-scoped id, stable across agent restarts (`process://<pod-uid>/<name>/<restart>`).
    pub id: String,
    pub pod_uid: String,
    pub name: String,
    pub restart_count: u32,
    pub image: String,
    pub state: ContainerState,
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }
}

/// The outcome of a command run inside a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    /// stdout and stderr together, truncated to a few KiB.
    pub output: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container could not be started for a reason of its spec (bad command, missing working
    /// directory, ...): the worker reports it as the waiting reason `RunContainerError`.
    #[error("{0}")]
    Start(String),
    /// The image is not present and cannot be fetched (docker runtime): `ErrImageNeverPull`.
    #[error("{0}")]
    Image(String),
    #[error("no container {0}")]
    NotFound(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What a pod's sandbox (its network namespace and DNS, shared by all its containers) is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    pub pod_uid: String,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The pod's host name (`spec.hostname`, else its name, at most 63 characters).
    pub hostname: String,
    /// `<subdomain>.<namespace>.svc.<cluster domain>` when the pod has `spec.subdomain`, else empty.
    pub domain: String,
    /// `spec.hostNetwork`: the pod uses the node's network namespace and address.
    pub host_network: bool,
    /// The pod's resolver configuration; `None`: the node's own.
    pub dns: Option<DnsConfig>,
}

/// A resolver configuration (`/etc/resolv.conf`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    /// `ndots:5`, `timeout:2`, `edns0`, ...
    pub options: Vec<String>,
}

impl DnsConfig {
    /// The file as the kubelet writes it.
    pub fn resolv_conf(&self) -> String {
        let mut out = String::new();
        if !self.searches.is_empty() {
            out.push_str(&format!("search {}\n", self.searches.join(" ")));
        }
        for ns in &self.nameservers {
            out.push_str(&format!("nameserver {ns}\n"));
        }
        if !self.options.is_empty() {
            out.push_str(&format!("options {}\n", self.options.join(" ")));
        }
        out
    }
}

/// Which log a client asks for (`corralctl logs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub pod_uid: String,
    /// The pod's name, for messages.
    pub pod: String,
    pub container: String,
    pub previous: bool,
    pub follow: bool,
    pub tail_lines: Option<u64>,
}

/// Pieces of a container's log (stdout and stderr as they came).
pub type LogBytes = Pin<Box<dyn Stream<Item = Result<Vec<u8>, RuntimeError>> + Send>>;

/// The runtime interface the pod workers use.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// `process` or `docker`.
    fn name(&self) -> &'static str;

    /// Says, once at start, what this runtime can and cannot do on this node (cgroups, mount
    /// namespaces), in words for the agent's log and the README.
    fn capabilities(&self) -> Vec<String>;

    /// Starts one run of a container. Returns once the process exists (state Running, or Exited
    /// at once when it could not run at all).
    async fn start(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError>;

    /// Every container run this node has that belongs to a pod (running or exited and not yet
    /// removed), including those started before this agent process started: the source of
    /// adoption after an agent restart.
    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError>;

    /// The runs of one pod's containers (running or exited and not yet removed).
    async fn list_pod(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .filter(|c| c.pod_uid == pod_uid)
            .collect())
    }

    /// One container run, or `None` when unknown.
    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError>;

    /// SIGTERM to the container's whole process tree, then SIGKILL once `grace` has passed; returns
    /// when it has exited (at once if it already had).
    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;

    /// Forgets an exited container run (its log stays until the pod is removed).
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;

    /// Removes everything of a pod whose containers have all exited: state, logs, cgroups.
    /// (Volume directories are the worker's.)
    async fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError>;

    /// Runs `argv` inside a running container (its environment, working directory and mounts),
    /// killed after `timeout` (then the exit code is -1 and the output says it timed out).
    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;

    /// A counter bumped whenever some container of the node may have changed state (exited):
    /// the workers' cue to look again, so a container's exit is seen at once rather than at the
    /// next resync. A receiver sees every bump since it last looked, also one made while its
    /// holder was busy looking, so no exit falls between looking and waiting.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Whether this runtime runs images: then a container without `command` and `args` runs the
    /// image's ENTRYPOINT and CMD. The process runtime has no image to take them from.
    fn runs_images(&self) -> bool {
        false
    }

    /// Makes sure the pod's sandbox exists and runs, and answers the pod's IP; `None`: the pod
    /// has the node's address (the process runtime, which has no sandbox).
    async fn ensure_sandbox(&self, _spec: &SandboxSpec) -> Result<Option<IpAddr>, RuntimeError> {
        Ok(None)
    }

    /// Stops the pod's sandbox once all its containers have finished for good (the pod
    /// Succeeded or Failed); its IP stays in the pod's status. Nothing to do without sandboxes.
    async fn stop_sandbox(&self, _pod_uid: &str) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The uids of every pod this node has anything of (containers, sandboxes): what the orphan
    /// sweep looks at.
    async fn pod_uids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut uids: Vec<String> = self.list().await?.into_iter().map(|c| c.pod_uid).collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    /// A container's log when the runtime keeps it itself (docker: the engine's); `None`: the
    /// files at [`log_path`] are the log. `NotFound(message)` when there is no such log.
    async fn logs(&self, _query: &LogQuery) -> Option<Result<LogBytes, RuntimeError>> {
        None
    }
}

/// `<root>/pods/<pod-uid>`.
pub fn pod_dir(root: &Path, pod_uid: &str) -> PathBuf {
    root.join("pods").join(pod_uid)
}

/// Where the log of one run of one container is kept on the node.
pub fn log_path(root: &Path, pod_uid: &str, container: &str, restart_count: u32) -> PathBuf {
    pod_dir(root, pod_uid)
        .join("logs")
        .join(container)
        .join(format!("{restart_count}.log"))
}

/// The counter behind [`Runtime::changes`].
#[derive(Debug)]
pub struct Changes(tokio::sync::watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Changes(tokio::sync::watch::channel(0).0)
    }
}

impl Changes {
    /// Some container may have changed state.
    pub fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.subscribe()
    }
}
