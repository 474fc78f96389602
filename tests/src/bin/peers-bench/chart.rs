//! A small SVG bar chart drawn from the run's own figures: one panel per group of bars, ours beside KCL.

use std::fmt::Write as _;

/// One bar pair: label, ours, KCL.
pub struct Pair {
    pub label: String,
    pub ours: f64,
    pub kcl: f64,
}

/// A panel: title, unit, pairs.
pub struct Panel {
    pub title: String,
    pub unit: &'static str,
    pub pairs: Vec<Pair>,
}

const WIDTH: f64 = 640.0;
const LABEL: f64 = 190.0;
const BAR: f64 = 14.0;

fn bar(svg: &mut String, y: f64, value: f64, max: f64, color: &str, unit: &str) {
    let v = if value.is_finite() { value } else { 0.0 };
    let w = if max > 0.0 {
        (v / max * (WIDTH - LABEL - 90.0)).max(1.0)
    } else {
        1.0
    };
    let _ = write!(
        svg,
        r#"<rect x="{LABEL}" y="{y}" width="{w:.1}" height="{BAR}" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{} {unit}</text>"#,
        LABEL + w + 4.0,
        y + BAR - 3.0,
        if value.is_finite() {
            format!("{value:.0}")
        } else {
            "n/a".to_owned()
        }
    );
}

/// The SVG text of `panels`, with a legend.
pub fn svg(panels: &[Panel]) -> String {
    let mut body = String::new();
    let mut y = 30.0;
    for p in panels {
        let _ = write!(
            body,
            r#"<text x="10" y="{y}" font-size="13" font-weight="bold">{}</text>"#,
            p.title
        );
        y += 10.0;
        let max = p
            .pairs
            .iter()
            .flat_map(|q| [q.ours, q.kcl])
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        for q in &p.pairs {
            let _ = write!(
                body,
                r#"<text x="10" y="{:.1}" font-size="11">{}</text>"#,
                y + BAR + 2.0,
                q.label
            );
            bar(&mut body, y, q.ours, max, "#1f77b4", p.unit);
            bar(&mut body, y + BAR + 2.0, q.kcl, max, "#ff7f0e", p.unit);
            y += 2.0 * BAR + 10.0;
        }
        y += 16.0;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><rect x="{lx}" y="8" width="10" height="10" fill="#1f77b4"/><text x="{tx}" y="17" font-size="11">ours</text><rect x="{lx2}" y="8" width="10" height="10" fill="#ff7f0e"/><text x="{tx2}" y="17" font-size="11">KCL 3</text>{body}</svg>
"##,
        h = y,
        lx = WIDTH - 150.0,
        tx = WIDTH - 136.0,
        lx2 = WIDTH - 90.0,
        tx2 = WIDTH - 76.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_pair_of_bars_per_figure_scaled_to_the_largest() {
        let s = svg(&[Panel {
            title: "t".into(),
            unit: "ms",
            pairs: vec![Pair {
                label: "p50".into(),
                ours: 100.0,
                kcl: 50.0,
            }],
        }]);
        assert_eq!(s.matches("<rect x=\"190\"").count(), 2);
        assert!(s.contains("100 ms") && s.contains("50 ms"));
        assert!(s.contains(&format!("width=\"{:.1}\"", WIDTH - LABEL - 90.0)));
    }
}
