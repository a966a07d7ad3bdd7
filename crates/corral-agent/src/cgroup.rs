//! cgroups for the process runtime: one group per container run, memory and cpu limits, OOM
//! kills, and killing whatever is left of a container's processes.
//!
//! Found once when the runtime starts ([`Cgroups::detect`]), under a configurable root
//! (`/sys/fs/cgroup` on a node):
//! - **unified cgroup v2** (`<root>` is cgroup2): `<root>/corral/<pod-uid>/<name>-<restart>`, with
//!   `+memory +cpu` enabled in `subtree_control` of `<root>`, `<root>/corral` and the pod's group
//!   (only leaves hold processes: cgroup v2's no-internal-processes rule); `memory.max`,
//!   `memory.swap.max` 0, `memory.oom.group` 1 (as the kubelet sets it), `cpu.max`; OOM kills
//!   counted in `memory.events`; `cgroup.kill` ends every process of a group.
//! - **hybrid** (`<root>/unified` is cgroup2 beside v1 hierarchies): the v2 group tracks the
//!   processes (and `cgroup.kill`); the limits go through the v1 `memory` and `cpu` hierarchies
//!   (`memory.limit_in_bytes`, `cpu.cfs_quota_us`; OOM kills in `memory.oom_control`), because
//!   the controllers are bound to v1 there.
//! - **v1 only**: the v1 `memory` and `cpu` hierarchies.
//!
//! Whatever cannot be used (not writable, controller missing or busy) is left out and said in
//! [`Cgroups::notes`], which the runtime reports as its capabilities.
//!
//! The shim joins its container's groups before it starts the container process (so the process
//! inherits them) and moves itself to `<hierarchy>/corral/shims` right after, so that an OOM kill
//! or a `cgroup.kill` of the container never takes its supervisor with it.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::runtime::Limits;

/// The directory every hierarchy gets for Corral's groups.
const PARENT: &str = "corral";
/// Where shims go once their container process is started.
const SHIMS: &str = "shims";
/// cpu.max / cpu.cfs_period_us period, in microseconds (the kubelet's).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts (1 ms), as the kubelet clamps it.
const MIN_CPU_QUOTA_US: u64 = 1_000;

/// The cgroup setup of this node.
#[derive(Debug, Clone, Default)]
pub struct Cgroups {
    /// cgroup v2 directory holding `corral/` (process tracking and `cgroup.kill`).
    pub v2: Option<PathBuf>,
    /// The v2 memory / cpu controllers are enabled down to Corral's groups.
    pub v2_memory: bool,
    pub v2_cpu: bool,
    /// cgroup v1 hierarchies holding `corral/`, used for the limits v2 cannot enforce here.
    pub v1_memory: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
    /// What is used and what is not, and why, in words.
    pub notes: Vec<String>,
}

/// The groups of one container run, recorded in its state directory for the shim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCgroups {
    pub v2: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
    pub v1_cpu: Option<PathBuf>,
    /// The groups the shim moves to once the container process is started.
    pub shim: Vec<PathBuf>,
}

impl Cgroups {
    /// No cgroups at all (with the reason, for the capabilities).
    pub fn disabled(why: &str) -> Self {
        Cgroups {
            notes: vec![format!(
                "cgroups: not used ({why}); memory and cpu limits are not enforced and OOM kills \
                 are not detected"
            )],
            ..Default::default()
        }
    }

    /// Looks at what `root` offers (normally `/sys/fs/cgroup`) and prepares `corral/` in every
    /// usable hierarchy.
    pub fn detect(root: &Path) -> Self {
        let mut cg = Cgroups::default();
        let mut why_not: Vec<String> = Vec::new();
        let unified = if is_cgroup2(root) {
            Some(root.to_path_buf())
        } else if is_cgroup2(&root.join("unified")) {
            Some(root.join("unified"))
        } else {
            why_not.push(format!("no cgroup v2 hierarchy at {}", root.display()));
            None
        };
        if let Some(base) = unified {
            match prepare_v2(&base) {
                Ok((memory, cpu, notes)) => {
                    cg.v2 = Some(base);
                    cg.v2_memory = memory;
                    cg.v2_cpu = cpu;
                    why_not.extend(notes);
                }
                Err(e) => why_not.push(e),
            }
        }
        if !cg.v2_memory {
            match prepare_v1(root, &["memory"], "memory.limit_in_bytes") {
                Ok(p) => cg.v1_memory = Some(p),
                Err(e) => why_not.push(e),
            }
        }
        if !cg.v2_cpu {
            match prepare_v1(
                root,
                &["cpu", "cpu,cpuacct", "cpuacct,cpu"],
                "cpu.cfs_quota_us",
            ) {
                Ok(p) => cg.v1_cpu = Some(p),
                Err(e) => why_not.push(e),
            }
        }
        cg.notes = cg.describe(&why_not);
        cg
    }

    fn describe(&self, why_not: &[String]) -> Vec<String> {
        let mut notes = Vec::new();
        let memory = if self.v2_memory {
            self.v2
                .as_ref()
                .map(|b| format!("cgroup v2 at {}", b.join(PARENT).display()))
        } else {
            self.v1_memory
                .as_ref()
                .map(|b| format!("cgroup v1 at {}", b.join(PARENT).display()))
        };
        let cpu = if self.v2_cpu {
            self.v2
                .as_ref()
                .map(|b| format!("cgroup v2 at {}", b.join(PARENT).display()))
        } else {
            self.v1_cpu
                .as_ref()
                .map(|b| format!("cgroup v1 at {}", b.join(PARENT).display()))
        };
        match &self.v2 {
            Some(b) => notes.push(format!(
                "cgroups: each container run has its own cgroup v2 group under {} (stop kills \
                 every process of it with cgroup.kill)",
                b.join(PARENT).display()
            )),
            None if memory.is_some() || cpu.is_some() => notes.push(
                "cgroups: no usable cgroup v2 hierarchy; processes that leave a container's \
                 process group are found through its cgroup v1 groups"
                    .to_string(),
            ),
            None => {}
        }
        match memory {
            Some(m) => notes.push(format!(
                "memory limits: enforced through {m}; OOM kills are reported as OOMKilled"
            )),
            None => notes.push(
                "memory limits: NOT enforced and OOM kills not detected (no usable memory \
                 controller)"
                    .to_string(),
            ),
        }
        match cpu {
            Some(c) => notes.push(format!("cpu limits: enforced through {c} (CFS quota)")),
            None => notes.push("cpu limits: NOT enforced (no usable cpu controller)".to_string()),
        }
        if !why_not.is_empty() {
            notes.push(format!("cgroups: {}", why_not.join("; ")));
        }
        notes
    }

    /// Whether a memory limit is enforced (and an OOM kill detected).
    pub fn enforces_memory(&self) -> bool {
        self.v2_memory || self.v1_memory.is_some()
    }

    /// Whether a cpu limit is enforced.
    pub fn enforces_cpu(&self) -> bool {
        self.v2_cpu || self.v1_cpu.is_some()
    }

    /// Creates the groups of one container run with its limits.
    pub fn create(&self, pod_uid: &str, run: &str, limits: &Limits) -> Result<RunCgroups, String> {
        let mut out = RunCgroups::default();
        if let Some(base) = &self.v2 {
            let parent = base.join(PARENT);
            let pod = parent.join(pod_uid);
            mkdir_all(&pod)?;
            let mut controllers = Vec::new();
            if self.v2_memory {
                controllers.push("memory");
            }
            if self.v2_cpu {
                controllers.push("cpu");
            }
            enable_controllers(&pod, &controllers)?;
            let leaf = fresh_leaf(&pod.join(run))?;
            if self.v2_memory {
                if let Some(bytes) = limits.memory_bytes {
                    write(&leaf.join("memory.max"), &bytes.to_string())?;
                    if leaf.join("memory.swap.max").exists() {
                        write(&leaf.join("memory.swap.max"), "0")?;
                    }
                }
                if leaf.join("memory.oom.group").exists() {
                    write(&leaf.join("memory.oom.group"), "1")?;
                }
            }
            if self.v2_cpu
                && let Some(millis) = limits.cpu_millis
            {
                write(
                    &leaf.join("cpu.max"),
                    &format!("{} {CPU_PERIOD_US}", cpu_quota_us(millis)),
                )?;
            }
            out.shim.push(parent.join(SHIMS));
            out.v2 = Some(leaf);
        }
        if let Some(base) = &self.v1_memory {
            let parent = base.join(PARENT);
            let leaf = fresh_leaf(&parent.join(pod_uid).join(run))?;
            if let Some(bytes) = limits.memory_bytes {
                write(&leaf.join("memory.limit_in_bytes"), &bytes.to_string())?;
                // Without swap accounting the file is absent; with it, no swapping past the limit.
                let memsw = leaf.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &bytes.to_string())?;
                }
            }
            out.shim.push(parent.join(SHIMS));
            out.v1_memory = Some(leaf);
        }
        if let Some(base) = &self.v1_cpu {
            let parent = base.join(PARENT);
            let leaf = fresh_leaf(&parent.join(pod_uid).join(run))?;
            if let Some(millis) = limits.cpu_millis {
                write(&leaf.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(
                    &leaf.join("cpu.cfs_quota_us"),
                    &cpu_quota_us(millis).to_string(),
                )?;
            }
            out.shim.push(parent.join(SHIMS));
            out.v1_cpu = Some(leaf);
        }
        Ok(out)
    }

    /// Removes the groups of one run (also a half-created one), and the pod's group when empty.
    pub fn remove_run(&self, pod_uid: &str, run: &str) {
        let bases = [&self.v2, &self.v1_memory, &self.v1_cpu];
        for base in bases.into_iter().flatten() {
            let pod = base.join(PARENT).join(pod_uid);
            remove_group(&pod.join(run));
            let _ = std::fs::remove_dir(&pod);
        }
    }

    /// Removes every group of a pod (after its processes are gone).
    pub fn remove_pod(&self, pod_uid: &str) {
        let bases = [&self.v2, &self.v1_memory, &self.v1_cpu];
        for base in bases.into_iter().flatten() {
            let pod = base.join(PARENT).join(pod_uid);
            if let Ok(entries) = std::fs::read_dir(&pod) {
                for e in entries.flatten() {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        remove_group(&e.path());
                    }
                }
            }
            remove_group(&pod);
        }
    }
}

impl RunCgroups {
    fn groups(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.v2, &self.v1_memory, &self.v1_cpu]
            .into_iter()
            .flatten()
    }

    /// Whether the run has any group at all.
    pub fn is_empty(&self) -> bool {
        self.groups().next().is_none()
    }

    /// Moves the calling process into the run's groups.
    pub fn join(&self) -> Result<(), String> {
        let me = std::process::id().to_string();
        for g in self.groups() {
            write(&g.join("cgroup.procs"), &me)?;
        }
        Ok(())
    }

    /// Moves the calling process out, to the shims' groups (best effort: says what failed).
    pub fn leave(&self) -> Result<(), String> {
        let me = std::process::id().to_string();
        let mut errors = Vec::new();
        for g in &self.shim {
            if let Err(e) = write(&g.join("cgroup.procs"), &me) {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Whether the kernel OOM-killed a process of this run.
    pub fn oom_killed(&self) -> bool {
        let v2 = self
            .v2
            .as_ref()
            .and_then(|g| std::fs::read_to_string(g.join("memory.events")).ok())
            .and_then(|t| oom_kill_count(&t));
        let v1 = self
            .v1_memory
            .as_ref()
            .and_then(|g| std::fs::read_to_string(g.join("memory.oom_control")).ok())
            .and_then(|t| oom_kill_count(&t));
        v2.unwrap_or(0) > 0 || v1.unwrap_or(0) > 0
    }

    /// SIGKILLs every process in the run's groups: `cgroup.kill` where there is one, else each
    /// pid listed in `cgroup.procs`.
    pub fn kill_all(&self) {
        if let Some(g) = &self.v2
            && write(&g.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for g in self.groups() {
            for pid in procs(g) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    /// Whether any process is still in the run's groups.
    pub fn has_processes(&self) -> bool {
        self.groups().any(|g| !procs(g).is_empty())
    }

    /// Removes the run's groups (killing stragglers); the pod's group goes when it is empty.
    pub fn remove(&self) {
        for g in self.groups() {
            remove_group(g);
            if let Some(pod) = g.parent() {
                let _ = std::fs::remove_dir(pod);
            }
        }
    }
}

/// cgroup.procs of a group.
fn procs(group: &Path) -> Vec<i32> {
    std::fs::read_to_string(group.join("cgroup.procs"))
        .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// rmdir of a group, killing what is left in it and retrying while it drains (up to 1 s).
fn remove_group(group: &Path) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match std::fs::remove_dir(group) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) => {
                if Instant::now() >= deadline {
                    tracing::warn!(group = %group.display(), error = %e, "cannot remove cgroup");
                    return;
                }
                let run = RunCgroups {
                    v2: Some(group.to_path_buf()),
                    ..Default::default()
                };
                run.kill_all();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The CFS quota of `millis` of cpu per 100 ms period, at least the kernel's 1 ms.
pub fn cpu_quota_us(millis: u64) -> u64 {
    millis
        .saturating_mul(CPU_PERIOD_US / 1000)
        .max(MIN_CPU_QUOTA_US)
}

/// The `oom_kill N` count of `memory.events` (v2) or `memory.oom_control` (v1).
pub fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some("oom_kill"))
            .then(|| parts.next().and_then(|n| n.parse().ok()))
            .flatten()
    })
}

fn is_cgroup2(dir: &Path) -> bool {
    dir.join("cgroup.controllers").is_file()
}

fn mkdir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", dir.display())),
    }
}

fn mkdir_all(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// A leaf group with no leftovers of an earlier run of the same name.
fn fresh_leaf(dir: &Path) -> Result<PathBuf, String> {
    if dir.exists() {
        remove_group(dir);
    }
    mkdir_all(dir)?;
    Ok(dir.to_path_buf())
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

/// Enables `controllers` in `dir/cgroup.subtree_control` (those not enabled yet).
fn enable_controllers(dir: &Path, controllers: &[&str]) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    for c in controllers {
        if current.split_whitespace().any(|x| x == *c) {
            continue;
        }
        write(&file, &format!("+{c}"))?;
    }
    Ok(())
}

/// Prepares `<base>/corral` and `<base>/corral/shims` in a v2 hierarchy; answers which of
/// memory and cpu are usable, and why not.
fn prepare_v2(base: &Path) -> Result<(bool, bool, Vec<String>), String> {
    let parent = base.join(PARENT);
    mkdir(&parent).map_err(|e| format!("cgroup v2 at {} is not usable: {e}", base.display()))?;
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let mut notes = Vec::new();
    let mut usable = |name: &str| -> bool {
        if !available.split_whitespace().any(|c| c == name) {
            notes.push(format!(
                "the cgroup v2 hierarchy at {} has no {name} controller",
                base.display()
            ));
            return false;
        }
        match enable_controllers(base, &[name]).and_then(|()| enable_controllers(&parent, &[name]))
        {
            Ok(()) => true,
            Err(e) => {
                notes.push(format!(
                    "cannot enable the {name} controller for {} ({e}; a cgroup that holds \
                     processes cannot delegate controllers)",
                    parent.display()
                ));
                false
            }
        }
    };
    let memory = usable("memory");
    let cpu = usable("cpu");
    mkdir(&parent.join(SHIMS))?;
    Ok((memory, cpu, notes))
}

/// Finds a v1 hierarchy (`<root>/<one of names>` holding `probe_file`) and prepares
/// `corral/` and `corral/shims` in it.
fn prepare_v1(root: &Path, names: &[&str], probe_file: &str) -> Result<PathBuf, String> {
    let base = names
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.join(probe_file).is_file())
        .ok_or_else(|| {
            format!(
                "no cgroup v1 {} hierarchy at {}",
                names.first().copied().unwrap_or_default(),
                root.display()
            )
        })?;
    let parent = base.join(PARENT);
    mkdir(&parent).map_err(|e| format!("cgroup v1 at {} is not usable: {e}", base.display()))?;
    mkdir(&parent.join(SHIMS))?;
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_is_millis_times_100_with_the_kernel_minimum() {
        assert_eq!(cpu_quota_us(500), 50_000);
        assert_eq!(cpu_quota_us(2000), 200_000);
        assert_eq!(cpu_quota_us(1), 1_000);
        assert_eq!(cpu_quota_us(u64::MAX), u64::MAX);
    }

    #[test]
    fn oom_kill_count_reads_v2_and_v1_files() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v2), Some(1));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        assert_eq!(oom_kill_count(v1), Some(0));
        assert_eq!(oom_kill_count("garbage"), None);
    }

    #[test]
    fn a_plain_directory_is_not_a_cgroup_root() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cg = Cgroups::detect(tmp.path());
        assert!(cg.v2.is_none() && cg.v1_memory.is_none() && cg.v1_cpu.is_none());
        assert!(!cg.enforces_memory() && !cg.enforces_cpu());
        let text = cg.notes.join("\n");
        assert!(text.contains("memory limits: NOT enforced"), "{text}");
        assert!(text.contains("no cgroup v2 hierarchy"), "{text}");
        let run = cg
            .create("uid", "c-0", &Limits::default())
            .expect("nothing to create");
        assert!(run.is_empty());
        assert_eq!(run.join(), Ok(()));
    }
}
