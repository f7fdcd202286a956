//! Every system call of this crate that needs `unsafe`, each behind a safe (or documented
//! `unsafe`) function.

use std::ffi::{CStr, CString};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use multiproc_wire::sys::{cvt, cvt_retry};

/// The calling process's id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// The parent process's id.
pub(crate) fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// What `fork` returned.
pub(crate) enum Forked {
    /// In the child.
    Child,
    /// In the parent, with the child's pid.
    Parent(i32),
}

/// Forks the process.
///
/// # Safety
/// In the child only the calling thread exists: if other threads held locks (the allocator's,
/// stdout's, any `Mutex`), the child must not need them. Callers either check that the process
/// is single-threaded or have the user's explicit opt-in, and the child must end with
/// [`exit_now`].
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller upholds the contract above.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// Ends the process at once, without running `atexit` handlers or destructors.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

/// A pidfd for `pid` (`pidfd_open`), close-on-exec.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the syscall returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` to the process behind `pidfd`; a process that has already exited is not an
/// error.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: the syscall reads only its integer arguments; a null siginfo is allowed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match cvt(ret) {
        Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}

/// Reaps the child behind `pidfd` if it has exited (`waitid(P_PIDFD)`), returning its exit code
/// in Python's convention: the status for a normal exit, `-signal` for a signal.
pub(crate) fn waitid_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<i32>> {
    // SAFETY: siginfo_t is plain old data.
    let mut info: libc::siginfo_t = unsafe { mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    // SAFETY: `info` is writable; P_PIDFD takes the descriptor as the id.
    cvt_retry(|| unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, flags) })?;
    // SAFETY: waitid filled `info` (si_pid stays 0 when WNOHANG found nothing).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => status,
        _ => -status,
    }))
}

/// A pipe, close-on-exec: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded; both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Asks the kernel to send `signal` to this process when its parent (thread) exits.
pub(crate) fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })?;
    Ok(())
}

/// Sets what Rust's runtime sets before `main` for a process that starts outside it: `SIGPIPE`
/// ignored (errors become `EPIPE`) and an empty signal mask.
pub(crate) fn init_signals() {
    // SAFETY: setting SIGPIPE to SIG_IGN installs no handler code; sigset operations act on a
    // local set.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut set: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Moves `fds` to descriptor numbers 3, 4, ... (in order) in this process, close-on-exec, and
/// closes every descriptor above them. Used only in a freshly forked child, or a fresh exec
/// before `main`, that owns nothing else.
pub(crate) fn keep_only<const N: usize>(fds: [OwnedFd; N]) -> io::Result<[OwnedFd; N]> {
    const FIRST: RawFd = 3;
    let end = FIRST + N as RawFd;
    // First above the targets, so that no move overwrites a descriptor still to be moved.
    let mut high = Vec::with_capacity(N);
    for fd in fds {
        // SAFETY: F_DUPFD_CLOEXEC only makes a new descriptor, numbered `end` or above.
        let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, end) })?;
        // SAFETY: fcntl returned a new descriptor that nobody else owns.
        high.push(unsafe { OwnedFd::from_raw_fd(new) });
    }
    for (target, fd) in (FIRST..).zip(&high) {
        // SAFETY: dup2 onto `target` replaces whatever was there; in this child nothing else
        // uses that number (the originals were dropped above, or were never ours).
        cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) })?;
        set_cloexec(target)?;
    }
    // Closed by close_range below.
    high.into_iter().for_each(mem::forget);
    // SAFETY: close_range closes descriptors from `end` up, none of which is borrowed by live
    // Rust objects in this child (it runs no code of its parent after this).
    unsafe { libc::syscall(libc::SYS_close_range, end as u32, u32::MAX, 0) };
    // SAFETY: each target now holds one of the descriptors moved; this is its only owner.
    Ok(std::array::from_fn(|i| unsafe { OwnedFd::from_raw_fd(FIRST + i as RawFd) }))
}

/// Sets `FD_CLOEXEC` on a raw descriptor number.
pub(crate) fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl F_SETFD only changes descriptor flags.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    Ok(())
}

/// Makes this process ignore `SIGINT`; returns whether it already did.
pub(crate) fn ignore_sigint() -> bool {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_IGN }
}

/// Gives `SIGINT` its default action (ending the process) back.
pub(crate) fn default_sigint() {
    // SAFETY: SIG_DFL installs no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// Makes `/dev/null` this process's standard input (descriptor 0), as CPython's children have;
/// nothing changes when it cannot be opened.
pub(crate) fn stdin_from_dev_null() {
    let Ok(null) = std::fs::File::open("/dev/null") else { return };
    let null = OwnedFd::from(null);
    if null.as_raw_fd() == 0 {
        // Descriptor 0 was closed; it stays open (and inherited) now.
        // SAFETY: F_SETFD only changes the descriptor's flags.
        unsafe { libc::fcntl(0, libc::F_SETFD, 0) };
        mem::forget(null);
        return;
    }
    // SAFETY: dup2 replaces descriptor 0, which this process (a child that has not run its
    // target yet) owns and does not borrow anywhere; the copy is not close-on-exec.
    unsafe { libc::dup2(null.as_raw_fd(), 0) };
}

/// Takes the descriptor named by environment variable `name` (a decimal number set by the
/// parent that started this process), once: the variable is removed, so no second call can
/// adopt the same descriptor. Only numbers above 2 that are open are accepted; the descriptor
/// is made close-on-exec. Called before `main`, single-threaded.
pub(crate) fn take_inherited_fd(name: &CStr) -> Option<OwnedFd> {
    let value = getenv_early(name)?;
    let fd = value.to_str().ok().and_then(|v| v.parse::<RawFd>().ok());
    unset_env_early(name);
    let fd = fd.filter(|&fd| fd > 2)?;
    set_cloexec(fd).ok()?;
    // SAFETY: the parent placed this descriptor here for us (posix_spawn's dup2, or the
    // forkserver's keep_only) and named it in the variable just removed; it is open (set_cloexec
    // succeeded) and nothing else in this fresh process knows the number.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Duplicates descriptor number `fd` (`F_DUPFD_CLOEXEC`); fails with `EBADF` when it is not
/// open.
pub(crate) fn dup_fd_number(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on any integer is memory-safe; at worst it fails with EBADF.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The credentials (pid, uid) of the peer of a Unix socket (`SO_PEERCRED`).
pub(crate) fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<(i32, u32)> {
    // SAFETY: ucred is plain old data.
    let mut cred: libc::ucred = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is writable for `len` bytes.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok((cred.pid, cred.uid))
}

/// The real user id.
pub(crate) fn getuid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// Registers `f` to run at normal process exit (`atexit`).
pub(crate) fn atexit(f: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `f` is a plain function valid for the life of the program.
    if unsafe { libc::atexit(f) } != 0 {
        return Err(io::Error::other("atexit failed"));
    }
    Ok(())
}

/// The value of environment variable `name`, read without allocating or locking: used before
/// `main`, when the process is still single-threaded.
pub(crate) fn getenv_early(name: &CStr) -> Option<&'static CStr> {
    // SAFETY: getenv reads the environment; before main no other thread can modify it, and the
    // string lives until the variable is changed, which only `unset_env_early` does after the
    // caller has copied what it needs.
    let ptr = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: a non-null getenv result is a NUL-terminated string.
    (!ptr.is_null()).then(|| unsafe { CStr::from_ptr(ptr) })
}

/// Removes environment variable `name`; used before `main`, single-threaded.
pub(crate) fn unset_env_early(name: &CStr) {
    // SAFETY: the process is single-threaded (before main, in a fresh child), so no other
    // thread reads the environment concurrently.
    unsafe { libc::unsetenv(name.as_ptr()) };
}

/// The number of online processors.
pub(crate) fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n < 1 { 1 } else { n as usize }
}

/// Starts a fresh copy of this executable (`/proc/self/exe`) with `posix_spawn`, with `sock`
/// as descriptor `target` in the child and `env` as its whole environment. Returns the pid.
pub(crate) fn spawn_self(
    argv0: &CStr,
    sock: BorrowedFd<'_>,
    target: RawFd,
    env: &[CString],
) -> io::Result<i32> {
    let path = c"/proc/self/exe";
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|v| v.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut pid: libc::pid_t = 0;
    // SAFETY: the attribute and file-action objects are initialised before use and destroyed
    // after; every pointer passed (path, argv, envp, the objects) outlives the posix_spawn call;
    // argv and envp are NULL-terminated.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = mem::zeroed();
        check_spawn(libc::posix_spawn_file_actions_init(&mut actions))?;
        check_spawn(libc::posix_spawnattr_init(&mut attr))?;
        let mut empty: libc::sigset_t = mem::zeroed();
        libc::sigemptyset(&mut empty);
        let result = (|| {
            check_spawn(libc::posix_spawn_file_actions_adddup2(&mut actions, sock.as_raw_fd(), target))?;
            check_spawn(libc::posix_spawnattr_setsigmask(&mut attr, &empty))?;
            check_spawn(libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETSIGMASK as _))?;
            check_spawn(libc::posix_spawn(
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

fn check_spawn(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(ret)) }
}

/// Rebuilds a call target from its type alone: a `fn` item, a closure that captures
/// nothing, or [`Star`](crate::call::Star) of one, all zero-sized.
pub(crate) fn rebuild_target<C: crate::call::Callable<A, R>, A, R>() -> C {
    const { assert!(mem::size_of::<C>() == 0, "a call target must not capture anything") };
    // SAFETY: C is zero-sized (asserted at compile time), so reading it through a dangling
    // (non-null, aligned) pointer reads no bytes; Callable is implemented only for Fn types
    // and Star, so C is a fn item or a closure over zero-sized captures, which carry no
    // invariant that making one out of nothing could break.
    unsafe { std::ptr::NonNull::<C>::dangling().read() }
}

/// Proof that a message was made by a process running this same executable image, so that
/// code offsets in it are valid here.
#[derive(Debug)]
pub(crate) struct SameImage(());

/// The proof, when the executable identity a message claims is ours.
pub(crate) fn same_image(claimed: u64) -> Option<SameImage> {
    (claimed != 0 && claimed == crate::boot::exe_id()).then_some(SameImage(()))
}

/// The function `offset` bytes from [`entry::anchor`](crate::entry::anchor) in this image, as
/// an entry of type `E`. Offsets are only made (by `entry::entry_for` and `call::Call::batch`)
/// from functions of the type their message kind names: `RawEntry` for start messages,
/// `CallEntry` for calls.
pub(crate) fn entry_at<E: Copy>(offset: i64, _proof: SameImage) -> E {
    const { assert!(mem::size_of::<E>() == mem::size_of::<usize>()) };
    let addr = crate::entry::anchor().wrapping_add(offset as usize);
    // SAFETY: `_proof` shows the offset was computed, in a process running this same image,
    // from a function of type E (see above); functions keep their relative offsets within an
    // image whatever its load address. E is a fn pointer type of usize's size (asserted).
    unsafe { mem::transmute_copy::<usize, E>(&addr) }
}

/// Registers [`crate::boot::on_load`] to run before `main` in every executable that links this
/// crate, so that spawned children and the forkserver dispatch without an `init()` call.
#[used]
// SAFETY: `.init_array` entries are called by the dynamic loader (or libc for static binaries)
// with (argc, argv, envp) before `main`; the function has that signature and returns normally
// unless it takes over the process as a child or forkserver.
#[unsafe(link_section = ".init_array")]
pub(crate) static ON_LOAD: extern "C" fn(
    libc::c_int,
    *const *const libc::c_char,
    *const *const libc::c_char,
) = crate::boot::on_load;

/// Arms (or with zero, disarms) this process's `SIGALRM` timer, whole seconds rounded up; the
/// signal's default action ends the process.
pub(crate) fn alarm(after: std::time::Duration) {
    let secs = u32::try_from(after.as_secs() + u64::from(after.subsec_nanos() > 0)).unwrap_or(u32::MAX);
    // SAFETY: alarm only sets this process's timer.
    unsafe { libc::alarm(secs) };
}
