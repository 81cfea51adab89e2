//! Reading load samples: whether they cover a window, and the load they show.

use super::LoadSample;
use crate::model::UnixMillis;

/// The load of a partition over a window its samples cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct WindowLoad {
    /// Lowest sample of the window: the load sustained throughout.
    pub min: f64,
    /// Highest sample of the window.
    pub max: f64,
}

/// Whether a sample can be used: a finite, non-negative rate observed no later than now.
fn valid(s: &LoadSample, now_ms: UnixMillis) -> bool {
    s.ops_per_sec.is_finite() && s.ops_per_sec >= 0.0 && s.at_ms <= now_ms
}

/// The load over `[now - window_ms, now]` if the valid samples of that window cover it:
/// the first no later than `max_gap_ms` after its start, none further apart than
/// `max_gap_ms`, and the last no earlier than `max_gap_ms` before now. `None` when
/// they do not (missing data is never read as load, nor as its absence).
pub(super) fn covered_window(
    samples: &[LoadSample],
    now_ms: UnixMillis,
    window_ms: u64,
    max_gap_ms: u64,
) -> Option<WindowLoad> {
    let start = now_ms.saturating_sub(window_ms);
    let mut times: Vec<(UnixMillis, f64)> = samples
        .iter()
        .filter(|s| valid(s, now_ms) && s.at_ms >= start)
        .map(|s| (s.at_ms, s.ops_per_sec))
        .collect();
    times.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    let (first, last) = (times.first()?.0, times.last()?.0);
    let gaps_ok = times.windows(2).all(|w| w[1].0 - w[0].0 <= max_gap_ms);
    if first - start > max_gap_ms || now_ms - last > max_gap_ms || !gaps_ok {
        return None;
    }
    let rates = times.iter().map(|t| t.1);
    Some(WindowLoad {
        min: rates.clone().fold(f64::INFINITY, f64::min),
        max: rates.fold(0.0, f64::max),
    })
}

/// The most recent valid sample no older than `max_age_ms`, if any (the largest rate
/// among samples of the same instant, so the result does not depend on their order).
pub(super) fn latest(samples: &[LoadSample], now_ms: UnixMillis, max_age_ms: u64) -> Option<f64> {
    samples
        .iter()
        .filter(|s| valid(s, now_ms) && now_ms - s.at_ms <= max_age_ms)
        .max_by(|a, b| {
            a.at_ms
                .cmp(&b.at_ms)
                .then(a.ops_per_sec.total_cmp(&b.ops_per_sec))
        })
        .map(|s| s.ops_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(points: &[(u64, f64)]) -> Vec<LoadSample> {
        points
            .iter()
            .map(|&(at_ms, ops_per_sec)| LoadSample { at_ms, ops_per_sec })
            .collect()
    }

    #[test]
    fn samples_covering_the_window_give_min_and_max() {
        let s = series(&[(40, 5.0), (55, 9.0), (70, 7.0), (100, 6.0), (85, 8.0)]);
        let w = covered_window(&s, 100, 60, 15).unwrap();
        assert_eq!((w.min, w.max), (5.0, 9.0));
    }

    #[test]
    fn gaps_at_the_start_in_the_middle_or_at_the_end_uncover_the_window() {
        let window = |pts: &[(u64, f64)]| covered_window(&series(pts), 100, 60, 15);
        assert!(window(&[(56, 1.0), (70, 1.0), (85, 1.0), (100, 1.0)]).is_none());
        assert!(window(&[(40, 1.0), (55, 1.0), (71, 1.0), (85, 1.0), (100, 1.0)]).is_none());
        assert!(window(&[(40, 1.0), (55, 1.0), (70, 1.0), (84, 1.0)]).is_none());
        assert!(window(&[(55, 1.0), (70, 1.0), (85, 1.0)]).is_some());
        assert!(window(&[]).is_none());
    }

    #[test]
    fn invalid_and_future_samples_are_ignored() {
        let s = series(&[(40, 1.0), (50, f64::NAN), (55, 2.0), (70, -3.0), (101, 9.0)]);
        // Without the invalid ones, 55 to 100 is a gap.
        assert!(covered_window(&s, 100, 60, 15).is_none());
        assert_eq!(latest(&s, 100, 100), Some(2.0));
        assert_eq!(latest(&s, 100, 10), None);
    }
}
