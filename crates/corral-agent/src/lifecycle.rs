//! The pod lifecycle as the kubelet runs it, as one pure function: given the pod, what the runtime
//! says of its container runs, the probes' verdicts and the clock, [`plan`] answers what to do
//! next (start or kill containers) and the pod status to report.
//!
//! - Init containers run one at a time, each to success, before any app container; once an app
//!   container has run, the pod counts as initialized for good.
//! - App containers run together. An exited container restarts under `Always`, and under
//!   `OnFailure` when it failed; never under `Never`.
//! - Restarts back off: the first at once, then `initial`, doubling up to `max` (10 s to 5 min by
//!   default), measured from the end of the last run; meanwhile the container waits with
//!   reason `CrashLoopBackOff`.
//! - A failed liveness or startup probe kills the container, which then restarts (or not) by the
//!   same rules.
//! - The phase follows the kubelet's `getPhase`; the conditions are Initialized,
//!   ContainersReady and Ready (PodScheduled is the scheduler's and is kept as it is).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::runtime::{ContainerInfo, ContainerState};

/// Restart back-off of crashing containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// How long after the end of the previous run the run numbered `restart_count` may start.
    pub fn delay(&self, restart_count: u32) -> Duration {
        if restart_count <= 1 {
            return Duration::ZERO;
        }
        let doublings = (restart_count - 2).min(30);
        self.initial.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// What the probes say of a container's current run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeView {
    /// The startup probe has succeeded, or there is none.
    pub started: bool,
    /// The readiness probe passes, or there is none (and the container started).
    pub ready: bool,
    /// A liveness or startup probe has failed: the container must be killed.
    pub kill: Option<KillReason>,
}

impl Default for ProbeView {
    fn default() -> Self {
        ProbeView {
            started: true,
            ready: true,
            kill: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    Liveness,
    Startup,
}

impl KillReason {
    pub fn probe(self) -> &'static str {
        match self {
            KillReason::Liveness => "liveness",
            KillReason::Startup => "startup",
        }
    }
}

/// Why a container could not be started last time: shown as its waiting reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartError {
    /// `CreateContainerConfigError`, `RunContainerError`, `ErrImageNeverPull`, ...
    pub reason: String,
    pub message: String,
}

/// Everything [`plan`] looks at besides the pod.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// Every run of this pod's containers the runtime knows of.
    pub runs: &'a [ContainerInfo],
    /// Probe verdicts of each container's current run, by container name (absent: defaults).
    pub probes: &'a HashMap<String, ProbeView>,
    /// The last failed start of a container, by name, while it has not started since.
    pub start_errors: &'a HashMap<String, StartError>,
    pub now: SystemTime,
    pub backoff: Backoff,
    /// The pod's IP and its node's IP.
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
    /// When this agent first took the pod (status.startTime).
    pub start_time: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start the run numbered `restart_count` of a container.
    Start {
        container: String,
        init: bool,
        restart_count: u32,
    },
    /// Kill a running container because a probe failed.
    Kill {
        container: String,
        id: String,
        reason: KillReason,
    },
}

/// A container waiting out its back-off (for a BackOff event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub container: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The status to report (everything the agent owns: phase, conditions, container statuses,
    /// IPs, startTime).
    pub status: Value,
    /// The earliest moment something will change by the clock alone (a back-off ending).
    pub wake_at: Option<SystemTime>,
    pub backing_off: Vec<Waiting>,
}

impl Plan {
    pub fn phase(&self) -> &str {
        self.status
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending")
    }
}

/// `Always`, `OnFailure` or `Never`.
pub fn restart_policy(pod: &Value) -> &str {
    pod.pointer("/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Always")
}

fn containers<'a>(pod: &'a Value, key: &str) -> Vec<&'a Value> {
    pod.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn name_of(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

/// The latest and the previous run of a container.
fn runs_of<'a>(
    runs: &'a [ContainerInfo],
    name: &str,
) -> (Option<&'a ContainerInfo>, Option<&'a ContainerInfo>) {
    let mut mine: Vec<&ContainerInfo> = runs.iter().filter(|r| r.name == name).collect();
    mine.sort_by_key(|r| r.restart_count);
    let latest = mine.pop();
    (latest, mine.pop())
}

fn exit_code(r: &ContainerInfo) -> Option<i32> {
    match &r.state {
        ContainerState::Exited { exit_code, .. } => Some(*exit_code),
        ContainerState::Running { .. } => None,
    }
}

fn finished_at(r: &ContainerInfo) -> Option<SystemTime> {
    match &r.state {
        ContainerState::Exited { finished_at, .. } => Some(*finished_at),
        ContainerState::Running { .. } => None,
    }
}

pub fn rfc3339(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => ts.round(jiff::Unit::Second).map_or_else(
            |_| ts.to_string(),
            |r| r.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        Err(_) => "1970-01-01T00:00:00Z".into(),
    }
}

fn terminated_json(r: &ContainerInfo) -> Value {
    match &r.state {
        ContainerState::Exited {
            started_at,
            finished_at,
            exit_code,
            signal,
            reason,
        } => {
            let mut t = json!({
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": rfc3339(*started_at),
                "finishedAt": rfc3339(*finished_at),
                "containerID": r.id,
            });
            if let Some(s) = signal {
                t["signal"] = json!(s);
            }
            json!({"terminated": t})
        }
        ContainerState::Running { started_at } => {
            json!({"running": {"startedAt": rfc3339(*started_at)}})
        }
    }
}

/// What a container will do after its latest run exits.
enum Next {
    /// Start the next run now.
    StartNow(u32),
    /// Start the next run at this time (back-off).
    StartAt(SystemTime, Duration),
    /// It stays exited.
    Stay,
}

fn next_after_exit(r: &ContainerInfo, restart: bool, obs: &Observed<'_>) -> Next {
    if !restart {
        return Next::Stay;
    }
    let n = r.restart_count.saturating_add(1);
    let delay = obs.backoff.delay(n);
    let at = finished_at(r).unwrap_or(obs.now) + delay;
    if at <= obs.now {
        Next::StartNow(n)
    } else {
        Next::StartAt(at, delay)
    }
}

fn crash_loop_message(pod: &Value, name: &str, delay: Duration) -> String {
    format!(
        "back-off {} restarting failed container={name} pod={}_{}({})",
        humantime(delay),
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(""),
        pod.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(""),
        pod.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or(""),
    )
}

/// Go's duration text for whole seconds and minutes: `10s`, `1m20s`, `5m0s`.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else if d.subsec_millis() > 0 && s == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

fn waiting(reason: &str, message: Option<&str>) -> Value {
    match message {
        Some(m) if !m.is_empty() => json!({"waiting": {"reason": reason, "message": m}}),
        _ => json!({"waiting": {"reason": reason}}),
    }
}

fn image_of(c: &Value) -> String {
    c.get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Decides the next step of a pod and the status that describes it.
pub fn plan(pod: &Value, obs: &Observed<'_>) -> Plan {
    let policy = restart_policy(pod);
    let old_phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let terminal = old_phase == "Succeeded" || old_phase == "Failed";
    let deleting = pod.pointer("/metadata/deletionTimestamp").is_some();
    let mut actions = Vec::new();
    let mut wake_at: Option<SystemTime> = None;
    let mut backing_off = Vec::new();
    let mut wake = |t: SystemTime| {
        wake_at = Some(wake_at.map_or(t, |w: SystemTime| w.min(t)));
    };
    let may_start = !terminal && !deleting;

    let inits = containers(pod, "initContainers");
    let apps = containers(pod, "containers");
    let any_app_ran = apps
        .iter()
        .any(|c| runs_of(obs.runs, name_of(c)).0.is_some());

    // Init containers, one at a time.
    let mut init_statuses = Vec::new();
    let mut initialized = true;
    let mut init_failed_for_good = false;
    let mut pending_inits = Vec::new();
    let mut blocked = false;
    for c in &inits {
        let name = name_of(c);
        let (latest, prev) = runs_of(obs.runs, name);
        let mut status = json!({
            "name": name,
            "image": image_of(c),
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": latest.map_or(0, |r| r.restart_count),
        });
        if let Some(p) = prev {
            status["lastState"] = terminated_json(p);
        }
        let done = latest.is_some_and(|r| exit_code(r) == Some(0)) || any_app_ran;
        if done {
            if let Some(r) = latest {
                status["state"] = terminated_json(r);
                status["containerID"] = json!(r.id);
            } else {
                status["state"] = waiting("PodInitializing", None);
            }
            status["ready"] = json!(true);
            init_statuses.push(status);
            continue;
        }
        initialized = false;
        pending_inits.push(name.to_string());
        if blocked {
            status["state"] = waiting("PodInitializing", None);
            init_statuses.push(status);
            continue;
        }
        blocked = true;
        match latest {
            None => {
                status["state"] = start_waiting(obs, name, "PodInitializing");
                if may_start {
                    actions.push(Action::Start {
                        container: name.into(),
                        init: true,
                        restart_count: 0,
                    });
                }
            }
            Some(r) if r.is_running() => {
                status["state"] = terminated_json(r);
                status["containerID"] = json!(r.id);
                status["started"] = json!(true);
            }
            Some(r) => {
                status["containerID"] = json!(r.id);
                match next_after_exit(r, policy != "Never" && may_start, obs) {
                    Next::Stay => {
                        status["state"] = terminated_json(r);
                        if policy == "Never" {
                            init_failed_for_good = true;
                        }
                    }
                    Next::StartNow(n) => {
                        status["state"] = terminated_json(r);
                        actions.push(Action::Start {
                            container: name.into(),
                            init: true,
                            restart_count: n,
                        });
                    }
                    Next::StartAt(at, delay) => {
                        let message = crash_loop_message(pod, name, delay);
                        status["state"] = waiting("CrashLoopBackOff", Some(&message));
                        status["lastState"] = terminated_json(r);
                        backing_off.push(Waiting {
                            container: name.into(),
                            message,
                        });
                        wake(at);
                    }
                }
            }
        }
        init_statuses.push(status);
    }

    // App containers, together, once initialized.
    let mut app_statuses = Vec::new();
    let (mut running, mut waiting_new, mut stopped, mut succeeded) = (0, 0, 0, 0);
    let mut unready = Vec::new();
    for c in &apps {
        let name = name_of(c);
        let (latest, prev) = runs_of(obs.runs, name);
        let probe = obs.probes.get(name).copied().unwrap_or_default();
        let mut status = json!({
            "name": name,
            "image": image_of(c),
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": latest.map_or(0, |r| r.restart_count),
        });
        if let Some(p) = prev {
            status["lastState"] = terminated_json(p);
        }
        let mut ready = false;
        match latest {
            None => {
                waiting_new += 1;
                if !initialized {
                    status["state"] = waiting("PodInitializing", None);
                } else {
                    status["state"] = start_waiting(obs, name, "ContainerCreating");
                    if may_start {
                        actions.push(Action::Start {
                            container: name.into(),
                            init: false,
                            restart_count: 0,
                        });
                    }
                }
            }
            Some(r) if r.is_running() => {
                running += 1;
                status["state"] = terminated_json(r);
                status["containerID"] = json!(r.id);
                status["started"] = json!(probe.started);
                ready = probe.started && probe.ready && !deleting;
                if let Some(reason) = probe.kill
                    && !deleting
                {
                    actions.push(Action::Kill {
                        container: name.into(),
                        id: r.id.clone(),
                        reason,
                    });
                }
            }
            Some(r) => {
                status["containerID"] = json!(r.id);
                let code = exit_code(r).unwrap_or(0);
                let restart = match policy {
                    "Always" => true,
                    "OnFailure" => code != 0,
                    _ => false,
                };
                stopped += 1;
                if code == 0 {
                    succeeded += 1;
                }
                match next_after_exit(r, restart && may_start, obs) {
                    Next::Stay => status["state"] = terminated_json(r),
                    Next::StartNow(n) => {
                        status["state"] = terminated_json(r);
                        actions.push(Action::Start {
                            container: name.into(),
                            init: false,
                            restart_count: n,
                        });
                    }
                    Next::StartAt(at, delay) => {
                        let message = crash_loop_message(pod, name, delay);
                        status["state"] = waiting("CrashLoopBackOff", Some(&message));
                        status["lastState"] = terminated_json(r);
                        backing_off.push(Waiting {
                            container: name.into(),
                            message,
                        });
                        wake(at);
                    }
                }
                // A container that will restart counts as running for the phase (kubelet: a
                // waiting container with a last termination is "stopped" but the pod stays
                // Running under Always / OnFailure-with-failures).
            }
        }
        status["ready"] = json!(ready);
        if !ready {
            unready.push(name.to_string());
        }
        app_statuses.push(status);
    }

    // The phase, as the kubelet's getPhase decides it.
    let phase = if terminal {
        old_phase.to_string()
    } else if !initialized {
        if init_failed_for_good {
            "Failed".into()
        } else {
            "Pending".into()
        }
    } else if waiting_new > 0 {
        "Pending".into()
    } else if running > 0 {
        "Running".into()
    } else if stopped > 0 {
        if policy == "Always" {
            "Running".into()
        } else if stopped == succeeded {
            "Succeeded".into()
        } else if policy == "Never" {
            "Failed".into()
        } else {
            "Running".into()
        }
    } else {
        "Pending".into()
    };
    let completed = phase == "Succeeded" || phase == "Failed";
    if completed {
        // Nothing more starts in a finished pod.
        actions.retain(|a| matches!(a, Action::Kill { .. }));
        wake_at = None;
        backing_off.clear();
    }

    let now = rfc3339(obs.now);
    let old_conditions: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let condition = |kind: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = old_conditions
            .iter()
            .find(|c| {
                c.get("type").and_then(Value::as_str) == Some(kind)
                    && c.get("status").and_then(Value::as_str) == Some(status)
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(now));
        let mut c = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            if !message.is_empty() {
                c["message"] = json!(message);
            }
        }
        c
    };
    let mut conditions = Vec::new();
    if initialized {
        conditions.push(condition("Initialized", true, "", String::new()));
    } else {
        conditions.push(condition(
            "Initialized",
            false,
            "ContainersNotInitialized",
            format!(
                "containers with incomplete status: [{}]",
                pending_inits.join(" ")
            ),
        ));
    }
    let all_ready = unready.is_empty() && !completed;
    let (reason, message) = if completed {
        ("PodCompleted", String::new())
    } else {
        (
            "ContainersNotReady",
            format!("containers with unready status: [{}]", unready.join(" ")),
        )
    };
    conditions.push(condition("Ready", all_ready, reason, message.clone()));
    conditions.push(condition("ContainersReady", all_ready, reason, message));
    if let Some(sched) = old_conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
    {
        conditions.push(sched.clone());
    }

    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": obs.host_ip,
        "hostIPs": [{"ip": obs.host_ip}],
        "startTime": rfc3339(obs.start_time),
        "containerStatuses": app_statuses,
        "qosClass": qos_class(pod),
    });
    // No pod IP until the pod's sandbox has one.
    if !obs.pod_ip.is_empty() {
        status["podIP"] = json!(obs.pod_ip);
        status["podIPs"] = json!([{"ip": obs.pod_ip}]);
    }
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    Plan {
        actions,
        status,
        wake_at,
        backing_off,
    }
}

/// The waiting state of a container that has not run yet: its last start error, or `default`.
fn start_waiting(obs: &Observed<'_>, name: &str, default: &str) -> Value {
    match obs.start_errors.get(name) {
        Some(e) => waiting(&e.reason, Some(&e.message)),
        None => waiting(default, None),
    }
}

/// Kubernetes' QoS class: Guaranteed (every container has equal cpu and memory requests and
/// limits), BestEffort (no requests or limits at all), otherwise Burstable.
pub fn qos_class(pod: &Value) -> &'static str {
    let all: Vec<&Value> = containers(pod, "containers")
        .into_iter()
        .chain(containers(pod, "initContainers"))
        .collect();
    let get = |c: &Value, which: &str, res: &str| {
        c.pointer(&format!("/resources/{which}/{res}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut any = false;
    let mut guaranteed = true;
    for c in &all {
        for res in ["cpu", "memory"] {
            let req = get(c, "requests", res);
            let lim = get(c, "limits", res);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Value {
        let c = |n: &&str| json!({"name": n, "image": "busybox"});
        json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": inits.iter().map(c).collect::<Vec<_>>(),
                "containers": apps.iter().map(c).collect::<Vec<_>>(),
            },
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
        })
    }

    fn running(name: &str, restart: u32) -> ContainerInfo {
        ContainerInfo {
            id: format!("process://u1/{name}/{restart}"),
            pod_uid: "u1".into(),
            name: name.into(),
            restart_count: restart,
            image: "busybox".into(),
            state: ContainerState::Running { started_at: at(0) },
        }
    }

    fn exited(name: &str, restart: u32, code: i32, finished: u64) -> ContainerInfo {
        ContainerInfo {
            state: ContainerState::Exited {
                started_at: at(0),
                finished_at: at(finished),
                exit_code: code,
                signal: None,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
            },
            ..running(name, restart)
        }
    }

    struct World {
        runs: Vec<ContainerInfo>,
        probes: HashMap<String, ProbeView>,
        errors: HashMap<String, StartError>,
        now: u64,
    }

    impl World {
        fn new(runs: Vec<ContainerInfo>, now: u64) -> Self {
            World {
                runs,
                probes: HashMap::new(),
                errors: HashMap::new(),
                now,
            }
        }

        fn plan(&self, pod: &Value) -> Plan {
            plan(
                pod,
                &Observed {
                    runs: &self.runs,
                    probes: &self.probes,
                    start_errors: &self.errors,
                    now: at(self.now),
                    backoff: Backoff::default(),
                    pod_ip: "10.0.0.1",
                    host_ip: "10.0.0.1",
                    start_time: at(0),
                },
            )
        }
    }

    fn start(name: &str, init: bool, n: u32) -> Action {
        Action::Start {
            container: name.into(),
            init,
            restart_count: n,
        }
    }

    fn cond<'a>(plan: &'a Plan, kind: &str) -> &'a Value {
        plan.status["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == kind))
            .unwrap_or(&Value::Null)
    }

    #[test]
    fn backoff_is_immediate_then_doubles_to_the_cap() {
        let b = Backoff::default();
        let secs: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn init_containers_run_one_at_a_time_before_apps() {
        let p = pod("Always", &["i1", "i2"], &["a", "b"]);
        let w = World::new(vec![], 0);
        let plan = w.plan(&p);
        assert_eq!(plan.actions, vec![start("i1", true, 0)]);
        assert_eq!(plan.phase(), "Pending");
        assert_eq!(cond(&plan, "Initialized")["status"], "False");
        assert_eq!(
            cond(&plan, "Initialized")["message"],
            "containers with incomplete status: [i1 i2]"
        );
        assert_eq!(
            plan.status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "PodInitializing"
        );

        let w = World::new(vec![running("i1", 0)], 1);
        assert!(w.plan(&p).actions.is_empty());

        let w = World::new(vec![exited("i1", 0, 0, 1)], 1);
        assert_eq!(w.plan(&p).actions, vec![start("i2", true, 0)]);

        let w = World::new(vec![exited("i1", 0, 0, 1), exited("i2", 0, 0, 2)], 2);
        let plan = w.plan(&p);
        assert_eq!(
            plan.actions,
            vec![start("a", false, 0), start("b", false, 0)]
        );
        assert_eq!(cond(&plan, "Initialized")["status"], "True");
        assert_eq!(plan.status["initContainerStatuses"][1]["ready"], true);
    }

    #[test]
    fn a_failed_init_container_fails_the_pod_under_never_and_restarts_otherwise() {
        let p = pod("Never", &["i1"], &["a"]);
        let plan = World::new(vec![exited("i1", 0, 1, 1)], 1).plan(&p);
        assert_eq!(plan.phase(), "Failed");
        assert!(plan.actions.is_empty());

        let p = pod("OnFailure", &["i1"], &["a"]);
        let plan = World::new(vec![exited("i1", 0, 1, 1)], 1).plan(&p);
        assert_eq!(plan.phase(), "Pending");
        assert_eq!(plan.actions, vec![start("i1", true, 1)]);
    }

    #[test]
    fn running_and_ready_follow_probes() {
        let p = pod("Always", &[], &["a"]);
        let mut w = World::new(vec![running("a", 0)], 1);
        let plan = w.plan(&p);
        assert_eq!(plan.phase(), "Running");
        assert_eq!(cond(&plan, "Ready")["status"], "True");
        assert_eq!(plan.status["containerStatuses"][0]["ready"], true);
        assert!(plan.status["containerStatuses"][0]["state"]["running"].is_object());

        w.probes.insert(
            "a".into(),
            ProbeView {
                started: true,
                ready: false,
                kill: None,
            },
        );
        let plan = w.plan(&p);
        assert_eq!(cond(&plan, "Ready")["status"], "False");
        assert_eq!(
            cond(&plan, "ContainersReady")["message"],
            "containers with unready status: [a]"
        );
        assert_eq!(cond(&plan, "PodScheduled")["status"], "True");
    }

    #[test]
    fn a_failed_liveness_probe_kills_the_container() {
        let p = pod("Always", &[], &["a"]);
        let mut w = World::new(vec![running("a", 0)], 1);
        w.probes.insert(
            "a".into(),
            ProbeView {
                started: true,
                ready: true,
                kill: Some(KillReason::Liveness),
            },
        );
        assert_eq!(
            w.plan(&p).actions,
            vec![Action::Kill {
                container: "a".into(),
                id: "process://u1/a/0".into(),
                reason: KillReason::Liveness
            }]
        );
    }

    #[test]
    fn restart_policies_and_crash_loop_back_off() {
        // Always: the first restart is immediate.
        let p = pod("Always", &[], &["a"]);
        let plan = World::new(vec![exited("a", 0, 0, 5)], 5).plan(&p);
        assert_eq!(plan.actions, vec![start("a", false, 1)]);
        assert_eq!(plan.phase(), "Running");

        // The second waits 10 s after the end of the last run.
        let runs = vec![exited("a", 0, 1, 5), exited("a", 1, 1, 6)];
        let plan = World::new(runs.clone(), 8).plan(&p);
        assert!(plan.actions.is_empty());
        let st = &plan.status["containerStatuses"][0];
        assert_eq!(st["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(
            st["state"]["waiting"]["message"],
            "back-off 10s restarting failed container=a pod=p_default(u1)"
        );
        assert_eq!(st["restartCount"], 1);
        assert_eq!(st["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(plan.wake_at, Some(at(16)));
        assert_eq!(plan.phase(), "Running");
        let plan = World::new(runs, 16).plan(&p);
        assert_eq!(plan.actions, vec![start("a", false, 2)]);

        // OnFailure: success ends it, failure restarts it.
        let p = pod("OnFailure", &[], &["a"]);
        let plan = World::new(vec![exited("a", 0, 0, 5)], 5).plan(&p);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.phase(), "Succeeded");
        assert_eq!(cond(&plan, "Ready")["reason"], "PodCompleted");
        let plan = World::new(vec![exited("a", 0, 3, 5)], 5).plan(&p);
        assert_eq!(plan.actions, vec![start("a", false, 1)]);

        // Never: the pod fails on a failure and succeeds when all succeed.
        let p = pod("Never", &[], &["a", "b"]);
        let plan = World::new(vec![exited("a", 0, 0, 5), exited("b", 0, 2, 5)], 5).plan(&p);
        assert_eq!(plan.phase(), "Failed");
        assert!(plan.actions.is_empty());
        let st = &plan.status["containerStatuses"][1]["state"]["terminated"];
        assert_eq!(st["exitCode"], 2);
        assert_eq!(st["reason"], "Error");
        let plan = World::new(vec![exited("a", 0, 0, 5), running("b", 0)], 5).plan(&p);
        assert_eq!(plan.phase(), "Running");
        let plan = World::new(vec![exited("a", 0, 0, 5), exited("b", 0, 0, 6)], 6).plan(&p);
        assert_eq!(plan.phase(), "Succeeded");
    }

    #[test]
    fn a_start_error_shows_as_the_waiting_reason() {
        let p = pod("Always", &[], &["a"]);
        let mut w = World::new(vec![], 0);
        w.errors.insert(
            "a".into(),
            StartError {
                reason: "CreateContainerConfigError".into(),
                message: "configmap \"app\" not found".into(),
            },
        );
        let plan = w.plan(&p);
        assert_eq!(plan.actions, vec![start("a", false, 0)]);
        assert_eq!(plan.phase(), "Pending");
        assert_eq!(
            plan.status["containerStatuses"][0]["state"]["waiting"],
            json!({"reason": "CreateContainerConfigError", "message": "configmap \"app\" not found"})
        );
    }

    #[test]
    fn a_finished_or_deleting_pod_starts_nothing() {
        let mut p = pod("Always", &[], &["a"]);
        p["status"]["phase"] = json!("Succeeded");
        assert!(World::new(vec![], 0).plan(&p).actions.is_empty());
        let mut p = pod("Always", &[], &["a"]);
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(
            World::new(vec![exited("a", 0, 1, 0)], 0)
                .plan(&p)
                .actions
                .is_empty()
        );
    }

    #[test]
    fn transition_times_are_kept_while_a_condition_holds() {
        let mut p = pod("Always", &[], &["a"]);
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]);
        let plan = World::new(vec![running("a", 0)], 1).plan(&p);
        assert_eq!(
            cond(&plan, "Ready")["lastTransitionTime"],
            "2020-01-01T00:00:00Z"
        );
    }

    #[test]
    fn qos_classes() {
        let c = |r: Value| json!({"spec": {"containers": [{"name": "a", "resources": r}]}});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&c(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&c(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
    }
}
