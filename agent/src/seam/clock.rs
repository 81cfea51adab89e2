//! The clock seam: every decision that reads the time reads it through a [`Clock`], so
//! tests and netsim run the same code on a virtual clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The clock seam: Unix milliseconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    })
}
