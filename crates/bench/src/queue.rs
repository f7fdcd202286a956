//! Queues: 64-bit integers from one producer process to one consumer process, from two to two,
//! and 1 MiB byte strings from one to one (CPython: `multiprocessing.Queue` with fork children,
//! the same constants).
//!
//! Each batch ends with a sentinel `0` per producer; a consumer answers each sentinel with the
//! sum it received since the previous one, and the parent times a batch until every answer is
//! in. Items are consumed, not just moved: the sums are checked at the end.

use std::time::Instant;

use multiproc_process::{Process, StartMethod};
use multiproc_queue::Queue;
use multiproc_wire::Bytes;

use crate::median;

const BATCHES: usize = 5;
/// Integers per batch (over all producers).
const INTS: u64 = 200_000;
/// 1 MiB items per batch.
const MIB_ITEMS: usize = 200;
const MIB: usize = 1 << 20;
/// Tells a consumer to exit.
const STOP: u64 = u64::MAX;

fn start<F, A>(target: F, args: A) -> Process
where
    F: Fn(A) + Send + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = Process::new(target, args);
    p.set_start_method(StartMethod::Fork);
    p.start().expect("start");
    p
}

fn finish(mut p: Process) {
    assert_eq!(p.join().expect("join"), 0, "child exit code");
}

fn sum_ints((q, done): (Queue<u64>, Queue<u64>)) {
    let mut sum = 0;
    loop {
        match q.get().expect("get") {
            STOP => return done.put(sum).expect("put"),
            0 => done.put(std::mem::take(&mut sum)).expect("put"),
            x => sum += x,
        }
    }
}

fn produce_ints((go, q): (Queue<u64>, Queue<u64>)) {
    while let Ok(n) = go.get() {
        if n == STOP {
            return;
        }
        for i in 1..=n {
            q.put(i).expect("put");
        }
        q.put(0).expect("put");
    }
}

pub(crate) fn ints_1to1() -> (&'static str, f64) {
    let (q, done) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
    let consumer = start(sum_ints, (q.clone(), done.clone()));
    let mut samples = Vec::new();
    for batch in 0..=BATCHES {
        let start = Instant::now();
        for i in 1..=INTS {
            q.put(i).expect("put");
        }
        q.put(0).expect("put");
        assert_eq!(done.get().expect("get"), INTS * (INTS + 1) / 2);
        if batch > 0 {
            samples.push(INTS as f64 / start.elapsed().as_secs_f64());
        }
    }
    q.put(STOP).expect("put");
    assert_eq!(done.get().expect("get"), 0);
    finish(consumer);
    ("items/s", median(samples))
}

pub(crate) fn ints_2to2() -> (&'static str, f64) {
    let (go, q, done) =
        (Queue::new().expect("queue"), Queue::new().expect("queue"), Queue::new().expect("queue"));
    let consumers: Vec<_> = (0..2).map(|_| start(sum_ints, (q.clone(), done.clone()))).collect();
    let producers: Vec<_> = (0..2).map(|_| start(produce_ints, (go.clone(), q.clone()))).collect();
    let per_producer = INTS / 2;
    let mut samples = Vec::new();
    let mut total = 0;
    for batch in 0..=BATCHES {
        let start = Instant::now();
        go.put(per_producer).expect("put");
        go.put(per_producer).expect("put");
        total += done.get().expect("get") + done.get().expect("get");
        if batch > 0 {
            samples.push(INTS as f64 / start.elapsed().as_secs_f64());
        }
    }
    go.put(STOP).expect("put");
    go.put(STOP).expect("put");
    producers.into_iter().for_each(finish);
    q.put(STOP).expect("put");
    q.put(STOP).expect("put");
    // Each consumer answers STOP with what it summed since its last answer.
    total += done.get().expect("get") + done.get().expect("get");
    consumers.into_iter().for_each(finish);
    assert_eq!(total, (BATCHES as u64 + 1) * 2 * per_producer * (per_producer + 1) / 2);
    ("items/s", median(samples))
}

fn drain_mib((q, done): (Queue<Bytes>, Queue<u64>)) {
    let mut count = 0;
    loop {
        let item = q.get().expect("get");
        match item.as_slice().len() {
            0 => done.put(std::mem::take(&mut count)).expect("put"),
            1 => return,
            len => {
                assert_eq!(len, MIB);
                count += 1;
            }
        }
    }
}

pub(crate) fn mib_1to1() -> (&'static str, f64) {
    let (q, done) = (Queue::new().expect("queue"), Queue::new().expect("queue"));
    let consumer = start(drain_mib, (q.clone(), done.clone()));
    let item = Bytes(vec![b'x'; MIB]);
    let mut samples = Vec::new();
    for batch in 0..=BATCHES {
        let start = Instant::now();
        for _ in 0..MIB_ITEMS {
            q.put(item.clone()).expect("put");
        }
        q.put(Bytes(Vec::new())).expect("put");
        assert_eq!(done.get().expect("get"), MIB_ITEMS as u64);
        if batch > 0 {
            samples.push((MIB * MIB_ITEMS) as f64 / start.elapsed().as_secs_f64() / 1e6);
        }
    }
    q.put(Bytes(vec![0])).expect("put");
    finish(consumer);
    ("MB/s", median(samples))
}
