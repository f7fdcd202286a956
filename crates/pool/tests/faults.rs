//! Tests for the pool's behaviour when things go wrong: tasks that panic, workers that die
//! mid-task (`SIGKILL`, `abort`, `exit`), initializers that panic, endless `imap` inputs,
//! `terminate` during long tasks, and submissions racing `close`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use common::*;
use multiproc_pool::{Error, ErrorKind, Pool, Result};
use multiproc_process::{Fd, StartMethod};
use serde::{Deserialize, Serialize};

/// The line of the `panic!` in [`picky`].
const PICKY_PANIC_LINE: u32 = line!() + 5;

/// Panics on 3, here in this file (so that the test knows the panic's location).
fn picky(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

/// Every result that `next` (an iterator's `next_timeout`) gives, each awaited at most [`LONG`].
fn drain<T>(mut next: impl FnMut(Duration) -> Option<Result<T>>) -> Vec<Result<T>> {
    let mut out = Vec::new();
    while let Some(item) = next(LONG) {
        assert!(!item.as_ref().is_err_and(Error::is_timeout), "a result took longer than {LONG:?}");
        out.push(item);
    }
    out
}

#[test]
fn reports_panics_and_keeps_the_worker() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let worker = pool.apply(me, ()).expect("me");
        let error = pool.apply(picky, 3).expect_err("panics");
        assert_eq!(error.kind(), ErrorKind::Panicked);
        assert_eq!(error.message(), "three is not allowed");
        let location = error.panic_location().expect("a location");
        assert!(location.starts_with(&format!("{}:{PICKY_PANIC_LINE}:", file!())), "{location}");
        let text = error.to_string();
        assert!(text.contains("three is not allowed") && text.contains(location), "{text}");
        // The same worker goes on.
        assert_eq!(pool.apply(me, ()).expect("the worker goes on"), worker);

        // Among other items: map fails with the panic, imap yields it at its position.
        let error = pool.map(picky, 0..6).expect_err("map");
        assert_eq!((error.kind(), error.message()), (ErrorKind::Panicked, "three is not allowed"));
        let error = pool.map_chunked(picky, 0..6, 6).expect_err("one chunk");
        assert_eq!(error.kind(), ErrorKind::Panicked);
        for chunksize in [1, 2, 6] {
            let mut it = pool.imap(picky, 0..6).chunksize(chunksize);
            let results = drain(|t| it.next_timeout(t));
            assert_eq!(results.len(), 6, "chunksize {chunksize}: {results:?}");
            for (i, result) in (0..).zip(&results) {
                match result {
                    Ok(x) => assert_eq!((i, *x), (i, i), "chunksize {chunksize}"),
                    Err(e) => assert_eq!((i, e.kind()), (3, ErrorKind::Panicked), "chunksize {chunksize}"),
                }
            }
        }
        let mut it = pool.imap_unordered(picky, 0..6);
        let results = drain(|t| it.next_timeout(t));
        let values: BTreeSet<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(values, [0, 1, 2, 4, 5].into());
        assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
        assert_eq!(pool.apply(me, ()).expect("still the same worker"), worker);
        drop(pool);
        assert_gone([worker]);
    });
}

/// A one-worker pool whose task ends the worker as `death` says: the task gets `WorkerLost`
/// with `code` (and `text` in its message), a new worker takes over, the dead one is reaped.
fn check_death(method: StartMethod, death: Death, code: i32, text: &'static str) {
    scenario(move || {
        let pool = Pool::builder().processes(1).start_method(method).build().expect("build");
        let first = pool.apply_async(me, ()).get_timeout(LONG).expect("me");
        let error = pool.apply_async(die, death).get_timeout(LONG).expect_err("the worker dies");
        assert_eq!(error.kind(), ErrorKind::WorkerLost, "{error}");
        assert_eq!(error.exit_code(), Some(code), "{error}");
        assert_eq!(error.signal(), (code < 0).then_some(-code), "{error}");
        assert!(error.message().contains(text), "{error}");
        assert!(error.to_string().contains(text), "{error}");
        let second = pool.apply_async(me, ()).get_timeout(LONG).expect("a new worker runs tasks");
        assert_ne!(second, first);
        assert_gone([first]);
        let values = pool.map_async(square, 0..10).get_timeout(LONG).expect("map after a death");
        assert_eq!(values, (0..10).map(|x| x * x).collect::<Vec<_>>());
        drop(pool);
        assert_gone([second]);
    });
}

#[test]
fn reports_a_worker_that_raises_sigkill() {
    check_death(StartMethod::ForkServer, Death::Raise, -libc::SIGKILL, "killed by signal 9");
}

#[test]
fn reports_a_worker_that_kills_itself() {
    check_death(StartMethod::ForkServer, Death::Kill, -libc::SIGKILL, "killed by signal 9");
}

#[test]
fn reports_an_aborted_worker() {
    check_death(StartMethod::ForkServer, Death::Abort, -libc::SIGABRT, "killed by signal 6");
}

#[test]
fn reports_a_worker_that_exits() {
    check_death(StartMethod::ForkServer, Death::Exit3, 3, "exit code 3");
}

#[test]
fn reports_a_spawned_worker_that_dies() {
    check_death(StartMethod::Spawn, Death::Raise, -libc::SIGKILL, "killed by signal 9");
}

/// 40 jobs: values, except deaths at `deaths`.
fn jobs(deaths: &[u64]) -> Vec<Job> {
    (0..40).map(|i| if deaths.contains(&i) { Job::Die(Death::Raise) } else { Job::Value(i) }).collect()
}

/// Asserts that `e` tells of a worker killed by `SIGKILL`.
fn expect_lost(e: &Error) {
    assert_eq!((e.kind(), e.signal()), (ErrorKind::WorkerLost, Some(9)), "{e}");
}

/// The job's value and the worker that ran it.
fn run_job_with_proc(job: Job) -> (u64, Proc) {
    (run_job(job), Proc::me())
}

#[test]
fn fails_only_the_task_of_a_dead_worker() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let mut workers = BTreeSet::new();

        // map returns the error.
        let error = pool.map_async(run_job, jobs(&[7])).get_timeout(LONG).expect_err("map");
        expect_lost(&error);
        let error = pool.map_chunked(run_job, jobs(&[39]), 1).expect_err("map_chunked");
        expect_lost(&error);

        // imap yields it at its position and goes on with the rest.
        for chunksize in [1u64, 4] {
            let mut it = pool.imap(run_job_with_proc, jobs(&[7, 23])).chunksize(chunksize as usize);
            let results = drain(|t| it.next_timeout(t));
            assert_eq!(results.len(), 40, "chunksize {chunksize}: {results:?}");
            for (i, result) in (0..).zip(&results) {
                match result {
                    Ok((x, worker)) => {
                        assert_eq!(*x, i, "chunksize {chunksize}");
                        workers.insert(*worker);
                    }
                    // A chunk is lost with its worker, each of its items with the error.
                    Err(e) => {
                        let chunk = i / chunksize;
                        assert!(chunk == 7 / chunksize || chunk == 23 / chunksize, "item {i}: {e}");
                        expect_lost(e);
                    }
                }
            }
        }
        let mut it = pool.imap_unordered(run_job, jobs(&[0, 20]));
        let results = drain(|t| it.next_timeout(t));
        let values: BTreeSet<u64> = results.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(values, (1..40).filter(|&i| i != 20).collect());
        results.iter().filter_map(|r| r.as_ref().err()).for_each(expect_lost);
        assert_eq!(results.len(), 40);

        // Callbacks hear of it too.
        let (tx, rx) = mpsc::channel();
        let (ok, err) = (tx.clone(), tx);
        let lost = pool.apply_async_with(
            die,
            Death::Raise,
            move |v| ok.send(format!("value {v}")).unwrap(),
            move |e| err.send(format!("{:?}", e.kind())).unwrap(),
        );
        expect_lost(&lost.get_timeout(LONG).expect_err("the worker dies"));
        assert_eq!(rx.recv_timeout(Duration::ZERO).expect("the error callback ran before get"), "WorkerLost");

        // The pool is whole again, and closing it still works.
        let results = pool.map_async(run_job_with_proc, jobs(&[])).get_timeout(LONG).expect("map");
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
        workers.extend(results.iter().map(|r| r.1));
        pool.close();
        pool.join().expect("join");
        assert_gone(workers);
    });
}

#[test]
fn replaces_a_worker_killed_from_outside() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let first = pool.apply_async(me, ()).get_timeout(LONG).expect("me");
        // SAFETY: kill sends a signal; the worker is alive (its pool holds it).
        assert_eq!(unsafe { libc::kill(first.pid as i32, libc::SIGKILL) }, 0);
        assert_gone([first]);
        let second = pool.apply_async(me, ()).get_timeout(LONG).expect("a new worker");
        assert_ne!(second, first);
        drop(pool);
        assert_gone([second]);
    });
}

#[test]
fn fails_build_when_the_initializer_panics() {
    scenario(|| {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let dir = TempDir::new("init-fails");
            let log = dir.path("workers");
            let error = Pool::builder()
                .processes(2)
                .start_method(method)
                .initializer(init_failing, log.clone())
                .build()
                .expect_err("the initializer panics");
            assert_eq!(error.kind(), ErrorKind::Initializer, "{method}: {error}");
            assert!(error.message().contains("no database here"), "{method}: {error}");
            assert!(error.to_string().contains("no database here"), "{method}: {error}");
            // No worker is started again: the count stays bounded.
            let started = read_log(&log);
            assert!((1..=2).contains(&started.len()), "{method}: {started:?}");
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(read_log(&log), started, "{method}: workers were started again");
            assert_gone(started);
        }
    });
}

#[test]
fn fails_build_when_the_initializer_ends_its_worker() {
    scenario(|| {
        for (death, text) in [(Death::Exit3, "exit code 3"), (Death::Raise, "killed by signal 9")] {
            let error = Pool::builder()
                .processes(2)
                .initializer(|death: Death| _ = die(death), death)
                .build()
                .expect_err("the initializer ends the worker");
            assert_eq!(error.kind(), ErrorKind::Initializer, "{error}");
            assert!(error.message().contains(text), "{error}");
        }
    });
}

#[test]
fn stops_replacing_workers_whose_initializer_panics() {
    scenario(|| {
        let dir = TempDir::new("init-fails-later");
        let (marker, log) = (dir.path("marker"), dir.path("failed"));
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(1)
            .initializer(init_failing_once_marked, (marker.clone(), log.clone()))
            .build()
            .expect("build");
        assert_eq!(pool.apply_async(square, 2).get_timeout(LONG).expect("before the marker"), 4);
        fs::write(&marker, b"").expect("set the marker");
        // Workers started before the marker run a task each; then a replacement's initializer
        // fails, and the next calls say so.
        let mut ran = 0;
        let error = loop {
            match pool.apply_async(square, 3).get_timeout(LONG) {
                Ok(value) => {
                    assert_eq!(value, 9);
                    ran += 1;
                    assert!(ran <= 4, "the initializer's failure is never reported");
                }
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), ErrorKind::Initializer, "{error}");
        assert!(error.message().contains("the marker is set"), "{error}");
        for _ in 0..3 {
            let error = pool.apply_async(square, 1).get_timeout(LONG).expect_err("apply");
            assert_eq!(error.kind(), ErrorKind::Initializer, "{error}");
            let error = pool.map_async(square, 0..5).get_timeout(LONG).expect_err("map");
            assert_eq!(error.kind(), ErrorKind::Initializer, "{error}");
            let item = pool.imap(square, 0..).next_timeout(LONG).expect("an item");
            assert_eq!(item.expect_err("imap").kind(), ErrorKind::Initializer);
        }
        // No respawn loop.
        let failed = read_log(&log);
        assert!((1..=3).contains(&failed.len()), "{failed:?}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(read_log(&log), failed, "a worker whose initializer failed was replaced");
        pool.close();
        pool.join().expect("join");
        assert_gone(failed);
    });
}

#[test]
fn imaps_endless_inputs() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let mut it = pool.imap(square, 0..);
        let first: Vec<u64> =
            (0..10).map(|_| it.next_timeout(LONG).expect("endless").expect("square")).collect();
        assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());
        drop(it);
        let mut it = pool.imap_unordered(square, std::iter::repeat(3));
        for _ in 0..10 {
            assert_eq!(it.next_timeout(LONG).expect("endless").expect("square"), 9);
        }
        drop(it);
        let mut it = pool.imap(square, (0..).step_by(2)).chunksize(5);
        let evens: Vec<u64> =
            (0..12).map(|_| it.next_timeout(LONG).expect("endless").expect("square")).collect();
        assert_eq!(evens, (0..24).step_by(2).map(|x| x * x).collect::<Vec<_>>());
        drop(it);
        assert_eq!(pool.map_async(square, [4]).get_timeout(LONG).expect("map"), [16]);
        // Dropping the pool waits only for what the iterators had in flight.
        drop(pool);
    });
}

/// `items`, counting how many have been pulled.
fn counted<T>(items: impl Iterator<Item = T>) -> (Arc<AtomicUsize>, impl Iterator<Item = T>) {
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    (pulled, items.inspect(move |_| _ = counter.fetch_add(1, Ordering::SeqCst)))
}

/// An input that holds its task until a gate opens, or a value.
#[derive(Debug, Serialize, Deserialize)]
enum Input {
    Gate(Fd),
    Value(u64),
}

fn gated_or_value(input: Input) -> u64 {
    match input {
        Input::Gate(fd) => {
            gated(fd);
            u64::MAX
        }
        Input::Value(x) => x,
    }
}

/// More than any in-flight window a two-worker pool may keep, far less than an eager pool
/// pulls in the time the tests wait.
const WINDOW_BOUND: usize = 128;

#[test]
fn pulls_imap_input_lazily() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        for (ordered, chunksize) in [(true, 1), (false, 1), (true, 3)] {
            let (pulled, input) = counted(0u64..);
            let mut it = if ordered { pool.imap(square, input) } else { pool.imap_unordered(square, input) }
                .chunksize(chunksize);
            for _ in 0..10 {
                it.next_timeout(LONG).expect("endless").expect("square");
            }
            let n = pulled.load(Ordering::SeqCst);
            let bound = 10 + WINDOW_BOUND * chunksize;
            assert!((10..=bound).contains(&n), "ordered {ordered}, chunksize {chunksize}: pulled {n}");
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(pulled.load(Ordering::SeqCst), n, "input pulled while nobody asked for results");
        }
        // A slow first item: the others finish, but input is not pulled far ahead of what
        // has been consumed.
        let (mut gate, fd) = gate();
        let (pulled, input) = counted(std::iter::once(Input::Gate(fd)).chain((0..).map(Input::Value)));
        let mut it = pool.imap(gated_or_value, input);
        let timeout = it.next_timeout(Duration::from_millis(500)).expect("an item").expect_err("held");
        assert!(timeout.is_timeout());
        gate.started();
        let n = pulled.load(Ordering::SeqCst);
        assert!(n <= 1 + WINDOW_BOUND, "{n} items pulled while the first was held");
        gate.open();
        assert_eq!(it.next_timeout(LONG).expect("an item").expect("gated"), u64::MAX);
        let values: Vec<u64> =
            (0..10).map(|_| it.next_timeout(LONG).expect("endless").expect("value")).collect();
        assert_eq!(values, (0..10).collect::<Vec<_>>());
        let n = pulled.load(Ordering::SeqCst);
        assert!(n <= 11 + WINDOW_BOUND, "{n} items pulled for 11 results");
    });
}

#[test]
fn terminates_workers_mid_task() {
    scenario(|| {
        let pool = Arc::new(Pool::new(2).expect("build"));
        let outcomes: Arc<Mutex<Vec<String>>> = Arc::default();
        let (mut gates, fds): (Vec<Gate>, Vec<_>) = (0..2).map(|_| gate()).unzip();
        let running: Vec<_> = fds
            .into_iter()
            .map(|fd| {
                let (ok, err) = (outcomes.clone(), outcomes.clone());
                pool.apply_async_with(
                    announce_then_sleep,
                    fd,
                    move |worker| ok.lock().unwrap().push(format!("{worker:?} survived terminate")),
                    move |e| err.lock().unwrap().push(format!("{:?}", e.kind())),
                )
            })
            .collect();
        let queued = pool.apply_async(sleep_ms, 60_000);
        let mapped = pool.map_async(sleep_ms, [60_000; 4]);
        // Both workers are in their minute-long sleep.
        let workers: Vec<Proc> = gates.iter_mut().map(Gate::started).collect();
        let terminating = pool.clone();
        within(Duration::from_secs(10), "terminate", move || terminating.terminate());
        for result in &running {
            assert_eq!(result.get_timeout(Duration::ZERO).expect_err("terminated").kind(), ErrorKind::Closed);
        }
        assert_eq!(queued.get_timeout(Duration::ZERO).expect_err("terminated").kind(), ErrorKind::Closed);
        assert_eq!(mapped.get_timeout(Duration::ZERO).expect_err("terminated").kind(), ErrorKind::Closed);
        assert_eq!(*outcomes.lock().unwrap(), ["Closed", "Closed"]);
        assert_gone(workers);
        pool.join().expect("join after terminate");
        let error = pool.apply_async(square, 1).get_timeout(LONG).expect_err("terminated pool");
        assert_eq!(error.kind(), ErrorKind::Closed);
        pool.terminate(); // again: nothing to do
    });
}

#[test]
fn settles_tasks_submitted_while_closing() {
    // A race: each round closes or terminates the pool while three threads submit. Every
    // handle must settle, with its value or `Closed`; none may stay pending forever.
    scenario(|| {
        for round in 0..24 {
            let pool = Pool::new(1).expect("build");
            let results = std::thread::scope(|s| {
                let submitters: Vec<_> = (0..3)
                    .map(|_| s.spawn(|| (0..500).map(|i| pool.apply_async(square, i)).collect::<Vec<_>>()))
                    .collect();
                std::thread::sleep(Duration::from_micros(100 * (round % 12)));
                if round % 2 == 0 {
                    pool.close();
                } else {
                    pool.terminate();
                }
                submitters.into_iter().flat_map(|s| s.join().expect("submitter")).collect::<Vec<_>>()
            });
            for (i, result) in (0..).zip(&results) {
                match result.get_timeout(LONG / 4) {
                    Ok(value) => assert_eq!(value, (i % 500) * (i % 500)),
                    Err(e) => assert_eq!(e.kind(), ErrorKind::Closed, "round {round}, task {i}: {e}"),
                }
            }
            pool.join().expect("join");
        }
    });
}

#[test]
fn survives_a_panicking_callback() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let bad = pool.apply_async_with(square, 2, |_| panic!("a buggy callback"), |_| {});
        assert_eq!(bad.get_timeout(LONG / 4).expect("the task's value stands"), 4);
        let bad = pool.apply_async_with(fragile, 3, |_| {}, |_| panic!("a buggy error callback"));
        assert_eq!(bad.get_timeout(LONG / 4).expect_err("panicked").kind(), ErrorKind::Panicked);
        // Later callbacks still run, on the callback thread.
        let (tx, rx) = mpsc::channel();
        let good = pool.apply_async_with(
            square,
            3,
            move |v| tx.send((*v, std::thread::current().name().map(str::to_owned))).unwrap(),
            |e| panic!("{e}"),
        );
        assert_eq!(good.get_timeout(LONG / 4).expect("square"), 9);
        let (value, thread) = rx.recv_timeout(Duration::ZERO).expect("the callback ran before get returned");
        assert_eq!(value, 9);
        assert_ne!(thread, std::thread::current().name().map(str::to_owned));
        assert_eq!(pool.map_async(square, 0..4).get_timeout(LONG / 4).expect("map"), [0, 1, 4, 9]);
        let bad = pool.map_async_with(square, 0..3, |_| panic!("a buggy callback"), |_| {});
        assert_eq!(bad.get_timeout(LONG / 4).expect("the map's value stands"), [0, 1, 4]);
        let bad = pool.map_async_with(fragile, 0..5, |_| {}, |_| panic!("a buggy error callback"));
        assert_eq!(bad.get_timeout(LONG / 4).expect_err("panicked").kind(), ErrorKind::Panicked);
        assert_eq!(pool.apply_async(square, 5).get_timeout(LONG / 4).expect("a new task"), 25);
    });
}

/// A result whose `Deserialize` panics on 13. Results are decoded in the parent, on the pool's
/// own thread: the panic happens there, not in the worker.
#[derive(Debug, PartialEq, Eq)]
struct Touchy(u64);

impl Serialize for Touchy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Touchy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let x = u64::deserialize(d)?;
        if x == 13 {
            panic!("13 is unlucky");
        }
        Ok(Touchy(x))
    }
}

fn touchy(x: u64) -> Touchy {
    Touchy(x)
}

fn touchy_sum(a: u64, b: u64) -> Touchy {
    Touchy(a + b)
}

fn expect_decode_panic(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::Codec, "{e}");
    assert!(e.message().contains("13 is unlucky"), "{e}");
}

/// Asserts that the pool still runs a new task.
fn assert_serves(pool: &Pool) {
    assert_eq!(pool.apply_async(square, 5).get_timeout(LONG / 4).expect("the pool serves a new task"), 25);
}

#[test]
fn fails_only_the_task_whose_result_deserialize_panics() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        expect_decode_panic(&pool.apply_async(touchy, 13).get_timeout(LONG / 4).expect_err("decode panics"));
        assert_serves(&pool);
        assert_eq!(pool.apply(touchy, 12).expect("12 decodes"), Touchy(12));
        expect_decode_panic(&pool.map_async(touchy, 10..16).get_timeout(LONG / 4).expect_err("map"));
        assert_serves(&pool);
        let starmap = pool.starmap_async(touchy_sum, [(1, 2), (6, 7)]).get_timeout(LONG / 4);
        expect_decode_panic(&starmap.expect_err("starmap"));
        assert_serves(&pool);

        // One item per task: only the item whose result panics fails, in its place.
        let mut it = pool.imap(touchy, 10..16);
        let results = drain(|t| it.next_timeout(t));
        assert_eq!(results.len(), 6, "{results:?}");
        for (x, result) in (10..16).zip(&results) {
            match result {
                Err(e) => {
                    assert_eq!(x, 13, "{results:?}");
                    expect_decode_panic(e);
                }
                Ok(value) => assert_eq!(*value, Touchy(x)),
            }
        }
        let mut it = pool.imap_unordered(touchy, 10..16);
        let (ok, failed): (Vec<_>, Vec<_>) =
            drain(|t| it.next_timeout(t)).into_iter().partition(Result::is_ok);
        let mut ok: Vec<u64> = ok.into_iter().map(|r| r.expect("ok").0).collect();
        ok.sort_unstable();
        assert_eq!(ok, [10, 11, 12, 14, 15]);
        assert_eq!(failed.len(), 1, "{failed:?}");
        expect_decode_panic(failed[0].as_ref().expect_err("failed"));
        assert_serves(&pool);

        // The error callback gets the decode error, before get returns.
        let (tx, rx) = mpsc::channel();
        let result = pool.apply_async_with(
            touchy,
            13,
            |_| panic!("no value expected"),
            move |e| tx.send(e.clone()).expect("send"),
        );
        expect_decode_panic(&result.get_timeout(LONG / 4).expect_err("decode panics"));
        expect_decode_panic(&rx.recv_timeout(Duration::ZERO).expect("the error callback ran before get"));
        let (tx, rx) = mpsc::channel();
        let result = pool.map_async_with(
            touchy,
            [12, 13],
            |_| panic!("no value expected"),
            move |e| tx.send(e.clone()).expect("send"),
        );
        expect_decode_panic(&result.get_timeout(LONG / 4).expect_err("decode panics"));
        expect_decode_panic(&rx.recv_timeout(Duration::ZERO).expect("the error callback ran before get"));
        assert_serves(&pool);
        assert_eq!(pool.map(square, 0..4).expect("map"), [0, 1, 4, 9]);
    });
}

/// Yields `0..n`, then panics.
fn failing_after(n: u64) -> impl Iterator<Item = u64> {
    (0..=n).inspect(move |&i| {
        if i == n {
            panic!("the input broke");
        }
    })
}

fn expect_input_panic(e: &Error) {
    assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
    assert_eq!(e.message(), "the input broke", "{e}");
    assert!(e.to_string().contains("input"), "{e}");
}

#[test]
fn yields_what_imap_took_before_its_input_panicked() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        // Chunks of 1, 2 (the last one short) and 5 (the only one complete when it panics).
        for chunksize in [1, 2, 5] {
            for ordered in [true, false] {
                let mut it = if ordered {
                    pool.imap(square, failing_after(5))
                } else {
                    pool.imap_unordered(square, failing_after(5))
                }
                .chunksize(chunksize);
                let mut results = drain(|t| it.next_timeout(t));
                let what = format!("chunksize {chunksize}, ordered {ordered}: {results:?}");
                // The error comes once, after every result, and the iterator stays ended.
                expect_input_panic(&results.pop().expect(&what).expect_err(&what));
                assert!(it.next_timeout(LONG).is_none(), "{what}");
                let mut values: Vec<u64> = results.into_iter().collect::<Result<_>>().expect(&what);
                if !ordered {
                    values.sort_unstable();
                }
                assert_eq!(values, [0, 1, 4, 9, 16], "{what}");
            }
        }
        // An input that panics at once.
        let mut it = pool.imap(square, failing_after(0));
        expect_input_panic(&it.next_timeout(LONG).expect("the error").expect_err("the error"));
        assert!(it.next_timeout(LONG).is_none());
        assert_serves(&pool);
    });
}

#[test]
fn returns_the_panic_of_a_map_input() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        expect_input_panic(&pool.map(square, failing_after(3)).expect_err("map"));
        expect_input_panic(
            &pool.map_async(square, failing_after(3)).get_timeout(LONG / 4).expect_err("map_async"),
        );
        let pairs = failing_after(3).map(|i| (i as i64, 1));
        expect_input_panic(&pool.starmap(add, pairs).expect_err("starmap"));
        let (tx, rx) = mpsc::channel();
        let result = pool.map_async_with(
            square,
            failing_after(3),
            |_| panic!("no value expected"),
            move |e| tx.send(e.clone()).expect("send"),
        );
        expect_input_panic(&result.get_timeout(LONG / 4).expect_err("map_async_with"));
        expect_input_panic(&rx.recv_timeout(Duration::ZERO).expect("the error callback ran before get"));
        assert_eq!(pool.map(square, 0..4).expect("the next map works"), [0, 1, 4, 9]);
    });
}

/// A value whose `Serialize` panics on 13: as an argument it panics in the caller, as a
/// result in the worker.
#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Prickly(u64);

impl Serialize for Prickly {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            panic!("13 is unlucky");
        }
        self.0.serialize(s)
    }
}

fn prickly(x: u64) -> Prickly {
    Prickly(x)
}

fn unprickly(x: Prickly) -> u64 {
    x.0
}

/// `Touchy` as an argument panics when the worker decodes it.
fn untouchy(x: Touchy) -> u64 {
    x.0
}

#[test]
fn fails_only_the_task_whose_arguments_or_results_panic_in_serde() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let worker = pool.apply(pid, ()).expect("pid");
        // Encoding the arguments, in the caller.
        expect_decode_panic(
            &pool.apply_async(unprickly, Prickly(13)).get_timeout(LONG / 4).expect_err("apply"),
        );
        let map = pool.map_async(unprickly, [Prickly(12), Prickly(13)]).get_timeout(LONG / 4);
        expect_decode_panic(&map.expect_err("map"));
        let results: Vec<_> = pool.imap(unprickly, [12, 13, 14].map(Prickly)).collect();
        assert_eq!(results.len(), 3, "{results:?}");
        assert_eq!(
            (results[0].as_ref().ok(), results[2].as_ref().ok()),
            (Some(&12), Some(&14)),
            "{results:?}"
        );
        expect_decode_panic(results[1].as_ref().expect_err("13"));
        // Decoding the arguments and encoding the results, in the worker, which goes on.
        expect_decode_panic(&pool.apply_async(untouchy, Touchy(13)).get_timeout(LONG / 4).expect_err("args"));
        expect_decode_panic(&pool.apply_async(prickly, 13).get_timeout(LONG / 4).expect_err("result"));
        assert_eq!(pool.apply(prickly, 12).expect("12 encodes"), Prickly(12));
        expect_decode_panic(&pool.map_async(prickly, 10..16).get_timeout(LONG / 4).expect_err("map"));
        assert_eq!(pool.apply(pid, ()).expect("pid"), worker, "the worker was replaced");
    });
}
