//! The one error type every Corral API call answers with.
//!
//! It travels between server and client as JSON in the gRPC status details (the mapping to gRPC
//! codes lives in `corral-apiserver::status`, its inverse in `corral-client`), so a program can
//! branch on [`ApiError::reason`]. Retryable: `Unavailable` (try another server or later) and
//! `Conflict` (re-read, re-apply); the rest are final for the request as sent.

use serde::{Deserialize, Serialize};

/// Largest object the store takes, in bytes of its JSON form.
pub const MAX_OBJECT_BYTES: usize = 1_572_864; // 1.5 MiB

/// One thing wrong with a submitted object: where (`spec.template.metadata.labels`) and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a program branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    TooLarge,
    Expired,
    Unavailable,
    BadRequest,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason")]
pub enum ApiError {
    #[error("{kind} \"{name}\" not found{}", in_ns(namespace))]
    NotFound {
        kind: String,
        namespace: String,
        name: String,
    },
    #[error("{kind} \"{name}\" already exists{}", in_ns(namespace))]
    AlreadyExists {
        kind: String,
        namespace: String,
        name: String,
    },
    /// A precondition (resourceVersion or uid) did not hold: re-read and try again.
    #[error("conflict on {kind} \"{name}\": {field} is {actual}, the request expected {expected}")]
    Conflict {
        kind: String,
        name: String,
        field: String,
        expected: String,
        actual: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", causes_text(causes))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("object is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error(
        "revision {requested} has been compacted; the oldest kept is {oldest}: list again and watch from there"
    )]
    Expired { requested: u64, oldest: u64 },
    #[error("unavailable: {message}{}", leader.as_ref().map(|l| format!(" (leader at {l})")).unwrap_or_default())]
    Unavailable {
        message: String,
        leader: Option<String>,
    },
    #[error("bad request: {message}")]
    BadRequest { message: String },
    #[error("internal error: {message}")]
    Internal { message: String },
}

fn in_ns(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!(" in namespace \"{ns}\"")
    }
}

fn causes_text(causes: &[Cause]) -> String {
    causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    pub fn reason(&self) -> Reason {
        match self {
            ApiError::NotFound { .. } => Reason::NotFound,
            ApiError::AlreadyExists { .. } => Reason::AlreadyExists,
            ApiError::Conflict { .. } => Reason::Conflict,
            ApiError::Invalid { .. } => Reason::Invalid,
            ApiError::TooLarge { .. } => Reason::TooLarge,
            ApiError::Expired { .. } => Reason::Expired,
            ApiError::Unavailable { .. } => Reason::Unavailable,
            ApiError::BadRequest { .. } => Reason::BadRequest,
            ApiError::Internal { .. } => Reason::Internal,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::Internal {
            message: message.to_string(),
        }
    }

    pub fn unavailable(message: impl Into<String>, leader: Option<String>) -> Self {
        ApiError::Unavailable {
            message: message.into(),
            leader,
        }
    }

    /// The JSON carried in a gRPC status's details.
    pub fn to_details(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("ApiError serializes: plain strings and numbers only")
    }

    /// Reads what [`ApiError::to_details`] wrote; `None` if the bytes are something else.
    pub fn from_details(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_round_trip_keeps_every_cause() {
        let e = ApiError::Invalid {
            kind: "Pod".into(),
            name: "x".into(),
            causes: vec![
                Cause::new("metadata.name", "must be DNS-1123"),
                Cause::new("spec.containers", "required"),
            ],
        };
        assert_eq!(ApiError::from_details(&e.to_details()), Some(e.clone()));
        assert!(
            e.to_string()
                .contains("metadata.name: must be DNS-1123; spec.containers: required")
        );
    }
}
