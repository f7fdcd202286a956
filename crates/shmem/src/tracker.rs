//! The shared memory tracker: removes the names of [`SharedMemory`](crate::SharedMemory)
//! segments whose creator ended without removing them (killed, or exited without dropping its
//! handle), as CPython's resource tracker does.
//!
//! The first time a process creates a named segment, it starts the tracker: a fresh exec of its
//! own executable (so it inherits no threads and no memory) connected by a socket pair. Every
//! name the process must remove is registered with the tracker, and unregistered once removed
//! (or handed over with `set_unlink_on_drop(false)`). When the socket reaches its end (the
//! process, and any child forked from it, have all ended), the tracker removes the names still
//! registered and exits. Anonymous segments need none of this: they have no name.
//!
//! The tracker is best effort: if it cannot be started, segments are still removed by their
//! creator's handle, only not after a crash.

use std::collections::HashSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Mutex, PoisonError};

use crate::sys;

/// Registers a name to remove.
const REGISTER: u8 = b'+';
/// Unregisters a name.
const UNREGISTER: u8 = b'-';

/// This process's connection to its tracker: the tracker's pid and our end of the socket.
static TRACKER: Mutex<Option<(i32, OwnedFd)>> = Mutex::new(None);

fn start() -> io::Result<(i32, OwnedFd)> {
    let (ours, theirs) = multiproc_wire::sys::socketpair()?;
    let pid = sys::spawn_tracker(theirs.as_fd())?;
    Ok((pid, ours))
}

/// Sends one message, starting the tracker if there is none (or it died).
fn send(op: u8, name: &str) {
    let Ok(len) = u8::try_from(name.len()) else { return };
    let mut message = vec![op, len];
    message.extend_from_slice(name.as_bytes());
    let mut tracker = TRACKER.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..2 {
        if tracker.is_none() {
            if op == UNREGISTER {
                // Nothing was registered with a tracker that is not running.
                return;
            }
            match start() {
                Ok(started) => *tracker = Some(started),
                Err(_) => return,
            }
        }
        let Some((pid, sock)) = tracker.as_ref() else { return };
        match sys::send_all(sock.as_fd(), &message) {
            Ok(()) => return,
            Err(_) => {
                // The tracker died (it ignores the usual signals, so someone killed it):
                // start another one for this name and those to come.
                sys::reap_nohang(*pid);
                *tracker = None;
            }
        }
    }
}

/// Asks the tracker to remove `name` if this process ends without doing it.
pub(crate) fn register(name: &str) {
    send(REGISTER, name);
}

/// Tells the tracker that `name` needs no removal any more.
pub(crate) fn unregister(name: &str) {
    send(UNREGISTER, name);
}

/// The tracker's loop (in the tracker process): collects names until the socket ends, then
/// removes those still registered and exits.
pub(crate) fn serve(sock: OwnedFd) -> ! {
    let mut names: HashSet<Vec<u8>> = HashSet::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match multiproc_wire::sys::read(sock.as_fd(), &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
        }
        let mut used = 0;
        while let [op, len, rest @ ..] = &pending[used..] {
            let len = usize::from(*len);
            if rest.len() < len {
                break;
            }
            let name = rest[..len].to_vec();
            match *op {
                REGISTER => names.insert(name),
                _ => names.remove(&name),
            };
            used += 2 + len;
        }
        pending.drain(..used);
    }
    let mut removed = 0;
    for name in &names {
        let mut system = b"/".to_vec();
        system.extend_from_slice(name);
        if let Ok(system) = CString::new(system) {
            removed += usize::from(sys::shm_unlink(&system).is_ok());
        }
    }
    if removed > 0 {
        eprintln!(
            "multiproc-shmem: removed {removed} shared memory segment(s) that a process left behind when it ended"
        );
    }
    sys::exit_now(0)
}
