//! Memory and synchronisation shared between processes: CPython's `sharedctypes` (`Value`,
//! `Array`, `RawValue`, `RawArray`), `shared_memory` (`SharedMemory`) and `synchronize` (`Lock`,
//! `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier`), without their
//! leaks and deadlocks.
//!
//! ```
//! use multiproc_process::{Process, StartMethod};
//! use multiproc_shmem::{Array, Value};
//!
//! fn work((total, items): (Value<f64>, Array<i32>)) {
//!     for x in items.lock().unwrap().iter_mut() {
//!         *x *= 2;
//!     }
//!     total.update(|t| *t += 1.5).unwrap();
//! }
//!
//! let total = Value::new(0.0)?;
//! let items = Array::from_slice(&[1, 2, 3])?;
//! let mut p = Process::new(work, (total.clone(), items.clone()));
//! p.set_start_method(StartMethod::Spawn);
//! p.start()?;
//! assert_eq!(p.join()?, 0);
//! assert_eq!(total.get().unwrap(), 1.5);
//! assert_eq!(items.to_vec().unwrap(), [2, 4, 6]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Passing handles
//! Every handle (values, arrays, locks and the other primitives, `SharedMemory`) implements
//! serde's traits: pass it to a child process as an argument, under any start method, or send
//! it through a `Connection`, and the receiver gets a handle to the same memory. Values, arrays
//! and primitives live in anonymous memory (`memfd`) that travels as a file descriptor: it has
//! no name, so nothing is left in `/dev/shm` whatever happens to the processes, and it is freed
//! when the last process drops its last handle. Clone a handle for another handle to the same
//! memory.
//!
//! # Locks and owner death
//! Every lock is a process-shared, robust pthread mutex. When a thread dies holding one (its
//! process is killed), the next acquirer gets the lock together with an [`OwnerDied`] error that
//! carries the guard, as std's `Mutex` reports poisoning; the lock is usable again at once.
//! Every blocking call has a `_timeout` form; waits sleep on futexes (no polling).
//!
//! # Soundness model
//! Shared memory is written by other processes at any time, outside what the compiler can see.
//! This crate keeps Rust's rules by never giving a reference to shared bytes that another thread
//! or process may write while the reference lives:
//! - Locked data ([`Value`], [`Array`]) is reached only through a guard of its lock: `&T` and
//!   `&mut T` exist only while the lock is held, and every process reaches the data only through
//!   the same lock (a handle carries the identity of its lock, checked when it is used). The
//!   guard cannot leave its thread.
//! - Unlocked data ([`RawValue`], [`RawArray`], [`SharedMemory`]) is read and written only with
//!   atomic operations: relaxed loads and stores per machine word for copies, std atomics
//!   (`as_atomic`, `buf`) for the rest. A value larger than a word can be read half old, half new;
//!   each field is still valid (see [`Pod`]).
//! - Element types are plain old data ([`Pod`]) and are checked when a handle is received, so
//!   a `Value<u8>` cannot be received as a `Value<bool>`.
//! - Memory is never reused while a handle to it exists in any process (allocation only moves
//!   forward); a leaked guard leaks its memory's mapping instead of letting the lock's
//!   bookkeeping point into unmapped memory.
//!
//! This holds among processes that use the memory through this crate. Any process that can
//! write the memory (it received a handle, or attached to a name) is trusted: a hostile one can
//! corrupt locks and data, as with any shared memory.

mod array;
mod barrier;
mod condition;
mod error;
mod event;
mod lock;
mod segment;
mod semaphore;
mod shared_memory;
mod sys;
mod tracker;
mod value;

pub use array::{Array, ArrayGuard, RawArray, RawIter};
pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard};
pub use error::{
    BarrierError, Error, ErrorKind, LockResult, LockTimeoutError, NotOwner, OwnerDied, ReleaseError, Result,
    TryLockError,
};
pub use event::Event;
pub use lock::{Lock, LockGuard, LockOwner, RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, SEM_VALUE_MAX, Semaphore};
pub use shared_memory::{NAME_PREFIX, SharedMemory};
pub use sys::{AtomicPod, Pod};
pub use value::{RawValue, Value, ValueGuard};
