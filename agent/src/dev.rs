//! `agent dev`: a whole local cluster of real agent processes on loopback, and the
//! helpers the multi-process tests share with it (cluster files, child processes).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::api_client::ApiClient;
use crate::config::{Config, ListenConfig};
use crate::transport::tls::{self, CertPair, NodeTls, TlsFiles};

/// Zones assigned round-robin to local agents, so placement spreads across zones.
pub const DEV_ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// Largest local cluster `agent dev` starts.
pub const DEV_MAX_NODES: u16 = 50;
/// Offset of the first peer (QUIC) port from the first HTTP port.
pub const PEER_PORT_OFFSET: u16 = 100;
/// File name of each agent's configuration in its directory.
pub const CONFIG_FILE: &str = "agent.toml";
/// File name of each agent's log in its directory.
pub const LOG_FILE: &str = "agent.log";

/// Ports of a local cluster: agent i (1-based) has HTTP `http_base + i - 1` and peer
/// `http_base + PEER_PORT_OFFSET + i - 1`.
#[derive(Debug, Clone, Copy)]
pub struct PortPlan {
    /// HTTP port of agent 1.
    pub http_base: u16,
}

impl PortPlan {
    /// HTTP address of agent `i`.
    pub fn http(&self, i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_base + i - 1))
    }

    /// Peer address of agent `i`.
    pub fn peer(&self, i: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http_base + PEER_PORT_OFFSET + i - 1))
    }
}

/// Where `agent dev` keeps its cluster unless told otherwise (and where `agentctl`
/// looks for the admin credentials by default).
pub const DEFAULT_DEV_DIR: &str = "./.agent-dev";

/// The bootstrap admin's credentials file of a local cluster (written by agent 1, the
/// bootstrap agent, in its data dir).
pub fn admin_credentials_path(dir: &Path) -> PathBuf {
    node_dir(dir, 1)
        .join("data")
        .join(crate::auth::admin::ADMIN_CREDENTIALS_FILE)
}

/// Directory of agent `i` inside a cluster directory.
pub fn node_dir(dir: &Path, i: u16) -> PathBuf {
    dir.join(format!("node-{i}"))
}

/// Writes the cluster CA (once), and for each agent its certificate and configuration
/// (kept if already present, so a restarted dev cluster reuses its data). Returns the
/// configuration paths.
pub fn write_cluster_files(
    dir: &Path,
    nodes: u16,
    ports: PortPlan,
) -> anyhow::Result<Vec<PathBuf>> {
    let last_port = u32::from(ports.http_base) + u32::from(PEER_PORT_OFFSET) + u32::from(nodes);
    anyhow::ensure!(
        ports.http_base >= 1024 && last_port <= u32::from(u16::MAX),
        "ports {}..{last_port} do not fit: choose an HTTP port from 1024 up",
        ports.http_base
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_cert = dir.join("ca.pem");
    let ca_key = dir.join("ca.key");
    let ca = if ca_cert.exists() {
        tls::read_pair(&ca_cert, &ca_key)?
    } else {
        let ca = tls::generate_ca("agent-dev")?;
        tls::write_pair(&ca, &ca_cert, &ca_key)?;
        ca
    };
    (1..=nodes)
        .map(|i| write_node_files(dir, i, &ca, ports))
        .collect()
}

fn write_node_files(dir: &Path, i: u16, ca: &CertPair, ports: PortPlan) -> anyhow::Result<PathBuf> {
    let node_dir = node_dir(dir, i);
    std::fs::create_dir_all(&node_dir)?;
    let config_path = node_dir.join(CONFIG_FILE);
    if config_path.exists() {
        update_ports(&config_path, i, ports)?;
        return Ok(config_path);
    }
    let files = TlsFiles::in_dir(&node_dir);
    let node = tls::issue_node_cert(ca, u64::from(i))?;
    files.write(&NodeTls {
        ca_cert_pem: ca.cert_pem.clone(),
        node,
    })?;
    let listen = ListenConfig::on(ports.peer(i), ports.http(i));
    let data_dir = node_dir.join("data");
    let mut config = Config::with_defaults(u64::from(i), "dev", data_dir, listen, files.into());
    config.zone = DEV_ZONES[usize::from(i - 1) % DEV_ZONES.len()].to_string();
    config.bootstrap = i == 1;
    if i != 1 {
        config.seeds = vec![ports.peer(1).to_string()];
    }
    config.validate()?;
    std::fs::write(&config_path, toml::to_string_pretty(&config)?)?;
    Ok(config_path)
}

/// Keeps an existing agent's config (and so its data) but moves it to the port plan asked for.
fn update_ports(path: &Path, i: u16, ports: PortPlan) -> anyhow::Result<()> {
    let mut config: Config = toml::from_str(&std::fs::read_to_string(path)?)
        .with_context(|| format!("reading {}", path.display()))?;
    if config.listen.http == ports.http(i) && config.listen.peer == ports.peer(i) {
        return Ok(());
    }
    config.listen.http = ports.http(i);
    config.listen.peer = ports.peer(i);
    if i != 1 {
        config.seeds = vec![ports.peer(1).to_string()];
    }
    std::fs::write(path, toml::to_string_pretty(&config)?)?;
    Ok(())
}

/// Starts `agent run --config FILE` with its output appended to a log next to the config.
/// The child is killed if the thread that started it dies (Linux parent-death signal).
pub fn spawn_agent(binary: &Path, config: &Path) -> anyhow::Result<Child> {
    spawn_agent_with_env(binary, config, &[])
}

/// [`spawn_agent`] with extra environment variables (e.g. libfaketime's, in tests).
pub fn spawn_agent_with_env(
    binary: &Path,
    config: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let log_path = config.with_file_name(LOG_FILE);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl, getppid and _exit are async-signal-safe and touch only the child.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before prctl took effect: then nobody would kill us.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Child agents that are all killed when dropped (also when a test panics).
#[derive(Default)]
pub struct Children {
    children: Vec<(u16, Child)>,
}

impl Children {
    /// Adds a running agent.
    pub fn push(&mut self, index: u16, child: Child) {
        self.children.push((index, child));
    }

    /// Kills agent `index` with SIGKILL and waits for it.
    pub fn kill(&mut self, index: u16) {
        if let Some(pos) = self.children.iter().position(|(i, _)| *i == index) {
            let (_, mut child) = self.children.remove(pos);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends `signal` (SIGSTOP to freeze the process, SIGCONT to resume it) to agent
    /// `index`; false if it is not running.
    pub fn signal(&self, index: u16, signal: i32) -> bool {
        let Some((_, child)) = self.children.iter().find(|(i, _)| *i == index) else {
            return false;
        };
        let Ok(pid) = i32::try_from(child.id()) else {
            return false;
        };
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe { libc::kill(pid, signal) == 0 }
    }

    /// Stops every agent gracefully (SIGTERM), killing those that do not exit in time.
    pub fn stop_all(&mut self, grace: Duration) {
        for (_, child) in &self.children {
            // SAFETY: sending a signal to a child we own.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        }
        let deadline = Instant::now() + grace;
        for (_, child) in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// How agent `index` exited, once it has (it is then forgotten); `None` while it runs.
    pub fn exit_status(&mut self, index: u16) -> Option<std::process::ExitStatus> {
        let pos = self.children.iter().position(|(i, _)| *i == index)?;
        let status = self.children[pos].1.try_wait().ok()??;
        self.children.remove(pos);
        Some(status)
    }

    /// Removes and returns the indices of agents that exited on their own.
    pub fn reap_exited(&mut self) -> Vec<u16> {
        let mut exited = Vec::new();
        self.children.retain_mut(|(i, c)| {
            let done = matches!(c.try_wait(), Ok(Some(_)));
            if done {
                exited.push(*i);
            }
            !done
        });
        exited
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until the cluster seen through `client` has a leader and `voters` voters.
pub fn wait_for_voters(client: &ApiClient, voters: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(c) = client.cluster()
            && c.leader_id.is_some()
            && c.voters.len() >= voters
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the cluster did not reach {voters} voters within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A client of agent 1 authenticated as the bootstrap admin, once agent 1 has written
/// the admin's credentials file.
pub fn admin_client(dir: &Path, ports: PortPlan, timeout: Duration) -> anyhow::Result<ApiClient> {
    let path = admin_credentials_path(dir);
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() >= deadline {
            anyhow::bail!(
                "no admin credentials in {} within {timeout:?}",
                path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let credentials = crate::auth::admin::PrincipalCredentials::load(&path)?;
    Ok(ApiClient::new(&format!("http://{}", ports.http(1))).with_principal(&credentials))
}

/// Runs `agent dev`: writes the files, starts the agents, waits for the voters, and stops
/// everything on Ctrl-C.
pub fn run_dev(nodes: u16, dir: &Path, ports: PortPlan) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=DEV_MAX_NODES).contains(&nodes),
        "--nodes must be between 1 and {DEV_MAX_NODES}"
    );
    let configs = write_cluster_files(dir, nodes, ports)?;
    let binary = std::env::current_exe()?;
    let mut children = Children::default();
    for (i, config) in (1..).zip(&configs) {
        children.push(i, spawn_agent(&binary, config)?);
    }
    let voters = shared::placement::voter_target(usize::from(nodes), &Default::default());
    println!("starting {nodes} agents in {} ...", dir.display());
    let ready = admin_client(dir, ports, Duration::from_secs(60))
        .and_then(|client| wait_for_voters(&client, voters, Duration::from_secs(60)));
    if let Err(e) = ready {
        children.stop_all(Duration::from_secs(2));
        return Err(e.context(format!(
            "see the agent logs in {}/node-*/{LOG_FILE}",
            dir.display()
        )));
    }
    print_welcome(nodes, dir, ports);
    wait_for_ctrl_c(&mut children);
    println!("stopping {nodes} agents ...");
    children.stop_all(Duration::from_secs(5));
    Ok(())
}

fn print_welcome(nodes: u16, dir: &Path, ports: PortPlan) {
    println!(
        "local cluster ready: {nodes} agents, admin API on http://{}",
        ports.http(1)
    );
    println!(
        "  agents' HTTP APIs: http://{} .. http://{}",
        ports.http(1),
        ports.http(nodes)
    );
    println!("  data, configs and logs: {}/node-*/", dir.display());
    println!(
        "  admin credentials (mode 0600; agentctl uses them by default): {}",
        admin_credentials_path(dir).display()
    );
    println!();
    println!("try, in another terminal:");
    println!("  cargo run --bin agentctl -- cluster status");
    println!(
        "  cargo run --bin agentctl -- table create orders --partition-key id --write-units 3000 --wait"
    );
    println!("  cargo run --bin agentctl -- table partitions orders");
    println!("  cargo run --bin agentctl -- nodes");
    println!();
    println!("Ctrl-C stops every agent (data is kept; run again to restart the same cluster).");
}

fn wait_for_ctrl_c(children: &mut Children) {
    let (tx, rx) = std::sync::mpsc::channel();
    // A failed handler registration only means Ctrl-C kills us outright, children included
    // (parent-death signal), so it is not fatal.
    let _ = ctrlc_channel(tx);
    loop {
        if rx.recv_timeout(Duration::from_millis(500)).is_ok() {
            return;
        }
        let exited = children.reap_exited();
        if !exited.is_empty() {
            eprintln!("agents {exited:?} exited; see their {LOG_FILE}");
        }
    }
}

fn ctrlc_channel(tx: std::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        let _ = tx.send(());
    });
    Ok(())
}
