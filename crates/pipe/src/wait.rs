use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use multiproc_wire::sys as wsys;

use crate::Connection;
use crate::connection::RECHECK;

/// Something [`wait`] can wait on: a [`Connection`], or any descriptor (a process's
/// sentinel, a socket).
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready; `None` when it can
    /// never become ready (a closed connection).
    fn wait_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Whether the object is ready without looking at its descriptor (received bytes waiting
    /// in a connection's buffer).
    fn ready_now(&self) -> bool {
        false
    }

    /// Called when the descriptor polled readable: whether the object is really ready. A
    /// connection made by [`pipe`](crate::pipe) reads its wake-up signals here and answers
    /// from its shared memory.
    fn confirm(&self) -> bool {
        true
    }
}

impl Waitable for Connection {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fileno()
    }

    fn ready_now(&self) -> bool {
        // A ring connection with nothing to read is armed here: the peer's next message rings.
        self.has_buffered() || self.ring_ready().unwrap_or(true)
    }

    fn confirm(&self) -> bool {
        self.confirm_ready()
    }
}

impl<T: AsFd> Waitable for T {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.as_fd())
    }
}

/// Waits until at least one of `objects` is ready, or `timeout` passes (`None`: no limit);
/// returns the indexes of the ready ones, empty on timeout (CPython's
/// `multiprocessing.connection.wait`).
///
/// A connection is ready when a message or end of stream can be received; a process
/// sentinel when the process has exited.
///
/// # Errors
/// The operating system's error.
///
/// ```
/// use std::time::{Duration, Instant};
/// use multiproc_pipe::{pipe, wait};
///
/// let (mut a, b) = pipe(true)?;
/// let (c, mut d) = pipe(true)?;
/// d.send(&1)?;
/// let ready = wait(&[&b, &c], Some(Duration::from_secs(1)))?;
/// assert_eq!(ready, [1]);
/// # drop(a.send(&0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let deadline = timeout.and_then(wsys::deadline_after);
    loop {
        let now: Vec<bool> = objects.iter().map(|object| object.ready_now()).collect();
        let mut indexes = Vec::with_capacity(objects.len());
        let mut pfds = Vec::with_capacity(objects.len());
        for (i, object) in objects.iter().enumerate() {
            if let Some(fd) = object.wait_fd().filter(|_| !now[i]) {
                indexes.push(i);
                pfds.push(wsys::pollfd_in(fd));
            }
        }
        // With something ready, only look at the others; else sleep, at most RECHECK at a
        // time: a wake-up signal of a connection can be taken by another handle on its end.
        let sleep = if now.contains(&true) {
            Some(Instant::now())
        } else {
            let soon = Instant::now() + RECHECK;
            Some(deadline.map_or(soon, |d| d.min(soon)))
        };
        wsys::poll(&mut pfds, sleep)?;
        let mut ready = now;
        for (pfd, i) in pfds.iter().zip(indexes) {
            ready[i] = pfd.revents != 0 && objects[i].confirm();
        }
        if ready.contains(&true) {
            return Ok((0..objects.len()).filter(|&i| ready[i]).collect());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Vec::new());
        }
    }
}
