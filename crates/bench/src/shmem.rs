//! Shared memory: two processes incrementing one shared counter (under its lock, and with an
//! atomic add), and two processes updating the halves of a shared array (CPython:
//! `multiprocessing.Value('q')` with `with v.get_lock(): v.value += 1`, and
//! `multiprocessing.Array('d')` updated through `get_obj()` under its lock; CPython has no
//! atomic form).
//!
//! Each child waits at a barrier with the parent before and after each batch, so the parent
//! times only the work of both children.

use std::sync::atomic::Ordering;
use std::time::Instant;

use multiproc_process::Process;
use multiproc_shmem::{Array, Barrier, RawValue, Value};

use crate::median;

const BATCHES: usize = 3;
const CHILDREN: usize = 2;
/// Locked increments per child per batch.
const LOCKED_INCR: u64 = 6_000_000;
/// Atomic increments per child per batch.
const ATOMIC_INCR: u64 = 50_000_000;
const ARRAY_LEN: usize = 1_000_000;
/// Passes over its half per child per batch.
const ARRAY_ROUNDS: usize = 2000;

fn locked_incr((v, barrier): (Value<u64>, Barrier)) {
    for _ in 0..BATCHES {
        barrier.wait().expect("barrier");
        for _ in 0..LOCKED_INCR {
            *v.lock().expect("lock") += 1;
        }
        barrier.wait().expect("barrier");
    }
}

fn atomic_incr((v, barrier): (RawValue<u64>, Barrier)) {
    for _ in 0..BATCHES {
        barrier.wait().expect("barrier");
        let counter = v.as_atomic();
        for _ in 0..ATOMIC_INCR {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        barrier.wait().expect("barrier");
    }
}

fn array_half((arr, half, barrier): (Array<f64>, usize, Barrier)) {
    let range = half * ARRAY_LEN / 2..(half + 1) * ARRAY_LEN / 2;
    for _ in 0..BATCHES {
        barrier.wait().expect("barrier");
        for _ in 0..ARRAY_ROUNDS {
            for x in &mut arr.lock().expect("lock")[range.clone()] {
                *x += 1.0;
            }
        }
        barrier.wait().expect("barrier");
    }
}

/// Starts `child(i, barrier)` for each child, times `BATCHES` batches between barriers, and
/// joins them; the median rate for `items` items per batch.
fn run_batches(child: impl Fn(usize, Barrier) -> Process, items: f64) -> f64 {
    let barrier = Barrier::new(CHILDREN + 1).expect("barrier");
    let mut children: Vec<Process> = (0..CHILDREN).map(|i| child(i, barrier.clone())).collect();
    for p in &mut children {
        p.start().expect("start");
    }
    let samples = (0..BATCHES)
        .map(|_| {
            barrier.wait().expect("barrier");
            let start = Instant::now();
            barrier.wait().expect("barrier");
            items / start.elapsed().as_secs_f64()
        })
        .collect();
    for p in &mut children {
        assert_eq!(p.join().expect("join"), 0, "child exit code");
    }
    median(samples)
}

pub(crate) fn value_locked_incr() -> (&'static str, f64) {
    let v = Value::new(0u64).expect("value");
    let rate =
        run_batches(|_, b| Process::new(locked_incr, (v.clone(), b)), (CHILDREN as u64 * LOCKED_INCR) as f64);
    assert_eq!(v.get().expect("lock"), BATCHES as u64 * CHILDREN as u64 * LOCKED_INCR, "lost updates");
    ("ops/s", rate)
}

pub(crate) fn value_atomic_incr() -> (&'static str, f64) {
    let v = RawValue::new(0u64).expect("value");
    let rate =
        run_batches(|_, b| Process::new(atomic_incr, (v.clone(), b)), (CHILDREN as u64 * ATOMIC_INCR) as f64);
    assert_eq!(v.get(), BATCHES as u64 * CHILDREN as u64 * ATOMIC_INCR, "lost updates");
    ("ops/s", rate)
}

pub(crate) fn array_halves() -> (&'static str, f64) {
    let arr = Array::<f64>::new(ARRAY_LEN).expect("array");
    let rate =
        run_batches(|i, b| Process::new(array_half, (arr.clone(), i, b)), (ARRAY_LEN * ARRAY_ROUNDS) as f64);
    let expected = (BATCHES * ARRAY_ROUNDS) as f64;
    assert!(arr.lock().expect("lock").iter().all(|&x| x == expected), "every element updated");
    ("items/s", rate)
}
