//! `corralctl scale`, `set image` and `rollout ...` end to end against the client crate's tiny
//! in-memory API server. No controller runs there: the tests write the Deployment's status and its
//! ReplicaSets themselves, as the Deployment controller would.

#[path = "../../corral-client/tests/support/fake.rs"]
mod fake;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use corral_cli::{Cli, CliError};
use corral_client::Client;
use fake::{FakeServer, Store};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(10);

/// A writer whose text the test can read while a command is still running.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Outcome {
    result: Result<(), CliError>,
    out: String,
    err: String,
}

impl Outcome {
    /// What the user sees on stderr for this outcome: the lines printed, then the final error.
    fn stderr(&self) -> String {
        let mut text = self.err.clone();
        if let Err(e) = &self.result
            && e.needs_printing()
        {
            text.push_str(&format!("{e}\n"));
        }
        text
    }
}

async fn corralctl(server: &str, args: &[&str]) -> Outcome {
    let argv = ["corralctl", "--server", server]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = tokio::time::timeout(
        DEADLINE,
        corral_cli::run(&cli, &mut out, &mut err, &mut std::io::empty()),
    )
    .await
    .expect("corralctl finishes");
    Outcome {
        result,
        out: String::from_utf8_lossy(&out).into(),
        err: String::from_utf8_lossy(&err).into(),
    }
}

/// Starts `corralctl args` in the background, its standard output readable as it is written.
fn spawn_corralctl(
    server: &str,
    args: &[&str],
) -> (Shared, tokio::task::JoinHandle<Result<(), CliError>>) {
    let argv: Vec<String> = ["corralctl", "--server", server]
        .into_iter()
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let out = Shared::default();
    let mut writer = out.clone();
    let task = tokio::spawn(async move {
        let mut err = Vec::new();
        corral_cli::run(&cli, &mut writer, &mut err, &mut std::io::empty()).await
    });
    (out, task)
}

/// Polls `done` until it holds, failing after the deadline with what `seen` shows.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool, seen: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}; last seen: {:?}",
            seen()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "generation": 1},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1"}],
                    "containers": [{"name": "nginx", "image": image}]
                }
            }
        },
        "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    })
}

fn replica_set(owner: &str, revision: u32, image: &str, cause: Option<&str>) -> Value {
    let hash = format!("h{revision}");
    let mut annotations = json!({"deployment.kubernetes.io/revision": revision.to_string()});
    if let Some(c) = cause {
        annotations["kubernetes.io/change-cause"] = json!(c);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{owner}-{hash}"), "namespace": "default", "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner,
                                 "uid": format!("uid-{owner}"), "controller": true}]
        },
        "spec": {
            "replicas": 0,
            "template": {
                "metadata": {"labels": {"app": owner, "pod-template-hash": hash}},
                "spec": {
                    "initContainers": [{"name": "init", "image": "busybox:1"}],
                    "containers": [{"name": "nginx", "image": image}]
                }
            }
        }
    })
}

async fn client_for(addr: &str) -> Client {
    Client::connect(&[addr]).expect("a client")
}

async fn get_deployment(client: &Client, name: &str) -> Value {
    client
        .get("Deployment", "default", name)
        .await
        .expect("the deployment")
}

#[tokio::test]
async fn scale_sets_replicas_and_honours_preconditions() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.as_str();
    let client = client_for(addr).await;
    client
        .create(&deployment("web", "nginx:1.27"))
        .await
        .expect("created");

    let o = corralctl(addr, &["scale", "deploy/web", "--replicas", "5"]).await;
    assert_eq!(
        (o.out.as_str(), o.stderr().as_str()),
        ("deployment.apps/web scaled\n", "")
    );
    assert!(o.result.is_ok());
    assert_eq!(get_deployment(&client, "web").await["spec"]["replicas"], 5);

    let o = corralctl(
        addr,
        &[
            "scale",
            "deployment",
            "web",
            "--replicas=2",
            "--current-replicas=3",
        ],
    )
    .await;
    assert_eq!(o.out, "");
    assert_eq!(o.stderr(), "error: Expected replicas to be 3, was 5\n");
    assert!(o.result.is_err());
    assert_eq!(get_deployment(&client, "web").await["spec"]["replicas"], 5);

    let o = corralctl(
        addr,
        &[
            "scale",
            "deploy/web",
            "--replicas=2",
            "--current-replicas=5",
        ],
    )
    .await;
    assert_eq!(o.out, "deployment.apps/web scaled\n");
    assert!(o.result.is_ok());
    let web = get_deployment(&client, "web").await;
    assert_eq!(web["spec"]["replicas"], 2);
    assert_eq!(
        web["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    let o = corralctl(addr, &["scale", "deploy/web"]).await;
    assert_eq!(
        o.stderr(),
        "error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0\n"
    );
    let o = corralctl(addr, &["scale", "pod/web", "--replicas=1"]).await;
    assert!(
        o.stderr().starts_with("error: cannot scale pods"),
        "{}",
        o.stderr()
    );
    let o = corralctl(addr, &["scale", "deploy/nope", "--replicas=1"]).await;
    assert_eq!(
        o.stderr(),
        "Error from server (NotFound): deployments \"nope\" not found\n"
    );
    assert!(o.result.is_err());
}

#[tokio::test]
async fn set_image_updates_containers_and_names_missing_ones() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.as_str();
    let client = client_for(addr).await;
    client
        .create(&deployment("web", "nginx:1.27"))
        .await
        .expect("created");

    let o = corralctl(
        addr,
        &[
            "set",
            "image",
            "deploy/web",
            "nginx=nginx:1.28",
            "init=busybox:2",
        ],
    )
    .await;
    assert_eq!(
        (o.out.as_str(), o.stderr().as_str()),
        ("deployment.apps/web image updated\n", "")
    );
    assert!(o.result.is_ok());
    let spec = get_deployment(&client, "web").await["spec"]["template"]["spec"].clone();
    assert_eq!(spec["containers"][0]["image"], "nginx:1.28");
    assert_eq!(spec["initContainers"][0]["image"], "busybox:2");

    // Nothing to change: kubectl prints nothing and succeeds.
    let o = corralctl(
        addr,
        &["set", "image", "deployment", "web", "nginx=nginx:1.28"],
    )
    .await;
    assert_eq!((o.out.as_str(), o.stderr().as_str()), ("", ""));
    assert!(o.result.is_ok());

    let o = corralctl(addr, &["set", "image", "deploy/web", "ghost=x:1"]).await;
    assert_eq!(o.out, "");
    assert_eq!(
        o.stderr(),
        "error: unable to find container named \"ghost\"\n"
    );
    assert!(o.result.is_err());

    // One found, one not: the found one is written, the command still fails.
    let o = corralctl(
        addr,
        &["set", "image", "deploy/web", "nginx=nginx:2", "ghost=x:1"],
    )
    .await;
    assert_eq!(o.out, "deployment.apps/web image updated\n");
    assert_eq!(
        o.stderr(),
        "error: unable to find container named \"ghost\"\n"
    );
    assert!(o.result.is_err());

    let o = corralctl(addr, &["set", "image", "deploy/web", "*=all:3"]).await;
    assert_eq!(o.out, "deployment.apps/web image updated\n");
    let spec = get_deployment(&client, "web").await["spec"]["template"]["spec"].clone();
    assert_eq!(
        (
            &spec["containers"][0]["image"],
            &spec["initContainers"][0]["image"]
        ),
        (&json!("all:3"), &json!("all:3"))
    );

    let o = corralctl(addr, &["set", "image", "deploy/web"]).await;
    assert_eq!(o.stderr(), "error: at least one image update is required\n");
    let o = corralctl(addr, &["set", "image", "nginx=x"]).await;
    assert!(
        o.stderr()
            .starts_with("error: one or more resources must be specified"),
        "{}",
        o.stderr()
    );
    client
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "default"}}))
        .await
        .expect("created");
    let o = corralctl(addr, &["set", "image", "cm/cfg", "a=b"]).await;
    assert_eq!(
        o.stderr(),
        "error: configmaps/cfg the object is not a pod or does not have a pod template\n"
    );
    assert!(o.result.is_err());
}

#[tokio::test]
async fn history_and_undo_work_from_the_owned_replica_sets() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.as_str();
    let client = client_for(addr).await;
    let mut web = deployment("web", "nginx:3");
    web["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "3", "team": "a"});
    client.create(&web).await.expect("created");
    client
        .create(&deployment("lonely", "nginx:1"))
        .await
        .expect("created");
    for rs in [
        replica_set("web", 1, "nginx:1", Some("first rollout")),
        replica_set("web", 2, "nginx:2", None),
        replica_set("web", 3, "nginx:3", None),
        // Another deployment's: not part of web's history.
        replica_set("other", 9, "nginx:9", None),
    ] {
        client.create(&rs).await.expect("created");
    }

    let o = corralctl(addr, &["rollout", "history", "deploy/web"]).await;
    assert_eq!(
        o.out,
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         first rollout\n2         <none>\n3         <none>\n\n"
    );
    assert!(o.result.is_ok());
    let o = corralctl(
        addr,
        &["rollout", "history", "deployment", "web", "--revision=2"],
    )
    .await;
    assert!(
        o.out.starts_with(
            "deployment.apps/web with revision #2\nPod Template:\n  Labels:\tapp=web\n\tpod-template-hash=h2\n"
        ),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("    Image:\tnginx:2\n") && o.out.ends_with("<none>\n\n"),
        "{}",
        o.out
    );
    let o = corralctl(addr, &["rollout", "history", "deploy/web", "--revision=7"]).await;
    assert_eq!(o.stderr(), "error: unable to find the specified revision\n");
    assert!(o.result.is_err());
    let o = corralctl(addr, &["rollout", "history", "deploy/lonely"]).await;
    assert_eq!(
        o.out,
        "deployment.apps/lonely \nNo rollout history found.\n"
    );

    // Undo goes to the revision before the latest, with the Deployment's resourceVersion.
    let o = corralctl(addr, &["rollout", "undo", "deploy/web"]).await;
    assert_eq!(
        (o.out.as_str(), o.stderr().as_str()),
        ("deployment.apps/web rolled back\n", "")
    );
    let now = get_deployment(&client, "web").await;
    assert_eq!(
        now["spec"]["template"],
        json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "containers": [{"name": "nginx", "image": "nginx:2"}]
            }
        })
    );
    assert_eq!(
        now["metadata"]["annotations"],
        json!({"deployment.kubernetes.io/revision": "3"}),
        "the Deployment's annotations become the revision's, but for the bookkeeping ones"
    );

    let o = corralctl(addr, &["rollout", "undo", "deploy/web", "--to-revision=2"]).await;
    assert_eq!(
        o.out,
        "deployment.apps/web skipped rollback (current template already matches revision 2)\n"
    );
    let o = corralctl(
        addr,
        &["rollout", "undo", "deploy/web", "--to-revision", "1"],
    )
    .await;
    assert_eq!(o.out, "deployment.apps/web rolled back\n");
    let now = get_deployment(&client, "web").await;
    assert_eq!(
        now["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1"
    );
    assert_eq!(
        now["metadata"]["annotations"]["kubernetes.io/change-cause"],
        "first rollout"
    );

    let o = corralctl(addr, &["rollout", "undo", "deploy/web", "--to-revision=5"]).await;
    assert_eq!(
        o.stderr(),
        "error: unable to find specified revision 5 in history\n"
    );
    assert!(o.result.is_err());
    let o = corralctl(addr, &["rollout", "undo", "deploy/lonely"]).await;
    assert_eq!(
        o.stderr(),
        "error: no rollout history found for deployment \"lonely\"\n"
    );
    let o = corralctl(addr, &["rollout", "undo", "deploy/nope"]).await;
    assert_eq!(
        o.stderr(),
        "Error from server (NotFound): deployments \"nope\" not found\n"
    );
    let o = corralctl(addr, &["rollout", "history", "pod/x"]).await;
    assert_eq!(
        o.stderr(),
        "error: no history viewer has been implemented for Pod\n"
    );
}

#[tokio::test]
async fn pause_resume_and_restart_flip_the_deployment() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.as_str();
    let client = client_for(addr).await;
    client
        .create(&deployment("web", "nginx:1"))
        .await
        .expect("created");

    let o = corralctl(addr, &["rollout", "pause", "deploy/web"]).await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment.apps/web paused\n", true)
    );
    assert_eq!(get_deployment(&client, "web").await["spec"]["paused"], true);
    let o = corralctl(addr, &["rollout", "pause", "deployment", "web"]).await;
    assert_eq!(o.out, "");
    assert_eq!(
        o.stderr(),
        "error: deployments.apps \"web\" is already paused\n"
    );
    assert!(o.result.is_err());
    let o = corralctl(addr, &["rollout", "restart", "deploy/web"]).await;
    assert_eq!(
        o.stderr(),
        "error: deployments.apps \"web\" can't restart paused deployment (run rollout resume first)\n"
    );
    let o = corralctl(addr, &["rollout", "undo", "deploy/web"]).await;
    assert!(
        o.stderr().contains("no rollout history found"),
        "{}",
        o.stderr()
    );

    let o = corralctl(addr, &["rollout", "resume", "deploy/web"]).await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment.apps/web resumed\n", true)
    );
    assert_eq!(
        get_deployment(&client, "web").await["spec"]["paused"],
        false
    );
    let o = corralctl(addr, &["rollout", "resume", "deploy/web"]).await;
    assert_eq!(
        o.stderr(),
        "error: deployments.apps \"web\" is not paused\n"
    );

    let o = corralctl(addr, &["rollout", "restart", "deploy/web"]).await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment.apps/web restarted\n", true)
    );
    let web = get_deployment(&client, "web").await;
    let at =
        web["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
            .as_str()
            .expect("the restart annotation");
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
    assert_eq!(web["spec"]["template"]["metadata"]["labels"]["app"], "web");

    client
        .create(&json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                        "metadata": {"name": "db", "namespace": "default"}, "spec": {}}))
        .await
        .expect("created");
    let o = corralctl(addr, &["rollout", "pause", "sts/db"]).await;
    assert_eq!(
        o.stderr(),
        "error: statefulsets.apps \"db\" pausing is not supported\n"
    );
    let o = corralctl(addr, &["rollout", "restart", "statefulset/db"]).await;
    assert_eq!(o.out, "statefulset.apps/db restarted\n");
}

/// Replaces the Deployment's status (and generation), as the controller and the API would.
async fn set_status(client: &Client, name: &str, generation: i64, status: Value) {
    let mut d = get_deployment(client, name).await;
    d["metadata"]["generation"] = json!(generation);
    d["status"] = status;
    client.update(&d).await.expect("status written");
}

#[tokio::test]
async fn rollout_status_follows_the_deployment_until_it_is_rolled_out() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.clone();
    let client = client_for(&addr).await;
    let mut web = deployment("nginx", "nginx:2");
    web["metadata"]["generation"] = json!(2);
    web["status"] = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 0});
    client.create(&web).await.expect("created");

    let (out, task) = spawn_corralctl(&addr, &["rollout", "status", "deployment/nginx"]);
    let expect = |line: &'static str| {
        let out = out.clone();
        async move {
            let seen = out.clone();
            wait_until(
                line,
                || out.text().ends_with(&format!("{line}\n")),
                move || seen.text(),
            )
            .await;
        }
    };
    expect("Waiting for deployment spec update to be observed...").await;
    set_status(
        &client,
        "nginx",
        2,
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1}),
    )
    .await;
    expect("Waiting for deployment \"nginx\" rollout to finish: 1 out of 3 new replicas have been updated...").await;
    // A change that leaves the line as it was prints nothing new.
    set_status(
        &client,
        "nginx",
        2,
        json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 2}),
    )
    .await;
    set_status(
        &client,
        "nginx",
        2,
        json!({"observedGeneration": 2, "replicas": 5, "updatedReplicas": 3}),
    )
    .await;
    expect("Waiting for deployment \"nginx\" rollout to finish: 2 old replicas are pending termination...").await;
    set_status(&client, "nginx", 2, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1})).await;
    expect("Waiting for deployment \"nginx\" rollout to finish: 1 of 3 updated replicas are available...").await;
    set_status(&client, "nginx", 2, json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3})).await;
    let result = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("status ends")
        .expect("no panic");
    assert!(result.is_ok(), "{:?}", result.err());
    assert_eq!(
        out.text(),
        "Waiting for deployment spec update to be observed...\n\
         Waiting for deployment \"nginx\" rollout to finish: 1 out of 3 new replicas have been updated...\n\
         Waiting for deployment \"nginx\" rollout to finish: 2 old replicas are pending termination...\n\
         Waiting for deployment \"nginx\" rollout to finish: 1 of 3 updated replicas are available...\n\
         deployment \"nginx\" successfully rolled out\n"
    );

    // Done already: one line, success.
    let o = corralctl(&addr, &["rollout", "status", "deploy", "nginx"]).await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment \"nginx\" successfully rolled out\n", true)
    );
}

#[tokio::test]
async fn rollout_status_fails_on_deadline_timeout_and_deletion() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.clone();
    let client = client_for(&addr).await;
    let mut web = deployment("web", "nginx:2");
    web["status"] = json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1});
    client.create(&web).await.expect("created");

    // Without --watch: the line as it stands, and success.
    let o = corralctl(&addr, &["rollout", "status", "deploy/web", "--watch=false"]).await;
    assert_eq!(
        o.out,
        "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
    );
    assert!(o.result.is_ok());

    let o = corralctl(
        &addr,
        &["rollout", "status", "deploy/web", "--timeout=300ms"],
    )
    .await;
    assert_eq!(
        o.out,
        "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n"
    );
    assert_eq!(o.stderr(), "error: timed out waiting for the condition\n");
    assert!(o.result.is_err());

    // The progress deadline passes while watching.
    let (out, task) = spawn_corralctl(&addr, &["rollout", "status", "deploy/web"]);
    let seen = out.clone();
    wait_until(
        "the first line",
        || !out.text().is_empty(),
        move || seen.text(),
    )
    .await;
    set_status(
        &client,
        "web",
        1,
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ]}),
    )
    .await;
    let result = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("status ends")
        .expect("no panic");
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err("error: deployment \"web\" exceeded its progress deadline".to_string())
    );

    // Deleted while watching.
    set_status(
        &client,
        "web",
        1,
        json!({"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1}),
    )
    .await;
    let (out, task) = spawn_corralctl(&addr, &["rollout", "status", "deploy/web"]);
    let seen = out.clone();
    wait_until(
        "the first line",
        || !out.text().is_empty(),
        move || seen.text(),
    )
    .await;
    client
        .delete("Deployment", "default", "web", &Default::default())
        .await
        .expect("deleted");
    let result = tokio::time::timeout(DEADLINE, task)
        .await
        .expect("status ends")
        .expect("no panic");
    assert_eq!(
        result.map_err(|e| e.to_string()),
        Err("error: object has been deleted".to_string())
    );

    let o = corralctl(&addr, &["rollout", "status", "deploy/web"]).await;
    assert_eq!(
        o.stderr(),
        "Error from server (NotFound): deployments \"web\" not found\n"
    );
    let o = corralctl(&addr, &["rollout", "status", "rs/web"]).await;
    assert_eq!(
        o.stderr(),
        "error: no status viewer has been implemented for ReplicaSet.apps\n"
    );
    let o = corralctl(&addr, &["rollout", "status", "deploy/a", "deploy/b"]).await;
    assert!(
        o.stderr()
            .starts_with("error: rollout status is only supported on individual resources"),
        "{}",
        o.stderr()
    );
}
