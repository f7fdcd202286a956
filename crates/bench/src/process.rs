//! Process start + join, per start method (CPython: `Process(target=noop)`, start, join).

use multiproc_process::{Process, StartMethod};

use crate::median_us;

fn noop(_: ()) {}

fn start_join(method: StartMethod, reps: usize) -> (&'static str, f64) {
    let us = median_us(reps, || {
        let mut p = Process::new(noop, ());
        p.set_start_method(method);
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 0, "child exit code");
    });
    ("us", us)
}

pub(crate) fn start_join_fork() -> (&'static str, f64) {
    start_join(StartMethod::Fork, 400)
}

pub(crate) fn start_join_spawn() -> (&'static str, f64) {
    start_join(StartMethod::Spawn, 200)
}

pub(crate) fn start_join_forkserver() -> (&'static str, f64) {
    start_join(StartMethod::ForkServer, 400)
}
