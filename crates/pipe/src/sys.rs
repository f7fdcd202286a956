//! The system calls of this crate that need `unsafe`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use multiproc_wire::sys::{cvt, cvt_retry};

/// A pipe, close-on-exec and non-blocking: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: pipe2 succeeded; both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows a pipe's buffer (`F_SETPIPE_SZ`); failure (a per-user limit) is harmless.
pub(crate) fn grow_pipe(fd: BorrowedFd<'_>, size: usize) {
    // SAFETY: F_SETPIPE_SZ only changes the capacity of the pipe behind a borrowed descriptor.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size as libc::c_int) };
}

/// Fills `buf` with random bytes from the kernel (`getrandom`).
pub(crate) fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is writable for its length.
        let n = cvt_retry(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) })?;
        filled += n as usize;
    }
    Ok(())
}

/// The socket type of `fd` (`SO_TYPE`) and its address family (`SO_DOMAIN`), or `None` when
/// it is not a socket.
pub(crate) fn socket_domain(fd: BorrowedFd<'_>) -> Option<i32> {
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` is writable for `len` bytes.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some(domain)
}

/// Runs `write` with `SIGPIPE` blocked in the calling thread and discards the `SIGPIPE` it
/// raised, if any: writing to a pipe whose reader has gone then fails with `EPIPE` whatever
/// the process does with `SIGPIPE` (sockets use `MSG_NOSIGNAL` instead; pipes have no such
/// flag). A `SIGPIPE` that was already pending before is left pending.
pub(crate) fn without_sigpipe<T, E>(write: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    let sigpipe = sigpipe_set();
    // SAFETY: sigset_t is plain old data, all-zero is an empty set; pthread_sigmask fills it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: both sets are valid; blocking a signal in this thread has no other effect. With
    // valid arguments pthread_sigmask cannot fail.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &sigpipe, &mut old) };
    // SAFETY: `old` was filled by pthread_sigmask.
    let was_blocked = unsafe { libc::sigismember(&old, libc::SIGPIPE) } == 1;
    // An unblocked SIGPIPE cannot be pending for this thread: it would have been delivered.
    let pending_before = was_blocked && sigpipe_pending();
    let result = write();
    if result.is_err() && !pending_before && sigpipe_pending() {
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: the set and timeout are valid; SIGPIPE is blocked, so this only takes the
        // pending signal off the queue.
        let _ = cvt_retry(|| unsafe { libc::sigtimedwait(&sigpipe, std::ptr::null_mut(), &zero) });
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}

/// The set holding only `SIGPIPE`.
fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data, initialised by sigemptyset; sigaddset with a valid
    // signal number cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

/// Whether a `SIGPIPE` is pending for this thread or the process.
fn sigpipe_pending() -> bool {
    // SAFETY: sigset_t is plain old data; sigpending fills it.
    let mut pending: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `pending` is writable.
    if unsafe { libc::sigpending(&mut pending) } != 0 {
        return false;
    }
    // SAFETY: `pending` was filled by sigpending.
    unsafe { libc::sigismember(&pending, libc::SIGPIPE) == 1 }
}
