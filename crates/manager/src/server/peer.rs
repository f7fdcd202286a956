//! A session's client as the objects see it: whether it is still there, and the writing of its
//! replies.
//!
//! A call that takes something for its caller (a queue item, a semaphore unit, a lock, a
//! condition's notification) commits only once its reply is written. Before it takes, a waiting
//! call asks [`Peer::gone`], which looks at the socket itself (a hang-up is seen there as soon
//! as the client's process has died, while the session's thread may not have read the end of
//! the stream yet); after it took, the session writes the reply and runs the call's undo when
//! the client has gone meanwhile or the write fails.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use multiproc_wire::sys as wsys;

use crate::client::lock;
use crate::transport;

/// The client end of a session.
pub(crate) struct Peer {
    socket: OwnedFd,
    /// Held while a reply is written, so that frames do not interleave.
    writing: Mutex<()>,
    /// False once the session has ended.
    alive: AtomicBool,
}

impl Peer {
    pub(crate) fn new(socket: OwnedFd) -> Peer {
        Peer { socket, writing: Mutex::new(()), alive: AtomicBool::new(true) }
    }

    pub(crate) fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Writes one frame; `false` when it could not be written (the client has gone).
    pub(crate) fn send(&self, frame: &[u8]) -> bool {
        let _writing = lock(&self.writing);
        transport::send(self.socket.as_fd(), &[frame]).is_ok()
    }

    /// Marks the session ended: waiting calls give up.
    pub(crate) fn end(&self) {
        self.alive.store(false, Ordering::Release);
    }

    /// Whether the client has gone: its session ended, or its socket reports a hang-up or an
    /// error (looked at without waiting). A client never shuts down its writing half while it
    /// waits for replies, so a read hang-up means its process has closed the connection. When
    /// the socket cannot be looked at, the write of the reply tells.
    pub(crate) fn gone(&self) -> bool {
        !self.alive.load(Ordering::Acquire) || hung_up(self.socket.as_fd()).unwrap_or(false)
    }
}

/// Whether the peer of socket `fd` has closed its end (either half) or the socket is in error.
fn hung_up(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 }];
    wsys::poll(&mut pfd, Some(Instant::now()))?;
    Ok(pfd[0].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
}
