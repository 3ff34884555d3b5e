//! A collection allocates the samples it returns and nothing else: the
//! collectors run every few seconds for the life of the daemon. Counted
//! by an instrumented global allocator, alone in this test binary.

use std::alloc::System;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use vigie_metrics::HostCollector;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn a_collection_allocates_only_its_samples() {
    let mut c = HostCollector::new();
    // The first calls size the buffers and start the statvfs thread.
    for _ in 0..3 {
        drop(c.collect());
    }
    let mut out = Vec::with_capacity(16 * 1024);
    let region = Region::new(GLOBAL);
    c.collect_into(&mut out);
    let change = region.change();
    // Each sample's label vector, and each non-empty label value.
    let samples: usize = out
        .iter()
        .map(|s| {
            usize::from(!s.labels.is_empty())
                + s.labels.iter().filter(|(_, v)| !v.is_empty()).count()
        })
        .sum();
    assert!(c.failing().next().is_none());
    assert_eq!(
        (change.allocations, change.reallocations),
        (samples, 0),
        "{} samples",
        out.len()
    );
}
