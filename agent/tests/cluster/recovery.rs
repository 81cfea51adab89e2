//! Failure detection and recovery with real agents: 5 agents, one table of 12 partitions.
//! A paused agent is suspected and comes back with nothing moved; a killed learner is
//! failed exactly once and its partitions get new primaries and replicas; a killed voter
//! (the leader) is replaced by a learner; a restarted failed agent rejoins as a new
//! incarnation that owns nothing.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agent::api_client::{ApiClient, Method};
use shared::api::{NodeDescription, PartitionDescription};
use shared::model::{NodeId, NodeStatus, TableStatus};

use crate::harness::{TestCluster, create_table, no_scaler, read, table_request, wait_for};

const HTTP_BASE: u16 = 21700;
const DRAIN_BLOCKED_HTTP_BASE: u16 = 24700;
const DRAIN_CANCEL_HTTP_BASE: u16 = 25150;
const TABLE: &str = "orders";
/// 12,000 WCU at 1,000 WCU per partition.
const WRITE_UNITS: u64 = 12_000;
/// Shorter than the default failure confirmation window (3 s) by a safe margin, and
/// longer than the time gossip needs to suspect (about 1 s).
const PAUSE: Duration = Duration::from_millis(2200);

fn nodes(client: &ApiClient) -> BTreeMap<NodeId, NodeDescription> {
    let cluster_id = read("cluster", || client.cluster())
        .cluster_id
        .expect("cluster id");
    read("nodes", || client.nodes(&cluster_id))
        .nodes
        .into_iter()
        .map(|n| (n.node_id, n))
        .collect()
}

fn partitions(client: &ApiClient) -> Vec<PartitionDescription> {
    read("partitions", || client.partitions(TABLE)).partitions
}

fn holds(p: &PartitionDescription, node: NodeId) -> bool {
    p.primary_node_id == node || p.replica_node_ids.contains(&node)
}

/// Sum over `agents` of a counter in their `/metrics`.
fn counter_sum(cluster: &TestCluster, agents: &[u16], name: &str) -> u64 {
    agents
        .iter()
        .map(|&i| {
            let (_, text) = cluster
                .client(i)
                .raw(Method::Get, "/metrics", None)
                .expect("metrics");
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        })
        .sum()
}

fn leader(client: &ApiClient) -> NodeId {
    wait_for("a leader", || client.cluster().ok()?.leader_id)
}

/// An agent index (1-based, = node id) holding partitions, in the given Raft role.
fn pick(client: &ApiClient, role: &str, not: &[NodeId]) -> u16 {
    let parts = partitions(client);
    let nodes = nodes(client);
    let id = nodes
        .values()
        .find(|n| {
            n.raft_role == role
                && !not.contains(&n.node_id)
                && parts.iter().any(|p| holds(p, n.node_id))
        })
        .map(|n| n.node_id)
        .unwrap_or_else(|| panic!("no {role} holding partitions"));
    id as u16
}

/// Waits until every partition is off `failed`, fully ready, and on distinct live nodes.
fn wait_rerouted(client: &ApiClient, failed: NodeId, replicas: usize) -> Vec<PartitionDescription> {
    wait_for("partitions rerouted off the failed node", || {
        let parts = client.partitions(TABLE).ok()?.partitions;
        parts
            .iter()
            .all(|p| !holds(p, failed) && p.ready && 1 + p.replica_node_ids.len() == replicas)
            .then_some(parts)
    })
}

fn assert_rerouted(before: &[PartitionDescription], after: &[PartitionDescription], dead: NodeId) {
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(after) {
        assert_eq!(b.partition_id, a.partition_id);
        let mut all: Vec<NodeId> = a.replica_node_ids.clone();
        all.push(a.primary_node_id);
        all.sort_unstable();
        all.dedup();
        assert_eq!(
            all.len(),
            1 + a.replica_node_ids.len(),
            "distinct replicas: {a:?}"
        );
        assert!(!a.under_replicated, "{a:?}");
        if holds(b, dead) {
            assert!(
                a.epoch > b.epoch,
                "epoch bumped on partition {}",
                a.partition_id
            );
            if b.primary_node_id == dead {
                assert!(
                    b.replica_node_ids.contains(&a.primary_node_id),
                    "promoted a survivor"
                );
            }
        } else {
            assert_eq!(
                a, b,
                "a partition the failed node did not hold is untouched"
            );
        }
    }
}

#[test]
fn failures_are_detected_once_recovered_and_rejoined() {
    let mut cluster = TestCluster::start(5, HTTP_BASE, no_scaler);
    let c1 = cluster.client(1);
    wait_for("3 voters and 2 learners", || {
        let c = c1.cluster().ok()?;
        (c.voters.len() == 3 && c.learners.len() == 2).then_some(())
    });
    wait_for("all 5 agents healthy in gossip", || {
        let n = nodes(&c1);
        (n.len() == 5 && n.values().all(|n| n.status == NodeStatus::Healthy)).then_some(())
    });
    create_table(&c1, &table_request(TABLE, WRITE_UNITS));
    wait_for("table ACTIVE", || {
        (c1.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
    let before = partitions(&c1);
    assert_eq!(before.len(), 12);

    // A pause shorter than the confirmation window: SUSPECTED, then HEALTHY, nothing moved.
    let paused = pick(&c1, "learner", &[]);
    let watcher = cluster.client(leader(&c1) as u16);
    let incarnation = nodes(&watcher)[&u64::from(paused)].incarnation;
    cluster.pause(paused);
    let until = Instant::now() + PAUSE;
    let mut suspected = false;
    while Instant::now() < until {
        let status = watcher
            .cluster()
            .ok()
            .and_then(|c| watcher.nodes(&c.cluster_id?).ok())
            .and_then(|n| n.nodes.into_iter().find(|n| n.node_id == u64::from(paused)))
            .map(|n| n.status);
        suspected |= status == Some(NodeStatus::Suspected);
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.resume(paused);
    assert!(suspected, "a paused agent shows as SUSPECTED");
    wait_for("the paused agent HEALTHY again", || {
        let n = &nodes(&watcher)[&u64::from(paused)];
        (n.status == NodeStatus::Healthy).then_some(())
    });
    // Past the window: had a failure been decided, it would be visible by now.
    std::thread::sleep(Duration::from_secs(4));
    let n = &nodes(&watcher)[&u64::from(paused)];
    assert_eq!(
        (n.status, n.incarnation),
        (NodeStatus::Healthy, incarnation)
    );
    assert_eq!(
        partitions(&c1),
        before,
        "no partition moved for a refuted suspicion"
    );
    let all: Vec<u16> = (1..=5).collect();
    assert_eq!(
        counter_sum(&cluster, &all, "agent_node_failed_decisions_total"),
        0
    );

    // kill -9 a learner: failed exactly once; its partitions rerouted; table ACTIVE.
    let learner = pick(&c1, "learner", &[]);
    let learner_id = u64::from(learner);
    let old_incarnation = nodes(&c1)[&learner_id].incarnation;
    cluster.kill(learner);
    let live: Vec<u16> = all.iter().copied().filter(|&i| i != learner).collect();
    let survivor = cluster.client(live[0]);
    wait_for("the killed learner FAILED", || {
        (nodes(&survivor)[&learner_id].status == NodeStatus::Failed).then_some(())
    });
    let after = wait_rerouted(&survivor, learner_id, 3);
    assert_rerouted(&before, &after, learner_id);
    assert_eq!(
        survivor.get_table(TABLE).expect("table").status,
        TableStatus::Active
    );
    // Give a racing or repeated decision time to show up: there must be none.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        counter_sum(&cluster, &live, "agent_node_failed_decisions_total"),
        1
    );

    // kill -9 the leader (a voter): a new leader fails it; the last live learner becomes a
    // voter, so the voter count is 3 again.
    let old_leader = leader(&survivor);
    cluster.kill(old_leader as u16);
    let live: Vec<u16> = live
        .into_iter()
        .filter(|&i| u64::from(i) != old_leader)
        .collect();
    let survivor = cluster.client(live[0]);
    wait_for("the killed leader FAILED", || {
        (nodes(&survivor)[&old_leader].status == NodeStatus::Failed).then_some(())
    });
    wait_for("3 live voters again", || {
        let c = survivor.cluster().ok()?;
        let voters: Vec<u64> = c.voters.clone();
        (voters.len() == 3 && !voters.contains(&old_leader) && c.leader_id.is_some()).then_some(())
    });
    let after_leader = wait_rerouted(&survivor, old_leader, 3);
    assert_rerouted(&after, &after_leader, old_leader);
    assert_eq!(
        survivor.get_table(TABLE).expect("table").status,
        TableStatus::Active
    );

    // The killed learner restarts: a new incarnation, HEALTHY, owning nothing, a learner.
    cluster.start_node(learner);
    wait_for("the restarted agent rejoined", || {
        let n = nodes(&survivor).remove(&learner_id)?;
        (n.status == NodeStatus::Healthy && n.incarnation > old_incarnation).then_some(n)
    });
    wait_for("the restarted agent is a learner again", || {
        survivor
            .cluster()
            .ok()?
            .learners
            .contains(&learner_id)
            .then_some(())
    });
    let n = &nodes(&survivor)[&learner_id];
    assert_eq!(
        n.partitions_owned, 0,
        "a rejoined node owns nothing until given work"
    );
    assert_eq!(partitions(&survivor), after_leader);

    // Planned removal of a voter holding partitions: drained onto the others (the
    // rejoined node among them), decommissioned, replaced in the voter set.
    let current_leader = leader(&survivor);
    // Neither the leader nor the agent the test talks to.
    let leaving = pick(&survivor, "voter", &[current_leader, u64::from(live[0])]);
    let leaving_id = u64::from(leaving);
    let cluster_id = read("cluster", || survivor.cluster())
        .cluster_id
        .expect("cluster id");
    let accepted = read("remove node", || {
        survivor.remove_node(&cluster_id, leaving_id)
    });
    assert_eq!(accepted.status, NodeStatus::Draining);
    assert!(accepted.remove_when_drained);
    wait_for("the removed node DECOMMISSIONED and empty", || {
        let n = nodes(&survivor).remove(&leaving_id)?;
        (n.status == NodeStatus::Decommissioned && n.partitions_owned == 0).then_some(())
    });
    let drained = wait_rerouted(&survivor, leaving_id, 3);
    assert!(
        drained.iter().any(|p| holds(p, learner_id)),
        "the rejoined node got work"
    );
    wait_for("3 voters without the removed node", || {
        let c = survivor.cluster().ok()?;
        let members: Vec<u64> = c.voters.iter().chain(&c.learners).copied().collect();
        (c.voters.len() == 3 && !members.contains(&leaving_id)).then_some(())
    });
    assert_eq!(
        survivor.get_table(TABLE).expect("table").status,
        TableStatus::Active
    );
}

#[test]
fn a_drain_that_cannot_finish_is_refused_with_its_reason() {
    let cluster = TestCluster::start(3, DRAIN_BLOCKED_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    // Every node registered first (a drain of one not registered yet is a 404).
    wait_healthy(&client, 3);
    create_active(&client, 1000);
    // Three nodes at replication factor 3: a drained node's replicas have nowhere to go.
    // Before: 202, and the node stayed DRAINING for good with no reason shown.
    for remove in [false, true] {
        let refused = if remove {
            client.remove_node("dev", 3)
        } else {
            client.drain_node("dev", 3)
        };
        match refused {
            Err(agent::api_client::ClientError::Api {
                status: 409,
                code,
                message,
            }) => {
                assert_eq!(code, "DrainBlocked");
                assert!(message.contains("replication factor 3"), "{message}");
            }
            other => panic!("remove={remove}: {other:?}"),
        }
    }
    assert_eq!(
        nodes(&client)[&3].status,
        NodeStatus::Healthy,
        "nothing changed"
    );
}

#[test]
fn a_drain_is_cancelled_with_agentctl_and_the_node_takes_work_again() {
    let cluster = TestCluster::start(4, DRAIN_CANCEL_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    wait_healthy(&client, 4);
    create_active(&client, 4000);
    let agentctl = |args: &[&str]| {
        let out = cluster.agentctl(1, args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = agentctl(&["node", "drain", "4"]);
    assert!(ok, "{err}");
    assert!(out.contains("DRAINING"), "{out}");
    let (ok, out, err) = agentctl(&["node", "drain", "4", "--cancel"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("HEALTHY") && out.contains("cancelled"),
        "{out}"
    );
    let node = &nodes(&client)[&4];
    assert_eq!(node.status, NodeStatus::Healthy);
    assert!(node.drain_blocked.is_empty());
    // Cancelling again changes nothing; an unknown node is an error.
    let (ok, out, _) = agentctl(&["node", "drain", "4", "--cancel"]);
    assert!(ok && out.contains("HEALTHY"), "{out}");
    let (ok, _, err) = agentctl(&["node", "drain", "9", "--cancel"]);
    assert!(!ok && err.contains("NodeNotFound"), "{err}");
    // Back in service: a new table is placed on it again.
    create_table(&client, &table_request("after-cancel", 4000));
    wait_for("a partition of the new table on node 4", || {
        let parts = client.partitions("after-cancel").ok()?.partitions;
        parts
            .iter()
            .any(|p| p.primary_node_id == 4 || p.replica_node_ids.contains(&4))
            .then_some(())
    });
}

/// Waits until `count` nodes are registered and HEALTHY.
fn wait_healthy(client: &ApiClient, count: usize) {
    wait_for(&format!("{count} HEALTHY nodes"), || {
        let cluster_id = client.cluster().ok()?.cluster_id?;
        let nodes = client.nodes(&cluster_id).ok()?.nodes;
        (nodes.len() == count && nodes.iter().all(|n| n.status == NodeStatus::Healthy))
            .then_some(())
    });
}

/// Creates `TABLE` with `write_units` and waits until it is ACTIVE.
fn create_active(client: &ApiClient, write_units: u64) {
    create_table(client, &table_request(TABLE, write_units));
    wait_for("table ACTIVE", || {
        (client.get_table(TABLE).ok()?.status == TableStatus::Active).then_some(())
    });
}
