//! Helpers shared by the pipe test binaries: time limits, unique socket addresses, test data, a
//! deterministic PRNG, bounded threads and child processes.

#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use multiproc_pipe::Connection;
use multiproc_process::{Process, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest a test waits for something that should happen at once; reaching it means a bug.
pub(crate) const LIMIT: Duration = Duration::from_secs(10);

/// The start methods usable inside the multithreaded test harness.
pub(crate) const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (in this or another test process) uses.
pub(crate) fn unique(tag: &str) -> String {
    format!("multiproc-pipe-{tag}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A socket path under the temporary directory that does not exist yet.
pub(crate) fn unique_path(tag: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}.sock", unique(tag)));
    assert!(!path.exists(), "{} already exists", path.display());
    path
}

/// Asserts that nothing is left at `path`.
pub(crate) fn assert_gone(path: &Path) {
    assert!(std::fs::symlink_metadata(path).is_err(), "{} was left behind", path.display());
}

/// `len` bytes that are not all the same, so that truncation, reordering or a lost piece shows.
pub(crate) fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A connection over one end of a Unix socket pair, and the raw other end, for writing frames
/// by hand.
pub(crate) fn raw_pair() -> (Connection, UnixStream) {
    let (ours, raw) = UnixStream::pair().expect("socketpair");
    raw.set_write_timeout(Some(LIMIT)).expect("set_write_timeout");
    raw.set_read_timeout(Some(LIMIT)).expect("set_read_timeout");
    (Connection::from(ours), raw)
}

/// A CPython frame header for a payload of `len` bytes: 4 bytes, or 12 with `long`.
pub(crate) fn header(len: u64, long: bool) -> Vec<u8> {
    if long {
        [(-1i32).to_be_bytes().as_slice(), &len.to_be_bytes()].concat()
    } else {
        i32::try_from(len).expect("a short header holds an i32").to_be_bytes().to_vec()
    }
}

/// Writes `bytes` to the raw end of a pair.
pub(crate) fn write_raw(raw: &mut UnixStream, bytes: &[u8]) {
    raw.write_all(bytes).expect("write to the raw socket");
}

/// A small deterministic PRNG (xorshift64*), so that a failing case can be reproduced.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability 1/`n`.
    pub(crate) fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Fewer than `n` random bytes.
    pub(crate) fn some_bytes(&mut self, n: u64) -> Vec<u8> {
        let len = self.below(n) as usize;
        self.bytes(len)
    }
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

    /// The thread, for signalling it.
    pub(crate) fn thread(&self) -> &thread::JoinHandle<()> {
        self.handle.as_ref().expect("not joined yet")
    }

    /// The thread's result; panics if it panicked or took longer than `timeout`.
    pub(crate) fn join(mut self, timeout: Duration) -> T {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(value)) => {
                self.handle.take().expect("joined once").join().expect("the thread finished");
                value
            }
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("{} did not finish within {timeout:?}", self.what),
        }
    }
}

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

/// Waits (at most [`LIMIT`], then kills) for the child to exit, asserts it exited with 0 and
/// returns its result.
pub(crate) fn finish<R>(mut p: Process<R>) -> R
where
    R: Serialize + DeserializeOwned + std::fmt::Debug + 'static,
{
    let method = p.start_method();
    let code = match p.join_timeout(LIMIT).expect("join_timeout") {
        Some(code) => code,
        None => {
            let _ = p.kill();
            let code = p.join().expect("join after kill");
            panic!("{method}: the child did not exit within {LIMIT:?} (killed: exit status {code})");
        }
    };
    let result = p.result();
    assert_eq!(code, 0, "{method}: the child's exit status is {code}: {result:?}");
    assert!(!p.is_alive(), "{method}: the child is still alive after join");
    result.unwrap_or_else(|e| panic!("{method}: the child's result: {e}"))
}
