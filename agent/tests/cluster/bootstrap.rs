//! The cluster is created exactly once: `agent init` creates it, a second `agent init` is
//! refused, a wiped agent joins the cluster its seeds serve instead of starting another,
//! and an agent of another cluster is refused and stops.

use agent::dev::PortPlan;
use shared::model::NodeStatus;

use crate::harness::{
    TestCluster, agent_command, agent_command_fails, create_table, no_scaler, read, table_request,
    wait_for,
};

const INIT_HTTP_BASE: u16 = 24350;
const OTHER_CLUSTER_HTTP_BASE: u16 = 24400;

/// Every agent seeded with every other, none creating the cluster on its own.
fn seeded_by_all(nodes: u16, ports: PortPlan) -> impl Fn(&mut agent::config::Config) {
    move |c| {
        no_scaler(c);
        c.bootstrap = false;
        c.seeds = (1..=nodes).map(|i| ports.peer(i).to_string()).collect();
    }
}

#[test]
fn agent_init_creates_the_cluster_once_and_a_wiped_agent_joins_it_again() {
    let ports = PortPlan {
        http_base: INIT_HTTP_BASE,
    };
    let mut cluster = TestCluster::start(3, INIT_HTTP_BASE, seeded_by_all(3, ports));
    let configs: Vec<String> = (1..=3)
        .map(|i| cluster.config_path(i).to_str().unwrap().to_string())
        .collect();
    let config = |i: u16| configs[usize::from(i) - 1].clone();
    let created = agent_command(&["init", "--config", &config(1)]);
    assert!(created.contains("created cluster dev"), "{created}");
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    let again = agent_command_fails(&["init", "--config", &config(2)]);
    assert!(again.contains("already belongs to cluster dev"), "{again}");
    create_table(&client, &table_request("kept", 100));

    // Agent 3 loses its data and comes back configured to create a cluster on its first
    // start: its seeds serve one, so it joins it. Its empty log once made the leader's
    // Raft core panic ("follower log reversion"), and it was taken back as the voter it
    // had been, counting toward quorums with a log it had lost.
    cluster.kill(3);
    std::fs::remove_dir_all(cluster.config(3).data_dir).unwrap();
    cluster.retune(3, |c| c.bootstrap = true);
    cluster.start_node(3);
    let wiped = cluster.client(3);
    wait_for("the wiped agent to serve", || wiped.healthy().then_some(()));
    let table = read("the table through the wiped agent", || {
        wiped.get_table("kept")
    });
    assert_eq!(table.table_name, "kept");
    let nodes = read("nodes", || wiped.nodes("dev"));
    assert_eq!(nodes.cluster_id, "dev");
    wait_for("3 healthy nodes", || {
        let nodes = wiped.nodes("dev").ok()?;
        let healthy = nodes
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Healthy);
        (healthy.count() == 3).then_some(())
    });
    assert!(
        cluster
            .log(3)
            .contains("joining it instead of creating it again"),
        "{}",
        cluster.log(3)
    );
    wait_for("3 voters again", || {
        (wiped.cluster().ok()?.voters.len() == 3).then_some(())
    });
    for i in 1..=3 {
        assert!(cluster.exit_status(i).is_none(), "agent {i} stopped");
    }
    assert!(
        (1..=2).any(|i| cluster.log(i).contains("came back with an empty data dir")),
        "the leader took agent 3 in as it was"
    );
    let third = agent_command_fails(&["init", "--config", &config(3)]);
    assert!(third.contains("already belongs to cluster dev"), "{third}");
}

#[test]
fn an_agent_configured_for_another_cluster_is_refused_and_stops() {
    let mut cluster = TestCluster::start_some(4, 3, OTHER_CLUSTER_HTTP_BASE, |c| {
        no_scaler(c);
        if c.node_id == 4 {
            c.cluster_name = "other".into();
        }
    });
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    cluster.start_node(4);
    let status = wait_for("agent 4 to stop", || cluster.exit_status(4));
    assert!(!status.success(), "{status:?}");
    let log = cluster.log(4);
    assert!(log.contains("belongs to cluster dev"), "{log}");
    assert!(log.contains("refusing to join another cluster"), "{log}");
    // The cluster did not take it in.
    let nodes = read("nodes", || client.nodes("dev"));
    assert!(nodes.nodes.iter().all(|n| n.node_id != 4), "{nodes:?}");
}
