//! A small hand-written SVG line chart: axes, ticks, one polyline per series, a legend. Charts
//! side by side make one file ([`side_by_side`]). No dependencies; the output is plain text a
//! README can show.

use std::fmt::Write as _;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's text.
    pub name: String,
    /// A CSS colour.
    pub colour: &'static str,
    /// (x, y) points, drawn in order.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Above the plot.
    pub title: String,
    /// Under the x axis.
    pub x_label: String,
    /// Beside the y axis.
    pub y_label: String,
    /// The x values that get a tick (and a label).
    pub x_ticks: Vec<f64>,
    /// Whether x is drawn on a log scale (shard counts 1, 4, 16, 32; rates 1 to 100,000).
    pub log_x: bool,
    /// Whether y is drawn on a log scale, a tick per power of ten from below the lowest point
    /// to above the highest, the legend then in the lower right (costs rise to the right).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 420.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

impl Chart {
    fn x_scale(&self) -> impl Fn(f64) -> f64 + '_ {
        let f = move |x: f64| if self.log_x { x.max(1e-9).log2() } else { x };
        let (lo, hi) = self
            .x_ticks
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &x| {
                (l.min(f(x)), h.max(f(x)))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        move |x| LEFT + (f(x) - lo) / span * (W - LEFT - RIGHT)
    }

    fn y_max(&self) -> f64 {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max);
        nice_ceiling(max)
    }

    /// The y axis: where a value is drawn, and the values that get a tick.
    fn y_axis(&self) -> (Box<dyn Fn(f64) -> f64>, Vec<f64>) {
        let plot = H - TOP - BOTTOM;
        if !self.log_y {
            let y_max = self.y_max();
            let ticks = (0..=4).map(|i| y_max * f64::from(i) / 4.0).collect();
            return (Box::new(move |y| TOP + (1.0 - y / y_max) * plot), ticks);
        }
        let (lo, hi) = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| *y > 0.0 && y.is_finite())
            .fold((f64::MAX, f64::MIN), |(l, h), y| (l.min(y), h.max(y)));
        let (lo, hi) = if lo > hi {
            (0, 1)
        } else {
            (
                lo.log10().floor() as i32,
                (hi.log10().ceil() as i32).max(lo.log10().floor() as i32 + 1),
            )
        };
        let span = f64::from(hi - lo);
        let sy = move |y: f64| TOP + (1.0 - (y.max(1e-12).log10() - f64::from(lo)) / span) * plot;
        (Box::new(sy), (lo..=hi).map(|e| 10f64.powi(e)).collect())
    }

    /// The chart as an `<svg>` element `W`×`H` at (`x`, 0).
    fn render(&self, x: f64) -> String {
        let sx = self.x_scale();
        let (sy, y_ticks) = self.y_axis();
        let mut s = format!(r#"<svg x="{x}" y="0" width="{W}" height="{H}">"#);
        let _ = write!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        self.axes(&mut s, &sx, &sy, &y_ticks);
        for (i, series) in self.series.iter().enumerate() {
            let pts: Vec<String> = series
                .points
                .iter()
                .map(|&(px, py)| format!("{:.1},{:.1}", sx(px), sy(py)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
                pts.join(" "),
                c = series.colour
            );
            for p in &pts {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = write!(
                    s,
                    r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#,
                    series.colour
                );
            }
            let (lx, ly) = if self.log_y {
                let above = (self.series.len() - i) as f64;
                (W - RIGHT - 200.0, H - BOTTOM - 8.0 - 16.0 * (above - 1.0))
            } else {
                (LEFT + 8.0, TOP + 14.0 + 16.0 * i as f64)
            };
            let _ = write!(
                s,
                r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{ly}">{}</text>"#,
                ly - 9.0,
                series.colour,
                lx + 14.0,
                escape(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }

    fn axes(
        &self,
        s: &mut String,
        sx: &impl Fn(f64) -> f64,
        sy: &dyn Fn(f64) -> f64,
        y_ticks: &[f64],
    ) {
        let (x0, x1, y0) = (LEFT, W - RIGHT, H - BOTTOM);
        let _ = write!(
            s,
            r##"<path d="M{x0},{TOP} V{y0} H{x1}" fill="none" stroke="#333"/>"##
        );
        for &t in &self.x_ticks {
            let _ = write!(
                s,
                r##"<line x1="{x}" y1="{y0}" x2="{x}" y2="{}" stroke="#333"/><text x="{x}" y="{}" text-anchor="middle">{}</text>"##,
                y0 + 4.0,
                y0 + 18.0,
                short(t),
                x = sx(t)
            );
        }
        for &v in y_ticks {
            let _ = write!(
                s,
                r##"<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                sy(v) + 4.0,
                short(v),
                y = sy(v)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text><text transform="translate(14,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            H - 10.0,
            escape(&self.x_label),
            (TOP + y0) / 2.0,
            escape(&self.y_label)
        );
    }
}

/// The charts next to each other in one SVG document.
pub fn side_by_side(charts: &[Chart]) -> String {
    let width = W * charts.len() as f64;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{H}" viewBox="0 0 {width} {H}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
    );
    for (i, chart) in charts.iter().enumerate() {
        s.push_str(&chart.render(W * i as f64));
    }
    s.push_str("</svg>\n");
    s
}

/// 1, 2 or 5 times a power of ten, at least `v` (1 for nothing to draw).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * p)
}

fn short(v: f64) -> String {
    if v >= 1_000_000.0 && (v / 1_000_000.0).fract() == 0.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 && (v / 1000.0).fract() == 0.0 {
        format!("{}k", v / 1000.0)
    } else if v.fract() == 0.0 || v < 1.0 {
        format!("{v}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_each_series_through_its_points() {
        let chart = Chart {
            title: "t".into(),
            x_label: "shards".into(),
            y_label: "records/s".into(),
            x_ticks: vec![1.0, 4.0, 16.0, 32.0],
            log_x: true,
            log_y: false,
            series: vec![Series {
                name: "merge".into(),
                colour: "red",
                points: vec![(1.0, 0.0), (32.0, 100.0)],
            }],
        };
        let svg = side_by_side(&[chart]);
        // x: log₂ 1 → left edge, log₂ 32 → right edge; y: 0 → bottom, 100 (the axis top) → top.
        assert!(svg.contains(r#"points="64.0,252.0 404.0,36.0""#), "{svg}");
        assert!(svg.contains(">merge</text>") && svg.ends_with("</svg>\n"));
    }

    #[test]
    fn a_log_log_chart_spans_whole_decades() {
        let chart = Chart {
            title: "t".into(),
            x_label: "records per second".into(),
            y_label: "USD".into(),
            x_ticks: vec![1.0, 10.0, 100.0],
            log_x: true,
            log_y: true,
            series: vec![Series {
                name: "copy".into(),
                colour: "red",
                points: vec![(1.0, 2.0), (100.0, 500.0)],
            }],
        };
        let svg = side_by_side(&[chart]);
        // y: 1 (below 2) → bottom, 1,000 (above 500) → top; 10 a third of the way up.
        let y = |v: f64| 36.0 + (1.0 - v.log10() / 3.0) * 216.0;
        let points = format!("64.0,{:.1} 404.0,{:.1}", y(2.0), y(500.0));
        assert!(svg.contains(&points), "{points} {svg}");
        // 1, 10 and 100 on both axes, 1k on y only.
        for (tick, n) in [
            (">1</text>", 2),
            (">10</text>", 2),
            (">100</text>", 2),
            (">1k</text>", 1),
        ] {
            assert_eq!(svg.matches(tick).count(), n, "{tick}");
        }
    }

    #[test]
    fn the_y_axis_ends_on_a_round_number() {
        assert_eq!(nice_ceiling(430.0), 500.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
    }
}
