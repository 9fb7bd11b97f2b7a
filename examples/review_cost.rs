//! What one admission costs the engine alone, without TLS or HTTP: time per review and the
//! peak of heap bytes held while it runs.
//! Used to size the hostile-pod bound and to find where memory goes.
//!
//!   cargo run --release --example review_cost -- REVIEW.json [REPEAT]
//!
//! REVIEW.json is an AdmissionReview as the API server sends it (`benches/load.py` writes the
//! executor, plain and 16,000-env hostile ones; see `benches/callgrind.sh`). The policies are
//! the repository's `policies/`.

use std::time::Instant;

use peak_alloc::PeakAlloc;
use spark_admission::{admission, PolicySet};

// Counts the bytes held and their peak. It wraps the system allocator: the heap figure is what
// the program asks for, the same under the server's mimalloc; the time is a little slower.
#[global_allocator]
static COUNTING: PeakAlloc = PeakAlloc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: review_cost REVIEW.json [REPEAT]")?;
    let repeat: u32 = args.next().map_or(Ok(200), |n| n.parse())?;
    let body = std::fs::read(&path)?;
    let set = PolicySet::load_dir(std::path::Path::new("policies"))?;

    let before = COUNTING.current_usage();
    COUNTING.reset_peak_usage();
    let reply = admission::review(&set, &admission::NoNamespaces, &body);
    let peak = COUNTING.peak_usage() - before;

    let start = Instant::now();
    for _ in 0..repeat {
        std::hint::black_box(admission::review(&set, &admission::NoNamespaces, &body));
    }
    let per_review = start.elapsed() / repeat.max(1);
    println!(
        "{path}: {} bytes in, {} bytes out, HTTP {}; {per_review:?} per review; \
         peak heap held during one review {:.1} MiB ({:.1}x the body)",
        body.len(),
        reply.body.len(),
        reply.http_status,
        peak as f64 / (1024.0 * 1024.0),
        peak as f64 / body.len() as f64,
    );
    Ok(())
}
