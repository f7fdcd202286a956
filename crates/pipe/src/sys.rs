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
