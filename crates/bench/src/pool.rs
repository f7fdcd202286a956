//! The process pool: map, imap_unordered, apply_async, apply latency, and 1 ms CPU tasks
//! (CPython: `multiprocessing.Pool(2)` with the same constants).

use std::time::{Duration, Instant};

use multiproc_pool::Pool;

use crate::{median, median_us};

const POOL_WORKERS: usize = 2;
const MAP_ITEMS: u64 = 1_000_000;
const IMAP_ITEMS: u64 = 100_000;
const APPLY_ASYNC_ITEMS: u64 = 20_000;
const APPLY_REPS: usize = 500;
const CPU_TASKS: u64 = 200;
const CPU_TASK: Duration = Duration::from_millis(1);

fn square(x: u64) -> u64 {
    x * x
}

fn busy_1ms(x: u64) -> u64 {
    let end = Instant::now() + CPU_TASK;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
    x
}

fn pool() -> Pool {
    let pool = Pool::new(POOL_WORKERS).expect("pool");
    pool.map(square, 0..(POOL_WORKERS as u64 * 4)).expect("warm-up");
    pool
}

fn pool_rate(items: u64, rounds: usize, run: impl Fn(&Pool)) -> (&'static str, f64) {
    let pool = pool();
    let samples = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            run(&pool);
            items as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    ("items/s", median(samples))
}

pub(crate) fn map_square_1m() -> (&'static str, f64) {
    pool_rate(MAP_ITEMS, 3, |pool| {
        let out = pool.map(square, 0..MAP_ITEMS).expect("map");
        assert_eq!(out[out.len() - 1], (MAP_ITEMS - 1) * (MAP_ITEMS - 1));
    })
}

pub(crate) fn imap_unordered_100k() -> (&'static str, f64) {
    pool_rate(IMAP_ITEMS, 1, |pool| {
        let mut n = 0;
        for result in pool.imap_unordered(square, 0..IMAP_ITEMS) {
            result.expect("task");
            n += 1;
        }
        assert_eq!(n as u64, IMAP_ITEMS);
    })
}

pub(crate) fn apply_async_20k() -> (&'static str, f64) {
    pool_rate(APPLY_ASYNC_ITEMS, 3, |pool| {
        let results: Vec<_> = (0..APPLY_ASYNC_ITEMS).map(|i| pool.apply_async(square, i)).collect();
        let sum: u64 = results.iter().map(|r| r.get().expect("task")).sum();
        assert!(sum > 0);
    })
}

pub(crate) fn apply_latency() -> (&'static str, f64) {
    let pool = pool();
    let us = median_us(APPLY_REPS, || {
        assert_eq!(pool.apply(square, 7).expect("apply"), 49);
    });
    ("us", us)
}

pub(crate) fn cpu_1ms_tasks() -> (&'static str, f64) {
    pool_rate(CPU_TASKS, 3, |pool| {
        let out = pool.map_chunked(busy_1ms, 0..CPU_TASKS, 1).expect("map");
        assert_eq!(out.len() as u64, CPU_TASKS);
    })
}
