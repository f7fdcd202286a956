//! Connections between processes: CPython's `multiprocessing.connection` (`Pipe`,
//! `Connection`, `Listener`, `Client`, `wait`), typed with serde and wire-compatible with
//! CPython.
//!
//! ```
//! use multiproc_pipe::pipe;
//!
//! let (mut parent, mut child) = pipe(true)?;
//! parent.send(&vec![1, 2, 3])?;
//! let got: Vec<i32> = child.recv()?;
//! child.send(&got.iter().sum::<i32>())?;
//! assert_eq!(parent.recv::<i32>()?, 6);
//! # Ok::<(), multiproc_pipe::Error>(())
//! ```

mod auth;
mod connection;
mod error;
mod listener;
mod ring;
mod sys;
mod wait;

pub use connection::{Connection, DEFAULT_MAX_MESSAGE, pipe};
pub use error::{Error, Result};
pub use listener::{Address, Client, Listener};
pub use wait::{Waitable, wait};
