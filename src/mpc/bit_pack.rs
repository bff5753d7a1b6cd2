//! Values of given bit widths packed into words, low bits first: the random bits' splits of
//! replicated material ([`crate::mpc::replicated`]) and the OT corrections of bits whose shares
//! matter only modulo a power of two ([`crate::mpc::ot::cross`]).

/// The low `bits` bits set (all 64 for 64).
fn low_mask(bits: u32) -> u64 {
    if bits >= 64 { !0 } else { (1u64 << bits) - 1 }
}

/// Values of given bit widths packed into words, low bits first.
pub(crate) struct Packer {
    /// The words written so far.
    pub(crate) words: Vec<u64>,
    at: usize,
}

impl Packer {
    /// An empty packer with room for `words` words.
    pub(crate) fn with_capacity(words: usize) -> Packer {
        Packer {
            words: Vec::with_capacity(words),
            at: 0,
        }
    }

    /// Appends the low `bits` (at most 64) bits of `v`.
    pub(crate) fn push(&mut self, v: u64, bits: u32) {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return;
        }
        let v = v & low_mask(bits);
        let (i, off) = (self.at / 64, (self.at % 64) as u32);
        if off == 0 {
            self.words.push(0);
        }
        self.words[i] |= v << off;
        if off + bits > 64 {
            self.words.push(v >> (64 - off));
        }
        self.at += bits as usize;
    }
}

/// Reads what a [`Packer`] wrote, given the same widths. The length was checked against them.
pub(crate) struct Unpacker<'a> {
    words: &'a [u64],
    at: usize,
}

impl<'a> Unpacker<'a> {
    /// Reads `words` from the start.
    pub(crate) fn new(words: &'a [u64]) -> Unpacker<'a> {
        Unpacker { words, at: 0 }
    }
}

impl Unpacker<'_> {
    /// Reads the next `bits` (at most 64) bits.
    pub(crate) fn take(&mut self, bits: u32) -> u64 {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return 0;
        }
        let (i, off) = (self.at / 64, (self.at % 64) as u32);
        let mut v = self.words[i] >> off;
        if off + bits > 64 {
            v |= self.words[i + 1] << (64 - off);
        }
        self.at += bits as usize;
        v & low_mask(bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_values_of_any_width_read_back() {
        let widths: Vec<u32> = (0..200).map(|i| (i * 7 % 65) as u32).collect();
        let values: Vec<u64> = (0..200u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let mut p = Packer::with_capacity(0);
        for (v, w) in values.iter().zip(&widths) {
            p.push(*v, *w);
        }
        let total: u32 = widths.iter().sum();
        assert_eq!(p.words.len(), total.div_ceil(64) as usize);
        let mut u = Unpacker::new(&p.words);
        for (v, w) in values.iter().zip(&widths) {
            assert_eq!(u.take(*w), v & low_mask(*w), "width {w}");
        }
    }
}
