//! Which endpoint heads each pair of the slot products ([`super::slots`]), and so how many
//! blocks (returned ciphertexts) a plan takes.
//!
//! A slot plan puts the rows that head some pair into ciphertexts of `N` slots, busiest first,
//! and a ciphertext takes as many blocks as its busiest row heads pairs: with loads
//! `l_1 >= l_2 >= ...`, the plan takes `l_1 + l_(N+1) + l_(2N+1) + ...` blocks, and each block
//! costs the evaluator `d` plaintext products and the encryptor a decryption. No plan of `P`
//! pairs takes fewer than `ceil(P / N)` blocks (every slot busy).
//!
//! **Peeling** (`peel`). The row with the fewest pairs not yet headed heads all of them and
//! leaves, until none is left: no row heads more than twice the longest candidate list
//! ([`max_blocks`]). The loads it leaves are uneven (the last rows to leave head few pairs), so
//! the ciphertexts are partly idle: on DBP15K fr-en's scores, 1,011,577 pairs over 21,000 rows,
//! it takes 160 blocks (the three ciphertexts' busiest rows head 64, 53 and 43 pairs), 77 % of
//! the slots busy, where no plan takes fewer than 124; balanced, 128 (59, 59 and 10).
//!
//! **Balancing** ([`orient`]). From the peel, pairs are turned over so that the loads fit a
//! *profile* of caps: the rows of the first `c - 1` ciphertexts head at most `L` pairs each, the
//! rows of the `c`-th at most `L'`, and the remaining rows none. Those *idle* rows must be an
//! independent set (no pair joins two of them): they are all taken from one side (`X`, then
//! `Y` is tried), the least-connected first, skipping any that would leave a partner more
//! pairs to head than the blocks to beat allow. A plan whose loads fit takes at most
//! `(c - 1) L + L'` blocks in `c` ciphertexts.
//!
//! Whether loads fit caps is a flow problem. Turning a pair over moves one unit of load from its
//! head to its other end, so a row over its cap can pass load along a path of pairs, each headed
//! by the previous row, to a row under its cap. Loads fit if and only if no row over its cap is
//! left without such a path (a max-flow, min-cut argument: otherwise the rows it reaches hold
//! more pairs among themselves than their caps). `Fit::run` finds the paths level by level:
//! Dinic's algorithm on the pairs graph, where a pair's residual arc always runs from its
//! current head.
//!
//! For each `c` from the peel's ciphertext count down, a binary search finds the least `L`, then
//! `L` rises one at a time while `L'` falls, until `L'` stops falling. A plan replaces the peel
//! only with fewer blocks, or as many in fewer ciphertexts, and never with more ciphertexts
//! (each is `d` more to encrypt and send). Caps are at most the peel's busiest row or twice the
//! mean pairs per row, whichever is larger: both at most `2 c` when every pair is in a list of
//! at most `c`, so [`max_blocks`] and the pre-check's rounds still bound every plan. Everything
//! is deterministic, so every server orients the same public pairs the same way.

use crate::mpc::he::rlwe::N;

/// No row, or no level.
const NONE: u32 = u32::MAX;

/// The pairs as a graph over the stacked rows: each pair's two ends, and each row's pairs.
struct Graph {
    /// Rows of `X` (the first side).
    n: usize,
    /// Pair `e` joins `ends[e].0` (a row of `X`) and `ends[e].1` (a row of `Y`, offset by `n`).
    ends: Vec<(u32, u32)>,
    /// Row `r`'s pairs are `inc[start[r]..start[r + 1]]`.
    start: Vec<usize>,
    inc: Vec<u32>,
}

impl Graph {
    fn new(n: usize, m: usize, pairs: impl Iterator<Item = (usize, usize)>) -> Graph {
        let ends: Vec<(u32, u32)> = pairs.map(|(i, j)| (i as u32, (n + j) as u32)).collect();
        let rows = n + m;
        let mut start = vec![0usize; rows + 1];
        for &(x, y) in &ends {
            start[x as usize + 1] += 1;
            start[y as usize + 1] += 1;
        }
        for r in 0..rows {
            start[r + 1] += start[r];
        }
        let mut fill = start.clone();
        let mut inc = vec![0u32; 2 * ends.len()];
        for (e, &(x, y)) in ends.iter().enumerate() {
            for r in [x, y] {
                inc[fill[r as usize]] = e as u32;
                fill[r as usize] += 1;
            }
        }
        Graph {
            n,
            ends,
            start,
            inc,
        }
    }

    fn rows(&self) -> usize {
        self.start.len() - 1
    }

    fn degree(&self, r: usize) -> usize {
        self.start[r + 1] - self.start[r]
    }

    fn pairs_of(&self, r: usize) -> &[u32] {
        &self.inc[self.start[r]..self.start[r + 1]]
    }

    /// The end of pair `e` that is not `r`.
    fn other(&self, e: u32, r: u32) -> u32 {
        let (x, y) = self.ends[e as usize];
        if x == r { y } else { x }
    }
}

/// Heads each pair `(i, j)` (`i` a row of `X`, `j` of `Y`) as an item `(slot row, partner)` of the
/// stacked rows `[X; Y]` (`X` row `i` is `i`, `Y` row `j` is `n + j`): peeled, then balanced
/// (module docs), so that the slot plan takes as few blocks as the search finds.
pub fn orient(n: usize, m: usize, pairs: impl Iterator<Item = (usize, usize)>) -> Vec<(u32, u32)> {
    let graph = Graph::new(n, m, pairs);
    let mut head = peel(&graph);
    balance(&graph, &mut head);
    head.iter()
        .enumerate()
        .map(|(e, &h)| (h, graph.other(e as u32, h)))
        .collect()
}

/// Each pair's head by peeling: the row with the fewest pairs not yet headed heads all of them
/// and leaves, until none is left (a bucket queue, linear in the pairs).
///
/// **Bound.** If every pair is in the list of one of its endpoints and no list holds more than
/// `c` pairs (blocking's candidates: [`max_blocks`]), any set of rows `H` has at most `c |H|`
/// pairs among themselves, so one of them has at most `2 c`: no row heads more than `2 c` pairs.
fn peel(graph: &Graph) -> Vec<u32> {
    let rows = graph.rows();
    let mut deg: Vec<u32> = (0..rows).map(|r| graph.degree(r) as u32).collect();
    // Buckets of rows by pairs left: a doubly linked list per count.
    let max = deg.iter().copied().max().unwrap_or(0) as usize;
    let (mut head, mut next, mut prev) = (vec![NONE; max + 1], vec![NONE; rows], vec![NONE; rows]);
    let link = |r: usize, d: usize, head: &mut [u32], next: &mut [u32], prev: &mut [u32]| {
        next[r] = head[d];
        prev[r] = NONE;
        if head[d] != NONE {
            prev[head[d] as usize] = r as u32;
        }
        head[d] = r as u32;
    };
    let unlink = |r: usize, d: usize, head: &mut [u32], next: &mut [u32], prev: &mut [u32]| {
        if prev[r] != NONE {
            next[prev[r] as usize] = next[r];
        } else {
            head[d] = next[r];
        }
        if next[r] != NONE {
            prev[next[r] as usize] = prev[r];
        }
    };
    for (r, &d) in deg.iter().enumerate() {
        link(r, d as usize, &mut head, &mut next, &mut prev);
    }
    let mut out = vec![NONE; graph.ends.len()];
    let mut gone = vec![false; rows];
    let mut low = 0usize;
    for _ in 0..rows {
        // The lowest count is at least `low` (lowered with every count that falls below it).
        while head[low] == NONE {
            low += 1;
        }
        let r = head[low] as usize;
        unlink(r, low, &mut head, &mut next, &mut prev);
        gone[r] = true;
        for &e in graph.pairs_of(r) {
            if out[e as usize] != NONE {
                continue;
            }
            out[e as usize] = r as u32;
            let other = graph.other(e, r as u32) as usize;
            if !gone[other] {
                let d = deg[other] as usize;
                unlink(other, d, &mut head, &mut next, &mut prev);
                deg[other] -= 1;
                link(other, d - 1, &mut head, &mut next, &mut prev);
                low = low.min(d - 1);
            }
        }
    }
    out
}

/// The rows that head some item, busiest first (ties by row): the order in which a slot plan
/// fills its ciphertexts.
pub(super) fn heads_by_load(load: &[u32]) -> Vec<u32> {
    let mut heads: Vec<u32> = (0..load.len() as u32)
        .filter(|&r| load[r as usize] > 0)
        .collect();
    heads.sort_by_key(|&r| std::cmp::Reverse(load[r as usize]));
    heads
}

fn loads(rows: usize, head: &[u32]) -> Vec<u32> {
    let mut load = vec![0u32; rows];
    for &h in head {
        load[h as usize] += 1;
    }
    load
}

/// Where a row stands in a profile of `c` ciphertexts.
#[derive(Clone, Copy, PartialEq)]
enum Class {
    /// In the first `c - 1` ciphertexts: at most `L` pairs.
    Full,
    /// In the `c`-th: at most `L'`.
    Last,
    /// In none: no pairs (rows without pairs are here too).
    Idle,
}

/// The classes of a profile of `c` ciphertexts over `active` rows with pairs, or `None` if too
/// few idle rows are found. The idle ones (`active - c N`, if any) are rows of `idle_side` (no
/// pair joins two rows of a side), the least-connected first, skipping any that would make a
/// row head more than `forced_most` pairs whose other ends are idle.
fn classes(
    graph: &Graph,
    active: usize,
    c: usize,
    idle_side: std::ops::Range<usize>,
    forced_most: u32,
) -> Option<Vec<Class>> {
    let rows = graph.rows();
    let mut by_degree: Vec<u32> = (0..rows as u32)
        .filter(|&r| graph.degree(r as usize) > 0)
        .collect();
    by_degree.sort_by_key(|&r| graph.degree(r as usize));
    let mut class = vec![Class::Idle; rows];
    let mut idle = active.saturating_sub(c * N);
    let mut kept = Vec::with_capacity(active);
    // Pairs each row must head because their other ends are idle: at most `forced_most`.
    let mut forced = vec![0u32; rows];
    for &r in &by_degree {
        let room = || {
            graph
                .pairs_of(r as usize)
                .iter()
                .all(|&e| forced[graph.other(e, r) as usize] < forced_most)
        };
        if idle > 0 && idle_side.contains(&(r as usize)) && room() {
            idle -= 1;
            for &e in graph.pairs_of(r as usize) {
                forced[graph.other(e, r) as usize] += 1;
            }
        } else {
            kept.push(r);
        }
    }
    if idle > 0 {
        return None;
    }
    // Busiest first: the first (c - 1) N kept rows are full, the rest last.
    for (rank, &r) in kept.iter().rev().enumerate() {
        class[r as usize] = if rank < (c - 1) * N {
            Class::Full
        } else {
            Class::Last
        };
    }
    Some(class)
}

/// Dinic's algorithm over the pairs graph: moves heads until no row heads more than its cap.
struct Fit<'a> {
    graph: &'a Graph,
    level: Vec<u32>,
    /// Each row's next pair to try within a phase (an index into `graph.inc`).
    next: Vec<usize>,
    queue: Vec<u32>,
    path: Vec<u32>,
}

impl<'a> Fit<'a> {
    fn new(graph: &'a Graph) -> Fit<'a> {
        let rows = graph.rows();
        Fit {
            graph,
            level: vec![NONE; rows],
            next: vec![0; rows],
            queue: Vec::with_capacity(rows),
            path: Vec::new(),
        }
    }

    /// Turns pairs over (in `head`, with `load` kept as its count) until every row heads at
    /// most `cap` pairs; `false` if that is impossible (then `head` holds some partial moves).
    fn run(&mut self, head: &mut [u32], load: &mut [u32], cap: &[u32]) -> bool {
        let g = self.graph;
        loop {
            // Levels from the rows over their caps, through pairs from their heads, up to the
            // first level that holds a row under its cap.
            self.level.fill(NONE);
            self.queue.clear();
            for r in 0..g.rows() {
                if load[r] > cap[r] {
                    self.level[r] = 0;
                    self.queue.push(r as u32);
                }
            }
            let sources = self.queue.len();
            if sources == 0 {
                return true;
            }
            let mut found = NONE;
            let mut at = 0;
            while at < self.queue.len() {
                let r = self.queue[at];
                at += 1;
                let lr = self.level[r as usize];
                if lr >= found {
                    break;
                }
                for &e in g.pairs_of(r as usize) {
                    if head[e as usize] != r {
                        continue;
                    }
                    let o = g.other(e, r);
                    if self.level[o as usize] == NONE {
                        self.level[o as usize] = lr + 1;
                        if load[o as usize] < cap[o as usize] {
                            found = lr + 1;
                        }
                        self.queue.push(o);
                    }
                }
            }
            if found == NONE {
                return false;
            }
            // Augmenting paths along the levels, each moving one pair's worth of load.
            for r in 0..g.rows() {
                self.next[r] = g.start[r];
            }
            for s in 0..sources {
                let s = self.queue[s];
                self.path.clear();
                let mut cur = s;
                while load[s as usize] > cap[s as usize] {
                    let lc = self.level[cur as usize];
                    if cur != s && lc == found && load[cur as usize] < cap[cur as usize] {
                        for &e in &self.path {
                            head[e as usize] = g.other(e, head[e as usize]);
                        }
                        load[s as usize] -= 1;
                        load[cur as usize] += 1;
                        self.path.clear();
                        cur = s;
                        continue;
                    }
                    let mut step = None;
                    if lc < found {
                        while self.next[cur as usize] < g.start[cur as usize + 1] {
                            let e = g.inc[self.next[cur as usize]];
                            if head[e as usize] == cur {
                                let o = g.other(e, cur);
                                if self.level[o as usize] == lc + 1 {
                                    step = Some((e, o));
                                    break;
                                }
                            }
                            self.next[cur as usize] += 1;
                        }
                    }
                    match step {
                        Some((e, o)) => {
                            self.path.push(e);
                            cur = o;
                        }
                        None => {
                            // A dead end for this phase.
                            self.level[cur as usize] = NONE;
                            let Some(e) = self.path.pop() else { break };
                            cur = head[e as usize];
                            self.next[cur as usize] += 1;
                        }
                    }
                }
            }
        }
    }
}

/// The blocks of a plan whose ciphertexts hold `heads` ([`heads_by_load`]) in turn: each
/// takes as many as its first (busiest) row heads items.
pub(super) fn blocks_of(heads: &[u32], load: &[u32]) -> usize {
    heads.chunks(N).map(|c| load[c[0] as usize] as usize).sum()
}

/// A plan's blocks and ciphertexts (rows that head some pair, `N` a ciphertext).
fn cost_of(load: &[u32]) -> (usize, usize) {
    let heads = heads_by_load(load);
    (blocks_of(&heads, load), heads.len().div_ceil(N))
}

/// Turns pairs over so that the slot plan takes fewer blocks, if the search finds such loads
/// (module docs); `head` is left as it is otherwise.
fn balance(graph: &Graph, head: &mut Vec<u32>) {
    let rows = graph.rows();
    let pairs = head.len();
    let load = loads(rows, head);
    // Caps up to the peel's busiest row or twice the mean pairs per row: with every pair in a
    // list of at most `c`, the first is at most `2 c` ([`peel`]'s bound) and `P <= c rows`.
    let most = load
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(2 * pairs.div_ceil(rows.max(1)) as u32);
    // Never more ciphertexts than the peel's (each is `d` more to encrypt and send), and
    // fewer blocks, or as many in fewer ciphertexts.
    let peeled = cost_of(&load);
    let mut best = peeled;
    let lower = pairs.div_ceil(N);
    let active = (0..rows).filter(|&r| graph.degree(r) > 0).count();
    let mut fit = Fit::new(graph);
    let mut best_head: Option<Vec<u32>> = None;
    for c in (1..=peeled.1).rev() {
        if c * N * (most as usize) < pairs {
            break;
        }
        // Idle rows from either side; where `c` ciphertexts hold every active row there are
        // none, and one try.
        let tries = if c * N >= active { 1 } else { 2 };
        for side in [0..graph.n, graph.n..rows].into_iter().take(tries) {
            if best.0 <= lower.max(c) && best.1 <= c {
                break;
            }
            let forced_most = (best.0.saturating_sub(1) / c) as u32;
            let Some(class) = classes(graph, active, c, side, forced_most) else {
                continue;
            };
            let Some((found, h)) = search(&mut fit, &class, c, most, best.0, (head, &load)) else {
                continue;
            };
            if found.1 <= peeled.1 && (found.0 < best.0 || found.0 == best.0 && found.1 < best.1) {
                best = found;
                best_head = Some(h);
            }
        }
    }
    if let Some(h) = best_head {
        *head = h;
    }
}

/// The least caps `L`, then `L'`, of a profile of `c` ciphertexts (`class`) that the pairs fit,
/// starting from `start` (heads and loads within `most` per row), and the plan's blocks,
/// ciphertexts and heads; `None` if even `L = L' = most` is too little. The search stops once
/// `L` alone takes `best` blocks.
fn search(
    fit: &mut Fit,
    class: &[Class],
    c: usize,
    most: u32,
    best: usize,
    start: (&[u32], &[u32]),
) -> Option<((usize, usize), Vec<u32>)> {
    let pairs = start.0.len();
    let top = class.iter().filter(|&&k| k != Class::Idle).count();
    // The heads and loads that fit the tightest caps tried so far, and a probe's copy.
    let mut state = (start.0.to_vec(), start.1.to_vec());
    let mut probe = state.clone();
    let mut cap = vec![0u32; class.len()];
    let mut fits = |l: u32, last: u32, state: &mut (Vec<u32>, Vec<u32>)| {
        for (k, c) in class.iter().zip(cap.iter_mut()) {
            *c = match k {
                Class::Full => l,
                Class::Last => last,
                Class::Idle => 0,
            };
        }
        if cap.iter().map(|&k| k as usize).sum::<usize>() < pairs {
            return false;
        }
        probe.0.copy_from_slice(&state.0);
        probe.1.copy_from_slice(&state.1);
        let ok = fit.run(&mut probe.0, &mut probe.1, &cap);
        if ok {
            std::mem::swap(state, &mut probe);
        }
        ok
    };
    if !fits(most, most, &mut state) {
        return None;
    }
    // The least `L` for every kept row.
    let (mut lo, mut hi) = ((pairs.div_ceil(top) as u32).min(most), most);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fits(mid, mid, &mut state) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    // Then, from that `L` up, the least `L'` for each (the state that fits `(L, L')` fits
    // `(L + 1, L')`): the last ciphertext's rows give up pairs while the others take them,
    // until `L'` stops falling.
    let mut l = hi;
    let mut last = l;
    let mut found = (cost_of(&state.1), state.0.clone());
    if c == 1 {
        return Some(found);
    }
    loop {
        let was = last;
        while last > 0 && fits(l, last - 1, &mut state) {
            last -= 1;
        }
        let cost = cost_of(&state.1);
        if cost.0 < found.0.0 {
            found = (cost, state.0.clone());
        }
        let bound = (c - 1) * (l as usize + 1);
        if last == was && l > hi || l == most || bound >= found.0.0.min(best) {
            break;
        }
        l += 1;
    }
    Some(found)
}

/// The most blocks of a plan for the pairs of `n` and `m` rows whose every pair is in the list
/// of one of its endpoints, no list holding more than `c` ([`orient`]'s bound): ciphertexts are
/// cut from rows sorted by load, so the first one's blocks are at most `2 c` and each later
/// one's at most the previous one's mean load, `(n + m) c / N` in all.
pub fn max_blocks(n: usize, m: usize, c: usize) -> usize {
    let rows = n.saturating_add(m);
    let ciphers = rows.div_ceil(N);
    if ciphers == 0 {
        return 0;
    }
    let most = c.saturating_mul(2);
    most.saturating_add((rows.saturating_mul(c) / N).min((ciphers - 1).saturating_mul(most)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::he::slots::SlotPlan;
    use crate::mpc::prg::{Prg, Seed};

    /// Candidate lists of `c` per row on both sides (A's lists, then B's pairs A does not
    /// list, as the alignment builds them), with `hubs` of A's rows listing B's row 0 and B's
    /// rows listing A's row 0.
    fn lists(prg: &mut Prg, n: usize, m: usize, c: usize, hubs: bool) -> Vec<(usize, usize)> {
        let mut seen = std::collections::HashSet::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            for t in 0..c {
                let j = if hubs && t == 0 {
                    0
                } else {
                    (prg.next_u64() % m as u64) as usize
                };
                seen.insert((i, j));
                pairs.push((i, j));
            }
        }
        for j in 0..m {
            for t in 0..c {
                let i = if hubs && t == 0 {
                    0
                } else {
                    (prg.next_u64() % n as u64) as usize
                };
                if seen.insert((i, j)) {
                    pairs.push((i, j));
                }
            }
        }
        pairs
    }

    #[test]
    fn no_row_heads_more_than_twice_the_candidates_and_plans_keep_the_bound() {
        let mut prg = Prg::new(&Seed([8; 32]), 0);
        for (n, m, c, hubs) in [
            (300, 200, 4, false),
            (300, 200, 4, true),
            (9000, 8000, 3, true),
            (20, 20, 19, false),
            (1, 500, 2, true),
        ] {
            let pairs = lists(&mut prg, n, m, c, hubs);
            let items = orient(n, m, pairs.iter().copied());
            let mut load = vec![0usize; n + m];
            for (&(q, p), &(i, j)) in items.iter().zip(&pairs) {
                // Each pair once, headed by one of its endpoints.
                let ends = [(i as u32, (n + j) as u32), ((n + j) as u32, i as u32)];
                assert!(ends.contains(&(q, p)), "({q}, {p}) for ({i}, {j})");
                load[q as usize] += 1;
            }
            let most = load.iter().copied().max().unwrap();
            assert!(most <= 2 * c, "{most} > 2 x {c}");
            let plan = SlotPlan::new(n + m, 1, &items).unwrap();
            assert!(plan.blocks() <= max_blocks(n, m, c), "{n} {m} {c} {hubs}");
        }
        // A hub (A's row 0 against 400 rows of B): B's rows head all its pairs but the last.
        let pairs: Vec<(usize, usize)> = (0..400).map(|j| (0, j)).collect();
        let items = orient(1, 400, pairs.into_iter());
        assert!(items.iter().filter(|&&(q, _)| q == 0).count() <= 1);
    }

    /// The plan's blocks for items.
    fn plan_blocks(rows: usize, items: &[(u32, u32)]) -> usize {
        SlotPlan::new(rows, 1, items).unwrap().blocks()
    }

    #[test]
    fn balancing_takes_fewer_blocks_than_peeling_and_never_more() {
        let mut prg = Prg::new(&Seed([11; 32]), 0);
        for (n, m, c, hubs) in [
            (6000, 6000, 8, false),
            (6000, 6000, 8, true),
            (10_500, 10_500, 6, true),
            (9000, 8000, 3, true),
            (300, 200, 4, true),
        ] {
            let pairs = lists(&mut prg, n, m, c, hubs);
            let graph = Graph::new(n, m, pairs.iter().copied());
            let peeled = cost_of(&loads(n + m, &peel(&graph))).0;
            let items = orient(n, m, pairs.iter().copied());
            assert_eq!(items, orient(n, m, pairs.iter().copied()), "deterministic");
            let blocks = plan_blocks(n + m, &items);
            let lower = pairs.len().div_ceil(N);
            assert!(
                blocks >= lower && blocks <= peeled,
                "{blocks} of {lower}..={peeled}"
            );
            if n + m > N {
                // Several ciphertexts: the peel leaves the later ones' rows light and the
                // balanced plan is within a few blocks of every slot busy.
                assert!(blocks < peeled, "{n} {m} {c}: {blocks} = {peeled}");
                assert!(blocks <= lower + 3, "{n} {m} {c}: {blocks} against {lower}");
            }
        }
    }

    #[test]
    fn loads_fit_caps_along_long_paths_or_are_refused() {
        // A path x0 - y0 - x1 - y1 - ... where each row heads the pair to its right: the first
        // row's cap 0 is met only by turning every pair over.
        let len = 200;
        let pairs: Vec<(usize, usize)> = (0..len)
            .flat_map(|i| [(i, i), (i + 1, i)])
            .filter(|&(i, _)| i < len)
            .collect();
        let graph = Graph::new(len, len, pairs.iter().copied());
        let rows = graph.rows();
        let mut head: Vec<u32> = pairs
            .iter()
            .map(|&(i, j)| if i == j { i as u32 } else { (len + j) as u32 })
            .collect();
        let mut load = loads(rows, &head);
        assert_eq!(load[0], 1);
        let mut cap = vec![1u32; rows];
        cap[0] = 0;
        let mut fit = Fit::new(&graph);
        assert!(fit.run(&mut head, &mut load, &cap));
        assert_eq!(load, loads(rows, &head), "loads counted");
        assert!(load.iter().zip(&cap).all(|(l, c)| l <= c));
        for (e, &h) in head.iter().enumerate() {
            let (x, y) = graph.ends[e];
            assert!(h == x || h == y);
        }
        assert_eq!(head[0], len as u32, "the first pair turned over");
        // One row fewer of capacity than pairs: refused.
        cap[rows - 1] = 0;
        let mut load = loads(rows, &head);
        assert!(!fit.run(&mut head.clone(), &mut load, &cap));
        // A star: the hub heads nothing if every leaf may head its pair, and cannot shed a
        // pair to leaves that may head none.
        let star: Vec<(usize, usize)> = (0..10).map(|j| (0, j)).collect();
        let graph = Graph::new(1, 10, star.iter().copied());
        let mut fit = Fit::new(&graph);
        let mut head = vec![0u32; 10];
        let mut load = loads(11, &head);
        let mut cap = vec![1u32; 11];
        cap[0] = 0;
        assert!(fit.run(&mut head, &mut load, &cap));
        assert_eq!(load[0], 0);
        let mut head = vec![0u32; 10];
        let mut load = loads(11, &head);
        let mut cap = vec![0u32; 11];
        cap[0] = 9;
        assert!(!fit.run(&mut head, &mut load, &cap));
    }

    /// Random small pair lists (duplicates possible) for brute force.
    fn small(prg: &mut Prg) -> (usize, usize, Vec<(usize, usize)>) {
        let (n, m) = (
            1 + prg.next_u64() as usize % 4,
            1 + prg.next_u64() as usize % 4,
        );
        let p = prg.next_u64() as usize % 11;
        let pairs = (0..p)
            .map(|_| (prg.next_u64() as usize % n, prg.next_u64() as usize % m))
            .collect();
        (n, m, pairs)
    }

    /// Every orientation's loads.
    fn every_orientation(graph: &Graph) -> impl Iterator<Item = Vec<u32>> + '_ {
        let p = graph.ends.len();
        (0..1u32 << p).map(move |mask| {
            let head: Vec<u32> = (0..p)
                .map(|e| {
                    let (x, y) = graph.ends[e];
                    if mask >> e & 1 == 1 { y } else { x }
                })
                .collect();
            loads(graph.rows(), &head)
        })
    }

    #[test]
    fn fitting_caps_agrees_with_brute_force() {
        let mut prg = Prg::new(&Seed([12; 32]), 0);
        let (mut fitted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let (n, m, pairs) = small(&mut prg);
            let graph = Graph::new(n, m, pairs.iter().copied());
            let rows = graph.rows();
            let cap: Vec<u32> = (0..rows).map(|_| (prg.next_u64() % 4) as u32).collect();
            let possible =
                every_orientation(&graph).any(|load| load.iter().zip(&cap).all(|(l, c)| l <= c));
            let mut head: Vec<u32> = graph
                .ends
                .iter()
                .map(|&(x, y)| if prg.next_u64() & 1 == 0 { x } else { y })
                .collect();
            let mut load = loads(rows, &head);
            let ok = Fit::new(&graph).run(&mut head, &mut load, &cap);
            assert_eq!(ok, possible, "{n} {m} {pairs:?} caps {cap:?}");
            assert_eq!(load, loads(rows, &head), "loads counted");
            for (e, &h) in head.iter().enumerate() {
                let (x, y) = graph.ends[e];
                assert!(h == x || h == y);
            }
            if ok {
                assert!(load.iter().zip(&cap).all(|(l, c)| l <= c));
                fitted += 1;
            } else {
                refused += 1;
            }
        }
        assert!(fitted > 500 && refused > 500, "{fitted} {refused}");
    }

    #[test]
    fn one_ciphertexts_plan_takes_the_least_busiest_row() {
        let mut prg = Prg::new(&Seed([13; 32]), 0);
        let mut better = 0;
        for _ in 0..1000 {
            let (n, m, pairs) = small(&mut prg);
            let graph = Graph::new(n, m, pairs.iter().copied());
            let least = every_orientation(&graph)
                .map(|load| load.into_iter().max().unwrap_or(0))
                .min()
                .unwrap();
            let items = orient(n, m, pairs.iter().copied());
            let mut load = vec![0u32; n + m];
            for (&(q, p), &(i, j)) in items.iter().zip(&pairs) {
                let ends = [(i as u32, (n + j) as u32), ((n + j) as u32, i as u32)];
                assert!(ends.contains(&(q, p)));
                load[q as usize] += 1;
            }
            assert_eq!(load.iter().copied().max().unwrap_or(0), least, "{pairs:?}");
            let peeled = loads(n + m, &peel(&graph)).into_iter().max().unwrap_or(0);
            better += usize::from(least < peeled);
        }
        // Peeling alone is not always the least.
        assert!(better > 0);
    }

    #[test]
    fn balanced_plans_never_take_more_ciphertexts_or_blocks_than_the_peel() {
        let mut prg = Prg::new(&Seed([14; 32]), 0);
        // More rows with pairs than a ciphertext holds, few or many heading pairs after
        // peeling: `Y`'s rows listed by `X`'s (`per` each), and lists of `c` both ways.
        type Case = (usize, usize, Vec<(usize, usize)>);
        let mut cases: Vec<Case> = Vec::new();
        for (n, m, per) in [(12_000, 1_000, 12), (8_000, 600, 40), (8_300, 300, 30)] {
            let pairs = (0..m * per)
                .map(|t| ((prg.next_u64() % n as u64) as usize, t / per))
                .collect();
            cases.push((n, m, pairs));
        }
        for (n, m, c) in [(4_200, 4_200, 4), (4_150, 4_100, 2), (8_000, 400, 3)] {
            cases.push((n, m, lists(&mut prg, n, m, c, true)));
        }
        for (n, m, pairs) in cases {
            let graph = Graph::new(n, m, pairs.iter().copied());
            let peeled = cost_of(&loads(n + m, &peel(&graph)));
            let items = orient(n, m, pairs.iter().copied());
            let plan = SlotPlan::new(n + m, 1, &items).unwrap();
            let ciphers = plan.ciphertexts();
            assert!(
                ciphers <= peeled.1 && plan.blocks() <= peeled.0,
                "{n} {m}: {} blocks in {ciphers} against {peeled:?}",
                plan.blocks()
            );
        }
    }

    #[test]
    fn idle_rows_save_a_ciphertext() {
        // 8,400 rows: the peel heads pairs from more than a ciphertext's rows; leaving 208 of
        // one side idle fits them in one, with fewer blocks.
        let mut prg = Prg::new(&Seed([15; 32]), 0);
        let (n, m, c) = (4_200, 4_200, 4);
        let pairs = lists(&mut prg, n, m, c, false);
        let graph = Graph::new(n, m, pairs.iter().copied());
        let peeled = cost_of(&loads(n + m, &peel(&graph)));
        assert_eq!(peeled.1, 2);
        let items = orient(n, m, pairs.iter().copied());
        let plan = SlotPlan::new(n + m, 1, &items).unwrap();
        assert_eq!(plan.ciphertexts(), 1);
        assert!(plan.blocks() < peeled.0, "{} {peeled:?}", plan.blocks());
        assert!(plan.blocks() <= pairs.len().div_ceil(N) + 1);
    }
}
