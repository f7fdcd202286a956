//! The child's side of starting: the constructor that runs before `main`, and the code that
//! receives the start message and calls the target.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::current::{self, ParentProcess};
use crate::{entry, forkserver, sys, transfer};

/// Names the descriptor of a spawned child's private socket.
pub(crate) const ENV_CHILD: &CStr = c"MULTIPROC_CHILD_FD";
/// Names the descriptor of the forkserver's control socket.
pub(crate) const ENV_FORKSERVER: &CStr = c"MULTIPROC_FORKSERVER_FD";

/// The start message, followed in the same frame by the encoded arguments.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) exe: u64,
    pub(crate) offset: i64,
    pub(crate) type_hash: u64,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: ParentProcess,
}

/// The identity of this process's executable image: spawned children and forkserver children
/// run the same one; anything else must not trust an entry offset.
pub(crate) fn exe_id() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata("/proc/self/exe") {
            Ok(m) => {
                let mut bytes = Vec::with_capacity(40);
                for part in [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64] {
                    bytes.extend_from_slice(&part.to_le_bytes());
                }
                entry::fnv1a(&bytes)
            }
            Err(_) => 0,
        }
    })
}

/// Runs before `main` in every process of an executable that links this crate. In an ordinary
/// start it only reads two environment variables; in a spawned child or the forkserver it
/// takes over the process and never returns.
pub(crate) extern "C" fn on_load(
    _: libc::c_int,
    _: *const *const libc::c_char,
    _: *const *const libc::c_char,
) {
    if let Some(fd) = take_env_fd(ENV_CHILD) {
        // SAFETY: the parent placed our private socket at this descriptor number with
        // posix_spawn and nothing else in this fresh process owns it.
        let sock = unsafe { sys::adopt_fd(fd) };
        child_main(sock, None);
    }
    if let Some(fd) = take_env_fd(ENV_FORKSERVER) {
        // SAFETY: as above, for the forkserver's control socket.
        let control = unsafe { sys::adopt_fd(fd) };
        forkserver::serve(control);
    }
}

fn take_env_fd(name: &CStr) -> Option<RawFd> {
    let value = sys::getenv_early(name)?;
    let fd = value.to_str().ok()?.parse::<RawFd>().ok();
    sys::unset_env_early(name);
    let fd = fd.filter(|&fd| fd > 2)?;
    sys::set_cloexec(fd).ok()?;
    Some(fd)
}

/// Receives the start message on `sock`, runs the target, reports, and exits.
///
/// `direct_parent` is the pid whose death should kill a daemon child (the forkserver for its
/// children); `None` means the parent named in the start message.
pub(crate) fn child_main(sock: OwnedFd, direct_parent: Option<i32>) -> ! {
    sys::init_signals();
    let code = match run(sock.as_fd(), direct_parent) {
        Ok(code) => code,
        Err(message) => entry::report_failure(sock.as_fd(), &message),
    };
    exit_child(code)
}

fn run(sock: BorrowedFd<'_>, direct_parent: Option<i32>) -> Result<i32, String> {
    let (tag, payload, fds) =
        transfer::recv(sock, None).map_err(|err| format!("cannot receive the start message: {err}"))?;
    if tag != transfer::TAG_START {
        return Err(format!("unexpected message {tag} instead of the start message"));
    }
    let (start, used): (Start, usize) = multiproc_wire::decode_prefix(&payload, Vec::new())
        .map_err(|err| format!("cannot decode the start message: {err}"))?;
    let parent_pid = direct_parent.unwrap_or(start.parent.pid());
    if start.daemon {
        sys::set_parent_death_signal(libc::SIGKILL).map_err(|err| format!("prctl: {err}"))?;
        if sys::getppid() != parent_pid {
            // The parent died before the death signal was armed.
            exit_child(1);
        }
    }
    current::become_child(start.name, start.identity, start.daemon, start.parent);
    if start.exe != exe_id() {
        return Err("the child's executable is not the parent's".into());
    }
    // SAFETY: the offset was made by entry_for in the parent, whose executable image is ours
    // (checked just above: same file, same inode, same modification time).
    let target = unsafe { entry::resolve(start.offset) };
    Ok(target(start.type_hash, &payload[used..], fds, sock))
}

/// Flushes standard output and ends the child without running the parent's exit handlers.
pub(crate) fn exit_child(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::exit_now(code)
}
