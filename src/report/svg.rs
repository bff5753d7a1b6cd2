//! Inline SVG charts: a histogram, a precision-recall curve and grouped bars. Every label is
//! escaped; every chart has a `role="img"` and an `aria-label`.

use crate::report::fmt::{esc, num};

const W: f64 = 720.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 56.0;

/// Colours of series, in order (colour-blind safe, Okabe-Ito).
pub const COLOURS: [&str; 6] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00",
];

/// A linear map from `[d0, d1]` to `[r0, r1]`.
#[derive(Clone, Copy)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    fn at(&self, x: f64) -> f64 {
        let span = if self.d1 == self.d0 {
            1.0
        } else {
            self.d1 - self.d0
        };
        self.r0 + (x - self.d0) / span * (self.r1 - self.r0)
    }
}

fn open(kind: &str, label: &str, height: f64) -> String {
    format!(
        "<svg class=\"chart {kind}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {W} {height}\" \
         width=\"{W}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{}</title>",
        esc(label),
        esc(label)
    )
}

/// "Nice" tick values covering `[lo, hi]`, about `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        v.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    v
}

/// Axes with ticks and labels; `x_ticks` as (value, label).
fn axes(
    out: &mut String,
    x: Scale,
    y: Scale,
    x_ticks: &[(f64, String)],
    y_ticks: &[f64],
    labels: (&str, &str),
) {
    let (bottom, top) = (y.r0, y.r1);
    for &t in y_ticks {
        let py = y.at(t);
        out.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\" class=\"grid\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0,
            num(t, 3)
        ));
    }
    for (t, label) in x_ticks {
        let px = x.at(*t);
        out.push_str(&format!(
            "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{bottom:.1}\" y2=\"{:.1}\" class=\"tick\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bottom + 5.0,
            bottom + 19.0,
            esc(label)
        ));
    }
    out.push_str(&format!(
        "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{bottom:.1}\" y2=\"{bottom:.1}\" class=\"axis\"/>\
         <line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{top:.1}\" y2=\"{bottom:.1}\" class=\"axis\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" class=\"label\">{}</text>\
         <text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\" \
         class=\"label\">{}</text>",
        W - RIGHT,
        (LEFT + W - RIGHT) / 2.0,
        bottom + 42.0,
        esc(labels.0),
        (top + bottom) / 2.0,
        esc(labels.1)
    ));
}

/// A histogram of `values` in `bins` equal bins over `[lo, hi]` (values outside are clamped),
/// with an optional dashed marker line (value, label), e.g. the threshold.
pub fn histogram(
    values: &[f64],
    (lo, hi): (f64, f64),
    bins: usize,
    marker: Option<(f64, &str)>,
    (x_label, y_label): (&str, &str),
) -> String {
    let bins = bins.max(1);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let i = (((v - lo) / width).floor().max(0.0) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let x = Scale {
        d0: lo,
        d1: hi,
        r0: LEFT,
        r1: W - RIGHT,
    };
    let y_ticks: Vec<f64> = ticks(0.0, max, 5)
        .into_iter()
        .filter(|t| t.fract() == 0.0)
        .collect();
    let top = y_ticks.last().copied().unwrap_or(max).max(max);
    let y = Scale {
        d0: 0.0,
        d1: top,
        r0: H - BOTTOM,
        r1: TOP,
    };
    let mut out = open(
        "histogram",
        &format!("Histogram: {y_label} by {x_label}"),
        H,
    );
    let x_ticks: Vec<(f64, String)> = ticks(lo, hi, 8)
        .into_iter()
        .map(|t| (t, num(t, 2)))
        .collect();
    axes(&mut out, x, y, &x_ticks, &y_ticks, (x_label, y_label));
    for (i, &c) in counts.iter().enumerate() {
        let (a, b) = (lo + i as f64 * width, lo + (i + 1) as f64 * width);
        let (px, pw) = (x.at(a) + 1.0, (x.at(b) - x.at(a) - 2.0).max(1.0));
        let py = y.at(c as f64);
        out.push_str(&format!(
            "<rect class=\"bar\" x=\"{px:.1}\" y=\"{py:.1}\" width=\"{pw:.1}\" height=\"{:.1}\" \
             fill=\"{}\"><title>{} to {}: {c}</title></rect>",
            (H - BOTTOM - py).max(0.0),
            COLOURS[0],
            num(a, 3),
            num(b, 3)
        ));
    }
    if let Some((m, label)) = marker {
        let px = x.at(m.clamp(lo, hi));
        out.push_str(&format!(
            "<line class=\"marker\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"marker-label\">{}</text>",
            H - BOTTOM,
            px + 4.0,
            TOP + 12.0,
            esc(label)
        ));
    }
    out.push_str("</svg>");
    out
}

/// A curve in the unit square (x = recall, y = precision), with points as (x, y).
pub fn curve(points: &[(f64, f64)], (x_label, y_label): (&str, &str)) -> String {
    let x = Scale {
        d0: 0.0,
        d1: 1.0,
        r0: LEFT,
        r1: W - RIGHT,
    };
    let y = Scale {
        d0: 0.0,
        d1: 1.0,
        r0: H - BOTTOM,
        r1: TOP,
    };
    let mut out = open("curve", &format!("Curve: {y_label} against {x_label}"), H);
    let tk = ticks(0.0, 1.0, 5);
    let x_ticks: Vec<(f64, String)> = tk.iter().map(|&t| (t, num(t, 2))).collect();
    axes(&mut out, x, y, &x_ticks, &tk, (x_label, y_label));
    let path: Vec<String> = points
        .iter()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .map(|&(a, b)| format!("{:.1},{:.1}", x.at(a), y.at(b)))
        .collect();
    if !path.is_empty() {
        out.push_str(&format!(
            "<polyline class=\"line\" fill=\"none\" stroke=\"{}\" points=\"{}\"/>",
            COLOURS[0],
            path.join(" ")
        ));
        if let Some(&(a, b)) = points.last() {
            out.push_str(&format!(
                "<circle class=\"end\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"{}\">\
                 <title>{}: {}, {}: {}</title></circle>",
                x.at(a),
                y.at(b),
                COLOURS[5],
                esc(x_label),
                num(a, 3),
                esc(y_label),
                num(b, 3)
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// One series of a bar chart: a name and one value per category (`None`: no bar, "n/a").
pub struct Series {
    /// Legend text.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

/// Grouped vertical bars: for each category, one bar per series, over the value range
/// `[lo, hi]` (`lo` may be negative; bars start at 0). Missing values show "n/a".
pub fn bars(
    categories: &[String],
    series: &[Series],
    (lo, hi): (f64, f64),
    (x_label, y_label): (&str, &str),
) -> String {
    let legend = 22.0;
    let height = H + legend;
    let x = Scale {
        d0: 0.0,
        d1: categories.len().max(1) as f64,
        r0: LEFT,
        r1: W - RIGHT,
    };
    let y = Scale {
        d0: lo,
        d1: hi,
        r0: H - BOTTOM,
        r1: TOP,
    };
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    let mut out = open(
        "bars",
        &format!("Bar chart: {} by {y_label}", names.join(", ")),
        height,
    );
    let x_ticks: Vec<(f64, String)> = categories
        .iter()
        .enumerate()
        .map(|(i, c)| (i as f64 + 0.5, c.clone()))
        .collect();
    axes(
        &mut out,
        x,
        y,
        &x_ticks,
        &ticks(lo, hi, 5),
        (x_label, y_label),
    );
    let n = series.len().max(1) as f64;
    let slot = (x.at(1.0) - x.at(0.0)) * 0.8 / n;
    let zero = y.at(0.0f64.clamp(lo, hi));
    for (ci, cat) in categories.iter().enumerate() {
        for (si, s) in series.iter().enumerate() {
            let px = x.at(ci as f64) + (x.at(1.0) - x.at(0.0)) * 0.1 + si as f64 * slot;
            match s
                .values
                .get(ci)
                .copied()
                .flatten()
                .filter(|v| v.is_finite())
            {
                Some(v) => {
                    let py = y.at(v.clamp(lo, hi));
                    out.push_str(&format!(
                        "<rect class=\"bar\" x=\"{px:.1}\" y=\"{:.1}\" width=\"{:.1}\" \
                         height=\"{:.1}\" fill=\"{}\"><title>{}, {}: {}</title></rect>",
                        py.min(zero),
                        (slot - 2.0).max(1.0),
                        (py - zero).abs(),
                        COLOURS[si % COLOURS.len()],
                        esc(cat),
                        esc(&s.name),
                        num(v, 3)
                    ));
                }
                None => out.push_str(&format!(
                    "<text class=\"na\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">n/a</text>",
                    px + slot / 2.0,
                    zero - 4.0
                )),
            }
        }
    }
    let mut lx = LEFT;
    for (si, s) in series.iter().enumerate() {
        out.push_str(&format!(
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            height - 16.0,
            COLOURS[si % COLOURS.len()],
            lx + 16.0,
            height - 6.0,
            esc(&s.name)
        ));
        lx += 30.0 + 7.5 * s.name.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            ticks(0.0, 1.0, 5),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(0.0, 10.0, 5), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(1.0, 1.0, 5), vec![1.0]);
    }

    #[test]
    fn histogram_counts_every_value_once() {
        let s = histogram(
            &[0.1, 0.15, 0.9, 5.0, -3.0],
            (0.0, 1.0),
            10,
            Some((0.5, "t")),
            ("x", "y"),
        );
        assert_eq!(s.matches("<rect class=\"bar\"").count(), 10);
        assert!(s.contains("0 to 0.1: 1</title>"));
        assert!(s.contains("0.1 to 0.2: 2</title>"));
        assert!(s.contains("0.9 to 1: 2</title>"));
        assert!(s.contains("class=\"marker\""));
    }

    #[test]
    fn bars_escape_labels_and_mark_missing_values() {
        let s = bars(
            &["<b>".into(), "ok".into()],
            &[Series {
                name: "rate & more".into(),
                values: vec![Some(0.5), None],
            }],
            (0.0, 1.0),
            ("group", "rate"),
        );
        assert!(s.contains("&lt;b&gt;"));
        assert!(!s.contains("<b>"));
        assert!(s.contains("rate &amp; more"));
        assert!(s.contains(">n/a</text>"));
    }
}
