//! The Scaler's pure scale-out planner: which replicas to migrate, and which primary
//! roles to hand over, so that the nodes accepting new work hold even replica and
//! primary counts, with the fewest moves.
//!
//! Only *participating* nodes take part: HEALTHY and not `excluded`. Their load is every
//! partition they hold (of any table); what FAILED or DRAINING nodes hold is recovery's
//! business. With `R` replicas and `P` primaries on `N` participating nodes, each node
//! should hold between `floor(R/N) - tolerance` and `ceil(R/N) + tolerance` replicas
//! (the same for primaries). Balanced nodes make balanced zones: a zone's share is its
//! node count.
//!
//! A partition is *movable* when its table is ACTIVE, its status HEALTHY, every member
//! ready and every member HEALTHY (a partition with a member under recovery is left to
//! recovery). A move never puts two copies on one node, never reduces the number of
//! distinct zones a partition spans, and only ever targets a participating node; each
//! partition moves at most one replica per plan, and a partition whose replica moves
//! gets no primary move in the same plan (two operations never run on one partition).
//!
//! # Fewest moves
//!
//! Let `over` be the replicas above the upper bound, summed over nodes, and `under` the
//! replicas missing below the lower bound. One move takes one replica off one node and
//! puts it on one other, so no plan needs fewer than `max(over, under)` moves
//! (`Balance::moves_needed`), and without constraints this is reached: while `over`
//! exceeds `under`, move from a node above the bound to one below it, and symmetrically.
//! The planner makes such *strict* moves (each lowers `max(over, under)` by one) while
//! any is allowed by the placement rules, so when the rules never block it the plan has
//! exactly `max(over, under)` moves: when one empty node joins `N` balanced nodes that
//! is `R/(N+1)` up to the tolerance.
//!
//! When the rules block every strict move (zones: with as many zones as replicas, a
//! copy can only move within its zone, so a zone's total is fixed), the planner goes on
//! with *relaxed* moves (lower `over + under`), then the shortest *chain* of moves from
//! a node above the band to one below it (each node between gives one copy and takes
//! one; a node may also give by taking over a planned move of a partition it holds
//! too, whose source then keeps its copy: no move added), then *evening* moves between a node out of the band and one at least two
//! away (within a zone, typically). Every step lowers the sum of squared counts, so
//! planning ends; it ends when no single allowed move can bring an out-of-band node
//! closer to the others (or at `max_moves`). A step that would take a copy off a node
//! that an earlier move fills instead redirects that move (one move fewer).
//!
//! Which move, among equals: the most loaded source, a target in its own zone before
//! others (moves across zones are the scarce ones), then the copy that spreads its
//! partition over more zones, that carries a primary when the target is short of
//! primaries (and not otherwise), that could not cross zones anyway, and that other
//! nodes short of movable copies do not need. These choices keep the plan at the bound
//! in most zoned clusters; where replica sets and zones force detours the plan may need
//! more moves than the bound, or miss the band (the property tests measure how often
//! against an exact flow oracle).
//!
//! Primaries: a migrated copy of a primary takes the primary role along. After the
//! replica moves, primary roles are shifted by the same classes of steps, each either a
//! `PrimaryMove` (the role handed to a ready replica of a partition that does not
//! migrate; no data moves) or a *swap*: a planned migration takes another copy of the
//! same source for the same target, one that carries the role or not, so that the
//! target leads one more or one fewer (no move added). Swaps may free a copy a replica
//! move can use, so both phases run again until the replica phase finds nothing.
//!
//! Deterministic: equal states give equal plans.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::model::{NodeId, NodeStatus, Partition, PartitionId, PartitionStatus, TableStatus};
use crate::state::MetaState;

/// Tunables of the rebalancing planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// Allowed distance of a node's count from the ideal floor/ceiling (replicas and
    /// primaries alike).
    pub tolerance: usize,
    /// Most replica moves in one plan; also the most primary moves. The rest waits for
    /// the next plan (planning is level-triggered, so the total stays minimal).
    pub max_moves: usize,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            tolerance: 1,
            max_moves: 512,
        }
    }
}

/// One replica (possibly the primary's copy, which takes the primary role along) to
/// migrate from one node to another; the migration machinery executes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplicaMove {
    /// Partition whose replica moves.
    pub partition_id: PartitionId,
    /// Node giving up its copy.
    pub from: NodeId,
    /// Node receiving the copy (never already a member).
    pub to: NodeId,
    /// Epoch the plan was made against.
    pub expected_epoch: u64,
}

/// The primary role of a partition, handed to one of its ready replicas (no data moves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrimaryMove {
    /// Partition whose primary changes.
    pub partition_id: PartitionId,
    /// Current primary.
    pub from: NodeId,
    /// New primary: a ready replica of the partition.
    pub to: NodeId,
    /// Epoch the plan was made against.
    pub expected_epoch: u64,
}

/// The even share of a total over the participating nodes, and the allowed band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Target {
    /// Total to share (replicas or primaries held by participating nodes).
    pub total: usize,
    /// Participating nodes.
    pub nodes: usize,
    /// `floor(total / nodes)` (0 without nodes).
    pub floor: usize,
    /// `ceil(total / nodes)` (0 without nodes).
    pub ceil: usize,
    /// Lowest allowed count: `floor - tolerance` (saturating).
    pub low: usize,
    /// Highest allowed count: `ceil + tolerance`.
    pub high: usize,
}

impl Target {
    fn new(total: usize, nodes: usize, tolerance: usize) -> Self {
        let (floor, ceil) = match nodes {
            0 => (0, 0),
            n => (total / n, total.div_ceil(n)),
        };
        Target {
            total,
            nodes,
            floor,
            ceil,
            low: floor.saturating_sub(tolerance),
            high: ceil + tolerance,
        }
    }
}

/// The ideal replica and primary shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ideal {
    /// Replicas (primaries included) per node.
    pub replicas: Target,
    /// Primaries per node.
    pub primaries: Target,
}

/// How far counts are from their band.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balance {
    /// Lowest count of a participating node.
    pub min: usize,
    /// Highest count of a participating node.
    pub max: usize,
    /// Sum over nodes of the count above `Target::high`.
    pub over: usize,
    /// Sum over nodes of the count missing below `Target::low`.
    pub under: usize,
}

impl Balance {
    fn of(counts: &[usize], t: &Target) -> Self {
        Balance {
            min: counts.iter().copied().min().unwrap_or(0),
            max: counts.iter().copied().max().unwrap_or(0),
            over: counts.iter().map(|c| c.saturating_sub(t.high)).sum(),
            under: counts.iter().map(|c| t.low.saturating_sub(*c)).sum(),
        }
    }

    /// Whether every node is within the band.
    pub fn within_tolerance(&self) -> bool {
        self.over == 0 && self.under == 0
    }

    /// The fewest single-unit moves that can bring every node within the band:
    /// `max(over, under)` (reached when placement rules allow).
    pub fn moves_needed(&self) -> usize {
        self.over.max(self.under)
    }
}

/// Replica and primary balance at one point of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    /// Replicas per node.
    pub replicas: Balance,
    /// Primaries per node.
    pub primaries: Balance,
}

/// A descriptive rebalancing plan; executing it is the migration machinery's job.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RebalancePlan {
    /// Replica migrations, in planning order (each partition at most once).
    pub moves: Vec<ReplicaMove>,
    /// Primary handovers, to be done after the migrations (partitions not in `moves`).
    pub primary_moves: Vec<PrimaryMove>,
    /// The shares aimed at.
    pub ideal: Ideal,
    /// Balance now.
    pub before: Figures,
    /// Balance once every move of the plan is done.
    pub after: Figures,
    /// `max_moves` cut the plan short (more moves would follow).
    pub truncated: bool,
}

impl RebalancePlan {
    /// Whether the plan does nothing.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty() && self.primary_moves.is_empty()
    }

    /// The lower bound on replica moves, for reporting moves against the optimum.
    pub fn optimal_moves(&self) -> usize {
        self.before.replicas.moves_needed()
    }
}

/// Plans the replica migrations and primary handovers that bring every HEALTHY node not
/// in `excluded` within `cfg.tolerance` of the even share, with the fewest moves (see
/// the module documentation for the rules and the bound). Deterministic.
pub fn plan_rebalance(
    state: &MetaState,
    cfg: &RebalanceConfig,
    excluded: &BTreeSet<NodeId>,
) -> RebalancePlan {
    let mut planner = Planner::new(state, cfg.tolerance, excluded);
    let ideal = planner.ideal();
    let before = planner.figures(&ideal);
    let mut truncated = planner.plan_replicas(&ideal, cfg.max_moves);
    let mut primary_moves = Vec::new();
    // A swap of the primary phase may free a partition that a replica move can use:
    // plan again until the replica phase finds nothing (each round that moves a
    // replica lowers the sum of squared replica counts, so this ends).
    loop {
        let budget = cfg.max_moves - primary_moves.len();
        let (moves, cut) = planner.plan_primaries(&ideal, budget);
        primary_moves.extend(moves);
        let squares_before = squares(&planner.replicas);
        if truncated || cut {
            truncated = true;
            break;
        }
        truncated = planner.plan_replicas(&ideal, cfg.max_moves);
        if squares(&planner.replicas) == squares_before {
            break;
        }
    }
    let after = planner.figures(&ideal);
    RebalancePlan {
        moves: planner.replica_moves(),
        primary_moves,
        ideal,
        before,
        after,
        truncated,
    }
}

/// Whether a partition may be moved by the rebalancer (see the module documentation).
fn movable(state: &MetaState, p: &Partition) -> bool {
    let active = state
        .table(p.table_id)
        .is_some_and(|t| t.status == TableStatus::Active);
    let healthy = |n: NodeId| {
        state
            .node(n)
            .is_some_and(|n| n.status == NodeStatus::Healthy)
    };
    active && p.status == PartitionStatus::Healthy && p.is_ready() && p.all_nodes().all(healthy)
}

/// The movable partitions (by id), the ones each participating node holds, and the
/// primaries each leads (of any partition).
fn movable_parts<'a>(
    state: &'a MetaState,
    index: &BTreeMap<NodeId, usize>,
    zone_of: &dyn Fn(NodeId) -> usize,
) -> (Vec<Part<'a>>, Vec<Vec<usize>>, Vec<usize>) {
    let mut primaries = vec![0; index.len()];
    let mut held = vec![Vec::new(); index.len()];
    let mut parts = Vec::new();
    for p in state.partitions() {
        if let Some(&i) = index.get(&p.primary_node_id) {
            primaries[i] += 1;
        }
        if !movable(state, p) {
            continue;
        }
        let local: Vec<usize> = p
            .all_nodes()
            .filter_map(|n| index.get(&n).copied())
            .collect();
        for &i in &local {
            held[i].push(parts.len());
        }
        let member_zones: Vec<usize> = p.all_nodes().map(zone_of).collect();
        let zones_used = member_zones.iter().collect::<BTreeSet<_>>().len();
        parts.push(Part {
            p,
            member_zones,
            zones_used,
            primary: p.primary_node_id,
            local,
        });
    }
    (parts, held, primaries)
}

/// Which moves a step may make, from the most to the least efficient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Lowers `max(over, under)` by one: the optimal kind.
    Strict,
    /// Lowers `over + under` by one without creating any.
    Relaxed,
    /// Lowers the spread between a node out of bounds and one at least two below it.
    Even,
}

/// Whether moving one unit from a node at `from` to a node at `to` is of class `class`.
fn allowed(
    class: Class,
    t: &Target,
    (over, under): (usize, usize),
    from: usize,
    to: usize,
) -> bool {
    match class {
        Class::Strict if over > under => from > t.high && to < t.high,
        Class::Strict if under > over => from > t.low && to < t.low,
        Class::Strict => from > t.high && to < t.low,
        Class::Relaxed => (from > t.high && to < t.high) || (to < t.low && from > t.low),
        Class::Even => from >= to + 2 && (from > t.high || to < t.low),
    }
}

/// One movable partition, with its original members and their zones.
struct Part<'a> {
    p: &'a Partition,
    /// Zone index of each member, in `Partition::all_nodes` order.
    member_zones: Vec<usize>,
    /// Distinct zones of the members.
    zones_used: usize,
    /// Current primary (changes when the primary's copy is planned to move).
    primary: NodeId,
    /// Index of each participating member.
    local: Vec<usize>,
}

impl Part<'_> {
    fn in_zone(&self, zone: usize) -> usize {
        self.member_zones.iter().filter(|z| **z == zone).count()
    }

    fn holds(&self, n: NodeId) -> bool {
        self.p.all_nodes().any(|m| m == n)
    }

    /// Number of other zones the copy in zone `from` could move to without losing a zone.
    fn zones_open(&self, from: usize, zone_count: usize) -> usize {
        if self.in_zone(from) >= 2 {
            return zone_count - 1;
        }
        zone_count.saturating_sub(self.zones_used)
    }

    /// Change in the number of distinct zones when a copy moves from `from` to `to`.
    fn spread_gain(&self, from: usize, to: usize) -> isize {
        if from == to {
            return 0;
        }
        isize::from(self.in_zone(to) == 0) - isize::from(self.in_zone(from) == 1)
    }
}

/// Planning state: participating nodes (by index, ordered by id) and their counts.
struct Planner<'a> {
    nodes: Vec<NodeId>,
    index: BTreeMap<NodeId, usize>,
    zone: Vec<usize>,
    /// Distinct zones of all nodes.
    zone_count: usize,
    replicas: Vec<usize>,
    primaries: Vec<usize>,
    tolerance: usize,
    parts: Vec<Part<'a>>,
    /// Movable partitions (indices into `parts`, ascending) held by each node.
    held: Vec<Vec<usize>>,
    /// Movable partitions held by each node that no move planned yet.
    spare: Vec<usize>,
    /// Zones each node's unmoved copies may not enter (`blocked_zones`), kept current.
    blocked: Vec<Vec<usize>>,
    /// Replica moves planned: (from, to, partition); `None` once cancelled.
    planned: Vec<Option<Step>>,
    /// Indices into `planned` of the moves into each node.
    received: Vec<Vec<usize>>,
    /// Indices into `planned` of the moves out of each node.
    sent: Vec<Vec<usize>>,
    replica_moved: Vec<bool>,
    primary_moved: Vec<bool>,
}

impl<'a> Planner<'a> {
    fn new(state: &'a MetaState, tolerance: usize, excluded: &BTreeSet<NodeId>) -> Self {
        let mut zones: BTreeMap<&str, usize> = BTreeMap::new();
        for n in state.nodes() {
            let next = zones.len();
            zones.entry(n.zone.as_str()).or_insert(next);
        }
        let zone_of = |n: NodeId| state.node(n).map_or(usize::MAX, |n| zones[n.zone.as_str()]);
        let participating: Vec<_> = state
            .live_nodes()
            .filter(|n| !excluded.contains(&n.node_id))
            .collect();
        let nodes: Vec<NodeId> = participating.iter().map(|n| n.node_id).collect();
        let index: BTreeMap<NodeId, usize> =
            nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let (parts, held, primaries) = movable_parts(state, &index, &zone_of);
        let count = parts.len();
        let mut planner = Planner {
            zone: nodes.iter().map(|n| zone_of(*n)).collect(),
            zone_count: zones.len(),
            replicas: participating
                .iter()
                .map(|n| n.partition_ids.len())
                .collect(),
            nodes,
            index,
            primaries,
            tolerance,
            parts,
            spare: held.iter().map(Vec::len).collect(),
            blocked: Vec::new(),
            planned: Vec::new(),
            received: vec![Vec::new(); participating.len()],
            sent: vec![Vec::new(); participating.len()],
            held,
            replica_moved: vec![false; count],
            primary_moved: vec![false; count],
        };
        planner.blocked = (0..planner.nodes.len())
            .map(|u| planner.blocked_zones(u))
            .collect();
        planner
    }

    fn ideal(&self) -> Ideal {
        let n = self.nodes.len();
        Ideal {
            replicas: Target::new(self.replicas.iter().sum(), n, self.tolerance),
            primaries: Target::new(self.primaries.iter().sum(), n, self.tolerance),
        }
    }

    fn figures(&self, ideal: &Ideal) -> Figures {
        Figures {
            replicas: Balance::of(&self.replicas, &ideal.replicas),
            primaries: Balance::of(&self.primaries, &ideal.primaries),
        }
    }

    /// Plans replica moves until no class allows one, or `max` of them (then `true`).
    fn plan_replicas(&mut self, ideal: &Ideal, max: usize) -> bool {
        // Every step lowers the sum of squared counts by 2 or more: this bounds the loop.
        for _ in 0..=squares(&self.replicas) / 2 {
            let Some(steps) = self.next_replica_steps(ideal) else {
                return false;
            };
            let added = steps
                .iter()
                .filter(|s| matches!(s.2, Give::Copy(_)))
                .count();
            if self.planned.iter().flatten().count() + added > max {
                return true;
            }
            for (u, v, give) in steps {
                match give {
                    Give::Copy(i) => self.move_replica(u, v, i),
                    Give::Resource(k) => self.resource(k, u),
                }
            }
        }
        unreachable!("replica planning did not converge");
    }

    fn replica_moves(&self) -> Vec<ReplicaMove> {
        let moves = self.planned.iter().flatten();
        moves
            .map(|&(u, v, i)| ReplicaMove {
                partition_id: self.parts[i].p.partition_id,
                from: self.nodes[u],
                to: self.nodes[v],
                expected_epoch: self.parts[i].p.epoch,
            })
            .collect()
    }

    /// The next replica move, or chain of moves (each intermediate node gives one copy
    /// and takes one): strict or relaxed single moves first, then the shortest strict
    /// chain, then evening moves.
    fn next_replica_steps(&self, ideal: &Ideal) -> Option<Vec<(usize, usize, Give)>> {
        let t = &ideal.replicas;
        let b = Balance::of(&self.replicas, t);
        if b.within_tolerance() {
            return None;
        }
        let ob = (b.over, b.under);
        let direct = |class| {
            let (u, v, i) = self.direct_replica(ideal, ob, class)?;
            Some(vec![(u, v, Give::Copy(i))])
        };
        // Any allowed copy makes an edge, and so does a planned move `x` may take over;
        // the chain found then takes the best copies.
        let edges = |x: usize| {
            let copies = (0..self.nodes.len())
                .filter(|&y| y != x && self.may_reach(x, y))
                .filter_map(|y| {
                    let mut copies = self.held[x].iter();
                    copies
                        .find(|&&i| self.allowed_copy(i, x, y))
                        .map(|&i| (Give::Copy(i), y))
                });
            copies.chain(self.resources(x)).collect()
        };
        let chain = || {
            let chain = shortest_chain(&self.replicas, t, ob, edges)?;
            let partition = |give: Give| match give {
                Give::Copy(i) => i,
                Give::Resource(k) => self.planned[k].expect("taken-over moves are planned").2,
            };
            let found: BTreeSet<usize> = chain.iter().map(|s| partition(s.2)).collect();
            if found.len() < chain.len() {
                return None;
            }
            let taken: BTreeSet<usize> = chain
                .iter()
                .filter(|s| matches!(s.2, Give::Resource(_)))
                .map(|s| partition(s.2))
                .collect();
            let best: Vec<(usize, usize, Give)> = chain
                .iter()
                .filter_map(|&(x, y, give)| match give {
                    Give::Copy(_) => self
                        .best_replica(x, y, ideal)
                        .filter(|i| !taken.contains(i))
                        .map(|i| (x, y, Give::Copy(i))),
                    Give::Resource(_) => Some((x, y, give)),
                })
                .collect();
            let distinct: BTreeSet<usize> = best.iter().map(|s| partition(s.2)).collect();
            Some(if distinct.len() == chain.len() {
                best
            } else {
                chain
            })
        };
        direct(Class::Strict)
            .or_else(|| direct(Class::Relaxed))
            .or_else(chain)
            .or_else(|| direct(Class::Even))
    }

    /// Planned moves whose copy `x` also holds and may send instead of their source:
    /// taking one over, `x` gives one copy and the source keeps its own (no move added).
    /// A node whose copies all belong to partitions already migrating can still shed
    /// one this way (6 nodes, one excluded, 3 joining, 41 x 3: a node stayed above the
    /// band with 36 moves, where 37 reach it).
    /// Those that leave every primary where it is come first.
    fn resources(&self, x: usize) -> Vec<(Give, usize)> {
        let mut found: Vec<(bool, usize, usize)> = self
            .planned
            .iter()
            .enumerate()
            .filter_map(|(k, planned)| {
                let (w, y, p) = (*planned)?;
                let part = &self.parts[p];
                let may = w != x
                    && part.local.contains(&x)
                    && !self.primary_moved[p]
                    && part.spread_gain(self.zone[x], self.zone[y]) >= 0;
                let shifts_primary = [x, y].iter().any(|&n| part.primary == self.nodes[n]);
                may.then_some((shifts_primary, k, w))
            })
            .collect();
        found.sort_unstable();
        found
            .into_iter()
            .map(|(_, k, w)| (Give::Resource(k), w))
            .collect()
    }

    /// Planned move `k` takes its copy from `x` instead of its source.
    fn resource(&mut self, k: usize, x: usize) {
        let (w, y, p) = self.planned[k].expect("taken-over moves are planned");
        self.unmove(p, w, y);
        self.mark_moved(p, true);
        self.carry_primary(p, x, y);
        self.replicas[x] -= 1;
        self.replicas[w] += 1;
        self.sent[w].retain(|&r| r != k);
        self.sent[x].push(k);
        self.planned[k] = Some((x, y, p));
    }

    /// The best single replica move of `class`: most loaded source, then least loaded
    /// target in its zone, then elsewhere (then ids), then the partition ranked by
    /// `best_replica`.
    fn direct_replica(&self, ideal: &Ideal, ob: (usize, usize), class: Class) -> Option<Step> {
        let sinks = by_counts(&self.replicas, &self.primaries, false);
        for &u in &by_counts(&self.replicas, &self.primaries, true) {
            // Same-zone targets first: they never meet a zone rule, so the moves across
            // zones stay available to the nodes that need them.
            let (near, far): (Vec<usize>, Vec<usize>) =
                sinks.iter().partition(|&&v| self.zone[v] == self.zone[u]);
            for v in near.into_iter().chain(far) {
                let (cu, cv) = (self.replicas[u], self.replicas[v]);
                if !allowed(class, &ideal.replicas, ob, cu, cv) || !self.may_reach(u, v) {
                    continue;
                }
                if let Some(part) = self.best_replica(u, v, ideal) {
                    return Some((u, v, part));
                }
            }
        }
        None
    }

    /// Marks partition `i` migrated or not, keeping `spare` and `blocked` current.
    fn mark_moved(&mut self, i: usize, moved: bool) {
        self.replica_moved[i] = moved;
        for k in 0..self.parts[i].local.len() {
            let m = self.parts[i].local[k];
            if moved {
                self.spare[m] -= 1;
            } else {
                self.spare[m] += 1;
            }
            self.blocked[m] = self.blocked_zones(m);
        }
    }

    /// Zones other than its own that no unmoved copy on `u` may enter (each copy is
    /// the only one of its partition in `u`'s zone, and every partition spans them).
    fn blocked_zones(&self, u: usize) -> Vec<usize> {
        let zu = self.zone[u];
        let mut unmoved = self.held[u].iter().filter(|&&i| !self.replica_moved[i]);
        let Some(&first) = unmoved.next() else {
            return Vec::new();
        };
        let mut blocked: Vec<usize> = self.parts[first].member_zones.clone();
        for &i in std::iter::once(&first).chain(unmoved) {
            let part = &self.parts[i];
            if part.in_zone(zu) >= 2 {
                return Vec::new();
            }
            blocked.retain(|z| part.member_zones.contains(z));
            if blocked.iter().all(|z| *z == zu) {
                return Vec::new();
            }
        }
        blocked
    }

    /// Whether some unmoved copy on `u` may reach `v`'s zone (a quick filter).
    fn may_reach(&self, u: usize, v: usize) -> bool {
        self.zone[u] == self.zone[v] || !self.blocked[u].contains(&self.zone[v])
    }

    /// Whether partition `i`'s copy on `u` may move to `v` now.
    fn allowed_copy(&self, i: usize, u: usize, v: usize) -> bool {
        let part = &self.parts[i];
        !self.replica_moved[i]
            && !self.primary_moved[i]
            && !part.holds(self.nodes[v])
            && part.spread_gain(self.zone[u], self.zone[v]) >= 0
    }

    /// The partition whose copy on `u` should go to `v`, if any may.
    fn best_replica(&self, u: usize, v: usize, ideal: &Ideal) -> Option<usize> {
        let from = self.nodes[u];
        let (zu, zv) = (self.zone[u], self.zone[v]);
        // Carry primaries to a target short of them, from a source with more.
        let (pu, pv) = (self.primaries[u], self.primaries[v]);
        let carry_primary = pu > pv + 1 && pv < ideal.primaries.ceil;
        let t = &ideal.replicas;
        self.held[u]
            .iter()
            .copied()
            .filter(|&i| self.allowed_copy(i, u, v))
            .map(|i| {
                let part = &self.parts[i];
                let gain = part.spread_gain(zu, zv);
                let is_primary = part.primary == from;
                let scarce = part
                    .local
                    .iter()
                    .filter(|&&m| m != u && self.scarce(m, t))
                    .count();
                let flexible = part.zones_open(zu, self.zone_count);
                // More zones first, then the primary preference, then keep the copies
                // that may cross zones, then those of nodes short of movable partitions.
                (-gain, is_primary != carry_primary, flexible, scarce, i)
            })
            .min()
            .map(|(.., i)| i)
    }

    /// Whether node `m` has no more unmoved movable partitions than it must still give.
    fn scarce(&self, m: usize, t: &Target) -> bool {
        self.spare[m] <= self.replicas[m].saturating_sub(t.high)
    }

    /// Plans one unit from `u` to `v`: the copy of partition `i`, unless a copy planned
    /// to reach `u` can go to `v` instead (from its own source, or back to it), which
    /// saves a move.
    fn move_replica(&mut self, u: usize, v: usize, i: usize) {
        self.replicas[u] -= 1;
        self.replicas[v] += 1;
        if let Some(k) = self.redirectable(u, v) {
            self.received[u].retain(|&r| r != k);
            let (x, _, p) = self.planned[k].expect("received moves are planned");
            self.carry_primary(p, u, v);
            if x == v {
                self.planned[k] = None;
                self.sent[x].retain(|&r| r != k);
                self.mark_moved(p, false);
            } else {
                self.planned[k] = Some((x, v, p));
                self.received[v].push(k);
            }
            return;
        }
        self.mark_moved(i, true);
        self.carry_primary(i, u, v);
        self.received[v].push(self.planned.len());
        self.sent[u].push(self.planned.len());
        self.planned.push(Some((u, v, i)));
    }

    /// A planned move into `u` whose copy may go to `v` directly (or is `v`'s own).
    fn redirectable(&self, u: usize, v: usize) -> Option<usize> {
        self.received[u].iter().copied().find(|&k| {
            let (x, _, p) = self.planned[k].expect("received moves are planned");
            let part = &self.parts[p];
            x == v
                || (!part.holds(self.nodes[v]) && part.spread_gain(self.zone[x], self.zone[v]) >= 0)
        })
    }

    /// Moves the primary role of partition `i` along with its copy from `u` to `v`, if
    /// the copy is the primary's.
    fn carry_primary(&mut self, i: usize, u: usize, v: usize) {
        let part = &mut self.parts[i];
        if part.primary == self.nodes[u] {
            part.primary = self.nodes[v];
            self.primaries[u] -= 1;
            self.primaries[v] += 1;
        }
    }

    /// Primary shifts until no class allows one, or `max` handovers (then `true`).
    fn plan_primaries(&mut self, ideal: &Ideal, max: usize) -> (Vec<PrimaryMove>, bool) {
        let mut moves = Vec::new();
        // Every step lowers the sum of squared counts by 2 or more: this bounds the loop.
        for _ in 0..=squares(&self.primaries) / 2 {
            let Some(steps) = self.next_primary_steps(&ideal.primaries) else {
                return (moves, false);
            };
            let handovers = steps.iter().filter(|s| matches!(s.2, Shift::Handover(_)));
            if moves.len() + handovers.count() > max {
                return (moves, true);
            }
            for (u, v, shift) in steps {
                moves.extend(self.shift_primary(u, v, shift));
            }
        }
        unreachable!("primary planning did not converge");
    }

    /// The next primary shift, or chain of shifts (each intermediate node gives one
    /// primary and takes one): strict or relaxed single shifts first, then the shortest
    /// strict chain, then evening ones.
    fn next_primary_steps(&self, t: &Target) -> Option<Vec<(usize, usize, Shift)>> {
        let b = Balance::of(&self.primaries, t);
        if b.within_tolerance() {
            return None;
        }
        let ob = (b.over, b.under);
        let direct = |class| self.direct_primary(t, ob, class).map(|step| vec![step]);
        let chain = || {
            let chain = shortest_chain(&self.primaries, t, ob, |x| self.shifts(x))?;
            let mut touched = BTreeSet::new();
            let distinct = chain.iter().all(|(_, _, shift)| match *shift {
                Shift::Handover(i) => touched.insert(i),
                Shift::Swap { k, with } => {
                    let (_, _, p) = self.planned[k].expect("swapped moves are planned");
                    touched.insert(p) && touched.insert(with)
                }
            });
            distinct.then_some(chain)
        };
        direct(Class::Strict)
            .or_else(|| direct(Class::Relaxed))
            .or_else(chain)
            .or_else(|| direct(Class::Even))
    }

    fn direct_primary(
        &self,
        t: &Target,
        ob: (usize, usize),
        class: Class,
    ) -> Option<(usize, usize, Shift)> {
        let sinks = by_count(&self.primaries, false);
        for &u in &by_count(&self.primaries, true) {
            let mut shifts: Option<Vec<(Shift, usize)>> = None;
            for &v in &sinks {
                if !allowed(class, t, ob, self.primaries[u], self.primaries[v]) {
                    continue;
                }
                let shifts = shifts.get_or_insert_with(|| self.shifts(u));
                if let Some(&(shift, _)) = shifts.iter().find(|&&(_, w)| w == v) {
                    return Some((u, v, shift));
                }
            }
        }
        None
    }

    /// Every way `u` may give one primary to another node: handovers first, then swaps.
    fn shifts(&self, u: usize) -> Vec<(Shift, usize)> {
        let handovers = self.handovers(u).map(|(i, w)| (Shift::Handover(i), w));
        handovers.chain(self.swaps(u)).collect()
    }

    /// The partitions `u` leads that may hand the role over, with each ready replica
    /// on a participating node, by partition.
    fn handovers(&self, u: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let leader = self.nodes[u];
        self.held[u]
            .iter()
            .copied()
            .filter(move |&i| {
                !self.replica_moved[i] && !self.primary_moved[i] && self.parts[i].primary == leader
            })
            .flat_map(move |i| {
                let p = self.parts[i].p;
                p.replica_node_ids
                    .iter()
                    .filter(|n| p.ready_node_ids.contains(n))
                    .filter_map(move |n| self.index.get(n).map(|&w| (i, w)))
            })
    }

    /// Planned migrations whose partition `u` may swap for another of the same source
    /// so that `u` leads one fewer: a primary copy `u` receives, swapped for a plain
    /// copy (the source keeps leading); or a plain copy `u` sends, swapped for a
    /// primary copy (the target leads it).
    fn swaps(&self, u: usize) -> impl Iterator<Item = (Shift, usize)> + '_ {
        let received = self.received[u].iter().filter_map(move |&k| {
            let (x, _, p) = self.planned[k]?;
            let carried = self.parts[p].primary == self.nodes[u];
            let with = carried.then(|| self.swap_for(x, u, false))??;
            Some((Shift::Swap { k, with }, x))
        });
        let sent = self.sent[u].iter().filter_map(move |&k| {
            let (_, y, p) = self.planned[k]?;
            let plain = self.parts[p].primary != self.nodes[y];
            let with = plain.then(|| self.swap_for(u, y, true))??;
            Some((Shift::Swap { k, with }, y))
        });
        received.chain(sent)
    }

    /// An unmoved partition whose copy on `x` may migrate to `y` instead, led by `x`
    /// (`primary`) or not.
    fn swap_for(&self, x: usize, y: usize, primary: bool) -> Option<usize> {
        let leader = self.nodes[x];
        self.held[x].iter().copied().find(|&i| {
            self.allowed_copy(i, x, y)
                && !self.primary_moved[i]
                && (self.parts[i].primary == leader) == primary
        })
    }

    /// Shifts one primary from `u` to `v`; a handover is returned, a swap changes the
    /// planned migration instead.
    fn shift_primary(&mut self, u: usize, v: usize, shift: Shift) -> Option<PrimaryMove> {
        match shift {
            Shift::Handover(i) => Some(self.move_primary(u, v, i)),
            Shift::Swap { k, with } => {
                let (x, y, p) = self.planned[k].expect("swapped moves are planned");
                self.unmove(p, x, y);
                self.mark_moved(with, true);
                self.carry_primary(with, x, y);
                self.planned[k] = Some((x, y, with));
                None
            }
        }
    }

    /// Takes partition `i` out of the migrations (its copy stays on `x`, not `y`).
    fn unmove(&mut self, i: usize, x: usize, y: usize) {
        self.mark_moved(i, false);
        if self.parts[i].primary == self.nodes[y] {
            self.parts[i].primary = self.nodes[x];
            self.primaries[y] -= 1;
            self.primaries[x] += 1;
        }
    }

    fn move_primary(&mut self, u: usize, v: usize, i: usize) -> PrimaryMove {
        self.primaries[u] -= 1;
        self.primaries[v] += 1;
        self.primary_moved[i] = true;
        let part = &mut self.parts[i];
        part.primary = self.nodes[v];
        PrimaryMove {
            partition_id: part.p.partition_id,
            from: self.nodes[u],
            to: self.nodes[v],
            expected_epoch: part.p.epoch,
        }
    }
}

/// How a node gives one replica to another in a planning step.
#[derive(Debug, Clone, Copy)]
enum Give {
    /// Migrates this (unmoved) partition's copy.
    Copy(usize),
    /// Takes over planned move `k` (index into `Planner::planned`): the giver sends its
    /// copy of that partition instead, and the move's source keeps its own.
    Resource(usize),
}

/// One primary moved from one node to another.
#[derive(Debug, Clone, Copy)]
enum Shift {
    /// The partition's role is handed to a ready replica.
    Handover(usize),
    /// Planned migration `k` takes partition `with` instead of its own, so that the
    /// primary role lands elsewhere (no move added).
    Swap {
        /// Index into `Planner::planned`.
        k: usize,
        /// The partition migrated instead.
        with: usize,
    },
}

fn squares(counts: &[usize]) -> usize {
    counts.iter().map(|c| c * c).sum()
}

/// One unit moved: (from node index, to node index, partition index).
type Step = (usize, usize, usize);

/// The shortest chain of steps from a node above the band to one below it, each
/// intermediate node giving one unit and taking one, over the edges `edges(x)` gives
/// (how, to), breadth-first from the most loaded sources. The ends differ by at least
/// two. The caller checks that no partition is used twice.
fn shortest_chain<E: Copy>(
    counts: &[usize],
    t: &Target,
    (over, under): (usize, usize),
    edges: impl Fn(usize) -> Vec<(E, usize)>,
) -> Option<Vec<(usize, usize, E)>> {
    let source = |x: usize| {
        if over > 0 {
            counts[x] > t.high
        } else {
            counts[x] > t.low
        }
    };
    let sink = |x: usize| {
        if under > 0 {
            counts[x] < t.low
        } else {
            counts[x] < t.high
        }
    };
    // For each node reached: the node it was reached from, and how.
    let mut came_from: Vec<Option<(usize, E)>> = vec![None; counts.len()];
    let mut start = vec![usize::MAX; counts.len()];
    let mut queue: VecDeque<usize> = VecDeque::new();
    for x in by_count(counts, true).into_iter().filter(|&x| source(x)) {
        start[x] = x;
        queue.push_back(x);
    }
    while let Some(x) = queue.pop_front() {
        for (i, y) in edges(x) {
            if start[y] != usize::MAX {
                continue;
            }
            start[y] = start[x];
            came_from[y] = Some((x, i));
            if sink(y) && counts[y] + 2 <= counts[start[y]] {
                return Some(chain_to(&came_from, y));
            }
            queue.push_back(y);
        }
    }
    None
}

/// The steps leading to `y`, first to last.
fn chain_to<E: Copy>(came_from: &[Option<(usize, E)>], mut y: usize) -> Vec<(usize, usize, E)> {
    let mut steps = Vec::new();
    while let Some((x, e)) = came_from[y] {
        steps.push((x, y, e));
        y = x;
    }
    steps.reverse();
    steps
}

/// Node indices by count, descending (`true`) or ascending, ties by index (node id).
fn by_count(counts: &[usize], descending: bool) -> Vec<usize> {
    by_counts(counts, &vec![0; counts.len()], descending)
}

/// Node indices by count, then by `then`, both descending (`true`) or ascending, ties
/// by index (node id).
fn by_counts(counts: &[usize], then: &[usize], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..counts.len()).collect();
    if descending {
        order.sort_by_key(|&i| (std::cmp::Reverse((counts[i], then[i])), i));
    } else {
        order.sort_by_key(|&i| (counts[i], then[i], i));
    }
    order
}

#[cfg(test)]
mod tests;
