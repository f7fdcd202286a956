use std::fmt;
use std::io;

/// What went wrong, as returned by [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The operating system refused an operation (see [`std::error::Error::source`]).
    Io,
    /// The process has not been started yet.
    NotStarted,
    /// `start` was called on a process that was already started.
    AlreadyStarted,
    /// The start method cannot run this target, or forking was refused because other threads
    /// exist.
    Refused,
    /// The arguments or the result could not be encoded or decoded.
    Codec,
    /// The child could not run its target: the executable or the function did not match, or
    /// the arguments it received were not valid.
    Bootstrap,
    /// The target panicked in the child.
    Panicked,
    /// The child exited with a non-zero code without producing a result.
    Exited,
    /// The child was killed by a signal.
    Signaled,
    /// The result was already taken by an earlier call.
    ResultTaken,
    /// The forkserver failed or went away.
    ForkServer,
}

/// An error from starting, running, or collecting a process.
///
/// Match on [`kind`](Error::kind); the predicates give the details of each kind.
pub struct Error {
    kind: ErrorKind,
    message: String,
    location: Option<String>,
    code: Option<i32>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), location: None, code: None, source: None }
    }

    pub(crate) fn io(context: &str, err: io::Error) -> Error {
        Error { source: Some(Box::new(err)), ..Error::new(ErrorKind::Io, context) }
    }

    pub(crate) fn codec(context: &str, err: multiproc_wire::Error) -> Error {
        Error { source: Some(Box::new(err)), ..Error::new(ErrorKind::Codec, context) }
    }

    pub(crate) fn panicked(message: String, location: Option<String>) -> Error {
        Error { location, code: Some(1), ..Error::new(ErrorKind::Panicked, message) }
    }

    pub(crate) fn from_exit_code(code: i32) -> Error {
        if code < 0 {
            Error { code: Some(code), ..Error::new(ErrorKind::Signaled, signal_name(-code)) }
        } else {
            Error { code: Some(code), ..Error::new(ErrorKind::Exited, format!("exit code {code}")) }
        }
    }

    pub(crate) fn with_code(mut self, code: Option<i32>) -> Error {
        self.code = code;
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The child's exit code, in Python's convention (`-N` for signal N), when the error comes
    /// from a finished child.
    pub fn exit_code(&self) -> Option<i32> {
        self.code
    }

    /// The signal that killed the child, for [`ErrorKind::Signaled`].
    pub fn signal(&self) -> Option<i32> {
        match (self.kind, self.code) {
            (ErrorKind::Signaled, Some(code)) => Some(-code),
            _ => None,
        }
    }

    /// The panic message, for [`ErrorKind::Panicked`].
    pub fn panic_message(&self) -> Option<&str> {
        (self.kind == ErrorKind::Panicked).then_some(self.message.as_str())
    }

    /// Where the child panicked (`file:line:column`), for [`ErrorKind::Panicked`].
    pub fn panic_location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// Whether this is [`ErrorKind::Refused`].
    pub fn is_refused(&self) -> bool {
        self.kind == ErrorKind::Refused
    }
}

/// `SIGKILL`-style name of a signal number, or `signal N`.
pub(crate) fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("killed by signal {signal}"),
    };
    format!("killed by {name}")
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(location) = &self.location {
            d.field("location", location);
        }
        if let Some(code) = self.code {
            d.field("exit_code", &code);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Panicked => {
                write!(f, "child process panicked: {}", self.message)?;
                if let Some(location) = &self.location {
                    write!(f, " at {location}")?;
                }
                Ok(())
            }
            ErrorKind::Exited | ErrorKind::Signaled => {
                write!(f, "child process ended without a result: {}", self.message)
            }
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
