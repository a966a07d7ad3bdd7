//! Container logs: `Api.Logs` finds the pod's node and proxies the stream from that node's agent
//! (`Agent.Logs`, at the address the Node publishes), so any server answers for any pod.
//!
//! The pod and the node are read from this server's state (possibly stale, no read-index round:
//! a log needs no linearizable view). The container is resolved as the Kubernetes API server
//! does, with its messages; the agent is reached at the Node's `InternalIP` and
//! `daemonEndpoints.kubeletEndpoint.Port`, over a connection made for this one stream. What the
//! agent refuses (no such run yet, no previous run) becomes `BadRequest` with the agent's words,
//! as kubectl shows the kubelet's; an agent that cannot be reached, or whose stream breaks, is
//! `Unavailable`.

use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;

use corral_api::ApiError;
use corral_proto::v1::agent_client::AgentClient;
use corral_proto::v1::{LogChunk, LogsRequest};
use futures::Stream;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

use crate::objects::Objects;
use crate::status::to_status;

pub type LogsStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// How long to wait for a TCP connection to an agent.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the agent may take to open the stream once connected.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the log stream `req` asks for.
pub async fn open(objects: &Objects, mut req: LogsRequest) -> Result<LogsStream, ApiError> {
    if req.pod.is_empty() {
        return Err(ApiError::bad_request("a pod name is required"));
    }
    if let Some(n) = req.tail_lines
        && n < 0
    {
        return Err(ApiError::bad_request(format!(
            "tailLines must be greater than or equal to 0, not {n}"
        )));
    }
    if req.namespace.is_empty() {
        req.namespace = "default".into();
    }
    let pod = objects.get("Pod", &req.namespace, &req.pod, true).await?;
    let node_name = plan(&pod, &mut req)?;
    let node = objects.get("Node", "", &node_name, true).await?;
    let addr = agent_address(&node)?;
    from_agent(&addr, &node_name, &pod, req).await
}

/// Fills in the container and the pod's uid; answers the node that runs the pod.
fn plan(pod: &Value, req: &mut LogsRequest) -> Result<String, ApiError> {
    req.container = container_of(pod, &req.pod, &req.container)?;
    let node = str_at(pod, "/spec/nodeName");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod \"{}\" is not scheduled to a node yet, so container \"{}\" has no log",
            req.pod, req.container
        )));
    }
    let uid = str_at(pod, "/metadata/uid");
    if uid.is_empty() {
        return Err(ApiError::internal(format!(
            "pod \"{}\" has no metadata.uid",
            req.pod
        )));
    }
    req.pod_uid = uid.to_string();
    Ok(node.to_string())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The names of the containers listed at `pointer` (`/spec/containers`, ...).
fn names(pod: &Value, pointer: &str) -> Vec<String> {
    pod.pointer(pointer)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request means, with the Kubernetes API server's errors: a pod with several
/// containers needs a name; a name must be one of its containers, init containers or ephemeral
/// containers.
fn container_of(pod: &Value, pod_name: &str, asked: &str) -> Result<String, ApiError> {
    let containers = names(pod, "/spec/containers");
    let init = names(pod, "/spec/initContainers");
    let ephemeral = names(pod, "/spec/ephemeralContainers");
    if !asked.is_empty() {
        return if containers
            .iter()
            .chain(&init)
            .chain(&ephemeral)
            .any(|n| n == asked)
        {
            Ok(asked.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "container {asked} is not valid for pod {pod_name}"
            )))
        };
    }
    match containers.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        several => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                several.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// `host:port` of the agent a Node publishes: its `InternalIP` (else its `Hostname`) and
/// `daemonEndpoints.kubeletEndpoint.Port`.
fn agent_address(node: &Value) -> Result<String, ApiError> {
    let name = str_at(node, "/metadata/name");
    let addresses = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let of_type = |t: &str| {
        addresses
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some(t))
            .filter_map(|a| a.get("address").and_then(Value::as_str))
            .find(|a| !a.is_empty())
    };
    let Some(host) = of_type("InternalIP").or_else(|| of_type("Hostname")) else {
        return Err(ApiError::unavailable(
            format!("node \"{name}\" publishes no InternalIP address for its agent"),
            None,
        ));
    };
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .filter(|p| (1..=65535).contains(p))
        .ok_or_else(|| {
            ApiError::unavailable(
                format!(
                    "node \"{name}\" publishes no agent port (status.daemonEndpoints.kubeletEndpoint.Port)"
                ),
                None,
            )
        })?;
    Ok(match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    })
}

/// Connects to the agent at `addr`, asks it for the log and forwards its stream.
async fn from_agent(
    addr: &str,
    node: &str,
    pod: &Value,
    req: LogsRequest,
) -> Result<LogsStream, ApiError> {
    let unreachable = |why: String| {
        ApiError::unavailable(
            format!("cannot reach the agent of node \"{node}\" at {addr}: {why}"),
            None,
        )
    };
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| unreachable(format!("the address is not valid: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    let channel = match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => return Err(unreachable(error_chain(&e))),
        Err(_) => {
            return Err(unreachable(format!(
                "no connection within {CONNECT_TIMEOUT:?}"
            )));
        }
    };
    let container = req.container.clone();
    let mut agent = AgentClient::new(channel.clone());
    let stream = match tokio::time::timeout(OPEN_TIMEOUT, agent.logs(req)).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => {
            let mut error = agent_error(&status, node, "did not serve the log");
            add_waiting_reason(&mut error, pod, &container);
            return Err(error);
        }
        Err(_) => {
            return Err(ApiError::unavailable(
                format!(
                    "the agent of node \"{node}\" at {addr} did not answer within {OPEN_TIMEOUT:?}"
                ),
                None,
            ));
        }
    };
    Ok(forward(stream, channel, node.to_string()))
}

/// The agent's chunks as they come; an error from the agent ends the stream after it is passed
/// on. The channel lives as long as the stream.
fn forward(stream: Streaming<LogChunk>, channel: Channel, node: String) -> LogsStream {
    Box::pin(futures::stream::unfold(
        Some((stream, channel, node)),
        |state| async move {
            let (mut stream, channel, node) = state?;
            match stream.message().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some((stream, channel, node)))),
                Ok(None) => None,
                Err(status) => {
                    let error = agent_error(&status, &node, "broke the log stream");
                    Some((Err(to_status(&error)), None))
                }
            }
        },
    ))
}

/// An agent's status as an API error: its refusals are bad requests in its own words (as kubectl
/// shows the kubelet's); failures to talk to it are `Unavailable`.
fn agent_error(status: &Status, node: &str, what: &str) -> ApiError {
    if let Some(e) = ApiError::from_details(status.details()) {
        return e;
    }
    let message = status.message();
    match status.code() {
        Code::NotFound | Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            ApiError::bad_request(message)
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            ApiError::unavailable(
                format!(
                    "the agent of node \"{node}\" {what}: {}",
                    error_chain_of(message, status)
                ),
                None,
            )
        }
        code => ApiError::internal(format!(
            "the agent of node \"{node}\" {what}: {code:?}: {message}"
        )),
    }
}

/// Adds the container's waiting reason (`ContainerCreating`, `ErrImageNeverPull`, ...) to the
/// agent's "is waiting to start", as the kubelet does.
fn add_waiting_reason(error: &mut ApiError, pod: &Value, container: &str) {
    let ApiError::BadRequest { message } = error else {
        return;
    };
    if !message.ends_with("is waiting to start") {
        return;
    }
    let reason = ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
        .map(|s| str_at(s, "/state/waiting/reason"))
        .filter(|r| !r.is_empty());
    if let Some(reason) = reason {
        message.push_str(": ");
        message.push_str(reason);
    }
}

/// An error and its sources, each once (`transport error: tcp connect error: Connection refused`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    with_sources(e.to_string(), e.source())
}

/// A status's message (its code when empty) and the errors beneath it.
fn error_chain_of(message: &str, status: &Status) -> String {
    let text = if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    };
    with_sources(text, std::error::Error::source(status))
}

fn with_sources(
    mut text: String,
    mut source: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(s) = source {
        let t = s.to_string();
        if !t.is_empty() && !text.contains(&t) {
            text = format!("{text}: {t}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use corral_proto::v1::agent_server::{Agent, AgentServer};
    use futures::StreamExt;
    use serde_json::json;
    use tonic::{Request, Response};

    use super::*;

    fn pod(containers: &[&str], init: &[&str]) -> Value {
        let list = |names: &[&str]| {
            names
                .iter()
                .map(|n| json!({"name": n, "image": "busybox"}))
                .collect::<Vec<_>>()
        };
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
            "spec": {"containers": list(containers), "initContainers": list(init), "nodeName": "n1"},
        })
    }

    fn bad_request(message: &str) -> ApiError {
        ApiError::bad_request(message)
    }

    #[test]
    fn one_container_needs_no_name() {
        assert_eq!(
            container_of(&pod(&["app"], &[]), "web", ""),
            Ok("app".into())
        );
    }

    #[test]
    fn several_containers_need_a_name_in_kubernetes_words() {
        assert_eq!(
            container_of(&pod(&["a", "b"], &[]), "web", ""),
            Err(bad_request(
                "a container name must be specified for pod web, choose one of: [a b]"
            ))
        );
        assert_eq!(
            container_of(&pod(&["a", "b"], &["init"]), "web", ""),
            Err(bad_request(
                "a container name must be specified for pod web, choose one of: [a b] or one of the init containers: [init]"
            ))
        );
    }

    #[test]
    fn a_named_container_must_be_in_the_pod_init_containers_included() {
        let p = pod(&["a", "b"], &["setup"]);
        assert_eq!(container_of(&p, "web", "b"), Ok("b".into()));
        assert_eq!(container_of(&p, "web", "setup"), Ok("setup".into()));
        assert_eq!(
            container_of(&p, "web", "x"),
            Err(bad_request("container x is not valid for pod web"))
        );
    }

    #[test]
    fn plan_fills_in_container_and_uid_and_needs_a_node() {
        let mut req = LogsRequest {
            namespace: "default".into(),
            pod: "web".into(),
            ..Default::default()
        };
        let p = pod(&["app"], &[]);
        assert_eq!(plan(&p, &mut req), Ok("n1".to_string()));
        assert_eq!(
            (req.container.as_str(), req.pod_uid.as_str()),
            ("app", "uid-1")
        );

        let mut unbound = p.clone();
        unbound["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("nodeName");
        let err = plan(&unbound, &mut req).expect_err("not scheduled");
        assert_eq!(
            err,
            bad_request(
                "pod \"web\" is not scheduled to a node yet, so container \"app\" has no log"
            )
        );
    }

    #[test]
    fn the_agent_is_at_the_nodes_internal_ip_and_kubelet_port() {
        let node = |addresses: Value, port: Value| {
            json!({"kind": "Node", "metadata": {"name": "n1"}, "status": {
                "addresses": addresses,
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            }})
        };
        let both = json!([
            {"type": "Hostname", "address": "node-1"},
            {"type": "InternalIP", "address": "10.0.0.7"},
        ]);
        assert_eq!(
            agent_address(&node(both, json!(10250))),
            Ok("10.0.0.7:10250".to_string())
        );
        let v6 = json!([{"type": "InternalIP", "address": "fd00::7"}]);
        assert_eq!(
            agent_address(&node(v6, json!(7071))),
            Ok("[fd00::7]:7071".to_string())
        );
        let host_only = json!([{"type": "Hostname", "address": "node-1"}]);
        assert_eq!(
            agent_address(&node(host_only, json!(7071))),
            Ok("node-1:7071".to_string())
        );
        for (addresses, port) in [
            (json!([]), json!(7071)),
            (
                json!([{"type": "InternalIP", "address": "10.0.0.7"}]),
                json!(0),
            ),
            (
                json!([{"type": "InternalIP", "address": "10.0.0.7"}]),
                json!(70000),
            ),
            (
                json!([{"type": "InternalIP", "address": "10.0.0.7"}]),
                json!(null),
            ),
        ] {
            let err = agent_address(&node(addresses, port)).expect_err("no address");
            assert!(
                matches!(err, ApiError::Unavailable { ref message, .. } if message.contains("node \"n1\"")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn agent_refusals_are_bad_requests_and_transport_failures_unavailable() {
        let refused =
            Status::not_found("previous terminated container \"app\" in pod \"web\" not found");
        assert_eq!(
            agent_error(&refused, "n1", "did not serve the log"),
            bad_request("previous terminated container \"app\" in pod \"web\" not found")
        );
        let down = Status::unavailable("connection reset");
        assert!(matches!(
            agent_error(&down, "n1", "broke the log stream"),
            ApiError::Unavailable { ref message, .. }
                if message == "the agent of node \"n1\" broke the log stream: connection reset"
        ));
        assert!(matches!(
            agent_error(&Status::internal("disk"), "n1", "did not serve the log"),
            ApiError::Internal { .. }
        ));
    }

    #[test]
    fn waiting_to_start_carries_the_containers_waiting_reason() {
        let mut p = pod(&["app"], &[]);
        p["status"] = json!({"containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ErrImageNeverPull"}}},
        ]});
        let mut e = bad_request("container \"app\" in pod \"web\" is waiting to start");
        add_waiting_reason(&mut e, &p, "app");
        assert_eq!(
            e,
            bad_request("container \"app\" in pod \"web\" is waiting to start: ErrImageNeverPull")
        );
        // Other errors, and containers without a waiting reason, are left as they are.
        let mut e = bad_request("previous terminated container \"app\" in pod \"web\" not found");
        add_waiting_reason(&mut e, &p, "app");
        assert!(!e.to_string().contains("ErrImageNeverPull"));
        let mut e = bad_request("container \"side\" in pod \"web\" is waiting to start");
        add_waiting_reason(&mut e, &p, "side");
        assert_eq!(
            e,
            bad_request("container \"side\" in pod \"web\" is waiting to start")
        );
    }

    /// An agent that answers `pod_uid` `ok` with the request echoed in two chunks, `broken` with
    /// a chunk then a failure, and anything else with "waiting to start".
    struct FakeAgent;

    #[tonic::async_trait]
    impl Agent for FakeAgent {
        type LogsStream = LogsStream;

        async fn logs(
            &self,
            request: Request<LogsRequest>,
        ) -> Result<Response<Self::LogsStream>, Status> {
            let r = request.into_inner();
            let chunk = |s: String| {
                Ok(LogChunk {
                    data: s.into_bytes(),
                })
            };
            let items = match r.pod_uid.as_str() {
                "ok" => vec![
                    chunk(format!("{}/{} {}", r.namespace, r.pod, r.container)),
                    chunk(format!(" tail={:?}\n", r.tail_lines)),
                ],
                "broken" => vec![
                    chunk("first\n".into()),
                    Err(Status::unavailable("shutting down")),
                ],
                _ => {
                    return Err(Status::not_found(format!(
                        "container \"{}\" in pod \"{}\" is waiting to start",
                        r.container, r.pod
                    )));
                }
            };
            Ok(Response::new(Box::pin(futures::stream::iter(items))))
        }
    }

    async fn fake_agent() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(AgentServer::new(FakeAgent))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    fn request(uid: &str) -> LogsRequest {
        LogsRequest {
            namespace: "default".into(),
            pod: "web".into(),
            container: "app".into(),
            pod_uid: uid.into(),
            tail_lines: Some(3),
            ..Default::default()
        }
    }

    async fn collect(stream: LogsStream) -> Vec<Result<LogChunk, Status>> {
        tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends")
    }

    #[tokio::test]
    async fn the_agents_stream_is_forwarded_chunk_by_chunk() {
        let addr = fake_agent().await;
        let p = pod(&["app"], &[]);
        let stream = from_agent(&addr, "n1", &p, request("ok"))
            .await
            .expect("opened");
        let data: Vec<Vec<u8>> = collect(stream)
            .await
            .into_iter()
            .map(|c| c.expect("chunk").data)
            .collect();
        assert_eq!(
            data,
            vec![b"default/web app".to_vec(), b" tail=Some(3)\n".to_vec()]
        );
    }

    #[tokio::test]
    async fn a_break_in_the_agents_stream_is_passed_on_as_unavailable() {
        let addr = fake_agent().await;
        let p = pod(&["app"], &[]);
        let stream = from_agent(&addr, "n1", &p, request("broken"))
            .await
            .expect("opened");
        let items = collect(stream).await;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].as_ref().expect("chunk").data, b"first\n");
        let status = items[1].as_ref().expect_err("broken");
        assert_eq!(status.code(), Code::Unavailable);
        let e = ApiError::from_details(status.details()).expect("Corral details");
        assert!(
            matches!(e, ApiError::Unavailable { ref message, .. } if message.contains("node \"n1\"") && message.contains("shutting down")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn an_agent_refusal_reads_like_the_kubelets() {
        let addr = fake_agent().await;
        let mut p = pod(&["app"], &[]);
        p["status"] = json!({"containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}},
        ]});
        let err = from_agent(&addr, "n1", &p, request("new"))
            .await
            .err()
            .expect("refused");
        assert_eq!(
            err,
            bad_request("container \"app\" in pod \"web\" is waiting to start: ContainerCreating")
        );
    }

    #[tokio::test]
    async fn an_unreachable_agent_is_unavailable_and_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let p = pod(&["app"], &[]);
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            from_agent(&addr, "n1", &p, request("ok")),
        )
        .await
        .expect("gives up in time")
        .err()
        .expect("nobody listens");
        let ApiError::Unavailable { message, .. } = &err else {
            panic!("expected Unavailable, got {err:?}")
        };
        assert!(
            message.starts_with(&format!(
                "cannot reach the agent of node \"n1\" at {addr}: "
            )),
            "{message}"
        );
    }
}
