//! Disaster recovery of the metadata: a backup saved with `agentctl snapshot save` starts
//! a new cluster with `agent restore`, and `agent recover` brings a cluster back from one
//! surviving voter after the other two are lost for good.

use std::collections::BTreeSet;

use shared::api::auth::PutPolicyRequest;
use shared::auth::{Action, Effect};

use crate::harness::{
    TestCluster, agent_command, agent_command_fails, create_table, no_scaler, read, retry,
    table_request, wait_for,
};

const RESTORE_HTTP_BASE: u16 = 24750;
const RECOVER_HTTP_BASE: u16 = 24800;

/// Tables, a principal and its policy: what both tests expect back.
fn write_metadata(cluster: &TestCluster) -> String {
    let client = cluster.client(1);
    create_table(&client, &table_request("orders", 100));
    create_table(&client, &table_request("users", 100));
    let reader = retry("create a principal", &[409], || {
        client.create_principal("reader", false)
    })
    .expect("a new principal");
    let policy = PutPolicyRequest {
        actions: BTreeSet::from([Action::Read]),
        effect: Effect::Allow,
    };
    retry("put a policy", &[], || {
        client.put_policy("orders", &reader.principal_arn, &policy)
    });
    reader.principal_arn
}

/// What the metadata holds, as the API shows it: tables with their partitions, the
/// principals, and who holds a policy on `orders`.
fn visible_metadata(cluster: &TestCluster, i: u16) -> String {
    let client = cluster.client(i);
    let mut shown = Vec::new();
    let mut tables = read("tables", || client.list_tables()).tables;
    tables.sort_by(|a, b| a.table_name.cmp(&b.table_name));
    for table in tables {
        let partitions = read("partitions", || client.partitions(&table.table_name));
        let ids: Vec<u64> = partitions
            .partitions
            .iter()
            .map(|p| p.partition_id)
            .collect();
        shown.push(format!("table {} partitions {ids:?}", table.table_name));
    }
    for principal in read("principals", || client.list_principals()).principals {
        shown.push(format!("principal {}", principal.principal_arn));
    }
    for policy in read("policies", || client.list_policies("orders")).policies {
        shown.push(format!("policy orders {}", policy.principal_arn));
    }
    shown.join("\n")
}

#[test]
fn a_saved_snapshot_restores_the_metadata_into_a_new_cluster() {
    let (mut cluster, client) = TestCluster::single(RESTORE_HTTP_BASE, no_scaler);
    let reader = write_metadata(&cluster);
    let before = visible_metadata(&cluster, 1);
    assert!(
        before.contains(&format!("policy orders {reader}")),
        "{before}"
    );

    let backup = cluster.dir().join("backup.snap");
    let backup_arg = backup.to_str().unwrap();
    let saved = cluster.agentctl(1, &["snapshot", "save", backup_arg]);
    let out = String::from_utf8_lossy(&saved.stdout);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    assert!(out.contains("saved the metadata at index"), "{out}");
    let again = cluster.agentctl(1, &["snapshot", "save", backup_arg]);
    assert!(
        !again.status.success(),
        "an existing backup is never replaced"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let status = cluster.agentctl(1, &["--json", "snapshot", "status", backup_arg]);
    let summary: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(summary["tables"], 2, "{summary}");
    assert_eq!(summary["principals"], 2, "admin and reader: {summary}");
    assert_eq!(summary["policies"], 1, "{summary}");
    // A damaged copy is refused by its checksum, by status and by restore alike.
    let bytes = std::fs::read(&backup).unwrap();
    let damaged = cluster.dir().join("damaged.snap");
    std::fs::write(&damaged, &bytes[..bytes.len() - 10]).unwrap();
    let checked = cluster.agentctl(1, &["snapshot", "status", damaged.to_str().unwrap()]);
    assert!(!checked.status.success());
    assert!(String::from_utf8_lossy(&checked.stderr).contains("damaged"));

    // The metadata is lost: the agent stops and its data dir goes.
    let config = cluster.config_path(1).to_str().unwrap().to_string();
    let refused = agent_command_fails(&["restore", "--config", &config, "--snapshot", backup_arg]);
    assert!(refused.contains("never overwrites"), "{refused}");
    cluster.kill(1);
    // The operator keeps the admin's credentials elsewhere (the principal is in the backup).
    let admin_file = agent::dev::admin_credentials_path(cluster.dir());
    let admin = std::fs::read(&admin_file).unwrap();
    std::fs::remove_dir_all(cluster.config(1).data_dir).unwrap();
    let refused = agent_command_fails(&[
        "restore",
        "--config",
        &config,
        "--snapshot",
        damaged.to_str().unwrap(),
    ]);
    assert!(refused.contains("damaged"), "{refused}");
    let restored = agent_command(&["restore", "--config", &config, "--snapshot", backup_arg]);
    assert!(restored.contains("2 tables"), "{restored}");
    std::fs::write(&admin_file, admin).unwrap();
    cluster.start_node(1);
    wait_for("the restored agent to serve", || {
        client.healthy().then_some(())
    });
    assert_eq!(visible_metadata(&cluster, 1), before);
    // A new cluster: it takes writes with the restored agent its only voter.
    let status = read("cluster status", || client.cluster());
    assert_eq!(status.voters, vec![1]);
    create_table(&client, &table_request("after", 100));
}

#[test]
fn agent_recover_brings_the_metadata_back_from_one_surviving_voter() {
    let mut cluster = TestCluster::start_some(5, 3, RECOVER_HTTP_BASE, no_scaler);
    let client = cluster.client(1);
    wait_for("3 voters", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    write_metadata(&cluster);
    let before = visible_metadata(&cluster, 1);
    // Every replica applied it all before the loss (what agent 1 had applied is kept).
    let commit = read("commit index", || client.cluster()).commit_index;
    wait_for("agent 1 to apply every write", || {
        (client.metadata_replica().ok()?.applied_index >= commit).then_some(())
    });
    let config = cluster.config_path(1).to_str().unwrap().to_string();
    let running = agent_command_fails(&["recover", "--config", &config, "--yes"]);
    assert!(running.contains("stop the agent first"), "{running}");

    // Two voters are lost for good; the survivor is stopped for the recovery.
    cluster.kill(2);
    cluster.kill(3);
    cluster.kill(1);
    let plan = agent_command(&["recover", "--config", &config]);
    assert!(plan.contains("Nothing changed"), "{plan}");
    let recovered = agent_command(&["recover", "--config", &config, "--yes"]);
    assert!(recovered.contains("now the only voter"), "{recovered}");
    assert!(recovered.contains("voters {1, 2, 3}"), "{recovered}");
    cluster.start_node(1);
    wait_for("the recovered agent to serve", || {
        client.healthy().then_some(())
    });
    assert_eq!(visible_metadata(&cluster, 1), before);
    assert_eq!(read("cluster status", || client.cluster()).voters, vec![1]);
    retry("a metadata write after the recovery", &[409], || {
        client.create_principal("after-recovery", false)
    });

    // New agents join, and the voter manager grows the voter set again.
    cluster.start_node(4);
    cluster.start_node(5);
    wait_for("3 voters again", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    let status = client.cluster().unwrap();
    assert!(status.voters.contains(&1), "{status:?}");
    assert_eq!(
        visible_metadata(&cluster, 4),
        visible_metadata(&cluster, 1),
        "a new voter holds the recovered metadata"
    );
}
