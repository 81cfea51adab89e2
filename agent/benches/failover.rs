//! Failure detection and reroute times on 5 real agent processes (default settings):
//! `kill -9` of an agent holding partitions of a 12-partition table, then the time to
//! `NodeFailed` committed (the leader's nodes API shows FAILED) and to every affected
//! partition rerouted (no partition lists the dead node, all replicas ready). Repeated
//! on fresh clusters; prints median and max. A report, not a timed test.
//!
//! `cargo bench -p agent --bench failover [-- --runs N]` (without `--bench`, one run: the
//! CI smoke test).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use agent::api_client::ApiClient;
use agent::auth::admin::PrincipalCredentials;
use agent::dev::{
    Children, PortPlan, admin_client, admin_credentials_path, spawn_agent, wait_for_voters,
    write_cluster_files,
};
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::model::{CapacityMode, NodeId, NodeStatus, TableStatus};

use crate::support::{WAIT, arg};

/// HTTP ports of run `r` start at `HTTP_BASE + r * PORTS_PER_RUN` (peer ports +100).
const HTTP_BASE: u16 = 23300;
const PORTS_PER_RUN: u16 = 10;
const NODES: u16 = 5;
const TABLE: &str = "bench";
/// Polling period while measuring: the measurement's resolution.
const POLL: Duration = Duration::from_millis(10);

fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(what, POLL, f)
}

struct Sample {
    detect: Duration,
    reroute: Duration,
}

fn one_run(run: u16, dir: &Path) -> Sample {
    let ports = PortPlan {
        http_base: HTTP_BASE + run * PORTS_PER_RUN,
    };
    let configs = write_cluster_files(dir, NODES, ports).expect("cluster files");
    let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
    let mut children = Children::default();
    for (i, config) in configs.iter().enumerate() {
        children.push(i as u16 + 1, spawn_agent(binary, config).expect("spawn"));
    }
    let admin = admin_client(dir, ports, WAIT).expect("admin credentials");
    let credentials = PrincipalCredentials::load(&admin_credentials_path(dir)).unwrap();
    let client =
        |i: u16| ApiClient::new(&format!("http://{}", ports.http(i))).with_principal(&credentials);
    drop(admin);
    let c1 = client(1);
    wait_for_voters(&c1, 3, WAIT).expect("voters");
    let cluster_id = wait_for("cluster id", || c1.cluster().ok()?.cluster_id);
    wait_for("all agents healthy", || {
        let nodes = c1.nodes(&cluster_id).ok()?.nodes;
        (nodes.len() == usize::from(NODES) && nodes.iter().all(|n| n.status == NodeStatus::Healthy))
            .then_some(())
    });
    let capacity = CapacityRequest {
        mode: CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(12_000),
    };
    let request = CreateTableRequest::with_string_key(TABLE, "id", capacity);
    wait_for("table created", || c1.create_table(&request).ok());
    wait_for("table ACTIVE", || {
        (c1.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
    // The victim: a non-leader holding partitions (the leader's death adds an election).
    let leader = wait_for("leader", || c1.cluster().ok()?.leader_id);
    let parts = c1.partitions(TABLE).expect("partitions").partitions;
    let holds = |p: &shared::api::PartitionDescription, n: NodeId| {
        p.primary_node_id == n || p.replica_node_ids.contains(&n)
    };
    let victim = (1..=u64::from(NODES))
        .find(|&n| n != leader && parts.iter().any(|p| holds(p, n)))
        .expect("a victim");
    let watcher = client(leader as u16);

    let killed_at = Instant::now();
    children.kill(victim as u16);
    let detect = wait_for("NodeFailed committed", || {
        let nodes = watcher.nodes(&cluster_id).ok()?.nodes;
        let failed = nodes
            .iter()
            .any(|n| n.node_id == victim && n.status == NodeStatus::Failed);
        failed.then(|| killed_at.elapsed())
    });
    let reroute = wait_for("partitions rerouted", || {
        let parts = watcher.partitions(TABLE).ok()?.partitions;
        parts
            .iter()
            .all(|p| !holds(p, victim) && p.ready)
            .then(|| killed_at.elapsed())
    });
    children.stop_all(Duration::from_secs(2));
    Sample { detect, reroute }
}

fn median_max(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = arg("--runs", if full { 5 } else { 1 });
    let mut samples = Vec::new();
    for run in 0..runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = one_run(run as u16, dir.path());
        println!(
            "run {}: kill -9 -> NodeFailed committed {:?}, -> all partitions rerouted {:?} ({:?} after detection)",
            run + 1,
            s.detect,
            s.reroute,
            s.reroute.saturating_sub(s.detect)
        );
        samples.push(s);
    }
    let (d50, dmax) = median_max(samples.iter().map(|s| s.detect).collect());
    let (r50, rmax) = median_max(samples.iter().map(|s| s.reroute).collect());
    let (a50, amax) = median_max(
        samples
            .iter()
            .map(|s| s.reroute.saturating_sub(s.detect))
            .collect(),
    );
    println!("detection (kill -9 -> NodeFailed): n={runs} median={d50:?} max={dmax:?}");
    println!("reroute (kill -9 -> all rerouted): n={runs} median={r50:?} max={rmax:?}");
    println!("reroute after detection: n={runs} median={a50:?} max={amax:?}");
}
