//! Builders shared by the property tests.

use std::collections::BTreeSet;

use ed25519_dalek::SigningKey;
use shared::auth::{Action, Effect, hash_secret};
use shared::command::{MetaCommand, MetaOutcome, PartitionChange, TableSpec};
use shared::model::{
    Attribute, AttributeType, Capacity, CapacityMode, NodeId, OperationKind, OperationProgress,
    OperationStatus, OperationStep, TableId,
};
use shared::placement::{PlacementConfig, plan_new_table};
use shared::state::MetaState;

/// A `RegisterNode` command with addresses derived from the id.
pub fn register(node_id: NodeId, zone: &str, incarnation: u64, now_ms: u64) -> MetaCommand {
    MetaCommand::RegisterNode {
        node_id,
        endpoint: format!("http://10.0.{}.{}:7070", node_id / 256, node_id % 256),
        peer_addr: format!("10.0.{}.{}:7100", node_id / 256, node_id % 256),
        zone: zone.to_string(),
        incarnation,
        now_ms,
    }
}

/// A PROVISIONED capacity.
pub fn provisioned(read_units: u64, write_units: u64) -> Capacity {
    Capacity {
        mode: CapacityMode::Provisioned,
        read_units,
        write_units,
    }
}

/// The ON_DEMAND capacity.
pub fn on_demand() -> Capacity {
    Capacity {
        mode: CapacityMode::OnDemand,
        read_units: 0,
        write_units: 0,
    }
}

/// A valid spec with a string partition key and a numeric sort key.
pub fn spec(name: &str, capacity: Capacity) -> TableSpec {
    TableSpec {
        table_name: name.to_string(),
        partition_key: "pk".into(),
        sort_key: Some("sk".into()),
        capacity,
        attributes: vec![
            Attribute {
                name: "pk".into(),
                attr_type: AttributeType::S,
            },
            Attribute {
                name: "sk".into(),
                attr_type: AttributeType::N,
            },
        ],
    }
}

/// Creates a table that must be accepted and returns its id.
pub fn create(state: &mut MetaState, spec: TableSpec) -> TableId {
    match state.apply(&MetaCommand::CreateTable { spec, now_ms: 1 }) {
        Ok(MetaOutcome::TableCreated { table_id }) => table_id,
        other => panic!("create failed: {other:?}"),
    }
}

/// Plans a table with `cfg` and applies the plan, which must be accepted.
pub fn place(state: &mut MetaState, table_id: TableId, cfg: &PlacementConfig) {
    let plan = plan_new_table(state, table_id, cfg, &BTreeSet::new()).expect("plan");
    let cmd = MetaCommand::AssignPartitions {
        table_id,
        partitions: plan.assignments,
    };
    state.apply(&cmd).expect("assign the plan");
}

/// Reports every replica of every partition of the table ready, then activates it.
pub fn ready_and_activate(state: &mut MetaState, table_id: TableId) {
    for cmd in ready_all(state, table_id) {
        state.apply(&cmd).expect("ready");
    }
    let cmd = MetaCommand::ActivateTable {
        table_id,
        now_ms: 2,
    };
    state.apply(&cmd).expect("activate");
}

/// One `PartitionsReady` per node holding partitions of the table.
pub fn ready_all(state: &MetaState, table_id: TableId) -> Vec<MetaCommand> {
    per_node(state, table_id)
        .into_iter()
        .map(|(node_id, partition_ids)| MetaCommand::PartitionsReady {
            node_id,
            partition_ids,
        })
        .collect()
}

/// One `PartitionsReleased` per node holding partitions of the table.
pub fn release_all(state: &MetaState, table_id: TableId) -> Vec<MetaCommand> {
    per_node(state, table_id)
        .into_iter()
        .map(|(node_id, partition_ids)| MetaCommand::PartitionsReleased {
            node_id,
            partition_ids,
        })
        .collect()
}

fn per_node(state: &MetaState, table_id: TableId) -> std::collections::BTreeMap<NodeId, Vec<u64>> {
    let mut by_node = std::collections::BTreeMap::<NodeId, Vec<u64>>::new();
    for p in state.partitions_of(table_id) {
        for n in p.all_nodes() {
            by_node.entry(n).or_default().push(p.partition_id);
        }
    }
    by_node
}

/// A populated state: 12 nodes in 3 zones, 5 tables in every status, access control
/// (principals, policies, an active and a retired signing key, revocations), and
/// operations (a completed split, a rolled-back one, a move running with progress).
pub fn populated() -> MetaState {
    let mut s = MetaState::new();
    s.apply(&MetaCommand::InitCluster {
        cluster_id: "snapshot-test".into(),
    })
    .unwrap();
    for n in 1..=12 {
        s.apply(&register(n, ["a", "b", "c"][n as usize % 3], 1, 100))
            .unwrap();
    }
    let cfg = PlacementConfig::default();
    let creating = create(&mut s, spec("creating", provisioned(5, 5)));
    place(&mut s, creating, &cfg);
    let active = create(&mut s, spec("active", provisioned(9000, 3000)));
    place(&mut s, active, &cfg);
    ready_and_activate(&mut s, active);
    let scaling = create(&mut s, spec("scaling", on_demand()));
    place(&mut s, scaling, &cfg);
    ready_and_activate(&mut s, scaling);
    s.apply(&MetaCommand::UpdateCapacity {
        table_name: "scaling".into(),
        capacity: provisioned(10, 10),
        now_ms: 3,
    })
    .unwrap();
    let deleting = create(&mut s, spec("deleting", provisioned(1, 1)));
    place(&mut s, deleting, &cfg);
    s.apply(&MetaCommand::DeleteTable {
        table_name: "deleting".into(),
        now_ms: 4,
    })
    .unwrap();
    for cmd in release_all(&s, deleting).into_iter().take(2) {
        s.apply(&cmd).unwrap();
    }
    let mut attrs = spec("active", on_demand()).attributes;
    attrs.push(Attribute {
        name: "extra".into(),
        attr_type: AttributeType::M,
    });
    s.apply(&MetaCommand::AddSchemaVersion {
        table_name: "active".into(),
        attributes: attrs,
        now_ms: 5,
    })
    .unwrap();
    create(&mut s, spec("unplaced", on_demand()));
    add_auth(&mut s);
    add_operations(&mut s, active);
    s
}

/// Applies a command that must be accepted.
fn must(s: &mut MetaState, cmd: MetaCommand) -> MetaOutcome {
    s.apply(&cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} was refused: {e}"))
}

/// Starts an operation that must be accepted; returns its id.
pub fn start(s: &mut MetaState, partition_id: u64, kind: OperationKind) -> u64 {
    let cmd = MetaCommand::StartOperation {
        partition_id,
        kind,
        requested_by: "scaler".into(),
        now_ms: 20,
    };
    match must(s, cmd) {
        MetaOutcome::OperationStarted { operation_id } => operation_id,
        other => panic!("start gave {other:?}"),
    }
}

/// On the table `active`: splits its first partition through an operation, starts a
/// split of the left child and rolls it back, and leaves a move of the right child
/// copying.
fn add_operations(s: &mut MetaState, active: TableId) {
    let first = s.partitions_of(active)[0].clone();
    let split_point = first.range.low + (first.range.high - first.range.low) / 2;
    let split = start(
        s,
        first.partition_id,
        OperationKind::Split { split_point: None },
    );
    let advance = |operation_id, step, progress| MetaCommand::AdvanceOperation {
        operation_id,
        step,
        progress,
        now_ms: 21,
    };
    must(s, advance(split, OperationStep::Fencing, None));
    let cmd = MetaCommand::SplitPartition {
        operation_id: Some(split),
        parent: first.partition_id,
        split_point,
        expected_epoch: first.epoch,
        now_ms: 22,
    };
    let MetaOutcome::PartitionSplit { left, right } = must(s, cmd) else {
        panic!("split gave another outcome");
    };
    let undone = start(s, left, OperationKind::Split { split_point: None });
    let cmd = MetaCommand::FinishOperation {
        operation_id: undone,
        status: OperationStatus::RolledBack,
        now_ms: 23,
        write_pause_ms: None,
    };
    must(s, cmd);
    let held: Vec<NodeId> = s.partition(right).unwrap().all_nodes().collect();
    let to = s
        .nodes()
        .map(|n| n.node_id)
        .find(|n| !held.contains(n))
        .unwrap();
    let kind = OperationKind::Move { from: held[0], to };
    let moving = start(s, right, kind);
    let progress = Some(OperationProgress {
        done_bytes: 4096,
        total_bytes: Some(65536),
    });
    must(s, advance(moving, OperationStep::Copying, progress));
}

/// Adds principals `root` (admin) and `app`, policies of both on two tables, signing
/// keys `k0` (retired) and `k1`, and two revocations.
fn add_auth(s: &mut MetaState) {
    for (name, admin) in [("root", true), ("app", false)] {
        s.apply(&MetaCommand::CreatePrincipal {
            name: name.into(),
            secret: hash_secret(name, [admin as u8; 16]),
            admin,
            now_ms: 6,
        })
        .unwrap();
    }
    for table in ["active", "scaling"] {
        for (name, actions, effect) in [
            ("root", vec![Action::Admin], Effect::Allow),
            ("app", vec![Action::Read, Action::Write], Effect::Allow),
            ("app", vec![Action::Write], Effect::Deny),
        ] {
            s.apply(&MetaCommand::PutPolicy {
                table_name: table.into(),
                principal_arn: format!("arn:snapshot-test:principal/{name}"),
                actions: actions.into_iter().collect(),
                effect,
            })
            .unwrap();
        }
    }
    for (kid, seed) in [("k0", 1u8), ("k1", 2)] {
        s.apply(&MetaCommand::PublishSigningKey {
            kid: kid.into(),
            public_key: SigningKey::from_bytes(&[seed; 32])
                .verifying_key()
                .to_bytes(),
            node_id: 1,
            now_ms: 7 + u64::from(seed),
        })
        .unwrap();
    }
    s.apply(&MetaCommand::RetireSigningKey {
        kid: "k0".into(),
        now_ms: 10,
        trusted_until_ms: 1_000,
    })
    .unwrap();
    for jti in ["j1", "j2"] {
        s.apply(&MetaCommand::RevokeCredential {
            jti: jti.into(),
            expires_at_ms: 2_000,
        })
        .unwrap();
    }
}

/// Why a replica-set change applied to `before` breaks the promotion rule, if it does:
/// a changed primary must be a ready member of the current set while any ready member
/// stays.
pub fn promotion_violation(before: &MetaState, c: &PartitionChange) -> Option<String> {
    let p = before.partition(c.partition_id)?;
    let new_primary = c.primary_node_id;
    if new_primary == p.primary_node_id || p.ready_node_ids.contains(&new_primary) {
        return None;
    }
    let ready_stays = p
        .ready_node_ids
        .iter()
        .any(|n| *n == new_primary || c.replica_node_ids.contains(n));
    ready_stays.then(|| format!("{c:?} promotes node {new_primary}, not ready in {p:?}"))
}
