//! Tests for `wait` over connections, raw descriptors and process sentinels.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Connection, Waitable, pipe, wait};

const SHORT: Duration = Duration::from_millis(20);

/// In a child: waits for one message, then exits.
fn exit_when_told(mut conn: Connection) {
    let _: u8 = conn.recv_timeout(LIMIT).expect("child: recv");
}

#[test]
fn returns_the_ready_connections_and_sentinels() {
    for method in METHODS {
        let (mut a, a_peer) = pipe(true).unwrap();
        let (b, mut b_peer) = pipe(true).unwrap();
        let (mut c, mut c_peer) = pipe(false).unwrap();
        let (mut ctl, theirs) = pipe(true).unwrap();
        let p = start(method, exit_when_told, theirs);
        {
            let sentinel = p.sentinel().expect("a started process has a sentinel");
            let objects: [&dyn Waitable; 4] = [&a, &b, &c, &sentinel];
            let started = Instant::now();
            assert_eq!(wait(&objects, Some(SHORT)).unwrap(), Vec::<usize>::new(), "{method}");
            assert!(started.elapsed() >= SHORT, "{method}: wait returned early");

            b_peer.send(&1u8).unwrap();
            assert_eq!(wait(&objects, Some(LIMIT)).unwrap(), [1], "{method}");
            c_peer.send(&2u8).unwrap();
            assert_eq!(wait(&objects, Some(LIMIT)).unwrap(), [1, 2], "{method}");

            ctl.send(&0u8).unwrap();
            let deadline = Instant::now() + LIMIT;
            loop {
                let ready = wait(&objects, Some(LIMIT)).unwrap();
                if ready.contains(&3) {
                    assert_eq!(ready, [1, 2, 3], "{method}");
                    break;
                }
                assert_eq!(ready, [1, 2], "{method}");
                assert!(Instant::now() < deadline, "{method}: the sentinel never became ready");
                // The child has not exited yet: wait for the sentinel alone.
                assert_eq!(wait(&[&sentinel], Some(LIMIT)).unwrap(), [0], "{method}");
            }
        }
        finish(p);
        // A peer that went away makes its connection ready too.
        drop(a_peer);
        let mut b = b;
        assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 1);
        assert_eq!(c.recv_timeout::<u8>(LIMIT).unwrap(), 2);
        assert_eq!(wait(&[&a, &b, &c], Some(LIMIT)).unwrap(), [0], "{method}");
        assert!(a.recv_bytes_timeout(LIMIT).unwrap_err().is_disconnected());
    }
}

#[test]
fn returns_empty_on_timeout() {
    let (a, _a_peer) = pipe(true).unwrap();
    let (b, _b_peer) = pipe(false).unwrap();
    let (raw, _raw_peer) = UnixStream::pair().unwrap();
    let objects: [&dyn Waitable; 3] = [&a, &b, &raw];
    assert!(wait(&objects, Some(Duration::ZERO)).unwrap().is_empty());
    let started = Instant::now();
    assert!(wait(&objects, Some(SHORT)).unwrap().is_empty());
    assert!(started.elapsed() >= SHORT, "wait returned early");
    assert!(wait(&[], Some(SHORT)).unwrap().is_empty());
}

#[test]
fn counts_buffered_data_as_ready() {
    let (mut a, mut b) = pipe(true).unwrap();
    let (c, _c_peer) = pipe(true).unwrap();
    // Both messages are in the socket before the first receive, which reads ahead.
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 1);
    // The second message is in b's buffer, not in the socket: still ready.
    assert_eq!(wait(&[&c, &b], Some(Duration::ZERO)).unwrap(), [1]);
    assert_eq!(wait(&[&c, &b], None).unwrap(), [1]);
    assert!(b.poll(Some(Duration::ZERO)).unwrap());
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 2);
    assert!(wait(&[&c, &b], Some(Duration::ZERO)).unwrap().is_empty());
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
}

#[test]
fn waits_for_a_message_from_another_thread() {
    let (mut a, b) = pipe(true).unwrap();
    let (c, _d) = pipe(true).unwrap();
    let sender = Bounded::spawn("sender", move || {
        std::thread::sleep(Duration::from_millis(50));
        a.send(&"late").unwrap();
        a
    });
    assert_eq!(wait(&[&c, &b], Some(LIMIT)).unwrap(), [1]);
    drop(sender.join(LIMIT));
}

#[test]
fn never_counts_a_closed_connection_as_ready() {
    let (mut a, mut b) = pipe(true).unwrap();
    let (c, _c_peer) = pipe(true).unwrap();
    a.send(&1u8).unwrap();
    a.send(&2u8).unwrap();
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 1);
    // b holds the second message in its buffer when it is closed.
    b.close();
    assert!(b.wait_fd().is_none());
    assert!(!b.ready_now(), "a closed connection reports buffered data");
    assert!(wait(&[&b, &c], Some(SHORT)).unwrap().is_empty());
}
