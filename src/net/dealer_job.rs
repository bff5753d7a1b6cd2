//! The dealer's job: collect one link per server, then serve correlated randomness until the
//! last server closes its link.

use crate::error::{Error, PeerName};
use crate::mpc::dealer::{Dealer, serve};
use crate::net::config::ServerConfig;
use crate::net::daemon::{DISAGREE, Event, answer_link, next_event};
use crate::net::job::DealerHello;
use crate::net::quic::QuicDealer;
use crate::net::wire::{FrameRecv, FrameSend};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info};

/// The dealer's job: collect one link per server, then serve corrections until the last
/// server closes its link.
///
/// Every link must describe the same job (server list, description digest, size bound), the
/// connecting certificate must be the one named at the claimed index, each index links once,
/// and every listed server must be one this dealer is configured to trust. Only then are seeds
/// sent. A link that breaks a rule is refused and fails the job: seeds go to the servers of one
/// agreed job, or to nobody.
pub(crate) async fn dealer_job(
    cfg: &ServerConfig,
    job: &str,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let result = async {
        let mut links: Vec<Option<(FrameSend, FrameRecv)>> = Vec::new();
        let mut conns = Vec::new();
        let mut agreed: Option<DealerHello> = None;
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
            let failed = bad.clone();
            answer_link(&mut streams, bad, PeerName::Server(hello.server as usize)).await?;
            if let Some(why) = failed {
                return Err(Error::invalid(why));
            }
            links.resize_with(first.servers.len(), || None);
            links[hello.server as usize] = Some(streams);
            conns.push(conn);
            if links.iter().all(Option::is_some) {
                break;
            }
        }
        let hello = agreed.expect("set with the first link");
        let k = links.len();
        let ceiling = (cfg.max_bytes() / 8) as usize;
        let max_words = (hello.max_material_words as usize).min(ceiling);
        let mut net = QuicDealer::new(links.into_iter().map(|l| l.expect("all present")).collect());
        let stats = serve(Dealer::new(k)?.with_max_words(max_words), &mut net).await?;
        drop(conns);
        Ok::<_, Error>(stats)
    }
    .await;
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
