//! Two small SVG charts drawn by hand (no plotting dependency): a log-log line chart and a grouped
//! bar chart.

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 420.0;
const L: f64 = 70.0;
const R: f64 = 230.0;
const T: f64 = 40.0;
const B: f64 = 60.0;
/// Extra width on the right so that long legend entries are not cut off.
const LEGEND_ROOM: f64 = 140.0;
const COLORS: [&str; 8] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#7f7f7f",
];

fn header(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>\n",
        W + LEGEND_ROOM,
        (W - R + L) / 2.0
    )
}

/// The x and y axis lines of the plot area.
fn axes(svg: &mut String) {
    let _ = writeln!(
        svg,
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - B,
        W - R,
        H - B
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>",
        H - B
    );
}

fn legend(svg: &mut String, names: &[String]) {
    for (i, n) in names.iter().enumerate() {
        let y = T + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            W - R + 15.0,
            y - 10.0,
            COLORS[i % COLORS.len()],
            W - R + 32.0,
            y,
            n
        );
    }
}

/// Lines of (x, y) points on log-log axes.
pub fn log_lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    xticks: &[(f64, &str)],
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|p| p.0 > 0.0 && p.1 > 0.0)
        .collect();
    let (x0, x1) = (
        pts.iter().map(|p| p.0).fold(f64::MAX, f64::min).log10(),
        pts.iter().map(|p| p.0).fold(0.0, f64::max).log10(),
    );
    let (y0, y1) = (
        pts.iter()
            .map(|p| p.1)
            .fold(f64::MAX, f64::min)
            .log10()
            .floor(),
        pts.iter().map(|p| p.1).fold(0.0, f64::max).log10().ceil(),
    );
    let sx = |x: f64| L + (x.log10() - x0) / (x1 - x0).max(1e-9) * (W - L - R);
    let sy = |y: f64| H - B - (y.log10() - y0) / (y1 - y0).max(1e-9) * (H - T - B);
    let mut svg = header(title);
    axes(&mut svg);
    let mut e = y0 as i32;
    while e <= y1 as i32 {
        let y = sy(10f64.powi(e));
        let _ = writeln!(svg, "<line x1=\"{L}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text>", W - R, L - 6.0, y + 4.0);
        e += 1;
    }
    for (x, label) in xticks {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            sx(*x),
            H - B + 18.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>",
        (L + W - R) / 2.0,
        H - 15.0
    );
    let _ = writeln!(svg, "<text x=\"18\" y=\"{}\" transform=\"rotate(-90 18 {})\" text-anchor=\"middle\">{ylabel}</text>", (T + H - B) / 2.0, (T + H - B) / 2.0);
    for (i, (_, points)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.0 > 0.0 && p.1 > 0.0)
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for p in points.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0) {
            let _ = writeln!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                sx(p.0),
                sy(p.1)
            );
        }
    }
    legend(
        &mut svg,
        &series.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
    );
    svg.push_str("</svg>\n");
    svg
}

/// Groups of bars: `groups` along x, one bar per series in each; a dashed line at `reference`.
pub fn bars(
    title: &str,
    ylabel: &str,
    groups: &[String],
    series: &[(String, Vec<f64>)],
    reference: f64,
) -> String {
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(reference, f64::max)
        * 1.1;
    let sy = |y: f64| H - B - y / ymax * (H - T - B);
    let gw = (W - L - R) / groups.len().max(1) as f64;
    let bw = gw * 0.8 / series.len().max(1) as f64;
    let mut svg = header(title);
    axes(&mut svg);
    let step = if ymax > 4.0 { 1.0 } else { 0.25 };
    let mut y = 0.0;
    while y <= ymax {
        let _ = writeln!(svg, "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{y:.2}</text>", sy(y), W - R, L - 6.0, sy(y) + 4.0);
        y += step;
    }
    for (gi, g) in groups.iter().enumerate() {
        let gx = L + gi as f64 * gw + gw * 0.1;
        for (si, (_, vals)) in series.iter().enumerate() {
            let v = vals.get(gi).copied().unwrap_or(f64::NAN);
            if v.is_finite() {
                let _ = writeln!(
                    svg,
                    "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>",
                    gx + si as f64 * bw,
                    sy(v),
                    bw * 0.92,
                    sy(0.0) - sy(v),
                    COLORS[si % COLORS.len()]
                );
            }
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{g}</text>",
            gx + gw * 0.4,
            H - B + 18.0
        );
    }
    let _ = writeln!(svg, "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\" stroke-dasharray=\"5,4\"/>", sy(reference), W - R);
    let _ = writeln!(svg, "<text x=\"18\" y=\"{}\" transform=\"rotate(-90 18 {})\" text-anchor=\"middle\">{ylabel}</text>", (T + H - B) / 2.0, (T + H - B) / 2.0);
    legend(
        &mut svg,
        &series.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
    );
    svg.push_str("</svg>\n");
    svg
}

/// Lines of (x, y) points on linear axes from zero.
pub fn lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let xmax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1e-9, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max)
        .ceil();
    let sx = |x: f64| L + x / xmax * (W - L - R);
    let sy = |y: f64| H - B - y / ymax * (H - T - B);
    let mut svg = header(title);
    axes(&mut svg);
    for i in 0..=4 {
        let y = ymax * i as f64 / 4.0;
        let _ = writeln!(svg, "<line x1=\"{L}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#eee\"/><text x=\"{2}\" y=\"{3}\" text-anchor=\"end\">{y:.1}</text>", sy(y), W - R, L - 6.0, sy(y) + 4.0);
        let x = xmax * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{x:.2}</text>",
            sx(x),
            H - B + 18.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>",
        (L + W - R) / 2.0,
        H - 15.0
    );
    let _ = writeln!(svg, "<text x=\"18\" y=\"{}\" transform=\"rotate(-90 18 {})\" text-anchor=\"middle\">{ylabel}</text>", (T + H - B) / 2.0, (T + H - B) / 2.0);
    for (i, (_, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", sx(p.0), sy(p.1)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            COLORS[i % COLORS.len()],
            path.join(" ")
        );
    }
    legend(
        &mut svg,
        &series.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
    );
    svg.push_str("</svg>\n");
    svg
}
