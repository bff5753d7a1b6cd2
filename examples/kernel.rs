use ppea::pairs::Pairs;
use ppea::prg::Prg;
use std::time::Instant;
fn main() {
    let (n, m, w) = (2000, 2000, 256);
    let mut prg = Prg::fresh();
    let p = prg.vec(n * w);
    let q = prg.vec(m * w);
    let pairs = Pairs::dense(n, m);
    let mut out = vec![0u64; n * m];
    for _ in 0..3 {
        let t = Instant::now();
        pairs.accumulate_dots(&p, &q, w, &mut out);
        let s = t.elapsed().as_secs_f64();
        println!(
            "dense {n}x{m} w={w}: {s:.3}s  {:.1} M dots/s, {:.2} Gmul/s",
            (n * m) as f64 / s / 1e6,
            (n * m * w) as f64 / s / 1e9
        );
    }
    let t = Instant::now();
    let mut acc = 0u64;
    for i in 0..200 {
        for j in 0..2000 {
            acc = acc.wrapping_add(ppea::ring::dot(
                &p[i * w..(i + 1) * w],
                &q[j * w..(j + 1) * w],
            ));
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "single-thread dot: {:.2} Gmul/s {acc}",
        (400000 * w) as f64 / s / 1e9
    );
}
