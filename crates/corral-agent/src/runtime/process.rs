//! The `process` runtime: every container run is a process group supervised by its own
//! `corral shim` (see [`crate::shim`]), with its state in a directory of its own:
//!
//! ```text
//! <root>/pods/<pod-uid>/containers/<name>-<restart>/
//!     spec.json   the ContainerSpec                     (agent)
//!     shim.json   log path and cgroups of the run        (agent)
//!     shim.log    the shim's own diagnostics             (shim's stderr)
//!     pid.json    shim and container pids, start time    (shim, once the process exists)
//!     exit.json   exit code, signal, time, reason        (shim, once it has ended)
//! ```
//!
//! Everything the runtime knows is in those files, so a new agent process (or a second
//! `ProcessRuntime` on the same root) adopts running containers by reading them ([`Runtime::list`]).
//! A run is Running while its shim is alive (pid and start time match `/proc`) and there is no
//! `exit.json`; a shim that is gone without an `exit.json` makes the run Exited with reason
//! `Error`, exit code 255 (what is left of the container is killed: nothing runs unsupervised).
//!
//! [`Runtime::changes`] is bumped when a shim this process started exits, and by a poll (every
//! 100 ms) of the `exit.json` of running containers, which catches adopted ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{
    Changes, ContainerInfo, ContainerSpec, ContainerState, ExecOutput, Runtime, RuntimeError,
    log_path, pod_dir,
};
use crate::cgroup::{Cgroups, RunCgroups};
use crate::shim::{
    self, CONFIG_FILE, EXIT_FILE, ExecReport, ExitRecord, PID_FILE, PidRecord, ProbeReport,
    SHIM_LOG, SPEC_FILE, ShimConfig,
};

/// How to start `corral shim`: in the `corral` binary, `current_exe()` with `["shim"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShimCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl ShimCommand {
    /// `corral shim` of the running executable.
    pub fn current_exe() -> Result<Self, RuntimeError> {
        Ok(ShimCommand {
            program: std::env::current_exe().map_err(|e| io("finding the corral executable", e))?,
            args: vec!["shim".to_string()],
        })
    }
}

/// Options of the process runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRuntimeOptions {
    /// Where cgroup hierarchies are mounted (`/sys/fs/cgroup`); `None`: no cgroups at all.
    pub cgroup_root: Option<PathBuf>,
    /// How long `start` waits for the shim to report the container process.
    pub start_timeout: Duration,
}

impl Default for ProcessRuntimeOptions {
    fn default() -> Self {
        ProcessRuntimeOptions {
            cgroup_root: Some(PathBuf::from("/sys/fs/cgroup")),
            start_timeout: Duration::from_secs(30),
        }
    }
}

/// A run without `pid.json` younger than this may still be starting (under another agent
/// process); older, it never started.
const START_GRACE: Duration = Duration::from_secs(30);
/// How often the running containers' `exit.json` are looked for.
const POLL: Duration = Duration::from_millis(100);
/// Every this many polls: a full scan (adopted runs, vanished shims).
const FULL_SCAN_EVERY: u64 = 20;
/// How long `stop` waits after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Exit code of a run whose shim vanished without recording how the container ended.
pub const VANISHED_EXIT_CODE: i32 = 255;

/// The process runtime. Cheap to clone.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    shim: ShimCommand,
    options: ProcessRuntimeOptions,
    cgroups: Cgroups,
    mount_namespace: ProbeReport,
    changed: Arc<Changes>,
    /// Run directories last seen running (what the poll looks at).
    running: Mutex<HashSet<PathBuf>>,
    /// Run directories whose `start` is under way in this process.
    starting: Mutex<HashSet<PathBuf>>,
    poller: AtomicBool,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("root", &self.inner.root)
            .field("shim", &self.inner.shim)
            .finish_non_exhaustive()
    }
}

fn io(context: impl Into<String>, source: std::io::Error) -> RuntimeError {
    RuntimeError::Io {
        context: context.into(),
        source,
    }
}

/// `process://<pod-uid>/<name>/<restart>`.
pub fn container_id(pod_uid: &str, name: &str, restart_count: u32) -> String {
    format!("process://{pod_uid}/{name}/{restart_count}")
}

/// The pod uid, container name and restart count of an id, when it is one of ours.
pub fn parse_container_id(id: &str) -> Option<(String, String, u32)> {
    let rest = id.strip_prefix("process://")?;
    let mut parts = rest.split('/');
    let uid = parts.next()?;
    let name = parts.next()?;
    let restart = parts.next()?.parse().ok()?;
    if parts.next().is_some() || !safe_component(uid) || !safe_component(name) {
        return None;
    }
    Some((uid.to_string(), name.to_string(), restart))
}

/// A name usable as one path component (no traversal).
fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// `<root>/pods/<pod-uid>/containers/<name>-<restart>`.
pub fn run_dir(root: &Path, pod_uid: &str, name: &str, restart_count: u32) -> PathBuf {
    pod_dir(root, pod_uid)
        .join("containers")
        .join(run_name(name, restart_count))
}

fn run_name(name: &str, restart_count: u32) -> String {
    format!("{name}-{restart_count}")
}

impl ProcessRuntime {
    /// A runtime keeping its state under `root` (the agent's data dir), with cgroups under
    /// `/sys/fs/cgroup` where usable.
    pub fn new(root: PathBuf, shim: ShimCommand) -> Result<ProcessRuntime, RuntimeError> {
        Self::with_options(root, shim, ProcessRuntimeOptions::default())
    }

    pub fn with_options(
        root: PathBuf,
        shim: ShimCommand,
        options: ProcessRuntimeOptions,
    ) -> Result<ProcessRuntime, RuntimeError> {
        let pods = root.join("pods");
        std::fs::create_dir_all(&pods)
            .map_err(|e| io(format!("creating {}", pods.display()), e))?;
        let mount_namespace = probe(&shim)?;
        let cgroups = match &options.cgroup_root {
            Some(r) => Cgroups::detect(r),
            None => Cgroups::disabled("turned off by configuration"),
        };
        Ok(ProcessRuntime {
            inner: Arc::new(Inner {
                root,
                shim,
                options,
                cgroups,
                mount_namespace,
                changed: Arc::new(Changes::default()),
                running: Mutex::new(HashSet::new()),
                starting: Mutex::new(HashSet::new()),
                poller: AtomicBool::new(false),
            }),
        })
    }

    /// Whether containers get a private mount namespace with their volumes bind-mounted (else
    /// volumes travel as `CORRAL_MOUNT_<PATH>` variables).
    pub fn uses_mount_namespaces(&self) -> bool {
        self.inner.mount_namespace.mount_namespace
    }

    /// Whether memory limits are enforced (and OOM kills reported as `OOMKilled`).
    pub fn enforces_memory_limits(&self) -> bool {
        self.inner.cgroups.enforces_memory()
    }

    /// Whether cpu limits are enforced.
    pub fn enforces_cpu_limits(&self) -> bool {
        self.inner.cgroups.enforces_cpu()
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The state directory of a container run, by id.
    pub fn state_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let (uid, name, restart) =
            parse_container_id(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok(run_dir(&self.inner.root, &uid, &name, restart))
    }

    /// Starts the background poll once a tokio runtime is there.
    fn ensure_poller(&self) {
        if self.inner.poller.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.inner.poller.store(false, Ordering::SeqCst);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        handle.spawn(poll_loop(weak));
    }
}

/// Runs `corral shim probe`: whether mount namespaces work here (and that the shim runs).
fn probe(shim: &ShimCommand) -> Result<ProbeReport, RuntimeError> {
    let out = std::process::Command::new(&shim.program)
        .args(&shim.args)
        .arg("probe")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io(format!("running {} probe", shim.program.display()), e))?;
    serde_json::from_slice(&out.stdout).map_err(|e| {
        RuntimeError::Other(format!(
            "{} {} probe did not answer as a corral shim ({e}): {}",
            shim.program.display(),
            shim.args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })
}

async fn poll_loop(weak: Weak<Inner>) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick: u64 = 0;
    loop {
        interval.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let mut changed = false;
        if tick.is_multiple_of(FULL_SCAN_EVERY) {
            // Also refreshes `running` (adopted runs) and settles vanished shims.
            let before = lock(&inner.running).clone();
            if inner.scan().is_ok() {
                changed = *lock(&inner.running) != before;
            }
        } else {
            let dirs: Vec<PathBuf> = lock(&inner.running).iter().cloned().collect();
            for dir in dirs {
                if dir.join(EXIT_FILE).exists() || !dir.exists() {
                    lock(&inner.running).remove(&dir);
                    changed = true;
                }
            }
        }
        if changed {
            inner.changed.bump();
        }
        tick += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    /// Every run directory under `pods/*/containers/`.
    fn run_dirs(&self) -> Result<Vec<PathBuf>, RuntimeError> {
        let pods = self.root.join("pods");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&pods) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(format!("reading {}", pods.display()), e)),
        };
        for pod in entries.flatten() {
            let Ok(runs) = std::fs::read_dir(pod.path().join("containers")) else {
                continue;
            };
            for run in runs.flatten() {
                if run.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(run.path());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The runs of one pod.
    fn scan_pod(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        if pod_uid.is_empty() || pod_uid.contains('/') || pod_uid.starts_with('.') {
            return Ok(Vec::new());
        }
        let dir = self.root.join("pods").join(pod_uid).join("containers");
        let runs = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(format!("reading {}", dir.display()), e)),
        };
        let mut dirs: Vec<PathBuf> = runs
            .flatten()
            .filter(|r| r.file_type().is_ok_and(|t| t.is_dir()))
            .map(|r| r.path())
            .collect();
        dirs.sort();
        Ok(dirs.iter().filter_map(|d| self.observe(d)).collect())
    }

    /// Every run, refreshing the set of running ones.
    fn scan(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut out = Vec::new();
        for dir in self.run_dirs()? {
            if let Some(info) = self.observe(&dir) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// What a run directory says now; `None` for one that is not (yet) a container run.
    /// Settles runs whose shim vanished (writes their `exit.json`).
    fn observe(&self, dir: &Path) -> Option<ContainerInfo> {
        let spec: ContainerSpec = match shim::read_json(&dir.join(SPEC_FILE)) {
            Ok(Some(s)) => s,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "skipping a container state directory");
                return None;
            }
        };
        let pid: Option<PidRecord> = shim::read_json(&dir.join(PID_FILE)).unwrap_or(None);
        let mut exit: Option<ExitRecord> = shim::read_json(&dir.join(EXIT_FILE)).unwrap_or(None);
        if exit.is_none() {
            match &pid {
                Some(p) if shim::alive(p.shim_pid, p.shim_start_ticks) => {}
                Some(p) => {
                    // The shim may have written exit.json just before exiting.
                    exit = shim::read_json(&dir.join(EXIT_FILE)).unwrap_or(None);
                    if exit.is_none() {
                        exit = Some(self.settle_vanished(dir, Some(p)));
                    }
                }
                None => {
                    if lock(&self.starting).contains(dir) || young(&dir.join(SPEC_FILE)) {
                        return None;
                    }
                    exit = Some(self.settle_vanished(dir, None));
                }
            }
        }
        let started_at = pid
            .as_ref()
            .map(|p| shim::from_ns(p.started_at_ns))
            .or_else(|| exit.as_ref().map(|e| shim::from_ns(e.finished_at_ns)))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let state = match exit {
            None => {
                lock(&self.running).insert(dir.to_path_buf());
                ContainerState::Running { started_at }
            }
            Some(e) => {
                lock(&self.running).remove(dir);
                ContainerState::Exited {
                    started_at,
                    finished_at: shim::from_ns(e.finished_at_ns),
                    exit_code: e.exit_code,
                    signal: e.signal,
                    reason: e.reason,
                }
            }
        };
        Some(ContainerInfo {
            id: container_id(&spec.pod_uid, &spec.name, spec.restart_count),
            pod_uid: spec.pod_uid,
            name: spec.name,
            restart_count: spec.restart_count,
            image: spec.image,
            state,
        })
    }

    /// A run whose shim is gone without an `exit.json`: kill whatever is left of it and record
    /// it as ended with an error.
    fn settle_vanished(&self, dir: &Path, pid: Option<&PidRecord>) -> ExitRecord {
        let message = match pid {
            Some(p) => {
                if shim::same_process(p.pid, p.pid_start_ticks) {
                    let _ = killpg(Pid::from_raw(p.pid), Signal::SIGKILL);
                }
                format!(
                    "its supervisor (corral shim, pid {}) exited without recording how the \
                     container ended; what was left of the container was killed",
                    p.shim_pid
                )
            }
            None => "the container never started: its supervisor (corral shim) exited before \
                     starting it"
                .to_string(),
        };
        if let Some(cg) = read_cgroups(dir) {
            cg.kill_all();
        }
        let record = ExitRecord {
            exit_code: VANISHED_EXIT_CODE,
            signal: None,
            finished_at_ns: shim::now_ns(),
            reason: "Error".to_string(),
            message,
        };
        if let Err(e) = shim::write_json_atomic(&dir.join(EXIT_FILE), &record) {
            tracing::warn!(error = %e, "recording a vanished container");
        }
        tracing::warn!(dir = %dir.display(), message = %record.message, "container supervisor vanished");
        self.changed.bump();
        record
    }
}

/// Modified less than [`START_GRACE`] ago.
fn young(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < START_GRACE)
}

fn read_cgroups(dir: &Path) -> Option<RunCgroups> {
    shim::read_json::<ShimConfig>(&dir.join(CONFIG_FILE))
        .ok()
        .flatten()
        .map(|c| c.cgroups)
}

/// Removes `dir` from the set of runs being started when dropped.
struct Starting<'a> {
    set: &'a Mutex<HashSet<PathBuf>>,
    dir: PathBuf,
}

impl Drop for Starting<'_> {
    fn drop(&mut self) {
        lock(self.set).remove(&self.dir);
    }
}

fn validate(spec: &ContainerSpec) -> Result<(), RuntimeError> {
    if !safe_component(&spec.pod_uid) {
        return Err(RuntimeError::Start(format!(
            "invalid pod uid {:?}",
            spec.pod_uid
        )));
    }
    if !safe_component(&spec.name) {
        return Err(RuntimeError::Start(format!(
            "invalid container name {:?}",
            spec.name
        )));
    }
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return Err(RuntimeError::Start(format!(
            "container {:?} has no command to run",
            spec.name
        )));
    }
    Ok(())
}

impl ProcessRuntime {
    async fn start_run(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        validate(spec)?;
        let inner = &self.inner;
        let dir = run_dir(&inner.root, &spec.pod_uid, &spec.name, spec.restart_count);
        let id = container_id(&spec.pod_uid, &spec.name, spec.restart_count);
        if !lock(&inner.starting).insert(dir.clone()) {
            return Err(RuntimeError::Other(format!(
                "{id} is being started already"
            )));
        }
        let _starting = Starting {
            set: &inner.starting,
            dir: dir.clone(),
        };
        if dir.join(PID_FILE).exists() || dir.join(EXIT_FILE).exists() {
            return Err(RuntimeError::Other(format!(
                "{id} exists already: a run is never started twice"
            )));
        }
        if dir.exists() {
            // A start that never got as far as a process (agent killed mid-start).
            std::fs::remove_dir_all(&dir)
                .map_err(|e| io(format!("removing the stale {}", dir.display()), e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
        let result = self.spawn_shim(spec, &dir).await;
        if result.is_err() {
            inner
                .cgroups
                .remove_run(&spec.pod_uid, &run_name(&spec.name, spec.restart_count));
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn spawn_shim(
        &self,
        spec: &ContainerSpec,
        dir: &Path,
    ) -> Result<ContainerInfo, RuntimeError> {
        let inner = &self.inner;
        shim::write_json_atomic(&dir.join(SPEC_FILE), spec).map_err(RuntimeError::Other)?;
        let cgroups = inner
            .cgroups
            .create(
                &spec.pod_uid,
                &run_name(&spec.name, spec.restart_count),
                &spec.limits,
            )
            .map_err(|e| RuntimeError::Other(format!("setting up cgroups: {e}")))?;
        let config = ShimConfig {
            log_path: log_path(&inner.root, &spec.pod_uid, &spec.name, spec.restart_count),
            cgroups,
        };
        shim::write_json_atomic(&dir.join(CONFIG_FILE), &config).map_err(RuntimeError::Other)?;
        let shim_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(SHIM_LOG))
            .map_err(|e| io(format!("opening {}", dir.join(SHIM_LOG).display()), e))?;
        let mut child = tokio::process::Command::new(&inner.shim.program)
            .args(&inner.shim.args)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(shim_log)
            .spawn()
            .map_err(|e| io(format!("starting {}", inner.shim.program.display()), e))?;
        let stdout = child.stdout.take();
        let first_line = async move {
            let mut line = String::new();
            if let Some(out) = stdout {
                let _ = BufReader::new(out).read_line(&mut line).await;
            }
            line
        };
        let line = match tokio::time::timeout(inner.options.start_timeout, first_line).await {
            Ok(l) => l,
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(RuntimeError::Other(format!(
                    "the shim did not start the container within {:?}: {}",
                    inner.options.start_timeout,
                    shim_log_tail(dir)
                )));
            }
        };
        let line = line.trim_end();
        if let Some(why) = line.strip_prefix("error ") {
            let _ = child.wait().await;
            return Err(RuntimeError::Start(why.to_string()));
        }
        if !line.starts_with("ok ") {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(RuntimeError::Other(format!(
                "the shim exited without starting the container: {}",
                shim_log_tail(dir)
            )));
        }
        // Reap the shim when it exits, and say so: its container has ended.
        let notify = Arc::clone(&inner.changed);
        tokio::spawn(async move {
            let _ = child.wait().await;
            notify.bump();
        });
        self.ensure_poller();
        inner.observe(dir).ok_or_else(|| {
            RuntimeError::Other(format!(
                "the shim reported a process but {} is missing",
                dir.join(PID_FILE).display()
            ))
        })
    }

    /// Waits until the run has an `exit.json` (or its shim vanished), up to `within`.
    async fn wait_exited(&self, dir: &Path, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(2);
        loop {
            match self.inner.observe(dir) {
                Some(i) if i.is_running() => {}
                _ => return true,
            }
            if Instant::now() >= deadline {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(delay.min(left)).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    fn signal(&self, dir: &Path, signal: Signal) {
        let Ok(Some(p)) = shim::read_json::<PidRecord>(&dir.join(PID_FILE)) else {
            return;
        };
        if shim::same_process(p.pid, p.pid_start_ticks) {
            let _ = killpg(Pid::from_raw(p.pid), signal);
        }
        if signal == Signal::SIGKILL
            && p.shim_outside_cgroups
            && let Some(cg) = read_cgroups(dir)
        {
            // Also what left the process group (setsid, double fork).
            cg.kill_all();
        }
    }
}

fn shim_log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(SHIM_LOG)).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return "(the shim said nothing)".to_string();
    }
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].to_string()
}

#[async_trait]
impl Runtime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn capabilities(&self) -> Vec<String> {
        let mut out = vec![
            "process runtime: each container is a process group supervised by its own `corral \
             shim`, which outlives agent restarts; the image is recorded, not pulled"
                .to_string(),
        ];
        if self.inner.mount_namespace.mount_namespace {
            out.push(
                "mount namespaces: yes; each container has a private mount namespace with its \
                 volumes bind-mounted at their paths (missing mount points are created on the \
                 node) and the pod's hosts file over /etc/hosts"
                    .to_string(),
            );
        } else {
            out.push(format!(
                "mount namespaces: NO ({}); volumes are not mounted: each is passed as \
                 CORRAL_MOUNT_<PATH>=<host directory> (e.g. CORRAL_MOUNT_USR_SHARE_NGINX_HTML)",
                self.inner.mount_namespace.reason
            ));
        }
        out.extend(self.inner.cgroups.notes.iter().cloned());
        out
    }

    async fn start(&self, spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
        self.ensure_poller();
        self.start_run(spec).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.ensure_poller();
        self.inner.scan()
    }

    async fn list_pod(&self, pod_uid: &str) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.ensure_poller();
        self.inner.scan_pod(pod_uid)
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
        self.ensure_poller();
        let Some((uid, name, restart)) = parse_container_id(id) else {
            return Ok(None);
        };
        Ok(self
            .inner
            .observe(&run_dir(&self.inner.root, &uid, &name, restart)))
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.ensure_poller();
        let dir = self.state_dir(id)?;
        match self.inner.observe(&dir) {
            None => return Err(RuntimeError::NotFound(id.to_string())),
            Some(i) if !i.is_running() => return Ok(()),
            Some(_) => {}
        }
        if !grace.is_zero() {
            self.signal(&dir, Signal::SIGTERM);
            if self.wait_exited(&dir, grace).await {
                self.inner.changed.bump();
                return Ok(());
            }
        }
        self.signal(&dir, Signal::SIGKILL);
        let exited = self.wait_exited(&dir, KILL_WAIT).await;
        self.inner.changed.bump();
        if exited {
            Ok(())
        } else {
            Err(RuntimeError::Other(format!(
                "{id} did not exit within {KILL_WAIT:?} of SIGKILL"
            )))
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.state_dir(id)?;
        match self.inner.observe(&dir) {
            None if !dir.exists() => return Ok(()),
            Some(i) if i.is_running() => {
                return Err(RuntimeError::Other(format!(
                    "{id} is running: stop it before removing it"
                )));
            }
            _ => {}
        }
        if let Some(cg) = read_cgroups(&dir) {
            // rmdir may wait for the group to drain.
            let _ = tokio::task::spawn_blocking(move || cg.remove()).await;
        }
        lock(&self.inner.running).remove(&dir);
        std::fs::remove_dir_all(&dir).map_err(|e| io(format!("removing {}", dir.display()), e))
    }

    async fn remove_pod(&self, pod_uid: &str) -> Result<(), RuntimeError> {
        if !safe_component(pod_uid) {
            return Err(RuntimeError::NotFound(format!("pod {pod_uid:?}")));
        }
        let pod = pod_dir(&self.inner.root, pod_uid);
        let containers = pod.join("containers");
        // Nothing may outlive its pod: stop what still runs (it should not).
        if let Ok(runs) = std::fs::read_dir(&containers) {
            for run in runs.flatten() {
                if let Some(info) = self.inner.observe(&run.path())
                    && info.is_running()
                {
                    tracing::warn!(id = %info.id, "removing a pod with a running container: killing it");
                    self.stop(&info.id, Duration::ZERO).await?;
                }
            }
        }
        let cgroups = self.inner.cgroups.clone();
        let uid = pod_uid.to_string();
        let _ = tokio::task::spawn_blocking(move || cgroups.remove_pod(&uid)).await;
        {
            let mut running = lock(&self.inner.running);
            running.retain(|d| !d.starts_with(&containers));
        }
        for sub in [containers, pod.join("logs")] {
            match std::fs::remove_dir_all(&sub) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("removing {}", sub.display()), e)),
            }
        }
        // Gone with its last directory (volumes are the worker's to remove).
        let _ = std::fs::remove_dir(&pod);
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.ensure_poller();
        if argv.is_empty() {
            return Err(RuntimeError::Other("exec: empty command".to_string()));
        }
        let dir = self.state_dir(id)?;
        match self.inner.observe(&dir) {
            None => return Err(RuntimeError::NotFound(id.to_string())),
            Some(i) if !i.is_running() => {
                return Err(RuntimeError::Other(format!("{id} is not running")));
            }
            Some(_) => {}
        }
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let child = tokio::process::Command::new(&self.inner.shim.program)
            .args(&self.inner.shim.args)
            .arg("exec")
            .arg(&dir)
            .arg("--timeout-ms")
            .arg(timeout_ms.to_string())
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                io(
                    format!("starting {} exec", self.inner.shim.program.display()),
                    e,
                )
            })?;
        // The shim enforces the timeout itself; this only guards against a stuck shim.
        let out = tokio::time::timeout(
            timeout.saturating_add(Duration::from_secs(10)),
            child.wait_with_output(),
        )
        .await
        .map_err(|_| RuntimeError::Other(format!("exec in {id}: the shim did not return")))?
        .map_err(|e| io(format!("exec in {id}"), e))?;
        let report: ExecReport = serde_json::from_slice(&out.stdout).map_err(|_| {
            RuntimeError::Other(format!(
                "exec in {id}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
        Ok(ExecOutput {
            exit_code: report.exit_code,
            output: report.output,
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ensure_poller();
        self.inner.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_traversal() {
        let id = container_id("0d7c-uid", "web", 3);
        assert_eq!(id, "process://0d7c-uid/web/3");
        assert_eq!(
            parse_container_id(&id),
            Some(("0d7c-uid".to_string(), "web".to_string(), 3))
        );
        for bad in [
            "docker://u/web/3",
            "process://u/web",
            "process://u/web/x",
            "process://u/web/3/4",
            "process://../web/3",
            "process://u/../3",
            "process:///web/3",
        ] {
            assert_eq!(parse_container_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn run_dirs_are_per_restart() {
        let root = Path::new("/data");
        assert_eq!(
            run_dir(root, "uid", "web", 0),
            PathBuf::from("/data/pods/uid/containers/web-0")
        );
        assert_eq!(
            run_dir(root, "uid", "my-web", 12),
            PathBuf::from("/data/pods/uid/containers/my-web-12")
        );
    }

    #[test]
    fn specs_are_validated() {
        let mut spec = ContainerSpec {
            pod_uid: "u".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            name: "c".into(),
            restart_count: 0,
            image: "busybox".into(),
            argv: vec!["sh".into()],
            command: vec![],
            args: vec![],
            image_pull_policy: String::new(),
            env: vec![],
            working_dir: None,
            mounts: vec![],
            limits: Default::default(),
            hosts_file: None,
        };
        assert!(validate(&spec).is_ok());
        spec.argv.clear();
        assert!(matches!(validate(&spec), Err(RuntimeError::Start(_))));
        spec.argv = vec!["sh".into()];
        spec.name = "../x".into();
        assert!(matches!(validate(&spec), Err(RuntimeError::Start(_))));
    }
}
