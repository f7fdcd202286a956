//! Python's `multiprocessing` for Rust: processes that run Rust functions (with the `fork`,
//! `spawn` and `forkserver` start methods), connections between them, queues, shared memory
//! with robust locks, managers and process pools.
//!
//! This crate only re-exports the multiproc crates, each behind a feature of the same name
//! (all on by default); depend on one of them alone if that is all you need.
//!
//! ```
//! use multiproc::Process;
//!
//! fn cube(x: i64) -> i64 {
//!     x * x * x
//! }
//!
//! let mut children: Vec<Process<i64>> = (1..=3).map(|x| Process::new(cube, x)).collect();
//! for p in &mut children {
//!     p.start()?;
//! }
//! let cubes: Vec<i64> = children.iter_mut().map(|p| p.result()).collect::<Result<_, _>>()?;
//! assert_eq!(cubes, [1, 8, 27]);
//! # Ok::<(), multiproc::process::Error>(())
//! ```
//!
//! | crate | what it holds |
//! |---|---|
//! | [`process`] | `Process`, start methods, `current_process`, `active_children`, `cpu_count` |
//! | [`manager`] | `Manager`, a server process of shared objects used through typed proxies, also from other hosts |
//! | [`pipe`] | `Connection`, `pipe`, `Listener`/`Client` (CPython-compatible, authenticated), `wait` |
//! | [`pool`] | `Pool` (`apply`, `map`, `imap`, `starmap`, async forms, callbacks), `AsyncResult` |
//! | [`queue`] | `Queue`, `SimpleQueue`, `JoinableQueue` on a shared-memory ring |
//! | [`shmem`] | `Value`, `Array`, `RawValue`, `RawArray`, `SharedMemory`; robust process-shared `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Event`, `Condition`, `Barrier` |
//! | [`wire`] | the codec, CPython's frame format, descriptors inside messages (`Fd`) |

#[doc(inline)]
pub use multiproc_wire as wire;

#[cfg(feature = "process")]
#[doc(inline)]
pub use multiproc_process as process;

#[cfg(feature = "process")]
#[doc(no_inline)]
pub use multiproc_process::{
    Process, StartMethod, active_children, cpu_count, current_process, get_context, get_start_method,
    parent_process, set_start_method,
};

#[cfg(feature = "pipe")]
#[doc(inline)]
pub use multiproc_pipe as pipe;

#[cfg(feature = "pipe")]
#[doc(no_inline)]
pub use multiproc_pipe::{Address, Client, Connection, Listener, pipe, wait};

#[cfg(feature = "pool")]
#[doc(inline)]
pub use multiproc_pool as pool;

#[cfg(feature = "pool")]
#[doc(no_inline)]
pub use multiproc_pool::{AsyncResult, Pool};

#[cfg(feature = "manager")]
#[doc(inline)]
pub use multiproc_manager as manager;

#[cfg(feature = "manager")]
#[doc(no_inline)]
pub use multiproc_manager::Manager;

#[cfg(feature = "queue")]
#[doc(inline)]
pub use multiproc_queue as queue;

#[cfg(feature = "queue")]
#[doc(no_inline)]
pub use multiproc_queue::{JoinableQueue, Queue, SimpleQueue};

#[cfg(feature = "shmem")]
#[doc(inline)]
pub use multiproc_shmem as shmem;

#[cfg(feature = "shmem")]
#[doc(no_inline)]
pub use multiproc_shmem::{
    Array, Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, RawArray, RawValue, Semaphore,
    SharedMemory, Value,
};

#[doc(no_inline)]
pub use multiproc_wire::Fd;

/// The names most programs use, for `use multiproc::prelude::*`.
pub mod prelude {
    #[cfg(feature = "pipe")]
    #[doc(no_inline)]
    pub use multiproc_pipe::{Connection, pipe};
    #[cfg(feature = "pool")]
    #[doc(no_inline)]
    pub use multiproc_pool::Pool;
    #[cfg(feature = "process")]
    #[doc(no_inline)]
    pub use multiproc_process::{Process, StartMethod, current_process};
    #[cfg(feature = "queue")]
    #[doc(no_inline)]
    pub use multiproc_queue::Queue;
    #[cfg(feature = "shmem")]
    #[doc(no_inline)]
    pub use multiproc_shmem::{Array, Lock, Value};
    #[doc(no_inline)]
    pub use multiproc_wire::Fd;
}
