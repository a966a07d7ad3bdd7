//! The controllers, end to end on a real cluster (servers and agents as child processes, the
//! process runtime, real `sleep` processes): Deployments rolling out and back within their
//! surge and unavailability bounds (also across a leader's death), Jobs, garbage collection,
//! namespace deletion and DaemonSets, checked the way a user sees them through the API.
//!
//! Rollouts are watched by a sampler that lists the pods every ~50 ms while `corralctl rollout
//! status` waits, and the bounds are checked on every sample. What "pods" means for the bounds is
//! Kubernetes' (see [`PodCounts`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_client::{
    ApiError, CancellationToken, Client, DeleteOptions, ListOptions, PropagationPolicy,
};
use corral_tests::{TestCluster, condition, eventually, yaml};
use serde_json::{Value, json};

const SERVER_FLAGS: [&str; 4] = ["--node-grace-seconds", "3", "--node-monitor-seconds", "1"];
const LONG: Duration = Duration::from_secs(60);
/// How long `corralctl rollout status` may wait for one rollout.
const ROLLOUT_TIMEOUT: &str = "120s";
/// How often the sampler lists the pods.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);

const REPLICAS: usize = 4;
const MAX_SURGE: usize = 1;
const MAX_UNAVAILABLE: usize = 1;
const IMAGE_V1: &str = "busybox:1.0";
const IMAGE_V2: &str = "busybox:2.0";
const REVISION: &str = "deployment.kubernetes.io/revision";

async fn cluster(servers: usize, agents: &[(&str, &[&str])]) -> TestCluster {
    let mut c = TestCluster::start(servers, &SERVER_FLAGS);
    c.leader(LONG).await;
    for (name, extra) in agents {
        c.add_agent(name, extra);
    }
    c.nodes_ready(LONG).await;
    c
}

/// Runs `corralctl` against the running servers without blocking the runtime.
async fn corralctl(c: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(corral_tests::bin("corralctl"))
        .arg("--server")
        .arg(c.api_addrs().join(","))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running corralctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `corralctl ARGS` must succeed; answers its stdout.
async fn corralctl_ok(c: &TestCluster, args: &[&str]) -> String {
    let (ok, out, err) = corralctl(c, args).await;
    assert!(
        ok,
        "corralctl {} failed:\nstdout: {out}\nstderr: {err}",
        args.join(" ")
    );
    out
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn phase(p: &Value) -> &str {
    text(p, "/status/phase")
}

fn is_terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn is_finished(p: &Value) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

fn image(p: &Value) -> &str {
    text(p, "/spec/containers/0/image")
}

fn owner_uids(o: &Value) -> Vec<String> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .map(|r| text(r, "/uid").to_string())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
}

fn condition_of<'a>(o: &'a Value, kind: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
}

async fn list(client: &Client, kind: &str, ns: &str, selector: &str) -> Result<Vec<Value>, String> {
    client
        .list(
            kind,
            Some(ns),
            &ListOptions {
                label_selector: selector.into(),
                ..Default::default()
            },
        )
        .await
        .map(|l| l.items)
        .map_err(|e| format!("listing {kind} {selector:?} in {ns}: {e}"))
}

async fn get(client: &Client, kind: &str, ns: &str, name: &str) -> Result<Value, String> {
    client
        .get(kind, ns, name)
        .await
        .map_err(|e| format!("{kind} {ns}/{name}: {e}"))
}

async fn gone(client: &Client, kind: &str, ns: &str, name: &str) -> Result<(), String> {
    match client.get(kind, ns, name).await {
        Err(ApiError::NotFound { .. }) => Ok(()),
        Ok(o) => Err(format!(
            "{kind} {ns}/{name} still there (deletionTimestamp {:?}, finalizers {:?}, status {})",
            o["metadata"]["deletionTimestamp"], o["metadata"]["finalizers"], o["status"]
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// A Deployment of `replicas` `sleep` pods labelled `app: NAME`, rolling with maxSurge 1 and
/// maxUnavailable 1, ready once a readiness probe (`true`, every second) passes. The probe waits
/// 2 s before its first run: without it a whole rollout takes a few hundred milliseconds, and
/// each of its steps should last long enough for the sampler to look at it several times (and
/// for a test to kill the leader in the middle of the rollout).
fn deployment(ns: &str, name: &str, replicas: usize, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": 0,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": MAX_UNAVAILABLE}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 5,
                    "containers": [{
                        "name": "app", "image": image, "command": ["sleep", "600"],
                        "readinessProbe": {"exec": {"command": ["true"]},
                                           "initialDelaySeconds": 2, "periodSeconds": 1}
                    }]
                }
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Sampling

/// One look at a Deployment's pods.
///
/// What "pods" means for the bounds, as in Kubernetes:
/// - **The surge bound** (`replicas + maxSurge`) is on the pods that are not terminating
///   (`present`). Kubernetes' Deployment controller bounds the sum of its ReplicaSets'
///   `spec.replicas`, and a ReplicaSet counts only its active pods (`FilterActivePods`: no
///   `deletionTimestamp`, not finished), so a pod in its graceful termination no longer counts
///   and its replacement may start beside it (kubernetes/kubernetes#107920; the alpha
///   `podReplacementPolicy: TerminationComplete` of 1.34 changes that, off by default).
///   Terminating pods are still on their node, so they are counted apart (`terminating`) and
///   reported, but not bounded.
/// - **The availability floor** (`replicas - maxUnavailable`) is on `available`: pods that are
///   not terminating and are Ready (with `minReadySeconds: 0`, ready is available). A
///   terminating pod never counts as available, even while its process still runs.
#[derive(Debug, Clone, Default)]
struct PodCounts {
    /// Not terminating and not finished.
    present: usize,
    /// `present` and Ready.
    available: usize,
    /// With a `deletionTimestamp` (still on their node).
    terminating: usize,
    /// Image → (present, available).
    images: BTreeMap<String, (usize, usize)>,
}

fn pod_counts(pods: &[Value]) -> PodCounts {
    let mut c = PodCounts::default();
    for p in pods {
        if is_terminating(p) {
            c.terminating += 1;
            continue;
        }
        if is_finished(p) {
            continue;
        }
        let ready = condition(p, "Ready") == "True";
        c.present += 1;
        let e = c.images.entry(image(p).to_string()).or_default();
        e.0 += 1;
        if ready {
            c.available += 1;
            e.1 += 1;
        }
    }
    c
}

/// One look at a Job's pods.
#[derive(Debug, Clone, Default)]
struct JobCounts {
    /// Neither finished nor terminating: what the Job controller counts as active.
    active: usize,
    succeeded: usize,
    failed: usize,
    /// Every pod uid in this look.
    uids: BTreeSet<String>,
}

fn job_counts(pods: &[Value]) -> JobCounts {
    let mut c = JobCounts::default();
    for p in pods {
        c.uids.insert(text(p, "/metadata/uid").to_string());
        match phase(p) {
            "Succeeded" => c.succeeded += 1,
            "Failed" => c.failed += 1,
            _ if is_terminating(p) => {}
            _ => c.active += 1,
        }
    }
    c
}

struct Sample<T> {
    at: Duration,
    counts: T,
    /// The look came from a possibly stale read (no leader to confirm a linearizable one).
    stale: bool,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Sample<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} ms{} {:?}",
            self.at.as_millis(),
            if self.stale { " (stale)" } else { "" },
            self.counts
        )
    }
}

/// Lists the pods matching a selector every [`SAMPLE_EVERY`] until stopped. A list that fails
/// (no leader for a moment) is tried again as a stale read, which is still one consistent,
/// committed state; a look neither could give is counted as missed.
struct Sampler<T> {
    samples: Arc<Mutex<Vec<Sample<T>>>>,
    missed: Arc<Mutex<Vec<String>>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl<T: Clone + Send + 'static> Sampler<T> {
    fn start(client: Client, ns: &str, selector: &str, count: fn(&[Value]) -> T) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let missed = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (ns, selector) = (ns.to_string(), selector.to_string());
        let task =
            tokio::spawn({
                let (samples, missed, stop) = (samples.clone(), missed.clone(), stop.clone());
                async move {
                    let start = Instant::now();
                    while !stop.is_cancelled() {
                        let mut options = ListOptions {
                            label_selector: selector.clone(),
                            ..Default::default()
                        };
                        let mut read = client.list("Pod", Some(&ns), &options).await;
                        let stale = read.is_err();
                        if stale {
                            options.stale_ok = true;
                            read = client.list("Pod", Some(&ns), &options).await;
                        }
                        match read {
                            Ok(list) => samples
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(Sample {
                                    at: start.elapsed(),
                                    counts: count(&list.items),
                                    stale,
                                }),
                            Err(e) => missed
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(format!("{} ms: {e}", start.elapsed().as_millis())),
                        }
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
                        }
                    }
                }
            });
        Sampler {
            samples,
            missed,
            stop,
            task,
        }
    }

    /// The newest look so far.
    fn latest(&self) -> Option<T> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map(|s| s.counts.clone())
    }

    /// Stops sampling; answers every look and every missed one.
    async fn finish(self) -> (Vec<Sample<T>>, Vec<String>) {
        self.stop.cancel();
        self.task.await.expect("the sampler ran to its end");
        (take(&self.samples), take(&self.missed))
    }
}

fn take<V>(m: &Mutex<Vec<V>>) -> Vec<V> {
    std::mem::take(&mut *m.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The looks around the `i`th, for a failure message.
fn around<T: std::fmt::Debug>(samples: &[Sample<T>], i: usize) -> String {
    samples[i.saturating_sub(5)..(i + 3).min(samples.len())]
        .iter()
        .map(|s| format!("  {s:?}\n"))
        .collect()
}

/// Asserts the rolling-update bounds on every look, and that the looks saw the rollout itself
/// (some look with pods of both images).
fn assert_rollout_bounds(what: &str, samples: &[Sample<PodCounts>], missed: &[String]) {
    assert!(
        samples.len() >= 10,
        "{what}: only {} looks at the pods (missed: {missed:?})",
        samples.len()
    );
    for (i, s) in samples.iter().enumerate() {
        assert!(
            s.counts.present <= REPLICAS + MAX_SURGE,
            "{what}: {} pods (not terminating) at once, more than replicas {REPLICAS} + maxSurge \
             {MAX_SURGE}:\n{}",
            s.counts.present,
            around(samples, i)
        );
        assert!(
            s.counts.available + MAX_UNAVAILABLE >= REPLICAS,
            "{what}: only {} pods available at once, fewer than replicas {REPLICAS} - \
             maxUnavailable {MAX_UNAVAILABLE}:\n{}",
            s.counts.available,
            around(samples, i)
        );
    }
    assert!(
        samples.iter().any(|s| s.counts.images.len() >= 2),
        "{what}: no look saw the old and the new pods side by side; looks: {samples:#?}"
    );
    let max_present = samples.iter().map(|s| s.counts.present).max().unwrap_or(0);
    let max_with_terminating = samples
        .iter()
        .map(|s| s.counts.present + s.counts.terminating)
        .max()
        .unwrap_or(0);
    let min_available = samples
        .iter()
        .map(|s| s.counts.available)
        .min()
        .unwrap_or(0);
    eprintln!(
        "{what}: {} looks, {} missed, {} stale; at most {max_present} pods \
         ({max_with_terminating} counting terminating ones), at least {min_available} available",
        samples.len(),
        missed.len(),
        samples.iter().filter(|s| s.stale).count()
    );
}

/// Waits until the Deployment's pods are `replicas` available ones of `image` and nothing else
/// (no terminating pod left).
async fn settled(client: &Client, ns: &str, name: &str, image: &str) {
    eventually(
        &format!("deployment {ns}/{name}: {REPLICAS} available pods of {image}, nothing else"),
        LONG,
        || async {
            let pods = list(client, "Pod", ns, &format!("app={name}")).await?;
            let c = pod_counts(&pods);
            let want = (REPLICAS, REPLICAS);
            if c.terminating == 0
                && c.images.len() == 1
                && c.images.get(image) == Some(&want)
                && pods.len() == REPLICAS
            {
                Ok(())
            } else {
                Err(format!("{c:?} ({} pods listed)", pods.len()))
            }
        },
    )
    .await
}

/// The Deployment's ReplicaSets by their template's image.
async fn replica_sets_by_image(
    client: &Client,
    ns: &str,
    name: &str,
) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for rs in list(client, "ReplicaSet", ns, &format!("app={name}"))
        .await
        .expect("list replica sets")
    {
        out.entry(text(&rs, "/spec/template/spec/containers/0/image").to_string())
            .or_default()
            .push(rs);
    }
    out
}

fn revision(o: &Value) -> String {
    o.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// The revisions `corralctl rollout history` lists.
fn history_revisions(out: &str) -> BTreeSet<i64> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Creates the Deployment `web` of [`IMAGE_V1`] and waits for its rollout.
async fn deploy_web(c: &TestCluster, client: &Client) {
    client
        .create(&deployment("default", "web", REPLICAS, IMAGE_V1))
        .await
        .expect("create deployment");
    corralctl_ok(
        c,
        &[
            "rollout",
            "status",
            "deployment/web",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ],
    )
    .await;
    settled(client, "default", "web", IMAGE_V1).await;
}

// ---------------------------------------------------------------------------------------------
// Deployments

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_stays_within_surge_and_unavailability_and_rolls_back() {
    let c = cluster(3, &[("n1", &[]), ("n2", &[])]).await;
    let client = c.client();
    deploy_web(&c, &client).await;
    let first_rs = replica_sets_by_image(&client, "default", "web").await;
    let first_rs_name = first_rs
        .get(IMAGE_V1)
        .and_then(|v| v.first())
        .map(|rs| text(rs, "/metadata/name").to_string())
        .expect("the first ReplicaSet");

    // Roll to the new image, looking at the pods all along.
    let sampler = Sampler::start(client.clone(), "default", "app=web", pod_counts);
    corralctl_ok(
        &c,
        &["set", "image", "deployment/web", &format!("app={IMAGE_V2}")],
    )
    .await;
    let status = corralctl_ok(
        &c,
        &[
            "rollout",
            "status",
            "deployment/web",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ],
    )
    .await;
    let (samples, missed) = sampler.finish().await;
    assert!(status.contains("successfully rolled out"), "{status}");
    assert_rollout_bounds("rollout to v2", &samples, &missed);
    settled(&client, "default", "web", IMAGE_V2).await;
    let d = get(&client, "Deployment", "default", "web")
        .await
        .expect("deployment");
    assert_eq!(revision(&d), "2", "{}", d["metadata"]);

    // Back to revision 1, within the same bounds.
    let sampler = Sampler::start(client.clone(), "default", "app=web", pod_counts);
    let undo = corralctl_ok(
        &c,
        &["rollout", "undo", "deployment/web", "--to-revision", "1"],
    )
    .await;
    assert!(undo.contains("rolled back"), "{undo}");
    corralctl_ok(
        &c,
        &[
            "rollout",
            "status",
            "deployment/web",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ],
    )
    .await;
    let (samples, missed) = sampler.finish().await;
    assert_rollout_bounds("rollback to revision 1", &samples, &missed);
    settled(&client, "default", "web", IMAGE_V1).await;

    // The first template runs again as revision 3. Kubernetes reuses the ReplicaSet of revision
    // 1 (the oldest with that template), renumbers it 3 and keeps "1" in its revision history;
    // a fresh revision-3 ReplicaSet of the same template (the old one left at 0) would do too.
    let d = get(&client, "Deployment", "default", "web")
        .await
        .expect("deployment");
    assert_eq!(revision(&d), "3", "{}", d["metadata"]);
    let by_image = replica_sets_by_image(&client, "default", "web").await;
    let v1 = by_image.get(IMAGE_V1).cloned().unwrap_or_default();
    let v2 = by_image.get(IMAGE_V2).cloned().unwrap_or_default();
    let (scaled, idle): (Vec<&Value>, Vec<&Value>) = v1
        .iter()
        .partition(|rs| int(rs, "/spec/replicas") == REPLICAS as i64);
    assert_eq!(
        (scaled.len(), idle.len()),
        (1, v1.len() - 1),
        "one ReplicaSet of the first template runs it, any other is at 0: {v1:#?}"
    );
    assert!(
        idle.iter().all(|rs| int(rs, "/spec/replicas") == 0),
        "{v1:#?}"
    );
    assert_eq!(
        v2.len(),
        1,
        "one ReplicaSet of the second template: {v2:#?}"
    );
    let (v1, v2) = (scaled[0], &v2[0]);
    assert_eq!(revision(v1), "3", "{}", v1["metadata"]);
    assert_eq!(revision(v2), "2", "{}", v2["metadata"]);
    assert_eq!(int(v2, "/spec/replicas"), 0);
    if text(v1, "/metadata/name") == first_rs_name {
        let history = text(
            v1,
            "/metadata/annotations/deployment.kubernetes.io~1revision-history",
        );
        assert!(
            history.split(',').any(|r| r == "1"),
            "the reused ReplicaSet keeps revision 1 in its history: {}",
            v1["metadata"]
        );
        eprintln!(
            "rollback: ReplicaSet {first_rs_name} reused as revision 3 (history {history:?})"
        );
    } else {
        eprintln!(
            "rollback: new ReplicaSet {} as revision 3",
            text(v1, "/metadata/name")
        );
    }

    let out = corralctl_ok(&c, &["rollout", "history", "deployment/web"]).await;
    assert!(out.contains("REVISION"), "{out}");
    let revisions = history_revisions(&out);
    assert!(
        revisions == BTreeSet::from([2, 3]) || revisions == BTreeSet::from([1, 2, 3]),
        "rollout history lists revisions {revisions:?}:\n{out}"
    );
    let out = corralctl_ok(
        &c,
        &["rollout", "history", "deployment/web", "--revision", "3"],
    )
    .await;
    assert!(out.contains(IMAGE_V1), "{out}");
    let out = corralctl_ok(
        &c,
        &["rollout", "history", "deployment/web", "--revision", "2"],
    )
    .await;
    assert!(out.contains(IMAGE_V2), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_update_finishes_under_a_new_leader_within_the_same_bounds() {
    let mut c = cluster(3, &[("n1", &[]), ("n2", &[])]).await;
    let client = c.client();
    deploy_web(&c, &client).await;

    let sampler = Sampler::start(client.clone(), "default", "app=web", pod_counts);
    corralctl_ok(
        &c,
        &["set", "image", "deployment/web", &format!("app={IMAGE_V2}")],
    )
    .await;
    // Mid-rollout: a new pod is available while old ones still run.
    let seen = eventually("the rollout half-way", LONG, || async {
        match sampler.latest() {
            Some(s)
                if s.images.get(IMAGE_V2).is_some_and(|(_, a)| *a >= 1)
                    && s.images.get(IMAGE_V1).is_some_and(|(p, _)| *p >= 1) =>
            {
                Ok(s)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let old_leader = c.leader(LONG).await;
    let old_id = c.servers[old_leader].id;
    c.servers[old_leader].kill();
    eprintln!("killed leader {old_id} while the pods were {seen:?}");
    let new_leader = c.leader(LONG).await;
    assert_ne!(c.servers[new_leader].id, old_id);

    let status = corralctl_ok(
        &c,
        &[
            "rollout",
            "status",
            "deployment/web",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ],
    )
    .await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let (samples, missed) = sampler.finish().await;
    assert_rollout_bounds("rollout across a leader's death", &samples, &missed);
    settled(&client, "default", "web", IMAGE_V2).await;

    // The new leader carried on with the same ReplicaSets rather than making others.
    let d = get(&client, "Deployment", "default", "web")
        .await
        .expect("deployment");
    assert_eq!(revision(&d), "2", "{}", d["metadata"]);
    let by_image = replica_sets_by_image(&client, "default", "web").await;
    assert_eq!(
        by_image.values().map(Vec::len).collect::<Vec<_>>(),
        vec![1, 1],
        "one ReplicaSet per template: {by_image:#?}"
    );
    assert_eq!(
        int(&by_image[IMAGE_V2][0], "/spec/replicas"),
        REPLICAS as i64
    );
    assert_eq!(int(&by_image[IMAGE_V1][0], "/spec/replicas"), 0);
    assert_eq!(
        int(&d, "/status/updatedReplicas"),
        REPLICAS as i64,
        "{}",
        d["status"]
    );
    assert_eq!(
        int(&d, "/status/availableReplicas"),
        REPLICAS as i64,
        "{}",
        d["status"]
    );
}

// ---------------------------------------------------------------------------------------------
// Jobs

fn job(
    name: &str,
    completions: u32,
    parallelism: u32,
    backoff: u32,
    policy: &str,
    script: &str,
) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "completions": completions, "parallelism": parallelism, "backoffLimit": backoff,
            "template": {"spec": {
                "restartPolicy": policy,
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "work", "image": "busybox", "command": ["sh", "-c", script]}]
            }}
        }
    })
}

/// Waits for the Job's condition `kind` to be True; answers the Job.
async fn job_condition(client: &Client, name: &str, kind: &str) -> Value {
    eventually(&format!("job {name} {kind}"), LONG, || async {
        let j = get(client, "Job", "default", name).await?;
        if condition(&j, kind) == "True" {
            Ok(j)
        } else {
            Err(j["status"].to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_complete_within_parallelism_and_fail_past_their_backoff_limit() {
    let c = cluster(1, &[("n1", &[]), ("n2", &[])]).await;
    let client = c.client();
    // The batch Job: 8 completions, 2 at a time. Its pods carry the `job-name` label the Job
    // controller adds to the template.
    let batch = Sampler::start(client.clone(), "default", "job-name=batch", job_counts);
    let never = Sampler::start(
        client.clone(),
        "default",
        "job-name=fails-never",
        job_counts,
    );
    let on_failure = Sampler::start(
        client.clone(),
        "default",
        "job-name=fails-onfailure",
        job_counts,
    );
    for j in [
        job("batch", 8, 2, 6, "Never", "sleep 1"),
        job("fails-never", 1, 1, 1, "Never", "exit 1"),
        job("fails-onfailure", 1, 1, 1, "OnFailure", "exit 1"),
    ] {
        client.create(&j).await.expect("create job");
    }

    let done = job_condition(&client, "batch", "Complete").await;
    let (samples, missed) = batch.finish().await;
    assert_eq!(int(&done, "/status/succeeded"), 8, "{}", done["status"]);
    assert_eq!(int(&done, "/status/failed"), 0, "{}", done["status"]);
    assert_eq!(int(&done, "/status/active"), 0, "{}", done["status"]);
    assert!(
        done["status"]["completionTime"].is_string(),
        "{}",
        done["status"]
    );
    let pods = list(&client, "Pod", "default", "job-name=batch")
        .await
        .expect("pods");
    let counts = job_counts(&pods);
    assert_eq!(
        (counts.succeeded, counts.failed, counts.active),
        (8, 0, 0),
        "the Job's pods: {counts:?}"
    );
    for (i, s) in samples.iter().enumerate() {
        assert!(
            s.counts.active <= 2,
            "{} pods of the batch Job active at once, parallelism is 2:\n{}",
            s.counts.active,
            around(&samples, i)
        );
    }
    let max_active = samples.iter().map(|s| s.counts.active).max().unwrap_or(0);
    assert_eq!(
        max_active,
        2,
        "parallelism 2 never used ({} looks, missed {missed:?})",
        samples.len()
    );

    // restartPolicy Never: each failure is a new pod; the second one exceeds backoffLimit 1.
    let failed = job_condition(&client, "fails-never", "Failed").await;
    let cond = condition_of(&failed, "Failed").cloned().unwrap_or_default();
    assert_eq!(
        cond["reason"], "BackoffLimitExceeded",
        "{}",
        failed["status"]
    );
    assert_eq!(int(&failed, "/status/failed"), 2, "{}", failed["status"]);
    assert_eq!(int(&failed, "/status/succeeded"), 0, "{}", failed["status"]);
    assert_eq!(int(&failed, "/status/active"), 0, "{}", failed["status"]);
    let (samples, _) = never.finish().await;
    let uids: BTreeSet<&String> = samples.iter().flat_map(|s| &s.counts.uids).collect();
    assert_eq!(uids.len(), 2, "pods made for the Never job: {uids:?}");
    let pods = list(&client, "Pod", "default", "job-name=fails-never")
        .await
        .expect("pods");
    assert!(
        pods.iter().all(|p| phase(p) == "Failed"),
        "{:?}",
        pods.iter().map(phase).collect::<Vec<_>>()
    );

    // restartPolicy OnFailure: the container restarts in its pod, and the restarts count
    // against the limit: one restart reaches backoffLimit 1, and no second pod is made.
    let failed = job_condition(&client, "fails-onfailure", "Failed").await;
    let cond = condition_of(&failed, "Failed").cloned().unwrap_or_default();
    assert_eq!(
        cond["reason"], "BackoffLimitExceeded",
        "{}",
        failed["status"]
    );
    assert_eq!(int(&failed, "/status/active"), 0, "{}", failed["status"]);
    assert!(int(&failed, "/status/failed") >= 1, "{}", failed["status"]);
    let (samples, _) = on_failure.finish().await;
    let uids: BTreeSet<&String> = samples.iter().flat_map(|s| &s.counts.uids).collect();
    assert_eq!(uids.len(), 1, "pods made for the OnFailure job: {uids:?}");
    // The limit was reached by a restart in place: the container started twice in that pod.
    let pod_uid = uids.into_iter().next().cloned().unwrap_or_default();
    eventually(
        "two Started events of the OnFailure job's pod",
        LONG,
        || async {
            let events = list(&client, "Event", "default", "").await?;
            let started: i64 = events
                .iter()
                .filter(|e| {
                    text(e, "/involvedObject/uid") == pod_uid && text(e, "/reason") == "Started"
                })
                .map(|e| int(e, "/count").max(1))
                .sum();
            if started >= 2 {
                Ok(())
            } else {
                Err(format!("{started} Started"))
            }
        },
    )
    .await;
    // Its active pod is deleted when the Job fails.
    eventually("the OnFailure job's pod stopped", LONG, || async {
        let pods = list(&client, "Pod", "default", "job-name=fails-onfailure").await?;
        let c = job_counts(&pods);
        if c.active == 0 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// Garbage collection and namespaces

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_deployment_deletes_or_orphans_its_replica_sets_and_pods() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    for name in ["dropped", "orphaner"] {
        client
            .create(&deployment("default", name, 2, IMAGE_V1))
            .await
            .expect("create deployment");
    }
    let running = |name: &'static str| {
        let client = client.clone();
        async move {
            eventually(
                &format!("deployment {name}: 2 available pods"),
                LONG,
                || async {
                    let pods = list(&client, "Pod", "default", &format!("app={name}")).await?;
                    let c = pod_counts(&pods);
                    if c.available == 2 && c.present == 2 {
                        Ok(pods)
                    } else {
                        Err(format!("{c:?}"))
                    }
                },
            )
            .await
        }
    };
    running("dropped").await;
    let orphan_pods = running("orphaner").await;

    // Background (the default): the Deployment goes at once, its ReplicaSet and pods after it.
    client
        .delete(
            "Deployment",
            "default",
            "dropped",
            &DeleteOptions::default(),
        )
        .await
        .expect("delete");
    eventually(
        "the dropped deployment's ReplicaSets and pods gone",
        LONG,
        || async {
            gone(&client, "Deployment", "default", "dropped").await?;
            let rs = list(&client, "ReplicaSet", "default", "app=dropped").await?;
            let pods = list(&client, "Pod", "default", "app=dropped").await?;
            if rs.is_empty() && pods.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} ReplicaSets, {} pods left",
                    rs.len(),
                    pods.len()
                ))
            }
        },
    )
    .await;

    // Orphan: the Deployment goes, its ReplicaSet and pods stay, the ReplicaSet without the
    // owner reference; the pods still belong to the ReplicaSet.
    let d = get(&client, "Deployment", "default", "orphaner")
        .await
        .expect("deployment");
    let d_uid = text(&d, "/metadata/uid").to_string();
    client
        .delete(
            "Deployment",
            "default",
            "orphaner",
            &DeleteOptions {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .expect("delete");
    eventually("the orphaning deployment gone", LONG, || {
        gone(&client, "Deployment", "default", "orphaner")
    })
    .await;
    let rs = eventually("the orphaned ReplicaSet without owner", LONG, || async {
        let rs = list(&client, "ReplicaSet", "default", "app=orphaner").await?;
        match rs.as_slice() {
            [one] if owner_uids(one).is_empty() && !is_terminating(one) => Ok(one.clone()),
            _ => Err(format!("{rs:#?}")),
        }
    })
    .await;
    assert!(!owner_uids(&rs).contains(&d_uid));
    let rs_uid = text(&rs, "/metadata/uid").to_string();
    let pods = list(&client, "Pod", "default", "app=orphaner")
        .await
        .expect("pods");
    let counts = pod_counts(&pods);
    assert_eq!(
        (counts.present, counts.available, counts.terminating),
        (2, 2, 0),
        "{counts:?}"
    );
    let uids = |ps: &[Value]| -> BTreeSet<String> {
        ps.iter()
            .map(|p| text(p, "/metadata/uid").to_string())
            .collect()
    };
    assert_eq!(
        uids(&pods),
        uids(&orphan_pods),
        "the same pods kept running"
    );
    for p in &pods {
        assert_eq!(owner_uids(p), vec![rs_uid.clone()], "{}", p["metadata"]);
    }
    // The orphaned ReplicaSet still manages its pods: a deleted one is replaced, and neither
    // the ReplicaSet nor the new pod is collected as a dependent of the gone Deployment.
    let victim = text(&pods[0], "/metadata/name").to_string();
    client
        .delete("Pod", "default", &victim, &DeleteOptions::default())
        .await
        .expect("delete pod");
    eventually("the orphaned ReplicaSet replaces its pod", LONG, || async {
        let pods = list(&client, "Pod", "default", "app=orphaner").await?;
        let c = pod_counts(&pods);
        let replaced = pods.iter().all(|p| text(p, "/metadata/name") != victim);
        if c.available == 2 && replaced {
            Ok(())
        } else {
            Err(format!("{c:?}, replaced {replaced}"))
        }
    })
    .await;
    get(
        &client,
        "ReplicaSet",
        "default",
        text(&rs, "/metadata/name"),
    )
    .await
    .expect("the orphaned ReplicaSet is still there");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_empties_it_then_removes_it() {
    let c = cluster(1, &[("n1", &[])]).await;
    let client = c.client();
    client
        .create(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}))
        .await
        .expect("create namespace");
    client
        .create(&deployment("team-a", "app", 2, IMAGE_V1))
        .await
        .expect("create deployment");
    eventually("2 available pods in team-a", LONG, || async {
        let pods = list(&client, "Pod", "team-a", "app=app").await?;
        let c = pod_counts(&pods);
        if c.available == 2 {
            Ok(())
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert!(
        !c.agents[0].container_pids().is_empty(),
        "the pods' processes are recorded on the node"
    );

    let ns = client
        .delete("Namespace", "", "team-a", &DeleteOptions::default())
        .await
        .expect("delete namespace");
    assert!(
        is_terminating(&ns) && text(&ns, "/status/phase") == "Terminating",
        "a namespace holding the kubernetes finalizer turns Terminating: {ns}"
    );
    // Nothing new can be made in it meanwhile (unless it is gone already).
    match client
        .create(&deployment("team-a", "late", 1, IMAGE_V1))
        .await
    {
        Err(ApiError::NotFound { .. }) => {}
        Err(e @ ApiError::BadRequest { .. }) if e.to_string().contains("being terminated") => {}
        other => panic!("creating in a terminating namespace: {other:?}"),
    }
    eventually("namespace team-a gone", LONG, || {
        gone(&client, "Namespace", "", "team-a")
    })
    .await;
    for kind in [
        "Deployment",
        "ReplicaSet",
        "Pod",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
    ] {
        let left = list(&client, kind, "team-a", "").await.expect("list");
        assert!(
            left.is_empty(),
            "{kind}s left in the deleted namespace: {left:#?}"
        );
    }
    eventually("the pods' processes stopped", LONG, || async {
        let alive: Vec<i64> = c.agents[0]
            .container_pids()
            .into_iter()
            .map(|(_, pid)| pid)
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| !s.contains(") Z "))
            })
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {alive:?}"))
        }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// DaemonSets

#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_set_runs_one_pod_per_node_including_a_node_added_later() {
    let mut c = cluster(1, &[("n1", &[]), ("n2", &[])]).await;
    let client = c.client();
    client
        .create(&yaml(
            r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: node-agent
spec:
  selector:
    matchLabels: {app: node-agent}
  template:
    metadata:
      labels: {app: node-agent}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: agent
        image: busybox
        command: ["sleep", "600"]
        readinessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
"#,
        ))
        .await
        .expect("create daemon set");
    let one_per_node = |nodes: &'static [&'static str]| {
        let client = client.clone();
        async move {
            eventually(
                &format!("one running daemon pod on each of {nodes:?}"),
                LONG,
                || async {
                    let pods = list(&client, "Pod", "default", "app=node-agent").await?;
                    let mut on: BTreeMap<String, Vec<&str>> = BTreeMap::new();
                    for p in pods.iter().filter(|p| !is_terminating(p)) {
                        on.entry(text(p, "/spec/nodeName").to_string())
                            .or_default()
                            .push(phase(p));
                    }
                    let want: BTreeMap<String, Vec<&str>> = nodes
                        .iter()
                        .map(|n| (n.to_string(), vec!["Running"]))
                        .collect();
                    if on == want {
                        Ok(())
                    } else {
                        Err(format!("node → pod phases: {on:?}"))
                    }
                },
            )
            .await
        }
    };
    one_per_node(&["n1", "n2"]).await;
    corralctl_ok(
        &c,
        &[
            "rollout",
            "status",
            "daemonset/node-agent",
            "--timeout",
            ROLLOUT_TIMEOUT,
        ],
    )
    .await;
    let ds = get(&client, "DaemonSet", "default", "node-agent")
        .await
        .expect("ds");
    assert_eq!(
        int(&ds, "/status/desiredNumberScheduled"),
        2,
        "{}",
        ds["status"]
    );

    c.add_agent("n3", &[]);
    c.nodes_ready(LONG).await;
    one_per_node(&["n1", "n2", "n3"]).await;
    eventually(
        "the DaemonSet's status counts the third node",
        LONG,
        || async {
            let ds = get(&client, "DaemonSet", "default", "node-agent").await?;
            let counts = (
                int(&ds, "/status/desiredNumberScheduled"),
                int(&ds, "/status/currentNumberScheduled"),
                int(&ds, "/status/numberReady"),
                int(&ds, "/status/numberMisscheduled"),
            );
            if counts == (3, 3, 3, 0) {
                Ok(())
            } else {
                Err(ds["status"].to_string())
            }
        },
    )
    .await;

    // A node that leaves (its agent stopped, its Node removed) loses its pod.
    c.agents[2].kill();
    client
        .delete("Node", "", "n3", &DeleteOptions::default())
        .await
        .expect("delete node n3");
    one_per_node(&["n1", "n2"]).await;
    eventually(
        "the DaemonSet's status without the third node",
        LONG,
        || async {
            let ds = get(&client, "DaemonSet", "default", "node-agent").await?;
            if int(&ds, "/status/desiredNumberScheduled") == 2
                && int(&ds, "/status/currentNumberScheduled") == 2
            {
                Ok(())
            } else {
                Err(ds["status"].to_string())
            }
        },
    )
    .await;
}
