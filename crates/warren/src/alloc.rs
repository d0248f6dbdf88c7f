//! The global allocator: mimalloc, counting the bytes in use so the memory
//! alarm can compare them with the high watermark.
//!
//! mimalloc keeps per-thread heaps, which suits the broker: a message is
//! allocated by the publisher's task and freed by the consumer's, often on
//! another thread. It is built without transparent huge pages: with them,
//! every idle connection's small buffers pinned parts of 2 MiB pages, and ten
//! thousand idle connections cost ten times the memory. Counting with one shared atomic per allocation would put
//! a contended cache line back on that path, so each thread keeps its own
//! tally and settles it into the shared total once it drifts past
//! [`SETTLE`] bytes. The total is exact to within that much per thread.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering};

use mimalloc::MiMalloc;

/// How far a thread's tally may drift before it is settled.
const SETTLE: isize = 64 << 10;

static TOTAL: AtomicIsize = AtomicIsize::new(0);

thread_local! {
    static TALLY: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // The tally has no destructor, so it is usable for the whole life of a
    // thread; `try_with` covers the impossible case anyway.
    let settled = TALLY.try_with(|tally| {
        let now = tally.get() + delta;
        if now.abs() >= SETTLE {
            TOTAL.fetch_add(now, Ordering::Relaxed);
            tally.set(0);
        } else {
            tally.set(now);
        }
    });
    if settled.is_err() {
        TOTAL.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Bytes currently allocated by the process (to within a few settle
/// thresholds).
pub fn allocated() -> u64 {
    TOTAL.load(Ordering::Relaxed).max(0) as u64
}

pub struct CountingAlloc;

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { MiMalloc.dealloc(ptr, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        p
    }
}
