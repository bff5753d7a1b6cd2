//! OT links between every pair of servers.
//!
//! Every ordered pair of servers `(s, t)` holds one silent extension ([`super::silent`]) with
//! `s` as sender and `t` as receiver, so each server holds, for each peer, a [`SilentSender`]
//! (towards it) and a [`SilentReceiver`] (from it), each with a pool of correlated OTs.
//! [`Setup`] builds all of them in four rounds:
//!
//! 1. each server sends, as base-OT sender of every IKNP extension it will receive on, its
//!    Ristretto point;
//! 2. as IKNP sender towards every peer, its 128 base-OT choices' points;
//! 3. as IKNP receiver from every peer, the columns of one batch with random choices (with the
//!    KOS check), the silent extension's first base COTs;
//! 4. as silent sender towards every peer, the iterations that fill the pool to
//!    [`Links::ready`], the largest batch a cross-term round may take.
//!
//! Messages are pairwise ([`Step::SendEach`]): each peer receives only what is addressed to
//! it. The IKNP extensions are dropped after round 3.

use super::extension::{self, ExtReceiver, ExtSender, KAPPA, RecvBatch, receiver_msg_words};
use super::silent::{self, Params, SilentReceiver, SilentSender};
use crate::error::{Error, PeerName, Result};
use crate::mpc::ot::base;
use crate::mpc::prg::Prg;
use crate::mpc::protocol::{Protocol, Step};

/// Words of a base-OT sender's first message (one compressed Ristretto point).
const POINT_WORDS: usize = 4;

/// One server's OT extensions with every peer. `Debug` is redacted (the keys are secret).
pub struct Links {
    me: usize,
    k: usize,
    params: Params,
    ready: usize,
    pub(crate) send: Vec<Option<SilentSender>>,
    pub(crate) recv: Vec<Option<SilentReceiver>>,
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

    /// The silent extensions' parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// COTs every pool holds between two uses of the links: a batch of at most this many can
    /// start at once (the first round of a cross-term protocol, before any refill).
    pub fn ready(&self) -> usize {
        self.ready
    }
}

/// How the links are made (this server, the silent parameters, the pools' floor).
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    me: usize,
    params: Params,
    ready: usize,
}

/// Setup of every pairwise extension, as a state machine: after four rounds it yields the
/// [`Links`].
pub enum Setup {
    /// Not started.
    Start {
        /// How the links are made.
        plan: Plan,
        /// Servers.
        k: usize,
    },
    /// Waiting for every peer's base-OT point (this server is base-OT sender of the
    /// extension it receives on).
    Points {
        /// How the links are made.
        plan: Plan,
        /// Base-OT senders, by peer.
        base: Vec<Option<base::Sender>>,
    },
    /// Waiting for every peer's base-OT answers.
    Answers {
        /// How the links are made.
        plan: Plan,
        /// Base-OT senders, by peer.
        base: Vec<Option<base::Sender>>,
        /// IKNP senders towards each peer.
        send: Vec<Option<ExtSender>>,
    },
    /// Waiting for every peer's IKNP columns of the seeding batch.
    Seeding {
        /// How the links are made.
        plan: Plan,
        /// IKNP senders towards each peer.
        send: Vec<Option<ExtSender>>,
        /// This server's seeding batches as receiver, by peer.
        seeds: Vec<Option<RecvBatch>>,
    },
    /// Waiting for every peer's first silent iterations.
    Filling {
        /// How the links are made.
        plan: Plan,
        /// Silent senders towards each peer.
        send: Vec<Option<SilentSender>>,
        /// This server's seeding batches as receiver, by peer.
        seeds: Vec<Option<RecvBatch>>,
    },
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self {
            Setup::Start { .. } => "start",
            Setup::Points { .. } => "points",
            Setup::Answers { .. } => "answers",
            Setup::Seeding { .. } => "seeding",
            Setup::Filling { .. } => "filling",
        };
        write!(f, "Setup({step}, <redacted>)")
    }
}

impl Setup {
    /// Setup for server `me` of `k`, with the production parameters ([`silent::PARAMS`]) and
    /// pools ready for the cross terms' default chunk.
    pub fn new(me: usize, k: usize) -> Setup {
        Setup::with_params(me, k, silent::PARAMS, 64 * super::cross::DEFAULT_CHUNK)
    }

    /// Setup with parameters `params` and pools of at least `ready` COTs between uses (tests
    /// use small ones).
    pub fn with_params(me: usize, k: usize, params: Params, ready: usize) -> Setup {
        Setup::Start {
            plan: Plan { me, params, ready },
            k,
        }
    }
}

/// Words every peer expects from every other peer (none from itself).
fn expect(me: usize, k: usize, words: usize) -> Vec<usize> {
    (0..k).map(|p| if p == me { 0 } else { words }).collect()
}

impl Protocol for Setup {
    type Output = Links;

    fn start(self) -> Result<Step<Self>> {
        let Setup::Start { plan, k } = self else {
            return Err(Error::invalid("OT setup started twice"));
        };
        plan.params.validate()?;
        if plan.ready < 64 {
            return Err(Error::invalid(
                "OT setup: the pools must keep at least one word of OTs between rounds",
            ));
        }
        let me = plan.me;
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
            Setup::Points { plan, base },
            sections,
            expect(me, k, POINT_WORDS),
        ))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let k = incoming.len();
        match self {
            Setup::Points { plan, base } => {
                let me = plan.me;
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
                    Setup::Answers { plan, base, send },
                    sections,
                    expect(me, k, POINT_WORDS * KAPPA),
                ))
            }
            Setup::Answers { plan, base, send } => {
                let me = plan.me;
                let recv: Vec<Option<ExtReceiver>> = base
                    .into_iter()
                    .zip(&incoming)
                    .enumerate()
                    .map(|(p, (b, msg))| {
                        b.map(|b| extension::receiver_finish(b, msg, PeerName::Server(p)))
                            .transpose()
                    })
                    .collect::<Result<_>>()?;
                // The seeding batch: random choices, the silent receiver's first base COTs.
                let words = silent::boot_words(&plan.params);
                let mut seeds = Vec::with_capacity(k);
                let mut sections = Vec::with_capacity(k);
                for r in recv {
                    match r {
                        None => {
                            seeds.push(None);
                            sections.push(Vec::new());
                        }
                        Some(mut r) => {
                            let (msg, batch) = r.extend(&Prg::fresh().vec(words));
                            seeds.push(Some(batch));
                            sections.push(msg);
                        }
                    }
                }
                Ok(Step::SendEach(
                    Setup::Seeding { plan, send, seeds },
                    sections,
                    expect(me, k, receiver_msg_words(words)),
                ))
            }
            Setup::Seeding { plan, send, seeds } => {
                let me = plan.me;
                let words = silent::boot_words(&plan.params);
                let fill = silent::iterations_for(&plan.params, 0, plan.ready);
                let mut senders = Vec::with_capacity(k);
                let mut sections = Vec::with_capacity(k);
                for (p, (snd, cols)) in send.into_iter().zip(&incoming).enumerate() {
                    match snd {
                        None => {
                            senders.push(None);
                            sections.push(Vec::new());
                        }
                        Some(mut snd) => {
                            let batch = snd.extend(cols, words)?;
                            let mut s = SilentSender::new(plan.params, batch)?;
                            let mut msg = Vec::with_capacity(fill * plan.params.msg_words());
                            for _ in 0..fill {
                                msg.extend(s.iterate());
                            }
                            tracing::debug!(
                                peer = p,
                                cots = s.available(),
                                "silent OT pool filled"
                            );
                            senders.push(Some(s));
                            sections.push(msg);
                        }
                    }
                }
                Ok(Step::SendEach(
                    Setup::Filling {
                        plan,
                        send: senders,
                        seeds,
                    },
                    sections,
                    expect(me, k, fill * plan.params.msg_words()),
                ))
            }
            Setup::Filling { plan, send, seeds } => {
                let mut recv = Vec::with_capacity(k);
                for (seed, msg) in seeds.into_iter().zip(&incoming) {
                    recv.push(match seed {
                        None => None,
                        Some(seed) => {
                            let mut r = SilentReceiver::new(plan.params, seed)?;
                            for m in msg.chunks(plan.params.msg_words()) {
                                r.absorb(m)?;
                            }
                            Some(r)
                        }
                    });
                }
                Ok(Step::Done(Links {
                    me: plan.me,
                    k,
                    params: plan.params,
                    ready: plan.ready,
                    send,
                    recv,
                }))
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
        let small = crate::mpc::ot::silent::tests::SMALL;
        for k in 2..=4 {
            let ready = 3 * small.out() + 1;
            let (links, rounds) = run_lockstep(
                (0..k)
                    .map(|me| Setup::with_params(me, k, small, ready))
                    .collect(),
            )
            .unwrap();
            assert_eq!(rounds, 4);
            let mut links = links;
            // Every extension works: server s sends server t one batch of random OTs.
            for s in 0..k {
                for t in 0..k {
                    if s == t {
                        continue;
                    }
                    // Four iterations filled each pool.
                    assert_eq!(
                        links[s].send[t].as_ref().unwrap().available(),
                        4 * small.out()
                    );
                    let choices = vec![0xdead_beef_u64, 7];
                    let (msg, rb) = links[t].recv[s].as_mut().unwrap().extend(&choices).unwrap();
                    let sb = links[s].send[t]
                        .as_mut()
                        .unwrap()
                        .extend(&msg, 2, PeerName::Server(t))
                        .unwrap();
                    let (got, pairs) = (rb.random(), sb.random());
                    for (i, (g, (x0, x1))) in got.iter().zip(&pairs).enumerate() {
                        let c = choices[i / 64] >> (i % 64) & 1 == 1;
                        assert_eq!(g, if c { x1 } else { x0 }, "{s}->{t} ot {i}");
                    }
                }
            }
            assert!(format!("{:?}", links[0]).contains("redacted"));
        }
        // Pools that could not serve one word of OTs between rounds are refused.
        for ready in [0, 63] {
            assert!(Setup::with_params(0, 2, small, ready).start().is_err());
        }
    }
}
