//! The agent's `Agent.Logs` gRPC service: a container's log, read from the files the runtime keeps
//! on the node (`<root>/pods/<pod-uid>/logs/<container>/<restart-count>.log`, one per run; see
//! [`crate::runtime`]), or streamed from the runtime itself when it keeps the logs (docker: the
//! engine's, [`Runtime::logs`]).
//!
//! - The current run is the highest-numbered file; `previous` is the one before it.
//! - `tail_lines` starts at the last N lines (a final newline does not start another line).
//! - `follow` keeps reading what is appended (polling every [`POLL`]) until that run has exited
//!   (the runtime says so, or a later run has started, or the runtime no longer knows it) and the
//!   file is drained, or the client goes away.
//!
//! The API server fills in `pod_uid` and `container` before it proxies a request here; the pod's
//! namespace and name are only used in messages. Errors are statuses with kubectl's wording:
//! `NotFound` when there is no such log, `InvalidArgument` for a malformed request.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::v1::agent_server::{Agent, AgentServer};
use corral_proto::v1::{LogChunk, LogsRequest};
use futures::Stream;
use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::runtime::{LogBytes, LogQuery, Runtime, RuntimeError, pod_dir};

/// Largest chunk of log sent in one message.
pub const MAX_CHUNK: usize = 64 * 1024;

/// How often a followed file is read again once it has nothing new.
pub const POLL: Duration = Duration::from_millis(100);

/// How often, at most, a follower asks the runtime whether its run still runs.
const STATE_CHECK: Duration = Duration::from_millis(500);

/// How long a run the runtime has never reported may stay unknown before following ends (the log
/// file is created a moment before the runtime lists the run it belongs to).
const UNKNOWN_GRACE: Duration = Duration::from_secs(2);

/// Chunks waiting for a slow client.
const QUEUE: usize = 8;

pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogChunk, Status>> + Send>>;

/// Serves `Agent.Logs` over the log files under `root` (the agent's `--data-dir`).
#[derive(Clone)]
pub struct LogService {
    root: PathBuf,
    runtime: Arc<dyn Runtime>,
}

impl LogService {
    pub fn new(root: impl Into<PathBuf>, runtime: Arc<dyn Runtime>) -> Self {
        Self {
            root: root.into(),
            runtime,
        }
    }

    /// The gRPC service to add to the agent's server.
    pub fn server(self) -> AgentServer<LogService> {
        AgentServer::new(self)
    }

    /// Checks the request, finds the run's file and opens it at the requested place; then streams
    /// it from a task of its own.
    async fn open(&self, req: LogsRequest) -> Result<LogStream, Status> {
        check_request(&req)?;
        let query = LogQuery {
            pod_uid: req.pod_uid.clone(),
            pod: req.pod.clone(),
            container: req.container.clone(),
            previous: req.previous,
            follow: req.follow,
            tail_lines: req.tail_lines.and_then(|n| u64::try_from(n).ok()),
        };
        if let Some(from_runtime) = self.runtime.logs(&query).await {
            let bytes = from_runtime.map_err(|e| match e {
                RuntimeError::NotFound(m) => Status::not_found(m),
                other => Status::internal(other.to_string()),
            })?;
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(pump_runtime(bytes, tx));
            return Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)));
        }
        let run = self.locate(&req).await?;
        let path = run.dir.join(format!("{}.log", run.number));
        let mut file = File::open(&path).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                // Removed between listing and opening: the pod is going away.
                Status::not_found(format!(
                    "the log of container \"{}\" in pod \"{}\" is gone",
                    req.container, req.pod
                ))
            } else {
                Status::internal(format!("cannot open {}: {e}", path.display()))
            }
        })?;
        if let Some(n) = req.tail_lines {
            let n = u64::try_from(n).unwrap_or(0);
            let offset = tail_offset(&mut file, n)
                .await
                .map_err(|e| Status::internal(format!("cannot read {}: {e}", path.display())))?;
            file.seek(SeekFrom::Start(offset))
                .await
                .map_err(|e| Status::internal(format!("cannot read {}: {e}", path.display())))?;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let follow = req.follow.then(|| Follow {
            runtime: self.runtime.clone(),
            pod_uid: req.pod_uid.clone(),
            container: req.container.clone(),
            dir: run.dir.clone(),
            number: run.number,
        });
        tokio::spawn(pump(file, path, tx, follow));
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// The directory of the container's logs and the number of the run the request asks for.
    async fn locate(&self, req: &LogsRequest) -> Result<Run, Status> {
        check_request(req)?;
        let dir = pod_dir(&self.root, &req.pod_uid)
            .join("logs")
            .join(&req.container);
        let runs = runs_in(&dir)
            .await
            .map_err(|e| Status::internal(format!("cannot list {}: {e}", dir.display())))?;
        let Some(current) = runs.last().copied() else {
            return Err(Status::not_found(format!(
                "container \"{}\" in pod \"{}\" is waiting to start",
                req.container, req.pod
            )));
        };
        let number = if req.previous {
            runs.iter().rev().nth(1).copied().ok_or_else(|| {
                Status::not_found(format!(
                    "previous terminated container \"{}\" in pod \"{}\" not found",
                    req.container, req.pod
                ))
            })?
        } else {
            current
        };
        Ok(Run { dir, number })
    }
}

#[tonic::async_trait]
impl Agent for LogService {
    type LogsStream = LogStream;

    async fn logs(
        &self,
        request: Request<LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        self.open(request.into_inner()).await.map(Response::new)
    }
}

/// One run's log: `<dir>/<number>.log`.
struct Run {
    dir: PathBuf,
    number: u32,
}

/// The pod uid and container name are names; `tail_lines` is not negative.
fn check_request(req: &LogsRequest) -> Result<(), Status> {
    check_component("pod_uid", &req.pod_uid)?;
    check_component("container", &req.container)?;
    if req.tail_lines.is_some_and(|n| n < 0) {
        return Err(Status::invalid_argument(format!(
            "tailLines must be greater than or equal to 0, not {}",
            req.tail_lines.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Forwards a runtime's log stream in chunks of at most [`MAX_CHUNK`], until it ends or the
/// receiver goes away.
async fn pump_runtime(mut bytes: LogBytes, tx: mpsc::Sender<Result<LogChunk, Status>>) {
    use futures::StreamExt;
    loop {
        let next = tokio::select! {
            n = bytes.next() => n,
            _ = tx.closed() => return,
        };
        match next {
            None => return,
            Some(Ok(data)) => {
                for piece in data.chunks(MAX_CHUNK) {
                    let chunk = LogChunk {
                        data: piece.to_vec(),
                    };
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                return;
            }
        }
    }
}

/// A name that becomes one path component: not empty, no separators, not `.` or `..`.
fn check_component(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    if value == "." || value == ".." || value.contains(['/', '\\', '\0']) {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} is not a valid name"
        )));
    }
    Ok(())
}

/// The run numbers that have a log file in `dir`, in ascending order (none when `dir` is missing).
async fn runs_in(dir: &Path) -> std::io::Result<Vec<u32>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut runs = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        runs.push(number);
    }
    runs.sort_unstable();
    Ok(runs)
}

/// The offset where the last `n` lines of `file` begin (a newline ending the file does not start
/// a line of its own). Reads backwards from the end in blocks.
async fn tail_offset(file: &mut File, n: u64) -> std::io::Result<u64> {
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut end = len;
    let mut seen = 0u64;
    while end > 0 {
        let start = end.saturating_sub(MAX_CHUNK as u64);
        let size = usize::try_from(end - start).unwrap_or(MAX_CHUNK);
        let block = &mut buf[..size];
        file.seek(SeekFrom::Start(start)).await?;
        file.read_exact(block).await?;
        for (i, byte) in block.iter().enumerate().rev() {
            let at = start + i as u64;
            if *byte != b'\n' || at + 1 == len {
                continue;
            }
            seen += 1;
            if seen == n {
                return Ok(at + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// What a follower needs to tell whether its run is over.
struct Follow {
    runtime: Arc<dyn Runtime>,
    pod_uid: String,
    container: String,
    dir: PathBuf,
    number: u32,
}

/// Whether a followed run is over, as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunState {
    Running,
    Over,
    /// The runtime does not know the run (yet, or any more).
    Unknown,
}

impl Follow {
    async fn state(&self) -> RunState {
        // A later run means this one has ended, whatever the runtime still says.
        if let Ok(runs) = runs_in(&self.dir).await
            && runs.last().is_some_and(|last| *last > self.number)
        {
            return RunState::Over;
        }
        match self.runtime.list().await {
            Ok(list) => match list.iter().find(|c| {
                c.pod_uid == self.pod_uid
                    && c.name == self.container
                    && c.restart_count == self.number
            }) {
                Some(c) if c.is_running() => RunState::Running,
                Some(_) => RunState::Over,
                None => RunState::Unknown,
            },
            Err(e) => {
                tracing::warn!(pod_uid = %self.pod_uid, container = %self.container, error = %e, "cannot list containers while following a log");
                RunState::Running
            }
        }
    }
}

/// Sends `file` from its current position in chunks of at most [`MAX_CHUNK`]; with `follow`, keeps
/// going until the run is over and the file drained. Returns early when the receiver is dropped.
async fn pump(
    mut file: File,
    path: PathBuf,
    tx: mpsc::Sender<Result<LogChunk, Status>>,
    follow: Option<Follow>,
) {
    let mut buf = vec![0u8; MAX_CHUNK];
    let mut last_check: Option<Instant> = None;
    let mut seen_running = false;
    let mut unknown_since: Option<Instant> = None;
    // Set once the run is over: one more read after a pause drains what its last writes left.
    let mut over = false;
    loop {
        let read = tokio::select! {
            r = file.read(&mut buf) => r,
            _ = tx.closed() => return,
        };
        match read {
            Ok(0) => {}
            Ok(n) => {
                let chunk = LogChunk {
                    data: buf[..n].to_vec(),
                };
                if tx.send(Ok(chunk)).await.is_err() {
                    return;
                }
                continue;
            }
            Err(e) => {
                let _ = tx
                    .send(Err(Status::internal(format!(
                        "cannot read {}: {e}",
                        path.display()
                    ))))
                    .await;
                return;
            }
        }
        // At the end of what is written so far.
        let Some(follow) = &follow else { return };
        if over {
            return;
        }
        if last_check.is_none_or(|t| t.elapsed() >= STATE_CHECK) {
            last_check = Some(Instant::now());
            match follow.state().await {
                RunState::Running => {
                    seen_running = true;
                    unknown_since = None;
                }
                RunState::Over => over = true,
                RunState::Unknown => {
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    over = seen_running || since.elapsed() >= UNKNOWN_GRACE;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use async_trait::async_trait;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    use super::*;
    use crate::runtime::{
        ContainerInfo, ContainerSpec, ContainerState, ExecOutput, RuntimeError, log_path,
    };

    const UID: &str = "0b1c2d3e-uid";

    /// A runtime that only lists the runs a test sets.
    #[derive(Default)]
    struct FakeRuntime {
        runs: Mutex<Vec<ContainerInfo>>,
    }

    impl FakeRuntime {
        fn set(&self, name: &str, restart_count: u32, running: bool) {
            let started_at = SystemTime::now();
            let state = if running {
                ContainerState::Running { started_at }
            } else {
                ContainerState::Exited {
                    started_at,
                    finished_at: SystemTime::now(),
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".into(),
                }
            };
            let mut runs = self.runs.lock().expect("not poisoned");
            runs.retain(|c| !(c.name == name && c.restart_count == restart_count));
            runs.push(ContainerInfo {
                id: format!("fake://{UID}/{name}/{restart_count}"),
                pod_uid: UID.into(),
                name: name.into(),
                restart_count,
                image: "busybox".into(),
                state,
            });
        }

        fn forget_all(&self) {
            self.runs.lock().expect("not poisoned").clear();
        }
    }

    fn unused() -> RuntimeError {
        RuntimeError::Other("not used by the log service".into())
    }

    #[async_trait]
    impl Runtime for FakeRuntime {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn capabilities(&self) -> Vec<String> {
            Vec::new()
        }
        async fn start(&self, _spec: &ContainerSpec) -> Result<ContainerInfo, RuntimeError> {
            Err(unused())
        }
        async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
            Ok(self.runs.lock().expect("not poisoned").clone())
        }
        async fn inspect(&self, _id: &str) -> Result<Option<ContainerInfo>, RuntimeError> {
            Err(unused())
        }
        async fn stop(&self, _id: &str, _grace: Duration) -> Result<(), RuntimeError> {
            Err(unused())
        }
        async fn remove(&self, _id: &str) -> Result<(), RuntimeError> {
            Err(unused())
        }
        async fn remove_pod(&self, _pod_uid: &str) -> Result<(), RuntimeError> {
            Err(unused())
        }
        async fn exec(
            &self,
            _id: &str,
            _argv: &[String],
            _timeout: Duration,
        ) -> Result<ExecOutput, RuntimeError> {
            Err(unused())
        }
        fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
            crate::runtime::Changes::default().subscribe()
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        root: PathBuf,
        runtime: Arc<FakeRuntime>,
        service: LogService,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let runtime = Arc::new(FakeRuntime::default());
        let service = LogService::new(root.clone(), runtime.clone());
        Fixture {
            _dir: dir,
            root,
            runtime,
            service,
        }
    }

    impl Fixture {
        fn write(&self, container: &str, run: u32, text: &[u8]) -> PathBuf {
            let path = log_path(&self.root, UID, container, run);
            std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
            std::fs::write(&path, text).expect("write log");
            path
        }

        async fn open(&self, req: LogsRequest) -> Result<LogStream, Status> {
            self.service
                .logs(Request::new(req))
                .await
                .map(Response::into_inner)
        }

        /// The whole stream, within a deadline.
        async fn read_all(&self, req: LogsRequest) -> Result<Vec<Vec<u8>>, Status> {
            let stream = self.open(req).await?;
            let chunks = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
                .await
                .expect("the stream ends");
            chunks
                .into_iter()
                .map(|c| c.map(|c| c.data))
                .collect::<Result<Vec<_>, _>>()
        }

        async fn text(&self, req: LogsRequest) -> Result<String, Status> {
            let chunks = self.read_all(req).await?;
            Ok(String::from_utf8(chunks.concat()).expect("utf-8 log"))
        }
    }

    fn request(container: &str) -> LogsRequest {
        LogsRequest {
            namespace: "default".into(),
            pod: "web".into(),
            container: container.into(),
            pod_uid: UID.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_current_run_is_the_highest_numbered_file() {
        let f = fixture();
        f.write("app", 0, b"first run\n");
        f.write("app", 1, b"second run\n");
        f.write("app", 10, b"eleventh run\n");
        f.write("other", 20, b"another container\n");
        assert_eq!(f.text(request("app")).await.expect("log"), "eleventh run\n");
    }

    #[tokio::test]
    async fn previous_is_the_run_before_the_current_one() {
        let f = fixture();
        f.write("app", 0, b"first run\n");
        f.write("app", 2, b"third run\n");
        f.write("app", 3, b"fourth run\n");
        let req = LogsRequest {
            previous: true,
            ..request("app")
        };
        assert_eq!(f.text(req).await.expect("log"), "third run\n");
    }

    #[tokio::test]
    async fn previous_of_a_first_run_is_not_found_in_kubectls_words() {
        let f = fixture();
        f.write("app", 0, b"only run\n");
        let req = LogsRequest {
            previous: true,
            ..request("app")
        };
        let status = f.open(req).await.err().expect("no previous run");
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(
            status.message(),
            "previous terminated container \"app\" in pod \"web\" not found"
        );
    }

    #[tokio::test]
    async fn a_container_without_a_log_yet_is_waiting_to_start() {
        let f = fixture();
        // No directory for the pod at all, then a directory with no run in it.
        for _ in 0..2 {
            let status = f.open(request("app")).await.err().expect("no log yet");
            assert_eq!(status.code(), tonic::Code::NotFound);
            assert_eq!(
                status.message(),
                "container \"app\" in pod \"web\" is waiting to start"
            );
            let dir = pod_dir(&f.root, UID).join("logs").join("app");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("notes.txt"), "not a run").expect("write");
        }
    }

    #[tokio::test]
    async fn malformed_requests_are_invalid_arguments() {
        let f = fixture();
        f.write("app", 0, b"x\n");
        let cases = [
            LogsRequest {
                pod_uid: "../../etc".into(),
                ..request("app")
            },
            LogsRequest {
                pod_uid: String::new(),
                ..request("app")
            },
            request(""),
            request(".."),
            request("a/b"),
            LogsRequest {
                tail_lines: Some(-1),
                ..request("app")
            },
        ];
        for req in cases {
            let status = f.open(req.clone()).await.err().expect("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{req:?}");
        }
    }

    #[tokio::test]
    async fn tail_gives_the_last_lines() {
        let f = fixture();
        f.write("app", 0, b"one\ntwo\nthree\n");
        f.write("bare", 0, b"one\ntwo\nthree");
        let tail = |c: &str, n| LogsRequest {
            tail_lines: Some(n),
            ..request(c)
        };
        assert_eq!(f.text(tail("app", 1)).await.expect("log"), "three\n");
        assert_eq!(f.text(tail("app", 2)).await.expect("log"), "two\nthree\n");
        assert_eq!(
            f.text(tail("app", 3)).await.expect("log"),
            "one\ntwo\nthree\n"
        );
        assert_eq!(
            f.text(tail("app", 50)).await.expect("log"),
            "one\ntwo\nthree\n"
        );
        assert_eq!(f.text(tail("app", 0)).await.expect("log"), "");
        // A last line without its newline is still a line.
        assert_eq!(f.text(tail("bare", 1)).await.expect("log"), "three");
        assert_eq!(f.text(tail("bare", 2)).await.expect("log"), "two\nthree");
    }

    #[tokio::test]
    async fn tail_finds_lines_across_read_blocks() {
        let f = fixture();
        // 3,000 lines of 50 bytes: 150,000 bytes, more than two blocks.
        let lines: Vec<String> = (0..3000).map(|i| format!("{i:049}\n")).collect();
        f.write("app", 0, lines.concat().as_bytes());
        for n in [1usize, 1310, 1311, 2000, 3000, 5000] {
            let req = LogsRequest {
                tail_lines: Some(n as i64),
                ..request("app")
            };
            let want = lines[3000usize.saturating_sub(n)..].concat();
            assert_eq!(f.text(req).await.expect("log"), want, "tail {n}");
        }
    }

    #[tokio::test]
    async fn large_logs_come_in_chunks_of_at_most_64_kib() {
        let f = fixture();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        f.write("app", 0, &data);
        let chunks = f.read_all(request("app")).await.expect("log");
        assert!(chunks.len() >= 4, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| !c.is_empty() && c.len() <= MAX_CHUNK));
        assert_eq!(chunks.concat(), data);
    }

    /// Reads from `stream` until the text read so far ends with `want`, within a deadline.
    async fn read_until(stream: &mut LogStream, got: &mut String, want: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !got.ends_with(want) {
            let next = tokio::time::timeout_at(deadline, stream.next())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} in time; read {got:?}"));
            let chunk = next
                .unwrap_or_else(|| panic!("stream ended before {want:?}; read {got:?}"))
                .expect("chunk");
            got.push_str(std::str::from_utf8(&chunk.data).expect("utf-8"));
        }
    }

    async fn append(path: &Path, text: &str) {
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .await
            .expect("open for append");
        file.write_all(text.as_bytes()).await.expect("append");
        file.flush().await.expect("flush");
    }

    #[tokio::test]
    async fn follow_streams_appends_until_the_run_exits_and_is_drained() {
        let f = fixture();
        let path = f.write("app", 0, b"line 1\nline 2\n");
        f.runtime.set("app", 0, true);
        let req = LogsRequest {
            follow: true,
            tail_lines: Some(1),
            ..request("app")
        };
        let mut stream = f.open(req).await.expect("opened");
        let mut got = String::new();
        read_until(&mut stream, &mut got, "line 2\n").await;
        append(&path, "line 3\n").await;
        read_until(&mut stream, &mut got, "line 3\n").await;
        // The run exits right after its last write: that write still arrives, then the end.
        append(&path, "last words\n").await;
        f.runtime.set("app", 0, false);
        let rest = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends once the run has exited");
        for chunk in rest {
            got.push_str(std::str::from_utf8(&chunk.expect("chunk").data).expect("utf-8"));
        }
        assert_eq!(got, "line 2\nline 3\nlast words\n");
    }

    #[tokio::test]
    async fn follow_ends_when_a_later_run_starts() {
        let f = fixture();
        f.write("app", 0, b"run 0\n");
        // The runtime still says run 0 runs; the new file says otherwise.
        f.runtime.set("app", 0, true);
        let mut stream = f
            .open(LogsRequest {
                follow: true,
                ..request("app")
            })
            .await
            .expect("opened");
        let mut got = String::new();
        read_until(&mut stream, &mut got, "run 0\n").await;
        f.write("app", 1, b"run 1\n");
        let rest = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends");
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn follow_ends_when_a_run_seen_running_is_gone() {
        let f = fixture();
        f.write("app", 0, b"x\n");
        f.runtime.set("app", 0, true);
        let mut stream = f
            .open(LogsRequest {
                follow: true,
                ..request("app")
            })
            .await
            .expect("opened");
        let mut got = String::new();
        read_until(&mut stream, &mut got, "x\n").await;
        f.runtime.forget_all();
        let rest = tokio::time::timeout(Duration::from_secs(10), stream.collect::<Vec<_>>())
            .await
            .expect("the stream ends");
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn following_an_exited_run_gives_its_log_and_ends() {
        let f = fixture();
        f.write("app", 0, b"done\n");
        f.runtime.set("app", 0, false);
        let req = LogsRequest {
            follow: true,
            ..request("app")
        };
        assert_eq!(f.text(req).await.expect("log"), "done\n");
    }

    #[tokio::test]
    async fn a_follower_stops_when_its_client_goes_away() {
        let f = fixture();
        let path = f.write("app", 0, b"x\n");
        f.runtime.set("app", 0, true);
        let file = File::open(&path).await.expect("open");
        let (tx, rx) = mpsc::channel(QUEUE);
        let follow = Follow {
            runtime: f.runtime.clone(),
            pod_uid: UID.into(),
            container: "app".into(),
            dir: path.parent().expect("parent").to_path_buf(),
            number: 0,
        };
        let task = tokio::spawn(pump(file, path.clone(), tx, Some(follow)));
        let mut stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("first chunk in time")
            .expect("a chunk")
            .expect("ok");
        assert_eq!(first.data, b"x\n");
        drop(stream);
        // The run still runs: only the client's leaving can end the task.
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the follower ends once its client has gone")
            .expect("no panic");
    }

    #[test]
    fn names_that_are_not_one_path_component_are_refused() {
        for bad in ["", ".", "..", "a/b", "a\\b", "nul\0"] {
            assert!(check_component("container", bad).is_err(), "{bad:?}");
        }
        for good in ["app", "web-1", "9f1c-uid", "a.b"] {
            assert!(check_component("container", good).is_ok(), "{good:?}");
        }
    }
}
