//! Safe wrappers over the system calls the multiproc crates share: sockets that carry file
//! descriptors, `poll`, and `memfd`. Every `unsafe` block of this crate is here.

use std::ffi::CStr;
use std::io::{self, IoSlice};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// Turns a `-1` return into the thread's `errno` as an [`io::Error`].
pub fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// Like [`cvt`], retrying the call while it fails with `EINTR`.
pub fn cvt_retry<T: Copy + PartialEq + From<i8>>(mut call: impl FnMut() -> T) -> io::Result<T> {
    loop {
        match cvt(call()) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// A connected pair of `AF_UNIX` stream sockets, close-on-exec.
///
/// # Errors
/// The operating system's error (`EMFILE`, `ENFILE`).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors socketpair writes.
    cvt(unsafe {
        libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr())
    })?;
    // SAFETY: socketpair succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Room for one `SCM_RIGHTS` message of [`MAX_FDS`] descriptors (`CMSG_SPACE(253 * 4)` is
/// 1032 on 64-bit Linux) with margin.
const CMSG_BUF_LEN: usize = 1280;

/// Space for a control message carrying [`MAX_FDS`] descriptors, aligned for `cmsghdr`.
#[repr(C)]
struct CmsgBuf {
    _align: [libc::cmsghdr; 0],
    bytes: [u8; CMSG_BUF_LEN],
}

impl CmsgBuf {
    fn new() -> CmsgBuf {
        CmsgBuf { _align: [], bytes: [0; CMSG_BUF_LEN] }
    }
}

/// Sends `bufs` on a stream socket with `fds` attached (`SCM_RIGHTS`), without raising
/// `SIGPIPE`; retries on `EINTR`. Returns how many bytes were sent, which may be fewer than
/// offered: the descriptors travel with the first byte.
///
/// The descriptors stay open in the sender.
///
/// # Errors
/// `EPIPE` when the peer has closed, `EAGAIN` on a full non-blocking socket, `EINVAL` for more
/// than [`MAX_FDS`] descriptors.
pub fn send_with_fds(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], fds: &[RawFd]) -> io::Result<usize> {
    send_with_fds_flags(sock, bufs, fds, 0)
}

/// [`send_with_fds`] that fails with `EAGAIN` instead of blocking (`MSG_DONTWAIT`).
///
/// # Errors
/// As [`send_with_fds`].
pub fn send_with_fds_nonblocking(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
) -> io::Result<usize> {
    send_with_fds_flags(sock, bufs, fds, libc::MSG_DONTWAIT)
}

fn send_with_fds_flags(
    sock: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[RawFd],
    flags: libc::c_int,
) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot send {} file descriptors in one message (at most {MAX_FDS})", fds.len()),
        ));
    }
    let mut cmsg = CmsgBuf::new();
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    if !fds.is_empty() {
        let data_len = mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation on a length.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        assert!(space <= cmsg.bytes.len(), "control buffer too small for {} descriptors", fds.len());
        msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, cmsghdr-aligned bytes, so the first
        // header and its `data_len` bytes of data fit inside the buffer.
        unsafe {
            let hdr = libc::CMSG_FIRSTHDR(&msg);
            (*hdr).cmsg_level = libc::SOL_SOCKET;
            (*hdr).cmsg_type = libc::SCM_RIGHTS;
            (*hdr).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(hdr), data_len as usize);
        }
    }
    let flags = flags | libc::MSG_NOSIGNAL;
    // SAFETY: `msg` points at live iovecs (IoSlice is ABI-compatible with iovec) and, when set,
    // at the control buffer filled above; both outlive the call.
    let sent = cvt_retry(|| unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, flags) })?;
    Ok(sent as usize)
}

/// Receives into `buf` from a stream socket, appending any descriptors that arrive to `fds`
/// (close-on-exec); retries on `EINTR`. Returns the number of bytes read: 0 at end of stream.
///
/// # Errors
/// The operating system's error; `EAGAIN` when `nonblocking` and nothing is there. Receiving
/// more descriptors than fit is an error (the kernel closes the excess).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    nonblocking: bool,
) -> io::Result<usize> {
    let mut cmsg = CmsgBuf::new();
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.bytes.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.bytes.len() as _;
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if nonblocking {
        flags |= libc::MSG_DONTWAIT;
    }
    // SAFETY: `iov` covers `buf`, writable for its length; the control buffer is writable for
    // the length given; both outlive the call.
    let n = cvt_retry(|| unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, flags) })?;
    if msg.msg_controllen > 0 {
        // SAFETY: the kernel filled `msg_controllen` bytes of well-formed control messages;
        // CMSG_FIRSTHDR/CMSG_NXTHDR walk only within them.
        let mut hdr = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !hdr.is_null() {
            // SAFETY: `hdr` is non-null and inside the control buffer (see above).
            let (level, kind, len) = unsafe { ((*hdr).cmsg_level, (*hdr).cmsg_type, (*hdr).cmsg_len) };
            if level == libc::SOL_SOCKET && kind == libc::SCM_RIGHTS {
                // SAFETY: CMSG_LEN(0) is a pure computation.
                let header = unsafe { libc::CMSG_LEN(0) } as usize;
                #[allow(clippy::unnecessary_cast, reason = "cmsg_len is u32 on some targets")]
                let count = (len as usize - header) / mem::size_of::<RawFd>();
                // SAFETY: `hdr` is a valid SCM_RIGHTS message.
                let data = unsafe { libc::CMSG_DATA(hdr) }.cast::<RawFd>();
                for i in 0..count {
                    // SAFETY: the data holds `count` descriptors, possibly unaligned; each was
                    // installed in this process by the kernel and is owned by nobody else.
                    fds.push(unsafe { OwnedFd::from_raw_fd(data.add(i).read_unaligned()) });
                }
            }
            // SAFETY: as for CMSG_FIRSTHDR.
            hdr = unsafe { libc::CMSG_NXTHDR(&msg, hdr) };
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "received more file descriptors than fit in one message",
        ));
    }
    Ok(n as usize)
}

/// Reads what is available from `fd` (`read`), retrying on `EINTR`; 0 at end of file.
///
/// # Errors
/// The operating system's error; `EAGAIN` on an empty non-blocking descriptor.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = cvt_retry(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Writes `bufs` to `fd` (`writev`), retrying on `EINTR`; returns how many bytes were taken.
///
/// # Errors
/// The operating system's error; `EAGAIN` on a full non-blocking descriptor, `EPIPE` when the
/// reader has gone.
pub fn writev(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(libc::UIO_MAXIOV as usize) as libc::c_int;
    // SAFETY: IoSlice is ABI-compatible with iovec; the first `count` slices are readable.
    let n = cvt_retry(|| unsafe { libc::writev(fd.as_raw_fd(), bufs.as_ptr().cast(), count) })?;
    Ok(n as usize)
}

/// Milliseconds left until `deadline` for `poll`: -1 without a deadline, rounded up.
pub fn poll_timeout(deadline: Option<Instant>) -> libc::c_int {
    match deadline {
        None => -1,
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = left.as_micros().div_ceil(1000);
            ms.min(libc::c_int::MAX as u128) as libc::c_int
        }
    }
}

/// The deadline `timeout` from now; `None` (no deadline) when it does not fit in an `Instant`.
pub fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Waits until one of `fds` is ready or `deadline` passes; returns how many are ready (0 on
/// timeout). Retries on `EINTR` with the time that is left.
///
/// # Errors
/// The operating system's error.
pub fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout = poll_timeout(deadline);
        // SAFETY: `fds` is a valid, writable slice of pollfd for its length. A stale or invalid
        // descriptor number only yields POLLNVAL.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        match cvt(ret) {
            Ok(n) => return Ok(n as usize),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(0);
                }
            }
            Err(err) => return Err(err),
        }
    }
}

/// A pollfd asking for readability of `fd`.
pub fn pollfd_in(fd: BorrowedFd<'_>) -> libc::pollfd {
    libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }
}

/// Waits until `fd` is readable (or at end of stream, or in error); `false` if `deadline`
/// passed first.
///
/// # Errors
/// The operating system's error.
pub fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let mut pfd = [pollfd_in(fd)];
    Ok(poll(&mut pfd, deadline)? > 0)
}

/// Waits until `fd` is writable; `false` if `deadline` passed first.
///
/// # Errors
/// The operating system's error.
pub fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    let mut pfd = [libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLOUT, revents: 0 }];
    Ok(poll(&mut pfd, deadline)? > 0)
}

/// An anonymous memory file (`memfd_create`, close-on-exec) named `name` for debugging.
///
/// # Errors
/// The operating system's error.
pub fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) })?;
    // SAFETY: memfd_create returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads from `fd` at `offset` into `buf` (`pread`), retrying on `EINTR`.
///
/// # Errors
/// The operating system's error.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length.
    let n = cvt_retry(|| unsafe {
        libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as libc::off_t)
    })?;
    Ok(n as usize)
}

/// Writes `buf` to `fd` at `offset` (`pwrite`), retrying on `EINTR`.
///
/// # Errors
/// The operating system's error.
pub fn pwrite(fd: BorrowedFd<'_>, buf: &[u8], offset: u64) -> io::Result<usize> {
    // SAFETY: `buf` is readable for its length.
    let n = cvt_retry(|| unsafe {
        libc::pwrite(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset as libc::off_t)
    })?;
    Ok(n as usize)
}

/// The size of the file behind `fd` (`fstat`).
///
/// # Errors
/// The operating system's error.
pub fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: stat is plain old data.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `st` is writable.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_size as u64)
}

/// Sets or clears `O_NONBLOCK` on `fd`.
///
/// # Errors
/// The operating system's error.
pub fn set_nonblocking(fd: BorrowedFd<'_>, nonblocking: bool) -> io::Result<()> {
    // SAFETY: F_GETFL reads flags of a descriptor we borrow.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let new = if nonblocking { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    if new != flags {
        // SAFETY: F_SETFL only changes status flags of a descriptor we borrow.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, new) })?;
    }
    Ok(())
}

impl FromRawFd for crate::Fd {
    /// # Safety
    /// `fd` must be an open descriptor that nothing else owns.
    unsafe fn from_raw_fd(fd: RawFd) -> crate::Fd {
        // SAFETY: the caller guarantees `fd` is open and owned by nobody else.
        crate::Fd::new(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Whether this process may run on more than one CPU: only then is spinning before sleeping
/// worth it (on one CPU it only delays the thread being waited for). Read once:
/// `available_parallelism` reads cgroup files.
pub fn multicore() -> bool {
    static MULTICORE: OnceLock<bool> = OnceLock::new();
    *MULTICORE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// The absolute `CLOCK_MONOTONIC` time of `deadline` (std's `Instant` is `CLOCK_MONOTONIC` on
/// Linux, but offers no conversion), for system calls that take absolute deadlines.
pub fn monotonic_timespec(deadline: Instant) -> libc::timespec {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `now` is writable; CLOCK_MONOTONIC always exists, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let left = deadline.saturating_duration_since(Instant::now());
    let secs = i64::try_from(left.as_secs()).unwrap_or(i64::MAX / 4);
    let mut ts = libc::timespec {
        tv_sec: now.tv_sec.saturating_add(secs),
        tv_nsec: now.tv_nsec + libc::c_long::from(left.subsec_nanos() as i32),
    };
    if ts.tv_nsec >= 1_000_000_000 {
        ts.tv_sec = ts.tv_sec.saturating_add(1);
        ts.tv_nsec -= 1_000_000_000;
    }
    ts
}

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`] or `deadline` passes;
/// `false` when the deadline passed. The futex is process-shared (no `FUTEX_PRIVATE_FLAG`): it
/// works between processes that map the same memory at any address.
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> bool {
    let ts = deadline.map(monotonic_timespec);
    let timeout = ts.as_ref().map_or(std::ptr::null(), |ts| ts as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the duration of the call; the timeout is null
    // or points at `ts` (FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time); the other
    // pointer argument is unused by this operation.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT_BITSET,
            expected,
            timeout,
            std::ptr::null::<u32>(),
            libc::FUTEX_BITSET_MATCH_ANY,
        )
    };
    !(ret == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT))
}

/// Wakes up to `count` waiters sleeping on `word` in any process.
pub fn futex_wake(word: &AtomicU32, count: u32) {
    let count = count.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE reads only the integer arguments.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
}

/// A whole memory file mapped `MAP_SHARED` (sparse: pages cost memory once touched), unmapped
/// when dropped: the shared memory of a pipe's rings or a queue. It hands out only its base
/// address; the crates that use it reach the bytes in their own `sys` modules.
#[derive(Debug)]
pub struct SharedMap {
    fd: OwnedFd,
    base: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory, valid in any thread; this type gives out no
// reference into it, only its address.
unsafe impl Send for SharedMap {}
// SAFETY: as for Send.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// A fresh memory file of `len` bytes named `name` (for debugging), mapped. Its size is
    /// sealed: no process holding it can shrink it under another's mapping (`SIGBUS`).
    ///
    /// # Errors
    /// The operating system's error.
    pub fn create(name: &CStr, len: usize) -> io::Result<SharedMap> {
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let fd =
            cvt(unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) })?;
        // SAFETY: memfd_create returned a new descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `fd` is an open memfd owned by this function.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), size) })?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: F_ADD_SEALS only restricts later size changes of the file behind `fd`.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
        SharedMap::map(fd, len)
    }

    /// Maps a memory file received from another process, whole; it must hold at least `min`
    /// bytes and be sealed against shrinking (as [`create`](SharedMap::create) makes it).
    ///
    /// # Errors
    /// `InvalidData` when it is smaller or not sealed, or the operating system's error.
    pub fn open(fd: OwnedFd, min: usize) -> io::Result<SharedMap> {
        // SAFETY: F_GET_SEALS only reads the seals of the file behind `fd`.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "shared memory that can shrink"));
        }
        let len = file_size(fd.as_fd())?;
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        if len < min {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "shared memory too small"));
        }
        SharedMap::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<SharedMap> {
        // SAFETY: a fresh shared mapping of `len` bytes of `fd` at an address the kernel picks
        // (it overlaps nothing); MAP_NORESERVE: the file is sparse.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base =
            std::ptr::NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))?;
        Ok(SharedMap { fd, base, len })
    }

    /// The memory file, for passing the mapping to another process.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The mapping's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte: page aligned, valid for [`len`](SharedMap::len) bytes while `self`
    /// lives.
    pub fn base(&self) -> std::ptr::NonNull<u8> {
        self.base
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `map`, unmapped once; users reach it
        // only through `base` while they hold `self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
