//! The command line, as clap structs. Shaped like kubectl's: global `--server`, `-n`, `-A`, then a
//! verb and its arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where `corral up` serves the client API by default.
pub const DEFAULT_SERVER: &str = "127.0.0.1:7070";

#[derive(Debug, Clone, Parser)]
#[command(
    name = "corralctl",
    version,
    about = "Command-line client for Corral, shaped like kubectl"
)]
pub struct Cli {
    /// API servers to try, in order: ADDR[,ADDR...] (host:port each).
    #[arg(long, global = true, env = "CORRAL_SERVER", value_delimiter = ',', default_value = DEFAULT_SERVER)]
    pub server: Vec<String>,

    /// Namespace to work in [default: default].
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,

    /// Work across every namespace (get, and delete with a selector).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The namespace to use when a command names none: `-n`, else `default`.
    pub fn namespace(&self) -> &str {
        self.namespace
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create or update objects from manifests (multi-document YAML or JSON).
    Apply(ApplyArgs),
    /// Show objects: a table, or -o wide|yaml|json|name; -w streams changes.
    Get(GetArgs),
    /// Show one object in detail, with its events.
    Describe(DescribeArgs),
    /// Delete objects by kind and name, by selector, or as listed in manifests.
    Delete(DeleteArgs),
    /// Print a container's log: -f follows it, -p the previous run, --tail N the last N lines.
    Logs(LogsArgs),
    /// Set a new size for deployments, replica sets or stateful sets.
    Scale(ScaleArgs),
    /// Change fields of existing objects (set image).
    #[command(subcommand)]
    Set(SetCommand),
    /// Manage the rollout of deployments (and daemon sets and stateful sets): status, history,
    /// undo, pause, resume, restart.
    #[command(subcommand)]
    Rollout(RolloutCommand),
    /// Inspect and change the control plane's membership.
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// A manifest file, a directory (every .yaml, .yml and .json in it, in name order), or - for
    /// standard input. May be given more than once.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Wide,
    Yaml,
    Json,
    Name,
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    /// The kind (pods, po, deployment, deploy, svc, ...), or KIND/NAME.
    pub kind: String,
    /// Names of objects to show (all when none). KIND/NAME forms may be mixed in.
    pub names: Vec<String>,
    /// Label selector, e.g. app=web,tier!=db.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector, e.g. status.phase=Running,spec.nodeName=n1.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<OutputFormat>,
    /// After listing, keep watching and print every change.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Leave out the header row of tables.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DescribeArgs {
    /// The kind, or KIND/NAME.
    pub kind: String,
    /// The object's name.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    /// Delete now; dependents are deleted afterwards (the default).
    Background,
    /// Delete the dependents first.
    Foreground,
    /// Leave the dependents.
    Orphan,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The kind (or KIND/NAME), then names; omit both with -f.
    pub args: Vec<String>,
    /// Delete the objects listed in these manifests (file, directory or -).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Delete every object of the kind that matches this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
    /// What happens to dependents.
    #[arg(long, value_enum, default_value_t = Cascade::Background)]
    pub cascade: Cascade,
    /// Seconds the object is given to terminate (the kind's default when unset).
    #[arg(long, allow_negative_numbers = true)]
    pub grace_period: Option<i64>,
    /// Succeed when an object is already gone.
    #[arg(long)]
    pub ignore_not_found: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The pod: NAME or pod/NAME.
    pub pod: String,
    /// The container (as -c).
    #[arg(value_name = "CONTAINER")]
    pub container_arg: Option<String>,
    /// The container; may be left out when the pod has only one.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming the log while the container runs.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The log of the previous (terminated) run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Lines of the most recent log to show; -1 shows all.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// KIND/NAME..., or KIND NAME... (deployment, replicaset, statefulset).
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The new desired number of replicas (required, 0 or more).
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: Option<i64>,
    /// Precondition: scale only while the current size is this (-1: no precondition).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// Precondition: scale only while the object's resourceVersion is this.
    #[arg(long)]
    pub resource_version: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SetCommand {
    /// Update the image of containers: `set image KIND/NAME CONTAINER=IMAGE...` (`*=IMAGE` sets
    /// every container).
    Image(SetImageArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SetImageArgs {
    /// The objects (KIND/NAME... or KIND NAME...), then CONTAINER=IMAGE pairs.
    #[arg(required = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Show the status of the rollout, watching it until it is done.
    Status(RolloutStatusArgs),
    /// Show the revisions of a rollout (and one revision's pod template with --revision).
    History(RolloutHistoryArgs),
    /// Roll back to the previous revision, or to --to-revision.
    Undo(RolloutUndoArgs),
    /// Pause a deployment: changes to its template start no rollout until it is resumed.
    Pause(RolloutTargetArgs),
    /// Resume a paused deployment.
    Resume(RolloutTargetArgs),
    /// Restart every pod of a deployment, daemon set or stateful set with a new rollout.
    Restart(RolloutTargetArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RolloutTargetArgs {
    /// KIND/NAME..., KIND NAME..., or KIND alone for every object of the kind.
    #[arg(required = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutStatusArgs {
    /// KIND/NAME or KIND NAME (one object).
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Watch the status of the rollout until it is done (--watch=false: print it once).
    #[arg(
        short = 'w',
        long,
        default_value_t = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub watch: bool,
    /// How long to wait before giving up (e.g. 30s, 2m, 1h); 0 waits forever.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Pin to a revision: fail if the deployment moves to another one (0: the latest).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub revision: i64,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutHistoryArgs {
    /// KIND/NAME..., KIND NAME..., or KIND alone.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Show the pod template of this revision.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub revision: i64,
}

#[derive(Debug, Clone, Args)]
pub struct RolloutUndoArgs {
    /// KIND/NAME..., KIND NAME..., or KIND alone.
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The revision to roll back to (0: the previous one).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub to_revision: i64,
}

/// A Go duration as kubectl takes it: `0`, or numbers with units (`ns`, `us`, `µs`, `ms`, `s`, `m`,
/// `h`), e.g. `1m30s`, `1.5h`, `500ms`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = |why: &str| format!("{why} in duration \"{text}\" (e.g. 30s, 2m, 1h)");
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(bad("a negative value"));
    }
    if rest.is_empty() {
        return Err(bad("no value"));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(bad("a number is missing"));
        }
        let value: f64 = number.parse().map_err(|_| bad("a bad number"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(bad("a unit is missing")),
            _ => return Err(bad(&format!("unknown unit \"{unit}\""))),
        };
        total += value * seconds;
        rest = after;
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad("an out-of-range value"))
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Members, leader, term, commit index and applied revision.
    Status {
        /// Print the status as JSON instead of a table.
        #[arg(short = 'o', long, value_enum)]
        output: Option<StatusFormat>,
    },
    /// Add a server (its Raft address) to the cluster.
    AddServer {
        /// The new server's id.
        id: u64,
        /// Its Raft (peer) address, host:port.
        addr: String,
    },
    /// Remove a server from the cluster.
    RemoveServer {
        /// The id of the server to remove.
        id: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("corralctl").chain(args.iter().copied()))
    }

    #[test]
    fn servers_split_on_commas_and_default_to_corral_up() {
        let cli = parse(&["--server", "a:1,b:2", "get", "pods"]).expect("valid");
        assert_eq!(cli.server, ["a:1", "b:2"]);
        // The default applies when neither the flag nor CORRAL_SERVER is given.
        if std::env::var_os("CORRAL_SERVER").is_none() {
            assert_eq!(
                parse(&["get", "pods"]).expect("valid").server,
                [DEFAULT_SERVER]
            );
        }
    }

    #[test]
    fn global_flags_go_before_or_after_the_verb() {
        let cli = parse(&[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "app=web",
            "-o",
            "wide",
            "-w",
        ])
        .expect("valid");
        assert_eq!(cli.namespace(), "kube-system");
        let Command::Get(get) = cli.command else {
            panic!("get")
        };
        assert_eq!(
            (get.kind.as_str(), get.selector.as_deref()),
            ("pods", Some("app=web"))
        );
        assert_eq!((get.output, get.watch), (Some(OutputFormat::Wide), true));

        let cli = parse(&[
            "-A",
            "get",
            "deploy",
            "web",
            "--field-selector",
            "metadata.name=web",
        ])
        .expect("valid");
        assert!(cli.all_namespaces);
        assert_eq!(cli.namespace(), "default");
        let Command::Get(get) = cli.command else {
            panic!("get")
        };
        assert_eq!(get.names, ["web"]);
        assert_eq!(get.field_selector.as_deref(), Some("metadata.name=web"));
    }

    #[test]
    fn apply_needs_a_file_and_takes_several() {
        assert!(parse(&["apply"]).is_err());
        let cli = parse(&["apply", "-f", "a.yaml", "--filename", "dir", "-f", "-"]).expect("valid");
        let Command::Apply(apply) = cli.command else {
            panic!("apply")
        };
        assert_eq!(
            apply.files,
            [
                PathBuf::from("a.yaml"),
                PathBuf::from("dir"),
                PathBuf::from("-")
            ]
        );
    }

    #[test]
    fn delete_takes_names_cascade_and_grace_period() {
        let cli = parse(&[
            "delete",
            "pod",
            "a",
            "b",
            "--cascade=orphan",
            "--grace-period",
            "0",
        ])
        .expect("valid");
        let Command::Delete(d) = cli.command else {
            panic!("delete")
        };
        assert_eq!(d.args, ["pod", "a", "b"]);
        assert_eq!((d.cascade, d.grace_period), (Cascade::Orphan, Some(0)));
        assert!(parse(&["delete", "pod", "a", "--cascade=sideways"]).is_err());
        let cli = parse(&["delete", "-f", "x.yaml"]).expect("valid");
        let Command::Delete(d) = cli.command else {
            panic!("delete")
        };
        assert_eq!((d.args.len(), d.cascade), (0, Cascade::Background));
    }

    #[test]
    fn bad_output_formats_are_refused() {
        assert!(parse(&["get", "pods", "-o", "jsonpath"]).is_err());
        assert!(parse(&["cluster", "status", "-o", "yaml"]).is_err());
        let cli = parse(&["cluster", "status", "-o", "json"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status {
                output: Some(StatusFormat::Json)
            })
        ));
    }

    #[test]
    fn cluster_membership_commands_take_ids() {
        let cli = parse(&["cluster", "add-server", "4", "10.0.0.4:7071"]).expect("valid");
        assert!(
            matches!(cli.command, Command::Cluster(ClusterCommand::AddServer { id: 4, ref addr }) if addr == "10.0.0.4:7071")
        );
        assert!(parse(&["cluster", "remove-server", "x"]).is_err());
    }

    #[test]
    fn logs_takes_a_pod_container_follow_previous_and_tail() {
        let cli = parse(&[
            "logs",
            "pod/web",
            "-c",
            "app",
            "-f",
            "--previous",
            "--tail",
            "20",
            "-n",
            "prod",
        ])
        .expect("valid");
        assert_eq!(cli.namespace(), "prod");
        let Command::Logs(l) = cli.command else {
            panic!("logs")
        };
        assert_eq!(
            (l.pod.as_str(), l.container.as_deref(), l.container_arg),
            ("pod/web", Some("app"), None)
        );
        assert_eq!((l.follow, l.previous, l.tail), (true, true, 20));

        let cli = parse(&["logs", "web", "sidecar", "-p", "--tail=-1"]).expect("valid");
        let Command::Logs(l) = cli.command else {
            panic!("logs")
        };
        assert_eq!(l.container_arg.as_deref(), Some("sidecar"));
        assert_eq!((l.follow, l.previous, l.tail), (false, true, -1));

        let cli = parse(&["logs", "web"]).expect("valid");
        let Command::Logs(l) = cli.command else {
            panic!("logs")
        };
        assert_eq!(
            (l.container, l.follow, l.previous, l.tail),
            (None, false, false, -1)
        );

        assert!(parse(&["logs"]).is_err());
        assert!(parse(&["logs", "web", "--tail", "many"]).is_err());
    }

    #[test]
    fn scale_takes_replicas_and_preconditions() {
        let cli = parse(&[
            "scale",
            "deploy/web",
            "--replicas",
            "5",
            "--current-replicas=3",
        ])
        .expect("valid");
        let Command::Scale(s) = cli.command else {
            panic!("scale")
        };
        assert_eq!(
            (s.args, s.replicas, s.current_replicas),
            (vec!["deploy/web".to_string()], Some(5), 3)
        );
        let cli = parse(&["scale", "deployment", "web", "--replicas=-1"]).expect("valid");
        let Command::Scale(s) = cli.command else {
            panic!("scale")
        };
        assert_eq!((s.replicas, s.current_replicas), (Some(-1), -1));
        assert!(parse(&["scale", "--replicas", "2"]).is_err());
    }

    #[test]
    fn set_image_takes_objects_then_pairs() {
        let cli = parse(&["set", "image", "deploy/web", "app=app:2", "-n", "prod"]).expect("valid");
        assert_eq!(cli.namespace(), "prod");
        let Command::Set(SetCommand::Image(s)) = cli.command else {
            panic!("set image")
        };
        assert_eq!(s.args, ["deploy/web", "app=app:2"]);
        assert!(parse(&["set", "image"]).is_err());
        assert!(parse(&["set", "env", "deploy/web"]).is_err());
    }

    #[test]
    fn rollout_subcommands_take_their_flags() {
        let cli = parse(&["rollout", "status", "deploy/web"]).expect("valid");
        let Command::Rollout(RolloutCommand::Status(s)) = cli.command else {
            panic!("status")
        };
        assert_eq!(
            (s.watch, s.timeout, s.revision),
            (true, std::time::Duration::ZERO, 0)
        );
        let cli = parse(&[
            "rollout",
            "status",
            "deploy/web",
            "--watch=false",
            "--timeout",
            "1m30s",
        ])
        .expect("valid");
        let Command::Rollout(RolloutCommand::Status(s)) = cli.command else {
            panic!("status")
        };
        assert_eq!(
            (s.watch, s.timeout),
            (false, std::time::Duration::from_secs(90))
        );
        let cli = parse(&["rollout", "status", "-w", "deploy/web"]).expect("valid");
        let Command::Rollout(RolloutCommand::Status(s)) = cli.command else {
            panic!("status")
        };
        assert!(s.watch);
        assert!(parse(&["rollout", "status", "deploy/web", "--timeout", "5"]).is_err());

        let cli = parse(&["rollout", "undo", "deploy/web", "--to-revision=2"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Rollout(RolloutCommand::Undo(RolloutUndoArgs { to_revision: 2, .. }))
        ));
        let cli =
            parse(&["rollout", "history", "deployment", "web", "--revision", "3"]).expect("valid");
        let Command::Rollout(RolloutCommand::History(h)) = cli.command else {
            panic!("history")
        };
        assert_eq!((h.args.len(), h.revision), (2, 3));
        for verb in ["pause", "resume", "restart"] {
            assert!(parse(&["rollout", verb, "deploy/web"]).is_ok(), "{verb}");
            assert!(parse(&["rollout", verb]).is_err(), "{verb}");
        }
    }

    #[test]
    fn durations_read_like_go() {
        use std::time::Duration;
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("+1s"), Ok(Duration::from_secs(1)));
        for bad in ["", "5", "s", "1d", "-1s", "1..5s", "1s2"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("\"{bad}\"")), "{err}");
        }
    }

    #[test]
    fn the_clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
