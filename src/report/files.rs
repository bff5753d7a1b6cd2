//! The optional inputs another part of `party run` leaves in the output directory:
//! `explanations.csv` (per-match explanations) and `audit.json` (the private per-group audit),
//! read if present, and the atomic write of the report itself.

use crate::error::{Error, Result};
use crate::report::{Audit, Explanation, Section};
use std::path::Path;

/// Header of `explanations.csv` (fixed contract).
pub const EXPLANATION_HEADER: [&str; 9] = [
    "entity_id",
    "link_token",
    "score",
    "name",
    "neighbourhood",
    "attention",
    "anchors",
    "matched_neighbours",
    "matched_neighbour_ids",
];

/// Splits CSV text into records (RFC 4180 quoting: `"a,b"`, `""` for a quote).
pub fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut any) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        any = true;
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                any = false;
            }
            (false, c) => field.push(c),
        }
    }
    if any {
        row.push(field);
        rows.push(row);
    }
    rows
}

fn float(cell: &str) -> Option<f64> {
    let c = cell.trim();
    if c.is_empty() {
        None
    } else {
        c.parse().ok().filter(|v: &f64| v.is_finite())
    }
}

/// Parses `explanations.csv`; errors name the line.
pub fn parse_explanations(text: &str) -> Result<Vec<Explanation>> {
    let rows = parse_csv(text);
    let Some((head, body)) = rows.split_first() else {
        return Err(Error::invalid("explanations.csv is empty"));
    };
    if head.iter().map(|h| h.trim()).ne(EXPLANATION_HEADER) {
        return Err(Error::invalid(format!(
            "explanations.csv: header {:?}, expected {:?}",
            head.join(","),
            EXPLANATION_HEADER.join(",")
        )));
    }
    let mut out = Vec::with_capacity(body.len());
    for (i, r) in body.iter().enumerate() {
        if r.len() == 1 && r[0].trim().is_empty() {
            continue;
        }
        if r.len() != EXPLANATION_HEADER.len() {
            return Err(Error::invalid(format!(
                "explanations.csv line {}: {} cells, expected {}",
                i + 2,
                r.len(),
                EXPLANATION_HEADER.len()
            )));
        }
        out.push(Explanation {
            entity_id: r[0].clone(),
            link_token: r[1].clone(),
            score: float(&r[2]).ok_or_else(|| {
                Error::invalid(format!("explanations.csv line {}: bad score", i + 2))
            })?,
            blocks: [float(&r[3]), float(&r[4]), float(&r[5]), float(&r[6])],
            matched_neighbours: r[7].clone(),
            matched_neighbour_ids: r[8]
                .split('|')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    Ok(out)
}

/// Reads `dir/explanations.csv` if present. A file that does not parse is reported in the
/// section rather than failing the report.
pub fn read_explanations(dir: &Path) -> Section<Vec<Explanation>> {
    let p = dir.join("explanations.csv");
    match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Section::Absent(
            "Explanations were not requested in this job (no explanations.csv in the output \
             directory)."
                .into(),
        ),
        Err(e) => Section::Absent(format!("explanations.csv could not be read: {e}.")),
        Ok(text) => match parse_explanations(&text) {
            Ok(v) => Section::Present(v),
            Err(e) => Section::Absent(format!("explanations.csv could not be used: {e}.")),
        },
    }
}

/// Reads `dir/audit.json` if present (same rules as [`read_explanations`]).
pub fn read_audit(dir: &Path) -> Section<Audit> {
    read_audit_file(dir, "audit.json")
}

/// Reads `dir/audit-other.json` (the other party's groups, as the audit released them to this
/// party) if present and usable.
pub fn read_audit_other(dir: &Path) -> Option<Audit> {
    match read_audit_file(dir, "audit-other.json") {
        Section::Present(a) => Some(a),
        Section::Absent(_) => None,
    }
}

fn read_audit_file(dir: &Path, name: &str) -> Section<Audit> {
    let p = dir.join(name);
    match std::fs::read_to_string(&p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Section::Absent(
            "A per-group audit was not requested in this job (no audit.json in the output \
             directory)."
                .into(),
        ),
        Err(e) => Section::Absent(format!("{name} could not be read: {e}.")),
        Ok(text) => match serde_json::from_str::<Audit>(&text) {
            Ok(a) => Section::Present(a),
            Err(e) => Section::Absent(format!("{name} could not be used: {e}.")),
        },
    }
}

/// Writes `body` to `path` through a temporary file in the same directory and a rename, so the
/// file is either the whole report or absent (or the previous one).
pub fn write_atomically(path: &Path, body: &str) -> Result<()> {
    crate::model::graph::write_file_atomically(path, |w| w.write_all(body.as_bytes()))
        .map_err(|e| Error::invalid(format!("writing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_empty_cells() {
        let rows = parse_csv("a,b,c\n\"x,1\",\"say \"\"hi\"\"\",\n");
        assert_eq!(
            rows,
            vec![vec!["a", "b", "c"], vec!["x,1", "say \"hi\"", ""]]
        );
    }

    #[test]
    fn explanations_parse_with_absent_blocks() {
        let text = format!(
            "{}\n\"<script>&\",00ff,0.500000,0.300000,0.200000,,,2,n1|n2\n",
            EXPLANATION_HEADER.join(",")
        );
        let e = parse_explanations(&text).unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].entity_id, "<script>&");
        assert_eq!(e[0].blocks, [Some(0.3), Some(0.2), None, None]);
        assert_eq!(e[0].matched_neighbour_ids, vec!["n1", "n2"]);
        assert!(parse_explanations("x,y\n1,2\n").is_err());
    }

    #[test]
    fn absent_files_say_not_requested() {
        let dir = std::env::temp_dir().join(format!("ppea-report-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        match read_explanations(&dir) {
            Section::Absent(why) => assert!(why.contains("not requested in this job")),
            Section::Present(_) => panic!("no file"),
        }
        match read_audit(&dir) {
            Section::Absent(why) => assert!(why.contains("not requested in this job")),
            Section::Present(_) => panic!("no file"),
        }
        std::fs::write(dir.join("audit.json"), "{not json").unwrap();
        assert!(matches!(read_audit(&dir), Section::Absent(w) if w.contains("could not be used")));
        let p = dir.join("r.html");
        write_atomically(&p, "hello").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "hello");
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
