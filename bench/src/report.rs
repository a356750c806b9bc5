//! The side-by-side table, its JSON and a PNG chart.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

/// One compared figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub portcullis: Option<f64>,
    pub distribution: Option<f64>,
}

impl Row {
    pub fn new(metric: &str, unit: &str, higher_is_better: bool, p: Option<f64>, d: Option<f64>) -> Row {
        Row { metric: metric.into(), unit: unit.into(), higher_is_better, portcullis: p, distribution: d }
    }
    /// Portcullis / distribution.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.portcullis? / self.distribution?).filter(|r| r.is_finite())
    }
    /// How many times better Portcullis is (>1 is better, whatever the direction of the unit).
    pub fn advantage(&self) -> Option<f64> {
        self.ratio().map(|r| if self.higher_is_better { r } else { 1.0 / r }).filter(|r| r.is_finite())
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.4}"),
    }
}

pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| measurement | unit | Portcullis | distribution 2.8 | ratio P/D | Portcullis better by |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: |");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.metric,
            r.unit,
            fmt(r.portcullis),
            fmt(r.distribution),
            r.ratio().map(|x| format!("{x:.2}")).unwrap_or("n/a".into()),
            r.advantage().map(|x| format!("{x:.2}x")).unwrap_or("n/a".into())
        );
    }
    out
}

/// A horizontal bar chart of the advantage per measurement (1.0 = parity), as SVG then PNG.
pub fn chart(rows: &[Row], dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let rows: Vec<_> = rows.iter().filter_map(|r| r.advantage().map(|a| (r.metric.clone(), a))).collect();
    let max = rows.iter().map(|(_, a)| *a).fold(2.0, f64::max).min(20.0);
    let (left, width, bar_h) = (330.0, 520.0, 26.0);
    let height = 60.0 + rows.len() as f64 * bar_h + 30.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" font-family="DejaVu Sans, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="24" font-size="16">Portcullis vs CNCF distribution 2.8: times better (1.0 = parity)</text>
"#,
        w = left + width + 80.0
    );
    let x = |v: f64| left + v.min(max) / max * width;
    for (i, (name, adv)) in rows.iter().enumerate() {
        let y = 50.0 + i as f64 * bar_h;
        let color = if *adv >= 1.0 { "#2e7d32" } else { "#c62828" };
        let _ = writeln!(
            svg,
            r#"<text x="{tx}" y="{ty}" text-anchor="end">{name}</text><rect x="{left}" y="{y}" width="{bw}" height="{bh}" fill="{color}"/><text x="{vx}" y="{ty}">{adv:.2}x</text>"#,
            tx = left - 8.0,
            ty = y + 17.0,
            bw = x(*adv) - left,
            bh = bar_h - 6.0,
            vx = x(*adv) + 6.0
        );
    }
    let _ = write!(
        svg,
        r#"<line x1="{p}" y1="40" x2="{p}" y2="{b}" stroke="black" stroke-dasharray="4 3"/></svg>"#,
        p = x(1.0),
        b = height - 20.0
    );
    let svg_path = dir.join("chart.svg");
    std::fs::write(&svg_path, svg)?;
    let png = dir.join("chart.png");
    let status = std::process::Command::new("rsvg-convert").arg("-o").arg(&png).arg(&svg_path).status();
    anyhow::ensure!(
        status.map(|s| s.success()).unwrap_or(false),
        "rsvg-convert (Debian librsvg2-bin) is needed for the PNG chart"
    );
    Ok(png)
}
