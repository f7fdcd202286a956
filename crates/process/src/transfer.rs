//! Frames between a parent and one child on their private socket: the start message one way,
//! the outcome the other. Payloads above [`INLINE_MAX`] travel in a memfd, so neither side
//! ever blocks on a full socket buffer: the peer may not be reading yet (a child still
//! starting) or may never read (a parent that does not collect results).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Instant;

use multiproc_wire::{Error as WireError, frame, sys as wsys};
use serde::Serialize;

/// The largest payload sent inline.
const INLINE_MAX: usize = 64 << 10;
/// Set in the tag byte when the payload is in a memfd (the last descriptor).
const IN_MEMFD: u8 = 0x80;
/// The largest payload accepted in a memfd.
const MEMFD_MAX: u64 = 1 << 40;

/// The start message (parent to child).
pub(crate) const TAG_START: u8 = 1;
/// The target's result (child to parent).
pub(crate) const TAG_VALUE: u8 = 2;
/// The target panicked: (message, location).
pub(crate) const TAG_PANIC: u8 = 3;
/// The child could not run the target: a message.
pub(crate) const TAG_FAILED: u8 = 4;
/// The target returned a value that cannot be encoded: a message.
pub(crate) const TAG_UNENCODABLE: u8 = 5;

/// Sends `payload` with `fds` as one frame tagged `tag`.
pub(crate) fn send(sock: BorrowedFd<'_>, tag: u8, payload: &[u8], fds: &[RawFd]) -> Result<(), WireError> {
    if payload.len() <= INLINE_MAX {
        return frame::send(sock, &[&[tag], payload], fds, None);
    }
    let memfd = wsys::memfd_create(c"multiproc-transfer")?;
    let mut written = 0;
    while written < payload.len() {
        written += wsys::pwrite(memfd.as_fd(), &payload[written..], written as u64)?;
    }
    let mut all = fds.to_vec();
    all.push(memfd.as_raw_fd());
    frame::send(sock, &[&[tag | IN_MEMFD]], &all, None)
}

/// Receives one frame sent by [`send`]: (tag, payload, descriptors).
pub(crate) fn recv(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> Result<(u8, Vec<u8>, Vec<OwnedFd>), WireError> {
    let (bytes, mut fds) = frame::recv(sock, INLINE_MAX as u64 + 1, deadline)?;
    let Some((&tag, payload)) = bytes.split_first() else {
        return Err(WireError::Decode("empty frame".into()));
    };
    if tag & IN_MEMFD == 0 {
        return Ok((tag, payload.to_vec(), fds));
    }
    let memfd = fds.pop().ok_or_else(|| WireError::Decode("missing payload descriptor".into()))?;
    let len = wsys::file_size(memfd.as_fd())?;
    if len > MEMFD_MAX {
        return Err(WireError::FrameTooLarge { len, max: MEMFD_MAX });
    }
    let mut payload = vec![0u8; len as usize];
    let mut read = 0;
    while read < payload.len() {
        match wsys::pread(memfd.as_fd(), &mut payload[read..], read as u64)? {
            0 => return Err(WireError::Truncated),
            n => read += n,
        }
    }
    Ok((tag & !IN_MEMFD, payload, fds))
}

/// Encodes and sends a result value.
pub(crate) fn send_value<R: Serialize>(sock: BorrowedFd<'_>, value: &R) -> Result<(), WireError> {
    let encoded = multiproc_wire::encode_typed(value)?;
    send(sock, TAG_VALUE, &encoded.bytes, &encoded.fds)
}

/// Sends a panic report.
pub(crate) fn send_panic(
    sock: BorrowedFd<'_>,
    message: &str,
    location: Option<&str>,
) -> Result<(), WireError> {
    let encoded = multiproc_wire::encode(&(message, location))?;
    send(sock, TAG_PANIC, &encoded.bytes, &[])
}

/// Sends a failure report: `tag` is [`TAG_FAILED`] or [`TAG_UNENCODABLE`].
pub(crate) fn send_failure(sock: BorrowedFd<'_>, tag: u8, message: &str) -> Result<(), WireError> {
    let encoded = multiproc_wire::encode(message)?;
    send(sock, tag, &encoded.bytes, &[])
}
