//! Tests for `Lock` and `RLock`: exclusion between threads and processes (Spawn and
//! ForkServer), timeouts, recursion and ownership, and what the next acquirer is told when a
//! holder dies (killed with SIGKILL, `_exit`, or a thread that exits holding the lock).

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_shmem::{Array, Event, Lock, LockTimeoutError, NotOwner, RLock, RawValue, TryLockError, Value};

#[test]
fn excludes_and_releases() {
    let lock = Lock::new().unwrap();
    let guard = lock.acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(TryLockError::WouldBlock)), "held by this thread");
    let other = lock.clone();
    let busy =
        Bounded::spawn("try_acquire", move || matches!(other.try_acquire(), Err(TryLockError::WouldBlock)));
    assert!(busy.join(), "held for another thread");
    drop(guard);
    let other = lock.clone();
    assert!(Bounded::spawn("try_acquire", move || other.try_acquire().is_ok()).join(), "released");
}

#[test]
fn times_out_then_acquires() {
    let lock = Lock::new().unwrap();
    let (holder, release) = (lock.clone(), Event::new().unwrap());
    let held = Event::new().unwrap();
    let (held2, release2) = (held.clone(), release.clone());
    let t = Bounded::spawn("holder", move || {
        let _guard = holder.acquire().unwrap();
        held2.set();
        assert!(release2.wait_timeout(LIMIT));
    });
    assert!(held.wait_timeout(LIMIT));
    let start = Instant::now();
    let err = lock.acquire_timeout(Duration::from_millis(100)).unwrap_err();
    let waited = start.elapsed();
    assert!(err.is_timeout(), "{err}");
    assert!(waited >= Duration::from_millis(100) && waited < LIMIT, "waited {waited:?}");
    assert_eq!(err.to_string(), "timed out waiting for the lock");
    release.set();
    assert!(lock.acquire_timeout(LIMIT).is_ok(), "acquired once released");
    t.join();
}

#[test]
#[should_panic(expected = "Lock::acquire: the calling thread already holds this lock")]
fn panics_instead_of_deadlocking() {
    let lock = Lock::new().unwrap();
    let _guard = lock.acquire().unwrap();
    let _ = lock.acquire_timeout(SHORT);
}

/// In a child: `n` read-modify-write rounds on a plain (unlocked) value, each under `lock`;
/// lost updates would show that the lock does not exclude.
fn locked_rounds((lock, counter, go, n): (Lock, RawValue<u64>, Event, u64)) {
    assert!(go.wait_timeout(LIMIT), "child: go never came");
    for _ in 0..n {
        let _guard = lock.acquire().expect("child: lock");
        let value = counter.get();
        std::hint::spin_loop();
        counter.set(value + 1);
    }
}

#[test]
fn excludes_other_processes() {
    let n = 20_000;
    let lock = Lock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let go = Event::new().unwrap();
    let children: Vec<_> = METHODS
        .iter()
        .map(|&m| start(m, locked_rounds, (lock.clone(), counter.clone(), go.clone(), n)))
        .collect();
    let mine = {
        let args = (lock.clone(), counter.clone(), go.clone(), n);
        Bounded::spawn("rounds", move || locked_rounds(args))
    };
    go.set();
    mine.join();
    children.into_iter().for_each(finish);
    assert_eq!(counter.get(), 3 * n, "no update lost");
}

/// In a child: takes the lock (and a value's lock, half-updating the value), says so, and
/// waits to be killed.
fn hold_and_wait((lock, value, held): (Lock, Value<[u32; 2]>, Event)) {
    let _guard = lock.acquire().expect("child: lock");
    let mut v = value.lock().expect("child: value lock");
    v[0] = 1;
    held.set();
    std::thread::sleep(LIMIT * 2);
}

/// In a child: takes the lock and ends the process at once, holding it.
fn hold_and_exit(lock: Lock) {
    let guard = lock.acquire().expect("child: lock");
    std::mem::forget(guard);
    // SAFETY: _exit ends the process without running anything else.
    unsafe { libc::_exit(3) }
}

#[test]
fn tells_the_next_acquirer_that_a_killed_owner_died() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let value = Value::new([0u32; 2]).unwrap();
        let held = Event::new().unwrap();
        let p = start(method, hold_and_wait, (lock.clone(), value.clone(), held.clone()));
        assert!(held.wait_timeout(LIMIT), "{method}: the child never took the lock");
        assert!(lock.acquire_timeout(SHORT).unwrap_err().is_timeout(), "{method}: held by the child");
        kill(p);

        let guard = match lock.acquire_timeout(LIMIT) {
            Err(LockTimeoutError::OwnerDied(died)) => died.into_inner(),
            Err(LockTimeoutError::Timeout) => panic!("{method}: deadlocked on a dead owner's lock"),
            Ok(_) => panic!("{method}: the owner's death was not reported"),
        };
        drop(guard);
        assert!(lock.acquire_timeout(LIMIT).is_ok(), "{method}: only the first acquirer is told");

        // The value's lock too, with the half-update visible, and then the value is usable.
        let died = value.get().expect_err("the value's lock owner died");
        assert_eq!(died.to_string(), "the previous owner of the lock died while holding it");
        assert_eq!(died.into_inner(), [1, 0], "{method}: the half-update");
        value.set([2, 2]).unwrap();
        assert_eq!(value.get().unwrap(), [2, 2]);
    }
}

#[test]
fn tells_the_next_acquirer_that_an_exited_owner_died() {
    for method in METHODS {
        let lock = Lock::new().unwrap();
        let mut p = start(method, hold_and_exit, lock.clone());
        assert_eq!(reap(&mut p), 3, "{method}: the child's exit status");
        match lock.try_acquire() {
            Err(TryLockError::OwnerDied(died)) => drop(died.into_inner()),
            other => panic!("{method}: expected OwnerDied, got {other:?}"),
        }
        assert!(lock.try_acquire().is_ok());
    }
}

#[test]
fn tells_the_next_acquirer_that_an_owner_thread_exited() {
    let lock = Lock::new().unwrap();
    let other = lock.clone();
    Bounded::spawn("leaker", move || std::mem::forget(other.acquire().unwrap())).join();
    let died = lock.acquire().expect_err("the thread exited holding the lock");
    drop(died.into_inner());
    assert!(lock.acquire().is_ok());

    let arr = Array::<u8>::new(4).unwrap();
    let other = arr.clone();
    Bounded::spawn("leaker", move || {
        let mut guard = other.lock().unwrap();
        guard[3] = 9;
        std::mem::forget(guard);
    })
    .join();
    assert_eq!(arr.to_vec().unwrap_err().into_inner(), [0, 0, 0, 9]);
}

#[test]
fn recurses_and_counts() {
    let rlock = RLock::new().unwrap();
    assert_eq!((rlock.count(), rlock.owner(), rlock.is_owned()), (0, None, false));
    let a = rlock.acquire().unwrap();
    let b = rlock.try_acquire().unwrap();
    let c = rlock.acquire_timeout(SHORT).unwrap();
    assert_eq!(rlock.count(), 3);
    assert!(rlock.is_owned());
    let owner = rlock.owner().expect("owned");
    assert_eq!(owner.pid, std::process::id() as i32);
    assert_eq!(owner.tid, thread_id());

    let other = rlock.clone();
    let seen = Bounded::spawn("other thread", move || {
        let blocked = matches!(other.try_acquire(), Err(TryLockError::WouldBlock));
        let timed_out = other.acquire_timeout(SHORT).map(drop).is_err();
        (blocked, timed_out, other.is_owned(), other.release())
    })
    .join();
    assert_eq!(seen, (true, true, false, Err(NotOwner)), "another thread neither gets nor releases it");

    drop(b);
    drop(a);
    assert_eq!(rlock.count(), 1, "guards release one level each, in any order");
    drop(c);
    assert_eq!((rlock.count(), rlock.owner()), (0, None));
    assert_eq!(rlock.release(), Err(NotOwner), "releasing a free lock");
    assert_eq!(NotOwner.to_string(), "cannot release a lock the calling thread does not hold");
}

/// The calling thread's id.
fn thread_id() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .expect("/proc/thread-self")
        .file_name()
        .and_then(|n| n.to_str()?.parse().ok())
        .expect("a thread id")
}

#[test]
fn keeps_levels_for_explicit_release() {
    let rlock = RLock::new().unwrap();
    rlock.acquire().unwrap().keep();
    rlock.acquire().unwrap().keep();
    assert_eq!(rlock.count(), 2);
    assert_eq!(rlock.release(), Ok(()));
    assert_eq!(rlock.release(), Ok(()));
    assert_eq!(rlock.release(), Err(NotOwner));
    let other = rlock.clone();
    assert!(Bounded::spawn("acquire", move || other.try_acquire().map(drop).is_ok()).join(), "free again");
}

/// In a child: tries to release an RLock it does not hold, then takes it twice (keeping both
/// levels) and says so; waits to be killed.
fn rlock_child((rlock, held): (RLock, Event)) -> String {
    let refused = rlock.release().expect_err("child: released a lock it does not hold");
    rlock.acquire().expect("child: acquire").keep();
    rlock.acquire().expect("child: acquire").keep();
    held.set();
    std::thread::sleep(LIMIT * 2);
    refused.to_string()
}

#[test]
fn survives_the_death_of_an_rlock_owner() {
    for method in METHODS {
        let rlock = RLock::new().unwrap();
        let held = Event::new().unwrap();
        let guard = rlock.acquire().unwrap();
        let p = start(method, rlock_child, (rlock.clone(), held.clone()));
        drop(guard);
        assert!(held.wait_timeout(LIMIT), "{method}: the child never took the lock");
        let owner = rlock.owner().expect("owned by the child");
        assert_eq!(owner.pid, p.pid().unwrap(), "{method}");
        assert_eq!(rlock.count(), 2, "{method}");
        assert!(matches!(rlock.try_acquire(), Err(TryLockError::WouldBlock)), "{method}");
        assert_eq!(rlock.release(), Err(NotOwner), "{method}: the parent does not own it");
        kill(p);

        let guard = match rlock.acquire_timeout(LIMIT) {
            Err(LockTimeoutError::OwnerDied(died)) => died.into_inner(),
            other => panic!("{method}: expected OwnerDied, got {other:?}"),
        };
        assert_eq!(rlock.count(), 1, "{method}: the dead owner's levels are gone");
        assert_eq!(rlock.owner().map(|o| o.pid), Some(std::process::id() as i32), "{method}");
        drop(guard);
        assert_eq!(rlock.count(), 0, "{method}");
    }
}

#[test]
fn survives_a_thread_exiting_with_rlock_levels() {
    let rlock = RLock::new().unwrap();
    let other = rlock.clone();
    Bounded::spawn("keeper", move || {
        other.acquire().unwrap().keep();
        other.acquire().unwrap().keep();
    })
    .join();
    let guard = rlock.acquire().expect_err("the thread exited holding the lock").into_inner();
    assert_eq!(rlock.count(), 1);
    drop(guard);
    assert!(rlock.try_acquire().is_ok());
}
