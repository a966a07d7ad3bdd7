//! A StatefulSet end to end on a real cluster (a server and an agent as child processes, the
//! process runtime, real `sleep` processes with an exec readiness probe), driven with
//! `corralctl` as a user drives it: pods come up in order as the agent reports them Ready,
//! `rollout status` / `set image` / `rollout history` / `scale` read and act like kubectl's, and
//! `delete` scales the StatefulSet to zero highest ordinal first, each pod finishing its graceful
//! termination on its node before the next one starts.
//!
//! Order is checked against a watch of every pod change from the start (each with its
//! revision), not against samples. The pods have no volumeClaimTemplates here: the claims are
//! covered by `crates/corral-controllers/tests/statefulset.rs`.

use std::time::Duration;

use corral_client::{Client, EventType, ListOptions};
use corral_tests::{TestCluster, WatchLog, corralctl, eventually, pod_ready, text, yaml};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

/// Every pod change of `default` from now on, with its revision.
struct Log(WatchLog);

impl Log {
    async fn start(client: &Client) -> Log {
        Log(WatchLog::start(client, "Pod", "default").await)
    }

    async fn first(&self, what: &str, pick: impl Fn(EventType, &Value) -> bool) -> u64 {
        self.0.first(what, LONG, pick).await
    }

    async fn created(&self, pod: &str, image: &str) -> u64 {
        self.first(&format!("{pod} ({image}) is created"), |t, o| {
            t == EventType::Added
                && text(o, "/metadata/name") == pod
                && text(o, "/spec/containers/0/image") == image
        })
        .await
    }

    async fn ready(&self, pod: &str, image: &str) -> u64 {
        self.first(&format!("{pod} ({image}) is Ready"), |_, o| {
            text(o, "/metadata/name") == pod
                && text(o, "/spec/containers/0/image") == image
                && pod_ready(o)
        })
        .await
    }

    async fn terminating(&self, pod: &str, image: &str) -> u64 {
        self.first(&format!("{pod} ({image}) starts terminating"), |_, o| {
            text(o, "/metadata/name") == pod
                && text(o, "/spec/containers/0/image") == image
                && o.pointer("/metadata/deletionTimestamp").is_some()
        })
        .await
    }

    async fn gone(&self, pod: &str, image: &str) -> u64 {
        self.first(&format!("{pod} ({image}) is gone"), |t, o| {
            t == EventType::Deleted
                && text(o, "/metadata/name") == pod
                && text(o, "/spec/containers/0/image") == image
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_comes_up_in_order_rolls_over_and_scales_to_zero_when_deleted() {
    let mut c = TestCluster::start(1, &[]);
    c.leader(LONG).await;
    c.add_agent("n1", &[]);
    c.nodes_ready(LONG).await;
    let client = c.client();
    let log = Log::start(&client).await;
    client
        .create(&yaml(
            r#"
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  serviceName: nginx
  replicas: 2
  selector:
    matchLabels: {app: nginx}
  template:
    metadata:
      labels: {app: nginx}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: nginx
        image: busybox:1.0
        command: ["sleep", "600"]
        readinessProbe:
          exec: {command: ["true"]}
          periodSeconds: 1
"#,
        ))
        .await
        .expect("create the StatefulSet");

    let out = corralctl(
        &c,
        &["rollout", "status", "statefulset/web", "--timeout", "60s"],
    )
    .await;
    assert!(
        out.ends_with("partitioned roll out complete: 2 new pods have been updated...\n"),
        "{out}"
    );
    assert!(
        log.created("web-1", "busybox:1.0").await > log.ready("web-0", "busybox:1.0").await,
        "web-1 is created only after the agent reported web-0 Ready"
    );
    let table = corralctl(&c, &["get", "statefulsets"]).await;
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["web", "2/2"])),
        "{table}"
    );

    // A new image rolls over highest ordinal first, each after the one above is Ready again.
    corralctl(
        &c,
        &["set", "image", "statefulset/web", "nginx=busybox:2.0"],
    )
    .await;
    corralctl(
        &c,
        &["rollout", "status", "statefulset/web", "--timeout", "60s"],
    )
    .await;
    assert!(
        log.terminating("web-0", "busybox:1.0").await > log.ready("web-1", "busybox:2.0").await,
        "web-0 is replaced only after the new web-1 is Ready"
    );
    assert!(log.created("web-1", "busybox:2.0").await > log.gone("web-1", "busybox:1.0").await);
    let history = corralctl(&c, &["rollout", "history", "statefulset/web"]).await;
    assert_eq!(
        history,
        "statefulset.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );

    // 2 → 3, then delete: web-2, web-1, web-0, each gone from its node before the next goes.
    corralctl(&c, &["scale", "statefulset/web", "--replicas", "3"]).await;
    corralctl(
        &c,
        &["rollout", "status", "statefulset/web", "--timeout", "60s"],
    )
    .await;
    corralctl(&c, &["delete", "statefulset", "web"]).await;
    eventually("the StatefulSet and its pods are gone", LONG, || async {
        let sets = client
            .list("StatefulSet", Some("default"), &ListOptions::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let pods = client
            .list("Pod", Some("default"), &ListOptions::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        if sets.is_empty() && pods.is_empty() {
            Ok(())
        } else {
            Err(format!("{} sets, {} pods", sets.len(), pods.len()))
        }
    })
    .await;
    let image = "busybox:2.0";
    let (gone2, gone1) = (
        log.gone("web-2", image).await,
        log.gone("web-1", image).await,
    );
    assert!(log.terminating("web-1", image).await > gone2);
    assert!(log.terminating("web-0", image).await > gone1);
}
