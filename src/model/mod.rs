//! The alignment model and job.
//!
//! * [`graph`], [`import`]: knowledge graphs in the native layout, and importers of DBP15K and
//!   OpenEA layouts;
//! * [`features`]: the party-local model (name features, relation-aware weights, level-1 sums,
//!   the cross-graph attention sketch);
//! * [`anchors`], [`three_view`]: known links (three-view label propagation, anchor tokens) and
//!   opaque-name detection;
//! * [`assign`]: 1-to-1 assignment on shares (iterated mutual best) and its plaintext
//!   reference;
//! * [`bootstrap`]: confident matches of one job promoted to known links of the next;
//! * [`blocking`]: keyed blocking tokens (party side) and candidate lists (server side);
//! * [`candidate_gather`]: the servers compute a job's candidate lists in parts, gather them
//!   and check that they all hold the same;
//! * [`explain`]: per-block contributions of each match (on shares) and the owner's local
//!   evidence, `explanations.csv`;
//! * [`audit`]: the private per-group audit with distributed differential-privacy noise;
//! * [`upload_check`]: range checks of both uploads on shares, so that no party can steer the
//!   other's results with vectors no graph could produce;
//! * [`upload_rows`]: a party's upload vectors, computed a block of rows at a time;
//! * [`align`]: party preparation, the secure pipeline on the servers, reading results, and the
//!   plaintext reference of the same model;
//! * [`shard`]: a job's rows dealt among the worker processes of one logical server;
//! * [`footprint`]: the memory a job needs on a server and on the dealer, from its sizes.

pub mod align;
pub mod anchors;
pub mod assign;
pub mod audit;
pub mod blocking;
pub mod bootstrap;
pub mod candidate_gather;
pub mod explain;
pub mod features;
pub mod footprint;
pub mod graph;
pub mod import;
pub mod shard;
pub mod three_view;
pub mod upload_check;
pub mod upload_rows;
