//! The dealer's job: collect one link per server, then serve correlated randomness until the
//! last server closes its link.

use crate::error::{Error, PeerName};
use crate::model::footprint::{BASE_BYTES, DEALER_MEASURED_WORDS, dealer_bytes, mib};
use crate::mpc::dealer::{Dealer, serve};
use crate::net::config::ServerConfig;
use crate::net::daemon::{DISAGREE, Event, Jobs, answer_link, book, next_event, refuse_late};
use crate::net::job::DealerHello;
use crate::net::quic::QuicDealer;
use crate::net::registry::OverBudget;
use crate::net::wire::{FrameRecv, FrameSend};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// The dealer's job: collect one link per server, then serve corrections until the last
/// server closes its link.
///
/// Every link must describe the same job (server list, description digest, size bound), the
/// connecting certificate must be the one named at the claimed index, each index links once,
/// and every listed server must be one this dealer is configured to trust. Only then are seeds
/// sent. A link that breaks a rule is refused and fails the job: seeds go to the servers of one
/// agreed job, or to nobody.
///
/// The job's first valid link books its estimated peak memory against the dealer's budget
/// ([`Booking`]), before any material is generated; the booking is given back when the job
/// ends, whatever the outcome. A job that does not fit is refused: every server's link gets
/// the reason (each server passes it on to its parties), and the job ends once all have linked
/// or the wait runs out.
pub(crate) async fn dealer_job(
    cfg: &ServerConfig,
    jobs: &Jobs,
    job: &str,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let result = async {
        let mut links: Vec<Option<(FrameSend, FrameRecv)>> = Vec::new();
        let mut conns = Vec::new();
        let mut agreed: Option<DealerHello> = None;
        // Held until this block ends (done, failed or timed out), then given back.
        let mut booking: Option<Booking> = None;
        let mut over_budget: Option<String> = None;
        loop {
            let ev = next_event(&mut rx, wait, "every server's dealer link").await?;
            let Event::DealerLink {
                hello,
                peer,
                mut streams,
                conn,
            } = ev
            else {
                continue;
            };
            let first = agreed.get_or_insert_with(|| hello.clone());
            let bad = check_link(cfg, first, &hello, &peer, &links);
            if bad.is_none() && booking.is_none() && over_budget.is_none() {
                match Booking::take(jobs, job, first) {
                    Ok(b) => booking = Some(b),
                    Err(why) => over_budget = Some(why),
                }
            }
            let name = PeerName::Server(hello.server as usize);
            match (bad, &over_budget) {
                // Over the budget: refused, and the job waits for the other servers' links to
                // refuse them too.
                (None, Some(why)) => {
                    let _ = answer_link(&mut streams, Some(why.clone()), name).await;
                }
                // A link that breaks a rule fails the job at once.
                (bad, _) => answer_link(&mut streams, bad, name).await?,
            }
            links.resize_with(first.servers.len(), || None);
            // A server that stops sending (requests, commitments) or reading (material) fails
            // the job after this.
            crate::net::wire::set_silence(&mut streams, cfg.silence());
            links[hello.server as usize] = Some(streams);
            conns.push(conn);
            if links.iter().all(Option::is_some) {
                break;
            }
        }
        if let Some(why) = over_budget {
            return Err(Error::invalid(why));
        }
        let hello = agreed.expect("set with the first link");
        let k = links.len();
        let ceiling = (cfg.max_bytes() / 8) as usize;
        let max_words = (hello.max_material_words as usize).min(ceiling);
        let mut net = QuicDealer::new(links.into_iter().map(|l| l.expect("all present")).collect());
        let dealer = (Dealer::new(k)?.with_max_words(max_words))
            .with_mask_words(hello.max_material_words as usize);
        // Late links are refused aside while the material is served (not held unread).
        let stats = tokio::select! {
            r = serve(dealer, &mut net) => r?,
            never = refuse_late(&mut rx) => match never {},
        };
        drop(conns);
        Ok::<_, Error>(stats)
    };
    // The whole job, links included, within `job_secs`.
    let result = tokio::select! {
        r = result => r,
        e = cfg.job_deadline(cfg.job_end()) => Err(e),
    };
    match result {
        Ok(s) => info!(
            job,
            bytes_sent = s.bytes_sent,
            requests = s.requests,
            "dealer done"
        ),
        Err(e) => error!(job, "dealer failed: {e}"),
    }
}

/// A dealer job's estimated peak memory ([`dealer_bytes`]), booked against the dealer's
/// budget (`limits.memory_mib`, shared by the jobs it serves) and given back when dropped.
struct Booking {
    jobs: Jobs,
    bytes: u64,
}

impl Booking {
    /// Books the peak of the job `hello` describes (its material bound and server count), or
    /// says why it does not fit, in words the servers pass on to the parties.
    fn take(jobs: &Jobs, job: &str, hello: &DealerHello) -> Result<Booking, String> {
        let words = hello.max_material_words;
        let bytes = dealer_bytes(words, hello.servers.len());
        if words > DEALER_MEASURED_WORDS {
            info!(
                job,
                words,
                "memory estimate extrapolated beyond the measured sizes ({DEALER_MEASURED_WORDS} \
                 words of material)"
            );
        }
        let refused = book(jobs).reserve_memory(bytes);
        let OverBudget {
            needed,
            budget,
            booked,
        } = match refused {
            Ok(()) => {
                return Ok(Booking {
                    jobs: jobs.clone(),
                    bytes,
                });
            }
            Err(over) => over,
        };
        warn!(
            job,
            needed_mib = mib(needed),
            budget_mib = mib(budget),
            booked_mib = mib(booked),
            "dealer job refused: over the memory budget"
        );
        // The estimate grows with both parties' rows together: it stays in this log, not in
        // the reason the parties read (it would tell each the other's size within ~50 rows).
        let what = format!(
            "job {job:?} needs more memory on the dealer (the estimated peak of its correlated \
             randomness, from the job's sizes; the estimate is in the dealer's log) than the \
             dealer's memory budget of {} MiB (limits.memory_mib of the dealer, {} MiB of it for \
             the process itself)",
            mib(budget),
            mib(BASE_BYTES)
        );
        Err(if needed > budget.saturating_sub(BASE_BYTES) {
            format!(
                "{what} allows; split the job into smaller ones, or ask the dealer's operator \
                 for a larger budget"
            )
        } else {
            format!(
                "{what} has free beside the jobs it is serving now; try again later, split the \
                 job into smaller ones, or ask the dealer's operator for a larger budget"
            )
        })
    }
}

impl Drop for Booking {
    fn drop(&mut self) {
        book(&self.jobs).release_memory(self.bytes);
    }
}

/// Why the dealer refuses a server's link for a job, if it does. `first` is the description the
/// job's first link gave; `links` holds the links accepted so far.
fn check_link(
    cfg: &ServerConfig,
    first: &DealerHello,
    hello: &DealerHello,
    peer: &str,
    links: &[Option<(FrameSend, FrameRecv)>],
) -> Option<String> {
    let k = hello.servers.len();
    let i = hello.server as usize;
    if crate::mpc::share::check_servers(k).is_err() {
        return Some(format!(
            "{peer}: a job needs 2 to 4 servers, the link names {k}"
        ));
    }
    if let Some(n) = hello
        .servers
        .iter()
        .find(|n| !cfg.peers.servers.contains(n))
    {
        return Some(format!(
            "{peer}: the job names server {n:?}, which this dealer does not trust"
        ));
    }
    if (1..k).any(|j| hello.servers[..j].contains(&hello.servers[j])) {
        return Some(format!("{peer}: the job lists a server twice"));
    }
    if i >= k || hello.servers[i] != peer {
        return Some(format!(
            "{peer} cannot link as server {i}: its certificate is not the one named at that index"
        ));
    }
    if hello.servers != first.servers || hello.digest != first.digest {
        return Some(DISAGREE.to_string());
    }
    if hello.max_material_words != first.max_material_words {
        return Some(format!(
            "{peer}: servers disagree on the job's sizes (bound of {} vs {} words of material)",
            hello.max_material_words, first.max_material_words
        ));
    }
    if links.get(i).is_some_and(Option::is_some) {
        return Some(format!(
            "{peer}: server {i} has already linked for this job"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::job::Digest;
    use crate::net::registry::Registry;
    use std::sync::{Arc, Mutex};

    fn hello(words: u64) -> DealerHello {
        DealerHello {
            job: "j".into(),
            server: 0,
            servers: vec!["server-0".into(), "server-1".into()],
            digest: Digest([0; 32]),
            max_material_words: words,
        }
    }

    /// A job's booking fits or is refused with the estimate and the budget, and is given back
    /// when the job ends (the booking is dropped), so the next job fits again.
    #[test]
    fn a_dealer_job_books_its_estimate_and_gives_it_back() {
        // Room for one job of 150 million words beside the process (an estimate of 76 MiB, a
        // number that appears nowhere else in the reasons).
        let one = dealer_bytes(150_000_000, 2);
        let budget = BASE_BYTES + one + (one / 2);
        let jobs: Jobs = Arc::new(Mutex::new(
            Registry::new(8, Duration::from_secs(100)).with_memory_budget(budget),
        ));
        let booked = Booking::take(&jobs, "j", &hello(150_000_000)).expect("fits");
        // A second job does not fit beside it (try again later) ...
        let why = Booking::take(&jobs, "k", &hello(150_000_000))
            .err()
            .expect("does not fit beside the first");
        assert!(why.contains("dealer's memory budget"), "{why}");
        // The estimate (both parties' sizes together) is not in the reason the parties read.
        assert!(!why.contains(&format!("{} MiB", mib(one))), "{why}");
        assert!(
            why.contains(&format!("budget of {} MiB", mib(budget))),
            "{why}"
        );
        assert!(why.contains("try again later"), "{why}");
        // ... nor does a job larger than the whole budget (never fits).
        let why = Booking::take(&jobs, "l", &hello(1_000_000_000))
            .err()
            .expect("larger than the budget");
        assert!(why.contains("allows; split the job"), "{why}");
        // The first job ends: its memory is given back, and the second fits.
        drop(booked);
        let again = Booking::take(&jobs, "k", &hello(150_000_000)).expect("fits once given back");
        drop(again);
        assert!(Booking::take(&jobs, "m", &hello(150_000_000)).is_ok());
    }
}
