//! The children this process started: waiting, reaping, signalling, and what happens to them
//! when this process exits.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use multiproc_wire::sys as wsys;

use crate::{forkserver, sys};

/// The exit code of a forkserver child that nobody can know any more (CPython's).
pub(crate) const UNKNOWN_EXIT: i32 = 255;

/// How long a query that does not block (`is_alive`, `exitcode`, `active_children`) waits for
/// the forkserver to report a child that it has seen exit: it reaps and reports at once, so
/// this bounds only a server that is stopped or starved.
const REPORT_GRACE: Duration = Duration::from_secs(5);

/// How the parent learns a child's exit code.
#[derive(Debug)]
pub(crate) enum Watch {
    /// A direct child: `waitid` on its pidfd reaps it.
    Direct,
    /// A forkserver child: the server reaps it and writes the exit code on `status`; the child
    /// writes its own on `report` just before it exits, which is read only if the server dies
    /// first (then nobody can reap the child and learn its status but the process that adopts
    /// it).
    Served {
        /// The server's report.
        status: OwnedFd,
        /// The child's own report.
        report: OwnedFd,
    },
}

/// What is known about a child's end.
#[derive(Debug, Default)]
struct Ending {
    exit: Option<i32>,
    /// A forkserver child's server has gone without reporting it.
    server_gone: bool,
}

/// One started child.
#[derive(Debug)]
pub(crate) struct Child {
    pub(crate) pid: i32,
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pidfd: OwnedFd,
    watch: Watch,
    /// The parent's end of the child's private socket.
    pub(crate) sock: OwnedFd,
    ending: Mutex<Ending>,
}

impl Child {
    pub(crate) fn new(
        pid: i32,
        name: String,
        daemon: bool,
        pidfd: OwnedFd,
        watch: Watch,
        sock: OwnedFd,
    ) -> Child {
        Child { pid, name, daemon, pidfd, watch, sock, ending: Mutex::new(Ending::default()) }
    }

    fn ending(&self) -> MutexGuard<'_, Ending> {
        self.ending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The descriptor that becomes readable when the child has exited: its pidfd, under every
    /// start method (a forkserver child's too: it is readable when the child exits whoever its
    /// parent is by then).
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The exit code if the child has exited (reaping it), else `None`; waits at most
    /// [`REPORT_GRACE`] for a forkserver's report of a child it has seen exit.
    pub(crate) fn poll_exit(&self) -> io::Result<Option<i32>> {
        self.exit_by(Instant::now() + REPORT_GRACE)
    }

    /// The exit code if the child has exited, without waiting.
    pub(crate) fn exit_now(&self) -> io::Result<Option<i32>> {
        self.exit_by(Instant::now())
    }

    /// The exit code if the child has exited; waits until `report_deadline` at most for a
    /// forkserver's report of a child that has exited.
    fn exit_by(&self, report_deadline: Instant) -> io::Result<Option<i32>> {
        let mut ending = self.ending();
        if ending.exit.is_none() {
            ending.exit = match &self.watch {
                Watch::Direct => sys::waitid_pidfd(self.pidfd.as_fd(), false)?,
                Watch::Served { status, report } => self.served_exit(
                    &mut ending.server_gone,
                    status.as_fd(),
                    report.as_fd(),
                    report_deadline,
                )?,
            };
        }
        Ok(ending.exit)
    }

    /// A forkserver child's exit code: the server's report (the truth: it reaped the child).
    /// Once the server has gone, the child is adopted by the nearest subreaper or init: if that
    /// is this process, `waitid` reaps it (the truth again); else the child's own report when
    /// it made one (its target returned, panicked, or could not run); else [`UNKNOWN_EXIT`]
    /// (killed by a signal, or it called `exit` itself).
    fn served_exit(
        &self,
        server_gone: &mut bool,
        status: BorrowedFd<'_>,
        report: BorrowedFd<'_>,
        report_deadline: Instant,
    ) -> io::Result<Option<i32>> {
        let now = Instant::now();
        if !*server_gone && wsys::wait_readable(status, Some(now))? {
            match read_code(status)? {
                Some(code) => return Ok(Some(code)),
                None => *server_gone = true,
            }
        }
        if !wsys::wait_readable(self.pidfd.as_fd(), Some(now))? {
            return Ok(None);
        }
        if !*server_gone {
            // Exited: the server reaps it and reports at once, unless it dies first.
            if !wsys::wait_readable(status, Some(report_deadline))? {
                return Ok(None);
            }
            match read_code(status)? {
                Some(code) => return Ok(Some(code)),
                None => *server_gone = true,
            }
        }
        // Adopted by this process (a subreaper): reaping it tells the truth. Otherwise
        // (`ECHILD`) its new parent reaps it.
        if let Ok(Some(code)) = sys::waitid_pidfd(self.pidfd.as_fd(), false) {
            return Ok(Some(code));
        }
        // The child wrote its report (if any) before it exited, and it has exited.
        if wsys::wait_readable(report, Some(now))? {
            if let Some(code) = read_code(report)? {
                return Ok(Some(code));
            }
        }
        Ok(Some(UNKNOWN_EXIT))
    }

    /// Waits until the child exits or `deadline` passes; returns its exit code, or `None` on
    /// timeout.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        loop {
            if let Some(code) = self.exit_now()? {
                return Ok(Some(code));
            }
            let ready = match &self.watch {
                Watch::Direct => wsys::wait_readable(self.pidfd.as_fd(), deadline)?,
                Watch::Served { status, .. } => {
                    // The child's exit, and the server's report (or its end) while it may come.
                    let exited = wsys::wait_readable(self.pidfd.as_fd(), Some(Instant::now()))?;
                    let mut fds = Vec::with_capacity(2);
                    if !exited {
                        fds.push(wsys::pollfd_in(self.pidfd.as_fd()));
                    }
                    if !self.ending().server_gone {
                        fds.push(wsys::pollfd_in(status.as_fd()));
                    }
                    // Exited with its server gone is an exit code above: `fds` is not empty.
                    wsys::poll(&mut fds, deadline)? > 0
                }
            };
            if !ready {
                return Ok(None);
            }
        }
    }

    /// Sends `signal` unless the child has already been reaped.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let ending = self.ending();
        if ending.exit.is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal)
    }
}

/// Reads an exit code (4 bytes, big-endian) from a pipe that is readable; `None` at its end.
fn read_code(pipe: BorrowedFd<'_>) -> io::Result<Option<i32>> {
    let mut code = [0u8; 4];
    // Written with one write of 4 bytes: it arrives whole or not at all.
    Ok((wsys::read(pipe, &mut code)? == code.len()).then(|| i32::from_be_bytes(code)))
}

/// The children of this process that have not been reaped yet.
struct Registry {
    owner: i32,
    children: Vec<Arc<Child>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { owner: 0, children: Vec::new() });
static AT_EXIT: Once = Once::new();
/// The pid of the last process that registered a child (0 before any).
static REGISTERED_BY: AtomicI32 = AtomicI32::new(0);

fn with_registry<T>(f: impl FnOnce(&mut Vec<Arc<Child>>) -> T) -> T {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let pid = sys::getpid();
    if registry.owner != pid {
        // Inherited through fork: those are our parent's children, not ours. Dropping them
        // closes this process's copies of their descriptors and nothing else.
        registry.owner = pid;
        registry.children.clear();
    }
    f(&mut registry.children)
}

/// Records a started child, so that it is reaped by [`reap_finished`] and handled at exit.
pub(crate) fn register(child: Arc<Child>) {
    AT_EXIT.call_once(|| {
        // Failure only means children are not joined at exit: not worth failing a start.
        let _ = sys::atexit(at_exit);
    });
    with_registry(|children| children.push(child));
    REGISTERED_BY.store(sys::getpid(), Ordering::Relaxed);
}

/// At the end of a child process (its target returned or failed), what CPython's
/// `_exit_function` does there too: [`at_exit`]. A child that started no process of its own
/// does nothing and takes no lock, so a child forked while another thread held the registry's
/// lock cannot deadlock here.
pub(crate) fn at_child_exit() {
    if REGISTERED_BY.load(Ordering::Relaxed) == sys::getpid() {
        at_exit();
    }
}

/// Forgets a child whose `Process` is dropped, if it has exited (its descriptors close with the
/// last reference); one still running stays registered, to be reaped by [`reap_finished`] and
/// handled at exit.
pub(crate) fn release(child: Arc<Child>) {
    if matches!(child.exit_now(), Ok(Some(_)) | Err(_)) {
        with_registry(|children| children.retain(|c| !Arc::ptr_eq(c, &child)));
    }
}

/// Reaps every child that has exited and returns those still running.
///
/// The registry stays locked throughout (`poll_exit` waits only for the report of a child
/// that a live forkserver has seen exit, which it writes at once), so that a concurrent call
/// never sees it half empty.
pub(crate) fn reap_finished() -> Vec<Arc<Child>> {
    with_registry(|children| {
        children.retain(|child| !matches!(child.poll_exit(), Ok(Some(_)) | Err(_)));
        children.clone()
    })
}

/// Python's exit behaviour: daemon children are terminated, the others joined; then the
/// forkserver is stopped.
extern "C" fn at_exit() {
    let children = with_registry(std::mem::take);
    for child in children.iter().filter(|c| c.daemon) {
        let _ = child.signal(libc::SIGTERM);
    }
    for child in &children {
        if child.daemon {
            let grace = Instant::now() + Duration::from_secs(1);
            if !matches!(child.wait(Some(grace)), Ok(Some(_))) {
                let _ = child.signal(libc::SIGKILL);
                let _ = child.wait(None);
            }
        } else {
            let _ = child.wait(None);
        }
    }
    forkserver::shutdown();
}

/// A child of this process that is still running, as listed by [`active_children`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveChild {
    pid: i32,
    name: String,
    daemon: bool,
}

impl ActiveChild {
    /// The child's process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }
}

/// The children of this process that are still running; reaps those that have finished
/// (CPython's `active_children`).
///
/// ```
/// assert!(multiproc_process::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ActiveChild> {
    reap_finished()
        .into_iter()
        .map(|c| ActiveChild { pid: c.pid, name: c.name.clone(), daemon: c.daemon })
        .collect()
}
