//! One worker per pod: it reconciles what the pod asks for with what the runtime runs, reports
//! the pod's status, and finishes the pod's deletion. The decisions are [`crate::lifecycle`]'s;
//! this module carries them out (volumes, environment, starts, kills, probes, events, status).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use corral_api::ApiError;
use corral_client::{Client, DeleteOptions, EventRecorder};
use k8s_openapi::api::core::v1::Probe;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::env::{self, ConfigSource, PodContext};
use crate::lifecycle::{self, Action, Backoff, KillReason, ProbeView, StartError};
use crate::pod_dns::{self, ClusterDns};
use crate::podip::PodIps;
use crate::probe::{self, ExecTarget, ProbeEvent, ProbeKind, ProbeState, ProbeTarget};
use crate::runtime::{
    ContainerInfo, ContainerSpec, ExecOutput, Limits, Runtime, RuntimeError, SandboxSpec,
};
use crate::volumes;

/// How soon a pod whose sandbox could not be made is tried again.
const SANDBOX_RETRY: Duration = Duration::from_secs(2);

/// What every worker of an agent shares.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub runtime: Arc<dyn Runtime>,
    pub recorder: EventRecorder,
    pub config: Arc<dyn ConfigSource>,
    pub root: PathBuf,
    pub node_name: String,
    pub node_ip: IpAddr,
    /// Each pod's address (the node's, unless the agent has a pod IP range).
    pub pod_ips: Arc<PodIps>,
    /// The cluster DNS pods are given (`--cluster-dns`, `--cluster-domain`).
    pub dns: ClusterDns,
    pub backoff: Backoff,
    pub resync: Duration,
    /// Bumped whenever a ConfigMap or Secret changes: workers look again at once.
    pub config_changed: watch::Receiver<u64>,
}

/// The latest pod object the agent has (`None`: the pod is gone from the API).
pub type PodFeed = watch::Receiver<Option<Arc<Value>>>;

struct Probers {
    restart: u32,
    cancel: CancellationToken,
    startup: Option<watch::Receiver<ProbeState>>,
    liveness: Option<watch::Receiver<ProbeState>>,
    readiness: Option<watch::Receiver<ProbeState>>,
}

impl Drop for Probers {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct Worker {
    shared: Shared,
    uid: String,
    pod: Arc<Value>,
    /// The address the agent gave the pod (the node's, or one of `--pod-ip-range`): its IP
    /// unless the runtime's sandbox has one of its own.
    local_ip: IpAddr,
    start_time: SystemTime,
    start_errors: HashMap<String, StartError>,
    probers: HashMap<String, Probers>,
    probe_wake: Arc<Notify>,
    probe_events: mpsc::UnboundedSender<ProbeEvent>,
    reported: Option<Value>,
    backoff_told: HashSet<(String, u32)>,
    killed: HashSet<String>,
    /// The pod's own IP, once its sandbox has one (`None`: the node's, or not yet known).
    pod_ip: Option<IpAddr>,
    /// The last failure to make the sandbox (reported once per distinct message).
    sandbox_error: Option<String>,
    dns_warned: bool,
    sandbox_stopped: bool,
}

/// Runs the worker of one pod until the pod is gone and cleaned up, or `cancel` fires (agent
/// shutdown: containers keep running, to be adopted by the next agent).
pub async fn run(shared: Shared, mut feed: PodFeed, cancel: CancellationToken) {
    let Some(pod) = feed.borrow_and_update().clone() else {
        return;
    };
    let uid = str_at(&pod, "/metadata/uid");
    let (probe_tx, mut probe_rx) = mpsc::unbounded_channel();
    let start_time = pod
        .pointer("/status/startTime")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(SystemTime::from)
        .unwrap_or_else(SystemTime::now);
    let previous_ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<IpAddr>().ok());
    let local_ip = shared.pod_ips.assign(&uid, previous_ip);
    let mut w = Worker {
        shared: shared.clone(),
        uid,
        pod,
        local_ip,
        start_time,
        start_errors: HashMap::new(),
        probers: HashMap::new(),
        probe_wake: Arc::new(Notify::new()),
        probe_events: probe_tx,
        reported: None,
        backoff_told: HashSet::new(),
        killed: HashSet::new(),
        pod_ip: None,
        sandbox_error: None,
        dns_warned: false,
        sandbox_stopped: false,
    };
    let mut config_changed = shared.config_changed.clone();
    let mut config_closed = false;
    // Subscribed before the first look: an exit while a sync runs wakes the wait after it.
    let mut runtime_changes = shared.runtime.changes();
    let mut runtime_closed = false;
    let mut gone = false;
    loop {
        runtime_changes.borrow_and_update();
        let wake_at = if gone {
            if w.finish_gone().await {
                return;
            }
            None
        } else {
            match w.sync().await {
                Ok(Step::Done) => return,
                Ok(Step::Wait(at)) => at,
                Err(e) => {
                    tracing::warn!(pod = %w.name(), error = %e, "pod sync failed; retrying");
                    Some(SystemTime::now() + Duration::from_secs(1))
                }
            }
        };
        let resync = shared.resync;
        let sleep_for = wake_at
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .map_or(resync, |d| d.min(resync));
        let probe_wake = w.probe_wake.clone();
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = feed.changed() => {
                if r.is_err() {
                    gone = true;
                } else {
                    match feed.borrow_and_update().clone() {
                        Some(p) => w.pod = p,
                        None => gone = true,
                    }
                }
            }
            r = runtime_changes.changed(), if !runtime_closed => {
                runtime_closed = r.is_err();
            }
            _ = probe_wake.notified() => {}
            Some(ev) = probe_rx.recv() => {
                w.shared.recorder.event(
                    &w.pod,
                    "Warning",
                    "Unhealthy",
                    ev.message,
                );
            }
            r = config_changed.changed(), if !config_closed => {
                if r.is_ok() {
                    config_changed.borrow_and_update();
                } else {
                    config_closed = true;
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

enum Step {
    Wait(Option<SystemTime>),
    Done,
}

fn str_at(v: &Value, ptr: &str) -> String {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

struct Exec {
    runtime: Arc<dyn Runtime>,
    id: String,
}

#[async_trait::async_trait]
impl ExecTarget for Exec {
    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError> {
        self.runtime.exec(&self.id, argv, timeout).await
    }
}

impl Worker {
    fn name(&self) -> String {
        format!(
            "{}/{}",
            str_at(&self.pod, "/metadata/namespace"),
            str_at(&self.pod, "/metadata/name")
        )
    }

    fn ctx(&self) -> PodContext {
        PodContext {
            node_name: self.shared.node_name.clone(),
            pod_ip: self.pod_ip().to_string(),
            host_ip: self.shared.node_ip.to_string(),
        }
    }

    /// The pod's IP: its sandbox's, else the node's.
    fn pod_ip(&self) -> IpAddr {
        self.pod_ip.unwrap_or(self.local_ip)
    }

    /// Makes sure the pod's sandbox runs (docker: the infra container) and learns its IP. False
    /// when it could not be made (a FailedCreatePodSandBox event says why; retried soon).
    async fn ensure_sandbox(&mut self) -> bool {
        let dns = pod_dns::pod_dns(&self.pod, &self.shared.dns, pod_dns::node_resolv_conf);
        if let Some(w) = dns.warning
            && !self.dns_warned
            && self.shared.runtime.runs_images()
        {
            self.dns_warned = true;
            self.event("Warning", "MissingClusterDNS", w);
        }
        let (hostname, domain) = pod_dns::pod_hostname(&self.pod, &self.shared.dns.domain);
        let spec = SandboxSpec {
            pod_uid: self.uid.clone(),
            pod_namespace: str_at(&self.pod, "/metadata/namespace"),
            pod_name: str_at(&self.pod, "/metadata/name"),
            hostname,
            domain,
            host_network: self
                .pod
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            dns: dns.config,
        };
        match self.shared.runtime.ensure_sandbox(&spec).await {
            Ok(ip) => {
                self.pod_ip = ip;
                self.sandbox_error = None;
                true
            }
            Err(e) => {
                let message = format!("Failed to create pod sandbox: {e}");
                if self.sandbox_error.as_ref() != Some(&message) {
                    tracing::warn!(pod = %self.name(), error = %e, "creating the pod's sandbox");
                    self.event("Warning", "FailedCreatePodSandBox", message.clone());
                }
                self.sandbox_error = Some(message);
                false
            }
        }
    }

    fn event(&self, type_: &str, reason: &str, message: String) {
        self.shared
            .recorder
            .event(&self.pod, type_, reason, message);
    }

    fn container_spec(&self, name: &str) -> Option<Value> {
        ["initContainers", "containers"].iter().find_map(|key| {
            self.pod
                .pointer(&format!("/spec/{key}"))
                .and_then(Value::as_array)
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
                })
                .cloned()
        })
    }

    async fn runs(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.shared.runtime.list_pod(&self.uid).await
    }

    /// One reconciliation.
    async fn sync(&mut self) -> Result<Step, String> {
        if self.pod.pointer("/metadata/deletionTimestamp").is_some() {
            return self.terminate().await;
        }
        let phase = str_at(&self.pod, "/status/phase");
        let terminal = phase == "Succeeded" || phase == "Failed";
        let sandbox_ok = terminal || self.ensure_sandbox().await;
        let ctx = self.ctx();
        let mut volume_error = None;
        let mut prepared = volumes::PreparedVolumes::default();
        if !terminal {
            match volumes::prepare_volumes(
                &self.shared.root,
                &self.pod,
                &ctx,
                self.shared.config.as_ref(),
            )
            .await
            {
                Ok(p) => prepared = p,
                Err(e) => volume_error = Some(e),
            }
        }
        let mut runs = self.runs().await.map_err(|e| e.to_string())?;
        self.update_probers(&runs);
        let mut plan = self.plan(&runs);
        let mut acted = false;
        for action in plan.actions.clone() {
            match action {
                Action::Start {
                    container,
                    restart_count,
                    ..
                } => {
                    if !sandbox_ok {
                        continue;
                    }
                    acted = true;
                    if let Some(e) = &volume_error {
                        self.start_failed(&container, e.reason.clone(), e.message.clone());
                        continue;
                    }
                    self.start(&container, restart_count, &prepared, &ctx).await;
                }
                Action::Kill {
                    container,
                    id,
                    reason,
                } => {
                    if !self.killed.insert(id.clone()) {
                        continue;
                    }
                    acted = true;
                    self.kill_for_probe(&container, &id, reason).await;
                }
            }
        }
        if acted {
            runs = self.runs().await.map_err(|e| e.to_string())?;
            self.update_probers(&runs);
            plan = self.plan(&runs);
        }
        for w in &plan.backing_off {
            let restart = runs
                .iter()
                .filter(|r| r.name == w.container)
                .map(|r| r.restart_count)
                .max()
                .unwrap_or(0);
            if self.backoff_told.insert((w.container.clone(), restart)) {
                self.event(
                    "Warning",
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}",
                        w.container,
                        self.name()
                    ),
                );
            }
        }
        let finished = plan.phase() == "Succeeded" || plan.phase() == "Failed";
        if finished {
            self.probers.clear();
            if !self.sandbox_stopped && runs.iter().all(|r| !r.is_running()) {
                match self.shared.runtime.stop_sandbox(&self.uid).await {
                    Ok(()) => self.sandbox_stopped = true,
                    Err(e) => {
                        tracing::warn!(pod = %self.name(), error = %e, "stopping the sandbox of a finished pod");
                    }
                }
            }
        }
        self.report(plan.status).await?;
        let mut wake_at = plan.wake_at;
        if !sandbox_ok {
            let retry = SystemTime::now() + SANDBOX_RETRY;
            wake_at = Some(wake_at.map_or(retry, |w| w.min(retry)));
        }
        Ok(Step::Wait(wake_at))
    }

    fn plan(&self, runs: &[ContainerInfo]) -> lifecycle::Plan {
        let probes = self.probe_views();
        let host_ip = self.shared.node_ip.to_string();
        // Until the sandbox has an address, no pod IP is reported.
        let pod_ip = if self.shared.runtime.runs_images() && self.pod_ip.is_none() {
            String::new()
        } else {
            self.pod_ip().to_string()
        };
        lifecycle::plan(
            &self.pod,
            &lifecycle::Observed {
                runs,
                probes: &probes,
                start_errors: &self.start_errors,
                now: SystemTime::now(),
                backoff: self.shared.backoff,
                pod_ip: &pod_ip,
                host_ip: &host_ip,
                start_time: self.start_time,
            },
        )
    }

    fn start_failed(&mut self, container: &str, reason: String, message: String) {
        let first = self
            .start_errors
            .get(container)
            .is_none_or(|e| e.message != message);
        if first {
            // A volume that cannot be set up is the kubelet's FailedMount (the pod stays
            // ContainerCreating); anything else is a Failed start.
            if message.starts_with("MountVolume.") {
                self.event("Warning", "FailedMount", message.clone());
            } else {
                self.event("Warning", "Failed", format!("Error: {message}"));
            }
        }
        self.start_errors
            .insert(container.to_string(), StartError { reason, message });
    }

    async fn start(
        &mut self,
        name: &str,
        restart_count: u32,
        prepared: &volumes::PreparedVolumes,
        ctx: &PodContext,
    ) {
        let Some(c) = self.container_spec(name) else {
            return;
        };
        let env = match env::container_env(&self.pod, &c, ctx, self.shared.config.as_ref()).await {
            Ok(env) => env,
            Err(e) => return self.start_failed(name, e.reason, e.message),
        };
        let mounts = match volumes::container_mounts_with_env(&self.pod, &c, prepared, &env) {
            Ok(m) => m,
            Err(e) => return self.start_failed(name, e.reason, e.message),
        };
        let (command, args) = env::expand_command_and_args(&c, &env);
        let argv: Vec<String> = command.iter().chain(args.iter()).cloned().collect();
        let image = str_at(&c, "/image");
        let pull_policy = str_at(&c, "/imagePullPolicy");
        if argv.is_empty() && !self.shared.runtime.runs_images() {
            return self.start_failed(
                name,
                "RunContainerError".into(),
                format!(
                    "container {name} has no command: the process runtime runs `command`/`args` on the node (image {image:?} is recorded, not run)"
                ),
            );
        }
        let hosts_file = match volumes::hosts_file(&self.shared.root, &self.pod, ctx) {
            Ok(h) => h,
            Err(e) => {
                return self.start_failed(
                    name,
                    "RunContainerError".into(),
                    format!("writing the hosts file: {e}"),
                );
            }
        };
        let working_dir = c
            .get("workingDir")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let spec = ContainerSpec {
            pod_uid: self.uid.clone(),
            pod_namespace: str_at(&self.pod, "/metadata/namespace"),
            pod_name: str_at(&self.pod, "/metadata/name"),
            name: name.to_string(),
            restart_count,
            image: image.clone(),
            argv,
            command,
            args,
            image_pull_policy: pull_policy.clone(),
            env,
            working_dir,
            mounts,
            limits: limits_of(&c),
            hosts_file,
        };
        match self.shared.runtime.start(&spec).await {
            Ok(_) => {
                self.start_errors.remove(name);
                if restart_count == 0 {
                    self.event(
                        "Normal",
                        "Pulled",
                        format!("Container image \"{image}\" already present on machine"),
                    );
                }
                self.event("Normal", "Created", format!("Created container: {name}"));
                self.event("Normal", "Started", format!("Started container {name}"));
            }
            Err(RuntimeError::Image(m)) => {
                // Nothing is ever pulled: under `Never` the kubelet's ErrImageNeverPull, else
                // the failed pull's ErrImagePull.
                let reason = if pull_policy == "Never" {
                    "ErrImageNeverPull"
                } else {
                    "ErrImagePull"
                };
                self.start_failed(name, reason.into(), m)
            }
            Err(e) => self.start_failed(name, "RunContainerError".into(), e.to_string()),
        }
    }

    fn grace(&self) -> Duration {
        let secs = self
            .pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .or_else(|| self.pod.pointer("/spec/terminationGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .unwrap_or(30)
            .max(0);
        Duration::from_secs(secs.unsigned_abs())
    }

    async fn kill_for_probe(&mut self, container: &str, id: &str, reason: KillReason) {
        self.event(
            "Normal",
            "Killing",
            format!(
                "Container {container} failed {} probe, will be restarted",
                reason.probe()
            ),
        );
        self.probers.remove(container);
        let runtime = self.shared.runtime.clone();
        let id = id.to_string();
        let grace = self.grace();
        // Stopping takes up to the grace period: do not hold up the pod's other containers.
        tokio::spawn(async move {
            if let Err(e) = runtime.stop(&id, grace).await {
                tracing::warn!(container = %id, error = %e, "stopping a container");
            }
        });
    }

    /// Keeps one set of probers per running container run.
    fn update_probers(&mut self, runs: &[ContainerInfo]) {
        let mut latest: HashMap<&str, &ContainerInfo> = HashMap::new();
        for r in runs {
            if latest
                .get(r.name.as_str())
                .is_none_or(|l| l.restart_count < r.restart_count)
            {
                latest.insert(&r.name, r);
            }
        }
        self.probers.retain(|name, p| {
            latest
                .get(name.as_str())
                .is_some_and(|r| r.is_running() && r.restart_count == p.restart)
        });
        let apps: Vec<Value> = self
            .pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in apps {
            let name = str_at(&c, "/name");
            let Some(run) = latest.get(name.as_str()) else {
                continue;
            };
            if !run.is_running() || self.probers.contains_key(&name) {
                continue;
            }
            let probe_of = |key: &str| -> Option<Probe> {
                c.get(key)
                    .and_then(|p| serde_json::from_value(p.clone()).ok())
            };
            let mut ports = HashMap::new();
            for p in c
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let (Some(n), Some(port)) = (
                    p.get("name").and_then(Value::as_str),
                    p.get("containerPort").and_then(Value::as_u64),
                ) && let Ok(port) = u16::try_from(port)
                {
                    ports.insert(n.to_string(), port);
                }
            }
            let target = ProbeTarget {
                pod_ip: self.pod_ip(),
                ports,
                exec: Arc::new(Exec {
                    runtime: self.shared.runtime.clone(),
                    id: run.id.clone(),
                }),
            };
            let cancel = CancellationToken::new();
            let spawn = |kind: ProbeKind, p: Probe| {
                let rx = probe::spawn_prober(
                    name.clone(),
                    kind,
                    p,
                    target.clone(),
                    self.probe_events.clone(),
                    cancel.clone(),
                );
                let wake = self.probe_wake.clone();
                let mut watch_rx = rx.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            r = watch_rx.changed() => {
                                if r.is_err() { return; }
                                wake.notify_one();
                            }
                        }
                    }
                });
                rx
            };
            let startup = probe_of("startupProbe").map(|p| spawn(ProbeKind::Startup, p));
            let liveness = probe_of("livenessProbe").map(|p| spawn(ProbeKind::Liveness, p));
            let readiness = probe_of("readinessProbe").map(|p| spawn(ProbeKind::Readiness, p));
            self.probers.insert(
                name.clone(),
                Probers {
                    restart: run.restart_count,
                    cancel,
                    startup,
                    liveness,
                    readiness,
                },
            );
        }
    }

    fn probe_views(&self) -> HashMap<String, ProbeView> {
        let mut out = HashMap::new();
        for (name, p) in &self.probers {
            let state =
                |rx: &Option<watch::Receiver<ProbeState>>| rx.as_ref().map(|r| r.borrow().clone());
            let startup = state(&p.startup);
            let started = startup.as_ref().is_none_or(|s| *s == ProbeState::Success);
            // Liveness and readiness count only once the startup probe has passed.
            let liveness = if started { state(&p.liveness) } else { None };
            let readiness = state(&p.readiness);
            let ready = started && readiness.is_none_or(|s| s == ProbeState::Success);
            let kill = if startup == Some(ProbeState::Failure) {
                Some(KillReason::Startup)
            } else if liveness == Some(ProbeState::Failure) {
                Some(KillReason::Liveness)
            } else {
                None
            };
            out.insert(
                name.clone(),
                ProbeView {
                    started,
                    ready,
                    kill,
                },
            );
        }
        out
    }

    /// Sends the status when it differs from what was last reported.
    async fn report(&mut self, status: Value) -> Result<(), String> {
        if self.reported.as_ref() == Some(&status) {
            return Ok(());
        }
        let ns = str_at(&self.pod, "/metadata/namespace");
        let name = str_at(&self.pod, "/metadata/name");
        match self
            .shared
            .client
            .patch("Pod", &ns, &name, &json!({"status": status}), true)
            .await
        {
            Ok(p) => {
                if str_at(&p, "/metadata/uid") == self.uid {
                    self.pod = Arc::new(p);
                }
                self.reported = Some(status);
                Ok(())
            }
            Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(format!("reporting the status: {e}")),
        }
    }

    /// Graceful deletion: stop every container (SIGTERM, the grace period, SIGKILL), then
    /// remove the pod object and everything of it on the node.
    async fn terminate(&mut self) -> Result<Step, String> {
        self.probers.clear();
        let runs = self.runs().await.map_err(|e| e.to_string())?;
        let grace = self.grace();
        let mut stops = Vec::new();
        for r in runs.iter().filter(|r| r.is_running()) {
            if self.killed.insert(r.id.clone()) {
                self.event(
                    "Normal",
                    "Killing",
                    format!("Stopping container {}", r.name),
                );
            }
            let runtime = self.shared.runtime.clone();
            let id = r.id.clone();
            stops.push(tokio::spawn(async move { runtime.stop(&id, grace).await }));
        }
        for s in stops {
            match s.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("stopping a container: {e}")),
                Err(e) => return Err(format!("stopping a container: {e}")),
            }
        }
        let ns = str_at(&self.pod, "/metadata/namespace");
        let name = str_at(&self.pod, "/metadata/name");
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            uid: Some(self.uid.clone()),
            ..Default::default()
        };
        match self.shared.client.delete("Pod", &ns, &name, &opts).await {
            Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(format!("removing the pod: {e}")),
        }
        self.cleanup().await;
        Ok(Step::Done)
    }

    /// The pod is gone from the API (deleted at once, or its node changed): stop what runs and
    /// clean up. True when done.
    async fn finish_gone(&mut self) -> bool {
        self.probers.clear();
        let Ok(runs) = self.runs().await else {
            return false;
        };
        for r in runs.iter().filter(|r| r.is_running()) {
            if let Err(e) = self
                .shared
                .runtime
                .stop(&r.id, Duration::from_secs(2))
                .await
            {
                tracing::warn!(container = %r.id, error = %e, "stopping a container of a removed pod");
                return false;
            }
        }
        self.cleanup().await;
        true
    }

    async fn cleanup(&self) {
        self.shared.pod_ips.release(&self.uid);
        if let Err(e) = self.shared.runtime.remove_pod(&self.uid).await {
            tracing::warn!(pod = %self.uid, error = %e, "removing a pod's runtime state");
        }
        if let Err(e) = volumes::remove_pod_volumes(&self.shared.root, &self.uid) {
            tracing::warn!(pod = %self.uid, error = %e, "removing a pod's volumes");
        }
    }
}

/// `resources.limits` of a container, in bytes and millicores.
pub fn limits_of(c: &Value) -> Limits {
    let q = |res: &str| {
        c.pointer(&format!("/resources/limits/{res}"))
            .and_then(Value::as_str)
            .and_then(|s| corral_api::quantity::parse_quantity(s).ok())
    };
    Limits {
        memory_bytes: q("memory").and_then(|q| u64::try_from(q.value()).ok()),
        cpu_millis: q("cpu").and_then(|q| u64::try_from(q.milli_value()).ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_convert_quantities() {
        let c = json!({"resources": {"limits": {"memory": "200Mi", "cpu": "100m"}}});
        assert_eq!(
            limits_of(&c),
            Limits {
                memory_bytes: Some(200 * 1024 * 1024),
                cpu_millis: Some(100)
            }
        );
        assert_eq!(limits_of(&json!({})), Limits::default());
    }
}
