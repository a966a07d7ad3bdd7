//! `corralctl` commands end to end against the client crate's tiny in-memory API server.

#[path = "../../corral-client/tests/support/fake.rs"]
mod fake;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use corral_cli::{Cli, CliError};
use fake::{FakeServer, Store};

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

async fn corralctl(server: &str, args: &[&str], stdin: &str) -> Outcome {
    let argv = ["corralctl", "--server", server]
        .into_iter()
        .chain(args.iter().copied());
    let cli = Cli::try_parse_from(argv).expect("valid arguments");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let result = corral_cli::run(&cli, &mut out, &mut err, &mut stdin.as_bytes()).await;
    Outcome {
        result,
        out: String::from_utf8_lossy(&out).into(),
        err: String::from_utf8_lossy(&err).into(),
    }
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
";

const CONFIG_AND_SERVICE: &str = "apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {a: '1'}
---
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  ports: [{port: 80}]
";

#[tokio::test]
async fn apply_get_describe_and_delete_work_like_kubectl() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.as_str();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("a.yaml"), DEPLOYMENT).expect("write");
    std::fs::write(dir.path().join("b.yml"), CONFIG_AND_SERVICE).expect("write");
    std::fs::write(
        dir.path().join("c.json"),
        r#"{"kind": "Widget", "metadata": {"name": "w"}}"#,
    )
    .expect("write");
    let dir_arg = dir.path().display().to_string();

    // A directory applies in name order, past the bad object, and fails at the end.
    let o = corralctl(addr, &["apply", "-f", &dir_arg], "").await;
    assert_eq!(
        o.out,
        "deployment.apps/web created\nconfigmap/cfg created\nservice/svc created\n"
    );
    assert!(
        o.err.contains("no kind \"Widget\"") && o.err.contains("c.json"),
        "{}",
        o.err
    );
    assert!(
        matches!(
            o.result,
            Err(CliError::Reported {
                failed: 1,
                total: 4
            })
        ),
        "{:?}",
        o.result.err()
    );

    let o = corralctl(addr, &["apply", "-f", "-"], DEPLOYMENT).await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment.apps/web unchanged\n", true)
    );
    let changed = DEPLOYMENT.replace("replicas: 3", "replicas: 5");
    let o = corralctl(addr, &["apply", "-f", "-"], &changed).await;
    assert_eq!(o.out, "deployment.apps/web configured\n");

    let o = corralctl(addr, &["get", "deploy"], "").await;
    assert_eq!(
        o.out,
        "NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    0/5     0            0           <unknown>\n"
    );
    let o = corralctl(addr, &["get", "deployments.apps", "web", "-o", "json"], "").await;
    let web: serde_json::Value = serde_json::from_str(&o.out).expect("json");
    assert_eq!(
        (web["kind"].as_str(), web["spec"]["replicas"].as_i64()),
        (Some("Deployment"), Some(5))
    );
    let o = corralctl(addr, &["get", "cm", "-o", "yaml"], "").await;
    assert!(
        o.out.starts_with("apiVersion: v1\nitems:\n") && o.out.contains("kind: List"),
        "{}",
        o.out
    );
    let o = corralctl(addr, &["-A", "get", "svc", "-o", "name"], "").await;
    assert_eq!(o.out, "service/svc\n");

    let o = corralctl(addr, &["get", "pods"], "").await;
    assert_eq!(
        (o.out.as_str(), o.err.as_str()),
        ("", "No resources found in default namespace.\n")
    );
    let o = corralctl(addr, &["get", "pod", "nope"], "").await;
    assert_eq!(
        o.err,
        "Error from server (NotFound): pods \"nope\" not found\n"
    );
    assert!(o.result.is_err());

    let o = corralctl(addr, &["describe", "deploy/web"], "").await;
    assert!(
        o.out
            .starts_with("Name:               web\nNamespace:          default\n"),
        "{}",
        o.out
    );
    assert!(
        o.out.contains("Spec:\n  replicas: 5\n") && o.out.ends_with("Events:             <none>\n"),
        "{}",
        o.out
    );

    let o = corralctl(addr, &["delete", "cm", "cfg", "nope"], "").await;
    assert_eq!(o.out, "configmap \"cfg\" deleted\n");
    assert_eq!(
        o.err,
        "Error from server (NotFound): configmaps \"nope\" not found\n"
    );
    let o = corralctl(addr, &["delete", "-f", &format!("{dir_arg}/a.yaml")], "").await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("deployment.apps \"web\" deleted\n", true)
    );
    let o = corralctl(
        addr,
        &[
            "delete",
            "svc",
            "svc",
            "--ignore-not-found",
            "--cascade=foreground",
        ],
        "",
    )
    .await;
    assert_eq!(
        (o.out.as_str(), o.result.is_ok()),
        ("service \"svc\" deleted\n", true)
    );
}

#[tokio::test]
async fn get_watch_prints_the_table_then_each_change() {
    let store = Store::new();
    let server = FakeServer::start(&store);
    let addr = server.addr.clone();
    let o = corralctl(
        &addr,
        &["apply", "-f", "-"],
        "kind: ConfigMap\nmetadata: {name: first}\n",
    )
    .await;
    assert!(o.result.is_ok(), "{}", o.err);

    let out = Shared::default();
    let mut writer = out.clone();
    let cli = Cli::try_parse_from(["corralctl", "--server", &addr, "get", "configmaps", "-w"])
        .expect("valid");
    let watcher = tokio::spawn(async move {
        let mut err = Vec::new();
        corral_cli::run(&cli, &mut writer, &mut err, &mut std::io::empty()).await
    });
    wait_until("the first row is printed", || {
        out.text() == "NAME    DATA   AGE\nfirst   0      <unknown>\n"
    })
    .await;

    let o = corralctl(
        &addr,
        &["apply", "-f", "-"],
        "kind: ConfigMap\nmetadata: {name: second-one}\ndata: {k: v}\n",
    )
    .await;
    assert!(o.result.is_ok(), "{}", o.err);
    wait_until("the change is printed", || {
        out.text().ends_with("second-one   1      <unknown>\n")
    })
    .await;
    watcher.abort();
}

/// Polls `done` until it holds, failing after the deadline.
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
