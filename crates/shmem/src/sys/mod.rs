//! Every `unsafe` block of this crate: system calls (memfd, `mmap`, `shm_open`, futex), the
//! process-shared robust pthread mutex, and the typed views into shared memory.
//!
//! What is exported from here is safe to use from the rest of the crate, under the crate's trust
//! model (see the crate documentation): every process that maps a segment is a cooperating
//! process that touches it only through this crate, or through the same protocol (atomics for
//! unlocked data, the segment's lock for locked data). A hostile process that shares the memory
//! can break any shared-memory design, this one included.

mod data;
mod layout;
mod mutex;
mod pod;
mod segment;

use std::cell::Cell as StdCell;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use multiproc_wire::sys::{cvt, cvt_retry};

pub(crate) use data::{LockedSlots, RawSlots, slot_align};
pub(crate) use layout::{BarrierState, CondState, EventState, RLockState, SemState, SlotRound};
pub(crate) use mutex::{Acquire, Held, Probe, RawMutex};
pub use pod::{AtomicPod, Pod};
pub(crate) use segment::{CellId, Fresh, HEADER, Segment, SegmentKey, Shared, file_key};

/// `CLOCK_MONOTONIC` now, in nanoseconds: one clock for every process of the machine.
pub(crate) fn monotonic_nanos() -> u64 {
    let now = monotonic_timespec(Instant::now());
    (now.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(now.tv_nsec as u64)
}

/// How long a blocking call may wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Not at all: try once.
    No,
    /// Until this instant.
    Until(Instant),
    /// Without a deadline.
    Forever,
}

impl Wait {
    /// The wait for an optional timeout: `None` is forever, and so is a timeout too large for
    /// an `Instant`.
    pub(crate) fn timeout(timeout: Option<std::time::Duration>) -> Wait {
        match timeout {
            None => Wait::Forever,
            Some(timeout) => Instant::now().checked_add(timeout).map_or(Wait::Forever, Wait::Until),
        }
    }

    /// The deadline, if any (`No` is a deadline already passed).
    pub(crate) fn deadline(self) -> Option<Instant> {
        match self {
            Wait::No => Some(Instant::now()),
            Wait::Until(deadline) => Some(deadline),
            Wait::Forever => None,
        }
    }
}

/// How a futex wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Woken, or the word no longer held the expected value, or a signal interrupted the wait:
    /// the caller checks its condition again.
    Woken,
    /// The deadline passed.
    TimedOut,
}

pub(crate) use multiproc_wire::sys::{monotonic_timespec, multicore};

/// Sleeps while `word` holds `expected`, until woken by [`futex_wake`] or `deadline` passes.
/// The futex is process-shared: it works between processes that map the same memory at any
/// address.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Wake {
    if multiproc_wire::sys::futex_wait(word, expected, deadline) { Wake::Woken } else { Wake::TimedOut }
}

/// Wakes up to `count` waiters sleeping on `word` in any process.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) {
    multiproc_wire::sys::futex_wake(word, count);
}

/// Fills `buf` from the kernel's random source.
///
/// # Errors
/// The operating system's error.
pub(crate) fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is writable for its length.
        let n = cvt_retry(|| unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) })?;
        filled += n as usize;
    }
    Ok(())
}

/// A random non-zero u64 (the process id mixed with the time if the kernel's source fails).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let value = match getrandom(&mut bytes) {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(getpid() as u32) << 32) ^ u64::from(gettid() as u32)
        }
    };
    value.max(1)
}

/// The calling process's id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The calling thread's id (unique in the system while the thread lives).
pub(crate) fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// Bumped in the child of every `fork`, so that a forked thread does not keep its parent
/// thread's [`thread_token`].
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// This thread's token and the fork generation it was made in.
    static TOKEN: StdCell<(u64, u64)> = const { StdCell::new((0, 0)) };
}

/// A random 64-bit identity of the calling thread, unique among all threads of all processes
/// (with probability 1 - 2^-64 per pair) and never reused, unlike thread ids; a forked child
/// gets a new one. The owner of an [`RLock`](crate::RLock) is recorded by it.
pub(crate) fn thread_token() -> u64 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: the handler only increments an atomic, which is async-signal-safe, as a
        // handler run in a forked child must be.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    let generation = FORK_GENERATION.load(Ordering::Relaxed);
    TOKEN
        .try_with(|cell| match cell.get() {
            (token, made) if token != 0 && made == generation => token,
            _ => {
                let token = random_u64();
                cell.set((token, generation));
                token
            }
        })
        // The thread is exiting and its locals are gone: a token of its own for this call.
        .unwrap_or_else(|_| random_u64())
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// Opens the POSIX shared memory object `name` (`/name`), read-write and close-on-exec;
/// with `create`, creates it (mode 0600) and fails if it exists.
///
/// # Errors
/// The operating system's error: `ENOENT`, `EEXIST`, `EINVAL` for a bad name, `EACCES`.
pub(crate) fn shm_open(name: &CStr, create: bool) -> io::Result<OwnedFd> {
    let mut flags = libc::O_RDWR | libc::O_CLOEXEC;
    if create {
        flags |= libc::O_CREAT | libc::O_EXCL;
    }
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    let fd = cvt_retry(|| unsafe { libc::shm_open(name.as_ptr(), flags, 0o600) })?;
    // SAFETY: shm_open returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes the name of the POSIX shared memory object `name`.
///
/// # Errors
/// The operating system's error: `ENOENT` when the name does not exist.
pub(crate) fn shm_unlink(name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    cvt(unsafe { libc::shm_unlink(name.as_ptr()) })?;
    Ok(())
}

/// Sets the size of the file behind `fd`.
///
/// # Errors
/// The operating system's error.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: usize) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: ftruncate reads only its integer arguments.
    cvt_retry(|| unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    Ok(())
}

/// The environment variable that makes a fresh exec of this executable the shared memory
/// tracker (see [`crate::tracker`]); its value is the tracker's socket descriptor.
const TRACKER_ENV: &CStr = c"MULTIPROC_SHMEM_TRACKER";

/// The descriptor the tracker's socket is placed at.
const TRACKER_FD: RawFd = 3;

/// Runs before `main` in every executable that links this crate (and references this static,
/// as [`spawn_tracker`] does): in a process started as the tracker, serves and never returns.
#[used]
// SAFETY: `.init_array` entries are called by the dynamic loader (or libc for static binaries)
// with (argc, argv, envp) before `main`; the function has that signature and returns at once
// unless this process was started as the tracker.
#[unsafe(link_section = ".init_array")]
pub(crate) static ON_LOAD: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = on_load;

extern "C" fn on_load(_: libc::c_int, _: *const *const libc::c_char, _: *const *const libc::c_char) {
    // SAFETY: before main the process is single-threaded, so nothing changes the environment
    // concurrently; the string returned is read before unsetenv.
    let value = unsafe { libc::getenv(TRACKER_ENV.as_ptr()) };
    if value.is_null() {
        return;
    }
    // SAFETY: getenv returned a valid NUL-terminated string (see above).
    let fd = unsafe { CStr::from_ptr(value) }.to_str().ok().and_then(|v| v.parse::<RawFd>().ok());
    // SAFETY: as for getenv.
    unsafe { libc::unsetenv(TRACKER_ENV.as_ptr()) };
    if fd != Some(TRACKER_FD) {
        exit_now(1);
    }
    // SAFETY: close_range closes descriptors above the tracker's socket, inherited by accident;
    // no Rust object of this fresh process owns them.
    unsafe { libc::syscall(libc::SYS_close_range, (TRACKER_FD + 1) as u32, u32::MAX, 0) };
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: SIG_IGN is a valid disposition for these signals.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    // SAFETY: the parent placed the socket at this number (posix_spawn's dup2) and named it in
    // the variable just removed; nothing else in this process knows it.
    let sock = unsafe { OwnedFd::from_raw_fd(TRACKER_FD) };
    crate::tracker::serve(sock)
}

/// Ends the process at once, without running `atexit` handlers or destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// Starts the tracker: a fresh exec of this executable (`/proc/self/exe`, the running image
/// even if its path changed) with `sock` at descriptor 3, no other environment, and stdin and
/// stdout on `/dev/null`. Returns its process id.
///
/// # Errors
/// The operating system's error.
pub(crate) fn spawn_tracker(sock: BorrowedFd<'_>) -> io::Result<i32> {
    std::hint::black_box(&ON_LOAD);
    // A copy numbered above TRACKER_FD, so that the dup2 below always changes the number (a
    // dup2 onto itself would keep close-on-exec).
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor for an open one.
    let copy = cvt(unsafe { libc::fcntl(sock.as_raw_fd(), libc::F_DUPFD_CLOEXEC, TRACKER_FD + 1) })?;
    // SAFETY: fcntl returned a new descriptor that nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(copy) };
    let path = c"/proc/self/exe";
    let argv0 = c"multiproc-shmem-tracker";
    let argv = [argv0.as_ptr(), ptr::null()];
    let env = c"MULTIPROC_SHMEM_TRACKER=3";
    let envp = [env.as_ptr(), ptr::null()];
    let null = c"/dev/null";
    let check = |ret: libc::c_int| if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) };
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file-action and attribute objects are initialised before use and destroyed
    // after; every pointer passed (path, argv, envp, names, the objects) outlives the
    // posix_spawn call; argv and envp are NULL-terminated.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        check(libc::posix_spawn_file_actions_init(&mut actions))?;
        check(libc::posix_spawnattr_init(&mut attr))?;
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        let result = (|| {
            check(libc::posix_spawn_file_actions_adddup2(&mut actions, sock.as_raw_fd(), TRACKER_FD))?;
            check(libc::posix_spawn_file_actions_addopen(&mut actions, 0, null.as_ptr(), libc::O_RDONLY, 0))?;
            check(libc::posix_spawn_file_actions_addopen(&mut actions, 1, null.as_ptr(), libc::O_WRONLY, 0))?;
            check(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            check(libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETSIGMASK as _))?;
            check(libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr() as *const *mut libc::c_char,
                envp.as_ptr() as *const *mut libc::c_char,
            ))
        })();
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        result?;
    }
    Ok(pid)
}

/// Reaps child `pid` if it has exited, without waiting.
pub(crate) fn reap_nohang(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on a specific pid writes only `status`.
    unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
}

/// Sends all of `bytes` on a stream socket, without raising `SIGPIPE`.
///
/// # Errors
/// The operating system's error; `EPIPE` when the peer is gone.
pub(crate) fn send_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is readable for its length.
        let n = cvt_retry(|| unsafe {
            libc::send(sock.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), libc::MSG_NOSIGNAL)
        })?;
        bytes = &bytes[n as usize..];
    }
    Ok(())
}
