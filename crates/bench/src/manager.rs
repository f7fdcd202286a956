//! Managers: dict set + get from one client and from two client processes at once, and making
//! a proxy (CPython: `multiprocessing.Manager()` with the same constants, `d[k] = v; d[k]`).

use std::time::Instant;

use multiproc_manager::{BarrierProxy, DictProxy, Manager};
use multiproc_process::Process;

use crate::{median, median_us};

/// Set + get pairs per timed batch (each pair counts as two operations).
const OPS: u64 = 10_000;
const BATCHES: usize = 5;
/// Set + get pairs of each of the two clients, per round.
const CLIENT_OPS: u64 = 10_000;
const CLIENT_ROUNDS: usize = 3;
const CREATE_REPS: usize = 500;

fn manager() -> Manager {
    Manager::start().expect("start a manager")
}

pub(crate) fn dict_set_get() -> (&'static str, f64) {
    let manager = manager();
    let d = manager.dict::<u64, u64>().expect("dict");
    let samples = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..OPS {
                d.set(&i, &i).expect("set");
                assert_eq!(d.get(&i).expect("get"), Some(i));
            }
            (2 * OPS) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    ("ops/s", median(samples))
}

/// One client process: waits for the others, then sets and gets its own keys.
fn dict_client((d, start, base): (DictProxy<u64, u64>, BarrierProxy, u64)) {
    start.wait().expect("barrier");
    for i in base..base + CLIENT_OPS {
        d.set(&i, &i).expect("set");
        assert_eq!(d.get(&i).expect("get"), Some(i));
    }
}

pub(crate) fn dict_two_clients() -> (&'static str, f64) {
    let manager = manager();
    let d = manager.dict::<u64, u64>().expect("dict");
    let samples = (0..CLIENT_ROUNDS)
        .map(|_| {
            let start = manager.barrier(3).expect("barrier");
            let mut clients: Vec<Process> = (0..2)
                .map(|k| Process::new(dict_client, (d.clone(), start.clone(), k * CLIENT_OPS)))
                .collect();
            for c in &mut clients {
                c.start().expect("start a client");
            }
            start.wait().expect("barrier");
            let began = Instant::now();
            for c in &mut clients {
                assert_eq!(c.join().expect("join"), 0, "a client failed");
            }
            (2 * 2 * CLIENT_OPS) as f64 / began.elapsed().as_secs_f64()
        })
        .collect();
    ("ops/s", median(samples))
}

pub(crate) fn proxy_create() -> (&'static str, f64) {
    let manager = manager();
    let us = median_us(CREATE_REPS, || drop(manager.dict::<u64, u64>().expect("dict")));
    ("us", us)
}
