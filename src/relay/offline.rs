//! The phases of an exchange without the network, for `misp-guard check`.
//!
//! The same `admit`, `judge_request` and `judge_answer` as the
//! listener, fed from memory: what is left out is only what touches the
//! network (`locate`, `forward`, writing the answer), so the offline verdict
//! is the listener's by construction. Bodies are held in memory only, and
//! there is no earlier exchange of the connection to have learnt an org
//! from.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::BytesMut;

use super::admit::{admit, To};
use super::answer::Body;
use super::conn::{Origin, Terms, Via};
use super::io::Peer;
use super::judge_answer::{judge_answer, policy, Policy};
use super::judge_request::judge_request;
use super::log::Outcome;
use super::reject::Reject;
use super::route::Target;
use crate::config::Config;
use crate::http::{RequestHead, ResponseHead};
use crate::rules::Document;

/// One exchange, as a client sends it through a proxy listener.
pub struct Case {
    /// The connection's source address.
    pub source: IpAddr,
    /// For `https`: the target of the `CONNECT` tunnel the request comes
    /// in, in TLS and origin-form. `None`: plain `http`, in absolute form.
    pub tunnel: Option<Target>,
    /// The request head.
    pub request: RequestHead,
    /// The request body (framed by the head's `Content-Length`).
    pub request_body: Vec<u8>,
    /// The upstream's answer and its body, when there is one to judge.
    pub answer: Option<(ResponseHead, Vec<u8>)>,
}

/// What an allowed exchange left unjudged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unjudged {
    /// Everything was judged.
    Nothing,
    /// The destination is this allowlisted host: relayed uninspected.
    Allowlisted(String),
    /// No answer was given, and it would be judged as this document.
    Answer(Document),
    /// The answer goes on only rebuilt, without what this says.
    Rebuilt(String),
}

/// Judge `case` under `config` as the listener would: what it left
/// unjudged when it is allowed, else the listener's refusal.
pub async fn judge(config: &Arc<Config>, case: Case) -> Result<Unjudged, Reject> {
    let terms = Terms::in_memory(config);
    let via = Via {
        peer: SocketAddr::new(case.source, 0),
        tls: case.tunnel.is_some(),
        origin: case.tunnel.map_or(Origin::Proxy, Origin::Tunnel),
    };
    let mut outcome = Outcome::new();
    let head = &case.request;
    let admitted = admit(head, &via, config, &mut outcome)?;
    if let To::Allowlisted { host, .. } = &admitted.to {
        return Ok(Unjudged::Allowlisted(host.clone()));
    }
    let mut client = in_memory(&case.request_body);
    judge_request(&mut client, head, &admitted, &terms, None, &mut outcome)
        .await?
        .settle(&mut outcome)?;
    let Some((response, body)) = case.answer else {
        return Ok(match policy(&admitted, 200) {
            Policy::Judge(doc) => Unjudged::Answer(doc),
            _ => Unjudged::Nothing,
        });
    };
    let mut upstream = in_memory(&body);
    let reply = judge_answer(&mut upstream, head, &admitted, response, &terms)
        .await?
        .settle(&admitted, &terms, &mut outcome)?;
    Ok(match reply.body {
        Body::Rebuilt { summary, .. } => Unjudged::Rebuilt(summary),
        _ => Unjudged::Nothing,
    })
}

/// A peer whose stream has ended, with `bytes` read ahead: a body framed
/// by its length is read from the buffer alone.
fn in_memory(bytes: &[u8]) -> Peer<tokio::io::Empty> {
    Peer {
        io: tokio::io::empty(),
        buf: BytesMut::from(bytes),
    }
}
