//! Phase 5 of an exchange, `answer`: bytes to the client. Either the
//! upstream's answer, re-framed by the guard ([`answer`]: the head with the
//! guard's own `Content-Length`, then the held bytes, or the guard's text in
//! place of a withheld error body), or the guard's refusal when a phase
//! refused ([`refuse`]). What each kind of [`Body`] does to the head is
//! said in one place, [`prepare`].

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::hold::Hold;
use super::io::{Io, Peer};
use super::log::Outcome;
use super::reject::Reject;
use crate::http::{self, BodyKind, ResponseHead};
use crate::rules::Pass;

/// The answer the client gets.
pub(super) struct Reply {
    /// The upstream's head, as received.
    pub(super) head: ResponseHead,
    /// Its framing, as received.
    pub(super) kind: BodyKind,
    /// Whether it answers a `HEAD` request.
    pub(super) is_head: bool,
    /// What follows the head.
    pub(super) body: Body,
}

/// The body the client gets.
pub(super) enum Body {
    /// The exact bytes the upstream sent (de-chunked), as held.
    Held {
        /// The bytes.
        hold: Hold,
        /// The rules' leave to forward them.
        pass: Pass,
    },
    /// The guard's own text in place of an error answer's body.
    Replaced {
        /// The JSON text.
        text: String,
    },
    /// The answer as the rules rebuilt it (see [`super::rebuild`]).
    Rebuilt {
        /// The rebuilt bytes, identity-coded.
        hold: Hold,
        /// The rules' leave to forward them.
        pass: Pass,
        /// What was left out, for the log.
        summary: String,
    },
}

/// What follows a head on the wire.
enum Payload {
    Held { hold: Hold, pass: Pass },
    Text { text: String },
}

/// Write `reply` to the client; `last` when the guard is shutting down.
pub(super) async fn answer<S: Io>(
    client: &mut Peer<S>,
    reply: Reply,
    last: bool,
    outcome: &mut Outcome,
) {
    // On shutdown the exchange in flight finishes and says it is the last.
    if last {
        outcome.keep_alive = false;
    }
    let close = !outcome.keep_alive;
    if let Body::Rebuilt { summary, .. } = &reply.body {
        outcome.rebuilt = Some(summary.clone());
    }
    let (head, length, payload) = prepare(reply);
    let mut out = Vec::with_capacity(1024);
    if close {
        http::encode_response_close(&head, length, &mut out);
    } else {
        http::encode_response(&head, length, &mut out);
    }
    outcome.status = head.status;
    let written = match payload {
        Payload::Text { text } => {
            out.extend_from_slice(text.as_bytes());
            async {
                client.io.write_all(&out).await?;
                client.io.flush().await
            }
            .await
        }
        Payload::Held { hold, pass } => {
            async {
                client.io.write_all(&out).await?;
                hold.forward(&pass, &mut client.io).await?;
                client.io.flush().await
            }
            .await
        }
    };
    if written.is_err() {
        outcome.keep_alive = false;
    }
}

/// The head the client gets for `reply`, its body length and the body: the
/// one place that says how each kind of body changes the head.
fn prepare(reply: Reply) -> (ResponseHead, Option<u64>, Payload) {
    match reply.body {
        Body::Held { hold, pass } => {
            let length = match reply.kind {
                // A HEAD answer declares the length a GET would have had.
                BodyKind::Empty if reply.is_head => declared_length(&reply.head),
                BodyKind::Empty => None,
                _ => Some(hold.len()),
            };
            (reply.head, length, Payload::Held { hold, pass })
        }
        Body::Rebuilt { hold, pass, .. } => {
            // Identity now, and no longer the bytes the validators name.
            let mut head = reply.head;
            head.headers
                .retain(|h| !(h.is("content-encoding") || h.is("etag") || h.is("content-md5")));
            let length = Some(hold.len());
            (head, length, Payload::Held { hold, pass })
        }
        Body::Replaced { text } => {
            let mut head = reply.head;
            head.headers.retain(|h| {
                !(h.is("content-type")
                    || h.is("content-encoding")
                    || h.is("etag")
                    || h.is("content-md5"))
            });
            head.headers.push(http::Header {
                name: "Content-Type".into(),
                value: Bytes::from_static(b"application/json"),
            });
            (head, Some(text.len() as u64), Payload::Text { text })
        }
    }
}

/// Write the guard's refusal of the request to `target` in place of an
/// answer. Closes when the refusal says so or the request body was not read
/// (its bytes would be taken for the next request).
pub(super) async fn refuse<S: Io>(
    client: &mut Peer<S>,
    reject: Reject,
    target: &str,
    outcome: &mut Outcome,
) {
    let close = reject.close || !outcome.keep_alive;
    let _ = client
        .io
        .write_all(&reject.to_response(target, close))
        .await;
    outcome.status = reject.status;
    outcome.keep_alive = !close;
    outcome.reject = Some(reject);
}

/// The `Content-Length` of a bodiless answer (already checked by `http`).
fn declared_length(head: &ResponseHead) -> Option<u64> {
    head.headers
        .iter()
        .find(|h| h.is("content-length"))
        .and_then(|h| h.text())
        .and_then(|t| t.trim().parse().ok())
}
