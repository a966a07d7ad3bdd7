//! The inverse of the API server's error mapping: a `tonic::Status` back into an [`ApiError`].
//!
//! A Corral server puts [`ApiError::to_details`] JSON in every error status it sends, so the
//! details decide. A status without Corral details came from the transport (connection refused or
//! reset, timeout, HTTP/2 failure) or from a server that is not Corral's; its gRPC code decides
//! then, and every transport-level failure becomes [`ApiError::Unavailable`] so the caller moves to
//! the next server.

use corral_api::ApiError;
use tonic::{Code, Status};

/// The object a request was about: named in the errors made up when a status carries no details.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Target<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> Target<'a> {
    pub fn new(kind: &'a str, namespace: &'a str, name: &'a str) -> Self {
        Self {
            kind,
            namespace,
            name,
        }
    }
}

/// How a failed call ended: the error, and whether a Corral server answered it (as opposed to the
/// connection failing before any answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub error: ApiError,
    pub answered: bool,
}

impl Failure {
    pub fn retryable(&self) -> bool {
        matches!(self.error, ApiError::Unavailable { .. })
    }
}

/// The [`ApiError`] a status stands for; see the module doc for the rules.
pub fn api_error_from_status(status: &Status, target: &Target<'_>) -> ApiError {
    classify(status, target).error
}

/// True when the status is a transport failure (no Corral server answered it).
pub fn is_transport_failure(status: &Status) -> bool {
    !classify(status, &Target::default()).answered
}

pub(crate) fn classify(status: &Status, target: &Target<'_>) -> Failure {
    if let Some(error) = ApiError::from_details(status.details()) {
        return Failure {
            error,
            answered: true,
        };
    }
    let message = status.message().to_string();
    let kind = target.kind.to_string();
    let namespace = target.namespace.to_string();
    let name = target.name.to_string();
    let error = match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            let message = if timed_out(status) {
                "the server did not answer in time".to_string()
            } else if message.is_empty() {
                format!("{:?}", status.code())
            } else {
                with_causes(message, status)
            };
            return Failure {
                error: ApiError::unavailable(message, None),
                answered: false,
            };
        }
        Code::NotFound => ApiError::NotFound {
            kind,
            namespace,
            name,
        },
        Code::AlreadyExists => ApiError::AlreadyExists {
            kind,
            namespace,
            name,
        },
        Code::Aborted | Code::FailedPrecondition => ApiError::Conflict {
            kind,
            name,
            field: "metadata.resourceVersion".into(),
            expected: "the request's".into(),
            actual: format!("different ({message})"),
        },
        Code::InvalidArgument
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated => ApiError::bad_request(format!("{:?}: {message}", status.code())),
        Code::Internal if message.starts_with("h2 protocol error") => {
            return Failure {
                error: ApiError::unavailable(message, None),
                answered: false,
            };
        }
        Code::Internal | Code::DataLoss | Code::Ok => {
            ApiError::internal(format!("{:?}: {message}", status.code()))
        }
    };
    Failure {
        error,
        answered: true,
    }
}

/// `message` followed by what caused it (`tcp connect error: Connection refused (os error 111)`),
/// each cause once.
fn with_causes(mut message: String, status: &Status) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        let text = err.to_string();
        if !text.is_empty() && !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = err.source();
    }
    message
}

/// Whether tonic's client-side deadline produced this status.
fn timed_out(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(err) = source {
        if err.is::<tonic::TimeoutExpired>() {
            return true;
        }
        source = err.source();
    }
    status.code() == Code::DeadlineExceeded
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_api::Cause;

    fn pod_x() -> Target<'static> {
        Target::new("Pod", "default", "x")
    }

    fn with_details(code: Code, e: &ApiError) -> Status {
        Status::with_details(code, e.to_string(), e.to_details().into())
    }

    #[test]
    fn details_win_over_the_grpc_code() {
        let e = ApiError::Invalid {
            kind: "Deployment".into(),
            name: "web".into(),
            causes: vec![Cause::new("spec.replicas", "must be >= 0")],
        };
        // Even under an unrelated code the details are what the server meant.
        let got = classify(&with_details(Code::Internal, &e), &pod_x());
        assert_eq!(
            got,
            Failure {
                error: e,
                answered: true
            }
        );
    }

    #[test]
    fn unavailable_with_details_is_an_answer_that_can_be_retried() {
        let e = ApiError::unavailable("no leader elected yet", Some("10.0.0.2:7071".into()));
        let got = classify(&with_details(Code::Unavailable, &e), &pod_x());
        assert!(got.answered);
        assert!(got.retryable());
        assert_eq!(got.error, e);
    }

    #[test]
    fn a_refused_connection_is_unavailable_and_not_an_answer() {
        let got = classify(
            &Status::unavailable("tcp connect error: Connection refused"),
            &pod_x(),
        );
        assert!(!got.answered);
        assert!(got.retryable());
        assert_eq!(
            got.error,
            ApiError::unavailable("tcp connect error: Connection refused", None)
        );
    }

    #[test]
    fn deadline_cancel_and_unknown_without_details_are_transport_failures() {
        for status in [
            Status::deadline_exceeded("deadline"),
            Status::cancelled("Timeout expired"),
            Status::unknown("error reading a body from connection"),
            Status::internal("h2 protocol error: stream reset"),
        ] {
            let got = classify(&status, &pod_x());
            assert!(!got.answered, "{status:?}");
            assert!(
                matches!(got.error, ApiError::Unavailable { .. }),
                "{status:?}"
            );
            assert!(is_transport_failure(&status));
        }
    }

    #[test]
    fn a_deadline_says_the_server_did_not_answer_in_time() {
        let got = api_error_from_status(&Status::deadline_exceeded(""), &pod_x());
        assert_eq!(
            got,
            ApiError::unavailable("the server did not answer in time", None)
        );
    }

    #[test]
    fn codes_without_details_map_to_the_request_target() {
        assert_eq!(
            api_error_from_status(&Status::not_found("nope"), &pod_x()),
            ApiError::NotFound {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "x".into()
            }
        );
        assert_eq!(
            api_error_from_status(&Status::already_exists("dup"), &pod_x()),
            ApiError::AlreadyExists {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "x".into()
            }
        );
        assert!(matches!(
            api_error_from_status(&Status::failed_precondition("rv 3 != 4"), &pod_x()),
            ApiError::Conflict { ref actual, .. } if actual.contains("rv 3 != 4")
        ));
        assert!(matches!(
            api_error_from_status(&Status::aborted("x"), &pod_x()),
            ApiError::Conflict { .. }
        ));
        assert_eq!(
            api_error_from_status(&Status::invalid_argument("bad selector"), &pod_x()),
            ApiError::bad_request("InvalidArgument: bad selector")
        );
        assert_eq!(
            api_error_from_status(&Status::data_loss("gone"), &pod_x()),
            ApiError::internal("DataLoss: gone")
        );
    }

    #[test]
    fn details_that_are_not_corral_json_fall_back_to_the_code() {
        let status = Status::with_details(Code::NotFound, "nope", b"not json".to_vec().into());
        assert!(matches!(
            api_error_from_status(&status, &pod_x()),
            ApiError::NotFound { .. }
        ));
        assert!(!is_transport_failure(&status));
    }
}
