//! The testbed's own plumbing, as root: namespaces that carry traffic and faults, and
//! nothing left behind after a panic, an interrupt or an earlier crash.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use testbed::net::{self, Network, Rules, host_addr};

/// Namespaces whose name starts with `<prefix>-`.
fn namespaces(prefix: &str) -> Vec<String> {
    net::run("ip", &["netns", "list"])
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}

/// Whether a TCP connection from host `from` to a listener on host `to` opens.
fn connects(network: &Network, from: u16, to: u16, port: u16) -> bool {
    let (to_ns, from_ns) = (network.host_ns(to), network.host_ns(from));
    let addr = SocketAddr::from((host_addr(to), port));
    let listener = std::thread::spawn(move || {
        net::enter_namespace(&to_ns).unwrap();
        let listener = TcpListener::bind(addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if listener.accept().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let client = std::thread::spawn(move || {
        net::enter_namespace(&from_ns).unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_millis(700)).is_ok()
    });
    let connected = client.join().unwrap();
    listener.join().unwrap();
    connected
}

#[test]
fn hosts_reach_each_other_until_a_rule_cuts_them() {
    let prefix = "tbt-cut";
    net::remove_leftovers(prefix).unwrap();
    let network = Network::create(prefix, 3).unwrap();
    assert!(connects(&network, 1, 2, 7101));
    let mut rules = Rules::default();
    rules.cut_one_way(&[1], &[2]);
    network.apply(&rules).unwrap();
    assert!(!connects(&network, 1, 2, 7102), "the cut let 1 reach 2");
    assert!(
        connects(&network, 1, 3, 7103),
        "the cut stopped 1 reaching 3"
    );
    network.apply(&Rules::default()).unwrap();
    assert!(
        connects(&network, 1, 2, 7104),
        "healing did not restore 1 to 2"
    );
    drop(network);
    assert_eq!(namespaces(prefix), Vec::<String>::new());
}

#[test]
fn a_panic_leaves_no_namespace_and_leftovers_are_removed() {
    let prefix = "tbt-panic";
    net::remove_leftovers(prefix).unwrap();
    let result = std::panic::catch_unwind(|| {
        let _network = Network::create(prefix, 2).unwrap();
        panic!("a test that fails halfway");
    });
    assert!(result.is_err());
    assert_eq!(namespaces(prefix), Vec::<String>::new());
    // What a kill -9 of the testbed leaves: its namespaces, removed by the next run.
    let leftover = format!("{prefix}-h1");
    net::run("ip", &["netns", "add", &leftover]).unwrap();
    assert_eq!(net::remove_leftovers(prefix).unwrap(), vec![leftover]);
    assert_eq!(namespaces(prefix), Vec::<String>::new());
}

#[test]
fn ctrl_c_stops_a_run_and_removes_everything() {
    let prefix = "tbt-int";
    net::remove_leftovers(prefix).unwrap();
    let out = std::env::temp_dir().join(format!("testbed-interrupt-{}", std::process::id()));
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_testbed"));
    let agent = binary.with_file_name("agent");
    let mut child = Command::new(&binary)
        .args([
            "run",
            "--hosts",
            "3",
            "--duration",
            "60s",
            "--prefix",
            prefix,
            "--out",
        ])
        .arg(&out)
        .arg("--agent-binary")
        .arg(&agent)
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while namespaces(prefix).len() < 5 {
        assert!(Instant::now() < until, "the run never built its network");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run must not pass");
    assert_eq!(namespaces(prefix), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(out.to_string_lossy().as_ref()),
        "a data tmpfs is still mounted"
    );
    let _ = std::fs::remove_dir_all(&out);
}
