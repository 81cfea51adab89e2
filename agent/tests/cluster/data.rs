//! The data path with real agents: no acknowledged write is lost when the busiest
//! primary is killed mid-load; a deposed primary serves neither reads nor writes; every
//! rejection leaves stored data unchanged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Authorization, Method};
use agent::data_client::{DataClient, RetryPolicy};
use serde_json::{Value, json};
use shared::api::PartitionDescription;
use shared::keyspace::hash_partition_key;
use shared::model::{NodeId, NodeStatus, TableStatus};

use crate::harness::{TestCluster, create_table, no_scaler, read, table_request, wait_for};

const FAILOVER_HTTP_BASE: u16 = 21900;
const DEPOSED_HTTP_BASE: u16 = 21950;
const REJECT_HTTP_BASE: u16 = 22300;
const IN_FLIGHT_HTTP_BASE: u16 = 24250;
const WRITERS: usize = 4;
const KEYS_PER_WRITER: usize = 2000;
/// Every this many keys is written twice; the second value must be the one read back.
const OVERWRITE_EVERY: usize = 10;
/// Give up on one write after this long (a failover takes a few seconds).
const WRITE_DEADLINE: Duration = Duration::from_secs(60);

pub fn endpoints(cluster: &TestCluster) -> Vec<String> {
    cluster.endpoints()
}

pub fn wait_ready(
    cluster: &TestCluster,
    table: &str,
    write_units: u64,
) -> Vec<PartitionDescription> {
    let c1 = cluster.client(1);
    wait_for("3 voters", || {
        (c1.cluster().ok()?.voters.len() == 3.min(usize::from(cluster.size()))).then_some(())
    });
    let cluster_id = wait_for("cluster id", || c1.cluster().ok()?.cluster_id);
    wait_for("every agent healthy", || {
        let nodes = c1.nodes(&cluster_id).ok()?.nodes;
        (nodes.len() == usize::from(cluster.size())
            && nodes.iter().all(|n| n.status == NodeStatus::Healthy))
        .then_some(())
    });
    create_table(&c1, &table_request(table, write_units));
    wait_for("table ACTIVE", || {
        (c1.get_table(table).ok()?.status == TableStatus::Active).then_some(())
    });
    read("partitions", || c1.partitions(table)).partitions
}

/// Writes `value` under `key` until acknowledged; returns how long it took.
fn put_until_acked(client: &DataClient, table: &str, key: &str, value: &Value) -> Duration {
    let started = Instant::now();
    loop {
        match client.put(table, key, None, value) {
            Ok(_) => return started.elapsed(),
            Err(e) => {
                assert!(
                    started.elapsed() < WRITE_DEADLINE,
                    "write of {key} not acknowledged in {WRITE_DEADLINE:?}: {e}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

pub fn patient(cluster: &TestCluster, endpoints: Vec<String>) -> DataClient {
    cluster.data_client(endpoints).with_retry(RetryPolicy {
        max_attempts: 8,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
    })
}

#[test]
fn no_acknowledged_write_is_lost_when_the_busiest_primary_is_killed() {
    let mut cluster = TestCluster::start(5, FAILOVER_HTTP_BASE, no_scaler);
    let table = "ledger";
    let parts = wait_ready(&cluster, table, 8000);
    assert_eq!(parts.len(), 8);
    let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
    for p in &parts {
        *primaries.entry(p.primary_node_id).or_default() += 1;
    }
    let (&victim, _) = primaries
        .iter()
        .max_by_key(|(_, n)| **n)
        .expect("a primary");

    let acked: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let stall = Arc::new(Mutex::new(Duration::ZERO));
    let all = endpoints(&cluster);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (acked, done, stall) = (acked.clone(), done.clone(), stall.clone());
            let client = patient(&cluster, all.clone());
            std::thread::spawn(move || {
                for i in 0..KEYS_PER_WRITER {
                    let key = format!("w{w}-k{i}");
                    let mut value = json!({"writer": w, "i": i, "v": 1});
                    let mut took = put_until_acked(&client, table, &key, &value);
                    if i % OVERWRITE_EVERY == 0 {
                        value = json!({"writer": w, "i": i, "v": 2});
                        took = took.max(put_until_acked(&client, table, &key, &value));
                    }
                    acked.lock().unwrap().insert(key, value);
                    let mut longest = stall.lock().unwrap();
                    *longest = (*longest).max(took);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    wait_for("a quarter of the writes", || {
        (done.load(Ordering::Relaxed) >= WRITERS * KEYS_PER_WRITER / 4).then_some(())
    });
    cluster.kill(victim as u16);
    let killed_at = Instant::now();
    for w in writers {
        w.join().expect("writer");
    }
    let load_time = killed_at.elapsed();

    // Every acknowledged write, read back through the survivors (routing cache, then
    // forwarding by each agent in turn).
    let live: Vec<String> = (1..=cluster.size())
        .filter(|&i| u64::from(i) != victim)
        .map(|i| cluster.anonymous(i).endpoint().to_string())
        .collect();
    let reader = patient(&cluster, live.clone());
    let acked = acked.lock().unwrap();
    assert_eq!(acked.len(), WRITERS * KEYS_PER_WRITER);
    let mut lost = Vec::new();
    for (key, value) in acked.iter() {
        let got = wait_for("a read", || reader.get(table, key, None).ok());
        if got.as_ref() != Some(value) {
            lost.push((key.clone(), got));
        }
    }
    let token = cluster.token(table);
    for (n, (key, value)) in acked.iter().step_by(97).enumerate() {
        let via = ApiClient::new(&live[n % live.len()])
            .with_authorization(&Authorization::Token(token.clone()));
        let (status, text) = via
            .raw(Method::Get, &format!("/tables/{table}/items/{key}"), None)
            .expect("forwarded read");
        assert_eq!(status, 200, "{key}: {text}");
        let item: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            &item["value"],
            value,
            "{key} through {}",
            live[n % live.len()]
        );
    }
    let stall = *stall.lock().unwrap();
    println!(
        "data failover: {} acknowledged writes, {} lost, longest write stall {stall:?}, \
         writes finished {load_time:?} after kill -9 of node {victim}",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
}

/// The partition of `table` holding `key`, by hash, from a partitions listing.
fn partition_of<'a>(parts: &'a [PartitionDescription], key: &str) -> &'a PartitionDescription {
    let hash = hash_partition_key(key.as_bytes());
    parts
        .iter()
        .find(|p| p.key_range_low <= hash && hash <= p.key_range_high)
        .expect("partitions tile the key space")
}

#[test]
fn a_deposed_primary_serves_neither_reads_nor_writes() {
    let cluster = TestCluster::start(5, DEPOSED_HTTP_BASE, no_scaler);
    let table = "accounts";
    let parts = wait_ready(&cluster, table, 4000);
    let client = patient(&cluster, endpoints(&cluster));
    let key = "alice";
    put_until_acked(&client, table, key, &json!({"balance": 1}));
    let before = partition_of(&parts, key).clone();
    let old_primary = before.primary_node_id as u16;
    let other = (1..=cluster.size()).find(|&i| i != old_primary).unwrap();
    let observer = cluster.client(other);

    // Frozen past the failure window: failed, and another replica promoted.
    cluster.pause(old_primary);
    let after = wait_for("a new primary for the partition", || {
        let parts = observer.partitions(table).ok()?.partitions;
        parts
            .into_iter()
            .find(|p| p.partition_id == before.partition_id)
            .filter(|p| p.epoch > before.epoch && p.primary_node_id != before.primary_node_id)
    });
    put_until_acked(&client, table, key, &json!({"balance": 2}));
    cluster.resume(old_primary);

    // For a while after it wakes up, its metadata may still name it the primary at the
    // old epoch: it must neither answer a read with the old value nor take a write.
    let deposed = cluster.item_client(old_primary, table);
    let path = format!("/tables/{table}/items/{key}");
    let until = Instant::now() + Duration::from_secs(4);
    let mut answered = 0;
    while Instant::now() < until {
        let direct = format!("{path}?epoch={}", before.epoch);
        if let Ok((status, text)) = deposed.raw(Method::Get, &direct, None) {
            answered += 1;
            assert_ne!(status, 200, "the deposed primary served a read: {text}");
        }
        let write = deposed.raw(Method::Put, &direct, Some(r#"{"balance":99}"#));
        if let Ok((status, text)) = write {
            assert!(
                !(200..300).contains(&status),
                "the deposed primary took a write: {text}"
            );
        }
        // Without an epoch it forwards: the answer is the new value or an error.
        if let Ok((200, text)) = deposed.raw(Method::Get, &path, None) {
            let item: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                item["value"],
                json!({"balance": 2}),
                "stale read through {old_primary}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered > 0, "the resumed agent answered no request");
    let now = wait_for("a read", || client.get(table, key, None).ok().flatten());
    assert_eq!(now, json!({"balance": 2}));
    assert!(after.epoch > before.epoch);
}

#[test]
fn rejected_item_requests_change_nothing() {
    let cluster = TestCluster::start(3, REJECT_HTTP_BASE, |c| {
        c.data.max_value_bytes = 1024;
        // A paused agent must stay a (silent) member for this test, not be failed.
        c.controllers.failure_confirm_window_ms = 60_000;
        c.data.replica_drop_after_ms = 120_000;
        c.controllers.delete_release_timeout_ms = 60_000;
    });
    let table = "things";
    wait_ready(&cluster, table, 2000);
    let c1 = cluster.client(1);
    create_table(&c1, &table_request("doomed", 1000));
    wait_for("doomed ACTIVE", || {
        (c1.get_table("doomed").ok()?.status == TableStatus::Active).then_some(())
    });
    let client = patient(&cluster, endpoints(&cluster));
    for k in ["a", "b"] {
        put_until_acked(&client, table, k, &json!({"k": k}));
    }
    put_until_acked(&client, "doomed", "z", &json!(1));
    // Item requests carry a credential for `table` (and `doomed`, for its own paths).
    let items = cluster.item_client(1, table);
    let doomed = cluster.item_client(1, "doomed");
    let raw = |method: Method, path: &str, body: Option<&str>| {
        let via = if path.starts_with("/tables/doomed/") {
            &doomed
        } else {
            &items
        };
        via.raw(method, path, body).expect("request")
    };
    let expect = |method: Method, path: &str, body: Option<&str>, status: u16| {
        let (got, text) = raw(method, path, body);
        assert_eq!(got, status, "{method:?} {path}: {text}");
        let error: shared::api::ErrorBody = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("not a JSON error ({e}): {text}"));
        assert!(!error.error.code.is_empty());
    };
    let unchanged = || {
        for k in ["a", "b"] {
            let got = wait_for("a read", || client.get(table, k, None).ok());
            assert_eq!(got, Some(json!({"k": k})), "item {k} changed");
        }
        let (status, _) = raw(Method::Get, &format!("/tables/{table}/items/c"), None);
        assert_eq!(status, 404, "item c must not exist");
    };

    // A credential is for one table: another (even one that does not exist) is 403.
    expect(Method::Put, "/tables/nope/items/a", Some("1"), 403);
    expect(Method::Get, "/tables/nope/items/a", None, 403);
    let big = format!("\"{}\"", "x".repeat(2000));
    expect(
        Method::Put,
        &format!("/tables/{table}/items/c"),
        Some(&big),
        413,
    );
    expect(
        Method::Put,
        &format!("/tables/{table}/items/a"),
        Some(&big),
        413,
    );
    expect(
        Method::Put,
        &format!("/tables/{table}/items/c"),
        Some("{not json"),
        400,
    );
    expect(
        Method::Put,
        &format!("/tables/{table}/items/c?sort_key=1"),
        Some("1"),
        400,
    );
    expect(Method::Get, &format!("/tables/{table}/items/c"), None, 404);
    unchanged();

    // Node 3 freezes: every partition has a replica there (3 agents, 3 replicas).
    cluster.pause(3);
    // A DELETING table (node 3 cannot release, so it stays DELETING) grants nothing:
    // its credentials are refused (403) before the data plane would answer 409.
    read("delete", || c1.delete_table("doomed"));
    expect(Method::Put, "/tables/doomed/items/y", Some("1"), 403);
    expect(Method::Get, "/tables/doomed/items/z", None, 403);
    // Once the read leases have lapsed, writes are refused before anything is written.
    std::thread::sleep(Duration::from_millis(3000));
    expect(
        Method::Put,
        &format!("/tables/{table}/items/a"),
        Some("{\"k\":\"x\"}"),
        503,
    );
    expect(
        Method::Put,
        &format!("/tables/{table}/items/c"),
        Some("1"),
        503,
    );
    cluster.resume(3);
    unchanged();
}

#[test]
fn a_read_never_returns_a_write_still_in_flight() {
    let cluster = TestCluster::start(3, IN_FLIGHT_HTTP_BASE, |c| {
        no_scaler(c);
        // The replica stays a (silent) member: the write ends in doubt, not in a drop.
        c.controllers.failure_confirm_window_ms = 60_000;
        c.data.replica_drop_after_ms = 120_000;
    });
    let table = "cells";
    let parts = wait_ready(&cluster, table, 1000);
    let client = patient(&cluster, endpoints(&cluster));
    let key = "k";
    put_until_acked(&client, table, key, &json!({"v": "acknowledged"}));
    let p = partition_of(&parts, key).clone();
    let primary = cluster.item_client(p.primary_node_id as u16, table);
    let path = format!("/tables/{table}/items/{key}?epoch={}", p.epoch);
    // A frozen replica holds the next write in flight for the replica timeout (1 s).
    cluster.pause(p.replica_node_ids[0] as u16);
    let writer = primary.clone();
    let write_path = path.clone();
    let write = std::thread::spawn(move || {
        let answer = writer.raw(Method::Put, &write_path, Some(r#"{"v":"in flight"}"#));
        (answer.map(|(status, _)| status), Instant::now())
    });
    std::thread::sleep(Duration::from_millis(200));
    let read = primary.raw(Method::Get, &path, None);
    let read_done = Instant::now();
    let (write_status, write_done) = write.join().unwrap();
    cluster.resume(p.replica_node_ids[0] as u16);
    // The write may end either way; until it has, no read may show it (it was shown,
    // then lost when the next primary lacked it).
    if let Ok((200, text)) = &read {
        let item: Value = serde_json::from_str(text).unwrap();
        assert!(
            item["value"] == json!({"v": "acknowledged"}) || read_done >= write_done,
            "read {text} while the write was in flight (write answered {write_status:?})"
        );
    }
}
