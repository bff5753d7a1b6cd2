//! The upload wire format: how a party's share (a seed or explicit words) and its keyed tokens
//! travel on its stream to a server, and how the server reads them back with the sizes it
//! expects.

use crate::error::{Error, PeerName, Result};
use crate::model::align::PartyData;
use crate::model::blocking::{MAX_TOKENS_PER_ROW, Tokens};
use crate::mpc::digest::sha256;
use crate::mpc::prg::Seed;
use crate::mpc::protocol::cpu_bound;
use crate::mpc::row_share::{RowShare, Spill};
use crate::mpc::share::{ShareMsg, to_last_share};
use crate::net::job::Digest;
use crate::net::wire::{FrameRecv, FrameSend};
use serde::{Deserialize, Serialize};

/// How a share travels (the control frame before it). No `Debug`: the seed is secret.
#[derive(Clone, Serialize, Deserialize)]
pub enum ShareHead {
    /// Expand this seed into this many words.
    Seed([u8; 32], u64),
    /// A data frame of this many words follows.
    Explicit(u64),
}

pub(crate) async fn send_share(s: &mut FrameSend, m: &ShareMsg) -> Result<()> {
    match m {
        ShareMsg::Seed { seed, len } => s.control(&ShareHead::Seed(seed.0, *len as u64)).await,
        ShareMsg::Explicit(v) => {
            s.control(&ShareHead::Explicit(v.len() as u64)).await?;
            s.words(v).await
        }
    }
}

/// Sends the last server's share of a party's `z` (`x - sum_s PRG(seed_s)` for the other
/// servers' `seeds`) as an explicit share, computing it a block of rows at a time from `data`
/// (the rows themselves are computed there when the party streams them): the same frames as
/// [`send_share`] of the whole correction, without holding it.
pub(crate) async fn send_last_share(
    s: &mut FrameSend,
    data: &PartyData,
    seeds: &[Seed],
) -> Result<()> {
    let (len, w) = (data.z_words(), data.width.max(1));
    s.control(&ShareHead::Explicit(len as u64)).await?;
    // At most 8 MiB per block, and about 8 blocks when that is less, so that every upload of
    // more than one row (every test too) crosses block boundaries.
    let rows = data
        .rows
        .len()
        .div_ceil(8)
        .clamp(1, (LAST_SHARE_BLOCK_WORDS / w).max(1));
    let block = w * rows;
    s.words_with(len, block, |at, out| {
        cpu_bound(|| {
            data.z_rows(at / w, out)?;
            to_last_share(seeds, at, out);
            Ok(())
        })
    })
    .await
}

/// Words of the last server's share computed per block while it is sent (8 MiB).
const LAST_SHARE_BLOCK_WORDS: usize = 1 << 20;

pub(crate) async fn recv_share(
    r: &mut FrameRecv,
    expected: usize,
    peer: PeerName,
) -> Result<Vec<u64>> {
    let v = match r.control::<ShareHead>().await? {
        ShareHead::Seed(seed, len) if len as usize == expected => ShareMsg::Seed {
            seed: Seed(seed),
            len: expected,
        }
        .expand()
        .into_inner(),
        ShareHead::Explicit(len) if len as usize == expected => r.words_exact(expected).await?,
        _ => {
            return Err(Error::protocol(
                peer,
                format!("share of the wrong size (expected {expected} words)"),
            ));
        }
    };
    if v.len() != expected {
        return Err(Error::protocol(
            peer,
            format!("share has {} words, expected {expected}", v.len()),
        ));
    }
    Ok(v)
}

/// Where a server keeps the explicit upload shares too large to hold
/// ([`crate::mpc::row_share`]): shares of more than `above` bytes are written to a file in
/// `dir` as they arrive, up to `max` bytes each.
#[derive(Debug, Clone)]
pub(crate) struct SpillPolicy {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) above: u64,
    pub(crate) max: u64,
}

/// Receives a share of a `rows x d` matrix as the server keeps it: a seed stays a stream; an
/// explicit share (only the job's `last` server receives one: the others book no memory for
/// it) is held, or, when `spill` says it is too large, written to a spill file a block of rows
/// at a time as it arrives (never held whole).
pub(crate) async fn recv_rows(
    r: &mut FrameRecv,
    [rows, d]: [usize; 2],
    last: bool,
    peer: PeerName,
    spill: Option<&SpillPolicy>,
) -> Result<RowShare> {
    let expected = rows * d;
    let bytes = 8 * expected as u64;
    match r.control::<ShareHead>().await? {
        ShareHead::Explicit(_) if !last => Err(Error::protocol(
            peer,
            "an explicit share of the rows goes to the job's last server only",
        )),
        ShareHead::Seed(seed, len) if len as usize == expected => Ok(ShareMsg::Seed {
            seed: Seed(seed),
            len: expected,
        }
        .into_rows()),
        ShareHead::Explicit(len) if len as usize == expected => match spill {
            Some(sp) if bytes > sp.above => {
                if bytes > sp.max {
                    return Err(Error::protocol(
                        peer,
                        format!(
                            "a share of {} MiB exceeds this server's spill limit \
                             (limits.spill_max_gib)",
                            bytes >> 20
                        ),
                    ));
                }
                let file = Spill::create(&sp.dir, rows, d).map_err(|e| {
                    // The path stays in this server's log; the party hears what to ask for.
                    tracing::error!("{e}");
                    Error::invalid(
                        "this server cannot store the upload: its spill directory \
                         (limits.spill_dir) is not usable; its log says why",
                    )
                })?;
                let block = d * (LAST_SHARE_BLOCK_WORDS / d.max(1)).max(1);
                r.words_into(expected, block, sp.max, |at, words| {
                    cpu_bound(|| file.write_rows(at / d, words))
                })
                .await?;
                Ok(RowShare::Spilled(std::sync::Arc::new(file)))
            }
            _ => Ok(RowShare::Held(r.words_exact(expected).await?)),
        },
        _ => Err(Error::protocol(
            peer,
            format!("share of the wrong size (expected {expected} words)"),
        )),
    }
}

/// SHA-256 of the public part of an upload: the row count, whether its party shares partner
/// ids (`share_ids`: the job runs with ids only if both parties opt in, so servers that saw
/// different opt-ins would run different protocols), and every row's keyed tokens.
pub fn upload_digest(tokens: &Tokens, share_ids: bool) -> Digest {
    let mut parts: Vec<Vec<u64>> = vec![vec![tokens.own.len() as u64, u64::from(share_ids)]];
    for list in [&tokens.own, &tokens.neighbour] {
        parts.push(list.iter().map(|t| t.len() as u64).collect());
        parts.push(list.concat());
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| bytemuck::cast_slice(p)).collect();
    Digest(sha256("ppea upload tokens v2", &bytes))
}

pub(crate) async fn send_tokens(s: &mut FrameSend, t: &[Vec<u64>]) -> Result<()> {
    s.words(&t.iter().map(|x| x.len() as u64).collect::<Vec<_>>())
        .await?;
    s.words(&t.concat()).await
}

/// Receives one list of tokens per row (own or neighbour), at most `*left` tokens in all, which
/// it lowers by what it received: an upload cannot send more tokens than it announced (and
/// the server booked) before they are read.
pub(crate) async fn recv_tokens(
    r: &mut FrameRecv,
    rows: usize,
    peer: PeerName,
    left: &mut u64,
) -> Result<Vec<Vec<u64>>> {
    let lens = r.words_exact(rows).await?;
    if let Some(i) = lens.iter().position(|&l| l > MAX_TOKENS_PER_ROW as u64) {
        return Err(Error::protocol(
            peer,
            format!(
                "row {i} has {} tokens; at most {MAX_TOKENS_PER_ROW} are allowed",
                lens[i]
            ),
        ));
    }
    let total: u64 = lens.iter().sum();
    if total > *left {
        return Err(Error::protocol(
            peer,
            format!(
                "sends {total} tokens where at most {left} remain of those it announced",
                left = *left
            ),
        ));
    }
    *left -= total;
    let flat = r.words_exact(total as usize).await?;
    token_rows(&lens, &flat).map_err(|what| Error::protocol(peer, what))
}

/// Splits received tokens into rows of the announced lengths (which sum to `flat.len()`),
/// refusing a row whose tokens are not strictly increasing: parties send each row's tokens
/// sorted and distinct, and candidate generation's integer scores rely on it (a token repeated
/// 4,096 times in a row, and in a row of the other side, would add its weight 4,096^2 times).
fn token_rows(lens: &[u64], flat: &[u64]) -> std::result::Result<Vec<Vec<u64>>, String> {
    let mut out = Vec::with_capacity(lens.len());
    let mut at = 0usize;
    for (i, &l) in lens.iter().enumerate() {
        let row = &flat[at..at + l as usize];
        if let Some(j) = row.windows(2).position(|w| w[0] >= w[1]) {
            return Err(format!(
                "row {i}'s tokens are not sorted and distinct (at token {})",
                j + 1
            ));
        }
        out.push(row.to_vec());
        at += l as usize;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rows_must_be_sorted_and_distinct() {
        let rows = token_rows(&[2, 0, 3], &[1, 5, 2, 3, 9]).unwrap();
        assert_eq!(rows, vec![vec![1, 5], vec![], vec![2, 3, 9]]);
        let e = token_rows(&[2, 2], &[1, 5, 7, 7]).unwrap_err();
        assert!(e.contains("row 1") && e.contains("at token 1"), "{e}");
        let e = token_rows(&[3], &[4, 2, 9]).unwrap_err();
        assert!(e.contains("row 0"), "{e}");
    }
}
