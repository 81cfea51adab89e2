//! Throughput of routing lookups and of `MetaState::apply` at the target scale
//! (10,000 partitions). Bench builds have debug assertions off, so `apply` runs
//! without the per-command invariant check.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::command::{MetaCommand, MetaOutcome, PartitionAssignment, TableSpec};
use shared::keyspace::{RoutingTable, even_ranges};
use shared::model::{Attribute, AttributeType, Capacity, CapacityMode, TableId};
use shared::placement::{PlacementConfig, plan_new_table};
use shared::rebalance::{RebalanceConfig, plan_rebalance};
use shared::state::MetaState;

const NODES: u64 = 100;
const LOOKUPS: usize = 1 << 16;

/// SplitMix64: a tiny deterministic generator, so runs are comparable.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn spec(name: &str) -> TableSpec {
    TableSpec {
        table_name: name.to_string(),
        partition_key: "pk".into(),
        sort_key: None,
        capacity: Capacity {
            mode: CapacityMode::OnDemand,
            read_units: 0,
            write_units: 0,
        },
        attributes: vec![Attribute {
            name: "pk".into(),
            attr_type: AttributeType::S,
        }],
    }
}

/// 100 nodes in 3 zones and `tables` tables of `per_table` partitions each, rf 3.
fn state(tables: u32, per_table: u32) -> (MetaState, Vec<TableId>) {
    let mut s = MetaState::new();
    for n in 1..=NODES {
        let cmd = MetaCommand::RegisterNode {
            node_id: n,
            endpoint: format!("http://n{n}"),
            peer_addr: format!("n{n}:7100"),
            zone: format!("z{}", n % 3),
            incarnation: 1,
            now_ms: 0,
        };
        s.apply(&cmd).unwrap();
    }
    let ids = (0..tables)
        .map(|i| add_table(&mut s, &format!("table{i}"), per_table))
        .collect();
    (s, ids)
}

fn add_table(s: &mut MetaState, name: &str, partitions: u32) -> TableId {
    let cmd = MetaCommand::CreateTable {
        spec: spec(name),
        now_ms: 0,
    };
    let Ok(MetaOutcome::TableCreated { table_id }) = s.apply(&cmd) else {
        panic!("create")
    };
    let partitions: Vec<PartitionAssignment> = even_ranges(partitions)
        .into_iter()
        .enumerate()
        .map(|(i, range)| {
            let n = i as u64 % NODES;
            PartitionAssignment {
                range,
                primary_node_id: 1 + n,
                replica_node_ids: vec![1 + (n + 1) % NODES, 1 + (n + 2) % NODES],
            }
        })
        .collect();
    s.apply(&MetaCommand::AssignPartitions {
        table_id,
        partitions,
    })
    .unwrap();
    table_id
}

fn bench_lookup(c: &mut Criterion, name: &str, tables: u32, per_table: u32) {
    let (s, ids) = state(tables, per_table);
    let rt = RoutingTable::from_state(&s);
    let mut rng = SplitMix(7);
    let queries: Vec<(TableId, u64)> = (0..LOOKUPS)
        .map(|_| (ids[(rng.next() % ids.len() as u64) as usize], rng.next()))
        .collect();
    let mut g = c.benchmark_group("routing");
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for &(t, h) in &queries {
                acc = acc.wrapping_add(rt.lookup(t, black_box(h)).map_or(0, |e| e.partition_id));
            }
            acc
        })
    });
    g.finish();
}

fn routing(c: &mut Criterion) {
    bench_lookup(c, "lookup_1x10000", 1, 10_000);
    bench_lookup(c, "lookup_100x100", 100, 100);
    let (s, _) = state(100, 100);
    c.bench_function("routing/from_state_10000_partitions", |b| {
        b.iter(|| RoutingTable::from_state(black_box(&s)))
    });
}

fn apply(c: &mut Criterion) {
    let (base, _) = state(100, 100);
    // Each node reports one of its partitions ready; idempotent, so it can repeat.
    let ready: Vec<MetaCommand> = base
        .partitions()
        .map(|p| MetaCommand::PartitionsReady {
            node_id: p.primary_node_id,
            partition_ids: vec![p.partition_id],
        })
        .collect();
    let mut g = c.benchmark_group("apply");
    g.throughput(Throughput::Elements(ready.len() as u64));
    let mut s = base.clone();
    g.bench_function("partitions_ready_10000_partitions", |b| {
        b.iter(|| {
            for cmd in &ready {
                s.apply(black_box(cmd)).unwrap();
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("create_table_10000_partitions", |b| {
        b.iter_custom(|iters| create_tables(&base, iters))
    });
    g.bench_function("assign_partitions_64_on_10000", |b| {
        b.iter_custom(|iters| assign_tables(&base, iters))
    });
    g.finish();
    let t = {
        let mut s = base.clone();
        let id = add_table(&mut s, "planned", 1);
        (s, id)
    };
    let cfg = PlacementConfig {
        max_partitions_per_table: 4096,
        ..PlacementConfig::default()
    };
    c.bench_function("placement/plan_4_partitions_100_nodes", |b| {
        b.iter(|| plan_new_table(black_box(&t.0), t.1, &cfg, &BTreeSet::new()).unwrap())
    });
}

/// Times `iters` CreateTable commands on a fresh copy of `base` (names made up front).
fn create_tables(base: &MetaState, iters: u64) -> Duration {
    let mut s = base.clone();
    let cmds: Vec<MetaCommand> = (0..iters)
        .map(|i| MetaCommand::CreateTable {
            spec: spec(&format!("new{i}")),
            now_ms: 1,
        })
        .collect();
    let start = Instant::now();
    for cmd in &cmds {
        s.apply(black_box(cmd)).unwrap();
    }
    start.elapsed()
}

/// Times `iters` AssignPartitions (64 partitions, rf 3) on a copy of `base`; each
/// table is created before and purged after its timed assignment (untimed), so the
/// state stays at 10,000 partitions.
fn assign_tables(base: &MetaState, iters: u64) -> Duration {
    let mut s = base.clone();
    let partitions: Vec<PartitionAssignment> = even_ranges(64)
        .into_iter()
        .map(|range| PartitionAssignment {
            range,
            primary_node_id: 1,
            replica_node_ids: vec![2, 3],
        })
        .collect();
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let cmd = MetaCommand::CreateTable {
            spec: spec("assigned"),
            now_ms: 1,
        };
        let Ok(MetaOutcome::TableCreated { table_id }) = s.apply(&cmd) else {
            panic!("create")
        };
        let cmd = MetaCommand::AssignPartitions {
            table_id,
            partitions: partitions.clone(),
        };
        let start = Instant::now();
        s.apply(black_box(&cmd)).unwrap();
        total += start.elapsed();
        let delete = MetaCommand::DeleteTable {
            table_name: "assigned".into(),
            now_ms: 2,
        };
        s.apply(&delete).unwrap();
        s.apply(&MetaCommand::PurgeTable { table_id }).unwrap();
    }
    total
}

/// 100 nodes in `zones` zones (node `n` in zone `n % zones`) holding 100 ACTIVE tables
/// of 100 partitions (rf 3, on nodes `n`, `n+1`, `n+2`), and node 101 joining empty in
/// the zone of node 1.
fn joined_state(zones: u64) -> MetaState {
    let mut s = MetaState::new();
    for n in 1..=NODES + 1 {
        let cmd = MetaCommand::RegisterNode {
            node_id: n,
            endpoint: format!("http://n{n}"),
            peer_addr: format!("n{n}:7100"),
            // The joiner (NODES + 1) goes to the zone of node 1.
            zone: format!("z{}", if n > NODES { 1 } else { n } % zones),
            incarnation: 1,
            now_ms: 0,
        };
        s.apply(&cmd).unwrap();
    }
    for i in 0..100 {
        let table_id = add_table(&mut s, &format!("table{i}"), 100);
        let mut by_node: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for p in s.partitions_of(table_id) {
            for n in p.all_nodes() {
                by_node.entry(n).or_default().push(p.partition_id);
            }
        }
        for (node_id, partition_ids) in by_node {
            let cmd = MetaCommand::PartitionsReady {
                node_id,
                partition_ids,
            };
            s.apply(&cmd).unwrap();
        }
        s.apply(&MetaCommand::ActivateTable {
            table_id,
            now_ms: 1,
        })
        .unwrap();
    }
    s
}

/// Rebalancing plans when one node joins 100 holding 10,000 partitions × 3: with one
/// zone (every move is free), and with 3 zones (each copy is locked in its zone, so
/// the planner also searches for chains and evens out within the joiner's zone).
fn rebalance(c: &mut Criterion) {
    let cfg = RebalanceConfig {
        tolerance: 1,
        max_moves: 100_000,
    };
    for (zones, name) in [(1, "one_zone"), (3, "three_zones")] {
        let s = joined_state(zones);
        let plan = plan_rebalance(&s, &cfg, &BTreeSet::new());
        eprintln!(
            "rebalance/{name}: {} moves (lower bound {}), {} primary moves, after {:?}",
            plan.moves.len(),
            plan.optimal_moves(),
            plan.primary_moves.len(),
            plan.after
        );
        let id = format!("rebalance/plan_one_joins_100_nodes_10000x3_{name}");
        c.bench_function(&id, |b| {
            b.iter(|| plan_rebalance(black_box(&s), &cfg, &BTreeSet::new()))
        });
    }
}

criterion_group!(benches, routing, apply, rebalance);
criterion_main!(benches);
