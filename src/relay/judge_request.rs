//! Phase 2 of an exchange, `judge_request`: the request body, held whole
//! (memory, then an unlinked file: [`super::hold`]) while the rule engine
//! reads it ([`super::body`], [`super::inspect`]), under the rules of the
//! source instance, whose data a request carries. A `100 Continue` is sent
//! only now, once the head has passed every check.
//!
//! Refuses: a malformed `Expect` or an unknown or stacked
//! `Content-Encoding` (417/415/501), bodies over the limits (413), slow or
//! truncated bodies (408/400), bodies the rules block (403, in
//! [`Judged::settle`]).

use tokio::io::AsyncWriteExt;

use super::admit::Admitted;
use super::body::{self, decode_caps, is_empty, take_body};
use super::conn::Terms;
use super::hold::Hold;
use super::inspect::Job;
use super::io::{Io, Peer};
use super::log::Outcome;
use super::reject::{Reject, Side};
use crate::config::Enforcement;
use crate::http::{self, Coding, RequestHead};
use crate::rules::{Context, Document, Pass, Verdict};
use crate::sync::Direction;

/// A request body read whole, and what the rules said about it.
pub(super) struct Judged {
    hold: Hold,
    verdict: Verdict,
    /// Whether the source's rules are enforced or only logged.
    mode: Enforcement,
}

/// A request body that may go on, and the pass that lets it.
pub(super) struct Held {
    /// The body's bytes, exactly as received (de-chunked).
    pub(super) hold: Hold,
    /// The rules' leave to forward them.
    pub(super) pass: Pass,
}

impl Judged {
    /// The body and its pass, or the 403 of a blocked body (in monitor
    /// mode, noted in `outcome` instead).
    pub(super) fn settle(self, outcome: &mut Outcome) -> Result<Held, Reject> {
        let pass = body::pass(self.verdict, Side::Client, self.mode, outcome)?;
        Ok(Held {
            hold: self.hold,
            pass,
        })
    }
}

/// Read and judge the body of the admitted request `head` from `client`.
/// `learned_org` is the org the upstream named on this connection before
/// (a push is checked against it too).
pub(super) async fn judge_request<S: Io>(
    client: &mut Peer<S>,
    head: &RequestHead,
    admitted: &Admitted,
    terms: &Terms,
    learned_org: Option<&str>,
    outcome: &mut Outcome,
) -> Result<Judged, Reject> {
    let config = &terms.config;
    let exchange = admitted.exchange();
    let doc = exchange.and_then(|x| x.request);
    let expect = http::expects_continue(head)
        .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?;
    let coding = match doc {
        Some(_) => http::request_coding(&head.headers)
            .map_err(|e| Reject::fatal(e.status(), Side::Client, e.to_string()))?,
        None => Coding::Identity,
    };
    if expect {
        // Ask for the body only now that the head passed every check; the
        // `Expect` itself is never forwarded, so no body goes upstream
        // before its verdict.
        client
            .io
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|e| Reject::fatal(400, Side::Client, format!("write: {e}")))?;
    }
    let mut hold = terms.hold(0);
    let job = match (doc, exchange) {
        (Some(doc), _) if is_empty(admitted.body) && empty_body_allowed(doc) => None,
        (Some(doc), Some(x)) => Some(Job {
            config: config.clone(),
            instance: admitted.source,
            doc,
            coding,
            caps: decode_caps(config),
            context: Context {
                user_org_uuid: learned_org
                    .filter(|_| x.direction == Direction::Push)
                    .map(str::to_string),
                receiver: admitted.request_receiver(config),
                // A request goes on as the sender sent it, or not at all.
                rebuild: false,
            },
        }),
        _ => None,
    };
    let verdict = take_body(
        client,
        admitted.body,
        job,
        &mut hold,
        config,
        &terms.limits,
        Side::Client,
    )
    .await?;
    outcome.bytes_in = hold.len();
    outcome.keep_alive = !http::connection_close(head);
    Ok(Judged {
        hold,
        verdict,
        mode: terms.enforcement(admitted.source),
    })
}

/// Whether an empty request body may stand for `doc`. Only filter bodies
/// qualify: an empty filter carries no data out, and the older guard let
/// such pulls through. An empty sightings search gets a 400 from MISP
/// (`_harvestParameters` wants filters) and no sightings.
fn empty_body_allowed(doc: Document) -> bool {
    matches!(doc, Document::AnyJson | Document::SightingSearch)
}
