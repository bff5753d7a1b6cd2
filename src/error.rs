//! The library's error type.
//!
//! Every failure that can be caused by input (a file, a peer, a configuration) is an [`Error`]
//! value with a message that says what happened and what to check; nothing in the library panics
//! on bad input.

use std::fmt;

/// Errors raised by the MPC core and the layers built on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A real number cannot be encoded in fixed point without wrapping around.
    #[error(
        "value {value} is outside the fixed-point safe range [{min}, {max}] ({frac_bits} fractional bits)"
    )]
    Range {
        /// The offending value.
        value: f64,
        /// Smallest encodable value.
        min: f64,
        /// Largest encodable value.
        max: f64,
        /// Fractional bits of the encoding.
        frac_bits: u32,
    },
    /// Arguments that do not fit together (sizes, counts, parameters).
    #[error("{0}")]
    Invalid(String),
    /// A peer sent something that does not fit the protocol step (wrong length, wrong kind).
    #[error("protocol violation by {peer}: {what}")]
    Protocol {
        /// Who sent it.
        peer: PeerName,
        /// What was wrong.
        what: String,
    },
    /// A peer stopped the job on purpose and said why (for example the dealer refusing a
    /// request the servers did not all agree on).
    #[error("{peer} refused: {why}")]
    Refused {
        /// Who refused.
        peer: PeerName,
        /// Its reason.
        why: String,
    },
    /// The transport failed: a peer disconnected, a channel closed, a stream reset.
    #[error("transport failure with {peer}: {what}")]
    Transport {
        /// The peer on the other side.
        peer: PeerName,
        /// What happened.
        what: String,
    },
}

/// A printable name of a protocol participant, used in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerName {
    /// Compute server with this index.
    Server(usize),
    /// The correlated-randomness dealer.
    Dealer,
    /// Party A (0) or B (1).
    Party(u8),
    /// Another worker process of the same logical compute server ([`crate::mpc::mesh`]).
    Worker(usize),
    /// A peer whose role is not known yet (before its first message).
    Unknown,
}

impl fmt::Display for PeerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerName::Server(i) => write!(f, "server {i}"),
            PeerName::Dealer => write!(f, "the dealer"),
            PeerName::Party(0) => write!(f, "party A"),
            PeerName::Party(_) => write!(f, "party B"),
            PeerName::Worker(i) => write!(f, "worker {i}"),
            PeerName::Unknown => write!(f, "a peer"),
        }
    }
}

/// Result alias for the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A protocol violation by `peer`.
    pub fn protocol(peer: PeerName, what: impl Into<String>) -> Self {
        Error::Protocol {
            peer,
            what: what.into(),
        }
    }

    /// `peer` sent a data message of `words` words where the round takes exactly `expected`.
    pub fn wrong_length(peer: PeerName, words: u64, expected: usize) -> Self {
        Error::protocol(
            peer,
            format!("data message of {words} words, expected exactly {expected}"),
        )
    }

    /// A transport failure with `peer`.
    pub fn transport(peer: PeerName, what: impl Into<String>) -> Self {
        Error::Transport {
            peer,
            what: what.into(),
        }
    }

    /// An invalid argument.
    pub fn invalid(what: impl Into<String>) -> Self {
        Error::Invalid(what.into())
    }
}

/// Longest text from a peer (a refusal's or a failed job's reason) kept in an error, in
/// characters.
pub const PEER_TEXT_CHARS: usize = 1000;

/// A peer's free text made safe for errors and logs: at most [`PEER_TEXT_CHARS`] characters
/// (the rest cut, and said so), control characters (newlines, terminal escapes), line and
/// paragraph separators and bidirectional controls escaped (`\u{..}`), so a peer can neither
/// flood a log nor forge or reorder lines in it.
pub fn peer_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(PEER_TEXT_CHARS + 16));
    for (i, c) in s.chars().enumerate() {
        if i == PEER_TEXT_CHARS {
            out.push_str(" [cut]");
            break;
        }
        // Controls, and the characters some viewers take for line breaks or that reorder
        // text (bidirectional overrides and isolates).
        let hidden = matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c);
        if c.is_control() || hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_text_is_cut_and_its_control_characters_escaped() {
        assert_eq!(peer_text("job refused: memory"), "job refused: memory");
        assert_eq!(
            peer_text("ok\nERROR forged line\u{1b}[2J"),
            "ok\\u{a}ERROR forged line\\u{1b}[2J"
        );
        assert_eq!(peer_text("a\u{2028}b\u{202e}c"), "a\\u{2028}b\\u{202e}c");
        let long = "x".repeat(16 << 20);
        let cut = peer_text(&long);
        assert_eq!(cut.len(), PEER_TEXT_CHARS + " [cut]".len());
        assert!(cut.ends_with(" [cut]"));
        assert_eq!(
            peer_text(&"é".repeat(PEER_TEXT_CHARS)),
            "é".repeat(PEER_TEXT_CHARS)
        );
    }
}
