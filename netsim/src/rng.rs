//! The run's randomness: one seed, from which every random choice of the run derives
//! (the network's draws, fault timings, and each agent's own RNG seed, foca's included).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A seeded generator. `StdRng` is reproducible for a given `rand` version (pinned by
/// `Cargo.lock`), which is what the replay contract needs.
pub struct SimRng(StdRng);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(StdRng::seed_from_u64(seed))
    }

    /// A fresh seed for a sub-generator (e.g. one agent's), drawn from this one.
    pub fn next_seed(&mut self) -> u64 {
        self.0.random()
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random::<f64>() < p
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            low
        } else {
            self.0.random_range(low..=high)
        }
    }

    /// Exponentially distributed with mean `mean` (0 for a mean of 0).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        let u: f64 = self.0.random();
        // 1 - u is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - u).ln()
    }

    /// Picks an index below `len` (`len` > 0).
    pub fn index(&mut self, len: usize) -> usize {
        self.0.random_range(0..len)
    }
}
