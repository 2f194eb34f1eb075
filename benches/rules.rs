//! Rule engine throughput: `rules::evaluate` over MISP-like events of about
//! 1, 20 and 100 MB, against the floor of serde_json skipping the same
//! bytes (`from_slice::<IgnoredAny>`), plus the peak heap the evaluator
//! needs beyond its input, measured with a counting allocator.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use misp_guard::rules::{evaluate, Context, Document, Policy, RequiredTaxonomy, Verdict};

mod common;

use common::{best_of, event, peak_heap, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

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

fn main() {
    let policy = policy();
    let ctx = Context::default();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut summary = Vec::new();
    for (label, size) in [
        ("1MB", 1usize << 20),
        ("20MB", 20 << 20),
        ("100MB", 100 << 20),
    ] {
        let body = event(size);
        assert!(
            matches!(
                evaluate(&body[..], Document::Event, &policy, &ctx),
                Verdict::Allow(_)
            ),
            "the bench event must pass, to be read to its end"
        );
        let mut group = c.benchmark_group(format!("rules/{label}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("evaluate", |b| {
            b.iter(|| evaluate(black_box(&body[..]), Document::Event, &policy, &ctx))
        });
        group.bench_function("ignored_any", |b| {
            b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&body)))
        });
        group.finish();

        let runs = if size > 50 << 20 { 3 } else { 5 };
        let ours = best_of(runs, || {
            black_box(evaluate(&body[..], Document::Event, &policy, &ctx));
        });
        let floor = best_of(runs, || {
            let _ = black_box(serde_json::from_slice::<serde::de::IgnoredAny>(&body));
        });
        let mib = body.len() as f64 / (1 << 20) as f64;
        let peak = peak_heap(|| {
            black_box(evaluate(&body[..], Document::Event, &policy, &ctx));
        });
        summary.push(format!(
            "{label}: {:.1} MiB, evaluate {:.0} MiB/s, IgnoredAny {:.0} MiB/s, ratio {:.2}, peak heap beyond input {:.1} KiB",
            mib,
            mib / ours.as_secs_f64(),
            mib / floor.as_secs_f64(),
            floor.as_secs_f64() / ours.as_secs_f64(),
            peak as f64 / 1024.0
        ));
    }
    c.final_summary();
    for line in summary {
        println!("{line}");
    }
}
