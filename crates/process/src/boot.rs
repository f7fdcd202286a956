//! The child's side of starting: the constructor that runs before `main`, and the code that
//! receives the start message and calls the target.

use std::ffi::CStr;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::current::{self, ParentProcess};
use crate::{children, entry, forkserver, sys, transfer};

/// Names the descriptor of a spawned child's private socket.
pub(crate) const ENV_CHILD: &CStr = c"MULTIPROC_CHILD_FD";
/// Names the descriptor of the forkserver's control socket.
pub(crate) const ENV_FORKSERVER: &CStr = c"MULTIPROC_FORKSERVER_FD";

/// The start message: in one frame with the executable's identity before it and the encoded
/// arguments after it (see [`start_payload`]).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Start {
    pub(crate) offset: i64,
    pub(crate) type_hash: u64,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: ParentProcess,
    /// The parent's working directory (its bytes), where the child starts as in CPython: a
    /// forkserver child would otherwise run where the server was started.
    pub(crate) cwd: Option<Vec<u8>>,
}

/// The payload of a start message: this executable's identity (8 bytes, little-endian), which
/// the child checks before it decodes anything, then `start`, then the encoded arguments.
pub(crate) fn start_payload(start: &Start, args: &[u8]) -> Result<Vec<u8>, multiproc_wire::Error> {
    let mut payload = exe_id().to_le_bytes().to_vec();
    payload.extend(multiproc_wire::encode(start)?.bytes);
    payload.extend_from_slice(args);
    Ok(payload)
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
    if let Some(sock) = sys::take_inherited_fd(ENV_CHILD) {
        // As in CPython, a spawned child keeps only what it was given (and stdio), not the
        // inheritable descriptors that happened to be open in the parent.
        let Ok([sock]) = sys::keep_only([sock]) else { sys::exit_now(1) };
        child_main(sock, None, None);
    }
    if let Some(control) = sys::take_inherited_fd(ENV_FORKSERVER) {
        // The server lives as long as its parent: an inherited descriptor would stay open
        // that long (a pipe's write end would keep its reader from ever seeing the end).
        let Ok([control]) = sys::keep_only([control]) else { sys::exit_now(1) };
        forkserver::serve(control);
    }
}

/// Receives the start message on `sock`, runs the target, reports, and exits.
///
/// `direct_parent` is the pid whose death should kill a daemon child (the forkserver for its
/// children); `None` means the parent named in the start message. `exit_report` (forkserver
/// children) is the pipe on which the child writes its own exit code before it exits.
pub(crate) fn child_main(sock: OwnedFd, direct_parent: Option<i32>, exit_report: Option<OwnedFd>) -> ! {
    sys::init_signals();
    sys::stdin_from_dev_null();
    if let Some(pipe) = exit_report {
        let _ = EXIT_REPORT.set((sys::getpid(), pipe));
    }
    let code = serve_start(sock.as_fd(), direct_parent);
    exit_child(code)
}

/// A forkserver child's exit-code pipe, with the pid of the child it belongs to (a process
/// forked from that child inherits the static, and must not report there).
static EXIT_REPORT: OnceLock<(i32, OwnedFd)> = OnceLock::new();

/// Receives the start message on `sock` and runs the target, or reports why it cannot; returns
/// the exit code.
fn serve_start(sock: BorrowedFd<'_>, direct_parent: Option<i32>) -> i32 {
    match run(sock, direct_parent) {
        Ok(code) => code,
        Err(message) => entry::report_failure(sock, &message),
    }
}

fn run(sock: BorrowedFd<'_>, direct_parent: Option<i32>) -> Result<i32, String> {
    let (tag, payload, fds) =
        transfer::recv(sock, None).map_err(|err| format!("cannot receive the start message: {err}"))?;
    if tag != transfer::TAG_START {
        return Err(format!("unexpected message {tag} instead of the start message"));
    }
    // The executable is checked before anything is decoded: the codec trusts its input (a
    // garbage length can make it allocate without bound), and only our own executable's
    // messages can be trusted.
    let Some((exe, payload)) = payload.split_first_chunk::<8>() else {
        return Err("the start message is too short".into());
    };
    let Some(image) = sys::same_image(u64::from_le_bytes(*exe)) else {
        return Err("the child's executable is not the parent's".into());
    };
    let (start, used): (Start, usize) = multiproc_wire::decode_prefix(payload, Vec::new())
        .map_err(|err| format!("cannot decode the start message: {err}"))?;
    if let Some(cwd) = &start.cwd {
        let cwd = std::ffi::OsStr::from_bytes(cwd);
        std::env::set_current_dir(cwd)
            .map_err(|err| format!("cannot enter the parent's directory {cwd:?}: {err}"))?;
    }
    let parent_pid = direct_parent.unwrap_or(start.parent.pid());
    if start.daemon {
        sys::set_parent_death_signal(libc::SIGKILL).map_err(|err| format!("prctl: {err}"))?;
        if sys::getppid() != parent_pid {
            // The parent died before the death signal was armed.
            exit_child(1);
        }
    }
    current::become_child(start.name, start.identity, start.daemon, start.parent);
    let target: entry::RawEntry = sys::entry_at(start.offset, image);
    Ok(target(start.type_hash, &payload[used..], fds, sock))
}

/// Ends the child: joins (or, for daemons, terminates) the children it started, as CPython's
/// children do when their target returns, flushes standard output, and exits without running
/// the exit handlers inherited from the parent.
///
/// A forkserver child writes its exit code on its exit-code pipe last: the parent reads it
/// only when the server that should report it has died (see `children::Watch::Served`).
pub(crate) fn exit_child(code: i32) -> ! {
    children::at_child_exit();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if let Some((pid, pipe)) = EXIT_REPORT.get() {
        if *pid == sys::getpid() {
            // Four bytes on a pipe nobody else writes: one write, never partial.
            let _ = multiproc_wire::sys::writev(pipe.as_fd(), &[std::io::IoSlice::new(&code.to_be_bytes())]);
        }
    }
    sys::exit_now(code)
}

#[cfg(test)]
mod tests {
    //! The child's refusals that the public API cannot provoke: each must be reported to the
    //! parent and must never call the target. The child's side runs on the test's thread.

    use std::net::Shutdown;
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use serde::de::DeserializeOwned;

    use super::*;
    use crate::entry::{Entry, entry_for};

    /// Calls of [`refused`]: every test here that uses it expects none, ever.
    static REFUSED_CALLS: AtomicUsize = AtomicUsize::new(0);
    static ACCEPTED_CALLS: AtomicUsize = AtomicUsize::new(0);

    fn refused(x: u32) -> u32 {
        REFUSED_CALLS.fetch_add(1, Ordering::SeqCst);
        x
    }

    fn accepted(x: u32) -> u32 {
        ACCEPTED_CALLS.fetch_add(1, Ordering::SeqCst);
        x + 1
    }

    fn entry_of<F, A, R>(_: F) -> Entry
    where
        F: Fn(A) -> R + 'static,
        A: DeserializeOwned,
        R: Serialize,
    {
        entry_for::<F, A, R>()
    }

    fn start_for(entry: Entry) -> Start {
        Start {
            offset: entry.offset,
            type_hash: entry.type_hash,
            name: "Process-unit".into(),
            identity: vec![99],
            daemon: false,
            parent: current::as_parent(),
            cwd: None,
        }
    }

    /// A start message followed by its arguments, as the parent builds it.
    fn message(start: &Start, args: &impl Serialize) -> Vec<u8> {
        start_payload(start, &multiproc_wire::encode(args).unwrap().bytes).unwrap()
    }

    /// Sends `payload` tagged `tag` as the parent would (or nothing), runs the child's side,
    /// and returns its exit code and what it reported: (tag, text).
    fn serve(frame: Option<(u8, &[u8])>) -> (i32, (u8, String)) {
        let (parent, child) = UnixStream::pair().unwrap();
        if let Some((tag, payload)) = frame {
            transfer::send(parent.as_fd(), tag, payload, &[]).unwrap();
        }
        parent.shutdown(Shutdown::Write).unwrap();
        let code = serve_start(child.as_fd(), None);
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        let (tag, bytes, _) = transfer::recv(parent.as_fd(), Some(deadline)).expect("a report");
        let text = match tag {
            transfer::TAG_VALUE => format!("{:?}", multiproc_wire::decode_typed::<u32>(&bytes, Vec::new())),
            _ => multiproc_wire::decode::<String>(&bytes, Vec::new()).unwrap(),
        };
        (code, (tag, text))
    }

    fn assert_refused(frame: Option<(u8, &[u8])>, expected: &str) {
        let (code, (tag, text)) = serve(frame);
        assert_eq!(code, 1, "exit code {code}: {text}");
        assert_eq!(tag, transfer::TAG_FAILED, "{text}");
        assert!(text.contains(expected), "{text:?} does not say {expected:?}");
        assert_eq!(REFUSED_CALLS.load(Ordering::SeqCst), 0, "the target was called");
    }

    #[test]
    fn runs_a_valid_message() {
        // The control: the same construction as the refusals, unaltered, does run the target.
        let payload = message(&start_for(entry_of(accepted)), &41u32);
        let (code, report) = serve(Some((transfer::TAG_START, &payload)));
        assert_eq!((code, report), (0, (transfer::TAG_VALUE, "Ok(42)".to_owned())));
        assert_eq!(ACCEPTED_CALLS.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn refuses_another_executable() {
        let mut payload = message(&start_for(entry_of(refused)), &1u32);
        payload[0] ^= 1;
        assert_refused(Some((transfer::TAG_START, &payload)), "executable is not the parent's");
    }

    #[test]
    fn refuses_another_function_type() {
        let mut start = start_for(entry_of(refused));
        start.type_hash ^= 1;
        let payload = message(&start, &1u32);
        assert_refused(Some((transfer::TAG_START, &payload)), "does not match");
    }

    #[test]
    fn refuses_garbage() {
        // Garbage never reaches the decoder: it does not name this executable.
        let garbage: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8 | 0x80).collect();
        assert_refused(Some((transfer::TAG_START, &garbage)), "executable is not the parent's");
        assert_refused(Some((transfer::TAG_START, &[])), "too short");
        assert_refused(Some((transfer::TAG_START, &garbage[..5])), "too short");
        // A valid message cut short.
        let payload = message(&start_for(entry_of(refused)), &1u32);
        let cut = &payload[..payload.len() / 2];
        assert_refused(Some((transfer::TAG_START, cut)), "cannot decode the start message");
        // A valid start message with arguments of the wrong type.
        let payload = start_payload(&start_for(entry_of(refused)), &[0xff; 3]).unwrap();
        assert_refused(Some((transfer::TAG_START, &payload)), "cannot decode the arguments");
    }

    #[test]
    fn refuses_other_messages() {
        let payload = message(&start_for(entry_of(refused)), &1u32);
        assert_refused(Some((transfer::TAG_VALUE, &payload)), "instead of the start message");
        assert_refused(None, "cannot receive the start message");
    }
}
