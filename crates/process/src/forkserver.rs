//! The forkserver: a single-threaded copy of this executable, started on first use, that forks
//! children on request. Children start at fork speed and inherit none of the parent's threads
//! or state.
//!
//! The parent and the server talk over a private socketpair that only the server inherits;
//! the server also checks its peer's credentials (`SO_PEERCRED`: the parent's pid and uid).
//! A request carries the child's end of a fresh socketpair (`SCM_RIGHTS`); the reply carries
//! the child's pid, a pidfd (for signalling it and for learning, even after the server has
//! gone, that it has exited), the read end of a pipe on which the server writes the child's
//! exit code once it has reaped it, and the read end of a pipe on which the child writes its
//! own exit code just before it exits (read only if the server dies before it can report).
//! The server exits when the parent's end of the control socket closes.
//!
//! As CPython's, the server ignores `SIGINT` (a Ctrl-C reaches the whole foreground process
//! group; the parent may handle it, the server must not die of it) and its children get the
//! disposition back that the server started with; its standard input is `/dev/null`.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use multiproc_wire::{Error as WireError, frame, sys as wsys};

use crate::boot::{self, ENV_FORKSERVER};
use crate::sys;

const HELLO: &[u8] = b"multiproc-forkserver-2";
const REQUEST_SPAWN: &[u8] = b"spawn";
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parent's connection to its forkserver.
#[derive(Debug)]
struct Client {
    owner: i32,
    pidfd: OwnedFd,
    control: OwnedFd,
}

static SERVER: Mutex<Option<Client>> = Mutex::new(None);

/// A child started by the forkserver.
pub(crate) struct Served {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    /// The exit code as the server reaped it.
    pub(crate) status: OwnedFd,
    /// The exit code as the child reports it before exiting.
    pub(crate) report: OwnedFd,
}

/// Asks the forkserver (started if needed) for a child that runs the start message waiting on
/// `child_sock`.
pub(crate) fn spawn(child_sock: OwnedFd) -> Result<Served, String> {
    let mut guard = SERVER.lock().unwrap_or_else(|e| e.into_inner());
    if guard.as_ref().is_some_and(|c| c.owner != sys::getpid()) {
        // Inherited through fork: the server belongs to our parent.
        *guard = None;
    }
    if guard
        .as_ref()
        .is_some_and(|c| !matches!(wsys::wait_readable(c.pidfd.as_fd(), Some(Instant::now())), Ok(false)))
    {
        // The server has exited (killed, or crashed): reap it and start another, as CPython's
        // ensure_running does, instead of failing this start.
        if let Some(old) = guard.take() {
            stop(old);
        }
    }
    if guard.is_none() {
        *guard = Some(start()?);
    }
    let client = guard.as_ref().expect("started above");
    let result = request(client, child_sock);
    if result.is_err() {
        // A server that failed once is not trusted again; the next call starts a new one.
        if let Some(old) = guard.take() {
            stop(old);
        }
    }
    result
}

fn request(client: &Client, child_sock: OwnedFd) -> Result<Served, String> {
    let control = client.control.as_fd();
    frame::send(control, &[REQUEST_SPAWN], &[child_sock.as_raw_fd()], None)
        .map_err(|err| format!("cannot reach the forkserver: {err}"))?;
    drop(child_sock);
    let deadline = Instant::now() + REPLY_TIMEOUT;
    let (reply, mut fds) = frame::recv(control, 64, Some(deadline))
        .map_err(|err| format!("no answer from the forkserver: {err}"))?;
    match (<[u8; 4]>::try_from(reply.as_slice()), fds.len()) {
        (Ok(pid), 3) => {
            let report = fds.pop().expect("three descriptors");
            let status = fds.pop().expect("three descriptors");
            let pidfd = fds.pop().expect("three descriptors");
            Ok(Served { pid: i32::from_be_bytes(pid), pidfd, status, report })
        }
        _ => Err(format!("the forkserver could not fork: {}", String::from_utf8_lossy(&reply))),
    }
}

fn start() -> Result<Client, String> {
    let (ours, theirs) = wsys::socketpair().map_err(|err| format!("socketpair: {err}"))?;
    let target = if theirs.as_raw_fd() == 3 { 4 } else { 3 };
    let env = child_env(ENV_FORKSERVER, target);
    let argv0 = argv0();
    let pid = sys::spawn_self(&argv0, theirs.as_fd(), target, &env)
        .map_err(|err| format!("cannot start the forkserver: {err}"))?;
    drop(theirs);
    let pidfd = sys::pidfd_open(pid).map_err(|err| format!("pidfd_open: {err}"))?;
    let client = Client { owner: sys::getpid(), pidfd, control: ours };
    let deadline = Instant::now() + REPLY_TIMEOUT;
    match frame::recv(client.control.as_fd(), 64, Some(deadline)) {
        Ok((hello, _)) if hello == HELLO => Ok(client),
        other => {
            stop(client);
            Err(format!("the forkserver did not start: {:?}", other.map(|(b, _)| b)))
        }
    }
}

/// Stops this process's forkserver, if any, and reaps it.
pub(crate) fn shutdown() {
    let client = SERVER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(client) = client.filter(|c| c.owner == sys::getpid()) {
        stop(client);
    }
}

fn stop(client: Client) {
    let Client { pidfd, control, .. } = client;
    drop(control);
    let deadline = Instant::now() + Duration::from_secs(2);
    if !matches!(wsys::wait_readable(pidfd.as_fd(), Some(deadline)), Ok(true)) {
        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
    }
    let _ = sys::waitid_pidfd(pidfd.as_fd(), true);
}

/// The environment for a fresh exec of this executable: ours plus `name=fd`.
pub(crate) fn child_env(name: &std::ffi::CStr, fd: i32) -> Vec<CString> {
    use std::os::unix::ffi::OsStrExt;
    let name = name.to_str().expect("ASCII name");
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| {
            k.as_bytes() != boot::ENV_CHILD.to_bytes() && k.as_bytes() != ENV_FORKSERVER.to_bytes()
        })
        .filter_map(|(k, v)| {
            let mut entry = k.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(v.as_bytes());
            CString::new(entry).ok()
        })
        .collect();
    env.push(CString::new(format!("{name}={fd}")).expect("no NUL"));
    env
}

/// `argv[0]` for children: the parent's.
pub(crate) fn argv0() -> CString {
    use std::os::unix::ffi::OsStringExt;
    std::env::args_os()
        .next()
        .and_then(|a| CString::new(a.into_vec()).ok())
        .unwrap_or_else(|| c"multiproc-child".to_owned())
}

/// One child of the server, until it is reaped.
struct Kid {
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// The server's loop; never returns.
pub(crate) fn serve(control: OwnedFd) -> ! {
    sys::init_signals();
    let sigint_ignored = sys::ignore_sigint();
    sys::stdin_from_dev_null();
    match sys::peer_cred(control.as_fd()) {
        Ok((pid, uid)) if pid == sys::getppid() && uid == sys::getuid() => {}
        _ => sys::exit_now(2),
    }
    if frame::send(control.as_fd(), &[HELLO], &[], None).is_err() {
        sys::exit_now(1);
    }
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut pfds = vec![wsys::pollfd_in(control.as_fd())];
        pfds.extend(kids.iter().map(|k| wsys::pollfd_in(k.pidfd.as_fd())));
        if wsys::poll(&mut pfds, None).is_err() {
            sys::exit_now(1);
        }
        // Reap first, so that exit codes are written before new requests are served.
        let mut index = 0;
        kids.retain(|kid| {
            index += 1;
            if pfds[index].revents == 0 {
                return true;
            }
            match sys::waitid_pidfd(kid.pidfd.as_fd(), false) {
                Ok(Some(code)) => {
                    let _ = File::from(kid.status.try_clone().expect("dup")).write_all(&code.to_be_bytes());
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            }
        });
        if pfds[0].revents != 0 {
            match frame::recv(control.as_fd(), 64, Some(Instant::now() + REPLY_TIMEOUT)) {
                Ok((request, mut fds)) if request == REQUEST_SPAWN && fds.len() == 1 => {
                    let child_sock = fds.pop().expect("one descriptor");
                    let reply = fork_child(child_sock, &control, &mut kids, sigint_ignored);
                    if reply.is_err() {
                        sys::exit_now(1);
                    }
                }
                Ok(_) => {
                    let _ = frame::send(control.as_fd(), &[b"bad request".as_slice()], &[], None);
                }
                Err(WireError::Disconnected) => sys::exit_now(0),
                Err(_) => sys::exit_now(1),
            }
        }
    }
}

/// Forks a child for `child_sock`; `sigint_ignored` is the `SIGINT` disposition the server
/// started with, which the child gets back.
fn fork_child(
    child_sock: OwnedFd,
    control: &OwnedFd,
    kids: &mut Vec<Kid>,
    sigint_ignored: bool,
) -> Result<(), WireError> {
    let pipes = sys::pipe().and_then(|status| Ok((status, sys::pipe()?)));
    let ((status_read, status_write), (report_read, report_write)) = match pipes {
        Ok(pipes) => pipes,
        Err(err) => {
            return frame::send(control.as_fd(), &[format!("pipe: {err}").as_bytes()], &[], None);
        }
    };
    let server_pid = sys::getpid();
    // SAFETY: the forkserver is single-threaded (it runs before main, and starts no thread),
    // and the child only runs the child bootstrap before exiting with exit_now.
    match unsafe { sys::fork() } {
        Ok(sys::Forked::Child) => {
            if !sigint_ignored {
                sys::default_sigint();
            }
            let Ok([sock, report]) = sys::keep_only([child_sock, report_write]) else { sys::exit_now(1) };
            boot::child_main(sock, Some(server_pid), Some(report))
        }
        Ok(sys::Forked::Parent(pid)) => {
            drop(child_sock);
            drop(report_write);
            let pidfd = sys::pidfd_open(pid)?;
            let fds = [pidfd.as_raw_fd(), status_read.as_raw_fd(), report_read.as_raw_fd()];
            frame::send(control.as_fd(), &[&pid.to_be_bytes()], &fds, None)?;
            kids.push(Kid { pidfd, status: status_write });
            Ok(())
        }
        Err(err) => frame::send(control.as_fd(), &[format!("fork: {err}").as_bytes()], &[], None),
    }
}
