//! CPython's frame format over a stream socket, with descriptors riding on the first byte.
//!
//! A frame is a 4-byte big-endian signed length followed by that many bytes; a payload longer
//! than `i32::MAX` bytes is announced by a length of `-1` followed by an 8-byte big-endian
//! length. This is the format of `multiprocessing.connection`, so a CPython peer reads and
//! writes the same frames with `send_bytes` / `recv_bytes`.

use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use crate::{Error, sys};

/// The default limit on an incoming frame: 256 MiB.
pub const DEFAULT_MAX_LEN: u64 = 256 << 20;

/// The header for a payload of `len` bytes: its bytes and how many of them to send.
pub fn header(len: usize) -> ([u8; 12], usize) {
    let mut out = [0u8; 12];
    match i32::try_from(len) {
        Ok(small) => {
            out[..4].copy_from_slice(&small.to_be_bytes());
            (out, 4)
        }
        Err(_) => {
            out[..4].copy_from_slice(&(-1i32).to_be_bytes());
            out[4..].copy_from_slice(&(len as u64).to_be_bytes());
            (out, 12)
        }
    }
}

/// Sends one frame holding `parts` concatenated, with `fds` attached to its first byte.
///
/// Blocks until all of it is in the socket (the socket must be in blocking mode, or `deadline`
/// set, in which case a full socket is waited on with `poll`).
///
/// # Errors
/// [`Error::Disconnected`] when the peer has gone, [`Error::Timeout`] past the deadline, or the
/// operating system's error.
pub fn send(
    sock: BorrowedFd<'_>,
    parts: &[&[u8]],
    fds: &[RawFd],
    deadline: Option<Instant>,
) -> Result<(), Error> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let (head, head_len) = header(len);
    let mut slices = Vec::with_capacity(parts.len() + 1);
    slices.push(&head[..head_len]);
    slices.extend(parts.iter().copied().filter(|p| !p.is_empty()));
    send_all(sock, &slices, fds, deadline)
}

/// Sends every byte of `slices` on a socket, with `fds` attached to the first byte.
///
/// # Errors
/// As [`send`].
pub fn send_all(
    sock: BorrowedFd<'_>,
    slices: &[&[u8]],
    fds: &[RawFd],
    deadline: Option<Instant>,
) -> Result<(), Error> {
    write_loop(sock, slices, fds, deadline, |iov, fds| sys::send_with_fds_nonblocking(sock, iov, fds))
}

/// Writes every byte of `slices` to a non-blocking descriptor that is not a socket (a pipe).
///
/// # Errors
/// As [`send`].
pub fn write_all(fd: BorrowedFd<'_>, slices: &[&[u8]], deadline: Option<Instant>) -> Result<(), Error> {
    write_loop(fd, slices, &[], deadline, |iov, _| sys::writev(fd, iov))
}

/// Offers `slices` to `write` (which takes iovecs and descriptors and returns how many bytes
/// it took, or `WouldBlock`) until all are taken; descriptors go with the first call that
/// takes anything.
fn write_loop(
    fd: BorrowedFd<'_>,
    slices: &[&[u8]],
    mut fds: &[RawFd],
    deadline: Option<Instant>,
    mut write: impl FnMut(&[IoSlice<'_>], &[RawFd]) -> io::Result<usize>,
) -> Result<(), Error> {
    let mut index = 0;
    let mut offset = 0;
    while index < slices.len() && slices[index].len() == offset {
        index += 1;
    }
    while index < slices.len() {
        let mut iov = [IoSlice::new(&[]); 8];
        let mut count = 0;
        for (slot, slice) in iov
            .iter_mut()
            .zip(std::iter::once(&slices[index][offset..]).chain(slices[index + 1..].iter().copied()))
        {
            *slot = IoSlice::new(slice);
            count += 1;
        }
        let sent = match write(&iov[..count], fds) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !sys::wait_writable(fd, deadline)? {
                    return Err(Error::Timeout);
                }
                continue;
            }
            Err(err) => return Err(Error::from_io(err)),
        };
        fds = &[];
        let mut left = sent;
        while left > 0 {
            let here = slices[index].len() - offset;
            if left >= here {
                left -= here;
                index += 1;
                offset = 0;
            } else {
                offset += left;
                left = 0;
            }
        }
        while index < slices.len() && slices[index].len() == offset {
            index += 1;
            offset = 0;
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, collecting descriptors into `fds`.
///
/// `at_boundary` says whether end of stream before the first byte is a clean
/// [`Error::Disconnected`] (between frames) or [`Error::Truncated`].
///
/// # Errors
/// [`Error::Disconnected`], [`Error::Truncated`], [`Error::Timeout`], or the operating
/// system's error.
pub fn recv_exact(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    deadline: Option<Instant>,
    at_boundary: bool,
) -> Result<(), Error> {
    let mut filled = 0;
    while filled < buf.len() {
        match sys::recv_with_fds(sock, &mut buf[filled..], fds, true) {
            Ok(0) if filled == 0 && at_boundary => return Err(Error::Disconnected),
            Ok(0) => return Err(Error::Truncated),
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if !sys::wait_readable(sock, deadline)? {
                    return Err(Error::Timeout);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return Err(if filled == 0 && at_boundary { Error::Disconnected } else { Error::Truncated });
            }
            Err(err) => return Err(Error::from_io(err)),
        }
    }
    Ok(())
}

/// Reads a frame header and returns the payload length, refusing lengths above `max`.
///
/// # Errors
/// As [`recv_exact`], and [`Error::FrameTooLarge`] (the payload is left unread) or
/// [`Error::Decode`] for a negative length other than `-1`.
pub fn recv_header(
    sock: BorrowedFd<'_>,
    fds: &mut Vec<OwnedFd>,
    max: u64,
    deadline: Option<Instant>,
) -> Result<usize, Error> {
    let mut head = [0u8; 4];
    recv_exact(sock, &mut head, fds, deadline, true)?;
    let len = match i32::from_be_bytes(head) {
        -1 => {
            let mut long = [0u8; 8];
            recv_exact(sock, &mut long, fds, deadline, false)?;
            u64::from_be_bytes(long)
        }
        n if n < 0 => return Err(Error::Decode(format!("invalid frame length {n}"))),
        n => n as u64,
    };
    if len > max {
        return Err(Error::FrameTooLarge { len, max });
    }
    usize::try_from(len).map_err(|_| Error::FrameTooLarge { len, max })
}

/// Receives one frame: its payload and the descriptors that came with it.
///
/// # Errors
/// As [`recv_header`] and [`recv_exact`].
pub fn recv(
    sock: BorrowedFd<'_>,
    max: u64,
    deadline: Option<Instant>,
) -> Result<(Vec<u8>, Vec<OwnedFd>), Error> {
    let mut fds = Vec::new();
    let len = recv_header(sock, &mut fds, max, deadline)?;
    let mut payload = vec![0u8; len];
    recv_exact(sock, &mut payload, &mut fds, deadline, false)?;
    Ok((payload, fds))
}
