//! SHA-256 with domain separation: the one hash used wherever an adversary may choose the input
//! (job-description digests, dealer-request commitments, public seeds derived from job ids).
//! Each use names its own domain tag, so a digest computed for one purpose is never valid for
//! another.

/// SHA-256 over `tag`, then each part prefixed by its length (so part boundaries are
/// unambiguous).
pub fn sha256(tag: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(tag.len() as u64).to_le_bytes());
    ctx.update(tag.as_bytes());
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// A digest as four little-endian words.
pub fn to_words(d: &[u8; 32]) -> [u64; 4] {
    let mut w = [0u64; 4];
    for (i, c) in d.chunks_exact(8).enumerate() {
        w[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_and_separation() {
        // SHA-256 of the empty tag and no parts is SHA-256 of eight zero bytes.
        let d = sha256("", &[]);
        assert_eq!(
            d[..4],
            [0xaf, 0x55, 0x70, 0xf5],
            "SHA-256 of 8 zero bytes starts af5570f5"
        );
        assert_ne!(sha256("a", &[b"bc"]), sha256("ab", &[b"c"]));
        assert_ne!(sha256("t", &[b"ab", b"c"]), sha256("t", &[b"a", b"bc"]));
    }
}
