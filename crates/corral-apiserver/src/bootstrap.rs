//! Objects every cluster has from its first leader on: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`, and the default StorageClass `local-path`. Run by the
//! leader (leader-run components). Each is created when missing, never changed: an administrator
//! may edit them (say, take the default-class annotation off `local-path`).

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Objects;

pub const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces that are missing, retrying until done or cancelled.
pub async fn ensure_namespaces(objects: Objects, shutdown: CancellationToken) {
    for ns in NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        if !ensure(&objects, obj, &shutdown).await {
            return;
        }
    }
}

/// Creates the default StorageClass `local-path` (Corral's built-in local-path provisioner,
/// WaitForFirstConsumer, Delete) when missing. Like the namespaces, it is created again by the
/// next leader if it was deleted.
pub async fn ensure_storage_class(objects: Objects, shutdown: CancellationToken) {
    ensure(
        &objects,
        corral_api::storage::default_storage_class_object(),
        &shutdown,
    )
    .await;
}

/// Creates `obj` unless it exists, retrying until done (true) or cancelled (false).
async fn ensure(objects: &Objects, obj: serde_json::Value, shutdown: &CancellationToken) -> bool {
    loop {
        match objects.ensure(obj.clone()).await {
            Ok(()) => return true,
            Err(e) => {
                let name = corral_api::object::name(&obj).to_string();
                tracing::warn!(kind = corral_api::object::kind(&obj), name, error = %e, "creating a built-in object; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}
