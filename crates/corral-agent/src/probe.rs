//! Liveness, readiness and startup probes, as the kubelet runs them.
//!
//! [`probe_once`] runs one probe of a container (exec, httpGet or tcpSocket) and says whether it
//! passed, with the kubelet's message when it did not. [`spawn_prober`] runs one probe of one
//! container until cancelled: it waits `initialDelaySeconds`, then probes every `periodSeconds`
//! (each attempt bounded by `timeoutSeconds`), applies `successThreshold`/`failureThreshold` and
//! publishes the resulting [`ProbeState`] on a watch channel; every failed attempt is also sent
//! as a [`ProbeEvent`] (the worker records it as an `Unhealthy` event).
//!
//! What the pod worker does with the states (as the kubelet does):
//! - readiness: starts `Failure` (not ready until the probe succeeds); the container is ready
//!   while the state is `Success`.
//! - liveness: starts `Success`; on `Failure` the worker kills and restarts the container and
//!   starts a new prober for the new run. This prober stops probing once it has published
//!   `Failure`.
//! - startup: starts `Unknown`; liveness and readiness probers are started only once it is
//!   `Success`. It stops probing once it has published either `Success` (which then stays) or
//!   `Failure` (the worker restarts the container).
//!
//! Not supported: `grpc` probes and `httpGet` with scheme `HTTPS` (both fail with a message
//! saying so). Redirects are not followed: a 3xx answer counts as success, as the kubelet treats
//! redirects it does not follow.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{ExecAction, HTTPGetAction, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::runtime::{ExecOutput, RuntimeError};

/// The `User-Agent` of HTTP probes, unless the probe's `httpHeaders` set one.
pub const USER_AGENT: &str = "kube-probe/1.34";

/// How much of an HTTP probe's response body is read (the kubelet's limit); the rest is ignored.
const MAX_BODY_BYTES: usize = 10 * 1024;

/// An exec probe's command is killed by the runtime after the probe's timeout; this much more is
/// allowed for the runtime to report it before the prober gives up waiting on its own.
const EXEC_REPORT_GRACE: Duration = Duration::from_secs(1);

/// Which probe of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl fmt::Display for ProbeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        })
    }
}

/// How to reach the container.
#[derive(Clone)]
pub struct ProbeTarget {
    pub pod_ip: IpAddr,
    /// Named container ports (`ports[].name` -> containerPort) for httpGet/tcpSocket named ports.
    pub ports: HashMap<String, u16>,
    /// Runs a command inside the container (the worker wraps Runtime::exec with the container id).
    pub exec: Arc<dyn ExecTarget>,
}

impl fmt::Debug for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeTarget")
            .field("pod_ip", &self.pod_ip)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// Runs a command inside one container (for exec probes).
#[async_trait]
pub trait ExecTarget: Send + Sync {
    /// Runs `argv` in the container, killed after `timeout` (see [`crate::runtime::Runtime::exec`]).
    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput, RuntimeError>;
}

/// The result of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Success,
    /// Carries the kubelet's message text (what follows "Liveness probe failed: ").
    Failure(String),
}

/// The result the worker acts on, after thresholds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeState {
    Unknown,
    Success,
    Failure,
}

/// A failed probe, for an `Unhealthy` event: message like "Liveness probe failed: HTTP probe
/// failed with statuscode: 500".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    pub container: String,
    pub kind: ProbeKind,
    pub message: String,
}

/// A probe's timing and thresholds, with the kubelet's defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProberTiming {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProberTiming {
    /// Defaults: initialDelaySeconds 0, periodSeconds 10, timeoutSeconds 1, successThreshold 1,
    /// failureThreshold 3; values below the minimum (0 for the delay, 1 for the others) take the
    /// minimum. Liveness and startup probes always have successThreshold 1.
    pub fn new(probe: &Probe, kind: ProbeKind) -> Self {
        fn seconds(value: Option<i32>, default: i32, min: i32) -> Duration {
            let secs = value.unwrap_or(default).max(min);
            Duration::from_secs(u64::try_from(secs).unwrap_or(0))
        }
        fn count(value: Option<i32>, default: i32) -> u32 {
            u32::try_from(value.unwrap_or(default)).unwrap_or(1).max(1)
        }
        let success_threshold = match kind {
            ProbeKind::Readiness => count(probe.success_threshold, 1),
            ProbeKind::Liveness | ProbeKind::Startup => 1,
        };
        ProberTiming {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: probe_timeout(probe),
            success_threshold,
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// `timeoutSeconds` (default 1, at least 1).
fn probe_timeout(probe: &Probe) -> Duration {
    let secs = probe.timeout_seconds.unwrap_or(1).max(1);
    Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

/// The state a prober publishes before its first result: readiness is not ready until it
/// succeeds, liveness is healthy until it fails, startup is not known.
pub fn initial_state(kind: ProbeKind) -> ProbeState {
    match kind {
        ProbeKind::Readiness => ProbeState::Failure,
        ProbeKind::Liveness => ProbeState::Success,
        ProbeKind::Startup => ProbeState::Unknown,
    }
}

/// Runs `probe` once against `target`, bounded by its `timeoutSeconds`.
pub async fn probe_once(probe: &Probe, target: &ProbeTarget) -> ProbeOutcome {
    probe_with_timeout(probe, target, probe_timeout(probe)).await
}

/// Runs `probe` once against `target`, bounded by `timeout` instead of `timeoutSeconds`.
/// Handlers are looked at in the kubelet's order: exec, httpGet, tcpSocket, grpc.
pub async fn probe_with_timeout(
    probe: &Probe,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    if let Some(exec) = &probe.exec {
        run_exec(exec, target, timeout).await
    } else if let Some(http) = &probe.http_get {
        run_http(http, target, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        run_tcp(tcp, target, timeout).await
    } else if let Some(grpc) = &probe.grpc {
        ProbeOutcome::Failure(format!(
            "gRPC probes (port {}) are not supported by Corral's prober: use an exec, httpGet \
             or tcpSocket probe",
            grpc.port
        ))
    } else {
        ProbeOutcome::Failure(
            "the probe has no handler: it needs one of exec, httpGet or tcpSocket".to_string(),
        )
    }
}

async fn run_exec(action: &ExecAction, target: &ProbeTarget, timeout: Duration) -> ProbeOutcome {
    let argv = action.command.clone().unwrap_or_default();
    if argv.is_empty() {
        return ProbeOutcome::Failure("the exec probe has an empty command".to_string());
    }
    let joined = argv.join(" ");
    let run = target.exec.exec(&argv, timeout);
    match tokio::time::timeout(timeout + EXEC_REPORT_GRACE, run).await {
        Err(_) => ProbeOutcome::Failure(format!("command {joined:?} timed out")),
        Ok(Err(err)) => ProbeOutcome::Failure(format!("exec of command {joined:?} failed: {err}")),
        Ok(Ok(out)) if out.exit_code == 0 => ProbeOutcome::Success,
        Ok(Ok(out)) => {
            let text = out.output.trim_end();
            if text.trim().is_empty() {
                ProbeOutcome::Failure(format!(
                    "command {joined:?} exited with code {}",
                    out.exit_code
                ))
            } else {
                ProbeOutcome::Failure(text.to_string())
            }
        }
    }
}

async fn run_http(action: &HTTPGetAction, target: &ProbeTarget, timeout: Duration) -> ProbeOutcome {
    let deadline = Instant::now() + timeout;
    let port = match resolve_port(&action.port, &target.ports) {
        Ok(port) => port,
        Err(msg) => return ProbeOutcome::Failure(msg),
    };
    let scheme = action.scheme.as_deref().unwrap_or("HTTP");
    if scheme.eq_ignore_ascii_case("HTTPS") {
        return ProbeOutcome::Failure(format!(
            "HTTPS probes (httpGet port {port}, scheme HTTPS) are not supported by Corral's \
             prober: use scheme HTTP, a tcpSocket or an exec probe"
        ));
    }
    if !scheme.eq_ignore_ascii_case("HTTP") {
        return ProbeOutcome::Failure(format!(
            "unsupported httpGet scheme {scheme:?}: expected HTTP"
        ));
    }
    let host = probe_host(action.host.as_deref(), target.pod_ip);
    let authority = join_host_port(&host, port);
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    let url = format!("http://{authority}{path}");
    let request = match build_request(&path, &authority, action) {
        Ok(req) => req,
        Err(msg) => return ProbeOutcome::Failure(msg),
    };

    let response = match tokio::time::timeout_at(deadline, send(&host, port, &authority, request))
        .await
    {
        Err(_) => {
            return ProbeOutcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting \
                 headers)"
            ));
        }
        Ok(Err(msg)) => return ProbeOutcome::Failure(format!("Get {url:?}: {msg}")),
        Ok(Ok(response)) => response,
    };
    let (status, mut body, _conn) = response;
    let read_body = async {
        let mut read = 0usize;
        while read < MAX_BODY_BYTES {
            match body.frame().await {
                None => break,
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                Some(Err(err)) => return Err(error_chain(&err)),
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, read_body).await {
        Err(_) => {
            return ProbeOutcome::Failure(format!(
                "Get {url:?}: context deadline exceeded (Client.Timeout or context cancellation \
                 while reading body)"
            ));
        }
        Ok(Err(msg)) => {
            return ProbeOutcome::Failure(format!("Get {url:?}: reading the response body: {msg}"));
        }
        Ok(Ok(())) => {}
    }
    let code = status.as_u16();
    if (200..400).contains(&code) {
        ProbeOutcome::Success
    } else {
        // As the kubelet: the message never carries the response body.
        ProbeOutcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
    }
}

/// The GET request of an HTTP probe: the probe's headers, then the kubelet's defaults for those
/// it does not set (`Host`, `User-Agent: kube-probe/1.34`, `Accept: */*`; an empty `Accept` is
/// dropped), and `Connection: close` (probes do not keep connections).
fn build_request(
    path: &str,
    authority: &str,
    action: &HTTPGetAction,
) -> Result<http::Request<Empty<Bytes>>, String> {
    use http::header::{ACCEPT, CONNECTION, HOST, HeaderName, HeaderValue, USER_AGENT as UA};

    let uri: http::Uri = path
        .parse()
        .map_err(|err| format!("invalid httpGet path {path:?}: {err}"))?;
    let mut headers = http::HeaderMap::new();
    for header in action.http_headers.iter().flatten() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| format!("invalid httpGet header name {:?}", header.name))?;
        let value = HeaderValue::from_str(&header.value).map_err(|_| {
            format!(
                "invalid value {:?} of httpGet header {:?}",
                header.value, header.name
            )
        })?;
        headers.append(name, value);
    }
    if !headers.contains_key(HOST) {
        let value = HeaderValue::from_str(authority)
            .map_err(|_| format!("invalid httpGet host {authority:?}"))?;
        headers.insert(HOST, value);
    }
    if !headers.contains_key(UA) {
        headers.insert(UA, HeaderValue::from_static(USER_AGENT));
    }
    match headers.get(ACCEPT) {
        None => {
            headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        }
        Some(value) if value.is_empty() => {
            headers.remove(ACCEPT);
        }
        Some(_) => {}
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));

    let mut request = http::Request::new(Empty::<Bytes>::new());
    *request.method_mut() = http::Method::GET;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The connection task of one HTTP probe, aborted when the probe is done with it (or dropped on
/// a timeout), so a server that never answers leaves nothing behind.
struct ConnTask(tokio::task::JoinHandle<()>);

impl Drop for ConnTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type ProbeResponse = (http::StatusCode, hyper::body::Incoming, ConnTask);

/// Dials, sends the request over HTTP/1.1 with hyper and returns the response head; the body
/// still needs the connection task, which is returned with it.
async fn send(
    host: &str,
    port: u16,
    authority: &str,
    request: http::Request<Empty<Bytes>>,
) -> Result<ProbeResponse, String> {
    let stream = dial(host, port, authority).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| error_chain(&err))?;
    let conn = ConnTask(tokio::spawn(async move {
        // Its errors show up on the request or the body.
        let _ = conn.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| error_chain(&err))?;
    let status = response.status();
    Ok((status, response.into_body(), conn))
}

async fn run_tcp(
    action: &TCPSocketAction,
    target: &ProbeTarget,
    timeout: Duration,
) -> ProbeOutcome {
    let port = match resolve_port(&action.port, &target.ports) {
        Ok(port) => port,
        Err(msg) => return ProbeOutcome::Failure(msg),
    };
    let host = probe_host(action.host.as_deref(), target.pod_ip);
    let authority = join_host_port(&host, port);
    match tokio::time::timeout(timeout, dial(&host, port, &authority)).await {
        Err(_) => ProbeOutcome::Failure(format!("dial tcp {authority}: i/o timeout")),
        Ok(Err(msg)) => ProbeOutcome::Failure(msg),
        Ok(Ok(stream)) => {
            drop(stream);
            ProbeOutcome::Success
        }
    }
}

/// Connects to `host:port` (resolving a name, trying each address in turn), with Go-like error
/// messages: `dial tcp 10.0.0.5:8080: connect: connection refused`.
async fn dial(host: &str, port: u16, authority: &str) -> Result<TcpStream, String> {
    let addrs: Vec<std::net::SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|err| format!("dial tcp: lookup {host}: {}", io_text(&err)))?
            .collect(),
    };
    let mut last = format!("dial tcp: lookup {host}: no such host");
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(err) => last = format!("dial tcp {authority}: connect: {}", io_text(&err)),
        }
    }
    Err(last)
}

/// The probe's `host`, or the pod IP when it has none.
fn probe_host(host: Option<&str>, pod_ip: IpAddr) -> String {
    match host.map(str::trim) {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
        _ => pod_ip.to_string(),
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A probe's port: a number, or the name of one of the container's ports (then, as the kubelet
/// does, a number written as a string).
fn resolve_port(port: &IntOrString, named: &HashMap<String, u16>) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            if let Some(port) = named.get(name) {
                return Ok(*port);
            }
            match name.trim().parse::<i64>() {
                Ok(n) => n,
                Err(_) => {
                    return Err(format!(
                        "port {name:?} not found among the container's named ports"
                    ));
                }
            }
        }
    };
    match u16::try_from(number) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("invalid port number: {number}")),
    }
}

/// An I/O error in the words Go's net package uses for the common cases.
fn io_text(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        ErrorKind::HostUnreachable => "no route to host".to_string(),
        ErrorKind::NetworkUnreachable => "network is unreachable".to_string(),
        ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => err.to_string(),
    }
}

/// An error and its sources, `outer: inner: ...`.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Runs a probe until cancelled: waits initialDelaySeconds, then every periodSeconds runs
/// probe_once with timeoutSeconds, applies successThreshold/failureThreshold, publishes the state.
///
/// The receiver starts at [`initial_state`]. The state changes only after threshold consecutive
/// equal results. Every failed attempt is sent on `events`. A liveness prober stops probing once
/// it has published `Failure`, a startup prober once it has published `Success` or `Failure`;
/// the sender stays alive (the last state stays readable, `changed()` just waits) until `cancel`.
/// Must be called within a Tokio runtime.
pub fn spawn_prober(
    container: String,
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    events: mpsc::UnboundedSender<ProbeEvent>,
    cancel: CancellationToken,
) -> watch::Receiver<ProbeState> {
    let (tx, rx) = watch::channel(initial_state(kind));
    let prober = Prober {
        timing: ProberTiming::new(&probe, kind),
        container,
        kind,
        probe,
        target,
        events,
        state: tx,
    };
    tokio::spawn(async move {
        let finished = cancel.run_until_cancelled(prober.run()).await;
        // Keep the sender until cancelled, so the worker's `changed()` never spins on a closed
        // channel after a prober has finished.
        cancel.cancelled().await;
        drop(finished);
    });
    rx
}

struct Prober {
    container: String,
    kind: ProbeKind,
    probe: Probe,
    timing: ProberTiming,
    target: ProbeTarget,
    events: mpsc::UnboundedSender<ProbeEvent>,
    state: watch::Sender<ProbeState>,
}

impl Prober {
    /// Probes until the probe is done (liveness failed, startup decided). Returns `self` so the
    /// state sender outlives the loop.
    async fn run(self) -> Self {
        tokio::time::sleep(self.timing.initial_delay).await;
        let mut ticker = tokio::time::interval(self.timing.period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        // The last result and how many times in a row it came.
        let mut last: Option<bool> = None;
        let mut run: u32 = 0;
        loop {
            ticker.tick().await;
            let outcome = probe_with_timeout(&self.probe, &self.target, self.timing.timeout).await;
            let success = match outcome {
                ProbeOutcome::Success => true,
                ProbeOutcome::Failure(msg) => {
                    let message = format!("{} probe failed: {msg}", self.kind);
                    tracing::debug!(container = %self.container, "{message}");
                    let _ = self.events.send(ProbeEvent {
                        container: self.container.clone(),
                        kind: self.kind,
                        message,
                    });
                    false
                }
            };
            if last == Some(success) {
                run = run.saturating_add(1);
            } else {
                last = Some(success);
                run = 1;
            }
            let threshold = if success {
                self.timing.success_threshold
            } else {
                self.timing.failure_threshold
            };
            if run < threshold {
                continue;
            }
            let state = if success {
                ProbeState::Success
            } else {
                ProbeState::Failure
            };
            self.state.send_if_modified(|current| {
                if *current == state {
                    false
                } else {
                    *current = state;
                    true
                }
            });
            let done = match self.kind {
                ProbeKind::Liveness => !success,
                ProbeKind::Startup => true,
                ProbeKind::Readiness => false,
            };
            if done {
                return self;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{GRPCAction, HTTPHeader};
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    // ---------- fake exec target ----------

    enum Reply {
        Output(i32, &'static str),
        Error(&'static str),
        Hang,
    }

    #[derive(Default)]
    struct FakeExec {
        /// Replies in order; when empty, `fallback`.
        replies: Mutex<VecDeque<Reply>>,
        fallback_exit: Mutex<i32>,
        calls: Mutex<Vec<(Vec<String>, Duration, Instant)>>,
    }

    impl FakeExec {
        fn new(replies: Vec<Reply>, fallback_exit: i32) -> Arc<Self> {
            Arc::new(FakeExec {
                replies: Mutex::new(replies.into()),
                fallback_exit: Mutex::new(fallback_exit),
                calls: Mutex::default(),
            })
        }
        fn set_fallback(&self, exit: i32) {
            *self.fallback_exit.lock().expect("lock") = exit;
        }
        fn calls(&self) -> Vec<(Vec<String>, Duration, Instant)> {
            self.calls.lock().expect("lock").clone()
        }
        fn call_count(&self) -> usize {
            self.calls.lock().expect("lock").len()
        }
    }

    #[async_trait]
    impl ExecTarget for FakeExec {
        async fn exec(
            &self,
            argv: &[String],
            timeout: Duration,
        ) -> Result<ExecOutput, RuntimeError> {
            self.calls
                .lock()
                .expect("lock")
                .push((argv.to_vec(), timeout, Instant::now()));
            let reply = self.replies.lock().expect("lock").pop_front();
            match reply {
                Some(Reply::Output(exit_code, output)) => Ok(ExecOutput {
                    exit_code,
                    output: output.to_string(),
                }),
                Some(Reply::Error(msg)) => Err(RuntimeError::NotFound(msg.to_string())),
                Some(Reply::Hang) => std::future::pending().await,
                None => Ok(ExecOutput {
                    exit_code: *self.fallback_exit.lock().expect("lock"),
                    output: String::new(),
                }),
            }
        }
    }

    fn target(exec: Arc<FakeExec>) -> ProbeTarget {
        ProbeTarget {
            pod_ip: IpAddr::from([127, 0, 0, 1]),
            ports: HashMap::new(),
            exec,
        }
    }

    fn exec_probe(argv: &[&str]) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(argv.iter().map(|s| s.to_string()).collect()),
            }),
            ..Probe::default()
        }
    }

    fn http_probe(port: IntOrString, path: &str) -> Probe {
        Probe {
            http_get: Some(HTTPGetAction {
                port,
                path: Some(path.to_string()),
                ..HTTPGetAction::default()
            }),
            ..Probe::default()
        }
    }

    fn tcp_probe(port: IntOrString) -> Probe {
        Probe {
            tcp_socket: Some(TCPSocketAction { host: None, port }),
            ..Probe::default()
        }
    }

    fn failure(outcome: ProbeOutcome) -> String {
        match outcome {
            ProbeOutcome::Failure(msg) => msg,
            ProbeOutcome::Success => panic!("expected a failure, got success"),
        }
    }

    // ---------- a tiny HTTP server ----------

    /// Answers every request with `status`, recording each request head. With `status` 0 it
    /// accepts and never answers.
    async fn http_server(status: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    recorded
                        .lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&head).to_string());
                    if status == 0 {
                        std::future::pending::<()>().await;
                    }
                    let body = "some body";
                    let response = format!(
                        "HTTP/1.1 {status} Whatever\r\nLocation: http://elsewhere.example/\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(response.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        (port, seen)
    }

    /// A port on 127.0.0.1 nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        port
    }

    /// A listener whose accept queue is full: connecting to it hangs (Linux drops the SYNs).
    /// Returns the listener (keep it alive), the queued connections, and its port.
    async fn full_listener() -> (tokio::net::TcpListener, Vec<TcpStream>, u16) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut queued = Vec::new();
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => queued.push(stream),
                Ok(Err(err)) => panic!("connect to the full listener failed: {err}"),
                Err(_) => return (listener, queued, addr.port()),
            }
        }
        panic!("the accept queue never filled up");
    }

    // ---------- exec ----------

    #[tokio::test]
    async fn exec_success_passes_argv_and_timeout() {
        let exec = FakeExec::new(vec![Reply::Output(0, "ok\n")], 0);
        let mut probe = exec_probe(&["cat", "/tmp/healthy"]);
        probe.timeout_seconds = Some(7);
        assert_eq!(
            probe_once(&probe, &target(exec.clone())).await,
            ProbeOutcome::Success
        );
        let calls = exec.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            calls[0].0,
            vec!["cat".to_string(), "/tmp/healthy".to_string()]
        );
        assert_eq!(calls[0].1, Duration::from_secs(7));
    }

    #[tokio::test]
    async fn exec_failure_carries_output_or_exit_code() {
        let exec = FakeExec::new(
            vec![
                Reply::Output(1, "cat: /tmp/healthy: No such file or directory\n"),
                Reply::Output(3, "  \n"),
                Reply::Error("c1"),
            ],
            0,
        );
        let probe = exec_probe(&["cat", "/tmp/healthy"]);
        let t = target(exec);
        assert_eq!(
            failure(probe_once(&probe, &t).await),
            "cat: /tmp/healthy: No such file or directory"
        );
        assert_eq!(
            failure(probe_once(&probe, &t).await),
            "command \"cat /tmp/healthy\" exited with code 3"
        );
        let msg = failure(probe_once(&probe, &t).await);
        assert_eq!(
            msg,
            "exec of command \"cat /tmp/healthy\" failed: no container c1"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exec_that_never_returns_times_out() {
        let exec = FakeExec::new(vec![Reply::Hang], 0);
        let probe = exec_probe(&["sleep", "100"]);
        let start = Instant::now();
        assert_eq!(
            failure(probe_once(&probe, &target(exec)).await),
            "command \"sleep 100\" timed out"
        );
        // timeoutSeconds (default 1) plus the runtime's grace.
        assert_eq!(start.elapsed(), Duration::from_secs(1) + EXEC_REPORT_GRACE);
    }

    #[tokio::test]
    async fn exec_with_empty_command_fails() {
        let exec = FakeExec::new(vec![], 0);
        let msg = failure(probe_once(&exec_probe(&[]), &target(exec.clone())).await);
        assert!(msg.contains("empty command"), "{msg}");
        assert_eq!(exec.call_count(), 0);
    }

    // ---------- httpGet ----------

    #[tokio::test]
    async fn http_success_sends_path_headers_and_user_agent() {
        let (port, seen) = http_server(200).await;
        let mut probe = http_probe(IntOrString::Int(port.into()), "/healthz?full=1");
        if let Some(http) = probe.http_get.as_mut() {
            http.http_headers = Some(vec![HTTPHeader {
                name: "X-Custom".to_string(),
                value: "Awesome".to_string(),
            }]);
        }
        let exec = FakeExec::new(vec![], 0);
        assert_eq!(
            probe_once(&probe, &target(exec)).await,
            ProbeOutcome::Success
        );
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen.len(), 1);
        let head = seen[0].to_ascii_lowercase();
        assert!(
            head.starts_with("get /healthz?full=1 http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("user-agent: kube-probe/1.34\r\n"), "{head}");
        assert!(head.contains("x-custom: awesome\r\n"), "{head}");
        assert!(
            head.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{head}"
        );
        assert!(head.contains("accept: */*\r\n"), "{head}");
    }

    #[tokio::test]
    async fn http_status_codes() {
        let exec = FakeExec::new(vec![], 0);
        let t = target(exec);
        for (status, ok) in [(200, true), (204, true), (302, true), (399, true)] {
            let (port, _) = http_server(status).await;
            let outcome = probe_once(&http_probe(IntOrString::Int(port.into()), "/"), &t).await;
            assert_eq!(outcome == ProbeOutcome::Success, ok, "status {status}");
        }
        for status in [404, 500, 503] {
            let (port, _) = http_server(status).await;
            let outcome = probe_once(&http_probe(IntOrString::Int(port.into()), "/"), &t).await;
            assert_eq!(
                failure(outcome),
                format!("HTTP probe failed with statuscode: {status}")
            );
        }
    }

    #[tokio::test]
    async fn http_user_agent_and_host_can_be_overridden() {
        let (port, seen) = http_server(200).await;
        let mut probe = http_probe(IntOrString::Int(port.into()), "healthz");
        if let Some(http) = probe.http_get.as_mut() {
            http.host = Some("127.0.0.1".to_string());
            http.http_headers = Some(vec![
                HTTPHeader {
                    name: "User-Agent".to_string(),
                    value: "mine/2".to_string(),
                },
                HTTPHeader {
                    name: "Host".to_string(),
                    value: "example.test".to_string(),
                },
            ]);
        }
        // The pod IP is unroutable: only the probe's `host` can have answered.
        let mut t = target(FakeExec::new(vec![], 0));
        t.pod_ip = IpAddr::from([192, 0, 2, 1]);
        assert_eq!(probe_once(&probe, &t).await, ProbeOutcome::Success);
        let head = seen.lock().expect("lock")[0].to_ascii_lowercase();
        assert!(head.starts_with("get /healthz http/1.1\r\n"), "{head}");
        assert!(head.contains("user-agent: mine/2\r\n"), "{head}");
        assert!(!head.contains("kube-probe"), "{head}");
        assert!(head.contains("host: example.test\r\n"), "{head}");
    }

    #[tokio::test]
    async fn http_named_port() {
        let (port, seen) = http_server(200).await;
        let mut t = target(FakeExec::new(vec![], 0));
        t.ports.insert("http".to_string(), port);
        let probe = http_probe(IntOrString::String("http".to_string()), "/ready");
        assert_eq!(probe_once(&probe, &t).await, ProbeOutcome::Success);
        assert_eq!(seen.lock().expect("lock").len(), 1);

        // A number written as a string is a port too.
        let probe = http_probe(IntOrString::String(port.to_string()), "/ready");
        assert_eq!(probe_once(&probe, &t).await, ProbeOutcome::Success);

        let probe = http_probe(IntOrString::String("metrics".to_string()), "/");
        assert_eq!(
            failure(probe_once(&probe, &t).await),
            "port \"metrics\" not found among the container's named ports"
        );
        let probe = http_probe(IntOrString::Int(70000), "/");
        assert_eq!(
            failure(probe_once(&probe, &t).await),
            "invalid port number: 70000"
        );
    }

    #[tokio::test]
    async fn http_connection_refused() {
        let port = closed_port().await;
        let t = target(FakeExec::new(vec![], 0));
        let probe = http_probe(IntOrString::Int(port.into()), "/healthz");
        assert_eq!(
            failure(probe_once(&probe, &t).await),
            format!(
                "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            )
        );
    }

    #[tokio::test]
    async fn http_without_answer_times_out() {
        let (port, seen) = http_server(0).await;
        let t = target(FakeExec::new(vec![], 0));
        let probe = http_probe(IntOrString::Int(port.into()), "/slow");
        let start = std::time::Instant::now();
        let msg = failure(probe_with_timeout(&probe, &t, Duration::from_millis(300)).await);
        assert_eq!(
            msg,
            format!(
                "Get \"http://127.0.0.1:{port}/slow\": context deadline exceeded \
                 (Client.Timeout exceeded while awaiting headers)"
            )
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(seen.lock().expect("lock").len(), 1);
    }

    #[tokio::test]
    async fn http_connect_that_hangs_times_out() {
        let (_listener, _queued, port) = full_listener().await;
        let t = target(FakeExec::new(vec![], 0));
        let probe = http_probe(IntOrString::Int(port.into()), "/");
        let msg = failure(probe_with_timeout(&probe, &t, Duration::from_millis(300)).await);
        assert!(msg.contains("context deadline exceeded"), "{msg}");
    }

    #[tokio::test]
    async fn https_and_unknown_schemes_are_refused_clearly() {
        let t = target(FakeExec::new(vec![], 0));
        let mut probe = http_probe(IntOrString::Int(8443), "/");
        if let Some(http) = probe.http_get.as_mut() {
            http.scheme = Some("HTTPS".to_string());
        }
        let msg = failure(probe_once(&probe, &t).await);
        assert!(
            msg.contains("HTTPS probes") && msg.contains("not supported by Corral's prober"),
            "{msg}"
        );
        if let Some(http) = probe.http_get.as_mut() {
            http.scheme = Some("FTP".to_string());
        }
        let msg = failure(probe_once(&probe, &t).await);
        assert!(msg.contains("unsupported httpGet scheme \"FTP\""), "{msg}");
    }

    #[tokio::test]
    async fn http_invalid_header_fails_without_panic() {
        let t = target(FakeExec::new(vec![], 0));
        let mut probe = http_probe(IntOrString::Int(80), "/");
        if let Some(http) = probe.http_get.as_mut() {
            http.http_headers = Some(vec![HTTPHeader {
                name: "bad header".to_string(),
                value: "x".to_string(),
            }]);
        }
        let msg = failure(probe_once(&probe, &t).await);
        assert!(msg.contains("invalid httpGet header name"), "{msg}");
    }

    // ---------- tcpSocket, grpc, none ----------

    #[tokio::test]
    async fn tcp_success_refused_and_named_port() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut t = target(FakeExec::new(vec![], 0));
        t.ports.insert("redis".to_string(), port);
        assert_eq!(
            probe_once(&tcp_probe(IntOrString::Int(port.into())), &t).await,
            ProbeOutcome::Success
        );
        assert_eq!(
            probe_once(&tcp_probe(IntOrString::String("redis".to_string())), &t).await,
            ProbeOutcome::Success
        );
        drop(listener);
        let closed = closed_port().await;
        assert_eq!(
            failure(probe_once(&tcp_probe(IntOrString::Int(closed.into())), &t).await),
            format!("dial tcp 127.0.0.1:{closed}: connect: connection refused")
        );
    }

    #[tokio::test]
    async fn tcp_connect_that_hangs_times_out() {
        let (_listener, _queued, port) = full_listener().await;
        let t = target(FakeExec::new(vec![], 0));
        let probe = tcp_probe(IntOrString::Int(port.into()));
        assert_eq!(
            failure(probe_with_timeout(&probe, &t, Duration::from_millis(300)).await),
            format!("dial tcp 127.0.0.1:{port}: i/o timeout")
        );
    }

    #[tokio::test]
    async fn grpc_and_missing_handler_fail_clearly() {
        let t = target(FakeExec::new(vec![], 0));
        let probe = Probe {
            grpc: Some(GRPCAction {
                port: 9090,
                service: None,
            }),
            ..Probe::default()
        };
        let msg = failure(probe_once(&probe, &t).await);
        assert!(
            msg.contains("gRPC probes") && msg.contains("not supported"),
            "{msg}"
        );
        let msg = failure(probe_once(&Probe::default(), &t).await);
        assert!(msg.contains("no handler"), "{msg}");
    }

    #[test]
    fn helpers() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
        assert_eq!(probe_host(Some("[::1]"), IpAddr::from([1, 2, 3, 4])), "::1");
        assert_eq!(probe_host(Some(""), IpAddr::from([1, 2, 3, 4])), "1.2.3.4");
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &HashMap::new()),
            Err("invalid port number: 0".to_string())
        );
        assert_eq!(ProbeKind::Liveness.to_string(), "Liveness");
        assert_eq!(ProbeKind::Readiness.to_string(), "Readiness");
        assert_eq!(ProbeKind::Startup.to_string(), "Startup");
    }

    // ---------- timing and thresholds ----------

    #[test]
    fn timing_defaults_and_minimums() {
        let t = ProberTiming::new(&Probe::default(), ProbeKind::Readiness);
        assert_eq!(
            t,
            ProberTiming {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
            }
        );
        let probe = Probe {
            initial_delay_seconds: Some(-5),
            period_seconds: Some(0),
            timeout_seconds: Some(0),
            success_threshold: Some(4),
            failure_threshold: Some(0),
            ..Probe::default()
        };
        let t = ProberTiming::new(&probe, ProbeKind::Readiness);
        assert_eq!(t.initial_delay, Duration::ZERO);
        assert_eq!(t.period, Duration::from_secs(1));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!(t.success_threshold, 4);
        assert_eq!(t.failure_threshold, 1);
        assert_eq!(
            ProberTiming::new(&probe, ProbeKind::Liveness).success_threshold,
            1
        );
        assert_eq!(
            ProberTiming::new(&probe, ProbeKind::Startup).success_threshold,
            1
        );
    }

    const DEADLINE: Duration = Duration::from_secs(3600);

    /// Waits (on the paused clock) until the state changes; returns it.
    async fn next_state(rx: &mut watch::Receiver<ProbeState>) -> ProbeState {
        tokio::time::timeout(DEADLINE, rx.changed())
            .await
            .expect("the state did not change in time")
            .expect("the prober dropped its sender");
        rx.borrow_and_update().clone()
    }

    struct Running {
        rx: watch::Receiver<ProbeState>,
        events: mpsc::UnboundedReceiver<ProbeEvent>,
        cancel: CancellationToken,
        exec: Arc<FakeExec>,
        start: Instant,
    }

    fn start(kind: ProbeKind, probe: Probe, exec: Arc<FakeExec>) -> Running {
        let (tx, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let start = Instant::now();
        let rx = spawn_prober(
            "app".to_string(),
            kind,
            probe,
            target(exec.clone()),
            tx,
            cancel.clone(),
        );
        Running {
            rx,
            events,
            cancel,
            exec,
            start,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_starts_failed_and_follows_thresholds() {
        // Succeeds twice, fails three times, then succeeds (fallback).
        let exec = FakeExec::new(
            vec![
                Reply::Output(0, ""),
                Reply::Output(0, ""),
                Reply::Output(1, "down"),
                Reply::Output(1, "down"),
                Reply::Output(1, "down"),
            ],
            0,
        );
        let mut probe = exec_probe(&["check"]);
        probe.period_seconds = Some(5);
        probe.success_threshold = Some(2);
        let mut r = start(ProbeKind::Readiness, probe, exec);
        assert_eq!(*r.rx.borrow(), ProbeState::Failure);

        // Probes at 0 and 5: ready after the second success.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Success);
        assert_eq!(r.start.elapsed(), Duration::from_secs(5));
        // Failures at 10, 15, 20: not ready after the third.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Failure);
        assert_eq!(r.start.elapsed(), Duration::from_secs(20));
        // Successes at 25, 30.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Success);
        assert_eq!(r.start.elapsed(), Duration::from_secs(30));

        let mut messages = Vec::new();
        while let Ok(event) = r.events.try_recv() {
            assert_eq!(event.container, "app");
            assert_eq!(event.kind, ProbeKind::Readiness);
            messages.push(event.message);
        }
        assert_eq!(messages, vec!["Readiness probe failed: down"; 3]);

        // Readiness keeps probing.
        let before = r.exec.call_count();
        tokio::time::sleep(Duration::from_secs(52)).await;
        assert_eq!(r.exec.call_count(), before + 10);
        r.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_fails_after_threshold_then_stops() {
        let exec = FakeExec::new(
            vec![
                Reply::Output(1, "a"),
                Reply::Output(0, ""),
                Reply::Output(1, "b"),
                Reply::Output(1, "c"),
            ],
            1,
        );
        let mut probe = exec_probe(&["check"]);
        probe.success_threshold = Some(3); // treated as 1
        let mut r = start(ProbeKind::Liveness, probe, exec);
        assert_eq!(*r.rx.borrow(), ProbeState::Success);

        // Default period 10: fail 0, succeed 10, fail 20, 30, 40 -> Failure at 40.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Failure);
        assert_eq!(r.start.elapsed(), Duration::from_secs(40));
        assert_eq!(r.exec.call_count(), 5);
        // Every call got the default timeout.
        assert!(r.exec.calls().iter().all(|c| c.1 == Duration::from_secs(1)));

        let events: Vec<String> = std::iter::from_fn(|| r.events.try_recv().ok())
            .map(|e| e.message)
            .collect();
        assert_eq!(
            events,
            vec![
                "Liveness probe failed: a",
                "Liveness probe failed: b",
                "Liveness probe failed: c",
                "Liveness probe failed: command \"check\" exited with code 1",
            ]
        );

        // No more probes once the failure is published, and the state stays readable.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(r.exec.call_count(), 5);
        assert_eq!(*r.rx.borrow(), ProbeState::Failure);
        // The sender lives until cancelled.
        assert!(r.rx.has_changed().is_ok());
        r.cancel.cancel();
        let closed = tokio::time::timeout(DEADLINE, r.rx.changed()).await;
        assert!(matches!(closed, Ok(Err(_))), "the sender should be dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_success_threshold_is_one() {
        // A liveness probe that fails twice, succeeds once, then fails again three times must
        // count the single success as resetting the failure run.
        let exec = FakeExec::new(
            vec![
                Reply::Output(1, "x"),
                Reply::Output(1, "x"),
                Reply::Output(0, ""),
            ],
            1,
        );
        let mut probe = exec_probe(&["check"]);
        probe.period_seconds = Some(1);
        let mut r = start(ProbeKind::Liveness, probe, exec);
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Failure);
        assert_eq!(r.start.elapsed(), Duration::from_secs(5));
        r.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn startup_starts_unknown_succeeds_and_stops() {
        let exec = FakeExec::new(
            vec![Reply::Output(1, "starting"), Reply::Output(1, "starting")],
            0,
        );
        let mut probe = exec_probe(&["check"]);
        probe.period_seconds = Some(2);
        probe.failure_threshold = Some(30);
        probe.initial_delay_seconds = Some(7);
        let mut r = start(ProbeKind::Startup, probe, exec);
        assert_eq!(*r.rx.borrow(), ProbeState::Unknown);

        // Probes at 7, 9, 11: success at the third.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Success);
        assert_eq!(r.start.elapsed(), Duration::from_secs(11));
        let calls = r.exec.calls();
        assert_eq!(calls[0].2 - r.start, Duration::from_secs(7));

        // It stops; Success stays even though the command would now fail.
        r.exec.set_fallback(1);
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(r.exec.call_count(), 3);
        assert_eq!(*r.rx.borrow(), ProbeState::Success);
        r.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn startup_fails_after_threshold_and_stops() {
        let exec = FakeExec::new(vec![], 1);
        let mut probe = exec_probe(&["check"]);
        probe.period_seconds = Some(1);
        probe.failure_threshold = Some(4);
        let mut r = start(ProbeKind::Startup, probe, exec);
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Failure);
        assert_eq!(r.start.elapsed(), Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(r.exec.call_count(), 4);
        r.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn slow_exec_counts_as_failure_by_timeout() {
        let exec = FakeExec::new(vec![Reply::Hang], 0);
        let mut probe = exec_probe(&["check"]);
        probe.failure_threshold = Some(1);
        probe.timeout_seconds = Some(2);
        let mut r = start(ProbeKind::Readiness, probe, exec);
        // Already Failure: the first result (a timeout) changes nothing visible...
        let event = tokio::time::timeout(DEADLINE, r.events.recv())
            .await
            .expect("an event in time")
            .expect("an event");
        assert_eq!(
            event.message,
            "Readiness probe failed: command \"check\" timed out"
        );
        // ...and the next probe (period 10) succeeds.
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Success);
        assert_eq!(r.start.elapsed(), Duration::from_secs(10));
        r.cancel.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_stops_probing() {
        let exec = FakeExec::new(vec![], 0);
        let mut probe = exec_probe(&["check"]);
        probe.period_seconds = Some(1);
        let mut r = start(ProbeKind::Readiness, probe, exec);
        assert_eq!(next_state(&mut r.rx).await, ProbeState::Success);
        r.cancel.cancel();
        let closed = tokio::time::timeout(DEADLINE, r.rx.changed()).await;
        assert!(matches!(closed, Ok(Err(_))), "the sender should be dropped");
        let calls = r.exec.call_count();
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(r.exec.call_count(), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_during_initial_delay() {
        let exec = FakeExec::new(vec![], 0);
        let mut probe = exec_probe(&["check"]);
        probe.initial_delay_seconds = Some(30);
        let r = start(ProbeKind::Liveness, probe, exec);
        tokio::time::sleep(Duration::from_secs(10)).await;
        r.cancel.cancel();
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(r.exec.call_count(), 0);
    }
}
