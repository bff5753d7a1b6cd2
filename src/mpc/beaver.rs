//! Products of shared values with Beaver triples, and the masked-once bilinear form.
//!
//! **Beaver multiplication.** Given shares of `x`, `y` and a triple `(a, b, c = a*b)`, the
//! servers open `d = x - a` and `e = y - b` (uniform, so they reveal nothing) and each computes
//! `c_s + d*b_s + e*a_s` (+ `d*e` on server 0), which sums to `x*y`. When one left factor meets
//! several right factors (`fanout`), `x - a` is opened once for all of them.
//!
//! **Bilinear form.** The workload is many inner products `<X_i, Y_j>` between rows of two
//! shared matrices. Opening each row once, `E = X - A` and `F = Y - B`, with a dealer-provided
//! `C_p = <A_i, B_j>` for every listed pair `p = (i, j)`, gives
//! `<X_i, Y_j> = <E_i, F_j + B_j> + <A_i, F_j> + C_p`,
//! whose terms are local on shares. Server `s` therefore computes one inner product of length
//! `2d` per pair, between `[E_i | A_i^s]` and `[B_j^s (+F_j on server 0) | F_j]`. Online traffic
//! is `(n + m) * d` words per server whatever the number of pairs.
//!
//! Results carry twice the fractional bits of the inputs; they are left untruncated so that
//! comparisons on them are exact (see [`crate::mpc::truncate`] for bringing them back to scale).

use crate::error::{Error, Result};
use crate::mpc::correlated::Material;
use crate::mpc::pairs::Pairs;
use crate::mpc::protocol::{Protocol, Step, check_lengths, open_sum};
use crate::mpc::ring;

/// Element-wise products `x[i] * ys[j*n + i]` for `j < fanout`.
pub struct Mul {
    me: usize,
    n: usize,
    fanout: usize,
    x: Vec<u64>,
    ys: Vec<u64>,
    mat: [Vec<u64>; 3],
}

impl Mul {
    /// Prepares the product of `x` (n values) with `fanout` right vectors stored back to back in
    /// `ys`, using material from `Request::Beaver { n, fanout }`.
    pub fn new(me: usize, x: Vec<u64>, ys: Vec<u64>, fanout: usize, mat: Material) -> Result<Mul> {
        let n = x.len();
        let mat: [Vec<u64>; 3] = mat.into_parts()?;
        if ys.len() != n * fanout
            || mat[0].len() != n
            || mat[1].len() != n * fanout
            || mat[2].len() != n * fanout
        {
            return Err(Error::invalid(
                "Beaver product: sizes of inputs and material differ",
            ));
        }
        Ok(Mul {
            me,
            n,
            fanout,
            x,
            ys,
            mat,
        })
    }
}

impl Protocol for Mul {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let mut msg = Vec::with_capacity(self.n * (1 + self.fanout));
        msg.extend(
            self.x
                .iter()
                .zip(&self.mat[0])
                .map(|(x, a)| x.wrapping_sub(*a)),
        );
        msg.extend(
            self.ys
                .iter()
                .zip(&self.mat[1])
                .map(|(y, b)| y.wrapping_sub(*b)),
        );
        Ok(Step::Send(self, msg))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        check_lengths(&incoming, self.n * (1 + self.fanout), "Beaver product")?;
        let opened = open_sum(&incoming);
        let (d, e) = opened.split_at(self.n);
        let [a, b, mut z] = self.mat;
        for j in 0..self.fanout {
            for i in 0..self.n {
                let p = j * self.n + i;
                let mut v = z[p]
                    .wrapping_add(d[i].wrapping_mul(b[p]))
                    .wrapping_add(e[p].wrapping_mul(a[i]));
                if self.me == 0 {
                    v = v.wrapping_add(d[i].wrapping_mul(e[p]));
                }
                z[p] = v;
            }
        }
        Ok(Step::Done(z))
    }
}

/// Shares of `<X_i, Y_j>` for every pair, opening each row of `X` and `Y` once.
pub struct Bilinear {
    me: usize,
    d: usize,
    pairs: Pairs,
    x: Vec<u64>,
    y: Vec<u64>,
    mat: [Vec<u64>; 3],
}

impl Bilinear {
    /// Prepares the form over row-major `x` (rows x d) and `y` (cols x d), with material from
    /// `Request::Bilinear { d, pairs }`.
    pub fn new(
        me: usize,
        x: Vec<u64>,
        y: Vec<u64>,
        d: usize,
        pairs: Pairs,
        mat: Material,
    ) -> Result<Bilinear> {
        let mat: [Vec<u64>; 3] = mat.into_parts()?;
        let (n, m) = (pairs.rows(), pairs.cols());
        if x.len() != n * d || y.len() != m * d {
            return Err(Error::invalid(format!(
                "bilinear form: inputs have {} and {} words, expected {n} x {d} and {m} x {d}",
                x.len(),
                y.len()
            )));
        }
        if mat[0].len() != n * d || mat[1].len() != m * d || mat[2].len() != pairs.len() {
            return Err(Error::invalid(
                "bilinear form: material does not match the pairs",
            ));
        }
        Ok(Bilinear {
            me,
            d,
            pairs,
            x,
            y,
            mat,
        })
    }
}

impl Protocol for Bilinear {
    type Output = Vec<u64>;

    fn start(self) -> Result<Step<Self>> {
        let mut msg = Vec::with_capacity(self.x.len() + self.y.len());
        msg.extend(
            self.x
                .iter()
                .zip(&self.mat[0])
                .map(|(x, a)| x.wrapping_sub(*a)),
        );
        msg.extend(
            self.y
                .iter()
                .zip(&self.mat[1])
                .map(|(y, b)| y.wrapping_sub(*b)),
        );
        Ok(Step::Send(self, msg))
    }

    fn receive(self, incoming: Vec<Vec<u64>>) -> Result<Step<Self>> {
        let d = self.d;
        let (n, m) = (self.pairs.rows(), self.pairs.cols());
        check_lengths(&incoming, (n + m) * d, "bilinear form")?;
        let opened = open_sum(&incoming);
        let (e, f) = opened.split_at(n * d);
        let [a, b, mut z] = self.mat;
        let w = 2 * d;
        let mut p_rows = vec![0u64; n * w];
        for i in 0..n {
            p_rows[i * w..i * w + d].copy_from_slice(&e[i * d..(i + 1) * d]);
            p_rows[i * w + d..(i + 1) * w].copy_from_slice(&a[i * d..(i + 1) * d]);
        }
        let mut q_rows = vec![0u64; m * w];
        for j in 0..m {
            let g = &mut q_rows[j * w..j * w + d];
            g.copy_from_slice(&b[j * d..(j + 1) * d]);
            if self.me == 0 {
                ring::add_assign(g, &f[j * d..(j + 1) * d]);
            }
            q_rows[j * w + d..(j + 1) * w].copy_from_slice(&f[j * d..(j + 1) * d]);
        }
        self.pairs.accumulate_dots(&p_rows, &q_rows, w, &mut z);
        Ok(Step::Done(z))
    }
}
