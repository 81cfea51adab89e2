//! Live operation benchmark on 4 real agent processes on loopback (replication factor
//! 3) with writers running throughout:
//! - write pause of splits in place (fence to children writable) and of moves of a
//!   primary copy to another node (tail sent to routing swap committed), p50/p99/max, as
//!   each operation's driver measured it (recorded with the operation), then of merges
//!   of adjacent pairs held by the same nodes back into one;
//! - migration copy throughput (bytes moved / time of the whole move).
//!
//! Prints a report; not a timed test. `cargo bench -p agent --bench operations
//! [-- --ops N --items N]` (without `--bench`: a short smoke run for CI).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Authorization};
use agent::auth::admin::PrincipalCredentials;
use agent::data_client::DataClient;
use agent::dev::{
    Children, PortPlan, admin_client, admin_credentials_path, spawn_agent, wait_for_voters,
    write_cluster_files,
};
use serde_json::json;
use shared::api::operations::{MergePartitionRequest, MovePartitionRequest, OperationDescription};
use shared::api::{CapacityRequest, CreateTableRequest};
use shared::model::{CapacityMode, TableStatus};

use crate::support::{WAIT, arg};

const HTTP_BASE: u16 = 23700;
const NODES: u16 = 4;
const TABLE: &str = "ops";
const WRITERS: usize = 4;
/// Bytes of each preloaded item's value.
const VALUE_BYTES: usize = 1000;
/// Polling period of the waits.
const POLL: Duration = Duration::from_millis(20);

fn wait_for<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(what, POLL, f)
}

/// The operation once finished and, if completed, once its driver recorded the write
/// pause (a split completes with its commit; the pause is reported just after).
fn finished(admin: &ApiClient, op: OperationDescription) -> OperationDescription {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = admin.operation(op.operation_id).ok();
        if let Some(o) = &now
            && o.finished()
            && (o.status != "COMPLETED" || o.write_pause_ms.is_some())
        {
            return o.clone();
        }
        assert!(
            Instant::now() < deadline,
            "operation {} did not finish: {now:?}",
            op.operation_id
        );
        std::thread::sleep(POLL);
    }
}

/// Bytes of partition `pid` as the agent at `endpoint` reports them in its metrics.
fn partition_bytes(endpoint: &str, pid: u64) -> u64 {
    let series = format!("agent_partition_bytes{{partition_id=\"{pid}\"}} ");
    let Ok((_, text)) =
        ApiClient::new(endpoint).raw(agent::api_client::Method::Get, "/metrics", None)
    else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
        .unwrap_or(0)
}

fn report(what: &str, mut pauses: Vec<u64>) {
    if pauses.is_empty() {
        println!("{what}: no operation completed");
        return;
    }
    pauses.sort_unstable();
    let at = |q: f64| pauses[((pauses.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} p50={} ms p99={} ms max={} ms",
        pauses.len(),
        at(0.5),
        at(0.99),
        pauses[pauses.len() - 1]
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let ops = arg("--ops", if full { 20 } else { 2 });
    let items = arg("--items", if full { 20_000 } else { 400 });
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = PortPlan {
        http_base: HTTP_BASE,
    };
    let configs = write_cluster_files(dir.path(), NODES, ports).expect("cluster files");
    for path in &configs {
        // Only the operations measured here: no Scaler splitting or moving meanwhile.
        let text = std::fs::read_to_string(path).unwrap();
        let mut config: agent::config::Config = toml::from_str(&text).unwrap();
        config.scaler.enabled = false;
        std::fs::write(path, toml::to_string_pretty(&config).unwrap()).unwrap();
    }
    let mut children = Children::default();
    let binary = Path::new(env!("CARGO_BIN_EXE_agent"));
    for (i, config) in configs.iter().enumerate() {
        children.push(i as u16 + 1, spawn_agent(binary, config).expect("spawn"));
    }
    let admin = admin_client(dir.path(), ports, WAIT).expect("admin credentials");
    wait_for_voters(&admin, 3, WAIT).expect("voters");
    let credentials = PrincipalCredentials::load(&admin_credentials_path(dir.path())).unwrap();
    let cluster_id = wait_for("cluster id", || admin.cluster().ok()?.cluster_id);
    wait_for("all agents registered", || {
        (admin.nodes(&cluster_id).ok()?.nodes.len() == usize::from(NODES)).then_some(())
    });
    let capacity = CapacityRequest {
        mode: CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(2000),
    };
    let request = CreateTableRequest::with_string_key(TABLE, "id", capacity);
    wait_for("table created", || admin.create_table(&request).ok());
    wait_for("table ACTIVE", || {
        (admin.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
    let endpoints: Vec<String> = (1..=NODES)
        .map(|i| format!("http://{}", ports.http(i)))
        .collect();
    let client = Arc::new(
        DataClient::new(endpoints).with_authorization(Authorization::Principal(credentials)),
    );
    let value = json!({ "payload": "x".repeat(VALUE_BYTES) });
    std::thread::scope(|s| {
        for t in 0..16 {
            let (client, value) = (&client, &value);
            s.spawn(move || {
                for i in (t..items).step_by(16) {
                    wait_for("a preload write", || {
                        client.put(TABLE, &format!("item-{i}"), None, value).ok()
                    });
                }
            });
        }
    });

    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let _ = client.put(TABLE, &format!("live-{w}-{}", i % 100), None, &json!(i));
                }
            })
        })
        .collect();

    let mut split_pauses = Vec::new();
    let mut move_pauses = Vec::new();
    let (mut moved_bytes, mut moving_time) = (0u64, Duration::ZERO);
    for n in 0..ops {
        // Split the largest partition (by key range: the widest), at its median key.
        let parts = admin.partitions(TABLE).expect("partitions").partitions;
        let widest = parts
            .iter()
            .max_by_key(|p| p.key_range_high - p.key_range_low)
            .unwrap();
        let split = wait_for("split started", || {
            admin.split_partition(widest.partition_id, None).ok()
        });
        let split = finished(&admin, split);
        split_pauses.extend(split.write_pause_ms);
        // Move the primary of one partition (round robin) to a node holding no copy.
        let parts = admin.partitions(TABLE).expect("partitions").partitions;
        let p = &parts[n % parts.len()];
        let holders: Vec<u64> = std::iter::once(p.primary_node_id)
            .chain(p.replica_node_ids.iter().copied())
            .collect();
        let Some(to) = (1..=u64::from(NODES)).find(|n| !holders.contains(n)) else {
            continue;
        };
        let request = MovePartitionRequest {
            target_node: to,
            source_node: None,
        };
        let bytes = partition_bytes(
            &format!("http://{}", ports.http(p.primary_node_id as u16)),
            p.partition_id,
        );
        let started = Instant::now();
        let moving = wait_for("move started", || {
            admin.move_partition(p.partition_id, &request).ok()
        });
        let moved = finished(&admin, moving);
        if moved.status == "COMPLETED" {
            moving_time += started.elapsed();
            moved_bytes += bytes;
            move_pauses.extend(moved.write_pause_ms);
        }
    }
    // Merge adjacent pairs held by the same nodes (a split's children, mostly) back.
    let mut merge_pauses = Vec::new();
    for _ in 0..ops {
        let mut parts = admin.partitions(TABLE).expect("partitions").partitions;
        parts.sort_by_key(|p| p.key_range_low);
        let members = |p: &shared::api::PartitionDescription| {
            let mut r = p.replica_node_ids.clone();
            r.sort_unstable();
            (p.primary_node_id, r)
        };
        let Some(pair) = parts.windows(2).find(|w| members(&w[0]) == members(&w[1])) else {
            break;
        };
        let request = MergePartitionRequest {
            right_partition: pair[1].partition_id,
        };
        let merging = wait_for("merge started", || {
            admin.merge_partition(pair[0].partition_id, &request).ok()
        });
        let merged = finished(&admin, merging);
        merge_pauses.extend(merged.write_pause_ms);
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    println!("{items} items of {VALUE_BYTES} B preloaded; {WRITERS} writers during the operations");
    report("split write pause", split_pauses);
    report("move write pause", move_pauses);
    report("merge write pause", merge_pauses);
    if !moving_time.is_zero() {
        println!(
            "migration throughput: {:.1} MB/s ({moved_bytes} bytes in {moving_time:?}, whole moves)",
            moved_bytes as f64 / 1e6 / moving_time.as_secs_f64()
        );
    }
    children.stop_all(Duration::from_secs(2));
    // Where the slowest pauses went (the drivers log their phases).
    let logs: Vec<String> = (1..=NODES)
        .map(|i| {
            let log = agent::dev::node_dir(dir.path(), i).join(agent::dev::LOG_FILE);
            std::fs::read_to_string(log).unwrap_or_default()
        })
        .collect();
    // Stagings that could not be used: their derivation copied everything under the fence.
    for marker in ["not staged", "staging not usable", "replica did not derive"] {
        let n: usize = logs.iter().map(|l| l.matches(marker).count()).sum();
        if n > 0 {
            println!("  {n} log lines \"{marker}\"");
            if let Some(line) = logs
                .iter()
                .flat_map(|l| l.lines())
                .find(|l| l.contains(marker))
            {
                println!("    e.g. {line}");
            }
        }
    }
    for (kind, marker) in [
        ("split", "split (pause phases"),
        ("move", "moved (pause phases"),
        ("merge", "merged (pause phases"),
    ] {
        let mut phases: Vec<(f64, String)> = logs
            .iter()
            .flat_map(|log| log.lines())
            .filter(|l| l.contains(marker))
            .filter_map(|l| {
                let rest = l.split("pause=").nth(1)?;
                Some((
                    parse_duration_ms(rest.split_whitespace().next()?)?,
                    rest.to_string(),
                ))
            })
            .collect();
        phases.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, line) in phases.iter().take(4) {
            println!("  slowest {kind} pause {line}");
        }
    }
}

/// Milliseconds of a `Debug`-printed duration (`12.3ms`, `1.2s`, `800µs`).
fn parse_duration_ms(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix("µs") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ns") {
        (n, 0.000_001)
    } else {
        (text.strip_suffix('s')?, 1000.0)
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}
