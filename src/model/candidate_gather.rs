//! The candidate lists of a job, computed by the servers in parts and gathered.
//!
//! Candidate generation is heavy local work (minutes at 10^6 rows per side), and every list
//! depends only on both whole sides' blocking tokens (which the servers hold in the clear), the
//! blocking parameters and the job seed: so
//! the servers deal the rows among themselves (a list is the same whoever computes it), each
//! computes its part on the blocking pool, so that its process keeps answering its peers
//! (keep-alives) meanwhile, and they gather the parts. With servers split into worker
//! processes, part `s W + j` is worker `j` of server `s`'s: worker `j` gathers its parts of
//! every server from the other servers' worker `j`, then the workers of a server share theirs
//! over its mesh, so that every worker holds every list.
//!
//! Then every server checks that all of them assembled the same lists
//! (`agree_on_candidates`): a server that sent different servers different parts would
//! otherwise make honest servers add shares of different pairs.

use crate::error::{Error, Result};
use crate::model::blocking::{
    BlockingParams, Candidates, Part, Tokens, assemble, candidates_part, per_row,
};
use crate::mpc::channel::Transport;
use crate::mpc::correlated::Correlations;
use crate::mpc::engine::Engine;
use crate::mpc::gather::{Gather, pack_u32, unpack_u32};
use crate::mpc::mesh::Mesh;
use crate::mpc::prg::Seed;
use crate::mpc::protocol::cpu_bound;

/// The job's candidate lists from both sides' tokens (module docs), the same on every server
/// and worker, or an error if a server's or a worker's part was malformed, a link failed, or
/// the servers assembled different lists. `workers` is the number of worker processes of each server (this one is
/// worker `mesh.me()`).
pub(crate) async fn gather_candidates<T: Transport, C: Correlations, M: Mesh>(
    eng: &mut Engine<T, C>,
    mesh: &mut M,
    ta: Tokens,
    tb: Tokens,
    blocking: &BlockingParams,
    seed: &Seed,
    workers: usize,
) -> Result<Candidates> {
    let (na, nb) = (ta.own.len(), tb.own.len());
    let wk = mesh.me();
    debug_assert_eq!(workers, mesh.workers());
    let (bp, sd) = (blocking.clone(), seed.clone());
    let servers = eng.servers();
    // Part `s * W + j` is worker j of server s's: worker j gathers its parts of every
    // server from the other servers' worker j, then its server's workers share theirs.
    let part_of = |s: usize, j: usize| Part {
        part: s * workers + j,
        parts: servers * workers,
    };
    let part = part_of(eng.me(), wk);
    let mine = crate::mpc::protocol::blocking(move || {
        pack_u32(&candidates_part(&ta, &tb, &bp, &sd, part))
    })
    .await;
    let c = per_row(na, nb, blocking);
    let len = |s: usize, j: usize| {
        let part = part_of(s, j);
        (part.len(na) + part.len(nb)) * c
    };
    let words: Vec<usize> = (0..servers).map(|s| len(s, wk).div_ceil(2)).collect();
    let parts = eng.run(Gather::new(eng.me(), mine, words)?).await?;
    let by_worker = if workers == 1 {
        vec![parts]
    } else {
        let max = (na + nb) * c;
        let got = crate::mpc::mesh::all_gather(mesh, parts.concat(), max).await?;
        got.into_iter()
            .enumerate()
            .map(|(j, all)| split_parts(j, all, (0..servers).map(|s| len(s, j).div_ceil(2))))
            .collect::<Result<Vec<_>>>()?
    };
    let cand = cpu_bound(|| {
        let mut parts: Vec<Vec<u32>> = vec![Vec::new(); servers * workers];
        for (j, of_worker) in by_worker.into_iter().enumerate() {
            for (s, w) in of_worker.into_iter().enumerate() {
                parts[s * workers + j] = unpack_u32(&w, len(s, j));
            }
        }
        // Another server's part came from its worker of this worker's index; this
        // server's other parts from its own workers.
        let me = eng.me();
        let by = |p: usize| {
            let (s, j) = (p / workers, p % workers);
            if s == me && j != wk {
                crate::error::PeerName::Worker(j)
            } else {
                crate::error::PeerName::Server(s)
            }
        };
        assemble(na, nb, c, &parts, &by)
    })?;
    agree_on_candidates(eng, &cand).await?;
    Ok(cand)
}

/// Worker `j`'s words of the candidate-list parts of every server (`lens` words each, in
/// server order), split; a wrong total is a protocol violation by that worker.
fn split_parts(
    j: usize,
    all: Vec<u64>,
    lens: impl Iterator<Item = usize> + Clone,
) -> Result<Vec<Vec<u64>>> {
    let total: usize = lens.clone().sum();
    if all.len() != total {
        return Err(Error::protocol(
            crate::error::PeerName::Worker(j),
            format!(
                "sent {} words of candidate lists, expected {total}",
                all.len()
            ),
        ));
    }
    let mut at = 0;
    Ok(lens
        .map(|l| {
            at += l;
            all[at - l..at].to_vec()
        })
        .collect())
}

/// Every server checks that all servers assembled the same candidate lists: one exchange of
/// SHA-256 digests of both sides' lists. A server that sent different servers different parts
/// of the lists (equivocated in the gather) would otherwise make honest servers add shares of
/// different pairs; the dealer's commitment check catches that only for the pair list it is
/// asked for, not for which slot of B's lists points at which pair. With `k = 2` there is no
/// one to equivocate to (a server's forged part is then forged lists, outside the semi-honest
/// model); from `k = 3` on, two honest servers that received different parts see different
/// digests, whatever the liar claims.
async fn agree_on_candidates<T: Transport, C: Correlations>(
    eng: &mut Engine<T, C>,
    cand: &Candidates,
) -> Result<()> {
    use crate::mpc::digest::{sha256, to_words};
    // Half a gigabyte at 10^6 rows per side: off the runtime's workers, like the other work
    // over every slot.
    let mine = cpu_bound(|| {
        let lists = [cand.a.as_slice(), cand.b.as_slice()].map(bytemuck::cast_slice::<u32, u8>);
        to_words(&sha256("ppea candidate lists v1", &lists)).to_vec()
    });
    let servers = eng.servers();
    let all = eng
        .run(crate::mpc::gather::Gather::new(
            eng.me(),
            mine.clone(),
            vec![mine.len(); servers],
        )?)
        .await?;
    if let Some(s) = all.iter().position(|d| *d != mine) {
        return Err(Error::invalid(format!(
            "server {s} assembled other candidate lists than server {} (a server sent \
             different servers different parts of the lists); the job stops before anything \
             is computed on them",
            eng.me()
        )));
    }
    Ok(())
}
