//! One request and its answer, as a pipeline of phases, each in a file of
//! its own named after it and each taking the previous one's result:
//!
//! ```text
//! head ─admit─▶ Admitted ─locate─▶ Dial ─judge_request─▶ Held
//!      ─forward─▶ answer head + Lease ─judge_answer─▶ Reply ─answer─▶ client
//! ```
//!
//! A phase that refuses returns a [`Reject`]; the guard's refusal then
//! takes the answer's place ([`refuse`]). Every exchange ends in one log
//! record, written here.

use std::time::Instant;

use super::admit::{admit, locate};
use super::answer::{answer, refuse};
use super::conn::{Conn, Terms};
use super::forward::forward;
use super::io::{Io, Peer};
use super::judge_answer::judge_answer;
use super::judge_request::judge_request;
use super::log::{log_exchange, Outcome};
use super::reject::Reject;
use super::snapshot::Snapshot;
use crate::http::RequestHead;

/// The request `head` of `conn` and its answer, judged under `snapshot`
/// (the one in force when the head arrived).
pub(super) async fn exchange<S: Io>(
    conn: &mut Conn,
    client: &mut Peer<S>,
    head: &RequestHead,
    snapshot: &Snapshot,
) -> Outcome {
    let started = Instant::now();
    let terms = Terms::new(&snapshot.config);
    let mut outcome = Outcome::new();
    outcome.mode = snapshot.config.guard.mode;
    if let Err(reject) = phases(conn, client, head, snapshot, &terms, &mut outcome).await {
        refuse(client, reject, &head.target, &mut outcome).await;
    }
    log_exchange(
        conn.via.peer,
        &head.method,
        &head.target,
        &outcome,
        started.elapsed(),
    );
    outcome
}

/// The phases in order; each line is one phase boundary.
async fn phases<S: Io>(
    conn: &mut Conn,
    client: &mut Peer<S>,
    head: &RequestHead,
    snapshot: &Snapshot,
    terms: &Terms,
    outcome: &mut Outcome,
) -> Result<(), Reject> {
    let admitted = admit(head, &conn.via, &terms.config, outcome)?;
    // The mode of the rules that judge the request; the answer's settle
    // adds that of its own rules.
    outcome.mode = terms.enforcement(admitted.source);
    let dial = locate(&admitted, &conn.via, snapshot).await?;
    let learned_org = conn.org_of(dial.addr);
    let request = judge_request(client, head, &admitted, terms, learned_org, outcome).await?;
    // A block is a decision too: timed before it ends the exchange.
    let request = request.settle(outcome);
    outcome.request_judged();
    let request = request?;
    let (response, mut lease) =
        forward(&mut conn.pool, &dial, head, &admitted, request, terms).await?;
    let judged = judge_answer(lease.peer(), head, &admitted, response, terms).await?;
    outcome.answer_judged();
    lease.keep_if(judged.reusable());
    conn.learn(dial.addr, judged.user_org.as_deref());
    outcome.bytes_out = judged.len();
    let reply = judged.settle(&admitted, terms, outcome)?;
    answer(client, reply, conn.shutdown.is_cancelled(), outcome).await;
    Ok(())
}
