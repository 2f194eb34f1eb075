//! Rule engine throughput and memory: `rules::Evaluation` fed in 256 KiB
//! chunks (as the relay hands a body over, no `std::io::Read` between)
//! over generated MISP events of about 1, 20 and 100 MB, as written
//! plainly and as PHP's `json_encode` writes them (`\/`, `\uXXXX`),
//! against the floor of serde_json skipping the same bytes
//! (`from_slice::<IgnoredAny>`), measured in the same run. Then what the
//! engine holds whatever the document's shape: the peak heap beyond the
//! input (a counting allocator) and how far the resident set grows, for
//! one 100 MB event, four 40 MB events each carrying one base64
//! attachment judged at once, and an event of 100 000 attributes.
//!
//! `cargo bench --bench rules`; a filter selects cases by label, e.g.
//! `cargo bench --bench rules -- '1MB|100k-attributes'`.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::Throughput;
use misp_guard::rules::{
    Context, Document, Evaluation, Policy, RequiredTaxonomy, Verdict, DEFAULT_MAX_DEPTH,
};

mod common;

use common::{
    best_of, chosen, criterion, event, event_of_attributes, event_with, event_with_attachment,
    peak_heap, peak_rss_growth, php_encoded, wanted_labels, Counting,
};

#[global_allocator]
static ALLOC: Counting = Counting;

/// How the relay hands a body over.
const CHUNK: usize = 256 << 10;

/// An attribute comment with text past ASCII, for the PHP-escaped event.
const COMMENT_INTL: &str = r#"vu dans la campagne « x » \/ étape Überprüfung"#;

fn policy() -> Policy {
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<HashSet<_>>();
    Policy {
        blocked_tags: set(&["tlp:red"]),
        required_taxonomies: vec![RequiredTaxonomy {
            namespace: "tlp".into(),
            allowed: vec!["tlp:clear".into(), "tlp:white".into(), "tlp:green".into()],
        }],
        blocked_distributions: [true, false, false, false, false, false],
        blocked_sharing_groups: set(&["b9e656ba-b9c0-4506-83ed-7b54b43a57cb"]),
        blocked_attribute_types: set(&["passport-number", "email"]),
        blocked_attribute_categories: set(&["person"]),
        blocked_object_types: set(&["person"]),
    }
}

/// One summary line: the engine's rate against the floor's, and memory.
fn rate_line(
    name: &str,
    mb: f64,
    ours: Duration,
    theirs: Duration,
    heap: usize,
    rss: &str,
) -> String {
    format!(
        "{name}: {mb:.1} MB, engine {:.0} MB/s, IgnoredAny {:.0} MB/s, ratio {:.2}, \
         peak heap beyond input {:.1} KiB, {rss}",
        mb / ours.as_secs_f64(),
        mb / theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64(),
        heap as f64 / 1024.0,
    )
}

/// The engine on `body`, fed in [`CHUNK`]s.
fn judge(body: &[u8], policy: &Policy, ctx: &Context) -> Verdict {
    let mut evaluation = Evaluation::new(Document::Event, policy, ctx, DEFAULT_MAX_DEPTH);
    for chunk in body.chunks(CHUNK) {
        if !evaluation.feed(chunk) {
            break;
        }
    }
    evaluation.finish()
}

fn floor(body: &[u8]) {
    let _ = black_box(serde_json::from_slice::<serde::de::IgnoredAny>(black_box(
        body,
    )));
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn rss_text(growth: Option<u64>) -> String {
    growth.map_or_else(
        || "resident set not known".to_string(),
        |g| format!("resident set +{:.1} MiB", mib(g as usize)),
    )
}

fn main() {
    let policy = policy();
    let ctx = Context::default();
    let mut c = criterion();
    // The one filter criterion takes, read here too.
    let wanted = wanted_labels();
    let chosen = |label: &str| chosen(&wanted, label);
    let mut summary = Vec::new();
    for (label, size) in [
        ("1MB", 1usize << 20),
        ("20MB", 20 << 20),
        ("100MB", 100 << 20),
    ] {
        for (form, body) in [
            ("misp", event(size)),
            ("php", php_encoded(&event_with(size, COMMENT_INTL))),
        ] {
            let name = format!("{label}/{form}");
            if !chosen(&name) {
                continue;
            }
            assert!(
                matches!(judge(&body, &policy, &ctx), Verdict::Allow(_)),
                "the bench event must pass, to be read to its end"
            );
            let mut group = c.benchmark_group(format!("rules/{name}"));
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function("evaluation", |b| {
                b.iter(|| judge(black_box(&body), &policy, &ctx))
            });
            group.bench_function("ignored_any", |b| b.iter(|| floor(&body)));
            group.finish();

            let runs = if size > 50 << 20 { 3 } else { 7 };
            // Interleaved, so that both see the same load on the machine.
            let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
            for _ in 0..runs {
                ours = ours.min(best_of(1, || {
                    black_box(judge(&body, &policy, &ctx));
                }));
                theirs = theirs.min(best_of(1, || floor(&body)));
            }
            let heap = peak_heap(|| {
                black_box(judge(&body, &policy, &ctx));
            });
            let rss = peak_rss_growth(|| {
                black_box(judge(&body, &policy, &ctx));
            });
            let mb = body.len() as f64 / 1e6;
            summary.push(rate_line(&name, mb, ours, theirs, heap, &rss_text(rss)));
        }
    }
    memory(&policy, &ctx, &chosen, &mut summary);
    c.final_summary();
    for line in summary {
        println!("{line}");
    }
}

/// The memory cases: what the engine holds must not follow the shape.
fn memory(
    policy: &Policy,
    ctx: &Context,
    chosen: &dyn Fn(&str) -> bool,
    summary: &mut Vec<String>,
) {
    if chosen("4x40MB-attachment") {
        let bodies: Vec<Vec<u8>> = (0..4).map(|_| event_with_attachment(40 << 20)).collect();
        for body in &bodies {
            assert!(matches!(judge(body, policy, ctx), Verdict::Allow(_)));
        }
        let at_once = || {
            std::thread::scope(|s| {
                for body in &bodies {
                    s.spawn(move || black_box(judge(body, policy, ctx)));
                }
            })
        };
        let heap = peak_heap(at_once);
        let rss = peak_rss_growth(at_once);
        // What holding each string whole costs, for comparison: serde_json
        // reading the same bodies into values, at once.
        let whole = || {
            std::thread::scope(|s| {
                for body in &bodies {
                    s.spawn(move || {
                        black_box(serde_json::from_slice::<serde_json::Value>(body).is_ok())
                    });
                }
            })
        };
        let whole_heap = peak_heap(whole);
        let whole_rss = peak_rss_growth(whole);
        let each = bodies.first().map_or(0, Vec::len);
        summary.push(format!(
            "4x40MB-attachment: four events of {:.1} MiB, each one base64 string of {:.1} MiB, \
             judged at once: peak heap beyond input {:.1} KiB, {}; serde_json::Value of the \
             same at once: peak heap {:.1} MiB, {}",
            mib(each),
            mib(40 << 20),
            heap as f64 / 1024.0,
            rss_text(rss),
            mib(whole_heap),
            rss_text(whole_rss),
        ));
    }
    if chosen("100k-attributes") {
        let body = event_of_attributes(100_000);
        assert!(matches!(judge(&body, policy, ctx), Verdict::Allow(_)));
        let (mut ours, mut theirs) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            ours = ours.min(best_of(1, || {
                black_box(judge(&body, policy, ctx));
            }));
            theirs = theirs.min(best_of(1, || floor(&body)));
        }
        let heap = peak_heap(|| {
            black_box(judge(&body, policy, ctx));
        });
        let rss = peak_rss_growth(|| {
            black_box(judge(&body, policy, ctx));
        });
        let mb = body.len() as f64 / 1e6;
        summary.push(rate_line(
            "100k-attributes",
            mb,
            ours,
            theirs,
            heap,
            &rss_text(rss),
        ));
    }
}
