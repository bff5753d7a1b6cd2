//! Privacy-preserving entity alignment over additively secret-shared graph embeddings.
//!
//! Graph owners (parties) compute entity embeddings locally and upload additive secret shares to
//! 2 to 4 compute servers; the servers compare entities across graphs on shares and return to
//! each party only the shares of its own results. This crate is the library both binaries stand
//! on. The MPC core:
//!
//! * [`ring`], [`fixed`]: arithmetic in Z_2^64 and fixed-point encoding;
//! * [`prg`], [`share`]: seeds, ChaCha streams, additive (PRG-compressed) sharing;
//! * [`channel`], [`protocol`]: the sans-IO protocol model and its transports;
//! * [`correlated`], [`dealer`]: correlated randomness behind one interface;
//! * [`beaver`], [`truncate`], [`compare`]: the online protocols;
//! * [`engine`]: the per-server API that pipeline code calls;
//! * [`local`]: every server and the dealer in one process, for tests and benchmarks;
//! * [`bench`]: measured benchmarks of the core operations.
#![warn(missing_docs)]

pub mod align;
pub mod beaver;
pub mod bench;
pub mod blocking;
pub mod channel;
pub mod compare;
pub mod correlated;
pub mod dealer;
pub mod engine;
pub mod error;
pub mod evaluate;
pub mod features;
pub mod fixed;
pub mod graph;
pub mod import;
pub mod local;
pub mod metrics;
pub mod net;
pub mod pairs;
pub mod prg;
pub mod protocol;
pub mod ring;
pub mod share;
pub mod truncate;

pub use error::{Error, Result};
