//! OT links between every pair of servers.
//!
//! Every ordered pair of servers `(s, t)` holds one IKNP extension with `s` as sender and `t` as
//! receiver, so each server holds, for each peer, an [`ExtSender`] (towards it) and an
//! [`ExtReceiver`] (from it). [`Setup`] builds all of them in two rounds: each server first
//! sends, as base-OT sender of every extension it will receive on, its Ristretto point; then,
//! as extension sender towards every peer, its 128 base-OT choices' points. Messages are
//! pairwise ([`Step::SendEach`]): each peer receives only what is addressed to it.

use super::extension::{self, ExtReceiver, ExtSender, KAPPA};
use crate::error::{Error, PeerName, Result};
use crate::mpc::ot::base;
use crate::mpc::protocol::{Protocol, Step};

/// Words of a base-OT sender's first message (one compressed Ristretto point).
const POINT_WORDS: usize = 4;

/// One server's OT extensions with every peer. `Debug` is redacted (the keys are secret).
pub struct Links {
    me: usize,
    k: usize,
    pub(crate) send: Vec<Option<ExtSender>>,
    pub(crate) recv: Vec<Option<ExtReceiver>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Links(me={}, k={}, <redacted>)", self.me, self.k)
    }
}

impl Links {
    /// This server's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of servers.
    pub fn servers(&self) -> usize {
        self.k
    }
}

/// Setup of every pairwise extension, as a state machine: after two rounds it yields the
/// [`Links`].
pub enum Setup {
    /// Not started.
    Start {
        /// This server.
        me: usize,
        /// Servers.
        k: usize,
    },
    /// Waiting for every peer's base-OT point (this server is base-OT sender of the
    /// extension it receives on).
    Points {
        /// This server.
        me: usize,
        /// Base-OT senders, by peer.
        base: Vec<Option<base::Sender>>,
    },
    /// Waiting for every peer's base-OT answers.
    Answers {
        /// This server.
        me: usize,
        /// Base-OT senders, by peer.
        base: Vec<Option<base::Sender>>,
        /// Extension senders towards each peer.
        send: Vec<Option<ExtSender>>,
    },
}

impl Setup {
    /// Setup for server `me` of `k`.
    pub fn new(me: usize, k: usize) -> Setup {
        Setup::Start { me, k }
    }
}

/// Words every peer expects from every other peer (none from itself).
fn expect(me: usize, k: usize, words: usize) -> Vec<usize> {
    (0..k).map(|p| if p == me { 0 } else { words }).collect()
}

impl Protocol for Setup {
    type Output = Links;

    fn start(self) -> Result<Step<Self>> {
        let Setup::Start { me, k } = self else {
            return Err(Error::invalid("OT setup started twice"));
        };
        let mut base = Vec::with_capacity(k);
        let mut sections = Vec::with_capacity(k);
        for p in 0..k {
            if p == me {
                base.push(None);
                sections.push(Vec::new());
            } else {
                let (b, m) = extension::receiver_setup(PeerName::Server(p));
                base.push(Some(b));
                sections.push(m);
            }
        }
        Ok(Step::SendEach(
            Setup::Points { me, base },
            sections,
            expect(me, k, POINT_WORDS),
        ))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let k = incoming.len();
        match self {
            Setup::Points { me, base } => {
                let mut send = Vec::with_capacity(k);
                let mut sections = Vec::with_capacity(k);
                for (p, first) in incoming.iter().enumerate() {
                    if p == me {
                        send.push(None);
                        sections.push(Vec::new());
                    } else {
                        let (s, m) = extension::sender_setup(first, PeerName::Server(p))?;
                        send.push(Some(s));
                        sections.push(m);
                    }
                }
                Ok(Step::SendEach(
                    Setup::Answers { me, base, send },
                    sections,
                    expect(me, k, POINT_WORDS * KAPPA),
                ))
            }
            Setup::Answers { me, base, send } => {
                let recv = base
                    .into_iter()
                    .zip(&incoming)
                    .enumerate()
                    .map(|(p, (b, msg))| {
                        b.map(|b| extension::receiver_finish(b, msg, PeerName::Server(p)))
                            .transpose()
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(Step::Done(Links { me, k, send, recv }))
            }
            Setup::Start { .. } => Err(Error::invalid("OT setup received before it started")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::protocol::run_lockstep;

    #[test]
    fn setup_links_every_ordered_pair() {
        for k in 2..=4 {
            let (links, rounds) =
                run_lockstep((0..k).map(|me| Setup::new(me, k)).collect()).unwrap();
            assert_eq!(rounds, 2);
            let mut links = links;
            // Every extension works: server s sends server t one batch of random OTs.
            for s in 0..k {
                for t in 0..k {
                    if s == t {
                        continue;
                    }
                    let choices = vec![0xdead_beef_u64, 7];
                    let (msg, rb) = links[t].recv[s].as_mut().unwrap().extend(&choices);
                    let sb = links[s].send[t].as_mut().unwrap().extend(&msg, 2).unwrap();
                    let (got, pairs) = (rb.random(), sb.random());
                    for (i, (g, (x0, x1))) in got.iter().zip(&pairs).enumerate() {
                        let c = choices[i / 64] >> (i % 64) & 1 == 1;
                        assert_eq!(g, if c { x1 } else { x0 }, "{s}->{t} ot {i}");
                    }
                }
            }
            assert!(format!("{:?}", links[0]).contains("redacted"));
        }
    }
}
