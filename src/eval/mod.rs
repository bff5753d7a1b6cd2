//! Evaluation: quality metrics against gold links, and the in-process evaluation harness.
//!
//! * [`metrics`]: Hits@k, MRR, precision, recall, F1, PR-AUC, per-group figures;
//! * [`evaluate`]: splits, seeding, running a job in-process or judging a networked one.

pub mod evaluate;
pub mod metrics;
