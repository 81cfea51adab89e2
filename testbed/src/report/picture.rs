//! `report.svg`: latency and throughput over time with the fault windows shaded, and
//! each agent's resident memory.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::coord::CoordTranslate;
use plotters::prelude::*;

use super::Completed;
use crate::history::{EventType, Function};
use crate::run::RunResult;

/// Picture size in pixels.
const SIZE: (u32, u32) = (1200, 900);
/// Above this many successful operations of one function, the latency panel draws a
/// summary per time slice instead of a dot per operation (a long run's picture would
/// otherwise weigh tens of megabytes).
const MAX_LATENCY_DOTS: usize = 20_000;
/// Time slices of a summarised latency panel (about one per pixel column).
const LATENCY_SLICES: usize = 1_000;

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the report: {e}")
}

/// Latency (log scale) and throughput over time with the faults shaded, and memory.
pub(super) fn write(path: &Path, r: &RunResult, ops: &[Completed]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let panels = root.split_evenly((3, 1));
    let end_s = ops
        .iter()
        .map(|o| o.complete_ns)
        .max()
        .unwrap_or(0)
        .max(r.faults_end_ns) as f64
        / 1e9;
    let end_s = end_s.max(1.0);
    latency_panel(&panels[0], r, ops, end_s)?;
    throughput_panel(&panels[1], r, ops, end_s)?;
    memory_panel(&panels[2], r, end_s)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

/// A chart builder on `area` with the report's margins, and `caption` if not empty.
fn builder<'a, 'b>(area: &'a Area<'b>, caption: &str) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin(8).x_label_area_size(30).y_label_area_size(55);
    if !caption.is_empty() {
        b.caption(caption, ("sans-serif", 16));
    }
    b
}

/// Draws the series labels of `chart`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)
}

fn shade_faults<DB: DrawingBackend>(
    chart: &mut ChartContext<
        '_,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    r: &RunResult,
    low: f64,
    high: f64,
) -> anyhow::Result<()> {
    let shade = RGBColor(255, 200, 120).mix(0.35).filled();
    chart
        .draw_series(r.faults.iter().map(|f| {
            Rectangle::new(
                [
                    (f.start_ns as f64 / 1e9, low),
                    (f.end_ns as f64 / 1e9, high),
                ],
                shade,
            )
        }))
        .map_err(plot_error)?;
    chart
        .draw_series(r.faults.iter().map(|f| {
            Text::new(
                f.kind.name(),
                // Below the caption, at the window's left edge.
                (f.start_ns as f64 / 1e9, low + (high - low) * 0.93),
                ("sans-serif", 10).into_font(),
            )
        }))
        .map_err(plot_error)?;
    Ok(())
}

fn latency_panel(
    area: &Area<'_>,
    r: &RunResult,
    ops: &[Completed],
    end_s: f64,
) -> anyhow::Result<()> {
    let max_ms = ops.iter().map(Completed::latency_ms).fold(10.0, f64::max) * 1.2;
    let many = ops.iter().filter(|o| o.kind == EventType::Ok).count() > MAX_LATENCY_DOTS;
    let caption = format!(
        "testbed seed {}: latency of successful operations (faults shaded{})",
        r.config.seed,
        if many {
            "; per time slice: fastest, median, slowest"
        } else {
            ""
        }
    );
    let mut chart = builder(area, &caption)
        .build_cartesian_2d(0.0..end_s, (0.1..max_ms).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc("ms (log)")
        .draw()
        .map_err(plot_error)?;
    let mut shaded = builder(area, "")
        .build_cartesian_2d(0.0..end_s, 0.0..1.0)
        .map_err(plot_error)?;
    shade_faults(&mut shaded, r, 0.0, 1.0)?;
    for (f, color) in [(Function::Read, BLUE), (Function::Write, RED)] {
        let dots: Vec<(f64, f64)> = ops
            .iter()
            .filter(|o| o.f == f && o.kind == EventType::Ok)
            .map(|o| (o.complete_ns as f64 / 1e9, o.latency_ms().max(0.1)))
            .collect();
        chart
            .draw_series(
                summarised(dots, end_s, many)
                    .into_iter()
                    .map(|dot| Circle::new(dot, 1, color.mix(0.5).filled())),
            )
            .map_err(plot_error)?
            .label(format!("{f:?}"))
            .legend(move |(x, y)| Circle::new((x, y), 3, color.filled()));
    }
    legend(&mut chart)
}

/// `dots` (seconds, milliseconds) as they are, or, when there are too `many`, the
/// fastest, the median and the slowest of each time slice (outliers stay visible).
fn summarised(dots: Vec<(f64, f64)>, end_s: f64, many: bool) -> Vec<(f64, f64)> {
    if !many {
        return dots;
    }
    let width = end_s / LATENCY_SLICES as f64;
    let mut slices: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (t, ms) in dots {
        slices.entry((t / width) as u64).or_default().push(ms);
    }
    slices
        .into_iter()
        .flat_map(|(slice, mut v)| {
            v.sort_by(f64::total_cmp);
            let t = (slice as f64 + 0.5) * width;
            [v[0], v[v.len() / 2], v[v.len() - 1]].map(|ms| (t, ms))
        })
        .collect()
}

fn throughput_panel(
    area: &Area<'_>,
    r: &RunResult,
    ops: &[Completed],
    end_s: f64,
) -> anyhow::Result<()> {
    let seconds = end_s.ceil() as usize + 1;
    let mut per_sec = vec![[0usize; 2]; seconds];
    for o in ops {
        let i = (o.complete_ns / 1_000_000_000) as usize;
        if let Some(slot) = per_sec.get_mut(i) {
            slot[usize::from(o.kind != EventType::Ok)] += 1;
        }
    }
    let top = per_sec
        .iter()
        .map(|s| s[0].max(s[1]))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let mut chart = builder(area, "operations per second")
        .build_cartesian_2d(0.0..end_s, 0.0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc("ops/s")
        .draw()
        .map_err(plot_error)?;
    shade_faults(&mut chart, r, 0.0, top)?;
    for (i, label, color) in [(0, "ok", GREEN), (1, "fail or info", RED)] {
        chart
            .draw_series(LineSeries::new(
                per_sec
                    .iter()
                    .enumerate()
                    .map(|(t, c)| (t as f64, c[i] as f64)),
                color.stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    legend(&mut chart)
}

fn memory_panel(area: &Area<'_>, r: &RunResult, end_s: f64) -> anyhow::Result<()> {
    let mut by_host: BTreeMap<u16, Vec<(f64, f64)>> = BTreeMap::new();
    for u in &r.usage {
        by_host.entry(u.host).or_default().push((
            u.time_ns as f64 / 1e9,
            u.rss_bytes as f64 / (1u64 << 20) as f64,
        ));
    }
    let top = by_host.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let mut chart = builder(area, "agents' resident memory")
        .build_cartesian_2d(0.0..end_s, 0.0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("s")
        .y_desc("MiB")
        .draw()
        .map_err(plot_error)?;
    for (i, (host, points)) in by_host.into_iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(1)))
            .map_err(plot_error)?
            .label(format!("host {host}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_dots_are_drawn_as_they_are() {
        let dots = vec![(0.5, 3.0), (1.5, 900.0)];
        assert_eq!(summarised(dots.clone(), 2.0, false), dots);
    }

    #[test]
    fn many_dots_become_three_per_slice_and_keep_the_slowest() {
        let mut dots: Vec<(f64, f64)> = (0..MAX_LATENCY_DOTS * 2)
            .map(|i| {
                (
                    i as f64 / (MAX_LATENCY_DOTS * 2) as f64 * 100.0,
                    1.0 + (i % 7) as f64,
                )
            })
            .collect();
        dots.push((50.0, 29_754.6));
        let out = summarised(dots, 100.0, true);
        assert_eq!(out.len(), LATENCY_SLICES * 3);
        assert!(out.iter().any(|d| d.1 == 29_754.6));
        assert!(
            out.iter()
                .all(|d| (1.0..=7.0).contains(&d.1) || d.1 == 29_754.6)
        );
    }
}
