//! Tests for the `Pool` API: building pools, `apply`, `map`, `imap`, `starmap` and their
//! `_async` forms, callbacks, `AsyncResult`, `close`, `join`, `terminate` and `Drop`, with real
//! worker processes under the `ForkServer` (default) and `Spawn` start methods.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use common::*;
use multiproc_pool::{Error, ErrorKind, Pool};
use multiproc_process::{StartMethod, cpu_count};

/// The workers of `pool` that ran `tasks` quick tasks (not necessarily every worker).
fn some_workers(pool: &Pool, tasks: u64) -> BTreeSet<Proc> {
    let results = pool.map_async(with_proc, 0..tasks).get_timeout(LONG).expect("map");
    results.into_iter().map(|(_, worker)| worker).collect()
}

/// The sizes of the runs of consecutive items that one worker ran.
fn group_sizes(results: &[(u64, Proc)]) -> Vec<usize> {
    let mut sizes: Vec<usize> = Vec::new();
    let mut last = None;
    for &(_, worker) in results {
        if last == Some(worker) {
            *sizes.last_mut().expect("a group") += 1;
        } else {
            sizes.push(1);
            last = Some(worker);
        }
    }
    sizes
}

#[test]
fn uses_cpu_count_workers_by_default() {
    scenario(|| {
        let pool = Pool::builder().build().expect("build");
        assert_eq!(pool.processes(), cpu_count());
        let results = pool.map_async(with_proc, 0..64).get_timeout(LONG).expect("map");
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..64).collect::<Vec<_>>());
        let workers: BTreeSet<Proc> = results.iter().map(|r| r.1).collect();
        assert!(workers.len() <= cpu_count(), "workers {workers:?}");
        assert!(workers.iter().all(|w| w.pid != std::process::id()), "tasks ran in the parent");
        drop(pool);
        assert_gone(workers);
    });
}

#[test]
fn runs_the_initializer_in_each_worker() {
    scenario(|| {
        let dir = TempDir::new("init");
        let log = dir.path("workers");
        let pool = Pool::builder()
            .processes(3)
            .initializer(init_greeting, ("hello".to_string(), log.clone()))
            .build()
            .expect("build");
        // build() waits for every initializer.
        let initialized: BTreeSet<Proc> = read_log(&log).into_iter().collect();
        assert_eq!(initialized.len(), 3, "initialized workers {initialized:?}");
        let results = pool.map_async(greeting, 0..30).get_timeout(LONG).expect("map");
        for (_, greeting, worker) in &results {
            assert_eq!(greeting.as_deref(), Some("hello"));
            assert!(initialized.contains(worker), "task ran in {worker:?}, not an initialized worker");
        }
        drop(pool);
        assert_gone(initialized);
    });
}

#[test]
fn replaces_workers_after_maxtasksperchild() {
    scenario(|| {
        let dir = TempDir::new("maxtasks");
        let log = dir.path("workers");
        let pool = Pool::builder()
            .processes(2)
            .maxtasksperchild(2)
            .initializer(init_greeting, ("again".to_string(), log.clone()))
            .build()
            .expect("build");
        let results = pool.map_chunked(greeting, 0..20, 1).expect("map");
        // Every input exactly once, in order.
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
        let mut per_worker: BTreeMap<Proc, usize> = BTreeMap::new();
        for (_, greeting, worker) in &results {
            assert_eq!(greeting.as_deref(), Some("again"), "a replacement skipped the initializer");
            *per_worker.entry(*worker).or_default() += 1;
        }
        // Each worker ran at most two one-item tasks, so at least ten workers ran the twenty.
        assert!(per_worker.values().all(|&n| n <= 2), "tasks per worker: {per_worker:?}");
        assert!(per_worker.len() >= 10, "tasks per worker: {per_worker:?}");
        let initialized: BTreeSet<Proc> = read_log(&log).into_iter().collect();
        assert!(per_worker.keys().all(|w| initialized.contains(w)), "{per_worker:?} vs {initialized:?}");
        drop(pool);
        // Retired workers and the last ones alike.
        assert_gone(read_log(&log));
    });
}

#[test]
fn starts_workers_with_each_method() {
    scenario(|| {
        for method in [StartMethod::Spawn, StartMethod::ForkServer] {
            let pool = Pool::builder().processes(2).start_method(method).build().expect("build");
            let results = pool.map_async(with_proc, 0..16).get_timeout(LONG).expect("map");
            assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..16).collect::<Vec<_>>());
            let workers: BTreeSet<Proc> = results.iter().map(|r| r.1).collect();
            for worker in &workers {
                // Spawned workers are our children; forkserver workers are the server's.
                let ours = parent_of(worker.pid) == std::process::id();
                assert_eq!(ours, method == StartMethod::Spawn, "{method}: the parent of {worker:?}");
            }
            drop(pool);
            assert_gone(workers);
        }
    });
}

#[test]
fn runs_tasks_on_every_worker_at_once() {
    scenario(|| {
        let pool = Pool::new(3).expect("build");
        let (mut gates, fds): (Vec<Gate>, Vec<_>) = (0..3).map(|_| gate()).unzip();
        let results: Vec<_> = fds.into_iter().map(|fd| pool.apply_async(gated, fd)).collect();
        // Three workers, three tasks: all three run at the same time.
        let workers: BTreeSet<Proc> = gates.iter_mut().map(Gate::started).collect();
        assert_eq!(workers.len(), 3, "tasks ran in {workers:?}");
        assert!(results.iter().all(|r| !r.ready()));
        for gate in gates {
            gate.open();
        }
        let finished: BTreeSet<Proc> = results.iter().map(|r| r.get_timeout(LONG).expect("gated")).collect();
        assert_eq!(finished, workers);
        // A task is not held behind a running one while another worker is idle.
        let (mut gate, fd) = gate();
        let held = pool.apply_async(gated, fd);
        let busy = gate.started();
        for _ in 0..4 {
            assert_ne!(pool.apply_async(me, ()).get_timeout(LONG).expect("quick task"), busy);
        }
        gate.open();
        assert_eq!(held.get_timeout(LONG).expect("held"), busy);
    });
}

#[test]
fn applies() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        assert_eq!(pool.apply(square, 7).expect("fn item"), 49);
        assert_eq!(pool.apply(|s: String| s.to_uppercase(), "abc".to_string()).expect("closure"), "ABC");
        assert_eq!(pool.apply(mirrored, point(4)).expect("struct"), mirrored(point(4)));
        assert_ne!(pool.apply(pid, ()).expect("unit argument"), std::process::id());
        assert_ne!(pool.apply(me, ()).expect("unit argument"), Proc::me());
        let handles: Vec<_> = (0..20).map(|x| pool.apply_async(square, x)).collect();
        for (x, handle) in (0..20).zip(&handles) {
            assert_eq!(handle.get_timeout(LONG).expect("apply_async"), x * x);
        }
    });
}

/// One callback run: which task, on which thread.
type Log = Arc<Mutex<Vec<(String, ThreadId)>>>;

fn record(log: &Log, what: String) {
    log.lock().unwrap().push((what, std::thread::current().id()));
}

#[test]
fn runs_callbacks_on_one_thread_in_completion_order() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let log: Log = Arc::default();
        let (mut gate, fd) = gate();
        let (l1, l2) = (log.clone(), log.clone());
        let slow = pool.apply_async_with(
            gated,
            fd,
            move |_| record(&l1, "slow".into()),
            move |e| record(&l2, format!("slow failed: {e}")),
        );
        gate.started();
        let (l1, l2) = (log.clone(), log.clone());
        let fast = pool.apply_async_with(
            square,
            5,
            move |v| record(&l1, format!("fast {v}")),
            move |e| record(&l2, format!("fast failed: {e}")),
        );
        assert_eq!(fast.get_timeout(LONG).expect("fast"), 25);
        // The callback ran before get returned.
        assert_eq!(log.lock().unwrap().iter().map(|e| e.0.clone()).collect::<Vec<_>>(), ["fast 25"]);
        let (l1, l2) = (log.clone(), log.clone());
        let failing = pool.apply_async_with(
            fragile,
            3,
            move |v| record(&l1, format!("fragile {v}")),
            move |e: &Error| record(&l2, format!("fragile: {:?} {}", e.kind(), e.message())),
        );
        assert_eq!(failing.get_timeout(LONG).expect_err("panics").kind(), ErrorKind::Panicked);
        gate.open();
        assert_ne!(slow.get_timeout(LONG).expect("slow"), Proc::me());
        let mapped_log = log.clone();
        let mapped = pool.map_async_with(
            square,
            1..=3,
            move |v| record(&mapped_log, format!("map {v:?}")),
            |e| panic!("map failed: {e}"),
        );
        assert_eq!(mapped.get_timeout(LONG).expect("map"), [1, 4, 9]);

        let log = log.lock().unwrap();
        let order: Vec<&str> = log.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            order,
            ["fast 25", "fragile: Panicked three is not allowed", "slow", "map [1, 4, 9]"],
            "callbacks run in completion order, not submission order"
        );
        let threads: BTreeSet<String> = log.iter().map(|e| format!("{:?}", e.1)).collect();
        assert_eq!(threads.len(), 1, "callbacks ran on several threads: {threads:?}");
        assert_ne!(log[0].1, std::thread::current().id(), "a callback ran on the caller's thread");
    });
}

#[test]
fn maps() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let expected: Vec<u64> = (0..200).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..200).expect("map"), expected);
        assert_eq!(pool.map_async(square, 0..200).get_timeout(LONG).expect("map_async"), expected);
        assert_eq!(pool.map_chunked(square, 0..200, 7).expect("map_chunked"), expected);
        assert_eq!(pool.map_chunked(square, 0..10, 0).expect("chunksize 0 is 1"), expected[..10]);
        assert_eq!(pool.map(|x: i32| x - 1, vec![1, 2, 3]).expect("closure"), [0, 1, 2]);
        let points: Vec<Point> = (0..50).map(point).collect();
        let mirrored_points: Vec<Point> = points.iter().cloned().map(mirrored).collect();
        assert_eq!(pool.map(mirrored, points).expect("structs"), mirrored_points);
    });
}

#[test]
fn chunks_like_cpython() {
    scenario(|| {
        // With one task per worker, the items a worker ran are exactly one chunk.
        let pool = Pool::builder().processes(2).maxtasksperchild(1).build().expect("build");
        // CPython: ceil(n / (4 * workers)) items per chunk.
        let results = pool.map(with_proc, 0..16).expect("map");
        assert_eq!(group_sizes(&results), [2; 8], "{results:?}");
        let results = pool.map_async(with_proc, 0..17).get_timeout(LONG).expect("map_async");
        assert_eq!(group_sizes(&results), [3, 3, 3, 3, 3, 2], "{results:?}");
        let results = pool.map(with_proc, 0..3).expect("map");
        assert_eq!(group_sizes(&results), [1, 1, 1], "{results:?}");
        let results = pool.map_chunked(with_proc, 0..16, 5).expect("map_chunked");
        assert_eq!(group_sizes(&results), [5, 5, 5, 1], "{results:?}");
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..16).collect::<Vec<_>>());
        let pids: BTreeSet<Proc> = results.iter().map(|r| r.1).collect();
        assert_eq!(pids.len(), 4, "each chunk ran in a new worker");
        // imap sends one item per task unless told otherwise.
        let results: Vec<(u64, Proc)> = pool.imap(with_proc, 0..6).map(|r| r.expect("imap")).collect();
        assert_eq!(group_sizes(&results), [1; 6]);
        let results: Vec<(u64, Proc)> =
            pool.imap(with_proc, 0..7).chunksize(3).map(|r| r.expect("imap")).collect();
        assert_eq!(group_sizes(&results), [3, 3, 1]);
    });
}

#[test]
fn imaps_in_order() {
    scenario(|| {
        let pool = Pool::new(3).expect("build");
        for chunksize in [1, 4, 100] {
            let mut it = pool.imap(square, 0..50).chunksize(chunksize);
            let mut results = Vec::new();
            while let Some(result) = it.next_timeout(LONG) {
                results.push(result.expect("imap"));
            }
            assert_eq!(results, (0..50).map(|x| x * x).collect::<Vec<_>>(), "chunksize {chunksize}");
        }
        // Later items finish first; the order still follows the input.
        let results: Vec<u64> = pool.imap(sleep_ms, [300, 0, 100, 0, 0]).map(|r| r.expect("imap")).collect();
        assert_eq!(results, [300, 0, 100, 0, 0]);
    });
}

#[test]
fn imaps_unordered() {
    scenario(|| {
        let pool = Pool::new(3).expect("build");
        for chunksize in [1, 3] {
            let mut it = pool.imap_unordered(square, 0..60).chunksize(chunksize);
            let mut results = Vec::new();
            while let Some(result) = it.next_timeout(LONG) {
                results.push(result.expect("imap_unordered"));
            }
            assert_eq!(results.len(), 60);
            let set: BTreeSet<u64> = results.into_iter().collect();
            assert_eq!(set, (0..60).map(|x| x * x).collect::<BTreeSet<_>>(), "chunksize {chunksize}");
        }
        // Results come as tasks finish: the first item, held back, comes last.
        let (mut gates, fds): (Vec<Gate>, Vec<_>) = (0..3).map(|_| gate()).unzip();
        let mut it = pool.imap_unordered(gated, fds);
        assert!(it.next_timeout(Duration::from_millis(50)).expect("an item").is_err_and(|e| e.is_timeout()));
        let workers: Vec<Proc> = gates.iter_mut().map(Gate::started).collect();
        let first = gates.remove(0);
        for gate in gates {
            gate.open();
        }
        let early: BTreeSet<Proc> =
            (0..2).map(|_| it.next_timeout(LONG).expect("an item").expect("gated")).collect();
        assert_eq!(early, workers[1..].iter().copied().collect());
        first.open();
        assert_eq!(it.next_timeout(LONG).expect("an item").expect("gated"), workers[0]);
        assert!(it.next_timeout(LONG).is_none());
    });
}

#[test]
fn starmaps() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let pairs: Vec<(i64, i64)> = (0..40).map(|i| (i, 10 * i)).collect();
        let sums: Vec<i64> = pairs.iter().map(|&(a, b)| a + b).collect();
        assert_eq!(pool.starmap(add, pairs.clone()).expect("starmap"), sums);
        assert_eq!(pool.starmap_async(add, pairs).get_timeout(LONG).expect("starmap_async"), sums);
        assert_eq!(pool.starmap(fma, [(2, 3, 4), (5, 6, 7)]).expect("three arguments"), [10, 37]);
        let joined = pool
            .starmap(
                |s: String, n: usize, sep: char| vec![s; n].join(&sep.to_string()),
                [("ab".to_string(), 3, '-')],
            )
            .expect("closure");
        assert_eq!(joined, ["ab-ab-ab"]);
    });
}

#[test]
fn reports_async_result_state() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let (mut gate, fd) = gate();
        let result = pool.apply_async(gated, fd);
        let worker = gate.started();
        assert!(!result.ready());
        assert_eq!(result.successful(), None);
        assert!(!result.wait_timeout(Duration::from_millis(50)));
        let timeout = result.get_timeout(Duration::from_millis(50)).expect_err("not ready yet");
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        assert!(timeout.is_timeout());
        gate.open();
        assert!(result.wait_timeout(LONG));
        result.wait(); // ready: returns at once
        assert!(result.ready());
        assert_eq!(result.successful(), Some(true));
        assert_eq!(result.get_timeout(LONG).expect("the timeout left the result in place"), worker);
        assert_eq!(result.get().expect_err("taken").kind(), ErrorKind::ResultTaken);
        assert_eq!(result.successful(), Some(true));
        assert!(result.ready());

        let failed = pool.apply_async(fragile, 3);
        assert!(failed.wait_timeout(LONG));
        assert_eq!(failed.successful(), Some(false));
        assert_eq!(failed.get().expect_err("panics").kind(), ErrorKind::Panicked);
        assert_eq!(failed.successful(), Some(false));
    });
}

#[test]
fn times_out_imap_next() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let (mut gate, fd) = gate();
        let mut it = pool.imap(gated, vec![fd]);
        let timeout = it.next_timeout(Duration::from_millis(100)).expect("a result").expect_err("not yet");
        assert_eq!(timeout.kind(), ErrorKind::Timeout);
        let worker = gate.started();
        assert!(it.next_timeout(Duration::from_millis(50)).expect("a result").is_err_and(|e| e.is_timeout()));
        gate.open();
        assert_eq!(it.next_timeout(LONG).expect("a result").expect("gated"), worker);
        assert!(it.next_timeout(LONG).is_none());
    });
}

#[test]
fn refuses_zero_processes_and_zero_maxtasksperchild() {
    let error = Pool::new(0).expect_err("zero processes");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    let error = Pool::builder().processes(1).maxtasksperchild(0).build().expect_err("zero maxtasksperchild");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument);
    assert!(error.to_string().contains("maxtasksperchild"), "{error}");
}

#[test]
fn refuses_join_while_open() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let error = pool.join().expect_err("join before close");
        assert_eq!(error.kind(), ErrorKind::Closed);
        assert_eq!(pool.apply_async(square, 3).get_timeout(LONG).expect("still usable"), 9);
        pool.close();
        pool.join().expect("join after close");
    });
}

#[test]
fn closes_and_joins() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let pending: Vec<_> = (0..6).map(|_| pool.apply_async(sleep_ms, 50)).collect();
        let workers = some_workers(&pool, 4);
        pool.close();
        // Closed: nothing new is accepted, in any form.
        let closed = |e: Error| assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
        closed(pool.apply(square, 1).expect_err("apply after close"));
        closed(pool.apply_async(square, 1).get_timeout(LONG).expect_err("apply_async after close"));
        closed(pool.map(square, 0..10).expect_err("map after close"));
        closed(pool.map_async(square, 0..10).get_timeout(LONG).expect_err("map_async after close"));
        closed(pool.starmap(add, [(1, 2)]).expect_err("starmap after close"));
        let mut it = pool.imap(square, 0..3);
        for _ in 0..3 {
            closed(it.next_timeout(LONG).expect("an item").expect_err("imap after close"));
        }
        assert!(it.next_timeout(LONG).is_none());
        drop(it);
        // What was submitted before still completes.
        pool.join().expect("join");
        for result in &pending {
            assert!(result.ready(), "join returned before a task was done");
            assert_eq!(result.get_timeout(LONG).expect("submitted before close"), 50);
        }
        assert_gone(workers);
        pool.join().expect("a second join");
    });
}

#[test]
fn closes_and_joins_on_drop() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let workers = some_workers(&pool, 4);
        let pending: Vec<_> = (0..4).map(|_| pool.apply_async(sleep_ms, 100)).collect();
        let mapped = pool.map_async(sleep_ms, [10; 8]);
        drop(pool);
        for result in &pending {
            assert!(result.ready(), "drop returned before a task was done");
            assert_eq!(result.get_timeout(Duration::ZERO).expect("submitted before drop"), 100);
        }
        assert_eq!(mapped.get_timeout(Duration::ZERO).expect("map"), [10; 8]);
        assert_gone(workers);
    });
}

#[test]
fn handles_empty_inputs() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let none: Vec<u64> = Vec::new();
        assert_eq!(pool.map(square, none.clone()).expect("map"), none);
        assert_eq!(pool.map_async(square, none.clone()).get_timeout(LONG).expect("map_async"), none);
        assert_eq!(pool.map_chunked(square, none.clone(), 3).expect("map_chunked"), none);
        assert_eq!(pool.starmap(add, Vec::<(i64, i64)>::new()).expect("starmap"), Vec::<i64>::new());
        assert_eq!(
            pool.starmap_async(add, Vec::<(i64, i64)>::new()).get_timeout(LONG).expect("starmap_async"),
            Vec::<i64>::new()
        );
        assert!(pool.imap(square, none.clone()).next_timeout(LONG).is_none());
        assert!(pool.imap_unordered(square, none.clone()).next_timeout(LONG).is_none());
        let called: Arc<Mutex<Option<usize>>> = Arc::default();
        let c = called.clone();
        let result = pool.map_async_with(
            square,
            none,
            move |v: &Vec<u64>| *c.lock().unwrap() = Some(v.len()),
            |e| panic!("empty map failed: {e}"),
        );
        assert_eq!(result.get_timeout(LONG).expect("map_async_with"), Vec::<u64>::new());
        assert_eq!(*called.lock().unwrap(), Some(0), "the callback ran before get returned");
        // The pool still works.
        assert_eq!(pool.map(square, [3]).expect("map"), [9]);
    });
}

#[test]
fn carries_large_arguments_and_results() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        let big: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
        let reversed = pool.apply(
            |mut v: Vec<u8>| {
                v.reverse();
                v
            },
            big.clone(),
        );
        let mut expected = big.clone();
        expected.reverse();
        assert!(reversed.expect("3 MiB each way") == expected);
        // Several large tasks at once, beside small ones.
        let inputs: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 200 << 10]).collect();
        let sums = pool.map_chunked(|v: Vec<u8>| v.iter().map(|&b| u64::from(b)).sum::<u64>(), inputs, 1);
        assert_eq!(sums.expect("map"), (0..6).map(|i| i * (200 << 10)).collect::<Vec<u64>>());
        let sizes = pool.map(|n: usize| vec![7u8; n], [0, 1, 100 << 10, 1 << 20]).expect("large results");
        assert_eq!(sizes.iter().map(Vec::len).collect::<Vec<_>>(), [0, 1, 100 << 10, 1 << 20]);
        assert!(sizes.iter().flatten().all(|&b| b == 7));
    });
}

#[test]
fn serves_several_threads() {
    scenario(|| {
        let pool = Pool::new(2).expect("build");
        std::thread::scope(|s| {
            let threads: Vec<_> = (0..4u64)
                .map(|t| {
                    let pool = &pool;
                    s.spawn(move || {
                        let items: Vec<u64> = (t * 100..t * 100 + 100).collect();
                        let expected: Vec<u64> = items.iter().map(|x| x * x).collect();
                        assert_eq!(pool.map(square, items.clone()).expect("map"), expected);
                        let by_imap: Vec<u64> = pool.imap(square, items).map(|r| r.expect("imap")).collect();
                        assert_eq!(by_imap, expected);
                        assert_eq!(pool.apply(square, t).expect("apply"), t * t);
                    })
                })
                .collect();
            for thread in threads {
                thread.join().expect("a thread failed");
            }
        });
    });
}

#[test]
fn reports_codec_errors() {
    scenario(|| {
        let pool = Pool::new(1).expect("build");
        let error = pool.apply(make_unserializable, ()).expect_err("the worker cannot encode");
        assert_eq!(error.kind(), ErrorKind::Codec, "{error}");
        assert!(error.message().contains("refuses to be serialized"), "{error}");
        let error = pool.apply(take_unserializable, Unserializable).expect_err("the parent cannot encode");
        assert_eq!(error.kind(), ErrorKind::Codec, "{error}");
        let error = pool.map(take_unserializable, [Unserializable, Unserializable]).expect_err("map");
        assert_eq!(error.kind(), ErrorKind::Codec, "{error}");
        assert_eq!(pool.apply(square, 4).expect("the pool goes on"), 16);
    });
}
