//! Content decoding throughput and memory: each coding on a MISP-like event
//! of about 16 MiB, pushed the way the relay receives a body, plus the peak
//! heap one decoder needs on the largest windows its coding allows (brotli
//! with a 16 MiB window, zstd with an 8 MiB one), measured with a counting
//! allocator. `cargo bench --bench decode`; `-- quick` for fewer runs.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write;

use misp_guard::http::{Coding, DecodeCaps, Decoder};

mod common;

use common::{best_of, peak_heap, Counting};

#[global_allocator]
static ALLOC: Counting = Counting;

/// What the relay reads from a socket at most at once.
const RAW_PIECE: usize = 64 * 1024;

/// Decode `raw` pushed in the relay's pieces, handing every decoded byte
/// to a consumer that reads it all; returns the decoded length.
fn decode(coding: Coding, raw: &'static [u8], caps: &DecodeCaps) -> u64 {
    let mut dec = Decoder::new(coding, caps.clone());
    let mut n = 0u64;
    let mut sum = 0u8;
    let mut consume = |piece: &[u8]| {
        n += piece.len() as u64;
        sum = piece.iter().fold(sum, |a, &b| a.wrapping_add(b));
        true
    };
    for piece in raw.chunks(RAW_PIECE) {
        if let Err(e) = dec.push(piece, &mut consume) {
            panic!("{coding}: {e}");
        }
    }
    if let Err(e) = dec.finish(&mut consume) {
        panic!("{coding}: {e}");
    }
    black_box(sum);
    n
}

/// A MISP-like event of about `target` bytes, its values varied so it
/// compresses like real events (some 8-15x), not like zeros.
fn event(target: usize) -> Vec<u8> {
    let mut out = String::with_capacity(target + 4096);
    out.push_str(r#"{"Event":{"id":"1","info":"bench","uuid":"385283a1-b5e0-4e10-a532-dce11c365a56","distribution":"2","Tag":[{"name":"tlp:clear"}],"Attribute":["#);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut i = 0u64;
    while out.len() < target {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"id":"{i}","type":"ip-dst","category":"Network activity","to_ids":true,"uuid":"5f1c2b3a-{:04x}-4d5e-8f90-{:012x}","event_id":"1","distribution":"5","timestamp":"{}","comment":"seen in campaign {} stage {i}","value":"{}.{}.{}.{}","Tag":[{{"name":"tlp:green"}}]}}"#,
            x & 0xffff,
            x >> 16 & 0xffff_ffff_ffff,
            1_661_956_302 + (x & 0xffff),
            x >> 40 & 0xff,
            x & 0xff,
            x >> 8 & 0xff,
            x >> 24 & 0xff,
            x >> 32 & 0xff,
        );
        i += 1;
    }
    out.push_str("]}}");
    out.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8], quality: u32, lgwin: u32) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, quality, lgwin);
        w.write_all(data).unwrap();
    }
    out
}

fn zstd(data: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
}

/// A zstd frame with an 8 MiB window (the most RFC 9659 allows) of raw
/// blocks of 128 KiB: a decoder must keep the whole window.
fn zstd_wide(total: usize) -> Vec<u8> {
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3];
    let block = 128 * 1024;
    let mut x: u32 = 1;
    for i in 0..total / block {
        let last = u32::from(i + 1 == total / block);
        let header = last | ((block as u32) << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        for _ in 0..block {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            frame.push((x >> 16) as u8);
        }
    }
    frame
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u32 = 7;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect()
}

/// Inputs live for the whole run.
fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let runs = if quick { 3 } else { 9 };
    let caps = DecodeCaps {
        max_ratio: u64::MAX,
        ..DecodeCaps::default()
    };
    let body = event(16 << 20);
    let mib = body.len() as f64 / f64::from(1 << 20);
    println!("event: {mib:.1} MiB decoded, raw pushed in pieces of {RAW_PIECE} bytes");
    let inputs = [
        (Coding::Identity, "identity", leak(body.clone())),
        (Coding::Gzip, "gzip -6", leak(gzip(&body))),
        (Coding::Deflate, "deflate -6", leak(zlib(&body))),
        (Coding::Br, "br q5 w22", leak(brotli(&body, 5, 22))),
        (Coding::Zstd, "zstd fastest", leak(zstd(&body))),
    ];
    for (coding, label, raw) in &inputs {
        assert_eq!(decode(*coding, raw, &caps), body.len() as u64, "{label}");
        let t = best_of(runs, || {
            black_box(decode(*coding, raw, &caps));
        });
        let peak = peak_heap(|| {
            black_box(decode(*coding, raw, &caps));
        });
        println!(
            "{label:>13}: raw {:6.2} MiB, {:7.0} MiB/s decoded, peak heap {:7.1} KiB",
            raw.len() as f64 / f64::from(1 << 20),
            mib / t.as_secs_f64(),
            peak as f64 / 1024.0
        );
    }
    // The largest windows each coding allows: what one decoder may hold.
    let wide = noise(32 << 20);
    let worst = [
        (Coding::Br, "br w24 noise", leak(brotli(&wide, 1, 24))),
        (Coding::Zstd, "zstd 8 MiB", leak(zstd_wide(32 << 20))),
    ];
    for (coding, label, raw) in &worst {
        let peak = peak_heap(|| {
            black_box(decode(*coding, raw, &caps));
        });
        println!(
            "{label:>13}: peak heap {:7.1} KiB (window held)",
            peak as f64 / 1024.0
        );
    }
}
