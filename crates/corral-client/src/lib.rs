//! Corral's typed client: calls any list of API servers over the `corral.v1` gRPC API, moving to
//! the next server when one is unavailable, and watches with a stream that resumes from its last
//! revision through another server when its server dies. Objects are Kubernetes JSON
//! ([`serde_json::Value`]); every error is a [`corral_api::ApiError`].
//!
//! Layout:
//! - `client`: [`Client`], its options and the unary calls (create, get, list, update,
//!   update_status, patch, delete, cluster status and membership), with round-robin failover.
//! - `watch`: the resuming watcher ([`Client::watch`], [`Client::list_then_watch`]).
//! - `apply`: [`Client::apply`], create-or-update in the manner of `kubectl apply`.
//! - `informer`: [`Informer`], a shared cache of one kind fed by list + watch, with indexes and
//!   subscribers.
//! - `events`: [`EventRecorder`], core/v1 Events written in the background and aggregated.
//! - `logs`: [`Client::logs`], a container's log as a byte stream (`kubectl logs`).
//! - `status`: `tonic::Status` → [`ApiError`] (details first, then the gRPC code).

mod apply;
mod client;
pub mod events;
pub mod informer;
pub mod logs;
mod status;
mod watch;

pub use apply::{Applied, LAST_APPLIED_ANNOTATION};
pub use client::{
    Client, ClientOptions, DeleteOptions, GetOptions, ListOptions, MAX_RESPONSE_BYTES, ObjectList,
    PropagationPolicy,
};
pub use corral_api::ApiError;
pub use corral_proto::v1::{ClusterStatus, Member};
pub use events::{EventRecorder, EventRecorderOptions};
pub use informer::{Change, Informer, InformerBuilder};
pub use logs::{LogStream, LogsOptions};
pub use status::{Target, api_error_from_status, is_transport_failure};
/// What stops an [`Informer`] (re-exported so users need no `tokio-util` of their own).
pub use tokio_util::sync::CancellationToken;
pub use watch::{EventType, WatchEvent, WatchOptions, WatchStream};
