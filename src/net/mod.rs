//! The networked deployment: QUIC (quinn) with mutual TLS 1.3 (rustls, `ring` provider).
//!
//! * [`tls`]: certificates, TLS configurations, mapping a peer's certificate to a configured
//!   identity, and a development CA.
//! * [`wire`]: framing on QUIC streams: bincode control messages and raw little-endian `u64`
//!   blocks streamed in chunks, both with size limits.
//! * [`quic`]: the QUIC implementations of [`crate::channel::Transport`] and
//!   [`crate::channel::DealerTransport`]; protocol code runs on them unchanged.
//! * [`deploy`]: job descriptions, the server and dealer daemons, and the party client.

pub mod deploy;
pub mod quic;
pub mod tls;
pub mod wire;
