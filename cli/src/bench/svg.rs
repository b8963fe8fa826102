//! `--out FILE.svg`: throughput and p99 latency per second, as one self-contained SVG.
//!
//! A percentile over a whole run hides what happened during it — a stall, a slow start,
//! a compaction — and a plot over time shows it at a glance. SVG is text, so a few lines
//! of formatting give a file any browser opens, with no plotting dependency.

use std::fmt::Write;

use crate::bench::stats::TimelinePoint;

/// Size of the image in pixels.
pub const WIDTH_PX: f64 = 900.0;
pub const HEIGHT_PX: f64 = 420.0;
/// Room for the axes' labels around the plot area.
const MARGIN_LEFT_PX: f64 = 80.0;
const MARGIN_RIGHT_PX: f64 = 80.0;
const MARGIN_TOP_PX: f64 = 50.0;
const MARGIN_BOTTOM_PX: f64 = 50.0;
/// Labelled ticks on each axis (plus zero).
const TICKS: u32 = 5;
const THROUGHPUT_COLOUR: &str = "#1f77b4";
const P99_COLOUR: &str = "#d62728";

/// Maps data to pixel coordinates.
struct Frame {
    t_max: f64,
    ops_max: f64,
    p99_max: f64,
}

impl Frame {
    fn x(&self, t_s: f64) -> f64 {
        MARGIN_LEFT_PX + t_s / self.t_max * (WIDTH_PX - MARGIN_LEFT_PX - MARGIN_RIGHT_PX)
    }

    fn y(&self, value: f64, max: f64) -> f64 {
        let bottom = HEIGHT_PX - MARGIN_BOTTOM_PX;
        bottom - value / max * (bottom - MARGIN_TOP_PX)
    }
}

/// The plot of `timeline` titled `title`. An empty timeline gives empty axes.
pub fn plot(timeline: &[TimelinePoint], title: &str) -> String {
    let frame = Frame {
        t_max: nice_ceiling(timeline.iter().map(|p| p.t_s).fold(0.0, f64::max)),
        ops_max: nice_ceiling(timeline.iter().map(|p| p.ops_per_sec).fold(0.0, f64::max)),
        p99_max: nice_ceiling(timeline.iter().map(|p| p.p99_ms).fold(0.0, f64::max)),
    };
    let (left, right) = (MARGIN_LEFT_PX, WIDTH_PX - MARGIN_RIGHT_PX);
    let (top, bottom) = (MARGIN_TOP_PX, HEIGHT_PX - MARGIN_BOTTOM_PX);
    let mut svg = String::new();
    // `write!` into a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" viewBox="0 0 {WIDTH_PX} {HEIGHT_PX}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="{WIDTH_PX}" height="{HEIGHT_PX}" fill="white"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        WIDTH_PX / 2.0,
        escape(title)
    );
    // Grid, ticks and labels: throughput on the left, p99 on the right, time below.
    for i in 0..=TICKS {
        let share = f64::from(i) / f64::from(TICKS);
        let y = bottom - share * (bottom - top);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{y:.1}" x2="{right}" y2="{y:.1}" stroke="#e0e0e0"/>"##
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="{THROUGHPUT_COLOUR}">{}</text>"#,
            left - 6.0,
            y + 4.0,
            label(share * frame.ops_max)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="start" fill="{P99_COLOUR}">{}</text>"#,
            right + 6.0,
            y + 4.0,
            label(share * frame.p99_max)
        );
        let x = left + share * (right - left);
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            label(share * frame.t_max)
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/><line x1="{right}" y1="{top}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">seconds</text>"#,
        (left + right) / 2.0,
        HEIGHT_PX - 12.0
    );
    let mid = (top + bottom) / 2.0;
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{mid:.1}" text-anchor="middle" fill="{THROUGHPUT_COLOUR}" transform="rotate(-90 18 {mid:.1})">throughput (ops/s)</text>"#
    );
    let rx = WIDTH_PX - 18.0;
    let _ = writeln!(
        svg,
        r#"<text x="{rx}" y="{mid:.1}" text-anchor="middle" fill="{P99_COLOUR}" transform="rotate(90 {rx} {mid:.1})">p99 latency (ms)</text>"#
    );
    for (colour, value, max) in [
        (
            THROUGHPUT_COLOUR,
            (|p: &TimelinePoint| p.ops_per_sec) as fn(&TimelinePoint) -> f64,
            frame.ops_max,
        ),
        (P99_COLOUR, |p: &TimelinePoint| p.p99_ms, frame.p99_max),
    ] {
        let points: Vec<String> = timeline
            .iter()
            .map(|p| format!("{:.1},{:.1}", frame.x(p.t_s), frame.y(value(p), max)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    // Legend.
    let _ = writeln!(
        svg,
        r#"<line x1="{0}" y1="38" x2="{1}" y2="38" stroke="{THROUGHPUT_COLOUR}" stroke-width="2"/><text x="{2}" y="42">throughput</text><line x1="{3}" y1="38" x2="{4}" y2="38" stroke="{P99_COLOUR}" stroke-width="2"/><text x="{5}" y="42">p99</text>"#,
        left + 10.0,
        left + 30.0,
        left + 35.0,
        left + 120.0,
        left + 140.0,
        left + 145.0,
    );
    svg.push_str("</svg>\n");
    svg
}

/// The smallest round number (1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 × 10^k) at or above `value`,
/// so the axis fills most of the plot and its fifths are short labels; 1 for nothing to show.
fn nice_ceiling(value: f64) -> f64 {
    if !value.is_finite() || value <= 0.0 {
        return 1.0;
    }
    let magnitude = 10_f64.powf(value.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|candidate| *candidate >= value * (1.0 - 1e-12))
        .unwrap_or(10.0 * magnitude)
}

/// A tick label: integers for large values, up to three decimals for small ones.
fn label(value: f64) -> String {
    if value >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else {
        let text = format!("{value:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_s: f64, ops_per_sec: f64, p99_ms: f64) -> TimelinePoint {
        TimelinePoint {
            t_s,
            ops_per_sec,
            p99_ms,
            errors: 0,
        }
    }

    #[test]
    fn the_plot_has_two_series_axes_and_labels() {
        let timeline = [
            point(1.0, 40_000.0, 2.0),
            point(2.0, 52_000.0, 1.5),
            point(2.4, 47_000.0, 3.1),
        ];
        let svg = plot(&timeline, "get <zipfian> & more");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("get &lt;zipfian&gt; &amp; more"));
        for text in [
            "seconds",
            "throughput (ops/s)",
            "p99 latency (ms)",
            ">60000<",
            ">4<",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        // Each series has one vertex per second; the busiest second is the highest one.
        let series: Vec<&str> = svg.lines().filter(|l| l.starts_with("<polyline")).collect();
        let vertices = |line: &str| -> Vec<(f64, f64)> {
            let points = line.split("points=\"").nth(1).unwrap_or("");
            points
                .trim_end_matches("\"/>")
                .split(' ')
                .filter_map(|xy| xy.split_once(','))
                .filter_map(|(x, y)| Some((x.parse().ok()?, y.parse().ok()?)))
                .collect()
        };
        let throughput = vertices(series[0]);
        assert_eq!(throughput.len(), 3);
        let highest = throughput
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
            .map(|(i, _)| i);
        assert_eq!(highest, Some(1));
        for (x, y) in throughput.iter().chain(vertices(series[1]).iter()) {
            assert!((MARGIN_LEFT_PX..=WIDTH_PX - MARGIN_RIGHT_PX).contains(x));
            assert!((MARGIN_TOP_PX..=HEIGHT_PX - MARGIN_BOTTOM_PX).contains(y));
        }
    }

    #[test]
    fn an_empty_run_still_gives_a_valid_frame() {
        let svg = plot(&[], "nothing");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn axis_maxima_are_round_numbers() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(52_631.0), 60_000.0);
        assert_eq!(nice_ceiling(42_000.0), 50_000.0);
        assert_eq!(nice_ceiling(2.1), 2.5);
        assert_eq!(nice_ceiling(0.8), 0.8);
        assert_eq!(nice_ceiling(6.01), 8.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(label(0.25), "0.25");
        assert_eq!(label(12_000.0), "12000");
    }
}
