//! Statistical tests of what servers see: uniform words, openings recovered from recorded
//! messages, and the differences that would show a mask used twice.

/// A message one server sent another: round, sender, receiver, words.
pub type Sent = (u64, usize, usize, Vec<u64>);

/// Fails unless `words` look uniform: a chi-square over their bytes and a z-score per bit.
pub fn assert_uniform(words: &[u64], what: &str) {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let n = bytes.len() as f64;
    let mut hist = [0f64; 256];
    for b in &bytes {
        hist[*b as usize] += 1.0;
    }
    let e = n / 256.0;
    let chi: f64 = hist.iter().map(|h| (h - e) * (h - e) / e).sum();
    // 255 degrees of freedom: mean 255, sd 22.6; 400 is over six standard deviations.
    assert!(chi < 400.0, "{what}: chi-square {chi:.1} over {n} bytes");
    for bit in 0..64 {
        let ones = words.iter().filter(|w| (*w >> bit) & 1 == 1).count() as f64;
        let m = words.len() as f64;
        let z = (ones - m / 2.0) / (m / 4.0).sqrt();
        assert!(
            z.abs() < 6.0,
            "{what}: bit {bit} has {ones} ones in {m} words"
        );
    }
}

/// [`assert_uniform`] for messages whose words live in rings of different widths: a message
/// whose words all fit `w` bits (a value modulo `2^w`, as the millionaires' comparison sends
/// its masked 40-bit inputs) is tested on its low `w` bits (every bit, and the bytes below bit
/// `w`), with the other messages of its width. A leak of small values (narrow because they are
/// the secrets) fails the per-bit test of its width.
pub fn assert_uniform_by_width(messages: &[Vec<u64>], what: &str) {
    let mut by_width: std::collections::BTreeMap<u32, Vec<u64>> = Default::default();
    for m in messages {
        let w = m.iter().map(|x| 64 - x.leading_zeros()).max().unwrap_or(0);
        // Uniform 64-bit words reach the top bits in any message of more than a few words.
        let w = if w >= 56 { 64 } else { w };
        by_width.entry(w).or_default().extend_from_slice(m);
    }
    for (w, words) in by_width {
        if words.len() < 1024 {
            continue;
        }
        if w == 64 {
            assert_uniform(&words, &format!("{what} ({} words)", words.len()));
            continue;
        }
        let m = words.len() as f64;
        for bit in 0..w {
            let ones = words.iter().filter(|x| (*x >> bit) & 1 == 1).count() as f64;
            let z = (ones - m / 2.0) / (m / 4.0).sqrt();
            assert!(
                z.abs() < 6.0,
                "{what} ({w}-bit words): bit {bit} has {ones} ones in {m} words"
            );
        }
        let mut hist = [0f64; 256];
        for x in &words {
            for b in 0..(w / 8) {
                hist[((x >> (8 * b)) & 0xff) as usize] += 1.0;
            }
        }
        let n: f64 = hist.iter().sum();
        if n > 0.0 {
            let e = n / 256.0;
            let chi: f64 = hist.iter().map(|h| (h - e) * (h - e) / e).sum();
            assert!(chi < 400.0, "{what} ({w}-bit words): chi-square {chi:.1}");
        }
    }
}

/// Every payload sent in rounds from `from` on, each sender's payload of a round once: an
/// opening sends the same payload to every other server, and counting it twice would double
/// every count of [`assert_uniform`] (and its chi-square) without any bias.
pub fn distinct_payloads(sent: &[Sent], from: u64) -> Vec<Vec<u64>> {
    let mut seen = std::collections::HashSet::new();
    sent.iter()
        .filter(|m| m.0 >= from && !m.3.is_empty() && seen.insert((m.0, m.1, &m.3)))
        .map(|m| m.3.clone())
        .collect()
}

/// The values `k - 1` servers together learn from an opening: in every round from `from` on in
/// which each server sends every other one the same payload, all of one length (an opening;
/// the OT rounds' pairwise messages differ), the sum and the XOR of the `k` payloads (the
/// opened value for additive and for XOR shares). With the honest server's payload and their
/// own, the others can compute both.
pub fn opened_values(sent: &[Sent], k: usize, from: u64) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
    let mut rounds: std::collections::BTreeMap<u64, Vec<&Sent>> = Default::default();
    for m in sent.iter().filter(|m| m.0 >= from) {
        rounds.entry(m.0).or_default().push(m);
    }
    let (mut sums, mut xors) = (Vec::new(), Vec::new());
    for msgs in rounds.values() {
        // Each server's one payload, if it sent the same to every other server.
        let payload = |s: usize| -> Option<&Vec<u64>> {
            let mine: Vec<&Sent> = msgs.iter().copied().filter(|m| m.1 == s).collect();
            let first = &mine.first()?.3;
            let to_all = mine.len() == k - 1 && mine.iter().all(|m| &m.3 == first);
            to_all.then_some(first)
        };
        let Some(all) = (0..k).map(payload).collect::<Option<Vec<_>>>() else {
            continue;
        };
        if all.iter().any(|p| p.len() != all[0].len() || p.is_empty()) {
            continue;
        }
        // Payloads of a narrower ring (all words below `2^w`) open modulo `2^w`.
        let w = (all.iter().flat_map(|p| p.iter()))
            .map(|x| 64 - x.leading_zeros())
            .max()
            .unwrap_or(0);
        let ring = if w >= 56 { u64::MAX } else { (1u64 << w) - 1 };
        let len = all[0].len();
        sums.push(
            (0..len)
                .map(|i| all.iter().fold(0u64, |a, p| a.wrapping_add(p[i])) & ring)
                .collect(),
        );
        xors.push(
            (0..len)
                .map(|i| all.iter().fold(0u64, |a, p| a ^ p[i]))
                .collect(),
        );
    }
    (sums, xors)
}

/// The differences of each opened vector's words `lag` apart, for lags 1, 64 and half its
/// length (each once; modulo its ring for sums, XOR for XOR openings): where one mask hides two
/// values that far apart (neighbours, rows of 64 words, or the two sides of the bilinear form
/// opened together), their difference is the difference of the secrets, small and far from
/// uniform, though each opened word alone is uniform. Reuse at other distances is not looked
/// for.
pub fn lagged_differences(opened: &[Vec<u64>], xor: bool) -> Vec<Vec<u64>> {
    let mut out = Vec::new();
    for v in opened {
        let w = v.iter().map(|x| 64 - x.leading_zeros()).max().unwrap_or(0);
        let ring = if w >= 56 { u64::MAX } else { (1u64 << w) - 1 };
        let mut lags = vec![1, 64, v.len() / 2];
        lags.sort_unstable();
        lags.dedup();
        for lag in lags {
            if lag == 0 || lag >= v.len() || v.len() - lag < 64 {
                continue;
            }
            out.push(
                (0..v.len() - lag)
                    .map(|i| match xor {
                        true => v[i + lag] ^ v[i],
                        false => v[i + lag].wrapping_sub(v[i]) & ring,
                    })
                    .collect(),
            );
        }
    }
    out
}
