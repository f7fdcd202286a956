//! Frames between a manager's clients and its server, after the authkey handshake.
//!
//! The frame format is CPython's, as `multiproc_pipe::Connection` writes it (4-byte big-endian
//! length, `-1` and an 8-byte length above 2 GiB), but the request/reply path reads frames
//! itself: a blocked read spins by retrying the non-blocking `read` (one system call that both
//! notices and takes the data, where `poll` + `read` costs two), yielding the processor between
//! tries so that a spinner never keeps the thread it waits for off a shared core; then it sleeps
//! in `poll`. A round trip is what a manager call costs, and this is most of it.
//!
//! Only safe wrappers of `multiproc_wire::sys` and `multiproc_wire::frame` are used.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use multiproc_wire::spin::{DEFAULT_WATCH, Spin};
use multiproc_wire::{frame, sys as wsys};

/// How much is read in one system call.
const READ_AHEAD: usize = 64 << 10;

/// Why no frame was read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// End of stream (or a reset): the peer has gone.
    Disconnected,
    /// The deadline passed; a partly received frame stays buffered.
    Timeout,
    /// A frame longer than the limit: skipped as it arrives, the stream stays usable.
    TooLarge { len: u64, max: u64 },
    /// A length that no frame can have: the stream cannot be read further.
    Malformed,
    /// Any other operating-system error.
    Io(io::Error),
}

/// Reads whole frames from a connected, non-blocking stream socket.
pub(crate) struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: u64,
    /// Bytes of an oversized frame still to discard.
    skip: u64,
    /// How long a blocked read spins before it sleeps.
    spin: Spin,
}

impl Reader {
    pub(crate) fn new(max: u64) -> Reader {
        Reader { buf: vec![0; READ_AHEAD], start: 0, end: 0, max, skip: 0, spin: Spin::new(DEFAULT_WATCH) }
    }

    /// The next frame's payload, valid until the next call.
    pub(crate) fn next(&mut self, fd: BorrowedFd<'_>, deadline: Option<Instant>) -> Result<&[u8], ReadError> {
        while self.skip > 0 {
            if self.start == self.end {
                self.fill(fd, 1, deadline)?;
            }
            let n = (self.end - self.start).min(usize::try_from(self.skip).unwrap_or(usize::MAX));
            self.start += n;
            self.skip -= n as u64;
        }
        self.fill(fd, 4, deadline)?;
        let short = i32::from_be_bytes(self.buf[self.start..self.start + 4].try_into().expect("4 bytes"));
        let (head, len) = match short {
            -1 => {
                self.fill(fd, 12, deadline)?;
                (
                    12,
                    u64::from_be_bytes(
                        self.buf[self.start + 4..self.start + 12].try_into().expect("8 bytes"),
                    ),
                )
            }
            n if n < 0 => return Err(ReadError::Malformed),
            n => (4, n as u64),
        };
        if len > self.max {
            self.start += head;
            self.skip = len;
            return Err(ReadError::TooLarge { len, max: self.max });
        }
        let len = len as usize;
        self.fill(fd, head + len, deadline)?;
        let begin = self.start + head;
        self.start = begin + len;
        Ok(&self.buf[begin..begin + len])
    }

    /// Makes at least `want` bytes available at `buf[start..]`.
    fn fill(&mut self, fd: BorrowedFd<'_>, want: usize, deadline: Option<Instant>) -> Result<(), ReadError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > 4 * READ_AHEAD && want <= READ_AHEAD {
                // A large frame is gone: give its memory back.
                self.buf = vec![0; READ_AHEAD];
            }
        }
        let mut spin_until: Option<Instant> = None;
        while self.end - self.start < want {
            if self.start + want > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < want {
                    self.buf.resize(want.max(READ_AHEAD), 0);
                }
            }
            match wsys::read(fd, &mut self.buf[self.end..]) {
                Ok(0) => return Err(ReadError::Disconnected),
                Ok(n) => self.end += n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    let now = Instant::now();
                    let until = *spin_until.get_or_insert(now + self.spin.budget());
                    if deadline.is_some_and(|d| now >= d) {
                        return Err(ReadError::Timeout);
                    }
                    if now < until {
                        std::thread::yield_now();
                        continue;
                    }
                    let slept = Instant::now();
                    if !wsys::wait_readable(fd, deadline).map_err(ReadError::Io)? {
                        return Err(ReadError::Timeout);
                    }
                    self.spin.slept(slept.elapsed());
                }
                Err(err)
                    if matches!(err.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe) =>
                {
                    return Err(ReadError::Disconnected);
                }
                Err(err) => return Err(ReadError::Io(err)),
            }
        }
        Ok(())
    }
}

/// Sends one frame holding `parts` on a non-blocking stream socket, waiting for room.
///
/// # Errors
/// `Disconnected` when the peer has gone.
pub(crate) fn send(fd: BorrowedFd<'_>, parts: &[&[u8]]) -> Result<(), multiproc_wire::Error> {
    frame::send(fd, parts, &[], None)
}

/// A duplicate of a connection's socket, for this module's reads and writes (the connection
/// itself can then be dropped).
pub(crate) fn take_socket(conn: &multiproc_pipe::Connection) -> io::Result<OwnedFd> {
    conn.fileno().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?.try_clone_to_owned()
}

/// A connected pair of non-blocking Unix stream sockets.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = wsys::socketpair()?;
    wsys::set_nonblocking(a.as_fd(), true)?;
    wsys::set_nonblocking(b.as_fd(), true)?;
    Ok((a, b))
}
