//! The hand-written SVG charts of `eval --plot` (`intent`'s ROC curves, `demand`'s forecasts).

use std::fmt::Write as _;

/// A hand-written SVG chart: axes, grid, polylines, a legend.
pub struct Chart {
    pub width: f64,
    pub height: f64,
    pub margin: f64,
    pub x: (f64, f64),
    pub y: (f64, f64),
    body: String,
}

pub const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#7f7f7f"];

impl Chart {
    pub fn new(width: f64, height: f64, x: (f64, f64), y: (f64, f64)) -> Self {
        Self { width, height, margin: 48.0, x, y, body: String::new() }
    }

    pub fn px(&self, x: f64) -> f64 {
        self.margin + (x - self.x.0) / (self.x.1 - self.x.0).max(1e-12) * (self.width - 2.0 * self.margin)
    }

    pub fn py(&self, y: f64) -> f64 {
        self.height
            - self.margin
            - (y - self.y.0) / (self.y.1 - self.y.0).max(1e-12) * (self.height - 2.0 * self.margin)
    }

    pub fn axes(&mut self, title: &str, x_label: &str, y_label: &str, ticks: usize) {
        let (w, h, m) = (self.width, self.height, self.margin);
        let _ = write!(
            self.body,
            r##"<rect x="{m}" y="{m}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
            w - 2.0 * m,
            h - 2.0 * m
        );
        for k in 0..=ticks {
            let f = k as f64 / ticks as f64;
            let (xv, yv) = (self.x.0 + f * (self.x.1 - self.x.0), self.y.0 + f * (self.y.1 - self.y.0));
            let (x, y) = (self.px(xv), self.py(yv));
            let _ = write!(
                self.body,
                r##"<line x1="{x:.1}" y1="{m}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                h - m,
                h - m + 15.0,
                fmt_tick(xv)
            );
            let _ = write!(
                self.body,
                r##"<line x1="{m}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                w - m,
                m - 5.0,
                y + 4.0,
                fmt_tick(yv)
            );
        }
        let _ = write!(
            self.body,
            r#"<text x="{:.1}" y="20" font-size="14" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text><text x="14" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 14 {:.1})">{}</text>"#,
            w / 2.0,
            escape(title),
            w / 2.0,
            h - 10.0,
            escape(x_label),
            h / 2.0,
            h / 2.0,
            escape(y_label)
        );
    }

    pub fn line(&mut self, points: &[(f64, f64)], colour: &str, width: f64, dashed: bool) {
        let pts: Vec<String> =
            points.iter().map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y))).collect();
        let dash = if dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{width}"{dash}/>"#,
            pts.join(" ")
        );
    }

    /// A filled band between `lower` and `upper` over the same xs.
    pub fn band(&mut self, xs: &[f64], lower: &[f64], upper: &[f64], colour: &str) {
        let mut pts: Vec<String> =
            xs.iter().zip(upper).map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y))).collect();
        pts.extend(xs.iter().zip(lower).rev().map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y))));
        let _ = write!(
            self.body,
            r#"<polygon points="{}" fill="{colour}" fill-opacity="0.2" stroke="none"/>"#,
            pts.join(" ")
        );
    }

    /// A legend whose first entry is at pixel (x, y).
    pub fn legend(&mut self, entries: &[(&str, &str)], x: f64, y: f64) {
        for (k, (label, colour)) in entries.iter().enumerate() {
            let y = y + 16.0 * k as f64;
            let _ = write!(
                self.body,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                x + 20.0,
                x + 26.0,
                y + 4.0,
                escape(label)
            );
        }
    }

    /// The chart as a `<g>` shifted by (dx, dy), for several charts in one file.
    pub fn group(&self, dx: f64, dy: f64) -> String {
        format!(r#"<g transform="translate({dx},{dy})">{}</g>"#, self.body)
    }

    pub fn finish(self) -> String {
        svg_document(self.width, self.height, &self.group(0.0, 0.0))
    }
}

pub fn svg_document(width: f64, height: f64, body: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>{body}</svg>
"#
    )
}

fn fmt_tick(v: f64) -> String {
    if v.abs() >= 100.0 || v.fract() == 0.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
