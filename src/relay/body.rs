//! The body machinery both judging phases share: reading one body
//! (length, chunked or close-delimited) into the hold while the rule engine
//! judges it piece by piece ([`super::inspect`]), paced so a slow peer cannot hold a
//! worker; and [`pass`], the one place a blocking verdict ends an exchange.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::hold::Hold;
use super::inspect::{Inspection, Job, Judged};
use super::io::Peer;
use super::log::Outcome;
use super::reject::{Reject, Side};
use crate::config::{Config, Enforcement};
use crate::http::{self, BodyKind, Chunk, ChunkedDecoder, DecodeCaps};
use crate::rules::{Pass, Verdict};

/// Read size; large reads matter for big events.
const READ_CHUNK: usize = 256 * 1024;

/// The pass of an allowed body, or the 403 of a blocked one. Both judging
/// phases settle their verdict here and nowhere else. Under `mode`
/// monitor (the dry run) a body the rules block goes on as it came: the
/// block is noted in `outcome`, and the exchange's log line says `would
/// block`. What the guard cannot read or classify is refused in both
/// modes ([`crate::rules::Rule::is_configured`]).
pub(super) fn pass(
    verdict: Verdict,
    side: Side,
    mode: Enforcement,
    outcome: &mut Outcome,
) -> Result<Pass, Reject> {
    let block = match verdict {
        Verdict::Allow(pass) => return Ok(pass),
        Verdict::Block(block) => block,
        // Only an answer the guard may rebuild gets this verdict, and
        // `judge_answer` rebuilds it before settling; anywhere else the
        // body cannot go on as it is.
        Verdict::Rebuild(r) => r.unbuilt(),
    };
    // A body the guard could not read or classify is refused in both
    // modes: a dry run is of the rules, never of the parser.
    match mode {
        Enforcement::Monitor if block.rule.is_configured() => {
            let pass = Pass::despite(&block);
            outcome.would_block(Reject::blocked(block, side));
            Ok(pass)
        }
        _ => Err(Reject::blocked(block, side)),
    }
}

/// Whether a body of this framing carries no bytes.
pub(super) fn is_empty(kind: BodyKind) -> bool {
    matches!(kind, BodyKind::Empty | BodyKind::Length(0))
}

/// The decoding caps of `config`, for every body the engine reads.
pub(super) fn decode_caps(config: &Config) -> DecodeCaps {
    DecodeCaps {
        max_decoded_bytes: config.guard.limits.max_decoded_bytes,
        max_ratio: config.guard.limits.max_decode_ratio,
        ..DecodeCaps::default()
    }
}

/// Read one body into `hold`, feeding the rule engine when a `job` is given.
/// Returns the verdict (an uninspected body passes).
pub(super) async fn take_body<S: AsyncRead + Unpin>(
    peer: &mut Peer<S>,
    kind: BodyKind,
    job: Option<Job>,
    hold: &mut Hold,
    config: &Config,
    limits: &http::Limits,
    side: Side,
) -> Result<Verdict, Reject> {
    let too_large = |n: u64| {
        let status = if side == Side::Client { 413 } else { 502 };
        Reject::fatal(
            status,
            side,
            format!(
                "body of {n} bytes is over the limit of {}",
                limits.max_body_bytes
            ),
        )
    };
    if let BodyKind::Length(n) = kind {
        if n > limits.max_body_bytes {
            return Err(too_large(n));
        }
    }
    let mut inspection = job.as_ref().map(Inspection::start);
    let spill_dir = config.guard.spill_dir.clone();
    let mut rate = Rate::new(config);
    let store = |hold: &mut Hold, piece: &[u8]| -> Result<(), Reject> {
        hold.push(piece, &spill_dir)
            .map_err(|e| Reject::fatal(503, Side::Guard, format!("cannot hold body: {e}")))?;
        if hold.len() > limits.max_body_bytes {
            return Err(too_large(hold.len()));
        }
        Ok(())
    };
    match kind {
        BodyKind::Empty => {}
        BodyKind::Length(n) => {
            let mut left = n;
            while left > 0 {
                if peer.buf.is_empty() {
                    read_more(peer, &mut rate, side, false).await?;
                }
                let take = (peer.buf.len() as u64).min(left) as usize;
                let piece = peer.buf.split_to(take).freeze();
                left -= take as u64;
                store(hold, &piece)?;
                feed(&mut inspection, &piece).await;
            }
        }
        BodyKind::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            loop {
                match decoder.decode(&mut peer.buf, limits) {
                    Ok(Chunk::Data(piece)) => {
                        store(hold, &piece)?;
                        feed(&mut inspection, &piece).await;
                    }
                    Ok(Chunk::NeedMore) => {
                        read_more(peer, &mut rate, side, false).await?;
                    }
                    Ok(Chunk::Done) => break,
                    Err(e) => {
                        let status = if side == Side::Client {
                            e.status()
                        } else {
                            502
                        };
                        return Err(Reject::fatal(status, side, e.to_string()));
                    }
                }
            }
        }
        BodyKind::CloseDelimited => loop {
            if !peer.buf.is_empty() {
                let piece = peer.buf.split().freeze();
                store(hold, &piece)?;
                feed(&mut inspection, &piece).await;
            }
            if !read_more(peer, &mut rate, side, true).await? {
                break;
            }
        },
    }
    match inspection {
        Some(i) => match i.finish() {
            Judged::Verdict(v) => Ok(v),
            Judged::Limit(status, reason) => {
                Err(Reject::fatal(side_status(side, status, 502), side, reason))
            }
        },
        None => Ok(Verdict::Allow(Pass::uninspected())),
    }
}

/// Raw bytes handed to the engine at once: a coded slice this small
/// decodes to at most `max_decode_ratio` times as much.
const FEED_SLICE: usize = 16 * 1024;

/// Judge `piece`, in slices, letting other tasks run between them when
/// much has been judged.
async fn feed(inspection: &mut Option<Inspection<'_>>, piece: &[u8]) {
    let Some(i) = inspection else {
        return;
    };
    for slice in piece.chunks(FEED_SLICE) {
        i.feed(slice);
        if i.due_a_yield() {
            tokio::task::yield_now().await;
        }
    }
}

/// Body pacing: an idle limit per read and a minimum average rate, so a
/// slow client cannot hold a worker forever.
struct Rate {
    started: Instant,
    bytes: u64,
    idle: Duration,
    min_rate: u64,
}

/// The average rate is judged only after this long.
const RATE_GRACE: Duration = Duration::from_secs(10);

impl Rate {
    fn new(config: &Config) -> Rate {
        Rate {
            started: Instant::now(),
            bytes: 0,
            idle: config.guard.timeouts.body_idle,
            min_rate: config.guard.timeouts.min_body_rate,
        }
    }
}

/// Read more bytes into the buffer. `Ok(false)` at end of stream when
/// `eof_ok`, else end of stream is a truncated body.
async fn read_more<S: AsyncRead + Unpin>(
    peer: &mut Peer<S>,
    rate: &mut Rate,
    side: Side,
    eof_ok: bool,
) -> Result<bool, Reject> {
    // A broken or slow answer from upstream is the gateway's failure, not
    // the client's.
    let (broken, slow) = if side == Side::Client {
        (400, 408)
    } else {
        (502, 504)
    };
    peer.buf.reserve(READ_CHUNK);
    let n = match tokio::time::timeout(rate.idle, peer.io.read_buf(&mut peer.buf)).await {
        Err(_) => return Err(Reject::fatal(slow, side, "body stalled")),
        // Over TLS this includes an end without close_notify, which could
        // be a truncation, so a close-delimited body is refused then.
        Ok(Err(e)) => return Err(Reject::fatal(broken, side, format!("reading body: {e}"))),
        Ok(Ok(n)) => n,
    };
    if n == 0 {
        if eof_ok {
            return Ok(false);
        }
        return Err(Reject::fatal(
            broken,
            side,
            "connection closed inside a body",
        ));
    }
    rate.bytes += n as u64;
    let elapsed = rate.started.elapsed();
    if elapsed > RATE_GRACE && rate.bytes < rate.min_rate.saturating_mul(elapsed.as_secs()) {
        return Err(Reject::fatal(
            slow,
            side,
            "body arrives slower than the minimum rate",
        ));
    }
    Ok(true)
}

/// The status for a failure of the client's message, or of the upstream's
/// (which the client must see as a gateway error).
fn side_status(side: Side, client: u16, upstream: u16) -> u16 {
    if side == Side::Upstream {
        upstream
    } else {
        client
    }
}
