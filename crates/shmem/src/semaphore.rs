//! `Semaphore` and `BoundedSemaphore`: process-shared counting semaphores on a futex.

use std::fmt;
use std::mem;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ReleaseError, Result};
use crate::segment::{self, Kind, PlaceIn, PlaceOut, bad_place, deserialize_tagged, serialize_tagged};
use crate::sys::{self, SemState, Shared, Wait, Wake};

/// The largest value of a semaphore (CPython's `SEM_VALUE_MAX` on Linux).
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

/// How many times a contended acquire re-checks the value before sleeping in the kernel.
const SPINS: u32 = 100;

/// The shared state and its operations, common to both semaphore types.
#[derive(Clone)]
struct Sem {
    state: Shared<SemState>,
}

impl Sem {
    fn new(value: u32, max: u32) -> Result<Sem> {
        if value > max {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("semaphore value {value} is above the largest value {max}"),
            ));
        }
        let state: Shared<SemState> =
            segment::alloc(mem::size_of::<SemState>(), mem::align_of::<SemState>())?
                .into_cell()
                .map_err(|e| Error::io("cannot initialise a semaphore", e))?;
        state.value.store(value, Ordering::Relaxed);
        state.max.store(max, Ordering::Relaxed);
        Ok(Sem { state })
    }

    /// Takes one unit if the value is positive.
    fn try_take(&self) -> bool {
        let value = &self.state.value;
        let mut current = value.load(Ordering::Relaxed);
        while current > 0 {
            match value.compare_exchange_weak(current, current - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
        false
    }

    fn acquire(&self, wait: Wait) -> bool {
        if self.try_take() {
            return true;
        }
        if wait == Wait::No {
            return false;
        }
        if sys::multicore() {
            for _ in 0..SPINS {
                std::hint::spin_loop();
                if self.state.value.load(Ordering::Relaxed) > 0 && self.try_take() {
                    return true;
                }
            }
        }
        let state = &*self.state;
        let deadline = wait.deadline();
        state.waiters.fetch_add(1, Ordering::SeqCst);
        let taken = loop {
            if self.try_take() {
                break true;
            }
            if sys::futex_wait(&state.value, 0, deadline) == Wake::TimedOut {
                break self.try_take();
            }
        };
        state.waiters.fetch_sub(1, Ordering::SeqCst);
        taken
    }

    fn release(&self) -> std::result::Result<(), ReleaseError> {
        let state = &*self.state;
        let max = state.max.load(Ordering::Relaxed);
        state
            .value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| (v < max).then_some(v + 1))
            .map_err(|_| ReleaseError)?;
        if state.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake(&state.value, 1);
        }
        Ok(())
    }

    fn value(&self) -> u32 {
        self.state.value.load(Ordering::Relaxed)
    }
}

/// A process-shared counting semaphore (CPython's `multiprocessing.Semaphore`).
///
/// `acquire` takes one unit, waiting while the value is 0; `release` gives one back, from any
/// thread of any process. Waiting sleeps on a futex in the semaphore's shared memory.
///
/// ```
/// use multiproc_shmem::Semaphore;
///
/// let sem = Semaphore::new(2)?;
/// sem.acquire();
/// assert!(sem.try_acquire());
/// assert!(!sem.try_acquire(), "value is 0");
/// sem.release();
/// assert_eq!(sem.get_value(), 1);
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    sem: Sem,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("value", &self.get_value()).finish()
    }
}

impl Semaphore {
    /// A semaphore with the value `value`.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) above [`SEM_VALUE_MAX`];
    /// when the system cannot provide shared memory.
    pub fn new(value: u32) -> Result<Semaphore> {
        Ok(Semaphore { sem: Sem::new(value, SEM_VALUE_MAX)? })
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.sem.acquire(Wait::Forever);
    }

    /// Takes one unit if the value is positive; whether it did.
    pub fn try_acquire(&self) -> bool {
        self.sem.acquire(Wait::No)
    }

    /// Takes one unit, waiting at most `timeout`; `false` when the timeout passed.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire(Wait::timeout(Some(timeout)))
    }

    /// Gives one unit back, waking a waiter if there is one.
    ///
    /// # Panics
    /// If the value is already [`SEM_VALUE_MAX`] (CPython raises `OverflowError`).
    pub fn release(&self) {
        self.sem.release().expect("semaphore value above SEM_VALUE_MAX");
    }

    /// The value (a snapshot: other processes may change it at any moment).
    pub fn get_value(&self) -> u32 {
        self.sem.value()
    }
}

/// A semaphore that cannot be released above its initial value (CPython's
/// `multiprocessing.BoundedSemaphore`): a release too many is an error instead of a silent
/// extra unit.
///
/// ```
/// use multiproc_shmem::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err(), "above the initial value");
/// sem.acquire();
/// assert!(sem.release().is_ok());
/// # Ok::<(), multiproc_shmem::Error>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Sem,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.get_value())
            .field("max", &self.sem.state.max.load(Ordering::Relaxed))
            .finish()
    }
}

impl BoundedSemaphore {
    /// A semaphore with the value and bound `value`.
    ///
    /// # Errors
    /// As [`Semaphore::new`].
    pub fn new(value: u32) -> Result<BoundedSemaphore> {
        if value > SEM_VALUE_MAX {
            return Err(Error::new(
                crate::ErrorKind::InvalidInput,
                format!("semaphore value {value} is above SEM_VALUE_MAX"),
            ));
        }
        Ok(BoundedSemaphore { sem: Sem::new(value, value)? })
    }

    /// Takes one unit, waiting as long as it takes.
    pub fn acquire(&self) {
        self.sem.acquire(Wait::Forever);
    }

    /// Takes one unit if the value is positive; whether it did.
    pub fn try_acquire(&self) -> bool {
        self.sem.acquire(Wait::No)
    }

    /// Takes one unit, waiting at most `timeout`; `false` when the timeout passed.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.sem.acquire(Wait::timeout(Some(timeout)))
    }

    /// Gives one unit back, waking a waiter if there is one.
    ///
    /// # Errors
    /// [`ReleaseError`] when the value is already the initial value (CPython raises
    /// `ValueError`); the value is unchanged.
    pub fn release(&self) -> std::result::Result<(), ReleaseError> {
        self.sem.release()
    }

    /// The value (a snapshot: other processes may change it at any moment).
    pub fn get_value(&self) -> u32 {
        self.sem.value()
    }
}

fn serialize_sem<S: Serializer>(
    sem: &Sem,
    kind: Kind,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serialize_tagged(serializer, kind, 0, PlaceOut::new(sem.state.segment(), sem.state.offset()))
}

fn deserialize_sem<'de, D: Deserializer<'de>>(
    kind: Kind,
    deserializer: D,
) -> std::result::Result<Sem, D::Error> {
    let place: PlaceIn = deserialize_tagged(deserializer, kind, 0)?;
    let (seg, offset) = place.attach()?;
    let state = Shared::attach(seg, offset).ok_or_else(|| bad_place("a semaphore"))?;
    Ok(Sem { state })
}

impl Serialize for Semaphore {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_sem(&self.sem, Kind::Semaphore, serializer)
    }
}

impl<'de> Deserialize<'de> for Semaphore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Semaphore, D::Error> {
        deserialize_sem(Kind::Semaphore, deserializer).map(|sem| Semaphore { sem })
    }
}

impl Serialize for BoundedSemaphore {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_sem(&self.sem, Kind::BoundedSemaphore, serializer)
    }
}

impl<'de> Deserialize<'de> for BoundedSemaphore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<BoundedSemaphore, D::Error> {
        deserialize_sem(Kind::BoundedSemaphore, deserializer).map(|sem| BoundedSemaphore { sem })
    }
}
