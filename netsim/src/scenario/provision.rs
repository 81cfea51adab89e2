//! `provision`: once the cluster has formed, clients create `--tables` tables (1,000)
//! totalling `--partitions` partitions through the metadata log (`CreateTable`, one per
//! table, sent to the agents round robin, all at once). The leader's Partition Assigner
//! (the real `assigner_actions`, so `plan_new_table`) places them, every agent's
//! reconciler reports its new copies (`PartitionsReady`), and the assigner activates
//! each table once all its copies are ready. Measured: the time until every table is
//! ACTIVE, each table's create-to-ACTIVE time, and replicas and primaries per node.

use std::collections::BTreeMap;

use shared::command::MetaCommand;
use shared::model::{NodeId, NodeStatus, TableStatus};
use shared::placement::PlacementConfig;

use super::{Outcome, Params, Run, WARM_UP_US};
use crate::cluster::{table_sizes, table_spec};
use crate::config::SimConfig;
use crate::sim::Simulation;
use crate::stats::{Summary, round};
use crate::time::{Micros, as_ms, millis, secs};

/// Tables created unless `--tables` says otherwise.
pub const DEFAULT_TABLES: usize = 1_000;
/// Every table must be ACTIVE within this after the creations are sent.
pub const ACTIVE_DEADLINE_US: Micros = secs(600);
/// How often table states are checked (the resolution of the per-table times).
pub const ACTIVE_POLL_US: Micros = millis(10);
/// Quiet time before the liveness check.
pub const SETTLE_US: Micros = secs(5);

/// Tables actually created for `partitions` partitions: at least one partition each.
pub fn table_count(tables: usize, partitions: usize) -> usize {
    tables.min(partitions).max(1)
}

/// The cluster `provision` starts from: registered nodes, no table, the assigner on.
pub(super) fn config(params: &Params) -> SimConfig {
    let mut cfg = SimConfig::new(params.seed, params.nodes, 0);
    cfg.assigner = true;
    cfg
}

pub(super) fn run(run: &mut Run) -> Outcome {
    let mut out = Outcome::default();
    let tables = table_count(run.params.tables, run.params.partitions);
    let partitions = run.params.partitions;
    let sim = &mut run.sim;
    sim.run_until(WARM_UP_US);
    let placement = PlacementConfig {
        replication_factor: sim.config().replication_factor,
        ..PlacementConfig::default()
    };
    let nodes: Vec<NodeId> = sim.agents().keys().copied().collect();
    let created_at = sim.now();
    let now_ms = sim.clock.unix_ms();
    for (t, count) in table_sizes(partitions, tables).into_iter().enumerate() {
        let spec = table_spec(&placement, &table_name(t), count);
        let via = nodes[t % nodes.len()];
        sim.propose(via, MetaCommand::CreateTable { spec, now_ms });
    }
    out.mark(created_at, &format!("{tables} tables created"));
    let mut active: BTreeMap<String, Micros> = BTreeMap::new();
    let all = sim.run_until_true(created_at + ACTIVE_DEADLINE_US, ACTIVE_POLL_US, |s| {
        for table in s.log().state().tables() {
            if table.status == TableStatus::Active && !active.contains_key(&table.table_name) {
                active.insert(table.table_name.clone(), s.now());
            }
        }
        active.len() == tables
    });
    out.figure("tables", tables);
    match all {
        Some(at) => {
            out.figure("all_active_ms", round(as_ms(at - created_at)));
            out.mark(at, "all ACTIVE");
            out.line(format!(
                "{tables} tables ({partitions} partitions) all ACTIVE {:.2} s after creation",
                as_ms(at - created_at) / 1e3
            ));
        }
        None => out.problem(format!(
            "{} of {tables} tables ACTIVE after {} s",
            active.len(),
            ACTIVE_DEADLINE_US / 1_000_000
        )),
    }
    let times: Vec<Micros> = active.values().map(|at| at - created_at).collect();
    let summary = Summary::of(&times);
    summary.put(&mut out.figures, "create_to_active");
    out.line(format!(
        "create to ACTIVE per table: {} (polled every {} ms)",
        summary.human(),
        ACTIVE_POLL_US / 1_000
    ));
    sim.run_until(sim.now() + SETTLE_US);
    sim.check_healed();
    report_spread(sim, &mut out);
    out
}

/// Name of table number `t`.
fn table_name(t: usize) -> String {
    format!("p{t:04}")
}

/// Replicas (copies, primary included) and primaries per HEALTHY node.
fn report_spread(sim: &Simulation, out: &mut Outcome) {
    let state = sim.log().state();
    let mut replicas: BTreeMap<NodeId, usize> = BTreeMap::new();
    let mut primaries: BTreeMap<NodeId, usize> = BTreeMap::new();
    for n in state.nodes().filter(|n| n.status == NodeStatus::Healthy) {
        replicas.insert(n.node_id, 0);
        primaries.insert(n.node_id, 0);
    }
    for p in state.partitions() {
        for n in p.all_nodes() {
            *replicas.entry(n).or_default() += 1;
        }
        *primaries.entry(p.primary_node_id).or_default() += 1;
    }
    let stats = |m: &BTreeMap<NodeId, usize>| {
        let max = m.values().copied().max().unwrap_or(0);
        let mean = m.values().sum::<usize>() as f64 / m.len().max(1) as f64;
        (max, mean)
    };
    let (r_max, r_mean) = stats(&replicas);
    let (p_max, p_mean) = stats(&primaries);
    out.figure("replicas_per_node_max", r_max);
    out.figure("replicas_per_node_mean", round(r_mean));
    out.figure("primaries_per_node_max", p_max);
    out.figure("primaries_per_node_mean", round(p_mean));
    out.line(format!(
        "replicas per node: max {r_max}, mean {r_mean:.1}; primaries per node: max {p_max}, \
         mean {p_mean:.1}"
    ));
}
