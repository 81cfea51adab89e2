//! The agents: one real `agent run` process per host namespace, with its generated
//! configuration, certificates and data directory (on a tmpfs of its own, so a full
//! disk is one file away), started under libfaketime so one host's clock can be moved.
//!
//! Every process is spawned by the thread that owns [`Hosts`] and gets a parent-death
//! signal bound to that thread: if the testbed dies, so do its agents.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent::config::{Config, ListenConfig};
use agent::transport::tls::{self, CertPair, NodeTls, TlsFiles};
use anyhow::Context;

use crate::net::{Network, host_addr, run};

/// Zones, assigned round-robin: host i is in `ZONES[(i - 1) % 3]`.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];
/// The agents' peer (QUIC) port on their host address.
pub const PEER_PORT: u16 = 7000;
/// The agents' HTTP port on their host address.
pub const HTTP_PORT: u16 = 8080;
/// Name of the cluster the testbed creates.
pub const CLUSTER_NAME: &str = "testbed";
/// libfaketime's multi-threaded build, where Debian's `faketime` package puts it.
const FAKETIME_LIBRARIES: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
];
/// How often libfaketime rereads a host's clock file, in seconds.
const FAKETIME_REREAD_SECS: &str = "1";
/// The clock file's content when the clock is right. The rate is explicit: libfaketime
/// keeps the last rate it read when a spec names none, so a host once slowed to x0.5
/// stayed slow after "+0" and drifted minutes behind (the long run, seed 7).
pub const CLOCK_RIGHT: &str = "+0 x1\n";
/// Mount source name of the testbed's data tmpfs mounts (how leftovers are found).
const TMPFS_SOURCE: &str = "testbed-data";

/// The libfaketime spec for a clock that runs at `rate` from `elapsed` seconds after
/// the process started and reads the right time at that instant.
fn rate_spec(elapsed: f64, rate: f64) -> String {
    format!("{:+.3} x{rate}", elapsed * (1.0 - rate))
}

/// The libfaketime library, if installed.
pub fn faketime_library() -> Option<&'static str> {
    FAKETIME_LIBRARIES
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Zone of host `i`.
pub fn zone_of(i: u16) -> &'static str {
    ZONES[usize::from(i - 1) % ZONES.len()]
}

/// HTTP endpoint of host `i`.
pub fn http_endpoint(i: u16) -> String {
    format!("http://{}:{HTTP_PORT}", host_addr(i))
}

/// Unmounts every data tmpfs under `root` (leftovers of a crashed run there); under
/// `/` that is every one the testbed ever mounted.
pub fn unmount_leftovers(root: &Path) -> anyhow::Result<()> {
    let mounts = std::fs::read_to_string("/proc/mounts")?;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        if source == TMPFS_SOURCE && Path::new(target).starts_with(root) {
            run("umount", &["-l", target])?;
        }
    }
    Ok(())
}

/// What the testbed knows about one host's files.
#[derive(Debug, Clone)]
pub struct HostFiles {
    /// The host's directory (config, certificates, log, clock file).
    pub dir: PathBuf,
    /// The agent's configuration.
    pub config: PathBuf,
    /// The agent's data directory (a tmpfs mount).
    pub data_dir: PathBuf,
    /// libfaketime's clock file for this host.
    pub clock_file: PathBuf,
    /// The agent's log.
    pub log: PathBuf,
}

impl HostFiles {
    fn new(root: &Path, i: u16) -> HostFiles {
        let dir = root.join(format!("h{i}"));
        HostFiles {
            config: dir.join("agent.toml"),
            data_dir: dir.join("data"),
            clock_file: dir.join("clock"),
            log: dir.join("agent.log"),
            dir,
        }
    }
}

/// How the hosts are built.
#[derive(Debug, Clone)]
pub struct HostsConfig {
    /// The `agent` binary.
    pub binary: PathBuf,
    /// The agents' `RUST_LOG` (`None`: the agent's default).
    pub log_filter: Option<String>,
    /// Where the hosts' directories go.
    pub root: PathBuf,
    /// Size of each host's data tmpfs, in MiB.
    pub disk_mib: u64,
    /// Host indices that start with the cluster (the others join later).
    pub initial: u16,
}

/// One host's process state.
struct Host {
    files: HostFiles,
    child: Option<Child>,
    paused: bool,
    /// When the agent process started (libfaketime's rates count from there).
    started: Option<std::time::Instant>,
    /// How the agent exited on its own, until the director takes it.
    exited: Option<std::process::ExitStatus>,
}

/// All hosts of a run. Dropping it kills every agent and unmounts the data tmpfs.
pub struct Hosts {
    config: HostsConfig,
    hosts: Vec<Host>,
    netns: Vec<String>,
    faketime: Option<&'static str>,
}

impl Hosts {
    /// Writes the CA, and for every host of `net` its certificate, configuration and
    /// data tmpfs. Starts nothing.
    pub fn prepare(net: &Network, config: HostsConfig) -> anyhow::Result<Hosts> {
        std::fs::create_dir_all(&config.root)?;
        let ca = tls::generate_ca(CLUSTER_NAME)?;
        tls::write_pair(
            &ca,
            &config.root.join("ca.pem"),
            &config.root.join("ca.key"),
        )?;
        let mut hosts = Vec::new();
        for i in 1..=net.hosts() {
            let files = HostFiles::new(&config.root, i);
            write_host_files(&files, i, &ca, net.hosts())?;
            mount_tmpfs(&files.data_dir, config.disk_mib)?;
            hosts.push(Host {
                files,
                child: None,
                paused: false,
                started: None,
                exited: None,
            });
        }
        Ok(Hosts {
            netns: (1..=net.hosts()).map(|i| net.host_ns(i)).collect(),
            config,
            hosts,
            faketime: faketime_library(),
        })
    }

    /// Number of hosts (started or not).
    pub fn len(&self) -> u16 {
        self.hosts.len() as u16
    }

    /// Whether there are no hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Hosts that start with the cluster.
    pub fn initial(&self) -> u16 {
        self.config.initial
    }

    /// Files of host `i`.
    pub fn files(&self, i: u16) -> &HostFiles {
        &self.host(i).files
    }

    /// Whether libfaketime is loaded into the agents (clock faults need it).
    pub fn clocks_movable(&self) -> bool {
        self.faketime.is_some()
    }

    fn host(&self, i: u16) -> &Host {
        &self.hosts[usize::from(i) - 1]
    }

    fn host_mut(&mut self, i: u16) -> &mut Host {
        &mut self.hosts[usize::from(i) - 1]
    }

    /// Starts host `i`'s agent from its data (a no-op if it runs).
    pub fn start(&mut self, i: u16) -> anyhow::Result<()> {
        if self.is_running(i) {
            return Ok(());
        }
        let netns = File::open(format!("/run/netns/{}", self.netns[usize::from(i) - 1]))?;
        let files = self.host(i).files.clone();
        let mut command = Command::new(&self.config.binary);
        command
            .arg("run")
            .arg("--config")
            .arg(&files.config)
            .stdin(Stdio::null());
        if let Some(filter) = &self.config.log_filter {
            command.env("RUST_LOG", filter);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&files.log)?;
        command.stdout(log.try_clone()?).stderr(log);
        if let Some(library) = self.faketime {
            std::fs::write(&files.clock_file, CLOCK_RIGHT)?;
            command
                .env("LD_PRELOAD", library)
                .env("FAKETIME_TIMESTAMP_FILE", &files.clock_file)
                .env("FAKETIME_CACHE_DURATION", FAKETIME_REREAD_SECS)
                // Only the wall clock moves: no real monotonic clock jumps or runs
                // backwards, and openraft's core stops if it does.
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        spawn_in_namespace(&mut command, OwnedFd::from(netns))?;
        let child = command
            .spawn()
            .with_context(|| format!("starting agent {i}"))?;
        let host = self.host_mut(i);
        host.child = Some(child);
        host.paused = false;
        host.started = Some(std::time::Instant::now());
        Ok(())
    }

    /// Whether host `i`'s agent process exists (running or paused).
    pub fn is_running(&mut self, i: u16) -> bool {
        let host = self.host_mut(i);
        match host.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(status))) => {
                host.exited = Some(status);
                host.child = None;
                host.paused = false;
                false
            }
            Some(Err(_)) => {
                host.child = None;
                host.paused = false;
                false
            }
            None => false,
        }
    }

    /// How host `i`'s agent exited on its own since the last call, if it did (a kill by
    /// the testbed is not an exit on its own).
    pub fn take_exit(&mut self, i: u16) -> Option<std::process::ExitStatus> {
        self.is_running(i);
        self.host_mut(i).exited.take()
    }

    /// Whether host `i` is paused (SIGSTOP).
    pub fn is_paused(&self, i: u16) -> bool {
        self.host(i).paused
    }

    /// Process id of host `i`'s agent.
    pub fn pid(&self, i: u16) -> Option<u32> {
        self.host(i).child.as_ref().map(Child::id)
    }

    /// `kill -9` host `i`'s agent and reaps it.
    pub fn kill(&mut self, i: u16) {
        let host = self.host_mut(i);
        if let Some(mut child) = host.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        host.paused = false;
    }

    /// Sends SIGSTOP (`true`) or SIGCONT (`false`) to host `i`'s agent.
    pub fn set_paused(&mut self, i: u16, paused: bool) -> anyhow::Result<()> {
        let pid = self.pid(i).context("agent not running")?;
        let signal = if paused { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            anyhow::bail!("signal to agent {i}: {}", std::io::Error::last_os_error());
        }
        self.host_mut(i).paused = paused;
        Ok(())
    }

    /// Writes host `i`'s libfaketime clock file (e.g. `+30 x1`; name the rate, see
    /// [`CLOCK_RIGHT`]).
    pub fn set_clock(&self, i: u16, spec: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.faketime.is_some(), "libfaketime is not installed");
        std::fs::write(&self.host(i).files.clock_file, format!("{spec}\n"))?;
        Ok(())
    }

    /// Makes host `i`'s wall clock run at `rate` from now on, without a jump.
    /// libfaketime applies a rate to the time since the process started, so the offset
    /// takes back what that would add at once.
    pub fn set_clock_rate(&self, i: u16, rate: f64) -> anyhow::Result<()> {
        let elapsed = self
            .host(i)
            .started
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        self.set_clock(i, &rate_spec(elapsed, rate))
    }

    /// Fills host `i`'s data tmpfs (a filler file up to the last byte).
    pub fn fill_disk(&self, i: u16) -> anyhow::Result<u64> {
        use std::io::Write;
        let path = filler_path(&self.host(i).files);
        let mut file = File::create(&path)?;
        let block = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(written)
    }

    /// Frees what [`Hosts::fill_disk`] took.
    pub fn free_disk(&self, i: u16) -> anyhow::Result<()> {
        match std::fs::remove_file(filler_path(&self.host(i).files)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Resident memory (bytes) and open file descriptors of host `i`'s agent.
    pub fn usage(&self, i: u16) -> Option<(u64, u64)> {
        let pid = self.pid(i)?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some((rss_kib * 1024, fds))
    }

    /// Stops every agent: resumes paused ones, then SIGTERM, then SIGKILL after `grace`.
    pub fn stop_all(&mut self, grace: Duration) {
        for i in 1..=self.len() {
            if self.is_paused(i) {
                let _ = self.set_paused(i, false);
            }
            if let Some(pid) = self.pid(i) {
                // SAFETY: a signal to our own child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
        }
        let deadline = std::time::Instant::now() + grace;
        for i in 1..=self.len() {
            while std::time::Instant::now() < deadline && self.is_running(i) {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.kill(i);
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.stop_all(Duration::ZERO);
        for host in &self.hosts {
            let target = host.files.data_dir.to_string_lossy().into_owned();
            if let Err(e) = run("umount", &["-l", &target]) {
                eprintln!("testbed: {e:#}");
            }
        }
    }
}

fn filler_path(files: &HostFiles) -> PathBuf {
    files.data_dir.join("testbed-filler")
}

/// Mounts a tmpfs of `mib` MiB on `dir` (mode 0700: it holds an agent's data).
fn mount_tmpfs(dir: &Path, mib: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let target = dir.to_string_lossy().into_owned();
    let options = format!("size={mib}m,mode=0700");
    run(
        "mount",
        &["-t", "tmpfs", "-o", &options, TMPFS_SOURCE, &target],
    )?;
    Ok(())
}

/// Makes `command`'s child enter network namespace `netns` and die with this thread.
fn spawn_in_namespace(command: &mut Command, netns: OwnedFd) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    let fd = netns.as_raw_fd();
    // The fd must stay open until the child has forked: the closure owns it.
    let keep = netns;
    // SAFETY: prctl, getppid, setns and _exit are async-signal-safe and touch only the child.
    unsafe {
        command.pre_exec(move || {
            let _ = &keep;
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// Writes host `i`'s certificate and configuration (host 1 bootstraps the cluster; the
/// others join through hosts 1 to 3).
fn write_host_files(files: &HostFiles, i: u16, ca: &CertPair, hosts: u16) -> anyhow::Result<()> {
    std::fs::create_dir_all(&files.dir)?;
    let tls_files = TlsFiles::in_dir(&files.dir);
    tls_files.write(&NodeTls {
        ca_cert_pem: ca.cert_pem.clone(),
        node: tls::issue_node_cert(ca, u64::from(i))?,
    })?;
    let seeds = (1..=hosts.min(3))
        .filter(|s| *s != i)
        .map(|s| format!("{}:{PEER_PORT}", host_addr(s)))
        .collect();
    let listen = ListenConfig::on(
        (host_addr(i), PEER_PORT).into(),
        (host_addr(i), HTTP_PORT).into(),
    );
    let data_dir = files.data_dir.clone();
    let mut config = Config::with_defaults(
        u64::from(i),
        CLUSTER_NAME,
        data_dir,
        listen,
        tls_files.into(),
    );
    config.zone = zone_of(i).to_string();
    config.bootstrap = i == 1;
    config.seeds = seeds;
    config.validate()?;
    std::fs::write(&files.config, toml::to_string_pretty(&config)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_starts_from_the_right_time_and_every_spec_names_its_rate() {
        // faked = start + offset + elapsed * rate: at 100 s, x0.5 needs +50 s.
        assert_eq!(rate_spec(100.0, 0.5), "+50.000 x0.5");
        assert_eq!(rate_spec(100.0, 2.0), "-100.000 x2");
        assert!(CLOCK_RIGHT.trim().ends_with("x1"));
    }
}
