//! The `docker` runtime: containers of the node's Docker Engine, through its API (bollard).
//!
//! - **Sandbox.** Every pod gets an infra container (`--pod-infra-container-image`, by default
//!   `corral-pause:local`) that holds its network and IPC namespaces; its app and init containers
//!   join them (`network_mode: container:<infra>`), so they share one IP and `localhost`. The
//!   infra container sits on `--docker-network` (the compose network), and the pod's IP is its
//!   address there. It carries the pod's host name and domain, and the cluster DNS
//!   (`dns`, `dns_search`, `dns_options`).
//! - **Resolver.** The engine answers from its embedded resolver on user-defined networks, so the
//!   kubelet's `resolv.conf` (cluster DNS servers, the Kubernetes search path, `ndots:5`) is
//!   written to `<root>/pods/<uid>/resolv.conf` and bind-mounted at `/etc/resolv.conf` in every
//!   container of the pod: the file reads as Kubernetes writes it.
//! - **Containers.** `command` replaces the image's ENTRYPOINT and `args` its CMD, as in
//!   Kubernetes; env, working dir, memory (and swap) and cpu (CFS quota) limits go in the
//!   container config; volumes are bind mounts of the agent's directories. The engine resolves a
//!   bind source on its own host, so the agent's `--data-dir` must be the same path on the host
//!   and, when the agent runs in a container, inside it.
//! - **Images are never pulled** (no registry is reachable): a missing image fails the start at
//!   once with a message the worker turns into the waiting reason `ErrImagePull` (or
//!   `ErrImageNeverPull` under `imagePullPolicy: Never`).
//! - **Labels** (`io.corral.*`: node, pod uid, namespace, name, container, restart count, type)
//!   find a pod's containers again after an agent restart (adoption; a run is named
//!   `corral_<container>_<pod>_<ns>_<uid>_<restart>`, so the engine refuses a second copy) and let
//!   a teardown remove everything Corral made (`io.corral.managed=true`).
//! - **Exits** come from the engine's `die` events (and the workers' resyncs); exit code, start
//!   and finish times and `OOMKilled` from inspecting the container. **Logs** are the engine's
//!   (`json-file`, 10 MiB × 5 per container, as the kubelet's rotation), served through
//!   [`Runtime::logs`]; **exec** probes use the engine's exec API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, ContainerSummary,
    ContainerSummaryStateEnum, HostConfig, HostConfigLogConfig, Mount as DockerMount, MountType,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, KillContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::StreamExt;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    Changes, ContainerInfo, ContainerSpec, ContainerState, ExecOutput, LogBytes, LogQuery, Runtime,
    RuntimeError, SandboxSpec, pod_dir,
};

/// The infra image built by the cluster's image build.
pub const DEFAULT_PAUSE_IMAGE: &str = "corral-pause:local";

/// Label keys on every container Corral makes.
pub const LABEL_MANAGED: &str = "io.corral.managed";
pub const LABEL_NODE: &str = "io.corral.node";
pub const LABEL_POD_UID: &str = "io.corral.pod-uid";
pub const LABEL_POD_NAMESPACE: &str = "io.corral.pod-namespace";
pub const LABEL_POD_NAME: &str = "io.corral.pod-name";
pub const LABEL_CONTAINER: &str = "io.corral.container-name";
pub const LABEL_RESTART: &str = "io.corral.restart-count";
/// `sandbox` (the infra container) or `container`.
pub const LABEL_TYPE: &str = "io.corral.type";
const TYPE_SANDBOX: &str = "sandbox";
const TYPE_CONTAINER: &str = "container";

/// The CFS period the cpu limit is a quota of (the kubelet's).
const CPU_PERIOD_US: i64 = 100_000;
/// The smallest CFS quota the kernel takes.
const MIN_CPU_QUOTA_US: i64 = 1_000;
/// Most output of an exec kept.
const EXEC_OUTPUT_MAX: usize = 10 * 1024;
/// How long to wait for the engine beyond a stop's grace period.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// Options of the docker runtime (agent flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerOptions {
    /// The Node's name: labels which containers are this agent's (several agents may share an
    /// engine, as in the compose cluster).
    pub node_name: String,
    /// The agent's `--data-dir`: bind-mount sources live under it.
    pub root: PathBuf,
    /// The Docker network pods join (`--docker-network`); `None`: the engine's default bridge.
    pub network: Option<String>,
    /// The infra container's image (`--pod-infra-container-image`).
    pub pause_image: String,
}

impl DockerOptions {
    pub fn new(node_name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        DockerOptions {
            node_name: node_name.into(),
            root: root.into(),
            network: None,
            pause_image: DEFAULT_PAUSE_IMAGE.to_string(),
        }
    }
}

/// The docker runtime. Cheap to clone.
#[derive(Clone)]
pub struct DockerRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    docker: Docker,
    opts: DockerOptions,
    /// "Docker Engine 20.10.24 (API 1.41)".
    engine: String,
    pause_present: bool,
    changed: Arc<Changes>,
    /// What inspecting a container told, by id: an exited run never changes; a running one
    /// keeps its start time until its list entry says it is no longer running.
    known: Mutex<HashMap<String, ContainerInfo>>,
    /// The infra container of each pod, by pod uid.
    sandboxes: Mutex<HashMap<String, String>>,
    _events: DropGuard,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime")
            .field("opts", &self.inner.opts)
            .field("engine", &self.inner.engine)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The HTTP status of an engine error, when it answered one.
fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn engine_error(context: impl std::fmt::Display, e: DockerError) -> RuntimeError {
    let message = match &e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    RuntimeError::Other(format!("{context}: {message}"))
}

/// `docker://<id>`, the container id as Kubernetes shows it.
pub fn container_id(docker_id: &str) -> String {
    format!("docker://{docker_id}")
}

/// The engine's id in one of our ids.
pub fn parse_container_id(id: &str) -> Option<&str> {
    id.strip_prefix("docker://")
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The engine's name of a container run: `corral_<container>_<pod>_<ns>_<uid>_<restart>`
/// (dockershim's `k8s_...` layout). Unique per run, so the engine refuses a second copy.
pub fn container_name(spec: &ContainerSpec) -> String {
    format!(
        "corral_{}_{}_{}_{}_{}",
        spec.name, spec.pod_name, spec.pod_namespace, spec.pod_uid, spec.restart_count
    )
}

/// The engine's name of a pod's infra container: `corral_POD_<pod>_<ns>_<uid>_0`.
pub fn sandbox_name(spec: &SandboxSpec) -> String {
    format!(
        "corral_POD_{}_{}_{}_0",
        spec.pod_name, spec.pod_namespace, spec.pod_uid
    )
}

/// A name the engine takes as one name component (Kubernetes names and uids always are).
fn engine_safe(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The labels of a container run.
pub fn container_labels(node: &str, spec: &ContainerSpec) -> HashMap<String, String> {
    let mut l = common_labels(node, &spec.pod_uid, &spec.pod_namespace, &spec.pod_name);
    l.insert(LABEL_TYPE.into(), TYPE_CONTAINER.into());
    l.insert(LABEL_CONTAINER.into(), spec.name.clone());
    l.insert(LABEL_RESTART.into(), spec.restart_count.to_string());
    l
}

/// The labels of a pod's infra container.
pub fn sandbox_labels(node: &str, spec: &SandboxSpec) -> HashMap<String, String> {
    let mut l = common_labels(node, &spec.pod_uid, &spec.pod_namespace, &spec.pod_name);
    l.insert(LABEL_TYPE.into(), TYPE_SANDBOX.into());
    l
}

fn common_labels(node: &str, uid: &str, ns: &str, name: &str) -> HashMap<String, String> {
    HashMap::from([
        (LABEL_MANAGED.to_string(), "true".to_string()),
        (LABEL_NODE.to_string(), node.to_string()),
        (LABEL_POD_UID.to_string(), uid.to_string()),
        (LABEL_POD_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_POD_NAME.to_string(), name.to_string()),
    ])
}

/// The engine's default log driver with the kubelet's rotation (10 MiB, 5 files).
fn log_config() -> HostConfigLogConfig {
    HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_string(), "10m".to_string()),
            ("max-file".to_string(), "5".to_string()),
        ])),
    }
}

/// The infra container of a pod.
pub fn sandbox_config(opts: &DockerOptions, spec: &SandboxSpec) -> ContainerCreateBody {
    let mut host = HostConfig {
        ipc_mode: Some("shareable".into()),
        log_config: Some(log_config()),
        ..Default::default()
    };
    let mut body = ContainerCreateBody {
        image: Some(opts.pause_image.clone()),
        labels: Some(sandbox_labels(&opts.node_name, spec)),
        ..Default::default()
    };
    if spec.host_network {
        host.network_mode = Some("host".into());
    } else {
        host.network_mode = opts.network.clone();
        body.hostname = Some(spec.hostname.clone()).filter(|h| !h.is_empty());
        body.domainname = Some(spec.domain.clone()).filter(|d| !d.is_empty());
        if let Some(dns) = &spec.dns {
            host.dns = Some(dns.nameservers.clone());
            host.dns_search = Some(dns.searches.clone());
            host.dns_options = Some(dns.options.clone());
        }
    }
    body.host_config = Some(host);
    body
}

/// One run of a container, joining the namespaces of the infra container `sandbox_id`, with the
/// pod's resolv.conf (when it has its own) over `/etc/resolv.conf`.
pub fn container_config(
    opts: &DockerOptions,
    spec: &ContainerSpec,
    sandbox_id: &str,
    resolv_conf: Option<&Path>,
) -> ContainerCreateBody {
    let mut mounts: Vec<DockerMount> = spec
        .mounts
        .iter()
        .map(|m| bind(&m.host_path, &m.container_path, m.read_only))
        .collect();
    if let Some(hosts) = &spec.hosts_file {
        mounts.push(bind(hosts, Path::new("/etc/hosts"), false));
    }
    if let Some(rc) = resolv_conf {
        mounts.push(bind(rc, Path::new("/etc/resolv.conf"), false));
    }
    let memory = spec
        .limits
        .memory_bytes
        .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let cpu_quota = spec.limits.cpu_millis.map(|m| {
        i64::try_from(m)
            .unwrap_or(i64::MAX / 100)
            .saturating_mul(CPU_PERIOD_US / 1000)
            .max(MIN_CPU_QUOTA_US)
    });
    let host = HostConfig {
        network_mode: Some(format!("container:{sandbox_id}")),
        ipc_mode: Some(format!("container:{sandbox_id}")),
        mounts: Some(mounts),
        memory,
        // No swap beyond the limit, as the kubelet sets it.
        memory_swap: memory,
        cpu_period: cpu_quota.map(|_| CPU_PERIOD_US),
        cpu_quota,
        log_config: Some(log_config()),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        // Kubernetes: `command` replaces ENTRYPOINT (and then the image's CMD is dropped, which
        // the engine does when an entrypoint is given); `args` replaces CMD.
        entrypoint: Some(spec.command.clone()).filter(|c| !c.is_empty()),
        cmd: Some(spec.args.clone()).filter(|a| !a.is_empty()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        working_dir: spec
            .working_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        labels: Some(container_labels(&opts.node_name, spec)),
        attach_stdin: Some(false),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(host),
        ..Default::default()
    }
}

fn bind(source: &Path, target: &Path, read_only: bool) -> DockerMount {
    DockerMount {
        typ: Some(MountType::BIND),
        source: Some(source.to_string_lossy().into_owned()),
        target: Some(target.to_string_lossy().into_owned()),
        read_only: Some(read_only),
        ..Default::default()
    }
}

/// The message of a missing image (the worker names the reason from the pull policy).
pub fn missing_image_message(image: &str, pull_policy: &str) -> String {
    if pull_policy == "Never" {
        format!("Container image \"{image}\" is not present with pull policy of Never")
    } else {
        format!(
            "image \"{image}\" is not present locally and no registry is reachable (Corral never pulls: build or load it into the node's Docker engine)"
        )
    }
}

/// An engine timestamp (RFC 3339 with nanoseconds); `None` for the zero time it gives for
/// "never".
fn parse_time(s: Option<&str>) -> Option<SystemTime> {
    let s = s?;
    if s.starts_with("0001-") {
        return None;
    }
    s.parse::<jiff::Timestamp>().ok().map(SystemTime::from)
}

/// What an inspected container's state says, in the runtime's terms. `None` while it has not
/// started yet (created).
pub fn state_of(c: &ContainerInspectResponse) -> Option<ContainerState> {
    let st = c.state.as_ref()?;
    let started_at = parse_time(st.started_at.as_deref());
    let status = st.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
    match status {
        ContainerStateStatusEnum::RUNNING
        | ContainerStateStatusEnum::PAUSED
        | ContainerStateStatusEnum::RESTARTING
        | ContainerStateStatusEnum::STOPPING => Some(ContainerState::Running {
            started_at: started_at.unwrap_or_else(SystemTime::now),
        }),
        ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY => None,
        ContainerStateStatusEnum::EXITED
        | ContainerStateStatusEnum::DEAD
        | ContainerStateStatusEnum::REMOVING => {
            let finished_at = parse_time(st.finished_at.as_deref())
                .or(started_at)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            let exit_code = i32::try_from(st.exit_code.unwrap_or(-1)).unwrap_or(-1);
            let reason = if st.oom_killed == Some(true) {
                "OOMKilled"
            } else if exit_code == 0 {
                "Completed"
            } else {
                "Error"
            };
            Some(ContainerState::Exited {
                started_at: started_at.unwrap_or(finished_at),
                finished_at,
                exit_code,
                signal: None,
                reason: reason.to_string(),
            })
        }
    }
}

/// The pod uid, container name and restart count our labels give.
fn labelled(labels: Option<&HashMap<String, String>>) -> Option<(String, String, u32)> {
    let l = labels?;
    if l.get(LABEL_TYPE).map(String::as_str) != Some(TYPE_CONTAINER) {
        return None;
    }
    Some((
        l.get(LABEL_POD_UID)?.clone(),
        l.get(LABEL_CONTAINER)?.clone(),
        l.get(LABEL_RESTART)?.parse().ok()?,
    ))
}

/// A container run from an inspection; `None` when it is not one of ours or has not started.
pub fn info_of(c: &ContainerInspectResponse) -> Option<ContainerInfo> {
    let config = c.config.as_ref()?;
    let (pod_uid, name, restart_count) = labelled(config.labels.as_ref())?;
    Some(ContainerInfo {
        id: container_id(c.id.as_deref()?),
        pod_uid,
        name,
        restart_count,
        image: config.image.clone().unwrap_or_default(),
        state: state_of(c)?,
    })
}

/// The pod's IP: the infra container's address on `network` (or on its only network).
pub fn sandbox_ip(c: &ContainerInspectResponse, network: Option<&str>) -> Option<IpAddr> {
    let nets = c.network_settings.as_ref()?.networks.as_ref()?;
    let ep = match network {
        Some(n) => nets.get(n),
        None => nets
            .values()
            .find(|e| e.ip_address.as_deref().is_some_and(|ip| !ip.is_empty())),
    }?;
    ep.ip_address.as_deref()?.parse().ok()
}

fn is_running(c: &ContainerInspectResponse) -> bool {
    c.state.as_ref().and_then(|s| s.running).unwrap_or(false)
}

fn filters(pairs: &[(&str, String)]) -> HashMap<String, Vec<String>> {
    let mut f: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in pairs {
        f.entry((*k).to_string()).or_default().push(v.clone());
    }
    f
}

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST`, else `/var/run/docker.sock`), agrees on an
    /// API version, and checks the pod network exists. Fails at once when no engine answers.
    pub async fn connect(opts: DockerOptions) -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| {
            RuntimeError::Other(format!(
                "no Docker engine at DOCKER_HOST or /var/run/docker.sock: {e}"
            ))
        })?;
        let docker = docker.negotiate_version().await.map_err(|e| {
            RuntimeError::Other(format!(
                "the Docker engine does not answer (is the socket mounted and the engine running?): {e}"
            ))
        })?;
        let version = docker
            .version()
            .await
            .map_err(|e| engine_error("asking the Docker engine its version", e))?;
        let engine = format!(
            "Docker Engine {} (API {})",
            version.version.unwrap_or_default(),
            version.api_version.unwrap_or_default()
        );
        if let Some(net) = &opts.network {
            docker
                .inspect_network(net, None)
                .await
                .map_err(|e| match status_of(&e) {
                    Some(404) => RuntimeError::Other(format!(
                        "--docker-network {net:?}: the engine has no such network"
                    )),
                    _ => engine_error(format!("inspecting docker network {net:?}"), e),
                })?;
        }
        let pause_present = docker.inspect_image(&opts.pause_image).await.is_ok();
        let pods = opts.root.join("pods");
        std::fs::create_dir_all(&pods).map_err(|source| RuntimeError::Io {
            context: format!("creating {}", pods.display()),
            source,
        })?;
        let changed = Arc::new(Changes::default());
        let cancel = CancellationToken::new();
        tokio::spawn(watch_events(
            docker.clone(),
            opts.node_name.clone(),
            changed.clone(),
            cancel.clone(),
        ));
        Ok(DockerRuntime {
            inner: Arc::new(Inner {
                docker,
                opts,
                engine,
                pause_present,
                changed,
                known: Mutex::new(HashMap::new()),
                sandboxes: Mutex::new(HashMap::new()),
                _events: cancel.drop_guard(),
            }),
        })
    }

    pub fn options(&self) -> &DockerOptions {
        &self.inner.opts
    }

    /// The engine client (tests look at containers through it).
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    fn resolv_conf_path(&self, pod_uid: &str) -> PathBuf {
        pod_dir(&self.inner.opts.root, pod_uid).join("resolv.conf")
    }

    /// This node's containers (all states) with the given extra label filters.
    async fn summaries(
        &self,
        extra: &[(&str, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let mut pairs = vec![
            ("label", format!("{LABEL_MANAGED}=true")),
            (
                "label",
                format!("{LABEL_NODE}={}", self.inner.opts.node_name),
            ),
        ];
        pairs.extend(extra.iter().cloned());
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters(&pairs))
            .build();
        self.inner
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| engine_error("listing containers", e))
    }

    /// The container runs among `summaries`, inspecting only those whose state is not known.
    async fn infos(&self, summaries: Vec<ContainerSummary>) -> Vec<ContainerInfo> {
        let mut out = Vec::new();
        for s in summaries {
            let Some(docker_id) = s.id.as_deref() else {
                continue;
            };
            if labelled(s.labels.as_ref()).is_none() {
                continue;
            }
            let id = container_id(docker_id);
            let listed_running = matches!(
                s.state,
                Some(
                    ContainerSummaryStateEnum::RUNNING
                        | ContainerSummaryStateEnum::PAUSED
                        | ContainerSummaryStateEnum::RESTARTING
                )
            );
            let cached = lock(&self.inner.known).get(&id).cloned();
            if let Some(c) = cached
                && c.is_running() == listed_running
            {
                out.push(c);
                continue;
            }
            if let Ok(Some(info)) = self.inspect_docker(docker_id).await {
                out.push(info);
            }
        }
        out.sort_by(|a, b| {
            (a.pod_uid.as_str(), a.name.as_str(), a.restart_count).cmp(&(
                b.pod_uid.as_str(),
                b.name.as_str(),
                b.restart_count,
            ))
        });
        out
    }

    /// Inspects a container and remembers what it said; `None` when it is gone, not ours or
    /// not started.
    async fn inspect_docker(&self, docker_id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match self.inner.docker.inspect_container(docker_id, None).await {
            Ok(c) => {
                let node = c
                    .config
                    .as_ref()
                    .and_then(|cfg| cfg.labels.as_ref())
                    .and_then(|l| l.get(LABEL_NODE))
                    .cloned();
                if node.as_deref() != Some(self.inner.opts.node_name.as_str()) {
                    return Ok(None);
                }
                let info = info_of(&c);
                if let Some(i) = &info {
                    lock(&self.inner.known).insert(i.id.clone(), i.clone());
                }
                Ok(info)
            }
            Err(e) if status_of(&e) == Some(404) => {
                lock(&self.inner.known).remove(&container_id(docker_id));
                Ok(None)
            }
            Err(e) => Err(engine_error(format!("inspecting container {docker_id}"), e)),
        }
    }

    /// The pod's infra container: the one remembered, else found by its labels.
    async fn find_sandbox(
        &self,
        pod_uid: &str,
    ) -> Result<Option<ContainerInspectResponse>, RuntimeError> {
        let remembered = lock(&self.inner.sandboxes).get(pod_uid).cloned();
        if let Some(id) = remembered {
            match self.inner.docker.inspect_container(&id, None).await {
                Ok(c) => return Ok(Some(c)),
                Err(e) if status_of(&e) == Some(404) => {
                    lock(&self.inner.sandboxes).remove(pod_uid);
                }
                Err(e) => return Err(engine_error("inspecting the pod's infra container", e)),
            }
        }
        let found = self
            .summaries(&[
                ("label", format!("{LABEL_POD_UID}={pod_uid}")),
                ("label", format!("{LABEL_TYPE}={TYPE_SANDBOX}")),
            ])
            .await?;
        // Prefer a running one; there is only ever one unless an engine hiccup left two.
        let mut ids: Vec<(bool, String)> = found
            .iter()
            .filter_map(|s| {
                let running = s.state == Some(ContainerSummaryStateEnum::RUNNING);
                s.id.clone().map(|id| (running, id))
            })
            .collect();
        ids.sort_by_key(|(running, _)| !running);
        let Some((_, id)) = ids.first().cloned() else {
            return Ok(None);
        };
        for (_, extra) in ids.iter().skip(1) {
            tracing::warn!(pod = %pod_uid, container = %extra, "removing a second infra container of a pod");
            let _ = self.force_remove(extra).await;
        }
        match self.inner.docker.inspect_container(&id, None).await {
            Ok(c) => {
                lock(&self.inner.sandboxes).insert(pod_uid.to_string(), id);
                Ok(Some(c))
            }
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(engine_error("inspecting the pod's infra container", e)),
        }
    }

    async fn force_remove(&self, docker_id: &str) -> Result<(), RuntimeError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self
            .inner
            .docker
            .remove_container(docker_id, Some(opts))
            .await
        {
            Ok(()) => {}
            Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => {}
            Err(e) => return Err(engine_error(format!("removing container {docker_id}"), e)),
        }
        lock(&self.inner.known).remove(&container_id(docker_id));
        Ok(())
    }

    /// Whether the engine has `image` (never pulled).
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.inner.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if status_of(&e) == Some(404) => Ok(false),
            Err(e) => Err(engine_error(format!("inspecting image {image:?}"), e)),
        }
    }

    async fn create_sandbox(
        &self,
        spec: &SandboxSpec,
    ) -> Result<ContainerInspectResponse, RuntimeError> {
        let pause = &self.inner.opts.pause_image;
        if !self.image_present(pause).await? {
            return Err(RuntimeError::Image(format!(
                "the infra image {pause:?} is not present locally and no registry is reachable (build it with cluster/build.sh)"
            )));
        }
        let name = sandbox_name(spec);
        let body = sandbox_config(&self.inner.opts, spec);
        let opts = CreateContainerOptionsBuilder::new().name(&name).build();
        let id = match self.inner.docker.create_container(Some(opts), body).await {
            Ok(r) => r.id,
            // Made by an earlier agent process that was stopped mid-way: take it.
            Err(e) if status_of(&e) == Some(409) => name.clone(),
            Err(e) => return Err(engine_error("creating the pod's infra container", e)),
        };
        if let Err(e) = self.inner.docker.start_container(&id, None).await {
            let _ = self.force_remove(&id).await;
            return Err(engine_error("starting the pod's infra container", e));
        }
        let c = self
            .inner
            .docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| engine_error("inspecting the pod's infra container", e))?;
        if let Some(real) = &c.id {
            lock(&self.inner.sandboxes).insert(spec.pod_uid.clone(), real.clone());
        }
        Ok(c)
    }

    /// Writes (or removes) the pod's resolv.conf; only when its content changes.
    fn write_resolv_conf(&self, spec: &SandboxSpec) -> Result<(), RuntimeError> {
        let path = self.resolv_conf_path(&spec.pod_uid);
        let io = |what: &str, source| RuntimeError::Io {
            context: format!("{what} {}", path.display()),
            source,
        };
        match &spec.dns {
            None => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("removing", e)),
            },
            Some(dns) => {
                let text = dns.resolv_conf();
                if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
                    return Ok(());
                }
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, text.as_bytes()).map_err(|e| io("writing", e))?;
                std::fs::rename(&tmp, &path).map_err(|e| io("renaming into", e))
            }
        }
    }

    async fn runs_of(&self, pod_uid: &str, name: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let summaries = self
            .summaries(&[
                ("label", format!("{LABEL_POD_UID}={pod_uid}")),
                ("label", format!("{LABEL_TYPE}={TYPE_CONTAINER}")),
                ("label", format!("{LABEL_CONTAINER}={name}")),
            ])
            .await?;
        Ok(self.infos(summaries).await)
    }

    /// Removes exited runs of a container older than the previous one (the kubelet's container
    /// garbage collection keeps one dead run per container, for `logs --previous`).
    async fn collect_garbage(&self, spec: &ContainerSpec) {
        let Ok(runs) = self.runs_of(&spec.pod_uid, &spec.name).await else {
            return;
        };
        for r in runs {
            if !r.is_running()
                && r.restart_count + 1 < spec.restart_count
                && let Some(d) = parse_container_id(&r.id)
            {
                let _ = self.force_remove(d).await;
            }
        }
    }

    async fn start_run(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        for (what, v) in [
            ("pod uid", &spec.pod_uid),
            ("pod name", &spec.pod_name),
            ("namespace", &spec.pod_namespace),
            ("container name", &spec.name),
        ] {
            if !engine_safe(v) {
                return Err(RuntimeError::Start(format!(
                    "{what} {v:?} cannot name a Docker container"
                )));
            }
        }
        if spec.image.is_empty() {
            return Err(RuntimeError::Start(format!(
                "container {} has no image",
                spec.name
            )));
        }
        if !self.image_present(&spec.image).await? {
            return Err(RuntimeError::Image(missing_image_message(
                &spec.image,
                &spec.image_pull_policy,
            )));
        }
        let sandbox = match self.find_sandbox(&spec.pod_uid).await? {
            Some(c) if is_running(&c) => c,
            _ => {
                return Err(RuntimeError::Start(
                    "the pod's infra container is not running".to_string(),
                ));
            }
        };
        let sandbox_id = sandbox.id.clone().unwrap_or_default();
        let rc = self.resolv_conf_path(&spec.pod_uid);
        let rc = rc.exists().then_some(rc);
        let name = container_name(spec);
        let body = container_config(&self.inner.opts, spec, &sandbox_id, rc.as_deref());
        let docker = &self.inner.docker;
        let mut id = None;
        for _ in 0..2 {
            let opts = CreateContainerOptionsBuilder::new().name(&name).build();
            match docker.create_container(Some(opts), body.clone()).await {
                Ok(r) => {
                    id = Some(r.id);
                    break;
                }
                Err(e) if status_of(&e) == Some(409) => {
                    // This run exists already: a run is never started twice. One that never
                    // started (an agent stopped between create and start) is made again.
                    let existing = docker
                        .inspect_container(&name, None)
                        .await
                        .map_err(|e| engine_error(format!("inspecting {name}"), e))?;
                    match info_of(&existing) {
                        Some(info) => return Ok(info),
                        None => self.force_remove(&name).await?,
                    }
                }
                Err(e) => {
                    return Err(match status_of(&e) {
                        Some(400) | Some(404) => RuntimeError::Start(engine_message(&e)),
                        _ => engine_error(format!("creating container {}", spec.name), e),
                    });
                }
            }
        }
        let id = id.ok_or_else(|| {
            RuntimeError::Other(format!("{name} exists and could not be made again"))
        })?;
        if let Err(e) = docker.start_container(&id, None).await {
            let _ = self.force_remove(&id).await;
            return Err(RuntimeError::Start(engine_message(&e)));
        }
        let info = self.inspect_docker(&id).await?.ok_or_else(|| {
            RuntimeError::Other(format!("container {name} vanished right after it started"))
        })?;
        if spec.restart_count >= 2 {
            self.collect_garbage(spec).await;
        }
        Ok(info)
    }
}

fn engine_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// How long (tries × poll) a `die` event waits for the engine's state to say the container exited.
const DIE_SETTLE_TRIES: u32 = 50;
const DIE_SETTLE_POLL: Duration = Duration::from_millis(20);

/// Bumps [`Runtime::changes`] on every `die` of this node's containers; reconnects when the
/// stream ends (and wakes then too: something may have been missed).
async fn watch_events(
    docker: Docker,
    node: String,
    changed: Arc<Changes>,
    cancel: CancellationToken,
) {
    loop {
        let f = filters(&[
            ("type", "container".to_string()),
            ("event", "die".to_string()),
            ("label", format!("{LABEL_NODE}={node}")),
        ]);
        let opts = EventsOptionsBuilder::new().filters(&f).build();
        let mut events = Box::pin(docker.events(Some(opts)));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        // The engine sends `die` a moment before its listing and inspection
                        // say the container has exited; a worker woken now would still see it
                        // running and then sleep until its resync. Wake it once they agree.
                        if let Some(id) = ev.actor.as_ref().and_then(|a| a.id.as_deref()) {
                            for _ in 0..DIE_SETTLE_TRIES {
                                match docker.inspect_container(id, None).await {
                                    Ok(c) if c.state.as_ref().and_then(|s| s.running) == Some(true) => {
                                        tokio::time::sleep(DIE_SETTLE_POLL).await;
                                    }
                                    _ => break,
                                }
                            }
                        }
                        changed.bump();
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "docker events stream failed; reconnecting");
                        break;
                    }
                    None => break,
                }
            }
        }
        changed.bump();
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn capabilities(&self) -> Vec<String> {
        let o = &self.inner.opts;
        let mut out = vec![format!(
            "docker runtime: {}; per pod an infra container ({}) holds the network and IPC \
             namespaces and the pod's containers join it",
            self.inner.engine, o.pause_image
        )];
        if !self.inner.pause_present {
            out.push(format!(
                "the infra image {} is MISSING: pods cannot start until it is built \
                 (cluster/build.sh)",
                o.pause_image
            ));
        }
        out.push(match &o.network {
            Some(n) => {
                format!("pod network: docker network {n:?}; a pod's IP is its address there")
            }
            None => "pod network: the engine's default bridge".to_string(),
        });
        out.push(
            "images are never pulled: an image the engine does not have gives the pod \
             ErrImagePull at once"
                .to_string(),
        );
        out.push(format!(
            "volumes are bind mounts from {}: the engine resolves them on its host, so this \
             directory must be the same path there",
            o.root.display()
        ));
        out
    }

    fn runs_images(&self) -> bool {
        true
    }

    async fn ensure_sandbox(&self, spec: &SandboxSpec) -> Result<Option<IpAddr>, RuntimeError> {
        for v in [&spec.pod_uid, &spec.pod_name, &spec.pod_namespace] {
            if !engine_safe(v) {
                return Err(RuntimeError::Start(format!(
                    "{v:?} cannot name a Docker container"
                )));
            }
        }
        self.write_resolv_conf(spec)?;
        let existing = self.find_sandbox(&spec.pod_uid).await?;
        let c = match existing {
            Some(c) if is_running(&c) => c,
            Some(c) => {
                // Stopped (an engine restart, a manual stop): start it again, else make anew.
                let id = c.id.clone().unwrap_or_default();
                tracing::warn!(pod = %spec.pod_uid, container = %id, "the pod's infra container was not running; starting it again");
                match self.inner.docker.start_container(&id, None).await {
                    Ok(()) => self
                        .inner
                        .docker
                        .inspect_container(&id, None)
                        .await
                        .map_err(|e| engine_error("inspecting the pod's infra container", e))?,
                    Err(_) => {
                        self.force_remove(&id).await?;
                        lock(&self.inner.sandboxes).remove(&spec.pod_uid);
                        self.create_sandbox(spec).await?
                    }
                }
            }
            None => self.create_sandbox(spec).await?,
        };
        if spec.host_network {
            return Ok(None);
        }
        match sandbox_ip(&c, self.inner.opts.network.as_deref()) {
            Some(ip) => Ok(Some(ip)),
            None => Err(RuntimeError::Other(format!(
                "the pod's infra container has no address on {}",
                self.inner
                    .opts
                    .network
                    .as_deref()
                    .unwrap_or("the default bridge")
            ))),
        }
    }

    async fn stop_sandbox(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let Some(c) = self.find_sandbox(pod_uid).await? else {
            return Ok(());
        };
        if !is_running(&c) {
            return Ok(());
        }
        let id = c.id.unwrap_or_default();
        let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        match self.inner.docker.kill_container(&id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => Ok(()),
            Err(e) => Err(engine_error("stopping the pod's infra container", e)),
        }
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        self.start_run(spec).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let s = self
            .summaries(&[("label", format!("{LABEL_TYPE}={TYPE_CONTAINER}"))])
            .await?;
        Ok(self.infos(s).await)
    }

    async fn list_pod(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let s = self
            .summaries(&[
                ("label", format!("{LABEL_POD_UID}={pod_uid}")),
                ("label", format!("{LABEL_TYPE}={TYPE_CONTAINER}")),
            ])
            .await?;
        Ok(self.infos(s).await)
    }

    async fn pod_uids(&self) -> Result<Vec<String>, RuntimeError> {
        let mut uids: Vec<String> = self
            .summaries(&[])
            .await?
            .into_iter()
            .filter_map(|s| s.labels?.get(LABEL_POD_UID).cloned())
            .collect();
        uids.sort();
        uids.dedup();
        Ok(uids)
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        match parse_container_id(id) {
            Some(d) => self.inspect_docker(d).await,
            None => Ok(None),
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let d = parse_container_id(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        match self.inspect_docker(d).await? {
            None => return Err(RuntimeError::NotFound(id.to_string())),
            Some(i) if !i.is_running() => return Ok(()),
            Some(_) => {}
        }
        let result = if grace.is_zero() {
            let opts = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
            self.inner.docker.kill_container(d, Some(opts)).await
        } else {
            // The engine counts whole seconds; a part-second grace gets the next one.
            let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
            let opts = StopContainerOptionsBuilder::new()
                .t(i32::try_from(secs).unwrap_or(i32::MAX))
                .build();
            let docker = self.inner.docker.clone().with_timeout(grace + STOP_SLACK);
            docker.stop_container(d, Some(opts)).await
        };
        match result {
            Ok(()) => {}
            // 304: already stopped; 409: not running (killed in between).
            Err(e) if matches!(status_of(&e), Some(304) | Some(409)) => {}
            Err(e) if status_of(&e) == Some(404) => {
                return Err(RuntimeError::NotFound(id.to_string()));
            }
            Err(e) => return Err(engine_error(format!("stopping {id}"), e)),
        }
        // Stop answers once the container has exited; a kill may answer a moment before.
        for _ in 0..100 {
            match self.inspect_docker(d).await? {
                Some(i) if i.is_running() => tokio::time::sleep(Duration::from_millis(50)).await,
                _ => break,
            }
        }
        self.inner.changed.bump();
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let d = parse_container_id(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        if let Some(i) = self.inspect_docker(d).await?
            && i.is_running()
        {
            return Err(RuntimeError::Other(format!(
                "{id} is running: stop it before removing it"
            )));
        }
        self.force_remove(d).await
    }

    async fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        let all = self
            .summaries(&[("label", format!("{LABEL_POD_UID}={pod_uid}"))])
            .await?;
        // App containers first, the infra container last.
        let mut ids: Vec<(bool, String)> = all
            .into_iter()
            .filter_map(|s| {
                let sandbox = s
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TYPE))
                    .is_some_and(|t| t == TYPE_SANDBOX);
                s.id.map(|id| (sandbox, id))
            })
            .collect();
        ids.sort();
        for (_, id) in ids {
            self.force_remove(&id).await?;
        }
        lock(&self.inner.sandboxes).remove(pod_uid);
        if !pod_uid.is_empty() && !pod_uid.contains(['/', '\0']) && pod_uid != ".." {
            let dir = pod_dir(&self.inner.opts.root, pod_uid);
            match std::fs::remove_file(dir.join("resolv.conf")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(RuntimeError::Io {
                        context: format!("removing {}", dir.join("resolv.conf").display()),
                        source,
                    });
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
        self.inner.changed.bump();
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        if argv.is_empty() {
            return Err(RuntimeError::Other("exec: empty command".to_string()));
        }
        let d = parse_container_id(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        let docker = &self.inner.docker;
        let created = docker
            .create_exec(
                d,
                CreateExecOptions {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| match status_of(&e) {
                Some(404) => RuntimeError::NotFound(id.to_string()),
                Some(409) => RuntimeError::Other(format!("{id} is not running")),
                _ => engine_error(format!("exec in {id}"), e),
            })?;
        let started = docker
            .start_exec(&created.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| engine_error(format!("exec in {id}"), e))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(RuntimeError::Other(format!(
                "exec in {id}: the engine did not attach"
            )));
        };
        let mut text: Vec<u8> = Vec::new();
        let collect = async {
            while let Some(chunk) = output.next().await {
                match chunk {
                    Ok(c) => {
                        let bytes = c.into_bytes();
                        let room = EXEC_OUTPUT_MAX.saturating_sub(text.len());
                        text.extend_from_slice(&bytes[..bytes.len().min(room)]);
                    }
                    Err(_) => break,
                }
            }
        };
        if tokio::time::timeout(timeout, collect).await.is_err() {
            // The engine has no way to kill an exec; it runs on, its output unread.
            return Ok(ExecOutput {
                exit_code: -1,
                output: format!("command timed out after {timeout:?}"),
            });
        }
        let mut exit_code = None;
        for _ in 0..50 {
            let inspected = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| engine_error(format!("exec in {id}"), e))?;
            if inspected.running != Some(true) {
                exit_code = inspected.exit_code;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(ExecOutput {
            exit_code: exit_code.and_then(|c| i32::try_from(c).ok()).unwrap_or(-1),
            output: String::from_utf8_lossy(&text).into_owned(),
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    async fn logs(&self, q: &LogQuery) -> Option<Result<LogBytes, RuntimeError>> {
        Some(self.engine_logs(q).await)
    }
}

impl DockerRuntime {
    async fn engine_logs(&self, q: &LogQuery) -> Result<LogBytes, RuntimeError> {
        let runs = self.runs_of(&q.pod_uid, &q.container).await?;
        let current = runs.iter().max_by_key(|r| r.restart_count).ok_or_else(|| {
            RuntimeError::NotFound(format!(
                "container \"{}\" in pod \"{}\" is waiting to start",
                q.container, q.pod
            ))
        })?;
        let run = if q.previous {
            runs.iter()
                .filter(|r| r.restart_count < current.restart_count)
                .max_by_key(|r| r.restart_count)
                .ok_or_else(|| {
                    RuntimeError::NotFound(format!(
                        "previous terminated container \"{}\" in pod \"{}\" not found",
                        q.container, q.pod
                    ))
                })?
        } else {
            current
        };
        let d = parse_container_id(&run.id)
            .ok_or_else(|| RuntimeError::NotFound(run.id.clone()))?
            .to_string();
        let tail = q
            .tail_lines
            .map_or_else(|| "all".to_string(), |n| n.to_string());
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .follow(q.follow && run.is_running())
            .tail(&tail)
            .build();
        let stream = self.inner.docker.logs(&d, Some(opts)).map(|item| {
            item.map(|o: LogOutput| o.into_bytes().to_vec())
                .map_err(|e| engine_error("reading the container's log", e))
        });
        Ok(Box::pin(stream))
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::{ContainerConfig, ContainerState as DockerState, EndpointSettings};

    use super::*;
    use crate::runtime::{DnsConfig, Limits, Mount};

    fn opts() -> DockerOptions {
        DockerOptions {
            network: Some("corral_corral".into()),
            ..DockerOptions::new("agent1", "/var/lib/corral-agent")
        }
    }

    fn spec() -> ContainerSpec {
        ContainerSpec {
            pod_uid: "6f1c9e2a-0b1d-4c5e-9f00-1234567890ab".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            name: "nginx".into(),
            restart_count: 2,
            image: "corral-busybox:local".into(),
            argv: vec!["httpd".into(), "-f".into()],
            command: vec!["httpd".into()],
            args: vec!["-f".into()],
            image_pull_policy: "IfNotPresent".into(),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            working_dir: Some("/www".into()),
            mounts: vec![Mount {
                host_path: "/var/lib/corral-agent/pods/u/volumes/kubernetes.io~empty-dir/www"
                    .into(),
                container_path: "/www".into(),
                read_only: true,
            }],
            limits: Limits {
                memory_bytes: Some(64 * 1024 * 1024),
                cpu_millis: Some(250),
            },
            hosts_file: None,
        }
    }

    fn sandbox() -> SandboxSpec {
        SandboxSpec {
            pod_uid: "6f1c9e2a-0b1d-4c5e-9f00-1234567890ab".into(),
            pod_namespace: "default".into(),
            pod_name: "web-0".into(),
            hostname: "web-0".into(),
            domain: "nginx.default.svc.cluster.local".into(),
            host_network: false,
            dns: Some(DnsConfig {
                nameservers: vec!["172.30.0.11".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
        }
    }

    #[test]
    fn names_follow_the_dockershim_layout_and_ids_round_trip() {
        assert_eq!(
            container_name(&spec()),
            "corral_nginx_web-0_default_6f1c9e2a-0b1d-4c5e-9f00-1234567890ab_2"
        );
        assert_eq!(
            sandbox_name(&sandbox()),
            "corral_POD_web-0_default_6f1c9e2a-0b1d-4c5e-9f00-1234567890ab_0"
        );
        assert_eq!(container_id("abc123"), "docker://abc123");
        assert_eq!(parse_container_id("docker://abc123"), Some("abc123"));
        for bad in ["process://u/c/0", "docker://", "docker://../x", "abc"] {
            assert_eq!(parse_container_id(bad), None, "{bad}");
        }
        assert!(engine_safe("web-0.a"));
        assert!(!engine_safe("a/b"));
        assert!(!engine_safe(""));
    }

    #[test]
    fn a_container_joins_the_infra_container_with_its_command_env_mounts_and_limits() {
        let rc = PathBuf::from("/var/lib/corral-agent/pods/u/resolv.conf");
        let body = container_config(&opts(), &spec(), "infra123", Some(&rc));
        assert_eq!(body.image.as_deref(), Some("corral-busybox:local"));
        assert_eq!(body.entrypoint, Some(vec!["httpd".to_string()]));
        assert_eq!(body.cmd, Some(vec!["-f".to_string()]));
        assert_eq!(body.env, Some(vec!["A=1".to_string(), "B=x=y".to_string()]));
        assert_eq!(body.working_dir.as_deref(), Some("/www"));
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("container:infra123"));
        assert_eq!(host.ipc_mode.as_deref(), Some("container:infra123"));
        assert_eq!(host.memory, Some(64 * 1024 * 1024));
        assert_eq!(host.memory_swap, Some(64 * 1024 * 1024));
        assert_eq!(host.cpu_period, Some(100_000));
        assert_eq!(host.cpu_quota, Some(25_000));
        let mounts = host.mounts.expect("mounts");
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].typ, Some(MountType::BIND));
        assert_eq!(mounts[0].target.as_deref(), Some("/www"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].target.as_deref(), Some("/etc/resolv.conf"));
        assert_eq!(
            mounts[1].source.as_deref(),
            Some(rc.to_str().expect("utf-8"))
        );
        let labels = body.labels.expect("labels");
        assert_eq!(labels[LABEL_MANAGED], "true");
        assert_eq!(labels[LABEL_NODE], "agent1");
        assert_eq!(labels[LABEL_POD_UID], spec().pod_uid);
        assert_eq!(labels[LABEL_POD_NAMESPACE], "default");
        assert_eq!(labels[LABEL_POD_NAME], "web-0");
        assert_eq!(labels[LABEL_CONTAINER], "nginx");
        assert_eq!(labels[LABEL_RESTART], "2");
        assert_eq!(labels[LABEL_TYPE], "container");
    }

    #[test]
    fn command_and_args_follow_kubernetes_over_entrypoint_and_cmd() {
        // Neither: the image's ENTRYPOINT and CMD.
        let mut s = spec();
        s.command.clear();
        s.args.clear();
        let b = container_config(&opts(), &s, "i", None);
        assert_eq!((b.entrypoint, b.cmd), (None, None));
        // Only args: the image's ENTRYPOINT with these arguments.
        s.args = vec!["-v".into()];
        let b = container_config(&opts(), &s, "i", None);
        assert_eq!((b.entrypoint, b.cmd), (None, Some(vec!["-v".to_string()])));
        // Only command: it replaces ENTRYPOINT and the image's CMD is not used (the engine
        // drops it when an entrypoint is given).
        s.command = vec!["sleep".into(), "3600".into()];
        s.args.clear();
        let b = container_config(&opts(), &s, "i", None);
        assert_eq!(
            (b.entrypoint, b.cmd),
            (Some(vec!["sleep".to_string(), "3600".to_string()]), None)
        );
    }

    #[test]
    fn no_limits_leave_the_engine_defaults_and_a_tiny_cpu_limit_keeps_the_minimum_quota() {
        let mut s = spec();
        s.limits = Limits::default();
        let h = container_config(&opts(), &s, "i", None)
            .host_config
            .expect("host");
        assert_eq!((h.memory, h.cpu_quota, h.cpu_period), (None, None, None));
        s.limits.cpu_millis = Some(1);
        let h = container_config(&opts(), &s, "i", None)
            .host_config
            .expect("host");
        assert_eq!(h.cpu_quota, Some(1_000));
    }

    #[test]
    fn a_hosts_file_is_mounted_over_etc_hosts() {
        let mut s = spec();
        s.mounts.clear();
        s.hosts_file = Some("/var/lib/corral-agent/pods/u/etc-hosts".into());
        let h = container_config(&opts(), &s, "i", None)
            .host_config
            .expect("host");
        let m = h.mounts.expect("mounts");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].target.as_deref(), Some("/etc/hosts"));
    }

    #[test]
    fn the_infra_container_has_the_pods_network_name_and_cluster_dns() {
        let body = sandbox_config(&opts(), &sandbox());
        assert_eq!(body.image.as_deref(), Some(DEFAULT_PAUSE_IMAGE));
        assert_eq!(body.hostname.as_deref(), Some("web-0"));
        assert_eq!(
            body.domainname.as_deref(),
            Some("nginx.default.svc.cluster.local")
        );
        let h = body.host_config.expect("host");
        assert_eq!(h.network_mode.as_deref(), Some("corral_corral"));
        assert_eq!(h.ipc_mode.as_deref(), Some("shareable"));
        assert_eq!(h.dns, Some(vec!["172.30.0.11".to_string()]));
        assert_eq!(
            h.dns_search,
            Some(vec![
                "default.svc.cluster.local".to_string(),
                "svc.cluster.local".to_string(),
                "cluster.local".to_string()
            ])
        );
        assert_eq!(h.dns_options, Some(vec!["ndots:5".to_string()]));
        assert_eq!(body.labels.expect("labels")[LABEL_TYPE], "sandbox");
    }

    #[test]
    fn a_host_network_pod_uses_the_hosts_network_and_no_name_of_its_own() {
        let mut s = sandbox();
        s.host_network = true;
        let body = sandbox_config(&opts(), &s);
        assert_eq!(body.hostname, None);
        let h = body.host_config.expect("host");
        assert_eq!(h.network_mode.as_deref(), Some("host"));
        assert_eq!(h.dns, None);
    }

    fn inspected(
        status: ContainerStateStatusEnum,
        exit: i64,
        oom: bool,
    ) -> ContainerInspectResponse {
        let mut labels = container_labels("agent1", &spec());
        labels.insert("other".into(), "x".into());
        ContainerInspectResponse {
            id: Some("0123abcd".into()),
            state: Some(DockerState {
                status: Some(status),
                running: Some(status == ContainerStateStatusEnum::RUNNING),
                exit_code: Some(exit),
                oom_killed: Some(oom),
                started_at: Some("2026-05-07T21:09:36.123456789Z".into()),
                finished_at: Some(if status == ContainerStateStatusEnum::RUNNING {
                    "0001-01-01T00:00:00Z".into()
                } else {
                    "2026-05-07T21:09:40Z".into()
                }),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some("corral-busybox:local".into()),
                labels: Some(labels),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn inspection_gives_state_exit_code_and_oom_kill() {
        let running =
            info_of(&inspected(ContainerStateStatusEnum::RUNNING, 0, false)).expect("ours");
        assert_eq!(running.id, "docker://0123abcd");
        assert_eq!(running.name, "nginx");
        assert_eq!(running.restart_count, 2);
        assert!(running.is_running());
        let started: SystemTime = "2026-05-07T21:09:36.123456789Z"
            .parse::<jiff::Timestamp>()
            .expect("time")
            .into();
        assert_eq!(
            running.state,
            ContainerState::Running {
                started_at: started
            }
        );

        let c = info_of(&inspected(ContainerStateStatusEnum::EXITED, 0, false)).expect("ours");
        assert!(
            matches!(c.state, ContainerState::Exited { exit_code: 0, ref reason, .. } if reason == "Completed")
        );
        let c = info_of(&inspected(ContainerStateStatusEnum::EXITED, 3, false)).expect("ours");
        assert!(
            matches!(c.state, ContainerState::Exited { exit_code: 3, ref reason, .. } if reason == "Error")
        );
        let c = info_of(&inspected(ContainerStateStatusEnum::EXITED, 137, true)).expect("ours");
        assert!(
            matches!(c.state, ContainerState::Exited { exit_code: 137, ref reason, .. } if reason == "OOMKilled")
        );
        // Created but never started: not a run yet.
        assert_eq!(
            info_of(&inspected(ContainerStateStatusEnum::CREATED, 0, false)),
            None
        );
        // An infra container is not a container run.
        let mut sb = inspected(ContainerStateStatusEnum::RUNNING, 0, false);
        sb.config = Some(ContainerConfig {
            labels: Some(sandbox_labels("agent1", &sandbox())),
            ..Default::default()
        });
        assert_eq!(info_of(&sb), None);
    }

    #[test]
    fn the_pod_ip_is_the_infra_containers_address_on_the_pod_network() {
        let mut c = inspected(ContainerStateStatusEnum::RUNNING, 0, false);
        c.network_settings = Some(bollard::models::NetworkSettings {
            networks: Some(HashMap::from([
                (
                    "bridge".to_string(),
                    EndpointSettings {
                        ip_address: Some("172.17.0.5".into()),
                        ..Default::default()
                    },
                ),
                (
                    "corral_corral".to_string(),
                    EndpointSettings {
                        ip_address: Some("172.30.128.7".into()),
                        ..Default::default()
                    },
                ),
            ])),
            ..Default::default()
        });
        assert_eq!(
            sandbox_ip(&c, Some("corral_corral")),
            Some("172.30.128.7".parse().expect("ip"))
        );
        assert_eq!(sandbox_ip(&c, Some("elsewhere")), None);
    }

    #[test]
    fn a_missing_image_message_names_the_image_and_the_policy() {
        assert_eq!(
            missing_image_message("nginx:1.25", "Never"),
            "Container image \"nginx:1.25\" is not present with pull policy of Never"
        );
        let m = missing_image_message("nginx:1.25", "IfNotPresent");
        assert!(
            m.starts_with(
                "image \"nginx:1.25\" is not present locally and no registry is reachable"
            ),
            "{m}"
        );
    }
}
