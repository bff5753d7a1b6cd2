//! The upload wire format: how a party's share (a seed or explicit words) and its keyed tokens
//! travel on its stream to a server, and how the server reads them back with the sizes it
//! expects.

use crate::error::{Error, PeerName, Result};
use crate::model::blocking::{MAX_TOKENS_PER_ROW, Tokens};
use crate::mpc::digest::sha256;
use crate::mpc::prg::Seed;
use crate::mpc::share::ShareMsg;
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

/// SHA-256 of the public part of an upload: the row count and every row's keyed tokens.
pub fn upload_digest(tokens: &Tokens) -> Digest {
    let mut parts: Vec<Vec<u64>> = vec![vec![tokens.own.len() as u64]];
    for list in [&tokens.own, &tokens.neighbour] {
        parts.push(list.iter().map(|t| t.len() as u64).collect());
        parts.push(list.concat());
    }
    let bytes: Vec<&[u8]> = parts.iter().map(|p| bytemuck::cast_slice(p)).collect();
    Digest(sha256("ppea upload tokens v1", &bytes))
}

pub(crate) async fn send_tokens(s: &mut FrameSend, t: &[Vec<u64>]) -> Result<()> {
    s.words(&t.iter().map(|x| x.len() as u64).collect::<Vec<_>>())
        .await?;
    s.words(&t.concat()).await
}

pub(crate) async fn recv_tokens(
    r: &mut FrameRecv,
    rows: usize,
    peer: PeerName,
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
    let flat = r.words_exact(total as usize).await?;
    let mut out = Vec::with_capacity(rows);
    let mut at = 0usize;
    for l in lens {
        out.push(flat[at..at + l as usize].to_vec());
        at += l as usize;
    }
    Ok(out)
}
