//! Processes that run Rust functions: CPython's `multiprocessing.Process` with the `fork`,
//! `spawn` and `forkserver` start methods.
//!
//! ```
//! use multiproc_process::{Process, StartMethod};
//!
//! fn greet(name: String) -> String {
//!     format!("hello, {name}")
//! }
//!
//! for method in [StartMethod::Spawn, StartMethod::ForkServer] {
//!     let mut p = Process::new(greet, "world".to_string());
//!     p.set_start_method(method);
//!     p.start()?;
//!     assert_eq!(p.result()?, "hello, world");
//! }
//! # Ok::<(), multiproc_process::Error>(())
//! ```
//!
//! # How a child finds its function
//! `Spawn` and `ForkServer` children are fresh execs of the parent's executable. A constructor
//! that this crate places in `.init_array` runs before `main` in every binary that links it
//! (programs, examples, test binaries); in a child it receives the start message, calls the
//! target and exits, so `main` never runs there and no `init()` call is needed. The target is
//! named by the offset of a monomorphised trampoline from a fixed function of this crate,
//! checked against the executable's identity and a hash of the trampoline's type.
//!
//! The crate must be linked statically (the default for Rust crates).
//!
//! # Testing code that forks
//! `Fork` refuses to run in a multithreaded process, and libtest runs tests on many threads:
//! put such tests in a `harness = false` test binary whose `main` calls
//! [`testing::run_serially`].

mod boot;
pub mod call;
mod children;
mod context;
mod current;
mod entry;
mod error;
mod forkserver;
mod process;
mod sys;
pub mod testing;
mod transfer;

pub use children::{ActiveChild, active_children};
pub use context::{
    Context, StartMethod, UnknownStartMethod, get_context, get_start_method, set_start_method,
};
pub use current::{CurrentProcess, ParentProcess, cpu_count, current_process, ignore_sigint, parent_process};
pub use error::{Error, ErrorKind, Result};
pub use multiproc_wire::Fd;
pub use process::Process;
