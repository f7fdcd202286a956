use std::fmt;

/// What went wrong, as returned by [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The task panicked in its worker (the worker goes on with other tasks), or the input
    /// iterator of a `map` or `imap` panicked (see [`Error::panicked_in`]).
    Panicked,
    /// The worker running the task died (killed, aborted, exited); a new worker took its place.
    WorkerLost,
    /// The pool's initializer failed in a worker; the pool cannot run tasks.
    Initializer,
    /// The pool was closed or terminated before the task could run.
    Closed,
    /// A time limit passed before the result was ready; it may still come.
    Timeout,
    /// The result was already taken from this handle.
    ResultTaken,
    /// Arguments or results could not be encoded or decoded, or the worker could not run the
    /// function.
    Codec,
    /// Starting a worker or talking to it failed.
    Io,
    /// A setting is out of range: zero processes, or `maxtasksperchild` zero (CPython's
    /// `ValueError`).
    InvalidArgument,
}

/// An error from a [`Pool`](crate::Pool) or one of its tasks.
///
/// Cloneable: the same error can be given to several waiters.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    location: Option<String>,
    exit_code: Option<i32>,
    /// What panicked, for [`ErrorKind::Panicked`], when it was not the task.
    origin: Option<&'static str>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), location: None, exit_code: None, origin: None }
    }

    pub(crate) fn panicked(panic: multiproc_process::call::Panic) -> Error {
        Error { location: panic.location, ..Error::new(ErrorKind::Panicked, panic.message) }
    }

    /// A panic of user code run by the pool outside a task (`origin`: "the input iterator").
    pub(crate) fn panicked_outside_task(
        origin: &'static str,
        panic: multiproc_process::call::Panic,
    ) -> Error {
        Error { origin: Some(origin), ..Error::panicked(panic) }
    }

    /// A panic of user code that decodes a result (`Deserialize`) or frees one (`Drop`), on
    /// the pool's thread: a codec error of that task alone.
    pub(crate) fn result_panicked(panic: multiproc_process::call::Panic) -> Error {
        Error::new(ErrorKind::Codec, format!("cannot decode the result: panicked: {panic}"))
    }

    pub(crate) fn worker_lost(exit_code: Option<i32>) -> Error {
        let how = describe_exit(exit_code);
        Error {
            exit_code,
            ..Error::new(ErrorKind::WorkerLost, format!("the worker running the task died ({how})"))
        }
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The panic message for [`ErrorKind::Panicked`], the text of the error otherwise.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where the task panicked (`file:line:column`), for [`ErrorKind::Panicked`].
    pub fn panic_location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// The dead worker's exit code for [`ErrorKind::WorkerLost`] (`-N` for signal `N`).
    pub fn exit_code(&self) -> Option<i32> {
        self.exit_code
    }

    /// The signal that killed the worker, for [`ErrorKind::WorkerLost`].
    pub fn signal(&self) -> Option<i32> {
        self.exit_code.filter(|&c| c < 0).map(|c| -c)
    }

    /// What panicked, for [`ErrorKind::Panicked`]: `None` for the task itself, or
    /// `Some("the input iterator")` for the iterator given to `map` or `imap`.
    pub fn panicked_in(&self) -> Option<&'static str> {
        self.origin
    }

    /// Whether this is [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(location) = &self.location {
            d.field("location", location);
        }
        if let Some(code) = self.exit_code {
            d.field("exit_code", &code);
        }
        if let Some(origin) = self.origin {
            d.field("origin", &origin);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Panicked => {
                write!(f, "{} panicked: {}", self.origin.unwrap_or("task"), self.message)?;
                if let Some(location) = &self.location {
                    write!(f, " at {location}")?;
                }
                Ok(())
            }
            ErrorKind::Initializer => write!(f, "pool initializer failed: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// How a process ended, for error messages: `killed by signal 9`, `exit code 3`.
pub(crate) fn describe_exit(exit_code: Option<i32>) -> String {
    match exit_code {
        Some(code) if code < 0 => format!("killed by signal {}", -code),
        Some(code) => format!("exit code {code}"),
        None => "exit status unknown".into(),
    }
}

/// A shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
