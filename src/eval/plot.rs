//! The report's plot, a hand-written SVG: one group of bars per metric, one
//! bar per arm (the reference arm first, in grey: "before"), all on one 0..1
//! axis (WER as a rate, QA as a share), with a legend of the arms.

use super::forgetting::Report;
use std::fmt::Write;

const COLORS: [&str; 12] = [
    "#8c8c8c", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78",
];
/// Grey for the reference arm only; the others cycle through the rest.
fn color(arm: usize) -> &'static str {
    if arm == 0 {
        COLORS[0]
    } else {
        COLORS[1 + (arm - 1) % (COLORS.len() - 1)]
    }
}

const BAR: f64 = 18.0;
const GAP: f64 = 28.0;
/// Wide enough for a metric's label under its group.
const MIN_GROUP: f64 = 150.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 40.0;
const PLOT_HEIGHT: f64 = 240.0;
const LEGEND_ROW: f64 = 18.0;
/// Room for the title.
const MIN_WIDTH: f64 = 620.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG document: `<rect class="bar">` per (metric, arm) with a value,
/// carrying `data-arm` and `data-metric`, and a `<title>` with the number.
pub fn grouped_bars(report: &Report) -> String {
    let metrics = report.metrics();
    let arms = &report.arms;
    let group_width = (BAR * arms.len() as f64 + GAP).max(MIN_GROUP);
    let width = (LEFT + group_width * metrics.len().max(1) as f64 + 20.0).max(MIN_WIDTH);
    let legend_top = TOP + PLOT_HEIGHT + 50.0;
    let height = legend_top + LEGEND_ROW * arms.len() as f64 + 10.0;
    let top_value = arms.iter().flat_map(|a| a.metrics.values().copied()).fold(1.0, f64::max);
    let y = |v: f64| TOP + PLOT_HEIGHT * (1.0 - v / top_value);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="13">Before (grey: {}) and after, per metric (WER ↓ lower is better, QA ↑ higher)</text>"#,
        escape(&arms[0].arm.name)
    );
    for tick in 0..=4 {
        let v = top_value * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            width - 20.0,
            LEFT - 6.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    for (g, metric) in metrics.iter().enumerate() {
        let x0 = LEFT + g as f64 * group_width + (group_width - BAR * arms.len() as f64) / 2.0;
        for (i, arm) in arms.iter().enumerate() {
            let Some(&v) = arm.metrics.get(metric) else { continue };
            let _ = writeln!(
                svg,
                r#"<rect class="bar" data-arm="{}" data-metric="{}" x="{:.1}" y="{:.1}" width="{BAR}" height="{:.1}" fill="{}"><title>{}: {} {v:.3}</title></rect>"#,
                escape(&arm.arm.name),
                metric.key(),
                x0 + BAR * i as f64,
                y(v),
                PLOT_HEIGHT + TOP - y(v),
                color(i),
                escape(&arm.arm.name),
                metric.label(),
            );
        }
        let arrow = if metric.is_wer() { "↓" } else { "↑" };
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} {arrow}</text>"#,
            x0 + BAR * arms.len() as f64 / 2.0,
            TOP + PLOT_HEIGHT + 18.0,
            metric.label()
        );
    }
    for (i, arm) in arms.iter().enumerate() {
        let row = legend_top + LEGEND_ROW * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{LEFT}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            row - 10.0,
            color(i),
            LEFT + 18.0,
            row,
            escape(&arm.arm.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
