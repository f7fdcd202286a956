//! Tests for `Value`, `RawValue`, `Array` and `RawArray`: reading and writing under the lock or
//! atomically, passing them to child processes (Spawn and ForkServer) and through connections,
//! and what a receiver refuses.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use multiproc_pipe::{Connection, pipe};
use multiproc_shmem::{Array, Event, Lock, Pod, RawArray, RawValue, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
struct Particle {
    pos: [f64; 3],
    mass: f32,
    id: u32,
}

// SAFETY: repr(C) without padding (24 + 4 + 4 bytes, alignment 8), every field Pod, valid when
// zero.
unsafe impl Pod for Particle {}

#[test]
fn sends_and_shares_handles_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Value<Particle>>();
    send_sync::<RawValue<u64>>();
    send_sync::<Array<f64>>();
    send_sync::<RawArray<bool>>();
    send_sync::<Lock>();
    send_sync::<multiproc_shmem::RLock>();
    send_sync::<multiproc_shmem::Semaphore>();
    send_sync::<multiproc_shmem::BoundedSemaphore>();
    send_sync::<Event>();
    send_sync::<multiproc_shmem::Condition>();
    send_sync::<multiproc_shmem::Barrier>();
    send_sync::<multiproc_shmem::SharedMemory>();
}

#[test]
fn reads_and_writes_a_value_under_its_lock() {
    let v = Value::new(1.5f64).unwrap();
    assert_eq!(v.get().unwrap(), 1.5);
    v.set(2.5).unwrap();
    assert_eq!(v.update(|x| std::mem::replace(x, 10.0)).unwrap(), 2.5);
    {
        let mut guard = v.lock().unwrap();
        *guard += 1.0;
        assert!(v.try_lock().is_err(), "the lock is held by the guard");
        assert!(v.get_lock().try_acquire().is_err(), "get_lock is the same lock");
    }
    assert_eq!(v.get().unwrap(), 11.0);
    assert_eq!(format!("{v:?}"), "Value { value: 11.0 }");

    let p = Value::new(Particle { pos: [1.0, 2.0, 3.0], mass: 0.5, id: 7 }).unwrap();
    p.update(|p| p.pos[2] = -3.0).unwrap();
    assert_eq!(p.get().unwrap(), Particle { pos: [1.0, 2.0, -3.0], mass: 0.5, id: 7 });

    let flag = Value::new(false).unwrap();
    flag.set(true).unwrap();
    assert!(flag.get().unwrap());
}

#[test]
fn times_out_on_a_held_value() {
    let v = Value::new(0u32).unwrap();
    let other = v.clone();
    let guard = v.lock().unwrap();
    let waited =
        Bounded::spawn("lock_timeout", move || other.lock_timeout(SHORT).map(|_| ()).is_err()).join();
    assert!(waited, "lock_timeout gave a lock held by another thread");
    drop(guard);
    assert!(v.lock_timeout(SHORT).is_ok());
}

#[test]
#[should_panic(expected = "already holds this lock")]
fn refuses_to_relock_a_value_in_the_same_thread() {
    let v = Value::new(0u8).unwrap();
    let _guard = v.lock().unwrap();
    let _again = v.lock();
}

#[test]
fn shares_one_lock_between_values() {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(1i64, lock.clone()).unwrap();
    let b = Value::with_lock(2i64, lock.clone()).unwrap();
    let arr = Array::with_lock(&[3i64, 4], lock.clone()).unwrap();
    {
        let mut guard = lock.acquire().unwrap();
        *a.get_mut(&mut guard) += 10;
        *b.get_mut(&mut guard) += 20;
        arr.get_mut(&mut guard)[1] += 40;
        assert!(a.try_lock().is_err(), "the values are guarded by the shared lock");
    }
    assert_eq!((a.get().unwrap(), b.get().unwrap()), (11, 22));
    assert_eq!(arr.to_vec().unwrap(), [3, 44]);
}

#[test]
#[should_panic(expected = "does not guard this shared data")]
fn refuses_a_guard_of_another_lock() {
    let v = Value::new(0u8).unwrap();
    let other = Lock::new().unwrap();
    let mut guard = other.acquire().unwrap();
    let _ = v.get_mut(&mut guard);
}

#[test]
fn reads_and_writes_raw_values_atomically() {
    let v = RawValue::new(5u64).unwrap();
    assert_eq!(v.get(), 5);
    v.set(6);
    assert_eq!(v.as_atomic().fetch_add(4, Ordering::SeqCst), 6);
    assert_eq!(v.as_atomic().compare_exchange(10, 12, Ordering::SeqCst, Ordering::SeqCst), Ok(10));
    assert_eq!(v.get(), 12);

    let p = RawValue::new(Particle { pos: [0.5; 3], mass: 1.0, id: 1 }).unwrap();
    p.set(Particle { id: 2, ..p.get() });
    assert_eq!(p.get().id, 2);
    assert_eq!(format!("{:?}", RawValue::new(-3i8).unwrap()), "RawValue(-3)");

    let b = RawValue::new(true).unwrap();
    assert!(b.as_atomic().swap(false, Ordering::SeqCst));
    assert!(!b.get());
}

#[test]
fn copies_values_of_every_size_and_alignment() {
    let bytes = RawValue::new([1u8, 2, 3]).unwrap();
    bytes.set([4, 5, 6]);
    assert_eq!(bytes.get(), [4, 5, 6]);
    let shorts = RawArray::from_slice(&[[1u16, 2, 3], [4, 5, 6]]).unwrap();
    assert_eq!(shorts.get(1), [4, 5, 6]);
    let wide = RawValue::new(u128::MAX - 1).unwrap();
    assert_eq!(wide.get(), u128::MAX - 1);
    let chars = Array::from_slice(&['a', 'é', '𝄞']).unwrap();
    assert_eq!(chars.to_vec().unwrap(), ['a', 'é', '𝄞']);
    let neg = Value::new(-1.5f32).unwrap();
    assert_eq!(neg.get().unwrap(), -1.5);
}

#[test]
fn counts_atomically_from_threads() {
    let v = RawValue::new(0u64).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            Bounded::spawn("fetch_add", move || {
                for _ in 0..10_000 {
                    v.as_atomic().fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    threads.into_iter().for_each(Bounded::join);
    assert_eq!(v.get(), 40_000);
}

#[test]
fn indexes_slices_and_iterates_arrays() {
    let arr = Array::<u16>::new(5).unwrap();
    assert_eq!((arr.len(), arr.is_empty()), (5, false));
    assert_eq!(arr.to_vec().unwrap(), [0; 5], "zero-filled");
    arr.set(2, 7).unwrap();
    assert_eq!(arr.get(2).unwrap(), 7);
    {
        let mut guard = arr.lock().unwrap();
        guard[..2].copy_from_slice(&[1, 2]);
        guard.reverse();
        assert_eq!(&guard[1..4], [0, 7, 2]);
        assert_eq!(guard.iter().map(|&x| u32::from(x)).sum::<u32>(), 10);
    }
    assert_eq!(arr.to_vec().unwrap(), [0, 0, 7, 2, 1]);

    let empty = Array::<f64>::new(0).unwrap();
    assert!(empty.is_empty() && empty.to_vec().unwrap().is_empty());

    let raw = RawArray::from_slice(&[1i32, 2, 3, 4]).unwrap();
    assert_eq!(raw.get(3), 4);
    raw.set(0, -1);
    assert_eq!(raw.slice(..2), [-1, 2]);
    assert_eq!(raw.slice(1..=2), [2, 3]);
    raw.set_slice(2, &[30, 40]);
    assert_eq!(raw.to_vec(), [-1, 2, 30, 40]);
    assert_eq!(raw.iter().rev().collect::<Vec<_>>(), [40, 30, 2, -1]);
    assert_eq!((&raw).into_iter().len(), 4);
    raw.as_atomic()[1].fetch_add(5, Ordering::Relaxed);
    assert_eq!(raw.get(1), 7);
    assert_eq!(format!("{raw:?}"), "[-1, 7, 30, 40]");
}

#[test]
#[should_panic(expected = "out of range")]
fn panics_on_an_index_out_of_bounds() {
    let raw = RawArray::<u8>::new(3).unwrap();
    raw.get(3);
}

#[test]
#[should_panic(expected = "out of range")]
fn panics_on_a_slice_out_of_bounds() {
    let raw = RawArray::<u8>::new(3).unwrap();
    raw.set_slice(2, &[1, 2]);
}

#[test]
fn holds_large_arrays() {
    let n = 1 << 20;
    let arr = Array::<f64>::new(n).unwrap();
    arr.lock().unwrap().iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
    assert_eq!(arr.get(n - 1).unwrap(), (n - 1) as f64);
    let raw = RawArray::<u64>::new(n).unwrap();
    raw.set(n - 1, 9);
    assert_eq!(raw.to_vec().iter().sum::<u64>(), 9);
}

/// In a child: cubes the value, doubles every element, bumps the counter and sets the raw
/// array's elements to their indexes.
fn modify((v, arr, counter, raw): (Value<f64>, Array<i32>, RawValue<u64>, RawArray<u8>)) -> f64 {
    v.update(|x| *x = x.powi(3)).expect("value lock");
    for x in arr.lock().expect("array lock").iter_mut() {
        *x *= 2;
    }
    counter.as_atomic().fetch_add(1, Ordering::SeqCst);
    for i in 0..raw.len() {
        raw.set(i, i as u8);
    }
    v.get().expect("value lock")
}

#[test]
fn shares_memory_with_child_processes() {
    for method in METHODS {
        let v = Value::new(4.0f64).unwrap();
        let arr = Array::from_slice(&[1, 2, 3]).unwrap();
        let counter = RawValue::new(10u64).unwrap();
        let raw = RawArray::<u8>::new(300).unwrap();
        let p = start(method, modify, (v.clone(), arr.clone(), counter.clone(), raw.clone()));
        assert_eq!(finish(p), 64.0, "{method}: what the child saw");
        assert_eq!(v.get().unwrap(), 64.0, "{method}: the child's write is visible to the parent");
        assert_eq!(arr.to_vec().unwrap(), [2, 4, 6], "{method}");
        assert_eq!(counter.get(), 11, "{method}");
        assert_eq!(raw.get(299), 43, "{method}");
    }
}

/// In a child: `n` increments under the value's lock, `n` atomic ones, and `n` under the
/// array's lock, after `go`.
fn increment((v, atomic, arr, go, n): (Value<u64>, RawValue<u64>, Array<u64>, Event, u64)) {
    assert!(go.wait_timeout(LIMIT), "child: go never came");
    for _ in 0..n {
        *v.lock().expect("value lock") += 1;
        atomic.as_atomic().fetch_add(1, Ordering::Relaxed);
        arr.lock().expect("array lock")[1] += 1;
    }
}

#[test]
fn excludes_concurrent_writers_across_processes() {
    let n = 20_000;
    let v = Value::new(0u64).unwrap();
    let atomic = RawValue::new(0u64).unwrap();
    let arr = Array::<u64>::new(3).unwrap();
    let go = Event::new().unwrap();
    let children: Vec<_> = METHODS
        .iter()
        .map(|&m| start(m, increment, (v.clone(), atomic.clone(), arr.clone(), go.clone(), n)))
        .collect();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (v, atomic, arr, go) = (v.clone(), atomic.clone(), arr.clone(), go.clone());
            Bounded::spawn("increments", move || increment((v, atomic, arr, go, n)))
        })
        .collect();
    go.set();
    threads.into_iter().for_each(Bounded::join);
    children.into_iter().for_each(finish);
    assert_eq!(v.get().unwrap(), 4 * n, "locked increments of 2 processes and 2 threads");
    assert_eq!(atomic.get(), 4 * n, "atomic increments");
    assert_eq!(arr.to_vec().unwrap(), [0, 4 * n, 0]);
}

/// In a child: receives handles through the connection, changes them, sends them back.
fn echo_handles(mut conn: Connection) {
    let (v, arr, raw): (Value<i64>, Array<f32>, RawArray<u32>) =
        conn.recv_timeout(LIMIT).expect("child: recv");
    v.update(|x| *x = -*x).expect("lock");
    arr.set(0, 0.25).expect("lock");
    raw.as_atomic()[0].fetch_add(1, Ordering::SeqCst);
    conn.send(&(v, arr, raw)).expect("child: send");
}

#[test]
fn passes_handles_through_connections() {
    for method in METHODS {
        let (mut ours, theirs) = pipe(true).unwrap();
        let p = start(method, echo_handles, theirs);
        let v = Value::new(21i64).unwrap();
        let arr = Array::<f32>::new(2).unwrap();
        let raw = RawArray::from_slice(&[1u32]).unwrap();
        ours.send(&(v.clone(), arr.clone(), raw.clone())).unwrap();
        let (v2, arr2, raw2): (Value<i64>, Array<f32>, RawArray<u32>) = ours.recv_timeout(LIMIT).unwrap();
        finish(p);
        assert_eq!(v.get().unwrap(), -21, "{method}");
        assert_eq!(arr.to_vec().unwrap(), [0.25, 0.0], "{method}");
        assert_eq!(raw.get(0), 2, "{method}");
        // The handles that came back are the same memory (and the same lock).
        v2.set(5).unwrap();
        assert_eq!(v.get().unwrap(), 5, "{method}");
        let _guard = v.lock().unwrap();
        assert!(v2.try_lock().is_err(), "{method}: one lock behind both handles");
        assert_eq!((arr2.len(), raw2.to_vec()), (2, vec![2]), "{method}");
    }
}

#[test]
fn maps_each_segment_once_per_process() {
    let values: Vec<Value<u32>> = (0..50).map(|i| Value::new(i).unwrap()).collect();
    let (mut a, mut b) = pipe(true).unwrap();
    let before = open_fds();
    a.send(&values).unwrap();
    let received: Vec<Value<u32>> = b.recv_timeout(LIMIT).unwrap();
    // 100 descriptors arrived (a lock and a value each, all in the same arena): the extra
    // ones are closed as soon as the arena is recognised.
    assert!(open_fds() <= before + 1, "{} descriptors kept for one arena", open_fds() - before);
    assert_eq!(received.iter().map(|v| v.get().unwrap()).sum::<u32>(), (0..50).sum());
}

#[derive(Debug, Serialize, Deserialize)]
struct Wrong<T>(T);

/// Sends `value` twice: as itself, refused by the message's type fingerprint, then claiming to
/// be a `T`, refused by the handle's own tag (`tag_error`).
fn refused<T: serde::de::DeserializeOwned + std::fmt::Debug, V: Serialize>(
    (a, b): (&mut Connection, &mut Connection),
    value: &V,
    tag_error: &str,
) {
    a.send(value).unwrap();
    let err = b.recv_timeout::<T>(LIMIT).unwrap_err();
    assert!(err.to_string().contains("expected a `"), "{err}");
    a.send_as::<T, _>(value).unwrap();
    let err = b.recv_timeout::<T>(LIMIT).unwrap_err();
    assert!(err.to_string().contains(tag_error), "{err}");
}

#[test]
fn refuses_handles_of_another_type() {
    let (mut a, mut b) = pipe(true).unwrap();
    refused::<Value<bool>, _>((&mut a, &mut b), &Value::new(2u8).unwrap(), "another element type");
    refused::<RawValue<u8>, _>(
        (&mut a, &mut b),
        &Value::new(2u8).unwrap(),
        "expected a RawValue, received a Value",
    );
    refused::<Array<u8>, _>(
        (&mut a, &mut b),
        &RawArray::<u8>::new(3).unwrap(),
        "expected an Array, received a RawArray",
    );
    refused::<Wrong<Event>, _>((&mut a, &mut b), &Lock::new().unwrap(), "expected an Event, received a Lock");
}
