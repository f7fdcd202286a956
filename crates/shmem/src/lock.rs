//! `Lock` and `RLock`: process-shared, robust mutual exclusion.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::mem;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, LockResult, LockTimeoutError, NotOwner, OwnerDied, Result, TryLockError};
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, Acquire, CellId, Held, RLockState, RawMutex, Shared, Wait, Wake};

/// How an acquisition went, before it is shaped into the caller's result type.
pub(crate) enum Got<G> {
    /// Acquired.
    Clean(G),
    /// Acquired; the previous owner died holding the lock.
    Died(G),
    /// Not acquired.
    Busy,
}

impl<G> Got<G> {
    pub(crate) fn map<U>(self, f: impl FnOnce(G) -> U) -> Got<U> {
        match self {
            Got::Clean(g) => Got::Clean(f(g)),
            Got::Died(g) => Got::Died(f(g)),
            Got::Busy => Got::Busy,
        }
    }

    /// The result of a blocking acquisition (which is never `Busy`).
    pub(crate) fn blocking(self) -> LockResult<G> {
        match self {
            Got::Clean(g) => Ok(g),
            Got::Died(g) => Err(OwnerDied::new(g)),
            Got::Busy => unreachable!("a blocking acquisition returned without the lock"),
        }
    }

    /// The result of a `try_` acquisition.
    pub(crate) fn trying(self) -> std::result::Result<G, TryLockError<G>> {
        match self {
            Got::Clean(g) => Ok(g),
            Got::Died(g) => Err(TryLockError::OwnerDied(OwnerDied::new(g))),
            Got::Busy => Err(TryLockError::WouldBlock),
        }
    }

    /// The result of a `_timeout` acquisition.
    pub(crate) fn timed(self) -> std::result::Result<G, LockTimeoutError<G>> {
        match self {
            Got::Clean(g) => Ok(g),
            Got::Died(g) => Err(LockTimeoutError::OwnerDied(OwnerDied::new(g))),
            Got::Busy => Err(LockTimeoutError::Timeout),
        }
    }
}

/// A new process-shared robust mutex.
pub(crate) fn new_mutex() -> Result<Shared<RawMutex>> {
    segment::alloc(mem::size_of::<RawMutex>(), mem::align_of::<RawMutex>())?
        .into_cell()
        .map_err(|e| Error::io("cannot initialise a process-shared mutex", e))
}

/// Locks `mutex` as `wait` allows. `what` names the type for the deadlock panic.
pub(crate) fn lock_mutex(mutex: &Shared<RawMutex>, wait: Wait, what: &str) -> Got<Held> {
    match mutex.lock(wait) {
        Acquire::Locked(held) => Got::Clean(held),
        Acquire::OwnerDied(held) => Got::Died(held),
        Acquire::Busy => Got::Busy,
        Acquire::Deadlock if wait == Wait::No => Got::Busy,
        Acquire::Deadlock => {
            panic!("{what}: the calling thread already holds this lock, waiting for it would deadlock")
        }
    }
}

/// A process-shared lock (CPython's `multiprocessing.Lock`) that survives the death of its
/// holder.
///
/// Cloning a `Lock` gives another handle to the same lock; passing one to a child process (as
/// an argument of [`Process`](https://docs.rs/multiproc-process), or through a `Connection`)
/// gives the child a handle to the same lock too, under every start method.
///
/// The lock is held while a [`LockGuard`] lives, and released when it is dropped. When a thread
/// dies holding it (its process is killed, or it exits with a guard leaked), the next acquirer
/// gets the lock together with an [`OwnerDied`] error carrying the guard.
///
/// ```
/// use multiproc_shmem::Lock;
///
/// let lock = Lock::new()?;
/// {
///     let _guard = lock.acquire().unwrap();
///     assert!(lock.try_acquire().is_err(), "held");
/// }
/// assert!(lock.try_acquire().is_ok(), "released with its guard");
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// # Differences from CPython
/// A `Lock` is released by the thread that acquired it (dropping the guard); CPython's may be
/// released by any process. Use a [`Semaphore`](crate::Semaphore) of 1 to hand a permit from one
/// process to another. Acquiring a `Lock` that the calling thread already holds panics instead
/// of hanging (`try_acquire` reports [`WouldBlock`](TryLockError::WouldBlock)).
#[derive(Clone)]
pub struct Lock {
    mutex: Shared<RawMutex>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("offset", &self.mutex.offset()).finish_non_exhaustive()
    }
}

impl Lock {
    /// A new, free lock.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new() -> Result<Lock> {
        Ok(Lock { mutex: new_mutex()? })
    }

    fn acquire_with(&self, wait: Wait) -> Got<LockGuard<'_>> {
        lock_mutex(&self.mutex, wait, "Lock::acquire").map(|held| LockGuard { held, _lock: PhantomData })
    }

    /// Acquires the lock, waiting as long as it takes.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the guard: the lock *is* held) when the previous holder died
    /// holding it.
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    pub fn acquire(&self) -> LockResult<LockGuard<'_>> {
        self.acquire_with(Wait::Forever).blocking()
    }

    /// Acquires the lock if it is free.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] when it is held (by the calling thread too);
    /// [`TryLockError::OwnerDied`] as for [`acquire`](Lock::acquire).
    pub fn try_acquire(&self) -> std::result::Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        self.acquire_with(Wait::No).trying()
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] when the timeout passed; [`LockTimeoutError::OwnerDied`] as
    /// for [`acquire`](Lock::acquire).
    ///
    /// # Panics
    /// If the calling thread already holds the lock.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        self.acquire_with(Wait::timeout(Some(timeout))).timed()
    }

    /// The identity of the lock's mutex (equal for every handle to the same lock).
    pub(crate) fn id(&self) -> CellId {
        self.mutex.id()
    }

    pub(crate) fn mutex(&self) -> &Shared<RawMutex> {
        &self.mutex
    }
}

/// Proof that the calling thread holds a [`Lock`]; releases it when dropped.
///
/// It cannot be sent to another thread: the lock is released by the thread that acquired it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    held: Held,
    _lock: PhantomData<&'a Lock>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl LockGuard<'_> {
    pub(crate) fn from_held(held: Held) -> Self {
        LockGuard { held, _lock: PhantomData }
    }

    pub(crate) fn held(&self) -> &Held {
        &self.held
    }

    pub(crate) fn held_mut(&mut self) -> &mut Held {
        &mut self.held
    }
}

impl Serialize for Lock {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_tagged(serializer, Kind::Lock, 0, PlaceOut::new(self.mutex.segment(), self.mutex.offset()))
    }
}

impl<'de> Deserialize<'de> for Lock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Lock, D::Error> {
        let place: PlaceIn = deserialize_tagged(deserializer, Kind::Lock, 0)?;
        let (seg, offset) = place.attach()?;
        let mutex = Shared::attach(seg, offset).ok_or_else(|| bad_place("a Lock"))?;
        Ok(Lock { mutex })
    }
}

/// Holds of the [`RLock`]s this thread owns: the outermost level keeps its `Held` here, since
/// the guards of the inner levels come and go in any order.
struct RLockHolds(Vec<Held>);

impl Drop for RLockHolds {
    fn drop(&mut self) {
        // The thread is exiting with RLocks held: leave them held (and their segments mapped),
        // so that the kernel marks their owner dead and the next acquirer is told.
        for held in self.0.drain(..) {
            mem::forget(held);
        }
    }
}

thread_local! {
    static RLOCK_HOLDS: RefCell<RLockHolds> = const { RefCell::new(RLockHolds(Vec::new())) };
}

fn store_hold(held: Held) {
    let mut slot = Some(held);
    let _ = RLOCK_HOLDS.try_with(|holds| holds.borrow_mut().0.extend(slot.take()));
    if let Some(held) = slot {
        // The thread is exiting and its holds are gone: the lock stays held, as in
        // RLockHolds::drop.
        mem::forget(held);
    }
}

fn take_hold(id: CellId) -> Option<Held> {
    RLOCK_HOLDS
        .try_with(|holds| {
            let mut holds = holds.borrow_mut();
            let index = holds.0.iter().rposition(|held| held.id() == id)?;
            Some(holds.0.swap_remove(index))
        })
        .ok()
        .flatten()
}

/// Which process and thread hold an [`RLock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockOwner {
    /// The process id.
    pub pid: i32,
    /// The thread id (Linux's `gettid`).
    pub tid: i32,
}

/// A process-shared recursive lock (CPython's `multiprocessing.RLock`): the thread that holds it
/// may acquire it again, and holds it until it has released it as many times. It survives the
/// death of its holder as [`Lock`] does.
///
/// ```
/// use multiproc_shmem::RLock;
///
/// let rlock = RLock::new()?;
/// let outer = rlock.acquire().unwrap();
/// let inner = rlock.acquire().unwrap();
/// assert_eq!(rlock.count(), 2);
/// drop(inner);
/// drop(outer);
/// assert_eq!(rlock.count(), 0);
/// assert!(rlock.release().is_err(), "not held");
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
///
/// Guards release one level each when dropped. For acquire and release in different scopes,
/// as in CPython, [`RLockGuard::keep`] keeps a level held and [`RLock::release`] releases one.
/// An `RLock` guards no data (a recursive lock cannot hand out exclusive access).
#[derive(Clone)]
pub struct RLock {
    mutex: Shared<RawMutex>,
    state: Shared<RLockState>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").field("owner", &self.owner()).field("count", &self.count()).finish()
    }
}

impl RLock {
    /// A new, free recursive lock.
    ///
    /// # Errors
    /// When the system cannot provide shared memory.
    pub fn new() -> Result<RLock> {
        let mutex = new_mutex()?;
        let state = segment::alloc(mem::size_of::<RLockState>(), mem::align_of::<RLockState>())?
            .into_cell()
            .map_err(|e| Error::io("cannot initialise a process-shared lock", e))?;
        Ok(RLock { mutex, state })
    }

    fn acquire_with(&self, wait: Wait) -> Got<RLockGuard<'_>> {
        let me = sys::thread_token();
        let state = &*self.state;
        if state.owner.load(Ordering::Relaxed) == me {
            // Only this thread writes the state while it owns the lock.
            let count = state.count.load(Ordering::Relaxed);
            state
                .count
                .store(count.checked_add(1).expect("RLock acquired too many times"), Ordering::Relaxed);
            return Got::Clean(self.guard());
        }
        let got = lock_mutex(&self.mutex, wait, "RLock::acquire");
        got.map(|held| {
            state.owner.store(me, Ordering::Relaxed);
            state.pid.store(sys::getpid(), Ordering::Relaxed);
            state.tid.store(sys::gettid(), Ordering::Relaxed);
            state.count.store(1, Ordering::Relaxed);
            store_hold(held);
            self.guard()
        })
    }

    fn guard(&self) -> RLockGuard<'_> {
        RLockGuard { rlock: self, _not_send: PhantomData }
    }

    /// Acquires the lock (one more level if the calling thread holds it already), waiting as
    /// long as it takes.
    ///
    /// # Errors
    /// [`OwnerDied`] (with the guard: the lock *is* held) when the previous holder died
    /// holding it.
    pub fn acquire(&self) -> LockResult<RLockGuard<'_>> {
        self.acquire_with(Wait::Forever).blocking()
    }

    /// Acquires the lock if it is free or held by the calling thread.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] when another thread holds it; [`TryLockError::OwnerDied`]
    /// as for [`acquire`](RLock::acquire).
    pub fn try_acquire(&self) -> std::result::Result<RLockGuard<'_>, TryLockError<RLockGuard<'_>>> {
        self.acquire_with(Wait::No).trying()
    }

    /// Acquires the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] when the timeout passed; [`LockTimeoutError::OwnerDied`] as
    /// for [`acquire`](RLock::acquire).
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> std::result::Result<RLockGuard<'_>, LockTimeoutError<RLockGuard<'_>>> {
        self.acquire_with(Wait::timeout(Some(timeout))).timed()
    }

    /// Releases one level held by the calling thread: the level of a guard passed to
    /// [`RLockGuard::keep`]. The lock is free when the last level is released.
    ///
    /// # Errors
    /// [`NotOwner`] when the calling thread does not hold the lock (CPython raises
    /// `AssertionError` or `RuntimeError`).
    pub fn release(&self) -> std::result::Result<(), NotOwner> {
        let state = &*self.state;
        if !self.is_owned() {
            return Err(NotOwner);
        }
        let count = state.count.load(Ordering::Relaxed);
        if count > 1 {
            state.count.store(count - 1, Ordering::Relaxed);
            return Ok(());
        }
        state.count.store(0, Ordering::Relaxed);
        state.tid.store(0, Ordering::Relaxed);
        state.pid.store(0, Ordering::Relaxed);
        state.owner.store(0, Ordering::Relaxed);
        // Dropping the outermost hold unlocks the mutex.
        drop(take_hold(self.mutex.id()));
        Ok(())
    }

    /// Whether the calling thread holds the lock.
    pub fn is_owned(&self) -> bool {
        let state = &*self.state;
        state.owner.load(Ordering::Relaxed) == sys::thread_token() && state.count.load(Ordering::Relaxed) > 0
    }

    /// The process and thread holding the lock, `None` when it is free (a snapshot: another
    /// thread may acquire or release it at any moment).
    pub fn owner(&self) -> Option<LockOwner> {
        let state = &*self.state;
        let (pid, tid) = (state.pid.load(Ordering::Relaxed), state.tid.load(Ordering::Relaxed));
        (pid != 0 && state.count.load(Ordering::Relaxed) > 0).then_some(LockOwner { pid, tid })
    }

    /// How many times the holder has acquired the lock without releasing it; 0 when free (a
    /// snapshot, as for [`owner`](RLock::owner)).
    pub fn count(&self) -> u32 {
        self.state.count.load(Ordering::Relaxed)
    }

    /// Releases every level held by the calling thread (which must hold at least one), sleeps
    /// while `word` holds `expected`, then takes the lock and the levels back: the wait of a
    /// [`Condition`](crate::Condition) over an `RLock`. Returns how the sleep ended and whether
    /// the previous owner died while the lock was away.
    pub(crate) fn park(&self, word: &AtomicU32, expected: u32, wait: Wait) -> (Wake, bool) {
        let state = &*self.state;
        let me = sys::thread_token();
        assert_eq!(state.owner.load(Ordering::Relaxed), me, "waiting on a Condition without its RLock");
        let count = state.count.load(Ordering::Relaxed);
        let mut held = take_hold(self.mutex.id()).expect("the hold of an owned RLock");
        state.count.store(0, Ordering::Relaxed);
        state.tid.store(0, Ordering::Relaxed);
        state.pid.store(0, Ordering::Relaxed);
        state.owner.store(0, Ordering::Relaxed);
        let result = held.park(word, expected, wait.deadline());
        state.owner.store(me, Ordering::Relaxed);
        state.pid.store(sys::getpid(), Ordering::Relaxed);
        state.tid.store(sys::gettid(), Ordering::Relaxed);
        state.count.store(count, Ordering::Relaxed);
        store_hold(held);
        result
    }
}

/// One level of an [`RLock`] held by the calling thread; released when dropped.
#[must_use = "the level is released as soon as the guard is dropped"]
pub struct RLockGuard<'a> {
    rlock: &'a RLock,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard").field("count", &self.rlock.count()).finish()
    }
}

impl<'a> RLockGuard<'a> {
    /// Keeps this level held after the guard is gone; release it with [`RLock::release`]
    /// (CPython's `acquire()` without `with`).
    pub fn keep(self) {
        mem::forget(self);
    }

    pub(crate) fn rlock(&self) -> &'a RLock {
        self.rlock
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Err only when the level was already released with RLock::release.
        let _ = self.rlock.release();
    }
}

impl Serialize for RLock {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mutex = PlaceOut::new(self.mutex.segment(), self.mutex.offset());
        let state = PlaceOut::new(self.state.segment(), self.state.offset());
        serialize_tagged(serializer, Kind::RLock, 0, (mutex, state))
    }
}

impl<'de> Deserialize<'de> for RLock {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<RLock, D::Error> {
        let (mutex, state): (PlaceIn, PlaceIn) = deserialize_tagged(deserializer, Kind::RLock, 0)?;
        let (seg, offset) = mutex.attach()?;
        let mutex = Shared::attach(seg, offset).ok_or_else(|| bad_place("an RLock"))?;
        let (seg, offset) = state.attach()?;
        let state = Shared::attach(seg, offset).ok_or_else(|| bad_place("an RLock"))?;
        Ok(RLock { mutex, state })
    }
}
