//! A graceful departure (an agent stopping on SIGTERM, to be restarted or not): who takes
//! over each partition it leads, and the replica sets it then leaves, so that writes go
//! on while it is away instead of waiting for it to be declared failed.
//!
//! First every partition it leads is handed to a ready replica (epoch + 1, the switch a
//! move ends with; it stays a replica, so no partition is short of copies meanwhile and
//! nothing re-replicates yet). Then it leaves every replica set it is still in (each
//! primary drops it between two writes): from then on writes are acknowledged by the
//! copies that stay. A restarted agent gets copies again from the recovery coordinator,
//! as any under-replicated partition does.

use std::collections::BTreeMap;

use crate::command::PartitionChange;
use crate::model::{NodeId, NodeStatus, PartitionId, TableStatus};
use crate::state::MetaState;

/// One partition's primary role handed from the departing agent to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandOverStep {
    /// Partition.
    pub partition_id: PartitionId,
    /// Its epoch now (the hand-over applies only at it).
    pub epoch: u64,
    /// The ready replica taking over.
    pub to: NodeId,
}

/// The hand-overs of a departure, and the partitions no replica can take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandOverPlan {
    /// One step per partition `me` leads that a replica can take.
    pub steps: Vec<HandOverStep>,
    /// Partitions `me` leads with no ready, HEALTHY and `usable` replica: they stop
    /// taking writes while it is away (until it is back, or failed and recovered).
    pub stranded: Vec<PartitionId>,
}

/// Plans handing over every partition `me` leads (tables not DELETING). The successor
/// is a ready replica on a HEALTHY node that `usable` accepts (gossip sees it alive),
/// the one leading fewest partitions (counting this plan's steps), then the lowest id.
pub fn plan_hand_overs(
    state: &MetaState,
    me: NodeId,
    usable: &dyn Fn(NodeId) -> bool,
) -> HandOverPlan {
    let mut led: BTreeMap<NodeId, usize> = BTreeMap::new();
    for p in state.partitions() {
        *led.entry(p.primary_node_id).or_default() += 1;
    }
    let mut plan = HandOverPlan::default();
    for p in state.partitions().filter(|p| p.primary_node_id == me) {
        if !table_live(state, p.table_id) {
            continue;
        }
        let successor = p
            .replica_node_ids
            .iter()
            .copied()
            .filter(|&n| p.ready_node_ids.contains(&n) && healthy(state, n) && usable(n))
            .min_by_key(|&n| (led.get(&n).copied().unwrap_or(0), n));
        match successor {
            Some(to) => {
                *led.entry(to).or_default() += 1;
                plan.steps.push(HandOverStep {
                    partition_id: p.partition_id,
                    epoch: p.epoch,
                    to,
                });
            }
            None => plan.stranded.push(p.partition_id),
        }
    }
    plan
}

/// The replica sets without `me`, for every partition (tables not DELETING) where it is a
/// replica and not the primary, at their current epochs (valid together as one
/// `RepairPartitions`; each is asked of its primary).
/// A partition it still leads keeps it (it is stranded, see [`HandOverPlan`]), and so
/// does one with another member that `usable` does not accept (gone, or stopping too):
/// when many agents stop at once (a whole cluster), the last ones keep their copies
/// rather than leave partitions with fewer copies than they need to restart from.
pub fn plan_departure(
    state: &MetaState,
    me: NodeId,
    usable: &dyn Fn(NodeId) -> bool,
) -> Vec<PartitionChange> {
    state
        .partitions()
        .filter(|p| p.primary_node_id != me && p.replica_node_ids.contains(&me))
        .filter(|p| table_live(state, p.table_id))
        .filter(|p| p.all_nodes().all(|n| n == me || usable(n)))
        .map(|p| PartitionChange {
            partition_id: p.partition_id,
            expected_epoch: p.epoch,
            primary_node_id: p.primary_node_id,
            replica_node_ids: p
                .replica_node_ids
                .iter()
                .copied()
                .filter(|&n| n != me)
                .collect(),
        })
        .collect()
}

fn table_live(state: &MetaState, table_id: crate::model::TableId) -> bool {
    state
        .table(table_id)
        .is_some_and(|t| t.status != TableStatus::Deleting)
}

fn healthy(state: &MetaState, node: NodeId) -> bool {
    state
        .node(node)
        .is_some_and(|n| n.status == NodeStatus::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::MetaCommand;
    use crate::testkit::{cluster, table_on};

    fn everyone(_: NodeId) -> bool {
        true
    }

    #[test]
    fn each_led_partition_goes_to_the_ready_replica_leading_fewest() {
        let mut s = cluster(&["a", "b", "c", "d"]);
        // Node 1 leads three partitions; node 2 already leads one.
        let ids = table_on(
            &mut s,
            "orders",
            &[&[1, 2, 3], &[1, 2, 3], &[1, 3, 4], &[2, 1, 3]],
        );
        let plan = plan_hand_overs(&s, 1, &everyone);
        let to: Vec<(PartitionId, NodeId)> = plan
            .steps
            .iter()
            .map(|st| (st.partition_id, st.to))
            .collect();
        // 3 leads none (over 2's one); then 2 and 3 lead one each: the lower id; then 4,
        // which leads none, over 3.
        assert_eq!(to, vec![(ids[0], 3), (ids[1], 2), (ids[2], 4)]);
        assert!(plan.stranded.is_empty());
        assert!(
            plan.steps
                .iter()
                .all(|st| st.epoch == s.partition(st.partition_id).unwrap().epoch)
        );
    }

    #[test]
    fn a_partition_without_a_usable_ready_replica_is_stranded() {
        let mut s = cluster(&["a", "b", "c"]);
        let ids = table_on(&mut s, "orders", &[&[1, 2, 3], &[1, 2]]);
        // Node 3 is not alive to gossip; node 2 is draining.
        s.apply(&MetaCommand::DrainNode {
            node_id: 2,
            remove: false,
            now_ms: 0,
        })
        .unwrap();
        let plan = plan_hand_overs(&s, 1, &|n| n != 3);
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert_eq!(plan.stranded, ids);
        let plan = plan_hand_overs(&s, 1, &everyone);
        assert_eq!(plan.steps.len(), 1);
        assert_eq!(plan.steps[0].to, 3);
        assert_eq!(plan.stranded, vec![ids[1]]);
    }

    #[test]
    fn the_departure_leaves_every_replica_set_but_those_it_leads_in_one_valid_command() {
        let mut s = cluster(&["a", "b", "c"]);
        let ids = table_on(
            &mut s,
            "orders",
            &[&[1, 2, 3], &[2, 1, 3], &[3, 2, 1], &[2, 3]],
        );
        let changes = plan_departure(&s, 1, &everyone);
        let changed: Vec<PartitionId> = changes.iter().map(|c| c.partition_id).collect();
        assert_eq!(changed, vec![ids[1], ids[2]]);
        s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
        assert_eq!(s.partition(ids[1]).unwrap().replica_node_ids, vec![3]);
        assert_eq!(s.partition(ids[2]).unwrap().replica_node_ids, vec![2]);
        assert_eq!(
            s.node(1)
                .unwrap()
                .partition_ids
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![ids[0]],
            "only the partition it still leads"
        );
        assert!(plan_departure(&s, 1, &everyone).is_empty());
        // With another member gone, it keeps its copy.
        let mut s = cluster(&["a", "b", "c"]);
        table_on(&mut s, "orders", &[&[2, 1, 3]]);
        assert!(plan_departure(&s, 1, &|n| n != 3).is_empty());
    }

    #[test]
    fn after_the_hand_overs_the_departure_takes_it_out_of_everything() {
        let mut s = cluster(&["a", "b", "c"]);
        table_on(&mut s, "orders", &[&[1, 2, 3], &[1, 3, 2], &[2, 1, 3]]);
        let plan = plan_hand_overs(&s, 1, &everyone);
        let changes = plan
            .steps
            .iter()
            .map(|st| {
                let p = s.partition(st.partition_id).unwrap();
                PartitionChange {
                    partition_id: st.partition_id,
                    expected_epoch: st.epoch,
                    primary_node_id: st.to,
                    replica_node_ids: p
                        .replica_node_ids
                        .iter()
                        .map(|&r| if r == st.to { 1 } else { r })
                        .collect(),
                }
            })
            .collect();
        s.apply(&MetaCommand::RepairPartitions { changes }).unwrap();
        let departure = plan_departure(&s, 1, &everyone);
        assert_eq!(departure.len(), 3);
        s.apply(&MetaCommand::RepairPartitions { changes: departure })
            .unwrap();
        assert!(s.node(1).unwrap().partition_ids.is_empty());
        assert!(s.check_invariants().is_ok());
    }
}
