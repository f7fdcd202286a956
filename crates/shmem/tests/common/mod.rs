//! Helpers shared by the shmem test binaries: time limits, child processes that are always
//! reaped, bounded threads, and the entries of `/dev/shm`.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use multiproc_process::{Process, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest a test waits for something that should happen at once; reaching it means a bug.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// A timeout that is expected to pass.
pub(crate) const SHORT: Duration = Duration::from_millis(50);

/// The start methods usable inside the multithreaded test harness.
pub(crate) const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// Starts `target(args)` in a child process with `method`.
pub(crate) fn start<F, A, R>(method: StartMethod, target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + 'static,
{
    let mut p = Process::new(target, args);
    p.set_start_method(method);
    p.start().unwrap_or_else(|e| panic!("{method}: cannot start the child: {e}"));
    p
}

/// Waits (at most [`LIMIT`], then kills) for the child to exit; its exit code.
pub(crate) fn reap<R: Serialize + DeserializeOwned + 'static>(p: &mut Process<R>) -> i32 {
    let method = p.start_method();
    match p.join_timeout(LIMIT).expect("join_timeout") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let code = p.join().expect("join after kill");
            panic!("{method}: the child did not exit within {LIMIT:?} (killed: exit status {code})");
        }
    }
}

/// Waits for the child, asserts it exited with 0 and returns its result.
pub(crate) fn finish<R>(mut p: Process<R>) -> R
where
    R: Serialize + DeserializeOwned + std::fmt::Debug + 'static,
{
    let method = p.start_method();
    let code = reap(&mut p);
    let result = p.result();
    assert_eq!(code, 0, "{method}: the child's exit status is {code}: {result:?}");
    result.unwrap_or_else(|e| panic!("{method}: the child's result: {e}"))
}

/// Kills the child with `SIGKILL`, reaps it and asserts that the signal killed it.
pub(crate) fn kill<R: Serialize + DeserializeOwned + 'static>(mut p: Process<R>) {
    let method = p.start_method();
    p.kill().expect("kill");
    let code = reap(&mut p);
    assert_eq!(code, -libc::SIGKILL, "{method}: the killed child's exit status");
}

/// A thread whose result is awaited with a time limit, so that a blocked call fails the test
/// instead of hanging it.
#[derive(Debug)]
pub(crate) struct Bounded<T> {
    what: String,
    rx: mpsc::Receiver<thread::Result<T>>,
    handle: Option<thread::JoinHandle<()>>,
}

impl<T: Send + 'static> Bounded<T> {
    pub(crate) fn spawn(what: &str, f: impl FnOnce() -> T + Send + 'static) -> Bounded<T> {
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        Bounded { what: what.to_owned(), rx, handle: Some(handle) }
    }

    /// The thread's result; panics if it panicked or took longer than [`LIMIT`].
    pub(crate) fn join(mut self) -> T {
        match self.rx.recv_timeout(LIMIT) {
            Ok(Ok(value)) => {
                self.handle.take().expect("joined once").join().expect("the thread finished");
                value
            }
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("{} did not finish within {LIMIT:?}", self.what),
        }
    }
}

/// The names in `/dev/shm` that start with `prefix`.
pub(crate) fn shm_entries(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("read /dev/shm")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

/// Whether `/dev/shm/<name>` exists.
pub(crate) fn shm_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm").join(name).exists()
}

/// The number of open descriptors of this process.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd").count()
}
