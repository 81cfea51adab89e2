//! The testbed's network: one namespace per host and one for the clients, each joined by
//! a veth pair to a bridge in a switch namespace, addressed from 198.18.0.0/24 (RFC 2544's
//! benchmarking range). No namespace has a default route and nothing forwards to an
//! outside interface, so no packet leaves the machine.
//!
//! Faults between hosts are one nftables table (bridge family) in the switch namespace,
//! replaced atomically: every frame between two hosts crosses the bridge.
//!
//! Everything is named `<prefix>-...`: [`remove_leftovers`] deletes what an earlier run
//! with the same prefix left behind, and dropping a [`Network`] deletes what it made.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::Command;

use anyhow::{Context, bail};

/// Address of the client namespace (the workload and the checks run there).
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Host `i` (1-based) is `198.18.0.(HOST_ADDR_BASE + i)`.
pub const HOST_ADDR_BASE: u8 = 10;
/// Most hosts one network holds (addresses up to 198.18.0.250).
pub const MAX_HOSTS: u16 = 240;
/// Prefix length of the testbed's subnet.
const SUBNET_BITS: u8 = 24;
/// The nftables table (bridge family) holding every fault.
const FAULT_TABLE: &str = "testbed";
/// Where iproute2 keeps named network namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Address of host `i` (1-based).
pub fn host_addr(i: u16) -> Ipv4Addr {
    assert!((1..=MAX_HOSTS).contains(&i), "host index {i} out of range");
    Ipv4Addr::new(198, 18, 0, HOST_ADDR_BASE + i as u8)
}

/// Runs a command and fails with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `nft -f -` in namespace `ns` with `script` on stdin.
fn nft_script(ns: &str, script: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running nft")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft in {ns}: {}\n{script}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Namespaces whose name starts with `<prefix>-`.
fn namespaces_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
    let listed = run("ip", &["netns", "list"])?;
    Ok(listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| name.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect())
}

/// Deletes every namespace an earlier run with this prefix left (its veths, bridge and
/// rules go with it).
pub fn remove_leftovers(prefix: &str) -> anyhow::Result<Vec<String>> {
    let names = namespaces_with_prefix(prefix)?;
    for name in &names {
        run("ip", &["netns", "del", name])?;
    }
    Ok(names)
}

/// Moves the calling thread into namespace `ns` (sockets it opens later live there).
pub fn enter_namespace(ns: &str) -> anyhow::Result<()> {
    let file = std::fs::File::open(format!("{NETNS_DIR}/{ns}"))
        .with_context(|| format!("opening namespace {ns}"))?;
    // SAFETY: setns on a namespace file descriptor we hold open; affects this thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// One direction of traffic between two groups of hosts that the bridge drops, entirely
/// or in part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropRule {
    /// Senders (host indices).
    pub from: Vec<u16>,
    /// Receivers (host indices).
    pub to: Vec<u16>,
    /// Share of packets dropped, in percent (100 = a cut).
    pub percent: u8,
}

/// The faults the network applies now; empty = a healthy network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Dropped directions.
    pub drops: Vec<DropRule>,
}

impl Rules {
    /// Cuts both directions between `a` and `b`.
    pub fn cut_between(&mut self, a: &[u16], b: &[u16]) {
        self.cut_one_way(a, b);
        self.cut_one_way(b, a);
    }

    /// Drops everything `from` sends to `to`.
    pub fn cut_one_way(&mut self, from: &[u16], to: &[u16]) {
        self.drops.push(DropRule {
            from: from.to_vec(),
            to: to.to_vec(),
            percent: 100,
        });
    }

    /// The nftables script that replaces the fault table with these rules.
    fn script(&self) -> String {
        let set = |hosts: &[u16]| {
            let addrs: Vec<String> = hosts.iter().map(|h| host_addr(*h).to_string()).collect();
            format!("{{ {} }}", addrs.join(", "))
        };
        let mut s = String::new();
        // Declaring then deleting makes the delete succeed whether or not it exists, and
        // the whole script is one transaction: no moment without the old or new rules.
        let _ = writeln!(s, "table bridge {FAULT_TABLE}");
        let _ = writeln!(s, "delete table bridge {FAULT_TABLE}");
        let _ = writeln!(s, "table bridge {FAULT_TABLE} {{");
        let _ = writeln!(s, "  chain filter {{");
        let _ = writeln!(s, "    type filter hook forward priority 0; policy accept;");
        for d in self
            .drops
            .iter()
            .filter(|d| !d.from.is_empty() && !d.to.is_empty())
        {
            let matches = format!("ip saddr {} ip daddr {}", set(&d.from), set(&d.to));
            if d.percent >= 100 {
                let _ = writeln!(s, "    {matches} drop");
            } else {
                let _ = writeln!(
                    s,
                    "    {matches} numgen random mod 100 < {} drop",
                    d.percent
                );
            }
        }
        let _ = writeln!(s, "  }}");
        let _ = writeln!(s, "}}");
        s
    }
}

/// The namespaces, bridge and veths of one run. Dropping it deletes them.
pub struct Network {
    prefix: String,
    hosts: u16,
}

impl Network {
    /// Creates the switch, the client namespace and `hosts` host namespaces.
    pub fn create(prefix: &str, hosts: u16) -> anyhow::Result<Network> {
        anyhow::ensure!(
            (1..=MAX_HOSTS).contains(&hosts),
            "between 1 and {MAX_HOSTS} hosts"
        );
        let net = Network {
            prefix: prefix.to_string(),
            hosts,
        };
        let sw = net.switch_ns();
        run("ip", &["netns", "add", &sw])?;
        run("ip", &["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", &sw, "link", "set", "br0", "up"])?;
        net.attach(&net.client_ns(), "cl", CLIENT_ADDR)?;
        for i in 1..=hosts {
            net.attach(&net.host_ns(i), &format!("h{i}"), host_addr(i))?;
        }
        net.apply(&Rules::default())?;
        Ok(net)
    }

    /// Creates namespace `ns` and plugs it into the bridge with `addr` (port `port`).
    fn attach(&self, ns: &str, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
        let sw = self.switch_ns();
        run("ip", &["netns", "add", ns])?;
        run(
            "ip",
            &[
                "-n", &sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
        )?;
        run(
            "ip",
            &["-n", &sw, "link", "set", port, "master", "br0", "up"],
        )?;
        let cidr = format!("{addr}/{SUBNET_BITS}");
        run("ip", &["-n", ns, "addr", "add", &cidr, "dev", "eth0"])?;
        run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// Number of host namespaces.
    pub fn hosts(&self) -> u16 {
        self.hosts
    }

    /// Name of the switch namespace.
    pub fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    /// Name of the clients' namespace.
    pub fn client_ns(&self) -> String {
        format!("{}-cl", self.prefix)
    }

    /// Name of host `i`'s namespace.
    pub fn host_ns(&self, i: u16) -> String {
        format!("{}-h{i}", self.prefix)
    }

    /// Replaces the faults in force with `rules`.
    pub fn apply(&self, rules: &Rules) -> anyhow::Result<()> {
        nft_script(&self.switch_ns(), &rules.script())
    }

    /// Whether `tc netem` works here (this kernel may lack it): tried on the switch's
    /// bridge and removed again.
    pub fn netem_available(&self) -> bool {
        let sw = self.switch_ns();
        let added = run(
            "ip",
            &[
                "netns", "exec", &sw, "tc", "qdisc", "add", "dev", "br0", "root", "netem", "delay",
                "1ms",
            ],
        )
        .is_ok();
        if added {
            let _ = run(
                "ip",
                &[
                    "netns", "exec", &sw, "tc", "qdisc", "del", "dev", "br0", "root",
                ],
            );
        }
        added
    }

    /// Deletes every namespace of this run.
    pub fn teardown(&self) -> anyhow::Result<()> {
        remove_leftovers(&self.prefix).map(|_| ())
    }
}

impl std::ops::Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = self.teardown() {
            eprintln!("testbed: removing namespaces {}-*: {e:#}", self.prefix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `addr` lies in 198.18.0.0/15.
    fn in_benchmarking_range(addr: Ipv4Addr) -> bool {
        u32::from(addr) >> 17 == u32::from(Ipv4Addr::new(198, 18, 0, 0)) >> 17
    }

    #[test]
    fn hosts_are_addressed_in_the_benchmarking_range() {
        for i in [1, 2, 25, MAX_HOSTS] {
            assert!(in_benchmarking_range(host_addr(i)), "{}", host_addr(i));
        }
        assert!(in_benchmarking_range(CLIENT_ADDR));
        assert!(!in_benchmarking_range(Ipv4Addr::new(198, 20, 0, 1)));
        assert_ne!(host_addr(1), CLIENT_ADDR);
    }

    #[test]
    fn rules_render_cuts_and_loss() {
        let mut rules = Rules::default();
        rules.cut_between(&[1], &[2, 3]);
        rules.drops.push(DropRule {
            from: vec![4],
            to: vec![1, 2],
            percent: 20,
        });
        let script = rules.script();
        assert!(
            script.contains("ip saddr { 198.18.0.11 } ip daddr { 198.18.0.12, 198.18.0.13 } drop")
        );
        assert!(
            script.contains("ip saddr { 198.18.0.12, 198.18.0.13 } ip daddr { 198.18.0.11 } drop")
        );
        assert!(script.contains("numgen random mod 100 < 20 drop"));
        assert!(script.starts_with("table bridge testbed\ndelete table bridge testbed\n"));
    }

    #[test]
    fn empty_rules_drop_nothing() {
        assert!(!Rules::default().script().contains("drop\n"));
    }
}
