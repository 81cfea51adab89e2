//! The replay contract: the same seed gives the same event trace.

use netsim::scenario::{self, Params, Scenario};

fn hash(seed: u64) -> (u64, u64) {
    let report = scenario::run(Scenario::Crash, &Params::new(15, 60, seed)).expect("runs");
    assert!(report.passed(), "{}", report.failure_text());
    (report.trace_hash, report.events)
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let first = hash(42);
    assert_eq!(first, hash(42), "seed 42 replayed differently");
    assert_ne!(first.0, hash(43).0, "another seed gave the same trace");
}
