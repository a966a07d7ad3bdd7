//! `corralctl`, Corral's command-line client, shaped like kubectl: `apply`, `get`, `describe`,
//! `delete` and `cluster`, against any list of API servers (`--server` or `CORRAL_SERVER`, by
//! default where `corral up` listens). Output matches kubectl's tables, JSON, YAML and error lines;
//! every failure exits 1 with one line on stderr. The binary is a thin `main` around [`main_with_args`].
//!
//! Layout:
//! - `args`: the command line (clap derive).
//! - `commands`: one module per verb (`apply`, `get`, `describe`, `delete`, `cluster`) and the
//!   shared [`commands::Ctx`]. Room is left for `logs`, `scale`, `rollout`, `set image`, `create`.
//! - `manifest`: reading `-f` files, directories and standard input; fitting namespaces.
//! - `columns`: the per-kind table columns of `get`.
//! - `output`: resource names, JSON/YAML/List rendering, kubectl-style error lines.
//! - `table`: the table layout and the age formatter.
//! - `error`: [`CliError`], what ends a command with exit code 1.

pub mod args;
pub mod columns;
pub mod commands;
pub mod error;
pub mod manifest;
pub mod output;
pub mod table;

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use corral_api::ApiError;
use corral_client::Client;

pub use args::Cli;
pub use error::CliError;

use args::Command;
use commands::Ctx;

/// Runs a parsed command line, writing results to `out` and per-object failures to `err`.
pub async fn run(
    cli: &Cli,
    out: &mut (dyn Write + Send + Sync),
    err: &mut (dyn Write + Send + Sync),
    stdin: &mut (dyn Read + Send + Sync),
) -> Result<(), CliError> {
    let client = Client::connect(&cli.server).map_err(|e| match e {
        ApiError::BadRequest { message } => CliError::Usage(message),
        other => CliError::Api(other),
    })?;
    let mut ctx = Ctx {
        client,
        namespace: cli.namespace().to_string(),
        explicit_namespace: cli.namespace.as_deref().is_some_and(|n| !n.is_empty()),
        all_namespaces: cli.all_namespaces,
        out,
        err,
        stdin,
    };
    let result = match &cli.command {
        Command::Apply(a) => commands::apply::run(&mut ctx, a).await,
        Command::Get(a) => commands::get::run(&mut ctx, a).await,
        Command::Describe(a) => commands::describe::run(&mut ctx, a).await,
        Command::Delete(a) => commands::delete::run(&mut ctx, a).await,
        Command::Logs(a) => commands::logs::run(&mut ctx, a).await,
        Command::Scale(a) => commands::scale::run(&mut ctx, a).await,
        Command::Set(args::SetCommand::Image(a)) => commands::set_image::run(&mut ctx, a).await,
        Command::Rollout(c) => commands::rollout::run(&mut ctx, c).await,
        Command::Cluster(c) => commands::cluster::run(&mut ctx, c).await,
    };
    ctx.out.flush().map_err(CliError::Output)?;
    result
}

/// The whole program: parses `args` (the first is the program name), runs the command on a Tokio
/// runtime against standard input and output, prints any error as one line on stderr, and answers
/// the exit code (0, or 1 on any error).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", usage_error_line(&e));
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (mut out, mut err, mut stdin) = (std::io::stdout(), std::io::stderr(), std::io::stdin());
    match runtime.block_on(run(&cli, &mut out, &mut err, &mut stdin)) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`corralctl get pods | head`): nothing left to say.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
        Err(e) => {
            if e.needs_printing() {
                eprintln!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A clap error as one line: its message and tips, without the usage block.
pub fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let parts: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = parts.join("; ").replace(":;", ":");
    if !line.starts_with("error") {
        line = format!("error: {line}");
    }
    format!("{line} (see 'corralctl --help')")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clap_error(args: &[&str]) -> clap::Error {
        Cli::try_parse_from(std::iter::once("corralctl").chain(args.iter().copied()))
            .expect_err("invalid")
    }

    #[test]
    fn usage_errors_fit_on_one_line() {
        for args in [
            &["get"][..],
            &["apply"],
            &["get", "pods", "--bogus"],
            &["frobnicate"],
            &[],
        ] {
            let line = usage_error_line(&clap_error(args));
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("error: "), "{line}");
        }
        let line = usage_error_line(&clap_error(&["apply"]));
        assert!(line.contains("--filename"), "{line}");
    }

    #[tokio::test]
    async fn a_bad_server_address_is_a_usage_error() {
        let cli = Cli::try_parse_from(["corralctl", "--server", "no-port", "get", "pods"])
            .expect("parses");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run(&cli, &mut out, &mut err, &mut std::io::empty()).await;
        let Err(CliError::Usage(message)) = result else {
            panic!("expected a usage error, got {result:?}")
        };
        assert!(message.contains("no-port"), "{message}");
    }

    #[tokio::test]
    async fn an_unknown_kind_is_reported_like_kubectl() {
        let cli = Cli::try_parse_from(["corralctl", "--server", "127.0.0.1:1", "get", "widgets"])
            .expect("parses");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let result = run(&cli, &mut out, &mut err, &mut std::io::empty()).await;
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err("error: the server doesn't have a resource type \"widgets\"".to_string())
        );
    }

    #[tokio::test]
    async fn no_server_reachable_is_one_line_naming_the_address() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let cli =
            Cli::try_parse_from(["corralctl", "--server", &addr, "get", "pods"]).expect("parses");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = run(&cli, &mut out, &mut err, &mut std::io::empty())
            .await
            .expect_err("nothing listens");
        let line = e.to_string();
        assert!(
            line.starts_with("Unable to connect to the server: "),
            "{line}"
        );
        assert!(line.contains(&addr) && !line.contains('\n'), "{line}");
    }
}
