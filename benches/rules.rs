//! Rule engine throughput: `rules::evaluate` over MISP-like events of about
//! 1, 20 and 100 MB, against the floor of serde_json skipping the same
//! bytes (`from_slice::<IgnoredAny>`), plus the peak heap the evaluator
//! needs beyond its input, measured with a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use misp_guard::rules::{evaluate, Context, Document, Policy, RequiredTaxonomy, Verdict};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

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

fn attribute(out: &mut String, i: usize) {
    let _ = write!(
        out,
        r#"{{"id":"{i}","type":"ip-dst","category":"Network activity","to_ids":true,"uuid":"5f1c2b3a-{i:04x}-4d5e-8f90-0123456789ab","event_id":"1","distribution":"5","timestamp":"1661956302","comment":"seen in campaign \"x\" \/ stage {i}","sharing_group_id":"0","deleted":false,"disable_correlation":false,"object_id":"0","object_relation":null,"first_seen":null,"last_seen":null,"value":"198.51.{}.{}","Galaxy":[],"ShadowAttribute":[],"Tag":[{{"id":"3","name":"tlp:green","colour":"\u002333FF00","exportable":true,"user_id":"0","hide_tag":false,"numerical_value":null,"is_galaxy":false,"is_custom_galaxy":false,"local_only":false,"local":0,"relationship_type":null}}]}}"#,
        i % 256,
        (i / 256) % 256
    );
}

/// An event of about `target` bytes: attributes and objects of attributes.
fn event(target: usize) -> Vec<u8> {
    let mut out = String::with_capacity(target + 4096);
    out.push_str(
        r#"{"Event":{"id":"1","orgc_id":"1","org_id":"1","date":"2022-08-31","threat_level_id":"1","info":"bench","published":false,"uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","attribute_count":"4","analysis":"0","timestamp":"1661956788","distribution":"2","sharing_group_id":"0","Tag":[{"id":"1","name":"tlp:clear","colour":"\u0023FFFFFF"}],"Org":{"id":"1","name":"HOST","uuid":"10c8f445-888b-4a2d-bac8-4e1e8861d595","local":true},"Attribute":["#,
    );
    let mut i = 0;
    while out.len() < target / 2 {
        if i > 0 {
            out.push(',');
        }
        attribute(&mut out, i);
        i += 1;
    }
    out.push_str(r#"],"Object":["#);
    let mut first = true;
    while out.len() < target {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(
            out,
            r#"{{"id":"{i}","name":"domain-ip","meta-category":"network","description":"A domain/hostname and IP address","template_uuid":"43b3b146-77eb-4931-b4cc-b66c60f28734","template_version":"10","event_id":"1","uuid":"feda50b8-c69c-4f5f-ae34-91b289e46799","timestamp":"1661956788","distribution":"5","sharing_group_id":"0","comment":"","deleted":false,"ObjectReference":[],"Attribute":["#
        );
        for j in 0..4 {
            if j > 0 {
                out.push(',');
            }
            attribute(&mut out, i + j);
        }
        out.push_str("]}");
        i += 4;
    }
    out.push_str(r#"],"ShadowAttribute":[],"RelatedEvent":[],"Galaxy":[],"EventReport":[],"CryptographicKey":[]}}"#);
    out.into_bytes()
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
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
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        black_box(evaluate(&body[..], Document::Event, &policy, &ctx));
        let peak = PEAK.load(Ordering::Relaxed) - base;
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
