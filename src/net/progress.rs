//! What a party's client reports while a job runs, for a progress display. The library only
//! calls [`PartyProgress::event`]; drawing (bars on a terminal, log lines otherwise) belongs to
//! the `party` program.

use crate::net::registry::Status;

/// One step of a party's job as seen from its client, per server.
#[derive(Debug, Clone, Copy)]
pub enum PartyEvent<'a> {
    /// Upload to `server` under way: `sent` of about `total` bytes (QUIC payload and framing;
    /// reported a few times a second).
    Uploading {
        /// Server name.
        server: &'a str,
        /// Bytes sent so far.
        sent: u64,
        /// Bytes to send (an estimate: the encoded upload).
        total: u64,
    },
    /// The upload to `server` is complete.
    Uploaded {
        /// Server name.
        server: &'a str,
        /// Its address.
        addr: &'a str,
    },
    /// `server` says where the job stands (phase, who it waits for, computation step).
    Status {
        /// Server name.
        server: &'a str,
        /// What it said.
        status: &'a Status,
    },
    /// Results from `server` arriving: `received` of `total` bytes.
    Downloading {
        /// Server name.
        server: &'a str,
        /// Bytes received so far.
        received: u64,
        /// Bytes expected.
        total: u64,
    },
    /// All of `server`'s result shares are in.
    Received {
        /// Server name.
        server: &'a str,
    },
}

impl PartyEvent<'_> {
    /// The server the event is about.
    pub fn server(&self) -> &str {
        match self {
            PartyEvent::Uploading { server, .. }
            | PartyEvent::Uploaded { server, .. }
            | PartyEvent::Status { server, .. }
            | PartyEvent::Downloading { server, .. }
            | PartyEvent::Received { server } => server,
        }
    }

    /// Byte counts under way (`Uploading`, `Downloading`), which a line-by-line log may thin out.
    pub fn is_transfer(&self) -> bool {
        matches!(
            self,
            PartyEvent::Uploading { .. } | PartyEvent::Downloading { .. }
        )
    }
}

impl std::fmt::Display for PartyEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PartyEvent::Uploading {
                server,
                sent,
                total,
            } => write!(f, "uploading to {server}: {sent} of {total} bytes"),
            PartyEvent::Uploaded { server, addr } => write!(f, "uploaded to {server} ({addr})"),
            PartyEvent::Status { server, status } => write!(f, "{server}: {status}"),
            PartyEvent::Downloading {
                server,
                received,
                total,
            } => write!(
                f,
                "receiving results from {server}: {received} of {total} bytes"
            ),
            PartyEvent::Received { server } => write!(f, "results received from {server}"),
        }
    }
}

/// Receives a party client's progress events (from several tasks at once).
pub trait PartyProgress: Send + Sync {
    /// One event.
    fn event(&self, e: &PartyEvent<'_>);
}

/// Messages only: a callback taking text gets every event but byte counts, as one line each.
pub struct Lines<F>(pub F);

impl<F: Fn(&str) + Send + Sync> PartyProgress for Lines<F> {
    fn event(&self, e: &PartyEvent<'_>) {
        if !e.is_transfer() {
            (self.0)(&e.to_string());
        }
    }
}
