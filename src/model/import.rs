//! Importers for public entity-alignment benchmark layouts, and the evaluation dataset type.
//!
//! * **DBP15K / SRPRS** (`ent_ids_1`, `ent_ids_2`, `triples_1`, `triples_2`, `ref_ent_ids`):
//!   names come from `translated_ent_name/*.json` when present, else from the last segment of
//!   the entity URI. The standard split is `uea_split/sup_ent_ids` (tune) and
//!   `uea_split/ref_ent_ids` (test) when present, else top-level `sup_ent_ids` and
//!   `ref_ent_ids` (SRPRS; `ref` minus `sup` when `ref` lists every link), else top-level
//!   `sup_pairs` and `ref_pairs`, else the first 30% of `ref_ent_ids` lines.
//! * **OpenEA** (`rel_triples_1`, `rel_triples_2`, optional `attr_triples_1/2`, `ent_links`):
//!   entities are the URIs that occur; names come from the URI. The split is the published
//!   `721_5fold/N/{train,valid,test}_links` (fold `N` from [`LoadOptions`], train = tune)
//!   when present, else the first 30% of `ent_links`.
//!
//! [`Dataset::split`] says which split was used.
//! * **native**: `a/` and `b/` graph directories (see [`crate::model::graph`]) and `links.tsv`
//!   (`id_a  id_b`).
//!
//! Nothing here depends on the order of ids: the pipeline shuffles rows before anything leaves a
//! party, and evaluation looks links up by entity.

use crate::model::graph::{Graph, GraphError, fields, read_lines};
use std::collections::HashMap;
use std::path::Path;

/// Layout of a dataset directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// DBP15K / SRPRS.
    Dbp15k,
    /// OpenEA.
    OpenEa,
    /// `a/`, `b/`, `links.tsv`.
    Native,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dbp15k" | "srprs" => Ok(Format::Dbp15k),
            "openea" => Ok(Format::OpenEa),
            "native" => Ok(Format::Native),
            _ => Err(format!(
                "unknown dataset format {s:?} (expected dbp15k, openea or native)"
            )),
        }
    }
}

impl Format {
    /// Guesses the layout from the files present.
    pub fn detect(dir: &Path) -> Option<Format> {
        if dir.join("ent_ids_1").exists() {
            Some(Format::Dbp15k)
        } else if dir.join("rel_triples_1").exists() {
            Some(Format::OpenEa)
        } else if dir.join("a").join("entities.tsv").exists() {
            Some(Format::Native)
        } else {
            None
        }
    }
}

/// Two graphs and the gold links between them (entity indices), split for tuning and testing.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The first party's graph.
    pub a: Graph,
    /// The second party's graph.
    pub b: Graph,
    /// Links that may be used to tune.
    pub tune: Links,
    /// Links that are evaluated.
    pub test: Links,
    /// Validation links of published splits that have them (OpenEA), else empty.
    pub valid: Links,
    /// Which split was used (for the log).
    pub split: String,
}

/// Importer options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// OpenEA fold of `721_5fold/` (1 to 5).
    pub fold: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { fold: 1 }
    }
}

impl Dataset {
    /// Replaces every name with an opaque identifier (a keyed hash of the side and the entity
    /// id, unrelated across the two graphs and to the id order), to test structure alone.
    pub fn hide_names(&mut self) {
        for (side, g) in [(b'a', &mut self.a), (b'b', &mut self.b)] {
            for (name, id) in g.names.iter_mut().zip(&g.ids) {
                let h = crate::model::features::hash64(&[b"hidden-name", &[side], id.as_bytes()]);
                *name = format!("e{h:016x}");
            }
        }
    }
}

/// Loads a dataset directory in the given layout.
pub fn load(dir: &Path, format: Format) -> Result<Dataset, GraphError> {
    load_with(dir, format, LoadOptions::default())
}

/// Loads a dataset directory in the given layout with options.
pub fn load_with(dir: &Path, format: Format, opts: LoadOptions) -> Result<Dataset, GraphError> {
    match format {
        Format::Dbp15k => load_dbp15k(dir),
        Format::OpenEa => load_openea(dir, opts.fold),
        Format::Native => load_native(dir),
    }
}

/// Links of a pair file as indices.
fn link_file(path: &Path, a: &Graph, b: &Graph) -> Result<Links, GraphError> {
    link_indices(path, &read_pairs(path)?, a, b)
}

/// No published split: the first 30% of a link file as tune links, the rest as test links.
fn first_30(path: &Path, a: &Graph, b: &Graph) -> Result<(Links, Links, String), GraphError> {
    let (tune, test) = split_30_70(link_file(path, a, b)?);
    let split = format!(
        "first 30% of {} ({} tune links), the rest ({} test links)",
        path.display(),
        tune.len(),
        test.len()
    );
    Ok((tune, test, split))
}

/// A dataset without validation links.
fn dataset(a: Graph, b: Graph, (tune, test, split): (Links, Links, String)) -> Dataset {
    Dataset {
        a,
        b,
        tune,
        test,
        valid: Vec::new(),
        split,
    }
}

/// Removes from `test` the links also in `tune` (a test file that lists every link).
fn without(test: Links, tune: &Links) -> Links {
    let t: std::collections::HashSet<&(u32, u32)> = tune.iter().collect();
    test.into_iter().filter(|l| !t.contains(l)).collect()
}

/// The readable name in an entity URI: its last path segment, percent-decoded, `_` as space.
pub fn name_from_uri(uri: &str) -> String {
    let seg = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
    let bytes = seg.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'_' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_pairs(path: &Path) -> Result<Vec<(usize, String, String)>, GraphError> {
    read_lines(path)?
        .into_iter()
        .map(|(no, line)| {
            let f = fields(path, no, &line, 2, 2, "two entity ids")?;
            Ok((no, f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

fn link_indices(
    path: &Path,
    pairs: &[(usize, String, String)],
    a: &Graph,
    b: &Graph,
) -> Result<Vec<(u32, u32)>, GraphError> {
    let (ia, ib) = (a.index(), b.index());
    pairs
        .iter()
        .map(|(no, x, y)| {
            let i = ia.get(x.as_str()).ok_or_else(|| {
                GraphError::at(
                    path,
                    *no,
                    format!("unknown entity {x:?} of the first graph"),
                )
            })?;
            let j = ib.get(y.as_str()).ok_or_else(|| {
                GraphError::at(
                    path,
                    *no,
                    format!("unknown entity {y:?} of the second graph"),
                )
            })?;
            Ok((*i, *j))
        })
        .collect()
}

/// Gold links as (entity of A, entity of B) indices.
pub type Links = Vec<(u32, u32)>;

fn split_30_70(links: Links) -> (Links, Links) {
    let cut = links.len() * 3 / 10;
    let test = links[cut..].to_vec();
    let mut tune = links;
    tune.truncate(cut);
    (tune, test)
}

fn load_dbp15k(dir: &Path) -> Result<Dataset, GraphError> {
    let names = dbp15k_names(dir)?;
    let mut graphs = Vec::new();
    for side in 1..=2 {
        let ent_path = dir.join(format!("ent_ids_{side}"));
        let mut g = Graph::default();
        let mut seen = HashMap::new();
        for (no, line) in read_lines(&ent_path)? {
            let f = fields(&ent_path, no, &line, 2, 2, "id, URI")?;
            if seen.insert(f[0].to_string(), ()).is_some() {
                return Err(GraphError::at(
                    &ent_path,
                    no,
                    format!("duplicate entity id {:?}", f[0]),
                ));
            }
            let name = names
                .get(f[0])
                .cloned()
                .unwrap_or_else(|| name_from_uri(f[1]));
            g.add_entity(f[0], &name, None, None);
        }
        if g.is_empty() {
            return Err(GraphError::at(&ent_path, 0, "the graph has no entities"));
        }
        let tri_path = dir.join(format!("triples_{side}"));
        let index: HashMap<String, u32> = g
            .index()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let mut rels = HashMap::new();
        for (no, line) in read_lines(&tri_path)? {
            let f = fields(&tri_path, no, &line, 3, 3, "head id, relation id, tail id")?;
            let look = |s: &str| {
                index.get(s).copied().ok_or_else(|| {
                    GraphError::at(
                        &tri_path,
                        no,
                        format!("unknown entity {s:?} (not in ent_ids_{side})"),
                    )
                })
            };
            let (h, t) = (look(f[0])?, look(f[2])?);
            let r = g.relation_index(&mut rels, f[1]);
            g.triples.push((h, r, t));
        }
        graphs.push(g);
    }
    let b = graphs.pop().expect("two graphs");
    let a = graphs.pop().expect("two graphs");
    // Published splits, first found: uea_split/{sup,ref}_ent_ids, top-level sup_ent_ids with
    // ref_ent_ids (SRPRS and DBP15K releases; ref minus sup when ref lists every link),
    // top-level sup_pairs with ref_pairs; else the first 30% of ref_ent_ids.
    let uea = dir.join("uea_split");
    let published = [
        (uea.join("sup_ent_ids"), uea.join("ref_ent_ids")),
        (dir.join("sup_ent_ids"), dir.join("ref_ent_ids")),
        (dir.join("sup_pairs"), dir.join("ref_pairs")),
    ];
    let mut found = None;
    for (sup, refs) in &published {
        if sup.exists() && refs.exists() {
            let tune = link_file(sup, &a, &b)?;
            let test = without(link_file(refs, &a, &b)?, &tune);
            let split = format!(
                "published split: {} ({} tune links), {} ({} test links)",
                sup.display(),
                tune.len(),
                refs.display(),
                test.len()
            );
            found = Some((tune, test, split));
            break;
        }
    }
    let split = match found {
        Some(f) => f,
        None => {
            let (tune, test, split) = first_30(&dir.join("ref_ent_ids"), &a, &b)?;
            (tune, test, format!("no published split: {split}"))
        }
    };
    Ok(dataset(a, b, split))
}

/// Names from `translated_ent_name/*.json` (`[[id, ["tok", ...]], ...]`), if the file exists.
fn dbp15k_names(dir: &Path) -> Result<HashMap<String, String>, GraphError> {
    let tdir = dir.join("translated_ent_name");
    let mut files: Vec<_> = match std::fs::read_dir(&tdir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect(),
        Err(_) => return Ok(HashMap::new()),
    };
    files.sort();
    let Some(path) = files.first() else {
        return Ok(HashMap::new());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| GraphError::at(path, 0, format!("cannot read: {e}")))?;
    let parsed: Vec<(serde_json::Value, Vec<String>)> =
        serde_json::from_str(&text).map_err(|e| {
            GraphError::at(path, e.line(), format!("not a list of [id, [tokens]]: {e}"))
        })?;
    Ok(parsed
        .into_iter()
        .map(|(id, toks)| {
            let id = match id {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (id, toks.join(" "))
        })
        .collect())
}

fn load_openea(dir: &Path, fold: usize) -> Result<Dataset, GraphError> {
    let mut graphs = Vec::new();
    for side in 1..=2 {
        let mut g = Graph::default();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut rels = HashMap::new();
        let tri_path = dir.join(format!("rel_triples_{side}"));
        for (no, line) in read_lines(&tri_path)? {
            let f = fields(&tri_path, no, &line, 3, 3, "head URI, relation, tail URI")?;
            let mut ent = |s: &str, g: &mut Graph| -> u32 {
                if let Some(&i) = index.get(s) {
                    return i;
                }
                let i = g.add_entity(s, &name_from_uri(s), None, None);
                index.insert(s.to_string(), i);
                i
            };
            let h = ent(f[0], &mut g);
            let t = ent(f[2], &mut g);
            let r = g.relation_index(&mut rels, f[1]);
            g.triples.push((h, r, t));
        }
        if g.is_empty() {
            return Err(GraphError::at(&tri_path, 0, "the graph has no entities"));
        }
        let attr_path = dir.join(format!("attr_triples_{side}"));
        if attr_path.exists() {
            for (no, line) in read_lines(&attr_path)? {
                let f = fields(&attr_path, no, &line, 3, 3, "entity URI, attribute, value")?;
                if let Some(&e) = index.get(f[0]) {
                    g.attributes.push((e, f[1].to_string(), f[2].to_string()));
                }
            }
        }
        graphs.push(g);
    }
    let b = graphs.pop().expect("two graphs");
    let a = graphs.pop().expect("two graphs");
    let folds = dir.join("721_5fold");
    let fold_dir = folds.join(fold.to_string());
    if folds.is_dir() || fold != 1 {
        if !fold_dir.is_dir() {
            return Err(GraphError::at(
                &fold_dir,
                0,
                format!("fold {fold} of the published 721_5fold split is missing"),
            ));
        }
        let tune = link_file(&fold_dir.join("train_links"), &a, &b)?;
        let test = link_file(&fold_dir.join("test_links"), &a, &b)?;
        let valid_path = fold_dir.join("valid_links");
        let valid = if valid_path.exists() {
            link_file(&valid_path, &a, &b)?
        } else {
            Vec::new()
        };
        let split = format!(
            "published split: {} ({} train, {} valid, {} test links)",
            fold_dir.display(),
            tune.len(),
            valid.len(),
            test.len()
        );
        return Ok(Dataset {
            a,
            b,
            tune,
            test,
            valid,
            split,
        });
    }
    let (tune, test, split) = first_30(&dir.join("ent_links"), &a, &b)?;
    let split = format!("no published split (no 721_5fold/): {split}");
    Ok(dataset(a, b, (tune, test, split)))
}

fn load_native(dir: &Path) -> Result<Dataset, GraphError> {
    let a = Graph::load_dir(&dir.join("a"))?;
    let b = Graph::load_dir(&dir.join("b"))?;
    // `party import` writes the split it used as tune-links.tsv and test-links.tsv.
    let (tp, sp) = (dir.join("tune-links.tsv"), dir.join("test-links.tsv"));
    let (tune, test, split) = if tp.exists() && sp.exists() {
        let (tune, test) = (link_file(&tp, &a, &b)?, link_file(&sp, &a, &b)?);
        let split = format!(
            "split: {} ({} tune links), {} ({} test links)",
            tp.display(),
            tune.len(),
            sp.display(),
            test.len()
        );
        (tune, test, split)
    } else {
        first_30(&dir.join("links.tsv"), &a, &b)?
    };
    Ok(dataset(a, b, (tune, test, split)))
}
