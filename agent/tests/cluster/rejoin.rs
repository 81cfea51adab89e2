//! A restarted agent comes back even after the cluster failed it and removed it from
//! the voters while it was down (a bug the testbed found, issue 14: the bootstrap agent,
//! restarted after its removal, waited forever for a leader to commit a repeated
//! InitCluster and never asked to rejoin).

use shared::model::NodeStatus;

use crate::harness::{TestCluster, no_scaler, wait_for};

const HTTP_BASE: u16 = 24200;

#[test]
fn the_bootstrap_agent_rejoins_after_being_failed_and_removed_from_the_voters() {
    let mut cluster = TestCluster::start(5, HTTP_BASE, no_scaler);
    let observer = cluster.client(2);
    wait_for("3 voters including agent 1", || {
        let c = observer.cluster().ok()?;
        (c.voters.len() == 3 && c.voters.contains(&1)).then_some(())
    });
    let cluster_id = wait_for("cluster id", || observer.cluster().ok()?.cluster_id);
    let incarnation = |status: NodeStatus| {
        let nodes = observer.nodes(&cluster_id).ok()?.nodes;
        let me = nodes.into_iter().find(|n| n.node_id == 1)?;
        (me.status == status).then_some(me.incarnation)
    };
    let first = wait_for("agent 1 HEALTHY", || incarnation(NodeStatus::Healthy));
    cluster.kill(1);
    wait_for("agent 1 failed and out of the voters", || {
        let c = observer.cluster().ok()?;
        let failed = incarnation(NodeStatus::Failed).is_some();
        (failed && !c.voters.contains(&1) && c.voters.len() == 3).then_some(())
    });
    cluster.start_node(1);
    wait_for("agent 1 back as a new incarnation", || {
        incarnation(NodeStatus::Healthy).filter(|i| *i > first)
    });
    let restarted = cluster.client(1);
    wait_for("agent 1 serving", || restarted.healthy().then_some(()));
}
