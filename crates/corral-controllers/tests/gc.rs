//! The garbage collector, the namespace controller and the service account controller against a
//! real one-server store and API, in process: Background deletion removes dependents, Orphan
//! leaves them without the owner's reference, Foreground deletes dependents before the owner (also
//! across kinds: a ReplicaSet and its pods), a dependent with two owners goes only with the
//! second; deleting a namespace empties it and then removes it; a new namespace gets its
//! `default` ServiceAccount, the account's token Secret and `kube-root-ca.crt`.

use std::time::Duration;

use base64::Engine as _;
use corral_api::ApiError;
use corral_client::{Client, DeleteOptions, PropagationPolicy};
use corral_controllers::gc::{self, GcOptions};
use corral_controllers::namespace::{self, NamespaceOptions};
use corral_controllers::serviceaccount::{self, ServiceAccountOptions};
use serde_json::{Value, json};

mod support;
use support::{Server, eventually};

/// One server with the `default` namespace, running the three controllers.
async fn server() -> Server {
    let server = support::server().await;
    let (client, shutdown) = (server.client.clone(), server.shutdown.clone());
    tokio::spawn(gc::run(
        client.clone(),
        GcOptions::default(),
        shutdown.clone(),
    ));
    tokio::spawn(namespace::run(
        client.clone(),
        NamespaceOptions::default(),
        shutdown.clone(),
    ));
    tokio::spawn(serviceaccount::run(
        client.clone(),
        ServiceAccountOptions::default(),
        shutdown.clone(),
    ));
    server
}

fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": false, "blockOwnerDeletion": block,
    })
}

async fn config_map(client: &Client, ns: &str, name: &str, owners: Vec<Value>) -> Value {
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "ownerReferences": owners},
        "data": {"k": "v"},
    });
    client.create(&cm).await.expect("config map created")
}

async fn get(client: &Client, kind: &str, ns: &str, name: &str) -> Result<Option<Value>, String> {
    match client.get(kind, ns, name).await {
        Ok(v) => Ok(Some(v)),
        Err(ApiError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

async fn gone(client: &Client, kind: &str, ns: &str, name: &str) {
    eventually(&format!("{kind} {ns}/{name} is deleted"), || async {
        match get(client, kind, ns, name).await? {
            None => Ok(()),
            Some(v) => Err(v.to_string()),
        }
    })
    .await
}

async fn delete(
    client: &Client,
    kind: &str,
    ns: &str,
    name: &str,
    policy: Option<PropagationPolicy>,
) {
    let options = DeleteOptions {
        propagation_policy: policy,
        ..DeleteOptions::default()
    };
    client
        .delete(kind, ns, name, &options)
        .await
        .expect("delete accepted");
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|r| r["uid"].as_str().unwrap_or("").to_string())
        .collect()
}

fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

/// Removes every finalizer from the object (a user releasing it).
async fn release(client: &Client, kind: &str, ns: &str, name: &str) {
    let patch = json!({"metadata": {"finalizers": null}});
    client
        .patch(kind, ns, name, &patch, false)
        .await
        .expect("finalizers removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_dependents_go_as_their_propagation_policy_says() {
    let s = server().await;
    let c = s.client.clone();

    // Background: the owner goes at once, then its dependents; a dependent with a second owner
    // only loses the reference, and goes with the second owner.
    let owner = config_map(&c, "default", "bg-owner", vec![]).await;
    let second = config_map(&c, "default", "bg-second", vec![]).await;
    config_map(&c, "default", "bg-dep", vec![owner_ref(&owner, false)]).await;
    config_map(
        &c,
        "default",
        "bg-shared",
        vec![owner_ref(&owner, false), owner_ref(&second, false)],
    )
    .await;
    config_map(&c, "default", "bystander", vec![]).await;
    delete(&c, "ConfigMap", "default", "bg-owner", None).await;
    gone(&c, "ConfigMap", "default", "bg-dep").await;
    eventually(
        "the shared dependent loses the reference to the deleted owner",
        || async {
            let shared = get(&c, "ConfigMap", "default", "bg-shared")
                .await?
                .ok_or("the shared dependent was deleted")?;
            if owner_uids(&shared) == vec![uid(&second)] {
                Ok(())
            } else {
                Err(shared.to_string())
            }
        },
    )
    .await;
    delete(&c, "ConfigMap", "default", "bg-second", None).await;
    gone(&c, "ConfigMap", "default", "bg-shared").await;

    // Orphan: the dependents stay, without the reference; the owner goes.
    let owner = config_map(&c, "default", "or-owner", vec![]).await;
    let other = config_map(&c, "default", "or-other", vec![]).await;
    config_map(&c, "default", "or-a", vec![owner_ref(&owner, true)]).await;
    config_map(
        &c,
        "default",
        "or-b",
        vec![owner_ref(&owner, false), owner_ref(&other, false)],
    )
    .await;
    delete(
        &c,
        "ConfigMap",
        "default",
        "or-owner",
        Some(PropagationPolicy::Orphan),
    )
    .await;
    gone(&c, "ConfigMap", "default", "or-owner").await;
    for (name, want) in [("or-a", vec![]), ("or-b", vec![uid(&other)])] {
        let dep = get(&c, "ConfigMap", "default", name)
            .await
            .expect("read")
            .unwrap_or_else(|| panic!("orphaned {name} was deleted"));
        assert_eq!(owner_uids(&dep), want, "{name}");
    }

    // Foreground: the owner waits, with its finalizer, until its blocking dependents are gone.
    let owner = config_map(&c, "default", "fg-owner", vec![]).await;
    config_map(&c, "default", "fg-a", vec![owner_ref(&owner, true)]).await;
    let held = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fg-held", "namespace": "default",
                     "finalizers": ["example.com/hold"], "ownerReferences": [owner_ref(&owner, true)]},
    });
    c.create(&held).await.expect("held dependent created");
    delete(
        &c,
        "ConfigMap",
        "default",
        "fg-owner",
        Some(PropagationPolicy::Foreground),
    )
    .await;
    gone(&c, "ConfigMap", "default", "fg-a").await;
    eventually("the held dependent is being deleted", || async {
        let held = get(&c, "ConfigMap", "default", "fg-held")
            .await?
            .ok_or("the held dependent is gone")?;
        if held.pointer("/metadata/deletionTimestamp").is_some() {
            Ok(())
        } else {
            Err(held.to_string())
        }
    })
    .await;
    // The owner stays while the held dependent does (give the collector time to get it wrong).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = get(&c, "ConfigMap", "default", "fg-owner")
        .await
        .expect("read")
        .expect("the owner waits for its blocking dependent");
    assert!(waiting.pointer("/metadata/deletionTimestamp").is_some());
    assert_eq!(
        waiting["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    release(&c, "ConfigMap", "default", "fg-held").await;
    gone(&c, "ConfigMap", "default", "fg-held").await;
    gone(&c, "ConfigMap", "default", "fg-owner").await;

    // Across kinds: a ReplicaSet deleted in the foreground takes its pods first.
    let rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
    });
    let rs = c.create(&rs).await.expect("replica set created");
    for name in ["web-1", "web-2"] {
        let mut r = owner_ref(&rs, true);
        r["controller"] = json!(true);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
                         "finalizers": ["example.com/hold"], "ownerReferences": [r]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        });
        c.create(&pod).await.expect("pod created");
    }
    delete(
        &c,
        "ReplicaSet",
        "default",
        "web",
        Some(PropagationPolicy::Foreground),
    )
    .await;
    for name in ["web-1", "web-2"] {
        eventually("the pods are being deleted", || async {
            let pod = get(&c, "Pod", "default", name).await?.ok_or("pod gone")?;
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                Ok(())
            } else {
                Err(pod.to_string())
            }
        })
        .await;
    }
    assert!(
        get(&c, "ReplicaSet", "default", "web")
            .await
            .expect("read")
            .is_some(),
        "the replica set waits for its pods"
    );
    release(&c, "Pod", "default", "web-1").await;
    gone(&c, "Pod", "default", "web-1").await;
    assert!(
        get(&c, "ReplicaSet", "default", "web")
            .await
            .expect("read")
            .is_some(),
        "the replica set waits for its last pod"
    );
    release(&c, "Pod", "default", "web-2").await;
    gone(&c, "Pod", "default", "web-2").await;
    gone(&c, "ReplicaSet", "default", "web").await;

    // Nothing else was touched.
    assert!(
        get(&c, "ConfigMap", "default", "bystander")
            .await
            .expect("read")
            .is_some()
    );
    // A dependent created with an owner that never existed is collected.
    config_map(
        &c,
        "default",
        "stray",
        vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "nobody",
                    "uid": "00000000-0000-0000-0000-000000000000"}),
        ],
    )
    .await;
    gone(&c, "ConfigMap", "default", "stray").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_namespace_is_emptied_then_removed() {
    let s = server().await;
    let c = s.client.clone();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    let ns = c.create(&ns).await.expect("namespace created");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    config_map(&c, "doomed", "a", vec![]).await;
    config_map(&c, "doomed", "b", vec![]).await;
    let held = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]},
    });
    c.create(&held).await.expect("held config map created");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
                        "metadata": {"name": "s", "namespace": "doomed"}, "stringData": {"k": "v"}});
    c.create(&secret).await.expect("secret created");
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"name": "p", "namespace": "doomed"},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    c.create(&pod).await.expect("pod created");
    // The service account controller has filled it in too.
    eventually("the namespace has its default account", || async {
        get(&c, "ServiceAccount", "doomed", "default")
            .await?
            .map(|_| ())
            .ok_or_else(|| "no default account yet".to_string())
    })
    .await;

    delete(&c, "Namespace", "", "doomed", None).await;
    let terminating = get(&c, "Namespace", "", "doomed")
        .await
        .expect("read")
        .expect("the namespace stays while it is emptied");
    assert_eq!(terminating["status"]["phase"], "Terminating");
    let refused = c
        .create(&json!({"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "late", "namespace": "doomed"}}))
        .await;
    assert!(
        refused.is_err(),
        "created in a terminating namespace: {refused:?}"
    );

    for (kind, name) in [
        ("ConfigMap", "a"),
        ("ConfigMap", "b"),
        ("Secret", "s"),
        ("Pod", "p"),
    ] {
        gone(&c, kind, "doomed", name).await;
    }
    // What a finalizer holds keeps the namespace, and the conditions say why.
    let ns = eventually("the namespace reports what remains", || async {
        let ns = get(&c, "Namespace", "", "doomed")
            .await?
            .ok_or("the namespace went while content remained")?;
        let conds = ns
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or_default();
        let remaining = conds
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "NamespaceFinalizersRemaining");
        match remaining {
            Some(c) if c["status"] == "True" => Ok(ns),
            _ => Err(ns.to_string()),
        }
    })
    .await;
    let finalizers = ns["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "NamespaceFinalizersRemaining")
        .map(|c| c["message"].clone());
    assert_eq!(
        finalizers,
        Some(json!(
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        ))
    );
    release(&c, "ConfigMap", "doomed", "held").await;
    gone(&c, "Namespace", "", "doomed").await;
    for kind in ["ConfigMap", "Secret", "ServiceAccount", "Pod"] {
        let left = c
            .list(kind, Some("doomed"), &Default::default())
            .await
            .expect("list");
        assert!(
            left.items.is_empty(),
            "{kind} left behind: {:?}",
            left.items
        );
    }
    // The name can be used again.
    let again = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
    c.create(&again).await.expect("namespace created again");
    s.stop().await;
}

fn decoded(secret: &Value, key: &str) -> String {
    let text = secret["data"][key].as_str().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 data");
    String::from_utf8(bytes).expect("utf-8")
}

async fn token_of(client: &Client, ns: &str, account: &str) -> Value {
    let account_uid = eventually("the account exists", || async {
        get(client, "ServiceAccount", ns, account)
            .await?
            .map(|a| uid(&a))
            .ok_or_else(|| format!("no account {ns}/{account}"))
    })
    .await;
    eventually("the account has its token Secret", || async {
        let secret = get(client, "Secret", ns, &format!("{account}-token"))
            .await?
            .ok_or("no token Secret yet")?;
        let annotations = &secret["metadata"]["annotations"];
        if annotations["kubernetes.io/service-account.uid"] == json!(account_uid) {
            Ok(secret)
        } else {
            Err(secret.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_its_account_token_and_ca() {
    let s = server().await;
    let c = s.client.clone();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    c.create(&ns).await.expect("namespace created");

    let secret = token_of(&c, "team", "default").await;
    assert_eq!(secret["type"], "kubernetes.io/service-account-token");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "default"
    );
    let token = decoded(&secret, "token");
    assert_eq!(token.len(), 43, "32 random bytes in base64url: {token:?}");
    assert_eq!(decoded(&secret, "namespace"), "team");
    assert_eq!(decoded(&secret, "ca.crt"), "");

    let ca = eventually("the namespace has kube-root-ca.crt", || async {
        get(&c, "ConfigMap", "team", "kube-root-ca.crt")
            .await?
            .ok_or_else(|| "not yet".to_string())
    })
    .await;
    assert_eq!(ca["data"], json!({"ca.crt": ""}));
    // A changed copy is put back.
    let patch = json!({"data": {"ca.crt": "forged"}});
    c.patch("ConfigMap", "team", "kube-root-ca.crt", &patch, false)
        .await
        .expect("patched");
    eventually("kube-root-ca.crt is put back", || async {
        let ca = get(&c, "ConfigMap", "team", "kube-root-ca.crt")
            .await?
            .ok_or("gone")?;
        if ca["data"] == json!({"ca.crt": ""}) {
            Ok(())
        } else {
            Err(ca.to_string())
        }
    })
    .await;
    // The pre-existing namespace has them too.
    token_of(&c, "default", "default").await;

    // Another account gets its own token; its token goes with it.
    let builder = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                         "metadata": {"name": "builder", "namespace": "team"}});
    c.create(&builder).await.expect("account created");
    let builder_token = token_of(&c, "team", "builder").await;
    assert_ne!(decoded(&builder_token, "token"), token);
    delete(&c, "ServiceAccount", "team", "builder", None).await;
    gone(&c, "Secret", "team", "builder-token").await;

    // A deleted default account comes back, with a new token Secret for the new account.
    delete(&c, "ServiceAccount", "team", "default", None).await;
    let renewed = eventually("the default account is recreated", || async {
        match get(&c, "ServiceAccount", "team", "default").await? {
            Some(a)
                if uid(&a)
                    != secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] =>
            {
                Ok(a)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let renewed_secret = token_of(&c, "team", "default").await;
    assert_eq!(
        renewed_secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        json!(uid(&renewed))
    );
    s.stop().await;
}
