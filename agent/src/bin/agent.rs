//! The agent daemon: `agent run --config FILE` in production, `agent dev` for a local cluster.

use std::path::PathBuf;

use agent::config::Config;
use agent::dev::{PortPlan, run_dev};
use clap::{Parser, Subcommand};

#[path = "agent/cert.rs"]
mod cert;
#[path = "agent/disaster.rs"]
mod disaster;

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
    /// Create the cluster, once, on the running agent a configuration describes (refused
    /// when it or one of its seeds already belongs to a cluster).
    Init {
        /// That agent's configuration (its certificates authenticate this request).
        #[arg(long)]
        config: PathBuf,
        /// Peer address of the agent to ask, if not the configuration's own.
        #[arg(long)]
        peer: Option<String>,
    },
    /// Start a new cluster's metadata from a backup (`agentctl snapshot save`): writes the
    /// metadata store of the agent a configuration describes, with that agent its only
    /// voter. Run it on a stopped agent whose data dir holds no metadata, then start it.
    Restore {
        /// The agent's configuration (its data dir receives the metadata).
        #[arg(long)]
        config: PathBuf,
        /// Backup file.
        #[arg(long)]
        snapshot: PathBuf,
    },
    /// After a majority of metadata voters is lost for good: make this stopped agent the
    /// only voter, keeping everything in its log. Shows the plan; --yes applies it.
    Recover {
        /// The surviving agent's configuration.
        #[arg(long)]
        config: PathBuf,
        /// Apply the plan (without it nothing is changed).
        #[arg(long)]
        yes: bool,
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
            private_files();
            let config = Config::load(&config)?;
            init_tracing(config.node_id);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(agent::node::run(config))
        }
        Cmd::Cert(cmd) => cert::run(cmd),
        Cmd::Init { config, peer } => init(&config, peer),
        Cmd::Restore { config, snapshot } => {
            private_files();
            disaster::restore(&config, &snapshot)
        }
        Cmd::Recover { config, yes } => {
            private_files();
            disaster::recover(&config, yes)
        }
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

/// The file creation mask of the commands that write a data dir.
const FILE_CREATION_MASK: libc::mode_t = 0o077;

/// Every file this process makes in a data dir (running, restoring, recovering) is its
/// owner's only (0600, directories 0700).
fn private_files() {
    // SAFETY: umask only sets the process's file creation mask; no threads yet.
    unsafe { libc::umask(FILE_CREATION_MASK) };
}

/// How long `agent init` waits for the agent's answer (it asks its seeds first).
const INIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn init(config_path: &std::path::Path, peer: Option<String>) -> anyhow::Result<()> {
    use anyhow::Context;
    let config = Config::load(config_path)?;
    let addr = peer.unwrap_or_else(|| config.advertised_peer());
    let material = config.tls.files().load().context("loading TLS files")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let cluster = runtime.block_on(async {
        let transport = agent::transport::quic::QuicTransport::bind(
            "0.0.0.0:0".parse()?,
            agent::transport::tls::server_config(&material)?,
            agent::transport::tls::client_config(&material)?,
            INIT_TIMEOUT,
        )?;
        let created = agent::bootstrap::request_init(&transport, &addr).await;
        transport.close();
        anyhow::Ok(created?)
    })?;
    println!(
        "created cluster {cluster} on the agent at {addr}; its bootstrap admin's credentials \
         will be in that agent's data dir ({})",
        config
            .data_dir
            .join(agent::auth::admin::ADMIN_CREDENTIALS_FILE)
            .display()
    );
    Ok(())
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
