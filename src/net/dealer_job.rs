//! The dealer's job: collect one link per server, then serve correlated randomness until the
//! last server closes its link.

use crate::error::{Error, PeerName};
use crate::model::footprint::{BASE_BYTES, DEALER_MEASURED_WORDS, dealer_bytes, mib};
use crate::mpc::dealer::{Dealer, serve};
use crate::net::config::ServerConfig;
use crate::net::daemon::{
    ASIDE_SECS, DISAGREE, Event, Jobs, answer_link, book, next_event_until, refuse_aside,
    refuse_late,
};
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
/// The servers served must all describe the job alike (server list, description digest, size
/// bound), each connecting certificate must be the one named at its index, each server links
/// once, and every listed server must be one this dealer is configured to trust. Only then are
/// seeds sent: seeds go to the servers of one agreed job, or to nobody. A link that is wrong by itself
/// (its list, its index, a second link of one identity) is refused alone. Links are grouped by
/// the description they give, and the first group in which every listed server linked is
/// served; another description from a server a group lists, when every server of that group is
/// in its list, is a disagreement among the job's own servers and fails the job. So a single
/// server outside the job (one the dealer trusts, for other jobs) that links first with a list
/// of its own forms a group of its own and cannot fail the job (before, the first link's
/// description was the one every other link had to match); two such servers together can
/// still complete a group of their own first, or make one disagree.
///
/// Each group's first link books its estimated peak memory against the dealer's budget
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
        // One group per description of the job the links gave; the first to gather every
        // listed server is served.
        let mut groups: Vec<Group> = Vec::new();
        // The wait restarts only when a link is accepted: refused links cannot keep it open.
        let mut deadline = tokio::time::Instant::now() + wait;
        let served = loop {
            let what = "every server's dealer link";
            let ev = next_event_until(&mut rx, deadline, wait, what).await?;
            let Event::DealerLink {
                hello,
                peer,
                mut streams,
                conn,
            } = ev
            else {
                continue;
            };
            let name = PeerName::Server(hello.server as usize);
            // A server that stops sending (requests, commitments) or reading (material) fails
            // the job after this.
            crate::net::wire::set_silence(&mut streams, cfg.silence());
            // A link that is wrong by itself (its list, its index, a second link of one server
            // identity, whatever it describes: the groups stay as few as the servers this
            // dealer trusts) is refused alone, aside (a peer that does not read its answer
            // does not hold the others).
            let alone = check_link(cfg, &hello, &peer).or_else(|| {
                (groups.iter().any(|g| g.holds(&peer)))
                    .then(|| format!("{peer} has already linked for this job"))
            });
            if let Some(why) = alone {
                warn!(job, "dealer link refused: {why}");
                let ev = Event::DealerLink {
                    hello,
                    peer,
                    streams,
                    conn,
                };
                refuse_aside(ev, why);
                continue;
            }
            let g = match groups.iter().position(|g| g.hello.describes_as(&hello)) {
                Some(g) => g,
                None => {
                    // Another description from a server that a group lists, when every server
                    // that group holds is in this link's list too: the job's own servers
                    // disagree, and the job fails (each passes the reason on). A link whose
                    // server or list has nothing to do with the groups so far (a server outside
                    // the job, linking first with a list of its own) starts a group of its own
                    // and cannot fail the job's.
                    if let Some(other) = groups.iter().find(|g| g.disagrees_with(&hello, &peer)) {
                        let why = other.hello.disagreement(&hello, &peer);
                        let _ =
                            within_aside(answer_link(&mut streams, Some(why.clone()), name)).await;
                        return Err(Error::invalid(why));
                    }
                    groups.push(Group::new(jobs, job, hello.clone()));
                    groups.len() - 1
                }
            };
            let group = &mut groups[g];
            let i = hello.server as usize;
            match &group.over_budget {
                // Over the budget: refused, and the group waits for its other servers' links
                // to refuse them too.
                Some(why) => {
                    let _ = within_aside(answer_link(&mut streams, Some(why.clone()), name)).await;
                }
                None => {
                    // A link that does not take its acknowledgement is dropped (its group too,
                    // if it holds no other link): it cannot fail the job.
                    if !matches!(
                        within_aside(answer_link(&mut streams, None, name)).await,
                        Ok(Ok(()))
                    ) {
                        warn!(job, "{peer} did not take the dealer's acknowledgement");
                        if group.links.iter().all(Option::is_none) {
                            groups.swap_remove(g);
                        }
                        continue;
                    }
                }
            }
            group.links[i] = Some(streams);
            group.conns.push(conn);
            deadline = tokio::time::Instant::now() + wait;
            if group.links.iter().all(Option::is_some) {
                break groups.swap_remove(g);
            }
        };
        // The other groups' links (accepted when they came) are closed, their bookings given
        // back.
        if !groups.is_empty() {
            warn!(
                job,
                others = groups.len(),
                "links describing the job otherwise dropped"
            );
        }
        drop(groups);
        let Group {
            hello,
            links,
            conns,
            booking: _booking,
            over_budget,
        } = served;
        if let Some(why) = over_budget {
            return Err(Error::invalid(why));
        }
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

/// `answer` within the time a refusal sent aside gets ([`ASIDE_SECS`]).
async fn within_aside<F: std::future::Future>(
    answer: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(ASIDE_SECS), answer).await
}

/// Why the dealer refuses a server's link by itself, if it does: a list of 2 to 4 distinct
/// servers it trusts, the certificate named at the claimed index.
fn check_link(cfg: &ServerConfig, hello: &DealerHello, peer: &str) -> Option<String> {
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
    None
}

/// The links that gave one description of a job, with its booking.
struct Group {
    /// The description (server list, digest, size bound).
    hello: DealerHello,
    /// Each listed server's link, once it linked.
    links: Vec<Option<(FrameSend, FrameRecv)>>,
    conns: Vec<quinn::Connection>,
    /// Held while the group waits and while it is served, then given back.
    booking: Option<Booking>,
    /// Why the group does not fit the dealer's memory budget, if it does not.
    over_budget: Option<String>,
}

impl Group {
    /// A group for `hello`'s description, booking its estimated peak.
    fn new(jobs: &Jobs, job: &str, hello: DealerHello) -> Group {
        let (booking, over_budget) = match Booking::take(jobs, job, &hello) {
            Ok(b) => (Some(b), None),
            Err(why) => (None, Some(why)),
        };
        Group {
            links: (0..hello.servers.len()).map(|_| None).collect(),
            hello,
            conns: Vec::new(),
            booking,
            over_budget,
        }
    }

    /// Whether `peer` linked to this group (its certificate is named at a linked index).
    fn holds(&self, peer: &str) -> bool {
        (self.hello.servers.iter().zip(&self.links)).any(|(s, l)| s == peer && l.is_some())
    }

    /// Whether `peer`'s link, describing the job as `hello` (another description than this
    /// group's), is a disagreement among the job's own servers: `peer` is listed here, and
    /// every server that linked to this group is listed in `hello`.
    fn disagrees_with(&self, hello: &DealerHello, peer: &str) -> bool {
        self.hello.servers.iter().any(|s| s == peer)
            && (self.hello.servers.iter().zip(&self.links))
                .filter(|(_, l)| l.is_some())
                .all(|(s, _)| hello.servers.contains(s))
    }
}

impl DealerHello {
    /// Whether `other` describes the job as this does (server list, digest, size bound).
    fn describes_as(&self, other: &DealerHello) -> bool {
        self.servers == other.servers
            && self.digest == other.digest
            && self.max_material_words == other.max_material_words
    }

    /// Why `peer`'s description `other` disagrees with this one.
    fn disagreement(&self, other: &DealerHello, peer: &str) -> String {
        if self.servers == other.servers && self.digest == other.digest {
            format!(
                "{peer}: servers disagree on the job's sizes (bound of {} vs {} words of material)",
                other.max_material_words, self.max_material_words
            )
        } else {
            DISAGREE.to_string()
        }
    }
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
