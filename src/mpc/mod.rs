//! The secure computation core.
//!
//! * [`ring`], [`fixed`]: arithmetic in Z_2^64 and fixed-point encoding;
//! * [`prg`], [`share`]: seeds, ChaCha streams, additive (PRG-compressed) sharing;
//! * [`channel`], [`protocol`]: the sans-IO protocol model and its transports;
//! * [`gather`]: public parts every server computes one of and all need (an all-gather);
//! * [`correlated`], [`dealer`]: correlated randomness behind one interface;
//! * [`bit_masks`]: truncation and comparison masks from random bits held both ways (daBits);
//! * [`bit_pack`]: values of given bit widths packed into words (messages that carry only
//!   the bits that matter);
//! * [`he`]: ring-LWE products of one server's shares by another's (the dealer-free bilinear form);
//! * [`ot`]: oblivious transfer (base OT on Ristretto, an IKNP batch seeding a silent
//!   extension, Gilboa products) and the dealer-free correlation source built on it;
//! * [`replicated`]: the dealer-free source of three servers holding replicated seeds;
//! * [`source`]: the job's choice of correlation source (dealer, OT, replicated), and the
//!   source a server runs;
//! * [`digest`]: SHA-256 with domain separation, for everything an adversary can feed a hash;
//! * [`beaver`], [`truncate`], [`compare`] (with its carry tree in [`carry_tree`]),
//!   [`millionaire`] (two servers without a dealer): the online protocols;
//! * [`modular`]: the bilinear form's scores modulo the slot prime (two servers without a
//!   dealer: one slot run instead of three or four) and their way back to `Z_2^64`;
//! * [`row_share`]: a server's share of an upload, held, drawn from its seed or spilled to disk;
//! * [`pairs`]: candidate pair lists and the blocked inner-product kernel;
//! * [`dp`]: discrete Laplace noise added by every server to its shares (distributed DP);
//! * [`engine`]: the per-server API that pipeline code calls;
//! * [`mesh`]: the links among the worker processes of one logical server (shards of a job);
//! * [`local`]: every server and the dealer in one process, for tests and benchmarks;
//! * [`cpu`]: which vector extensions may run (all the CPU has, or AVX2 only to measure it);
//! * [`mod@bench`]: measured benchmarks of the core operations.

pub mod beaver;
pub mod bench;
pub mod bit_masks;
pub mod bit_pack;
pub mod carry_tree;
pub mod channel;
pub mod compare;
pub mod correlated;
pub mod cpu;
pub mod dealer;
pub mod digest;
pub mod dp;
pub mod engine;
pub mod fixed;
pub mod gather;
pub mod he;
pub mod local;
#[cfg(test)]
pub(crate) mod material_check;
pub mod mesh;
pub mod millionaire;
pub mod modular;
pub mod ot;
pub mod pairs;
pub mod prg;
pub mod protocol;
pub mod replicated;
pub mod ring;
pub mod row_share;
pub mod share;
pub mod source;
pub mod truncate;
