//! `corral shim`: the per-container supervisor of the process runtime (what conmon is to CRI-O).
//!
//! The agent starts one shim per container run, `corral shim <state-dir>`; it outlives the agent,
//! so an agent restart adopts running containers instead of losing them. The shim:
//! 1. calls `setsid` (its own session: terminal signals of the agent do not reach it);
//! 2. unshares a private mount namespace, makes `/` rprivate and bind-mounts every mount of the
//!    spec (and the hosts file over `/etc/hosts`), creating missing mount points; where that is
//!    not permitted it passes each mount as `CORRAL_MOUNT_<PATH>=<host path>` instead;
//! 3. joins the run's cgroups, spawns the container process (argv, env, working directory,
//!    stdin null, stdout+stderr appended to the run's log, its own process group), then moves
//!    itself out of the container's cgroups;
//! 4. writes `pid.json`, blocks SIGTERM/SIGINT/SIGHUP/SIGQUIT for itself (a `pkill corral` meant
//!    for the agent must not orphan containers; the container process started with an empty
//!    signal mask), tells the agent `ok <pid>` on stdout (or `error <why>` and exits 1);
//! 5. waits for the process, kills what is left of its process group and cgroups (as the end of
//!    a container's init ends the container), writes `exit.json`, exits.
//!
//! `corral shim exec <state-dir> [--timeout-ms N] -- argv...` runs a command inside a running
//! container (its mount namespace, cgroups, env, working directory) and prints an
//! [`ExecReport`] as JSON. `corral shim probe` says whether mount namespaces can be used here.
//!
//! The shim must be started before any other thread exists in its process (`unshare` and `setns`
//! of a mount namespace refuse multi-threaded callers), hence the dispatch at the very top of
//! `corral`'s `main`. This module is synchronous: no tokio.
//!
//! The state files (written atomically: a temporary file, then rename):
//! `spec.json` ([`ContainerSpec`]) and `shim.json` ([`ShimConfig`]) by the agent, `pid.json`
//! ([`PidRecord`]) and `exit.json` ([`ExitRecord`]) by the shim.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::signal::{SigSet, Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cgroup::RunCgroups;
use crate::runtime::ContainerSpec;

pub const SPEC_FILE: &str = "spec.json";
pub const CONFIG_FILE: &str = "shim.json";
pub const PID_FILE: &str = "pid.json";
pub const EXIT_FILE: &str = "exit.json";
/// The shim's own diagnostics (its stderr).
pub const SHIM_LOG: &str = "shim.log";

/// The PATH a container gets when its environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of an exec's output is kept.
pub const EXEC_OUTPUT_LIMIT: usize = 4096;

/// What the agent tells the shim beside the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The run's log file (`runtime::log_path`).
    pub log_path: PathBuf,
    #[serde(default)]
    pub cgroups: RunCgroups,
}

/// The processes of a started run. Pids are checked against their start time in
/// `/proc/<pid>/stat`, so a reused pid is never taken for ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub shim_pid: i32,
    pub shim_start_ticks: u64,
    /// The container process, also its process group id.
    pub pid: i32,
    pub pid_start_ticks: u64,
    /// Unix time in nanoseconds.
    pub started_at_ns: u64,
    /// Whether the container has its own mount namespace (else mounts are env variables).
    pub mount_namespace: bool,
    /// Whether the shim left the container's cgroups (so `cgroup.kill` spares it).
    pub shim_outside_cgroups: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + the signal that ended the process.
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Unix time in nanoseconds.
    pub finished_at_ns: u64,
    /// `Completed`, `Error` or `OOMKilled`.
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// What `corral shim exec` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecReport {
    pub exit_code: i32,
    pub output: String,
    pub timed_out: bool,
}

/// `corral shim ...`, with the arguments after `shim`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    match args.first().and_then(|a| a.to_str()) {
        Some("exec") => exec_main(&args[1..]),
        Some("probe") => probe_main(),
        Some(a) if !a.starts_with('-') && args.len() == 1 => run_main(Path::new(&args[0])),
        _ => {
            eprintln!(
                "usage: corral shim <state-dir>\n       corral shim exec <state-dir> \
                 [--timeout-ms N] -- <argv>...\n       corral shim probe"
            );
            ExitCode::from(2)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers (also used by the runtime)

/// Now, as Unix nanoseconds.
pub fn now_ns() -> u64 {
    to_ns(SystemTime::now())
}

pub fn to_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub fn from_ns(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// State (`R`, `S`, `Z`, ...) and start time (clock ticks after boot) from a
/// `/proc/<pid>/stat` line.
pub fn parse_stat(text: &str) -> Option<(char, u64)> {
    // The command name (field 2) is in parentheses and may itself hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?; // field 3
    let start = fields.nth(18)?.parse().ok()?; // field 22
    Some((state, start))
}

/// State and start time of a live (or zombie) process.
pub fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid` is still the process that started at `ticks` (a zombie counts: it is not reaped yet).
pub fn same_process(pid: i32, ticks: u64) -> bool {
    proc_stat(pid).is_some_and(|(_, t)| t == ticks)
}

/// `pid` is the process that started at `ticks` and has not exited.
pub fn alive(pid: i32, ticks: u64) -> bool {
    proc_stat(pid).is_some_and(|(s, t)| t == ticks && s != 'Z' && s != 'X')
}

/// The environment variable that carries a mount's host path where mounts are not possible:
/// `/usr/share/nginx/html` → `CORRAL_MOUNT_USR_SHARE_NGINX_HTML`.
pub fn mount_env_name(container_path: &Path) -> String {
    let path = container_path.to_string_lossy();
    let mut name = String::from("CORRAL_MOUNT_");
    for c in path.trim_matches('/').chars() {
        name.push(if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        });
    }
    name
}

/// The whole environment of the container process (or of an exec in it).
pub fn container_env(spec: &ContainerSpec, mount_namespace: bool) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(spec.env.len() + spec.mounts.len() + 1);
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
    }
    env.extend(spec.env.iter().cloned());
    if !mount_namespace {
        for m in &spec.mounts {
            env.push((
                mount_env_name(&m.container_path),
                m.host_path.to_string_lossy().into_owned(),
            ));
        }
        if let Some(h) = &spec.hosts_file {
            env.push((
                mount_env_name(Path::new("/etc/hosts")),
                h.to_string_lossy().into_owned(),
            ));
        }
    }
    env
}

/// Kubernetes' view of an exit: the code (128 + signal when killed), the signal, the reason.
pub fn classify(
    code: Option<i32>,
    signal: Option<i32>,
    oom: bool,
) -> (i32, Option<i32>, &'static str) {
    let (exit_code, signal) = match (code, signal) {
        (Some(c), _) => (c, None),
        (None, Some(s)) => (128 + s, Some(s)),
        (None, None) => (255, None),
    };
    let reason = if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    (exit_code, signal, reason)
}

/// Writes `value` as JSON to `path` atomically (temporary file in the same directory, rename).
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| format!("encoding {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, &bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("renaming {} to {}: {e}", tmp.display(), path.display())
    })
}

/// Reads a JSON file: `None` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is not valid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

fn required<T: DeserializeOwned>(dir: &Path, file: &str) -> Result<T, String> {
    read_json(&dir.join(file))?.ok_or_else(|| format!("{} is missing", dir.join(file).display()))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

// ---------------------------------------------------------------------------------------------
// corral shim <state-dir>

struct Started {
    child: Child,
    record: PidRecord,
    cgroups: RunCgroups,
}

fn run_main(dir: &Path) -> ExitCode {
    if let Err(e) = nix::unistd::setsid() {
        eprintln!("corral shim: setsid: {e}");
    }
    let mut out = std::io::stdout();
    let started = match start(dir) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("corral shim: {msg}");
            let _ = writeln!(out, "error {}", one_line(&msg));
            let _ = out.flush();
            return ExitCode::from(1);
        }
    };
    // From now on the shim must outlive whatever signal is meant for the agent or the container.
    // (Only now: a blocked mask is inherited by the container process, and std does not clear it.)
    let mut blocked = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        blocked.add(s);
    }
    if let Err(e) = blocked.thread_block() {
        eprintln!("corral shim: blocking signals: {e}");
    }
    // The agent may be gone already: nothing to do about a failed report.
    let _ = writeln!(out, "ok {}", started.record.pid);
    let _ = out.flush();
    // Like conmon: the supervisor is the last thing a global OOM should pick.
    let _ = std::fs::write("/proc/self/oom_score_adj", "-1000");
    let exit = supervise(started);
    if let Err(e) = write_json_atomic(&dir.join(EXIT_FILE), &exit) {
        eprintln!("corral shim: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

fn start(dir: &Path) -> Result<Started, String> {
    let spec: ContainerSpec = required(dir, SPEC_FILE)?;
    let config: ShimConfig = required(dir, CONFIG_FILE)?;
    let Some(program) = spec.argv.first() else {
        return Err("the container has no command".to_string());
    };
    let mount_namespace = enter_mount_namespace(&spec)?;
    let env = container_env(&spec, mount_namespace);
    let working_dir = spec
        .working_dir
        .clone()
        .unwrap_or_else(|| dir.to_path_buf());
    std::fs::create_dir_all(&working_dir).map_err(|e| {
        format!(
            "cannot create the working directory {}: {e}",
            working_dir.display()
        )
    })?;
    let log = open_log(&config.log_path)?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("log file {}: {e}", config.log_path.display()))?;

    // The container starts with no signal blocked, whatever the agent had blocked.
    clear_signal_mask();
    config.cgroups.join()?;
    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(&working_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0);
    let spawned = cmd.spawn();
    drop(cmd);
    let outside = match config.cgroups.leave() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("corral shim: leaving the container's cgroups: {e}");
            false
        }
    };
    let mut child = spawned
        .map_err(|e| format!("failed to start the container process: exec {program:?}: {e}"))?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let record = PidRecord {
        shim_pid: me,
        shim_start_ticks: proc_stat(me).map(|s| s.1).unwrap_or(0),
        pid,
        pid_start_ticks: proc_stat(pid).map(|s| s.1).unwrap_or(0),
        started_at_ns: now_ns(),
        mount_namespace,
        shim_outside_cgroups: outside,
    };
    if let Err(e) = write_json_atomic(&dir.join(PID_FILE), &record) {
        // Unrecorded, the process could be neither found nor stopped: do not leave it running.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = child.wait();
        return Err(e);
    }
    Ok(Started {
        child,
        record,
        cgroups: config.cgroups,
    })
}

/// Unblocks every signal: a child inherits the signal mask through fork and exec.
fn clear_signal_mask() {
    if let Err(e) = SigSet::empty().thread_set_mask() {
        eprintln!("corral shim: clearing the signal mask: {e}");
    }
}

fn open_log(path: &Path) -> Result<File, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open the log file {}: {e}", path.display()))
}

/// Enters a private mount namespace with the spec's mounts; `false` where namespaces are not
/// permitted (then mounts travel as environment variables). A mount that fails is an error.
fn enter_mount_namespace(spec: &ContainerSpec) -> Result<bool, String> {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        eprintln!(
            "corral shim: no private mount namespace (unshare: {e}); mounts are passed as \
             CORRAL_MOUNT_* variables"
        );
        return Ok(false);
    }
    if let Err(e) = make_root_private() {
        eprintln!(
            "corral shim: cannot make / private in the new mount namespace ({e}); mounts are \
             passed as CORRAL_MOUNT_* variables"
        );
        return Ok(false);
    }
    for m in &spec.mounts {
        bind(&m.host_path, &m.container_path, m.read_only)?;
    }
    if let Some(hosts) = &spec.hosts_file {
        bind(hosts, Path::new("/etc/hosts"), false)?;
    }
    Ok(true)
}

fn make_root_private() -> nix::Result<()> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
}

fn bind(host: &Path, target: &Path, read_only: bool) -> Result<(), String> {
    let meta =
        std::fs::metadata(host).map_err(|e| format!("mount source {}: {e}", host.display()))?;
    if meta.is_dir() {
        std::fs::create_dir_all(target)
            .map_err(|e| format!("cannot create mount point {}: {e}", target.display()))?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        if std::fs::symlink_metadata(target).is_err() {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(target)
                .map_err(|e| format!("cannot create mount point {}: {e}", target.display()))?;
        }
    }
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        format!(
            "bind-mounting {} at {}: {e}",
            host.display(),
            target.display()
        )
    })?;
    if read_only {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("making {} read-only: {e}", target.display()))?;
    }
    Ok(())
}

/// Waits for the container process; ends what is left of it; says how it ended.
fn supervise(started: Started) -> ExitRecord {
    let Started {
        mut child,
        record,
        cgroups,
    } = started;
    let pid = Pid::from_raw(record.pid);
    // Wait without reaping: while the process is a zombie its pid (= the process group id)
    // cannot be reused, so the kill below reaches only what is left of this container.
    loop {
        match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
            Ok(_) => break,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("corral shim: waitid: {e}");
                break;
            }
        }
    }
    let _ = killpg(pid, Signal::SIGKILL);
    if record.shim_outside_cgroups {
        cgroups.kill_all();
    }
    let status: Option<ExitStatus> = match child.wait() {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("corral shim: wait: {e}");
            None
        }
    };
    let oom = cgroups.oom_killed();
    let (exit_code, signal, reason) = classify(
        status.and_then(|s| s.code()),
        status.and_then(|s| s.signal()),
        oom,
    );
    let message = if oom {
        "the container exceeded its memory limit and the kernel killed it".to_string()
    } else {
        String::new()
    };
    ExitRecord {
        exit_code,
        signal,
        finished_at_ns: now_ns(),
        reason: reason.to_string(),
        message,
    }
}

// ---------------------------------------------------------------------------------------------
// corral shim exec <state-dir> [--timeout-ms N] -- argv...

fn exec_main(args: &[OsString]) -> ExitCode {
    let parsed = parse_exec_args(args);
    let (dir, timeout, argv) = match parsed {
        Ok(p) => p,
        Err(e) => {
            eprintln!("corral shim exec: {e}");
            return ExitCode::from(2);
        }
    };
    match exec(&dir, timeout, &argv) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("corral shim exec: {e}");
                ExitCode::from(1)
            }
        },
        Err(e) => {
            eprintln!("corral shim exec: {e}");
            ExitCode::from(1)
        }
    }
}

type ExecArgs = (PathBuf, Duration, Vec<OsString>);

fn parse_exec_args(args: &[OsString]) -> Result<ExecArgs, String> {
    let mut it = args.iter();
    let dir = PathBuf::from(it.next().ok_or("missing <state-dir>")?);
    let mut timeout = Duration::from_secs(1);
    loop {
        match it.next().and_then(|a| a.to_str()) {
            Some("--") => break,
            Some("--timeout-ms") => {
                let ms: u64 = it
                    .next()
                    .and_then(|v| v.to_str())
                    .and_then(|v| v.parse().ok())
                    .ok_or("--timeout-ms needs a number of milliseconds")?;
                timeout = Duration::from_millis(ms);
            }
            Some(other) => return Err(format!("unexpected argument {other:?}")),
            None => return Err("missing `-- <argv>...`".to_string()),
        }
    }
    let argv: Vec<OsString> = it.cloned().collect();
    if argv.is_empty() {
        return Err("no command after `--`".to_string());
    }
    Ok((dir, timeout, argv))
}

fn exec(dir: &Path, timeout: Duration, argv: &[OsString]) -> Result<ExecReport, String> {
    let spec: ContainerSpec = required(dir, SPEC_FILE)?;
    let config: ShimConfig = required(dir, CONFIG_FILE)?;
    let record: PidRecord = required(dir, PID_FILE)?;
    if dir.join(EXIT_FILE).exists() || !alive(record.pid, record.pid_start_ticks) {
        return Err("the container is not running".to_string());
    }
    let mut mount_namespace = false;
    if record.mount_namespace {
        let ns = format!("/proc/{}/ns/mnt", record.pid);
        match File::open(&ns)
            .map_err(|e| e.to_string())
            .and_then(|f| setns(&f, CloneFlags::CLONE_NEWNS).map_err(|e| e.to_string()))
        {
            Ok(()) => mount_namespace = true,
            Err(e) => eprintln!("corral shim exec: cannot enter {ns} ({e}); running without it"),
        }
    }
    let env = container_env(&spec, mount_namespace);
    let working_dir = spec
        .working_dir
        .clone()
        .unwrap_or_else(|| dir.to_path_buf());
    let (mut reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let writer_err = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
    clear_signal_mask();
    let joined = config.cgroups.join().is_ok();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env)
        .current_dir(&working_dir)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    let spawned = cmd.spawn();
    // The Command holds the pipe's write ends: drop them, or the output never ends.
    drop(cmd);
    if joined && let Err(e) = config.cgroups.leave() {
        eprintln!("corral shim exec: leaving the container's cgroups: {e}");
    }
    let mut child = spawned.map_err(|e| format!("exec {:?}: {e}", argv[0]))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));

    let captured = Arc::new(Mutex::new(Vec::new()));
    let (eof_tx, eof_rx) = mpsc::channel::<()>();
    {
        let captured = Arc::clone(&captured);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let mut c = captured.lock().unwrap_or_else(|e| e.into_inner());
                        let room = EXEC_OUTPUT_LIMIT.saturating_sub(c.len());
                        c.extend_from_slice(&buf[..n.min(room)]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = eof_tx.send(());
        });
    }
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let (status, timed_out) = match done_rx.recv_timeout(timeout) {
        Ok(s) => (s.ok(), false),
        Err(_) => {
            let _ = killpg(pid, Signal::SIGKILL);
            (done_rx.recv().ok().and_then(|s| s.ok()), true)
        }
    };
    // A background process may keep the pipe open: do not wait for it long.
    let _ = eof_rx.recv_timeout(Duration::from_millis(200));
    let bytes = captured.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut output = String::from_utf8_lossy(&bytes).into_owned();
    if timed_out {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str(&format!("command timed out after {:?}", timeout));
        return Ok(ExecReport {
            exit_code: -1,
            output,
            timed_out: true,
        });
    }
    let (exit_code, _, _) = classify(
        status.and_then(|s| s.code()),
        status.and_then(|s| s.signal()),
        false,
    );
    Ok(ExecReport {
        exit_code,
        output,
        timed_out: false,
    })
}

// ---------------------------------------------------------------------------------------------
// corral shim probe

/// What `corral shim probe` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub mount_namespace: bool,
    /// Why not, when not.
    pub reason: String,
}

fn probe_main() -> ExitCode {
    let report = match unshare(CloneFlags::CLONE_NEWNS) {
        Err(e) => ProbeReport {
            mount_namespace: false,
            reason: format!("unshare(CLONE_NEWNS) is not permitted: {e}"),
        },
        Ok(()) => match make_root_private() {
            Ok(()) => ProbeReport {
                mount_namespace: true,
                reason: String::new(),
            },
            Err(e) => ProbeReport {
                mount_namespace: false,
                reason: format!("cannot make / private in a new mount namespace: {e}"),
            },
        },
    };
    match serde_json::to_string(&report) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("corral shim probe: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Limits, Mount};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            pod_uid: "u".into(),
            pod_namespace: "default".into(),
            pod_name: "p".into(),
            name: "c".into(),
            restart_count: 0,
            image: "busybox".into(),
            argv: vec!["sh".into()],
            command: vec![],
            args: vec![],
            image_pull_policy: String::new(),
            env: vec![("A".into(), "1".into())],
            working_dir: None,
            mounts: vec![Mount {
                host_path: "/data/vol".into(),
                container_path: "/usr/share/nginx/html".into(),
                read_only: true,
            }],
            limits: Limits::default(),
            hosts_file: Some("/data/hosts".into()),
        }
    }

    #[test]
    fn mount_env_names() {
        assert_eq!(
            mount_env_name(Path::new("/usr/share/nginx/html")),
            "CORRAL_MOUNT_USR_SHARE_NGINX_HTML"
        );
        assert_eq!(
            mount_env_name(Path::new("/var/run/secrets/kubernetes.io/serviceaccount/")),
            "CORRAL_MOUNT_VAR_RUN_SECRETS_KUBERNETES_IO_SERVICEACCOUNT"
        );
        assert_eq!(
            mount_env_name(Path::new("/etc/hosts")),
            "CORRAL_MOUNT_ETC_HOSTS"
        );
        assert_eq!(mount_env_name(Path::new("/data-1")), "CORRAL_MOUNT_DATA_1");
    }

    #[test]
    fn env_gets_a_default_path_and_mount_variables_only_without_a_namespace() {
        let s = spec();
        let with_ns = container_env(&s, true);
        assert_eq!(
            with_ns,
            vec![
                ("PATH".to_string(), DEFAULT_PATH.to_string()),
                ("A".to_string(), "1".to_string())
            ]
        );
        let without = container_env(&s, false);
        assert!(without.contains(&(
            "CORRAL_MOUNT_USR_SHARE_NGINX_HTML".to_string(),
            "/data/vol".to_string()
        )));
        assert!(without.contains(&(
            "CORRAL_MOUNT_ETC_HOSTS".to_string(),
            "/data/hosts".to_string()
        )));
        let mut own_path = spec();
        own_path.env.push(("PATH".into(), "/bin".into()));
        assert!(
            !container_env(&own_path, true)
                .iter()
                .any(|(k, v)| k == "PATH" && v == DEFAULT_PATH)
        );
    }

    #[test]
    fn exit_statuses_map_to_kubernetes_reasons() {
        assert_eq!(classify(Some(0), None, false), (0, None, "Completed"));
        assert_eq!(classify(Some(3), None, false), (3, None, "Error"));
        assert_eq!(classify(None, Some(9), false), (137, Some(9), "Error"));
        assert_eq!(classify(None, Some(15), false), (143, Some(15), "Error"));
        assert_eq!(classify(None, Some(9), true), (137, Some(9), "OOMKilled"));
        assert_eq!(classify(None, None, false), (255, None, "Error"));
    }

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let line = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        assert_eq!(parse_stat(line), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
        let me = i32::try_from(std::process::id()).expect("pid fits");
        let (state, ticks) = proc_stat(me).expect("own stat");
        assert_ne!(state, 'Z');
        assert!(alive(me, ticks));
        assert!(!alive(me, ticks + 1));
    }

    #[test]
    fn json_files_are_written_atomically_and_read_back() {
        let tmp = tempfile::tempdir().expect("tmp");
        let p = tmp.path().join(EXIT_FILE);
        assert_eq!(read_json::<ExitRecord>(&p), Ok(None));
        let rec = ExitRecord {
            exit_code: 1,
            signal: None,
            finished_at_ns: 5,
            reason: "Error".into(),
            message: String::new(),
        };
        write_json_atomic(&p, &rec).expect("write");
        assert_eq!(read_json::<ExitRecord>(&p), Ok(Some(rec)));
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::write(&p, b"{").expect("write");
        assert!(read_json::<ExitRecord>(&p).is_err());
    }

    #[test]
    fn exec_arguments() {
        let args: Vec<OsString> = ["/s", "--timeout-ms", "250", "--", "sh", "-c", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        let (dir, t, argv) = parse_exec_args(&args).expect("parses");
        assert_eq!(dir, PathBuf::from("/s"));
        assert_eq!(t, Duration::from_millis(250));
        assert_eq!(argv.len(), 3);
        let bad: Vec<OsString> = ["/s", "--"].iter().map(OsString::from).collect();
        assert!(parse_exec_args(&bad).is_err());
        let bad: Vec<OsString> = ["/s", "sh"].iter().map(OsString::from).collect();
        assert!(parse_exec_args(&bad).is_err());
    }
}
