//! Which vector extensions the computation may use.
//!
//! Every vectorised path (AVX-512 products in [`crate::mpc::ring`], IFMA transforms in
//! [`crate::mpc::he`], VAES in [`crate::mpc::ot::fixed_aes`]) checks the CPU at run time and
//! takes the widest one it has; the results are the same bit for bit on every path (each is
//! tested against the scalar one). [`wide`] lets an operator hold a process to AVX2 (and
//! AES-NI) on a machine that has more, to measure what a machine without AVX-512 or VAES would
//! take: set `PPEA_CPU=avx2` (exactly, lower case) in the environment of `server` (or of
//! `party eval`, which runs the servers in process). Any other value, or none, allows
//! everything the CPU has. TLS (`ring`'s AES-GCM) is not held back.

/// The environment variable read by [`wide`].
pub const ENV: &str = "PPEA_CPU";

/// Whether paths beyond AVX2 (AVX-512, IFMA, VAES) may run: `false` when [`ENV`] is `avx2`.
/// Read once per process.
pub fn wide() -> bool {
    static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WIDE.get_or_init(|| allows_wide(std::env::var(ENV).ok().as_deref()))
}

/// [`wide`] for the variable's value (`None`: not set).
fn allows_wide(value: Option<&str>) -> bool {
    value != Some("avx2")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_avx2_holds_a_process_to_avx2() {
        assert!(!super::allows_wide(Some("avx2")));
        for v in [None, Some(""), Some("avx512"), Some("AVX2 ")] {
            assert!(super::allows_wide(v), "{v:?}");
        }
    }
}
