//! Tests for shared memory and locks under the `Fork` start method: handles inherited by
//! forked children (captured by closures or passed as arguments), allocation from an arena
//! shared with a forked child, lock ownership across a fork, and owner death.
//!
//! Forking inside the multithreaded libtest harness would copy the harness's locks into the
//! children, so this binary has its own harness (`harness = false`): `main` runs each test on
//! the main thread, one after the other, while the process has no other thread.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use multiproc_process::{Process, StartMethod};
use multiproc_shmem::{
    Array, Condition, Event, Lock, NotOwner, RLock, RawValue, SharedMemory, TryLockError, Value,
};

const FORK: StartMethod = StartMethod::Fork;

const TESTS: &[(&str, fn())] = &[
    ("shares_values_with_forked_closures", shares_values_with_forked_closures),
    ("shares_values_with_forked_functions", shares_values_with_forked_functions),
    (
        "allocates_from_an_arena_shared_with_a_forked_child",
        allocates_from_an_arena_shared_with_a_forked_child,
    ),
    ("keeps_lock_ownership_in_the_parent", keeps_lock_ownership_in_the_parent),
    ("tells_of_a_forked_owner_death", tells_of_a_forked_owner_death),
    ("synchronises_with_forked_children", synchronises_with_forked_children),
    ("removes_names_a_forked_creator_left", removes_names_a_forked_creator_left),
];

fn main() -> std::process::ExitCode {
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(120))
}

fn fork<R: serde::Serialize + serde::de::DeserializeOwned + 'static>(p: &mut Process<R>) {
    p.set_start_method(FORK);
    p.start().expect("fork");
}

fn shares_values_with_forked_closures() {
    let v = Value::new(4.0f64).unwrap();
    let arr = Array::from_slice(&[1u32, 2, 3]).unwrap();
    let (v2, arr2) = (v.clone(), arr.clone());
    let mut p = Process::from_closure(move || {
        v2.update(|x| *x = x.powi(3)).expect("lock");
        arr2.lock().expect("lock").iter_mut().for_each(|x| *x += 1);
        v2.get().expect("lock")
    });
    fork(&mut p);
    assert_eq!(finish(p), 64.0);
    assert_eq!(v.get().unwrap(), 64.0);
    assert_eq!(arr.to_vec().unwrap(), [2, 3, 4]);
}

fn add_to((v, raw, n): (Value<u64>, RawValue<u64>, u64)) {
    for _ in 0..n {
        *v.lock().expect("lock") += 1;
        raw.as_atomic().fetch_add(1, Ordering::Relaxed);
    }
}

fn shares_values_with_forked_functions() {
    let v = Value::new(0u64).unwrap();
    let raw = RawValue::new(0u64).unwrap();
    let mut children: Vec<Process> =
        (0..3).map(|_| Process::new(add_to, (v.clone(), raw.clone(), 10_000))).collect();
    children.iter_mut().for_each(fork);
    add_to((v.clone(), raw.clone(), 10_000));
    children.into_iter().for_each(finish);
    assert_eq!(v.get().unwrap(), 40_000);
    assert_eq!(raw.get(), 40_000);
}

fn allocates_from_an_arena_shared_with_a_forked_child() {
    // The arena exists before the fork, so the child allocates from the same shared memory.
    let first = RawValue::new(7u64).unwrap();
    // (At most MAX_FDS = 253 descriptors travel in one message: one per handle.)
    let mut p =
        Process::from_closure(|| (0..200u64).map(|i| RawValue::new(i).expect("alloc")).collect::<Vec<_>>());
    fork(&mut p);
    let theirs = finish(p);
    let ours: Vec<RawValue<u64>> = (0..200u64).map(|i| RawValue::new(1000 + i).unwrap()).collect();
    assert_eq!(first.get(), 7);
    assert!(
        theirs.iter().enumerate().all(|(i, v)| v.get() == i as u64),
        "the child's values were overwritten"
    );
    assert!(ours.iter().enumerate().all(|(i, v)| v.get() == 1000 + i as u64), "ours were overwritten");
}

fn keeps_lock_ownership_in_the_parent() {
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let (lock2, rlock2) = (lock.clone(), rlock.clone());
    let _guard = lock.acquire().unwrap();
    let _rguard = rlock.acquire().unwrap();
    let mut p = Process::from_closure(move || {
        // The child is another thread: it owns neither lock.
        let lock_busy = matches!(lock2.try_acquire(), Err(TryLockError::WouldBlock));
        let rlock_busy = matches!(rlock2.try_acquire(), Err(TryLockError::WouldBlock));
        (lock_busy, rlock_busy, rlock2.is_owned(), rlock2.release() == Err(NotOwner))
    });
    fork(&mut p);
    assert_eq!(finish(p), (true, true, false, true));
    assert!(rlock.is_owned() && rlock.count() == 1, "the parent still owns its RLock");
}

fn tells_of_a_forked_owner_death() {
    let lock = Lock::new().unwrap();
    let v = Value::new(1u32).unwrap();
    let (lock2, v2) = (lock.clone(), v.clone());
    let mut p: Process = Process::from_closure(move || {
        std::mem::forget(lock2.acquire().expect("lock"));
        let mut guard = v2.lock().expect("lock");
        *guard = 2;
        std::mem::forget(guard);
        // SAFETY: _exit ends the process at once, holding both locks.
        unsafe { libc::_exit(5) };
    });
    fork(&mut p);
    assert_eq!(reap(&mut p), 5);
    assert!(matches!(lock.try_acquire(), Err(TryLockError::OwnerDied(_))));
    assert_eq!(v.get().unwrap_err().into_inner(), 2);
    assert_eq!(v.get().unwrap(), 2);
}

fn synchronises_with_forked_children() {
    let cond = Condition::new().unwrap();
    let done = Event::new().unwrap();
    let count = RawValue::new(0u32).unwrap();
    let children: Vec<Process<bool>> = (0..2)
        .map(|_| {
            let (cond, count) = (cond.clone(), count.clone());
            let mut p = Process::from_closure(move || {
                let mut guard = cond.acquire().expect("condition");
                count.set(count.get() + 1);
                guard.notify_all();
                guard.wait_for_timeout(|| count.get() >= 10, LIMIT).expect("wait")
            });
            fork(&mut p);
            p
        })
        .collect();
    {
        let mut guard = cond.acquire().unwrap();
        assert!(guard.wait_for_timeout(|| count.get() == 2, LIMIT).unwrap(), "both children arrived");
        count.set(10);
        guard.notify_all();
    }
    for p in children {
        assert!(finish(p), "a child was not notified");
    }
    let mut p = Process::from_closure({
        let done = done.clone();
        move || done.set()
    });
    fork(&mut p);
    assert!(done.wait_timeout(LIMIT));
    finish(p);
}

fn removes_names_a_forked_creator_left() {
    // This process has no tracker (it created no named segment): the child starts its own,
    // which sees the child's end.
    let named = RawValue::new(0u64).unwrap();
    let ready = Event::new().unwrap();
    let (named2, ready2) = (named.clone(), ready.clone());
    let mut p: Process = Process::from_closure(move || {
        let shm = SharedMemory::create(4096).expect("create");
        let number: u64 =
            shm.name().rsplit('-').next().and_then(|h| u64::from_str_radix(h, 16).ok()).expect("name");
        named2.set(number);
        ready2.set();
        std::thread::sleep(LIMIT * 2);
    });
    fork(&mut p);
    assert!(ready.wait_timeout(LIMIT));
    let name = format!("mp-{}-{:016x}", p.pid().unwrap(), named.get());
    assert!(shm_exists(&name), "{name}");
    kill(p);
    let deadline = std::time::Instant::now() + LIMIT;
    while shm_exists(&name) {
        assert!(std::time::Instant::now() < deadline, "the tracker did not remove {name}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
