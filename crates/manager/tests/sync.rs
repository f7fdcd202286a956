//! Tests for the queue and synchronization proxies (Queue, JoinableQueue, Lock, RLock,
//! Semaphore, BoundedSemaphore, Condition, Event, Barrier): waiting calls in the server that
//! hold back no other call of the same process, timeouts, and locks released when their
//! owner's process dies.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use multiproc_manager::{ErrorKind, EventProxy, QueueProxy, RLockProxy};
use multiproc_process::{Process, StartMethod};

#[test]
fn queues_items() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let q = manager.queue::<String>().expect("queue");
        assert_eq!(q.capacity().unwrap(), None);
        assert!(q.is_empty().unwrap());
        q.put("a").unwrap();
        q.put_timeout("b", SHORT).unwrap();
        q.try_put("c").unwrap();
        assert_eq!(q.len().unwrap(), 3);
        assert!(!q.is_full().unwrap());
        assert_eq!(q.get().unwrap(), "a");
        assert_eq!(q.get_timeout(SHORT).unwrap(), "b");
        assert_eq!(q.try_get().unwrap(), "c");
        let err = q.try_get().unwrap_err();
        assert_eq!((err.kind(), err.to_string().as_str()), (ErrorKind::Empty, "the queue is empty"));
        let started = Instant::now();
        assert_eq!(q.get_timeout(SHORT).unwrap_err().kind(), ErrorKind::Timeout);
        assert!(started.elapsed() >= SHORT, "waited {:?}", started.elapsed());

        let bounded = manager.bounded_queue::<u32>(2).expect("bounded");
        assert_eq!(bounded.capacity().unwrap(), Some(2));
        bounded.put(&1).unwrap();
        bounded.put(&2).unwrap();
        assert!(bounded.is_full().unwrap());
        assert_eq!(bounded.try_put(&3).unwrap_err().kind(), ErrorKind::Full);
        assert_eq!(bounded.put_timeout(&3, SHORT).unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(manager.bounded_queue::<u32>(0).unwrap_err().kind(), ErrorKind::InvalidValue);
        // A put waiting for room completes when another thread of this process takes an item.
        let waiter = {
            let bounded = bounded.clone();
            std::thread::spawn(move || bounded.put_timeout(&3, LIMIT))
        };
        std::thread::sleep(SHORT);
        assert_eq!(bounded.get().unwrap(), 1);
        waiter.join().unwrap().expect("the waiting put completed");
        assert_eq!([bounded.get().unwrap(), bounded.get().unwrap()], [2, 3]);
    });
}

#[test]
fn joins_joinable_queues() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let q = manager.joinable_queue::<u32>().expect("joinable queue");
        assert!(q.join_timeout(Duration::ZERO).unwrap(), "nothing to wait for");
        for i in 0..3 {
            q.put(&i).unwrap();
        }
        assert!(!q.join_timeout(SHORT).unwrap());
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    q.get().unwrap();
                    q.task_done().unwrap();
                }
            })
        };
        q.join().unwrap();
        consumer.join().unwrap();
        let err = q.task_done().unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::InvalidValue, "task_done() called too many times")
        );
        // A plain queue has no task_done.
        let plain: QueueProxy<u32> = manager.queue().unwrap();
        let any = multiproc_manager::AnyProxy::from(plain);
        assert_eq!(any.type_id(), "Queue");
        let err = any.downcast::<multiproc_manager::JoinableQueueProxy<u32>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType);
    });
}

/// Blocking calls of one thread must not hold back the calls of the others: many threads each
/// wait in `get` while one thread puts, all over the process's single connection.
#[test]
fn pipelines_waiting_calls_of_many_threads() {
    scenario(|| {
        let manager = start(StartMethod::Spawn);
        let q = manager.queue::<u64>().expect("queue");
        let d = manager.dict::<u64, u64>().expect("dict");
        let getters: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.get_timeout(LIMIT).expect("an item"))
            })
            .collect();
        // While eight gets wait in the server, other calls are answered at once.
        let started = Instant::now();
        for i in 0..100 {
            d.set(&i, &(i * 2)).unwrap();
            assert_eq!(d.get(&i).unwrap(), Some(i * 2));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "dict calls were held back: {:?}",
            started.elapsed()
        );
        for i in 0..8 {
            q.put(&i).unwrap();
        }
        let mut got: Vec<u64> = getters.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    });
}

#[test]
fn locks_and_unlocks() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let lock = manager.lock().expect("lock");
        assert!(!lock.locked().unwrap());
        lock.acquire().unwrap();
        assert!(lock.locked().unwrap());
        assert!(!lock.try_acquire().unwrap(), "a Lock is not reentrant");
        assert!(!lock.acquire_timeout(SHORT).unwrap());
        // Another thread may release a Lock (threading.Lock).
        let other = lock.clone();
        std::thread::spawn(move || other.release()).join().unwrap().unwrap();
        assert!(!lock.locked().unwrap());
        let err = lock.release().unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::InvalidState, "release unlocked lock")
        );
        {
            let guard = lock.lock().unwrap();
            assert!(!guard.owner_died());
            assert!(lock.locked().unwrap());
        }
        assert!(!lock.locked().unwrap(), "the guard released it");

        // A waiting acquire gets the lock when another thread releases it.
        lock.acquire().unwrap();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.acquire_timeout(LIMIT))
        };
        std::thread::sleep(SHORT);
        lock.release().unwrap();
        assert!(waiter.join().unwrap().unwrap());
        assert!(lock.locked().unwrap());

        let rlock = manager.rlock().expect("rlock");
        rlock.acquire().unwrap();
        assert!(rlock.try_acquire().unwrap(), "an RLock is reentrant");
        let other = rlock.clone();
        let (tried, released) =
            std::thread::spawn(move || (other.try_acquire(), other.release())).join().unwrap();
        assert!(!tried.unwrap(), "held by another thread");
        let err = released.unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::InvalidState, "cannot release un-acquired lock")
        );
        rlock.release().unwrap();
        assert!(rlock.locked().unwrap(), "acquired twice, released once");
        rlock.release().unwrap();
        assert!(!rlock.locked().unwrap());
    });
}

#[test]
fn counts_semaphores() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let sem = manager.semaphore(2).expect("semaphore");
        assert!(sem.try_acquire().unwrap());
        sem.acquire().unwrap();
        assert_eq!(sem.value().unwrap(), 0);
        assert!(!sem.try_acquire().unwrap());
        assert!(!sem.acquire_timeout(SHORT).unwrap());
        sem.release().unwrap();
        sem.release().unwrap();
        sem.release().unwrap();
        assert_eq!(sem.value().unwrap(), 3, "an unbounded semaphore grows");

        let bounded = manager.bounded_semaphore(1).expect("bounded semaphore");
        bounded.acquire().unwrap();
        let waiter = {
            let bounded = bounded.clone();
            std::thread::spawn(move || bounded.acquire_timeout(LIMIT))
        };
        std::thread::sleep(SHORT);
        bounded.release().unwrap();
        assert!(waiter.join().unwrap().unwrap());
        bounded.release().unwrap();
        let err = bounded.release().unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (ErrorKind::InvalidValue, "semaphore released too many times")
        );
    });
}

#[test]
fn waits_on_conditions() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let cond = manager.condition().expect("condition");
        let items = manager.list::<u32>().expect("list");
        assert_eq!(
            cond.wait_timeout(SHORT).unwrap_err().kind(),
            ErrorKind::InvalidState,
            "wait needs the lock"
        );
        assert_eq!(cond.notify(1).unwrap_err().kind(), ErrorKind::InvalidState, "notify needs the lock");
        cond.acquire().unwrap();
        assert!(!cond.wait_timeout(SHORT).unwrap(), "no notification came");
        assert!(cond.locked().unwrap(), "the lock is held again after the wait");
        cond.release().unwrap();

        let woken = Arc::new(AtomicUsize::new(0));
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let (cond, items, woken) = (cond.clone(), items.clone(), woken.clone());
                std::thread::spawn(move || {
                    let _held = cond.lock().unwrap();
                    cond.wait_for(|| Ok(!items.is_empty()?)).unwrap();
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        std::thread::sleep(SHORT);
        {
            let _held = cond.lock().unwrap();
            items.push(&1).unwrap();
            cond.notify(1).unwrap();
        }
        std::thread::sleep(SHORT);
        {
            let _held = cond.lock().unwrap();
            cond.notify_all().unwrap();
        }
        for c in consumers {
            c.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 3);

        // A condition over a lock of the manager's: the lock is the condition's.
        let lock = manager.lock().expect("lock");
        let over_lock = manager.condition_with(&lock).expect("condition over a lock");
        over_lock.acquire().unwrap();
        assert!(lock.locked().unwrap());
        over_lock.release().unwrap();
        assert!(over_lock.wait_for_timeout(|| Ok(false), SHORT).is_err(), "wait_for needs the lock too");
        over_lock.acquire().unwrap();
        assert!(!over_lock.wait_for_timeout(|| Ok(false), SHORT).unwrap());
        over_lock.release().unwrap();
        let err = manager.condition_with(&items).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue, "{err}");
    });
}

#[test]
fn sets_events() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let event = manager.event().expect("event");
        assert!(!event.is_set().unwrap());
        assert!(!event.wait_timeout(SHORT).unwrap());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let event = event.clone();
                std::thread::spawn(move || event.wait_timeout(LIMIT))
            })
            .collect();
        std::thread::sleep(SHORT);
        event.set().unwrap();
        for w in waiters {
            assert!(w.join().unwrap().unwrap());
        }
        event.wait().unwrap();
        event.clear().unwrap();
        assert!(!event.is_set().unwrap());
    });
}

#[test]
fn passes_and_breaks_barriers() {
    scenario(|| {
        let manager = start(StartMethod::ForkServer);
        let barrier = manager.barrier(3).expect("barrier");
        assert_eq!(barrier.parties().unwrap(), 3);
        for _round in 0..2 {
            let waiters: Vec<_> = (0..3)
                .map(|_| {
                    let barrier = barrier.clone();
                    std::thread::spawn(move || barrier.wait_timeout(LIMIT))
                })
                .collect();
            let mut indexes: Vec<usize> = waiters.into_iter().map(|w| w.join().unwrap().unwrap()).collect();
            indexes.sort();
            assert_eq!(indexes, [0, 1, 2]);
        }
        // A waiter that times out breaks the barrier for everyone.
        let err = barrier.wait_timeout(SHORT).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BrokenBarrier);
        assert!(barrier.broken().unwrap());
        assert_eq!(barrier.wait_timeout(SHORT).unwrap_err().kind(), ErrorKind::BrokenBarrier);
        barrier.reset().unwrap();
        assert!(!barrier.broken().unwrap());
        let waiter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || barrier.wait_timeout(LIMIT))
        };
        let deadline = Instant::now() + SETTLE;
        while barrier.n_waiting().unwrap() < 1 {
            assert!(Instant::now() < deadline, "the waiter never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
        barrier.abort().unwrap();
        assert_eq!(waiter.join().unwrap().unwrap_err().kind(), ErrorKind::BrokenBarrier);
        assert_eq!(manager.barrier(0).unwrap_err().kind(), ErrorKind::InvalidValue);
    });
}

/// Takes the lock, says so, then blocks until killed.
fn hold_lock_forever((lock, held): (RLockProxy, EventProxy)) {
    lock.acquire().expect("acquire in the child");
    held.set().expect("tell the parent");
    std::thread::sleep(Duration::from_secs(60));
}

/// Waits in `get` on a queue nobody fills.
fn wait_forever(q: QueueProxy<u32>) {
    let _ = q.get();
}

#[test]
fn releases_locks_of_dead_processes() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let lock = manager.rlock().expect("rlock");
            let held = manager.event().expect("event");
            let mut child = Process::new(hold_lock_forever, (lock.clone(), held.clone()));
            child.set_start_method(method);
            child.start().expect("start the child");
            assert!(held.wait_timeout(LIMIT).unwrap(), "the child took the lock");
            assert!(!lock.try_acquire().unwrap());
            child.kill().unwrap();
            assert_eq!(child.join().unwrap(), -9);
            // CPython's manager would keep the RLock forever; here the next owner is told.
            let err = lock.acquire_timeout(LIMIT).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
            assert!(lock.locked().unwrap(), "the caller holds the lock now");
            lock.release().unwrap();
            assert!(lock.try_acquire().unwrap(), "told once");

            // A waiting call of a killed process goes away with it and leaves the object usable.
            let q = manager.queue::<u32>().expect("queue");
            let mut waiter = Process::new(wait_forever, q.clone());
            waiter.set_start_method(method);
            waiter.start().expect("start the waiter");
            std::thread::sleep(SHORT);
            waiter.kill().unwrap();
            assert_eq!(waiter.join().unwrap(), -9);
            q.put(&1).unwrap();
            assert_eq!(q.get_timeout(LIMIT).unwrap(), 1, "the dead waiter took no item");
        }
    });
}
