//! Every registered scenario at CI size: it must keep every promise.

use netsim::scenario::{self, Params, Report, Scenario};

/// Agents in the CI runs.
const NODES: usize = 30;
/// Partitions in the CI runs.
const PARTITIONS: usize = 300;
/// Virtual seconds of loss in the CI run of `lossy`.
const LOSSY_CI_S: u64 = 120;
/// Virtual seconds of faults in the CI run of `soak`.
const SOAK_CI_S: u64 = 120;

fn run(which: Scenario, params: &Params) -> Report {
    let report = scenario::run(which, params).expect("the scenario runs");
    assert!(report.passed(), "{}", report.failure_text());
    report
}

#[test]
fn bootstrap_converges() {
    let report = run(Scenario::Bootstrap, &Params::new(NODES, PARTITIONS, 11));
    let converged = report.figures["converge_ms"].as_f64().expect("measured");
    assert!(converged < 10_000.0, "converged after {converged} ms");
}

#[test]
fn provisioned_tables_all_become_active() {
    // Every commit is checked in full on every replica in a debug build, and the
    // assigner re-plans every CREATING table on each step: a small set keeps this short.
    let mut params = Params::new(20, 100, 7);
    params.tables = 50;
    let report = run(Scenario::Provision, &params);
    assert_eq!(report.figures["tables"], 50);
    assert!(report.figures["all_active_ms"].as_f64().is_some());
    assert_eq!(report.violation_count, 0);
}

#[test]
fn crashes_of_one_five_and_a_zone_are_detected_and_repaired() {
    let report = run(Scenario::Crash, &Params::new(NODES, PARTITIONS, 1));
    assert_eq!(report.figures["false_positives"], 0);
    let detect = report.figures["detect_max_ms"].as_f64().expect("measured");
    // The first suspicion (a probe every 300 ms, indirect probes) plus the suspicion
    // hold, or the 3 s window of silence, whichever ends later: the 5 s goal.
    assert!(detect < 5_000.0, "detection took {detect} ms");
}

#[test]
fn ten_percent_loss_fails_no_one() {
    let mut params = Params::new(NODES, PARTITIONS, 5);
    params.duration_s = LOSSY_CI_S;
    let report = run(Scenario::Lossy, &params);
    assert_eq!(report.figures["false_positives"], 0);
}

#[test]
fn scale_out_moves_near_the_optimum() {
    // Each move is five commits applied on every replica, each checked in full in a
    // debug build: a smaller cluster keeps this test short.
    let report = run(Scenario::ScaleOut, &Params::new(20, 60, 3));
    let moved = report.figures["moved_partitions"]
        .as_u64()
        .expect("measured");
    let optimal = report.figures["optimal_moves"].as_u64().expect("measured");
    assert!(optimal > 0, "ten empty nodes need copies");
    assert!(
        moved * 100 <= optimal * 105,
        "{moved} moves for a lower bound of {optimal}"
    );
}

#[test]
fn a_cut_off_minority_is_failed_without_two_serving_primaries_and_rejoins() {
    // Seed 1 cuts the leader off with the minority; seed 22 a follower voter.
    for (seed, leader_cut) in [(1, true), (22, false)] {
        let report = run(Scenario::Partition, &Params::new(NODES, PARTITIONS, seed));
        assert_eq!(report.figures["leader_cut"], leader_cut, "seed {seed}");
        assert_eq!(report.figures["serving_overlap_max_ms"], 0.0, "seed {seed}");
    }
}

#[test]
fn a_short_soak_of_random_faults_heals_completely() {
    let mut params = Params::new(20, 100, 1);
    params.duration_s = SOAK_CI_S;
    run(Scenario::Soak, &params);
}

#[test]
fn a_leader_cut_off_one_way_fails_no_live_node() {
    // Seed 2 at 30 nodes cuts {1, 3, 5, 9, 17, 20} (a voter quorum and the leader) from
    // sending to the rest at 53 s; its leader used to fail the live majority (README).
    let mut params = Params::new(30, 300, 2);
    params.duration_s = SOAK_CI_S;
    run(Scenario::Soak, &params);
}

#[test]
fn a_hot_partition_is_split_and_its_busier_child_moved() {
    let report = run(Scenario::HotSplit, &Params::new(NODES, PARTITIONS, 1));
    let split = report.figures["split_ms"].as_f64().expect("split");
    let moved = report.figures["child_moved_ms"].as_f64().expect("moved");
    // Hot for the Scaler's whole 60 s window, noticed on its 5 s rounds.
    assert!(
        (60_000.0..80_000.0).contains(&split),
        "split after {split} ms"
    );
    assert!(moved > split, "the child moves after the split");
    assert_eq!(report.figures["failed_splits"], 0);
    assert_eq!(report.figures["failed_moves"], 0);
}
