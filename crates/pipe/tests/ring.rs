//! Tests of the shared-memory path of connections made by `pipe`: several senders on one end
//! (threads and processes), senders and receivers that die, ends passed with messages still
//! in their ring, and wake-ups that carry no message.

mod common;

use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Connection, Error, pipe, wait};

/// Bigger than a ring: such a message is published in pieces.
const HUGE: usize = 3 << 20;

/// A message that shows which sender sent it, its place in that sender's sequence, and
/// whether its bytes arrived whole.
fn message(sender: u32, seq: u32) -> (u32, u32, Vec<u8>) {
    let len = match seq % 50 {
        0 => HUGE + seq as usize,
        7 => 70_000,
        n => n as usize * 13,
    };
    let mut body = pattern(len);
    body.iter_mut().take(8).for_each(|b| *b ^= sender as u8);
    (sender, seq, body)
}

/// Receives `senders × per_sender` messages and checks each is whole and in its sender's order.
fn receive_all(rx: &mut Connection, senders: u32, per_sender: u32) {
    let mut next = vec![0u32; senders as usize];
    for _ in 0..senders * per_sender {
        let got: (u32, u32, Vec<u8>) = rx.recv_timeout(LIMIT).unwrap();
        let (sender, seq) = (got.0, got.1);
        assert!(sender < senders, "unknown sender {sender}");
        assert_eq!(seq, next[sender as usize], "sender {sender}: out of order");
        assert!(got == message(sender, seq), "sender {sender}: message {seq} was damaged");
        next[sender as usize] += 1;
    }
}

#[test]
fn threads_sending_on_clones_of_one_end_never_mix_messages() {
    let (mut rx, tx) = pipe(false).unwrap();
    let senders: Vec<_> = (0..4u32)
        .map(|sender| {
            let mut tx = tx.try_clone().unwrap();
            Bounded::spawn("sender", move || {
                for seq in 0..120 {
                    tx.send(&message(sender, seq)).unwrap();
                }
            })
        })
        .collect();
    receive_all(&mut rx, 4, 120);
    for sender in senders {
        sender.join(LIMIT);
    }
}

fn send_messages((mut tx, sender): (Connection, u32)) {
    for seq in 0..120 {
        tx.send(&message(sender, seq)).expect("child: send");
    }
}

#[test]
fn processes_sharing_one_end_never_mix_messages() {
    for method in METHODS {
        let (mut rx, tx) = pipe(false).unwrap();
        let children: Vec<_> =
            (0..2u32).map(|sender| start(method, send_messages, (tx.try_clone().unwrap(), sender))).collect();
        receive_all(&mut rx, 2, 120);
        children.into_iter().for_each(finish);
    }
}

fn send_huge(mut tx: Connection) {
    tx.send_bytes(&pattern(HUGE)).expect("child: send");
}

#[test]
fn a_sender_killed_mid_message_is_reported_not_mixed_into_the_next() {
    for method in METHODS {
        let (mut rx, mut tx) = pipe(false).unwrap();
        // The child blocks with a ring's worth of its message published: nobody reads.
        let mut p = start(method, send_huge, tx.try_clone().unwrap());
        assert!(rx.poll(Some(LIMIT)).unwrap(), "{method}: nothing was published");
        std::thread::sleep(Duration::from_millis(50));
        p.kill().unwrap();
        // Another sender on the same end finds the stream broken rather than appending to it,
        // even while the dead sender is a zombie nobody has reaped yet.
        assert!(matches!(tx.send_bytes(b"after"), Err(Error::Truncated)), "{method}");
        assert!(matches!(rx.recv_bytes_timeout(LIMIT), Err(Error::Truncated)), "{method}");
        assert!(rx.poll(Some(LIMIT)).unwrap(), "{method}: a broken ring must look ready");
        p.join().unwrap();
    }
}

#[test]
fn a_sole_sender_killed_mid_message_leaves_a_truncated_message() {
    for method in METHODS {
        let (mut rx, tx) = pipe(false).unwrap();
        let mut p = start(method, send_huge, tx);
        assert!(rx.poll(Some(LIMIT)).unwrap(), "{method}: nothing was published");
        p.kill().unwrap();
        p.join().unwrap();
        assert!(matches!(rx.recv_bytes_timeout(LIMIT), Err(Error::Truncated)), "{method}");
        assert!(matches!(rx.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)), "{method}");
    }
}

fn receive_once_then_spin(mut rx: Connection) {
    let _: u8 = rx.recv_timeout(LIMIT).expect("child: recv");
    let until = Instant::now() + LIMIT;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn a_sender_learns_that_a_killed_receiver_is_gone() {
    for method in METHODS {
        let (rx, mut tx) = pipe(false).unwrap();
        let mut p = start(method, receive_once_then_spin, rx);
        tx.send(&0u8).unwrap();
        // Let the child take the message and get busy (not sleeping on the ring).
        std::thread::sleep(Duration::from_millis(200));
        p.kill().unwrap();
        p.join().unwrap();
        let failed = (0..2000).map(|_| tx.send_bytes(&[7u8; 100])).position(|r| r.is_err());
        let failed = failed.unwrap_or_else(|| panic!("{method}: 2000 sends to a dead receiver succeeded"));
        assert!(failed <= 300, "{method}: the death was noticed only after {failed} sends");
        assert!(matches!(tx.send(&1u8), Err(Error::Disconnected)), "{method}");
    }
}

fn sum_three(mut rx: Connection) -> u64 {
    (0..3).map(|_| rx.recv_timeout::<u64>(LIMIT).expect("child: recv")).sum()
}

#[test]
fn passes_an_end_with_messages_still_in_its_ring() {
    for method in METHODS {
        let (rx, mut tx) = pipe(false).unwrap();
        for n in [1u64, 20, 300] {
            tx.send(&n).unwrap();
        }
        let p = start(method, sum_three, rx);
        assert_eq!(finish(p), 321, "{method}");
    }
}

#[test]
fn a_wake_up_without_a_message_does_not_make_an_end_ready() {
    let (mut a, mut b) = pipe(true).unwrap();
    // `b` sleeps (its peer will ring), then the message arrives and is read: the wake-up
    // signal stays behind on the socket.
    assert!(wait(&[&b], Some(Duration::from_millis(10))).unwrap().is_empty());
    a.send(&5u8).unwrap();
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 5);
    assert!(wait(&[&b], Some(Duration::from_millis(30))).unwrap().is_empty());
    assert!(!b.poll(Some(Duration::from_millis(30))).unwrap());
    assert!(matches!(b.recv_timeout::<u8>(Duration::from_millis(30)), Err(Error::Timeout)));
    // And the next message still wakes it.
    let sender = Bounded::spawn("sender", move || {
        std::thread::sleep(Duration::from_millis(20));
        a.send(&6u8).unwrap();
        a
    });
    assert_eq!(wait(&[&b], Some(LIMIT)).unwrap(), [0]);
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 6);
    drop(sender.join(LIMIT));
}

#[test]
fn resumes_a_large_message_across_timeouts() {
    let (mut rx, mut tx) = pipe(false).unwrap();
    let sender = Bounded::spawn("sender", move || {
        for len in [HUGE, 5, HUGE + 3] {
            tx.send_bytes(&pattern(len)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut timeouts = 0;
    let until = Instant::now() + LIMIT;
    for len in [HUGE, 5, HUGE + 3] {
        let message = loop {
            match rx.recv_bytes_timeout(Duration::from_micros(1)) {
                Ok(message) => break message,
                Err(Error::Timeout) => timeouts += 1,
                Err(err) => panic!("{err}"),
            }
            assert!(Instant::now() < until, "the message never arrived");
        };
        assert!(message == pattern(len), "a message of {len} bytes was damaged");
    }
    assert!(timeouts > 0, "no receive timed out: the test proves nothing");
    sender.join(LIMIT);
}

#[test]
fn descriptors_reach_the_receiving_handle_while_a_clone_waits_to_send() {
    use multiproc_wire::Fd;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    let (mut a, mut b) = pipe(true).unwrap();
    let mut a2 = a.try_clone().unwrap();
    // The clone blocks for room (nobody reads yet), watching the socket meanwhile.
    let sender = Bounded::spawn("sender", move || {
        for _ in 0..2 {
            a2.send_bytes(&pattern(HUGE)).unwrap();
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let mut far = Vec::new();
    for i in 0..5u8 {
        let (x, y) = UnixStream::pair().unwrap();
        b.send(&(i, Fd::from(OwnedFd::from(x)))).unwrap();
        far.push(y);
    }
    std::thread::sleep(Duration::from_millis(20));
    for (i, mut y) in far.into_iter().enumerate() {
        let (n, fd): (u8, Fd) = a.recv_timeout(LIMIT).unwrap();
        assert_eq!(usize::from(n), i);
        UnixStream::from(OwnedFd::from(fd)).write_all(&[n]).unwrap();
        let mut got = [0u8];
        y.read_exact(&mut got).unwrap();
        assert_eq!(got[0], n, "descriptor {i} went to the wrong message");
    }
    for _ in 0..2 {
        assert!(b.recv_bytes_timeout(LIMIT).unwrap() == pattern(HUGE));
    }
    sender.join(LIMIT);
}

#[test]
fn waits_on_a_socket_connection_and_a_closed_peer() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let (mut a, mut b) = (Connection::from(ours), Connection::from(theirs));
    b.send(&1u8).unwrap();
    assert_eq!(wait(&[&a], Some(LIMIT)).unwrap(), [0]);
    assert_eq!(a.recv_timeout::<u8>(LIMIT).unwrap(), 1);
    // The sending end of a one-way pipe is ready (end of stream) once its reader is gone.
    let (rx, tx) = pipe(false).unwrap();
    assert!(wait(&[&tx], Some(Duration::from_millis(20))).unwrap().is_empty());
    drop(rx);
    let started = Instant::now();
    assert_eq!(wait(&[&tx], Some(LIMIT)).unwrap(), [0]);
    assert!(started.elapsed() < LIMIT / 2);
}
