use std::fmt;
use std::io;

/// What went wrong, as returned by [`Error::kind`].
///
/// The kinds from [`MissingKey`](ErrorKind::MissingKey) to [`Panicked`](ErrorKind::Panicked)
/// are raised by the object in the server (CPython's exception in brackets) and come back to
/// the caller as they are: the server and the connection go on. The others are about reaching
/// the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A dict has no such key (`KeyError`).
    MissingKey,
    /// A namespace has no such attribute (`AttributeError`).
    MissingAttribute,
    /// An index past the end of a list or array (`IndexError`).
    IndexOutOfRange,
    /// A value the operation cannot take: not in the list, a wrong length, `task_done` or a
    /// bounded semaphore's `release` called too often (`ValueError`).
    InvalidValue,
    /// The object is not in a state that allows the operation: releasing a lock this caller
    /// does not hold, waiting on a condition without its lock (`RuntimeError`).
    InvalidState,
    /// A barrier was broken: aborted, reset, or a waiter timed out or went away
    /// (`BrokenBarrierError`).
    BrokenBarrier,
    /// A queue had no item to take without waiting (`queue.Empty`).
    Empty,
    /// A bounded queue had no room without waiting (`queue.Full`).
    Full,
    /// The lock was acquired, but its previous owner's process went away while holding it:
    /// what it protects may be half-updated. The caller holds the lock now.
    OwnerDied,
    /// A registered type's method or callable reported an error.
    User,
    /// A registered type's method, constructor or callable panicked in the server; the server
    /// goes on.
    Panicked,
    /// No object with this id exists in the server (it was never made, or every proxy of it
    /// has gone).
    UnknownObject,
    /// The object has no method of this name.
    UnknownMethod,
    /// No type or callable of this name is registered with the server.
    UnknownType,
    /// A proxy was asked to be a proxy of another type.
    WrongType,
    /// The server could not decode the request.
    BadRequest,
    /// A request or reply is larger than the limit of the side that would receive it.
    TooLarge,
    /// A value could not be encoded or decoded on this side.
    Codec,
    /// The authkey handshake failed: a wrong key on either side.
    Auth,
    /// The server has gone (it exited, was shut down, or the connection broke).
    Disconnected,
    /// A time limit passed.
    Timeout,
    /// The server process could not be started, or its setup failed.
    Start,
    /// The operating system refused an operation (see [`source`](std::error::Error::source)).
    Io,
    /// An error a newer server reported that this version does not know.
    Other,
}

impl ErrorKind {
    /// Every kind, in wire-code order: a kind's code is its index here.
    const ALL: [ErrorKind; 24] = [
        ErrorKind::MissingKey,
        ErrorKind::MissingAttribute,
        ErrorKind::IndexOutOfRange,
        ErrorKind::InvalidValue,
        ErrorKind::InvalidState,
        ErrorKind::BrokenBarrier,
        ErrorKind::Empty,
        ErrorKind::Full,
        ErrorKind::OwnerDied,
        ErrorKind::User,
        ErrorKind::Panicked,
        ErrorKind::UnknownObject,
        ErrorKind::UnknownMethod,
        ErrorKind::UnknownType,
        ErrorKind::WrongType,
        ErrorKind::BadRequest,
        ErrorKind::TooLarge,
        ErrorKind::Codec,
        ErrorKind::Auth,
        ErrorKind::Disconnected,
        ErrorKind::Timeout,
        ErrorKind::Start,
        ErrorKind::Io,
        ErrorKind::Other,
    ];

    /// The kind's number in replies.
    pub(crate) fn code(self) -> u16 {
        ErrorKind::ALL.iter().position(|&k| k == self).unwrap_or(ErrorKind::ALL.len() - 1) as u16
    }

    /// The kind numbered `code`; [`ErrorKind::Other`] for a number this version does not know.
    pub(crate) fn from_code(code: u16) -> ErrorKind {
        ErrorKind::ALL.get(usize::from(code)).copied().unwrap_or(ErrorKind::Other)
    }
}

/// An error from a [`Manager`](crate::Manager), a proxy, or a
/// [`ManagerServer`](crate::ManagerServer).
///
/// Match on [`kind`](Error::kind). Errors raised by an object in the server (a missing key, an
/// index out of range, an error of a registered type) carry the server's message; they never
/// end the connection. A registered type's methods make their errors with [`Error::new`] or
/// [`Error::user`].
///
/// ```
/// use multiproc_manager::{Error, ErrorKind};
///
/// let err = Error::user("no such account");
/// assert_eq!(err.kind(), ErrorKind::User);
/// assert_eq!(err.to_string(), "no such account");
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    /// An error of `kind` with `message` (lowercase, no trailing period, by convention).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    /// An error of kind [`ErrorKind::User`]: what a registered type's method returns for its
    /// own failures.
    pub fn user(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::User, message)
    }

    /// An [`ErrorKind::UnknownMethod`] error for `method`: what a registered type's
    /// [`call`](crate::Managed::call) returns for a name it does not know.
    pub fn unknown_method(type_id: &str, method: &str) -> Error {
        Error::new(ErrorKind::UnknownMethod, format!("'{type_id}' object has no method '{method}'"))
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error { kind, message: message.into(), source: Some(source.into()) }
    }

    pub(crate) fn disconnected() -> Error {
        Error::new(ErrorKind::Disconnected, "the manager's server has gone")
    }

    pub(crate) fn timeout() -> Error {
        Error::new(ErrorKind::Timeout, "timed out")
    }

    pub(crate) fn codec(context: &str, err: multiproc_wire::Error) -> Error {
        Error::with_source(ErrorKind::Codec, context, err)
    }

    pub(crate) fn bad_request(context: &str, err: multiproc_wire::Error) -> Error {
        Error::new(ErrorKind::BadRequest, format!("{context}: {err}"))
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the server has gone ([`ErrorKind::Disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        self.kind == ErrorKind::Disconnected
    }

    /// Whether a time limit passed ([`ErrorKind::Timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<multiproc_pipe::Error> for Error {
    fn from(err: multiproc_pipe::Error) -> Error {
        use multiproc_pipe::Error as P;
        match err {
            P::Disconnected | P::Truncated | P::Closed => Error::disconnected(),
            P::Timeout => Error::timeout(),
            P::TooLarge { len, max } => Error::new(
                ErrorKind::TooLarge,
                format!("message of {len} bytes exceeds the limit of {max} bytes"),
            ),
            P::Auth(_) => Error::with_source(ErrorKind::Auth, "authentication with the manager failed", err),
            P::Encode(_) | P::Decode(_) => {
                Error::with_source(ErrorKind::Codec, "cannot exchange a message", err)
            }
            P::Io(io) => Error::from(io),
            other => Error::with_source(ErrorKind::Io, "connection error", other),
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Error::disconnected()
            }
            io::ErrorKind::TimedOut => Error::timeout(),
            _ => Error::with_source(ErrorKind::Io, "i/o error", err),
        }
    }
}

impl From<multiproc_process::Error> for Error {
    fn from(err: multiproc_process::Error) -> Error {
        Error::with_source(ErrorKind::Start, "cannot start the manager's server process", err)
    }
}

/// A shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), kind);
        }
        assert_eq!(ErrorKind::from_code(999), ErrorKind::Other);
    }

    #[test]
    fn maps_peer_gone_to_disconnected() {
        assert!(Error::from(multiproc_pipe::Error::Truncated).is_disconnected());
        assert!(Error::from(io::Error::from(io::ErrorKind::BrokenPipe)).is_disconnected());
        let err = Error::from(multiproc_pipe::Error::Auth("digest received was wrong".into()));
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.to_string(), "authentication with the manager failed");
        assert!(std::error::Error::source(&err).is_some());
    }
}
