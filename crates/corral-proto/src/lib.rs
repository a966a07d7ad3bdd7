//! Generated gRPC code for Corral: the client API (`Api`, `Cluster`) and the server-to-server
//! `Raft` service, from `proto/corral/v1`.
//!
//! Layout: `v1` holds every message, client and server; `FILE_DESCRIPTOR_SET` feeds gRPC reflection.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("corral.v1");
}

/// Encoded descriptors of every Corral service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("corral_descriptor");
