//! Where a job's correlated randomness comes from: the choice an operator makes
//! ([`Correlation`], the job option `correlation`) and the source a server runs ([`Source`]).
//!
//! * `dealer` (the default): a dealer that colludes with no server sends seeds and corrections
//!   ([`crate::mpc::dealer`]); cheap, but the dealer is one more party every job must trust.
//! * `ot`: the servers make the material among themselves over oblivious transfer
//!   ([`crate::mpc::ot::source`]); privacy then rests on the servers alone (any one honest),
//!   at a much higher cost for the bilinear form (design.md, "Dealer-free correlations");
//! * `replicated`: exactly three servers make the material from seeds each shares with one
//!   neighbour ([`crate::mpc::replicated`]); no dealer and about a dealer job's cost, but any
//!   two colluding servers hold every mask (private against one curious server of three).

use crate::error::Result;
use crate::mpc::channel::Transport;
use crate::mpc::correlated::{Correlations, Material, Request};
use crate::mpc::dealer::DealerClient;
use crate::mpc::millionaire::MillionaireMaterial;
use crate::mpc::modular::ModMaterial;
use crate::mpc::ot::source::OtSource;
use crate::mpc::pairs::Pairs;
use crate::mpc::protocol::Session;
use crate::mpc::replicated::ReplicatedSource;

/// The job option `correlation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Correlation {
    /// A dealer that colludes with no server.
    #[default]
    Dealer,
    /// The servers themselves, over oblivious transfer; no dealer.
    Ot,
    /// Three servers holding replicated seeds; no dealer.
    Replicated,
}

impl Correlation {
    /// The name used in job files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Correlation::Dealer => "dealer",
            Correlation::Ot => "ot",
            Correlation::Replicated => "replicated",
        }
    }

    /// Whether the job runs with a dealer.
    pub fn has_dealer(self) -> bool {
        self == Correlation::Dealer
    }

    /// Whom a job of `k` servers with this source asks its parties to trust, in one line (a
    /// party logs it before it uploads anything).
    pub fn trust(self, k: usize) -> String {
        match self {
            Correlation::Dealer => format!(
                "correlated randomness from the dealer: private while the dealer colludes with \
                 none of the {k} servers and not all of them collude"
            ),
            Correlation::Ot => format!(
                "no dealer (correlation = \"ot\"): private while not all {k} servers collude, \
                 if they follow the protocol"
            ),
            Correlation::Replicated => format!(
                "no dealer (correlation = \"replicated\"): private against any one of the {k} \
                 servers that follows the protocol; two colluding servers would see both inputs"
            ),
        }
    }
}

/// A server's correlation source for one job.
#[derive(Debug)]
pub enum Source {
    /// The dealer's seed and corrections.
    Dealer(DealerClient),
    /// Oblivious transfer among the servers.
    Ot(OtSource),
    /// Replicated seeds among three servers.
    Replicated(ReplicatedSource),
}

impl Source {
    /// The source `c` names: for the dealer, this server's seed is received on the session's
    /// dealer link; for OT, a fresh seed (the OT links are set up with the first request); for
    /// replicated seeds, nothing yet (they are agreed on with the first request).
    pub async fn connect<T: Transport>(c: Correlation, session: &mut Session<T>) -> Result<Source> {
        Ok(match c {
            Correlation::Dealer => Source::Dealer(DealerClient::connect(session).await?),
            Correlation::Ot => Source::Ot(OtSource::new()),
            Correlation::Replicated => Source::Replicated(ReplicatedSource::new()),
        })
    }
}

impl Correlations for Source {
    async fn fetch<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        req: &Request,
    ) -> Result<Material> {
        match self {
            Source::Dealer(d) => d.fetch(session, req).await,
            Source::Ot(o) => o.fetch(session, req).await,
            Source::Replicated(r) => r.fetch(session, req).await,
        }
    }

    fn makes_millionaire_material(&self, servers: usize) -> bool {
        match self {
            Source::Ot(o) => o.makes_millionaire_material(servers),
            Source::Dealer(_) | Source::Replicated(_) => false,
        }
    }

    async fn millionaire<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        sizes: (usize, u32, usize),
    ) -> Result<Option<MillionaireMaterial>> {
        match self {
            Source::Ot(o) => o.millionaire(session, sizes).await,
            Source::Dealer(_) | Source::Replicated(_) => Ok(None),
        }
    }

    async fn bit_products<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        bits: &[u64],
        n: usize,
        y: &[u64],
        fanout: usize,
    ) -> Result<Option<Vec<u64>>> {
        match self {
            Source::Ot(o) => o.bit_products(session, bits, n, y, fanout).await,
            Source::Dealer(_) | Source::Replicated(_) => Ok(None),
        }
    }

    async fn scores_mod<T: Transport>(
        &mut self,
        session: &mut Session<T>,
        d: usize,
        pairs: &Pairs,
        blocks: &[usize],
    ) -> Result<Option<ModMaterial>> {
        match self {
            Source::Ot(o) => o.scores_mod(session, d, pairs, blocks).await,
            Source::Dealer(_) | Source::Replicated(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_states_whom_it_trusts() {
        assert!(
            Correlation::Dealer
                .trust(2)
                .contains("dealer colludes with none of the 2")
        );
        assert!(
            Correlation::Ot
                .trust(3)
                .contains("not all 3 servers collude")
        );
        let r = Correlation::Replicated.trust(3);
        assert!(
            r.contains("any one of the 3") && r.contains("two colluding servers"),
            "{r}"
        );
    }
}
