//! Tests for `Semaphore`, `BoundedSemaphore`, `Event`, `Condition` and `Barrier`, between
//! threads and between processes (Spawn and ForkServer), with and without timeouts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Connection, pipe};
use multiproc_shmem::{
    Barrier, BarrierError, BoundedSemaphore, Condition, Event, Lock, RLock, RawValue, ReleaseError,
    Semaphore, Value,
};

#[test]
fn counts_semaphore_units() {
    let sem = Semaphore::new(2).unwrap();
    assert_eq!(sem.get_value(), 2);
    sem.acquire();
    assert!(sem.try_acquire());
    assert!(!sem.try_acquire());
    let start = Instant::now();
    assert!(!sem.acquire_timeout(Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    sem.release();
    sem.release();
    sem.release();
    assert_eq!(sem.get_value(), 3, "a plain semaphore may go above its initial value");
    assert!(Semaphore::new(u32::MAX).is_err());
}

#[test]
fn bounds_semaphore_releases() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.release(), Err(ReleaseError));
    assert_eq!(ReleaseError.to_string(), "semaphore released too many times");
    assert!(sem.try_acquire());
    assert!(sem.acquire_timeout(SHORT));
    assert!(!sem.try_acquire());
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.release(), Err(ReleaseError));
    assert_eq!(sem.get_value(), 2);
}

#[test]
fn wakes_semaphore_waiters() {
    let sem = Semaphore::new(0).unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let sem = sem.clone();
            Bounded::spawn("acquire", move || sem.acquire_timeout(LIMIT))
        })
        .collect();
    std::thread::sleep(SHORT);
    for _ in 0..3 {
        sem.release();
    }
    assert!(waiters.into_iter().all(Bounded::join), "every waiter got a unit");
    assert_eq!(sem.get_value(), 0);
}

/// In a child: passes `rounds` units back and forth with the parent: takes one from `ping`,
/// gives one to `pong`.
fn ping_pong((ping, pong, rounds): (Semaphore, BoundedSemaphore, u32)) -> u32 {
    for _ in 0..rounds {
        assert!(ping.acquire_timeout(LIMIT), "child: no unit came");
        pong.release().expect("child: release");
    }
    rounds
}

#[test]
fn signals_between_processes_with_semaphores() {
    for method in METHODS {
        let ping = Semaphore::new(0).unwrap();
        let pong = BoundedSemaphore::new(1).unwrap();
        assert!(pong.try_acquire());
        let p = start(method, ping_pong, (ping.clone(), pong.clone(), 500));
        for _ in 0..500 {
            ping.release();
            assert!(pong.acquire_timeout(LIMIT), "{method}: no answer");
        }
        assert_eq!(finish(p), 500);
        assert_eq!((ping.get_value(), pong.get_value()), (0, 0), "{method}");
    }
}

#[test]
fn sets_clears_and_waits_for_events() {
    let event = Event::new().unwrap();
    assert!(!event.is_set());
    let start = Instant::now();
    assert!(!event.wait_timeout(Duration::from_millis(50)));
    assert!(start.elapsed() >= Duration::from_millis(50));
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let event = event.clone();
            Bounded::spawn("wait", move || event.wait_timeout(LIMIT))
        })
        .collect();
    std::thread::sleep(SHORT);
    event.set();
    assert!(waiters.into_iter().all(Bounded::join), "set wakes every waiter");
    assert!(event.is_set());
    event.wait();
    event.clear();
    assert!(!event.is_set() && !event.wait_timeout(Duration::ZERO));
}

/// In a child: waits for `start`, then sets `done`.
fn answer_event((start, done): (Event, Event)) -> bool {
    let started = start.wait_timeout(LIMIT);
    done.set();
    started
}

#[test]
fn signals_between_processes_with_events() {
    for method in METHODS {
        let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
        let p = start(method, answer_event, (go.clone(), done.clone()));
        assert!(!done.wait_timeout(SHORT), "{method}: done before start");
        go.set();
        assert!(done.wait_timeout(LIMIT), "{method}: the child's set was not seen");
        assert!(finish(p), "{method}: the parent's set was not seen");
    }
}

#[test]
fn waits_and_notifies_over_both_lock_kinds() {
    for cond in [Condition::new().unwrap(), Condition::with_lock(Lock::new().unwrap()).unwrap()] {
        let ready = RawValue::new(0u32).unwrap();
        let (c, r) = (cond.clone(), ready.clone());
        let waiter = Bounded::spawn("wait_for", move || {
            let mut guard = c.acquire().unwrap();
            guard.wait_for_timeout(|| r.get() == 2, LIMIT).unwrap()
        });
        for i in 1..=2 {
            std::thread::sleep(SHORT);
            let guard = cond.acquire().unwrap();
            ready.set(i);
            guard.notify_all();
        }
        assert!(waiter.join(), "{cond:?}: the predicate never held");
    }
}

#[test]
fn times_out_waiting_on_a_condition() {
    let cond = Condition::with_rlock(RLock::new().unwrap()).unwrap();
    let rlock = cond.rlock().unwrap().clone();
    let mut guard = cond.acquire().unwrap();
    let _inner = rlock.acquire().unwrap();
    assert_eq!(rlock.count(), 2);
    let start = Instant::now();
    assert!(!guard.wait_timeout(Duration::from_millis(50)).unwrap(), "nobody notifies");
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(rlock.count(), 2, "every level is back after the wait");
    assert!(!guard.wait_for_timeout(|| false, Duration::from_millis(20)).unwrap());
    assert!(guard.wait_for_timeout(|| true, Duration::ZERO).unwrap(), "a true predicate needs no wait");
    guard.notify(3);
    guard.notify_one();
}

#[test]
fn releases_every_rlock_level_while_waiting() {
    let cond = Condition::new().unwrap();
    let flag = RawValue::new(false).unwrap();
    let rlock = cond.rlock().unwrap().clone();
    let mut guard = cond.acquire().unwrap();
    let _inner = rlock.acquire().unwrap();
    let (c, f) = (cond.clone(), flag.clone());
    let notifier = Bounded::spawn("notifier", move || {
        // Only possible if the waiter released both levels.
        let guard = c.acquire_timeout(LIMIT).unwrap();
        f.set(true);
        guard.notify_one();
    });
    guard.wait_for_timeout(|| flag.get(), LIMIT).unwrap();
    assert!(flag.get());
    notifier.join();
}

/// In a child: bumps the counter (guarded by the condition's lock) and notifies.
fn condition_child((cond, counter): (Condition, Value<u32>)) -> u32 {
    let mut guard = cond.acquire().expect("child: acquire");
    let value = counter.get_mut(guard.lock_guard().expect("a Lock"));
    *value += 1;
    let value = *value;
    guard.notify_all();
    value
}

#[test]
fn condition_guards_data_with_its_lock() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let cond = Condition::with_lock(lock.clone()).unwrap();
        let counter = Value::with_lock(0u32, lock).unwrap();
        let p = start(method, condition_child, (cond.clone(), counter.clone()));
        {
            let mut guard = cond.acquire().unwrap();
            let mut seen = 0;
            while seen == 0 {
                seen = *counter.get_mut(guard.lock_guard().unwrap());
                if seen == 0 {
                    assert!(guard.wait_timeout(LIMIT).unwrap(), "{method}: never notified");
                }
            }
        }
        assert_eq!(finish(p), 1, "{method}");
    }
}

/// In a child: waits until `flag` is set (to 1 or more), under the condition; then adds 1 to
/// it and notifies. Returns whether it was notified in time.
fn condition_waiter((cond, flag): (Condition, RawValue<u32>)) -> bool {
    let mut guard = cond.acquire().expect("child: acquire");
    let ok = guard.wait_for_timeout(|| flag.get() >= 1, LIMIT).expect("child: wait");
    // The condition's lock excludes the other child's update.
    flag.set(flag.get() + 1);
    guard.notify_all();
    ok
}

#[test]
fn waits_and_notifies_between_processes() {
    for method in METHODS {
        let cond = Condition::new().unwrap();
        let flag = RawValue::new(0u32).unwrap();
        let children: Vec<_> =
            (0..2).map(|_| start(method, condition_waiter, (cond.clone(), flag.clone()))).collect();
        std::thread::sleep(SHORT);
        {
            let mut guard = cond.acquire().unwrap();
            flag.set(1);
            guard.notify_all();
            assert!(
                guard.wait_for_timeout(|| flag.get() == 3, LIMIT).unwrap(),
                "{method}: the children did not answer"
            );
        }
        for p in children {
            assert!(finish(p), "{method}: a child was not notified");
        }
    }
}

/// In a child: waits on the barrier `rounds` times; the arrival indexes.
fn barrier_party((barrier, rounds): (Barrier, usize)) -> Vec<usize> {
    (0..rounds).map(|_| barrier.wait_timeout(LIMIT).expect("child: barrier")).collect()
}

#[test]
fn meets_at_a_barrier_between_processes() {
    for method in METHODS {
        let barrier = Barrier::new(3).unwrap();
        assert_eq!((barrier.parties(), barrier.n_waiting(), barrier.broken()), (3, 0, false));
        let children: Vec<_> = (0..2).map(|_| start(method, barrier_party, (barrier.clone(), 5))).collect();
        let mine = barrier_party((barrier.clone(), 5));
        let theirs: Vec<Vec<usize>> = children.into_iter().map(finish).collect();
        for round in 0..5 {
            let mut indexes = vec![mine[round], theirs[0][round], theirs[1][round]];
            indexes.sort();
            assert_eq!(indexes, [0, 1, 2], "{method}: round {round}");
        }
        assert_eq!(barrier.n_waiting(), 0, "{method}");
    }
}

#[test]
fn breaks_a_barrier_on_timeout_abort_and_reset() {
    let barrier = Barrier::new(2).unwrap();
    let start = Instant::now();
    assert_eq!(barrier.wait_timeout(Duration::from_millis(50)), Err(BarrierError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert!(barrier.broken(), "a timeout breaks the barrier");
    assert_eq!(barrier.wait(), Err(BarrierError::Broken));
    barrier.reset();
    assert!(!barrier.broken());

    // A waiter is released with Broken by an abort...
    let other = barrier.clone();
    let waiter = Bounded::spawn("wait", move || other.wait_timeout(LIMIT));
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    barrier.abort();
    assert_eq!(waiter.join(), Err(BarrierError::Broken));
    assert_eq!(barrier.wait_timeout(SHORT), Err(BarrierError::Broken));

    // ...and by a reset, after which the barrier works again.
    barrier.reset();
    let other = barrier.clone();
    let waiter = Bounded::spawn("wait", move || other.wait_timeout(LIMIT));
    while barrier.n_waiting() == 0 {
        std::thread::yield_now();
    }
    barrier.reset();
    assert_eq!(waiter.join(), Err(BarrierError::Broken));
    let other = barrier.clone();
    let waiter = Bounded::spawn("wait", move || other.wait_timeout(LIMIT));
    assert!(barrier.wait_timeout(LIMIT).is_ok());
    assert!(waiter.join().is_ok());
    assert!(Barrier::new(0).is_err());
    assert_eq!(BarrierError::Broken.to_string(), "barrier is broken");
}

/// In a child: receives every kind of primitive through the connection and uses each.
fn use_received(mut conn: Connection) -> u32 {
    let (sem, bsem, event, cond, barrier): (Semaphore, BoundedSemaphore, Event, Condition, Barrier) =
        conn.recv_timeout(LIMIT).expect("child: recv");
    let (lock, rlock): (Lock, RLock) = conn.recv_timeout(LIMIT).expect("child: recv");
    sem.release();
    bsem.release().expect("child: release");
    event.set();
    cond.acquire().expect("child: condition").notify_all();
    drop(lock.acquire().expect("child: lock"));
    drop(rlock.acquire().expect("child: rlock"));
    barrier.wait_timeout(LIMIT).expect("child: barrier") as u32 + 1
}

#[test]
fn passes_primitives_through_connections() {
    for method in METHODS {
        let (mut ours, theirs) = pipe(true).unwrap();
        let p = start(method, use_received, theirs);
        let sem = Semaphore::new(0).unwrap();
        let bsem = BoundedSemaphore::new(1).unwrap();
        assert!(bsem.try_acquire());
        let event = Event::new().unwrap();
        let cond = Condition::new().unwrap();
        let barrier = Barrier::new(2).unwrap();
        ours.send(&(&sem, &bsem, &event, &cond, &barrier)).unwrap();
        ours.send(&(Lock::new().unwrap(), RLock::new().unwrap())).unwrap();
        assert!(sem.acquire_timeout(LIMIT), "{method}");
        assert!(bsem.acquire_timeout(LIMIT), "{method}");
        assert!(event.wait_timeout(LIMIT), "{method}");
        let index = barrier.wait_timeout(LIMIT).unwrap();
        assert_eq!(index as u32 + finish(p), 2, "{method}: indexes 0 and 1");
    }
}

/// In a child: waits on the barrier until killed.
fn wait_to_be_killed(barrier: Barrier) {
    let _ = barrier.wait();
}

/// Waits until `n` parties wait in `barrier`.
fn until_waiting(barrier: &Barrier, n: usize) {
    let start = Instant::now();
    while barrier.n_waiting() < n {
        assert!(start.elapsed() < LIMIT, "the children never reached the barrier");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn breaks_a_barrier_when_a_waiting_party_is_killed() {
    for method in METHODS {
        // Two parties: the one left must not pass on the strength of the dead one.
        let barrier = Barrier::new(2).unwrap();
        let p = start(method, wait_to_be_killed, barrier.clone());
        until_waiting(&barrier, 1);
        kill(p);
        assert_eq!(
            barrier.wait_timeout(LIMIT),
            Err(BarrierError::Broken),
            "{method}: passed with a dead party"
        );
        assert!(barrier.broken(), "{method}");
        assert_eq!(barrier.wait_timeout(SHORT), Err(BarrierError::Broken), "{method}: stays broken");
        barrier.reset();
        let other = barrier.clone();
        let waiter = Bounded::spawn("wait", move || other.wait_timeout(LIMIT));
        assert!(barrier.wait_timeout(LIMIT).is_ok(), "{method}: usable after reset");
        assert!(waiter.join().is_ok());

        // Three parties: a survivor already waiting learns of the death without a third.
        let barrier = Barrier::new(3).unwrap();
        let p = start(method, wait_to_be_killed, barrier.clone());
        until_waiting(&barrier, 1);
        let other = barrier.clone();
        let survivor = Bounded::spawn("wait", move || other.wait_timeout(LIMIT));
        until_waiting(&barrier, 2);
        kill(p);
        assert_eq!(survivor.join(), Err(BarrierError::Broken), "{method}: the survivor was not told");
        barrier.reset();
        let children: Vec<_> = (0..2).map(|_| start(method, barrier_party, (barrier.clone(), 2))).collect();
        assert_eq!(barrier_party((barrier.clone(), 2)).len(), 2, "{method}: usable after reset");
        children.into_iter().for_each(|p| assert_eq!(finish(p).len(), 2));
    }
}
