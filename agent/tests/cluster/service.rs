//! The agent under a service manager: `Type=notify` readiness once its metadata replica
//! caught up, watchdog pings, `STOPPING=1`; and files only its owner can read.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use crate::harness::{TestCluster, WAIT, no_scaler};

const SERVICE_HTTP_BASE: u16 = 24500;

/// Reads notifications until one contains `wanted`; returns every one read.
fn until(socket: &UnixDatagram, wanted: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == wanted)) {
        assert!(Instant::now() < deadline, "no {wanted} in {seen:?}");
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn the_agent_notifies_readiness_feeds_the_watchdog_and_keeps_its_files_private() {
    let mut cluster = TestCluster::start_some(1, 0, SERVICE_HTTP_BASE, no_scaler);
    let path = cluster.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    cluster.start_node_with_env(
        1,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = Vec::new();
    until(&socket, "READY=1", &mut seen);
    assert!(
        cluster.anonymous(1).healthy(),
        "READY=1 only once the agent serves"
    );
    seen.clear();
    until(&socket, "WATCHDOG=1", &mut seen);

    let data_dir = cluster.config(1).data_dir;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700, "the data dir");
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            assert_eq!(mode(&path), 0o600, "{}", path.display());
        }
    }

    cluster.stop_all();
    until(&socket, "STOPPING=1", &mut seen);
}
