//! Tests for interoperation with CPython's `multiprocessing.connection` (the installed
//! `python3`): each side's `Client` connects to the other's `Listener`, over a Unix path and
//! TCP, authenticates with the authkey handshake and exchanges `send_bytes`/`recv_bytes`
//! messages; a wrong key fails on both sides. The CPython side is `tests/cpython_peer.py`.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use common::*;
use multiproc_pipe::{Address, Client, Connection, Error, Listener};

const KEY: &str = "shared secret";

/// Killing a process that overran its time.
mod sys {
    /// Sends `SIGKILL` to `pid`.
    pub(crate) fn kill(pid: u32) {
        // SAFETY: kill only sends a signal; `pid` is a child of this process that has not been
        // reaped yet (the caller has not received its exit status), so it names that child.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    }
}

/// A running `python3 tests/cpython_peer.py ...`.
struct Python {
    pid: u32,
    lines: mpsc::Receiver<String>,
    stderr: thread::JoinHandle<String>,
    status: mpsc::Receiver<std::io::Result<std::process::ExitStatus>>,
}

impl Python {
    fn start(mode: &str, family: &str, address: &str, key: &str) -> Python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cpython_peer.py");
        let mut child = Command::new("python3")
            .args([script, mode, family, address, key])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3, which the CPython interop tests need: {e}"));
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let (status_tx, status) = mpsc::channel();
        thread::spawn(move || {
            let _ = status_tx.send(child.wait());
        });
        Python { pid, lines, stderr, status }
    }

    /// The next line python prints.
    fn line(&self) -> String {
        self.lines.recv_timeout(LIMIT).unwrap_or_else(|_| {
            sys::kill(self.pid);
            panic!("python printed nothing within {LIMIT:?}")
        })
    }

    /// Waits for python to exit (killing it after [`LIMIT`]); returns its exit code and stderr.
    fn finish(self) -> (i32, String) {
        let status = match self.status.recv_timeout(LIMIT) {
            Ok(status) => status.expect("wait for python"),
            Err(_) => {
                sys::kill(self.pid);
                let status = self.status.recv().expect("python's status after kill");
                let stderr = self.stderr.join().unwrap_or_default();
                panic!("python did not exit within {LIMIT:?}; killed: {status:?}; stderr:\n{stderr}");
            }
        };
        let stderr = self.stderr.join().expect("python's stderr");
        let code = status.code().unwrap_or_else(|| panic!("python died: {status}; stderr:\n{stderr}"));
        (code, stderr)
    }

    /// Waits for python and checks its exit code.
    fn expect_exit(self, expected: i32, what: &str) -> String {
        let (code, stderr) = self.finish();
        assert_eq!(code, expected, "{what}: python's exit status is {code}; stderr:\n{stderr}");
        stderr
    }
}

/// The Rust side of `exchange` in cpython_peer.py.
fn exchange(conn: &mut Connection) {
    assert_eq!(conn.recv_bytes_timeout(LIMIT).unwrap(), b"hello from python");
    conn.send_bytes(b"hello from rust").unwrap();
    assert_eq!(conn.recv_bytes_timeout(LIMIT).unwrap(), b"");
    let big = pattern(1 << 20);
    conn.send_bytes(&big).unwrap();
    let back = conn.recv_bytes_timeout(LIMIT).unwrap();
    assert!(back.iter().rev().eq(big.iter()), "the large message came back damaged");
    conn.send_bytes(b"bye").unwrap();
    assert!(matches!(conn.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)));
}

/// A Unix path and TCP address for a multiproc listener, with python's names for them.
fn listeners(key: &[u8]) -> Vec<(Listener, &'static str, String)> {
    let unix = Listener::bind(unique_path("cpython"), Some(key)).unwrap();
    let unix_address = unix.address().to_string();
    let tcp = Listener::bind(Address::localhost(0), Some(key)).unwrap();
    let tcp_address = tcp.address().to_string();
    vec![(unix, "unix", unix_address), (tcp, "tcp", tcp_address)]
}

#[test]
fn accepts_a_cpython_client() {
    for (listener, family, address) in listeners(KEY.as_bytes()) {
        let python = Python::start("client", family, &address, KEY);
        let mut conn = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{family}: accept: {e}"));
        exchange(&mut conn);
        python.expect_exit(0, family);
        drop(listener);
        if family == "unix" {
            assert_gone(Path::new(&address));
        }
    }
}

#[test]
fn connects_to_a_cpython_listener() {
    for family in ["unix", "tcp"] {
        let path = unique_path("cpython-listener");
        let requested = if family == "unix" { path.display().to_string() } else { "127.0.0.1:0".into() };
        let python = Python::start("listener", family, &requested, KEY);
        let address: Address = python.line().parse().unwrap();
        let mut conn = Client::new(address)
            .authkey(KEY.as_bytes())
            .timeout(LIMIT)
            .connect()
            .unwrap_or_else(|e| panic!("{family}: connect: {e}"));
        exchange(&mut conn);
        python.expect_exit(0, family);
        assert_gone(&path);
    }
}

#[test]
fn rejects_a_cpython_client_with_the_wrong_key() {
    for (listener, family, address) in listeners(KEY.as_bytes()) {
        let python = Python::start("client", family, &address, "wrong key");
        let err = listener.accept_timeout(LIMIT).unwrap_err();
        assert!(matches!(err, Error::Auth(_)), "{family}: {err:?}");
        let stderr = python.expect_exit(3, family);
        assert!(stderr.contains("AuthenticationError"), "{family}: {stderr}");
        // The listener carries on with the right key.
        let python = Python::start("client", family, &address, KEY);
        let mut conn = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{family}: accept: {e}"));
        exchange(&mut conn);
        python.expect_exit(0, family);
        drop(listener);
        if family == "unix" {
            assert_gone(Path::new(&address));
        }
    }
}

#[test]
fn is_rejected_by_a_cpython_listener_with_another_key() {
    for family in ["unix", "tcp"] {
        let path = unique_path("cpython-listener");
        let requested = if family == "unix" { path.display().to_string() } else { "127.0.0.1:0".into() };
        let python = Python::start("listener", family, &requested, KEY);
        let address: Address = python.line().parse().unwrap();
        let err = Client::new(address).authkey(b"wrong key").timeout(LIMIT).connect().unwrap_err();
        assert!(matches!(err, Error::Auth(_)), "{family}: {err:?}");
        let stderr = python.expect_exit(3, family);
        assert!(stderr.contains("AuthenticationError"), "{family}: {stderr}");
        assert_gone(&path);
    }
}
