//! Tests for queues shared with child processes (spawn and forkserver): pipelines, many
//! producers and consumers, backpressure, processes killed at any moment, joins, leftovers.

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use multiproc_process::{Process, StartMethod};
use multiproc_queue::{JoinableQueue, Queue, SimpleQueue};
use multiproc_wire::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest a test waits for something that should happen at once; reaching it means a bug.
const LIMIT: Duration = Duration::from_secs(10);
/// A timeout that is expected to pass.
const SHORT: Duration = Duration::from_millis(50);
/// The start methods usable inside the multithreaded test harness.
const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];
/// The exit code of a child killed by `SIGKILL` (as in CPython: minus the signal).
const SIGKILL: i32 = -9;
/// Tells a consumer child to stop.
const STOP: (u32, u64) = (u32::MAX, 0);

fn start<F, A, R>(method: StartMethod, target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let mut p = Process::new(target, args);
    p.set_start_method(method);
    p.start().unwrap_or_else(|e| panic!("{method:?}: cannot start the child: {e}"));
    p
}

/// Waits (at most `LIMIT`, then kills) for the child; its exit code.
fn reap<R: Serialize + DeserializeOwned + 'static>(p: &mut Process<R>) -> i32 {
    match p.join_timeout(LIMIT).expect("join_timeout") {
        Some(code) => code,
        None => {
            p.kill().expect("kill");
            let code = p.join_timeout(LIMIT).expect("join_timeout");
            panic!("child still running after {LIMIT:?} (killed: {code:?})");
        }
    }
}

/// Reaps the child, asserts a clean exit, and returns its result.
fn finish<R: Serialize + DeserializeOwned + 'static>(mut p: Process<R>) -> R {
    let code = reap(&mut p);
    assert_eq!(code, 0, "child exit code");
    p.result().expect("child result")
}

fn cube((input, output): (Queue<i64>, Queue<i64>)) {
    for _ in 0..10 {
        let x = input.get_timeout(LIMIT).expect("get");
        output.put(x * x * x).expect("put");
    }
}

fn add_one((input, output): (Queue<i64>, Queue<i64>)) {
    for _ in 0..10 {
        let x = input.get_timeout(LIMIT).expect("get");
        output.put(x + 1).expect("put");
    }
}

#[test]
fn passes_queues_to_children() {
    for method in METHODS {
        let (numbers, cubes, results) = (Queue::new().unwrap(), Queue::new().unwrap(), Queue::new().unwrap());
        let a = start(method, cube, (numbers.clone(), cubes.clone()));
        let b = start(method, add_one, (cubes.clone(), results.clone()));
        for x in 1..=10 {
            numbers.put(x).unwrap();
        }
        let got: Vec<i64> = (0..10).map(|_| results.get_timeout(LIMIT).unwrap()).collect();
        assert_eq!(got, [2, 9, 28, 65, 126, 217, 344, 513, 730, 1001], "{method:?}");
        finish(a);
        finish(b);
    }
}

fn produce((q, id, count): (Queue<(u32, u64)>, u32, u64)) {
    for i in 0..count {
        q.put_timeout((id, i), LIMIT).expect("put");
    }
}

fn consume(q: Queue<(u32, u64)>) -> Vec<(u32, u64)> {
    let mut got = Vec::new();
    loop {
        match q.get_timeout(LIMIT).expect("get") {
            STOP => return got,
            item => got.push(item),
        }
    }
}

/// Checks that `lists` (one per consumer) hold each of `producers` × `each` items exactly once,
/// each list in per-producer order.
fn check_exactly_once(lists: &[Vec<(u32, u64)>], producers: u32, each: u64) {
    let mut seen = HashSet::new();
    for list in lists {
        let mut last = vec![None; producers as usize];
        for &(p, i) in list {
            assert!(seen.insert((p, i)), "({p}, {i}) delivered twice");
            assert!(last[p as usize] < Some(i), "producer {p}: {i} after {:?}", last[p as usize]);
            last[p as usize] = Some(i);
        }
    }
    assert_eq!(seen.len() as u64, u64::from(producers) * each, "items lost");
}

#[test]
fn mixes_process_and_thread_producers_and_consumers() {
    const EACH: u64 = 5000;
    let q: Queue<(u32, u64)> = Queue::bounded(50).unwrap();
    let method = |i: u32| METHODS[i as usize % 2];
    let consumers: Vec<_> = (0..2).map(|i| start(method(i), consume, q.clone())).collect();
    let thread_consumer = {
        let q = q.clone();
        thread::spawn(move || consume(q))
    };
    let producers: Vec<_> = (0..2).map(|id| start(method(id), produce, (q.clone(), id, EACH))).collect();
    let thread_producers: Vec<_> = (2..4)
        .map(|id| {
            let q = q.clone();
            thread::spawn(move || produce((q, id, EACH)))
        })
        .collect();
    producers.into_iter().for_each(finish);
    thread_producers.into_iter().for_each(|t| t.join().unwrap());
    for _ in 0..3 {
        q.put_timeout(STOP, LIMIT).unwrap();
    }
    let mut lists: Vec<_> = consumers.into_iter().map(finish).collect();
    lists.push(thread_consumer.join().unwrap());
    check_exactly_once(&lists, 4, EACH);
    assert!(q.empty());
}

fn put_when_full(q: Queue<u32>) -> (bool, bool) {
    let refused = q.put_timeout(3, SHORT).is_err_and(|e| e.is_full());
    let waited = q.put_timeout(4, LIMIT).is_ok();
    (refused, waited)
}

#[test]
fn applies_backpressure_across_processes() {
    for method in METHODS {
        let q = Queue::bounded(2).unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        let p = start(method, put_when_full, q.clone());
        // The child's first put times out while the queue stays full.
        thread::sleep(SHORT * 4);
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get_timeout(LIMIT).unwrap(), 1);
        assert_eq!(finish(p), (true, true), "{method:?}");
        let rest: Vec<u32> = (0..2).map(|_| q.get_timeout(LIMIT).unwrap()).collect();
        assert_eq!(rest, [2, 4]);
    }
}

fn produce_forever(q: Queue<(u64, Bytes)>) {
    for i in 0.. {
        let size = [10, 300_000, 1 << 20, 5000][i as usize % 4];
        q.put_timeout((i, Bytes(vec![i as u8; size])), LIMIT).expect("put");
    }
}

/// Takes items until `deadline`, checking their order and content; the next expected number.
fn take_checked(q: &Queue<(u64, Bytes)>, mut next: u64, deadline: Option<Instant>) -> u64 {
    loop {
        let item = match deadline {
            Some(d) if Instant::now() >= d => return next,
            Some(_) => q.get_timeout(Duration::from_millis(5)),
            None => q.get_nowait(),
        };
        let Ok((i, bytes)) = item else {
            if deadline.is_none() {
                return next;
            }
            continue;
        };
        assert_eq!(i, next, "items out of order or lost");
        assert_eq!(bytes.as_slice().len(), [10, 300_000, 1 << 20, 5000][i as usize % 4]);
        assert!(bytes.as_slice().iter().all(|&b| b == i as u8), "item {i} damaged");
        next += 1;
    }
}

#[test]
fn survives_killed_producers() {
    // A small buffer, so that the producer is often inside a long copy under the lock, or
    // asleep waiting for room, when it is killed.
    let q: Queue<(u64, Bytes)> = Queue::with_buffer(0, 4 << 20).unwrap();
    let mut next = 0;
    for (round, method) in METHODS.into_iter().cycle().take(6).enumerate() {
        let mut p = start(method, produce_forever, q.clone());
        let busy = Duration::from_millis(30 + 17 * round as u64);
        next = take_checked(&q, next, Some(Instant::now() + busy));
        p.kill().unwrap();
        assert_eq!(reap(&mut p), SIGKILL, "{method:?}");
        // Everything the producer put before it died is there, whole and in order.
        let before = next;
        next = take_checked(&q, next, None);
        assert!(q.empty());
        assert!(next > 0, "round {round}: nothing came through ({before})");
        // Later producers start counting from 0 again.
        next = 0;
    }
    q.put_timeout((0, Bytes(vec![0; 10])), SHORT).unwrap();
    assert_eq!(take_checked(&q, 0, None), 1, "the queue still works");
}

/// An item: (producer, number).
type Item = (u32, u64);

fn forward((q, out): (Queue<Item>, Queue<Item>)) {
    loop {
        let item = q.get_timeout(LIMIT).expect("get");
        out.put(item).expect("put");
    }
}

fn wait_one(q: Queue<(u32, u64)>) -> Option<(u32, u64)> {
    q.get_timeout(LIMIT).ok()
}

#[test]
fn survives_killed_consumers() {
    const N: u64 = 30_000;
    for method in METHODS {
        let (q, out) = (Queue::new().unwrap(), Queue::new().unwrap());
        for i in 0..N {
            q.put((0, i)).unwrap();
        }
        let mut p = start(method, forward, (q.clone(), out.clone()));
        let start_len = q.qsize();
        let deadline = Instant::now() + LIMIT;
        while q.qsize() + 2000 > start_len && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        p.kill().unwrap();
        assert_eq!(reap(&mut p), SIGKILL, "{method:?}");
        let forwarded: Vec<_> = std::iter::from_fn(|| out.get_nowait().ok()).collect();
        let left: Vec<_> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
        assert!(!forwarded.is_empty() && !left.is_empty(), "{method:?}: killed too early or too late");
        // Each item is forwarded or still queued, once; at most the one the consumer held
        // when it was killed is lost.
        let mut seen = HashSet::new();
        for &(_, i) in forwarded.iter().chain(&left) {
            assert!(seen.insert(i), "{method:?}: {i} twice");
        }
        let lost = N - seen.len() as u64;
        assert!(lost <= 1, "{method:?}: {lost} items lost");
        assert!(forwarded.windows(2).all(|w| w[0] < w[1]) && left.windows(2).all(|w| w[0] < w[1]));

        // A consumer killed while asleep in `get` does not keep others from being woken.
        let mut sleeper = start(method, wait_one, q.clone());
        thread::sleep(SHORT * 2);
        sleeper.kill().unwrap();
        assert_eq!(reap(&mut sleeper), SIGKILL);
        let waiter = start(method, wait_one, q.clone());
        thread::sleep(SHORT);
        q.put((7, 7)).unwrap();
        assert_eq!(finish(waiter), Some((7, 7)), "{method:?}");
    }
}

fn work(q: JoinableQueue<u32>) -> u32 {
    let mut done = 0;
    loop {
        let item = q.get_timeout(LIMIT).expect("get");
        q.task_done().expect("task_done");
        if item == 0 {
            return done;
        }
        done += 1;
    }
}

#[test]
fn joins_a_joinable_queue_across_processes() {
    let q = JoinableQueue::new().unwrap();
    let workers: Vec<_> = METHODS.into_iter().map(|m| start(m, work, q.clone())).collect();
    for i in 1..=200 {
        q.put(i).unwrap();
    }
    q.join_timeout(LIMIT).expect("every item done");
    assert!(q.empty());
    q.put(0).unwrap();
    q.put(0).unwrap();
    let done: u32 = workers.into_iter().map(finish).sum();
    assert_eq!(done, 200);
    q.join_timeout(LIMIT).unwrap();
    assert!(q.task_done().is_err());
}

fn echo(q: SimpleQueue<String>) {
    let s = q.get_timeout(LIMIT).expect("get");
    q.put(s + "!").expect("put");
}

fn shm_entries() -> HashSet<String> {
    std::fs::read_dir("/dev/shm")
        .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn maps_mention_queue() -> bool {
    std::fs::read_to_string("/proc/self/maps").unwrap().contains("multiproc-queue")
}

#[test]
fn leaves_nothing_behind() {
    let before = shm_entries();
    {
        let q = SimpleQueue::new().unwrap();
        assert!(maps_mention_queue());
        for method in METHODS {
            let p = start(method, echo, q.clone());
            q.put("hi".to_owned()).unwrap();
            finish(p);
            assert_eq!(q.get_timeout(LIMIT).unwrap(), "hi!");
        }
    }
    let after = shm_entries();
    assert!(after.is_subset(&before), "new in /dev/shm: {:?}", after.difference(&before).collect::<Vec<_>>());
}
