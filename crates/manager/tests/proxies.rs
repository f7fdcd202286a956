//! Tests for proxies as values: passed to child processes under `Spawn` and `ForkServer`,
//! sent through `Connection`s, stored inside other managed objects, returned by children, and
//! the reference counts that keep their objects alive exactly as long as a proxy exists.

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_manager::{AnyProxy, DictProxy, ErrorKind, ListProxy, LockProxy, Manager, QueueProxy};
use multiproc_pipe::Connection;
use multiproc_process::Process;

/// What a child gets: proxies of several types.
type Bundle = (DictProxy<String, u32>, ListProxy<u32>, QueueProxy<String>, LockProxy);

fn use_bundle((d, l, q, lock): Bundle) -> u32 {
    let _held = lock.lock().expect("lock");
    d.set("pid", &std::process::id()).expect("set");
    l.reverse().expect("reverse");
    q.put(&format!("hello from {}", std::process::id())).expect("put");
    l.get(0).expect("get")
}

/// Waits until the server holds `n` objects.
fn assert_objects(manager: &Manager, n: usize) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let count = manager.object_count().expect("object_count");
        if count == n {
            return;
        }
        assert!(Instant::now() < deadline, "the server holds {count} objects, expected {n}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn passes_proxies_to_children() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let d = manager.dict::<String, u32>().unwrap();
            let l = manager.list_from(0..5u32).unwrap();
            let q = manager.queue::<String>().unwrap();
            let lock = manager.lock().unwrap();
            assert_objects(&manager, 4);
            let mut children: Vec<Process<u32>> = (0..3)
                .map(|_| {
                    let mut p = Process::new(use_bundle, (d.clone(), l.clone(), q.clone(), lock.clone()));
                    p.set_start_method(method);
                    p
                })
                .collect();
            for p in &mut children {
                p.start().expect("start");
            }
            let firsts: Vec<u32> = children.iter_mut().map(|p| p.result().expect("result")).collect();
            let pids: Vec<u32> = children.iter().map(|p| p.pid().unwrap() as u32).collect();
            assert!(pids.contains(&d.get("pid").unwrap().unwrap()), "a child set the pid");
            // Three reversals.
            assert_eq!(l.copy().unwrap(), [4, 3, 2, 1, 0]);
            assert_eq!(firsts.iter().filter(|&&f| f == 4).count(), 2, "{firsts:?}");
            let mut greetings: Vec<String> = (0..3).map(|_| q.get_timeout(LIMIT).unwrap()).collect();
            greetings.sort();
            let mut expected: Vec<String> = pids.iter().map(|p| format!("hello from {p}")).collect();
            expected.sort();
            assert_eq!(greetings, expected);
            assert!(!lock.locked().unwrap(), "each child released the lock");
            // The children's references went with them; ours keep the objects.
            assert_objects(&manager, 4);
            drop((d, l, q, lock));
            assert_objects(&manager, 0);
        }
    });
}

/// Receives a dict proxy through a connection, fills it, sends back a list proxy it got.
fn serve_over_connection(mut conn: Connection) {
    let d: DictProxy<String, String> = conn.recv().expect("recv a proxy");
    d.set("from", "child").expect("set");
    let l: ListProxy<String> = conn.recv().expect("recv another");
    l.push("child was here").expect("push");
    conn.send(&l).expect("send a proxy back");
}

#[test]
fn sends_proxies_through_connections() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let (mut ours, theirs) = multiproc_pipe::pipe(true).unwrap();
            let mut child = Process::new(serve_over_connection, theirs);
            child.set_start_method(method);
            child.start().unwrap();
            let d = manager.dict::<String, String>().unwrap();
            ours.send(&d).unwrap();
            ours.send(&manager.list::<String>().unwrap()).unwrap();
            // Our list proxy was dropped right after sending: the ticket kept the list alive.
            let back: ListProxy<String> = ours.recv_timeout(LIMIT).unwrap();
            assert_eq!(back.copy().unwrap(), ["child was here"]);
            assert_eq!(child.join().unwrap(), 0);
            assert_eq!(d.get("from").unwrap().as_deref(), Some("child"));
        }
    });
}

#[test]
fn counts_references() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let d = manager.dict::<u8, u8>().unwrap();
        let clone = d.clone();
        assert_objects(&manager, 1);
        drop(d);
        clone.set(&1, &1).unwrap();
        assert_objects(&manager, 1);
        drop(clone);
        assert_objects(&manager, 0);

        // A proxy in transit keeps its object alive until it is received.
        let l = manager.list_from([1u8, 2, 3]).unwrap();
        let encoded = multiproc_wire::encode(&l).unwrap();
        drop(l);
        assert_objects(&manager, 1);
        let received: ListProxy<u8> = multiproc_wire::decode(&encoded.bytes, Vec::new()).unwrap();
        assert_eq!(received.copy().unwrap(), [1, 2, 3]);
        // Received twice: the second claim finds the object alive through the first proxy.
        let again: ListProxy<u8> = multiproc_wire::decode(&encoded.bytes, Vec::new()).unwrap();
        drop(received);
        assert_eq!(again.len().unwrap(), 3);
        drop(again);
        assert_objects(&manager, 0);
        let err = multiproc_wire::decode::<ListProxy<u8>>(&encoded.bytes, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("no object with id"), "{err}");
    });
}

#[test]
fn keeps_proxies_inside_values() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let registry = manager.dict::<String, QueueProxy<u32>>().unwrap();
        let queue = manager.queue::<u32>().unwrap();
        registry.set("jobs", &queue).unwrap();
        queue.put(&7).unwrap();
        let fetched = registry.get("jobs").unwrap().expect("stored");
        assert_eq!(fetched.get_timeout(LIMIT).unwrap(), 7);
        assert_eq!(fetched.as_ref().id(), queue.as_ref().id());
    });
}

/// Connects to the manager itself and returns a proxy of an object it made.
fn make_remotely((address, authkey): (String, Vec<u8>)) -> ListProxy<String> {
    let manager =
        Manager::connect(address.parse::<multiproc_manager::Address>().unwrap(), &authkey).expect("connect");
    let l = manager.list::<String>().expect("list");
    l.push("made by the child").expect("push");
    l
}

#[test]
fn returns_proxies_from_children() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let mut child = Process::new(make_remotely, (manager.address().to_string(), manager.authkey()));
            child.set_start_method(method);
            child.start().unwrap();
            let l = child.result().expect("a proxy as the child's result");
            assert_eq!(l.copy().unwrap(), ["made by the child"]);
            assert_objects(&manager, 1);
        }
    });
}

#[test]
fn shares_proxies_between_threads() {
    fn send_sync<T: Send + Sync + Clone + serde::Serialize + serde::de::DeserializeOwned>() {}
    send_sync::<AnyProxy>();
    send_sync::<DictProxy<String, Vec<u8>>>();
    send_sync::<ListProxy<std::rc::Rc<u8>>>();
    send_sync::<QueueProxy<String>>();
    send_sync::<LockProxy>();
    send_sync::<multiproc_manager::ConditionProxy>();
    send_sync::<multiproc_manager::BarrierProxy>();
    fn send_sync_manager<T: Send + Sync>() {}
    send_sync_manager::<Manager>();
}

#[test]
fn checks_proxy_types() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let d = manager.dict::<u8, u8>().unwrap();
        let any = AnyProxy::from(d.clone());
        assert_eq!(any.type_id(), "dict");
        assert_eq!(any.address(), manager.address());
        let err = any.clone().downcast::<ListProxy<u8>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongType);
        assert_eq!(err.to_string(), "a proxy of a 'dict' object cannot be used as a proxy of 'list'");
        let back: DictProxy<u8, u8> = any.downcast().unwrap();
        back.set(&1, &2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
        let encoded = multiproc_wire::encode(&d).unwrap();
        let err = multiproc_wire::decode::<QueueProxy<u8>>(&encoded.bytes, Vec::new()).unwrap_err();
        assert!(err.to_string().contains("cannot be used as a proxy of 'Queue'"), "{err}");
    });
}
