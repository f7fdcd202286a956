//! `Value<T>` (a shared value with a lock) and `RawValue<T>` (without one).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{LockResult, LockTimeoutError, OwnerDied, Result, TryLockError};
use crate::lock::{Got, Lock, LockGuard, lock_mutex};
use crate::segment::{
    self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged, type_check,
};
use crate::sys::{AtomicPod, LockedSlots, Pod, RawSlots, Wait, slot_align};

/// A `T` in shared memory with a lock (CPython's `multiprocessing.Value`).
///
/// Every access goes through the lock: [`get`](Value::get), [`set`](Value::set) and
/// [`update`](Value::update) take it for one operation, and [`lock`](Value::lock) gives a guard
/// that dereferences to `&mut T` while it holds the lock. Handles are cheap to clone and can be
/// passed to child processes (under every start method) and through a `Connection`: all of them
/// refer to the same memory, so a write in one process is seen by all.
///
/// ```
/// use multiproc_shmem::Value;
///
/// let counter = Value::new(0u64)?;
/// counter.set(41).unwrap();
/// *counter.lock().unwrap() += 1;
/// assert_eq!(counter.get().unwrap(), 42);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// # Owner death
/// If a thread dies holding the lock (a child process killed in the middle of an update), the
/// next acquirer is told with an [`OwnerDied`] error that carries what it asked for, and the
/// value may be half-updated. See [`Lock`].
///
/// # Differences from CPython
/// The lock is a [`Lock`], not an `RLock`: a guard gives `&mut T`, which must be unique, so the
/// same thread cannot take the lock twice (it panics instead of deadlocking). For lock-free
/// access use [`RawValue`], CPython's `lock=False` form.
pub struct Value<T> {
    lock: Lock,
    data: LockedSlots<T>,
}

impl<T> Clone for Value<T> {
    fn clone(&self) -> Value<T> {
        Value { lock: self.lock.clone(), data: self.data.clone() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Value");
        match self.try_lock() {
            Ok(guard) => d.field("value", &*guard),
            Err(_) => d.field("value", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: Pod> Value<T> {
    /// A shared `value` with a lock of its own.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new(value: T) -> Result<Value<T>> {
        Value::with_lock(value, Lock::new()?)
    }

    /// A shared `value` guarded by `lock`, which may guard other values too (CPython's
    /// `Value(..., lock=lock)`): hold it once and reach each of them with
    /// [`get_mut`](Value::get_mut).
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn with_lock(value: T, lock: Lock) -> Result<Value<T>> {
        let fresh = segment::alloc(std::mem::size_of::<T>(), slot_align::<T>())?;
        let data = LockedSlots::fresh_from(fresh, &[value], lock.id());
        Ok(Value { lock, data })
    }

    fn lock_with(&self, wait: Wait) -> Got<ValueGuard<'_, T>> {
        lock_mutex(self.lock.mutex(), wait, "Value::lock")
            .map(|held| ValueGuard { guard: LockGuard::from_held(held), data: &self.data })
    }

    /// Takes the lock and returns a guard that dereferences to the value.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the guard) when the previous holder died holding the lock.
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        self.lock_with(Wait::Forever).blocking()
    }

    /// Takes the lock if it is free.
    ///
    /// # Errors
    /// As [`Lock::try_acquire`].
    pub fn try_lock(&self) -> std::result::Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        self.lock_with(Wait::No).trying()
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Lock::acquire_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        self.lock_with(Wait::timeout(Some(timeout))).timed()
    }

    /// The value (CPython's `v.value`), read under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the value) when the previous holder died holding the lock.
    pub fn get(&self) -> LockResult<T> {
        match self.lock() {
            Ok(guard) => Ok(*guard),
            Err(died) => Err(OwnerDied::new(**died.get_ref())),
        }
    }

    /// Sets the value (CPython's `v.value = x`), under the lock.
    ///
    /// # Errors
    /// [`OwnerDied`] when the previous holder died holding the lock; the value is set.
    pub fn set(&self, value: T) -> LockResult<()> {
        self.update(|v| *v = value)
    }

    /// Runs `f` on the value under the lock (CPython's `with v.get_lock(): v.value += 1`);
    /// returns what `f` returns.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the result) when the previous holder died holding the lock; `f` ran.
    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> LockResult<R> {
        match self.lock() {
            Ok(mut guard) => Ok(f(&mut guard)),
            Err(died) => {
                let mut guard = died.into_inner();
                Err(OwnerDied::new(f(&mut guard)))
            }
        }
    }

    /// The lock (CPython's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// The value, reached through a guard of its lock taken some other way (a lock shared by
    /// several values, or a [`Condition`](crate::Condition)'s lock).
    ///
    /// # Panics
    /// If `guard` holds another lock than this value's.
    pub fn get_mut<'g>(&'g self, guard: &'g mut LockGuard<'_>) -> &'g mut T {
        &mut self.data.slice_mut(guard.held_mut())[0]
    }
}

/// The lock of a [`Value`], held by the calling thread; dereferences to the value.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    guard: LockGuard<'a>,
    data: &'a LockedSlots<T>,
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data.slice(self.guard.held())[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data.slice_mut(self.guard.held_mut())[0]
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (seg, offset, _) = self.data.parts();
        serialize_tagged(serializer, Kind::Value, type_check::<T>(), (&self.lock, PlaceOut::new(seg, offset)))
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Value<T>, D::Error> {
        let (lock, place): (Lock, PlaceIn) =
            deserialize_tagged(deserializer, Kind::Value, type_check::<T>())?;
        let (seg, offset) = place.attach()?;
        let data = LockedSlots::attach(seg, offset, 1, lock.id()).ok_or_else(|| bad_place("a Value"))?;
        Ok(Value { lock, data })
    }
}

/// A `T` in shared memory without a lock (CPython's `RawValue`, or `Value(..., lock=False)`).
///
/// Reads and writes are atomic per machine word (acquire loads, release stores): a `T` of at
/// most 8 bytes is never torn, a larger one may be read half old, half new while another
/// process writes it (each field stays valid). For integers and `bool`, [`as_atomic`](RawValue::as_atomic) gives the
/// std atomic, with `fetch_add`, `compare_exchange` and the rest, lock-free.
///
/// ```
/// use multiproc_shmem::RawValue;
/// use std::sync::atomic::Ordering;
///
/// let hits = RawValue::new(0u64)?;
/// hits.as_atomic().fetch_add(5, Ordering::Relaxed);
/// assert_eq!(hits.get(), 5);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
pub struct RawValue<T> {
    data: RawSlots<T>,
}

impl<T> Clone for RawValue<T> {
    fn clone(&self) -> RawValue<T> {
        RawValue { data: self.data.clone() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RawValue").field(&self.get()).finish()
    }
}

impl<T: Pod> RawValue<T> {
    /// A shared `value` without a lock.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new(value: T) -> Result<RawValue<T>> {
        let fresh = segment::alloc(std::mem::size_of::<T>(), slot_align::<T>())?;
        Ok(RawValue { data: RawSlots::fresh_from(fresh, &[value]) })
    }

    /// The value.
    pub fn get(&self) -> T {
        self.data.load(0)
    }

    /// Sets the value.
    pub fn set(&self, value: T) {
        self.data.store(0, value)
    }
}

impl<T: AtomicPod> RawValue<T> {
    /// The value as a std atomic (`AtomicU64` for `u64`), for lock-free operations.
    pub fn as_atomic(&self) -> &T::Atomic {
        &self.data.atomics()[0]
    }
}

impl<T: Pod> Serialize for RawValue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let (seg, offset, _) = self.data.parts();
        serialize_tagged(serializer, Kind::RawValue, type_check::<T>(), PlaceOut::new(seg, offset))
    }
}

impl<'de, T: Pod> Deserialize<'de> for RawValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RawValue<T>, D::Error> {
        let place: PlaceIn = deserialize_tagged(deserializer, Kind::RawValue, type_check::<T>())?;
        let (seg, offset) = place.attach()?;
        let data = RawSlots::attach(seg, offset, 1).ok_or_else(|| bad_place("a RawValue"))?;
        Ok(RawValue { data })
    }
}
