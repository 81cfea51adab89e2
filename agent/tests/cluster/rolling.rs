//! A rolling restart of every agent under write load, each stopped with SIGTERM: a
//! stopping agent hands over the partitions it leads and leaves its replica sets first,
//! so no acknowledged write is lost and no write fails beyond the client's retries. The
//! figures (stop time, longest write per restart) are printed, not asserted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shared::model::NodeStatus;

use crate::data::{endpoints, patient, wait_ready};
use crate::harness::{TestCluster, no_scaler, wait_for};

const HTTP_BASE: u16 = 24950;
const WRITERS: usize = 4;
/// Keys each writer cycles through (each writer owns its keys).
const KEYS_PER_WRITER: u64 = 25;

/// One acknowledged write: when it was sent and how long it took (client retries
/// included).
struct Acked {
    sent: Instant,
    took: Duration,
}

#[derive(Default)]
struct Load {
    /// Key → the last acknowledged value.
    acked: BTreeMap<String, Value>,
    /// Every acknowledged write.
    writes: Vec<Acked>,
    /// Writes that failed after the client's retries.
    failed: Vec<String>,
}

#[test]
fn a_rolling_restart_under_write_load_loses_and_fails_no_write() {
    let mut cluster = TestCluster::start(5, HTTP_BASE, no_scaler);
    let table = "ledger";
    wait_ready(&cluster, table, 8000);
    let load = Arc::new(Mutex::new(Load::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (load, stop) = (load.clone(), stop.clone());
            let client = patient(&cluster, endpoints(&cluster));
            std::thread::spawn(move || {
                for seq in 0u64.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("w{w}-k{}", seq % KEYS_PER_WRITER);
                    let value = json!({"writer": w, "seq": seq});
                    let sent = Instant::now();
                    let result = client.put(table, &key, None, &value);
                    let mut load = load.lock().unwrap();
                    match result {
                        Ok(_) => {
                            load.acked.insert(key, value);
                            load.writes.push(Acked {
                                sent,
                                took: sent.elapsed(),
                            });
                        }
                        Err(e) => load.failed.push(format!("{key} seq {seq}: {e}")),
                    }
                }
            })
        })
        .collect();
    let admin = cluster.client(1);
    let cluster_id = wait_for("cluster id", || admin.cluster().ok()?.cluster_id);
    std::thread::sleep(Duration::from_secs(1));

    let mut report = Vec::new();
    for i in 1..=cluster.size() {
        let began = Instant::now();
        let (stopping, status) = cluster.stop(i);
        assert!(status.success(), "agent {i} exited with {status:?}");
        let exited = Instant::now();
        cluster.start_node(i);
        let other = cluster.client(i % cluster.size() + 1);
        wait_for("the restarted agent to be ready", || {
            cluster.anonymous(i).healthy().then_some(())
        });
        // Before the next stop: every agent HEALTHY, every partition fully replicated.
        wait_for("a fully replicated cluster", || {
            let nodes = other.nodes(&cluster_id).ok()?.nodes;
            let healthy = nodes.iter().all(|n| n.status == NodeStatus::Healthy);
            let parts = other.partitions(table).ok()?.partitions;
            (healthy && parts.iter().all(|p| !p.under_replicated)).then_some(())
        });
        report.push((i, [began, exited, Instant::now()], stopping));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }

    let load = load.lock().unwrap();
    // Writes sent in [from, to): how many, and the slowest (p99 and max), in ms.
    let window = |from: Instant, to: Instant| {
        let mut took: Vec<u128> = load
            .writes
            .iter()
            .filter(|w| w.sent >= from && w.sent < to)
            .map(|w| w.took.as_millis())
            .collect();
        took.sort_unstable();
        let p99 = took.get(took.len() * 99 / 100).copied().unwrap_or(0);
        (took.len(), p99, took.last().copied().unwrap_or(0))
    };
    for (i, [began, exited, settled], stopping) in &report {
        let (stop_writes, stop_p99, stop_max) = window(*began, *exited);
        let (back_writes, back_p99, back_max) = window(*exited, *settled);
        println!(
            "rolling restart: agent {i} stopped in {} ms: {stop_writes} writes meanwhile, \
             p99 {stop_p99} ms, longest {stop_max} ms; restart and re-replication: \
             {back_writes} writes, p99 {back_p99} ms, longest {back_max} ms",
            stopping.as_millis(),
        );
    }
    let reader = patient(&cluster, endpoints(&cluster));
    let mut lost = Vec::new();
    for (key, value) in &load.acked {
        let got = wait_for("a read", || reader.get(table, key, None).ok());
        if got.as_ref() != Some(value) {
            lost.push((key.clone(), got));
        }
    }
    println!(
        "rolling restart: {} acknowledged writes, {} lost, {} failed beyond the client's retries",
        load.writes.len(),
        lost.len(),
        load.failed.len()
    );
    assert!(lost.is_empty(), "lost acknowledged writes: {lost:?}");
    assert!(
        load.failed.is_empty(),
        "writes failed beyond the client's retries: {:?}",
        load.failed
    );
}
