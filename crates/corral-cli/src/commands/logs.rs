//! `corralctl logs POD [CONTAINER] [-c C] [-f] [-p|--previous] [--tail N]`: a container's log,
//! written to standard output as it arrives (the server proxies it from the pod's node).

use corral_client::LogsOptions;
use futures::StreamExt;

use crate::args::LogsArgs;
use crate::commands::{Ctx, resolve_kind};
use crate::error::CliError;

pub async fn run(ctx: &mut Ctx<'_>, args: &LogsArgs) -> Result<(), CliError> {
    let pod = pod_name(&args.pod)?;
    let options = options(args)?;
    let mut stream = ctx.client.logs(&ctx.namespace, &pod, &options).await?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        ctx.out.write_all(&chunk).map_err(CliError::Output)?;
        ctx.out.flush().map_err(CliError::Output)?;
    }
    Ok(())
}

/// `NAME`, or `pod/NAME` (any spelling of the pod kind).
pub fn pod_name(arg: &str) -> Result<String, CliError> {
    let Some((kind, name)) = arg.split_once('/') else {
        return if arg.is_empty() {
            Err(CliError::Usage("a pod name is required".into()))
        } else {
            Ok(arg.to_string())
        };
    };
    let info = resolve_kind(kind)?;
    if info.kind != "Pod" {
        return Err(CliError::Usage(format!(
            "logs are read from pods only: name a pod (NAME or pod/NAME), not \"{arg}\""
        )));
    }
    if name.is_empty() || name.contains('/') {
        return Err(CliError::Usage(format!(
            "arguments in resource/name form must have a single resource and name (\"{arg}\")"
        )));
    }
    Ok(name.to_string())
}

/// The client's options for `args`, with kubectl's checks.
pub fn options(args: &LogsArgs) -> Result<LogsOptions, CliError> {
    let container = match (&args.container, &args.container_arg) {
        (Some(flag), Some(inline)) if flag != inline => {
            return Err(CliError::Usage(
                "only one of -c or an inline [CONTAINER] arg is allowed".into(),
            ));
        }
        (Some(c), _) | (None, Some(c)) => Some(c.clone()),
        (None, None) => None,
    };
    let tail_lines = match args.tail {
        -1 => None,
        n if n < -1 => {
            return Err(CliError::Usage(
                "--tail must be greater than or equal to -1".into(),
            ));
        }
        n => Some(n),
    };
    Ok(LogsOptions {
        container,
        follow: args.follow,
        previous: args.previous,
        tail_lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pod: &str) -> LogsArgs {
        LogsArgs {
            pod: pod.into(),
            container_arg: None,
            container: None,
            follow: false,
            previous: false,
            tail: -1,
        }
    }

    #[test]
    fn a_pod_is_named_plainly_or_as_pod_slash_name() {
        for arg in ["web-0", "pod/web-0", "pods/web-0", "po/web-0"] {
            assert_eq!(pod_name(arg).expect(arg), "web-0");
        }
        for bad in ["", "pod/", "pod/a/b"] {
            assert!(matches!(pod_name(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
        let err = pod_name("deploy/web").expect_err("not a pod");
        assert!(err.to_string().contains("pods only"), "{err}");
        assert_eq!(
            pod_name("widget/x").expect_err("unknown kind").to_string(),
            "error: the server doesn't have a resource type \"widget\""
        );
    }

    #[test]
    fn the_container_comes_from_the_flag_or_the_second_argument() {
        assert_eq!(
            options(&args("web")).expect("valid"),
            LogsOptions::default()
        );
        let a = LogsArgs {
            container_arg: Some("app".into()),
            ..args("web")
        };
        assert_eq!(
            options(&a).expect("valid").container.as_deref(),
            Some("app")
        );
        let a = LogsArgs {
            container: Some("app".into()),
            container_arg: Some("app".into()),
            ..args("web")
        };
        assert_eq!(
            options(&a).expect("valid").container.as_deref(),
            Some("app")
        );
        let a = LogsArgs {
            container: Some("app".into()),
            container_arg: Some("sidecar".into()),
            ..args("web")
        };
        assert!(matches!(options(&a), Err(CliError::Usage(_))));
    }

    #[test]
    fn tail_minus_one_means_everything_and_below_is_refused() {
        let with_tail = |tail| LogsArgs {
            tail,
            ..args("web")
        };
        assert_eq!(options(&with_tail(-1)).expect("valid").tail_lines, None);
        assert_eq!(options(&with_tail(0)).expect("valid").tail_lines, Some(0));
        assert_eq!(options(&with_tail(20)).expect("valid").tail_lines, Some(20));
        assert_eq!(
            options(&with_tail(-2)).expect_err("refused").to_string(),
            "error: --tail must be greater than or equal to -1"
        );
        let a = LogsArgs {
            follow: true,
            previous: true,
            ..args("web")
        };
        let o = options(&a).expect("valid");
        assert!(o.follow && o.previous);
    }

    mod against_a_server {
        use corral_api::ApiError;
        use corral_proto::v1 as pb;
        use futures::stream::BoxStream;
        use tonic::{Request, Response, Status};

        use super::super::*;
        use crate::{Cli, run as run_cli};
        use clap::Parser;

        /// An API server whose `Logs` echoes the request, then ends (pod `web`), breaks (pod
        /// `flaky`) or refuses (any other pod); every other call is unimplemented.
        struct FakeApi;

        type Unary<T> = Result<Response<T>, Status>;

        fn status_of(e: &ApiError, code: tonic::Code) -> Status {
            Status::with_details(code, e.to_string(), e.to_details().into())
        }

        #[tonic::async_trait]
        impl pb::api_server::Api for FakeApi {
            async fn create(&self, _: Request<pb::CreateRequest>) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("create"))
            }
            async fn get(&self, _: Request<pb::GetRequest>) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("get"))
            }
            async fn list(&self, _: Request<pb::ListRequest>) -> Unary<pb::ListResponse> {
                Err(Status::unimplemented("list"))
            }
            async fn update(&self, _: Request<pb::UpdateRequest>) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("update"))
            }
            async fn update_status(
                &self,
                _: Request<pb::UpdateRequest>,
            ) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("update_status"))
            }
            async fn patch(&self, _: Request<pb::PatchRequest>) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("patch"))
            }
            async fn delete(&self, _: Request<pb::DeleteRequest>) -> Unary<pb::ObjectResponse> {
                Err(Status::unimplemented("delete"))
            }
            type WatchStream = BoxStream<'static, Result<pb::WatchEvent, Status>>;
            async fn watch(&self, _: Request<pb::WatchRequest>) -> Unary<Self::WatchStream> {
                Err(Status::unimplemented("watch"))
            }
            async fn bind(&self, _: Request<pb::BindRequest>) -> Unary<pb::BindResponse> {
                Err(Status::unimplemented("bind"))
            }
            type LogsStream = BoxStream<'static, Result<pb::LogChunk, Status>>;
            async fn logs(&self, req: Request<pb::LogsRequest>) -> Unary<Self::LogsStream> {
                let r = req.into_inner();
                let echo = format!(
                    "ns={} pod={} container={} follow={} previous={} tail={:?}\n",
                    r.namespace, r.pod, r.container, r.follow, r.previous, r.tail_lines
                );
                let mut items = vec![
                    Ok(pb::LogChunk {
                        data: echo.into_bytes(),
                    }),
                    Ok(pb::LogChunk {
                        data: b"partial line, then ".to_vec(),
                    }),
                ];
                match r.pod.as_str() {
                    "web" => items.push(Ok(pb::LogChunk {
                        data: b"the end\n".to_vec(),
                    })),
                    "flaky" => items.push(Err(status_of(
                        &ApiError::unavailable("the log stream from node n1 broke", None),
                        tonic::Code::Unavailable,
                    ))),
                    _ => {
                        let e = ApiError::bad_request(format!(
                            "a container name must be specified for pod {}, choose one of: [a b]",
                            r.pod
                        ));
                        return Err(status_of(&e, tonic::Code::InvalidArgument));
                    }
                }
                Ok(Response::new(Box::pin(futures::stream::iter(items))))
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

        async fn corralctl(addr: &str, args: &[&str]) -> (Result<(), CliError>, String) {
            let argv = ["corralctl", "--server", addr]
                .into_iter()
                .chain(args.iter().copied());
            let cli = Cli::try_parse_from(argv).expect("parses");
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let result = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                run_cli(&cli, &mut out, &mut err, &mut std::io::empty()),
            )
            .await
            .expect("corralctl finishes");
            (result, String::from_utf8(out).expect("utf-8"))
        }

        #[tokio::test]
        async fn the_log_goes_to_stdout_byte_for_byte() {
            let addr = fake_server().await;
            let (result, out) = corralctl(
                &addr,
                &[
                    "logs", "pod/web", "-n", "prod", "-c", "app", "-f", "--tail", "5",
                ],
            )
            .await;
            result.expect("succeeds");
            assert_eq!(
                out,
                "ns=prod pod=web container=app follow=true previous=false tail=Some(5)\n\
                 partial line, then the end\n"
            );
            let (result, out) = corralctl(&addr, &["logs", "web", "--previous"]).await;
            result.expect("succeeds");
            assert!(
                out.starts_with(
                    "ns=default pod=web container= follow=false previous=true tail=None\n"
                ),
                "{out}"
            );
        }

        #[tokio::test]
        async fn a_refusal_is_one_kubectl_line() {
            let addr = fake_server().await;
            let (result, out) = corralctl(&addr, &["logs", "two"]).await;
            assert_eq!(out, "");
            assert_eq!(
                result.expect_err("refused").to_string(),
                "Error from server (BadRequest): a container name must be specified for pod two, choose one of: [a b]"
            );
        }

        #[tokio::test]
        async fn a_broken_stream_keeps_what_arrived_and_fails() {
            let addr = fake_server().await;
            let (result, out) = corralctl(&addr, &["logs", "flaky"]).await;
            assert!(out.ends_with("partial line, then "), "{out}");
            let line = result.expect_err("broken").to_string();
            assert!(line.contains("the log stream from node n1 broke"), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }
}
