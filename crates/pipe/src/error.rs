use std::fmt;
use std::io;

/// An error from a [`Connection`](crate::Connection), [`Listener`](crate::Listener) or
/// [`Client`](crate::Client).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// This handle was closed with [`close`](crate::Connection::close).
    Closed,
    /// The operation needs the other direction: receiving on a write-only end, or sending on a
    /// read-only one.
    WrongDirection(&'static str),
    /// The peer has gone: end of stream between messages, or a write to a closed peer.
    Disconnected,
    /// The peer went away in the middle of a message; the part received is discarded. Also
    /// reported on both ends of a [`pipe`](crate::pipe) when one of several senders sharing an
    /// end died with a message half sent: the stream cannot be framed after it.
    Truncated,
    /// An incoming message is larger than this connection's limit; nothing was allocated for it
    /// and it is skipped, so the connection stays usable.
    TooLarge {
        /// The length the message announced.
        len: u64,
        /// This connection's limit.
        max: u64,
    },
    /// The buffer given to [`recv_bytes_into`](crate::Connection::recv_bytes_into) is too
    /// short; this carries the whole message (CPython's `BufferTooShort`).
    BufferTooShort(Vec<u8>),
    /// The deadline passed before a whole message arrived; nothing was consumed from the
    /// stream that a later call cannot read (a partially received message stays buffered).
    Timeout,
    /// The value could not be encoded; nothing was sent.
    Encode(String),
    /// The message is not a valid encoding of the expected type; it is consumed.
    Decode(String),
    /// The peer failed the authkey handshake, or refused ours.
    Auth(String),
    /// Any other operating-system error.
    Io(io::Error),
}

impl Error {
    /// Whether this is [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// Whether the peer has gone ([`Error::Disconnected`] or [`Error::Truncated`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected | Error::Truncated)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Closed => f.write_str("connection is closed"),
            Error::WrongDirection(what) => write!(f, "connection is {what}"),
            Error::Disconnected => f.write_str("peer disconnected"),
            Error::Truncated => f.write_str("peer disconnected in the middle of a message"),
            Error::TooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::BufferTooShort(msg) => {
                write!(f, "buffer too short for a message of {} bytes", msg.len())
            }
            Error::Timeout => f.write_str("timed out"),
            Error::Encode(msg) => write!(f, "cannot encode value: {msg}"),
            Error::Decode(msg) => write!(f, "cannot decode message: {msg}"),
            Error::Auth(msg) => write!(f, "authentication failed: {msg}"),
            Error::Io(_) => f.write_str("i/o error"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(err) => Some(err),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                Error::Disconnected
            }
            io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(err),
        }
    }
}

impl From<multiproc_wire::Error> for Error {
    fn from(err: multiproc_wire::Error) -> Error {
        use multiproc_wire::Error as W;
        match err {
            W::Encode(msg) => Error::Encode(msg),
            W::Decode(msg) => Error::Decode(msg),
            W::FrameTooLarge { len, max } => Error::TooLarge { len, max },
            W::Disconnected => Error::Disconnected,
            W::Truncated => Error::Truncated,
            W::Timeout => Error::Timeout,
            W::Io(err) => Error::from(err),
            other => Error::Io(io::Error::other(other)),
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        match err {
            Error::Io(err) => err,
            Error::Disconnected => io::Error::new(io::ErrorKind::BrokenPipe, err),
            Error::Truncated => io::Error::new(io::ErrorKind::UnexpectedEof, err),
            Error::Timeout => io::Error::new(io::ErrorKind::TimedOut, err),
            Error::Auth(_) => io::Error::new(io::ErrorKind::PermissionDenied, err),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// A shorthand for this crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
