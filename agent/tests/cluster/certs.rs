//! Certificates made by `agent cert` run a cluster, and a renewed certificate is taken up
//! on SIGHUP without a restart.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use agent::transport::tls::TlsFiles;

use crate::harness::{TestCluster, agent_command, no_scaler, wait_for};

const CERTS_HTTP_BASE: u16 = 24300;
/// The series of the node certificate's expiry.
const NODE_EXPIRY: &str = "agent_tls_cert_expiry_seconds{cert=\"node\"}";
/// The series of failed reloads.
const FAILED_RELOADS: &str = "agent_tls_reloads_total{outcome=\"error\"}";
const DAY: f64 = 86_400.0;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Makes node `id`'s certificate in `certs/node-<id>` (which gets a copy of the CA).
fn create_node(certs: &Path, ca_key: &Path, id: u64, days: u32, overwrite: bool) {
    let dir = certs.join(format!("node-{id}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(certs.join("ca.pem"), dir.join("ca.pem")).unwrap();
    let (id, days) = (id.to_string(), days.to_string());
    let mut args = vec![
        "cert",
        "create-node",
        "--certs-dir",
        path(&dir),
        "--ca-key",
        path(ca_key),
        "--node-id",
        &id,
        "--host",
        "127.0.0.1",
        "--valid-days",
        &days,
    ];
    if overwrite {
        args.push("--overwrite");
    }
    agent_command(&args);
}

#[test]
fn a_cluster_runs_on_agent_cert_certificates_and_reloads_them_on_sighup() {
    let pki = tempfile::tempdir().unwrap();
    let certs = pki.path().join("certs");
    let ca_key = pki.path().join("safe/ca.key");
    agent_command(&[
        "cert",
        "create-ca",
        "--certs-dir",
        path(&certs),
        "--ca-key",
        path(&ca_key),
        "--cluster-name",
        "dev",
    ]);
    for id in 1..=3 {
        create_node(&certs, &ca_key, id, 30, false);
    }
    let listed = agent_command(&["cert", "list", "--certs-dir", path(&certs.join("node-2"))]);
    assert!(
        listed.contains("CN=node-2") && listed.contains("dev cluster CA"),
        "{listed}"
    );

    let node_dirs = certs.clone();
    let cluster = TestCluster::start(3, CERTS_HTTP_BASE, move |c| {
        no_scaler(c);
        c.tls = TlsFiles::in_dir(&node_dirs.join(format!("node-{}", c.node_id))).into();
    });
    let client = cluster.client(1);
    wait_for("3 voters on agent cert's certificates", || {
        (client.cluster().ok()?.voters.len() == 3).then_some(())
    });
    let expiry = wait_for("the expiry metric", || cluster.metric(1, NODE_EXPIRY));
    assert!((expiry - (now() + 30.0 * DAY)).abs() < DAY, "{expiry}");

    // Renewal: a new certificate for 60 days, taken up on SIGHUP.
    create_node(&certs, &ca_key, 1, 60, true);
    cluster.hang_up(1);
    wait_for("the renewed certificate in use", || {
        let expiry = cluster.metric(1, NODE_EXPIRY)?;
        ((expiry - (now() + 60.0 * DAY)).abs() < DAY).then_some(())
    });

    // A broken file is refused; the agent keeps the certificates it has and still serves.
    std::fs::write(certs.join("node-2/node.pem"), "not a certificate").unwrap();
    cluster.hang_up(2);
    wait_for("the failed reload counted", || {
        (cluster.metric(2, FAILED_RELOADS)? >= 1.0).then_some(())
    });
    assert!(cluster.anonymous(2).healthy());
    assert!(client.cluster().is_ok());
}
