//! Tests for pools under the `Fork` start method, with real worker processes.
//!
//! Forking inside the multithreaded libtest harness would copy the harness's locks into the
//! workers, so this binary has its own `main` (`harness = false`): it runs each test on the main
//! thread, one after the other, while no other thread exists. A pool's own threads (dispatcher,
//! callbacks) end when it is dropped. Each test is bounded by `alarm`: a hang ends the binary
//! with `SIGALRM` instead of stalling the suite (a thread with a deadline would make the process
//! multithreaded, which is what the `Fork` method refuses).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use multiproc_pool::{ErrorKind, Pool, PoolBuilder};
use multiproc_process::Process;
use multiproc_process::StartMethod;

const TESTS: &[(&str, fn())] = &[
    ("maps_with_fork", maps_with_fork),
    ("runs_the_initializer_with_fork", runs_the_initializer_with_fork),
    ("replaces_dead_workers_with_fork", replaces_dead_workers_with_fork),
    ("terminates_with_fork", terminates_with_fork),
    ("refuses_fork_while_threads_run", refuses_fork_while_threads_run),
    ("reaps_the_workers_of_a_failed_build", reaps_the_workers_of_a_failed_build),
];

fn main() -> std::process::ExitCode {
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(30))
}

fn fork_pool() -> PoolBuilder {
    Pool::builder().start_method(StartMethod::Fork)
}

/// Asserts that every worker is a direct child of this process.
fn assert_children(workers: &BTreeSet<Proc>) {
    for worker in workers {
        assert_eq!(parent_of(worker.pid), std::process::id(), "the parent of {worker:?}");
    }
}

fn maps_with_fork() {
    let pool = fork_pool().processes(2).build().expect("build");
    let results = pool.map_async(with_proc, 0..40).get_timeout(LONG).expect("map");
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..40).collect::<Vec<_>>());
    let workers: BTreeSet<Proc> = results.iter().map(|r| r.1).collect();
    assert_children(&workers);
    assert_eq!(pool.apply_async(square, 9).get_timeout(LONG).expect("apply"), 81);
    assert_eq!(pool.starmap_async(add, [(1, 2), (3, 4)]).get_timeout(LONG).expect("starmap"), [3, 7]);
    let mut it = pool.imap(square, 0..);
    let first: Vec<u64> = (0..10).map(|_| it.next_timeout(LONG).expect("endless").expect("square")).collect();
    assert_eq!(first, (0..10).map(|x| x * x).collect::<Vec<_>>());
    drop(it);
    drop(pool);
    // Joined and reaped: no zombies left behind.
    assert_gone(workers);
}

fn runs_the_initializer_with_fork() {
    let dir = TempDir::new("fork-init");
    let log = dir.path("workers");
    let pool = fork_pool()
        .processes(2)
        .initializer(init_greeting, ("forked".to_string(), log.clone()))
        .build()
        .expect("build");
    let initialized: BTreeSet<Proc> = read_log(&log).into_iter().collect();
    assert_eq!(initialized.len(), 2, "{initialized:?}");
    let results = pool.map_async(greeting, 0..20).get_timeout(LONG).expect("map");
    for (_, greeting, worker) in &results {
        assert_eq!(greeting.as_deref(), Some("forked"));
        assert!(initialized.contains(worker));
    }
    drop(pool);
    assert_gone(initialized);

    let error = fork_pool()
        .processes(2)
        .initializer(init_failing, log.clone())
        .build()
        .expect_err("the initializer panics");
    assert_eq!(error.kind(), ErrorKind::Initializer, "{error}");
    assert!(error.message().contains("no database here"), "{error}");
    assert_gone(read_log(&log));
}

fn replaces_dead_workers_with_fork() {
    // Replacements are forked from the pool's dispatcher thread, while other threads run.
    let pool = fork_pool().processes(1).build().expect("build");
    let first = pool.apply_async(me, ()).get_timeout(LONG).expect("me");
    let error = pool.apply_async(die, Death::Raise).get_timeout(LONG).expect_err("the worker dies");
    assert_eq!((error.kind(), error.signal()), (ErrorKind::WorkerLost, Some(9)), "{error}");
    let error = pool.apply_async(die, Death::Exit3).get_timeout(LONG).expect_err("the worker dies");
    assert_eq!((error.kind(), error.exit_code()), (ErrorKind::WorkerLost, Some(3)), "{error}");
    let last = pool.apply_async(me, ()).get_timeout(LONG).expect("a new worker");
    assert_ne!(last, first);
    assert_children(&[last].into());
    assert_gone([first]);
    drop(pool);
    assert_gone([last]);

    let pool = fork_pool().processes(2).maxtasksperchild(1).build().expect("build");
    let results = pool.map_async(with_proc, 0..12).get_timeout(LONG).expect("map");
    assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
    let workers: BTreeSet<Proc> = results.iter().map(|r| r.1).collect();
    // 12 items in chunks of ceil(12 / 8) = 2: six tasks, six workers.
    assert_eq!(workers.len(), 6, "{results:?}");
    drop(pool);
    assert_gone(workers);
}

fn terminates_with_fork() {
    let pool = fork_pool().processes(2).build().expect("build");
    let (mut gates, fds): (Vec<Gate>, Vec<_>) = (0..2).map(|_| gate()).unzip();
    let running: Vec<_> = fds.into_iter().map(|fd| pool.apply_async(announce_then_sleep, fd)).collect();
    let queued = pool.apply_async(sleep_ms, 60_000);
    let workers: Vec<Proc> = gates.iter_mut().map(Gate::started).collect();
    pool.terminate();
    for result in &running {
        assert_eq!(result.get_timeout(Duration::ZERO).expect_err("terminated").kind(), ErrorKind::Closed);
    }
    assert_eq!(queued.get_timeout(Duration::ZERO).expect_err("terminated").kind(), ErrorKind::Closed);
    assert_gone(workers);
    pool.join().expect("join");
}

fn refuses_fork_while_threads_run() {
    let pool = fork_pool().processes(1).build().expect("build");
    // The first pool's threads are running: forking now could copy a held lock.
    let error = fork_pool().processes(1).build().expect_err("a second fork pool");
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(error.message().contains("refusing to fork"), "{error}");
    assert_eq!(pool.apply_async(square, 5).get_timeout(LONG).expect("the first pool works"), 25);
    drop(pool);
    // Its threads are gone with it.
    let pool = fork_pool().processes(1).build().expect("build once alone again");
    assert_eq!(pool.apply_async(square, 6).get_timeout(LONG).expect("apply"), 36);
}

/// The descriptors this process has open.
fn open_fds() -> BTreeSet<i32> {
    // The registry of children keeps the descriptors of finished ones until it is next looked
    // at: look first.
    let _ = multiproc_process::active_children();
    let dir = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    // The directory's own descriptor is in the listing while it is read: leave it out.
    let listed: BTreeSet<i32> =
        dir.map(|e| e.expect("entry").file_name().to_string_lossy().parse().expect("a number")).collect();
    listed.into_iter().filter(|&fd| std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok()).collect()
}

/// Asserts that this process has no child at all: none running, no zombie.
fn assert_no_children(what: &str) {
    // SAFETY: waitpid with WNOHANG only reports (and reaps) a child that has exited.
    let pid = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    let error = std::io::Error::last_os_error();
    assert!(pid == -1 && error.raw_os_error() == Some(libc::ECHILD), "{what}: waitpid gave {pid} ({error})");
}

/// Sets this process's soft limit on descriptors.
fn limit_fds(soft: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write the rlimit struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0, "getrlimit");
        limit.rlim_cur = soft.min(limit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0, "setrlimit");
    }
}

/// Builds pools of three workers under ever larger limits on descriptors, so that the build
/// fails at every step after which a descriptor is needed (a worker's connection, its start,
/// the pool's own threads); whatever fails, nothing started stays behind.
fn build_under_fd_limits(method: StartMethod) {
    let build = || Pool::builder().processes(3).start_method(method).build();
    // Once, for what the first pool sets up for good (the executable's identity and such).
    drop(build().expect("build without a limit"));
    assert_no_children("after a pool");
    let before = open_fds();
    let (mut failed, mut built) = (0, 0);
    // A limit below a descriptor already open leaves it open: only the free numbers below the
    // limit can be taken, so the sweep starts at none.
    for limit in 0..before.last().map_or(0, |&fd| fd as u64) + 200 {
        limit_fds(limit);
        let result = build();
        limit_fds(u64::MAX);
        let what = format!("{method:?}, limit {limit}: {:?}", result.as_ref().err());
        match result {
            Err(_) => failed += 1,
            Ok(pool) => {
                built += 1;
                drop(pool);
            }
        }
        assert_no_children(&what);
        assert_eq!(open_fds(), before, "{what}: descriptors left open");
        if built == 3 {
            break;
        }
    }
    assert!(failed > 3 && built == 3, "{method:?}: {failed} builds failed, {built} succeeded");
}

fn reaps_the_workers_of_a_failed_build() {
    // In a child of its own: its limits and its children are its own.
    let mut child = Process::from_closure(|| {
        build_under_fd_limits(StartMethod::Spawn);
        build_under_fd_limits(StartMethod::Fork);
    });
    child.set_start_method(StartMethod::Fork);
    child.start().expect("start the child");
    let code = child.join_timeout(LONG).expect("join");
    if code.is_none() {
        let _ = child.kill();
        let _ = child.join();
    }
    assert_eq!(code, Some(0), "the child failed (see its panic above) or took longer than {LONG:?}");
}
