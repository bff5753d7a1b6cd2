//! The networked deployment: QUIC (quinn) with mutual TLS 1.3 (rustls, `ring` provider).
//!
//! Transport:
//! * [`tls`]: certificates, TLS configurations, mapping a peer's certificate to a configured
//!   identity, and a development CA;
//! * [`wire`]: framing on QUIC streams: bincode control messages and raw little-endian `u64`
//!   blocks streamed in chunks, both with size limits;
//! * [`quic`]: the QUIC implementations of [`crate::mpc::channel::Transport`] and
//!   [`crate::mpc::channel::DealerTransport`]; protocol code runs on them unchanged;
//! * [`dial`]: outgoing connections to named nodes;
//! * [`liveness`]: keep-alive and idle timeout, and what a lost connection means.
//!
//! Jobs, by role:
//! * [`job`]: the job description and the messages about a job;
//! * [`upload`]: how a party's shares and tokens travel to a server;
//! * [`config`]: a `server` process's configuration;
//! * [`daemon`]: the `server` process, routing streams to jobs;
//! * [`registry`]: the jobs a server holds, the job ids that already ran, counters;
//! * [`admin`]: the loopback admin endpoint (`server status`, Prometheus metrics);
//! * [`compute`]: a compute server's job;
//! * [`dealer_job`]: the dealer's job;
//! * [`party`]: the party client and its job file;
//! * [`progress`]: the events the party client reports while a job runs;
//! * [`heap`]: the processes' allocator settings (freed memory goes back to the system).

pub mod admin;
pub mod compute;
pub mod config;
pub mod daemon;
pub mod dealer_job;
pub mod dial;
pub mod heap;
pub mod job;
pub mod liveness;
pub mod party;
pub mod progress;
pub mod quic;
pub mod registry;
pub mod tls;
pub mod upload;
pub mod wire;
