//! A party's knowledge graph in the native layout, and its loader.
//!
//! Native layout of a graph directory (UTF-8, TAB-separated, one record per line, `#` starts a
//! comment line, no header):
//!
//! * `entities.tsv`: `id  name  [type  [group]]` - every entity once;
//! * `triples.tsv`: `head  relation  tail` - heads and tails are entity ids;
//! * `attributes.tsv` (optional): `id  attribute  value`.
//!
//! Every problem is reported as a [`GraphError`] naming the file, the line and what is wrong.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem with an input file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number, 0 when the problem concerns the whole file.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
        }
    }
}

impl std::error::Error for GraphError {}

impl GraphError {
    /// A problem at `line` of `file`.
    pub fn at(file: &Path, line: usize, problem: impl Into<String>) -> Self {
        GraphError {
            file: file.to_path_buf(),
            line,
            problem: problem.into(),
        }
    }
}

/// A knowledge graph: entities with names, optional types and group labels, typed relations
/// between them, and optional attributes. Entity `i` is row `i` of every per-entity vector.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Graph {
    /// Entity ids as the owner names them.
    pub ids: Vec<String>,
    /// Entity names (free text).
    pub names: Vec<String>,
    /// Optional entity types.
    pub types: Vec<Option<String>>,
    /// Optional group labels (for per-group quality and fairness reports).
    pub groups: Vec<Option<String>>,
    /// Relation names; triples refer to them by index.
    pub relations: Vec<String>,
    /// `(head, relation, tail)` as indices.
    pub triples: Vec<(u32, u32, u32)>,
    /// `(entity, attribute, value)`.
    pub attributes: Vec<(u32, String, String)>,
}

/// Reads a file as UTF-8 lines, reporting bad UTF-8 with its line number.
pub fn read_lines(path: &Path) -> Result<Vec<(usize, String)>, GraphError> {
    let bytes =
        std::fs::read(path).map_err(|e| GraphError::at(path, 0, format!("cannot read: {e}")))?;
    let mut out = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| {
            GraphError::at(
                path,
                i + 1,
                format!("not valid UTF-8 (byte {} of the line)", e.valid_up_to() + 1),
            )
        })?;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        out.push((i + 1, line.to_string()));
    }
    Ok(out)
}

/// Splits a line into TAB-separated fields, checking the count is within `min..=max`.
pub fn fields<'a>(
    path: &Path,
    line_no: usize,
    line: &'a str,
    min: usize,
    max: usize,
    what: &str,
) -> Result<Vec<&'a str>, GraphError> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < min || f.len() > max {
        let expect = if min == max {
            format!("{min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(GraphError::at(
            path,
            line_no,
            format!(
                "expected {expect} TAB-separated columns ({what}), found {}",
                f.len()
            ),
        ));
    }
    Ok(f)
}

impl Graph {
    /// Number of entities.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the graph has no entities.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Index of every entity id.
    pub fn index(&self) -> HashMap<&str, u32> {
        self.ids
            .iter()
            .enumerate()
            .map(|(i, s)| (s.as_str(), i as u32))
            .collect()
    }

    /// Adds an entity, returning its index; a duplicate id is an error.
    pub fn add_entity(
        &mut self,
        id: &str,
        name: &str,
        ty: Option<&str>,
        group: Option<&str>,
    ) -> u32 {
        self.ids.push(id.to_string());
        self.names.push(name.to_string());
        self.types
            .push(ty.filter(|s| !s.is_empty()).map(str::to_string));
        self.groups
            .push(group.filter(|s| !s.is_empty()).map(str::to_string));
        (self.ids.len() - 1) as u32
    }

    /// Loads a graph directory in the native layout.
    pub fn load_dir(dir: &Path) -> Result<Graph, GraphError> {
        let mut g = Graph::default();
        let ent_path = dir.join("entities.tsv");
        let mut index: HashMap<String, u32> = HashMap::new();
        for (no, line) in read_lines(&ent_path)? {
            let f = fields(
                &ent_path,
                no,
                &line,
                2,
                4,
                "id, name, optional type, optional group",
            )?;
            if f[0].is_empty() {
                return Err(GraphError::at(&ent_path, no, "empty entity id"));
            }
            if index.contains_key(f[0]) {
                return Err(GraphError::at(
                    &ent_path,
                    no,
                    format!("duplicate entity id {:?}", f[0]),
                ));
            }
            let i = g.add_entity(f[0], f[1], f.get(2).copied(), f.get(3).copied());
            index.insert(f[0].to_string(), i);
        }
        if g.is_empty() {
            return Err(GraphError::at(&ent_path, 0, "the graph has no entities"));
        }
        let tri_path = dir.join("triples.tsv");
        let mut rel_index: HashMap<String, u32> = HashMap::new();
        for (no, line) in read_lines(&tri_path)? {
            let f = fields(&tri_path, no, &line, 3, 3, "head, relation, tail")?;
            let lookup = |s: &str, role: &str| {
                index.get(s).copied().ok_or_else(|| {
                    GraphError::at(
                        &tri_path,
                        no,
                        format!("unknown entity {s:?} as {role} (not in entities.tsv)"),
                    )
                })
            };
            let h = lookup(f[0], "head")?;
            let t = lookup(f[2], "tail")?;
            let r = g.relation_index(&mut rel_index, f[1]);
            g.triples.push((h, r, t));
        }
        let attr_path = dir.join("attributes.tsv");
        if attr_path.exists() {
            for (no, line) in read_lines(&attr_path)? {
                let f = fields(&attr_path, no, &line, 3, 3, "id, attribute, value")?;
                let e = index.get(f[0]).copied().ok_or_else(|| {
                    GraphError::at(
                        &attr_path,
                        no,
                        format!("unknown entity {:?} (not in entities.tsv)", f[0]),
                    )
                })?;
                g.attributes.push((e, f[1].to_string(), f[2].to_string()));
            }
        }
        Ok(g)
    }

    /// Index of a relation name, adding it when new.
    pub fn relation_index(&mut self, index: &mut HashMap<String, u32>, name: &str) -> u32 {
        if let Some(&r) = index.get(name) {
            return r;
        }
        let r = self.relations.len() as u32;
        self.relations.push(name.to_string());
        index.insert(name.to_string(), r);
        r
    }

    /// Writes the graph in the native layout (files are written to temporary names and renamed,
    /// so a failure never leaves a half-written graph behind; an earlier graph's
    /// `attributes.tsv` is removed when this one has none).
    pub fn write_dir(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        write_atomically(dir, &self.native_files())?;
        self.remove_stale_files(dir)
    }

    /// Removes from `dir` the optional native files this graph does not have (an earlier
    /// graph's `attributes.tsv` would be read with this one).
    pub fn remove_stale_files(&self, dir: &Path) -> std::io::Result<()> {
        if self.attributes.is_empty() {
            match std::fs::remove_file(dir.join("attributes.tsv")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// The native layout's files and their contents: `entities.tsv`, `triples.tsv`, and
    /// `attributes.tsv` when the graph has attributes.
    pub fn native_files(&self) -> Vec<(&'static str, String)> {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        let mut ent = String::new();
        for i in 0..self.len() {
            ent.push_str(&clean(&self.ids[i]));
            ent.push('\t');
            ent.push_str(&clean(&self.names[i]));
            if self.types[i].is_some() || self.groups[i].is_some() {
                ent.push('\t');
                ent.push_str(&clean(self.types[i].as_deref().unwrap_or("")));
            }
            if let Some(gr) = &self.groups[i] {
                ent.push('\t');
                ent.push_str(&clean(gr));
            }
            ent.push('\n');
        }
        let mut tri = String::new();
        for &(h, r, t) in &self.triples {
            tri.push_str(&format!(
                "{}\t{}\t{}\n",
                clean(&self.ids[h as usize]),
                clean(&self.relations[r as usize]),
                clean(&self.ids[t as usize])
            ));
        }
        let mut files = vec![("entities.tsv", ent), ("triples.tsv", tri)];
        if !self.attributes.is_empty() {
            let mut att = String::new();
            for (e, a, v) in &self.attributes {
                att.push_str(&format!(
                    "{}\t{}\t{}\n",
                    clean(&self.ids[*e as usize]),
                    clean(a),
                    clean(v)
                ));
            }
            files.push(("attributes.tsv", att));
        }
        files
    }

    /// Neighbours of every entity (both directions), as `(neighbour, relation, outgoing)`.
    pub fn adjacency(&self) -> Vec<Vec<(u32, u32, bool)>> {
        let mut adj = vec![Vec::new(); self.len()];
        for &(h, r, t) in &self.triples {
            adj[h as usize].push((t, r, true));
            if h != t {
                adj[t as usize].push((h, r, false));
            }
        }
        adj
    }
}

/// The name `path` is written under before it is renamed: hidden, beside it, this process's.
fn temp_path(path: &Path) -> std::io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    let tmp = format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id());
    Ok(path.with_file_name(tmp))
}

/// Writes `tmp` through `write`, buffered, and syncs it to the disk.
fn write_synced(
    tmp: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(tmp)?);
    write(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Writes `path` through `write` under a temporary name (`temp_path`), synced, then renamed:
/// the file is whole or as it was, and on failure no temporary file is left.
pub fn write_file_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let tmp = temp_path(path)?;
    write_synced(&tmp, write)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Writes several files under `dir` (names may hold subfolders, which are created) via
/// temporary names, renaming only when all are written and synced.
pub fn write_atomically<N: AsRef<Path>>(dir: &Path, files: &[(N, String)]) -> std::io::Result<()> {
    for (name, _) in files {
        if let Some(parent) = dir.join(name).parent() {
            std::fs::create_dir_all(parent)?;
        }
    }
    let tmps = (files.iter())
        .map(|(name, _)| Ok((temp_path(&dir.join(name))?, dir.join(name))))
        .collect::<std::io::Result<Vec<_>>>()?;
    let write = || -> std::io::Result<()> {
        for ((tmp, _), (_, body)) in tmps.iter().zip(files) {
            write_synced(tmp, |w| w.write_all(body.as_bytes()))?;
        }
        for (tmp, dst) in &tmps {
            std::fs::rename(tmp, dst)?;
        }
        Ok(())
    };
    // On failure no temporary file is left behind (those already renamed are gone anyway).
    write().inspect_err(|_| {
        for (tmp, _) in &tmps {
            let _ = std::fs::remove_file(tmp);
        }
    })
}
