//! The links among the worker processes of one logical compute server.
//!
//! A compute server may run as `W` workers, each holding a shard of the job's rows and talking
//! to the *matching* worker of every other server over its own [`Transport`] (and to its own
//! dealer stream). Most steps of a job only touch a row's own candidate slots, so a worker runs
//! them on its shard alone; the few that reach across rows (a candidate's row maximum, the
//! other side's marker of a pair listed both ways, a kept pair's link token) read values that
//! another worker of the *same* server holds. A [`Mesh`] carries those values between the
//! workers of one server: [`all_gather`] (every worker's part to every worker), [`fetch`]
//! (the values at given positions of other workers' vectors, one request and one reply) and
//! [`reduce_scatter`] (every worker's partial sums of the values each other worker owns).
//!
//! What travels on a mesh are this server's own shares (or public values): one server's
//! workers together hold exactly what a single-process server holds, so a mesh reveals nothing
//! to anyone else. The servers' transcript is the same protocol cut into groups (worker `j` of
//! every server forms one); each group opens its part of the values once. With one worker
//! ([`Solo`]) nothing is sent at all.
//! The mesh is part of one operator's deployment (mutually authenticated like every other
//! link); a worker that sends a malformed request or reply is named in the error, never trusted
//! with an out-of-range index.
//!
//! [`Transport`]: crate::mpc::channel::Transport

use crate::error::{Error, PeerName, Result};
use std::future::Future;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// One worker's links to the other workers of its logical server.
pub trait Mesh: Send {
    /// This worker's index, `0..workers()`.
    fn me(&self) -> usize;
    /// Number of workers `W` of the logical server.
    fn workers(&self) -> usize;
    /// Sends `payloads[w]` to every other worker `w` and returns what each sent this worker in
    /// the same round, indexed by worker (this worker's own slot holds `payloads[me]`). Every
    /// worker calls it the same number of times, in the same order. A payload from a peer longer
    /// than `max_words` words is refused (a network mesh checks the announced length before
    /// allocating; the in-memory one after receiving).
    fn all_to_all(
        &mut self,
        payloads: Vec<Vec<u64>>,
        max_words: usize,
    ) -> impl Future<Output = Result<Vec<Vec<u64>>>> + Send;
}

/// The mesh of a server that runs as one process: no peers, nothing sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Solo;

impl Mesh for Solo {
    fn me(&self) -> usize {
        0
    }

    fn workers(&self) -> usize {
        1
    }

    async fn all_to_all(
        &mut self,
        payloads: Vec<Vec<u64>>,
        _max_words: usize,
    ) -> Result<Vec<Vec<u64>>> {
        Ok(payloads)
    }
}

type Tx = UnboundedSender<Vec<u64>>;
type Rx = UnboundedReceiver<Vec<u64>>;

/// A worker's end of an in-memory mesh ([`memory_mesh`]).
pub struct MemoryMesh {
    me: usize,
    to: Vec<Option<Tx>>,
    from: Vec<Option<Rx>>,
    /// Words this worker sent to the others so far.
    sent: u64,
}

impl MemoryMesh {
    /// Words this worker sent to the other workers so far.
    pub fn words_sent(&self) -> u64 {
        self.sent
    }
}

impl std::fmt::Debug for MemoryMesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryMesh(worker {} of {})", self.me, self.to.len())
    }
}

/// `workers` ends of an in-memory mesh, fully connected by unbounded channels. Dropping an end
/// closes its links, which the others see as a transport error.
pub fn memory_mesh(workers: usize) -> Vec<MemoryMesh> {
    let mut to: Vec<Vec<Option<Tx>>> = (0..workers)
        .map(|_| (0..workers).map(|_| None).collect())
        .collect();
    let mut from: Vec<Vec<Option<Rx>>> = (0..workers)
        .map(|_| (0..workers).map(|_| None).collect())
        .collect();
    for (a, row) in to.iter_mut().enumerate() {
        for (b, slot) in row.iter_mut().enumerate() {
            if a != b {
                let (tx, rx) = unbounded_channel();
                *slot = Some(tx);
                from[b][a] = Some(rx);
            }
        }
    }
    to.into_iter()
        .zip(from)
        .enumerate()
        .map(|(me, (to, from))| MemoryMesh {
            me,
            to,
            from,
            sent: 0,
        })
        .collect()
}

impl Mesh for MemoryMesh {
    fn me(&self) -> usize {
        self.me
    }

    fn workers(&self) -> usize {
        self.to.len()
    }

    async fn all_to_all(
        &mut self,
        mut payloads: Vec<Vec<u64>>,
        max_words: usize,
    ) -> Result<Vec<Vec<u64>>> {
        let w = self.workers();
        if payloads.len() != w {
            return Err(Error::invalid(format!(
                "mesh: {} payloads for {w} workers",
                payloads.len()
            )));
        }
        let closed = |peer| Error::transport(PeerName::Worker(peer), "the worker closed its link");
        for (peer, tx) in self.to.iter().enumerate() {
            if let Some(tx) = tx {
                let p = std::mem::take(&mut payloads[peer]);
                self.sent += p.len() as u64;
                tx.send(p).map_err(|_| closed(peer))?;
            }
        }
        for (peer, rx) in self.from.iter_mut().enumerate() {
            if let Some(rx) = rx {
                let got = rx.recv().await.ok_or_else(|| closed(peer))?;
                if got.len() > max_words {
                    return Err(Error::protocol(
                        PeerName::Worker(peer),
                        format!(
                            "mesh message of {} words exceeds the limit of {max_words}",
                            got.len()
                        ),
                    ));
                }
                payloads[peer] = got;
            }
        }
        Ok(payloads)
    }
}

/// Every worker's part, indexed by worker (this worker's own part included, not copied). Every
/// part is at most `max_words` words.
pub async fn all_gather<M: Mesh>(
    mesh: &mut M,
    mine: Vec<u64>,
    max_words: usize,
) -> Result<Vec<Vec<u64>>> {
    let (me, w) = (mesh.me(), mesh.workers());
    if w == 1 {
        return Ok(vec![mine]);
    }
    let mut payloads: Vec<Vec<u64>> = (0..w)
        .map(|p| if p == me { Vec::new() } else { mine.clone() })
        .collect();
    payloads[me] = mine;
    mesh.all_to_all(payloads, max_words).await
}

/// The sum, over every worker, of each worker's `mine` (every worker passes as many values);
/// a worker that sends another number of values is named.
pub async fn all_reduce<M: Mesh>(mesh: &mut M, mine: Vec<u64>) -> Result<Vec<u64>> {
    let len = mine.len();
    let all = all_gather(mesh, mine, len).await?;
    if let Some(j) = all.iter().position(|v| v.len() != len) {
        return Err(Error::protocol(
            PeerName::Worker(j),
            format!("sent {} values to add up, expected {len}", all[j].len()),
        ));
    }
    Ok(crate::mpc::ring::sum_all(
        len,
        all.iter().map(Vec::as_slice),
    ))
}

/// Every worker's partial values of the part each worker owns, added up: `parts[j]` is this
/// worker's partial values of worker `j`'s part; the result is the sum, over all workers, of
/// their partial values of this worker's part. Every worker's part for a given owner has the
/// same length; a worker that sends another length is named.
pub async fn reduce_scatter<M: Mesh>(mesh: &mut M, parts: Vec<Vec<u64>>) -> Result<Vec<u64>> {
    let (me, w) = (mesh.me(), mesh.workers());
    if parts.len() != w {
        return Err(Error::invalid(format!(
            "mesh: {} parts for {w} workers",
            parts.len()
        )));
    }
    let len = parts[me].len();
    let got = if w == 1 {
        parts
    } else {
        mesh.all_to_all(parts, len).await?
    };
    let mut it = got.into_iter().enumerate();
    let mut sum = it.next().map(|(_, v)| v).unwrap_or_default();
    if sum.len() != len {
        return Err(Error::protocol(
            PeerName::Worker(0),
            format!("sent {} partial values, expected {len}", sum.len()),
        ));
    }
    for (j, v) in it {
        if v.len() != len {
            return Err(Error::protocol(
                PeerName::Worker(j),
                format!("sent {} partial values, expected {len}", v.len()),
            ));
        }
        crate::mpc::ring::add_assign(&mut sum, &v);
    }
    Ok(sum)
}

/// Where a value lives: the worker holding it and its position in that worker's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The worker.
    pub worker: u32,
    /// The position in that worker's vector.
    pub index: u32,
}

/// The values at `needed` positions of the workers' vectors (each worker passes its own vector
/// as `owned`), in the order of `needed`. Values this worker holds are read locally; the others
/// cost one request (the positions, to each worker concerned) and one reply (the values). Every
/// worker of the mesh calls it at the same point of the job, whatever it needs (possibly
/// nothing). A worker that asks for more than `max_ask` positions (the caller's bound from the
/// job's sizes) or for a position outside this worker's vector, or replies with another number
/// of values than asked, is a protocol violation named as such.
pub async fn fetch<M: Mesh>(
    mesh: &mut M,
    owned: &[u64],
    needed: &[At],
    max_ask: usize,
) -> Result<Vec<u64>> {
    let (me, w) = (mesh.me(), mesh.workers());
    let mut out = vec![0u64; needed.len()];
    let mut asks: Vec<Vec<u64>> = vec![Vec::new(); w];
    let mut slots: Vec<Vec<u32>> = vec![Vec::new(); w];
    for (i, at) in needed.iter().enumerate() {
        let (peer, index) = (at.worker as usize, at.index as usize);
        if peer >= w {
            return Err(Error::invalid(format!(
                "mesh fetch: no worker {peer} of {w}"
            )));
        }
        if peer == me {
            out[i] = *owned.get(index).ok_or_else(|| {
                Error::invalid(format!(
                    "mesh fetch: position {index} of {} local values",
                    owned.len()
                ))
            })?;
        } else {
            asks[peer].push(index as u64);
            slots[peer].push(i as u32);
        }
    }
    if w == 1 {
        return Ok(out);
    }
    let counts: Vec<usize> = asks.iter().map(Vec::len).collect();
    let requests = mesh.all_to_all(asks, max_ask).await?;
    let mut replies = Vec::with_capacity(w);
    for (peer, req) in requests.into_iter().enumerate() {
        if peer == me {
            replies.push(Vec::new());
            continue;
        }
        let mut vals = Vec::with_capacity(req.len());
        for &ix in &req {
            let v = usize::try_from(ix)
                .ok()
                .and_then(|ix| owned.get(ix))
                .ok_or_else(|| {
                    Error::protocol(
                        PeerName::Worker(peer),
                        format!(
                            "asked for position {ix} of a vector of {} values",
                            owned.len()
                        ),
                    )
                })?;
            vals.push(*v);
        }
        replies.push(vals);
    }
    let got = mesh
        .all_to_all(replies, counts.iter().copied().max().unwrap_or(0))
        .await?;
    for (peer, vals) in got.into_iter().enumerate() {
        if peer == me {
            continue;
        }
        if vals.len() != counts[peer] {
            return Err(Error::protocol(
                PeerName::Worker(peer),
                format!(
                    "replied {} values to a request for {}",
                    vals.len(),
                    counts[peer]
                ),
            ));
        }
        for (v, &i) in vals.into_iter().zip(&slots[peer]) {
            out[i as usize] = v;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::Prg;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Every worker reads values spread over all workers' vectors; each gets exactly what
    /// indexing the concatenation gives, and a one-worker mesh sends nothing.
    #[test]
    fn fetch_reads_the_values_other_workers_hold() {
        let rt = runtime();
        for w in [1usize, 2, 3, 4] {
            let lens: Vec<usize> = (0..w).map(|i| 5 + 3 * i).collect();
            let mut prg = Prg::new(&crate::mpc::prg::Seed([w as u8; 32]), 0);
            let vecs: Vec<Vec<u64>> = lens.iter().map(|&l| prg.vec(l)).collect();
            let mut handles = Vec::new();
            for mut mesh in memory_mesh(w) {
                let vecs = vecs.clone();
                let lens = lens.clone();
                handles.push(rt.spawn(async move {
                    let me = mesh.me();
                    // Worker `me` needs, from every worker, positions in a scrambled order
                    // (some twice), and nothing from worker 0 when it is worker 1.
                    let mut needed = Vec::new();
                    for (peer, &l) in lens.iter().enumerate() {
                        if me == 1 && peer == 0 {
                            continue;
                        }
                        for i in (0..l).rev().chain([0]) {
                            needed.push(At {
                                worker: peer as u32,
                                index: ((i * 7 + me) % l) as u32,
                            });
                        }
                    }
                    let got = fetch(&mut mesh, &vecs[me], &needed, 1000).await.unwrap();
                    let want: Vec<u64> = needed
                        .iter()
                        .map(|a| vecs[a.worker as usize][a.index as usize])
                        .collect();
                    assert_eq!(got, want);
                    let all = all_gather(&mut mesh, vecs[me].clone(), 64).await.unwrap();
                    assert_eq!(all, vecs);
                    let total = all_reduce(&mut mesh, vec![me as u64 + 1; 3]).await.unwrap();
                    assert_eq!(total, vec![(w * (w + 1) / 2) as u64; 3]);
                    // Worker `me`'s partial values of worker j's part: j + 1 values, each
                    // `me * 100 + j`; the sums are over all workers.
                    let parts: Vec<Vec<u64>> =
                        (0..w).map(|j| vec![(me * 100 + j) as u64; j + 1]).collect();
                    let sum = reduce_scatter(&mut mesh, parts).await.unwrap();
                    let want: u64 = (0..w).map(|i| (i * 100 + me) as u64).sum();
                    assert_eq!(sum, vec![want; me + 1]);
                    mesh.words_sent()
                }));
            }
            for h in handles {
                let sent = rt.block_on(h).unwrap();
                assert_eq!(sent == 0, w == 1, "{w} workers");
            }
        }
    }

    /// A worker that asks for a position outside another's vector is named; so is one whose
    /// reply has the wrong length, and a payload over the bound is refused.
    #[test]
    fn a_misbehaving_worker_is_named() {
        let rt = runtime();
        rt.block_on(async {
            let mut m = memory_mesh(2);
            let (mut m1, mut m0) = (m.pop().unwrap(), m.pop().unwrap());
            let liar = tokio::spawn(async move {
                // Asks worker 0 for position 99 of its 4 values.
                m1.all_to_all(vec![vec![99], Vec::new()], 16).await.unwrap();
                m1
            });
            let err = fetch(&mut m0, &[1, 2, 3, 4], &[], 16)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("worker 1") && err.contains("position 99"),
                "{err}"
            );
            let mut m1 = liar.await.unwrap();
            // Worker 1 now replies no value to a request for 1 (a longer reply is over the
            // bound, the next case).
            let liar = tokio::spawn(async move {
                let req = m1
                    .all_to_all(vec![Vec::new(), Vec::new()], 16)
                    .await
                    .unwrap();
                assert_eq!(req[0], vec![0]);
                m1.all_to_all(vec![Vec::new(), Vec::new()], 16)
                    .await
                    .unwrap();
                m1
            });
            let err = fetch(
                &mut m0,
                &[1],
                &[At {
                    worker: 1,
                    index: 0,
                }],
                16,
            )
            .await
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("worker 1") && err.contains("replied 0 values"),
                "{err}"
            );
            let mut m1 = liar.await.unwrap();
            let sender =
                tokio::spawn(
                    async move { m1.all_to_all(vec![vec![0; 100], Vec::new()], 1000).await },
                );
            let err = m0
                .all_to_all(vec![Vec::new(), Vec::new()], 10)
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains("worker 1") && err.contains("exceeds"), "{err}");
            drop(sender);
        });
    }
}
