//! The report's three charts, drawn with `plotters` into SVG strings: a log-log line chart, a
//! grouped bar chart and a linear line chart. Its SVG backend writes text as `<text>` elements (the
//! viewer picks the font), so nothing here needs font files or C libraries.

use std::error::Error;
use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

/// Width and height of every chart, legend included.
const SIZE: (u32, u32) = (960, 440);
/// Width of the legend column on the right, outside the plot so that it never hides data and long
/// names are not cut off.
const LEGEND_WIDTH: u32 = 300;
/// Series colours in order: the first series (our pool, by convention of the callers) in red.
const COLORS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// Font sizes as plotters counts them: it writes `font-size` as the size over 1.24, so these come
/// out at 16 px for the title and 13 px for the rest.
const TITLE: (&str, u32) = ("sans-serif", 20);
const TEXT: (&str, u32) = ("sans-serif", 16);

/// A chart as SVG text, or why plotters could not draw it.
pub type Drawn = Result<String, Box<dyn Error>>;

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Writes a chart to `path`; a chart that failed to draw leaves the previous file in place (an empty
/// or half-drawn file would replace a good plot in the docs), and either failure is said on stderr.
pub fn save(path: &Path, chart: Drawn) {
    let written = chart.and_then(|svg| Ok(std::fs::write(path, svg)?));
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", path.display());
    }
}

/// Draws on a white canvas of [`SIZE`] and returns the SVG text. `draw` gets the plot's area and
/// the legend's column.
fn render(
    draw: impl FnOnce(
        &DrawingArea<SVGBackend, Shift>,
        &DrawingArea<SVGBackend, Shift>,
    ) -> Result<(), Box<dyn Error>>,
) -> Drawn {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);
        draw(&plot, &legend)?;
        root.present()?;
    }
    Ok(svg)
}

/// The chart's title and room for the axes' labels and descriptions.
fn frame<'a, 'b>(
    plot: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(plot);
    builder
        .caption(title, TITLE)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70);
    builder
}

/// A colour swatch and a name per series, top-down in the legend column. Drawn by hand rather than
/// with plotters' series labels, which are placed inside the plot, over the data.
fn legend<'a>(
    area: &DrawingArea<SVGBackend, Shift>,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), Box<dyn Error>> {
    for (i, name) in names.enumerate() {
        let y = 50 + i as i32 * 20;
        area.draw(&Rectangle::new([(10, y), (22, y + 12)], color(i).filled()))?;
        area.draw(&Text::new(name, (30, y), TEXT))?;
    }
    Ok(())
}

/// The x range of a log axis over `values` (all positive), with a factor of two of margin on
/// either side so that the end points and their labels are not cut; 1..10 when there are none.
fn log_span(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        1.0..10.0
    } else {
        lo / 2.0..hi * 2.0
    }
}

/// The whole decades that contain `values` (all positive), as exponents of ten.
fn decades(values: impl Iterator<Item = f64>) -> Range<i32> {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0..1;
    }
    let (lo, hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    lo..hi.max(lo + 1)
}

/// 1, 10, 100, 1k, ..., 1M, ...: decade labels that read at a glance.
fn decade_label(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{}G", v / 1e9),
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

/// Lines of (x, y) points on log-log axes, with a dot at each point; `xticks` are the x values to
/// label and their labels. Points with a coordinate at or below zero have no place on a log axis
/// and are left out.
pub fn log_lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xticks: &[(f64, &str)],
    series: &[(String, Vec<(f64, f64)>)],
) -> Drawn {
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(n, pts)| {
            (
                n.as_str(),
                pts.iter()
                    .copied()
                    .filter(|p| p.0 > 0.0 && p.1 > 0.0)
                    .collect(),
            )
        })
        .collect();
    let x = log_span(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let ys = decades(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let xkeys = xticks.iter().map(|t| t.0).collect();
    let ykeys = (ys.start..=ys.end).map(|e| 10f64.powi(e)).collect();
    let xname = |v: &f64| {
        xticks
            .iter()
            .find(|t| t.0 == *v)
            .map_or_else(String::new, |t| t.1.to_string())
    };
    render(|plot, legend_area| {
        let mut chart = frame(plot, title).build_cartesian_2d(
            x.log_scale().with_key_points(xkeys),
            (10f64.powi(ys.start)..10f64.powi(ys.end))
                .log_scale()
                .with_key_points(ykeys),
        )?;
        chart
            .configure_mesh()
            .label_style(TEXT)
            .axis_desc_style(TEXT)
            .x_desc(xlabel)
            .y_desc(ylabel)
            .x_label_formatter(&xname)
            .y_label_formatter(&|v| decade_label(*v))
            .light_line_style(WHITE)
            .draw()?;
        for (i, (_, pts)) in series.iter().enumerate() {
            let line = color(i).stroke_width(2);
            chart.draw_series(LineSeries::new(pts.iter().copied(), line))?;
            // Filled dots (a line series' own points are rings): the measured sizes are few and
            // far apart, so the dot is the data and the line only guides the eye.
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color(i).filled())))?;
        }
        legend(legend_area, series.iter().map(|s| s.0))
    })
}

/// Groups of bars: `groups` along x, one bar per series in each; a dashed line at `reference`.
/// Missing (non-finite) values leave a gap.
pub fn bars(
    title: &str,
    ylabel: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    reference: f64,
) -> Drawn {
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(reference, f64::max)
        * 1.1;
    // Group `g` spans [g, g + 1) * GROUP on an integer axis, because plotters' chosen key points
    // (one label per group) cannot be formatted on an f64 axis: bars fill the middle 80% of the
    // group, its name sits at the centre.
    const GROUP: u32 = 1000;
    let n = groups.len().max(1) as u32 * GROUP;
    let bar = GROUP * 8 / 10 / series.len().max(1) as u32;
    let centres = (0..groups.len() as u32)
        .map(|g| g * GROUP + GROUP / 2)
        .collect();
    let group_name = |x: &u32| {
        groups
            .get((x / GROUP) as usize)
            .cloned()
            .unwrap_or_default()
    };
    render(|plot, legend_area| {
        let mut chart =
            frame(plot, title).build_cartesian_2d((0..n).with_key_points(centres), 0.0..ymax)?;
        chart
            .configure_mesh()
            .label_style(TEXT)
            .axis_desc_style(TEXT)
            .disable_x_mesh()
            .y_desc(ylabel)
            .x_label_formatter(&group_name)
            .y_label_formatter(&|v| format!("{v:.2}"))
            .light_line_style(WHITE)
            .draw()?;
        for (si, (_, values)) in series.iter().enumerate() {
            let left = |g: usize| g as u32 * GROUP + GROUP / 10 + si as u32 * bar;
            chart.draw_series(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(g, v)| {
                        Rectangle::new(
                            [(left(g), 0.0), (left(g) + bar * 92 / 100, *v)],
                            color(si).filled(),
                        )
                    }),
            )?;
        }
        chart.draw_series(DashedLineSeries::new(
            [(0, reference), (n, reference)],
            6,
            4,
            BLACK.into(),
        ))?;
        legend(legend_area, series.iter().map(|s| s.0.as_str()))
    })
}

/// Lines of (x, y) points on linear axes from zero.
pub fn lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Drawn {
    let xmax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        .ceil();
    render(|plot, legend_area| {
        let mut chart = frame(plot, title).build_cartesian_2d(0.0..xmax, 0.0..ymax)?;
        chart
            .configure_mesh()
            .label_style(TEXT)
            .axis_desc_style(TEXT)
            .x_desc(xlabel)
            .y_desc(ylabel)
            .x_label_formatter(&|v| format!("{v:.2}"))
            .y_label_formatter(&|v| format!("{v:.1}"))
            .light_line_style(WHITE)
            .draw()?;
        for (i, (_, pts)) in series.iter().enumerate() {
            chart.draw_series(LineSeries::new(
                pts.iter().copied(),
                color(i).stroke_width(2),
            ))?;
        }
        legend(legend_area, series.iter().map(|s| s.0.as_str()))
    })
}
