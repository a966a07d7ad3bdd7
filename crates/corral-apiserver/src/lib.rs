//! Corral's client-facing API server: the `corral.v1` gRPC API over the replicated store, with
//! admission, optimistic concurrency, linearizable reads, watch, follower-to-leader forwarding
//! (through the store), cluster admin, gRPC reflection and health, and the HTTP health/metrics
//! endpoints.
//!
//! Layout:
//! - `objects`: the verbs (create/get/list/update/patch/delete) and admission, without gRPC.
//! - `watch`: filtered watch streams with bookmarks.
//! - `service`: the gRPC `Api` and `Cluster` services.
//! - `status`: the one mapping from errors to gRPC statuses.
//! - `metrics`, `http`: Prometheus metrics and `/healthz`, `/readyz`, `/metrics`.
//! - `logs`: container logs, proxied from the agent of the pod's node.
//! - `bootstrap`: the namespaces every cluster has, created by the leader.

pub mod bootstrap;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod objects;
pub mod service;
pub mod status;
pub mod watch;

use std::sync::Arc;

use corral_proto::v1::api_server::ApiServer as ApiGrpc;
use corral_proto::v1::cluster_server::ClusterServer;
use corral_store::Store;
use tokio_util::sync::CancellationToken;

pub use metrics::Metrics;
pub use objects::Objects;

/// Largest gRPC message taken or sent: a 1.5 MiB object plus room; lists can be larger.
const MAX_MESSAGE: usize = 256 << 20;

/// Serves the client gRPC API on `listener` until `shutdown`.
pub async fn serve_grpc(
    listener: tokio::net::TcpListener,
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    serve_grpc_objects(listener, Objects::new(store), metrics, shutdown).await
}

/// [`serve_grpc`] over an `Objects` already configured (admission settings).
pub async fn serve_grpc_objects(
    listener: tokio::net::TcpListener,
    objects: Objects,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let api = service::ApiService {
        objects: objects.clone(),
        metrics,
    };
    let cluster = service::ClusterService { objects };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ApiGrpc<service::ApiService>>().await;
    health
        .set_serving::<ClusterServer<service::ClusterService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(corral_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptor sets are valid");
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(
            ApiGrpc::new(api)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(ClusterServer::new(cluster))
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled())
        .await
}

/// Accepted connections of `listener` with TCP_NODELAY set (tonic's own setting does not reach
/// connections handed to it this way, and Nagle's algorithm would add 40 ms to small calls).
pub fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
            s
        });
        Some((r, l))
    })
}
