//! Random command sequences: apply never panics, invariants always hold, rejected
//! commands change nothing, epochs never decrease (per partition, and per key across
//! splits), no two running operations share a partition, and the recovery planner's
//! commands are always accepted by the state they were planned from.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use shared::command::{MetaCommand, MetaOutcome, PartitionAssignment, PartitionChange, TableSpec};
use shared::model::{
    Attribute, AttributeType, Capacity, CapacityMode, KeyRange, NodeId, NodeStatus, TableId,
};
use shared::placement::{PlacementConfig, plan_new_table};
use shared::recovery::{RecoveryConfig, plan_repairs};
use shared::state::MetaState;

use crate::fixtures::{promotion_violation, ready_all, register, release_all};

mod auth_ops;
mod operations;

use auth_ops::{AuthOp, auth_commands, auth_op, check_auth_outcome};
use operations::{
    OperationOp, check_operation_outcome, expand_operation, operation_commands, operation_op,
};

/// Table names: a few valid ones that collide, and one invalid.
const NAMES: [&str; 5] = ["orders", "users", "events", "logs", "x"];

/// One step of a scenario; resolved against the current state into commands.
#[derive(Debug, Clone)]
enum Op {
    Init(u8),
    Register {
        node: NodeId,
        zone: u8,
        incarnation: u64,
        now: u64,
    },
    Create {
        name: usize,
        flaw: u8,
        capacity: Capacity,
    },
    Plan {
        table: TableId,
        rf: usize,
    },
    Bogus {
        table: TableId,
        cuts: Vec<u64>,
        flaw: u8,
        nodes: Vec<NodeId>,
    },
    ReadyAll {
        table: TableId,
        activate: bool,
    },
    Ready {
        node: NodeId,
        partitions: Vec<u64>,
    },
    Activate {
        table: TableId,
    },
    Capacity {
        name: usize,
        capacity: Capacity,
    },
    Schema {
        name: usize,
        flaw: u8,
    },
    Delete {
        name: usize,
    },
    ReleaseAll {
        table: TableId,
        purge: bool,
    },
    Release {
        node: NodeId,
        partitions: Vec<u64>,
    },
    Purge {
        table: TableId,
    },
    /// Plan, ready everywhere, activate: reaches ACTIVE tables often.
    Drive {
        table: TableId,
        rf: usize,
    },
    /// `NodeFailed` at the recorded incarnation, or one above (0) or below (1) it.
    Fail {
        node: NodeId,
        skew: u8,
    },
    Drain {
        node: NodeId,
        remove: bool,
    },
    Decommission {
        node: NodeId,
    },
    CancelDrain {
        node: NodeId,
    },
    /// Every plan of one `plan_repairs` pass; each must be accepted.
    Recover {
        rf: usize,
        excluded: Vec<NodeId>,
    },
    /// A hand-made repair, at a stale epoch when `skew` is 0; when `skew` is 3, the
    /// current set with its first replica promoted (and `nodes[0]` added).
    BogusRepair {
        partition: u64,
        nodes: Vec<NodeId>,
        skew: u8,
    },
    /// Principals, access policies, signing keys, revocations.
    Auth(AuthOp),
    /// Splits and moves: their records, steps and commits.
    Operation(OperationOp),
}

fn capacity() -> impl Strategy<Value = Capacity> {
    let mode = prop_oneof![
        Just(CapacityMode::Provisioned),
        Just(CapacityMode::OnDemand)
    ];
    // Mostly valid values, sometimes zero or too many units.
    let units = prop_oneof![8 => 1u64..20_000, 1 => Just(0u64), 1 => Just(2_000_000u64)];
    (mode, units.clone(), units).prop_map(|(mode, r, w)| match mode {
        CapacityMode::OnDemand if !r.is_multiple_of(4) => Capacity {
            mode,
            read_units: 0,
            write_units: 0,
        },
        _ => Capacity {
            mode,
            read_units: r,
            write_units: w,
        },
    })
}

fn op() -> impl Strategy<Value = Op> {
    let node = 1u64..=7;
    let table = 1u64..=40;
    let pids = prop::collection::vec(1u64..=60, 0..4);
    prop_oneof![
        1 => (0u8..3).prop_map(Op::Init),
        6 => (node.clone(), 0u8..4, 0u64..4, 0u64..1000)
            .prop_map(|(node, zone, incarnation, now)| Op::Register { node, zone, incarnation, now }),
        5 => (0..NAMES.len(), 0u8..12, capacity())
            .prop_map(|(name, flaw, capacity)| Op::Create { name, flaw, capacity }),
        5 => (table.clone(), 1usize..=4).prop_map(|(table, rf)| Op::Plan { table, rf }),
        2 => (table.clone(), prop::collection::vec(any::<u64>(), 0..5), 0u8..6,
              prop::collection::vec(1u64..=8, 1..4))
            .prop_map(|(table, cuts, flaw, nodes)| Op::Bogus { table, cuts, flaw, nodes }),
        5 => (table.clone(), any::<bool>()).prop_map(|(table, activate)| Op::ReadyAll { table, activate }),
        2 => (node.clone(), pids.clone()).prop_map(|(node, partitions)| Op::Ready { node, partitions }),
        2 => table.clone().prop_map(|table| Op::Activate { table }),
        3 => (0..NAMES.len(), capacity()).prop_map(|(name, capacity)| Op::Capacity { name, capacity }),
        3 => (0..NAMES.len(), 0u8..6).prop_map(|(name, flaw)| Op::Schema { name, flaw }),
        3 => (0..NAMES.len()).prop_map(|name| Op::Delete { name }),
        3 => (table.clone(), any::<bool>()).prop_map(|(table, purge)| Op::ReleaseAll { table, purge }),
        1 => (node.clone(), pids)
            .prop_map(|(node, partitions)| Op::Release { node, partitions }),
        2 => table.clone().prop_map(|table| Op::Purge { table }),
        4 => (table, 1usize..=4).prop_map(|(table, rf)| Op::Drive { table, rf }),
        3 => (node.clone(), 0u8..6).prop_map(|(node, skew)| Op::Fail { node, skew }),
        2 => (node.clone(), any::<bool>()).prop_map(|(node, remove)| Op::Drain { node, remove }),
        2 => node.clone().prop_map(|node| Op::Decommission { node }),
        1 => node.clone().prop_map(|node| Op::CancelDrain { node }),
        4 => (1usize..=4, prop::collection::vec(node, 0..2))
            .prop_map(|(rf, excluded)| Op::Recover { rf, excluded }),
        1 => (1u64..=60, prop::collection::vec(1u64..=8, 1..4), 0u8..4)
            .prop_map(|(partition, nodes, skew)| Op::BogusRepair { partition, nodes, skew }),
        16 => auth_op().prop_map(Op::Auth),
        14 => operation_op().prop_map(Op::Operation),
    ]
}

fn attr(name: &str, attr_type: AttributeType) -> Attribute {
    Attribute {
        name: name.into(),
        attr_type,
    }
}

/// A spec, valid when `flaw` >= 6, otherwise broken in one of six ways.
fn spec(name: usize, flaw: u8, capacity: Capacity) -> TableSpec {
    let mut spec = TableSpec {
        table_name: NAMES[name].to_string(),
        partition_key: "pk".into(),
        sort_key: Some("sk".into()),
        capacity,
        attributes: vec![
            attr("pk", AttributeType::S),
            attr("sk", AttributeType::B),
            attr("v", AttributeType::M),
        ],
    };
    match flaw {
        0 => spec.partition_key = "nope".into(),
        1 => spec.sort_key = Some("pk".into()),
        2 => spec.attributes[0].attr_type = AttributeType::Bool,
        3 => spec.attributes.push(attr("v", AttributeType::S)),
        4 => spec.attributes.push(attr("", AttributeType::S)),
        5 => spec.sort_key = Some("v".into()),
        6..=8 => spec.sort_key = None,
        _ => {}
    }
    spec
}

/// New attributes: compatible when `flaw` >= 3.
fn schema(flaw: u8) -> Vec<Attribute> {
    match flaw {
        0 => vec![attr("sk", AttributeType::B)],
        1 => vec![attr("pk", AttributeType::N), attr("sk", AttributeType::B)],
        2 => vec![attr("pk", AttributeType::S), attr("pk", AttributeType::S)],
        3 => vec![attr("pk", AttributeType::S), attr("sk", AttributeType::B)],
        _ => vec![
            attr("pk", AttributeType::S),
            attr("sk", AttributeType::B),
            attr(&format!("f{flaw}"), AttributeType::L),
        ],
    }
}

/// Assignments over cut points, broken by `flaw` < 3 (gap, overlap, short).
fn bogus(cuts: &[u64], flaw: u8, nodes: &[NodeId]) -> Vec<PartitionAssignment> {
    let mut starts: Vec<u64> = cuts.iter().copied().filter(|c| *c != 0).collect();
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    let mut out: Vec<PartitionAssignment> = starts
        .iter()
        .enumerate()
        .map(|(i, &low)| PartitionAssignment {
            range: KeyRange {
                low,
                high: starts.get(i + 1).map_or(u64::MAX, |n| n - 1),
            },
            primary_node_id: nodes[i % nodes.len()],
            replica_node_ids: nodes.iter().skip(1 + i % nodes.len()).copied().collect(),
        })
        .collect();
    let last = out.len() - 1;
    match flaw {
        0 => out[last].range.high = out[last].range.high.saturating_sub(1),
        1 if last > 0 => out[last].range.low -= 1,
        2 if last > 0 => out[last].range.low = out[last].range.low.saturating_add(1),
        _ => {}
    }
    out
}

/// Mostly an existing table (so deep states are reached), sometimes a raw id.
fn resolve(s: &MetaState, raw: TableId) -> TableId {
    let ids: Vec<TableId> = s.tables().map(|t| t.table_id).collect();
    if raw.is_multiple_of(4) || ids.is_empty() {
        raw
    } else {
        ids[raw as usize % ids.len()]
    }
}

/// Mostly the name of an existing table; the invalid name (never created) stays itself.
fn resolve_name(s: &MetaState, name: usize) -> String {
    let names: Vec<&str> = s.tables().map(|t| t.table_name.as_str()).collect();
    if name + 1 == NAMES.len() || names.is_empty() {
        NAMES[name].to_string()
    } else {
        names[name % names.len()].to_string()
    }
}

/// Splits compound ops into steps, each resolved against the state its turn sees.
fn expand(op: &Op) -> Vec<Op> {
    match op {
        Op::Drive { table, rf } => vec![
            Op::Plan {
                table: *table,
                rf: *rf,
            },
            Op::ReadyAll {
                table: *table,
                activate: true,
            },
        ],
        Op::Operation(op) => expand_operation(op)
            .into_iter()
            .map(Op::Operation)
            .collect(),
        other => vec![other.clone()],
    }
}

/// Turns an op into the commands it stands for in the current state.
fn commands(s: &MetaState, op: &Op) -> Vec<MetaCommand> {
    match op.clone() {
        Op::Init(n) => {
            let cluster_id = if n == 0 {
                String::new()
            } else {
                format!("c{n}")
            };
            vec![MetaCommand::InitCluster { cluster_id }]
        }
        Op::Register {
            node,
            zone,
            incarnation,
            now,
        } => {
            let zone = if zone == 0 {
                String::new()
            } else {
                format!("z{zone}")
            };
            vec![register(node, &zone, incarnation, now)]
        }
        Op::Create {
            name,
            flaw,
            capacity,
        } => {
            vec![MetaCommand::CreateTable {
                spec: spec(name, flaw, capacity),
                now_ms: 10,
            }]
        }
        // Odd nodes report plainly; even ones with epochs: the current one, or (for odd
        // partition ids) the one before, which must be refused.
        Op::Ready { node, partitions } if node % 2 == 0 => {
            let partitions = partitions
                .into_iter()
                .map(|pid| {
                    let epoch = s.partition(pid).map_or(1, |p| p.epoch);
                    (
                        pid,
                        if pid % 2 == 1 {
                            epoch.saturating_sub(1)
                        } else {
                            epoch
                        },
                    )
                })
                .collect();
            vec![MetaCommand::PartitionsReadyAt {
                node_id: node,
                partitions,
            }]
        }
        Op::Ready { node, partitions } => {
            vec![MetaCommand::PartitionsReady {
                node_id: node,
                partition_ids: partitions,
            }]
        }
        Op::Capacity { name, capacity } => {
            let table_name = resolve_name(s, name);
            vec![MetaCommand::UpdateCapacity {
                table_name,
                capacity,
                now_ms: 30,
            }]
        }
        Op::Schema { name, flaw } => {
            let table_name = NAMES[name].into();
            vec![MetaCommand::AddSchemaVersion {
                table_name,
                attributes: schema(flaw),
                now_ms: 40,
            }]
        }
        Op::Delete { name } => {
            vec![MetaCommand::DeleteTable {
                table_name: NAMES[name].into(),
                now_ms: 50,
            }]
        }
        Op::Release { node, partitions } => {
            vec![MetaCommand::PartitionsReleased {
                node_id: node,
                partition_ids: partitions,
            }]
        }
        Op::Drain { node, remove } => vec![MetaCommand::DrainNode {
            node_id: node,
            remove,
            now_ms: 60,
        }],
        Op::Decommission { node } => vec![MetaCommand::DecommissionNode {
            node_id: node,
            now_ms: 70,
        }],
        Op::CancelDrain { node } => vec![MetaCommand::CancelDrain {
            node_id: node,
            now_ms: 75,
        }],
        Op::Fail { .. } | Op::Recover { .. } | Op::BogusRepair { .. } => recovery_commands(s, op),
        Op::Auth(auth) => auth_commands(s, &auth),
        Op::Operation(op) => operation_commands(s, &op),
        table_op => table_commands(s, table_op),
    }
}

/// The commands of the failure and recovery ops, resolved against the state.
fn recovery_commands(s: &MetaState, op: &Op) -> Vec<MetaCommand> {
    match op.clone() {
        Op::Fail { node, skew } => {
            let recorded = s.node(node).map_or(1, |n| n.incarnation);
            let incarnation = match skew {
                0 => recorded + 1,
                1 => recorded.saturating_sub(1),
                _ => recorded,
            };
            vec![MetaCommand::NodeFailed {
                node_id: node,
                incarnation,
                now_ms: 80,
            }]
        }
        Op::Recover { rf, excluded } => {
            let cfg = RecoveryConfig {
                replication_factor: rf,
            };
            let lsn = |p: u64, n: NodeId| (p * 31 + n) % 5;
            let excluded: BTreeSet<NodeId> = excluded.into_iter().collect();
            plan_repairs(s, &cfg, &lsn, &excluded)
                .into_iter()
                .filter_map(|plan| plan.command)
                .collect()
        }
        Op::BogusRepair {
            partition,
            nodes,
            skew,
        } => {
            let ids: Vec<u64> = s.partitions().map(|p| p.partition_id).collect();
            let partition_id = match ids.len() {
                0 => partition,
                n => ids[partition as usize % n],
            };
            let epoch = s.partition(partition_id).map_or(1, |p| p.epoch);
            let nodes = match s.partition(partition_id) {
                Some(p) if skew == 3 => {
                    let mut rotated: Vec<NodeId> = p.all_nodes().skip(1).collect();
                    rotated.push(p.primary_node_id);
                    if !rotated.contains(&nodes[0]) {
                        rotated.push(nodes[0]);
                    }
                    rotated
                }
                _ => nodes,
            };
            vec![MetaCommand::RepairPartitions {
                changes: vec![PartitionChange {
                    partition_id,
                    expected_epoch: if skew == 0 { epoch - 1 } else { epoch },
                    primary_node_id: nodes[0],
                    replica_node_ids: nodes[1..].to_vec(),
                }],
            }]
        }
        other => unreachable!("{other:?} is not a recovery op"),
    }
}

/// The commands of ops that name a table by id (resolved to a mostly existing one).
fn table_commands(s: &MetaState, op: Op) -> Vec<MetaCommand> {
    match op {
        Op::Plan { table, rf } => {
            let table = resolve(s, table);
            let cfg = PlacementConfig {
                replication_factor: rf,
                ..PlacementConfig::default()
            };
            let Ok(plan) = plan_new_table(s, table, &cfg, &BTreeSet::new()) else {
                return vec![];
            };
            vec![MetaCommand::AssignPartitions {
                table_id: table,
                partitions: plan.assignments,
            }]
        }
        Op::Bogus {
            table,
            cuts,
            flaw,
            nodes,
        } => {
            let partitions = bogus(&cuts, flaw, &nodes);
            vec![MetaCommand::AssignPartitions {
                table_id: resolve(s, table),
                partitions,
            }]
        }
        Op::ReadyAll { table, activate } => {
            let table = resolve(s, table);
            let mut cmds = ready_all(s, table);
            if activate {
                cmds.push(MetaCommand::ActivateTable {
                    table_id: table,
                    now_ms: 20,
                });
            }
            cmds
        }
        Op::Activate { table } => {
            vec![MetaCommand::ActivateTable {
                table_id: resolve(s, table),
                now_ms: 20,
            }]
        }
        Op::ReleaseAll { table, purge } => {
            let table = resolve(s, table);
            let mut cmds = release_all(s, table);
            if purge {
                cmds.push(MetaCommand::PurgeTable { table_id: table });
            }
            cmds
        }
        Op::Purge { table } => vec![MetaCommand::PurgeTable {
            table_id: resolve(s, table),
        }],
        other => unreachable!("{other:?} is expanded or handled by `commands`"),
    }
}

/// Applies one command and checks every property; returns whether it was accepted.
fn step(s: &mut MetaState, cmd: &MetaCommand) -> Result<bool, TestCaseError> {
    let before = s.clone();
    let result = s.apply(cmd);
    prop_assert!(
        s.check_invariants().is_ok(),
        "{:?} broke {:?}",
        cmd,
        s.check_invariants()
    );
    check_epochs(&before, s)?;
    let mut running = BTreeSet::new();
    for op in s.running_operations() {
        prop_assert!(
            running.insert(op.partition_id),
            "two operations run on {:?}",
            op
        );
    }
    match &result {
        Err(_) => prop_assert_eq!(&*s, &before, "rejected {:?} changed the state", cmd),
        Ok(outcome) => check_outcome(&before, s, cmd, outcome)?,
    }
    if let (Ok(_), MetaCommand::RepairPartitions { changes }) = (&result, cmd) {
        for c in changes {
            let violation = promotion_violation(&before, c);
            prop_assert!(violation.is_none(), "accepted: {:?}", violation);
        }
    }
    Ok(result.is_ok())
}

/// Epochs only grow: per partition, and per key (a partition new since `before`
/// starts above every removed one of its table it overlaps, like split children).
fn check_epochs(before: &MetaState, s: &MetaState) -> Result<(), TestCaseError> {
    let epochs: BTreeMap<u64, u64> = before
        .partitions()
        .map(|p| (p.partition_id, p.epoch))
        .collect();
    for p in s.partitions() {
        prop_assert!(epochs.get(&p.partition_id).is_none_or(|e| p.epoch >= *e));
        if before.partition(p.partition_id).is_some() {
            continue;
        }
        for gone in before
            .partitions_of(p.table_id)
            .into_iter()
            .filter(|g| s.partition(g.partition_id).is_none())
        {
            let overlaps = gone.range.low <= p.range.high && p.range.low <= gone.range.high;
            prop_assert!(
                !overlaps || p.epoch > gone.epoch,
                "{:?} after {:?}",
                p,
                gone
            );
        }
    }
    Ok(())
}

/// Checks that an accepted command's outcome matches the command.
fn check_outcome(
    before: &MetaState,
    s: &MetaState,
    cmd: &MetaCommand,
    outcome: &MetaOutcome,
) -> Result<(), TestCaseError> {
    if let Some(checked) = check_auth_outcome(s, cmd, outcome) {
        return checked;
    }
    if let Some(checked) = check_operation_outcome(before, s, cmd, outcome) {
        return checked;
    }
    match (cmd, outcome) {
        (MetaCommand::CreateTable { spec, .. }, MetaOutcome::TableCreated { table_id }) => {
            prop_assert_eq!(&s.table(*table_id).unwrap().table_name, &spec.table_name);
        }
        (
            MetaCommand::AssignPartitions { partitions, .. },
            MetaOutcome::PartitionsAssigned { partition_ids },
        ) => {
            prop_assert_eq!(partitions.len(), partition_ids.len());
        }
        (
            MetaCommand::AddSchemaVersion { table_name, .. },
            MetaOutcome::SchemaVersionAdded { version },
        ) => {
            prop_assert_eq!(
                s.table_by_name(table_name).unwrap().schema_version_id,
                *version
            );
        }
        (
            MetaCommand::CreateTable { .. }
            | MetaCommand::AssignPartitions { .. }
            | MetaCommand::AddSchemaVersion { .. },
            _,
        ) => {
            prop_assert!(false, "{:?} gave {:?}", cmd, outcome);
        }
        (MetaCommand::RepairPartitions { changes }, MetaOutcome::Done) => {
            for c in changes {
                let p = s.partition(c.partition_id).unwrap();
                prop_assert_eq!(p.epoch, c.expected_epoch + 1);
                prop_assert_eq!(p.primary_node_id, c.primary_node_id);
                prop_assert_eq!(&p.replica_node_ids, &c.replica_node_ids);
            }
        }
        (MetaCommand::DeleteTable { table_name, .. }, MetaOutcome::Done) => {
            let table_id = s.table_by_name(table_name).unwrap().table_id;
            prop_assert_eq!(s.policies_of_table(table_id).count(), 0);
        }
        (MetaCommand::NodeFailed { node_id, .. }, MetaOutcome::Done) => {
            prop_assert_eq!(s.node(*node_id).unwrap().status, NodeStatus::Failed);
        }
        (
            MetaCommand::NodeFailed { .. }
            | MetaCommand::DrainNode { .. }
            | MetaCommand::DecommissionNode { .. }
            | MetaCommand::CancelDrain { .. },
            MetaOutcome::Done | MetaOutcome::Unchanged,
        ) => {}
        (_, other) => prop_assert_eq!(other, &MetaOutcome::Done),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn random_command_sequences(ops in prop::collection::vec(op(), 1..80)) {
        let mut s = MetaState::new();
        for op in ops.iter().flat_map(expand) {
            for cmd in commands(&s, &op) {
                let accepted = step(&mut s, &cmd)?;
                let planned = matches!(op, Op::Recover { .. });
                prop_assert!(accepted || !planned, "planned {:?} was rejected", cmd);
            }
        }
        // The state is the snapshot, auth state included.
        let bytes = postcard::to_stdvec(&s).unwrap();
        prop_assert_eq!(&postcard::from_bytes::<MetaState>(&bytes).unwrap(), &s);
        let text = serde_json::to_string(&s).unwrap();
        prop_assert_eq!(&serde_json::from_str::<MetaState>(&text).unwrap(), &s);
    }
}

/// Name of a command's variant, for coverage counts.
fn kind(cmd: &MetaCommand) -> &'static str {
    match cmd {
        MetaCommand::InitCluster { .. } => "InitCluster",
        MetaCommand::RegisterNode { .. } => "RegisterNode",
        MetaCommand::CreateTable { .. } => "CreateTable",
        MetaCommand::AssignPartitions { .. } => "AssignPartitions",
        MetaCommand::PartitionsReady { .. } => "PartitionsReady",
        MetaCommand::PartitionsReadyAt { .. } => "PartitionsReadyAt",
        MetaCommand::ActivateTable { .. } => "ActivateTable",
        MetaCommand::UpdateCapacity { .. } => "UpdateCapacity",
        MetaCommand::AddSchemaVersion { .. } => "AddSchemaVersion",
        MetaCommand::DeleteTable { .. } => "DeleteTable",
        MetaCommand::PartitionsReleased { .. } => "PartitionsReleased",
        MetaCommand::PurgeTable { .. } => "PurgeTable",
        MetaCommand::NodeFailed { .. } => "NodeFailed",
        MetaCommand::RepairPartitions { .. } => "RepairPartitions",
        MetaCommand::DrainNode { .. } => "DrainNode",
        MetaCommand::DecommissionNode { .. } => "DecommissionNode",
        MetaCommand::CreatePrincipal { .. } => "CreatePrincipal",
        MetaCommand::DeletePrincipal { .. } => "DeletePrincipal",
        MetaCommand::PutPolicy { .. } => "PutPolicy",
        MetaCommand::DeletePolicy { .. } => "DeletePolicy",
        MetaCommand::PublishSigningKey { .. } => "PublishSigningKey",
        MetaCommand::RetireSigningKey { .. } => "RetireSigningKey",
        MetaCommand::DropExpiredKeys { .. } => "DropExpiredKeys",
        MetaCommand::RevokeCredential { .. } => "RevokeCredential",
        MetaCommand::GcRevocations { .. } => "GcRevocations",
        MetaCommand::StartOperation { .. } => "StartOperation",
        MetaCommand::AdvanceOperation { .. } => "AdvanceOperation",
        MetaCommand::RetryOperationStep { .. } => "RetryOperationStep",
        MetaCommand::FinishOperation { .. } => "FinishOperation",
        MetaCommand::SplitPartition { .. } => "SplitPartition",
        MetaCommand::CommitMove { .. } => "CommitMove",
        MetaCommand::MergePartitions { .. } => "MergePartitions",
        MetaCommand::CancelDrain { .. } => "CancelDrain",
    }
}

/// Replaying a log on a fresh state gives the same results and state (what lets every
/// replica apply the same log), and the generator reaches every command, both
/// accepted and rejected.
#[test]
fn replay_is_deterministic_and_generator_covers_every_command() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<(&str, bool), usize> = BTreeMap::new();
    let mut changed: BTreeSet<(&str, bool)> = BTreeSet::new();
    let mut planned_repairs = 0;
    for _ in 0..640 {
        let ops = prop::collection::vec(op(), 1..80)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut a = MetaState::new();
        let mut log = Vec::new();
        for op in ops.iter().flat_map(expand) {
            for cmd in commands(&a, &op) {
                let result = a.apply(&cmd);
                planned_repairs += usize::from(matches!(op, Op::Recover { .. }));
                log.push((cmd, result));
            }
        }
        let mut b = MetaState::new();
        for (cmd, result) in &log {
            assert_eq!(&b.apply(cmd), result);
            *seen.entry((kind(cmd), result.is_ok())).or_default() += 1;
            if let Ok(outcome) = result {
                changed.insert((kind(cmd), *outcome != MetaOutcome::Unchanged));
            }
        }
        assert_eq!(a, b);
    }
    assert!(planned_repairs > 0, "the recovery planner never had work");
    for cmd in [
        "RegisterNode",
        "CreateTable",
        "AssignPartitions",
        "PartitionsReady",
        "PartitionsReadyAt",
        "ActivateTable",
        "UpdateCapacity",
        "AddSchemaVersion",
        "DeleteTable",
        "PartitionsReleased",
        "PurgeTable",
        "NodeFailed",
        "RepairPartitions",
        "DrainNode",
        "DecommissionNode",
        "CancelDrain",
        "CreatePrincipal",
        "DeletePrincipal",
        "PutPolicy",
        "DeletePolicy",
        "PublishSigningKey",
        "RetireSigningKey",
        "RevokeCredential",
        "StartOperation",
        "AdvanceOperation",
        "RetryOperationStep",
        "FinishOperation",
        "SplitPartition",
        "CommitMove",
        "MergePartitions",
    ] {
        for accepted in [true, false] {
            assert!(
                seen.contains_key(&(cmd, accepted)),
                "{cmd} accepted={accepted} never happened: {seen:?}"
            );
        }
    }
    // Commands that nothing can refuse, and the idempotent ones: both a change and a
    // no-op repeat happen.
    for cmd in [
        "DropExpiredKeys",
        "GcRevocations",
        "DeletePolicy",
        "PublishSigningKey",
        "RetireSigningKey",
        "RevokeCredential",
        "AdvanceOperation",
        "RetryOperationStep",
        "FinishOperation",
        "SplitPartition",
        "CommitMove",
        "MergePartitions",
    ] {
        for change in [true, false] {
            assert!(
                changed.contains(&(cmd, change)),
                "{cmd} changed={change} never happened: {changed:?}"
            );
        }
    }
}
