//! The dealer's job: collect one link per server, then serve correlated randomness until the
//! last server closes its link.

use crate::error::{Error, PeerName};
use crate::mpc::dealer::{Dealer, serve};
use crate::net::config::ServerConfig;
use crate::net::daemon::{DISAGREE, Event, answer_link, next_event};
use crate::net::quic::QuicDealer;
use crate::net::wire::{FrameRecv, FrameSend};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info};

/// The dealer's job: collect one link per server, then serve corrections until the last
/// server closes its link.
pub(crate) async fn dealer_job(
    cfg: &ServerConfig,
    job: &str,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    let wait = Duration::from_secs(cfg.limits.wait_secs);
    let result = async {
        let mut links: Vec<Option<(FrameSend, FrameRecv)>> = Vec::new();
        let mut conns = Vec::new();
        let mut want: Option<(usize, u64)> = None;
        loop {
            let ev = next_event(&mut rx, wait, "every server's dealer link").await?;
            let Event::DealerLink {
                server,
                servers,
                peer,
                digest,
                mut streams,
                conn,
            } = ev
            else {
                continue;
            };
            let (k, d) = *want.get_or_insert((servers, digest));
            let bad = if crate::mpc::share::check_servers(servers).is_err()
                || servers != k
                || server >= k
            {
                Some(format!("{peer}: inconsistent server count or index"))
            } else {
                (digest != d).then(|| DISAGREE.to_string())
            };
            answer_link(&mut streams, bad, PeerName::Server(server)).await?;
            links.resize_with(k, || None);
            links[server] = Some(streams);
            conns.push(conn);
            if links.iter().all(Option::is_some) {
                break;
            }
        }
        let k = links.len();
        let mut net = QuicDealer::new(links.into_iter().map(|l| l.expect("all present")).collect());
        let stats = serve(Dealer::new(k)?, &mut net).await?;
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
