//! The Job and CronJob controllers against a real one-server store and API, in process. No
//! agent runs here: the tests play the kubelet by writing pod statuses through `update_status`.
//!
//! - A Job with `completions: 4`, `parallelism: 2` never has more than 2 active pods and ends
//!   with exactly 4 succeeded pods and `Complete`; its pods carry the generated labels, the
//!   controller ownerReference, and lose their tracking finalizer once counted.
//! - A Job with `backoffLimit: 1` whose pods fail gets a new pod after the first failure and
//!   `Failed` (`BackoffLimitExceeded`) after the second.
//! - A CronJob with an injected clock starts a Job per schedule, skips a run under `Forbid` while
//!   a Job is active, and starts the missed run once that Job completes; under `Allow` two
//!   Jobs run at once; under `Replace` the running Job is deleted for the new one; more than 100
//!   missed start times stop it with a `FailedNeedsStart` event until `startingDeadlineSeconds`
//!   narrows the window.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_client::{Client, ListOptions};
use corral_controllers::cronjob::{self, CronJobOptions};
use corral_controllers::job::{self, JobOptions, PodFailureBackoff};
use corral_controllers::node_lifecycle::Clock;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod support;
use support::{eventually, server};

fn job_options() -> JobOptions {
    JobOptions {
        resync_period: Duration::from_secs(2),
        batch_period: Duration::from_millis(20),
        backoff: PodFailureBackoff {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
        },
    }
}

fn start_job_controller(client: &Client) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(job::run(client.clone(), job_options(), cancel.clone()));
    (cancel, task)
}

async fn stop(cancel: CancellationToken, task: tokio::task::JoinHandle<()>) {
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the controller stops when cancelled")
        .expect("the controller task");
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

fn count(obj: &Value, field: &str) -> i64 {
    obj.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The pods whose controller is the Job with this uid.
async fn pods_of(client: &Client, job_uid: &str) -> Result<Vec<Value>, String> {
    let pods = client
        .list("Pod", Some("default"), &ListOptions::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(pods
        .into_iter()
        .filter(|p| {
            p.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"] == job_uid && r["controller"] == true)
                })
        })
        .collect())
}

fn is_active(pod: &Value) -> bool {
    !matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
        && pod.pointer("/metadata/deletionTimestamp").is_none()
}

/// Plays the kubelet: the pod's one container ran and exited with `exit_code`.
async fn finish_pod(client: &Client, name: &str, exit_code: i64) {
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let now = Timestamp::now().to_string();
    eventually("the pod status is written", || async {
        let mut pod = client
            .get("Pod", "default", name)
            .await
            .map_err(|e| e.to_string())?;
        let container = str_at(&pod, "/spec/containers/0/name").to_string();
        pod["status"] = json!({
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted",
                            "lastTransitionTime": now}],
            "containerStatuses": [{
                "name": container, "ready": false, "restartCount": 0, "image": "busybox",
                "state": {"terminated": {"exitCode": exit_code,
                                         "reason": if exit_code == 0 { "Completed" } else { "Error" },
                                         "startedAt": now, "finishedAt": now}},
            }],
        });
        client
            .update_status(&pod)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

async fn get_job(client: &Client, name: &str) -> Result<Value, String> {
    client
        .get("Job", "default", name)
        .await
        .map_err(|e| e.to_string())
}

async fn events_about(client: &Client, name: &str) -> Result<Vec<(String, String)>, String> {
    let events = client
        .list("Event", Some("default"), &ListOptions::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    Ok(events
        .iter()
        .filter(|e| str_at(e, "/involvedObject/name") == name)
        .map(|e| {
            (
                str_at(e, "/reason").to_string(),
                str_at(e, "/message").to_string(),
            )
        })
        .collect())
}

fn batch_job(name: &str, spec: Value) -> Value {
    let mut j = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "work", "image": "busybox",
                                                  "command": ["sh", "-c", "echo done"]}]}},
        },
    });
    if let (Some(s), Some(extra)) = (j["spec"].as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            s.insert(k.clone(), v.clone());
        }
    }
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_job_keeps_to_its_parallelism_and_completes_at_its_completions() {
    let s = server().await;
    let client = s.client.clone();
    let (cancel, task) = start_job_controller(&client);
    client
        .create(&batch_job(
            "work",
            json!({"completions": 4, "parallelism": 2, "backoffLimit": 6}),
        ))
        .await
        .expect("the job is created");

    // The generated selector and labels.
    let job = eventually("the job gets its generated selector", || async {
        let j = get_job(&client, "work").await?;
        if j.pointer("/spec/selector/matchLabels").is_some() {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    let uid = str_at(&job, "/metadata/uid").to_string();
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    );

    // Play the kubelet: finish one active pod at a time; never more than 2 active.
    let mut finished = 0;
    let mut max_active = 0;
    loop {
        let j = get_job(&client, "work").await.expect("the job");
        if condition(&j, "Complete").is_some() {
            break;
        }
        let pods = pods_of(&client, &uid).await.expect("pods");
        let active: Vec<&Value> = pods.iter().filter(|p| is_active(p)).collect();
        max_active = max_active.max(active.len());
        assert!(
            active.len() <= 2,
            "more than parallelism 2 active: {pods:?}"
        );
        assert!(pods.len() <= 4, "more pods than completions: {pods:?}");
        if let Some(pod) = active.first() {
            let name = str_at(pod, "/metadata/name").to_string();
            finish_pod(&client, &name, 0).await;
            finished += 1;
            // Wait for the controller to take it in (counted, or replaced) before going on.
            eventually("the controller sees the finished pod", || async {
                let j = get_job(&client, "work").await?;
                let pods = pods_of(&client, &uid).await?;
                let taken = pods
                    .iter()
                    .find(|p| str_at(p, "/metadata/name") == name)
                    .is_none_or(|p| p.pointer("/metadata/finalizers").is_none());
                if taken { Ok(()) } else { Err(format!("{j}")) }
            })
            .await;
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(finished <= 4, "asked to finish more than 4 pods");
    }
    assert_eq!(max_active, 2, "two pods ran at once");

    let j = eventually("the job is complete with its counters", || async {
        let j = get_job(&client, "work").await?;
        if condition(&j, "Complete").is_some() && count(&j, "succeeded") == 4 {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    assert_eq!(count(&j, "active"), 0);
    assert_eq!(count(&j, "failed"), 0);
    assert!(condition(&j, "SuccessCriteriaMet").is_some(), "{j}");
    assert_eq!(
        condition(&j, "Complete").expect("complete")["reason"],
        "CompletionsReached"
    );
    assert!(j.pointer("/status/startTime").is_some());
    assert!(j.pointer("/status/completionTime").is_some());

    let pods = pods_of(&client, &uid).await.expect("pods");
    assert_eq!(pods.len(), 4, "exactly 4 pods: {pods:?}");
    for p in &pods {
        assert_eq!(str_at(p, "/status/phase"), "Succeeded");
        assert!(
            p.pointer("/metadata/finalizers").is_none(),
            "counted pods lose the tracking finalizer: {p}"
        );
        let labels = &p["metadata"]["labels"];
        assert_eq!(labels["job-name"], "work");
        assert_eq!(labels["batch.kubernetes.io/job-name"], "work");
        assert_eq!(labels["controller-uid"], uid.as_str());
        assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid.as_str());
        let owner = &p["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Job");
        assert_eq!(owner["apiVersion"], "batch/v1");
        assert_eq!(owner["blockOwnerDeletion"], true);
        assert!(str_at(p, "/metadata/name").starts_with("work-"));
    }
    eventually("the events tell the story", || async {
        let events = events_about(&client, "work").await?;
        let has = |reason: &str| events.iter().any(|(r, _)| r == reason);
        if has("SuccessfulCreate") && has("Completed") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;

    stop(cancel, task).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_pods_keep_failing_fails_at_its_backoff_limit() {
    let s = server().await;
    let client = s.client.clone();
    let (cancel, task) = start_job_controller(&client);
    client
        .create(&batch_job(
            "pi",
            json!({"completions": 1, "parallelism": 1, "backoffLimit": 1}),
        ))
        .await
        .expect("the job is created");
    let uid = eventually("the job gets its selector", || async {
        let j = get_job(&client, "pi").await?;
        match j.pointer("/spec/selector") {
            Some(_) => Ok(str_at(&j, "/metadata/uid").to_string()),
            None => Err(j.to_string()),
        }
    })
    .await;

    let mut failed_pods = Vec::new();
    for attempt in 1..=2 {
        let pod = eventually("a pod to fail", || async {
            let pods = pods_of(&client, &uid).await?;
            let active: Vec<&Value> = pods.iter().filter(|p| is_active(p)).collect();
            match active.as_slice() {
                [one] => Ok(str_at(one, "/metadata/name").to_string()),
                _ => Err(format!("{} active of {pods:?}", active.len())),
            }
        })
        .await;
        assert!(!failed_pods.contains(&pod), "attempt {attempt}: a new pod");
        finish_pod(&client, &pod, 1).await;
        failed_pods.push(pod);
    }

    let j = eventually("the job fails", || async {
        let j = get_job(&client, "pi").await?;
        if condition(&j, "Failed").is_some() {
            Ok(j)
        } else {
            Err(j.to_string())
        }
    })
    .await;
    let failed = condition(&j, "Failed").expect("failed");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(
        failed["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&j, "FailureTarget").is_some(), "{j}");
    assert_eq!(count(&j, "failed"), 2);
    assert_eq!(count(&j, "succeeded"), 0);
    assert!(j.pointer("/status/completionTime").is_none());

    // No third pod.
    let pods = pods_of(&client, &uid).await.expect("pods");
    assert_eq!(pods.len(), 2, "{pods:?}");
    eventually("the failure is told", || async {
        let events = events_about(&client, "pi").await?;
        if events
            .iter()
            .any(|(r, m)| r == "BackoffLimitExceeded" && m.contains("backoff limit"))
        {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;

    stop(cancel, task).await;
    s.stop().await;
}

/// A clock the test moves.
struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn at_minute(minutes: i64, plus_secs: i64) -> Timestamp {
    Timestamp::from_second(minutes * 60 + plus_secs).expect("a time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_starts_jobs_on_its_schedule_and_forbids_overlap() {
    let s = server().await;
    let client = s.client.clone();
    // The clock starts where the CronJob was made, and is moved by hand.
    let c = CronSetup::start(&client, json!({"concurrencyPolicy": "Forbid"})).await;
    let (clock, first_minute) = (c.clock.clone(), c.first_minute);
    let job_named = |minute: i64| format!("hello-{minute}");

    // Nothing before the first minute.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let jobs = client
        .list("Job", Some("default"), &ListOptions::default())
        .await
        .expect("jobs")
        .items;
    assert!(jobs.is_empty(), "{jobs:?}");

    // The first minute: a Job named after it.
    clock.set(at_minute(first_minute, 5));
    let job1 = eventually("the first job starts", || async {
        get_job(&client, &job_named(first_minute)).await
    })
    .await;
    assert_eq!(
        job1["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"],
        at_minute(first_minute, 0).to_string()
    );
    assert_eq!(job1["metadata"]["ownerReferences"][0]["kind"], "CronJob");
    let cj = eventually("the cronjob records it", || async {
        let cj = client
            .get("CronJob", "default", "hello")
            .await
            .map_err(|e| e.to_string())?;
        if cj["status"]["active"][0]["name"] == job_named(first_minute).as_str() {
            Ok(cj)
        } else {
            Err(cj.to_string())
        }
    })
    .await;
    assert_eq!(
        cj["status"]["lastScheduleTime"],
        at_minute(first_minute, 0).to_string()
    );

    // The next minute while the first Job runs: Forbid skips it.
    clock.set(at_minute(first_minute + 1, 5));
    eventually("the overlapping run is skipped", || async {
        let events = events_about(&client, "hello").await?;
        if events.iter().any(|(r, _)| r == "JobAlreadyActive") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    let jobs = client
        .list("Job", Some("default"), &ListOptions::default())
        .await
        .expect("jobs")
        .items;
    assert_eq!(
        jobs.len(),
        1,
        "no second job while the first runs: {jobs:?}"
    );

    // The first Job's pod succeeds: the Job completes, leaves `active`, and the skipped minute
    // (still unmet, no deadline) starts.
    let uid1 = str_at(&job1, "/metadata/uid").to_string();
    let pod = eventually("the first job's pod", || async {
        let pods = pods_of(&client, &uid1).await?;
        pods.first()
            .map(|p| str_at(p, "/metadata/name").to_string())
            .ok_or_else(|| "no pod yet".to_string())
    })
    .await;
    finish_pod(&client, &pod, 0).await;
    eventually(
        "the missed run starts once the first job completed",
        || async { get_job(&client, &job_named(first_minute + 1)).await },
    )
    .await;
    let cj = eventually("the status follows", || async {
        let cj = client
            .get("CronJob", "default", "hello")
            .await
            .map_err(|e| e.to_string())?;
        let active: Vec<&str> = cj["status"]["active"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["name"].as_str().unwrap_or(""))
            .collect();
        if active == [job_named(first_minute + 1).as_str()]
            && cj.pointer("/status/lastSuccessfulTime").is_some()
        {
            Ok(cj)
        } else {
            Err(cj.to_string())
        }
    })
    .await;
    assert_eq!(
        cj["status"]["lastScheduleTime"],
        at_minute(first_minute + 1, 0).to_string()
    );
    eventually("the story is told in events", || async {
        let events = events_about(&client, "hello").await?;
        let has = |reason: &str| events.iter().any(|(r, _)| r == reason);
        if has("SuccessfulCreate") && has("SawCompletedJob") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;

    c.stop().await;
    s.stop().await;
}

/// A CronJob `hello` (every minute) with `extra` merged into its spec, the Job controller and
/// the CronJob controller on a clock the test moves, starting at the CronJob's creation.
struct CronSetup {
    client: Client,
    clock: Arc<ManualClock>,
    first_minute: i64,
    controllers: Vec<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl CronSetup {
    async fn start(client: &Client, extra: Value) -> Self {
        let mut spec = json!({
            "schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "hello", "image": "busybox",
                                "command": ["sh", "-c", "date; echo Hello"]}]}}}},
        });
        if let (Some(s), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                s.insert(k.clone(), v.clone());
            }
        }
        let cj = client
            .create(&json!({
                "apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "hello", "namespace": "default"},
                "spec": spec,
            }))
            .await
            .expect("the cronjob is created");
        let created: Timestamp = str_at(&cj, "/metadata/creationTimestamp")
            .parse()
            .expect("a creation time");
        let clock = Arc::new(ManualClock(Mutex::new(created)));
        let cron_cancel = CancellationToken::new();
        let opts = CronJobOptions {
            resync_period: Duration::from_millis(100),
            batch_period: Duration::from_millis(20),
        };
        let cron_task = tokio::spawn(cronjob::run_with_clock(
            client.clone(),
            opts,
            clock.clone(),
            cron_cancel.clone(),
        ));
        CronSetup {
            client: client.clone(),
            clock,
            first_minute: created.as_second().div_euclid(60) + 1,
            controllers: vec![start_job_controller(client), (cron_cancel, cron_task)],
        }
    }

    /// The CronJob's `status.active` names, once `want` holds for them.
    async fn active_until(&self, what: &str, want: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(what, || async {
            let cj = self
                .client
                .get("CronJob", "default", "hello")
                .await
                .map_err(|e| e.to_string())?;
            let active: Vec<String> = cj["status"]["active"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| str_at(r, "/name").to_string())
                .collect();
            if want(&active) {
                Ok(active)
            } else {
                Err(cj.to_string())
            }
        })
        .await
    }

    async fn stop(self) {
        for (cancel, task) in self.controllers.into_iter().rev() {
            stop(cancel, task).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_allows_overlapping_jobs_under_allow() {
    let s = server().await;
    let c = CronSetup::start(&s.client, json!({"concurrencyPolicy": "Allow"})).await;
    let m = c.first_minute;

    c.clock.set(at_minute(m, 5));
    c.active_until("the first job is active", |a| a == [format!("hello-{m}")])
        .await;
    // The next minute while the first Job still runs: Allow starts a second one beside it.
    c.clock.set(at_minute(m + 1, 5));
    let active = c
        .active_until("both jobs are active at once", |a| a.len() == 2)
        .await;
    let mut want = vec![format!("hello-{m}"), format!("hello-{}", m + 1)];
    want.sort();
    let mut got = active.clone();
    got.sort();
    assert_eq!(got, want);
    for name in &want {
        get_job(&s.client, name)
            .await
            .expect("both Jobs exist together");
    }

    c.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_replaces_the_running_job_under_replace() {
    let s = server().await;
    let c = CronSetup::start(&s.client, json!({"concurrencyPolicy": "Replace"})).await;
    let m = c.first_minute;

    c.clock.set(at_minute(m, 5));
    c.active_until("the first job is active", |a| a == [format!("hello-{m}")])
        .await;
    let first_uid = str_at(
        &get_job(&s.client, &format!("hello-{m}"))
            .await
            .expect("the first job"),
        "/metadata/uid",
    )
    .to_string();
    // The next minute while the first Job runs: Replace deletes it and starts the new one.
    c.clock.set(at_minute(m + 1, 5));
    c.active_until("only the new job is active", |a| {
        a == [format!("hello-{}", m + 1)]
    })
    .await;
    eventually("the replaced job is gone", || async {
        match s.client.get("Job", "default", &format!("hello-{m}")).await {
            Err(corral_api::ApiError::NotFound { .. }) => Ok(()),
            Ok(j) if str_at(&j, "/metadata/uid") != first_uid => Ok(()),
            Ok(j) => Err(format!("still there: {j}")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    eventually("the replacement is told in events", || async {
        let events = events_about(&s.client, "hello").await?;
        if events.iter().any(|(r, _)| r == "SuccessfulDelete") {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;

    c.stop().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_100_missed_schedules_stop_a_cronjob_until_a_deadline_is_set() {
    let s = server().await;
    let c = CronSetup::start(&s.client, json!({})).await;
    let m = c.first_minute;

    // The controller's clock jumps 150 minutes past the creation: 150 start times were missed.
    c.clock.set(at_minute(m + 150, 5));
    eventually("the cronjob is stopped with an event", || async {
        let events = events_about(&s.client, "hello").await?;
        match events.iter().find(|(r, _)| r == "FailedNeedsStart") {
            Some((_, msg)) if msg.contains("too many missed start times (> 100)") => Ok(()),
            _ => Err(format!("{events:?}")),
        }
    })
    .await;
    let jobs = s
        .client
        .list("Job", Some("default"), &ListOptions::default())
        .await
        .expect("jobs")
        .items;
    assert!(jobs.is_empty(), "no job starts: {jobs:?}");

    // With startingDeadlineSeconds only the last 200 s count: it runs the most recent time.
    let mut cj = s
        .client
        .get("CronJob", "default", "hello")
        .await
        .expect("the cronjob");
    cj["spec"]["startingDeadlineSeconds"] = json!(200);
    s.client.update(&cj).await.expect("the deadline is set");
    c.active_until("the most recent time runs", |a| {
        a == [format!("hello-{}", m + 150)]
    })
    .await;

    c.stop().await;
    s.stop().await;
}
