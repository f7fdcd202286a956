use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Process;

/// How a child process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StartMethod {
    /// `fork()` this process: the child starts as a copy of the parent and may run a
    /// capturing closure. Refused while other threads exist, unless allowed with
    /// [`Process::allow_threads`].
    Fork,
    /// A fresh exec of this executable (`posix_spawn` of `/proc/self/exe`) per child: nothing
    /// is inherited but the arguments.
    Spawn,
    /// A child forked by a small single-threaded server process (a fresh exec of this
    /// executable, started on first use): fork speed, nothing inherited. The default.
    #[default]
    ForkServer,
}

impl StartMethod {
    /// The method's name as CPython spells it: `fork`, `spawn`, `forkserver`.
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }

    /// All methods, in CPython's order.
    pub fn all() -> [StartMethod; 3] {
        [StartMethod::Fork, StartMethod::Spawn, StartMethod::ForkServer]
    }

    fn to_u8(self) -> u8 {
        match self {
            StartMethod::Fork => 1,
            StartMethod::Spawn => 2,
            StartMethod::ForkServer => 3,
        }
    }

    fn from_u8(value: u8) -> StartMethod {
        match value {
            1 => StartMethod::Fork,
            2 => StartMethod::Spawn,
            _ => StartMethod::ForkServer,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of parsing an unknown start method name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStartMethod(String);

impl fmt::Display for UnknownStartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown start method {:?} (expected fork, spawn or forkserver)", self.0)
    }
}

impl std::error::Error for UnknownStartMethod {}

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> Result<StartMethod, UnknownStartMethod> {
        StartMethod::all().into_iter().find(|m| m.name() == s).ok_or_else(|| UnknownStartMethod(s.to_owned()))
    }
}

static DEFAULT_METHOD: AtomicU8 = AtomicU8::new(0);

/// The start method used by processes that do not choose one.
///
/// ```
/// use multiproc_process::{StartMethod, get_start_method};
/// assert_eq!(get_start_method(), StartMethod::ForkServer);
/// ```
pub fn get_start_method() -> StartMethod {
    match DEFAULT_METHOD.load(Ordering::Relaxed) {
        0 => StartMethod::default(),
        v => StartMethod::from_u8(v),
    }
}

/// Sets the start method used by processes that do not choose one. Unlike CPython, it may be
/// called more than once; it affects processes started afterwards.
pub fn set_start_method(method: StartMethod) {
    DEFAULT_METHOD.store(method.to_u8(), Ordering::Relaxed);
}

/// A start method to make processes with (CPython's `get_context`).
///
/// ```no_run
/// use multiproc_process::{StartMethod, get_context};
///
/// let ctx = get_context(StartMethod::Spawn);
/// let mut p = ctx.process(|x: u32| x + 1, 41);
/// p.start()?;
/// assert_eq!(p.result()?, 42);
/// # Ok::<(), multiproc_process::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// A context for `method`.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// The context's start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that will run `target(args)` with this context's start method.
    pub fn process<F, A, R>(&self, target: F, args: A) -> Process<R>
    where
        F: Fn(A) -> R + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + 'static,
    {
        let mut p = Process::new(target, args);
        p.set_start_method(self.method);
        p
    }
}
