//! Outgoing connections: resolving `host:port` and opening a framed stream to a named node whose
//! certificate must carry that name.

use crate::error::{Error, PeerName, Result};
use crate::net::job::Node;
use crate::net::wire::{FrameRecv, FrameSend, framed};
use std::net::SocketAddr;
use std::time::Duration;

/// Resolves `host:port`.
pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .map_err(|e| Error::invalid(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| Error::invalid(format!("{addr:?} resolves to no address")))
}

/// Whether a connection failed because the peer offers no common application protocol (TLS
/// alert 120, no_application_protocol): it speaks another version ([`crate::net::tls::ALPN`]).
fn other_version(e: &quinn::ConnectionError) -> bool {
    let no_common = quinn::TransportErrorCode::crypto(120);
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => c.error_code == no_common,
        quinn::ConnectionError::TransportError(t) => t.code == no_common,
        _ => false,
    }
}

/// Connects to `node` (verifying that its certificate is issued for `node.name`) and opens a
/// framed stream.
pub async fn open(
    ep: &quinn::Endpoint,
    node: &Node,
    peer: PeerName,
    max_bytes: u64,
    timeout: Duration,
) -> Result<(quinn::Connection, FrameSend, FrameRecv)> {
    let addr = resolve(&node.addr).await?;
    let what = |e: &dyn std::fmt::Display| {
        Error::transport(
            peer,
            format!(
                "cannot reach {} at {}: {e} (is it running, and does its certificate name it?)",
                node.name, node.addr
            ),
        )
    };
    let connecting = ep.connect(addr, &node.name).map_err(|e| what(&e))?;
    let conn = tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| what(&"timed out"))?
        .map_err(|e| match other_version(&e) {
            true => Error::transport(
                peer,
                format!(
                    "{} at {} runs another protocol version than this program ({}): run the \
                     same release on every node of a deployment",
                    node.name,
                    node.addr,
                    String::from_utf8_lossy(crate::net::tls::ALPN)
                ),
            ),
            false => what(&e),
        })?;
    // Within the same limit: a peer that allows no stream (its transport settings) would
    // otherwise hold this wait forever (a review's finding).
    let (s, r) = tokio::time::timeout(timeout, conn.open_bi())
        .await
        .map_err(|_| what(&"timed out opening a stream"))?
        .map_err(|e| what(&e))?;
    let (s, r) = framed(s, r, peer, max_bytes);
    Ok((conn, s, r))
}
