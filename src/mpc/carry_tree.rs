//! The shape of the comparison's carry-lookahead tree (see [`crate::mpc::compare`]): how many
//! nodes each level has, how many AND gates it needs, and what that costs. Both the protocol and
//! the description of its correlated material ([`crate::mpc::correlated`]) depend on it, so it
//! lives apart from either.

/// Number of nodes per tree level, starting with the leaves; the last level has one node.
pub fn level_sizes(ell: u32) -> Vec<usize> {
    let mut sizes = vec![(ell as usize).saturating_sub(1).max(1)];
    while *sizes.last().expect("non-empty") > 1 {
        sizes.push(sizes.last().expect("non-empty").div_ceil(2));
    }
    sizes
}

/// Combines at a tree level of `nodes` nodes, and how many of them also need `E` (all but the
/// one whose low half is the group of bit 0, which is the last node when the count is even).
pub fn combines(nodes: usize) -> (usize, usize) {
    let c = nodes / 2;
    (c, c - usize::from(c > 0 && nodes.is_multiple_of(2)))
}

/// Words of AND-triple material the comparison tree uses for `blocks` 64-value blocks.
pub fn tree_and_words(ell: u32, blocks: usize) -> usize {
    level_sizes(ell).iter().map(|n| n / 2).sum::<usize>() * blocks
}

/// Communication rounds of one comparison of width `ell` (without conversion).
pub fn compare_rounds(ell: u32) -> usize {
    level_sizes(ell).len()
}

/// Bits each server sends to each other server per comparison of width `ell`, excluding the
/// 64-bit opening of the masked value.
pub fn tree_bits(ell: u32) -> usize {
    level_sizes(ell)
        .iter()
        .map(|&n| {
            // Each combine opens E_hi and G_lo, and E_lo where it is needed.
            let (c, with_e) = combines(n);
            2 * c + with_e
        })
        .sum()
}
