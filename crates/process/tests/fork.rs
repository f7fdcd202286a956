//! Tests for `Process` under the `Fork` start method, with real child processes.
//!
//! Forking inside the multithreaded libtest harness would copy the harness's locks into the
//! children, so this binary has its own harness (`harness = false`): `main` runs each test on
//! the main thread, one after the other, while the process has no other thread. The tests that
//! change process-wide state (the default start method, the working directory, the forkserver)
//! live here too, for the same reason: nothing runs beside them.

mod common;

use std::fs;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use multiproc_process::{
    ErrorKind, Fd, Process, StartMethod, active_children, current_process, get_start_method, set_start_method,
};

const FORK: StartMethod = StartMethod::Fork;

/// Names the helper run of [`exits_like_cpython`]: where its non-daemon child writes.
const EXIT_HELPER_VAR: &str = "MULTIPROC_TEST_FORK_EXIT_HELPER";

const TESTS: &[(&str, fn())] = &[
    ("returns_values", returns_values),
    ("runs_closures", runs_closures),
    ("carries_large_arguments_and_results", carries_large_arguments_and_results),
    ("reports_exit_codes", reports_exit_codes),
    ("reports_panics", reports_panics),
    ("reports_signals", reports_signals),
    ("joins_with_timeout", joins_with_timeout),
    ("signals_the_sentinel", signals_the_sentinel),
    ("passes_descriptors", passes_descriptors),
    ("names_processes", names_processes),
    ("lists_active_children", lists_active_children),
    ("refuses_while_threads_run", refuses_while_threads_run),
    ("forks_after_threads_end", forks_after_threads_end),
    ("forks_with_allowed_threads", forks_with_allowed_threads),
    ("refuses_misuse", refuses_misuse),
    ("skips_argument_encoding", skips_argument_encoding),
    ("reports_uncodable_results", reports_uncodable_results),
    ("kills_daemon_grandchildren_when_their_parent_dies", kills_daemon_grandchildren_when_their_parent_dies),
    (
        "terminates_daemon_grandchildren_when_their_parent_returns",
        terminates_daemon_grandchildren_when_their_parent_returns,
    ),
    ("joins_grandchildren_before_their_parent_exits", joins_grandchildren_before_their_parent_exits),
    ("exits_like_cpython", exits_like_cpython),
    ("sets_the_default_start_method", sets_the_default_start_method),
    ("follows_the_working_directory", follows_the_working_directory),
    ("restarts_a_dead_forkserver", restarts_a_dead_forkserver),
    ("keeps_inheritable_descriptors_out", keeps_inheritable_descriptors_out),
    ("tracks_children_of_a_dead_forkserver", tracks_children_of_a_dead_forkserver),
    ("reports_exits_it_cannot_see", reports_exits_it_cannot_see),
    ("keeps_the_forkserver_through_sigint", keeps_the_forkserver_through_sigint),
    ("gives_children_null_stdin", gives_children_null_stdin),
    ("closes_descriptors_of_dropped_children", closes_descriptors_of_dropped_children),
    // Last: checks what all the others left.
    ("leaves_no_children", leaves_no_children),
];

fn main() -> std::process::ExitCode {
    if std::env::var_os(ORPHAN_HELPER_VAR).is_some() {
        run_orphan_helper();
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(path) = std::env::var_os(EXIT_HELPER_VAR) {
        run_exit_helper(path.into());
        return std::process::ExitCode::SUCCESS;
    }
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(120))
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// A forked process running `target(args)`.
fn forked<F, A, R>(target: F, args: A) -> Process<R>
where
    F: Fn(A) -> R + Send + 'static,
    A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let mut p = Process::new(target, args);
    p.set_start_method(FORK);
    p
}

/// Starts `p` and returns its result (see [`collect`]).
fn finish<R>(mut p: Process<R>) -> R
where
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    p.start().unwrap_or_else(|e| panic!("start: {e:?}"));
    collect(&mut p)
}

/// Joins a started child, checks that it exited with 0 and is gone, and returns its result.
fn collect<R>(p: &mut Process<R>) -> R
where
    R: serde::Serialize + serde::de::DeserializeOwned + 'static,
{
    let code = p.join().expect("join");
    assert_eq!(code, 0, "exit code {code}");
    let value = p.result().unwrap_or_else(|e| panic!("result: {e:?}"));
    let pid = p.pid().expect("started");
    assert!(stat(pid).is_none(), "{pid} still exists after join: {:?}", stat(pid));
    value
}

fn panics(message: String) -> u32 {
    panic!("{message}")
}

fn returns_values() {
    assert_eq!(finish(forked(cube, 3)), 27);
    assert_eq!(finish(forked(greet, "world".to_owned())), "hello, world");
    assert_eq!(finish(forked(reversed, vec![1, -2, 3])), vec![3, -2, 1]);
    assert_eq!(finish(forked(mirrored, sample_point())), mirrored(sample_point()));
}

fn runs_closures() {
    let words: Vec<String> = ["a", "bb"].map(String::from).to_vec();
    let p = Process::from_closure(move || words.iter().map(String::len).sum::<usize>());
    assert_eq!(p.start_method(), FORK);
    assert_eq!(finish(p), 3);

    // A closure may capture a descriptor; the child's copy is its own.
    let (mut reader, writer) = UnixStream::pair().expect("socketpair");
    reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut writer = Some(writer);
    let p = Process::from_closure(move || {
        writer.take().expect("once").write_all(b"captured").expect("write");
    });
    finish(p);
    let mut got = Vec::new();
    reader.read_to_end(&mut got).expect("read to the end");
    assert_eq!(got, b"captured");
}

fn carries_large_arguments_and_results() {
    for len in [0, 65_531, 65_532, 65_540, (1 << 20) + 5] {
        let bytes = pattern(len);
        let expected = (len, fnv(&bytes));
        assert_eq!(finish(forked(digest, bytes)), expected, "argument of {len} bytes");
        assert!(finish(forked(make_pattern, len)) == pattern(len), "result of {len} bytes differs");
    }
}

fn reports_exit_codes() {
    let mut p = forked(exit_with, 3);
    p.start().expect("start");
    let code = p.join().expect("join");
    assert_eq!(code, 3, "exit code {code}");
    assert_eq!(p.exitcode(), Some(3));
    let err = p.result().expect_err("no result after exit(3)");
    assert_eq!(err.kind(), ErrorKind::Exited, "{err:?}");
    assert_eq!(err.exit_code(), Some(3), "{err:?}");
}

fn reports_panics() {
    let mut p = forked(panics, "it broke".to_owned());
    p.start().expect("start");
    let code = p.join().expect("join");
    assert_eq!(code, 1, "exit code {code}");
    let err = p.result().expect_err("a panic");
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err:?}");
    assert_eq!(err.panic_message(), Some("it broke"), "{err:?}");
    let location = err.panic_location().expect("a location");
    assert!(location.contains("tests/fork.rs:"), "{location}");

    let mut p = Process::<()>::from_closure(|| std::panic::panic_any(42u8));
    p.start().expect("start");
    let err = p.result().expect_err("a panic");
    assert_eq!(err.kind(), ErrorKind::Panicked, "{err:?}");
    assert_eq!(err.exit_code(), Some(1), "{err:?}");
}

fn reports_signals() {
    for signal in [libc::SIGKILL, libc::SIGABRT] {
        let mut p = forked(raise, signal);
        p.start().expect("start");
        let code = p.join().expect("join");
        assert_eq!(code, -signal, "exit code {code}");
        let err = p.result().expect_err("killed");
        assert_eq!(err.kind(), ErrorKind::Signaled, "{err:?}");
        assert_eq!(err.signal(), Some(signal), "{err:?}");
    }
}

fn joins_with_timeout() {
    let mut p = Reaped(forked(sleep_ms, 60_000));
    p.start().expect("start");
    assert_eq!(p.join_timeout(Duration::from_millis(50)).expect("join"), None);
    assert!(p.is_alive());
    p.terminate().expect("terminate");
    let code = p.join().expect("join");
    assert_eq!(code, -libc::SIGTERM, "exit code {code}");
    assert_eq!(p.exitcode(), Some(-libc::SIGTERM));

    let mut p = Reaped(forked(sleep_ms, 60_000));
    p.start().expect("start");
    p.kill().expect("kill");
    let code = p.join().expect("join");
    assert_eq!(code, -libc::SIGKILL, "exit code {code}");
}

fn signals_the_sentinel() {
    let mut p = Reaped(forked(sleep_ms, 60_000));
    p.start().expect("start");
    assert!(!readable(p.sentinel().expect("started"), Duration::from_millis(50)));
    p.kill().expect("kill");
    assert!(readable(p.sentinel().expect("started"), Duration::from_secs(5)));
    let code = p.join().expect("join");
    assert_eq!(code, -libc::SIGKILL, "exit code {code}");
}

fn passes_descriptors() {
    let (mut reader, writer) = UnixStream::pair().expect("socketpair");
    reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut p = forked(write_to, (Fd::from(OwnedFd::from(writer)), b"forked".to_vec()));
    p.start().expect("start");
    let mut got = Vec::new();
    reader.read_to_end(&mut got).expect("read to the end");
    assert_eq!(got, b"forked");
    assert_eq!(collect(&mut p), 6);
    assert_eq!(p.exitcode(), Some(0));

    let fd = finish(forked(pipe_with, "from the child".to_owned()));
    assert_eq!(read_all(fd), b"from the child");
}

fn names_processes() {
    let p = forked(whoami, ());
    let n: u32 = p.name().strip_prefix("Process-").and_then(|n| n.parse().ok()).expect("default name");
    let me = finish(p);
    assert_eq!(me.name, format!("Process-{n}"));
    assert_eq!(me.identity, vec![n]);
    assert_eq!(me.next_child_name, format!("Process-{n}:1"));
    assert!(!me.daemon);
    assert_eq!(me.parent, Some((my_pid(), "MainProcess".to_owned())));
    assert_eq!(me.ppid as i32, my_pid());

    let mut p = forked(whoami, ());
    p.set_name("worker").set_daemon(true);
    let me = finish(p);
    assert_eq!(me.name, "worker");
    assert!(me.daemon, "the daemon flag is not seen in the child");
    // The parent's own identity is untouched by its children's.
    assert_eq!(current_process().name(), "MainProcess");
}

fn lists_active_children() {
    let mut p = Reaped(forked(sleep_ms, 60_000));
    p.set_name("sleeper");
    p.start().expect("start");
    let pid = p.pid().expect("started");
    let listed = active_children();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].pid(), listed[0].name(), listed[0].daemon()), (pid, "sleeper", false));
    p.kill().expect("kill");
    assert!(readable(p.sentinel().expect("started"), Duration::from_secs(5)));
    assert!(active_children().is_empty(), "{:?}", active_children());
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
}

/// Runs `f` while another thread is alive.
fn with_thread<T>(f: impl FnOnce() -> T) -> T {
    let (tx, rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    let out = f();
    drop(tx);
    let _ = other.join();
    out
}

fn refuses_while_threads_run() {
    let mut p = forked(cube, 2);
    let err = with_thread(|| p.start().expect_err("fork with threads"));
    assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
    assert_eq!(p.pid(), None);
    assert_eq!(p.join().expect_err("not started").kind(), ErrorKind::NotStarted);
}

fn forks_after_threads_end() {
    // A joined thread leaves the kernel's list a moment after `join` returns: many rounds.
    for _ in 0..100 {
        std::thread::spawn(|| 1).join().expect("thread");
        assert_eq!(finish(forked(cube, 2)), 8);
    }
}

fn forks_with_allowed_threads() {
    // The refused process is not used up: allowed to, it forks.
    let mut p = forked(cube, 5);
    let value = with_thread(|| {
        let err = p.start().expect_err("fork with threads");
        assert_eq!(err.kind(), ErrorKind::Refused, "{err:?}");
        p.allow_threads(true);
        p.start().expect("start with threads allowed");
        collect(&mut p)
    });
    assert_eq!(value, 125);
    assert_eq!(p.exitcode(), Some(0));

    // A closure refused by another method forks once the method is fork again.
    let mut p = Process::from_closure(|| 9);
    p.set_start_method(StartMethod::Spawn);
    assert_eq!(p.start().expect_err("spawned closure").kind(), ErrorKind::Refused);
    p.set_start_method(FORK);
    assert_eq!(finish(p), 9);
}

fn refuses_misuse() {
    let mut p = forked(cube, 2);
    assert_eq!(p.join().expect_err("join").kind(), ErrorKind::NotStarted);
    assert_eq!(p.result().expect_err("result").kind(), ErrorKind::NotStarted);
    p.start().expect("start");
    assert_eq!(p.start().expect_err("second start").kind(), ErrorKind::AlreadyStarted);
    assert_eq!(collect(&mut p), 8);
    assert_eq!(p.result().expect_err("second result").kind(), ErrorKind::ResultTaken);
}

fn skips_argument_encoding() {
    // A forked child gets the arguments themselves: they need not survive encoding.
    assert_eq!(finish(forked(take_unserializable, Unserializable)), 1);
    assert_eq!(finish(forked(take_undeserializable, Undeserializable)), 1);
}

fn reports_uncodable_results() {
    let mut p = forked(return_unserializable, ());
    p.start().expect("start");
    let code = p.join().expect("join");
    assert_eq!(code, 1, "exit code {code}");
    let err = p.result().expect_err("unencodable result");
    assert_eq!(err.kind(), ErrorKind::Codec, "{err:?}");
    assert_eq!(err.exit_code(), Some(1));
}

fn kills_daemon_grandchildren_when_their_parent_dies() {
    for inner in StartMethod::all() {
        let (mut reader, writer) = UnixStream::pair().expect("socketpair");
        reader.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut p = forked(start_daemon_then_die, (inner.name().to_owned(), Fd::from(OwnedFd::from(writer))));
        p.start().expect("start");
        let mut pid = [0u8; 4];
        reader.read_exact(&mut pid).unwrap_or_else(|e| panic!("{inner}: no pid: {e}"));
        let grandchild = i32::from_le_bytes(pid);
        let code = p.join().expect("join");
        assert_eq!(code, -libc::SIGKILL, "{inner}: exit code {code}");
        assert!(
            wait_dead(grandchild),
            "{inner}: daemon grandchild {grandchild} survived: {:?}",
            stat(grandchild)
        );
    }
}

fn terminates_daemon_grandchildren_when_their_parent_returns() {
    for inner in StartMethod::all() {
        let grandchild = finish(forked(start_daemon, inner.name().to_owned()));
        assert!(
            wait_dead(grandchild),
            "{inner}: daemon grandchild {grandchild} survived: {:?}",
            stat(grandchild)
        );
    }
}

fn joins_grandchildren_before_their_parent_exits() {
    for inner in StartMethod::all() {
        let path = temp_path("fork-grandchild");
        let grandchild = finish(forked(start_slow_writer, (inner.name().to_owned(), path.clone())));
        assert_eq!(
            take_file(&path).as_deref(),
            Some("grandchild"),
            "{inner}: the child exited before its non-daemon child"
        );
        assert!(wait_dead(grandchild), "{inner}: {grandchild} still runs");
    }
}

/// The helper run of [`exits_like_cpython`]: starts a slow non-daemon child and a daemon child
/// that never ends, and returns from `main`.
fn run_exit_helper(path: std::path::PathBuf) {
    let mut writer = forked(sleep_then_write, (300, path, "joined".to_owned()));
    writer.start().expect("start the writer");
    let mut daemon = forked(sleep_ms, 600_000);
    daemon.set_daemon(true);
    daemon.start().expect("start the daemon");
}

fn exits_like_cpython() {
    let tag = unique_tag("fork-exit");
    let file = temp_path("fork-exit-marker");
    let (ok, output) = run_helper(
        Command::new(std::env::current_exe().expect("test binary"))
            .env(EXIT_HELPER_VAR, &file)
            .env(TAG_VAR, &tag),
    );
    assert!(ok, "helper failed: {output}");
    assert_eq!(take_file(&file).as_deref(), Some("joined"), "the program exited without joining its child");
    let left = wait_untagged(&tag);
    assert!(left.is_empty(), "processes left behind by the helper: {left:?}");
}

fn sets_the_default_start_method() {
    assert_eq!(get_start_method(), StartMethod::ForkServer);
    set_start_method(FORK);
    let p = Process::new(cube, 2);
    assert_eq!(p.start_method(), FORK);
    assert_eq!(finish(p), 8);
    set_start_method(StartMethod::ForkServer);
    assert_eq!(get_start_method(), StartMethod::ForkServer);
}

fn current_dir(_: ()) -> std::path::PathBuf {
    std::env::current_dir().expect("current directory")
}

/// Children start in the parent's working directory of the moment, as in CPython (whose
/// spawned and forkserver children `chdir` to the directory the parent reports): also under
/// `ForkServer`, whose server may have started elsewhere. Here because it changes the
/// directory of the whole test process.
fn follows_the_working_directory() {
    let before = std::env::current_dir().expect("current directory");
    // Make sure the forkserver runs, in the old directory.
    let mut p = Process::new(current_dir, ());
    p.set_start_method(StartMethod::ForkServer);
    assert_eq!(finish(p), before);
    let dir = temp_path("cwd");
    fs::create_dir(&dir).expect("create a directory");
    let dir = dir.canonicalize().expect("canonical");
    std::env::set_current_dir(&dir).expect("chdir");
    let seen: Vec<_> = StartMethod::all()
        .into_iter()
        .map(|method| {
            let mut p = Process::new(current_dir, ());
            p.set_start_method(method);
            (method, finish(p))
        })
        .collect();
    std::env::set_current_dir(&before).expect("chdir back");
    fs::remove_dir(&dir).expect("remove the directory");
    for (method, seen) in seen {
        assert_eq!(seen, dir, "{method}: the child runs in another directory");
    }
}

/// A forkserver that died is replaced before the next start, as CPython's `ensure_running`
/// does: no start fails for it, and the dead server is reaped.
fn restarts_a_dead_forkserver() {
    let mut p = Process::new(whoami, ());
    p.set_start_method(StartMethod::ForkServer);
    let server = finish(p).ppid as i32;
    assert_ne!(server, my_pid());
    // SAFETY: kill only sends a signal; `server` is our own child, not reaped yet, so its pid
    // cannot have been reused.
    assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0, "kill the forkserver");
    assert!(wait_dead(server), "the forkserver survived SIGKILL");
    for x in 0..3 {
        let mut p = Process::new(cube, x);
        p.set_start_method(StartMethod::ForkServer);
        p.start().unwrap_or_else(|e| panic!("start {x} after the server died: {e:?}"));
        assert_eq!(collect(&mut p), x * x * x);
    }
    assert!(wait_until(|| stat(server).is_none()), "the dead forkserver was not reaped: {:?}", stat(server));
}

/// A pipe whose ends are inheritable (no `O_CLOEXEC`), as C libraries make them.
fn inheritable_pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: pipe succeeded: both descriptors are new and owned by nothing else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

/// Whether the read end of a pipe sees its end within a few seconds: nobody else holds the
/// write end.
fn sees_end(mut reader: File) -> bool {
    let mut buf = [0u8; 1];
    if !readable(reader.as_fd(), SETTLE) {
        return false;
    }
    reader.read(&mut buf).expect("read") == 0
}

/// Children and the forkserver get only the descriptors they are given, as in CPython (whose
/// spawned children and forkserver close the others): an inherited write end would keep a
/// pipe from ever reaching its end, for as long as the forkserver lives.
fn keeps_inheritable_descriptors_out() {
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        if method == StartMethod::ForkServer {
            // A new server, started while the inheritable pipe below exists.
            let mut p = Process::new(whoami, ());
            p.set_start_method(method);
            let server = finish(p).ppid as i32;
            // SAFETY: kill only sends a signal; `server` is our own unreaped child.
            assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0, "kill the forkserver");
            assert!(wait_dead(server), "the forkserver survived SIGKILL");
        }
        let (reader, writer) = inheritable_pipe();
        let mut p = Reaped(Process::new(sleep_ms, 60_000));
        p.set_start_method(method);
        p.start().expect("start");
        drop(writer);
        assert!(sees_end(reader), "{method}: a child or the forkserver holds the pipe's write end");
    }
}

/// The pid of this process's forkserver (started if needed).
fn forkserver_pid() -> i32 {
    let mut p = Process::new(whoami, ());
    p.set_start_method(StartMethod::ForkServer);
    let server = finish(p).ppid as i32;
    assert_ne!(server, my_pid());
    server
}

/// Kills this process's forkserver with `SIGKILL`; returns its pid once it is dead.
fn kill_forkserver() -> i32 {
    let server = forkserver_pid();
    deliver(server, libc::SIGKILL);
    assert!(wait_dead(server), "the forkserver survived SIGKILL");
    server
}

/// Makes this process a subreaper (`PR_SET_CHILD_SUBREAPER`) while alive: orphans among its
/// descendants become its children instead of init's.
struct Subreaper;

impl Subreaper {
    fn on() -> Subreaper {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only changes an attribute of this process.
        assert_eq!(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) }, 0, "subreaper");
        Subreaper
    }
}

impl Drop for Subreaper {
    fn drop(&mut self) {
        // SAFETY: as in `on`.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
    }
}

/// Reads `fd` to its end, then exits with `code`.
fn exit_when_told((fd, code): (Fd, i32)) {
    let _ = read_all(fd);
    std::process::exit(code)
}

/// Three forkserver children: one that returns when told (with the parent's end of its
/// socket), one that exits with 7 when told, one that sleeps for a minute.
type Stranded = (Reaped<Whoami>, UnixStream, Reaped<()>, UnixStream, Reaped<()>);

fn start_stranded() -> Stranded {
    let (ctl, theirs) = UnixStream::pair().expect("socketpair");
    let mut told = Reaped(Process::new(whoami_when_told, Fd::from(OwnedFd::from(theirs))));
    let (exit_ctl, theirs) = UnixStream::pair().expect("socketpair");
    let mut exiter = Reaped(Process::new(exit_when_told, (Fd::from(OwnedFd::from(theirs)), 7)));
    let mut sleeper = Reaped(Process::new(sleep_ms, 60_000));
    told.set_start_method(StartMethod::ForkServer).start().expect("start");
    exiter.set_start_method(StartMethod::ForkServer).start().expect("start");
    sleeper.set_start_method(StartMethod::ForkServer).start().expect("start");
    (told, ctl, exiter, exit_ctl, sleeper)
}

/// Kills the forkserver of the stranded children and checks that they are still known to
/// run; returns the dead server's pid.
fn strand((told, _, exiter, _, sleeper): &mut Stranded) -> i32 {
    let child = told.pid().expect("started");
    let server = stat(child).expect("the child runs").1;
    assert_ne!(server, my_pid(), "a forkserver child is the server's");
    deliver(server, libc::SIGKILL);
    assert!(wait_dead(server), "the forkserver survived SIGKILL");
    assert!(told.is_alive(), "a running child is reported dead after its server died");
    assert!(exiter.is_alive() && sleeper.is_alive(), "a running child is reported dead");
    assert_eq!(told.exitcode(), None);
    let waited = told.join_timeout(Duration::from_millis(100));
    assert_eq!(waited.expect("join_timeout while the child runs"), None);
    assert!(!readable(told.sentinel().expect("started"), Duration::from_millis(50)), "the sentinel fired");
    let listed = active_children();
    for p in [told.pid(), exiter.pid(), sleeper.pid()] {
        assert!(listed.iter().any(|c| Some(c.pid()) == p), "{p:?} is no longer listed");
    }
    server
}

/// Ends the stranded children; returns the exit codes of the one told to return (checking its
/// result), of the one that exits with 7, and of the sleeper after `kill`.
fn end_stranded((mut told, ctl, mut exiter, exit_ctl, mut sleeper): Stranded) -> [i32; 3] {
    let child = told.pid().expect("started");
    drop(ctl);
    let returned = told.join().expect("join a child whose server died");
    assert_eq!(told.exitcode(), Some(returned));
    if returned == 0 {
        assert_eq!(told.result().expect("result").pid, child);
    }
    drop(exit_ctl);
    let exited = exiter.join().expect("join");
    sleeper.kill().expect("kill");
    let killed = sleeper.join().expect("join");
    let err = sleeper.result().expect_err("no result");
    assert_eq!(err.exit_code(), Some(killed), "{err:?}");
    let listed = active_children();
    for p in [told.pid(), exiter.pid(), sleeper.pid()] {
        assert!(listed.iter().all(|c| Some(c.pid()) != p), "{p:?} is listed after it ended");
    }
    [returned, exited, killed]
}

/// A forkserver child outlives its server: the parent keeps tracking it through its pidfd.
/// Here the parent is a subreaper, so it adopts the orphans and learns their real exit codes
/// (and reaps them).
fn tracks_children_of_a_dead_forkserver() {
    let _adopter = Subreaper::on();
    let mut stranded = start_stranded();
    let pids = [&stranded.0.pid(), &stranded.2.pid(), &stranded.4.pid()].map(|p| p.expect("started"));
    let server = strand(&mut stranded);
    // The next start gets a new server.
    assert_ne!(forkserver_pid(), server, "the dead server was used again");
    let codes = end_stranded(stranded);
    assert_eq!(codes, [0, 7, -libc::SIGKILL]);
    for pid in pids {
        assert!(stat(pid).is_none(), "{pid} was not reaped: {:?}", stat(pid));
    }
}

/// Names the helper run of [`reports_exits_it_cannot_see`].
const ORPHAN_HELPER_VAR: &str = "MULTIPROC_TEST_FORK_ORPHAN_HELPER";

/// The helper run of [`reports_exits_it_cannot_see`]: strands three forkserver children, which
/// its parent (the test, a subreaper) adopts, and checks what it learns of them.
fn run_orphan_helper() {
    let mut stranded = start_stranded();
    let pids = [&stranded.0.pid(), &stranded.2.pid(), &stranded.4.pid()].map(|p| p.expect("started"));
    println!("orphans: {} {} {}", pids[0], pids[1], pids[2]);
    let _ = std::io::stdout().flush();
    strand(&mut stranded);
    let codes = end_stranded(stranded);
    // The child's own report when it returns; 255 (as CPython) after `exit` or a signal.
    assert_eq!(codes, [0, 255, 255]);
}

/// When another process adopts the children of a dead forkserver, the parent still tracks
/// them, with the exit code a child reports itself, or 255 when nobody can tell.
fn reports_exits_it_cannot_see() {
    // The orphans of the helper's forkserver become ours, to be reaped here, not by init.
    let _adopter = Subreaper::on();
    let (ok, output) =
        run_helper(Command::new(std::env::current_exe().expect("test binary")).env(ORPHAN_HELPER_VAR, "1"));
    let orphans: Vec<i32> = output
        .lines()
        .find_map(|line| line.strip_prefix("orphans: "))
        .map(|pids| pids.split(' ').filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default();
    for &pid in &orphans {
        // Ours and not reaped: the pid is still theirs. They have ended unless the helper failed.
        // SAFETY: kill only sends a signal.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let reaped = wait_until(|| {
            // SAFETY: waitpid on a pid of our own child; a null status pointer is allowed.
            let ret = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            ret == pid || ret < 0
        });
        assert!(reaped, "orphan {pid} was not reaped: {:?}", stat(pid));
    }
    assert!(ok, "helper failed: {output}");
    assert_eq!(orphans.len(), 3, "{output}");
}

/// `SIGINT` (a Ctrl-C the parent handles) does not kill the forkserver, as in CPython; its
/// children get the default action back and die of it.
fn keeps_the_forkserver_through_sigint() {
    let server = forkserver_pid();
    deliver(server, libc::SIGINT);
    assert!(!is_dead(server), "SIGINT killed the forkserver: {:?}", stat(server));
    assert_eq!(forkserver_pid(), server, "a new forkserver was started");

    let mut p = Reaped(Process::new(sleep_ms, 60_000));
    p.set_start_method(StartMethod::ForkServer);
    p.start().expect("start");
    let pid = p.pid().expect("started");
    // Until the child has restored the default action, SIGINT would be discarded.
    assert!(wait_until(|| !ignores_signal(pid, libc::SIGINT)), "the child ignores SIGINT");
    deliver(pid, libc::SIGINT);
    let code = p.join_timeout(SETTLE).expect("join");
    assert_eq!(code, Some(-libc::SIGINT), "exit code {code:?}");
}

/// Replaces descriptor 0 of this process while alive; puts the old one back when dropped.
struct StdinSwap(i32);

impl StdinSwap {
    /// Standard input becomes a pipe holding `text`, whose write end is closed.
    fn pipe_with(text: &[u8]) -> StdinSwap {
        use std::os::fd::AsRawFd;
        let (reader, mut writer) = inheritable_pipe();
        writer.write_all(text).expect("write");
        drop(writer);
        // SAFETY: dup only duplicates descriptor 0 (or fails when it is closed).
        let saved = unsafe { libc::dup(0) };
        // SAFETY: dup2 replaces descriptor 0, which nothing in this test binary reads.
        assert_eq!(unsafe { libc::dup2(reader.as_raw_fd(), 0) }, 0, "dup2 onto stdin");
        StdinSwap(saved)
    }
}

impl Drop for StdinSwap {
    fn drop(&mut self) {
        // SAFETY: puts the saved descriptor back on 0 and closes the copy (or closes 0 if it
        // was closed before); both numbers are this guard's.
        unsafe {
            if self.0 >= 0 {
                libc::dup2(self.0, 0);
                libc::close(self.0);
            } else {
                libc::close(0);
            }
        }
    }
}

/// Children read `/dev/null` on their standard input under every start method, as in CPython,
/// not the parent's (nor the forkserver's) standard input.
fn gives_children_null_stdin() {
    for method in StartMethod::all() {
        let swap = StdinSwap::pipe_with(b"the parent's input");
        if method == StartMethod::ForkServer {
            // The next server starts with the pipe as its standard input.
            kill_forkserver();
        }
        let mut p = Process::new(read_stdin, ());
        p.set_start_method(method);
        p.start().expect("start");
        let pid = p.pid().expect("started");
        let server = stat(pid).map(|s| s.1);
        let (null, input) = collect(&mut p);
        drop(swap);
        assert!(null, "{method}: the child's stdin is not /dev/null");
        assert_eq!(String::from_utf8_lossy(&input), "", "{method}: the child read its parent's stdin");
        if method == StartMethod::ForkServer {
            let server = server.expect("the child ran");
            let path = std::path::PathBuf::from(format!("/proc/{server}/fd/0"));
            assert!(is_dev_null(&path), "the forkserver's stdin is not /dev/null");
        }
    }
}

/// Joining and dropping a `Process` closes its descriptors at once; a child dropped while it
/// runs stays registered (listed, reaped later) and its descriptors close once it is reaped.
fn closes_descriptors_of_dropped_children() {
    // The forkserver's own descriptors are opened once, before counting.
    forkserver_pid();
    for method in StartMethod::all() {
        let before = fd_count();
        let mut p = Process::new(cube, 2);
        p.set_start_method(method);
        assert_eq!(finish(p), 8);
        assert_eq!(fd_count(), before, "{method}: descriptors left by a joined child");

        let mut p = Process::new(sleep_ms, 60_000);
        p.set_start_method(method);
        p.start().expect("start");
        let pid = p.pid().expect("started");
        drop(p);
        assert!(active_children().iter().any(|c| c.pid() == pid), "{method}: a dropped child is not listed");
        // Running, so not reaped: its pid is still its own.
        deliver(pid, libc::SIGKILL);
        assert!(
            wait_until(|| active_children().iter().all(|c| c.pid() != pid)),
            "{method}: a dropped child that ended is still listed"
        );
        assert!(wait_dead(pid), "{method}: {pid} was not reaped: {:?}", stat(pid));
        assert_eq!(fd_count(), before, "{method}: descriptors left by a dropped child");
    }
}

/// Runs last: every child of this process has been reaped, and only the forkserver runs.
fn leaves_no_children() {
    let mut p = Process::new(whoami, ());
    p.set_start_method(StartMethod::ForkServer);
    let server = finish(p).ppid as i32;
    let me = my_pid();
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if let Some((state, ppid)) = stat(pid) {
                if ppid == me && pid != server {
                    children.push((pid, state));
                }
            }
        }
    }
    assert!(children.is_empty(), "children left: {children:?}");
}
