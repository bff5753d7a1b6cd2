//! OT links between every pair of servers, and the framing that carries pairwise messages over a
//! broadcast round.
//!
//! Every ordered pair of servers `(s, t)` holds one IKNP extension with `s` as sender and `t` as
//! receiver, so each server holds, for each peer, an [`ExtSender`] (towards it) and an
//! [`ExtReceiver`] (from it). [`Setup`] builds all of them in two rounds: each server first
//! sends, as base-OT sender of every extension it will receive on, its Ristretto point; then,
//! as extension sender towards every peer, its 128 base-OT choices' points.
//!
//! **Framing.** The servers' transport broadcasts one payload per round and requires every
//! server's payload to have the same length. A pairwise round therefore sends, from server `f`,
//! the sections addressed to every other server in index order, padded with zeros to the
//! longest server's total ([`pack`], [`unpack`]). Section lengths are a public function of the
//! request, so every server knows them. A third server sees sections between two others; they
//! are IKNP columns and OT corrections, pseudorandom to anyone who does not hold that pair's
//! keys, so broadcasting them reveals nothing (the cost is `k - 1` times the bandwidth of
//! point-to-point links when `k > 2`).

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

/// The payload of server `me`: its sections to every other server in index order, padded with
/// zeros to `total` words.
pub(crate) fn pack(me: usize, sections: Vec<Vec<u64>>, total: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(total);
    for (to, s) in sections.into_iter().enumerate() {
        if to != me {
            out.extend(s);
        }
    }
    debug_assert!(out.len() <= total, "sections exceed the round's length");
    out.resize(total, 0);
    out
}

/// The longest server's total over a round in which server `f` sends `len(f, t)` words to `t`.
pub(crate) fn round_total(k: usize, len: &impl Fn(usize, usize) -> usize) -> usize {
    (0..k)
        .map(|f| (0..k).filter(|&t| t != f).map(|t| len(f, t)).sum())
        .max()
        .unwrap_or(0)
}

/// The sections addressed to `me` (empty for `me` itself), checking every payload's length.
pub(crate) fn unpack(
    me: usize,
    incoming: &[Vec<u64>],
    len: &impl Fn(usize, usize) -> usize,
    what: &str,
) -> Result<Vec<Vec<u64>>> {
    let k = incoming.len();
    let total = round_total(k, len);
    let mut out = Vec::with_capacity(k);
    for (f, payload) in incoming.iter().enumerate() {
        if f == me {
            out.push(Vec::new());
            continue;
        }
        if payload.len() != total {
            return Err(Error::protocol(
                PeerName::Server(f),
                format!("{what}: expected {total} words, received {}", payload.len()),
            ));
        }
        let at: usize = (0..me).filter(|&t| t != f).map(|t| len(f, t)).sum();
        out.push(payload[at..at + len(f, me)].to_vec());
    }
    Ok(out)
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

fn point_len(f: usize, t: usize) -> usize {
    if f == t { 0 } else { POINT_WORDS }
}

fn answer_len(f: usize, t: usize) -> usize {
    if f == t { 0 } else { POINT_WORDS * KAPPA }
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
        let total = round_total(k, &point_len);
        Ok(Step::Send(
            Setup::Points { me, base },
            pack(me, sections, total),
        ))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let k = incoming.len();
        match self {
            Setup::Points { me, base } => {
                let got = unpack(me, &incoming, &point_len, "OT setup")?;
                let mut send = Vec::with_capacity(k);
                let mut sections = Vec::with_capacity(k);
                for (p, first) in got.iter().enumerate() {
                    if p == me {
                        send.push(None);
                        sections.push(Vec::new());
                    } else {
                        let (s, m) = extension::sender_setup(first, PeerName::Server(p))?;
                        send.push(Some(s));
                        sections.push(m);
                    }
                }
                let total = round_total(k, &answer_len);
                Ok(Step::Send(
                    Setup::Answers { me, base, send },
                    pack(me, sections, total),
                ))
            }
            Setup::Answers { me, base, send } => {
                let got = unpack(me, &incoming, &answer_len, "OT setup")?;
                let recv = base
                    .into_iter()
                    .zip(&got)
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
    fn sections_travel_to_their_server_only() {
        let k = 3;
        // Server f sends t the words [10 f + t; f + t + 1].
        let len = |f: usize, t: usize| if f == t { 0 } else { f + t + 1 };
        let total = round_total(k, &len);
        let payloads: Vec<Vec<u64>> = (0..k)
            .map(|f| {
                let secs = (0..k)
                    .map(|t| vec![(10 * f + t) as u64; len(f, t)])
                    .collect();
                pack(f, secs, total)
            })
            .collect();
        for me in 0..k {
            let got = unpack(me, &payloads, &len, "test").unwrap();
            for (f, s) in got.iter().enumerate() {
                let want = if f == me {
                    vec![]
                } else {
                    vec![(10 * f + me) as u64; len(f, me)]
                };
                assert_eq!(s, &want, "from {f} to {me}");
            }
        }
        let mut short = payloads.clone();
        short[2].pop();
        let e = unpack(0, &short, &len, "test").unwrap_err().to_string();
        assert!(e.contains("server 2"), "{e}");
    }

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
