//! [`Client::logs`]: a container's log as a stream of bytes, from whichever server answers (it
//! proxies the log from the agent of the pod's node).
//!
//! Opening the stream fails over between servers like any call. Once bytes flow, a broken stream
//! is not resumed (that could repeat or lose bytes): it ends with the error as its last item.

use corral_api::ApiError;
use corral_proto::v1 as pb;
use futures::StreamExt;
use futures::stream::BoxStream;
use tonic::Streaming;

use crate::client::{Client, api_client};
use crate::status::{Target, classify};

/// The stream [`Client::logs`] returns: chunks of the log as they arrive, then the end (or one
/// error, after which the stream ends).
pub type LogStream = BoxStream<'static, Result<Vec<u8>, ApiError>>;

/// Options of [`Client::logs`], as `kubectl logs` has them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsOptions {
    /// The container; `None` (or empty) when the pod has one container.
    pub container: Option<String>,
    /// Keep streaming while the container runs.
    pub follow: bool,
    /// The previous (terminated) run of the container.
    pub previous: bool,
    /// Only the last N lines (`None`: all).
    pub tail_lines: Option<i64>,
}

impl Client {
    /// Opens the log of a container of pod `namespace/pod`.
    pub async fn logs(
        &self,
        namespace: &str,
        pod: &str,
        options: &LogsOptions,
    ) -> Result<LogStream, ApiError> {
        let request = request(namespace, pod, options);
        let target = Target::new("Pod", namespace, pod);
        let (stream, _) = self
            .call(target, |channel| {
                let request = request.clone();
                async move {
                    api_client(channel)
                        .logs(request)
                        .await
                        .map(tonic::Response::into_inner)
                }
            })
            .await?;
        Ok(chunks(stream, namespace.to_string(), pod.to_string()))
    }
}

fn request(namespace: &str, pod: &str, options: &LogsOptions) -> pb::LogsRequest {
    pb::LogsRequest {
        namespace: namespace.into(),
        pod: pod.into(),
        container: options.container.clone().unwrap_or_default(),
        follow: options.follow,
        previous: options.previous,
        tail_lines: options.tail_lines,
        pod_uid: String::new(),
    }
}

/// The bytes of each message; the first error ends the stream.
fn chunks(stream: Streaming<pb::LogChunk>, namespace: String, pod: String) -> LogStream {
    futures::stream::unfold(Some(stream), move |state| {
        let (namespace, pod) = (namespace.clone(), pod.clone());
        async move {
            let mut stream = state?;
            match stream.message().await {
                Ok(Some(chunk)) => Some((Ok(chunk.data), Some(stream))),
                Ok(None) => None,
                Err(status) => {
                    let error = classify(&status, &Target::new("Pod", &namespace, &pod)).error;
                    Some((Err(error), None))
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_the_request() {
        let options = LogsOptions {
            container: Some("app".into()),
            follow: true,
            previous: false,
            tail_lines: Some(20),
        };
        let req = request("prod", "web-0", &options);
        assert_eq!(
            req,
            pb::LogsRequest {
                namespace: "prod".into(),
                pod: "web-0".into(),
                container: "app".into(),
                follow: true,
                previous: false,
                tail_lines: Some(20),
                pod_uid: String::new(),
            }
        );
        let req = request("default", "web", &LogsOptions::default());
        assert_eq!((req.container.as_str(), req.tail_lines), ("", None));
    }

    #[test]
    fn log_streams_can_move_across_tasks() {
        fn sendable<T: Send + 'static>() {}
        sendable::<LogStream>();
    }

    /// An API server whose `Logs` sends two chunks then fails, or (pod `missing`) fails at once;
    /// every other call is unimplemented.
    struct FakeApi;

    fn status_of(e: &ApiError, code: tonic::Code) -> tonic::Status {
        tonic::Status::with_details(code, e.to_string(), e.to_details().into())
    }

    type Unary<T> = Result<tonic::Response<T>, tonic::Status>;

    #[tonic::async_trait]
    impl pb::api_server::Api for FakeApi {
        async fn create(&self, _: tonic::Request<pb::CreateRequest>) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("create"))
        }
        async fn get(&self, _: tonic::Request<pb::GetRequest>) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("get"))
        }
        async fn list(&self, _: tonic::Request<pb::ListRequest>) -> Unary<pb::ListResponse> {
            Err(tonic::Status::unimplemented("list"))
        }
        async fn update(&self, _: tonic::Request<pb::UpdateRequest>) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("update"))
        }
        async fn update_status(
            &self,
            _: tonic::Request<pb::UpdateRequest>,
        ) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("update_status"))
        }
        async fn patch(&self, _: tonic::Request<pb::PatchRequest>) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("patch"))
        }
        async fn delete(&self, _: tonic::Request<pb::DeleteRequest>) -> Unary<pb::ObjectResponse> {
            Err(tonic::Status::unimplemented("delete"))
        }
        type WatchStream = BoxStream<'static, Result<pb::WatchEvent, tonic::Status>>;
        async fn watch(&self, _: tonic::Request<pb::WatchRequest>) -> Unary<Self::WatchStream> {
            Err(tonic::Status::unimplemented("watch"))
        }
        async fn bind(&self, _: tonic::Request<pb::BindRequest>) -> Unary<pb::BindResponse> {
            Err(tonic::Status::unimplemented("bind"))
        }
        type LogsStream = BoxStream<'static, Result<pb::LogChunk, tonic::Status>>;
        async fn logs(&self, req: tonic::Request<pb::LogsRequest>) -> Unary<Self::LogsStream> {
            let req = req.into_inner();
            if req.pod == "missing" {
                let e = ApiError::NotFound {
                    kind: "Pod".into(),
                    namespace: req.namespace,
                    name: req.pod,
                };
                return Err(status_of(&e, tonic::Code::NotFound));
            }
            let broke = ApiError::unavailable("the agent went away", None);
            let items = vec![
                Ok(pb::LogChunk {
                    data: format!("{}/{}:{}\n", req.namespace, req.pod, req.container).into(),
                }),
                Ok(pb::LogChunk {
                    data: b"more\n".to_vec(),
                }),
                Err(status_of(&broke, tonic::Code::Unavailable)),
            ];
            Ok(tonic::Response::new(futures::stream::iter(items).boxed()))
        }
    }

    async fn fake_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::api_server::ApiServer::new(FakeApi))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    #[tokio::test]
    async fn chunks_arrive_in_order_and_a_broken_stream_ends_with_its_error() {
        let addr = fake_server().await;
        let client = Client::connect(&[addr.as_str()]).expect("valid address");
        let options = LogsOptions {
            container: Some("app".into()),
            ..LogsOptions::default()
        };
        let stream = client.logs("prod", "web", &options).await.expect("opened");
        let items = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.collect::<Vec<_>>(),
        )
        .await
        .expect("the stream ends");
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0], Ok(b"prod/web:app\n".to_vec()));
        assert_eq!(items[1], Ok(b"more\n".to_vec()));
        assert_eq!(
            items[2],
            Err(ApiError::unavailable("the agent went away", None))
        );
    }

    #[tokio::test]
    async fn an_error_at_open_is_the_servers_error() {
        let addr = fake_server().await;
        let client = Client::connect(&[addr.as_str()]).expect("valid address");
        let err = client
            .logs("default", "missing", &LogsOptions::default())
            .await
            .err()
            .expect("no such pod");
        assert_eq!(
            err,
            ApiError::NotFound {
                kind: "Pod".into(),
                namespace: "default".into(),
                name: "missing".into()
            }
        );
    }

    #[tokio::test]
    async fn no_server_reachable_is_unavailable() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        drop(l);
        let client = Client::connect(&[addr.as_str()]).expect("valid address");
        let err = client
            .logs("default", "web", &LogsOptions::default())
            .await
            .err()
            .expect("nobody listens");
        assert!(
            matches!(err, ApiError::Unavailable { ref message, .. } if message.contains(&addr)),
            "{err:?}"
        );
    }
}
