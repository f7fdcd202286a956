//! Tests for passing connections and file descriptors: a `Connection` as a child process's
//! argument (Spawn and ForkServer), a `Connection` or an `Fd` sent through another connection,
//! and what cannot carry descriptors.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use multiproc_pipe::{Connection, Error, pipe};
use multiproc_wire::Fd;

/// In a child: echoes every message until told to stop; returns how many it echoed.
fn echo(mut conn: Connection) -> usize {
    let mut count = 0;
    loop {
        let message = conn.recv_bytes_timeout(LIMIT).expect("child: recv");
        if message == b"stop" {
            return count;
        }
        conn.send_bytes(&message).expect("child: send");
        count += 1;
    }
}

#[test]
fn passes_a_connection_to_a_child_process() {
    for method in METHODS {
        let (mut ours, theirs) = pipe(true).unwrap();
        let p = start(method, echo, theirs);
        let messages = [b"hello".to_vec(), Vec::new(), pattern(1 << 20), b"bye".to_vec()];
        for message in &messages {
            ours.send_bytes(message).unwrap();
            let back = ours.recv_bytes_timeout(LIMIT).unwrap();
            assert!(back == *message, "{method}: a message of {} bytes came back damaged", message.len());
        }
        ours.send_bytes(b"stop").unwrap();
        assert_eq!(finish(p), messages.len(), "{method}");
        // The child's end was the only other copy: its exit is end of stream here.
        assert!(matches!(ours.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)), "{method}");
    }
}

/// In a child: sends the numbers 0..n on a sending end.
fn produce((mut conn, n): (Connection, u32)) {
    for i in 0..n {
        conn.send(&i).expect("child: send");
    }
}

/// In a child: adds up numbers until the other end closes.
fn consume(mut conn: Connection) -> u64 {
    let mut sum = 0;
    loop {
        match conn.recv_timeout::<u64>(LIMIT) {
            Ok(n) => sum += n,
            Err(Error::Disconnected) => return sum,
            Err(err) => panic!("child: recv: {err}"),
        }
    }
}

#[test]
fn passes_one_way_ends_to_child_processes() {
    for method in METHODS {
        let (mut reader, writer) = pipe(false).unwrap();
        let p = start(method, produce, (writer, 1000));
        for i in 0..1000u32 {
            assert_eq!(reader.recv_timeout::<u32>(LIMIT).unwrap(), i, "{method}");
        }
        finish(p);
        assert!(matches!(reader.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)), "{method}");

        let (reader, mut writer) = pipe(false).unwrap();
        let p = start(method, consume, reader);
        for i in 1..=100u64 {
            writer.send(&i).unwrap();
        }
        drop(writer);
        assert_eq!(finish(p), 5050, "{method}");
    }
}

#[test]
fn sends_a_connection_through_a_connection() {
    let (mut a, mut b) = pipe(true).unwrap();
    let (mut c, mut d) = pipe(true).unwrap();
    c.set_max_message_size(1 << 20);
    a.send(&c).unwrap();
    drop(c);
    let mut c2: Connection = b.recv_timeout(LIMIT).unwrap();
    assert!(c2.readable() && c2.writable());
    assert_eq!(c2.max_message_size(), 1 << 20);
    c2.send(&"through the passed connection").unwrap();
    assert_eq!(d.recv_timeout::<String>(LIMIT).unwrap(), "through the passed connection");
    d.send_bytes(&pattern(200_000)).unwrap();
    assert!(c2.recv_bytes_timeout(LIMIT).unwrap() == pattern(200_000));
    // The passed copy was the last: dropping it is end of stream for the peer.
    drop(c2);
    assert!(matches!(d.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)));

    // A one-way end keeps its direction.
    let (mut r, w) = pipe(false).unwrap();
    a.send(&(7u8, w)).unwrap();
    let (seven, mut w2): (u8, Connection) = b.recv_timeout(LIMIT).unwrap();
    assert_eq!(seven, 7);
    assert!(!w2.readable() && w2.writable());
    w2.send(&1.5f64).unwrap();
    assert_eq!(r.recv_timeout::<f64>(LIMIT).unwrap(), 1.5);
}

/// In a child: receives a connection through `ctl`, greets through it and answers a question.
fn use_a_received_connection(mut ctl: Connection) -> u32 {
    let mut conn: Connection = ctl.recv_timeout(LIMIT).expect("child: recv a connection");
    conn.send("from the child").expect("child: send");
    let n: u32 = conn.recv_timeout(LIMIT).expect("child: recv");
    n + 1
}

#[test]
fn sends_a_connection_to_a_running_child() {
    for method in METHODS {
        let (mut ctl, theirs) = pipe(true).unwrap();
        let p = start(method, use_a_received_connection, theirs);
        let (mut d, c) = pipe(true).unwrap();
        ctl.send(&c).unwrap();
        drop(c);
        assert_eq!(d.recv_timeout::<String>(LIMIT).unwrap(), "from the child", "{method}");
        d.send(&41u32).unwrap();
        assert_eq!(finish(p), 42, "{method}");
        assert!(matches!(d.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)), "{method}");
    }
}

#[test]
fn refuses_to_send_a_connection_it_cannot_hand_over() {
    let (mut a, mut b) = pipe(true).unwrap();
    // A closed connection.
    let (mut c, _d) = pipe(true).unwrap();
    c.close();
    assert!(matches!(a.send(&c), Err(Error::Encode(_))));
    // One holding received bytes that the receiver would never see.
    let (mut e, mut f) = pipe(true).unwrap();
    f.send(&1u8).unwrap();
    f.send(&2u8).unwrap();
    assert_eq!(e.recv_timeout::<u8>(LIMIT).unwrap(), 1);
    assert!(matches!(a.send(&e), Err(Error::Encode(_))));
    // Nothing was sent; the connection is still usable.
    assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    a.send(&"fine").unwrap();
    assert_eq!(b.recv_timeout::<String>(LIMIT).unwrap(), "fine");
}

/// A stream pair whose reading end times out instead of blocking.
fn stream_pair() -> (UnixStream, UnixStream) {
    let (x, y) = UnixStream::pair().unwrap();
    y.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    (x, y)
}

/// Writes `tag` through `sent` and checks that it arrives at `peer` (and nowhere else).
fn assert_connected(sent: Fd, peer: &mut UnixStream, tag: &[u8]) {
    let mut stream = UnixStream::from(OwnedFd::from(sent));
    stream.write_all(tag).unwrap();
    drop(stream);
    let mut got = Vec::new();
    peer.read_to_end(&mut got).expect("read through the passed descriptor");
    assert_eq!(got, tag, "the passed descriptor is not the one sent");
}

#[test]
fn sends_a_file_descriptor_through_a_duplex_connection() {
    let (mut a, mut b) = pipe(true).unwrap();
    let (x, mut y) = stream_pair();
    a.send(&(Fd::from(OwnedFd::from(x)), "label")).unwrap();
    let (fd, label): (Fd, String) = b.recv_timeout(LIMIT).unwrap();
    assert_eq!(label, "label");
    assert_connected(fd, &mut y, b"through the descriptor");

    // Several descriptors in one message and then in the next ones stay in order.
    let (xs, mut ys): (Vec<UnixStream>, Vec<UnixStream>) = (0..5).map(|_| stream_pair()).unzip();
    let sent: Vec<Fd> = xs.into_iter().map(|x| Fd::from(OwnedFd::from(x))).collect();
    let mut sent = sent.into_iter();
    let three: Vec<Fd> = sent.by_ref().take(3).collect();
    a.send(&three).unwrap();
    drop(three);
    a.send(&sent.next()).unwrap();
    a.send(&("none", 0u8)).unwrap();
    a.send(&sent.next().unwrap()).unwrap();
    let got: Vec<Fd> = b.recv_timeout(LIMIT).unwrap();
    let fourth: Option<Fd> = b.recv_timeout(LIMIT).unwrap();
    let _: (String, u8) = b.recv_timeout(LIMIT).unwrap();
    let fifth: Fd = b.recv_timeout(LIMIT).unwrap();
    let received = got.into_iter().chain(fourth).chain([fifth]);
    for (i, (fd, y)) in received.zip(&mut ys).enumerate() {
        assert_connected(fd, y, format!("descriptor {i}").as_bytes());
    }
}

#[test]
fn passes_many_descriptors_in_one_message() {
    let (mut a, mut b) = pipe(true).unwrap();
    let (x, mut y) = stream_pair();
    let x: OwnedFd = x.into();
    let many: Vec<Fd> = (0..200).map(|_| Fd::from(x.try_clone().unwrap())).collect();
    drop(x);
    a.send(&many).unwrap();
    drop(many);
    let got: Vec<Fd> = b.recv_timeout(LIMIT).unwrap();
    assert_eq!(got.len(), 200);
    let mut streams: Vec<UnixStream> =
        got.into_iter().map(|fd| UnixStream::from(OwnedFd::from(fd))).collect();
    streams[199].write_all(b"last").unwrap();
    drop(streams);
    let mut buf = Vec::new();
    y.read_to_end(&mut buf).unwrap();
    assert_eq!(buf, b"last");
}

#[test]
fn passes_the_most_descriptors_one_message_can_carry() {
    let (mut a, mut b) = pipe(true).unwrap();
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let most: Vec<Fd> =
        (0..multiproc_wire::sys::MAX_FDS).map(|_| Fd::from(null.try_clone().unwrap())).collect();
    a.send(&most).unwrap();
    let got: Vec<Fd> = b.recv_timeout(LIMIT).unwrap();
    assert_eq!(got.len(), multiproc_wire::sys::MAX_FDS);
}

#[test]
fn refuses_more_descriptors_than_one_message_can_carry() {
    let (mut a, mut b) = pipe(true).unwrap();
    let null: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    let too_many: Vec<Fd> =
        (0..=multiproc_wire::sys::MAX_FDS).map(|_| Fd::from(null.try_clone().unwrap())).collect();
    assert!(matches!(a.send(&too_many), Err(Error::Encode(_))));
    assert!(!b.poll(Some(Duration::ZERO)).unwrap(), "something was sent");
}

#[test]
fn carries_descriptors_over_a_one_way_pipe() {
    let (mut r, mut w) = pipe(false).unwrap();
    let (x, mut y) = UnixStream::pair().unwrap();
    w.send(&(7u8, Fd::from(OwnedFd::from(x)))).unwrap();
    let (n, fd): (u8, Fd) = r.recv_timeout(LIMIT).unwrap();
    assert_eq!(n, 7);
    let mut x = UnixStream::from(OwnedFd::from(fd));
    x.write_all(b"via").unwrap();
    let mut got = [0u8; 3];
    y.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"via");
    // The direction still holds.
    assert!(matches!(r.send(&1u8), Err(Error::WrongDirection(_))));
}

#[test]
fn drops_the_descriptors_of_a_message_it_does_not_decode() {
    let (mut a, mut b) = pipe(true).unwrap();
    b.set_max_message_size(100);
    // A message with a descriptor that is too large, one received as bytes, and one that is not
    // the expected type: none of their descriptors may be taken for a later message's.
    let (x1, mut y1) = stream_pair();
    a.send(&(Fd::from(OwnedFd::from(x1)), pattern(1000))).unwrap();
    let (x2, mut y2) = stream_pair();
    a.send(&Fd::from(OwnedFd::from(x2))).unwrap();
    let (x3, mut y3) = stream_pair();
    a.send(&(Fd::from(OwnedFd::from(x3)), 5u8)).unwrap();
    let (x4, mut y4) = stream_pair();
    a.send(&Fd::from(OwnedFd::from(x4))).unwrap();
    assert!(matches!(b.recv_timeout::<(Fd, Vec<u8>)>(LIMIT), Err(Error::TooLarge { .. })));
    assert!(!b.recv_bytes_timeout(LIMIT).unwrap().is_empty());
    assert!(matches!(b.recv_timeout::<(Fd, String)>(LIMIT), Err(Error::Decode(_))));
    let fourth: Fd = b.recv_timeout(LIMIT).unwrap();
    assert_connected(fourth, &mut y4, b"fourth");
    // The other descriptors were closed, not kept: their peers see end of stream.
    for (i, y) in [&mut y1, &mut y2, &mut y3].into_iter().enumerate() {
        let mut buf = [0u8; 1];
        match y.read(&mut buf) {
            Ok(0) => {}
            Ok(_) => panic!("descriptor {} carried data", i + 1),
            Err(err) if err.kind() == ErrorKind::WouldBlock => panic!("descriptor {} is still open", i + 1),
            Err(err) => panic!("descriptor {}: {err}", i + 1),
        }
    }
    // Nothing is left over that would stop the connection from being handed over.
    let (mut g, mut h) = pipe(true).unwrap();
    g.send(&b).unwrap_or_else(|e| panic!("cannot send a connection that has read everything: {e}"));
    let mut b2: Connection = h.recv_timeout(LIMIT).unwrap();
    a.send(&"still in step").unwrap();
    assert_eq!(b2.recv_timeout::<String>(LIMIT).unwrap(), "still in step");
}
