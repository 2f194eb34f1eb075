//! Phase 4 of an exchange, `judge_answer`: the answer's head checked, then
//! its body read whole into a hold like the request's, and judged under
//! the destination's rules when it is a document of the exchange. One
//! [`Policy`], from the status and the exchange, says what is done with the
//! body; [`Judged::settle`] turns the verdict and the policy into the
//! [`Body`] the client gets.
//!
//! A judged answer may be one the rules let through only rebuilt (page
//! items they forbid left out, members the receiver never reads left out):
//! [`Judged::settle`] then has it rebuilt ([`super::rebuild`]). An answer
//! signed by the remote (`x-pgp-signature`, a protected event) is never
//! rebuilt: the puller checks the signature over the exact bytes, so it is
//! judged whole instead.
//!
//! Refuses (502): a `Connection` naming a header, bad framing, a coding the
//! client did not offer, two `X-UserOrgUUID`; an error answer over 64 KiB,
//! raw or decoded; answers the rules block (403).

use tokio::io::AsyncRead;

use super::admit::{odd_connection_token, Admitted};
use super::answer::{Body, Reply};
use super::body::{self, decode_caps, is_empty, take_body};
use super::conn::Terms;
use super::hold::Hold;
use super::inspect::Job;
use super::io::Peer;
use super::log::Outcome;
use super::rebuild::{rebuild, Judging};
use super::reject::{Reject, Side};
use super::route::escape;
use crate::config::{Enforcement, InstanceId};
use crate::http::{self, BodyKind, Coding, RequestHead, ResponseHead};
use crate::rules::{Context, Document, Pass, Verdict};
use crate::sync::Direction;

/// The largest error answer passed on where a document was expected.
const MAX_ERROR_ANSWER: u64 = 64 * 1024;

/// What is done with an answer's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    /// A 2xx answer carrying a document of the exchange: judged.
    Judge(Document),
    /// An answer the table does not inspect, or from an allowlisted host:
    /// relayed as it is.
    Pass,
    /// Any other error answer of the table, such as the one to a push
    /// (MISP's save-fail 403 JSON, whose `errors` the pushing MISP logs,
    /// e.g. "not newer than the local copy"): relayed when small, raw and
    /// decoded.
    PassCapped,
    /// The error answer where a document was expected (a pull): the body
    /// never reaches the client, the guard's own error text does.
    ReplaceError,
}

/// The policy for an answer of `status` to `admitted`.
pub(super) fn policy(admitted: &Admitted, status: u16) -> Policy {
    let Some(x) = admitted.exchange() else {
        return Policy::Pass;
    };
    let success = (200..300).contains(&status);
    match x.response {
        Some(doc) if success => Policy::Judge(doc),
        _ if success => Policy::Pass,
        Some(_) if x.direction == Direction::Pull => Policy::ReplaceError,
        _ => Policy::PassCapped,
    }
}

/// An answer read whole, and what the rules said about it.
pub(super) struct Judged {
    head: ResponseHead,
    kind: BodyKind,
    coding: Coding,
    is_head: bool,
    /// The org of the remote sync user (`X-UserOrgUUID`, lower-cased).
    pub(super) user_org: Option<String>,
    policy: Policy,
    hold: Hold,
    verdict: Verdict,
    /// Whose rules judged it, and with what context: a rebuild reads it
    /// again under the same.
    rules: InstanceId,
    context: Context,
    /// Whether those rules are enforced or only logged.
    mode: Enforcement,
}

/// Check the answer `response` to `head`, then read its body from
/// `upstream` and judge it as [`policy`] says.
pub(super) async fn judge_answer<S: AsyncRead + Unpin>(
    upstream: &mut Peer<S>,
    head: &RequestHead,
    admitted: &Admitted,
    response: ResponseHead,
    terms: &Terms,
) -> Result<Judged, Reject> {
    let is_head = head.method == "HEAD";
    let (kind, coding, user_org) = checked(&response, is_head, &admitted.offered)?;
    let policy = policy(admitted, response.status);
    // No error answer of a sync exchange is judged, so none may be large:
    // each is read up to `MAX_ERROR_ANSWER` (a larger one is refused), and
    // kept in memory whole for the decoded-size check. MISP's REST errors
    // are small JSON objects that MISP only logs.
    let capped = matches!(policy, Policy::PassCapped | Policy::ReplaceError);
    let mut limits = terms.limits.clone();
    let mut hold = if capped {
        limits.max_body_bytes = limits.max_body_bytes.min(MAX_ERROR_ANSWER);
        terms.hold(MAX_ERROR_ANSWER as usize)
    } else {
        terms.hold(0)
    };
    let context = Context {
        user_org_uuid: user_org.clone(),
        receiver: admitted.answer_receiver(&terms.config),
        rebuild: !signed(&response),
    };
    let job = match policy {
        Policy::Judge(doc) => Some(Job {
            config: terms.config.clone(),
            instance: admitted.answer_rules(),
            doc,
            coding,
            caps: decode_caps(&terms.config),
            context: context.clone(),
        }),
        _ => None,
    };
    let verdict = take_body(
        upstream,
        kind,
        job,
        &mut hold,
        &terms.config,
        &limits,
        Side::Upstream,
    )
    .await?;
    Ok(Judged {
        head: response,
        kind,
        coding,
        is_head,
        user_org,
        policy,
        hold,
        verdict,
        rules: admitted.answer_rules(),
        context,
        mode: terms.enforcement(admitted.answer_rules()),
    })
}

/// Whether the remote signed the answer's bytes (a protected event):
/// rebuilding it would break what the puller checks.
fn signed(response: &ResponseHead) -> bool {
    response.headers.iter().any(|h| h.is("x-pgp-signature"))
}

impl Judged {
    /// Whether the upstream connection can carry another request.
    pub(super) fn reusable(&self) -> bool {
        self.kind != BodyKind::CloseDelimited && !http::connection_close(&self.head.headers)
    }

    /// The bytes of the answer's body, as received.
    pub(super) fn len(&self) -> u64 {
        self.hold.len()
    }

    /// The answer the client gets, or the refusal of a blocked one. The
    /// place where each verdict and policy becomes a kind of [`Body`]. In
    /// monitor mode a block is noted in `outcome` and an answer to rebuild
    /// goes on as it came, what it would have been rebuilt without noted.
    pub(super) fn settle(
        self,
        admitted: &Admitted,
        terms: &Terms,
        outcome: &mut Outcome,
    ) -> Result<Reply, Reject> {
        outcome.mode = outcome.mode.max(self.mode);
        let verdict = match self.verdict {
            // A dry run of the rules only: an answer holding what the
            // guard could not read (an item of a page) or cannot judge (a
            // sighting's value, a related event, a reference's copy) is
            // rebuilt without it in both modes.
            Verdict::Rebuild(plan)
                if self.mode == Enforcement::Monitor
                    && matches!(self.policy, Policy::Judge(_))
                    && plan.stripped().is_empty()
                    && plan.removed().iter().all(|(_, b)| b.rule.is_configured()) =>
            {
                outcome.would_rebuild = Some(plan.summary());
                let pass = Pass::despite(&plan.unbuilt());
                return Ok(Reply {
                    head: self.head,
                    kind: self.kind,
                    is_head: self.is_head,
                    body: Body::Held {
                        hold: self.hold,
                        pass,
                    },
                });
            }
            Verdict::Rebuild(plan) if matches!(self.policy, Policy::Judge(_)) => {
                let config = &terms.config;
                let judging = Judging {
                    policy: &config.instance(self.rules).policy,
                    context: &self.context,
                    max_depth: config.guard.limits.max_json_depth,
                    coding: self.coding,
                    caps: decode_caps(config),
                };
                let (hold, pass) = rebuild(&plan, &self.hold, &judging, terms)?;
                let body = Body::Rebuilt {
                    hold,
                    pass,
                    summary: plan.summary(),
                };
                return Ok(Reply {
                    head: self.head,
                    kind: self.kind,
                    is_head: self.is_head,
                    body,
                });
            }
            verdict => verdict,
        };
        let pass = body::pass(verdict, Side::Upstream, self.mode, outcome)?;
        let body = match self.policy {
            Policy::ReplaceError if !is_empty(self.kind) => Body::Replaced {
                text: withheld(&self.head, admitted),
            },
            Policy::PassCapped => {
                error_answer_decodes_small(&self.hold, self.coding)?;
                Body::Held {
                    hold: self.hold,
                    pass,
                }
            }
            _ => Body::Held {
                hold: self.hold,
                pass,
            },
        };
        Ok(Reply {
            head: self.head,
            kind: self.kind,
            is_head: self.is_head,
            body,
        })
    }
}

/// The checks of an answer's head: its framing, its coding (one the client
/// offered) and the remote sync user's org.
fn checked(
    response: &ResponseHead,
    is_head: bool,
    offered: &[&str],
) -> Result<(BodyKind, Coding, Option<String>), Reject> {
    let upstream = |e: http::Error| Reject::fatal(502, Side::Upstream, e.to_string());
    // As for the request: `Connection: content-encoding` would drop the
    // coding the body was judged in.
    if let Some(token) = odd_connection_token(&response.headers) {
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!(
                "answer's Connection names {}: only close and keep-alive are accepted",
                escape(token)
            ),
        ));
    }
    let kind = http::response_body(response, is_head).map_err(upstream)?;
    let coding = if kind == BodyKind::Empty {
        Coding::Identity
    } else {
        http::response_coding(&response.headers).map_err(upstream)?
    };
    if let Some(name) = coding_name(coding) {
        if !offered.contains(&name) {
            return Err(Reject::fatal(
                502,
                Side::Upstream,
                format!("answer encoded with {name}, which the client did not offer"),
            ));
        }
    }
    let user_org =
        unique_response_header(response, "x-userorguuid")?.map(|s| s.trim().to_ascii_lowercase());
    Ok((kind, coding, user_org))
}

/// The guard's text in place of the body of an error answer where a
/// document was expected.
fn withheld(response: &ResponseHead, admitted: &Admitted) -> String {
    serde_json::json!({
        "name": response.reason,
        "message": format!(
            "misp-guard: the body of this {} answer was withheld (only 2xx answers of {} are inspected)",
            response.status,
            admitted.exchange().map_or("-", |x| x.name),
        ),
        "url": admitted.path,
    })
    .to_string()
}

/// Refuses an error answer passed on uninspected whose `Content-Encoding`
/// would multiply the `MAX_ERROR_ANSWER` cap (or that does not decode: the
/// client could not read it either).
fn error_answer_decodes_small(hold: &Hold, coding: Coding) -> Result<(), Reject> {
    if coding == Coding::Identity || hold.is_empty() {
        return Ok(());
    }
    // Held in memory: error answers are read up to MAX_ERROR_ANSWER with a
    // memory threshold at least as large.
    let raw = hold
        .in_memory()
        .ok_or_else(|| Reject::fatal(502, Side::Guard, "error answer not held in memory"))?;
    let caps = http::DecodeCaps {
        max_decoded_bytes: MAX_ERROR_ANSWER,
        ..http::DecodeCaps::default()
    };
    let mut decoder = http::Decoder::new(coding, caps);
    decoder
        .push(&raw, |_| true)
        .and_then(|()| decoder.finish(|_| true))
        .map_err(|why| {
            Reject::fatal(
                502,
                Side::Upstream,
                format!("error answer refused (error answers are passed up to {MAX_ERROR_ANSWER} bytes decoded): {why}"),
            )
        })
}

/// A response header that may appear at most once (two values would be
/// two different answers to the same question).
fn unique_response_header(head: &ResponseHead, name: &str) -> Result<Option<String>, Reject> {
    let mut values = head.headers.iter().filter(|h| h.is(name));
    let first = values.next();
    if values.next().is_some() {
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!("more than one {name} header"),
        ));
    }
    match first {
        None => Ok(None),
        Some(h) => match h.text() {
            Some(t) => Ok(Some(t.to_string())),
            None => Err(Reject::fatal(
                502,
                Side::Upstream,
                format!("{name} header is not text"),
            )),
        },
    }
}

fn coding_name(c: Coding) -> Option<&'static str> {
    match c {
        Coding::Identity => None,
        Coding::Gzip => Some("gzip"),
        Coding::Deflate => Some("deflate"),
        Coding::Br => Some("br"),
        Coding::Zstd => Some("zstd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_answers_passed_on_are_small_once_decoded() {
        let held = |bytes: &[u8]| {
            let mut hold = Hold::new(MAX_ERROR_ANSWER as usize, u64::MAX);
            hold.push(bytes, &std::env::temp_dir()).unwrap();
            hold
        };
        let gzip = |data: &[u8]| {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        };
        let save_fail = br#"{"saved":false,"name":"Event could not be saved.","errors":"Event could not be saved: not newer"}"#;
        assert!(error_answer_decodes_small(&held(save_fail), Coding::Identity).is_ok());
        assert!(error_answer_decodes_small(&held(&gzip(save_fail)), Coding::Gzip).is_ok());
        let at_cap = vec![b' '; MAX_ERROR_ANSWER as usize];
        assert!(error_answer_decodes_small(&held(&gzip(&at_cap)), Coding::Gzip).is_ok());

        // 64 KiB of gzip could carry megabytes.
        let large = vec![b'x'; 4 * MAX_ERROR_ANSWER as usize];
        let packed = gzip(&large);
        assert!(packed.len() < 4096);
        let r = error_answer_decodes_small(&held(&packed), Coding::Gzip).unwrap_err();
        assert_eq!((r.status, r.side), (502, Side::Upstream));
        assert!(r.reason.contains("65536"), "{}", r.reason);

        let corrupt = error_answer_decodes_small(&held(b"not gzip at all"), Coding::Gzip);
        assert_eq!(corrupt.map_err(|r| r.status), Err(502));
    }
}
