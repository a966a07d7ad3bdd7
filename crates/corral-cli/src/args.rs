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
    fn the_clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
