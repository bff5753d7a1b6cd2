//! Differential-privacy noise added on shares.
//!
//! **Mechanism.** The discrete Laplace distribution with scale `b > 0` has
//! `P(X = x) ∝ exp(-|x| / b)` on the integers; adding it to an integer statistic of sensitivity
//! `Δ` with `b = Δ / ε` gives ε-differential privacy (Ghosh, Roughgarden and Sundararajan 2009;
//! Canonne, Kamath and Steinke 2020). It is sampled as the difference of two independent
//! geometric variables with success probability `1 - exp(-1/b)`, each by inversion
//! (`floor(-b ln U)` for `U` uniform in `(0, 1]`, 53-bit floats).
//!
//! **Distributed.** Every server adds its *own* independent discrete Laplace sample of the full
//! scale to its share of each aggregate ([`add_noise`]), with randomness from a ChaCha stream
//! seeded by the operating system ([`Prg::fresh`]). The opened value carries the sum of `k`
//! independent samples. No server knows the total noise; a coalition of up to `k - 1` servers
//! (or anyone they tell) can subtract its own samples, and what is left, the honest server's
//! sample, still gives ε-DP. Against parties and outsiders the noise is the sum of `k` samples,
//! which is ε-DP as well (post-processing of the honest one), at `k` times the variance of a
//! single sample.

use crate::mpc::prg::Prg;

/// A discrete Laplace sample of scale `b` (`b <= 0` or not finite: no noise, 0).
pub fn discrete_laplace(prg: &mut Prg, b: f64) -> i64 {
    if b.is_nan() || b <= 0.0 || !b.is_finite() {
        return 0;
    }
    geometric(prg, b) - geometric(prg, b)
}

/// `floor(-b ln U)`, `U` uniform in `(0, 1]`: geometric on `{0, 1, ...}` with
/// `P(G >= g) = exp(-g / b)`.
fn geometric(prg: &mut Prg, b: f64) -> i64 {
    // 53 random bits, shifted into (0, 1].
    let u = ((prg.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let g = (-b * u.ln()).floor();
    // Saturates only for astronomically unlikely draws at huge scales.
    g.min(i64::MAX as f64 / 4.0) as i64
}

/// The probability mass of the discrete Laplace distribution of scale `b` at `x`.
pub fn discrete_laplace_pmf(b: f64, x: i64) -> f64 {
    let q = (-1.0 / b).exp();
    (1.0 - q) / (1.0 + q) * q.powf(x.unsigned_abs() as f64)
}

/// Adds, to this server's shares `values`, one independent discrete Laplace sample per value,
/// of scale `scales[i]`, in the ring (two's complement). `values.len() == scales.len()`.
pub fn add_noise(values: &mut [u64], scales: &[f64], prg: &mut Prg) {
    for (v, &b) in values.iter_mut().zip(scales) {
        *v = v.wrapping_add(discrete_laplace(prg, b) as u64);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mpc::prg::Seed;

    /// Chi-square statistic of `samples` against `pmf` over the bins `-lim..=lim`, the tails
    /// pooled into the outermost bins; returns it with its degrees of freedom.
    pub(crate) fn chi_square(samples: &[i64], pmf: impl Fn(i64) -> f64, lim: i64) -> (f64, usize) {
        let n = samples.len() as f64;
        let mut obs = vec![0f64; (2 * lim + 1) as usize];
        for &s in samples {
            obs[(s.clamp(-lim, lim) + lim) as usize] += 1.0;
        }
        let tail: f64 = (lim..=lim + 100_000).map(&pmf).sum();
        let mut chi = 0.0;
        for x in -lim..=lim {
            let p = if x.abs() == lim { tail } else { pmf(x) };
            let e = n * p;
            chi += (obs[(x + lim) as usize] - e).powi(2) / e;
        }
        (chi, (2 * lim) as usize)
    }

    #[test]
    fn discrete_laplace_matches_its_pmf() {
        let mut prg = Prg::new(&Seed([3; 32]), 1);
        let b = 2.0;
        let samples: Vec<i64> = (0..20_000).map(|_| discrete_laplace(&mut prg, b)).collect();
        let (chi, dof) = chi_square(&samples, |x| discrete_laplace_pmf(b, x), 8);
        // 16 degrees of freedom: the 0.999 quantile is 39.25.
        assert_eq!(dof, 16);
        assert!(chi < 39.25, "chi-square {chi}");
        // A wrong scale is rejected by the same test (the test can fail).
        let (chi_wrong, _) = chi_square(&samples, |x| discrete_laplace_pmf(2.6, x), 8);
        assert!(chi_wrong > 39.25, "chi-square {chi_wrong}");
    }

    #[test]
    fn no_noise_without_a_scale() {
        let mut prg = Prg::new(&Seed([3; 32]), 1);
        let mut v = vec![5u64, 7];
        add_noise(&mut v, &[0.0, f64::INFINITY], &mut prg);
        assert_eq!(v, vec![5, 7]);
    }

    #[test]
    fn pmf_sums_to_one() {
        let s: f64 = (-200..=200).map(|x| discrete_laplace_pmf(3.0, x)).sum();
        assert!((s - 1.0).abs() < 1e-9, "{s}");
    }
}
