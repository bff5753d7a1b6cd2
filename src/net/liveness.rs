//! How fast a dead peer is noticed, and what a lost connection means.
//!
//! Every node (server, dealer, party) sends a QUIC keep-alive every `keepalive` and drops a
//! connection on which nothing arrived for `idle` (QUIC uses the smaller of the two ends' idle
//! timeouts; the timer restarts at the first packet sent after the last one received, so the
//! bound is `idle` plus at most one `keepalive`). A peer killed mid-job is therefore noticed
//! within 13 s by default (measured: 10.6 s), and the error says whether the peer stopped
//! answering, closed the connection, or refused this node when it connected.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::time::Duration;

/// Keep-alive interval and idle timeout of a node's QUIC connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// A keep-alive packet is sent after this long without traffic.
    pub keepalive: Duration,
    /// A connection on which nothing arrived for this long is dropped as dead.
    pub idle: Duration,
}

/// Default keep-alive interval, seconds.
pub const KEEPALIVE_SECS: u64 = 3;
/// Default idle timeout, seconds: a dead peer is noticed within this bound.
pub const IDLE_TIMEOUT_SECS: u64 = 10;

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            keepalive: Duration::from_secs(KEEPALIVE_SECS),
            idle: Duration::from_secs(IDLE_TIMEOUT_SECS),
        }
    }
}

impl Liveness {
    /// From configured seconds; the keep-alive must be shorter than the idle timeout, or live
    /// but quiet connections would be dropped.
    pub fn from_secs(keepalive_secs: u64, idle_timeout_secs: u64) -> Result<Liveness> {
        if keepalive_secs == 0 || keepalive_secs >= idle_timeout_secs {
            return Err(Error::invalid(format!(
                "keepalive_secs ({keepalive_secs}) must be at least 1 and less than \
                 idle_timeout_secs ({idle_timeout_secs})"
            )));
        }
        if idle_timeout_secs > 3600 {
            return Err(Error::invalid(format!(
                "idle_timeout_secs ({idle_timeout_secs}) must be at most 3600"
            )));
        }
        Ok(Liveness {
            keepalive: Duration::from_secs(keepalive_secs),
            idle: Duration::from_secs(idle_timeout_secs),
        })
    }

    /// QUIC transport settings: these timers, and large flow-control windows for bulk ring data.
    pub(crate) fn transport(&self) -> Arc<quinn::TransportConfig> {
        let mut t = quinn::TransportConfig::default();
        t.keep_alive_interval(Some(self.keepalive));
        // `from_secs` bounds the idle timeout far below QUIC's limit (2^62 ms); the default
        // applies if a caller built an out-of-range value by hand.
        t.max_idle_timeout(
            quinn::IdleTimeout::try_from(self.idle)
                .ok()
                .or(Some(quinn::VarInt::from_u32(10_000).into())),
        );
        t.stream_receive_window((32u32 << 20).into());
        t.receive_window((128u32 << 20).into());
        t.send_window(128 << 20);
        t.max_concurrent_bidi_streams(256u32.into());
        Arc::new(t)
    }
}

/// A party's connection settings: how long to wait for a server to answer a connection, and
/// the liveness timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait for each server to answer a connection.
    pub connect: Duration,
    /// Keep-alive and idle timeout.
    pub liveness: Liveness,
    /// Once one server delivered its results, how long the others may take to deliver theirs
    /// (they finish the same job in lock-step, seconds apart): a server that keeps the party
    /// waiting beyond this (for example with status messages, which keep the connection busy)
    /// fails the party's job, naming it.
    pub results_grace: Duration,
}

/// Default [`Timing::results_grace`], seconds.
pub const RESULTS_GRACE_SECS: u64 = 600;

impl From<Duration> for Timing {
    /// A connect timeout with the default liveness timers and results grace.
    fn from(connect: Duration) -> Timing {
        Timing {
            connect,
            liveness: Liveness::default(),
            results_grace: Duration::from_secs(RESULTS_GRACE_SECS),
        }
    }
}

/// Application close code a server uses when it refuses a peer's identity.
pub(crate) const REFUSED_IDENTITY: u32 = 1;

/// What happened to a connection to `who`, as a sentence for an operator, from the reason the
/// connection ended. `idle` is this node's configured idle timeout, if known.
pub(crate) fn explain(e: &quinn::ConnectionError, who: &str, idle: Option<Duration>) -> String {
    use quinn::ConnectionError as C;
    let bound = match idle {
        Some(idle) => format!("for {} s (the idle timeout)", idle.as_secs()),
        None => "within the idle timeout".to_string(),
    };
    match e {
        C::TimedOut => format!(
            "{who} stopped answering: no packet {bound}; it crashed, was stopped, or the \
             network between us is down (see its log)"
        ),
        C::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(REFUSED_IDENTITY) => {
            format!(
                "{who} refused this node at connection: {} (check that it lists this identity \
                 among its peers, and that this node's certificate names it)",
                String::from_utf8_lossy(&c.reason)
            )
        }
        C::ApplicationClosed(c) => format!(
            "{who} closed the connection ({}); see its log",
            String::from_utf8_lossy(&c.reason)
        ),
        C::ConnectionClosed(c) if crypto_alert(c) => format!(
            "{who} refused this node at connection: TLS {c} (check that this node's \
             certificate comes from the deployment's CA and names its identity)"
        ),
        C::ConnectionClosed(c) => format!("{who} aborted the connection: {c}"),
        C::Reset => format!("{who} lost the connection's state (did it restart?)"),
        C::LocallyClosed => format!("the connection to {who} was closed by this node"),
        other => format!("connection to {who} failed: {other}"),
    }
}

/// Whether a transport close carries a TLS alert (QUIC codes 0x100 to 0x1ff): a handshake or
/// certificate refusal.
fn crypto_alert(c: &quinn::ConnectionClose) -> bool {
    let code = u64::from(c.error_code);
    (0x100..0x200).contains(&code)
}

/// Rewrites a transport failure on `conn` (to the node named `who`) into what happened, when the
/// connection has ended; other errors pass unchanged.
pub(crate) fn lost(e: Error, conn: &quinn::Connection, who: &str, idle: Duration) -> Error {
    match (e, conn.close_reason()) {
        (Error::Transport { peer, .. }, Some(reason)) => {
            Error::transport(peer, explain(&reason, who, Some(idle)))
        }
        (e, _) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_must_be_shorter_than_the_idle_timeout() {
        assert!(Liveness::from_secs(5, 15).is_ok());
        for (k, i) in [(0, 15), (15, 15), (20, 15), (1, 4000)] {
            let e = Liveness::from_secs(k, i).unwrap_err().to_string();
            assert!(e.contains("_secs"), "{e}");
        }
        assert_eq!(
            Liveness::default().idle,
            Duration::from_secs(IDLE_TIMEOUT_SECS)
        );
        const {
            assert!(
                IDLE_TIMEOUT_SECS + KEEPALIVE_SECS <= 15,
                "dead peers are noticed within 15 s"
            )
        };
    }

    #[test]
    fn explanations_say_what_happened() {
        let idle = Duration::from_secs(7);
        let t = explain(&quinn::ConnectionError::TimedOut, "server-1", Some(idle));
        assert!(
            t.contains("server-1 stopped answering") && t.contains("7 s"),
            "{t}"
        );
        let refused = quinn::ConnectionError::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(REFUSED_IDENTITY),
            reason: b"identity not allowed"[..].into(),
        });
        let r = explain(&refused, "server-0", Some(idle));
        assert!(r.contains("refused this node at connection"), "{r}");
        assert!(!r.contains("stopped answering"), "{r}");
    }
}
