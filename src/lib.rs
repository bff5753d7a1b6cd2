//! Privacy-preserving entity alignment over additively secret-shared graph embeddings.
//!
//! Graph owners (parties) compute entity embeddings locally and upload additive secret shares to
//! 2 to 4 compute servers; the servers compare entities across graphs on shares and return to
//! each party only the shares of its own results. This crate is the library both binaries stand
//! on, in four layers (each depends only on the ones above it in this list):
//!
//! * [`mpc`]: the secure computation core: ring arithmetic, sharing, the sans-IO protocol model,
//!   correlated randomness (the dealer), and the online protocols;
//! * [`model`]: graphs and importers, the party-local model, blocking, and the alignment job
//!   (party preparation, the secure pipeline on the servers, the plaintext reference);
//! * [`eval`]: metrics and the evaluation harness;
//! * [`net`]: the deployment over QUIC with mutual TLS: configuration, job descriptions, the
//!   compute and dealer daemons, the party client;
//! * [`report`]: the self-contained HTML report of a job.
#![warn(missing_docs)]

pub mod error;
pub mod eval;
pub mod model;
pub mod mpc;
pub mod net;
pub mod report;

pub use error::{Error, Result};
