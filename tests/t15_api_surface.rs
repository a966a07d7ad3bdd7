//! What operators poke at: gRPC health and reflection (what grpcurl uses), `/healthz`, `/readyz`
//! and `/metrics` with API latency by method.

use std::time::Duration;

use corral_tests::{TestCluster, config_map, eventually, http_get, metric};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_and_metrics_answer_like_a_kubernetes_operator_expects() {
    let c = TestCluster::start(1, &[]);
    c.leader(T).await;
    let s = &c.servers[0];

    let (code, body) = http_get(&s.http, "/healthz").await.expect("healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_get(&s.http, "/readyz").await.expect("readyz");
    assert_eq!(code, 200, "{body}");

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.api))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "corral.v1.Api".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(health.status, ServingStatus::Serving as i32);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = stream
        .message()
        .await
        .expect("answer")
        .expect("one message");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list, got {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "corral.v1.Api",
        "corral.v1.Cluster",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    c.client()
        .create(&config_map("default", "m", "1"))
        .await
        .expect("create");
    let term = metric(&s.http, "corral_raft_term").await.expect("term");
    assert!(term >= 1.0);
    let creates = eventually("the Create latency histogram", T, || async {
        let n = metric(
            &s.http,
            "corral_api_request_duration_seconds_count{method=\"Create\",code=\"OK\"}",
        )
        .await?;
        if n >= 1.0 {
            Ok(n)
        } else {
            Err(format!("count {n}"))
        }
    })
    .await;
    assert!(creates >= 1.0);
}
