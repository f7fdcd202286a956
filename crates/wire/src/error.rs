use std::fmt;
use std::io;

/// An error from encoding, decoding, or moving frames.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The value could not be encoded.
    Encode(String),
    /// The bytes received are not a valid encoding of the expected type.
    Decode(String),
    /// A frame announced a length above the receiver's limit; nothing was allocated for it.
    FrameTooLarge {
        /// The length the frame announced.
        len: u64,
        /// The receiver's limit.
        max: u64,
    },
    /// The peer closed the connection cleanly, between frames.
    Disconnected,
    /// The peer closed the connection in the middle of a frame.
    Truncated,
    /// A deadline passed before the operation completed.
    Timeout,
    /// Any other operating-system error.
    Io(io::Error),
}

impl Error {
    /// Maps a peer-gone errno (`EPIPE`, `ECONNRESET`) to [`Error::Disconnected`].
    pub fn from_io(err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => Error::Disconnected,
            io::ErrorKind::TimedOut => Error::Timeout,
            _ => Error::Io(err),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Encode(msg) => write!(f, "cannot encode value: {msg}"),
            Error::Decode(msg) => write!(f, "cannot decode message: {msg}"),
            Error::FrameTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the limit of {max} bytes")
            }
            Error::Disconnected => f.write_str("peer disconnected"),
            Error::Truncated => f.write_str("peer disconnected in the middle of a message"),
            Error::Timeout => f.write_str("timed out"),
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
        Error::from_io(err)
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        match err {
            Error::Io(err) => err,
            Error::Disconnected => io::Error::new(io::ErrorKind::BrokenPipe, err),
            Error::Truncated => io::Error::new(io::ErrorKind::UnexpectedEof, err),
            Error::Timeout => io::Error::new(io::ErrorKind::TimedOut, err),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
