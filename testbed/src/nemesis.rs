//! The nemesis: faults chosen from the seed, each started, held and undone, and logged
//! with its start and end times.
//!
//! Targets that depend on the cluster (the leader, the voters, a partition's primary) are
//! looked up when the fault starts; when the cluster cannot tell (no leader), a random
//! host stands in and the record says so.

use std::collections::BTreeSet;
use std::time::Duration;

use agent::api_client::{ApiClient, Authorization};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::hosts::{CLOCK_RIGHT, Hosts, http_endpoint, zone_of};
use crate::net::{DropRule, Network, Rules};

/// Shortest pause of a majority of the voters: past the failure window, so the paused
/// voters are failed and replaced while they sleep and wake up deposed (the wedge of
/// issue 14 needed 12 s).
pub const PAUSE_MAJORITY_HOLD: Duration = Duration::from_secs(12);

/// Every kind of fault. The order is the order of the report's tables.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// `kill -9` one agent, restart it at the end.
    Kill,
    /// SIGSTOP one agent, SIGCONT at the end.
    Pause,
    /// SIGSTOP a majority of the Raft voters.
    PauseMajority,
    /// Cut the hosts into two random halves.
    Halves,
    /// Cut the Raft leader from every other host.
    IsolateLeader,
    /// Cut a register partition's primary from its replicas.
    CutPrimary,
    /// Some hosts stop receiving from the others (they still send).
    OneWay,
    /// Two halves that both reach one bridge host.
    Bridge,
    /// Drop 5-30% of the packets between hosts.
    Loss,
    /// `kill -9` every agent of one zone, restart them at the end.
    Zone,
    /// Step one agent's wall clock by seconds to a minute.
    ClockSkew,
    /// Run one agent's wall clock fast or slow.
    ClockRate,
    /// Fill one agent's data disk.
    DiskFull,
    /// Delay packets (needs `tc netem`).
    Latency,
    /// Duplicate packets (needs `tc netem`).
    Duplicate,
    /// Reorder packets (needs `tc netem`).
    Reorder,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 16] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::PauseMajority,
        FaultKind::Halves,
        FaultKind::IsolateLeader,
        FaultKind::CutPrimary,
        FaultKind::OneWay,
        FaultKind::Bridge,
        FaultKind::Loss,
        FaultKind::Zone,
        FaultKind::ClockSkew,
        FaultKind::ClockRate,
        FaultKind::DiskFull,
        FaultKind::Latency,
        FaultKind::Duplicate,
        FaultKind::Reorder,
    ];

    /// The kebab-case name (as on the command line and in the report).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Whether it needs `tc netem`.
    pub fn needs_netem(self) -> bool {
        matches!(
            self,
            FaultKind::Latency | FaultKind::Duplicate | FaultKind::Reorder
        )
    }

    /// Whether it needs libfaketime.
    pub fn needs_faketime(self) -> bool {
        matches!(self, FaultKind::ClockSkew | FaultKind::ClockRate)
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    /// Kind.
    pub kind: FaultKind,
    /// Hosts it was aimed at.
    pub targets: Vec<u16>,
    /// What exactly (the cut, the loss rate, the clock).
    pub detail: String,
    /// Nanoseconds since the run began, when it started.
    pub start_ns: u64,
    /// ... and when it was undone.
    pub end_ns: u64,
}

/// How a fault is undone.
#[derive(Debug, Clone)]
enum Undo {
    Restart(Vec<u16>),
    Resume(Vec<u16>),
    ClearRules,
    ClockRight(u16),
    FreeDisk(u16),
    Nothing,
}

/// A fault in force.
pub struct Active {
    record: FaultRecord,
    undo: Undo,
}

/// The schedule of kinds: every enabled kind once in a seeded order, then random ones.
pub fn schedule(kinds: &[FaultKind], count: usize, rng: &mut StdRng) -> Vec<FaultKind> {
    let mut first = kinds.to_vec();
    first.shuffle(rng);
    let mut out: Vec<FaultKind> = first.into_iter().take(count).collect();
    while out.len() < count {
        out.push(*kinds.choose(rng).expect("at least one kind"));
    }
    out
}

/// What the nemesis learns from the cluster when choosing targets.
#[derive(Debug, Default)]
struct ClusterFacts {
    leader: Option<u16>,
    voters: Vec<u16>,
    /// (primary, replicas) of the register table's partitions.
    partitions: Vec<(u16, Vec<u16>)>,
}

/// Starts and undoes faults.
pub struct Nemesis {
    rng: StdRng,
    admin: Authorization,
    table: String,
}

impl Nemesis {
    /// A nemesis seeded with `seed`, asking the cluster as `admin`.
    pub fn new(seed: u64, admin: Authorization, table: &str) -> Nemesis {
        Nemesis {
            rng: StdRng::seed_from_u64(seed ^ 0x4e_4e_4d),
            admin,
            table: table.to_string(),
        }
    }

    /// How long a fault of `kind` is held: random in `[min, max]`, but a majority of
    /// the voters stays paused at least [`PAUSE_MAJORITY_HOLD`].
    pub fn hold(&mut self, kind: FaultKind, min: Duration, max: Duration) -> Duration {
        let drawn = self.duration(min, max);
        if kind == FaultKind::PauseMajority {
            drawn.max(PAUSE_MAJORITY_HOLD)
        } else {
            drawn
        }
    }

    /// A random duration in `[min, max]`.
    pub fn duration(&mut self, min: Duration, max: Duration) -> Duration {
        if max <= min {
            return min;
        }
        let ms = self
            .rng
            .random_range(min.as_millis() as u64..=max.as_millis() as u64);
        Duration::from_millis(ms)
    }

    /// Leader, voters and partitions, from the first member that answers.
    fn facts(&self, members: &[u16]) -> ClusterFacts {
        let mut facts = ClusterFacts::default();
        for &m in members {
            let client = ApiClient::new(&http_endpoint(m)).with_authorization(&self.admin);
            let Ok(cluster) = client.cluster() else {
                continue;
            };
            facts.leader = cluster.leader_id.map(|l| l as u16);
            facts.voters = cluster.voters.iter().map(|v| *v as u16).collect();
            if let Ok(p) = client.partitions(&self.table) {
                facts.partitions = p
                    .partitions
                    .iter()
                    .map(|p| {
                        let replicas = p.replica_node_ids.iter().map(|r| *r as u16).collect();
                        (p.primary_node_id as u16, replicas)
                    })
                    .collect();
            }
            break;
        }
        facts
    }

    /// Starts a fault of `kind` on the hosts `members` (those that run an agent).
    pub fn start(
        &mut self,
        kind: FaultKind,
        members: &[u16],
        hosts: &mut Hosts,
        net: &Network,
        now_ns: u64,
    ) -> anyhow::Result<Active> {
        let mut record = FaultRecord {
            kind,
            targets: Vec::new(),
            detail: String::new(),
            start_ns: now_ns,
            end_ns: now_ns,
        };
        let undo = self.inflict(kind, members, hosts, net, &mut record)?;
        Ok(Active { record, undo })
    }

    fn one(&mut self, members: &[u16]) -> u16 {
        *members.choose(&mut self.rng).expect("members")
    }

    fn inflict(
        &mut self,
        kind: FaultKind,
        members: &[u16],
        hosts: &mut Hosts,
        net: &Network,
        record: &mut FaultRecord,
    ) -> anyhow::Result<Undo> {
        let mut rules = Rules::default();
        let undo = match kind {
            FaultKind::Kill => {
                let h = self.one(members);
                hosts.kill(h);
                record.targets = vec![h];
                Undo::Restart(vec![h])
            }
            FaultKind::Zone => {
                let zone = zone_of(self.one(members));
                let victims: Vec<u16> = members
                    .iter()
                    .copied()
                    .filter(|m| zone_of(*m) == zone)
                    .collect();
                for v in &victims {
                    hosts.kill(*v);
                }
                record.detail = zone.to_string();
                record.targets = victims.clone();
                Undo::Restart(victims)
            }
            FaultKind::Pause => {
                let h = self.one(members);
                hosts.set_paused(h, true)?;
                record.targets = vec![h];
                Undo::Resume(vec![h])
            }
            FaultKind::PauseMajority => {
                let facts = self.facts(members);
                let (voters, detail) = self.majority_of_voters(&facts, members);
                for v in &voters {
                    hosts.set_paused(*v, true)?;
                }
                record.detail = detail;
                record.targets = voters.clone();
                Undo::Resume(voters)
            }
            FaultKind::Halves => {
                let (a, b) = self.halves(members);
                rules.cut_between(&a, &b);
                record.detail = format!("{a:?} | {b:?}");
                record.targets = a;
                Undo::ClearRules
            }
            FaultKind::IsolateLeader => {
                let facts = self.facts(members);
                let (leader, known) = match facts.leader {
                    Some(l) => (l, true),
                    None => (self.one(members), false),
                };
                let rest: Vec<u16> = members.iter().copied().filter(|m| *m != leader).collect();
                rules.cut_between(&[leader], &rest);
                record.detail = if known {
                    format!("leader {leader}")
                } else {
                    format!("no leader known: host {leader}")
                };
                record.targets = vec![leader];
                Undo::ClearRules
            }
            FaultKind::CutPrimary => {
                let facts = self.facts(members);
                match facts.partitions.choose(&mut self.rng) {
                    Some((primary, replicas)) => {
                        rules.cut_between(&[*primary], replicas);
                        record.detail = format!("primary {primary} from replicas {replicas:?}");
                        record.targets = vec![*primary];
                    }
                    None => {
                        let h = self.one(members);
                        let rest: Vec<u16> = members.iter().copied().filter(|m| *m != h).collect();
                        rules.cut_between(&[h], &rest);
                        record.detail = format!("no partition known: host {h} isolated");
                        record.targets = vec![h];
                    }
                }
                Undo::ClearRules
            }
            FaultKind::OneWay => {
                let (deaf, rest) = self.halves(members);
                rules.cut_one_way(&rest, &deaf);
                record.detail = format!("{deaf:?} hear nothing from {rest:?}");
                record.targets = deaf;
                Undo::ClearRules
            }
            FaultKind::Bridge => {
                let mut shuffled = members.to_vec();
                shuffled.shuffle(&mut self.rng);
                let mid = shuffled.len() / 2;
                let bridge = shuffled[mid];
                let (a, c) = (shuffled[..mid].to_vec(), shuffled[mid + 1..].to_vec());
                rules.cut_between(&a, &c);
                record.detail = format!("{a:?} | {c:?}, bridged by {bridge}");
                record.targets = vec![bridge];
                Undo::ClearRules
            }
            FaultKind::Loss => {
                let percent = self.rng.random_range(5..=30);
                rules.drops.push(DropRule {
                    from: members.to_vec(),
                    to: members.to_vec(),
                    percent,
                });
                record.detail = format!("{percent}% between all hosts");
                record.targets = members.to_vec();
                Undo::ClearRules
            }
            FaultKind::ClockSkew => {
                let h = self.one(members);
                let secs: i64 =
                    self.rng.random_range(5..=60) * if self.rng.random() { 1 } else { -1 };
                hosts.set_clock(h, &format!("{secs:+} x1"))?;
                record.detail = format!("wall clock {secs:+} s");
                record.targets = vec![h];
                Undo::ClockRight(h)
            }
            FaultKind::ClockRate => {
                let h = self.one(members);
                let rate = *[0.5, 0.8, 1.25, 2.0].choose(&mut self.rng).expect("rates");
                hosts.set_clock_rate(h, rate)?;
                record.detail = format!("wall clock at x{rate}");
                record.targets = vec![h];
                Undo::ClockRight(h)
            }
            FaultKind::DiskFull => {
                let h = self.one(members);
                let bytes = hosts.fill_disk(h)?;
                record.detail = format!("{} MiB filler", bytes >> 20);
                record.targets = vec![h];
                Undo::FreeDisk(h)
            }
            FaultKind::Latency | FaultKind::Duplicate | FaultKind::Reorder => {
                record.detail = "skipped: no tc netem".into();
                Undo::Nothing
            }
        };
        if !rules.drops.is_empty() {
            net.apply(&rules)?;
        }
        Ok(undo)
    }

    /// A majority of the voters: half the time the non-leader voters first (the wedge
    /// of issue 14), else a random majority.
    fn majority_of_voters(&mut self, facts: &ClusterFacts, members: &[u16]) -> (Vec<u16>, String) {
        let voters: Vec<u16> = facts
            .voters
            .iter()
            .copied()
            .filter(|v| members.contains(v))
            .collect();
        if voters.is_empty() {
            let h = self.one(members);
            return (vec![h], format!("no voters known: host {h}"));
        }
        let need = facts.voters.len() / 2 + 1;
        let mut order = voters.clone();
        order.shuffle(&mut self.rng);
        if self.rng.random() {
            // Stable sort: the leader goes last, the others keep their shuffled order.
            order.sort_by_key(|v| Some(*v) == facts.leader);
        }
        let picked: Vec<u16> = order.into_iter().take(need).collect();
        let detail = format!(
            "{} of voters {:?} (leader {:?})",
            picked.len(),
            facts.voters,
            facts.leader
        );
        (picked, detail)
    }

    /// Two random halves of `members`, the first non-empty.
    fn halves(&mut self, members: &[u16]) -> (Vec<u16>, Vec<u16>) {
        let mut shuffled = members.to_vec();
        shuffled.shuffle(&mut self.rng);
        let cut = (shuffled.len() / 2).max(1);
        let (a, b) = shuffled.split_at(cut);
        (sorted(a), sorted(b))
    }

    /// Undoes a fault; returns its record with the end time.
    pub fn end(
        &mut self,
        active: Active,
        hosts: &mut Hosts,
        net: &Network,
        now_ns: u64,
    ) -> anyhow::Result<FaultRecord> {
        match &active.undo {
            Undo::Restart(victims) => {
                for v in victims {
                    hosts.start(*v)?;
                }
            }
            Undo::Resume(paused) => {
                for p in paused {
                    hosts.set_paused(*p, false)?;
                }
            }
            Undo::ClearRules => net.apply(&Rules::default())?,
            Undo::ClockRight(h) => hosts.set_clock(*h, CLOCK_RIGHT.trim())?,
            Undo::FreeDisk(h) => hosts.free_disk(*h)?,
            Undo::Nothing => {}
        }
        let mut record = active.record;
        record.end_ns = now_ns;
        Ok(record)
    }
}

fn sorted(v: &[u16]) -> Vec<u16> {
    let set: BTreeSet<u16> = v.iter().copied().collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_takes_every_kind_first() {
        let kinds = [FaultKind::Kill, FaultKind::Pause, FaultKind::Loss];
        let mut rng = StdRng::seed_from_u64(1);
        let plan = schedule(&kinds, 10, &mut rng);
        assert_eq!(plan.len(), 10);
        let first: BTreeSet<FaultKind> = plan[..3].iter().copied().collect();
        assert_eq!(first.len(), 3);
        assert_eq!(
            schedule(&kinds, 10, &mut StdRng::seed_from_u64(1)),
            plan,
            "the seed decides"
        );
    }

    #[test]
    fn a_majority_of_voters_is_a_majority() {
        let mut n = Nemesis::new(5, Authorization::Token(String::new()), "t");
        let facts = ClusterFacts {
            leader: Some(1),
            voters: vec![1, 2, 3],
            partitions: vec![],
        };
        for _ in 0..20 {
            let (picked, _) = n.majority_of_voters(&facts, &[1, 2, 3, 4, 5]);
            assert_eq!(picked.len(), 2);
            assert!(picked.iter().all(|p| facts.voters.contains(p)));
        }
    }

    #[test]
    fn halves_split_every_member() {
        let mut n = Nemesis::new(5, Authorization::Token(String::new()), "t");
        let (a, b) = n.halves(&[1, 2, 3, 4, 5]);
        assert_eq!(a.len() + b.len(), 5);
        assert!(!a.is_empty() && !b.is_empty());
        assert!(a.iter().all(|x| !b.contains(x)));
    }

    #[test]
    fn kinds_have_their_command_line_names() {
        assert_eq!(FaultKind::PauseMajority.name(), "pause-majority");
        assert_eq!(FaultKind::DiskFull.name(), "disk-full");
    }
}
