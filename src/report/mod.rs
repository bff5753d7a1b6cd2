//! The HTML report of a job (`OUT/report.html` of `party run`, `party eval --report FILE`): one
//! self-contained file with inline CSS and inline SVG charts, no external resource, and a few
//! lines of inline script that only mark the page as rendered without errors (for
//! `scripts/check-report.sh`).
//!
//! * [`fmt`]: escaping and number formatting;
//! * [`svg`]: the charts;
//! * [`files`]: the optional `explanations.csv` and `audit.json` beside the results, and the
//!   atomic write;
//! * [`build`]: a [`ReportInput`] from a `party run` or from an in-process evaluation;
//! * [`render`]: a [`ReportInput`] to HTML (pure).

pub mod build;
pub mod files;
pub mod fmt;
mod render;
pub mod svg;

pub use render::render;

use serde::{Deserialize, Serialize};

/// A part of the report that may be missing, with the reason shown in its place.
#[derive(Debug, Clone, PartialEq)]
pub enum Section<T> {
    /// The data of the section.
    Present(T),
    /// Why the section is absent (a sentence shown to the reader).
    Absent(String),
}

/// Overall quality against gold or known links.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityFigures {
    /// Gold pairs judged.
    pub pairs: usize,
    /// Hits@1.
    pub hits1: f64,
    /// Precision of the reported matches.
    pub precision: f64,
    /// Recall of the reported matches.
    pub recall: f64,
    /// F1.
    pub f1: f64,
}

pub use crate::eval::metrics::PrPoint;

/// The precision-recall curve and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct PrCurve {
    /// A sentence: what was judged against which links.
    pub source: String,
    /// Points by decreasing threshold.
    pub points: Vec<PrPoint>,
    /// Area under the curve (average precision), if computed.
    pub auc: Option<f64>,
}

/// One group of the per-group figures.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// The group's label.
    pub group: String,
    /// Entities (or gold pairs) in the group.
    pub entities: Option<f64>,
    /// Matched entities in the group.
    pub matched: Option<f64>,
    /// One value per metric of [`GroupFigures::metrics`].
    pub values: Vec<Option<f64>>,
    /// Suppressed: too small to be released.
    pub suppressed: bool,
}

/// Per-group figures with the disparity between groups.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFigures {
    /// A sentence: where the figures come from (audit on shares, or the evaluation's gold).
    pub source: String,
    /// What the "entities" column counts (e.g. "entities", "gold pairs").
    pub unit: String,
    /// Metric names (one bar series each), values in [0, 1].
    pub metrics: Vec<String>,
    /// The groups.
    pub rows: Vec<GroupRow>,
    /// Largest difference between groups, per metric name.
    pub disparity: Vec<(String, Option<f64>)>,
    /// Further sentences (privacy parameters, suppression rule).
    pub notes: Vec<String>,
}

/// One row of `explanations.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// This party's entity id.
    pub entity_id: String,
    /// The match's link token (hex).
    pub link_token: String,
    /// The pair score.
    pub score: f64,
    /// Contributions of the blocks: name, neighbourhood, attention, anchors (`None`: absent).
    pub blocks: [Option<f64>; 4],
    /// How many of this entity's neighbours were matched in the same job.
    pub matched_neighbours: String,
    /// Those neighbours' ids.
    pub matched_neighbour_ids: Vec<String>,
}

/// Names of the explanation blocks, in [`Explanation::blocks`] order.
pub const BLOCKS: [&str; 4] = ["name", "neighbourhood", "attention", "anchors"];

/// The private per-group audit as `audit.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    /// Privacy budget of the noise (null: no noise).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Delta of the noise.
    #[serde(default)]
    pub delta: Option<f64>,
    /// Noise mechanism.
    #[serde(default)]
    pub mechanism: Option<String>,
    /// Budget spent by this release.
    #[serde(default)]
    pub spent_epsilon: Option<f64>,
    /// Groups smaller than this are suppressed.
    #[serde(default)]
    pub min_group_size: Option<f64>,
    /// The side the audit is of.
    #[serde(default)]
    pub side: Option<String>,
    /// The groups.
    pub groups: Vec<AuditGroup>,
    /// Largest difference between groups, per metric.
    #[serde(default)]
    pub disparity: std::collections::BTreeMap<String, Option<f64>>,
}

/// One group of `audit.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditGroup {
    /// Label.
    pub group: String,
    /// Entities (noisy if noise is on).
    #[serde(default)]
    pub entities: Option<f64>,
    /// Matched entities.
    #[serde(default)]
    pub matched: Option<f64>,
    /// matched / entities.
    #[serde(default)]
    pub match_rate: Option<f64>,
    /// Mean score of the matches.
    #[serde(default)]
    pub mean_score: Option<f64>,
    /// Precision (with known links or a labelled sample).
    #[serde(default)]
    pub precision: Option<f64>,
    /// Recall.
    #[serde(default)]
    pub recall: Option<f64>,
    /// Suppressed (below the minimum size).
    #[serde(default)]
    pub suppressed: bool,
}

/// Everything the report shows. Strings are plain text (escaped when rendered).
#[derive(Debug, Clone, PartialEq)]
pub struct ReportInput {
    /// The command that wrote the report (`party run`, `party eval`).
    pub command: String,
    /// Job id.
    pub job: String,
    /// Which party (`a`, `b`, or both in an evaluation).
    pub side: String,
    /// Entities of this party in the job (uploaded rows).
    pub entities: usize,
    /// Matched entities (`None`: not known).
    pub matched: Option<usize>,
    /// The score threshold (`min_score`).
    pub threshold: f64,
    /// Job parameters, flattened (`model.dim` = `64`).
    pub parameters: Vec<(String, String)>,
    /// The compute servers (names).
    pub servers: Vec<String>,
    /// Wall time of the job, seconds.
    pub wall_seconds: f64,
    /// Traffic figures: label and bytes.
    pub bytes: Vec<(String, u64)>,
    /// Quality against gold links, when known.
    pub quality: Option<QualityFigures>,
    /// Scores of the matches (`Absent`: why there are none to show).
    pub scores: Section<Vec<f64>>,
    /// Precision-recall curve.
    pub pr: Section<PrCurve>,
    /// Per-group figures.
    pub groups: Section<GroupFigures>,
    /// Further per-group figures, each under its heading (the other party's groups of the
    /// audit, `audit-other.json`; an evaluation's private audit beside its gold figures).
    pub more_groups: Vec<(String, GroupFigures)>,
    /// Explanations of matches.
    pub explanations: Section<Vec<Explanation>>,
    /// What the servers and the other party saw of this job (sentences).
    pub disclosure: Vec<String>,
}
