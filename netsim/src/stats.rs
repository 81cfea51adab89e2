//! Percentile summaries for reports.

use serde::Serialize;

use crate::time::{Micros, as_ms};

/// p50, p99 and max of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Values summarised.
    pub count: usize,
    /// Smallest.
    pub min_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Summary {
    /// The summary of `values` (microseconds); all zero when empty.
    pub fn of(values: &[Micros]) -> Self {
        if values.is_empty() {
            return Summary::default();
        }
        let mut sorted = values.to_vec();
        sorted.sort_unstable();
        Summary {
            count: sorted.len(),
            min_ms: as_ms(sorted[0]),
            p50_ms: as_ms(percentile(&sorted, 0.50)),
            p99_ms: as_ms(percentile(&sorted, 0.99)),
            max_ms: as_ms(*sorted.last().expect("not empty")),
        }
    }

    /// Adds `<prefix>_p50_ms`, `<prefix>_p99_ms` and `<prefix>_max_ms` to `figures`.
    pub fn put(&self, figures: &mut serde_json::Map<String, serde_json::Value>, prefix: &str) {
        figures.insert(format!("{prefix}_p50_ms"), round(self.p50_ms).into());
        figures.insert(format!("{prefix}_p99_ms"), round(self.p99_ms).into());
        figures.insert(format!("{prefix}_max_ms"), round(self.max_ms).into());
    }

    /// "p50 / p99 / max" for a human.
    pub fn human(&self) -> String {
        format!(
            "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
            self.p50_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Micros], q: f64) -> Micros {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Rounds to one decimal for JSON.
pub fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<Micros> = (1..=100).map(|v| v * 1000).collect();
        let s = Summary::of(&values);
        assert_eq!((s.p50_ms, s.p99_ms, s.max_ms), (50.0, 99.0, 100.0));
        assert_eq!(Summary::of(&[]).count, 0);
    }
}
