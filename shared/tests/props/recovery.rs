//! Recovery converges on random clusters: after some nodes fail or drain, a few
//! `plan_repairs` passes (each command accepted) leave every partition of a live table
//! on HEALTHY nodes only, with at least `min(rf, healthy nodes)` of them, and the
//! drained nodes waiting for removal can be decommissioned.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shared::command::{MetaCommand, MetaOutcome};
use shared::model::{NodeId, NodeStatus};
use shared::placement::PlacementConfig;
use shared::recovery::{RecoveryConfig, nodes_to_decommission, plan_repairs, under_replicated};
use shared::state::MetaState;

use crate::fixtures::{create, place, provisioned, ready_and_activate, register, spec};

/// What happens to one node before recovery runs.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Stays,
    Fails,
    Drains { remove: bool },
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Stays),
        2 => Just(Fate::Fails),
        2 => any::<bool>().prop_map(|remove| Fate::Drains { remove }),
    ]
}

/// Applies one command that must be accepted and keep the invariants.
fn accept(s: &mut MetaState, cmd: &MetaCommand) -> Result<(), TestCaseError> {
    let result = s.apply(cmd);
    prop_assert!(result.is_ok(), "{:?} gave {:?}", cmd, result);
    prop_assert!(s.check_invariants().is_ok(), "{:?}", s.check_invariants());
    Ok(())
}

/// A cluster with one node per fate (zones round-robin) and `tables` ACTIVE tables.
fn populated(fates: &[Fate], zones: usize, tables: &[(u64, usize)]) -> MetaState {
    let mut s = MetaState::new();
    for i in 0..fates.len() {
        let zone = format!("z{}", i % zones);
        s.apply(&register(i as NodeId + 1, &zone, 1, 0)).unwrap();
    }
    for (i, &(write_units, replication_factor)) in tables.iter().enumerate() {
        let t = create(
            &mut s,
            spec(&format!("table{i}"), provisioned(1, write_units)),
        );
        let cfg = PlacementConfig {
            replication_factor,
            ..PlacementConfig::default()
        };
        place(&mut s, t, &cfg);
        ready_and_activate(&mut s, t);
    }
    s
}

fn strike(s: &mut MetaState, fates: &[Fate]) -> Result<(), TestCaseError> {
    for (i, fate) in fates.iter().enumerate() {
        let node_id = i as NodeId + 1;
        let cmd = match *fate {
            Fate::Stays => continue,
            Fate::Fails => MetaCommand::NodeFailed {
                node_id,
                incarnation: 1,
                now_ms: 10,
            },
            Fate::Drains { remove } => MetaCommand::DrainNode {
                node_id,
                remove,
                now_ms: 10,
            },
        };
        accept(s, &cmd)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn recovery_converges(
        fates in prop::collection::vec(fate(), 2..=10),
        zones in 1usize..=3,
        tables in prop::collection::vec((1000u64..=12_000, 1usize..=3), 1..4),
        replication_factor in 1usize..=4,
    ) {
        prop_assume!(fates.iter().any(|f| matches!(f, Fate::Stays)));
        let mut s = populated(&fates, zones, &tables);
        strike(&mut s, &fates)?;
        let cfg = RecoveryConfig { replication_factor };
        let lsn = |p: u64, n: NodeId| (p ^ n) % 3;
        let leaving = fates.iter().filter(|f| !matches!(f, Fate::Stays)).count();
        let mut passes = 0;
        loop {
            let plans = plan_repairs(&s, &cfg, &lsn, &BTreeSet::new());
            if plans.is_empty() {
                break;
            }
            passes += 1;
            // Each pass empties at least the first leaving node that still holds data.
            prop_assert!(passes <= leaving + 1, "no convergence after {} passes", passes);
            for plan in &plans {
                accept(&mut s, plan.command.as_ref().unwrap())?;
            }
        }
        let healthy = s.live_nodes().count();
        for p in s.partitions() {
            prop_assert!(p.all_nodes().all(|n| s.node(n).unwrap().status == NodeStatus::Healthy));
            prop_assert!(p.all_nodes().count() >= replication_factor.min(healthy), "{:?}", p);
            let only_unready = !p.is_ready();
            prop_assert!(!under_replicated(&s, p, replication_factor) || only_unready);
        }
        for node_id in nodes_to_decommission(&s) {
            let cmd = MetaCommand::DecommissionNode { node_id, now_ms: 20 };
            prop_assert_eq!(s.apply(&cmd), Ok(MetaOutcome::Done));
        }
        for (i, fate) in fates.iter().enumerate() {
            let status = s.node(i as NodeId + 1).unwrap().status;
            if matches!(fate, Fate::Drains { remove: true }) {
                prop_assert_eq!(status, NodeStatus::Decommissioned);
            }
        }
    }
}
