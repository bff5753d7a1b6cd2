//! Secure fixed-point truncation: shares of `x` to shares of about `x / 2^f`, for any `k`.
//!
//! Local truncation of shares (SecureML) is only correct for two servers and fails with small
//! probability even there; with three or more additive shares it is simply wrong. This module
//! uses a dealer-assisted mask instead (the probabilistic truncation of Catrina and Saxena,
//! FC 2010, in the exact-wrap form of Escudero et al., CRYPTO 2020):
//!
//! The input must satisfy `|x| < 2^62`. Shift it to `x' = x + 2^62 in [0, 2^63)`, open
//! `c = x' + r` for a uniform mask `r` (so `c` is uniform and reveals nothing), and let
//! `w = msb(r) AND NOT msb(c)`, which is exactly the wrap-around bit of `x' + r` because
//! `x' < 2^63`. Then
//!
//! `floor(x' / 2^f) = (c >> f) - (r >> f) + w * 2^(64-f) - b`, with `b = [c mod 2^f < r mod 2^f]`.
//!
//! The dealer supplies shares of `r`, `r >> f` and `msb(r)`; `w` is linear in `msb(r)` since
//! `msb(c)` is public. The borrow `b` is not computed (that would need a comparison): **the
//! result is `floor(x / 2^f)` or `floor(x / 2^f) + 1`**, i.e. `x / 2^f` rounded down or up, an
//! error below one unit in the last place, never more. One round, one word per value.

use crate::error::{Error, Result};
use crate::mpc::correlated::Material;
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum};

/// Truncation of `n` shared values by `frac` bits.
pub struct Truncate {
    me: usize,
    frac: u32,
    x: Vec<u64>,
    mat: [Vec<u64>; 3],
}

const OFFSET: u64 = 1 << 62;

impl Truncate {
    /// Prepares the truncation with material from `Request::Trunc { n, frac }`.
    pub fn new(me: usize, x: Vec<u64>, frac: u32, mat: Material) -> Result<Truncate> {
        let mat: [Vec<u64>; 3] = mat.into_parts()?;
        // The width's bounds are the material request's.
        crate::mpc::correlated::Request::Trunc { n: x.len(), frac }.validate()?;
        if mat.iter().any(|m| m.len() != x.len()) {
            return Err(Error::invalid(
                "truncation: sizes of input and material differ",
            ));
        }
        Ok(Truncate { me, frac, x, mat })
    }
}

impl Protocol for Truncate {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let off = if self.me == 0 { OFFSET } else { 0 };
        let msg = self
            .x
            .iter()
            .zip(&self.mat[0])
            .map(|(x, r)| x.wrapping_add(*r).wrapping_add(off))
            .collect();
        Ok(Step::Send(self, msg))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, self.x.len(), "truncation")?;
        let c = open_sum(incoming);
        let f = self.frac;
        let [_, rh, rmsb] = self.mat;
        let out = c
            .iter()
            .zip(rh.iter().zip(&rmsb))
            .map(|(&c, (&rh, &rm))| {
                let mut v = rh.wrapping_neg();
                if c >> 63 == 0 {
                    v = v.wrapping_add(rm << (64 - f));
                }
                if self.me == 0 {
                    v = v.wrapping_add(c >> f).wrapping_sub(OFFSET >> f);
                }
                v
            })
            .collect();
        Ok(Step::Done(out))
    }
}
