//! The children this process started: waiting, reaping, signalling, and what happens to them
//! when this process exits.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use multiproc_wire::sys as wsys;

use crate::{forkserver, sys};

/// How the parent learns that a child has exited.
#[derive(Debug)]
pub(crate) enum Watch {
    /// A direct child: its pidfd becomes readable at exit and `waitid` reaps it.
    Direct,
    /// A forkserver child: the server reaps it and writes the exit code to this pipe.
    Served(OwnedFd),
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
    exit: Mutex<Option<i32>>,
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
        Child { pid, name, daemon, pidfd, watch, sock, exit: Mutex::new(None) }
    }

    /// The descriptor that becomes readable when the child has exited.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.watch {
            Watch::Direct => self.pidfd.as_fd(),
            Watch::Served(status) => status.as_fd(),
        }
    }

    /// The exit code if the child has exited (reaping it), without blocking.
    pub(crate) fn poll_exit(&self) -> io::Result<Option<i32>> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            *exit = match &self.watch {
                Watch::Direct => sys::waitid_pidfd(self.pidfd.as_fd(), false)?,
                Watch::Served(status) => {
                    if !wsys::wait_readable(status.as_fd(), Some(Instant::now()))? {
                        return Ok(None);
                    }
                    let mut code = [0u8; 4];
                    let mut file = File::from(status.try_clone()?);
                    file.read_exact(&mut code).map_err(|_| {
                        io::Error::other("the forkserver exited before reporting the child's exit")
                    })?;
                    Some(i32::from_be_bytes(code))
                }
            };
        }
        Ok(*exit)
    }

    /// Waits until the child exits or `deadline` passes; returns its exit code, or `None` on
    /// timeout.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        loop {
            if let Some(code) = self.poll_exit()? {
                return Ok(Some(code));
            }
            if !wsys::wait_readable(self.sentinel(), deadline)? {
                return Ok(None);
            }
        }
    }

    /// Sends `signal` unless the child has already been reaped.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_some() {
            return Ok(());
        }
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal)
    }
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

/// Reaps every child that has exited and returns those still running.
///
/// The registry stays locked throughout (`poll_exit` never blocks), so that a concurrent call
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
