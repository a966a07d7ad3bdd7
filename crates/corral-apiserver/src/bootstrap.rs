//! Objects every cluster has from its first leader on: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`. Run by the leader (a leader-run component).

use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Objects;

pub const NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the built-in namespaces that are missing, retrying until done or cancelled.
pub async fn ensure_namespaces(objects: Objects, shutdown: CancellationToken) {
    for ns in NAMESPACES {
        loop {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            match objects.ensure(obj).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(namespace = ns, error = %e, "creating a built-in namespace; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}
