//! Proxies of the synchronization objects in the server: Lock, RLock, Semaphore,
//! BoundedSemaphore, Condition, Event, Barrier.
//!
//! An `RLock` (also a `Condition`'s own, or one it was made over) is owned by a thread of a
//! client process. When a client process goes away (its connection ends) while holding one,
//! the server releases it, and the next acquirer is told with [`ErrorKind::OwnerDied`] (it
//! holds the lock then), as the shared-memory locks of `multiproc-shmem` report a dead owner.
//! CPython keeps such an `RLock` locked forever, and no other process can release it. A plain
//! `Lock` has no owner (any process may release it, as with `threading.Lock`), so one whose
//! holder died stays locked until someone releases it, as in CPython. Semaphores are not
//! released either: any process may release a unit another acquired.
//!
//! A process killed while it waits (in `acquire`, a condition's `wait`, a barrier's `wait`, a
//! queue's `get`) takes nothing: the lock, the semaphore unit or the notification goes to a
//! living waiter, and what was taken for it when its reply could not be delivered is given
//! back. A barrier one of whose waiting parties died breaks (the others get
//! [`ErrorKind::BrokenBarrier`]) instead of counting it as arrived. CPython's server takes the
//! lock, the unit or the notification for the dead process, and lets its barrier pass.

use std::fmt;
use std::time::{Duration, Instant};

use super::{AnyProxy, type_ids, typed_proxy};
use crate::error::{ErrorKind, Result};
use crate::protocol::Wait;

/// The acquire/release methods of the lock-like proxies.
macro_rules! acquire_methods {
    () => {
        /// Acquires, waiting as long as it takes (`acquire()`).
        ///
        /// # Errors
        /// [`ErrorKind::OwnerDied`] (`RLock` and `Condition` only): acquired, but the previous
        /// owner's process went away while holding it; [`ErrorKind::Disconnected`] when the
        /// server has gone.
        pub fn acquire(&self) -> Result<()> {
            self.acquire_wait(Wait::Forever).map(drop)
        }

        /// Acquires if that is possible now (`acquire(blocking=False)`); returns whether it
        /// did.
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire).
        pub fn try_acquire(&self) -> Result<bool> {
            self.acquire_wait(Wait::Now)
        }

        /// Acquires, waiting at most `timeout` (`acquire(timeout=t)`); returns whether it did.
        ///
        /// # Errors
        /// As [`acquire`](Self::acquire).
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
            self.acquire_wait(Wait::For(timeout))
        }

        fn acquire_wait(&self, wait: Wait) -> Result<bool> {
            self.proxy.call_waiting("acquire", &wait, wait)
        }
    };
}

/// The methods of the proxies that are locks (`Lock`, `RLock`, `Condition`).
macro_rules! lock_methods {
    () => {
        acquire_methods!();

        /// Releases (`release()`).
        ///
        /// # Errors
        /// [`ErrorKind::InvalidState`] when the lock is not held (by this thread, for an
        /// `RLock` or a `Condition`).
        pub fn release(&self) -> Result<()> {
            self.proxy.call("release", &())
        }

        /// Whether the lock is held by anyone (`locked()`).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`].
        pub fn locked(&self) -> Result<bool> {
            self.proxy.call("locked", &())
        }

        /// Acquires and returns a guard that releases when dropped (`with lock:`).
        ///
        /// A previous owner's death is not an error here: the guard says so
        /// ([`LockGuard::owner_died`]).
        ///
        /// # Errors
        /// [`ErrorKind::Disconnected`] when the server has gone.
        pub fn lock(&self) -> Result<LockGuard<'_>> {
            match self.acquire() {
                Ok(()) => Ok(LockGuard { proxy: &self.proxy, owner_died: false }),
                Err(err) if err.kind() == ErrorKind::OwnerDied => {
                    Ok(LockGuard { proxy: &self.proxy, owner_died: true })
                }
                Err(err) => Err(err),
            }
        }
    };
}

/// Holds a manager lock until dropped; made by `lock()` on a [`LockProxy`], [`RLockProxy`] or
/// [`ConditionProxy`].
pub struct LockGuard<'a> {
    proxy: &'a AnyProxy,
    owner_died: bool,
}

impl LockGuard<'_> {
    /// Whether the previous owner's process went away while holding the lock: what the lock
    /// protects may be half-updated.
    pub fn owner_died(&self) -> bool {
        self.owner_died
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", &self.proxy.id())
            .field("owner_died", &self.owner_died)
            .finish()
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.proxy.call::<_, ()>("release", &());
    }
}

/// A proxy of a lock in the server (CPython's `manager.Lock()`, a `threading.Lock`).
///
/// Any thread of any client may release it, as with `threading.Lock`; acquiring it twice from
/// one thread waits for ever. It has no owner, so when the process holding it dies it stays
/// locked until another process releases it, and nobody is told [`ErrorKind::OwnerDied`] (as
/// in CPython); use an [`RLockProxy`] for a lock that its holder's death releases.
///
/// ```no_run
/// let manager = multiproc_manager::Manager::start()?;
/// let lock = manager.lock()?;
/// {
///     let _held = lock.lock()?;
///     assert!(!lock.try_acquire()?);
/// }
/// assert!(lock.try_acquire()?);
/// # Ok::<(), multiproc_manager::Error>(())
/// ```
pub struct LockProxy {
    proxy: AnyProxy,
}

typed_proxy!(LockProxy, type_ids::LOCK);

impl LockProxy {
    lock_methods!();
}

/// A proxy of a reentrant lock in the server (CPython's `manager.RLock()`): the thread that
/// holds it may acquire it again, and must release it as often.
///
/// When the process holding it goes away, the server releases it and the next acquirer gets
/// [`ErrorKind::OwnerDied`] while holding it (told once). CPython keeps it locked forever.
pub struct RLockProxy {
    proxy: AnyProxy,
}

typed_proxy!(RLockProxy, type_ids::RLOCK);

impl RLockProxy {
    lock_methods!();
}

/// A proxy of a semaphore in the server (CPython's `manager.Semaphore(value)`).
pub struct SemaphoreProxy {
    proxy: AnyProxy,
}

typed_proxy!(SemaphoreProxy, type_ids::SEMAPHORE);

impl SemaphoreProxy {
    acquire_methods!();

    /// Releases one unit (`release()`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// The units available now.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn value(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("value", &()).map(|n| n as usize)
    }
}

/// A proxy of a bounded semaphore in the server (CPython's `manager.BoundedSemaphore(value)`):
/// releasing more units than it started with is an error.
pub struct BoundedSemaphoreProxy {
    proxy: AnyProxy,
}

typed_proxy!(BoundedSemaphoreProxy, type_ids::BOUNDED_SEMAPHORE);

impl BoundedSemaphoreProxy {
    acquire_methods!();

    /// Releases one unit (`release()`).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidValue`] when that would exceed the initial value.
    pub fn release(&self) -> Result<()> {
        self.proxy.call("release", &())
    }

    /// The units available now.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn value(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("value", &()).map(|n| n as usize)
    }
}

/// A proxy of a condition variable in the server (CPython's `manager.Condition()`), over its
/// own `RLock` or over a [`LockProxy`] / [`RLockProxy`] given when it was made.
///
/// `wait` releases the lock in the server, waits for a notification and takes the lock back,
/// all in the server: no notification is lost between the release and the wait.
pub struct ConditionProxy {
    proxy: AnyProxy,
}

typed_proxy!(ConditionProxy, type_ids::CONDITION);

impl ConditionProxy {
    lock_methods!();

    /// Waits for a notification (`wait()`); the lock must be held by this thread, and is held
    /// again on return.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when this thread does not hold the lock.
    pub fn wait(&self) -> Result<()> {
        self.proxy.call_waiting::<_, bool>("wait", &Wait::Forever, Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` for a notification (`wait(timeout)`); returns whether one came.
    /// The lock is held again on return either way.
    ///
    /// # Errors
    /// As [`wait`](ConditionProxy::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let wait = Wait::For(timeout);
        self.proxy.call_waiting("wait", &wait, wait)
    }

    /// Waits until `predicate` (evaluated here, with the lock held) is true (`wait_for`).
    ///
    /// # Errors
    /// As [`wait`](ConditionProxy::wait), and the predicate's errors.
    pub fn wait_for(&self, mut predicate: impl FnMut() -> Result<bool>) -> Result<()> {
        while !predicate()? {
            self.wait()?;
        }
        Ok(())
    }

    /// Waits at most `timeout` until `predicate` is true; returns the predicate's last value
    /// (`wait_for(predicate, timeout)`).
    ///
    /// # Errors
    /// As [`wait_for`](ConditionProxy::wait_for).
    pub fn wait_for_timeout(
        &self,
        mut predicate: impl FnMut() -> Result<bool>,
        timeout: Duration,
    ) -> Result<bool> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if predicate()? {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => timeout,
            };
            if left.is_zero() {
                return Ok(false);
            }
            self.wait_timeout(left)?;
        }
    }

    /// Wakes up to `n` waiters (`notify(n)`); the lock must be held by this thread.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidState`] when this thread does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<()> {
        self.proxy.call("notify", &(n as u64))
    }

    /// Wakes every waiter (`notify_all()`); the lock must be held by this thread.
    ///
    /// # Errors
    /// As [`notify`](ConditionProxy::notify).
    pub fn notify_all(&self) -> Result<()> {
        self.proxy.call("notify", &u64::MAX)
    }
}

/// A proxy of an event in the server (CPython's `manager.Event()`).
pub struct EventProxy {
    proxy: AnyProxy,
}

typed_proxy!(EventProxy, type_ids::EVENT);

impl EventProxy {
    /// Sets the flag and wakes every waiter (`set()`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`] (this holds for every method).
    pub fn set(&self) -> Result<()> {
        self.proxy.call("set", &())
    }

    /// Clears the flag (`clear()`).
    ///
    /// # Errors
    /// See [`set`](EventProxy::set).
    pub fn clear(&self) -> Result<()> {
        self.proxy.call("clear", &())
    }

    /// Whether the flag is set (`is_set()`).
    ///
    /// # Errors
    /// See [`set`](EventProxy::set).
    pub fn is_set(&self) -> Result<bool> {
        self.proxy.call("is_set", &())
    }

    /// Waits until the flag is set (`wait()`).
    ///
    /// # Errors
    /// See [`set`](EventProxy::set).
    pub fn wait(&self) -> Result<()> {
        self.proxy.call_waiting::<_, bool>("wait", &Wait::Forever, Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` until the flag is set; returns the flag (`wait(timeout)`).
    ///
    /// # Errors
    /// See [`set`](EventProxy::set).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        let wait = Wait::For(timeout);
        self.proxy.call_waiting("wait", &wait, wait)
    }
}

/// A proxy of a barrier in the server (CPython's `manager.Barrier(parties)`).
///
/// A waiter whose time limit passes, or whose process goes away, breaks the barrier: every
/// waiter gets [`ErrorKind::BrokenBarrier`] until [`reset`](BarrierProxy::reset). A party
/// killed inside `wait` never counts as arrived, even when the last party comes before the
/// server has seen the connection end (CPython's barrier lets the others pass then).
pub struct BarrierProxy {
    proxy: AnyProxy,
}

typed_proxy!(BarrierProxy, type_ids::BARRIER);

impl BarrierProxy {
    /// Waits until `parties` callers wait; returns this caller's arrival index, `0` to
    /// `parties - 1` (`wait()`).
    ///
    /// # Errors
    /// [`ErrorKind::BrokenBarrier`]; [`ErrorKind::Disconnected`].
    pub fn wait(&self) -> Result<usize> {
        self.proxy.call_waiting::<_, u64>("wait", &Wait::Forever, Wait::Forever).map(|i| i as usize)
    }

    /// [`wait`](BarrierProxy::wait), for at most `timeout`; when it passes the barrier breaks.
    ///
    /// # Errors
    /// [`ErrorKind::BrokenBarrier`], also on timeout (as CPython).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        let wait = Wait::For(timeout);
        self.proxy.call_waiting::<_, u64>("wait", &wait, wait).map(|i| i as usize)
    }

    /// Breaks the barrier: current and future waiters get [`ErrorKind::BrokenBarrier`]
    /// (`abort()`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn abort(&self) -> Result<()> {
        self.proxy.call("abort", &())
    }

    /// Makes the barrier usable again; current waiters get [`ErrorKind::BrokenBarrier`]
    /// (`reset()`).
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn reset(&self) -> Result<()> {
        self.proxy.call("reset", &())
    }

    /// The number of callers needed to pass.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn parties(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("parties", &()).map(|n| n as usize)
    }

    /// The number of callers waiting now.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn n_waiting(&self) -> Result<usize> {
        self.proxy.call::<_, u64>("n_waiting", &()).map(|n| n as usize)
    }

    /// Whether the barrier is broken.
    ///
    /// # Errors
    /// [`ErrorKind::Disconnected`].
    pub fn broken(&self) -> Result<bool> {
        self.proxy.call("broken", &())
    }
}
