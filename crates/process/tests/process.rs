//! Tests for `Process` under the `Spawn` and `ForkServer` start methods (the `Fork` method has
//! its own single-threaded test binary, `tests/fork.rs`), with real child processes.

mod common;

use std::fs;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use multiproc_process::call::{Call, Reply, Values};
use multiproc_process::{
    ErrorKind, Fd, Process, StartMethod, UnknownStartMethod, active_children, cpu_count, current_process,
    get_context, parent_process,
};

const METHODS: [StartMethod; 2] = [StartMethod::Spawn, StartMethod::ForkServer];

/// Names the helper run of [`runs_exit_helper`]: the start method it uses.
const EXIT_HELPER_VAR: &str = "MULTIPROC_TEST_EXIT_HELPER";
/// Where the helper's non-daemon child writes its marker.
const EXIT_HELPER_FILE_VAR: &str = "MULTIPROC_TEST_EXIT_HELPER_FILE";
/// Where the helper writes the pids of its children.
const EXIT_HELPER_PIDS_VAR: &str = "MULTIPROC_TEST_EXIT_HELPER_PIDS";

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// A process running `target(args)` with `method`.
fn process<F, A, R>(method: StartMethod, target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + Send + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = Process::new(target, args);
    p.set_start_method(method);
    p
}

/// Starts `target(args)` with `method`, checks that it exits with 0, and returns its result.
fn run<F, A, R>(method: StartMethod, target: F, args: A) -> R
where
    F: Fn(A) -> R + Send + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = process(method, target, args);
    p.start().unwrap_or_else(|e| panic!("{method}: start: {e:?}"));
    collect(method, &mut p)
}

/// Joins a started child, checks that it exited with 0 and is gone, and returns its result.
fn collect<R>(method: StartMethod, p: &mut Process<R>) -> R
where
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let code = p.join().expect("join");
    assert_eq!(code, 0, "{method}: exit code {code}");
    let value = p.result().unwrap_or_else(|e| panic!("{method}: result: {e:?}"));
    assert_reaped(p);
    value
}

/// Checks that a joined child no longer exists.
fn assert_reaped<R>(p: &Process<R>) {
    let pid = p.pid().expect("started");
    assert!(!p.is_alive(), "{pid} is alive after join");
    assert!(wait_until(|| stat(pid).is_none()), "{pid} still exists after join: {:?}", stat(pid));
}

/// Checks the style of an error's text: lowercase start, no trailing period.
fn assert_error_text(err: &multiproc_process::Error) {
    let text = err.to_string();
    assert!(!text.is_empty(), "{err:?} has no text");
    assert!(!text.starts_with(|c: char| c.is_uppercase()) && !text.ends_with('.'), "error text {text:?}");
}

fn panics(message: String) -> u32 {
    panic!("{message}")
}

#[test]
fn returns_values() {
    for method in METHODS {
        assert_eq!(run(method, cube, 3), 27, "{method}");
        assert_eq!(run(method, greet, "world".to_owned()), "hello, world");
        assert_eq!(run(method, reversed, vec![1, -2, 3]), vec![3, -2, 1]);
        assert_eq!(run(method, mirrored, sample_point()), mirrored(sample_point()));
        assert_eq!(run(method, |x: (u8, bool)| x, (7, true)), (7, true));
        run(method, |(): ()| (), ());
    }
}

#[test]
fn carries_large_arguments_and_results() {
    // Around the 64 KiB limit of inline messages, and well past it (a memfd).
    let sizes = [0, 65_000, 65_531, 65_532, 65_536, 65_540, (1 << 20) + 5];
    for method in METHODS {
        for len in sizes {
            let bytes = pattern(len);
            let expected = (len, fnv(&bytes));
            assert_eq!(run(method, digest, bytes), expected, "{method}: argument {len}");
            let back = run(method, make_pattern, len);
            assert!(back == pattern(len), "{method}: result of {len} bytes differs");
        }
    }
}

#[test]
fn reports_exit_codes() {
    for method in METHODS {
        let mut p = process(method, exit_with, 3);
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 3, "{method}: exit code {code}");
        assert_eq!(p.exitcode(), Some(3), "{method}");
        let err = p.result().expect_err("no result after exit(3)");
        assert_eq!(err.kind(), ErrorKind::Exited, "{method}: {err:?}");
        assert_eq!(err.exit_code(), Some(3), "{method}: {err:?}");
        assert_eq!(err.signal(), None);
        assert_error_text(&err);

        // exit(0) before returning: a clean exit, but no value.
        let mut p = process(method, exit_with, 0);
        p.start().expect("start");
        let err = p.result().expect_err("no result after exit(0)");
        assert_eq!(err.kind(), ErrorKind::Exited, "{method}: {err:?}");
        assert_eq!(err.exit_code(), Some(0), "{method}: {err:?}");
        assert_eq!(p.exitcode(), Some(0), "{method}");
    }
}

#[test]
fn reports_panics() {
    for method in METHODS {
        let mut p = process(method, panics, "it broke".to_owned());
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 1, "{method}: exit code {code}");
        let err = p.result().expect_err("a panic");
        assert_eq!(err.kind(), ErrorKind::Panicked, "{method}: {err:?}");
        assert_eq!(err.panic_message(), Some("it broke"), "{method}: {err:?}");
        assert_eq!(err.exit_code(), Some(1), "{method}: {err:?}");
        let location = err.panic_location().expect("a location");
        assert!(location.contains("tests/process.rs:"), "{method}: {location}");
        assert!(err.to_string().contains("it broke"), "{err}");
        assert_error_text(&err);
    }
}

#[test]
fn reports_signals() {
    for method in METHODS {
        for (signal, name) in [(libc::SIGKILL, "SIGKILL"), (libc::SIGABRT, "SIGABRT")] {
            let mut p = process(method, raise, signal);
            p.start().expect("start");
            let code = p.join().expect("join");
            assert_eq!(code, -signal, "{method}: exit code {code}");
            let err = p.result().expect_err("killed");
            assert_eq!(err.kind(), ErrorKind::Signaled, "{method}: {err:?}");
            assert_eq!(err.signal(), Some(signal), "{method}: {err:?}");
            assert_eq!(err.exit_code(), Some(-signal), "{method}: {err:?}");
            assert!(err.to_string().contains(name), "{err}");
            assert_error_text(&err);
        }
    }
}

#[test]
fn joins_with_timeout() {
    for method in METHODS {
        let mut p = Reaped(process(method, sleep_ms, 60_000));
        p.start().expect("start");
        assert_eq!(p.join_timeout(Duration::from_millis(50)).expect("join"), None);
        assert!(p.is_alive(), "{method}");
        assert_eq!(p.exitcode(), None, "{method}");
        p.terminate().expect("terminate");
        let code = p.join().expect("join");
        assert_eq!(code, -libc::SIGTERM, "{method}: exit code {code}");
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), Some(-libc::SIGTERM));
        // Signalling a reaped child is not an error and changes nothing.
        p.terminate().expect("terminate again");
        p.kill().expect("kill after exit");
        assert_eq!(p.join_timeout(Duration::ZERO).expect("join"), Some(-libc::SIGTERM));
        let err = p.result().expect_err("terminated");
        assert_eq!(err.signal(), Some(libc::SIGTERM), "{method}: {err:?}");
        assert_reaped(&p);

        let mut p = Reaped(process(method, sleep_ms, 60_000));
        p.start().expect("start");
        p.kill().expect("kill");
        let code = p.join().expect("join");
        assert_eq!(code, -libc::SIGKILL, "{method}: exit code {code}");
        assert_reaped(&p);

        // A child that ends within the timeout.
        let mut p = process(method, sleep_ms, 10);
        p.start().expect("start");
        let code = p.join_timeout(Duration::from_secs(10)).expect("join");
        assert_eq!(code, Some(0), "{method}: exit code {code:?}");
        assert_reaped(&p);
    }
}

#[test]
fn signals_the_sentinel() {
    for method in METHODS {
        let mut p = Reaped(process(method, sleep_ms, 60_000));
        assert!(p.sentinel().is_none());
        p.start().expect("start");
        let sentinel = p.sentinel().expect("started");
        assert!(!readable(sentinel, Duration::from_millis(50)), "{method}");
        p.kill().expect("kill");
        assert!(
            readable(p.sentinel().expect("started"), Duration::from_secs(5)),
            "{method}: the sentinel stays unreadable after the child died"
        );
        let code = p.join().expect("join");
        assert_eq!(code, -libc::SIGKILL, "{method}: exit code {code}");
        // Still readable after the child was reaped.
        assert!(readable(p.sentinel().expect("started"), Duration::from_secs(5)));
    }
}

#[test]
fn passes_descriptors() {
    for method in METHODS {
        let (mut reader, writer) = UnixStream::pair().expect("socketpair");
        reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let text = format!("written by a {method} child").into_bytes();
        let writer = Fd::from(OwnedFd::from(writer));
        let mut p = process(method, write_to, (writer, text.clone()));
        p.start().expect("start");
        // The parent's copy is closed once the child has started: the reader sees the end.
        let mut got = Vec::new();
        reader.read_to_end(&mut got).expect("read to the end");
        assert_eq!(got, text, "{method}");
        assert_eq!(collect(method, &mut p), text.len());
        assert_eq!(p.exitcode(), Some(0));

        // A descriptor as the result.
        let fd = run(method, pipe_with, "from the child".to_owned());
        assert_eq!(read_all(fd), b"from the child", "{method}");

        // Several at once, inside a struct.
        let (a, a_in) = UnixStream::pair().expect("socketpair");
        let (b, b_in) = UnixStream::pair().expect("socketpair");
        let args = vec![
            (Fd::from(OwnedFd::from(a_in)), b"first".to_vec()),
            (Fd::from(OwnedFd::from(b_in)), b"second".to_vec()),
        ];
        let n = run(method, |all: Vec<(Fd, Vec<u8>)>| all.into_iter().map(write_to).sum::<usize>(), args);
        assert_eq!(n, 11);
        assert_eq!(read_all(Fd::from(OwnedFd::from(a))), b"first");
        assert_eq!(read_all(Fd::from(OwnedFd::from(b))), b"second");
    }
}

#[test]
fn names_processes() {
    let a: Process<u64> = Process::new(cube, 1);
    let b: Process<u64> = Process::new(cube, 1);
    let number = |p: &Process<u64>| -> u32 {
        p.name()
            .strip_prefix("Process-")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("default name {:?}", p.name()))
    };
    assert!(number(&b) > number(&a), "{} then {}", a.name(), b.name());

    for method in METHODS {
        let mut p = process(method, whoami, ());
        let n = p.name().strip_prefix("Process-").expect("default name").to_owned();
        p.start().expect("start");
        let pid = p.pid().expect("started");
        let me = collect(method, &mut p);
        assert_eq!(me.name, format!("Process-{n}"), "{method}");
        assert_eq!(me.identity, vec![n.parse::<u32>().expect("number")]);
        assert_eq!(me.next_child_name, format!("Process-{n}:1"), "{method}");
        assert_eq!(me.pid, pid, "{method}");
        assert!(!me.daemon, "{method}");
        assert_eq!(me.parent, Some((my_pid(), "MainProcess".to_owned())), "{method}");

        let mut p = process(method, whoami, ());
        p.set_name("worker").set_daemon(true);
        assert_eq!(p.name(), "worker");
        assert!(p.daemon());
        assert_eq!(p.start_method(), method);
        p.start().expect("start");
        let me = collect(method, &mut p);
        assert_eq!(me.name, "worker", "{method}");
        assert!(me.daemon, "{method}: the daemon flag is not seen in the child");
        assert_eq!(me.next_child_name, format!("Process-{}:1", me.identity[0]));
    }

    let me = current_process();
    assert_eq!(me.name(), "MainProcess");
    assert_eq!(me.pid(), my_pid());
    assert!(!me.daemon());
    assert!(me.identity().is_empty());
    assert_eq!(parent_process(), None);
}

#[test]
fn forks_children_from_the_server() {
    for method in METHODS {
        // The child waits until the parent has looked at it (or has gone).
        let (go, wait) = UnixStream::pair().expect("socketpair");
        let mut p = process(method, whoami_when_told, Fd::from(OwnedFd::from(wait)));
        p.start().expect("start");
        let pid = p.pid().expect("started");
        let (_, ppid) = stat(pid).expect("running");
        drop(go);
        let me = collect(method, &mut p);
        assert_eq!(me.parent.map(|(pid, _)| pid), Some(my_pid()), "{method}");
        assert_eq!(ppid, me.ppid as i32, "{method}");
        match method {
            StartMethod::ForkServer => {
                assert_ne!(ppid, my_pid(), "a forkserver child is a child of the server")
            }
            _ => assert_eq!(ppid, my_pid(), "{method}: parent {ppid}"),
        }
    }
}

#[test]
fn lists_active_children() {
    for method in METHODS {
        let mut p = Reaped(process(method, sleep_ms, 60_000));
        p.set_name("sleeper").set_daemon(true);
        p.start().expect("start");
        let pid = p.pid().expect("started");
        let mine: Vec<_> = active_children().into_iter().filter(|c| c.pid() == pid).collect();
        assert_eq!(mine.len(), 1, "{method}: {pid} not listed");
        assert_eq!(mine[0].name(), "sleeper");
        assert!(mine[0].daemon());
        p.kill().expect("kill");
        // Listing reaps what has finished: wait for the sentinel, not with join.
        assert!(readable(p.sentinel().expect("started"), Duration::from_secs(5)));
        assert!(active_children().iter().all(|c| c.pid() != pid), "{method}: {pid} listed after it exited");
        assert_eq!(p.exitcode(), Some(-libc::SIGKILL), "{method}");
        assert_reaped(&p);
    }
}

#[test]
fn keeps_children_listed_while_others_start() {
    // Another thread that starts and reaps children must never hide ours.
    let mut p = Reaped(process(StartMethod::Spawn, sleep_ms, 60_000));
    p.start().expect("start");
    let pid = p.pid().expect("started");
    let (done_tx, done_rx) = mpsc::channel();
    let churn = std::thread::spawn(move || {
        for i in 0..20 {
            let method = METHODS[i % 2];
            assert_eq!(run(method, cube, 2), 8);
            for _ in 0..50 {
                active_children();
            }
        }
        done_tx.send(()).expect("send");
    });
    let mut checks = 0;
    while done_rx.try_recv().is_err() {
        let listed = active_children();
        assert!(
            listed.iter().any(|c| c.pid() == pid),
            "{pid} missing from active_children after {checks} checks: {listed:?}"
        );
        checks += 1;
    }
    churn.join().expect("churn thread");
    p.kill().expect("kill");
    let code = p.join().expect("join");
    assert_eq!(code, -libc::SIGKILL, "exit code {code}");
}

#[test]
fn serves_concurrent_starts() {
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut started: Vec<_> = (0..5u64)
                    .map(|i| {
                        let mut p = process(StartMethod::ForkServer, cube, t * 10 + i);
                        p.start().expect("start");
                        (t * 10 + i, p)
                    })
                    .collect();
                for (x, p) in &mut started {
                    assert_eq!(collect(StartMethod::ForkServer, p), *x * *x * *x);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a starting thread failed");
    }
}

#[test]
fn refuses_closures() {
    for method in METHODS {
        let data = String::from("abc");
        let mut p = Process::from_closure(move || data.len());
        assert_eq!(p.start_method(), StartMethod::Fork);
        p.set_start_method(method);
        let err = p.start().expect_err("a closure cannot be spawned");
        assert_eq!(err.kind(), ErrorKind::Refused, "{method}: {err:?}");
        assert!(err.is_refused());
        assert_error_text(&err);
        assert_eq!(p.pid(), None);
        assert_eq!(p.join().expect_err("not started").kind(), ErrorKind::NotStarted);
    }
}

#[test]
fn refuses_fork_with_threads() {
    let (tx, rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let mut p = process(StartMethod::Fork, cube, 2);
    let err = p.start().expect_err("fork with threads");
    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert!(err.to_string().contains("allow_threads"), "{err}");
    assert_error_text(&err);
    assert_eq!(p.pid(), None);
    // Refusing did not use the process up: another method can still run it.
    p.set_start_method(StartMethod::Spawn);
    p.start().expect("start with spawn after the refusal");
    assert_eq!(collect(StartMethod::Spawn, &mut p), 8);
    drop(tx);
    let _ = other.join();
}

#[test]
fn refuses_misuse() {
    for method in METHODS {
        let mut p = process(method, cube, 2);
        assert_eq!(p.join().expect_err("join").kind(), ErrorKind::NotStarted);
        assert_eq!(p.join_timeout(Duration::ZERO).expect_err("join").kind(), ErrorKind::NotStarted);
        assert_eq!(p.terminate().expect_err("terminate").kind(), ErrorKind::NotStarted);
        assert_eq!(p.kill().expect_err("kill").kind(), ErrorKind::NotStarted);
        let err = p.result().expect_err("result");
        assert_eq!(err.kind(), ErrorKind::NotStarted);
        assert_error_text(&err);
        assert!(!p.is_alive());
        assert_eq!(p.exitcode(), None);
        assert_eq!(p.pid(), None);

        p.start().expect("start");
        let err = p.start().expect_err("second start");
        assert_eq!(err.kind(), ErrorKind::AlreadyStarted, "{method}: {err:?}");
        assert_error_text(&err);
        assert_eq!(collect(method, &mut p), 8);
        let err = p.result().expect_err("second result");
        assert_eq!(err.kind(), ErrorKind::ResultTaken, "{method}: {err:?}");
        assert_error_text(&err);
        assert_eq!(p.join().expect("join again"), 0);
        assert_reaped(&p);
    }
}

#[test]
fn refuses_unencodable_arguments() {
    for method in METHODS {
        let mut p = process(method, take_unserializable, Unserializable);
        let err = p.start().expect_err("unencodable");
        assert_eq!(err.kind(), ErrorKind::Codec, "{method}: {err:?}");
        assert_error_text(&err);
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        assert_eq!(p.pid(), None, "{method}: a child was started");
    }
}

#[test]
fn reports_undecodable_arguments() {
    for method in METHODS {
        let mut p = process(method, take_undeserializable, Undeserializable);
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 1, "{method}: exit code {code}");
        let err = p.result().expect_err("undecodable");
        assert_eq!(err.kind(), ErrorKind::Bootstrap, "{method}: {err:?}");
        assert!(err.to_string().contains("refuses to be deserialized"), "{err}");
        assert_eq!(err.exit_code(), Some(1));
        assert_error_text(&err);
    }
}

fn square(x: u64) -> u64 {
    x * x
}

/// Runs a call in the child, as a pool worker does.
fn run_call(call: Call) -> Reply {
    call.run().expect("child: run")
}

/// An error's text with its sources.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(err) = source {
        text = format!("{text}: {err}");
        source = err.source();
    }
    text
}

#[test]
fn refuses_call_results_decoded_as_another_type() {
    for method in METHODS {
        let call = Call::batch(square, &[6u64, 7]).unwrap();
        // Untyped, the u64 results would decode as two (denormal) f64s.
        let reply = run(method, run_call, call.try_clone().unwrap());
        let err = reply.decode::<f64>().expect_err("u64 results were decoded as f64");
        assert_eq!(err.kind(), ErrorKind::Codec, "{method}: {err:?}");
        let text = chain(&err);
        assert!(text.contains("expected a `alloc::vec::Vec<f64>`"), "{method}: {text}");
        let reply = run(method, run_call, call);
        let values = match reply.decode_values::<u64>().unwrap() {
            Values::All(values) => values,
            Values::Mixed(_) => panic!("{method}: nothing panicked"),
        };
        assert_eq!(values, [36, 49], "{method}");
    }
}

#[test]
fn reports_uncodable_results() {
    for method in METHODS {
        // The child cannot encode its result.
        let mut p = process(method, return_unserializable, ());
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 1, "{method}: exit code {code}");
        let err = p.result().expect_err("unencodable result");
        assert_eq!(err.kind(), ErrorKind::Codec, "{method}: {err:?}");
        assert!(err.to_string().contains("refuses to be serialized"), "{err}");
        assert_eq!(err.exit_code(), Some(1));

        // The parent cannot decode it.
        let mut p = process(method, |(): ()| Undeserializable, ());
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, 0, "{method}: exit code {code}");
        let err = p.result().expect_err("undecodable result");
        assert_eq!(err.kind(), ErrorKind::Codec, "{method}: {err:?}");
        assert_eq!(err.exit_code(), Some(0));
        assert_error_text(&err);
    }
}

#[test]
fn kills_daemon_grandchildren_when_their_parent_dies() {
    for method in METHODS {
        for inner in StartMethod::all() {
            let (mut reader, writer) = UnixStream::pair().expect("socketpair");
            reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let args = (inner.name().to_owned(), Fd::from(OwnedFd::from(writer)));
            let mut p = process(method, start_daemon_then_die, args);
            p.start().expect("start");
            let mut pid = [0u8; 4];
            reader.read_exact(&mut pid).unwrap_or_else(|e| panic!("{method}/{inner}: no pid: {e}"));
            let grandchild = i32::from_le_bytes(pid);
            let code = p.join().expect("join");
            assert_eq!(code, -libc::SIGKILL, "{method}/{inner}: exit code {code}");
            assert!(
                wait_dead(grandchild),
                "{method}/{inner}: daemon grandchild {grandchild} survived its parent: {:?}",
                stat(grandchild)
            );
        }
    }
}

#[test]
fn terminates_daemon_grandchildren_when_their_parent_returns() {
    for method in METHODS {
        for inner in StartMethod::all() {
            let mut p = process(method, start_daemon, inner.name().to_owned());
            p.start().expect("start");
            let code = p.join().expect("join");
            assert_eq!(code, 0, "{method}/{inner}: exit code {code}");
            let grandchild = collect(method, &mut p);
            assert!(
                wait_dead(grandchild),
                "{method}/{inner}: daemon grandchild {grandchild} survived its parent: {:?}",
                stat(grandchild)
            );
        }
    }
}

#[test]
fn joins_grandchildren_before_their_parent_exits() {
    for method in METHODS {
        for inner in StartMethod::all() {
            let path = temp_path("grandchild");
            let mut p = process(method, start_slow_writer, (inner.name().to_owned(), path.clone()));
            p.start().expect("start");
            let code = p.join().expect("join");
            assert_eq!(code, 0, "{method}/{inner}: exit code {code}");
            let grandchild = collect(method, &mut p);
            assert_eq!(
                take_file(&path).as_deref(),
                Some("grandchild"),
                "{method}/{inner}: the child exited before its non-daemon child"
            );
            assert!(wait_dead(grandchild), "{method}/{inner}: {grandchild} still runs");
        }
    }
}

/// The helper of [`exits_like_cpython`]: a no-op unless its variable is set.
#[test]
fn runs_exit_helper() {
    let Ok(method) = std::env::var(EXIT_HELPER_VAR) else {
        return;
    };
    let method: StartMethod = method.parse().expect("method");
    let path = std::env::var_os(EXIT_HELPER_FILE_VAR).expect("file");
    let mut writer = process(method, sleep_then_write, (300, path.into(), "joined".to_owned()));
    writer.start().expect("start the writer");
    let mut daemon = process(method, sleep_ms, 600_000);
    daemon.set_daemon(true);
    daemon.start().expect("start the daemon");
    let pids = format!("{} {}", writer.pid().expect("started"), daemon.pid().expect("started"));
    fs::write(std::env::var_os(EXIT_HELPER_PIDS_VAR).expect("pids"), pids).expect("write pids");
    // Returning lets the program exit with both children running.
}

#[test]
fn exits_like_cpython() {
    for method in METHODS {
        let tag = unique_tag("exit");
        let file = temp_path("exit-marker");
        let pids = temp_path("exit-pids");
        let (ok, output) = run_helper(
            Command::new(std::env::current_exe().expect("test binary"))
                .args(["--exact", "runs_exit_helper", "--nocapture", "--test-threads=1"])
                .env(EXIT_HELPER_VAR, method.name())
                .env(EXIT_HELPER_FILE_VAR, &file)
                .env(EXIT_HELPER_PIDS_VAR, &pids)
                .env(TAG_VAR, &tag),
        );
        assert!(ok, "{method}: helper failed: {output}");
        assert!(output.contains("1 passed"), "{method}: the helper did not run: {output}");
        let pids = take_file(&pids).expect("the helper's pids");
        assert_eq!(
            take_file(&file).as_deref(),
            Some("joined"),
            "{method}: the program exited without joining its non-daemon child"
        );
        let left = wait_untagged(&tag);
        assert!(left.is_empty(), "{method}: processes left behind by the helper (children {pids}): {left:?}");
    }
}

#[test]
fn uses_contexts() {
    for method in METHODS {
        let ctx = get_context(method);
        assert_eq!(ctx.start_method(), method);
        let mut p = ctx.process(cube, 4);
        assert_eq!(p.start_method(), method);
        p.start().expect("start");
        assert_eq!(collect(method, &mut p), 64);
        assert_eq!(p.exitcode(), Some(0));
    }
    for method in StartMethod::all() {
        assert_eq!(method.name().parse::<StartMethod>(), Ok(method));
        assert_eq!(method.to_string(), method.name());
    }
    assert_eq!(StartMethod::default(), StartMethod::ForkServer);
    let err: UnknownStartMethod = "threads".parse::<StartMethod>().expect_err("unknown");
    assert!(err.to_string().contains("\"threads\""), "{err}");
}

#[test]
fn counts_cpus() {
    let n = cpu_count();
    assert!(n >= 1);
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(n >= usable, "{n} online CPUs but {usable} usable");
}

#[test]
fn describes_processes_in_debug_output() {
    let mut p = process(StartMethod::Spawn, cube, 1);
    p.set_name("shown");
    let text = format!("{p:?}");
    assert!(text.contains("shown") && text.contains("Spawn"), "{text}");
    p.start().expect("start");
    assert_eq!(p.join().expect("join"), 0);
    let text = format!("{p:?}");
    assert!(text.contains(&p.pid().expect("pid").to_string()), "{text}");
    assert!(text.contains("Some(0)"), "{text}");
}
