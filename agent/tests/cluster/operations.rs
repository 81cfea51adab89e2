//! Live splits and moves under load: 4 writers and 2 readers run against one table
//! while partitions are split and moved; no acknowledged write is lost, no read returns
//! a value older than the last write acknowledged before it started, every operation
//! ends completed (or rolled back), and the routing tiles the key space.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::api_client::ApiClient;
use agent::config::Config;
use agent::data_client::{DataClient, RetryPolicy};
use serde_json::{Value, json};
use shared::api::PartitionDescription;
use shared::api::operations::{MovePartitionRequest, OperationDescription};
use shared::model::TableStatus;

use crate::harness::{TestCluster, create_table, no_scaler, read, table_request, wait_for};

const LIVE_HTTP_BASE: u16 = 22600;
const TABLE: &str = "live";
const WRITERS: usize = 4;
const READERS: usize = 2;
/// Keys each writer cycles over (each write of a key carries the next counter).
const KEYS_PER_WRITER: u64 = 50;

/// What the writers acknowledged: key → last acknowledged counter.
type Acked = Arc<Mutex<HashMap<String, u64>>>;

/// The load: writers overwriting their keys with growing counters, readers checking
/// that no read goes back before a write acknowledged before it started.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Acked,
    stale_reads: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    slowest_write: Arc<Mutex<Duration>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn patient(cluster: &TestCluster) -> DataClient {
    cluster
        .data_client(cluster.endpoints())
        .with_retry(RetryPolicy {
            max_attempts: 20,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
        })
}

impl Load {
    fn start(cluster: &TestCluster) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Acked = Arc::default();
        let stale_reads = Arc::new(AtomicU64::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let slowest_write = Arc::new(Mutex::new(Duration::ZERO));
        let mut threads = Vec::new();
        for w in 0..WRITERS {
            let (stop, acked, slowest) = (stop.clone(), acked.clone(), slowest_write.clone());
            let client = patient(cluster);
            threads.push(std::thread::spawn(move || {
                let mut counter = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    counter += 1;
                    let key = format!("w{w}-k{}", counter % KEYS_PER_WRITER);
                    let started = Instant::now();
                    // The same value until acknowledged (a retried put is idempotent).
                    loop {
                        match client.put(TABLE, &key, None, &json!({ "n": counter })) {
                            Ok(_) => break,
                            Err(e) => {
                                assert!(
                                    started.elapsed() < Duration::from_secs(60),
                                    "write of {key} not acknowledged in 60 s: {e}"
                                );
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    let took = started.elapsed();
                    acked.lock().unwrap().insert(key, counter);
                    let mut slowest = slowest.lock().unwrap();
                    *slowest = (*slowest).max(took);
                }
            }));
        }
        for r in 0..READERS {
            let (stop, acked, stale, reads) = (
                stop.clone(),
                acked.clone(),
                stale_reads.clone(),
                reads.clone(),
            );
            let client = patient(cluster);
            threads.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let key = format!("w{}-k{}", (i as usize + r) % WRITERS, i % KEYS_PER_WRITER);
                    let floor = acked.lock().unwrap().get(&key).copied();
                    let Some(floor) = floor else { continue };
                    if let Ok(Some(value)) = client.get(TABLE, &key, None) {
                        reads.fetch_add(1, Ordering::Relaxed);
                        let n = value["n"].as_u64().unwrap_or(0);
                        if n < floor {
                            eprintln!("stale read of {key}: {n} < acknowledged {floor}");
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        Load {
            stop,
            acked,
            stale_reads,
            reads,
            slowest_write,
            threads,
        }
    }

    /// Stops the load; returns the acknowledged writes.
    fn stop(self) -> (HashMap<String, u64>, u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread");
        }
        let acked = self.acked.lock().unwrap().clone();
        let slowest = *self.slowest_write.lock().unwrap();
        (
            acked,
            self.stale_reads.load(Ordering::Relaxed),
            self.reads.load(Ordering::Relaxed),
            slowest,
        )
    }
}

fn partitions(client: &ApiClient) -> Vec<PartitionDescription> {
    read("partitions", || client.partitions(TABLE)).partitions
}

/// The routing tiles the key space: sorted ranges, no gap, no overlap.
fn assert_tiles(parts: &[PartitionDescription]) {
    let mut ranges: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| (p.key_range_low, p.key_range_high))
        .collect();
    ranges.sort_unstable();
    assert_eq!(ranges.first().map(|r| r.0), Some(0), "{ranges:?}");
    assert_eq!(ranges.last().map(|r| r.1), Some(u64::MAX), "{ranges:?}");
    for pair in ranges.windows(2) {
        assert_eq!(
            pair[0].1.checked_add(1),
            Some(pair[1].0),
            "gap or overlap: {ranges:?}"
        );
    }
}

/// Waits for the voters, then creates `request` and waits until it is ACTIVE.
fn ready_table(admin: &ApiClient, request: &shared::api::CreateTableRequest) {
    wait_for("3 voters", || {
        (admin.cluster().ok()?.voters.len() == 3).then_some(())
    });
    create_table(admin, request);
    wait_for("table ACTIVE", || {
        (admin.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
}

/// The acknowledged writes whose last acknowledged value `checker` does not read back.
fn lost_writes(checker: &DataClient, acked: &HashMap<String, u64>) -> Vec<(String, Option<Value>)> {
    acked
        .iter()
        .filter_map(|(key, n)| {
            let got = wait_for("a read", || checker.get(TABLE, key, None).ok());
            (got.as_ref().and_then(|v| v["n"].as_u64()) != Some(*n)).then(|| (key.clone(), got))
        })
        .collect()
}

/// Changes the table's provisioned write units (100 read units): it is SCALING.
fn rescale(admin: &ApiClient, write_units: u64) -> shared::api::UpdateCapacityResponse {
    let capacity = shared::api::CapacityRequest {
        mode: shared::model::CapacityMode::Provisioned,
        read_units: Some(100),
        write_units: Some(write_units),
    };
    let scaling = read("scale", || admin.update_capacity(TABLE, &capacity));
    assert_eq!(scaling.status, TableStatus::Scaling);
    scaling
}

fn wait_finished(client: &ApiClient, op: &OperationDescription) -> OperationDescription {
    wait_for("the operation to finish", || {
        client
            .operation(op.operation_id)
            .ok()
            .filter(OperationDescription::finished)
    })
}

#[test]
fn splits_and_moves_under_load_lose_nothing_and_serve_nothing_stale() {
    let cluster = TestCluster::start(5, LIVE_HTTP_BASE, |c| {
        no_scaler(c);
        // Small chunks: every move's copy travels as many messages.
        c.data.snapshot_chunk_bytes = 1024;
    });
    let admin = cluster.client(1);
    ready_table(&admin, &table_request(TABLE, 2000));
    let before = partitions(&admin);
    let load = Load::start(&cluster);
    std::thread::sleep(Duration::from_secs(2));

    // (a) Split the first partition at the median of its keys.
    let split = read("split", || {
        admin.split_partition(before[0].partition_id, None)
    });
    let split = wait_finished(&admin, &split);
    assert_eq!(split.status, "COMPLETED", "{split:?}");
    let after_split = partitions(&admin);
    assert_eq!(after_split.len(), before.len() + 1);
    assert_tiles(&after_split);
    std::thread::sleep(Duration::from_secs(1));

    // (b) Move the primary of a partition to a node that holds no copy of it.
    let target = &after_split[after_split.len() - 1];
    let holders: Vec<u64> = std::iter::once(target.primary_node_id)
        .chain(target.replica_node_ids.iter().copied())
        .collect();
    let to = (1..=5u64)
        .find(|n| !holders.contains(n))
        .expect("a free node");
    let request = MovePartitionRequest {
        target_node: to,
        source_node: None,
    };
    let moved = read("move", || {
        admin.move_partition(target.partition_id, &request)
    });
    let moved = wait_finished(&admin, &moved);
    assert_eq!(moved.status, "COMPLETED", "{moved:?}");
    let after_move = partitions(&admin);
    let now = after_move
        .iter()
        .find(|p| p.partition_id == target.partition_id)
        .expect("the moved partition");
    assert_eq!(
        now.primary_node_id, to,
        "the primary role followed the copy"
    );
    assert!(now.epoch > target.epoch);
    assert_tiles(&after_move);
    std::thread::sleep(Duration::from_secs(1));

    let (acked, stale, reads, slowest) = load.stop();
    let lost = lost_writes(&patient(&cluster), &acked);
    let pause = |kind: &str| pause_seconds(&cluster, kind) * 1000.0;
    println!(
        "live operations: {} keys acknowledged, {} lost, {reads} reads, {stale} stale; \
         split took {} ms with a write pause of {:.1} ms, move took {} ms with a write \
         pause of {:.1} ms; slowest acknowledged write (client side, retries included) \
         {slowest:?}",
        acked.len(),
        lost.len(),
        split.elapsed_ms,
        pause("split"),
        moved.elapsed_ms,
        pause("move"),
    );
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    assert_eq!(stale, 0, "stale reads");
    let ops = admin.operations(false).unwrap().operations;
    assert!(ops.iter().all(OperationDescription::finished), "{ops:?}");
}

/// The write pauses of operations of `kind`, summed over every agent's metrics (each
/// operation is measured once, by the agent that drove it).
fn pause_seconds(cluster: &TestCluster, kind: &str) -> f64 {
    let series = format!("agent_operation_write_pause_seconds_sum{{kind=\"{kind}\"}} ");
    (1..=cluster.size())
        .filter_map(|i| {
            let (_, text) = cluster
                .anonymous(i)
                .raw(agent::api_client::Method::Get, "/metrics", None)
                .ok()?;
            let line = text.lines().find(|l| l.starts_with(&series))?;
            line[series.len()..].trim().parse::<f64>().ok()
        })
        .sum()
}

const SCALE_HTTP_BASE: u16 = 22650;
const KILL_HTTP_BASE: u16 = 22700;

/// Replicas per node of the table's partitions.
fn replicas_per_node(parts: &[PartitionDescription], nodes: u16) -> Vec<usize> {
    (1..=u64::from(nodes))
        .map(|n| {
            parts
                .iter()
                .filter(|p| p.primary_node_id == n || p.replica_node_ids.contains(&n))
                .count()
        })
        .collect()
}

fn settled(admin: &ApiClient) -> bool {
    admin
        .operations(true)
        .is_ok_and(|ops| ops.operations.is_empty())
}

#[test]
fn the_scaler_splits_for_capacity_and_rebalances_onto_a_new_agent() {
    let mut cluster = TestCluster::start_some(6, 5, SCALE_HTTP_BASE, |c| {
        c.scaler.planning_interval_ms = 500;
        // Even to the replica: the optimum is then exactly the new agent's share.
        c.scaler.imbalance_tolerance = 0;
    });
    let admin = cluster.client(1);
    ready_table(&admin, &table_request(TABLE, 2000));
    let load = Load::start(&cluster);
    std::thread::sleep(Duration::from_secs(1));

    // A capacity change: SCALING, split by the Scaler until 8 partitions, then ACTIVE.
    let scaling = rescale(&admin, 8000);
    assert!(scaling.estimated_completion_seconds > 0);
    let started = Instant::now();
    wait_for("the table ACTIVE with 8 partitions", || {
        let t = admin.get_table(TABLE).ok()?;
        (t.status == TableStatus::Active && t.partition_count == 8).then_some(())
    });
    let scaled_in = started.elapsed();
    assert_tiles(&partitions(&admin));
    wait_for("no operation running", || settled(&admin).then_some(()));

    // A sixth agent joins: the Scaler moves replicas onto it until the counts are even.
    let before: Vec<u64> = admin
        .operations(false)
        .unwrap()
        .operations
        .iter()
        .map(|o| o.operation_id)
        .collect();
    cluster.start_node(6);
    let started = Instant::now();
    let balanced = wait_for("replicas evened out over 6 agents", || {
        let parts = partitions(&admin);
        let counts = replicas_per_node(&parts, 6);
        let (min, max) = (*counts.iter().min()?, *counts.iter().max()?);
        (counts[5] > 0 && max - min <= 1 && settled(&admin)).then_some(counts)
    });
    let rebalanced_in = started.elapsed();
    let moves = admin
        .operations(false)
        .unwrap()
        .operations
        .into_iter()
        .filter(|o| !before.contains(&o.operation_id) && o.kind == "move")
        .collect::<Vec<_>>();
    assert!(moves.iter().all(|m| m.status == "COMPLETED"), "{moves:?}");
    // Every replica on the new agent needed one move: that is the optimum.
    let optimum = balanced[5];

    let (acked, stale, reads, slowest) = load.stop();
    let lost = lost_writes(&patient(&cluster), &acked).len();
    println!(
        "scaler: 2 -> 8 partitions in {scaled_in:?} (estimated {} s); sixth agent balanced \
         in {rebalanced_in:?} with {} moves vs optimum {optimum} (replicas per node \
         {balanced:?}); {} keys, {lost} lost, {reads} reads, {stale} stale; slowest write \
         {slowest:?}; write pauses: split {:.1} ms, move {:.1} ms in total",
        scaling.estimated_completion_seconds,
        moves.len(),
        acked.len(),
        pause_seconds(&cluster, "split") * 1000.0,
        pause_seconds(&cluster, "move") * 1000.0,
    );
    assert_eq!(lost, 0);
    assert_eq!(stale, 0);
    assert!(moves.len() >= optimum);
    assert!(
        moves.len() * 100 <= optimum * 105 + 100,
        "{} moves for an optimum of {optimum}",
        moves.len()
    );
    assert_tiles(&partitions(&admin));
}

#[test]
fn a_killed_move_source_or_split_leader_ends_every_operation_and_loses_nothing() {
    let mut cluster = TestCluster::start(5, KILL_HTTP_BASE, |c| {
        c.scaler.enabled = false;
    });
    let admin = cluster.client(1);
    ready_table(&admin, &table_request(TABLE, 4000));
    let load = Load::start(&cluster);
    std::thread::sleep(Duration::from_secs(2));

    // (d1) Kill the source (the primary, which drives the move) right after the move
    // starts: its successor either finds the move committed or rolls it back.
    let parts = partitions(&admin);
    let leader = admin.cluster().unwrap().leader_id.unwrap();
    let target = parts
        .iter()
        .find(|p| p.primary_node_id != leader)
        .expect("a partition led by a follower")
        .clone();
    let holders: Vec<u64> = std::iter::once(target.primary_node_id)
        .chain(target.replica_node_ids.iter().copied())
        .collect();
    let to = (1..=5u64).find(|n| !holders.contains(n)).unwrap();
    let request = MovePartitionRequest {
        target_node: to,
        source_node: None,
    };
    let moving = read("move", || {
        admin.move_partition(target.partition_id, &request)
    });
    cluster.kill(target.primary_node_id as u16);
    let observer = cluster.client(leader as u16);
    let moved = wait_finished(&observer, &moving);
    assert!(
        moved.status == "COMPLETED" || moved.status == "ROLLED_BACK",
        "{moved:?}"
    );

    // (d2) Kill the leader right after a split of a partition it leads starts.
    let parts = partitions(&observer);
    let led = parts
        .iter()
        .find(|p| p.primary_node_id == leader)
        .map(|p| p.partition_id);
    let split = match led {
        Some(pid) => {
            let split = read("split", || observer.split_partition(pid, None));
            cluster.kill(leader as u16);
            Some(split)
        }
        None => None,
    };
    let live = (1..=5u16)
        .find(|&i| u64::from(i) != leader && u64::from(i) != target.primary_node_id)
        .unwrap();
    let survivor = cluster.client(live);
    let split = split.map(|s| wait_finished(&survivor, &s));
    if let Some(split) = &split {
        assert!(
            split.status == "COMPLETED" || split.status == "ROLLED_BACK",
            "{split:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(1));
    let (acked, stale, reads, slowest) = load.stop();
    let live_endpoints: Vec<String> = (1..=5u16)
        .filter(|&i| u64::from(i) != leader && u64::from(i) != target.primary_node_id)
        .map(|i| cluster.anonymous(i).endpoint().to_string())
        .collect();
    let checker = cluster.data_client(live_endpoints).with_retry(RetryPolicy {
        max_attempts: 20,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
    });
    let lost = lost_writes(&checker, &acked).len();
    println!(
        "kills: move with its source killed ended {} at step {:?}; split with the leader \
         killed ended {}; {} keys, {lost} lost, {reads} reads, {stale} stale; slowest \
         write {slowest:?}",
        moved.status,
        moved.step,
        split
            .as_ref()
            .map_or("(no partition led by the leader)".to_string(), |s| format!(
                "{} at step {:?}",
                s.status, s.step
            )),
        acked.len(),
    );
    assert_eq!(lost, 0, "lost acknowledged writes");
    assert_eq!(stale, 0, "stale reads");
    let ops = survivor.operations(false).unwrap().operations;
    assert!(ops.iter().all(OperationDescription::finished), "{ops:?}");
    assert_tiles(&partitions(&survivor));
}

const MERGE_HTTP_BASE: u16 = 22800;

/// A Scaler that plans every 500 ms over a 3 s load window, so a test sees its load
/// observed (hot, or cold enough to merge) within seconds.
fn quick_load_window(c: &mut Config) {
    c.scaler.planning_interval_ms = 500;
    c.scaler.hot_window_ms = 3000;
    c.scaler.max_sample_gap_ms = 1500;
}

#[test]
fn a_capacity_decrease_merges_cold_partitions_under_load() {
    // Merges need the pair's load observed over a covered window.
    let cluster = TestCluster::start(5, MERGE_HTTP_BASE, quick_load_window);
    let admin = cluster.client(1);
    ready_table(&admin, &table_request(TABLE, 8000));
    assert_eq!(partitions(&admin).len(), 8);
    let load = Load::start(&cluster);
    std::thread::sleep(Duration::from_secs(1));

    // A decrease: SCALING while cold neighbours are brought together and merged, then
    // ACTIVE with the count the capacity needs.
    let scaling = rescale(&admin, 4000);
    let started = Instant::now();
    wait_for("the table ACTIVE with 4 partitions", || {
        let t = admin.get_table(TABLE).ok()?;
        (t.status == TableStatus::Active && t.partition_count == 4).then_some(())
    });
    let merged_in = started.elapsed();
    wait_for("no operation running", || settled(&admin).then_some(()));
    let ops = admin.operations(false).unwrap().operations;
    let count = |kind: &str| ops.iter().filter(|o| o.kind == kind).count();
    assert!(
        ops.iter().all(|o| o.status == "COMPLETED"),
        "every merge and co-location move completed: {ops:?}"
    );
    let max_pause = ops
        .iter()
        .filter(|o| o.kind == "merge")
        .filter_map(|o| o.write_pause_ms)
        .max();

    let (acked, stale, reads, slowest) = load.stop();
    let lost = lost_writes(&patient(&cluster), &acked).len();
    println!(
        "merges: 8 -> 4 partitions in {merged_in:?} (estimated {} s) by {} merges and {} \
         co-location moves; max merge write pause {max_pause:?} ms; {} keys, {lost} lost, \
         {reads} reads, {stale} stale; slowest write {slowest:?}",
        scaling.estimated_completion_seconds,
        count("merge"),
        count("move"),
        acked.len(),
    );
    assert_eq!(count("merge"), 4);
    assert_eq!(lost, 0);
    assert_eq!(stale, 0);
    let parts = partitions(&admin);
    assert_tiles(&parts);
    // Pairs merged narrowest first: the ranges stay as even as the splits left them.
    let width = u64::MAX / 4;
    assert!(
        parts
            .iter()
            .all(|p| p.key_range_high - p.key_range_low == width),
        "{parts:?}"
    );
}

const HOT_HTTP_BASE: u16 = 22750;

#[test]
fn a_hot_partition_is_split_and_its_busier_child_moved() {
    let cluster = TestCluster::start(5, HOT_HTTP_BASE, |c| {
        quick_load_window(c);
        c.scaler.hot_min_ops_per_sec = 20;
    });
    let admin = cluster.client(1);
    wait_for("3 voters", || {
        (admin.cluster().ok()?.voters.len() == 3).then_some(())
    });
    // One partition provisioned for 2 ops/s: the writers below keep it far above.
    let capacity = shared::api::CapacityRequest {
        mode: shared::model::CapacityMode::Provisioned,
        read_units: Some(1),
        write_units: Some(1),
    };
    let request = shared::api::CreateTableRequest::with_string_key(TABLE, "id", capacity);
    create_table(&admin, &request);
    wait_for("table ACTIVE", || {
        (admin.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
    let load = Load::start(&cluster);
    let scaler_ops = || {
        admin
            .operations(false)
            .map(|l| l.operations)
            .unwrap_or_default()
            .into_iter()
            .filter(|o| o.requested_by == "scaler")
            .collect::<Vec<_>>()
    };
    let split = wait_for("a hot split", || {
        scaler_ops()
            .into_iter()
            .find(|o| o.kind == "split" && o.status == "COMPLETED")
    });
    let children = split.split.expect("a completed split names its children");
    let moved = wait_for("the move of a child", || {
        scaler_ops().into_iter().find(|o| {
            o.kind == "move"
                && o.status == "COMPLETED"
                && [children.left, children.right].contains(&o.partition_id)
        })
    });
    let (acked, stale, _, _) = load.stop();
    let lost = lost_writes(&patient(&cluster), &acked).len();
    println!(
        "hot split: partition {} split after {} ms of its operation into {} and {}; child {} \
         moved {:?} -> {:?}; {lost} lost, {stale} stale",
        split.partition_id,
        split.elapsed_ms,
        children.left,
        children.right,
        moved.partition_id,
        moved.from_node,
        moved.to_node
    );
    assert_eq!(lost, 0);
    assert_eq!(stale, 0);
    assert_tiles(&partitions(&admin));
}
