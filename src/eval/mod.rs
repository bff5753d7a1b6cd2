//! Evaluation: quality metrics against gold links, and the in-process evaluation harness.
//!
//! * [`metrics`]: Hits@k, MRR, precision, recall, F1, PR-AUC, per-group figures;
//! * [`evaluate`]: splits, seeding, running a job in-process or judging a networked one.
//! * [`generate`]: large realistic pairs grown from a real one, for the scaling benchmarks.
//! * [`bootstrap`]: chains of jobs whose confident matches become the next job's known links.
//! * [`attack`]: the attack harness, one curious server re-identifying names from its view.
//! * [`score_dump`]: an evaluation job's plaintext pair scores, for offline study of ranking.

pub mod attack;
pub mod bootstrap;
pub mod evaluate;
pub mod generate;
pub mod metrics;
pub mod score_dump;
