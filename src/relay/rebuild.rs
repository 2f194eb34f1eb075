//! Between judging the answer and writing it: an answer the rules let
//! through only without some of what it carries (page items they forbid,
//! members the receiving MISP never reads, such as a sighting's `value` or
//! a push answer's `RelatedEvent`) is read a second time from the hold,
//! decoded, and written anew by the rules' rebuilder into a hold of its
//! own. It goes to the client identity-coded, with a `Content-Length` of
//! its own and without the validators of the original (`ETag`,
//! `Content-MD5`).
//!
//! Refuses (403): an answer that the second reading judges differently
//! from the first (the held bytes changed, or the engine erred): nothing
//! of it is forwarded.

use std::io::Read;

use super::conn::Terms;
use super::hold::Hold;
use super::reject::{Reject, Side};
use crate::http::{self, Coding, DecodeCaps};
use crate::rules::{Context, Pass, Policy, Rebuild};

/// Read size of the second reading.
const PIECE: usize = 256 * 1024;

/// What the rules are judged with on the second reading: the same as on
/// the first.
pub(super) struct Judging<'a> {
    pub(super) policy: &'a Policy,
    pub(super) context: &'a Context,
    pub(super) max_depth: usize,
    pub(super) coding: Coding,
    pub(super) caps: DecodeCaps,
}

/// The answer in `held`, rebuilt as `plan` says, in a new hold, with the
/// rules' leave to forward it. The second reading of a whole answer (with
/// its file reads and writes) runs without holding up the other tasks of
/// a multi-thread runtime (the relay's); on a current-thread one
/// (`misp-guard check`) it simply runs.
pub(super) fn rebuild(
    plan: &Rebuild,
    held: &Hold,
    judging: &Judging<'_>,
    terms: &Terms,
) -> Result<(Hold, Pass), Reject> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let work = || read_again(plan, held, judging, terms);
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn read_again(
    plan: &Rebuild,
    held: &Hold,
    judging: &Judging<'_>,
    terms: &Terms,
) -> Result<(Hold, Pass), Reject> {
    let guard = |why: String| Reject::fatal(502, Side::Guard, why);
    let mut raw = held
        .reader()
        .map_err(|e| guard(format!("cannot read the held answer again: {e}")))?;
    let mut decoder = http::Decoder::new(judging.coding, judging.caps.clone());
    let mut rebuilder = plan.rebuilder(judging.policy, judging.context, judging.max_depth);
    let mut rebuilt = terms.hold(0);
    let spill_dir = &terms.config.guard.spill_dir;
    let mut out = Vec::with_capacity(PIECE);
    // A failure to hold what was rebuilt, kept while the decoder is told
    // to stop.
    let mut held_failed = None;
    let mut piece = vec![0u8; PIECE];
    let mut end = None;
    while held_failed.is_none() && end.is_none() {
        let n = raw
            .read(&mut piece)
            .map_err(|e| guard(format!("cannot read the held answer again: {e}")))?;
        let mut sink = |decoded: &[u8]| {
            rebuilder.feed(decoded, &mut out);
            let stored = store(&mut rebuilt, &mut out, spill_dir);
            held_failed = stored.err();
            held_failed.is_none()
        };
        if n == 0 {
            end = Some(decoder.finish(&mut sink));
            break;
        }
        decoder
            .push(&piece[..n], &mut sink)
            .map_err(|e| guard(format!("cannot decode the held answer again: {e}")))?;
    }
    if let Some(reject) = held_failed {
        return Err(reject);
    }
    if let Some(decoded) = end {
        decoded.map_err(|e| guard(format!("cannot decode the held answer again: {e}")))?;
    }
    let pass = rebuilder
        .finish(&mut out)
        .map_err(|block| Reject::blocked(block, Side::Upstream))?;
    store(&mut rebuilt, &mut out, spill_dir)?;
    Ok((rebuilt, pass))
}

fn store(hold: &mut Hold, out: &mut Vec<u8>, spill_dir: &std::path::Path) -> Result<(), Reject> {
    if out.is_empty() {
        return Ok(());
    }
    hold.push(out, spill_dir).map_err(|e| {
        Reject::fatal(
            503,
            Side::Guard,
            format!("cannot hold the rebuilt answer: {e}"),
        )
    })?;
    out.clear();
    Ok(())
}
