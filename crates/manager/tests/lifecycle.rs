//! Tests for a manager's lifecycle: starting the server with each start method and on each
//! kind of address, stopping it by `shutdown` and by `Drop` with nothing left behind (process,
//! socket file, abstract name), and calls failing promptly with `Disconnected` once the server
//! has gone, even while they wait.

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_manager::{Address, ErrorKind, Manager};

fn addresses() -> Vec<(&'static str, Option<Address>)> {
    vec![
        ("abstract", None),
        ("path", Some(Address::Unix(unique_path("lifecycle")))),
        ("tcp", Some(Address::localhost(0))),
    ]
}

#[test]
fn leaves_nothing_after_shutdown() {
    scenario(|| {
        for method in METHODS {
            for (kind, address) in addresses() {
                let mut builder = Manager::builder().start_method(method);
                if let Some(address) = address {
                    builder = builder.address(address);
                }
                let manager = builder.start().unwrap_or_else(|e| panic!("{method} {kind}: {e:?}"));
                let (pid, address) = (manager.server_pid(), manager.address());
                assert!(listening(&address), "{kind}: nothing listens at {address}");
                if let Address::Tcp(addr) = &address {
                    assert_ne!(addr.port(), 0, "the bound port is reported");
                }
                let d = manager.dict::<u8, u8>().unwrap();
                d.set(&1, &1).unwrap();
                manager.shutdown().unwrap();
                assert_nothing_left(pid, &address);
                let err = d.get(&1).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
                manager.shutdown().unwrap();
            }
        }
    });
}

#[test]
fn stops_the_server_on_drop() {
    scenario(|| {
        for method in METHODS {
            let path = unique_path("drop");
            let manager = Manager::builder().start_method(method).address(path.clone()).start().unwrap();
            let (pid, address) = (manager.server_pid(), manager.address());
            let q = manager.queue::<u8>().unwrap();
            drop(manager);
            assert_nothing_left(pid, &address);
            assert!(!path.exists());
            assert!(q.try_put(&1).unwrap_err().is_disconnected());
        }
    });
}

#[test]
fn fails_promptly_when_the_server_dies() {
    scenario(|| {
        for method in METHODS {
            let path = unique_path("killed");
            let manager = Manager::builder().start_method(method).address(path.clone()).start().unwrap();
            let q = manager.queue::<u8>().unwrap();
            let lock = manager.lock().unwrap();
            lock.acquire().unwrap();
            // Calls waiting in the server when it dies.
            let getter = {
                let q = q.clone();
                std::thread::spawn(move || q.get())
            };
            let acquirer = {
                let lock = lock.clone();
                std::thread::spawn(move || lock.acquire_timeout(Duration::from_secs(3600)))
            };
            std::thread::sleep(SHORT);
            kill(manager.server_pid());
            let started = Instant::now();
            assert!(getter.join().unwrap().unwrap_err().is_disconnected());
            assert!(acquirer.join().unwrap().unwrap_err().is_disconnected());
            assert!(q.len().unwrap_err().is_disconnected());
            assert!(manager.dict::<u8, u8>().unwrap_err().is_disconnected());
            assert!(started.elapsed() < SETTLE, "took {:?}", started.elapsed());
            let pid = manager.server_pid();
            drop(manager);
            assert_gone(pid);
            assert!(!path.exists(), "the killed server's socket file was removed");
        }
    });
}

/// A Ctrl-C (`SIGINT`) that reaches the server does not kill it, as CPython's server ignores
/// it: the parent handles the interrupt and stops the server its own way.
#[test]
fn survives_sigint() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let d = manager.dict::<u8, u8>().unwrap();
            let pid = manager.server_pid();
            deliver(pid, "INT", 2);
            d.set(&1, &2).unwrap_or_else(|e| panic!("{method}: the server died of SIGINT: {e}"));
            assert_eq!(d.get(&1).unwrap(), Some(2), "{method}");
            manager.shutdown().unwrap();
            assert_gone(pid);
        }
    });
}

#[test]
fn refuses_wrong_authkeys() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let d = manager.dict::<String, u8>().unwrap();
        let mut wrong = manager.authkey();
        wrong[0] ^= 1;
        let err = Manager::connect(manager.address(), &wrong).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
        // The server serves on.
        d.set("still", &1).unwrap();
        assert_eq!(d.get("still").unwrap(), Some(1));
        let err = Manager::connect(Address::Unix(unique_path("nobody")), b"key").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{err:?}");
    });
}

#[test]
fn chooses_the_authkey() {
    scenario(|| {
        let manager = Manager::builder().authkey(b"chosen").address(Address::localhost(0)).start().unwrap();
        assert_eq!(manager.authkey(), b"chosen");
        assert_eq!(Manager::start().unwrap().authkey().len(), 32, "a generated key");
    });
}
