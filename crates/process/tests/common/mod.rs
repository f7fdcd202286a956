//! Targets and `/proc` helpers shared by the process test binaries.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::ops::{Deref, DerefMut};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use multiproc_process::{Fd, Process, StartMethod, current_process, parent_process};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How long a test waits for something that should happen at once (a process disappearing).
pub(crate) const SETTLE: Duration = Duration::from_secs(5);

/// The environment variable that marks every process of a re-executed helper run.
pub(crate) const TAG_VAR: &str = "MULTIPROC_TEST_TAG";

// ---- targets -----------------------------------------------------------------------------

pub(crate) fn cube(x: u64) -> u64 {
    x * x * x
}

pub(crate) fn greet(name: String) -> String {
    format!("hello, {name}")
}

pub(crate) fn reversed(mut v: Vec<i32>) -> Vec<i32> {
    v.reverse();
    v
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Point {
    pub(crate) x: i64,
    pub(crate) y: i64,
    pub(crate) label: String,
    pub(crate) tags: Option<Vec<String>>,
}

pub(crate) fn mirrored(p: Point) -> Point {
    Point { x: -p.x, y: -p.y, label: p.label.chars().rev().collect(), tags: p.tags }
}

pub(crate) fn sample_point() -> Point {
    Point { x: 3, y: -7, label: "abc".into(), tags: Some(vec!["t".into()]) }
}

/// `len` bytes that are not all the same, so that truncation or reordering shows.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The length and a checksum of a (large) argument.
pub(crate) fn digest(bytes: Vec<u8>) -> (usize, u64) {
    (bytes.len(), fnv(&bytes))
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// A large result.
pub(crate) fn make_pattern(len: usize) -> Vec<u8> {
    pattern(len)
}

pub(crate) fn exit_with(code: i32) {
    std::process::exit(code)
}

/// Raises `signal` on the calling process.
pub(crate) fn raise(signal: i32) {
    // SAFETY: raise only sends a signal to the calling thread; the tests use SIGKILL and
    // SIGABRT, whose default actions end the process.
    unsafe { libc::raise(signal) };
    unreachable!("signal {signal} did not end the process");
}

pub(crate) fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// Sleeps, then writes `text` to `path`: shows whether the process was waited for.
pub(crate) fn sleep_then_write((ms, path, text): (u64, PathBuf, String)) {
    std::thread::sleep(Duration::from_millis(ms));
    fs::write(path, text).expect("write the marker file");
}

/// Writes `bytes` to a descriptor received as an argument; returns how many were written.
pub(crate) fn write_to((fd, bytes): (Fd, Vec<u8>)) -> usize {
    let mut file = File::from(fd.into_inner());
    file.write_all(&bytes).expect("write to the received descriptor");
    bytes.len()
}

/// Returns the read end of a socket whose other end has received `text` and is closed.
pub(crate) fn pipe_with(text: String) -> Fd {
    let (mut ours, theirs) = UnixStream::pair().expect("socketpair");
    ours.write_all(text.as_bytes()).expect("write");
    Fd::from(std::os::fd::OwnedFd::from(theirs))
}

/// Reads a descriptor to its end.
pub(crate) fn read_all(fd: Fd) -> Vec<u8> {
    let mut out = Vec::new();
    File::from(fd.into_inner()).read_to_end(&mut out).expect("read");
    out
}

/// What a child knows about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Whoami {
    pub(crate) name: String,
    pub(crate) pid: i32,
    pub(crate) daemon: bool,
    pub(crate) identity: Vec<u32>,
    pub(crate) parent: Option<(i32, String)>,
    /// `getppid()`: the forkserver for its children.
    pub(crate) ppid: u32,
    /// The name its own first child would get.
    pub(crate) next_child_name: String,
}

pub(crate) fn whoami(_: ()) -> Whoami {
    let me = current_process();
    let next: Process<u64> = Process::new(cube, 1);
    Whoami {
        name: me.name().to_owned(),
        pid: me.pid(),
        daemon: me.daemon(),
        identity: me.identity().to_vec(),
        parent: parent_process().map(|p| (p.pid(), p.name().to_owned())),
        ppid: std::os::unix::process::parent_id(),
        next_child_name: next.name().to_owned(),
    }
}

/// [`whoami`], once `fd` has reached its end (the parent closed its side).
pub(crate) fn whoami_when_told(fd: Fd) -> Whoami {
    let _ = read_all(fd);
    whoami(())
}

/// A value whose serialization always fails.
#[derive(Debug)]
pub(crate) struct Unserializable;

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

pub(crate) fn take_unserializable(_: Unserializable) -> u32 {
    1
}

pub(crate) fn return_unserializable(_: ()) -> Unserializable {
    Unserializable
}

/// A value that serializes but never deserializes.
#[derive(Debug)]
pub(crate) struct Undeserializable;

impl Serialize for Undeserializable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(7)
    }
}

impl<'de> Deserialize<'de> for Undeserializable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let _ = u32::deserialize(d)?;
        Err(serde::de::Error::custom("this value refuses to be deserialized"))
    }
}

pub(crate) fn take_undeserializable(_: Undeserializable) -> u32 {
    1
}

/// Starts a daemon grandchild with `method` that sleeps for a minute and returns its pid.
pub(crate) fn start_daemon(method: String) -> i32 {
    let mut p = Process::new(sleep_ms, 60_000);
    p.set_daemon(true).set_start_method(method.parse::<StartMethod>().expect("method"));
    p.start().expect("start the grandchild");
    p.pid().expect("started")
}

/// Starts a daemon grandchild with `method`, reports its pid on `fd`, and dies by `SIGKILL`
/// without any chance to clean up.
pub(crate) fn start_daemon_then_die((method, fd): (String, Fd)) {
    let pid = start_daemon(method);
    let mut file = File::from(fd.into_inner());
    file.write_all(&pid.to_le_bytes()).expect("report the pid");
    drop(file);
    raise(libc::SIGKILL);
}

/// Starts a non-daemon grandchild with `method` that sleeps and then writes `path`, and returns
/// at once: the child must wait for it before it exits.
pub(crate) fn start_slow_writer((method, path): (String, PathBuf)) -> i32 {
    let mut p = Process::new(sleep_then_write, (100, path, "grandchild".to_owned()));
    p.set_start_method(method.parse::<StartMethod>().expect("method"));
    p.start().expect("start the grandchild");
    p.pid().expect("started")
}

// ---- helpers -----------------------------------------------------------------------------

/// A process that is killed and reaped when dropped: a failing test leaves nothing running.
pub(crate) struct Reaped<R: Serialize + DeserializeOwned + 'static>(pub(crate) Process<R>);

impl<R: Serialize + DeserializeOwned + 'static> Deref for Reaped<R> {
    type Target = Process<R>;

    fn deref(&self) -> &Process<R> {
        &self.0
    }
}

impl<R: Serialize + DeserializeOwned + 'static> DerefMut for Reaped<R> {
    fn deref_mut(&mut self) -> &mut Process<R> {
        &mut self.0
    }
}

impl<R: Serialize + DeserializeOwned + 'static> Drop for Reaped<R> {
    fn drop(&mut self) {
        if self.0.pid().is_some() {
            let _ = self.0.kill();
            let _ = self.0.join();
        }
    }
}

/// A path in the temporary directory, unique to this process and call.
pub(crate) fn temp_path(what: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "multiproc-process-test-{}-{}-{what}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A tag unique to this process and call, for [`TAG_VAR`].
pub(crate) fn unique_tag(what: &str) -> String {
    temp_path(what).file_name().expect("file name").to_string_lossy().into_owned()
}

/// The state letter of `pid` (`R`, `S`, `Z`, ...) and its parent pid, or `None` once it is gone.
pub(crate) fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is gone or a zombie: it no longer runs.
pub(crate) fn is_dead(pid: i32) -> bool {
    matches!(stat(pid), None | Some(('Z' | 'X', _)))
}

/// Waits (at most [`SETTLE`]) until `pid` no longer runs; whether it stopped.
pub(crate) fn wait_dead(pid: i32) -> bool {
    wait_until(|| is_dead(pid))
}

/// Polls `done` every 10 ms for at most [`SETTLE`]; whether it became true.
pub(crate) fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SETTLE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The processes whose environment holds `TAG_VAR=tag`, with their state (zombies included).
pub(crate) fn tagged(tag: &str) -> Vec<(i32, char)> {
    let needle = format!("{TAG_VAR}={tag}");
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            found.push((pid, stat(pid).map_or('?', |s| s.0)));
        }
    }
    found
}

/// Waits (at most [`SETTLE`]) until no process carries `tag`; the ones left otherwise.
pub(crate) fn wait_untagged(tag: &str) -> Vec<(i32, char)> {
    let mut left = Vec::new();
    wait_until(|| {
        left = tagged(tag);
        left.is_empty()
    });
    left
}

/// Runs a re-executed helper with its output in a file (a pipe would also wait for every
/// process that inherited it), for at most 30 s; returns whether it succeeded, and its output.
pub(crate) fn run_helper(command: &mut Command) -> (bool, String) {
    let log = temp_path("helper-output");
    let file = File::create(&log).expect("create the helper's log");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup"))
        .stderr(file)
        .spawn()
        .expect("start the helper");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the helper") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the helper did not finish in 30 s: {}", take_file(&log).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = take_file(&log).unwrap_or_default();
    (status.success(), format!("{status}\n{output}"))
}

/// Reads `path` and removes it; `None` if it does not exist.
pub(crate) fn take_file(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let _ = fs::remove_file(path);
    Some(text)
}

/// Whether `fd` becomes readable within `timeout` (`poll`).
pub(crate) fn readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: `pfd` is one valid, writable pollfd for a descriptor borrowed for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    n == 1
}

/// Whether `signal` is pending for `pid` (`SigPnd` or `ShdPnd` in `/proc/PID/status`); `false`
/// once the process is gone.
pub(crate) fn signal_pending(pid: i32, signal: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let bit = 1u64 << (signal - 1);
    status.lines().any(|line| {
        let mask = line.strip_prefix("SigPnd:").or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok()).is_some_and(|m| m & bit != 0)
    })
}

/// Whether `pid` ignores `signal` (`SigIgn` in `/proc/PID/status`).
pub(crate) fn ignores_signal(pid: i32, signal: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let bit = 1u64 << (signal - 1);
    status
        .lines()
        .filter_map(|line| line.strip_prefix("SigIgn:"))
        .filter_map(|m| u64::from_str_radix(m.trim(), 16).ok())
        .any(|m| m & bit != 0)
}

/// Sends `signal` to `pid` and waits (at most [`SETTLE`]) until it has been delivered (or
/// discarded because it is ignored), or the process has died (a zombie's signals stay
/// pending): what it does to the process has been done by then.
pub(crate) fn deliver(pid: i32, signal: i32) {
    // SAFETY: kill only sends a signal; the callers pass processes they own and have not
    // reaped, whose pids cannot have been reused.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "kill({pid}, {signal})");
    assert!(
        wait_until(|| is_dead(pid) || !signal_pending(pid, signal)),
        "signal {signal} stays pending for {pid}"
    );
}

/// Whether `/proc/PID/fd/N` is `/dev/null` (same device and inode).
pub(crate) fn is_dev_null(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), fs::metadata("/dev/null")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino() && a.rdev() == b.rdev(),
        _ => false,
    }
}

/// What a child finds on its standard input: whether it is `/dev/null`, and what reading it
/// to the end gives.
pub(crate) fn read_stdin(_: ()) -> (bool, Vec<u8>) {
    let null = is_dev_null(Path::new("/proc/self/fd/0"));
    let mut input = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut input);
    (null, input)
}

/// The number of descriptors open in this process.
pub(crate) fn fd_count() -> usize {
    // The directory's own descriptor is counted each time alike.
    fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}
