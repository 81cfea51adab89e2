//! The rebalancing planner on random clusters: 3–20 nodes in 1–4 zones, 1–3 ACTIVE
//! tables of 1–300 partitions in all with 1–3 replicas (placed by the placement
//! planner), then 1–4 empty nodes joining, sometimes one node excluded.
//!
//! `replay` applies a plan to the replica sets of the state (migrations cannot run
//! here) and checks every rule on the way: no two copies on a node, one migration per
//! partition, no handover on a migrated partition, handovers only to ready replicas,
//! receivers HEALTHY and not excluded, ACTIVE tables only, zone spread never lower.
//!
//! Optimality is checked against `optimum`, exact min-cost flows over three models of
//! the moves: two relaxations (several copies of a partition may move; or one per
//! partition, to a target allowed from *some* member) give a lower bound on any plan's
//! moves and prove a band unreachable; a restriction (one per partition, to a target
//! allowed from *every* member) proves a band reachable. Asserted for every case:
//! * a plan never reaches a band proven unreachable, nor with fewer moves than the
//!   lower bound (checks of the oracles);
//! * the plan ends where no single allowed move brings a node out of the band closer to
//!   one at least two away (replicas and primaries alike);
//! * one zone (the oracles are then exact): the band is reached exactly when reachable,
//!   with `max(over, under)` moves, the bound of the module documentation.
//!
//! With several zones the planner is a heuristic; `rebalance_quality_on_a_fixed_sample`
//! bounds its misses and extra moves over a fixed sample, and `survey` prints the same
//! figures over many cases.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shared::model::{NodeId, NodeStatus, Partition, PartitionId, PartitionStatus, TableStatus};
use shared::placement::PlacementConfig;
use shared::rebalance::{RebalanceConfig, RebalancePlan, Target, plan_rebalance};
use shared::state::MetaState;

use crate::fixtures::{create, place, provisioned, ready_and_activate, register, spec};

/// One random cluster and join.
#[derive(Debug, Clone)]
struct Case {
    /// Zone index of each node before the join.
    base: Vec<usize>,
    /// (partitions, replication factor) of each table.
    tables: Vec<(u64, usize)>,
    /// Zone index of each joining node.
    joining: Vec<usize>,
    tolerance: usize,
    /// A node (index among all) the leader excludes, if any.
    excluded: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    let tables = prop::collection::vec((1u64..=100, 1usize..=3), 1..=3);
    (
        1usize..=4,
        3usize..=20,
        tables,
        1usize..=4,
        0usize..=2,
        any::<bool>(),
    )
        .prop_flat_map(|(zones, nodes, tables, joining, tolerance, round_robin)| {
            let zone = 0..zones;
            let base = if round_robin {
                Just((0..nodes).map(|i| i % zones).collect()).boxed()
            } else {
                prop::collection::vec(zone.clone(), nodes).boxed()
            };
            let exclude = prop_oneof![3 => Just(None), 1 => (0..nodes + joining).prop_map(Some)];
            let joining = prop::collection::vec(zone, joining);
            (base, Just(tables), joining, Just(tolerance), exclude)
        })
        .prop_map(|(base, tables, joining, tolerance, excluded)| Case {
            base,
            tables,
            joining,
            tolerance,
            excluded,
        })
}

fn build(c: &Case) -> (MetaState, BTreeSet<NodeId>) {
    let mut s = MetaState::new();
    for (i, z) in c.base.iter().enumerate() {
        s.apply(&register(i as NodeId + 1, &format!("z{z}"), 1, 0))
            .unwrap();
    }
    for (i, &(partitions, replication_factor)) in c.tables.iter().enumerate() {
        let t = create(
            &mut s,
            spec(&format!("table{i}"), provisioned(1, partitions * 1000)),
        );
        let cfg = PlacementConfig {
            replication_factor,
            ..PlacementConfig::default()
        };
        place(&mut s, t, &cfg);
        ready_and_activate(&mut s, t);
    }
    let first = c.base.len() as NodeId + 1;
    for (i, z) in c.joining.iter().enumerate() {
        s.apply(&register(first + i as NodeId, &format!("z{z}"), 1, 0))
            .unwrap();
    }
    let excluded = c.excluded.map(|i| i as NodeId + 1).into_iter().collect();
    (s, excluded)
}

fn zone(s: &MetaState, n: NodeId) -> &str {
    s.node(n).unwrap().zone.as_str()
}

fn zone_spread(s: &MetaState, members: &[NodeId]) -> usize {
    members
        .iter()
        .map(|n| zone(s, *n))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Nodes that may take part: HEALTHY and not excluded, by id.
fn participating(s: &MetaState, excluded: &BTreeSet<NodeId>) -> Vec<NodeId> {
    s.nodes()
        .filter(|n| n.status == NodeStatus::Healthy && !excluded.contains(&n.node_id))
        .map(|n| n.node_id)
        .collect()
}

fn movable(s: &MetaState, p: &Partition) -> bool {
    s.table(p.table_id).unwrap().status == TableStatus::Active
        && p.status == PartitionStatus::Healthy
        && p.is_ready()
        && p.all_nodes()
            .all(|n| s.node(n).unwrap().status == NodeStatus::Healthy)
}

/// Whether `p`'s copy on `from` may move to `to` (not a member; zone spread kept).
fn legal(s: &MetaState, p: &Partition, from: NodeId, to: NodeId) -> bool {
    let members: Vec<NodeId> = p.all_nodes().collect();
    if members.contains(&to) {
        return false;
    }
    let mut after = members.clone();
    let at = after.iter().position(|n| *n == from).unwrap();
    after[at] = to;
    zone_spread(s, &after) >= zone_spread(s, &members)
}

/// Replica sets and participating counts after a plan.
struct Replayed {
    migrated: BTreeSet<PartitionId>,
    handed_over: BTreeSet<PartitionId>,
    replicas: BTreeMap<NodeId, usize>,
    primaries: BTreeMap<NodeId, usize>,
}

/// Applies `plan` to the replica sets of `s`, checking every rule.
fn replay(
    s: &MetaState,
    plan: &RebalancePlan,
    excluded: &BTreeSet<NodeId>,
) -> Result<Replayed, TestCaseError> {
    let nodes = participating(s, excluded);
    let mut sets: BTreeMap<PartitionId, Vec<NodeId>> = s
        .partitions()
        .map(|p| (p.partition_id, p.all_nodes().collect()))
        .collect();
    let mut migrated = BTreeSet::new();
    for m in &plan.moves {
        let p = s.partition(m.partition_id).unwrap();
        prop_assert!(migrated.insert(m.partition_id), "{:?} twice", m);
        prop_assert!(movable(s, p) && m.expected_epoch == p.epoch, "{:?}", m);
        prop_assert!(nodes.contains(&m.from) && nodes.contains(&m.to), "{:?}", m);
        let set = sets.get_mut(&m.partition_id).unwrap();
        prop_assert!(!set.contains(&m.to), "{:?}: two copies on one node", m);
        let before = zone_spread(s, set);
        let at = set.iter().position(|n| *n == m.from);
        prop_assert!(at.is_some(), "{:?}: not a member", m);
        set[at.unwrap()] = m.to;
        prop_assert!(zone_spread(s, set) >= before, "{:?} loses a zone", m);
    }
    let mut handed_over = BTreeSet::new();
    for m in &plan.primary_moves {
        let p = s.partition(m.partition_id).unwrap();
        prop_assert!(!migrated.contains(&m.partition_id), "{:?} also migrates", m);
        prop_assert!(handed_over.insert(m.partition_id), "{:?} twice", m);
        prop_assert!(movable(s, p) && m.expected_epoch == p.epoch, "{:?}", m);
        prop_assert_eq!(m.from, p.primary_node_id);
        prop_assert!(p.replica_node_ids.contains(&m.to) && p.ready_node_ids.contains(&m.to));
        prop_assert!(nodes.contains(&m.to), "{:?}", m);
        let set = sets.get_mut(&m.partition_id).unwrap();
        let at = set.iter().position(|n| *n == m.to).unwrap();
        set.swap(0, at);
    }
    let mut replicas: BTreeMap<NodeId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut primaries = replicas.clone();
    for set in sets.values() {
        for (k, n) in set.iter().enumerate() {
            if let Some(c) = replicas.get_mut(n) {
                *c += 1;
                *primaries.get_mut(n).unwrap() += usize::from(k == 0);
            }
        }
    }
    Ok(Replayed {
        migrated,
        handed_over,
        replicas,
        primaries,
    })
}

/// Whether a unit may go from a node at `from` to one at `to` and even them out with
/// one of them out of the band.
fn evens_out(t: &Target, from: usize, to: usize) -> bool {
    from >= to + 2 && (from > t.high || to < t.low)
}

fn over_under(counts: &BTreeMap<NodeId, usize>, t: &Target) -> (usize, usize) {
    let over = counts.values().map(|c| c.saturating_sub(t.high)).sum();
    let under = counts.values().map(|c| t.low.saturating_sub(*c)).sum();
    (over, under)
}

/// No single allowed move evens out a node out of the band any more.
fn check_local_optimum(
    s: &MetaState,
    plan: &RebalancePlan,
    r: &Replayed,
) -> Result<(), TestCaseError> {
    let (t, pt) = (&plan.ideal.replicas, &plan.ideal.primaries);
    for p in s.partitions().filter(|p| movable(s, p)) {
        // A partition gets one operation per plan: a migration or a handover.
        if r.migrated.contains(&p.partition_id) || r.handed_over.contains(&p.partition_id) {
            continue;
        }
        for from in p.all_nodes().filter(|n| r.replicas.contains_key(n)) {
            for (&to, &c) in &r.replicas {
                let better = evens_out(t, r.replicas[&from], c) && legal(s, p, from, to);
                prop_assert!(!better, "{} could move {} -> {}", p.partition_id, from, to);
            }
        }
        let from = p.primary_node_id;
        for to in p
            .replica_node_ids
            .iter()
            .filter(|n| p.ready_node_ids.contains(n))
        {
            let (Some(&cf), Some(&ct)) = (r.primaries.get(&from), r.primaries.get(to)) else {
                continue;
            };
            prop_assert!(
                !evens_out(pt, cf, ct),
                "{} could hand over {} -> {}",
                p.partition_id,
                from,
                to
            );
        }
    }
    Ok(())
}

/// Min-cost flow by successive shortest paths with potentials, augmenting a blocking
/// flow per phase (primal-dual), for the oracle.
struct Flow {
    adj: Vec<Vec<usize>>,
    to: Vec<usize>,
    cap: Vec<i64>,
    cost: Vec<i64>,
}

impl Flow {
    fn new(n: usize) -> Self {
        Flow {
            adj: vec![Vec::new(); n],
            to: Vec::new(),
            cap: Vec::new(),
            cost: Vec::new(),
        }
    }

    fn edge(&mut self, u: usize, v: usize, cap: i64, cost: i64) {
        if cap == 0 {
            return;
        }
        for (a, b, c, w) in [(u, v, cap, cost), (v, u, 0, -cost)] {
            self.adj[a].push(self.to.len());
            self.to.push(b);
            self.cap.push(c);
            self.cost.push(w);
        }
    }

    /// The least total cost of any flow from `s` to `t` (0 for no flow).
    fn min_cost(&mut self, s: usize, t: usize) -> i64 {
        let n = self.adj.len();
        let mut pot = self.bellman_ford(s);
        let mut total = 0;
        loop {
            let dist = self.dijkstra(s, &pot);
            if dist[t] == i64::MAX {
                return total;
            }
            for v in 0..n {
                pot[v] += dist[v].min(dist[t]);
            }
            let path_cost = pot[t] - pot[s];
            if path_cost >= 0 {
                return total;
            }
            total += path_cost * self.blocking_flow(s, t, &pot);
        }
    }

    fn reduced(&self, e: usize, from: usize, pot: &[i64]) -> i64 {
        self.cost[e] + pot[from] - pot[self.to[e]]
    }

    fn bellman_ford(&self, s: usize) -> Vec<i64> {
        let mut dist = vec![i64::MAX; self.adj.len()];
        let mut queued = vec![false; self.adj.len()];
        dist[s] = 0;
        let mut queue = VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            queued[u] = false;
            for &e in &self.adj[u] {
                let v = self.to[e];
                if self.cap[e] > 0 && dist[u] + self.cost[e] < dist[v] {
                    dist[v] = dist[u] + self.cost[e];
                    if !queued[v] {
                        queued[v] = true;
                        queue.push_back(v);
                    }
                }
            }
        }
        // Unreachable nodes stay unreachable (capacities only shrink from s's side).
        dist.iter()
            .map(|d| if *d == i64::MAX { 0 } else { *d })
            .collect()
    }

    fn dijkstra(&self, s: usize, pot: &[i64]) -> Vec<i64> {
        let mut dist = vec![i64::MAX; self.adj.len()];
        let mut heap = std::collections::BinaryHeap::new();
        dist[s] = 0;
        heap.push(std::cmp::Reverse((0, s)));
        while let Some(std::cmp::Reverse((d, u))) = heap.pop() {
            if d > dist[u] {
                continue;
            }
            for &e in &self.adj[u] {
                let v = self.to[e];
                let nd = d + self.reduced(e, u, pot);
                if self.cap[e] > 0 && nd < dist[v] {
                    dist[v] = nd;
                    heap.push(std::cmp::Reverse((nd, v)));
                }
            }
        }
        dist
    }

    /// Augments along zero-reduced-cost edges until none leads to `t` (Dinic); returns
    /// the flow pushed.
    fn blocking_flow(&mut self, s: usize, t: usize, pot: &[i64]) -> i64 {
        let mut pushed = 0;
        loop {
            let level = self.levels(s, pot);
            if level[t] == usize::MAX {
                return pushed;
            }
            let mut next = vec![0; self.adj.len()];
            while let Some(f) = self.augment(s, t, i64::MAX, &level, &mut next, pot) {
                pushed += f;
            }
        }
    }

    fn admissible(&self, e: usize, u: usize, pot: &[i64]) -> bool {
        self.cap[e] > 0 && self.reduced(e, u, pot) == 0
    }

    fn levels(&self, s: usize, pot: &[i64]) -> Vec<usize> {
        let mut level = vec![usize::MAX; self.adj.len()];
        level[s] = 0;
        let mut queue = VecDeque::from([s]);
        while let Some(u) = queue.pop_front() {
            for &e in &self.adj[u] {
                let v = self.to[e];
                if level[v] == usize::MAX && self.admissible(e, u, pot) {
                    level[v] = level[u] + 1;
                    queue.push_back(v);
                }
            }
        }
        level
    }

    fn augment(
        &mut self,
        u: usize,
        t: usize,
        limit: i64,
        level: &[usize],
        next: &mut [usize],
        pot: &[i64],
    ) -> Option<i64> {
        if u == t {
            return Some(limit);
        }
        while next[u] < self.adj[u].len() {
            let e = self.adj[u][next[u]];
            let v = self.to[e];
            let on_level = level[v] == level[u] + 1 && self.admissible(e, u, pot);
            let limit = limit.min(self.cap[e]);
            if let Some(f) = on_level
                .then(|| self.augment(v, t, limit, level, next, pot))
                .flatten()
            {
                self.cap[e] -= f;
                self.cap[e ^ 1] += f;
                return Some(f);
            }
            next[u] += 1;
        }
        None
    }
}

/// Weight of a unit that must move (out of the band): above any count of moves.
const FORCED: i64 = 1_000_000;

/// Which moves an oracle allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// Each copy may move to any target legal for it, several copies of a partition
    /// too: a relaxation (lower bound).
    PerCopy,
    /// One move per partition, to a target legal from *some* participating member: a
    /// relaxation (lower bound); exact when all nodes share one zone.
    OnceAny,
    /// One move per partition, to a target legal from *every* participating member: a
    /// restriction (its optimum is reachable by the planner's rules).
    OnceAll,
}

/// The fewest moves bringing every participating node into the band `t` with the moves
/// `model` allows, or `None` when no set of such moves does.
fn optimum(s: &MetaState, t: &Target, excluded: &BTreeSet<NodeId>, model: Model) -> Option<usize> {
    let nodes = participating(s, excluded);
    let index: BTreeMap<NodeId, usize> =
        nodes.iter().enumerate().map(|(i, n)| (*n, i + 2)).collect();
    let parts: Vec<&Partition> = s.partitions().filter(|p| movable(s, p)).collect();
    let (src, sink) = (0, 1);
    let mut f = Flow::new(
        2 + nodes.len() + 2 * s.partitions().map(|p| p.all_nodes().count()).sum::<usize>(),
    );
    let mut forced = 0;
    for n in &nodes {
        let (x, c) = (index[n], s.node(*n).unwrap().partition_ids.len() as i64);
        let (low, high) = (t.low as i64, t.high as i64);
        let (must_give, must_take) = ((c - high).max(0), (low - c).max(0));
        forced += must_give + must_take;
        f.edge(src, x, must_give, -FORCED);
        f.edge(src, x, (c - low).max(0) - must_give, 0);
        f.edge(x, sink, must_take, -FORCED);
        f.edge(x, sink, (high - c).max(0) - must_take, 0);
    }
    let mut next = 2 + nodes.len();
    for p in parts {
        let sources: Vec<NodeId> = p.all_nodes().filter(|n| index.contains_key(n)).collect();
        if model == Model::PerCopy {
            for from in &sources {
                f.edge(index[from], next, 1, 0);
                for to in nodes.iter().filter(|to| legal(s, p, *from, **to)) {
                    f.edge(next, index[to], 1, 1);
                }
                next += 1;
            }
            continue;
        }
        // A hub of capacity 1: at most one copy of the partition moves.
        let (hub_in, hub_out) = (next, next + 1);
        next += 2;
        f.edge(hub_in, hub_out, 1, 1);
        for from in &sources {
            f.edge(index[from], hub_in, 1, 0);
        }
        for to in &nodes {
            let mut legal_from = sources.iter().map(|from| legal(s, p, *from, *to));
            let ok = match model {
                Model::OnceAny => legal_from.any(|ok| ok),
                _ => !sources.is_empty() && legal_from.all(|ok| ok),
            };
            if ok {
                f.edge(hub_out, index[to], 1, 0);
            }
        }
    }
    let moves = f.min_cost(src, sink) + forced * FORCED;
    (moves < FORCED).then_some(moves as usize)
}

/// What one case gave, for the assertions and the survey.
#[derive(Debug)]
struct Outcome {
    moves: usize,
    /// `max(over, under)` before the plan.
    bound: usize,
    /// The best lower bound of the relaxed oracles; `None`: the band is unreachable.
    lower: Option<usize>,
    /// The restricted oracle's optimum; `Some`: the band is reachable.
    upper: Option<usize>,
    /// Replicas still out of the band after the plan (`over + under`).
    remaining: usize,
    primaries_within: bool,
    one_zone: bool,
}

impl Outcome {
    fn within(&self) -> bool {
        self.remaining == 0
    }
}

fn run(c: &Case) -> Result<Outcome, TestCaseError> {
    let (s, excluded) = build(c);
    let cfg = RebalanceConfig {
        tolerance: c.tolerance,
        max_moves: 100_000,
    };
    let plan = plan_rebalance(&s, &cfg, &excluded);
    prop_assert!(!plan.truncated);
    prop_assert_eq!(&plan, &plan_rebalance(&s, &cfg, &excluded), "deterministic");
    let r = replay(&s, &plan, &excluded)?;
    let (t, pt) = (&plan.ideal.replicas, &plan.ideal.primaries);
    let after = (plan.after.replicas.over, plan.after.replicas.under);
    prop_assert_eq!(over_under(&r.replicas, t), after);
    prop_assert_eq!(
        over_under(&r.primaries, pt),
        (plan.after.primaries.over, plan.after.primaries.under)
    );
    check_local_optimum(&s, &plan, &r)?;
    let zones: BTreeSet<&str> = participating(&s, &excluded)
        .into_iter()
        .map(|n| zone(&s, n))
        .collect();
    let per_copy = optimum(&s, t, &excluded, Model::PerCopy);
    let once_any = optimum(&s, t, &excluded, Model::OnceAny);
    Ok(Outcome {
        moves: plan.moves.len(),
        bound: plan.optimal_moves(),
        lower: per_copy.zip(once_any).map(|(a, b)| a.max(b)),
        upper: optimum(&s, t, &excluded, Model::OnceAll),
        remaining: after.0 + after.1,
        primaries_within: plan.after.primaries.within_tolerance(),
        one_zone: zones.len() <= 1,
    })
}

/// Per-case optimality: what holds for every plan (the oracles' bounds), and exactness
/// with one zone. With several zones the planner is a heuristic: see
/// `rebalance_quality_on_a_fixed_sample`.
fn check_optimality(o: &Outcome) -> Result<(), TestCaseError> {
    let Some(lower) = o.lower else {
        prop_assert!(!o.within(), "reached an unreachable band: {:?}", o);
        return Ok(());
    };
    prop_assert!(
        lower >= o.bound && o.upper.is_none_or(|u| u >= lower),
        "{:?}",
        o
    );
    if o.within() {
        prop_assert!(o.moves >= lower, "below the optimum: {:?}", o);
    }
    if o.one_zone {
        // One zone: the hub oracles are exact and agree.
        prop_assert_eq!(o.lower, o.upper, "{:?}", o);
        prop_assert_eq!(o.within(), o.upper.is_some(), "{:?}", o);
        if o.within() {
            prop_assert_eq!(o.moves, o.bound, "{:?}", o);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn rebalance_is_minimal_and_keeps_the_rules(c in case()) {
        let o = run(&c)?;
        check_optimality(&o)?;
    }
}

/// Totals over `cases` cases drawn from a fixed seed.
#[derive(Debug, Default)]
struct Totals {
    cases: usize,
    /// Band unreachable (a relaxed oracle says so).
    unreachable: usize,
    /// Band certainly reachable (the restricted oracle reaches it), and of those reached.
    reachable: usize,
    reachable_reached: usize,
    /// Reachability unknown, and of those reached.
    unknown: usize,
    unknown_reached: usize,
    /// Over the cases reached: moves, lower bounds, cases at the lower bound.
    moves: usize,
    lower: usize,
    at_lower: usize,
    /// Cases reached with more than 5% above the lower bound.
    above_5_percent: Vec<(usize, usize)>,
    primaries_within: usize,
}

fn totals(cases: usize) -> Totals {
    let mut runner = TestRunner::deterministic();
    let strategy = case();
    let mut t = Totals {
        cases,
        ..Totals::default()
    };
    for _ in 0..cases {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        let o = run(&c).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        check_optimality(&o).unwrap_or_else(|e| panic!("{c:?}: {e}"));
        t.primaries_within += usize::from(o.primaries_within);
        let Some(lower) = o.lower else {
            t.unreachable += 1;
            continue;
        };
        if o.upper.is_some() {
            t.reachable += 1;
            t.reachable_reached += usize::from(o.within());
        } else {
            t.unknown += 1;
            t.unknown_reached += usize::from(o.within());
        }
        if o.within() {
            t.moves += o.moves;
            t.lower += lower;
            t.at_lower += usize::from(o.moves == lower);
            if o.moves * 100 > lower * 105 {
                t.above_5_percent.push((o.moves, lower));
            }
        }
    }
    t
}

/// Quality over a fixed sample, where single cases may miss (several zones): at most
/// 1% of the certainly reachable bands missed, at most 1% more moves than the lower
/// bounds in all, and at most 2% of the plans above their bound by more than 5%.
#[test]
fn rebalance_quality_on_a_fixed_sample() {
    let t = totals(200);
    println!("{t:?}");
    assert!(t.reachable_reached * 100 >= t.reachable * 99, "{t:?}");
    assert!(t.moves * 100 <= t.lower * 101, "{t:?}");
    assert!(t.above_5_percent.len() * 50 <= t.cases, "{t:?}");
}

/// The same over many cases, printed for the report: run with
/// `REBALANCE_SURVEY_CASES=4000 cargo test -p shared --test props rebalance::survey --
/// --ignored --nocapture`.
#[test]
#[ignore = "slow survey; prints figures for the report"]
fn survey() {
    let cases = std::env::var("REBALANCE_SURVEY_CASES").map_or(1000, |v| v.parse().unwrap());
    println!("{:?}", totals(cases));
}

/// One node joins a zoned cluster where a spare zone lets copies cross zones (rf below
/// the zone count): the band is reached with exactly the optimum of the relaxed
/// oracles, which is the bound `max(over, under)` unless the placement's replica sets
/// force detours.
#[test]
fn one_node_joining_a_zoned_cluster_takes_the_optimum() {
    for (zones, rf) in [(3, 2), (4, 2)] {
        for nodes in [zones, 2 * zones, 3 * zones, 5 * zones] {
            let c = Case {
                base: (0..nodes).map(|i| i % zones).collect(),
                tables: vec![(100, rf); 3],
                joining: vec![0],
                tolerance: 1,
                excluded: None,
            };
            let o = run(&c).unwrap();
            println!("{nodes} nodes in {zones} zones + 1, 300 x {rf}: {o:?}");
            assert_eq!(o.remaining, 0, "{o:?}");
            assert_eq!(Some(o.moves), o.lower, "{o:?}");
        }
    }
}

/// Regression (found by `rebalance_is_minimal_and_keeps_the_rules`): 6 nodes in one
/// zone, one excluded, 3 joining, 41 partitions x 3, tolerance 0. The node left with
/// only copies of partitions already migrating stayed one above the band after 36 moves,
/// where 37 reach it: it now takes over a planned move of a partition it also holds.
#[test]
fn a_node_whose_copies_all_migrate_still_sheds_one() {
    for excluded in [4, 5] {
        let c = Case {
            base: vec![0; 6],
            tables: vec![(41, 3)],
            joining: vec![0; 3],
            tolerance: 0,
            excluded: Some(excluded),
        };
        let o = run(&c).unwrap();
        assert_eq!(o.remaining, 0, "{o:?}");
        assert_eq!(o.moves, o.bound, "{o:?}");
        check_optimality(&o).unwrap();
    }
}
