//! Tests for clients killed inside a waiting call: whatever the call would have taken (a queue
//! item, a semaphore unit, a lock, a condition's notification) stays for the living, a barrier
//! breaks instead of passing, and a plain `Lock` has no owner to die.
//!
//! The server runs in the test process, with a callable (`stall`) that holds up the session
//! thread of the client calling it until the test opens a gate. A killed client's session then
//! cannot notice the end of its connection, as happens under load, while the call that client
//! left waiting goes on; that call must find out by itself that its client has gone.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use multiproc_manager::{
    Address, BarrierProxy, ConditionProxy, ErrorKind, EventProxy, LockProxy, Manager, ManagerServer,
    QueueProxy, RLockProxy, SemaphoreProxy, ShutdownHandle,
};
use multiproc_process::{Process, StartMethod};
use serde::{Deserialize, Serialize};

const KEY: &[u8] = b"dead clients";

/// How long a child's waiting call is given to reach the server before the child stalls its
/// session (where the test cannot watch it arrive).
const ARRIVE: Duration = Duration::from_millis(300);

/// A gate that the `stall` callable waits at.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

impl Gate {
    /// Called by `stall`: counts the entry, then waits until the gate opens.
    fn pass(&self) {
        let mut state = self.state.lock().unwrap();
        state.0 += 1;
        self.cv.notify_all();
        let deadline = Instant::now() + LIMIT;
        while !state.1 && Instant::now() < deadline {
            state = self.cv.wait_timeout(state, deadline - Instant::now()).unwrap().0;
        }
    }

    /// Waits until a session stalls at the gate.
    fn wait_entered(&self) {
        let mut state = self.state.lock().unwrap();
        let deadline = Instant::now() + LIMIT;
        while state.0 == 0 {
            assert!(Instant::now() < deadline, "the child never stalled its session");
            state = self.cv.wait_timeout(state, deadline - Instant::now()).unwrap().0;
        }
    }

    fn open(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// A server in this process with the `stall` callable, serving on a thread.
struct Server {
    /// A client connected through the server's address, as the killed child was.
    client: Manager,
    gate: Arc<Gate>,
    address: String,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(address: Address) -> Server {
        let server = ManagerServer::bind(address, KEY).expect("bind");
        let local = server.manager().expect("a manager in the server");
        let gate = Arc::new(Gate::default());
        let event = local.event().unwrap();
        let stall_gate = gate.clone();
        server
            .register_callable("stall", move |()| {
                stall_gate.pass();
                Ok(event.clone())
            })
            .unwrap();
        let address = server.address().to_string();
        let handle = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.serve_forever().expect("serve"));
        let client = Manager::connect(address.parse::<Address>().unwrap(), KEY).expect("connect");
        Server { client, gate, address, handle, thread: Some(thread) }
    }

    /// Starts `child` with `method`, waits until it stalled its session, kills it.
    fn kill_blocked(&self, blocked: Blocked, method: StartMethod) {
        let mut child = Process::new(block_then_stall, (blocked, self.address.clone(), KEY.to_vec()));
        child.set_start_method(method);
        child.start().expect("start the child");
        self.gate.wait_entered();
        child.kill().unwrap();
        assert_eq!(child.join().unwrap(), -9, "the child is killed");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.gate.open();
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The two kinds of connection: a Unix socket and TCP (where a write to a peer that has just
/// died still succeeds).
fn servers() -> [(Address, StartMethod); 2] {
    [
        (Address::Abstract(unique("dead-clients").into_bytes()), StartMethod::Spawn),
        (Address::localhost(0), StartMethod::ForkServer),
    ]
}

/// What a child blocks in before it stalls its session.
#[derive(Serialize, Deserialize)]
enum Blocked {
    Get(QueueProxy<u32>),
    Acquire(SemaphoreProxy),
    Lock(LockProxy),
    RLock(RLockProxy),
    Wait(ConditionProxy),
    Barrier(BarrierProxy),
}

/// Starts a waiting call on a thread, lets it reach the server, then stalls its own session
/// (and is killed there).
fn block_then_stall((blocked, address, authkey): (Blocked, String, Vec<u8>)) {
    let address: Address = address.parse().unwrap();
    let manager = Manager::connect(address, &authkey).expect("connect");
    let (tx, rx) = mpsc::channel();
    let watch = match &blocked {
        Blocked::Wait(c) => Some(Watch::Unlocked(c.clone())),
        Blocked::Barrier(b) => Some(Watch::Arrived(b.clone())),
        _ => None,
    };
    std::thread::spawn(move || match blocked {
        Blocked::Get(q) => {
            let _ = tx.send(());
            let _ = q.get();
        }
        Blocked::Acquire(s) => {
            let _ = tx.send(());
            let _ = s.acquire();
        }
        Blocked::Lock(l) => {
            let _ = tx.send(());
            let _ = l.acquire();
        }
        Blocked::RLock(l) => {
            let _ = tx.send(());
            let _ = l.acquire();
        }
        Blocked::Wait(c) => {
            c.acquire().unwrap();
            let _ = tx.send(());
            let _ = c.wait();
        }
        Blocked::Barrier(b) => {
            let _ = tx.send(());
            let _ = b.wait();
        }
    });
    rx.recv().unwrap();
    // Where the server shows the waiting call, wait for it; elsewhere give it time.
    let deadline = Instant::now() + LIMIT;
    match watch {
        Some(Watch::Unlocked(c)) => {
            while c.locked().unwrap() {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Some(Watch::Arrived(b)) => {
            while b.n_waiting().unwrap() == 0 {
                assert!(Instant::now() < deadline);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        None => std::thread::sleep(ARRIVE),
    }
    let _ = manager.call::<_, EventProxy>("stall", &());
    std::thread::sleep(LIMIT);
}

enum Watch {
    Unlocked(ConditionProxy),
    Arrived(BarrierProxy),
}

#[test]
fn leaves_queue_items_to_the_living() {
    scenario(|| {
        for (address, method) in servers() {
            let server = Server::start(address);
            let queue = server.client.queue::<u32>().unwrap();
            server.kill_blocked(Blocked::Get(queue.clone()), method);
            queue.put(&7).unwrap();
            assert_eq!(queue.get_timeout(SETTLE).expect("the item is still there"), 7);
            // Items that come later too.
            queue.put(&8).unwrap();
            assert_eq!(queue.get_timeout(SETTLE).unwrap(), 8);
        }
    });
}

#[test]
fn leaves_semaphore_units_to_the_living() {
    scenario(|| {
        for (address, method) in servers() {
            let server = Server::start(address);
            let semaphore = server.client.semaphore(0).unwrap();
            server.kill_blocked(Blocked::Acquire(semaphore.clone()), method);
            semaphore.release().unwrap();
            assert!(semaphore.acquire_timeout(SETTLE).unwrap(), "the unit is still there");
            assert_eq!(semaphore.value().unwrap(), 0);
        }
    });
}

#[test]
fn leaves_locks_to_the_living() {
    scenario(|| {
        for (address, method) in servers() {
            let server = Server::start(address);
            let lock = server.client.lock().unwrap();
            lock.acquire().unwrap();
            server.kill_blocked(Blocked::Lock(lock.clone()), method);
            lock.release().unwrap();
            // Not taken by the dead waiter (nor released later as if it had held it).
            assert!(lock.acquire_timeout(SETTLE).unwrap(), "the lock is free");
            lock.release().unwrap();

            let rlock = server.client.rlock().unwrap();
            rlock.acquire().unwrap();
            server.kill_blocked(Blocked::RLock(rlock.clone()), method);
            rlock.release().unwrap();
            // The dead waiter never held it: no OwnerDied.
            assert!(rlock.acquire_timeout(SETTLE).unwrap(), "the lock is free");
            rlock.release().unwrap();
        }
    });
}

#[test]
fn passes_notifications_on_to_the_living() {
    scenario(|| {
        for (address, method) in servers() {
            let server = Server::start(address);
            let cond = server.client.condition().unwrap();
            // The dead waiter waits first, so it is the one a notify(1) picks.
            server.kill_blocked(Blocked::Wait(cond.clone()), method);
            let (tx, rx) = mpsc::channel();
            let waiter = {
                let cond = cond.clone();
                std::thread::spawn(move || {
                    cond.acquire().unwrap();
                    tx.send(()).unwrap();
                    let notified = cond.wait_timeout(SETTLE);
                    cond.release().unwrap();
                    notified
                })
            };
            rx.recv().unwrap();
            // Taken once the waiter's wait has released it.
            cond.acquire().unwrap();
            cond.notify(1).unwrap();
            cond.release().unwrap();
            assert!(waiter.join().unwrap().unwrap(), "the living waiter got the notification");
            // The dead waiter did not take the lock back either.
            assert!(cond.acquire_timeout(SETTLE).unwrap(), "the lock is free");
            cond.release().unwrap();
        }
    });
}

#[test]
fn breaks_barriers_whose_party_died() {
    scenario(|| {
        for (address, method) in servers() {
            let server = Server::start(address);
            let barrier = server.client.barrier(2).unwrap();
            server.kill_blocked(Blocked::Barrier(barrier.clone()), method);
            // The dead party does not count as arrived.
            let err = barrier.wait_timeout(SETTLE).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BrokenBarrier, "{err}");
            assert!(barrier.broken().unwrap());
            assert_eq!(barrier.wait_timeout(SHORT).unwrap_err().kind(), ErrorKind::BrokenBarrier);
            barrier.reset().unwrap();
            let other = {
                let barrier = barrier.clone();
                std::thread::spawn(move || barrier.wait_timeout(LIMIT))
            };
            let mine = barrier.wait_timeout(LIMIT).unwrap();
            let mut indexes = [mine, other.join().unwrap().unwrap()];
            indexes.sort();
            assert_eq!(indexes, [0, 1], "usable again after reset");
        }
    });
}

/// Waits at a barrier of three.
fn wait_at(barrier: BarrierProxy) {
    let _ = barrier.wait();
}

#[test]
fn breaks_barriers_for_survivors_waiting() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let barrier = manager.barrier(3).unwrap();
            let survivor = {
                let barrier = barrier.clone();
                std::thread::spawn(move || barrier.wait_timeout(LIMIT))
            };
            let mut child = Process::new(wait_at, barrier.clone());
            child.set_start_method(method);
            child.start().unwrap();
            let deadline = Instant::now() + LIMIT;
            while barrier.n_waiting().unwrap() < 2 {
                assert!(Instant::now() < deadline, "the child never arrived");
                std::thread::sleep(Duration::from_millis(5));
            }
            child.kill().unwrap();
            assert_eq!(child.join().unwrap(), -9);
            let err = survivor.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BrokenBarrier, "{err}");
            // The third party finds it broken too, until a reset.
            assert_eq!(barrier.wait_timeout(SHORT).unwrap_err().kind(), ErrorKind::BrokenBarrier);
            barrier.reset().unwrap();
            assert!(!barrier.broken().unwrap());
        }
    });
}

/// Takes the lock, says so, then blocks until killed.
fn hold<L: Held>((lock, held): (L, EventProxy)) {
    lock.take();
    held.set().expect("tell the parent");
    std::thread::sleep(LIMIT);
}

trait Held {
    fn take(&self);
}

impl Held for LockProxy {
    fn take(&self) {
        self.acquire().expect("acquire in the child");
    }
}

impl Held for RLockProxy {
    fn take(&self) {
        self.acquire().expect("acquire in the child");
    }
}

impl Held for ConditionProxy {
    fn take(&self) {
        self.acquire().expect("acquire in the child");
    }
}

/// Starts `hold` with `lock` under `method`, waits until it holds it, kills it.
fn kill_holder<L: Held + Serialize + serde::de::DeserializeOwned + Send + 'static>(
    manager: &Manager,
    lock: L,
    method: StartMethod,
) {
    let held = manager.event().unwrap();
    let mut child = Process::new(hold::<L>, (lock, held.clone()));
    child.set_start_method(method);
    child.start().expect("start the child");
    assert!(held.wait_timeout(LIMIT).unwrap(), "the child took the lock");
    child.kill().unwrap();
    assert_eq!(child.join().unwrap(), -9);
}

#[test]
fn leaves_plain_locks_of_dead_processes_locked() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let lock = manager.lock().unwrap();
            kill_holder(&manager, lock.clone(), method);
            // No owner, so no owner death: locked until anyone releases it, as in CPython.
            assert!(!lock.acquire_timeout(Duration::from_secs(1)).unwrap(), "still locked");
            assert!(lock.locked().unwrap());
            lock.release().expect("another process releases it");
            assert!(lock.try_acquire().unwrap(), "free, and no owner death to report");
            lock.release().unwrap();
        }
    });
}

#[test]
fn reports_owned_locks_of_dead_processes() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let rlock = manager.rlock().unwrap();
            kill_holder(&manager, rlock.clone(), method);
            // CPython keeps an RLock of a dead owner locked forever; here the next owner is told.
            let err = rlock.acquire_timeout(LIMIT).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::OwnerDied, "{err}");
            assert!(rlock.locked().unwrap(), "the caller holds the lock now");
            rlock.release().unwrap();
            assert!(rlock.try_acquire().unwrap(), "told once");
            rlock.release().unwrap();

            let cond = manager.condition().unwrap();
            kill_holder(&manager, cond.clone(), method);
            let guard = cond.lock().unwrap();
            assert!(guard.owner_died(), "a condition's RLock is owned too");
            drop(guard);
            assert!(!cond.lock().unwrap().owner_died(), "told once");
        }
    });
}
