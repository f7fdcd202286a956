use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use multiproc_wire::sys as wsys;

use crate::Connection;

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
}

impl Waitable for Connection {
    fn wait_fd(&self) -> Option<BorrowedFd<'_>> {
        self.fileno()
    }

    fn ready_now(&self) -> bool {
        self.has_buffered()
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
/// use std::time::Duration;
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
    let ready: Vec<usize> = (0..objects.len()).filter(|&i| objects[i].ready_now()).collect();
    if !ready.is_empty() {
        return Ok(ready);
    }
    let mut indexes = Vec::with_capacity(objects.len());
    let mut pfds = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        if let Some(fd) = object.wait_fd() {
            indexes.push(i);
            pfds.push(wsys::pollfd_in(fd));
        }
    }
    let deadline = timeout.and_then(wsys::deadline_after);
    if wsys::poll(&mut pfds, deadline)? == 0 {
        return Ok(Vec::new());
    }
    Ok(pfds.iter().zip(indexes).filter(|(p, _)| p.revents != 0).map(|(_, i)| i).collect())
}
