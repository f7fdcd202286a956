//! Helpers shared by the manager's test binaries: time limits, start methods, checks that
//! processes and sockets are gone.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]
#![allow(unreachable_pub, reason = "a test helper module, private to each test binary")]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use multiproc_manager::{Address, Manager};
use multiproc_process::StartMethod;

/// The bound on anything that should finish: a bug fails the test instead of hanging it.
pub const LIMIT: Duration = Duration::from_secs(20);

/// How long something that happens at once (a process disappearing) may take.
pub const SETTLE: Duration = Duration::from_secs(5);

/// A short wait, for calls expected to time out.
pub const SHORT: Duration = Duration::from_millis(100);

/// The start methods usable inside the multithreaded test harness.
pub const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// Runs `f` on its own thread and waits at most [`LIMIT`] for it: a hang fails the test (a
/// panic in `f` fails it with `f`'s message).
pub fn scenario<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    within(LIMIT, "the scenario", f)
}

/// Runs `f` on its own thread and waits at most `limit` for it.
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

/// A manager whose server runs with `method`.
pub fn start(method: StartMethod) -> Manager {
    Manager::builder()
        .start_method(method)
        .start()
        .unwrap_or_else(|e| panic!("start a manager ({method}): {e:?}"))
}

/// A name no other test (in this or another test process) uses.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("multiproc-manager-test-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A socket path under the temporary directory that does not exist yet.
pub fn unique_path(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}.sock", unique(tag)));
    assert!(!path.exists(), "{} already exists", path.display());
    path
}

/// Whether process `pid` exists (a zombie counts: nobody has reaped it).
pub fn exists(pid: u32) -> bool {
    std::fs::metadata(format!("/proc/{pid}")).is_ok()
}

/// Asserts that process `pid` disappears within [`SETTLE`].
pub fn assert_gone(pid: u32) {
    let deadline = Instant::now() + SETTLE;
    while exists(pid) {
        assert!(Instant::now() < deadline, "process {pid} still exists");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether a socket listens at `address` (abstract names are read from `/proc/net/unix`).
pub fn listening(address: &Address) -> bool {
    match address {
        Address::Unix(path) => std::fs::symlink_metadata(path).is_ok(),
        Address::Abstract(name) => {
            let wanted = format!("@{}", String::from_utf8_lossy(name));
            std::fs::read_to_string("/proc/net/unix")
                .expect("read /proc/net/unix")
                .lines()
                .any(|line| line.split_whitespace().last() == Some(wanted.as_str()))
        }
        Address::Tcp(addr) => std::net::TcpStream::connect_timeout(addr, SHORT).is_ok(),
    }
}

/// Asserts that a manager's server is gone without a trace: its process and its socket.
pub fn assert_nothing_left(pid: u32, address: &Address) {
    assert_gone(pid);
    assert!(!listening(address), "the socket at {address} was left behind");
}

/// Kills process `pid` with `SIGKILL`.
pub fn kill(pid: u32) {
    let status =
        std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -KILL {pid}: {status}");
}

/// Sends signal `name` (`INT`, `TERM`, ...) to process `pid` and waits (at most [`SETTLE`])
/// until it has been delivered or discarded, or the process has died: its effect is done.
pub fn deliver(pid: u32, name: &str, number: u32) {
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid.to_string()]).status();
    assert!(status.as_ref().is_ok_and(|s| s.success()), "kill -{name} {pid}: {status:?}");
    let deadline = Instant::now() + SETTLE;
    loop {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let zombie = text.lines().any(|l| l.starts_with("State:") && l.contains('Z'));
        let pending = text.lines().any(|line| {
            let mask = line.strip_prefix("SigPnd:").or_else(|| line.strip_prefix("ShdPnd:"));
            mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
                .is_some_and(|m| m & (1 << (number - 1)) != 0)
        });
        if text.is_empty() || zombie || !pending {
            return;
        }
        assert!(Instant::now() < deadline, "signal {name} stays pending for {pid}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
