//! Data-path benchmarks on 3 real agent processes on loopback (replication factor 3,
//! every write durable on all three before it is acknowledged):
//! - single-key write latency (p50/p99) through the client library, straight to the
//!   primary;
//! - write throughput with concurrent clients on distinct keys, and through one agent
//!   that forwards to the primaries;
//! - reads per second (concurrent clients, under the primaries' read leases);
//! - client routing-cache lookups per second (no IO).
//!
//! Prints a report; not a timed test. `cargo bench -p agent --bench data
//! [-- --writes N --threads N]` (without `--bench`: a short smoke run for CI).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::api_client::Authorization;
use agent::api_client::{ApiClient, Method};
use agent::auth::admin::PrincipalCredentials;
use agent::data_client::DataClient;
use agent::dev::{
    Children, PortPlan, admin_client, admin_credentials_path, spawn_agent, wait_for_voters,
    write_cluster_files,
};
use serde_json::json;
use shared::api::auth::IssueCredentialRequest;
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::model::{CapacityMode, TableStatus};

use crate::support::{WAIT, arg};

const HTTP_BASE: u16 = 23500;
const NODES: u16 = 3;
const TABLE: &str = "bench";
/// Polling period of the waits.
const POLL: Duration = Duration::from_millis(50);

fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(what, POLL, f)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report_latency(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let total: Duration = samples.iter().sum();
    println!(
        "{what}: n={} p50={:?} p99={:?} max={:?} ({:.0}/s sequential)",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples.len() as f64 / total.as_secs_f64()
    );
}

/// Runs `per_thread` operations on each of `threads` threads; returns operations/s.
fn throughput(threads: usize, per_thread: usize, op: impl Fn(usize, usize) + Sync) -> f64 {
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let op = &op;
            s.spawn(move || {
                for i in 0..per_thread {
                    op(t, i);
                }
            });
        }
    });
    (threads * per_thread) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let writes = arg("--writes", if full { 3000 } else { 50 });
    let threads = arg("--threads", if full { 16 } else { 2 });
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = PortPlan {
        http_base: HTTP_BASE,
    };
    let configs = write_cluster_files(dir.path(), NODES, ports).expect("cluster files");
    let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
    let mut children = Children::default();
    for (i, config) in configs.iter().enumerate() {
        children.push(i as u16 + 1, spawn_agent(binary, config).expect("spawn"));
    }
    let endpoints: Vec<String> = (1..=NODES)
        .map(|i| format!("http://{}", ports.http(i)))
        .collect();
    let admin = admin_client(dir.path(), ports, WAIT).expect("admin credentials");
    wait_for_voters(&admin, 3, WAIT).expect("voters");
    let credentials = PrincipalCredentials::load(&admin_credentials_path(dir.path())).unwrap();
    let capacity = CapacityRequest {
        mode: CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(4000),
    };
    let request = CreateTableRequest::with_string_key(TABLE, "id", capacity);
    wait_for("table created", || admin.create_table(&request).ok());
    wait_for("table ACTIVE", || {
        (admin.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
    let client = Arc::new(
        DataClient::new(endpoints.clone())
            .with_authorization(Authorization::Principal(credentials.clone())),
    );
    let value = json!({"payload": "x".repeat(100)});
    wait_for("first write", || {
        client.put(TABLE, "warm-up", None, &value).ok()
    });

    // One key, one client: the replication round trip plus three fsyncs per write.
    let samples: Vec<Duration> = (0..writes)
        .map(|_| {
            let started = Instant::now();
            client.put(TABLE, "hot", None, &value).expect("put");
            started.elapsed()
        })
        .collect();
    report_latency(
        "single-key write latency (client -> primary, RF 3)",
        samples,
    );

    let per_thread = (writes / threads).max(1);
    let direct = throughput(threads, per_thread, |t, i| {
        client
            .put(TABLE, &format!("k{t}-{i}"), None, &value)
            .expect("put");
    });
    println!("write throughput, {threads} clients straight to the primaries: {direct:.0} writes/s");

    // Credentials: issued by the leader, asked through agent 1 (a follower or the leader).
    let issue = IssueCredentialRequest {
        principal_arn: credentials.principal_arn.clone(),
        ttl_seconds: None,
        actions: None,
    };
    let issued: Vec<Duration> = (0..writes.min(2000))
        .map(|_| {
            let started = Instant::now();
            admin.issue_credential(TABLE, &issue).expect("credential");
            started.elapsed()
        })
        .collect();
    report_latency("credential issue latency (HTTP, through agent 1)", issued);
    let token = admin
        .issue_credential(TABLE, &issue)
        .expect("credential")
        .token;
    let one_agent = ApiClient::new(&endpoints[0]).with_authorization(&Authorization::Token(token));
    let body = value.to_string();
    let forwarded = throughput(threads, per_thread, |t, i| {
        let path = format!("/tables/{TABLE}/items/f{t}-{i}");
        let (status, text) = one_agent.raw(Method::Put, &path, Some(&body)).expect("put");
        assert_eq!(status, 200, "{text}");
    });
    println!(
        "write throughput, {threads} clients through agent 1 (forwarding): {forwarded:.0} writes/s"
    );

    let reads = throughput(threads, per_thread * 2, |t, i| {
        let key = format!("k{t}-{}", i % per_thread);
        client
            .get(TABLE, &key, None)
            .expect("get")
            .expect("present");
    });
    println!("read throughput, {threads} clients: {reads:.0} reads/s");

    let cache = client.route_cache();
    let keys: Vec<Vec<u8>> = (0..1024).map(|i| format!("key-{i}").into_bytes()).collect();
    let lookups = if full { 20_000_000 } else { 100_000 };
    let started = Instant::now();
    let mut found = 0usize;
    for i in 0..lookups {
        found += usize::from(cache.route(TABLE, &keys[i % keys.len()]).is_some());
    }
    let rate = lookups as f64 / started.elapsed().as_secs_f64();
    assert_eq!(found, lookups);
    println!("client routing-cache lookups: {:.1} M/s", rate / 1e6);
    children.stop_all(Duration::from_secs(2));
}
