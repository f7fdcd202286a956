//! Tests for managers and proxies under the `Fork` start method: a server process forked from
//! the parent, and proxies that a forked child uses after reconnecting on its own.
//!
//! Forking inside the multithreaded libtest harness would copy the harness's locks into the
//! children, so this binary has its own `main` (`harness = false`) and runs each test on the
//! main thread while no other thread exists (a manager's client has no thread of its own). A
//! watchdog process kills the binary if a test hangs.

mod common;

use std::sync::Mutex;

use common::*;
use multiproc_manager::{DictProxy, ErrorKind, LockProxy, Manager};
use multiproc_process::{Process, StartMethod};

const TESTS: &[(&str, fn())] = &[
    ("starts_a_server_with_fork", starts_a_server_with_fork),
    ("reconnects_after_fork", reconnects_after_fork),
    ("passes_proxies_to_fork_children", passes_proxies_to_fork_children),
];

fn main() -> std::process::ExitCode {
    multiproc_process::testing::run_serially(TESTS, std::time::Duration::from_secs(60))
}

fn starts_a_server_with_fork() {
    let manager = Manager::builder().start_method(StartMethod::Fork).start().expect("start with fork");
    let (pid, address) = (manager.server_pid(), manager.address());
    let l = manager.list_from(["a", "b"].map(String::from)).unwrap();
    l.reverse().unwrap();
    assert_eq!(l.copy().unwrap(), ["b", "a"]);
    drop(manager);
    assert_nothing_left(pid, &address);
    assert!(l.len().unwrap_err().is_disconnected());
}

fn reconnects_after_fork() {
    let manager = start(StartMethod::ForkServer);
    let d: DictProxy<String, u32> = manager.dict().unwrap();
    let lock: LockProxy = manager.lock().unwrap();
    let (d2, lock2) = (d.clone(), lock.clone());
    // The child has copies of the proxies and of this process's connection; it must not use
    // the connection (its replies would go astray) but make its own.
    let mut child = Process::from_closure(move || {
        let _held = lock2.lock().expect("lock in the child");
        d2.set("child", &std::process::id()).expect("set in the child");
        d2.len().expect("len in the child")
    });
    child.start().expect("fork");
    let child_pid = child.pid().unwrap() as u32;
    assert_eq!(child.result().expect("the child's result"), 1);
    assert_eq!(d.get("child").unwrap(), Some(child_pid));
    assert!(!lock.locked().unwrap());
    // Our connection was not disturbed, and the child's references went with it.
    d.set("parent", &1).unwrap();
    assert_eq!(d.len().unwrap(), 2);
    assert_eq!(manager.object_count().unwrap(), 2);

    // A forked child that drops its copy of the manager does not stop the server: only the
    // process that started it does.
    *SHARED.lock().unwrap() = Some(manager);
    let mut child = Process::<()>::from_closure(|| drop(SHARED.lock().unwrap().take()));
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    assert_eq!(d.len().unwrap(), 2);
    let manager = SHARED.lock().unwrap().take().expect("still ours");
    let pid = manager.server_pid();
    drop(manager);
    assert_gone(pid);
}

/// A manager a forked child can reach without owning it.
static SHARED: Mutex<Option<Manager>> = Mutex::new(None);

/// Counts in a dict it was given (a fork child still receives its arguments decoded).
fn count_in(d: DictProxy<String, u32>) {
    let n = d.get("n").unwrap().unwrap_or(0);
    d.set("n", &(n + 1)).unwrap();
}

fn passes_proxies_to_fork_children() {
    let manager = start(StartMethod::ForkServer);
    let d: DictProxy<String, u32> = manager.dict().unwrap();
    for _ in 0..3 {
        let mut child = Process::new(count_in, d.clone());
        child.set_start_method(StartMethod::Fork);
        child.start().unwrap();
        assert_eq!(child.join().unwrap(), 0);
    }
    assert_eq!(d.get("n").unwrap(), Some(3));
    let err = d.get_item("missing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MissingKey);
    let pid = manager.server_pid();
    drop(manager);
    assert_gone(pid);
}
