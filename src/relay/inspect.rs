//! Runs the rule engine beside the body as it arrives.
//!
//! The engine is synchronous (serde reads from `std::io::Read`), so it runs
//! on a blocking thread and reads the de-chunked raw body from a bounded
//! channel. An identity body is checked against the caps on that thread; a
//! coded one (`Content-Encoding`) is decoded on a thread of its own that
//! waits whenever the engine is behind, since one raw piece can decode to
//! megabytes. The verdict is ready when the last byte has been fed.

use std::io::{self, Read};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, InstanceId};
use crate::http::{self, Coding, DecodeCaps, Decoder};
use crate::rules::{self, Block, Context, Document, Rule, Verdict};

/// Chunks in flight between the relay and the engine. Small: the relay
/// waits when the engine is behind, so memory stays bounded.
const CHANNEL_CHUNKS: usize = 8;

/// One body being inspected.
pub struct Inspection {
    tx: Option<mpsc::Sender<Bytes>>,
    task: JoinHandle<Judged>,
}

/// What the engine thread found: a verdict, or a decoding limit that was
/// hit (the body is refused for its size, not for what it says).
pub enum Judged {
    /// The rule engine's verdict.
    Verdict(Verdict),
    /// A decode cap was hit: the HTTP status and why.
    Limit(u16, String),
}

/// What the engine needs to judge one body.
pub struct Job {
    /// The config snapshot of the exchange.
    pub config: Arc<Config>,
    /// Whose rules apply.
    pub instance: InstanceId,
    /// The document the body must be.
    pub doc: Document,
    /// The body's `Content-Encoding`.
    pub coding: Coding,
    /// Caps on decoding.
    pub caps: DecodeCaps,
    /// What is known besides the body.
    pub context: Context,
}

impl Inspection {
    /// Start the engine on its own thread.
    pub fn start(job: Job) -> Inspection {
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let task = tokio::task::spawn_blocking(move || {
            let mut body = LimitWatch {
                inner: ChannelReader::new(rx, job.coding, job.caps.clone()),
                hit: None,
            };
            let policy = &job.config.instance(job.instance).policy;
            let depth = job.config.guard.limits.max_json_depth;
            let verdict =
                rules::evaluate_with_limits(&mut body, job.doc, policy, &job.context, depth);
            match body.hit {
                Some((status, reason)) => Judged::Limit(status, reason),
                None => Judged::Verdict(verdict),
            }
        });
        Inspection { tx: Some(tx), task }
    }

    /// Feed the next piece of the body. Once the engine has decided (it may
    /// stop early on a block) further pieces are dropped.
    pub async fn feed(&mut self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_err() {
                self.tx = None;
            }
        }
    }

    /// Signal the end of the body and wait for the verdict.
    pub async fn finish(mut self) -> Judged {
        self.tx = None;
        match self.task.await {
            Ok(judged) => judged,
            Err(e) => Judged::Verdict(Verdict::Block(Block {
                rule: Rule::Malformed,
                value: format!("inspection failed: {e}"),
                at: "$".into(),
            })),
        }
    }
}

/// Presents the channel, decoded, as a `Read` for the blocking engine.
/// Decoder errors are `InvalidData` errors carrying the [`http::Error`];
/// after the end or an error every read gives it again.
struct ChannelReader {
    source: Source,
    current: Bytes,
    end: Option<Result<(), Failure>>,
}

#[derive(Clone)]
enum Failure {
    Decode(http::Error),
    Thread,
}

impl From<Failure> for io::Error {
    fn from(f: Failure) -> io::Error {
        match f {
            Failure::Decode(e) => io::Error::new(io::ErrorKind::InvalidData, e),
            Failure::Thread => io::Error::other("the decoding thread ended early"),
        }
    }
}

enum Source {
    /// Identity: the raw pieces are the body, once the caps passed them.
    Identity {
        rx: mpsc::Receiver<Bytes>,
        decoder: Option<Decoder>,
    },
    /// Decoded pieces from the decoding thread.
    Decoded(std_mpsc::Receiver<Decoded>),
}

/// What the decoding thread hands the engine.
enum Decoded {
    Piece(Bytes),
    /// The end of the body: how decoding ended.
    End(Result<(), http::Error>),
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Bytes>, coding: Coding, caps: DecodeCaps) -> ChannelReader {
        let decoder = Decoder::new(coding, caps);
        let source = if coding == Coding::Identity {
            Source::Identity {
                rx,
                decoder: Some(decoder),
            }
        } else {
            let (tx, decoded) = std_mpsc::sync_channel(CHANNEL_CHUNKS);
            let spawned = std::thread::Builder::new()
                .name("decode".into())
                .spawn(move || decode(rx, decoder, &tx));
            if let Err(e) = spawned {
                tracing::warn!("cannot start a decoding thread: {e}");
            }
            // Without the thread the channel is closed at once: refused.
            Source::Decoded(decoded)
        };
        ChannelReader {
            source,
            current: Bytes::new(),
            end: None,
        }
    }

    /// The next piece of the decoded body, or how the body ended.
    fn next(&mut self) -> Result<Bytes, Result<(), Failure>> {
        match &mut self.source {
            Source::Identity { rx, decoder } => {
                let Some(d) = decoder.as_mut() else {
                    return Err(Ok(()));
                };
                let end = match rx.blocking_recv() {
                    Some(chunk) => match d.push(&chunk, |_| true) {
                        Ok(()) => return Ok(chunk),
                        Err(e) => Err(e),
                    },
                    None => decoder.take().map_or(Ok(()), |d| d.finish(|_| true)),
                };
                Err(end.map_err(Failure::Decode))
            }
            Source::Decoded(rx) => match rx.recv() {
                Ok(Decoded::Piece(piece)) => Ok(piece),
                Ok(Decoded::End(end)) => Err(end.map_err(Failure::Decode)),
                Err(_) => Err(Err(Failure::Thread)),
            },
        }
    }
}

/// The decoding thread: push each raw piece, hand each decoded piece on,
/// waiting while the engine is behind; stop once the engine is gone.
fn decode(mut rx: mpsc::Receiver<Bytes>, mut decoder: Decoder, tx: &std_mpsc::SyncSender<Decoded>) {
    let gone = std::cell::Cell::new(false);
    let mut send = |piece: &[u8]| {
        let sent = tx.send(Decoded::Piece(Bytes::copy_from_slice(piece)));
        gone.set(sent.is_err());
        sent.is_ok()
    };
    let end = loop {
        match rx.blocking_recv() {
            Some(chunk) => {
                if let Err(e) = decoder.push(&chunk, &mut send) {
                    break Err(e);
                }
                if gone.get() {
                    return;
                }
            }
            None => break decoder.finish(&mut send),
        }
    };
    let _ = tx.send(Decoded::End(end));
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if let Some(end) = &self.end {
                return end.clone().map(|()| 0).map_err(io::Error::from);
            }
            match self.next() {
                Ok(piece) => self.current = piece,
                Err(end) => self.end = Some(end),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Remembers a decode cap error passing through, so the relay can answer
/// it as a size refusal (413) rather than as a malformed document.
struct LimitWatch<R> {
    inner: R,
    hit: Option<(u16, String)>,
}

impl<R: Read> Read for LimitWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if let Some(err @ (http::Error::DecodedTooLarge(_) | http::Error::RatioTooHigh(_))) =
                http::Error::from_io(e)
            {
                self.hit = Some((err.status(), err.to_string()));
            }
        })
    }
}
