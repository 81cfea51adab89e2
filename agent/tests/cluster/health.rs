//! Answers that must tell the truth under failure (bugs the testbed found, issue 14):
//! `/healthz` is 200 only while the agent can serve, and a write whose answer never
//! came back is reported as unknown, never sent again.

use agent::data_client::{DataClient, DataClientError};
use serde_json::json;
use shared::model::TableStatus;

use crate::harness::{JSON, TestCluster, create_table, no_scaler, table_request, wait_for};

const HEALTH_HTTP_BASE: u16 = 24100;
const UNANSWERED_HTTP_BASE: u16 = 24150;
const QUORUM_LOSS_HTTP_BASE: u16 = 24450;
const STOPPED_HTTP_BASE: u16 = 24170;
const SILENT_REPLICAS_HTTP_BASE: u16 = 25300;
/// libfaketime's multi-threaded build, as Debian's `faketime` package installs it
/// (`.ci/run` installs it).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

#[test]
fn healthz_is_503_while_the_agent_cannot_reach_a_metadata_quorum() {
    let cluster = TestCluster::start(3, HEALTH_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    wait_for("agent 1 healthy", || client.healthy().then_some(()));
    // Two of three voters frozen: no quorum, so agent 1 can neither write nor read the
    // metadata linearizably. It used to answer 200 anyway.
    cluster.pause(2);
    cluster.pause(3);
    wait_for("agent 1 to report it cannot serve", || {
        (!client.healthy()).then_some(())
    });
    cluster.resume(2);
    cluster.resume(3);
    for i in 1..=3 {
        let agent = cluster.anonymous(i);
        wait_for(&format!("agent {i} healthy again"), || {
            agent.healthy().then_some(())
        });
    }
}

#[test]
fn a_leader_without_quorum_refuses_writes_with_503_and_retry_after() {
    let cluster = TestCluster::start(3, QUORUM_LOSS_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    let leader = wait_for("3 voters and a leader", || {
        let status = client.cluster().ok()?;
        (status.voters.len() == 3).then_some(status.leader_id?)
    });
    let leader = u16::try_from(leader).unwrap();
    wait_for("the leader ready", || {
        cluster.anonymous(leader).healthy().then_some(())
    });
    let followers: Vec<u16> = (1..=3).filter(|&i| i != leader).collect();
    for &i in &followers {
        cluster.pause(i);
    }
    wait_for("the leader not ready", || {
        let ready = cluster.send(leader, "GET", "/readyz", JSON, "");
        (ready.status == 503).then_some(())
    });
    let live = cluster.send(leader, "GET", "/livez", JSON, "");
    // Before: the leader appended the table and waited 3 s for a commit that could not
    // come, then answered 504 OutcomeUnknown, no Retry-After: a write that was never
    // going to apply looked as if it might have. (A write in the first second of the
    // silence is still appended, and may commit: that one is unknown.)
    let body = serde_json::to_string(&table_request("refused", 100)).unwrap();
    let refused = cluster.send(leader, "POST", "/tables", JSON, &body);
    for &i in &followers {
        cluster.resume(i);
    }
    assert_eq!(refused.status, 503, "a write the leader could not commit");
    assert_eq!(refused.retry_after.as_deref(), Some("1"));
    assert_eq!(live.status, 200, "/livez: the process runs");
    wait_for("ready again", || {
        let ready = cluster.send(leader, "GET", "/readyz", JSON, "");
        (ready.status == 200).then_some(())
    });
    assert!(
        matches!(
            client.get_table("refused"),
            Err(agent::api_client::ClientError::Api { status: 404, .. })
        ),
        "the refused table was not created"
    );
}

#[test]
fn a_write_left_unanswered_is_unknown_and_not_sent_again() {
    let (cluster, client) = TestCluster::single(UNANSWERED_HTTP_BASE, |c| {
        c.placement.replication_factor = 1;
        no_scaler(c);
    });
    create_table(&client, &table_request("cells", 100));
    wait_for("table ACTIVE", || {
        (client.get_table("cells").ok()?.status == TableStatus::Active).then_some(())
    });
    let data: DataClient = cluster.data_client(cluster.endpoints());
    data.put("cells", "a", None, &json!({"v": 1}))
        .expect("a write to a live primary");
    // A frozen primary's kernel still accepts the connection and the request: the write
    // is delivered and would apply on resume. Sending it again could apply the copy
    // after another client's later write, taking the item back in time.
    cluster.pause(1);
    let result = data.put("cells", "a", None, &json!({"v": 2}));
    cluster.resume(1);
    // Before the fix the client resent it until its attempts ran out (`Exhausted`).
    assert!(
        matches!(result, Err(DataClientError::OutcomeUnknown(_))),
        "{result:?}"
    );
}

#[test]
fn an_agent_whose_metadata_store_stops_exits_non_zero() {
    assert!(
        std::path::Path::new(FAKETIME).exists(),
        "{FAKETIME} is missing: install Debian's faketime package (.ci/run does)"
    );
    // Agent 3, a follower, runs under libfaketime.
    let mut cluster = TestCluster::start_some(3, 2, STOPPED_HTTP_BASE, no_scaler);
    let clock = cluster.dir().join("clock");
    std::fs::write(&clock, "+0\n").unwrap();
    let clock_path = clock.to_string_lossy().into_owned();
    cluster.start_node_with_env(
        3,
        &[
            ("LD_PRELOAD", FAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &clock_path),
            ("FAKETIME_CACHE_DURATION", "1"),
        ],
    );
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    let follower = cluster.anonymous(3);
    wait_for("agent 3 healthy", || follower.healthy().then_some(()));
    // The monotonic clock going back stops openraft's core at the next heartbeat (it
    // asserts that time only grows). No real clock does that; here it is a way to stop
    // the core from outside.
    std::fs::write(&clock, "-30\n").unwrap();
    let status = wait_for("agent 3 to exit", || cluster.exit_status(3));
    assert!(!status.success(), "exited with {status}");
}

#[test]
fn an_item_write_whose_replicas_stopped_answering_is_refused_as_not_written() {
    use agent::api_client::Method;
    use shared::keyspace::hash_partition_key;
    let cluster = TestCluster::start(3, SILENT_REPLICAS_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    create_table(&client, &table_request("cells", 3000));
    wait_for("table ACTIVE", || {
        (client.get_table("cells").ok()?.status == TableStatus::Active).then_some(())
    });
    // A key whose partition agent 1 leads, with its two replicas on agents 2 and 3.
    let parts = client.partitions("cells").unwrap().partitions;
    let (key, epoch) = (0..)
        .map(|i| format!("k{i}"))
        .find_map(|k| {
            let hash = hash_partition_key(k.as_bytes());
            let p = parts
                .iter()
                .find(|p| p.key_range_low <= hash && hash <= p.key_range_high)?;
            (p.primary_node_id == 1 && p.replica_node_ids.len() == 2).then_some((k, p.epoch))
        })
        .unwrap();
    let items = cluster.item_client(1, "cells");
    // Addressed to the primary at its epoch, as the data client does: answered once.
    let path = format!("/tables/cells/items/{key}?epoch={epoch}");
    let (status, text) = items.raw(Method::Put, &path, Some(r#"{"v":1}"#)).unwrap();
    assert_eq!(status, 200, "{text}");
    // Both replicas frozen for longer than two lease renewals (1 s), not yet for the
    // lease (2 s): the lease is live, but they stopped confirming the primary. The
    // write used to be appended and sent, and to end in doubt (504) when replication
    // timed out.
    cluster.pause(2);
    cluster.pause(3);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let refused = items.raw(Method::Put, &path, Some(r#"{"v":2}"#)).unwrap();
    cluster.resume(2);
    cluster.resume(3);
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert!(refused.1.contains("nothing was written"), "{}", refused.1);
    let read = wait_for("the item readable again", || {
        let (status, text) = items.raw(Method::Get, &path, None).ok()?;
        (status == 200).then_some(text)
    });
    assert!(
        read.contains(r#""v":1"#),
        "the refused write did not apply: {read}"
    );
}
