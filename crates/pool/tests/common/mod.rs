//! Tasks, gates and `/proc` helpers shared by the pool's test binaries.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]
#![allow(unreachable_pub, reason = "a test helper module, private to each test binary")]

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use multiproc_process::Fd;
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should happen at once (a process disappearing).
pub const SETTLE: Duration = Duration::from_secs(5);

/// The bound on anything that should finish: a bug fails the test instead of hanging it.
pub const LONG: Duration = Duration::from_secs(20);

// ---- tasks -------------------------------------------------------------------------------

pub fn square(x: u64) -> u64 {
    x * x
}

pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

pub fn fma(a: i64, b: i64, c: i64) -> i64 {
    a * b + c
}

/// The worker's pid.
pub fn pid(_: ()) -> u32 {
    std::process::id()
}

/// The worker process.
pub fn me(_: ()) -> Proc {
    Proc::me()
}

/// The item and the worker process that ran it.
pub fn with_proc(x: u64) -> (u64, Proc) {
    (x, Proc::me())
}

pub fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Panics on 3.
pub fn fragile(x: u64) -> u64 {
    if x == 3 {
        panic!("three is not allowed");
    }
    x
}

/// A struct that travels both ways.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Point {
    pub x: i64,
    pub y: i64,
    pub label: String,
    pub tags: Option<Vec<String>>,
}

pub fn mirrored(p: Point) -> Point {
    Point { x: -p.x, y: -p.y, label: p.label.chars().rev().collect(), tags: p.tags }
}

pub fn point(i: i64) -> Point {
    Point { x: i, y: -2 * i, label: format!("p{i}"), tags: (i % 2 == 0).then(|| vec![format!("t{i}")]) }
}

/// How a task ends its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Death {
    /// `raise(SIGKILL)`.
    Raise,
    /// `kill(getpid(), SIGKILL)`.
    Kill,
    /// `std::process::abort()`.
    Abort,
    /// `std::process::exit(3)`.
    Exit3,
}

/// A task's input: a value to return, or a way to die.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Job {
    Value(u64),
    Die(Death),
}

/// Returns the value or kills the worker.
pub fn run_job(job: Job) -> u64 {
    match job {
        Job::Value(x) => x,
        Job::Die(death) => die(death),
    }
}

/// Ends the calling process as `death` says.
pub fn die(death: Death) -> u64 {
    match death {
        // SAFETY: raise sends a signal to the calling thread; SIGKILL ends the process.
        Death::Raise => unsafe {
            libc::raise(libc::SIGKILL);
        },
        // SAFETY: kill sends a signal to this process; SIGKILL ends it.
        Death::Kill => unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        },
        Death::Abort => std::process::abort(),
        Death::Exit3 => std::process::exit(3),
    }
    unreachable!("{death:?} did not end the worker");
}

/// A result whose serialization always fails (in the worker).
#[derive(Debug)]
pub struct Unserializable;

impl Serialize for Unserializable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to be serialized"))
    }
}

impl<'de> Deserialize<'de> for Unserializable {
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Ok(Unserializable)
    }
}

pub fn make_unserializable(_: ()) -> Unserializable {
    Unserializable
}

pub fn take_unserializable(_: Unserializable) -> u32 {
    1
}

// ---- initializers --------------------------------------------------------------------------

static GREETING: OnceLock<String> = OnceLock::new();

/// Sets this worker's greeting and appends it to `log`.
pub fn init_greeting((greeting, log): (String, PathBuf)) {
    log_me(&log);
    GREETING.set(greeting).expect("the initializer runs once per worker");
}

/// The item, the greeting the initializer set in this worker, and the worker.
pub fn greeting(x: u64) -> (u64, Option<String>, Proc) {
    (x, GREETING.get().cloned(), Proc::me())
}

/// Appends this process to `log`, then panics.
pub fn init_failing(log: PathBuf) {
    log_me(&log);
    panic!("no database here");
}

/// Succeeds until `marker` exists; then appends this process to `log` and panics.
pub fn init_failing_once_marked((marker, log): (PathBuf, PathBuf)) {
    if marker.exists() {
        log_me(&log);
        panic!("the marker is set");
    }
}

/// Appends this process to `path`, one line per call.
pub fn log_me(path: &Path) {
    let me = Proc::me();
    let mut file = OpenOptions::new().create(true).append(true).open(path).expect("open the log");
    // One write per line: appends from several processes do not interleave.
    file.write_all(format!("{} {}\n", me.pid, me.start).as_bytes()).expect("write the log");
}

/// The processes in a log written by [`log_me`] (empty if there is none).
pub fn read_log(path: &Path) -> Vec<Proc> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let (pid, start) = line.split_once(' ').expect("pid and start time");
            Proc { pid: pid.parse().expect("pid"), start: start.parse().expect("start time") }
        })
        .collect()
}

// ---- gates: tasks that run until the test says so ------------------------------------------

/// The test's end of a socket whose other end a [`gated`] task holds.
#[derive(Debug)]
pub struct Gate {
    ours: UnixStream,
}

/// A gate and the descriptor to pass to [`gated`] or [`announce_then_sleep`].
pub fn gate() -> (Gate, Fd) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    // Shorter than the scenario's bound, so that a task that never starts says so.
    ours.set_read_timeout(Some(LONG / 2)).expect("read timeout");
    (Gate { ours }, Fd::from(OwnedFd::from(theirs)))
}

impl Gate {
    /// Waits (at most half of [`LONG`]) until the task has started; returns its worker.
    pub fn started(&mut self) -> Proc {
        let mut bytes = [0u8; 12];
        self.ours.read_exact(&mut bytes).expect("the gated task did not start in time");
        let (pid, start) = bytes.split_at(4);
        Proc {
            pid: u32::from_le_bytes(pid.try_into().expect("4 bytes")),
            start: u64::from_le_bytes(start.try_into().expect("8 bytes")),
        }
    }

    /// Lets the task finish.
    pub fn open(mut self) {
        let _ = self.ours.write_all(b"go");
    }
}

fn announce(stream: &mut UnixStream) -> Proc {
    let me = Proc::me();
    let mut bytes = me.pid.to_le_bytes().to_vec();
    bytes.extend_from_slice(&me.start.to_le_bytes());
    stream.write_all(&bytes).expect("announce the start");
    me
}

/// Announces its worker on `fd`, waits until the gate opens (or closes), returns the worker.
pub fn gated(fd: Fd) -> Proc {
    let mut stream = UnixStream::from(fd.into_inner());
    let me = announce(&mut stream);
    let mut go = [0u8; 1];
    let _ = stream.read(&mut go);
    me
}

/// Announces its worker on `fd`, then sleeps for a minute.
pub fn announce_then_sleep(fd: Fd) -> Proc {
    let me = announce(&mut UnixStream::from(fd.into_inner()));
    std::thread::sleep(Duration::from_secs(60));
    me
}

// ---- processes -----------------------------------------------------------------------------

/// A process, told apart from a later one with the same pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Proc {
    pub pid: u32,
    pub start: u64,
}

impl Proc {
    /// The calling process.
    pub fn me() -> Proc {
        proc_of(std::process::id())
    }
}

/// Fields of `/proc/<pid>/stat` after the command name: state is `[0]`, ppid `[1]`, start time
/// `[19]`.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_owned).collect())
}

/// The running process `pid` (it must exist now).
pub fn proc_of(pid: u32) -> Proc {
    let fields = stat_fields(pid).unwrap_or_else(|| panic!("process {pid} does not exist"));
    Proc { pid, start: fields[19].parse().expect("start time") }
}

/// The parent of the running process `pid`.
pub fn parent_of(pid: u32) -> u32 {
    stat_fields(pid).unwrap_or_else(|| panic!("process {pid} does not exist"))[1].parse().expect("ppid")
}

/// Whether the process still exists (a zombie counts: nobody has reaped it).
pub fn exists(p: Proc) -> bool {
    stat_fields(p.pid).is_some_and(|fields| fields[19].parse() == Ok(p.start))
}

/// Asserts that every one of `procs` disappears within [`SETTLE`].
pub fn assert_gone(procs: impl IntoIterator<Item = Proc>) {
    let procs: BTreeSet<Proc> = procs.into_iter().collect();
    let deadline = Instant::now() + SETTLE;
    loop {
        let left: Vec<Proc> = procs.iter().copied().filter(|&p| exists(p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "worker processes still exist: {left:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `f` on its own thread and waits at most `limit` for it: a hang fails the test (a
/// panic in `f` fails it with `f`'s message).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Runs a test's scenario with the [`LONG`] bound.
pub fn scenario(f: impl FnOnce() + Send + 'static) {
    within(LONG, "the scenario", f);
}

// ---- files ---------------------------------------------------------------------------------

/// A fresh directory for one test, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("multiproc-pool-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create the test directory");
        TempDir(path)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
