use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multiproc_wire::{Encoded, Error as WireError, sys as wsys};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::boot::{self, ENV_CHILD, Start};
use crate::children::{self, Child, Watch};
use crate::current;
use crate::entry::{self, Entry};
use crate::error::{Error, ErrorKind, Result};
use crate::{StartMethod, forkserver, get_start_method, sys, transfer};

/// How long to wait for a finished child's outcome to be readable.
const OUTCOME_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a thread count above one is re-read before it is believed (see [`thread_count`]).
const THREAD_SETTLE: Duration = Duration::from_millis(5);

/// The number of threads of this process. A thread that was just joined stays listed for some
/// microseconds after `join` returns (the kernel wakes the joiner before it releases the
/// thread), so a count above one is re-read for a moment before it is believed.
fn thread_count() -> usize {
    let count = || std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1);
    let deadline = Instant::now() + THREAD_SETTLE;
    loop {
        let threads = count();
        if threads <= 1 || Instant::now() >= deadline {
            return threads;
        }
        std::thread::yield_now();
    }
}

/// What a process runs: a function with arguments, or (fork only) a closure.
trait Target: Send {
    /// Runs in a forked child; returns the exit code.
    fn run_forked(self: Box<Self>, out: BorrowedFd<'_>) -> i32;
    /// The entry and the encoded arguments for a fresh executable; `None` for a closure.
    fn encode(&self) -> Option<std::result::Result<(Entry, Encoded), WireError>>;
}

struct FnTarget<F, A, R> {
    target: F,
    args: A,
    result: PhantomData<fn() -> R>,
}

impl<F, A, R> Target for FnTarget<F, A, R>
where
    F: Fn(A) -> R + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + 'static,
{
    fn run_forked(self: Box<Self>, out: BorrowedFd<'_>) -> i32 {
        let FnTarget { target, args, .. } = *self;
        entry::run_and_report(move || target(args), out)
    }

    fn encode(&self) -> Option<std::result::Result<(Entry, Encoded), WireError>> {
        Some(multiproc_wire::encode(&self.args).map(|args| (entry::entry_for::<F, A, R>(), args)))
    }
}

struct ClosureTarget<C, R> {
    closure: C,
    result: PhantomData<fn() -> R>,
}

impl<C, R> Target for ClosureTarget<C, R>
where
    C: FnOnce() -> R + Send + 'static,
    R: Serialize + 'static,
{
    fn run_forked(self: Box<Self>, out: BorrowedFd<'_>) -> i32 {
        entry::run_and_report(self.closure, out)
    }

    fn encode(&self) -> Option<std::result::Result<(Entry, Encoded), WireError>> {
        None
    }
}

/// A child process that runs a Rust function (CPython's `multiprocessing.Process`).
///
/// The target is a `fn` item or a closure that captures nothing, called with arguments of any
/// serde type; its return value `R` comes back to the parent through [`result`](Process::result).
/// Arguments may contain file descriptors ([`Fd`](multiproc_wire::Fd)), which the child
/// receives as its own descriptors for the same open files, under every start method.
///
/// ```
/// use multiproc_process::Process;
///
/// fn cube(x: u64) -> u64 {
///     x * x * x
/// }
///
/// let mut p = Process::new(cube, 3);
/// p.start()?;
/// assert_eq!(p.join()?, 0);
/// assert_eq!(p.result()?, 27);
/// # Ok::<(), multiproc_process::Error>(())
/// ```
///
/// With the [`Fork`](StartMethod::Fork) start method a process may run a capturing closure
/// ([`Process::from_closure`]).
///
/// # Exit codes
/// As in CPython: `0` after the target returned, `N` when it called `exit(N)`, `1` when it
/// panicked (message and location are printed on the child's stderr and returned by
/// [`result`](Process::result)), `-N` when signal `N` killed it.
///
/// A `ForkServer` child outlives a forkserver that dies (killed, say): it is still tracked,
/// alive while it runs ([`is_alive`](Process::is_alive), [`join`](Process::join) and the
/// sentinel wait for it), with an exit code once it ends. Nobody that could tell us reaps it
/// then (its new parent is init or the nearest subreaper), so the code is the real one if this
/// process is that subreaper (`PR_SET_CHILD_SUBREAPER`), else the one the child reports itself
/// (`0` or `1` as above, when its target returned or panicked), else `255`: it was killed by a
/// signal or called `exit` itself. CPython reports `255` too, but at once, while the child may
/// still run. The next start gets a new forkserver.
///
/// # Standard streams
/// A child's standard input is `/dev/null` under every start method, as in CPython: it never
/// competes with its parent (or the forkserver) for the terminal or a pipe. Standard output and
/// error are the parent's.
///
/// # Lifetime
/// Dropping a `Process` neither stops nor waits for the child. Dropping one whose child has
/// exited reaps it and closes its descriptors (pidfd, sentinel, socket); a running child stays
/// registered, and its descriptors close when it is reaped. Finished children are reaped by
/// [`join`](Process::join), [`active_children`](crate::active_children) and the next `start`;
/// when the parent exits normally (returning from `main` or calling `std::process::exit`, or,
/// in a child, when its target returns or panics), daemon children are terminated and the
/// others joined, as in CPython. A daemon child is also
/// killed (`SIGKILL`) when its parent dies abruptly; with the `Fork` and `Spawn` methods
/// "parent" means the parent *thread* (Linux's `PR_SET_PDEATHSIG`), so start daemon children
/// from a thread that outlives them, or use the default `ForkServer` method.
pub struct Process<R = ()> {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    method: Option<StartMethod>,
    allow_threads: bool,
    target: Option<Box<dyn Target>>,
    child: Option<Arc<Child>>,
    result_taken: bool,
    result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &self.pid())
            .field("daemon", &self.daemon)
            .field("start_method", &self.method.unwrap_or_else(get_start_method))
            .field("exitcode", &self.exitcode())
            .finish()
    }
}

impl<R: Serialize + DeserializeOwned + 'static> Process<R> {
    /// A process that will run `target(args)`.
    ///
    /// `target` must be a `fn` item or a closure that captures nothing (a zero-sized type; a
    /// capturing closure is a compile-time error): a spawned child rebuilds it from its type.
    pub fn new<F, A>(target: F, args: A) -> Process<R>
    where
        F: Fn(A) -> R + Send + 'static,
        A: Serialize + DeserializeOwned + Send + 'static,
    {
        const { assert!(std::mem::size_of::<F>() == 0, "a process target must not capture anything") };
        Process::with_target(Box::new(FnTarget { target, args, result: PhantomData }), None)
    }

    /// A process that will run `closure` in a forked copy of this process: it may capture
    /// anything, and only the [`Fork`](StartMethod::Fork) start method can run it.
    ///
    /// ```no_run
    /// use multiproc_process::Process;
    ///
    /// let words = vec!["a", "b", "c"];
    /// let mut p = Process::from_closure(move || words.len());
    /// p.start()?;
    /// assert_eq!(p.result()?, 3);
    /// # Ok::<(), multiproc_process::Error>(())
    /// ```
    pub fn from_closure<C>(closure: C) -> Process<R>
    where
        C: FnOnce() -> R + Send + 'static,
    {
        Process::with_target(
            Box::new(ClosureTarget { closure, result: PhantomData }),
            Some(StartMethod::Fork),
        )
    }

    fn with_target(target: Box<dyn Target>, method: Option<StartMethod>) -> Process<R> {
        let (identity, name) = current::next_child();
        Process {
            name,
            identity,
            daemon: false,
            method,
            allow_threads: false,
            target: Some(target),
            child: None,
            result_taken: false,
            result: PhantomData,
        }
    }

    /// Starts the child.
    ///
    /// # Errors
    /// [`ErrorKind::AlreadyStarted`]; [`ErrorKind::Refused`] for a closure with a method other
    /// than `Fork`, or `Fork` while other threads run (see [`allow_threads`](Process::allow_threads));
    /// [`ErrorKind::Codec`] when the arguments cannot be encoded; [`ErrorKind::Io`] or
    /// [`ErrorKind::ForkServer`] when the system refuses.
    pub fn start(&mut self) -> Result<()> {
        // The target stays until the child has its own copy: a start that is refused (or
        // fails before a child exists) can be retried, for example with another method.
        if self.child.is_some() || self.target.is_none() {
            return Err(Error::new(ErrorKind::AlreadyStarted, "process already started"));
        }
        // Like CPython's start(), reap children that have finished meanwhile.
        children::reap_finished();
        // Keeps this crate's pre-main constructor linked into every binary that starts processes.
        std::hint::black_box(&sys::ON_LOAD);
        let method = self.method.unwrap_or_else(get_start_method);
        let child = match method {
            StartMethod::Fork => self.start_fork()?,
            StartMethod::Spawn | StartMethod::ForkServer => self.start_fresh(method)?,
        };
        // The child has its own copies of the target and of the argument descriptors now.
        self.target = None;
        let child = Arc::new(child);
        children::register(child.clone());
        self.child = Some(child);
        Ok(())
    }

    fn start_fork(&mut self) -> Result<Child> {
        if !self.allow_threads {
            let threads = thread_count();
            if threads > 1 {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "refusing to fork: {threads} threads are running and the child could deadlock on \
                         a lock one of them holds; use the Spawn or ForkServer start method, or \
                         allow_threads(true) to fork anyway"
                    ),
                ));
            }
        }
        let (ours, theirs) = wsys::socketpair().map_err(|e| Error::io("socketpair", e))?;
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let parent = current::as_parent();
        let parent_pid = parent.pid();
        // SAFETY: either this process is single-threaded (checked above) or the caller opted
        // in with allow_threads; the child runs the target and ends with exit_now.
        match unsafe { sys::fork() }.map_err(|e| Error::io("fork", e))? {
            sys::Forked::Child => {
                drop(ours);
                let Some(target) = self.target.take() else { boot::exit_child(1) };
                if self.daemon
                    && (sys::set_parent_death_signal(libc::SIGKILL).is_err() || sys::getppid() != parent_pid)
                {
                    boot::exit_child(1);
                }
                sys::stdin_from_dev_null();
                current::become_child(self.name.clone(), self.identity.clone(), self.daemon, parent);
                let code = target.run_forked(theirs.as_fd());
                boot::exit_child(code)
            }
            sys::Forked::Parent(pid) => {
                drop(theirs);
                self.target = None;
                let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e))?;
                Ok(Child::new(pid, self.name.clone(), self.daemon, pidfd, Watch::Direct, ours))
            }
        }
    }

    fn start_fresh(&mut self, method: StartMethod) -> Result<Child> {
        let Some(encoded) = self.target.as_ref().and_then(|target| target.encode()) else {
            return Err(Error::new(
                ErrorKind::Refused,
                format!("a closure can only run with the fork start method, not {method}"),
            ));
        };
        let (entry, args) = encoded.map_err(|e| Error::codec("cannot encode the arguments", e))?;
        let start = Start {
            offset: entry.offset,
            type_hash: entry.type_hash,
            name: self.name.clone(),
            identity: self.identity.clone(),
            daemon: self.daemon,
            parent: current::as_parent(),
            cwd: std::env::current_dir().ok().map(|dir| dir.into_os_string().into_vec()),
        };
        let payload = boot::start_payload(&start, &args.bytes)
            .map_err(|e| Error::codec("cannot encode the start message", e))?;
        let (ours, theirs) = wsys::socketpair().map_err(|e| Error::io("socketpair", e))?;
        // The message waits in the socket (or a memfd) until the child reads it.
        transfer::send(ours.as_fd(), transfer::TAG_START, &payload, &args.fds)
            .map_err(|e| Error::codec("cannot send the start message", e))?;
        match method {
            StartMethod::Spawn => {
                let fd = if theirs.as_raw_fd() == 3 { 4 } else { 3 };
                let env = forkserver::child_env(ENV_CHILD, fd);
                let pid = sys::spawn_self(&forkserver::argv0(), theirs.as_fd(), fd, &env)
                    .map_err(|e| Error::io("cannot spawn the child", e))?;
                drop(theirs);
                let pidfd = sys::pidfd_open(pid).map_err(|e| Error::io("pidfd_open", e))?;
                Ok(Child::new(pid, self.name.clone(), self.daemon, pidfd, Watch::Direct, ours))
            }
            _ => {
                let served = forkserver::spawn(theirs).map_err(|e| Error::new(ErrorKind::ForkServer, e))?;
                let watch = Watch::Served { status: served.status, report: served.report };
                Ok(Child::new(served.pid, self.name.clone(), self.daemon, served.pidfd, watch, ours))
            }
        }
    }

    /// Waits for the child to exit and returns its exit code.
    ///
    /// # Errors
    /// [`ErrorKind::NotStarted`], or [`ErrorKind::Io`] if waiting fails.
    pub fn join(&mut self) -> Result<i32> {
        let child = self.started()?;
        match child.wait(None) {
            Ok(Some(code)) => Ok(code),
            Ok(None) => unreachable!("waiting without a deadline ends only when the child exits"),
            Err(e) => Err(Error::io("cannot wait for the child", e)),
        }
    }

    /// Waits at most `timeout` for the child to exit; returns its exit code, or `None` if it
    /// is still running. Waits on the child's pidfd, without polling.
    ///
    /// # Errors
    /// As [`join`](Process::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<Option<i32>> {
        let child = self.started()?;
        child.wait(wsys::deadline_after(timeout)).map_err(|e| Error::io("cannot wait for the child", e))
    }

    /// Waits for the child and returns the value its target returned.
    ///
    /// # Errors
    /// [`ErrorKind::Panicked`] (with [`Error::panic_message`] and [`Error::panic_location`]),
    /// [`ErrorKind::Exited`] or [`ErrorKind::Signaled`] when the child ended without a
    /// result, [`ErrorKind::Bootstrap`] when it could not run the target,
    /// [`ErrorKind::Codec`] when the result cannot be encoded or decoded,
    /// [`ErrorKind::ResultTaken`] on a second call.
    pub fn result(&mut self) -> Result<R> {
        let code = self.join()?;
        if self.result_taken {
            return Err(Error::new(ErrorKind::ResultTaken, "the result was already taken"));
        }
        self.result_taken = true;
        let child = self.started()?;
        let deadline = Instant::now() + OUTCOME_TIMEOUT;
        match transfer::recv(child.sock.as_fd(), Some(deadline)) {
            Ok((transfer::TAG_VALUE, bytes, fds)) => multiproc_wire::decode_typed(&bytes, fds)
                .map_err(|e| Error::codec("cannot decode the result", e).with_code(Some(code))),
            Ok((transfer::TAG_PANIC, bytes, _)) => {
                let (message, location): (String, Option<String>) =
                    multiproc_wire::decode(&bytes, Vec::new())
                        .map_err(|e| Error::codec("cannot decode the panic report", e))?;
                Err(Error::panicked(message, location).with_code(Some(code)))
            }
            Ok((transfer::TAG_FAILED, bytes, _)) => {
                let message: String = multiproc_wire::decode(&bytes, Vec::new())
                    .unwrap_or_else(|_| "the child could not run its target".into());
                Err(Error::new(ErrorKind::Bootstrap, message).with_code(Some(code)))
            }
            Ok((transfer::TAG_UNENCODABLE, bytes, _)) => {
                let message: String = multiproc_wire::decode(&bytes, Vec::new())
                    .unwrap_or_else(|_| "the child cannot encode its result".into());
                Err(Error::new(ErrorKind::Codec, message).with_code(Some(code)))
            }
            Ok((tag, _, _)) => {
                Err(Error::new(ErrorKind::Codec, format!("unexpected message {tag} from the child")))
            }
            Err(_) if code == 0 => {
                Err(Error::new(ErrorKind::Exited, "the child exited without a result").with_code(Some(0)))
            }
            Err(_) => Err(Error::from_exit_code(code)),
        }
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            children::release(child);
        }
    }
}

impl<R> Process<R> {
    fn started(&self) -> Result<&Arc<Child>> {
        self.child.as_ref().ok_or_else(|| Error::new(ErrorKind::NotStarted, "process not started"))
    }

    /// The process's name: `Process-N` (`Process-1:N` in a child of `Process-1`) unless set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the name (before or after start; the child sees the name it was started with).
    pub fn set_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.name = name.into();
        self
    }

    /// Whether the process is a daemon.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Makes the process a daemon (before start): it is terminated when the parent exits
    /// normally and killed when the parent dies; see the type's documentation.
    pub fn set_daemon(&mut self, daemon: bool) -> &mut Self {
        self.daemon = daemon;
        self
    }

    /// The start method this process uses (the default method unless set).
    pub fn start_method(&self) -> StartMethod {
        self.method.unwrap_or_else(get_start_method)
    }

    /// Sets the start method (before start).
    pub fn set_start_method(&mut self, method: StartMethod) -> &mut Self {
        self.method = Some(method);
        self
    }

    /// Allows the `Fork` start method while other threads run. The child then holds copies of
    /// every lock those threads held at the moment of the fork (the allocator's, stdout's, any
    /// `Mutex`): it may deadlock unless the target avoids them.
    pub fn allow_threads(&mut self, allow: bool) -> &mut Self {
        self.allow_threads = allow;
        self
    }

    /// The child's process id, once started.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// Whether the child has been started and has not exited. Reaps it if it has.
    pub fn is_alive(&self) -> bool {
        self.child.as_ref().is_some_and(|c| matches!(c.poll_exit(), Ok(None)))
    }

    /// The exit code: `None` before start and while running, then as described in the type's
    /// documentation. Reaps the child if it has exited.
    pub fn exitcode(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| c.poll_exit().ok().flatten())
    }

    /// Sends `SIGTERM` to the child (nothing if it has already exited).
    ///
    /// # Errors
    /// [`ErrorKind::NotStarted`], or [`ErrorKind::Io`].
    pub fn terminate(&self) -> Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` to the child (nothing if it has already exited).
    ///
    /// # Errors
    /// [`ErrorKind::NotStarted`], or [`ErrorKind::Io`].
    pub fn kill(&self) -> Result<()> {
        self.signal(libc::SIGKILL)
    }

    fn signal(&self, signal: i32) -> Result<()> {
        self.started()?.signal(signal).map_err(|e| Error::io("cannot signal the child", e))
    }

    /// A descriptor that becomes readable when the child exits (CPython's `sentinel`), for use
    /// with `poll` or `multiproc`'s `wait`: the child's pidfd, under every start method. `None`
    /// before start.
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.child.as_ref().map(|c| c.sentinel())
    }
}
