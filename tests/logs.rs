//! What an operator reads in the logs. Whole jobs run on loopback (dealer, compute servers and
//! both parties in this process, real QUIC with mutual TLS) with every event of this crate
//! recorded at trace level: with a dealer and without one, and with party B's rows out of
//! range (the refusal's path). The record must hold none of the parties' data: no entity name
//! (of eight characters or more), no blocking key (the parties here are handed prepared data,
//! so the key stays outside the networked code by construction), no three consecutive words
//! of an uploaded row, and no number long enough to be a 64-bit share or opened value (one
//! server's logged share and another's would give the value).

mod common;
use common::cluster::{Cluster, rt, sample};
use ppea::eval::evaluate::{EvalProtocol, Split, scopes};
use ppea::model::align::{JobParams, prepare_party};
use ppea::model::blocking::BlockingKey;
use ppea::mpc::prg::Prg;
use ppea::mpc::source::Correlation;
use ppea::net::config::Limits;
use std::collections::HashSet;
use std::sync::Mutex;

/// Every line logged in this test binary.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A writer appending to [`LOG`].
struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The maximal runs of decimal digits and of hexadecimal digits in `text`.
fn numbers(text: &str) -> (HashSet<String>, HashSet<String>) {
    let runs = |keep: fn(char) -> bool| -> HashSet<String> {
        text.split(|c: char| !keep(c))
            .filter(|r| !r.is_empty())
            .map(|r| r.to_ascii_lowercase())
            .collect()
    };
    (
        runs(|c| c.is_ascii_digit()),
        runs(|c| c.is_ascii_hexdigit()),
    )
}

#[test]
fn logs_at_trace_level_hold_no_party_data() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("ppea=trace,info"))
        .with_writer(|| Capture)
        .with_ansi(false)
        .without_time()
        .init();
    let _ = rt();
    let p = JobParams::default();
    let ds = sample();
    let key = BlockingKey::random();
    let (sa, sb) = scopes(ds, EvalProtocol::Standard, Split::Test);
    let a = prepare_party(&ds.a, &sa, &p, &key, &mut Prg::fresh()).unwrap();
    let b = prepare_party(&ds.b, &sb, &p, &key, &mut Prg::fresh()).unwrap();
    let mut scaled = b.clone();
    scaled.z.iter_mut().for_each(|v| *v = v.wrapping_mul(4));
    let with_dealer = Cluster::new("logs-dealer", 2, Limits::default());
    let free = Cluster::dealer_free("logs-ot", 2);
    let ot = JobParams {
        correlation: Correlation::Ot,
        ..p.clone()
    };
    let jobs = [
        (&with_dealer, "honest", p.clone(), &b),
        (&with_dealer, "scaled", p.clone(), &scaled),
        (&free, "honest", ot, &b),
    ];
    for (c, job, params, bdata) in jobs {
        let spec = c.spec(job, params);
        let (ra, rb) = c.run(&spec, &a, bdata);
        assert!(ra.is_ok() && rb.is_ok(), "{job}: {ra:?} {rb:?}");
    }
    let log = String::from_utf8_lossy(&LOG.lock().unwrap()).to_string();
    // Control: the jobs' steps were logged, on every server.
    let steps = log.matches("alignment step done").count();
    assert!(steps >= 3 * 2 * 6, "{steps} steps logged:\n{log}");
    for name in ds.a.names.iter().chain(&ds.b.names) {
        assert!(
            name.len() < 8 || !log.contains(name.as_str()),
            "entity name {name:?} logged"
        );
    }
    let hex = |k: &BlockingKey| k.0.iter().map(|b| format!("{b:02x}")).collect::<String>();
    for k in [key.clone(), key.for_job("honest"), key.for_job("scaled")] {
        assert!(
            !log.to_ascii_lowercase().contains(&hex(&k)),
            "a blocking key logged"
        );
    }
    // An uploaded row's values (at most 2^16 each at the default scale, too small to stand
    // out alone) logged together: any three consecutive words, as `Debug` shows a slice of
    // them (as u64 or as i64) or as a list.
    let compact: String = log.chars().filter(|c| !c.is_whitespace()).collect();
    for (side, d) in [("a", &a), ("b", &b)] {
        for (r, row) in d.z.chunks(d.width).enumerate() {
            // Windows of small values only (zeros) could match innocent text.
            let telling = |w: &&[u64]| w.iter().any(|&v| (v as i64).unsigned_abs() >= 100);
            for w in row.windows(3).filter(telling) {
                let signed = w
                    .iter()
                    .map(|&v| (v as i64).to_string())
                    .collect::<Vec<_>>();
                let unsigned = w.iter().map(|v| v.to_string()).collect::<Vec<_>>();
                for shown in [signed.join(","), unsigned.join(",")] {
                    assert!(
                        !compact.contains(&shown),
                        "party {side}'s row {r} logged: {shown}"
                    );
                }
            }
        }
    }
    let (dec, hexes) = numbers(&log);
    // A 64-bit share or opening is a uniform word: 13 decimal digits or more (but with
    // probability 10^-6), 16 hexadecimal ones (but with probability 2^-4). Sizes and byte
    // counts are shorter. Narrower values (40-bit comparison inputs, residues) and values
    // split into bytes are not caught by this rule.
    let long_dec: Vec<&String> = dec.iter().filter(|r| r.len() >= 13).collect();
    assert!(long_dec.is_empty(), "long numbers logged: {long_dec:?}");
    let long_hex: Vec<&String> = hexes.iter().filter(|r| r.len() >= 16).collect();
    assert!(
        long_hex.is_empty(),
        "long hexadecimal numbers logged: {long_hex:?}"
    );
}
