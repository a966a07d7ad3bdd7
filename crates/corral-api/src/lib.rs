//! Corral's object model. Objects travel through the whole system as Kubernetes JSON
//! (`serde_json::Value`); this crate knows which kinds exist and where they are stored, how they
//! are defaulted and validated (with field paths, worded as Kubernetes words it), and how label
//! and field selectors and resource quantities work. Pure functions only: no I/O, no async.
//!
//! Layout:
//! - [`error`]: [`ApiError`], the one error every API call answers with.
//! - [`kinds`]: the registry of supported kinds, and resolving what a CLI user types.
//! - [`object`]: object and storage keys, metadata accessors, manifest parsing, YAML output.
//! - [`admission`]: what create-time admission adds to a pod (default tolerations, the
//!   service-account token volume) and to PersistentVolumes and claims (status, protection
//!   finalizers, the default StorageClass).
//! - [`defaults`]: filling in what Kubernetes would fill in.
//! - [`validation`]: every problem with an object, and what may not change on update.
//! - [`selector`]: label and field selectors.
//! - [`quantity`]: resource quantities (`500m`, `1Gi`) as exact integers.
//! - [`meta`]: admission helpers: timestamps, uids, `generateName`, spec-change detection.
//! - [`service_ip`]: the Service ClusterIP range, the choice of a free address, allocation records.
//! - [`storage`]: PersistentVolumes, claims and classes: the names Kubernetes uses, and the
//!   binding rules the PV controller, the scheduler and the agent share.

pub mod admission;
pub mod defaults;
pub mod error;
pub mod kinds;
pub mod meta;
pub mod object;
pub mod quantity;
pub mod selector;
pub mod service_ip;
pub mod storage;
pub mod validation;

pub use error::{ApiError, Cause, MAX_OBJECT_BYTES, Reason};
