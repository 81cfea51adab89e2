//! Fault mixes through the library: pauses, one-way partitions, a lossy and duplicating
//! network, crash and restart; the invariants must hold throughout and the cluster must
//! heal completely once the faults stop.

use std::collections::BTreeSet;

use netsim::faults::Fault;
use netsim::network::NetConfig;
use netsim::time::{millis, secs};
use netsim::trace::Trace;
use netsim::{SimConfig, Simulation};

const NODES: usize = 20;
const PARTITIONS: usize = 100;

fn simulation(seed: u64, net: NetConfig) -> Simulation {
    let mut cfg = SimConfig::new(seed, NODES, PARTITIONS);
    cfg.net = net;
    let mut sim = Simulation::new(cfg, Trace::default()).expect("cluster");
    sim.start();
    sim
}

fn assert_kept_promises(sim: &Simulation, seed: u64) {
    let v = sim.invariants();
    assert_eq!(
        v.count(),
        0,
        "seed {seed}: {:#?}\nlast events:\n{}",
        v.violations(),
        sim.trace().tail().collect::<Vec<_>>().join("\n")
    );
}

fn failed(sim: &Simulation, node: u64) -> bool {
    sim.observer().failures.iter().any(|f| f.node == node)
}

#[test]
fn a_short_pause_is_no_failure_a_long_one_is_and_it_comes_back() {
    let seed = 7;
    let mut sim = simulation(seed, NetConfig::default());
    sim.schedule(
        secs(10),
        Fault::Pause {
            node: 5,
            for_us: millis(1_500),
        },
    );
    sim.schedule(
        secs(30),
        Fault::Pause {
            node: 6,
            for_us: secs(20),
        },
    );
    sim.run_until(secs(29));
    assert!(!failed(&sim, 5), "a 1.5 s pause is shorter than the window");
    sim.run_until(secs(90));
    assert!(failed(&sim, 6), "a 20 s pause outlives the window");
    sim.check_healed();
    assert_kept_promises(&sim, seed);
}

#[test]
fn one_way_partition_and_a_rough_network_heal_completely() {
    let seed = 8;
    let net = NetConfig {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        ..NetConfig::default()
    };
    let mut sim = simulation(seed, net);
    let others: BTreeSet<u64> = (1..=NODES as u64).filter(|n| *n != 3).collect();
    sim.schedule(
        secs(10),
        Fault::Partition {
            name: "mute-3".into(),
            from: BTreeSet::from([3]),
            to: others,
            both_ways: false,
        },
    );
    sim.schedule(secs(25), Fault::Heal("mute-3".into()));
    sim.schedule(secs(30), Fault::Crash(9));
    sim.schedule(secs(45), Fault::Restart(9));
    sim.schedule(secs(50), Fault::HealAll);
    sim.run_until(secs(110));
    assert!(failed(&sim, 9), "the crash is detected");
    sim.check_healed();
    assert_kept_promises(&sim, seed);
}

#[test]
fn a_replica_behind_the_kept_states_takes_the_current_one_and_heals() {
    let seed = 9;
    let mut cfg = SimConfig::new(seed, NODES, PARTITIONS);
    // No state kept: every replica takes the log's current state.
    cfg.kept_versions = 0;
    let mut sim = Simulation::new(cfg, Trace::default()).expect("cluster");
    sim.start();
    sim.schedule(secs(10), Fault::Crash(4));
    sim.schedule(secs(30), Fault::Restart(4));
    sim.run_until(secs(80));
    assert!(failed(&sim, 4), "the crash is detected");
    assert!(
        sim.snapshot_installs() > 0,
        "some replica was behind every kept state"
    );
    // Healed: every agent's routing equals the log's, the restarted one is HEALTHY.
    sim.check_healed();
    assert_kept_promises(&sim, seed);
}

#[test]
fn each_new_leader_publishes_its_signing_key_and_retires_the_former_leaders() {
    let seed = 3;
    let mut sim = simulation(seed, NetConfig::default());
    sim.run_until(secs(10));
    let first = sim.log().leader.expect("a leader");
    sim.schedule(secs(10), Fault::Crash(first));
    sim.run_until(secs(30));
    assert_kept_promises(&sim, seed);
    let second = sim.log().leader.expect("a new leader");
    assert_ne!(first, second);
    let keys: Vec<(u64, bool)> = sim
        .log()
        .state()
        .signing_keys()
        .map(|k| (k.node_id, k.is_active()))
        .collect();
    // The agent's own key keeper ran on each leader: one key each, the former retired.
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&(first, false)), "{keys:?}");
    assert!(keys.contains(&(second, true)), "{keys:?}");
}

#[test]
fn a_split_whose_primary_crashes_mid_way_is_ended_by_the_next_primary() {
    let seed = 4;
    let mut sim = simulation(seed, NetConfig::default());
    sim.run_until(secs(5));
    sim.enable_scaler();
    sim.run_until(secs(10));
    let hot = sim
        .log()
        .state()
        .partitions()
        .next()
        .expect("a partition")
        .partition_id;
    sim.make_hot(hot, 10.0).expect("made hot");
    // The Scaler starts the split after its hot window; its primary then dies.
    let started = sim.run_until_true(secs(120), millis(100), |s| {
        s.log()
            .state()
            .running_operations()
            .any(|op| op.partition_id == hot)
    });
    assert!(started.is_some(), "no split started");
    let primary = sim
        .log()
        .state()
        .partition(hot)
        .expect("the parent")
        .primary_node_id;
    let now = sim.now();
    sim.schedule(now, Fault::Crash(primary));
    sim.stop_scaler();
    let ended = sim.run_until_true(now + secs(60), millis(100), |s| {
        s.log().state().running_operations().next().is_none()
            && s.rebalancer().is_some_and(|r| r.idle())
    });
    assert_kept_promises(&sim, seed);
    assert!(
        ended.is_some(),
        "operations left running: {:?}",
        sim.log().state().running_operations().collect::<Vec<_>>()
    );
}
