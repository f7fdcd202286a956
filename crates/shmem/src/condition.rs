//! `Condition`: a process-shared condition variable over a `Lock` or an `RLock`.

use std::fmt;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, LockResult, LockTimeoutError, OwnerDied, Result, TryLockError};
use crate::lock::{Got, Lock, LockGuard, RLock, RLockGuard};
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, CondState, Shared, Wait, Wake};

/// The lock under a [`Condition`].
#[derive(Debug, Clone, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// A process-shared condition variable (CPython's `multiprocessing.Condition`): threads of any
/// process wait on it, holding its lock, until another notifies them.
///
/// The lock is a [`Lock`] or an [`RLock`] (a new `RLock` by default, as in CPython). Acquiring the
/// condition gives a [`ConditionGuard`], through which the holder waits and notifies: CPython's
/// rule that only the lock's holder may wait or notify is checked by the compiler.
///
/// ```
/// use multiproc_shmem::{Condition, RawValue};
/// use std::time::Duration;
///
/// let cond = Condition::new()?;
/// let ready = RawValue::new(false)?;
/// let (c, r) = (cond.clone(), ready.clone());
/// let t = std::thread::spawn(move || {
///     let guard = c.acquire().unwrap();
///     r.set(true);
///     guard.notify_all();
/// });
/// let mut guard = cond.acquire().unwrap();
/// assert!(guard.wait_for_timeout(|| ready.get(), Duration::from_secs(10)).unwrap());
/// drop(guard);
/// t.join().unwrap();
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// # Wake-ups
/// A notification wakes at least `n` of the threads sleeping in `wait` at that moment (all of
/// them for `notify_all`); a thread that was just going to sleep when it came may wake too. As
/// with std's `Condvar`, wait for a condition in a loop, or with
/// [`wait_for`](ConditionGuard::wait_for). A waiter that is killed leaves nothing behind: unlike
/// CPython's, a later `notify` never waits for it.
#[derive(Clone)]
pub struct Condition {
    lock: CondLock,
    state: Shared<CondState>,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiters", &self.state.waiters.load(Ordering::Relaxed))
            .finish()
    }
}

impl Condition {
    fn with(lock: CondLock) -> Result<Condition> {
        let state = segment::alloc(mem::size_of::<CondState>(), mem::align_of::<CondState>())?
            .into_cell()
            .map_err(|e| Error::io("cannot initialise a condition variable", e))?;
        Ok(Condition { lock, state })
    }

    /// A condition over a new [`RLock`].
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new() -> Result<Condition> {
        Condition::with(CondLock::RLock(RLock::new()?))
    }

    /// A condition over `lock`.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn with_lock(lock: Lock) -> Result<Condition> {
        Condition::with(CondLock::Lock(lock))
    }

    /// A condition over `rlock`.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn with_rlock(rlock: RLock) -> Result<Condition> {
        Condition::with(CondLock::RLock(rlock))
    }

    fn acquire_with(&self, wait: Wait) -> Got<ConditionGuard<'_>> {
        match &self.lock {
            CondLock::Lock(lock) => {
                let got = match wait {
                    Wait::No => Got::from_try(lock.try_acquire()),
                    Wait::Forever => Got::from_blocking(lock.acquire()),
                    Wait::Until(deadline) => Got::from_timed(
                        lock.acquire_timeout(deadline.saturating_duration_since(Instant::now())),
                    ),
                };
                got.map(|guard| ConditionGuard { cond: self, inner: Inner::Lock(guard) })
            }
            CondLock::RLock(rlock) => {
                let got = match wait {
                    Wait::No => Got::from_try(rlock.try_acquire()),
                    Wait::Forever => Got::from_blocking(rlock.acquire()),
                    Wait::Until(deadline) => Got::from_timed(
                        rlock.acquire_timeout(deadline.saturating_duration_since(Instant::now())),
                    ),
                };
                got.map(|guard| ConditionGuard { cond: self, inner: Inner::RLock(guard) })
            }
        }
    }

    /// Acquires the condition's lock, waiting as long as it takes.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the guard) when the lock's previous holder died holding it.
    ///
    /// # Panics
    /// If the lock is a [`Lock`] that the calling thread already holds.
    pub fn acquire(&self) -> LockResult<ConditionGuard<'_>> {
        self.acquire_with(Wait::Forever).blocking()
    }

    /// Acquires the condition's lock if it is free (or, for an `RLock`, held by the calling
    /// thread).
    ///
    /// # Errors
    /// As [`Lock::try_acquire`].
    pub fn try_acquire(&self) -> std::result::Result<ConditionGuard<'_>, TryLockError<ConditionGuard<'_>>> {
        self.acquire_with(Wait::No).trying()
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Lock::acquire_timeout`].
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<ConditionGuard<'_>, LockTimeoutError<ConditionGuard<'_>>> {
        self.acquire_with(Wait::timeout(Some(timeout))).timed()
    }

    /// The condition's lock when it is a [`Lock`].
    pub fn lock(&self) -> Option<&Lock> {
        match &self.lock {
            CondLock::Lock(lock) => Some(lock),
            CondLock::RLock(_) => None,
        }
    }

    /// The condition's lock when it is an [`RLock`].
    pub fn rlock(&self) -> Option<&RLock> {
        match &self.lock {
            CondLock::RLock(rlock) => Some(rlock),
            CondLock::Lock(_) => None,
        }
    }
}

impl<G> Got<G> {
    fn from_blocking(result: LockResult<G>) -> Got<G> {
        match result {
            Ok(g) => Got::Clean(g),
            Err(died) => Got::Died(died.into_inner()),
        }
    }

    fn from_try(result: std::result::Result<G, TryLockError<G>>) -> Got<G> {
        match result {
            Ok(g) => Got::Clean(g),
            Err(TryLockError::OwnerDied(died)) => Got::Died(died.into_inner()),
            Err(TryLockError::WouldBlock) => Got::Busy,
        }
    }

    fn from_timed(result: std::result::Result<G, LockTimeoutError<G>>) -> Got<G> {
        match result {
            Ok(g) => Got::Clean(g),
            Err(LockTimeoutError::OwnerDied(died)) => Got::Died(died.into_inner()),
            Err(LockTimeoutError::Timeout) => Got::Busy,
        }
    }
}

enum Inner<'a> {
    Lock(LockGuard<'a>),
    RLock(RLockGuard<'a>),
}

/// The lock of a [`Condition`], held by the calling thread: wait and notify through it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
    inner: Inner<'a>,
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard").field("condition", self.cond).finish()
    }
}

/// Whether `deadline` has passed.
fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

impl<'a> ConditionGuard<'a> {
    /// Sleeps until notified or `deadline`; `(notified, owner died)`.
    fn wait_until(&mut self, deadline: Option<Instant>) -> (bool, bool) {
        let state = &*self.cond.state;
        let seq = state.seq.load(Ordering::SeqCst);
        state.waiters.fetch_add(1, Ordering::SeqCst);
        let mut died = false;
        let notified = loop {
            let (wake, owner_died) = match &mut self.inner {
                Inner::Lock(guard) => guard.held_mut().park(&state.seq, seq, deadline),
                Inner::RLock(guard) => {
                    let wait = deadline.map_or(Wait::Forever, Wait::Until);
                    guard.rlock().park(&state.seq, seq, wait)
                }
            };
            died |= owner_died;
            // Only a notification changes the sequence number: a wake-up without one (a
            // signal) goes back to sleep.
            if state.seq.load(Ordering::SeqCst) != seq {
                break true;
            }
            if wake == Wake::TimedOut || passed(deadline) {
                break false;
            }
        };
        state.waiters.fetch_sub(1, Ordering::SeqCst);
        (notified, died)
    }

    /// Releases the lock (every level of an `RLock`), sleeps until notified, and takes the lock
    /// back.
    ///
    /// # Errors
    /// [`OwnerDied`] when the lock was taken back from a holder that died with it; the lock is
    /// held.
    pub fn wait(&mut self) -> LockResult<()> {
        match self.wait_until(None) {
            (_, false) => Ok(()),
            (_, true) => Err(OwnerDied::new(())),
        }
    }

    /// As [`wait`](ConditionGuard::wait), for at most `timeout`: `false` when the timeout
    /// passed without a notification (the lock is held again either way).
    ///
    /// # Errors
    /// As [`wait`](ConditionGuard::wait), carrying the result.
    pub fn wait_timeout(&mut self, timeout: Duration) -> LockResult<bool> {
        match self.wait_until(Wait::timeout(Some(timeout)).deadline()) {
            (notified, false) => Ok(notified),
            (notified, true) => Err(OwnerDied::new(notified)),
        }
    }

    fn wait_for_until(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> LockResult<bool> {
        let mut died = false;
        let mut result = predicate();
        while !result && !passed(deadline) {
            died |= self.wait_until(deadline).1;
            result = predicate();
        }
        if died { Err(OwnerDied::new(result)) } else { Ok(result) }
    }

    /// Waits until `predicate` returns true (checking it first, and after every wake-up, with
    /// the lock held).
    ///
    /// # Errors
    /// [`OwnerDied`] when the lock was taken back from a holder that died with it while
    /// waiting; the predicate held when it returns.
    pub fn wait_for(&mut self, predicate: impl FnMut() -> bool) -> LockResult<()> {
        self.wait_for_until(predicate, None).map(drop).map_err(|died| died.map(drop))
    }

    /// As [`wait_for`](ConditionGuard::wait_for), for at most `timeout`: returns the
    /// predicate's last value (`false` when the timeout passed first).
    ///
    /// # Errors
    /// As [`wait_for`](ConditionGuard::wait_for), carrying the result.
    pub fn wait_for_timeout(
        &mut self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> LockResult<bool> {
        self.wait_for_until(predicate, Wait::timeout(Some(timeout)).deadline())
    }

    /// Wakes up to `n` waiting threads (see [Wake-ups](Condition#wake-ups)).
    pub fn notify(&self, n: u32) {
        let state = &*self.cond.state;
        state.seq.fetch_add(1, Ordering::SeqCst);
        if n > 0 && state.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&state.seq, n);
        }
    }

    /// Wakes one waiting thread.
    pub fn notify_one(&self) {
        self.notify(1)
    }

    /// Wakes every waiting thread.
    pub fn notify_all(&self) {
        self.notify(u32::MAX)
    }

    /// The guard of the condition's [`Lock`] (`None` over an `RLock`), to reach data the lock
    /// guards, such as a [`Value`](crate::Value) made with
    /// [`Value::with_lock`](crate::Value::with_lock).
    pub fn lock_guard(&mut self) -> Option<&mut LockGuard<'a>> {
        match &mut self.inner {
            Inner::Lock(guard) => Some(guard),
            Inner::RLock(_) => None,
        }
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let state = PlaceOut::new(self.state.segment(), self.state.offset());
        serialize_tagged(serializer, Kind::Condition, 0, (&self.lock, state))
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Condition, D::Error> {
        let (lock, state): (CondLock, PlaceIn) = deserialize_tagged(deserializer, Kind::Condition, 0)?;
        let (seg, offset) = state.attach()?;
        let state = Shared::attach(seg, offset).ok_or_else(|| bad_place("a Condition"))?;
        Ok(Condition { lock, state })
    }
}
