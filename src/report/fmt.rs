//! Escaping and number formatting for the HTML report.

/// Escapes text for HTML element content and attribute values (double- or single-quoted).
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A byte count with a binary-free decimal unit: `812 B`, `3.4 kB`, `457.6 MB`, `1.20 GB`.
pub fn bytes(n: u64) -> String {
    let x = n as f64;
    if n < 1000 {
        format!("{n} B")
    } else if x < 1e6 {
        format!("{:.1} kB", x / 1e3)
    } else if x < 1e9 {
        format!("{:.1} MB", x / 1e6)
    } else {
        format!("{:.2} GB", x / 1e9)
    }
}

/// Seconds: `0.84 s`, `12.3 s`, `4 min 05 s`.
pub fn seconds(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        "n/a".into()
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let t = s.round() as u64;
        format!("{} min {:02} s", t / 60, t % 60)
    }
}

/// A figure in [0, 1] with three decimals, or `n/a`.
pub fn ratio(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "n/a".into(),
    }
}

/// A number with thousands separators: `15 000`.
pub fn count(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push('\u{202f}');
        }
        out.push(c);
    }
    out
}

/// A score or coordinate with up to `d` decimals, trailing zeros removed (`0.5`, `-0.25`, `1`).
pub fn num(x: f64, d: usize) -> String {
    let s = format!("{x:.d$}");
    if s.contains('.') {
        let t = s.trim_end_matches('0').trim_end_matches('.');
        if t == "-0" { "0".into() } else { t.into() }
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert_eq!(esc("Zürich"), "Zürich");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(3_400), "3.4 kB");
        assert_eq!(bytes(457_600_000), "457.6 MB");
        assert_eq!(bytes(1_200_000_000), "1.20 GB");
        assert_eq!(seconds(0.841), "0.84 s");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(245.0), "4 min 05 s");
        assert_eq!(ratio(Some(0.98765)), "0.988");
        assert_eq!(ratio(None), "n/a");
        assert_eq!(ratio(Some(f64::NAN)), "n/a");
        assert_eq!(count(15000), "15\u{202f}000");
        assert_eq!(count(999), "999");
        assert_eq!(num(0.5, 3), "0.5");
        assert_eq!(num(-0.0001, 2), "0");
        assert_eq!(num(1.0, 2), "1");
    }
}
