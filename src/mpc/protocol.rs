//! Sans-IO protocol state machines and the driver that connects them to a [`Transport`].
//!
//! An MPC step is a value implementing [`Protocol`]: it is *consumed* by each round's incoming
//! messages and returns either the next state with the payload to broadcast (or one payload per
//! peer, [`Step::SendEach`]), or its output. It
//! never performs I/O, so the same state machine runs over QUIC, over in-memory channels, or in
//! the lock-step simulator [`run_lockstep`] used by tests, and a state that has finished cannot be
//! fed again (it no longer exists).
//!
//! [`Session`] drives state machines over a transport and meters what crosses it: bytes this
//! server sent to other servers, communication rounds, and traffic with the dealer.

use crate::error::{Error, PeerName, Result};
use crate::mpc::channel::Transport;

/// What a protocol state yields after consuming a round.
pub enum Step<P: Protocol> {
    /// Broadcast this payload to every other server, then feed the replies to the new state.
    Send(P, Vec<u64>),
    /// Send each other server its own payload (`payloads[p]` to server `p`; this server's slot
    /// is ignored), expecting exactly `expected[p]` words from each, then feed the replies to
    /// the new state (pairwise protocols: OT between every pair of servers).
    SendEach(P, Vec<Vec<u64>>, Vec<usize>),
    /// The protocol finished with this output.
    Done(P::Output),
}

/// A multi-round protocol among the `k` servers, as a state machine over messages.
pub trait Protocol: Sized + Send + 'static {
    /// What the protocol produces for this server.
    type Output: Send + 'static;
    /// The first step (usually computes and sends masked shares).
    fn start(self) -> Result<Step<Self>>;
    /// Consumes one round of messages, indexed by server: this server's own payload included
    /// after a broadcast, an empty slot after a pairwise round.
    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>>;
}

/// Checks that every server's payload has the `expected` length; a wrong length is a protocol
/// violation by that server.
pub fn check_lengths(incoming: &[Vec<u64>], expected: usize, what: &str) -> Result<()> {
    for (i, p) in incoming.iter().enumerate() {
        if p.len() != expected {
            return Err(Error::protocol(
                PeerName::Server(i),
                format!("{what}: expected {expected} words, received {}", p.len()),
            ));
        }
    }
    Ok(())
}

/// Reconstructs an arithmetic opening: the wrapping sum of all servers' payloads, summed into
/// the first one in place, each other payload freed once added (a large opening needs no buffer
/// beyond the payloads it received).
pub fn open_sum(incoming: Vec<Vec<u64>>) -> Vec<u64> {
    let mut parts = incoming.into_iter();
    let mut out = parts.next().unwrap_or_default();
    for p in parts {
        crate::mpc::ring::add_assign(&mut out, &p);
    }
    out
}

/// Reconstructs a boolean opening: the XOR of all servers' payloads.
pub fn open_xor(incoming: &[Vec<u64>]) -> Vec<u64> {
    let len = incoming.first().map_or(0, Vec::len);
    let mut out = vec![0u64; len];
    for p in incoming {
        crate::mpc::ring::xor_assign(&mut out, p);
    }
    out
}

/// Traffic and round counters of one server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes this server sent to other compute servers.
    pub bytes_sent: u64,
    /// Communication rounds among the servers.
    pub rounds: u64,
    /// Bytes this server sent to the dealer (requests).
    pub bytes_to_dealer: u64,
    /// Bytes this server received from the dealer (seeds and corrections).
    pub bytes_from_dealer: u64,
}

impl std::ops::Sub for Stats {
    type Output = Stats;
    fn sub(self, o: Stats) -> Stats {
        Stats {
            bytes_sent: self.bytes_sent - o.bytes_sent,
            rounds: self.rounds - o.rounds,
            bytes_to_dealer: self.bytes_to_dealer - o.bytes_to_dealer,
            bytes_from_dealer: self.bytes_from_dealer - o.bytes_from_dealer,
        }
    }
}

/// A server's end of a job: a transport plus counters.
pub struct Session<T: Transport> {
    transport: T,
    stats: Stats,
}

impl<T: Transport> Session<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        Session {
            transport,
            stats: Stats::default(),
        }
    }

    /// This server's index.
    pub fn me(&self) -> usize {
        self.transport.me()
    }

    /// Number of compute servers.
    pub fn servers(&self) -> usize {
        self.transport.servers()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// One metered broadcast round.
    pub async fn exchange(&mut self, payload: Vec<u64>) -> Result<Vec<Vec<u64>>> {
        let peers = (self.servers() - 1) as u64;
        self.stats.bytes_sent += 8 * payload.len() as u64 * peers;
        self.stats.rounds += 1;
        self.transport.exchange(payload).await
    }

    /// One metered round of a payload per peer ([`Transport::exchange_each`]).
    pub async fn exchange_each(
        &mut self,
        payloads: Vec<Vec<u64>>,
        expected: Vec<usize>,
    ) -> Result<Vec<Vec<u64>>> {
        let me = self.me();
        let k = self.servers();
        if payloads.len() != k || expected.len() != k {
            return Err(Error::invalid(format!(
                "a pairwise round needs a payload and an expected length per server ({k}), got {} and {}",
                payloads.len(),
                expected.len()
            )));
        }
        let sent: usize = (payloads.iter().enumerate())
            .filter(|&(p, _)| p != me)
            .map(|(_, m)| m.len())
            .sum();
        self.stats.bytes_sent += 8 * sent as u64;
        self.stats.rounds += 1;
        self.transport.exchange_each(payloads, expected).await
    }

    /// Sends a metered message to the dealer.
    pub async fn send_dealer(&mut self, payload: Vec<u64>) -> Result<()> {
        self.stats.bytes_to_dealer += 8 * payload.len() as u64;
        self.transport.send_dealer(payload).await
    }

    /// Receives a metered message of exactly `expected` words from the dealer.
    pub async fn recv_dealer(&mut self, expected: usize) -> Result<Vec<u64>> {
        let m = self.transport.recv_dealer(expected).await?;
        self.stats.bytes_from_dealer += 8 * m.len() as u64;
        Ok(m)
    }

    /// Runs a protocol to completion. State transitions run on tokio's blocking pool so that
    /// heavy local computation does not stall the network tasks of the same process.
    pub async fn run<P: Protocol>(&mut self, p: P) -> Result<P::Output> {
        let mut step = blocking(move || p.start()).await?;
        loop {
            match step {
                Step::Done(out) => return Ok(out),
                Step::SendEach(p, msgs, expected) => {
                    let incoming = self.exchange_each(msgs, expected).await?;
                    step = blocking(move || p.receive(incoming)).await?;
                }
                Step::Send(p, msg) => {
                    let incoming = self.exchange(msg).await?;
                    step = blocking(move || p.receive(incoming)).await?;
                }
            }
        }
    }

    /// Gives back the transport (for closing it).
    pub fn into_transport(self) -> T {
        self.transport
    }
}

/// Runs `f` on tokio's blocking pool.
pub async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Runs CPU-heavy work from async code without stalling the runtime's other tasks: on a
/// multi-thread runtime the worker hands its other tasks (the connections' drivers and their
/// keep-alives, other jobs, progress) to another thread meanwhile. Unlike [`blocking`], `f` may
/// borrow. A worker that computes for seconds without this can hold a connection's driver in
/// its queue past the peers' idle timeout: at 10^6 rows per side a job lost its server link
/// that way (work over every candidate slot takes seconds there).
pub fn cpu_bound<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs one state machine per server in lock step, delivering messages directly: the whole
/// protocol with no transport and no runtime; like the transports, it refuses an exchange
/// whose payloads differ in length. Returns each server's output and the number of
/// rounds.
pub fn run_lockstep<P: Protocol>(parties: Vec<P>) -> Result<(Vec<P::Output>, usize)> {
    let k = parties.len();
    let mut steps: Vec<Step<P>> = parties
        .into_iter()
        .map(Protocol::start)
        .collect::<Result<_>>()?;
    let mut rounds = 0;
    loop {
        if steps.iter().all(|s| matches!(s, Step::Done(_))) {
            let outs = steps
                .into_iter()
                .map(|s| match s {
                    Step::Done(o) => o,
                    Step::Send(..) | Step::SendEach(..) => unreachable!("checked above"),
                })
                .collect();
            return Ok((outs, rounds));
        }
        let mut states = Vec::with_capacity(k);
        let mut msgs = Vec::with_capacity(k);
        let mut each = Vec::with_capacity(k);
        for (i, s) in steps.into_iter().enumerate() {
            match s {
                Step::Send(p, m) => {
                    states.push(p);
                    msgs.push(m);
                }
                Step::SendEach(p, m, expected) => {
                    if m.len() != k || expected.len() != k {
                        return Err(Error::invalid(format!(
                            "server {i}: a pairwise round needs a payload and an expected length per server"
                        )));
                    }
                    states.push(p);
                    each.push((m, expected));
                }
                Step::Done(_) => {
                    return Err(Error::protocol(
                        PeerName::Server(i),
                        "finished while other servers continue",
                    ));
                }
            }
        }
        if !each.is_empty() {
            if each.len() != k {
                return Err(Error::invalid(
                    "servers disagree on the kind of round (broadcast or pairwise)",
                ));
            }
            // Server `t` receives `each[f].0[t]` from every `f`, of exactly `each[t].1[f]` words.
            let mut incoming: Vec<Vec<Vec<u64>>> = (0..k).map(|_| Vec::with_capacity(k)).collect();
            for (f, (payloads, _)) in each.iter_mut().enumerate() {
                for (t, inc) in incoming.iter_mut().enumerate() {
                    inc.push(if t == f {
                        Vec::new()
                    } else {
                        std::mem::take(&mut payloads[t])
                    });
                }
            }
            for (t, inc) in incoming.iter().enumerate() {
                for (f, m) in inc.iter().enumerate() {
                    if f != t && m.len() != each[t].1[f] {
                        return Err(Error::protocol(
                            PeerName::Server(f),
                            format!("payload of {} words, expected {}", m.len(), each[t].1[f]),
                        ));
                    }
                }
            }
            rounds += 1;
            steps = states
                .into_iter()
                .zip(incoming)
                .map(|(p, inc)| p.receive(inc))
                .collect::<Result<_>>()?;
            continue;
        }
        // Transports deliver one payload length per exchange (a peer's payload of another
        // length is refused): so does the simulator.
        if let Some(i) = msgs.iter().position(|m| m.len() != msgs[0].len()) {
            return Err(Error::protocol(
                PeerName::Server(i),
                format!(
                    "payload of {} words where server 0 sent {}",
                    msgs[i].len(),
                    msgs[0].len()
                ),
            ));
        }
        rounds += 1;
        steps = states
            .into_iter()
            .map(|p| p.receive(msgs.clone()))
            .collect::<Result<_>>()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends one payload of its length, then finishes.
    struct Once(usize);

    impl Protocol for Once {
        type Output = ();
        fn start(self) -> Result<Step<Self>> {
            let n = self.0;
            Ok(Step::Send(self, vec![0; n]))
        }
        fn receive(self, _: Vec<Vec<u64>>) -> Result<Step<Self>> {
            Ok(Step::Done(()))
        }
    }

    /// Sends every peer `p` a payload of `p + 1` words, expecting `me + 1` from each.
    struct Pairwise(usize, usize);

    impl Protocol for Pairwise {
        type Output = Vec<usize>;
        fn start(self) -> Result<Step<Self>> {
            let Pairwise(me, k) = self;
            let msgs = (0..k).map(|p| vec![me as u64; p + 1]).collect();
            Ok(Step::SendEach(self, msgs, vec![me + 1; k]))
        }
        fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
            Ok(Step::Done(
                incoming
                    .iter()
                    .map(|m| m.first().map_or(99, |&w| w as usize))
                    .collect(),
            ))
        }
    }

    #[test]
    fn pairwise_rounds_deliver_each_peer_its_own_payload() {
        let (outs, rounds) = run_lockstep((0..3).map(|me| Pairwise(me, 3)).collect()).unwrap();
        assert_eq!(rounds, 1);
        // Server t got from f the words `f`, and nothing from itself.
        assert_eq!(outs[1], vec![0, 99, 2]);
        assert_eq!(outs[2], vec![0, 1, 99]);
    }

    /// Sends server `p` `p + 1` words and expects `want` words from every peer.
    struct Expects(usize, usize);

    impl Protocol for Expects {
        type Output = ();
        fn start(self) -> Result<Step<Self>> {
            let Expects(k, want) = self;
            let msgs = (0..k).map(|p| vec![0; p + 1]).collect();
            Ok(Step::SendEach(self, msgs, vec![want; k]))
        }
        fn receive(self, _: Vec<Vec<u64>>) -> Result<Step<Self>> {
            Ok(Step::Done(()))
        }
    }

    /// A peer's pairwise message of another length than expected is refused naming the peer,
    /// by the simulator and by the in-memory transport; so are mixed broadcast and pairwise
    /// rounds.
    #[test]
    fn pairwise_rounds_refuse_unexpected_lengths_and_mixed_rounds() {
        // Each server f sends server t `t + 1` words: server 1 expecting 5 is refused them.
        let parties = vec![Expects(3, 1), Expects(3, 5), Expects(3, 3)];
        let e = run_lockstep(parties).unwrap_err().to_string();
        assert!(e.contains("server") && e.contains("expected"), "{e}");
        let e = format!("{}", run_lockstep_mixed().unwrap_err());
        assert!(e.contains("broadcast or pairwise"), "{e}");
        let rt = crate::mpc::local::runtime().unwrap();
        let e = rt.block_on(async {
            let mut ts = crate::mpc::channel::memory_network(2).0.into_iter();
            let (mut t0, mut t1) = (ts.next().unwrap(), ts.next().unwrap());
            let other = tokio::spawn(async move {
                t1.exchange_each(vec![vec![7; 3], vec![]], vec![0, 0]).await
            });
            let r = t0.exchange_each(vec![vec![], vec![1]], vec![0, 2]).await;
            let _ = other.await;
            r.unwrap_err().to_string()
        });
        assert!(
            e.contains("server 1") && e.contains("3 words, expected 2"),
            "{e}"
        );
    }

    fn run_lockstep_mixed() -> Result<((), ())> {
        enum Either {
            B(Once),
            P(Expects),
        }
        impl Protocol for Either {
            type Output = ();
            fn start(self) -> Result<Step<Self>> {
                Ok(match self {
                    Either::B(o) => match o.start()? {
                        Step::Send(p, m) => Step::Send(Either::B(p), m),
                        _ => unreachable!("a broadcast"),
                    },
                    Either::P(o) => match o.start()? {
                        Step::SendEach(p, m, e) => Step::SendEach(Either::P(p), m, e),
                        _ => unreachable!("a pairwise round"),
                    },
                })
            }
            fn receive(self, _: Vec<Vec<u64>>) -> Result<Step<Self>> {
                Ok(Step::Done(()))
            }
        }
        run_lockstep(vec![Either::B(Once(1)), Either::P(Expects(2, 1))]).map(|_| ((), ()))
    }

    #[test]
    fn the_simulator_refuses_payloads_of_unequal_length() {
        assert_eq!(run_lockstep(vec![Once(2), Once(2)]).unwrap().1, 1);
        let e = run_lockstep(vec![Once(2), Once(2), Once(3)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("server 2") && e.contains("3 words"), "{e}");
    }
}
