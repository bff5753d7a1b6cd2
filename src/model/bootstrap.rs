//! Bootstrapping: confident matches of one job become known links of the next (after LightEA's
//! iterative strategy).
//!
//! After a job each party holds, for each of its matched entities, the pair's score and link
//! token, and both are the same on the two sides of a pair (one shared value each, opened to
//! both owners). So both parties derive **the same new anchors in the same order without
//! exchanging anything**: keep the matched pairs whose score is among the best `fraction` of
//! all matches (score rounded to the 6 decimals of `matches.csv`, ties broken by token), order
//! them by link token, and append them to the job's known links. The next job propagates the
//! larger anchor set through each graph and aligns only the rows left (known links are excluded
//! from the aligned rows); each party keeps the first job's matches for the anchors.
//!
//! Leakage: nothing beyond the first job's results (each party uses only its own outputs); the
//! servers of the second job see, as for any job, the number of rows and the width of `z`.
//! A wrong match that becomes an anchor is final for that pair and misleads propagation a
//! little, hence the fraction: only the most confident matches are promoted.

use crate::error::{Error, Result};
use std::collections::HashSet;
use std::path::Path;

/// One matched row of a party: its entity (index or id), the pair score and the link token.
#[derive(Debug, Clone, PartialEq)]
pub struct Matched<E> {
    /// The party's own entity.
    pub entity: E,
    /// The pair score, as reported.
    pub score: f64,
    /// The pair's link token.
    pub token: u64,
}

/// The entities to promote, in the order both parties derive: the best `fraction` of the
/// matches by score (6 decimals; ties by token), ordered by link token.
pub fn promote<E: Clone>(matches: &[Matched<E>], fraction: f64) -> Vec<E> {
    let micro = |s: f64| (s * 1e6).round() as i64;
    let mut order: Vec<&Matched<E>> = matches.iter().collect();
    order.sort_by(|a, b| {
        micro(b.score)
            .cmp(&micro(a.score))
            .then(a.token.cmp(&b.token))
    });
    let keep =
        ((fraction.clamp(0.0, 1.0) * matches.len() as f64).floor() as usize).min(order.len());
    let mut chosen: Vec<&Matched<E>> = order[..keep].to_vec();
    chosen.sort_by_key(|m| m.token);
    chosen.into_iter().map(|m| m.entity.clone()).collect()
}

/// Splits one CSV line (RFC 4180 quoting) into fields.
fn csv_fields(line: &str) -> std::result::Result<Vec<String>, &'static str> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                    if !matches!(chars.peek(), None | Some(',')) {
                        return Err("text after a closing quote");
                    }
                }
            }
            (false, ',') => {
                out.push(std::mem::take(&mut cur));
                at_start = true;
            }
            (_, c) => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err("unterminated quote");
    }
    out.push(cur);
    Ok(out)
}

/// Reads a party's `matches.csv` (`entity_id,score,link_token,partner_id`); errors name the file
/// and line.
pub fn read_matches(path: &Path) -> Result<Vec<Matched<String>>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))?;
    let bad =
        |line: usize, what: &str| Error::invalid(format!("{}:{line}: {what}", path.display()));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if n == 1 {
            if !line.starts_with("entity_id,score,link_token") {
                return Err(bad(
                    n,
                    "expected the header entity_id,score,link_token,partner_id",
                ));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let f = csv_fields(line).map_err(|e| bad(n, e))?;
        if f.len() < 3 {
            return Err(bad(n, "expected entity_id,score,link_token,partner_id"));
        }
        let score: f64 = f[1]
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite())
            .ok_or_else(|| bad(n, &format!("score {:?} is not a number", f[1])))?;
        let token = u64::from_str_radix(&f[2], 16)
            .map_err(|_| bad(n, &format!("link token {:?} is not 16 hex digits", f[2])))?;
        out.push(Matched {
            entity: f[0].clone(),
            score,
            token,
        });
    }
    // An empty file (a run that failed before writing, a file cut to nothing) would otherwise
    // read as a job without matches: this party would promote nothing while the other promotes
    // its matches, and the two known-links lists would silently part.
    if text.lines().next().is_none() {
        return Err(bad(
            1,
            "the file is empty (expected the header entity_id,score,link_token,partner_id)",
        ));
    }
    Ok(out)
}

/// The next job's known-links file: the current one's lines (ids, in order; comments and blank
/// lines dropped) followed by the promoted ids. The two parties' files must stay line for line
/// parallel, so a promoted id that would not read back as one line (empty, starting with `#`,
/// with a TAB, line break or surrounding space) or that is already a known link (another
/// job's file?) is an error rather than skipped on one side.
pub fn extend_known(known_text: &str, promoted: &[String]) -> Result<String, String> {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for line in known_text.lines() {
        let id = line.trim_end_matches('\r');
        if id.is_empty() || id.starts_with('#') {
            continue;
        }
        seen.insert(id.to_string());
        out.push_str(id);
        out.push('\n');
    }
    for id in promoted {
        if id.is_empty()
            || id.starts_with('#')
            || id.trim() != id
            || id.contains(['\t', '\n', '\r'])
        {
            return Err(format!(
                "the matched entity id {id:?} cannot be written as a line of a known-links file \
                 (empty, starts with '#', or has a TAB, line break or surrounding space)"
            ));
        }
        if !seen.insert(id.clone()) {
            return Err(format!(
                "the matched entity {id:?} is already a known link: is --known the known-links \
                 file of the job that wrote --matches?"
            ));
        }
        out.push_str(id);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(e: &str, score: f64, token: u64) -> Matched<String> {
        Matched {
            entity: e.into(),
            score,
            token,
        }
    }

    #[test]
    fn both_sides_promote_the_same_pairs_in_the_same_order() {
        // The two sides list the same pairs (same scores and tokens) in different row orders.
        let a = vec![
            m("a1", 0.9, 7),
            m("a2", 0.5, 3),
            m("a3", 0.8, 1),
            m("a4", 0.8, 9),
        ];
        let b = vec![
            m("b4", 0.8, 9),
            m("b2", 0.5, 3),
            m("b1", 0.9, 7),
            m("b3", 0.8, 1),
        ];
        let pa = promote(&a, 0.75);
        let pb = promote(&b, 0.75);
        assert_eq!(pa, vec!["a3", "a1", "a4"]);
        assert_eq!(pb, vec!["b3", "b1", "b4"]);
        assert!(promote(&a, 0.0).is_empty());
        assert_eq!(promote(&a, 1.0).len(), 4);
    }

    #[test]
    fn matches_files_are_read_with_errors_naming_the_line() {
        let dir = std::env::temp_dir().join(format!("ppea-boot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("matches.csv");
        std::fs::write(
            &f,
            "entity_id,score,link_token,partner_id\n\"x,\"\"y\"\"\",0.5,00000000000000ff,\nz,0.25,0000000000000001,\n",
        )
        .unwrap();
        let r = read_matches(&f).unwrap();
        assert_eq!(r, vec![m("x,\"y\"", 0.5, 255), m("z", 0.25, 1)]);
        std::fs::write(&f, "entity_id,score,link_token,partner_id\nz,high,01,\n").unwrap();
        let e = read_matches(&f).unwrap_err().to_string();
        assert!(
            e.contains("matches.csv:2") && e.contains("not a number"),
            "{e}"
        );
        std::fs::write(&f, "id,score\n").unwrap();
        assert!(read_matches(&f).unwrap_err().to_string().contains(":1"));
        std::fs::write(&f, "").unwrap();
        let e = read_matches(&f).unwrap_err().to_string();
        assert!(e.contains("matches.csv:1") && e.contains("empty"), "{e}");
        // A header and no match is a job without matches.
        std::fs::write(&f, "entity_id,score,link_token,partner_id\n").unwrap();
        assert_eq!(read_matches(&f).unwrap(), vec![]);
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(
            extend_known("# c\nk1\n\nk2\n", &["n1".into(), "n2".into()]).unwrap(),
            "k1\nk2\nn1\nn2\n"
        );
        for bad in ["#x", " x", "x\ty", ""] {
            let e = extend_known("k1\n", &[bad.into()]).unwrap_err();
            assert!(e.contains("cannot be written"), "{bad:?}: {e}");
        }
        let e = extend_known("k1\n", &["k1".into()]).unwrap_err();
        assert!(e.contains("already a known link"), "{e}");
    }
}
