//! The channel abstraction that protocol code runs over, and its in-memory implementation.
//!
//! Protocols never touch sockets. A compute server sees a [`Transport`]: a broadcast-and-gather
//! operation among the `k` servers (an online round: "send my masked share to every other
//! server, receive theirs"), a pairwise one (an OT round: each peer its own message, of a length
//! it expects) and a link to the dealer. The dealer sees a
//! [`DealerTransport`]. Payloads are vectors of ring elements; bit vectors are packed 64 to a
//! word. QUIC is one implementation (in `net`); [`memory_network`] runs the same protocol code
//! with all servers as tasks of one process, for tests and benchmarks.

use crate::error::{Error, PeerName, Result};
use std::future::Future;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// A compute server's view of the network.
pub trait Transport: Send {
    /// This server's index, `0..servers()`.
    fn me(&self) -> usize;
    /// Number of compute servers `k`.
    fn servers(&self) -> usize;
    /// Sends `payload` to every other server and returns what each sent in the same round,
    /// indexed by server (this server's own slot holds `payload`).
    fn exchange(&mut self, payload: Vec<u64>)
    -> impl Future<Output = Result<Vec<Vec<u64>>>> + Send;
    /// Sends each other server `p` its own `payloads[p]` (this server's slot is ignored) and
    /// returns what each sent this server in the same round, which must be exactly
    /// `expected[p]` words (a longer announcement is refused before anything is allocated;
    /// any other length is an error naming the peer). This server's slot of the result is
    /// empty.
    fn exchange_each(
        &mut self,
        payloads: Vec<Vec<u64>>,
        expected: Vec<usize>,
    ) -> impl Future<Output = Result<Vec<Vec<u64>>>> + Send;
    /// Sends a message to the dealer.
    fn send_dealer(&mut self, payload: Vec<u64>) -> impl Future<Output = Result<()>> + Send;
    /// Receives the next message from the dealer, which must be exactly `expected` words (a
    /// longer announcement is refused before anything is allocated). A refusal from the dealer
    /// is an error carrying its reason.
    fn recv_dealer(&mut self, expected: usize) -> impl Future<Output = Result<Vec<u64>>> + Send;
}

/// The dealer's view of the network: one ordered link to each server.
pub trait DealerTransport: Send {
    /// Number of compute servers `k`.
    fn servers(&self) -> usize;
    /// Sends a message to server `to`.
    fn send(&mut self, to: usize, payload: Vec<u64>) -> impl Future<Output = Result<()>> + Send;
    /// Receives the next message from server `from`, of at most `max_words` words (a longer
    /// announcement is refused before anything is allocated); `Ok(None)` when that server
    /// closed the link.
    fn recv(
        &mut self,
        from: usize,
        max_words: usize,
    ) -> impl Future<Output = Result<Option<Vec<u64>>>> + Send;
    /// Tells every server that the dealer refuses to go on, and why (best effort: a server that
    /// has gone away is skipped).
    fn refuse(&mut self, why: &str) -> impl Future<Output = ()> + Send;
}

type Tx = UnboundedSender<Vec<u64>>;
type Rx = UnboundedReceiver<Vec<u64>>;
/// Dealer to server: material, or a refusal with its reason.
type DTx = UnboundedSender<std::result::Result<Vec<u64>, String>>;
type DRx = UnboundedReceiver<std::result::Result<Vec<u64>, String>>;

/// How a deviating server rewrites what it sends: called, for every exchange, with the round
/// (0 for the first exchange of the transport), the receiving server and the payload about to be
/// sent to it. Attack tests use it to make a server equivocate (send different peers different
/// values) or forge a value; honest runs never set one.
pub type Deviation = Box<dyn FnMut(u64, usize, &mut Vec<u64>) + Send>;

/// A server's end of an in-memory network.
pub struct MemoryTransport {
    me: usize,
    k: usize,
    to_server: Vec<Option<Tx>>,
    from_server: Vec<Option<Rx>>,
    to_dealer: Tx,
    from_dealer: DRx,
    deviation: Option<Deviation>,
    round: u64,
}

impl MemoryTransport {
    /// This server deviates from the protocol as `f` says (see [`Deviation`]).
    pub fn deviating(mut self, f: Deviation) -> Self {
        self.deviation = Some(f);
        self
    }
}

/// The dealer's end of an in-memory network.
pub struct MemoryDealer {
    to_server: Vec<DTx>,
    from_server: Vec<Rx>,
}

/// Builds an in-memory network of `k` servers and a dealer, fully connected by unbounded
/// channels. Dropping an endpoint closes its links, which the peers see as a transport error.
pub fn memory_network(k: usize) -> (Vec<MemoryTransport>, MemoryDealer) {
    let mut txs: Vec<Vec<Option<Tx>>> = (0..k).map(|_| (0..k).map(|_| None).collect()).collect();
    let mut rxs: Vec<Vec<Option<Rx>>> = (0..k).map(|_| (0..k).map(|_| None).collect()).collect();
    for (from, row) in txs.iter_mut().enumerate() {
        for (to, slot) in row.iter_mut().enumerate() {
            if from != to {
                let (tx, rx) = unbounded_channel();
                *slot = Some(tx);
                rxs[to][from] = Some(rx);
            }
        }
    }
    let mut dealer_to = Vec::new();
    let mut dealer_from = Vec::new();
    let mut servers = Vec::new();
    for (me, (to_server, from_server)) in txs.into_iter().zip(rxs).enumerate() {
        let (d_tx, d_rx) = unbounded_channel();
        let (s_tx, s_rx) = unbounded_channel();
        dealer_to.push(d_tx);
        dealer_from.push(s_rx);
        servers.push(MemoryTransport {
            me,
            k,
            to_server,
            from_server,
            to_dealer: s_tx,
            from_dealer: d_rx,
            deviation: None,
            round: 0,
        });
    }
    (
        servers,
        MemoryDealer {
            to_server: dealer_to,
            from_server: dealer_from,
        },
    )
}

fn closed(peer: PeerName) -> Error {
    Error::transport(peer, "the peer closed the connection")
}

impl Transport for MemoryTransport {
    fn me(&self) -> usize {
        self.me
    }

    fn servers(&self) -> usize {
        self.k
    }

    async fn exchange(&mut self, payload: Vec<u64>) -> Result<Vec<Vec<u64>>> {
        for (to, tx) in self.to_server.iter().enumerate() {
            if let Some(tx) = tx {
                let mut sent = payload.clone();
                if let Some(f) = &mut self.deviation {
                    f(self.round, to, &mut sent);
                }
                tx.send(sent).map_err(|_| closed(PeerName::Server(to)))?;
            }
        }
        self.round += 1;
        let mut out = Vec::with_capacity(self.k);
        for from in 0..self.k {
            match &mut self.from_server[from] {
                None => out.push(Vec::new()),
                Some(rx) => {
                    let got = rx.recv().await.ok_or(closed(PeerName::Server(from)))?;
                    // Every round is symmetric, as over QUIC (`words_exact`): a peer's message
                    // of another length is refused, naming it.
                    if got.len() != payload.len() {
                        return Err(Error::wrong_length(
                            PeerName::Server(from),
                            got.len() as u64,
                            payload.len(),
                        ));
                    }
                    out.push(got);
                }
            }
        }
        out[self.me] = payload;
        Ok(out)
    }

    async fn exchange_each(
        &mut self,
        mut payloads: Vec<Vec<u64>>,
        expected: Vec<usize>,
    ) -> Result<Vec<Vec<u64>>> {
        for (to, tx) in self.to_server.iter().enumerate() {
            if let Some(tx) = tx {
                let mut sent = std::mem::take(&mut payloads[to]);
                if let Some(f) = &mut self.deviation {
                    f(self.round, to, &mut sent);
                }
                tx.send(sent).map_err(|_| closed(PeerName::Server(to)))?;
            }
        }
        self.round += 1;
        let mut out = Vec::with_capacity(self.k);
        for (from, (rx, &want)) in self.from_server.iter_mut().zip(&expected).enumerate() {
            match rx {
                None => out.push(Vec::new()),
                Some(rx) => {
                    let m = rx.recv().await.ok_or(closed(PeerName::Server(from)))?;
                    if m.len() != want {
                        return Err(Error::protocol(
                            PeerName::Server(from),
                            format!("message of {} words, expected {want}", m.len()),
                        ));
                    }
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    async fn send_dealer(&mut self, payload: Vec<u64>) -> Result<()> {
        self.to_dealer
            .send(payload)
            .map_err(|_| closed(PeerName::Dealer))
    }

    async fn recv_dealer(&mut self, expected: usize) -> Result<Vec<u64>> {
        match self.from_dealer.recv().await {
            None => Err(closed(PeerName::Dealer)),
            Some(Err(why)) => Err(Error::Refused {
                peer: PeerName::Dealer,
                why,
            }),
            Some(Ok(m)) if m.len() != expected => Err(Error::protocol(
                PeerName::Dealer,
                format!("message of {} words, expected {expected}", m.len()),
            )),
            Some(Ok(m)) => Ok(m),
        }
    }
}

impl DealerTransport for MemoryDealer {
    fn servers(&self) -> usize {
        self.to_server.len()
    }

    async fn send(&mut self, to: usize, payload: Vec<u64>) -> Result<()> {
        self.to_server[to]
            .send(Ok(payload))
            .map_err(|_| closed(PeerName::Server(to)))
    }

    async fn recv(&mut self, from: usize, max_words: usize) -> Result<Option<Vec<u64>>> {
        match self.from_server[from].recv().await {
            Some(m) if m.len() > max_words => Err(Error::protocol(
                PeerName::Server(from),
                format!(
                    "message of {} words exceeds the limit of {max_words}",
                    m.len()
                ),
            )),
            m => Ok(m),
        }
    }

    async fn refuse(&mut self, why: &str) {
        for tx in &self.to_server {
            let _ = tx.send(Err(why.to_string()));
        }
    }
}
