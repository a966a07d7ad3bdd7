//! The one place an [`ApiError`] becomes a gRPC status (and a store error becomes an ApiError).
//! The status carries the error as JSON in its details, so clients get every field back.

use corral_api::{ApiError, Reason};
use corral_store::StoreError;

pub fn to_status(e: &ApiError) -> tonic::Status {
    let code = match e.reason() {
        Reason::NotFound => tonic::Code::NotFound,
        Reason::AlreadyExists => tonic::Code::AlreadyExists,
        Reason::Conflict => tonic::Code::Aborted,
        Reason::Invalid | Reason::BadRequest => tonic::Code::InvalidArgument,
        Reason::TooLarge => tonic::Code::ResourceExhausted,
        Reason::Expired => tonic::Code::OutOfRange,
        Reason::Unavailable => tonic::Code::Unavailable,
        Reason::Internal => tonic::Code::Internal,
    };
    tonic::Status::with_details(code, e.to_string(), e.to_details().into())
}

pub fn from_store(e: StoreError) -> ApiError {
    match e {
        StoreError::NoLeader { message, leader } => ApiError::Unavailable { message, leader },
        StoreError::Ambiguous(m) => ApiError::Unavailable {
            message: format!(
                "the leader failed while taking the write, which may or may not have been applied: {m}"
            ),
            leader: None,
        },
        other => ApiError::internal(other),
    }
}
