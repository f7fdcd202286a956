//! A process pool with CPython's methods (`apply`, `map`, `imap`, `starmap`, their `_async`
//! forms, callbacks) that never hangs on a dead worker.
//!
//! ```
//! use multiproc_pool::{ErrorKind, Pool};
//!
//! fn square(x: i64) -> i64 {
//!     x * x
//! }
//!
//! fn fragile(x: i64) -> i64 {
//!     if x == 3 {
//!         panic!("three is not allowed");
//!     }
//!     x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..4)?, [0, 1, 4, 9]);
//! let err = pool.apply(fragile, 3).unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Panicked);
//! assert_eq!(err.message(), "three is not allowed");
//! assert_eq!(pool.apply(fragile, 4)?, 4); // the worker went on
//! # Ok::<(), multiproc_pool::Error>(())
//! ```

mod dispatch;
mod error;
mod pool;
mod result;
mod sys;
mod worker;

pub use error::{Error, ErrorKind, Result};
pub use multiproc_process::call::{Callable, Star};
pub use pool::{IMap, Pool, PoolBuilder};
pub use result::AsyncResult;
