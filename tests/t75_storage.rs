//! Persistent storage end to end on a real cluster (a server and agents as child processes, the
//! process runtime, real files on the nodes), checked the way a user sees it: through the API
//! and in the directories on the nodes.
//!
//! - An administrator's volume (the `pv-volume` / `pv-claim` workload): a pod writes into its
//!   claim, is deleted, and a new pod on the claim reads what it wrote; Retain leaves the volume
//!   Released with the data; Recycle empties the directory and makes the volume Available again.
//! - The default class (`local-path`, WaitForFirstConsumer) with two nodes: the volume is made on
//!   the node the pod was scheduled to; Delete removes the volume and its directory.
//! - What a user sees while a claim cannot be used: the scheduler's message for a missing claim,
//!   a pod placed by hand waiting in ContainerCreating with `FailedMount`.

use std::path::Path;
use std::time::Duration;

use corral_client::{Client, DeleteOptions, ListOptions};
use corral_tests::{TestCluster, eventually, yaml};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(45);

async fn cluster(agents: &[&str]) -> TestCluster {
    let mut c = TestCluster::start(1, &[]);
    c.leader(LONG).await;
    for name in agents {
        c.add_agent(name, &[]);
    }
    c.nodes_ready(LONG).await;
    c
}

async fn get(client: &Client, kind: &str, ns: &str, name: &str) -> Result<Value, String> {
    client.get(kind, ns, name).await.map_err(|e| e.to_string())
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

async fn wait_phase(client: &Client, kind: &str, ns: &str, name: &str, want: &str) -> Value {
    eventually(&format!("{kind} {name} {want}"), LONG, || async {
        let v = get(client, kind, ns, name).await?;
        if text(&v, "/status/phase") == want {
            Ok(v)
        } else {
            Err(format!("status {}", v["status"]))
        }
    })
    .await
}

async fn wait_gone(client: &Client, kind: &str, ns: &str, name: &str) {
    eventually(&format!("{kind} {name} gone"), LONG, || async {
        match client.get(kind, ns, name).await {
            Err(corral_client::ApiError::NotFound { .. }) => Ok(()),
            Ok(v) => Err(format!(
                "still there: {} {:?}",
                v["status"],
                corral_api::object::finalizers(&v)
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

async fn delete(client: &Client, kind: &str, name: &str) {
    client
        .delete(kind, "default", name, &DeleteOptions::default())
        .await
        .unwrap_or_else(|e| panic!("deleting {kind} {name}: {e}"));
}

async fn event_with(client: &Client, name: &str, words: &str) {
    eventually(
        &format!("an event about {name}: {words:?}"),
        LONG,
        || async {
            let events = client
                .list("Event", None, &ListOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            let about: Vec<String> = events
                .items
                .iter()
                .filter(|e| text(e, "/involvedObject/name") == name)
                .map(|e| format!("{}: {}", text(e, "/reason"), text(e, "/message")))
                .collect();
            if about.iter().any(|e| e.contains(words)) {
                Ok(())
            } else {
                Err(format!("{about:?}"))
            }
        },
    )
    .await
}

/// A pod that runs `script` once with the claim mounted at /usr/share/nginx/html.
fn claim_pod(name: &str, claim: &str, script: &str, node: Option<&str>) -> Value {
    let mut pod = yaml(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  volumes:
  - name: task-pv-storage
    persistentVolumeClaim:
      claimName: {claim}
  containers:
  - name: task-pv-container
    image: busybox
    command: ["sh", "-c", {script:?}]
    volumeMounts:
    - mountPath: /usr/share/nginx/html
      name: task-pv-storage
"#
    ));
    if let Some(n) = node {
        pod["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": n});
    }
    pod
}

fn admin_volume(name: &str, class: &str, policy: &str, dir: &Path, node: &str) -> Value {
    yaml(&format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
  labels:
    type: local
spec:
  storageClassName: {class}
  capacity:
    storage: 10Gi
  accessModes:
    - ReadWriteOnce
  persistentVolumeReclaimPolicy: {policy}
  hostPath:
    path: {dir}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - key: kubernetes.io/hostname
          operator: In
          values: [{node}]
"#,
        dir = dir.display()
    ))
}

fn claim(name: &str, class: Option<&str>) -> Value {
    let mut c = yaml(&format!(
        r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {name}
spec:
  accessModes:
    - ReadWriteOnce
  resources:
    requests:
      storage: 1Gi
"#
    ));
    if let Some(class) = class {
        c["spec"]["storageClassName"] = json!(class);
    }
    c
}

#[tokio::test]
async fn a_claim_keeps_its_data_across_pods_retain_keeps_it_and_recycle_empties_it() {
    let c = cluster(&["node-a"]).await;
    let client = c.client();
    let data = c.tmp.path().join("mnt-data");
    std::fs::create_dir_all(&data).expect("the administrator's directory");

    client
        .create(&admin_volume(
            "task-pv-volume",
            "manual",
            "Retain",
            &data,
            "node-a",
        ))
        .await
        .expect("pv");
    client
        .create(&claim("task-pv-claim", Some("manual")))
        .await
        .expect("pvc");
    let bound = wait_phase(
        &client,
        "PersistentVolumeClaim",
        "default",
        "task-pv-claim",
        "Bound",
    )
    .await;
    assert_eq!(text(&bound, "/spec/volumeName"), "task-pv-volume");

    // One pod writes; after it is gone, another reads what it wrote.
    client
        .create(&claim_pod(
            "writer",
            "task-pv-claim",
            "echo 'Hello from Kubernetes storage' > /usr/share/nginx/html/index.html",
            None,
        ))
        .await
        .expect("writer");
    wait_phase(&client, "Pod", "default", "writer", "Succeeded").await;
    assert_eq!(
        std::fs::read_to_string(data.join("index.html")).expect("written on the node"),
        "Hello from Kubernetes storage\n"
    );
    delete(&client, "Pod", "writer").await;
    wait_gone(&client, "Pod", "default", "writer").await;
    client
        .create(&claim_pod(
            "reader",
            "task-pv-claim",
            "grep -q 'Hello from Kubernetes storage' /usr/share/nginx/html/index.html",
            None,
        ))
        .await
        .expect("reader");
    wait_phase(&client, "Pod", "default", "reader", "Succeeded").await;

    // Retain: the claim goes, the volume is Released, the data stays.
    delete(&client, "PersistentVolumeClaim", "task-pv-claim").await;
    wait_gone(&client, "PersistentVolumeClaim", "default", "task-pv-claim").await;
    let pv = wait_phase(
        &client,
        "PersistentVolume",
        "",
        "task-pv-volume",
        "Released",
    )
    .await;
    assert_eq!(text(&pv, "/spec/claimRef/name"), "task-pv-claim");
    assert!(data.join("index.html").exists(), "Retain keeps the data");

    // Recycle: the directory is emptied on its node and the volume serves the next claim.
    let scrub = c.tmp.path().join("scrub");
    std::fs::create_dir_all(&scrub).expect("dir");
    client
        .create(&admin_volume(
            "recycled", "scrub", "Recycle", &scrub, "node-a",
        ))
        .await
        .expect("pv");
    client
        .create(&claim("scratch", Some("scrub")))
        .await
        .expect("pvc");
    wait_phase(
        &client,
        "PersistentVolumeClaim",
        "default",
        "scratch",
        "Bound",
    )
    .await;
    client
        .create(&claim_pod(
            "scribbler",
            "scratch",
            "mkdir -p /usr/share/nginx/html/sub && echo x > /usr/share/nginx/html/sub/f && echo y > /usr/share/nginx/html/.hidden",
            None,
        ))
        .await
        .expect("pod");
    wait_phase(&client, "Pod", "default", "scribbler", "Succeeded").await;
    assert!(scrub.join("sub/f").exists());
    delete(&client, "Pod", "scribbler").await;
    delete(&client, "PersistentVolumeClaim", "scratch").await;
    let pv = wait_phase(&client, "PersistentVolume", "", "recycled", "Available").await;
    assert!(pv["spec"].get("claimRef").is_none(), "{pv}");
    let left: Vec<_> = std::fs::read_dir(&scrub)
        .expect("the directory is kept")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "recycled directory still holds {left:?}");
    event_with(&client, "recycled", "Volume recycled").await;
    client
        .create(&claim("again", Some("scrub")))
        .await
        .expect("pvc");
    let bound = wait_phase(
        &client,
        "PersistentVolumeClaim",
        "default",
        "again",
        "Bound",
    )
    .await;
    assert_eq!(text(&bound, "/spec/volumeName"), "recycled");
}

#[tokio::test]
async fn wait_for_first_consumer_makes_the_volume_on_the_pods_node_and_delete_removes_it() {
    let c = cluster(&["node-a", "node-b"]).await;
    let client = c.client();
    // The default class is there from the start.
    let class = eventually("the default StorageClass", LONG, || async {
        get(&client, "StorageClass", "", "local-path").await
    })
    .await;
    assert_eq!(text(&class, "/volumeBindingMode"), "WaitForFirstConsumer");
    let made = client.create(&claim("www", None)).await.expect("pvc");
    assert_eq!(text(&made, "/spec/storageClassName"), "local-path");
    event_with(
        &client,
        "www",
        "waiting for first consumer to be created before binding",
    )
    .await;

    client
        .create(&claim_pod(
            "web",
            "www",
            "echo served-from-node-b > /usr/share/nginx/html/index.html",
            Some("node-b"),
        ))
        .await
        .expect("pod");
    let pod = wait_phase(&client, "Pod", "default", "web", "Succeeded").await;
    assert_eq!(text(&pod, "/spec/nodeName"), "node-b");
    let bound = wait_phase(&client, "PersistentVolumeClaim", "default", "www", "Bound").await;
    assert_eq!(
        corral_api::storage::annotation(&bound, corral_api::storage::ANN_SELECTED_NODE),
        Some("node-b")
    );
    let pv_name = text(&bound, "/spec/volumeName").to_string();
    let pv = get(&client, "PersistentVolume", "", &pv_name)
        .await
        .expect("pv");
    assert_eq!(corral_api::storage::volume_node(&pv), Some("node-b"));
    let node_b = &c.agents[1];
    let dir = std::path::PathBuf::from(corral_api::storage::volume_path(&pv).expect("a path"));
    assert!(
        dir.starts_with(node_b.dir.join("local-path")),
        "{} is not under node-b's local-path root",
        dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("index.html")).expect("written on node-b"),
        "served-from-node-b\n"
    );

    // Delete: the claim goes, the volume and its directory go.
    delete(&client, "Pod", "web").await;
    delete(&client, "PersistentVolumeClaim", "www").await;
    wait_gone(&client, "PersistentVolume", "", &pv_name).await;
    eventually("the volume's directory is removed", LONG, || async {
        if dir.exists() {
            Err(format!("{} still exists", dir.display()))
        } else {
            Ok(())
        }
    })
    .await;
}

#[tokio::test]
async fn pods_wait_for_claims_that_are_missing_or_not_bound() {
    let c = cluster(&["node-a"]).await;
    let client = c.client();
    client
        .create(&claim_pod("orphan", "missing", "true", None))
        .await
        .expect("pod");
    event_with(
        &client,
        "orphan",
        "0/1 nodes are available: persistentvolumeclaim \"missing\" not found.",
    )
    .await;

    // A class whose provisioner nobody runs: the claim waits, and a pod placed by hand waits
    // in ContainerCreating saying why.
    client
        .create(&yaml(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: nfs\nprovisioner: example.com/nfs\n",
        ))
        .await
        .expect("class");
    client
        .create(&claim("shared", Some("nfs")))
        .await
        .expect("pvc");
    event_with(
        &client,
        "shared",
        "waiting for a volume to be created, either by external provisioner \"example.com/nfs\"",
    )
    .await;
    let mut pinned = claim_pod("pinned", "shared", "true", None);
    pinned["spec"]["nodeName"] = json!("node-a");
    client.create(&pinned).await.expect("pod");
    event_with(
        &client,
        "pinned",
        "MountVolume.SetUp failed for volume \"task-pv-storage\" : persistentvolumeclaim \"shared\" is not bound",
    )
    .await;
    let pod = get(&client, "Pod", "default", "pinned").await.expect("pod");
    assert_eq!(
        text(&pod, "/status/containerStatuses/0/state/waiting/reason"),
        "ContainerCreating",
        "{}",
        pod["status"]
    );

    // Once the claim's volume exists and binds, the pod starts by itself.
    let dir = c.tmp.path().join("nfs-stand-in");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut pv = admin_volume("manual-nfs", "nfs", "Retain", &dir, "node-a");
    pv["spec"]["capacity"]["storage"] = json!("1Gi");
    client.create(&pv).await.expect("pv");
    wait_phase(&client, "Pod", "default", "pinned", "Succeeded").await;
}
