//! `corral`: one binary for a control-plane server, an all-in-one single node (`up`) and the
//! benchmarks. Thin: parse flags (each also read from a `CORRAL_...` variable), then hand over.

mod bench;
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
    /// Run everything on this machine in one process: one server (later with agent and DNS).
    Up(server::UpArgs),
    /// Benchmarks that print tables.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(a) => server::run_server(a).await,
            Command::Up(a) => server::run_up(a).await,
            Command::Bench(b) => bench::run(b).await,
        }
    })
}
