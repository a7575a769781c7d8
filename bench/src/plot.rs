//! The report's timeline as one SVG file: latency percentiles over time (log scale) above,
//! deliveries (or echoes) per second below. Hand-written SVG, no dependency; the text it
//! embeds (the command line) is XML-escaped.

use std::fmt::Write as _;

use crate::report::Report;
use crate::timeline::TimelinePoint;

const W: f64 = 900.0;
const PANEL_H: f64 = 200.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 54.0;
const GAP: f64 = 50.0;

/// A latency series: its name, colour, and where each point keeps it.
type Series = (
    &'static str,
    &'static str,
    fn(&TimelinePoint) -> Option<f64>,
);

const SERIES: [Series; 3] = [
    ("p50", "#1f6fd1", |p| p.p50_us),
    ("p99", "#e0761b", |p| p.p99_us),
    ("max", "#b03060", |p| p.max_us),
];

/// `s` cut to `max` characters, with an ellipsis when cut (the JSON keeps it whole).
fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round number at or above `v` (1, 2 or 5 times a power of ten).
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

fn fmt_num(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else {
        format!("{v}")
    }
}

/// The whole plot. A run without samples gets the axes and a note.
pub fn svg(r: &Report) -> String {
    let pts = &r.timeline;
    let h = TOP + 2.0 * PANEL_H + GAP + 40.0;
    let t_end = pts.last().map_or(1.0, |p| p.t_s + p.width_s).max(1.0);
    let x = |t: f64| LEFT + (W - LEFT - RIGHT) * t / t_end;
    let mut o = String::with_capacity(16 << 10);
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" \
         viewBox=\"0 0 {W} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"13\" font-weight=\"bold\">uringcast-bench {}: \
         {} {}, latency p50 {} us, p99 {} us</text>\n\
         <text x=\"{LEFT}\" y=\"34\" fill=\"#677086\">{}</text>\n",
        escape(&r.scenario),
        r.deliveries.max(r.echoes),
        if r.echoes > r.deliveries {
            "echoes"
        } else {
            "deliveries"
        },
        r.latency_us.p50,
        r.latency_us.p99,
        escape(&shorten(&r.command_line, 140)),
    );

    // Latency panel, log scale from 1 us (or less) to the largest max.
    let top = TOP;
    let lat_max = pts.iter().filter_map(|p| p.max_us).fold(10.0f64, f64::max);
    let (lo, hi) = (0.0f64, nice_ceil(lat_max).log10().ceil().max(1.0));
    let y_lat = |us: f64| top + PANEL_H * (1.0 - (us.max(1.0).log10() - lo) / (hi - lo));
    axes(&mut o, top, t_end, &x);
    for e in 0..=(hi as i32) {
        let v = 10f64.powi(e);
        gridline(&mut o, y_lat(v), &format!("{} us", fmt_num(v)));
    }
    for (i, (name, color, f)) in SERIES.iter().enumerate() {
        polyline(
            &mut o,
            color,
            pts.iter()
                .filter_map(|p| f(p).map(|v| (x(p.t_s + p.width_s / 2.0), y_lat(v)))),
        );
        legend(&mut o, LEFT + 70.0 * i as f64, top - 8.0, color, name);
    }

    // Rate panel, linear.
    let top = TOP + PANEL_H + GAP;
    // A tenth of headroom, so a steady rate does not run along the frame.
    let rate_max = nice_ceil(1.1 * pts.iter().map(|p| p.per_s).fold(1.0, f64::max));
    let y_rate = |v: f64| top + PANEL_H * (1.0 - v / rate_max);
    axes(&mut o, top, t_end, &x);
    for i in 0..=4 {
        let v = rate_max * f64::from(i) / 4.0;
        gridline(&mut o, y_rate(v), &format!("{}/s", fmt_num(v)));
    }
    polyline(
        &mut o,
        "#2a9d55",
        pts.iter()
            .map(|p| (x(p.t_s + p.width_s / 2.0), y_rate(p.per_s))),
    );
    let what = if r.echoes > r.deliveries {
        "echoes / s"
    } else {
        "deliveries / s"
    };
    legend(&mut o, LEFT, top - 8.0, "#2a9d55", what);
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#677086\">seconds since the \
         harness started</text>",
        (LEFT + W - RIGHT) / 2.0,
        h - 8.0
    );
    if pts.is_empty() {
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no latency samples in this run</text>",
            W / 2.0,
            TOP + PANEL_H / 2.0
        );
    }
    o.push_str("</svg>\n");
    o
}

/// A panel's frame and its time ticks.
fn axes(o: &mut String, top: f64, t_end: f64, x: &dyn Fn(f64) -> f64) {
    let _ = writeln!(
        o,
        "<rect x=\"{LEFT}\" y=\"{top}\" width=\"{}\" height=\"{PANEL_H}\" fill=\"none\" \
         stroke=\"#c8ccd6\"/>",
        W - LEFT - RIGHT
    );
    let step = nice_ceil(t_end / 8.0);
    let mut t = 0.0;
    while t <= t_end + 1e-9 {
        let xx = x(t);
        let _ = writeln!(
            o,
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{}\" stroke=\"#eef0f4\"/>\
             <text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            top + PANEL_H,
            top + PANEL_H + 14.0,
            fmt_num(t)
        );
        t += step;
    }
}

/// A value's grid line across a panel, labelled left of the frame.
fn gridline(o: &mut String, y: f64, label: &str) {
    let _ = writeln!(
        o,
        "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#e3e6ee\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>",
        W - RIGHT,
        LEFT - 6.0,
        y + 4.0
    );
}

fn polyline(o: &mut String, color: &str, points: impl Iterator<Item = (f64, f64)>) {
    let mut pts = String::new();
    for (x, y) in points {
        let _ = write!(pts, "{x:.1},{y:.1} ");
    }
    if !pts.is_empty() {
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" points=\"{}\"/>",
            pts.trim_end()
        );
    }
}

fn legend(o: &mut String, x: f64, y: f64, color: &str, name: &str) {
    let _ = writeln!(
        o,
        "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" stroke-width=\"3\"/>\
         <text x=\"{}\" y=\"{}\">{name}</text>",
        x + 16.0,
        x + 20.0,
        y + 4.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn one_polyline_per_series_with_one_point_per_interval() {
        let mut stats = Stats::default();
        for s in 0..10u64 {
            for k in 0..=s {
                stats.record_latency(s * 1_000_000_000 + k, 100_000 + k * 1000);
            }
        }
        stats.deliveries = 55;
        let mut r = Report::new("fanout", serde_json::json!({}), &stats);
        r.command_line = "bench --url 'http://h/x?a=1&b=<2>'".into();
        let svg = svg(&r);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4, "p50, p99, max, rate");
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let points = line.split("points=\"").nth(1).unwrap();
            assert_eq!(points.split(' ').count(), 10, "{line}");
        }
        assert!(svg.contains("a=1&amp;b=&lt;2&gt;"), "escaped command line");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = super::svg(&Report::new(
            "echo",
            serde_json::json!({}),
            &Stats::default(),
        ));
        assert!(empty.contains("no latency samples"));
    }
}
