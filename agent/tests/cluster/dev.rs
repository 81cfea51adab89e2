//! `agent dev`, the newcomer's first command: it brings up a cluster with all its voters,
//! says so, and Ctrl-C stops every agent it started.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use std::os::unix::fs::PermissionsExt;

use agent::api_client::ApiClient;
use agent::auth::admin::PrincipalCredentials;
use agent::dev::admin_credentials_path;

use crate::harness::{exclusive, wait_for};

const HTTP_PORT: u16 = 21570;

/// Kills `agent dev` if the test fails; its agents follow (parent-death signal).
struct DevProcess(Child);

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn agent_dev_starts_a_cluster_and_ctrl_c_stops_it() {
    let _turn = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_agent"))
        .args([
            "dev",
            "--nodes",
            "3",
            "--http-port",
            &HTTP_PORT.to_string(),
            "--dir",
        ])
        .arg(dir.path().join(".agent-dev"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut dev = DevProcess(child);
    let stdout = dev.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Bounded: `agent dev` gives up (and closes its output) after its own 60 s wait.
    let ready = rx.iter().find(|l| l.starts_with("local cluster ready"));
    assert!(ready.is_some(), "agent dev never said the cluster is ready");

    let endpoint = format!("http://127.0.0.1:{HTTP_PORT}");
    let anonymous = ApiClient::new(&endpoint);
    assert_eq!(
        anonymous.cluster().unwrap_err().status(),
        Some(401),
        "the API needs a principal"
    );
    let credentials = admin_credentials_path(&dir.path().join(".agent-dev"));
    let mode = std::fs::metadata(&credentials)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the admin secret is private");
    let client = anonymous.with_principal(&PrincipalCredentials::load(&credentials).unwrap());
    let status = client.cluster().unwrap();
    assert_eq!(
        status.voters.len(),
        3,
        "all voters are in when dev says ready"
    );
    assert!(status.leader_id.is_some());
    // agentctl, run where `agent dev` was, finds the admin credentials by itself.
    let agentctl = Command::new(env!("CARGO_BIN_EXE_agentctl"))
        .args(["--endpoint", &endpoint, "cluster", "status"])
        .env_remove("AGENTCTL_CREDENTIALS")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        agentctl.status.success(),
        "agentctl without flags: {}",
        String::from_utf8_lossy(&agentctl.stderr)
    );

    // SAFETY: signalling a child we own.
    unsafe { libc::kill(dev.0.id() as libc::pid_t, libc::SIGINT) };
    let exited = wait_for("agent dev to exit", || dev.0.try_wait().unwrap());
    assert!(
        exited.success(),
        "agent dev exits cleanly on Ctrl-C: {exited:?}"
    );
    let stopped = (0..3).all(|i| {
        let c = ApiClient::new(&format!("http://127.0.0.1:{}", HTTP_PORT + i));
        c.cluster().is_err()
    });
    assert!(stopped, "every agent stopped with agent dev");
}
