//! `multiproc-bench`: the multiproc side of the benchmarks that `cargo xtask bench`
//! compares with `crates/bench/cpython.py` (CPython `multiprocessing`).
//!
//! Protocol (shared with `cpython.py`):
//! - `--list` prints one workload name per line;
//! - `<name>...` runs only those workloads, no argument runs them all;
//! - each workload run prints exactly one stdout line `<workload>\t<unit>\t<value>`, where
//!   value is a median over repetitions and unit is `us` (microseconds per operation, lower
//!   is better) or `ops/s`, `MB/s`, `items/s` (higher is better). Progress goes to stderr.

mod manager;
mod pipe;
mod pool;
mod process;
mod queue;
mod shmem;

use std::process::ExitCode;
use std::time::Instant;

/// A workload: runs its repetitions and returns `(unit, median value)`.
type Workload = fn() -> (&'static str, f64);

/// Every workload, by name; names must match those of `cpython.py`.
const WORKLOADS: &[(&str, Workload)] = &[
    ("process.start_join.fork", process::start_join_fork),
    ("process.start_join.spawn", process::start_join_spawn),
    ("process.start_join.forkserver", process::start_join_forkserver),
    ("pipe.roundtrip_64b", pipe::roundtrip_64b),
    ("pipe.throughput_1mib", pipe::throughput_1mib),
    ("pipe.small_msgs", pipe::small_msgs),
    ("pipe.small_msgs_oneway", pipe::small_msgs_oneway),
    ("pool.map_square_1m", pool::map_square_1m),
    ("pool.imap_unordered_100k", pool::imap_unordered_100k),
    ("pool.apply_async_20k", pool::apply_async_20k),
    ("pool.apply_latency", pool::apply_latency),
    ("pool.cpu_1ms_tasks", pool::cpu_1ms_tasks),
    ("shmem.value_locked_incr", shmem::value_locked_incr),
    ("shmem.value_atomic_incr", shmem::value_atomic_incr),
    ("shmem.array_halves", shmem::array_halves),
    ("manager.dict_set_get", manager::dict_set_get),
    ("manager.dict_two_clients", manager::dict_two_clients),
    ("manager.proxy_create", manager::proxy_create),
    ("queue.ints_1to1", queue::ints_1to1),
    ("queue.ints_2to2", queue::ints_2to2),
    ("queue.mib_1to1", queue::mib_1to1),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for (name, _) in WORKLOADS {
            println!("{name}");
        }
        return ExitCode::SUCCESS;
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-')) {
        eprintln!("multiproc-bench: unknown option {flag}\nusage: multiproc-bench [--list | NAME...]");
        return ExitCode::FAILURE;
    }
    for (name, run) in WORKLOADS {
        if args.is_empty() || args.iter().any(|a| a == name) {
            let (unit, value) = run();
            println!("{name}\t{unit}\t{value:.3}");
        }
    }
    for unknown in args.iter().filter(|a| !WORKLOADS.iter().any(|(n, _)| n == a)) {
        eprintln!("multiproc-bench: unknown workload {unknown}, skipped");
    }
    ExitCode::SUCCESS
}

/// Runs `op` once untimed (warm-up), then `reps` timed times; the median in microseconds.
fn median_us(reps: usize, mut op: impl FnMut()) -> f64 {
    op();
    let samples = (0..reps)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    median(samples)
}

/// The median of `samples` (the mean of the middle two for an even count).
fn median(mut samples: Vec<f64>) -> f64 {
    assert!(!samples.is_empty(), "median of no samples");
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 { samples[mid] } else { (samples[mid - 1] + samples[mid]) / 2.0 }
}
