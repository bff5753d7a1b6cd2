//! Framing on QUIC streams.
//!
//! Every frame starts with a one-byte kind and a length: a **control** frame (`C`, `u32` byte
//! length, bincode 2 payload) or a **words** frame (`W`, `u64` word count, then the words as
//! little-endian bytes, written and read in 1 MiB chunks so no second copy of a large vector is
//! built). Lengths are checked against the receiver's limit before anything is allocated, so a
//! peer cannot make a node allocate more than it accepts.

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

/// The sending half of a framed stream.
pub struct FrameSend {
    s: quinn::SendStream,
    peer: PeerName,
}

/// The receiving half of a framed stream.
pub struct FrameRecv {
    r: quinn::RecvStream,
    peer: PeerName,
    max_bytes: u64,
}

/// Wraps a bidirectional QUIC stream to `peer`, accepting frames up to `max_bytes`.
pub fn framed(
    s: quinn::SendStream,
    r: quinn::RecvStream,
    peer: PeerName,
    max_bytes: u64,
) -> (FrameSend, FrameRecv) {
    (FrameSend { s, peer }, FrameRecv { r, peer, max_bytes })
}

/// A stream error, and the connection error behind it if the whole connection ended.
trait StreamError: std::fmt::Display {
    fn connection(&self) -> Option<&quinn::ConnectionError>;
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

impl FrameSend {
    fn lost(&self, e: impl StreamError) -> Error {
        Error::transport(self.peer, format!("sending failed: {}", describe(&e)))
    }

    /// Sends a bincode-encoded control message.
    pub async fn control<T: Serialize>(&mut self, msg: &T) -> Result<()> {
        let body = bincode::serde::encode_to_vec(msg, cfg())
            .map_err(|e| Error::invalid(format!("encoding a control message: {e}")))?;
        let mut head = [0u8; 5];
        head[0] = CONTROL;
        head[1..].copy_from_slice(&(body.len() as u32).to_le_bytes());
        self.s.write_all(&head).await.map_err(|e| self.lost(e))?;
        self.s.write_all(&body).await.map_err(|e| self.lost(e))
    }

    /// Streams a vector of ring elements.
    pub async fn words(&mut self, w: &[u64]) -> Result<()> {
        let mut head = [0u8; 9];
        head[0] = WORDS;
        head[1..].copy_from_slice(&(w.len() as u64).to_le_bytes());
        self.s.write_all(&head).await.map_err(|e| self.lost(e))?;
        let mut buf = Vec::with_capacity(8 * CHUNK_WORDS.min(w.len()));
        for chunk in w.chunks(CHUNK_WORDS) {
            buf.clear();
            for v in chunk {
                buf.extend_from_slice(&v.to_le_bytes());
            }
            self.s.write_all(&buf).await.map_err(|e| self.lost(e))?;
        }
        Ok(())
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

    fn lost(&self, e: impl StreamError) -> Error {
        Error::transport(self.peer, format!("receiving failed: {}", describe(&e)))
    }

    async fn kind(&mut self, want: u8) -> Result<()> {
        let mut k = [0u8; 1];
        self.r.read_exact(&mut k).await.map_err(|e| self.lost(e))?;
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
        self.kind(CONTROL).await?;
        let mut len = [0u8; 4];
        self.r
            .read_exact(&mut len)
            .await
            .map_err(|e| self.lost(e))?;
        let len = u32::from_le_bytes(len);
        if len > MAX_CONTROL {
            return Err(Error::protocol(
                self.peer,
                format!("control message of {len} bytes exceeds the limit of {MAX_CONTROL}"),
            ));
        }
        let mut body = vec![0u8; len as usize];
        self.r
            .read_exact(&mut body)
            .await
            .map_err(|e| self.lost(e))?;
        let (msg, used) = bincode::serde::decode_from_slice(&body, cfg()).map_err(|e| {
            Error::protocol(self.peer, format!("control message does not decode: {e}"))
        })?;
        if used != body.len() {
            return Err(Error::protocol(
                self.peer,
                "control message has trailing bytes",
            ));
        }
        Ok(msg)
    }

    /// Receives a vector of ring elements, or `None` if the peer finished the stream cleanly
    /// before a new frame.
    pub async fn next_words(&mut self) -> Result<Option<Vec<u64>>> {
        let mut k = [0u8; 1];
        match self.r.read_exact(&mut k).await {
            Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
            Err(e) => return Err(self.lost(e)),
            Ok(()) if k[0] != WORDS => {
                return Err(Error::protocol(
                    self.peer,
                    format!("expected a data frame, received kind {:#04x}", k[0]),
                ));
            }
            Ok(()) => {}
        }
        self.words_body().await.map(Some)
    }

    /// Receives a vector of ring elements.
    pub async fn words(&mut self) -> Result<Vec<u64>> {
        self.kind(WORDS).await?;
        self.words_body().await
    }

    async fn words_body(&mut self) -> Result<Vec<u64>> {
        let mut len = [0u8; 8];
        self.r
            .read_exact(&mut len)
            .await
            .map_err(|e| self.lost(e))?;
        let n = u64::from_le_bytes(len);
        if n.saturating_mul(8) > self.max_bytes {
            return Err(Error::protocol(
                self.peer,
                format!(
                    "data message of {} bytes exceeds the limit of {} bytes",
                    n.saturating_mul(8),
                    self.max_bytes
                ),
            ));
        }
        let mut out = vec![0u64; n as usize];
        for chunk in out.chunks_mut(CHUNK_WORDS) {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(chunk);
            self.r.read_exact(bytes).await.map_err(|e| self.lost(e))?;
            if cfg!(target_endian = "big") {
                chunk.iter_mut().for_each(|v| *v = u64::from_le(*v));
            }
        }
        Ok(out)
    }
}
