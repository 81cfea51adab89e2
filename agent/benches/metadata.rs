//! Metadata store benchmarks on loopback, 3 voters with fsync (redb `Durability::Immediate`):
//! commit latency p50/p99 of single proposals on the leader, and the time from
//! `POST /tables` to ACTIVE for a 10-partition table. Prints a report; not a timed test.
//!
//! `cargo bench -p agent --bench metadata [-- --commits N --tables N]`

use std::time::{Duration, Instant};

use agent::client::ApiClient;
use agent::config::Config;
use agent::dev::{PortPlan, wait_for_voters, write_cluster_files};
use agent::node::RunningNode;
use agent::node::meta_client::LeaderRoute;
use shared::api::{CapacityRequest, CreateTableRequest, SchemaRequest};
use shared::command::MetaCommand;
use shared::model::{Attribute, AttributeType, CapacityMode, TableStatus};

const HTTP_BASE: u16 = 23070;

/// The bootstrap agent, which leads.
struct Leader {
    meta: std::sync::Arc<agent::node::meta_client::MetaClient>,
    state: agent::meta::state_machine::StateHandle,
}
const NODES: u16 = 3;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

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

async fn start_cluster(dir: &std::path::Path) -> Vec<RunningNode> {
    let configs = write_cluster_files(
        dir,
        NODES,
        PortPlan {
            http_base: HTTP_BASE,
        },
    )
    .expect("files");
    let mut nodes = Vec::new();
    for path in configs {
        let config: Config = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        nodes.push(agent::node::start(config).await.expect("start node"));
    }
    nodes
}

fn table_request(name: &str) -> CreateTableRequest {
    CreateTableRequest {
        table_name: name.to_string(),
        partition_key: "id".to_string(),
        sort_key: None,
        // 10,000 WCU at 1,000 per partition: 10 partitions.
        capacity: CapacityRequest {
            mode: CapacityMode::Provisioned,
            read_units: Some(100),
            write_units: Some(10_000),
        },
        schema: SchemaRequest {
            attributes: vec![Attribute {
                name: "id".to_string(),
                attr_type: AttributeType::S,
            }],
        },
    }
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
    report(
        "metadata commit latency (3 voters, fsync, loopback QUIC)",
        samples,
    );
}

async fn bench_create_to_active(leader: &Leader, endpoint: String, n: usize) {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("bench-table-{i}");
        let request = table_request(&name);
        let client = ApiClient::new(&endpoint);
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

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` does not: then a short
    // smoke run keeps the benchmark exercised in CI without costing minutes.
    let full = std::env::args().any(|a| a == "--bench");
    let commits = arg("--commits", if full { 2000 } else { 20 });
    let tables = arg("--tables", if full { 50 } else { 2 });
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let nodes = start_cluster(dir.path()).await;
        let endpoint = format!(
            "http://{}",
            PortPlan {
                http_base: HTTP_BASE
            }
            .http(1)
        );
        let mut handles = Vec::new();
        let mut leader = None;
        for node in nodes {
            if node.meta.node_id() == 1 {
                leader = Some((node.meta.clone(), node.state.clone()));
            }
            handles.push(tokio::spawn(node.serve_http(std::future::pending())));
        }
        let client = ApiClient::new(&endpoint);
        tokio::task::spawn_blocking(move || wait_for_voters(&client, 3, Duration::from_secs(60)))
            .await
            .unwrap()
            .expect("3 voters");
        let (meta, state) = leader.unwrap();
        assert_eq!(
            meta.leader(),
            LeaderRoute::Local,
            "node 1 bootstrapped and leads"
        );
        let leader = Leader { meta, state };
        bench_commits(&leader, commits).await;
        bench_create_to_active(&leader, endpoint, tables).await;
    });
}
