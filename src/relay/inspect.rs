//! Runs the rule engine beside the body as it arrives, on the connection's
//! own task: each raw piece the relay holds is decoded (`Content-Encoding`)
//! by a push decoder, and every decoded piece goes straight to the
//! engine's tokenizer. No thread, no channel and no `Read` adapter stand
//! between the relay's buffer and the engine, so a body byte is copied
//! only into the hold (and, coded, once more by the decoder into its
//! output window). The verdict is ready when the last byte has been fed.
//!
//! Judging takes about a millisecond per 256 KiB (the engine runs at some
//! hundreds of MB/s), short enough not to need a blocking worker. A coded
//! piece can decode to far more (up to `max_decode_ratio` times), so the
//! relay feeds raw bytes in small slices and yields to the runtime
//! whenever [`Inspection::due_a_yield`] says a mebibyte has been judged
//! since the last time: one body never holds a worker for long.

use std::sync::Arc;

use crate::config::{Config, InstanceId};
use crate::http::{self, Coding, DecodeCaps, Decoder};
use crate::rules::{Context, Document, Evaluation, Verdict};

/// What judging a body found: a verdict, or a decoding limit that was hit
/// (the body is refused for its size, not for what it says).
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

/// One body being judged as it arrives.
pub struct Inspection<'j> {
    evaluation: Evaluation<'j>,
    decoder: Decoder,
    /// The engine wants no more: the body is refused whatever follows.
    decided: bool,
    /// Decoding failed: nothing after it is read.
    failed: Option<http::Error>,
    /// Decoded bytes judged since the relay last yielded.
    since_yield: usize,
}

/// Decoded bytes judged between two yields to the runtime.
const YIELD_EVERY: usize = 1 << 20;

impl<'j> Inspection<'j> {
    /// Start judging a body as `job` says.
    pub fn start(job: &'j Job) -> Inspection<'j> {
        let policy = &job.config.instance(job.instance).policy;
        let depth = job.config.guard.limits.max_json_depth;
        Inspection {
            evaluation: Evaluation::new(job.doc, policy, &job.context, depth),
            decoder: Decoder::new(job.coding, job.caps.clone()),
            decided: false,
            failed: None,
            since_yield: 0,
        }
    }

    /// The next raw piece of the body (de-chunked, still coded). Once the
    /// engine has decided (it may stop early on a block) or decoding has
    /// failed, further pieces are dropped.
    pub fn feed(&mut self, raw: &[u8]) {
        if self.decided || self.failed.is_some() {
            return;
        }
        let (evaluation, decided, judged) = (
            &mut self.evaluation,
            &mut self.decided,
            &mut self.since_yield,
        );
        let fed = self.decoder.push(raw, |piece| {
            *judged += piece.len();
            judge(evaluation, decided, piece)
        });
        self.failed = fed.err();
    }

    /// Whether enough has been judged since the last call that returned
    /// `true` for the relay to let other tasks run.
    pub fn due_a_yield(&mut self) -> bool {
        let due = self.since_yield >= YIELD_EVERY;
        if due {
            self.since_yield = 0;
        }
        due
    }

    /// The body has ended: its verdict.
    pub fn finish(self) -> Judged {
        let Inspection {
            mut evaluation,
            decoder,
            mut decided,
            failed,
            ..
        } = self;
        let end = match failed {
            Some(e) => Err(e),
            None if decided => Ok(()),
            None => decoder.finish(|piece| judge(&mut evaluation, &mut decided, piece)),
        };
        match end {
            Ok(()) => Judged::Verdict(evaluation.finish()),
            Err(e @ (http::Error::DecodedTooLarge(_) | http::Error::RatioTooHigh(_))) => {
                Judged::Limit(e.status(), e.to_string())
            }
            Err(e) => Judged::Verdict(evaluation.fail(&e.to_string())),
        }
    }
}

/// Hand one decoded piece to the engine; whether it wants more.
fn judge(evaluation: &mut Evaluation<'_>, decided: &mut bool, piece: &[u8]) -> bool {
    let more = evaluation.feed(piece);
    *decided = !more;
    more
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::snapshot::tests::config;
    use crate::rules::Rule;

    fn job(coding: Coding, caps: DecodeCaps) -> Job {
        let config = config(443, serde_json::json!({}), serde_json::json!({}));
        Job {
            config: Arc::new(config),
            instance: InstanceId(0),
            doc: Document::Event,
            coding,
            caps,
            context: Context::default(),
        }
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// `body` fed in pieces of `size`.
    fn judged(job: &Job, body: &[u8], size: usize) -> Judged {
        let mut inspection = Inspection::start(job);
        for piece in body.chunks(size) {
            inspection.feed(piece);
        }
        inspection.finish()
    }

    const EVENT: &[u8] = br#"{"Event":{"uuid":"5f1e8c4e-0000-4000-8000-000000000001","info":"x","distribution":"1","Attribute":[{"uuid":"5f1e8c4e-0000-4000-8000-000000000002","type":"ip-dst","category":"Network activity","value":"10.0.0.1","distribution":"5"}]}}"#;

    #[test]
    fn the_same_verdict_whatever_the_pieces_and_coding() {
        for coding in [Coding::Identity, Coding::Gzip] {
            let body = match coding {
                Coding::Gzip => gzip(EVENT),
                _ => EVENT.to_vec(),
            };
            let job = job(coding, DecodeCaps::default());
            for size in [1, 7, 64, body.len()] {
                assert!(
                    matches!(
                        judged(&job, &body, size),
                        Judged::Verdict(Verdict::Allow(_))
                    ),
                    "{coding:?} in pieces of {size}"
                );
            }
        }
    }

    #[test]
    fn a_bad_coding_is_malformed_and_a_bomb_is_a_limit() {
        let job_gzip = job(Coding::Gzip, DecodeCaps::default());
        match judged(&job_gzip, b"not gzip at all", 4) {
            Judged::Verdict(Verdict::Block(b)) => assert_eq!(b.rule, Rule::Malformed),
            _ => panic!("a corrupt gzip body passed"),
        }
        let caps = DecodeCaps {
            max_decoded_bytes: 1024,
            ..DecodeCaps::default()
        };
        let mut big = EVENT.to_vec();
        big.splice(2..2, b" ".repeat(64 * 1024));
        let capped = job(Coding::Gzip, caps);
        assert!(matches!(
            judged(&capped, &gzip(&big), 512),
            Judged::Limit(413, _)
        ));
    }

    #[test]
    fn a_yield_is_due_after_each_mebibyte_judged() {
        let job = job(Coding::Identity, DecodeCaps::default());
        let mut inspection = Inspection::start(&job);
        let mut body = b"{\"Event\":{\"info\":\"".to_vec();
        body.resize(YIELD_EVERY + 100, b'x');
        let (first, second) = body.split_at(YIELD_EVERY / 2);
        inspection.feed(first);
        assert!(!inspection.due_a_yield(), "half a mebibyte");
        inspection.feed(second);
        assert!(inspection.due_a_yield(), "past a mebibyte");
        assert!(!inspection.due_a_yield(), "counted again from zero");
    }

    #[test]
    fn a_truncated_body_is_refused() {
        let job = job(Coding::Identity, DecodeCaps::default());
        let cut = &EVENT[..EVENT.len() - 3];
        assert!(matches!(
            judged(&job, cut, 16),
            Judged::Verdict(Verdict::Block(_))
        ));
    }
}
