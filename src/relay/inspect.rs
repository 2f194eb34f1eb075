//! Runs the rule engine beside the body as it arrives.
//!
//! The engine is synchronous (serde reads from `std::io::Read`), so it runs
//! on a blocking thread and reads the de-chunked raw body from a bounded
//! channel; decoding (`Content-Encoding`) happens on that thread too. The
//! verdict is ready when the last byte has been fed.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, InstanceId};
use crate::http::{self, Coding, DecodeCaps};
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
            let raw = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            let mut body = LimitWatch {
                inner: http::decoder(job.coding, raw, job.caps),
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

/// Presents the channel as a `Read` for the blocking engine.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
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
