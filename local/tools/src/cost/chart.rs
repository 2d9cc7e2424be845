//! A log-log line chart as SVG, written by hand: axes with a tick per decade, one polyline per
//! series, a legend.

use std::fmt::Write as _;

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 520.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 270.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

/// A named line of (x, y) points, both positive.
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// The points, in order of x.
    pub points: Vec<(f64, f64)>,
}

/// What the axes say.
pub struct Labels<'a> {
    /// Above the plot.
    pub title: &'a str,
    /// Under the x axis.
    pub x: &'a str,
    /// Beside the y axis.
    pub y: &'a str,
    /// Put before a y tick's number (e.g. `$`).
    pub y_prefix: &'a str,
}

/// Whole decades covering every positive value of `values`.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0, 1);
    }
    let (lo, hi) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    (lo, hi.max(lo + 1))
}

/// `1`, `10`, `100`, `1k`, `10k`, `1M`, ... and `0.1`, `0.01` below one.
fn decade_label(exp: i32) -> String {
    match exp {
        e if e < 0 => format!("{}", 10f64.powi(e)),
        0..=2 => format!("{}", 10i64.pow(exp as u32)),
        3..=5 => format!("{}k", 10i64.pow(exp as u32 - 3)),
        _ => format!("{}M", 10i64.pow(exp as u32 - 6)),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

struct Axes {
    x: (i32, i32),
    y: (i32, i32),
}

impl Axes {
    fn px(&self, x: f64) -> f64 {
        let span = (self.x.1 - self.x.0) as f64;
        LEFT + (x.log10() - self.x.0 as f64) / span * (WIDTH - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        let span = (self.y.1 - self.y.0) as f64;
        HEIGHT - BOTTOM - (y.log10() - self.y.0 as f64) / span * (HEIGHT - TOP - BOTTOM)
    }
}

/// The chart of `series` as an SVG document.
pub fn svg(labels: &Labels<'_>, series: &[Series]) -> String {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let axes = Axes {
        x: decades(points().map(|p| p.0)),
        y: decades(points().map(|p| p.1)),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        escape(labels.title)
    );
    grid(&mut out, &axes, labels);
    for (i, s) in series.iter().enumerate() {
        line(&mut out, &axes, s, COLOURS[i % COLOURS.len()], i);
    }
    out.push_str("</svg>\n");
    out
}

fn grid(out: &mut String, axes: &Axes, labels: &Labels<'_>) {
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    for e in axes.x.0..=axes.x.1 {
        let x = axes.px(10f64.powi(e));
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            y1 + 18.0,
            decade_label(e)
        );
    }
    for e in axes.y.0..=axes.y.1 {
        let y = axes.py(10f64.powi(e));
        let _ = writeln!(
            out,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}{}</text>"##,
            x0 - 6.0,
            y + 4.0,
            escape(labels.y_prefix),
            decade_label(e)
        );
    }
    let _ = writeln!(
        out,
        r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#444"/>"##,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 16.0,
        escape(labels.x)
    );
    let _ = writeln!(
        out,
        r#"<text x="20" y="{0}" text-anchor="middle" transform="rotate(-90 20 {0})">{1}</text>"#,
        (y0 + y1) / 2.0,
        escape(labels.y)
    );
}

fn line(out: &mut String, axes: &Axes, series: &Series, colour: &str, index: usize) {
    let points: Vec<String> = series
        .points
        .iter()
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|&(x, y)| format!("{:.1},{:.1}", axes.px(x), axes.py(y)))
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
        points.join(" ")
    );
    let (lx, ly) = (WIDTH - RIGHT + 16.0, TOP + 16.0 + 22.0 * index as f64);
    let _ = writeln!(
        out,
        r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
        lx + 24.0,
        lx + 30.0,
        ly + 4.0,
        escape(&series.name)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_each_decade() {
        assert_eq!(
            [-1, 0, 2, 3, 4, 6].map(decade_label),
            ["0.1", "1", "100", "1k", "10k", "1M"]
        );
        assert_eq!(decades([3.0, 250.0].into_iter()), (0, 3));
    }
}
