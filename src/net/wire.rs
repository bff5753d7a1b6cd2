//! Framing on QUIC streams.
//!
//! Every frame starts with a one-byte kind and a length: a **control** frame (`C`, `u32` byte
//! length, bincode 2 payload) or a **words** frame (`W`, `u64` word count, then the words as
//! little-endian bytes, written and read in 1 MiB chunks so no second copy of a large vector is
//! built).
//!
//! **Every reader states the size it expects.** A words frame is read with [`FrameRecv::words_exact`]
//! (the receiver knows the length: a share of a declared upload, a result of `rows x width`, a
//! peer's message in an exchange, whose length the round fixes) or [`FrameRecv::words_max`] (a bound derived from the
//! job's declared sizes). The announced length is checked against that expectation, and against
//! the node's configured ceiling, before anything is allocated; the buffer then grows only as
//! data actually arrives (doubling, up to the announced length: at most twice what has arrived),
//! so a peer that announces a large length and sends nothing costs nothing.
//!
//! **Refusals.** In place of any frame a peer may send a [`Refusal`] control frame with its
//! reason; a reader waiting for data returns it as an error naming the peer.

use crate::error::{Error, PeerName, Result};
use serde::{Serialize, de::DeserializeOwned};

const CONTROL: u8 = b'C';
const WORDS: u8 = b'W';
const CHUNK_WORDS: usize = 1 << 17;
/// Largest control message accepted (bytes).
pub const MAX_CONTROL: u32 = 16 << 20;

fn cfg() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Most bytes a control message's decoding may claim: every length it announces (a string's,
/// a vector's) and every value it holds counts its size in memory against this before
/// anything is allocated for it. Without a limit bincode allocates an announced string length
/// whole: ten bytes announcing `2^64 - 1` panicked, `2^40` aborted the process. A value takes
/// at most 8 bytes in memory per byte on the wire (`u64` as a one-byte varint), so no message
/// within [`MAX_CONTROL`] is refused for it.
const MAX_CONTROL_CLAIM: usize = 8 * MAX_CONTROL as usize;

/// Decodes `T` from a file of `len` bytes read through `r`, every length it announces bounded
/// (as for control messages) by eight times the file's size, rounded up to a power of four,
/// before anything is allocated for it: a damaged or forged file is refused, not allocated.
pub fn decode_file<T: DeserializeOwned>(
    r: &mut impl std::io::Read,
    len: u64,
) -> std::result::Result<T, bincode::error::DecodeError> {
    let claim = len.saturating_mul(8);
    // bincode's limit is a type parameter: one decoder per power of four.
    macro_rules! within {
        ($($bits:literal)*) => {$(
            if claim <= 1u64 << $bits {
                let limited = bincode::config::standard().with_limit::<{ 1usize << $bits }>();
                return bincode::serde::decode_from_std_read(r, limited);
            }
        )*};
    }
    within!(20 22 24 26 28 30 32 34 36 38 40 42 44 46);
    Err(bincode::error::DecodeError::Other(
        "the file is larger than any this program writes",
    ))
}

/// Decodes a whole control message body from `peer`, bounded by [`MAX_CONTROL_CLAIM`].
fn decode_control<T: DeserializeOwned>(body: &[u8], peer: PeerName) -> Result<T> {
    let limited = bincode::config::standard().with_limit::<MAX_CONTROL_CLAIM>();
    let (msg, used) = bincode::serde::decode_from_slice(body, limited)
        .map_err(|e| Error::protocol(peer, format!("control message does not decode: {e}")))?;
    if used != body.len() {
        return Err(Error::protocol(peer, "control message has trailing bytes"));
    }
    Ok(msg)
}

/// Sent in place of the next frame by a peer that stops, with its reason.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Refusal(pub String);

/// The sending half of a framed stream.
pub struct FrameSend {
    s: quinn::SendStream,
    peer: PeerName,
    /// Longest wait for flow control to take the next bytes (none: unbounded),
    /// [`FrameSend::set_silence`].
    silence: Option<std::time::Duration>,
}

/// The receiving half of a framed stream.
pub struct FrameRecv {
    r: quinn::RecvStream,
    peer: PeerName,
    max_bytes: u64,
    /// Longest wait for the peer's next bytes (none: unbounded), [`FrameRecv::set_silence`].
    silence: Option<std::time::Duration>,
}

/// Wraps a bidirectional QUIC stream to `peer`, accepting frames up to `max_bytes`.
pub fn framed(
    s: quinn::SendStream,
    r: quinn::RecvStream,
    peer: PeerName,
    max_bytes: u64,
) -> (FrameSend, FrameRecv) {
    (
        FrameSend {
            s,
            peer,
            silence: None,
        },
        FrameRecv {
            r,
            peer,
            max_bytes,
            silence: None,
        },
    )
}

/// Bounds both directions of a link by `d` ([`FrameRecv::set_silence`],
/// [`FrameSend::set_silence`]).
pub fn set_silence(link: &mut (FrameSend, FrameRecv), d: std::time::Duration) {
    link.0.set_silence(d);
    link.1.set_silence(d);
}

/// A stream error, and the connection error behind it if the whole connection ended.
trait StreamError: std::fmt::Display {
    fn connection(&self) -> Option<&quinn::ConnectionError>;
}

impl StreamError for &str {
    fn connection(&self) -> Option<&quinn::ConnectionError> {
        None
    }
}

impl StreamError for quinn::WriteError {
    fn connection(&self) -> Option<&quinn::ConnectionError> {
        match self {
            quinn::WriteError::ConnectionLost(c) => Some(c),
            _ => None,
        }
    }
}

impl StreamError for quinn::ReadError {
    fn connection(&self) -> Option<&quinn::ConnectionError> {
        match self {
            quinn::ReadError::ConnectionLost(c) => Some(c),
            _ => None,
        }
    }
}

impl StreamError for quinn::ReadExactError {
    fn connection(&self) -> Option<&quinn::ConnectionError> {
        match self {
            quinn::ReadExactError::ReadError(e) => e.connection(),
            _ => None,
        }
    }
}

/// What went wrong, in words: why the connection ended if it did, else the stream error.
fn describe(e: &impl StreamError) -> String {
    match e.connection() {
        Some(c) => crate::net::liveness::explain(c, "the peer", None),
        None => e.to_string(),
    }
}

/// The error for a peer that let a wait of `d` pass (`what`: "sent nothing" or "read
/// nothing").
fn silent(peer: PeerName, d: std::time::Duration, what: &str) -> Error {
    Error::protocol(
        peer,
        format!(
            "{what} for {} s while this node waited on it (limits.silence_secs): a live peer \
             that stopped following the protocol",
            d.as_secs()
        ),
    )
}

impl FrameSend {
    fn lost(&self, e: impl StreamError) -> Error {
        Error::transport(self.peer, format!("sending failed: {}", describe(&e)))
    }

    /// Bounds every wait for the peer to take this node's next bytes (QUIC flow control) by
    /// `d`: a live peer that stops reading fails the send, naming it, instead of holding this
    /// node's job forever.
    pub fn set_silence(&mut self, d: std::time::Duration) {
        self.silence = Some(d);
    }

    /// `write_all`, bounded by the silence limit.
    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let r = match self.silence {
            None => self.s.write_all(bytes).await,
            Some(d) => tokio::time::timeout(d, self.s.write_all(bytes))
                .await
                .map_err(|_| silent(self.peer, d, "read nothing"))?,
        };
        r.map_err(|e| self.lost(e))
    }

    /// Sends a bincode-encoded control message.
    pub async fn control<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let body = bincode::serde::encode_to_vec(msg, cfg())
            .map_err(|e| Error::invalid(format!("encoding a control message: {e}")))?;
        let mut head = [0u8; 5];
        head[0] = CONTROL;
        head[1..].copy_from_slice(&(body.len() as u32).to_le_bytes());
        self.write(&head).await?;
        self.write(&body).await
    }

    /// Streams a vector of ring elements.
    pub async fn words(&mut self, w: &[u64]) -> Result<()> {
        self.words_with(w.len(), CHUNK_WORDS, |at, out| {
            out.copy_from_slice(&w[at..at + out.len()]);
            Ok(())
        })
        .await
    }

    /// Streams `len` ring elements produced `block` at a time by `fill(at, out)` (words
    /// `at..at + out.len()`), as one data frame like [`FrameSend::words`]: the sender never holds
    /// more than a block. If `fill` fails, the frame stays incomplete (the peer sees a short
    /// frame, never a wrong one) and the error is returned.
    pub async fn words_with(
        &mut self,
        len: usize,
        block: usize,
        mut fill: impl FnMut(usize, &mut [u64]) -> Result<()>,
    ) -> Result<()> {
        let mut head = [0u8; 9];
        head[0] = WORDS;
        head[1..].copy_from_slice(&(len as u64).to_le_bytes());
        self.write(&head).await?;
        // Both buffers may hold data in the clear (a party's rows): wiped when dropped.
        let mut words = zeroize::Zeroizing::new(vec![0u64; block.max(1).min(len)]);
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(8 * CHUNK_WORDS.min(len)));
        let mut at = 0;
        while at < len {
            let part = &mut words[..(len - at).min(block.max(1))];
            fill(at, part)?;
            for chunk in part.chunks(CHUNK_WORDS) {
                bytes.clear();
                for v in chunk {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                self.write(&bytes).await?;
            }
            at += part.len();
        }
        Ok(())
    }

    /// Tells the peer that this node stops, and why (in place of the frame it waits for).
    pub async fn refuse(&mut self, why: &str) -> Result<()> {
        self.control(&Refusal(why.to_string())).await
    }

    /// Names the peer in later error messages.
    pub fn set_peer(&mut self, peer: PeerName) {
        self.peer = peer;
    }

    /// Finishes the stream (no more frames) and waits, at most 30 s, until the peer has
    /// acknowledged everything sent, so closing the connection afterwards loses nothing.
    pub async fn finish(&mut self) {
        if self.s.finish().is_ok() {
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(30), self.s.stopped()).await;
        }
    }
}

impl FrameRecv {
    /// Names the peer in later error messages.
    pub fn set_peer(&mut self, peer: PeerName) {
        self.peer = peer;
    }

    /// Bounds every wait for the peer's next bytes by `d`: a live peer (its keep-alives hold
    /// the connection open) that stops sending while this node waits on it fails the wait,
    /// naming it, instead of holding this node's job (and its parties' bookings) forever.
    pub fn set_silence(&mut self, d: std::time::Duration) {
        self.silence = Some(d);
    }

    fn lost(&self, e: impl StreamError) -> Error {
        Error::transport(self.peer, format!("receiving failed: {}", describe(&e)))
    }

    /// `read_exact`, bounded by the silence limit: the stream's own outcome, or an error for a
    /// peer that sent nothing for that long.
    async fn read_raw(
        &mut self,
        buf: &mut [u8],
    ) -> Result<std::result::Result<(), quinn::ReadExactError>> {
        match self.silence {
            None => Ok(self.r.read_exact(buf).await),
            Some(d) => tokio::time::timeout(d, self.r.read_exact(buf))
                .await
                .map_err(|_| silent(self.peer, d, "sent nothing")),
        }
    }

    /// [`FrameRecv::read_raw`], a stream error as a lost link.
    async fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        self.read_raw(buf).await?.map_err(|e| self.lost(e))
    }

    async fn kind(&mut self, want: u8) -> Result<()> {
        let mut k = [0u8; 1];
        self.read(&mut k).await?;
        if k[0] != want {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "expected a {} frame, received kind {:#04x}",
                    if want == CONTROL { "control" } else { "data" },
                    k[0]
                ),
            ));
        }
        Ok(())
    }

    /// Receives a control message.
    pub async fn control<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.control_within(MAX_CONTROL).await
    }

    /// Receives a control message of at most `max` bytes (at most [`MAX_CONTROL`]).
    pub async fn control_within<T: DeserializeOwned>(&mut self, max: u32) -> Result<T> {
        self.kind(CONTROL).await?;
        self.control_body(max.min(MAX_CONTROL)).await
    }

    async fn control_body<T: DeserializeOwned>(&mut self, max: u32) -> Result<T> {
        let mut len = [0u8; 4];
        self.read(&mut len).await?;
        let len = u32::from_le_bytes(len);
        if len > max {
            return Err(Error::protocol(
                self.peer,
                format!("control message of {len} bytes exceeds the limit of {max}"),
            ));
        }
        let mut body = Vec::with_capacity((len as usize).min(1 << 16));
        let mut left = len as usize;
        while left > 0 {
            let at = body.len();
            let c = left.min(1 << 16);
            body.reserve_exact(c);
            body.resize(at + c, 0);
            self.read(&mut body[at..]).await?;
            left -= c;
        }
        decode_control(&body, self.peer)
    }

    /// Receives a vector of exactly `n` ring elements.
    pub async fn words_exact(&mut self, n: usize) -> Result<Vec<u64>> {
        self.data(n, true)
            .await?
            .ok_or_else(|| self.lost("the stream ended before the expected data"))
    }

    /// Receives a vector of at most `max` ring elements.
    pub async fn words_max(&mut self, max: usize) -> Result<Vec<u64>> {
        self.data(max, false)
            .await?
            .ok_or_else(|| self.lost("the stream ended before the expected data"))
    }

    /// Receives a vector of at most `max` ring elements, or `None` if the peer finished the
    /// stream cleanly before a new frame.
    pub async fn next_words(&mut self, max: usize) -> Result<Option<Vec<u64>>> {
        self.data(max, false).await
    }

    /// Receives a data frame of exactly `n` ring elements without holding it: `sink(at, words)`
    /// gets words `at..at + words.len()` in pieces of `block` words (the last one shorter). The
    /// frame may exceed this stream's message limit up to `max_bytes` (the caller bounds what
    /// it keeps, a file for instance). If `sink` fails, its error is returned and the rest of
    /// the frame is not read.
    pub async fn words_into(
        &mut self,
        n: usize,
        block: usize,
        max_bytes: u64,
        mut sink: impl FnMut(usize, &[u64]) -> Result<()>,
    ) -> Result<()> {
        let announced = self
            .data_head(n, true, max_bytes)
            .await?
            .ok_or_else(|| self.lost("the stream ended before the expected data"))?;
        let block = block.max(1);
        let mut buf = zeroize::Zeroizing::new(vec![0u64; block.min(announced)]);
        let mut at = 0;
        while at < announced {
            let piece = &mut buf[..(announced - at).min(block)];
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(piece);
            self.read(bytes).await?;
            if cfg!(target_endian = "big") {
                piece.iter_mut().for_each(|v| *v = u64::from_le(*v));
            }
            sink(at, piece)?;
            at += piece.len();
        }
        Ok(())
    }

    /// The next data frame: exactly `n` words, or at most `n` unless `exact`. A refusal in its
    /// place becomes an error with the peer's reason.
    async fn data(&mut self, n: usize, exact: bool) -> Result<Option<Vec<u64>>> {
        let Some(announced) = self.data_head(n, exact, self.max_bytes).await? else {
            return Ok(None);
        };
        let mut out: Vec<u64> = Vec::with_capacity(announced.min(CHUNK_WORDS));
        let mut left = announced;
        while left > 0 {
            let at = out.len();
            let c = left.min(CHUNK_WORDS);
            if out.capacity() < at + c {
                // Doubling (up to the announced length): the buffer still grows only as data
                // arrives, at most twice what has, and each word is copied a bounded number of
                // times on average. (Growing by one chunk at a time copied the whole buffer for
                // every chunk: a 420 MB message cost some 400 copies of half of it, and the
                // page faults of each, most of a dealer-free norms run.)
                let grow = (2 * out.capacity()).max(at + c).min(announced);
                out.reserve_exact(grow - at);
            }
            out.resize(at + c, 0);
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[at..]);
            self.read(bytes).await?;
            left -= c;
        }
        if cfg!(target_endian = "big") {
            out.iter_mut().for_each(|v| *v = u64::from_le(*v));
        }
        Ok(Some(out))
    }

    /// The head of the next data frame: its length in words, checked against `n` (exactly, or
    /// at most) and `max_bytes`; `None` if the peer finished the stream cleanly first. A
    /// refusal in its place becomes an error with the peer's reason.
    async fn data_head(&mut self, n: usize, exact: bool, max_bytes: u64) -> Result<Option<usize>> {
        let mut k = [0u8; 1];
        match self.read_raw(&mut k).await? {
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(self.lost(e)),
            Ok(()) if k[0] == CONTROL => {
                let Refusal(why) = self.control_body(MAX_CONTROL).await.map_err(|_| {
                    Error::protocol(self.peer, "expected a data frame, received a control frame")
                })?;
                return Err(Error::Refused {
                    peer: self.peer,
                    why: crate::error::peer_text(&why),
                });
            }
            Ok(()) if k[0] != WORDS => {
                return Err(Error::protocol(
                    self.peer,
                    format!("expected a data frame, received kind {:#04x}", k[0]),
                ));
            }
            Ok(()) => {}
        }
        let mut len = [0u8; 8];
        self.read(&mut len).await?;
        let announced = u64::from_le_bytes(len);
        let bytes = announced.saturating_mul(8);
        if exact && announced != n as u64 {
            return Err(Error::wrong_length(self.peer, announced, n));
        }
        if announced > n as u64 || bytes > max_bytes {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "data message of {announced} words exceeds the limit of {} words",
                    (n as u64).min(max_bytes / 8)
                ),
            ));
        }
        Ok(Some(announced as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A string announcing more bytes than the message holds is refused, naming the peer, before
    /// anything is allocated for it (unbounded, `2^64 - 1` panicked and `2^40` aborted).
    #[test]
    fn an_announced_length_beyond_the_message_is_refused_without_allocating() {
        for len in [u64::MAX, 1 << 40, MAX_CONTROL_CLAIM as u64 + 1] {
            // A `Refusal` (one string): varint tag 0xFD, then the length in 8 bytes.
            let mut body = vec![0xFD];
            body.extend_from_slice(&len.to_le_bytes());
            let e = decode_control::<Refusal>(&body, PeerName::Server(1))
                .expect_err("the length must be refused")
                .to_string();
            assert!(
                e.contains("server 1") && e.contains("does not decode"),
                "{e}"
            );
        }
        // The control: a message within the limit decodes.
        let body = bincode::serde::encode_to_vec(Refusal("no".into()), cfg()).unwrap();
        let ok: Refusal = decode_control(&body, PeerName::Server(1)).unwrap();
        assert_eq!(ok.0, "no");
        let mut long = body.clone();
        long.push(0);
        assert!(decode_control::<Refusal>(&long, PeerName::Server(1)).is_err());
    }
}
