//! `corral`: one binary for a control-plane server, an all-in-one single node (`up`) and the
//! benchmarks. Thin: parse flags (each also read from a `CORRAL_...` variable), then hand over.

mod agent;
mod bench;
mod bench_chaos;
mod bench_dns;
mod bench_pods;
mod bench_sched;
mod dns;
mod server;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "corral",
    version,
    about = "Corral: a Kubernetes-style container orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a control-plane server (a Raft member serving the API).
    Server(server::ServerArgs),
    /// Run the node agent: register this machine as a Node and run the pods bound to it.
    Agent(agent::AgentArgs),
    /// Run everything on this machine in one process: one server and one agent.
    Up(server::UpArgs),
    /// Benchmarks that print tables.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<std::process::ExitCode> {
    // `corral shim ...` (the process runtime's per-container supervisor) runs before clap,
    // tracing and tokio: unshare(CLONE_NEWNS) and setns need a process with a single thread.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return Ok(corral_agent::shim::main(
            std::env::args_os().skip(2).collect(),
        ));
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,openraft=warn,hickory_server=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(a) => server::run_server(a).await,
            Command::Agent(a) => agent::run_agent(a).await,
            Command::Up(a) => server::run_up(a).await,
            Command::Bench(b) => bench::run(b).await,
        }
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
