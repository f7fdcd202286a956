//! Tests for queues under the `Fork` start method: handles passed as arguments to forked
//! children and captured by forked closures, and a forked producer killed mid-stream.
//!
//! Forking inside the multithreaded libtest harness would copy the harness's locks into the
//! children, so this binary has its own harness (`harness = false`): `main` runs each test on
//! the main thread, one after the other, while the process has no other thread.

use std::time::Duration;

use multiproc_process::{Process, StartMethod};
use multiproc_queue::{JoinableQueue, Queue};

const LIMIT: Duration = Duration::from_secs(10);

const TESTS: &[(&str, fn())] = &[
    ("passes_queues_to_forked_functions", passes_queues_to_forked_functions),
    ("shares_queues_with_forked_closures", shares_queues_with_forked_closures),
    ("survives_a_killed_forked_producer", survives_a_killed_forked_producer),
];

fn main() -> std::process::ExitCode {
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(120))
}

/// Waits (at most `LIMIT`, then kills) for the child; its exit code.
fn reap<R: serde::Serialize + serde::de::DeserializeOwned + 'static>(p: &mut Process<R>) -> i32 {
    match p.join_timeout(LIMIT).expect("join_timeout") {
        Some(code) => code,
        None => {
            p.kill().expect("kill");
            let code = p.join_timeout(LIMIT).expect("join_timeout");
            panic!("child still running after {LIMIT:?} (killed: {code:?})");
        }
    }
}

fn double((input, output): (Queue<u32>, Queue<u32>)) {
    for _ in 0..100 {
        let x = input.get_timeout(LIMIT).expect("get");
        output.put(2 * x).expect("put");
    }
}

fn passes_queues_to_forked_functions() {
    let (input, output) = (Queue::bounded(10).unwrap(), Queue::new().unwrap());
    let mut p = Process::new(double, (input.clone(), output.clone()));
    p.set_start_method(StartMethod::Fork);
    p.start().expect("fork");
    for x in 0..100 {
        input.put_timeout(x, LIMIT).unwrap();
    }
    let got: Vec<u32> = (0..100).map(|_| output.get_timeout(LIMIT).unwrap()).collect();
    assert_eq!(got, (0..100).map(|x| 2 * x).collect::<Vec<_>>());
    assert_eq!(reap(&mut p), 0);
}

fn shares_queues_with_forked_closures() {
    let q: JoinableQueue<String> = JoinableQueue::new().unwrap();
    let child = q.clone();
    let mut p = Process::from_closure(move || {
        let mut n = 0;
        while let Ok(s) = child.get_timeout(LIMIT) {
            child.task_done().expect("task_done");
            if s.is_empty() {
                return n;
            }
            n += s.len();
        }
        usize::MAX
    });
    p.start().expect("fork");
    for s in ["a", "bb", "ccc", ""] {
        q.put(s.to_owned()).unwrap();
    }
    q.join_timeout(LIMIT).expect("join");
    assert_eq!(reap(&mut p), 0);
    assert_eq!(p.result().unwrap(), 6);
}

fn produce(q: Queue<(u64, Vec<u64>)>) {
    for i in 0.. {
        q.put_timeout((i, vec![i; 1000]), LIMIT).expect("put");
    }
}

fn survives_a_killed_forked_producer() {
    let q = Queue::with_buffer(0, 1 << 20).unwrap();
    let mut p = Process::new(produce, q.clone());
    p.set_start_method(StartMethod::Fork);
    p.start().expect("fork");
    let mut next = 0;
    while next < 2000 {
        let (i, v) = q.get_timeout(LIMIT).unwrap();
        assert_eq!((i, v.len()), (next, 1000));
        next += 1;
    }
    p.kill().unwrap();
    assert_eq!(reap(&mut p), -9);
    while let Ok((i, v)) = q.get_nowait() {
        assert_eq!(i, next, "lost or reordered");
        assert!(v.iter().all(|&x| x == i));
        next += 1;
    }
    q.put((0, Vec::new())).unwrap();
    assert_eq!(q.get_nowait().unwrap(), (0, Vec::new()));
}
