//! Pictures: node states over virtual time as the leader shows them (HEALTHY, SUSPECTED,
//! FAILED, and how many processes are really down), with the scenario's marks.

use std::path::Path;

use plotters::prelude::*;

use crate::error::SimError;
use crate::observe::StateSample;
use crate::scenario::Report;

/// Picture size in pixels.
const SIZE: (u32, u32) = (1000, 480);

/// Which count of a sample a line shows.
type Count = fn(&StateSample) -> usize;

fn plot_error(e: impl std::fmt::Display) -> SimError {
    SimError::Plot(e.to_string())
}

/// Writes `report`'s timeline to `path` as SVG.
pub fn write_svg(report: &Report, path: &Path) -> Result<(), SimError> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let end_s = report.virtual_us as f64 / 1e6;
    let top = report.params.nodes as f64 * 1.05 + 1.0;
    let title = format!(
        "netsim {}: {} nodes, seed {} (leader's view)",
        report.scenario.name(),
        report.params.nodes,
        report.params.seed
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end_s.max(1.0), 0.0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("virtual time (s)")
        .y_desc("nodes")
        .draw()
        .map_err(plot_error)?;
    let series: [(&str, RGBColor, Count); 4] = [
        ("HEALTHY", GREEN, |s| s.healthy),
        ("SUSPECTED", RGBColor(230, 150, 0), |s| s.suspected),
        ("FAILED", RED, |s| s.failed),
        ("crashed (truth)", BLACK, |s| s.crashed),
    ];
    for (label, color, value) in series {
        let points = report
            .timeline
            .iter()
            .map(|s| (s.at as f64 / 1e6, value(s) as f64));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    for (at, label) in &report.marks {
        let x = *at as f64 / 1e6;
        let line = PathElement::new(vec![(x, 0.0), (x, top)], BLUE.mix(0.5));
        chart
            .draw_series(std::iter::once(line))
            .map_err(plot_error)?;
        let text = Text::new(
            label.clone(),
            (x, top * 0.97),
            ("sans-serif", 12).into_font(),
        );
        chart
            .draw_series(std::iter::once(text))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}
