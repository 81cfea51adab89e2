//! The foundation's end-to-end promise: 5 agents, 3 voters + 2 learners, 20 tables,
//! leader killed, new leader, nothing lost, writes work again, the killed agent catches
//! up, and a full restart from the data dirs keeps all metadata.

use std::collections::BTreeMap;

use agent::api_client::{ApiClient, ClientError};
use shared::api::PartitionDescription;
use shared::model::TableStatus;

use crate::harness::{TestCluster, no_scaler, read, retry, table_request, wait_for};

const HTTP_BASE: u16 = 21070;
const TABLES: usize = 20;

type Layout = BTreeMap<String, Vec<PartitionDescription>>;

fn wait_status(client: &ApiClient, name: &str, status: TableStatus) {
    wait_for(&format!("{name} to be {status:?}"), || {
        client
            .get_table(name)
            .ok()
            .filter(|t| t.status == status)
            .map(|_| ())
    });
}

fn wait_gone(client: &ApiClient, name: &str) {
    wait_for(&format!("{name} to be gone"), || {
        matches!(
            client.get_table(name),
            Err(ClientError::Api { status: 404, .. })
        )
        .then_some(())
    });
}

fn layout(client: &ApiClient) -> Layout {
    let tables = read("list tables", || client.list_tables()).tables;
    tables
        .into_iter()
        .map(|t| {
            let parts = read("partitions", || client.partitions(&t.table_name)).partitions;
            (t.table_name, parts)
        })
        .collect()
}

/// `now` is `before` except that epochs may have grown.
fn assert_same_but_epochs(now: &Layout, before: &Layout) {
    let strip = |l: &Layout| -> Layout {
        l.iter()
            .map(|(name, parts)| {
                let parts = parts
                    .iter()
                    .map(|p| PartitionDescription {
                        epoch: 0,
                        ..p.clone()
                    })
                    .collect();
                (name.clone(), parts)
            })
            .collect()
    };
    assert_eq!(strip(now), strip(before), "metadata survives the restart");
    for (name, parts) in now {
        for (p, old) in parts.iter().zip(&before[name]) {
            assert!(
                p.epoch >= old.epoch,
                "epoch of {} went back",
                p.partition_id
            );
        }
    }
}

/// A live agent's view of the leader, once it has one other than `not`.
fn leader_other_than(cluster: &TestCluster, live: &[u16], not: Option<u64>) -> u64 {
    wait_for("a leader", || {
        live.iter().find_map(|&i| {
            let c = cluster.client(i).cluster().ok()?;
            c.leader_id.filter(|&l| Some(l) != not)
        })
    })
}

#[test]
fn leader_failover_catch_up_and_full_restart_keep_all_metadata() {
    let mut cluster = TestCluster::start(5, HTTP_BASE, |c| {
        no_scaler(c);
        c.controllers.delete_release_timeout_ms = 2000;
        // This test is about metadata surviving a leader change: the killed leader must
        // not be declared failed (and its partitions moved) before the layout is compared.
        c.controllers.failure_confirm_window_ms = 120_000;
        c.data.replica_drop_after_ms = 240_000;
    });
    let c1 = cluster.client(1);
    let status = wait_for("3 voters and 2 learners", || {
        let c = c1.cluster().ok()?;
        (c.voters.len() == 3 && c.learners.len() == 2).then_some(c)
    });
    assert_eq!(status.voters.len() + status.learners.len(), 5);

    // Create through every agent (learners forward to the leader).
    for i in 0..TABLES {
        let client = cluster.client(1 + (i as u16 % cluster.size()));
        let request = table_request(&format!("table-{i:02}"), 1000 * (1 + i as u64 % 4));
        // 409: an earlier attempt whose answer was lost did create it.
        if let Some(created) = retry("create", &[409], || client.create_table(&request)) {
            assert_eq!(created.status, TableStatus::Creating);
        }
    }
    for i in 0..TABLES {
        wait_status(&c1, &format!("table-{i:02}"), TableStatus::Active);
    }
    let before = layout(&c1);
    assert_eq!(before.len(), TABLES);
    for (name, parts) in &before {
        assert!(
            !parts.is_empty() && parts.iter().all(|p| p.ready),
            "{name} not fully placed"
        );
        assert!(
            parts.iter().all(|p| p.replica_node_ids.len() == 2),
            "{name} has 3 replicas"
        );
    }

    // kill -9 the leader (read again now: leadership may have moved during the creates);
    // a new one is elected among the others.
    let old_leader = read("cluster status", || c1.cluster())
        .leader_id
        .expect("leader");
    cluster.kill(old_leader as u16);
    let live: Vec<u16> = (1..=5).filter(|&i| u64::from(i) != old_leader).collect();
    let new_leader = leader_other_than(&cluster, &live, Some(old_leader));
    assert_ne!(new_leader, old_leader);
    let survivor = cluster.client(live[0]);
    assert_eq!(
        layout(&survivor),
        before,
        "tables and partitions survive the failover"
    );

    // Creating and deleting work again.
    retry("create after failover", &[409], || {
        survivor.create_table(&table_request("after-failover", 2000))
    });
    wait_status(&survivor, "after-failover", TableStatus::Active);
    retry("delete after failover", &[404], || {
        survivor.delete_table("table-00")
    });
    wait_gone(&survivor, "table-00");

    // The killed agent restarts and catches up with everything it missed.
    cluster.start_node(old_leader as u16);
    let restarted = cluster.client(old_leader as u16);
    wait_for("restarted agent healthy", || {
        restarted.healthy().then_some(())
    });
    let after = layout(&survivor);
    wait_for("restarted agent caught up", || {
        let c = restarted.cluster().ok()?;
        (c.applied_index >= c.commit_index).then_some(())
    });
    assert_same_but_epochs(&layout(&restarted), &after);
    assert!(after.contains_key("after-failover") && !after.contains_key("table-00"));

    // Crash everything and start again from the data dirs: all metadata is still there.
    // (A graceful stop of every agent at once may move primaries among them.)
    for i in 1..=5 {
        cluster.kill(i);
    }
    for i in 1..=5 {
        cluster.start_node(i);
    }
    leader_other_than(&cluster, &[1, 2, 3, 4, 5], None);
    let c2 = cluster.client(2);
    wait_for("cluster healthy after restart", || {
        c2.healthy().then_some(())
    });
    // A restarted primary moves its partitions to new epochs before taking writes (its
    // previous run may have left records it lacks): everything else is unchanged.
    assert_same_but_epochs(&layout(&c2), &after);
    let c = read("cluster status", || c2.cluster());
    assert_eq!(c.voters.len(), 3);
}
