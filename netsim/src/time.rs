//! Virtual time. The simulation owns one clock, in microseconds since the run started;
//! nothing in a run reads the wall clock. Agents see it as Unix milliseconds through
//! their `Clock` seam.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agent::seam::Clock;

/// Virtual microseconds since the start of a run.
pub type Micros = u64;

/// Unix milliseconds at virtual time zero (any fixed value: runs must not depend on
/// the date they were made).
pub const START_UNIX_MS: u64 = 1_700_000_000_000;

/// `ms` milliseconds in [`Micros`].
pub const fn millis(ms: u64) -> Micros {
    ms * 1_000
}

/// `s` seconds in [`Micros`].
pub const fn secs(s: u64) -> Micros {
    s * 1_000_000
}

/// Milliseconds, as a float for reports.
pub fn as_ms(t: Micros) -> f64 {
    t as f64 / 1_000.0
}

/// The run's clock: set by the event loop, read by every agent.
#[derive(Clone, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// Now, in virtual microseconds.
    pub fn now(&self) -> Micros {
        self.0.load(Ordering::Relaxed)
    }

    /// Moves the clock to `t`; time never goes back.
    pub fn advance_to(&self, t: Micros) {
        debug_assert!(t >= self.now(), "virtual time went back");
        self.0.store(t, Ordering::Relaxed);
    }

    /// The agents' view of this clock: Unix milliseconds.
    pub fn unix_clock(&self) -> Clock {
        let inner = self.0.clone();
        Arc::new(move || START_UNIX_MS + inner.load(Ordering::Relaxed) / 1_000)
    }

    /// Now as the agents see it, in Unix milliseconds.
    pub fn unix_ms(&self) -> u64 {
        START_UNIX_MS + self.now() / 1_000
    }
}
