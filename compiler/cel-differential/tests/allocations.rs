//! Compiled checks allocate nothing per evaluation, on success and on failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// `GlobalAlloc` is an unsafe trait: counting allocations needs one `unsafe impl` that
// forwards to the system allocator. This is the only unsafe code in the crate; the
// library keeps `#![forbid(unsafe_code)]`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;

use agentc_cel_differential::generated::{history_rule, kb_prefix};
use agentc_cel_differential::sample_engagement;
use agentc_cel_support::Meter;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// const-initialised thread locals, whose access does not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from `System.alloc` with this layout.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(mut body: impl FnMut()) -> u64 {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    body();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn compiled_checks_do_not_allocate() {
    let engagement = sample_engagement(100).unwrap();
    let mut without_search = engagement.clone();
    without_search.recent.hr_kb_search = None;
    // Warm up: the first call may initialise lazily compiled statics.
    assert_eq!(kb_prefix(&engagement, &Meter::new()), Ok(true));
    assert_eq!(history_rule(&engagement, &Meter::new()), Ok(true));
    assert!(kb_prefix(&without_search, &Meter::new()).is_err());

    let count = allocations_during(|| {
        for _ in 0..1000 {
            black_box(kb_prefix(black_box(&engagement), &Meter::new())).ok();
        }
    });
    assert_eq!(count, 0, "kb_prefix allocated");
    let count = allocations_during(|| {
        for _ in 0..100 {
            black_box(history_rule(black_box(&engagement), &Meter::new())).ok();
        }
    });
    assert_eq!(count, 0, "history_rule allocated");
    let count = allocations_during(|| {
        for _ in 0..1000 {
            black_box(kb_prefix(black_box(&without_search), &Meter::new())).ok();
        }
    });
    assert_eq!(count, 0, "a failing kb_prefix allocated");
    // The counter works.
    let count = allocations_during(|| {
        black_box(vec![1u8; 16]);
    });
    assert_eq!(count, 1);
}
