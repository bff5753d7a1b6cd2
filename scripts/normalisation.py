#!/usr/bin/env python3
"""Hits@1 of ranking-step variants on an evaluation job's plaintext pair scores.

Usage: scripts/normalisation.py DUMP [--quick]

--quick runs the cheaper variants only (CSLS up to 2 rounds, soft rounds at tau 0.05, no
Sinkhorn). The variants' Hits@1 take some minutes in pure Python on DBP15K's 10,500 rows a side.

DUMP comes from `party eval --dump-scores DUMP` (or `scripts/eval.sh ... --inprocess
--dump-scores DUMP`); its layout is in `src/eval/score_dump.rs`. Standard library only.

Every variant keeps one value per candidate pair (a pair listed by both sides is one pair) and
ranks row a's candidates by it; Hits@1 is the share of gold links whose row ranks its partner
first (ties to the first slot, as the secure tournament breaks them). Variants:

* `csls T`: the pipeline's iterated CSLS, `x <- 2 x - r_a - r_b` with `r` the row maxima over
  each side's list, T times (T = 1 is the default job: it reproduces the job's Hits@1);
* `soft T, tau, g`: the same with each row maximum replaced by a tournament (pairs of the list,
  level by level, as the secure tournament plays) whose node is `max(u, v) + tau g(|u - v| /
  tau)`: a log-sum-exp when `g(t) = log(1 + e^-t)` ("exact"), and what shares can compute
  without exponentials when `g` is piecewise linear (`relu 1`: `max(0, ln 2 - t)`, one
  comparison with a public value and one bit product per node; `relu 1/2`: slope 1/2,
  the values doubled per level instead of halved); tau doubles with x at each iteration;
* `sinkhorn it, tau`: the log-domain Sinkhorn on the same sparse pairs (rows of A, then of B,
  each normalised by its exact log-sum-exp over its own list), `it` rounds.
"""
import array
import math
import struct
import sys


def load(path):
    try:
        d = open(path, "rb").read()
    except OSError as e:
        sys.exit(f"{path}: {e.strerror}")
    if len(d) < 40:
        sys.exit(f"{path}: {len(d)} bytes, too short for a score dump")
    na, nb, k, frac = struct.unpack_from("<4Q", d, 0)
    body = 32 + 12 * (na + nb) * k
    if max(na, nb, k) >= 2**32 or frac > 30 or body + 8 > len(d):
        sys.exit(f"{path}: the header ({na} x {nb} rows, {k} candidates, {frac} fractional "
                 f"bits) does not fit its {len(d)} bytes: not a score dump")
    if min(na, nb, k) == 0:
        sys.exit(f"{path}: no rows or no candidates: nothing to rank")
    o = 32

    def take(code, n):
        nonlocal o
        a = array.array(code)
        size = a.itemsize * n
        a.frombytes(d[o:o + size])
        if sys.byteorder != "little":
            a.byteswap()
        o += size
        return a

    ca, cb = take("I", na * k), take("I", nb * k)
    sa, sb = take("q", na * k), take("q", nb * k)
    (ng,) = struct.unpack_from("<Q", d, o)
    o += 8
    if o + 8 * ng != len(d):
        sys.exit(f"{path}: {len(d)} bytes, expected {o + 8 * ng}: not a score dump")
    if ng == 0:
        sys.exit(f"{path}: no gold links to judge")
    gold = [struct.unpack_from("<II", d, o + 8 * i) for i in range(ng)]
    if max(ca) >= nb or max(cb) >= na or any(a >= na or b >= nb for a, b in gold):
        sys.exit(f"{path}: a candidate or gold row is out of range: not a score dump")
    return na, nb, k, 2.0 ** (2 * frac), ca, cb, sa, sb, gold


def main():
    args = sys.argv[1:]
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        sys.exit(0)
    if len(args) not in (1, 2) or args[0].startswith("-") or args[1:] not in ([], ["--quick"]):
        sys.exit("usage: scripts/normalisation.py DUMP [--quick]")
    quick = args[1:] == ["--quick"]
    na, nb, k, scale, ca, cb, sa, sb, gold = load(args[0])
    # One value per pair, as a float at the job's product scale.
    pid, pa, pb, x0 = {}, [], [], []

    def pair(a, b, s):
        key = a * nb + b
        if key not in pid:
            pid[key] = len(pa)
            pa.append(a)
            pb.append(b)
            x0.append(s / scale)
        return pid[key]

    slot_a = [pair(q // k, ca[q], sa[q]) for q in range(na * k)]
    slot_b = [pair(cb[m], m // k, sb[m]) for m in range(nb * k)]
    rows_a = [slot_a[a * k:(a + 1) * k] for a in range(na)]
    rows_b = [slot_b[b * k:(b + 1) * k] for b in range(nb)]

    def hits(x):
        right = 0
        for a, b in gold:
            row = rows_a[a]
            best = max(range(k), key=lambda t: (x[row[t]], -t))
            right += pb[row[best]] == b
        return right / len(gold)

    def reduce(x, f):
        return [f([x[p] for p in r]) for r in rows_a], [f([x[p] for p in r]) for r in rows_b]

    def iterate(x, times, f_of):
        for i in range(times):
            ra, rb = reduce(x, f_of(i))
            x = [2 * x[p] - ra[pa[p]] - rb[pb[p]] for p in range(len(x))]
        return x

    def tournament(v, g):
        while len(v) > 1:
            nxt = [max(v[i], v[i + 1]) + g(abs(v[i] - v[i + 1])) for i in range(0, len(v) - 1, 2)]
            if len(v) % 2:
                nxt.append(v[-1])
            v = nxt
        return v[0]

    ln2 = math.log(2)
    shapes = {
        "exact": lambda t: math.log1p(math.exp(-t)),
        "relu 1": lambda t: max(0.0, ln2 - t),
        "relu 1/2": lambda t: max(0.0, ln2 - t / 2),
    }

    def soft(tau, g):
        def f_of(i):
            t = tau * 2**i
            return lambda v: t * tournament([u / t for u in v], g)
        return f_of

    def lse(v):
        m = max(v)
        return m + math.log(sum(math.exp(u - m) for u in v))

    def sinkhorn(tau, rounds):
        x = [v / tau for v in x0]
        for _ in range(rounds):
            ra = [lse([x[p] for p in r]) for r in rows_a]
            x = [x[p] - ra[pa[p]] for p in range(len(x))]
            rb = [lse([x[p] for p in r]) for r in rows_b]
            x = [x[p] - rb[pb[p]] for p in range(len(x))]
        return x

    print(f"{na} x {nb} rows, {k} candidates each, {len(pa)} pairs, {len(gold)} gold links")
    print("| variant | Hits@1 |\n| --- | --- |")
    print(f"| raw scores | {hits(x0):.4f} |", flush=True)
    for t in (1, 2) if quick else (1, 2, 3):
        print(f"| csls {t} | {hits(iterate(x0, t, lambda i: max)):.4f} |", flush=True)
    for t in (2,) if quick else (2, 3):
        for tau in (0.05,) if quick else (0.05, 0.1):
            for name, g in shapes.items():
                x = iterate(x0, t, soft(tau, g))
                print(f"| soft {t}, tau {tau}, {name} | {hits(x):.4f} |", flush=True)
    if not quick:
        for tau in (0.05, 0.1):
            for rounds in (3, 10):
                print(f"| sinkhorn {rounds}, tau {tau} | {hits(sinkhorn(tau, rounds)):.4f} |", flush=True)


if __name__ == "__main__":
    main()
