//! QUIC implementations of the protocol transports. One bidirectional stream per pair of
//! servers and per server-dealer pair, per job; protocol code is unchanged.

use crate::error::{Error, Result};
use crate::mpc::channel::{DealerTransport, Transport};
use crate::net::wire::{FrameRecv, FrameSend};
use futures::future::try_join_all;

/// Per-peer send and receive halves of `peers`, which must hold a link to every peer but
/// `me` (`what`: "server" or "worker", for the error).
type Halves = (Vec<Option<FrameSend>>, Vec<Option<FrameRecv>>);
fn split_links(
    me: usize,
    peers: Vec<Option<(FrameSend, FrameRecv)>>,
    what: &str,
) -> Result<Halves> {
    if me >= peers.len()
        || peers
            .iter()
            .enumerate()
            .any(|(j, p)| p.is_some() == (j == me))
    {
        return Err(Error::invalid(format!(
            "every other {what} needs exactly one link"
        )));
    }
    Ok(peers
        .into_iter()
        .map(|p| p.map_or((None, None), |(s, r)| (Some(s), Some(r))))
        .unzip())
}

/// A compute server's links for one job.
pub struct QuicTransport {
    me: usize,
    k: usize,
    sends: Vec<Option<FrameSend>>,
    recvs: Vec<Option<FrameRecv>>,
    dealer: Option<(FrameSend, FrameRecv)>,
}

fn no_dealer() -> Error {
    Error::invalid("this job has no dealer (a dealer-free correlation source)")
}

impl QuicTransport {
    /// Assembles the links: `peers[j]` is the stream to server `j` (`None` for this server),
    /// `dealer` the dealer's (`None` in a dealer-free job).
    pub fn new(
        me: usize,
        peers: Vec<Option<(FrameSend, FrameRecv)>>,
        dealer: Option<(FrameSend, FrameRecv)>,
    ) -> Result<Self> {
        let k = peers.len();
        let (sends, recvs) = split_links(me, peers, "server")?;
        Ok(QuicTransport {
            me,
            k,
            sends,
            recvs,
            dealer,
        })
    }
}

impl QuicTransport {
    /// A refusal the dealer sent on this server's link, if one arrives within `wait` (after a
    /// failure, to report the dealer's reason rather than its consequence).
    pub async fn dealer_refusal(&mut self, wait: std::time::Duration) -> Option<Error> {
        let (_, recv) = self.dealer.as_mut()?;
        match tokio::time::timeout(wait, recv.words_exact(0)).await {
            Ok(Err(e @ Error::Refused { .. })) => Some(e),
            _ => None,
        }
    }

    /// Finishes every stream of the job and waits until the peers have received everything.
    pub async fn shutdown(mut self) {
        let peers = self.sends.iter_mut().flatten().map(|s| s.finish());
        let dealer = self.dealer.as_mut().map(|d| d.0.finish());
        futures::future::join(
            futures::future::join_all(peers),
            futures::future::OptionFuture::from(dealer),
        )
        .await;
    }
}

impl Transport for QuicTransport {
    fn me(&self) -> usize {
        self.me
    }

    fn servers(&self) -> usize {
        self.k
    }

    async fn exchange(&mut self, payload: Vec<u64>) -> Result<Vec<Vec<u64>>> {
        // Send to and receive from every peer concurrently, so flow control never deadlocks.
        let sends = try_join_all(self.sends.iter_mut().flatten().map(|s| s.words(&payload)));
        // Every round is symmetric: each peer's message has the length of this server's own.
        let n = payload.len();
        let recvs = try_join_all(self.recvs.iter_mut().flatten().map(|r| r.words_exact(n)));
        let (_, got) = futures::future::try_join(sends, recvs).await?;
        let mut got = got.into_iter();
        let mut out = Vec::with_capacity(self.k);
        for j in 0..self.k {
            out.push(if j == self.me {
                Vec::new()
            } else {
                got.next().expect("one message per peer")
            });
        }
        out[self.me] = payload;
        Ok(out)
    }

    async fn exchange_each(
        &mut self,
        payloads: Vec<Vec<u64>>,
        expected: Vec<usize>,
    ) -> Result<Vec<Vec<u64>>> {
        // Send to and receive from every peer concurrently, so flow control never deadlocks.
        let sends = try_join_all(
            (self.sends.iter_mut().zip(&payloads))
                .filter_map(|(s, m)| s.as_mut().map(|s| s.words(m))),
        );
        let recvs = try_join_all(
            (self.recvs.iter_mut().zip(&expected))
                .filter_map(|(r, &n)| r.as_mut().map(|r| r.words_exact(n))),
        );
        let (_, got) = futures::future::try_join(sends, recvs).await?;
        let mut got = got.into_iter();
        Ok((0..self.k)
            .map(|j| {
                if j == self.me {
                    Vec::new()
                } else {
                    got.next().expect("one message per peer")
                }
            })
            .collect())
    }

    async fn send_dealer(&mut self, payload: Vec<u64>) -> Result<()> {
        self.dealer
            .as_mut()
            .ok_or_else(no_dealer)?
            .0
            .words(&payload)
            .await
    }

    async fn recv_dealer(&mut self, expected: usize) -> Result<Vec<u64>> {
        self.dealer
            .as_mut()
            .ok_or_else(no_dealer)?
            .1
            .words_exact(expected)
            .await
    }
}

/// The dealer's links for one job, by server index.
pub struct QuicDealer {
    links: Vec<(FrameSend, FrameRecv)>,
}

impl QuicDealer {
    /// Assembles the links (`links[i]` to server `i`).
    pub fn new(links: Vec<(FrameSend, FrameRecv)>) -> Self {
        QuicDealer { links }
    }
}

impl DealerTransport for QuicDealer {
    fn servers(&self) -> usize {
        self.links.len()
    }

    async fn send(&mut self, to: usize, payload: Vec<u64>) -> Result<()> {
        self.links[to].0.words(&payload).await
    }

    async fn recv(&mut self, from: usize, max_words: usize) -> Result<Option<Vec<u64>>> {
        // The last server finishing its stream ends the job's dealer session.
        self.links[from].1.next_words(max_words).await
    }

    async fn refuse(&mut self, why: &str) {
        let all = self.links.iter_mut().map(|(s, _)| s.refuse(why));
        futures::future::join_all(all).await;
    }
}

/// The links among the workers of one logical compute server for one job
/// ([`crate::mpc::mesh`]): one bidirectional stream per pair of workers.
pub struct QuicMesh {
    me: usize,
    sends: Vec<Option<FrameSend>>,
    recvs: Vec<Option<FrameRecv>>,
}

impl QuicMesh {
    /// Assembles the links: `peers[w]` is the stream to worker `w` (`None` for this worker).
    pub fn new(me: usize, peers: Vec<Option<(FrameSend, FrameRecv)>>) -> Result<Self> {
        let (sends, recvs) = split_links(me, peers, "worker")?;
        Ok(QuicMesh { me, sends, recvs })
    }

    /// Finishes every stream and waits until the other workers have received everything.
    pub async fn shutdown(mut self) {
        futures::future::join_all(self.sends.iter_mut().flatten().map(|s| s.finish())).await;
    }
}

impl crate::mpc::mesh::Mesh for QuicMesh {
    fn me(&self) -> usize {
        self.me
    }

    fn workers(&self) -> usize {
        self.sends.len()
    }

    async fn all_to_all(
        &mut self,
        mut payloads: Vec<Vec<u64>>,
        max_words: usize,
    ) -> Result<Vec<Vec<u64>>> {
        if payloads.len() != self.sends.len() {
            return Err(Error::invalid(format!(
                "mesh: {} payloads for {} workers",
                payloads.len(),
                self.sends.len()
            )));
        }
        // Send to and receive from every worker concurrently (flow control cannot deadlock);
        // a peer's announced length is checked against the bound before anything is allocated.
        let sends = try_join_all(
            self.sends
                .iter_mut()
                .zip(&payloads)
                .filter_map(|(s, p)| s.as_mut().map(|s| s.words(p))),
        );
        let recvs = try_join_all(
            self.recvs
                .iter_mut()
                .flatten()
                .map(|r| r.words_max(max_words)),
        );
        let (_, got) = futures::future::try_join(sends, recvs).await?;
        let mut got = got.into_iter();
        for (w, p) in payloads.iter_mut().enumerate() {
            if w != self.me {
                *p = got.next().expect("one message per peer");
            }
        }
        Ok(payloads)
    }
}
