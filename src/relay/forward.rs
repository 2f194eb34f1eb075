//! Phase 3 of an exchange, `forward`: the held request goes upstream and
//! the answer's head comes back. The connection comes from the
//! [`UpstreamPool`] (kept, or opened with the firewall mark and, for an
//! instance reached over TLS, verified TLS: [`super::upstream`]). The
//! request goes re-framed by the guard: its own `Content-Length` for the
//! exact held bytes, its own `Accept-Encoding`, and to an instance only the
//! headers MISP sync sends.
//!
//! Refuses: an upstream that cannot be reached, fails verification, stops
//! reading, switches protocols or sends no head in time (502/504).

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::admit::Admitted;
use super::conn::Terms;
use super::io::{Io, Peer};
use super::judge_request::Held;
use super::pool::{Lease, UpstreamPool};
use super::reject::{Reject, Side};
use super::upstream::Dial;
use crate::config::Config;
use crate::http::{self, RequestHead, ResponseHead};

/// The request headers MISP sync sends (protocol doc §1.1); the framing
/// and hop-by-hop ones among them are rewritten by `http::encode_request`.
const SYNC_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "accept",
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "if-none-match",
    "x-pgp-signature",
];

/// Send the admitted request `head` with its `held` body to `dial`, and
/// read the answer's head. The connection stays leased for the answer's
/// body.
pub(super) async fn forward<'p>(
    pool: &'p mut UpstreamPool,
    dial: &Dial<'_>,
    head: &RequestHead,
    admitted: &Admitted,
    held: Held,
    terms: &Terms,
) -> Result<(ResponseHead, Lease<'p>), Reject> {
    let mut lease = pool.checkout(dial, &terms.config).await?;
    let mut out = Vec::with_capacity(1024);
    encode(head, admitted, held.hold.len(), &mut out);
    let up = lease.peer();
    let sent = async {
        up.io.write_all(&out).await?;
        held.hold.forward(&held.pass, &mut up.io).await?;
        up.io.flush().await
    }
    .await;
    if let Err(e) = sent {
        return Err(Reject::fatal(
            502,
            Side::Upstream,
            format!("sending request: {e}"),
        ));
    }
    let response = read_response_head(lease.peer(), &terms.config, &terms.limits).await?;
    Ok((response, lease))
}

/// The head the guard sends upstream for `head`, framed for a body of
/// `len` bytes.
fn encode(head: &RequestHead, admitted: &Admitted, len: u64, out: &mut Vec<u8>) {
    let accept = if admitted.offered.is_empty() {
        "identity".to_string()
    } else {
        admitted.offered.join(", ")
    };
    let mut forwarded = head.clone();
    forwarded.headers.retain(|h| !h.is("accept-encoding"));
    if admitted.exchange().is_some() {
        // To an instance only the headers MISP sync sends go on: others
        // change what the remote does behind the table's back (a Cookie
        // logs in by session, X-Forwarded-For passes an API key's IP
        // check, Range cuts the answer into slices).
        forwarded
            .headers
            .retain(|h| SYNC_HEADERS.iter().any(|name| h.is(name)));
    }
    forwarded.headers.push(http::Header {
        name: "Accept-Encoding".into(),
        value: Bytes::from(accept),
    });
    http::encode_request(&forwarded, &admitted.path, Some(len), out);
}

/// Read the next final response head from upstream (skipping 1xx).
async fn read_response_head(
    up: &mut Peer<Box<dyn Io>>,
    config: &Config,
    limits: &http::Limits,
) -> Result<ResponseHead, Reject> {
    let deadline = tokio::time::Instant::now() + config.guard.timeouts.upstream_response;
    loop {
        if !up.buf.is_empty() {
            match http::parse_response(&up.buf, limits) {
                Ok(Some((head, len))) => {
                    let _ = up.buf.split_to(len);
                    if head.status == 101 {
                        return Err(Reject::fatal(
                            502,
                            Side::Upstream,
                            "upstream switched protocols",
                        ));
                    }
                    if (100..200).contains(&head.status) {
                        continue;
                    }
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Reject::fatal(
                        502,
                        Side::Upstream,
                        format!("bad response: {e}"),
                    ))
                }
            }
        }
        up.buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, up.io.read_buf(&mut up.buf)).await {
            Err(_) => return Err(Reject::fatal(504, Side::Upstream, "no response in time")),
            Ok(Ok(0)) => {
                return Err(Reject::fatal(
                    502,
                    Side::Upstream,
                    "upstream closed without a response",
                ))
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(Reject::fatal(
                    502,
                    Side::Upstream,
                    format!("reading response: {e}"),
                ))
            }
        }
    }
}
