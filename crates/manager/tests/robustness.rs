//! Tests for a server facing bad clients: malformed frames, unknown object ids and methods,
//! oversized requests, a client killed in the middle of a request. Each gets an error reply or
//! a closed connection, and the server keeps serving every other client.
//!
//! The raw clients here speak the protocol by hand: after the authkey handshake the server
//! sends a greeting; a request is a frame holding a head `(id, object, method, caller)` and the
//! arguments; a reply holds a head `(id, error)` and the result.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use multiproc_manager::{Address, AnyProxy, ErrorKind, Manager};
use multiproc_pipe::{Client, Connection};
use multiproc_process::Process;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
struct RequestHead<'a> {
    id: u64,
    object: u64,
    method: &'a str,
    caller: u64,
}

#[derive(Debug, Deserialize)]
struct ReplyHead {
    id: u64,
    error: Option<(u16, String)>,
}

/// An authenticated raw connection to `manager`'s server, past its greeting.
fn raw_client(manager: &Manager) -> Connection {
    let mut conn = Client::new(manager.address()).authkey(&manager.authkey()).connect().expect("connect");
    conn.recv_bytes_timeout(LIMIT).expect("the greeting");
    conn
}

fn request(id: u64, object: u64, method: &str, args: &impl Serialize) -> Vec<u8> {
    let mut bytes = multiproc_wire::encode(&RequestHead { id, object, method, caller: 1 }).unwrap().bytes;
    bytes.extend(multiproc_wire::encode(args).unwrap().bytes);
    bytes
}

fn reply(conn: &mut Connection) -> (ReplyHead, Vec<u8>) {
    let frame = conn.recv_bytes_timeout(LIMIT).expect("a reply");
    let (head, used) = multiproc_wire::decode_prefix::<ReplyHead>(&frame, Vec::new()).expect("a reply head");
    (head, frame[used..].to_vec())
}

/// Asserts that the manager still serves.
fn assert_serving(manager: &Manager) {
    let d = manager.dict::<u8, u8>().expect("a new dict");
    d.set(&1, &2).expect("set");
    assert_eq!(d.get(&1).expect("get"), Some(2));
}

#[test]
fn answers_malformed_requests() {
    scenario(|| {
        let manager = start(METHODS[1]);
        let d = manager.dict::<u8, u8>().unwrap();
        let id = AnyProxy::from(d.clone()).id();
        let mut conn = raw_client(&manager);

        // Garbage: no head can be read, so the error comes with id 0.
        conn.send_bytes(b"\xff\xfe garbage").unwrap();
        let (head, _) = reply(&mut conn);
        assert_eq!(head.id, 0);
        assert!(head.error.as_ref().unwrap().1.contains("cannot decode the request"), "{head:?}");
        conn.send_bytes(b"").unwrap();
        assert_eq!(reply(&mut conn).0.id, 0);

        // A readable head with unreadable arguments.
        let mut frame = multiproc_wire::encode(&RequestHead { id: 7, object: id, method: "get", caller: 1 })
            .unwrap()
            .bytes;
        frame.extend_from_slice(&[1, 2, 3]);
        conn.send_bytes(&frame).unwrap();
        let (head, _) = reply(&mut conn);
        assert_eq!(head.id, 7);
        assert!(head.error.unwrap().1.contains("cannot decode the arguments"));

        conn.send_bytes(&request(8, 999_999, "get", &())).unwrap();
        let (head, _) = reply(&mut conn);
        assert_eq!((head.id, head.error.unwrap().1.as_str()), (8, "no object with id 999999 in the manager"));

        conn.send_bytes(&request(9, id, "frobnicate", &())).unwrap();
        let (head, _) = reply(&mut conn);
        assert_eq!(
            (head.id, head.error.unwrap().1.as_str()),
            (9, "'dict' object has no method 'frobnicate'")
        );

        conn.send_bytes(&request(10, 0, "frobnicate", &())).unwrap();
        assert_eq!(reply(&mut conn).0.error.unwrap().1, "'manager' object has no method 'frobnicate'");

        // Releasing references it does not hold does not free the dict.
        for _ in 0..3 {
            conn.send_bytes(&request(0, 0, "decref", &id)).unwrap();
        }
        conn.send_bytes(&request(11, id, "len", &())).unwrap();
        let (head, body) = reply(&mut conn);
        assert_eq!((head.id, head.error.is_none()), (11, true));
        assert_eq!(multiproc_wire::decode::<u64>(&body, Vec::new()).unwrap(), 0);

        // A broken frame header ends that connection only.
        let mut raw = UnixStream::from(conn.fileno().unwrap().try_clone_to_owned().unwrap());
        raw.write_all(&(-5i32).to_be_bytes()).unwrap();
        assert!(conn.recv_bytes_timeout(LIMIT).unwrap_err().is_disconnected());
        d.set(&3, &4).unwrap();
        assert_serving(&manager);
    });
}

#[test]
fn refuses_oversized_requests() {
    scenario(|| {
        let manager = Manager::builder().max_request_size(4096).start().unwrap();
        assert_eq!(manager.max_request_size(), 4096);
        let l = manager.list::<Vec<u8>>().unwrap();
        // Refused before it is sent.
        let err = l.push(&vec![0u8; 8192]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{err}");
        l.push(&vec![0u8; 1024]).unwrap();

        // A client that sends one anyway is told, and its connection goes on.
        let mut conn = raw_client(&manager);
        conn.send_bytes(&vec![0u8; 10_000]).unwrap();
        let (head, _) = reply(&mut conn);
        assert_eq!(head.id, 0);
        assert!(head.error.unwrap().1.contains("exceeds the server's limit of 4096 bytes"));
        conn.send_bytes(&request(5, 0, "count", &())).unwrap();
        let (head, body) = reply(&mut conn);
        assert_eq!((head.id, head.error.is_none()), (5, true));
        assert_eq!(multiproc_wire::decode::<u64>(&body, Vec::new()).unwrap(), 1);
        assert_serving(&manager);
    });
}

/// Connects, sends the first bytes of a request and of a frame, tells the parent, waits.
fn stall_mid_request((address, authkey, mut tell): (String, Vec<u8>, Connection)) {
    let address: Address = address.parse().unwrap();
    let mut conn = Client::new(address).authkey(&authkey).connect().expect("connect");
    conn.recv_bytes_timeout(LIMIT).expect("the greeting");
    // A whole request, then the start of another one.
    conn.send_bytes(&request(1, 0, "count", &())).unwrap();
    let mut raw = UnixStream::from(conn.fileno().unwrap().try_clone_to_owned().unwrap());
    raw.write_all(&100u32.to_be_bytes()).unwrap();
    raw.write_all(&[0u8; 10]).unwrap();
    tell.send(&"stalled").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts many waiting calls, takes a lock, tells the parent, waits to be killed.
fn die_waiting(
    (queue, lock, mut tell): (multiproc_manager::QueueProxy<u32>, multiproc_manager::RLockProxy, Connection),
) {
    lock.acquire().unwrap();
    for _ in 0..16 {
        let queue = queue.clone();
        std::thread::spawn(move || queue.get());
    }
    std::thread::sleep(Duration::from_millis(200));
    tell.send(&"waiting").unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn survives_clients_killed_mid_request() {
    scenario(|| {
        for method in METHODS {
            let manager = start(method);
            let (mut ours, theirs) = multiproc_pipe::pipe(true).unwrap();
            let mut child =
                Process::new(stall_mid_request, (manager.address().to_string(), manager.authkey(), theirs));
            child.set_start_method(method);
            child.start().unwrap();
            assert_eq!(ours.recv_timeout::<String>(LIMIT).unwrap(), "stalled");
            assert_serving(&manager);
            child.kill().unwrap();
            assert_eq!(child.join().unwrap(), -9);
            assert_serving(&manager);

            let queue = manager.queue::<u32>().unwrap();
            let lock = manager.rlock().unwrap();
            let (mut ours, theirs) = multiproc_pipe::pipe(true).unwrap();
            let mut child = Process::new(die_waiting, (queue.clone(), lock.clone(), theirs));
            child.set_start_method(method);
            child.start().unwrap();
            assert_eq!(ours.recv_timeout::<String>(LIMIT).unwrap(), "waiting");
            child.kill().unwrap();
            assert_eq!(child.join().unwrap(), -9);
            for i in 0..16 {
                queue.put(&i).unwrap();
            }
            assert_eq!(lock.acquire_timeout(LIMIT).unwrap_err().kind(), ErrorKind::OwnerDied);
            assert_eq!(queue.len().unwrap(), 16, "the dead client's waiting gets took nothing");
            assert_serving(&manager);
        }
    });
}
