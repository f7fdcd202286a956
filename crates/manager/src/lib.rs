//! Managers: a server process whose objects other processes, and other hosts, use through
//! typed proxies (CPython's `multiprocessing.managers`: `Manager()`, `BaseManager`).
//!
//! ```
//! use multiproc_manager::{DictProxy, ListProxy, Manager};
//! use multiproc_process::Process;
//!
//! fn child((d, l): (DictProxy<String, i32>, ListProxy<i32>)) {
//!     d.set("child", &1).unwrap();
//!     l.reverse().unwrap();
//! }
//!
//! let manager = Manager::start()?;
//! let d = manager.dict()?;
//! let l = manager.list_from(0..5)?;
//! let mut p = Process::new(child, (d.clone(), l.clone()));
//! p.start()?;
//! p.join()?;
//! assert_eq!(d.get("child")?, Some(1));
//! assert_eq!(l.copy()?, [4, 3, 2, 1, 0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! - [`Manager::start`] starts the server (any start method); [`Manager::connect`] reaches a
//!   server elsewhere, [`ManagerServer`] serves one in a process you control, on TCP for
//!   other hosts, with callables clients call by name.
//! - Proxies of dict, list, Namespace, Value, Array, Queue, JoinableQueue, Lock, RLock,
//!   Semaphore, BoundedSemaphore, Condition, Event and Barrier, typed with serde; your own
//!   types through [`Managed`] and [`Proxy`].
//! - One authenticated connection per client process, requests pipelined and tagged; a call
//!   that waits in the server (a queue's `get`, a lock's `acquire`) holds back no other call.
//! - An error raised by an object (a missing key, an index out of range) comes back typed
//!   ([`ErrorKind`]); a server that has gone is [`ErrorKind::Disconnected`], at once.

mod client;
mod error;
mod managed;
mod manager;
mod protocol;
mod proxy;
mod server;
mod transport;

pub use error::{Error, ErrorKind, Result};
pub use managed::{Args, Managed, Reply};
pub use manager::{Manager, ManagerBuilder, NoSetup, Setup};
pub use multiproc_pipe::Address;
pub use proxy::{
    AnyProxy, ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockGuard, LockProxy, NamespaceProxy, Proxy, QueueProxy, RLockProxy,
    SemaphoreProxy, ValueProxy,
};
pub use server::{DEFAULT_MAX_REQUEST, ManagerServer, ShutdownHandle};
