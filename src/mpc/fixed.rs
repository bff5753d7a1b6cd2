//! Fixed-point encoding of real numbers in Z_2^64.
//!
//! A real `x` is represented by the ring element `round(x * 2^f)` (two's complement), with
//! `f = FRAC_BITS` fractional bits by default. Sums of encodings are encodings of sums. A product
//! of two encodings carries `2f` fractional bits; [`crate::mpc::truncate`] brings it back to `f` with
//! an error of at most one unit in the last place (see there).
//!
//! The *safe range* is chosen so that one multiplication cannot wrap: an input must satisfy
//! `|x| < 2^(31 - f)` so that `|x * y| * 2^(2f) < 2^62`, which is also the precondition of secure
//! truncation. Encoding anything outside that range is an error naming the value and the range,
//! never a silent wrap-around.

use crate::error::{Error, Result};

/// Default number of fractional bits: resolution 2^-16 ~ 1.5e-5, safe range |x| < 2^15.
pub const FRAC_BITS: u32 = 16;

/// A fixed-point encoding with a given number of fractional bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint {
            frac_bits: FRAC_BITS,
        }
    }
}

impl FixedPoint {
    /// An encoding with `frac_bits` fractional bits (1 to 30).
    pub fn new(frac_bits: u32) -> Result<Self> {
        if !(1..=30).contains(&frac_bits) {
            return Err(Error::invalid(format!(
                "fixed point needs 1 to 30 fractional bits, got {frac_bits}"
            )));
        }
        Ok(FixedPoint { frac_bits })
    }

    /// Number of fractional bits `f`.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// The scale `2^f` as a float.
    pub fn scale(&self) -> f64 {
        (1u64 << self.frac_bits) as f64
    }

    /// Largest magnitude that may be encoded (exclusive): `2^(31 - f)`.
    pub fn max_abs(&self) -> f64 {
        (1u64 << (31 - self.frac_bits)) as f64
    }

    /// Encodes one real, or fails if it is not finite or outside the safe range.
    pub fn encode(&self, x: f64) -> Result<u64> {
        let lim = self.max_abs();
        if !x.is_finite() || x.abs() >= lim {
            return Err(Error::Range {
                value: x,
                min: -lim,
                max: lim,
                frac_bits: self.frac_bits,
            });
        }
        Ok(((x * self.scale()).round() as i64) as u64)
    }

    /// Encodes a slice of reals.
    pub fn encode_all(&self, xs: &[f64]) -> Result<Vec<u64>> {
        xs.iter().map(|&x| self.encode(x)).collect()
    }

    /// Decodes a ring element carrying `f` fractional bits.
    pub fn decode(&self, v: u64) -> f64 {
        (v as i64) as f64 / self.scale()
    }

    /// Decodes a ring element carrying `2f` fractional bits (an untruncated product).
    pub fn decode_product(&self, v: u64) -> f64 {
        (v as i64) as f64 / (self.scale() * self.scale())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_range() {
        let fp = FixedPoint::default();
        for x in [0.0, 1.0, -1.0, 0.5, -3.25, 1234.0625, -32767.5] {
            assert_eq!(fp.decode(fp.encode(x).unwrap()), x);
        }
        let err = fp.encode(40000.0).unwrap_err().to_string();
        assert!(err.contains("40000") && err.contains("32768"), "{err}");
        assert!(fp.encode(f64::NAN).is_err());
        assert!(fp.encode(-32768.0).is_err());
    }
}
