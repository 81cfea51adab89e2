//! The agent daemon: `agent run --config FILE` in production, `agent dev` for a local cluster.

use std::path::PathBuf;

use agent::config::Config;
use agent::dev::{PortPlan, run_dev};
use clap::{Parser, Subcommand};

#[path = "agent/cert.rs"]
mod cert;

#[derive(Parser)]
#[command(
    name = "agent",
    version,
    about = "Control-plane agent of the distributed database"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon with a configuration file.
    Run {
        /// Configuration file (see config.example.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Start a local cluster of real agents on loopback; Ctrl-C stops it.
    Dev {
        /// Number of agents.
        #[arg(long, default_value_t = 5)]
        nodes: u16,
        /// Directory for certificates, configurations, data and logs.
        #[arg(long, default_value = agent::dev::DEFAULT_DEV_DIR)]
        dir: PathBuf,
        /// HTTP port of agent 1; the others use the next ports, peers listen 100 above.
        #[arg(long, default_value_t = 7070)]
        http_port: u16,
    },
    /// Make and inspect the cluster's certificates (CA, node certificates).
    #[command(subcommand)]
    Cert(cert::CertCmd),
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(why) => {
            // The chain of causes, one line; no backtrace for an operator's mistake.
            eprintln!("error: {why:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Run { config } => {
            let config = Config::load(&config)?;
            init_tracing(config.node_id);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(agent::node::run(config))
        }
        Cmd::Cert(cmd) => cert::run(cmd),
        Cmd::Dev {
            nodes,
            dir,
            http_port,
        } => run_dev(
            nodes,
            &dir,
            PortPlan {
                http_base: http_port,
            },
        ),
    }
}

fn init_tracing(node_id: u64) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .init();
    tracing::info!(node_id, "agent starting");
}
