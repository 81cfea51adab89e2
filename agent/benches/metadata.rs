//! Metadata store benchmarks on loopback, 3 voters with fsync (redb `Durability::Immediate`):
//! commit latency p50/p99 of single proposals on the leader, and the time from
//! `POST /tables` to ACTIVE for a 10-partition table. Prints a report; not a timed test.
//!
//! `cargo bench -p agent --bench metadata [-- --commits N --tables N --nodes N]`
//! (`--nodes 1` gives the single-voter floor: fsync plus openraft, no replication).

mod support;

use std::time::{Duration, Instant};

use agent::api_client::ApiClient;
use agent::config::Config;
use agent::dev::{PortPlan, admin_client, wait_for_voters, write_cluster_files};
use agent::seam::LeaderRoute;
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::command::MetaCommand;
use shared::model::{CapacityMode, TableStatus};

use crate::support::arg;

const HTTP_BASE: u16 = 23070;

/// The bootstrap agent, which leads.
struct Leader {
    meta: std::sync::Arc<agent::meta::client::MetaClient>,
    state: agent::seam::StateHandle,
}
const NODES: u16 = 3;
/// Worker threads of each agent's runtime.
const AGENT_WORKER_THREADS: usize = 2;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50={:?} p90={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.90),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// Starts each agent on its own runtime (its own threads), as separate processes would
/// be, and returns the runtimes (which must outlive the benchmark) and the leader.
fn start_cluster(dir: &std::path::Path, nodes: u16) -> (Vec<tokio::runtime::Runtime>, Leader) {
    let ports = PortPlan {
        http_base: HTTP_BASE,
    };
    let configs = write_cluster_files(dir, nodes, ports).expect("files");
    let mut runtimes = Vec::new();
    let mut leader = None;
    for path in configs {
        let config: Config = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(AGENT_WORKER_THREADS)
            .enable_all()
            .build()
            .unwrap();
        let node = runtime
            .block_on(agent::node::start(config))
            .expect("start node");
        if node.meta.node_id() == 1 {
            leader = Some(Leader {
                meta: node.meta.clone(),
                state: node.state.clone(),
            });
        }
        runtime.spawn(node.serve_http(std::future::pending()));
        runtimes.push(runtime);
    }
    let client = admin_client(dir, ports, Duration::from_secs(60)).expect("admin credentials");
    let voters = shared::placement::voter_target(usize::from(nodes), &Default::default());
    wait_for_voters(&client, voters, Duration::from_secs(60)).expect("voters");
    let leader = leader.expect("node 1");
    assert_eq!(
        leader.meta.leader(),
        LeaderRoute::Local,
        "node 1 bootstrapped and leads"
    );
    (runtimes, leader)
}

fn table_request(name: &str) -> CreateTableRequest {
    // 10,000 WCU at 1,000 per partition: 10 partitions.
    let capacity = CapacityRequest {
        mode: CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(10_000),
    };
    CreateTableRequest::with_string_key(name, "id", capacity)
}

async fn bench_commits(leader: &Leader, n: usize) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        // InitCluster is a committed no-op after the first: pure Raft + fsync cost.
        let cmd = MetaCommand::InitCluster {
            cluster_id: format!("bench-{i}"),
        };
        let start = Instant::now();
        leader
            .meta
            .propose(cmd)
            .await
            .expect("commit")
            .expect("applied");
        samples.push(start.elapsed());
    }
    report("metadata commit latency (fsync, loopback QUIC)", samples);
}

async fn bench_create_to_active(leader: &Leader, admin: ApiClient, n: usize) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-table-{i}");
        let request = table_request(&name);
        let client = admin.clone();
        let mut applied = leader.state.subscribe();
        let start = Instant::now();
        tokio::task::spawn_blocking(move || client.create_table(&request))
            .await
            .unwrap()
            .expect("create");
        loop {
            let active = leader.state.read(|s| {
                s.table_by_name(&name)
                    .map(|t| (t.status, s.partitions_of(t.table_id).len()))
            });
            if let Some((TableStatus::Active, partitions)) = active {
                assert_eq!(partitions, 10);
                break;
            }
            applied.changed().await.unwrap();
        }
        samples.push(start.elapsed());
    }
    report(
        "POST /tables to ACTIVE, 10 partitions x 3 replicas",
        samples,
    );
}

/// One small durable redb commit: the fsync floor of every Raft append.
fn bench_redb_commit(dir: &std::path::Path, n: usize) {
    let db = redb::Database::create(dir.join("fsync.redb")).unwrap();
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("t");
    let value = [7u8; 200];
    let mut samples = Vec::with_capacity(n);
    for i in 0..n as u64 {
        let start = Instant::now();
        let mut txn = db.begin_write().unwrap();
        txn.set_durability(redb::Durability::Immediate).unwrap();
        txn.open_table(table)
            .unwrap()
            .insert(i, value.as_slice())
            .unwrap();
        txn.commit().unwrap();
        samples.push(start.elapsed());
    }
    report("redb durable commit (200 B)", samples);
}

/// One request/response over the QUIC peer transport with mutual TLS (loopback).
async fn bench_quic_rpc(dir: &std::path::Path, n: usize) {
    use agent::transport::quic::QuicTransport;
    use agent::transport::tls::{self, TlsFiles};
    use agent::transport::{BoxFuture, RpcClient, RpcHandler};
    struct Echo;
    impl RpcHandler for Echo {
        fn handle(&self, request: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
            Box::pin(async move { request })
        }
    }
    let ports = PortPlan {
        http_base: HTTP_BASE + 50,
    };
    write_cluster_files(dir, 2, ports).unwrap();
    let bind = |i: u16| {
        let material = TlsFiles::in_dir(&agent::dev::node_dir(dir, i))
            .load()
            .unwrap();
        let server = tls::server_config(&material).unwrap();
        let client = tls::client_config(&material).unwrap();
        QuicTransport::bind(ports.peer(i), server, client, Duration::from_secs(5)).unwrap()
    };
    let (a, b) = (bind(1), bind(2));
    b.serve(std::sync::Arc::new(Echo));
    let addr = ports.peer(2).to_string();
    a.call(&addr, vec![0; 300]).await.unwrap();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        a.call(&addr, vec![0; 300]).await.unwrap();
        samples.push(start.elapsed());
    }
    report("QUIC peer RPC round trip (300 B, mutual TLS)", samples);
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: then a short
    // smoke run keeps the benchmark exercised in CI without costing minutes.
    let full = std::env::args().any(|a| a == "--bench");
    let commits = arg("--commits", if full { 2000 } else { 20 });
    let tables = arg("--tables", if full { 50 } else { 2 });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let micro_dir = tempfile::tempdir().unwrap();
    bench_redb_commit(micro_dir.path(), commits);
    runtime.block_on(bench_quic_rpc(micro_dir.path(), commits));
    let dir = tempfile::tempdir().unwrap();
    let nodes = arg("--nodes", usize::from(NODES)) as u16;
    let (runtimes, leader) = start_cluster(dir.path(), nodes);
    let ports = PortPlan {
        http_base: HTTP_BASE,
    };
    let client = admin_client(dir.path(), ports, Duration::from_secs(60)).expect("admin client");
    runtimes[0].block_on(bench_commits(&leader, commits));
    runtimes[0].block_on(bench_create_to_active(&leader, client, tables));
}
