//! The network model: per-link latency, loss, duplication, reordering and partitions.
//! Every draw comes from the run's RNG, so the fate of every datagram is reproducible.
//!
//! A link is directed: `a → b` may be cut while `b → a` works (asymmetric partitions).
//! Datagrams (gossip) suffer every impairment; the simulated metadata log's messages
//! ride reliable streams in production (QUIC retransmits), so they only see latency
//! and partitions.

use std::collections::{BTreeMap, BTreeSet};

use shared::model::NodeId;

use crate::rng::SimRng;
use crate::time::{Micros, millis};

/// One-way latency between two agents of one zone, before jitter.
pub const SAME_ZONE_LATENCY_US: Micros = 250;
/// One-way latency between two zones, before jitter.
pub const CROSS_ZONE_LATENCY_US: Micros = 1_000;
/// Mean of the exponential jitter added to every message.
pub const JITTER_MEAN_US: Micros = 200;
/// Each link's base latency is scaled by a fixed factor within `1 ± LINK_SPREAD`.
pub const LINK_SPREAD: f64 = 0.3;
/// Share of datagrams delivered twice (by default).
pub const DUPLICATE_PROBABILITY: f64 = 0.001;
/// Share of datagrams held back (by default), so later ones overtake them.
pub const REORDER_PROBABILITY: f64 = 0.01;
/// Longest extra delay of a held-back datagram.
pub const REORDER_DELAY_MAX_US: Micros = millis(20);

/// Tunables of the network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// One-way latency within a zone, before jitter.
    pub same_zone_latency_us: Micros,
    /// One-way latency across zones, before jitter.
    pub cross_zone_latency_us: Micros,
    /// Mean exponential jitter.
    pub jitter_mean_us: Micros,
    /// Probability a datagram is lost (every link, unless overridden).
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Probability a datagram is held back by up to `reorder_delay_max_us`.
    pub reorder: f64,
    /// Longest hold-back of a reordered datagram.
    pub reorder_delay_max_us: Micros,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            same_zone_latency_us: SAME_ZONE_LATENCY_US,
            cross_zone_latency_us: CROSS_ZONE_LATENCY_US,
            jitter_mean_us: JITTER_MEAN_US,
            loss: 0.0,
            duplicate: DUPLICATE_PROBABILITY,
            reorder: REORDER_PROBABILITY,
            reorder_delay_max_us: REORDER_DELAY_MAX_US,
        }
    }
}

/// A cut: nothing from a node of `from` reaches a node of `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Senders cut off.
    pub from: BTreeSet<NodeId>,
    /// Receivers cut off.
    pub to: BTreeSet<NodeId>,
}

/// What happens to one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Never arrives.
    Lost,
    /// The link is cut.
    Cut,
    /// Arrives after each of these delays (two for a duplicate).
    Delivered(Vec<Micros>),
}

/// The simulated network.
pub struct Network {
    config: NetConfig,
    seed: u64,
    zones: BTreeMap<NodeId, usize>,
    cuts: BTreeMap<String, Cut>,
    link_loss: BTreeMap<(NodeId, NodeId), f64>,
}

impl Network {
    /// A network of `config`; `seed` fixes each link's latency factor.
    pub fn new(config: NetConfig, seed: u64) -> Self {
        Network {
            config,
            seed,
            zones: BTreeMap::new(),
            cuts: BTreeMap::new(),
            link_loss: BTreeMap::new(),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Places `node` in zone number `zone`.
    pub fn place(&mut self, node: NodeId, zone: usize) {
        self.zones.insert(node, zone);
    }

    /// Sets the loss probability of every link without its own.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// Sets the loss probability of the link `from → to`.
    pub fn set_link_loss(&mut self, from: NodeId, to: NodeId, loss: f64) {
        self.link_loss.insert((from, to), loss);
    }

    /// Adds (or replaces) the cut named `name`.
    pub fn cut(&mut self, name: &str, cut: Cut) {
        self.cuts.insert(name.to_string(), cut);
    }

    /// Removes the cut named `name`; whether there was one.
    pub fn heal(&mut self, name: &str) -> bool {
        self.cuts.remove(name).is_some()
    }

    /// Removes every cut and every loss.
    pub fn heal_all(&mut self) {
        self.cuts.clear();
        self.link_loss.clear();
        self.config.loss = 0.0;
    }

    /// Whether any cut or loss is in force.
    pub fn impaired(&self) -> bool {
        !self.cuts.is_empty() || !self.link_loss.is_empty() || self.config.loss > 0.0
    }

    /// The loss of every link when no cut and no per-link loss is in force (`None`
    /// otherwise): then all links are alike.
    pub fn uniform_loss(&self) -> Option<f64> {
        (self.cuts.is_empty() && self.link_loss.is_empty()).then_some(self.config.loss)
    }

    /// Whether `from → to` is not cut.
    pub fn connected(&self, from: NodeId, to: NodeId) -> bool {
        from == to
            || !self
                .cuts
                .values()
                .any(|c| c.from.contains(&from) && c.to.contains(&to))
    }

    /// Whether both directions between `a` and `b` are up.
    pub fn mutual(&self, a: NodeId, b: NodeId) -> bool {
        self.connected(a, b) && self.connected(b, a)
    }

    /// Loss probability of `from → to`.
    pub fn loss(&self, from: NodeId, to: NodeId) -> f64 {
        self.link_loss
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.loss)
    }

    /// One message's one-way latency on `from → to`.
    pub fn latency(&self, rng: &mut SimRng, from: NodeId, to: NodeId) -> Micros {
        if from == to {
            return 0;
        }
        let base = if self.zones.get(&from) == self.zones.get(&to) {
            self.config.same_zone_latency_us
        } else {
            self.config.cross_zone_latency_us
        };
        let scaled = base as f64 * self.link_factor(from, to);
        let jitter = rng.exponential(self.config.jitter_mean_us as f64);
        (scaled + jitter).round() as Micros
    }

    /// The fate of one datagram sent now on `from → to`.
    pub fn datagram(&self, rng: &mut SimRng, from: NodeId, to: NodeId) -> Fate {
        if !self.connected(from, to) {
            return Fate::Cut;
        }
        if rng.chance(self.loss(from, to)) {
            return Fate::Lost;
        }
        let copies = if rng.chance(self.config.duplicate) {
            2
        } else {
            1
        };
        let delays = (0..copies)
            .map(|_| {
                let held = if rng.chance(self.config.reorder) {
                    rng.between(0, self.config.reorder_delay_max_us)
                } else {
                    0
                };
                self.latency(rng, from, to) + held
            })
            .collect();
        Fate::Delivered(delays)
    }

    /// The link's fixed latency factor, within `1 ± LINK_SPREAD`, a pure function of the
    /// seed and the link (no draw, so adding a node changes no other link).
    fn link_factor(&self, from: NodeId, to: NodeId) -> f64 {
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&self.seed.to_le_bytes());
        key[8..16].copy_from_slice(&from.to_le_bytes());
        key[16..].copy_from_slice(&to.to_le_bytes());
        let unit = (xxhash_rust::xxh3::xxh3_64(&key) >> 11) as f64 / (1u64 << 53) as f64;
        1.0 + LINK_SPREAD * (2.0 * unit - 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> Network {
        let mut n = Network::new(NetConfig::default(), 7);
        for id in 1..=4 {
            n.place(id, (id % 2) as usize);
        }
        n
    }

    #[test]
    fn cuts_are_directed_and_heal() {
        let mut n = net();
        n.cut(
            "one-way",
            Cut {
                from: BTreeSet::from([1]),
                to: BTreeSet::from([2, 3]),
            },
        );
        assert!(!n.connected(1, 2) && n.connected(2, 1));
        assert!(!n.mutual(1, 3) && n.mutual(2, 3));
        assert_eq!(n.datagram(&mut SimRng::new(1), 1, 2), Fate::Cut);
        assert!(n.heal("one-way"));
        assert!(n.mutual(1, 2));
    }

    #[test]
    fn loss_matches_its_probability_and_latency_its_zones() {
        let mut n = net();
        n.set_loss(0.1);
        let mut rng = SimRng::new(3);
        let lost = (0..10_000)
            .filter(|_| n.datagram(&mut rng, 1, 3) == Fate::Lost)
            .count();
        assert!((800..1200).contains(&lost), "{lost} of 10000 lost");
        let same: u64 = (0..1000).map(|_| n.latency(&mut rng, 1, 3)).sum();
        let cross: u64 = (0..1000).map(|_| n.latency(&mut rng, 1, 2)).sum();
        assert!(same < cross, "same zone {same} vs cross {cross}");
    }
}
