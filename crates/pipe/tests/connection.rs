//! Tests for `Connection` and `pipe`: messages, typed values, timeouts, end of stream, broken
//! frames and message limits, over real socket pairs and pipes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Connection, DEFAULT_MAX_MESSAGE, Error, pipe};
use serde::{Deserialize, Serialize};

/// A short wait for data that is not coming.
const SHORT: Duration = Duration::from_millis(20);

/// Both kinds of pipe as (receiving end, sending end, name).
fn pairs() -> Vec<(Connection, Connection, &'static str)> {
    let (a, b) = pipe(true).expect("duplex pipe");
    let (r, w) = pipe(false).expect("one-way pipe");
    vec![(a, b, "duplex"), (r, w, "one-way")]
}

#[test]
fn exchanges_messages_both_ways_over_a_duplex_pipe() {
    let (mut a, mut b) = pipe(true).unwrap();
    assert!(a.readable() && a.writable() && b.readable() && b.writable());
    for i in 0..100u32 {
        a.send(&i).unwrap();
        assert_eq!(b.recv_timeout::<u32>(LIMIT).unwrap(), i);
        b.send(&format!("reply {i}")).unwrap();
        assert_eq!(a.recv_timeout::<String>(LIMIT).unwrap(), format!("reply {i}"));
    }
    // Several messages queued in one direction arrive in order.
    for i in 0..50u32 {
        b.send_bytes(&i.to_be_bytes()).unwrap();
    }
    for i in 0..50u32 {
        assert_eq!(a.recv_bytes_timeout(LIMIT).unwrap(), i.to_be_bytes());
    }
}

#[test]
fn carries_messages_one_way_over_a_simplex_pipe() {
    let (mut reader, mut writer) = pipe(false).unwrap();
    assert!(reader.readable() && !reader.writable());
    assert!(!writer.readable() && writer.writable());
    writer.send(&("one way", 1u8)).unwrap();
    writer.send_bytes(b"raw").unwrap();
    assert_eq!(reader.recv_timeout::<(String, u8)>(LIMIT).unwrap(), ("one way".to_owned(), 1));
    assert_eq!(reader.recv_bytes_timeout(LIMIT).unwrap(), b"raw");
}

#[test]
fn refuses_the_wrong_direction() {
    let (mut reader, mut writer) = pipe(false).unwrap();
    assert!(matches!(reader.send(&1u8), Err(Error::WrongDirection(_))));
    assert!(matches!(reader.send_bytes(b"x"), Err(Error::WrongDirection(_))));
    assert!(matches!(writer.recv::<u8>(), Err(Error::WrongDirection(_))));
    assert!(matches!(writer.recv_bytes(), Err(Error::WrongDirection(_))));
    assert!(matches!(writer.recv_bytes_into(&mut [0; 8]), Err(Error::WrongDirection(_))));
    assert!(matches!(writer.poll(Some(SHORT)), Err(Error::WrongDirection(_))));
    // Both ends still work the right way round.
    writer.send(&7u8).unwrap();
    assert_eq!(reader.recv_timeout::<u8>(LIMIT).unwrap(), 7);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Point,
    Circle { radius: f64 },
    Polygon(Vec<(i32, i32)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Drawing {
    name: String,
    shapes: Vec<Shape>,
    tags: BTreeMap<String, Option<u64>>,
    scale: (f32, f64),
    flags: [bool; 3],
    initial: char,
}

fn drawing() -> Drawing {
    Drawing {
        name: "ünïcødé ✓".into(),
        shapes: vec![
            Shape::Point,
            Shape::Circle { radius: -2.5 },
            Shape::Polygon(vec![(0, 0), (i32::MIN, 3)]),
        ],
        tags: [("a".to_owned(), Some(u64::MAX)), ("b".to_owned(), None)].into_iter().collect(),
        scale: (0.5, f64::MAX),
        flags: [true, false, true],
        initial: '∂',
    }
}

#[test]
fn round_trips_serde_types() {
    for (mut rx, mut tx, kind) in pairs() {
        tx.send(&42i32).unwrap();
        tx.send(&-1i64).unwrap();
        tx.send(&u128::MAX).unwrap();
        tx.send("a str").unwrap();
        tx.send(&vec![1u64, 2, 3]).unwrap();
        tx.send(&Some("x".to_owned())).unwrap();
        tx.send(&None::<u8>).unwrap();
        tx.send(&()).unwrap();
        tx.send(&(1u8, "two".to_owned(), 3.0f64)).unwrap();
        tx.send(&drawing()).unwrap();
        tx.send(&Vec::<Drawing>::new()).unwrap();
        assert_eq!(rx.recv_timeout::<i32>(LIMIT).unwrap(), 42, "{kind}");
        assert_eq!(rx.recv_timeout::<i64>(LIMIT).unwrap(), -1, "{kind}");
        assert_eq!(rx.recv_timeout::<u128>(LIMIT).unwrap(), u128::MAX, "{kind}");
        assert_eq!(rx.recv_timeout::<String>(LIMIT).unwrap(), "a str", "{kind}");
        assert_eq!(rx.recv_timeout::<Vec<u64>>(LIMIT).unwrap(), [1, 2, 3], "{kind}");
        assert_eq!(rx.recv_timeout::<Option<String>>(LIMIT).unwrap(), Some("x".to_owned()), "{kind}");
        assert_eq!(rx.recv_timeout::<Option<u8>>(LIMIT).unwrap(), None, "{kind}");
        rx.recv_timeout::<()>(LIMIT).unwrap();
        assert_eq!(
            rx.recv_timeout::<(u8, String, f64)>(LIMIT).unwrap(),
            (1, "two".to_owned(), 3.0),
            "{kind}"
        );
        assert_eq!(rx.recv_timeout::<Drawing>(LIMIT).unwrap(), drawing(), "{kind}");
        assert_eq!(rx.recv_timeout::<Vec<Drawing>>(LIMIT).unwrap(), [], "{kind}");
    }
}

#[test]
fn reports_a_decode_error_and_keeps_going() {
    let (mut a, mut b) = pipe(true).unwrap();
    a.send(&drawing()).unwrap();
    a.send(&7u16).unwrap();
    a.send_bytes(b"").unwrap();
    a.send(&"after").unwrap();
    // A message that is not the expected type is consumed with an error...
    assert!(matches!(b.recv_timeout::<(u8, bool)>(LIMIT), Err(Error::Decode(_))));
    assert!(matches!(b.recv_timeout::<String>(LIMIT), Err(Error::Decode(_))));
    // ...as is an empty message, which cannot hold a value.
    assert!(matches!(b.recv_timeout::<()>(LIMIT), Err(Error::Decode(_))));
    // The stream stays in step.
    assert_eq!(b.recv_timeout::<String>(LIMIT).unwrap(), "after");
}

#[test]
fn receives_bytes_into_a_buffer() {
    let (mut a, mut b) = pipe(true).unwrap();
    a.send_bytes(b"hello").unwrap();
    a.send_bytes(b"exactly8").unwrap();
    a.send_bytes(b"this one is too long").unwrap();
    a.send_bytes(b"next").unwrap();
    let big = pattern(300 << 10);
    let mut buf = [0u8; 8];
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 8);
    assert_eq!(&buf, b"exactly8");
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(whole)) => assert_eq!(whole, b"this one is too long"),
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"next");
    // A message larger than the read-ahead buffer, too long and then long enough.
    let sender = {
        let big = big.clone();
        Bounded::spawn("sender", move || {
            a.send_bytes(&big).unwrap();
            a.send_bytes(&big).unwrap();
            a
        })
    };
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort(whole)) => {
            assert!(whole == big, "BufferTooShort carries a damaged message")
        }
        other => panic!("expected BufferTooShort, got {other:?}"),
    }
    let mut large = vec![0u8; big.len() + 1];
    assert_eq!(b.recv_bytes_into(&mut large).unwrap(), big.len());
    assert!(large[..big.len()] == big[..], "the message was damaged");
    drop(sender.join(LIMIT));
}

#[test]
fn polls_with_timeouts() {
    for (mut rx, mut tx, kind) in pairs() {
        assert!(!rx.poll(Some(SHORT)).unwrap(), "{kind}: poll on an empty connection");
        assert!(!rx.poll(Some(Duration::ZERO)).unwrap(), "{kind}: poll(0) on an empty connection");
        tx.send_bytes(b"data").unwrap();
        assert!(rx.poll(Some(LIMIT)).unwrap(), "{kind}: poll with a message waiting");
        // Polling consumes nothing.
        assert!(rx.poll(Some(Duration::ZERO)).unwrap(), "{kind}: poll again");
        assert_eq!(rx.recv_bytes_timeout(LIMIT).unwrap(), b"data");
        assert!(!rx.poll(Some(Duration::ZERO)).unwrap(), "{kind}: poll after the message was read");
        drop(tx);
        assert!(rx.poll(Some(LIMIT)).unwrap(), "{kind}: poll at end of stream");
        assert!(matches!(rx.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)), "{kind}");
    }
}

#[test]
fn waits_for_a_poll_until_data_arrives() {
    let (mut a, mut b) = pipe(true).unwrap();
    let sender = Bounded::spawn("sender", move || {
        std::thread::sleep(Duration::from_millis(50));
        a.send(&1u8).unwrap();
        a
    });
    assert!(b.poll(None).unwrap());
    assert_eq!(b.recv_timeout::<u8>(LIMIT).unwrap(), 1);
    drop(sender.join(LIMIT));
}

#[test]
fn times_out_and_keeps_working() {
    for (mut rx, mut tx, kind) in pairs() {
        let started = Instant::now();
        let err = rx.recv_timeout::<u32>(SHORT).unwrap_err();
        assert!(err.is_timeout(), "{kind}: {err:?}");
        assert!(started.elapsed() >= SHORT, "{kind}: timed out early");
        assert!(matches!(rx.recv_bytes_timeout(Duration::ZERO), Err(Error::Timeout)), "{kind}");
        tx.send(&5u32).unwrap();
        assert_eq!(rx.recv_timeout::<u32>(LIMIT).unwrap(), 5, "{kind}");
        assert!(matches!(rx.recv_bytes_timeout(SHORT), Err(Error::Timeout)), "{kind}");
        tx.send_bytes(b"still working").unwrap();
        assert_eq!(rx.recv_bytes_timeout(LIMIT).unwrap(), b"still working", "{kind}");
    }
}

/// Writes `frame` through the raw end in the pieces cut at `cuts`, checking that a receive
/// between pieces times out, and that the whole message arrives at the end.
fn deliver_in_pieces(frame: &[u8], cuts: &[usize], payload: &[u8], typed: bool) {
    let (mut conn, mut raw) = raw_pair();
    let mut from = 0;
    for &cut in cuts {
        write_raw(&mut raw, &frame[from..cut]);
        from = cut;
        let result = if typed {
            conn.recv_timeout::<Vec<u8>>(Duration::from_millis(2)).map(|_| ())
        } else {
            conn.recv_bytes_timeout(Duration::from_millis(2)).map(|_| ())
        };
        assert!(matches!(result, Err(Error::Timeout)), "after {cut} of {} bytes: {result:?}", frame.len());
    }
    write_raw(&mut raw, &frame[from..]);
    write_raw(&mut raw, &[header(2, false), b"ok".to_vec()].concat());
    if typed {
        let got: Vec<u8> = conn.recv_timeout(LIMIT).unwrap();
        let want: Vec<u8> = multiproc_wire::decode_typed(&payload[1..], Vec::new()).unwrap();
        assert!(got == want, "the message of {} bytes was damaged", frame.len());
    } else {
        let got = conn.recv_bytes_timeout(LIMIT).unwrap();
        assert!(got == payload, "the message of {} bytes was damaged", frame.len());
    }
    assert_eq!(conn.recv_bytes_timeout(LIMIT).unwrap(), b"ok");
}

#[test]
fn resumes_a_message_that_arrives_in_pieces_across_timeouts() {
    // A small message: the header split, then the body split.
    let small = pattern(1000);
    let frame = [header(1000, false), small.clone()].concat();
    deliver_in_pieces(&frame, &[2, 4, 500], &small, false);
    // The long header form, split inside the length.
    let frame = [header(1000, true), small.clone()].concat();
    deliver_in_pieces(&frame, &[3, 6, 12, 13], &small, false);
    // A message larger than the read-ahead buffer, in many pieces.
    let large = pattern((1 << 20) + 3);
    let frame = [header(large.len() as u64, false), large.clone()].concat();
    let cuts: Vec<usize> = (1..=16).map(|i| i * 65_000).collect();
    deliver_in_pieces(&frame, &cuts, &large, false);
    // A typed value (a descriptor count byte, a fingerprint and a bincode Vec<u8>) in pieces.
    let mut encoded = vec![0u8];
    encoded.extend(multiproc_wire::encode_typed(&pattern(200_000)).unwrap().bytes);
    let frame = [header(encoded.len() as u64, false), encoded.clone()].concat();
    deliver_in_pieces(&frame, &[1, 4, 5, 70_000, 150_000], &encoded, true);
}

#[test]
fn fails_with_closed_after_close() {
    let (mut a, mut b) = pipe(true).unwrap();
    b.send_bytes(b"unread").unwrap();
    assert!(!a.closed());
    assert!(a.fileno().is_some());
    a.close();
    assert!(a.closed());
    assert!(a.fileno().is_none());
    assert!(matches!(a.send(&1u8), Err(Error::Closed)));
    assert!(matches!(a.send_bytes(b"x"), Err(Error::Closed)));
    assert!(matches!(a.recv::<u8>(), Err(Error::Closed)));
    assert!(matches!(a.recv_bytes(), Err(Error::Closed)));
    assert!(matches!(a.recv_bytes_timeout(SHORT), Err(Error::Closed)));
    assert!(matches!(a.recv_bytes_into(&mut [0; 8]), Err(Error::Closed)));
    assert!(matches!(a.poll(Some(SHORT)), Err(Error::Closed)));
    assert!(matches!(a.try_clone(), Err(Error::Closed)));
    // Closing twice is harmless; the peer sees end of stream.
    a.close();
    assert!(matches!(b.recv_bytes_timeout(LIMIT), Err(Error::Disconnected)));
    assert!(matches!(b.send_bytes(b"x"), Err(Error::Disconnected)));
}

#[test]
fn reports_disconnected_when_the_peer_is_dropped() {
    for (mut rx, mut tx, kind) in pairs() {
        tx.send(&1u8).unwrap();
        // Less than a pipe's smallest buffer, so that it is sent before anyone reads.
        tx.send_bytes(&pattern(50_000)).unwrap();
        drop(tx);
        // What was sent before is still received, then end of stream, again and again.
        assert_eq!(rx.recv_timeout::<u8>(LIMIT).unwrap(), 1, "{kind}");
        assert!(rx.recv_bytes_timeout(LIMIT).unwrap() == pattern(50_000), "{kind}");
        for _ in 0..3 {
            let err = rx.recv_bytes_timeout(LIMIT).unwrap_err();
            assert!(matches!(err, Error::Disconnected), "{kind}: {err:?}");
            assert!(err.is_disconnected());
        }
        assert!(matches!(rx.recv::<u8>(), Err(Error::Disconnected)), "{kind}");
    }
}

#[test]
fn reports_truncated_when_the_peer_closes_mid_message() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("half a header", vec![0, 0]),
        ("a header alone", header(10, false)),
        ("a header and part of the body", [header(10, false), vec![1, 2, 3]].concat()),
        ("part of a long header", header(10, true)[..7].to_vec()),
        ("a long header and part of the body", [header(10, true), vec![1]].concat()),
        ("part of a large body", [header(1 << 20, false), pattern(100_000)].concat()),
    ];
    for (what, bytes) in cases {
        let (mut conn, mut raw) = raw_pair();
        let writer = Bounded::spawn("writer", move || write_raw(&mut raw, &bytes));
        writer.join(LIMIT);
        let err = conn.recv_bytes_timeout(LIMIT).unwrap_err();
        assert!(matches!(err, Error::Truncated), "{what}: {err:?}");
        assert!(err.is_disconnected(), "{what}");
        // After that, only end of stream.
        let err = conn.recv_bytes_timeout(LIMIT).unwrap_err();
        assert!(err.is_disconnected(), "{what}, then: {err:?}");
    }
}

#[test]
fn reports_disconnected_when_sending_to_a_closed_peer() {
    for (rx, mut tx, kind) in pairs() {
        drop(rx);
        assert!(matches!(tx.send_bytes(b"x"), Err(Error::Disconnected)), "{kind}");
        assert!(matches!(tx.send(&pattern(1 << 20)), Err(Error::Disconnected)), "{kind}");
        // Again, with a message larger than any buffer.
        assert!(matches!(tx.send_bytes(&pattern(4 << 20)), Err(Error::Disconnected)), "{kind}");
    }
}

/// Makes `SIGPIPE` kill the process again, as it does in a program that restores the default.
mod sys {
    pub(crate) fn default_sigpipe() {
        // SAFETY: SIG_DFL installs no handler code; this runs in a child process that does
        // nothing else afterwards but this test's sends.
        let previous = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        assert_ne!(previous, libc::SIG_ERR, "signal(SIGPIPE, SIG_DFL) failed");
    }
}

/// In a child: with `SIGPIPE` at its default action, sends to peers that have gone.
fn send_after_peers_left(_: ()) -> Vec<String> {
    sys::default_sigpipe();
    let mut outcomes = Vec::new();
    for (rx, mut tx, _) in pairs() {
        drop(rx);
        outcomes.push(format!("{:?}", tx.send_bytes(b"x").map_err(|e| e.to_string())));
        outcomes.push(format!("{:?}", tx.send(&pattern(1 << 20)).map_err(|e| e.to_string())));
    }
    outcomes
}

#[test]
fn sends_to_a_gone_peer_without_dying_of_sigpipe() {
    for method in METHODS {
        let p = start(method, send_after_peers_left, ());
        let outcomes = finish(p);
        assert_eq!(outcomes, vec![r#"Err("peer disconnected")"#; 4], "{method}");
    }
}

#[test]
fn round_trips_messages_of_many_sizes() {
    const K: usize = 1 << 10;
    let sizes = [
        0,
        1,
        2,
        3,
        4,
        11,
        12,
        13,
        64 * K - 1,
        64 * K,
        64 * K + 1,
        64 * K + 12,
        5,
        3 << 20,
        0,
        (8 << 20) + 7,
        64 * K - 12,
        64 * K + 1,
        1,
        16 << 20,
        2,
    ];
    for (mut rx, mut tx, kind) in pairs() {
        let reader = Bounded::spawn("reader", move || {
            let mut got = Vec::new();
            for _ in sizes {
                got.push(rx.recv_bytes_timeout(LIMIT).unwrap());
            }
            let typed: Vec<u8> = rx.recv_timeout(LIMIT).unwrap();
            (got, typed)
        });
        for len in sizes {
            tx.send_bytes(&pattern(len)).unwrap();
        }
        tx.send(&pattern(3 << 20)).unwrap();
        let (got, typed) = reader.join(LIMIT);
        for (message, len) in got.iter().zip(sizes) {
            assert_eq!(message.len(), len, "{kind}");
            assert!(*message == pattern(len), "{kind}: a message of {len} bytes was damaged");
        }
        assert!(typed == pattern(3 << 20), "{kind}: the typed message was damaged");
    }
}

#[test]
fn clones_a_sending_end_for_another_thread() {
    let (mut a, mut b) = pipe(true).unwrap();
    a.set_max_message_size(1234);
    let mut a2 = a.try_clone().unwrap();
    assert_eq!(a2.max_message_size(), 1234);
    let sender = Bounded::spawn("sender", move || {
        for i in 0..1000u32 {
            a2.send(&i).unwrap();
        }
    });
    for i in 0..1000u32 {
        assert_eq!(b.recv_timeout::<u32>(LIMIT).unwrap(), i);
    }
    sender.join(LIMIT);
    b.send(&"back").unwrap();
    assert_eq!(a.recv_timeout::<String>(LIMIT).unwrap(), "back");
}

#[test]
fn refuses_a_message_above_the_limit_and_receives_the_next() {
    for (mut rx, mut tx, kind) in pairs() {
        assert_eq!(rx.max_message_size(), DEFAULT_MAX_MESSAGE);
        rx.set_max_message_size(1000);
        assert_eq!(rx.max_message_size(), 1000);
        let writer = Bounded::spawn("writer", move || {
            tx.send_bytes(&pattern(1000)).unwrap();
            tx.send_bytes(&pattern(1001)).unwrap();
            tx.send_bytes(b"after").unwrap();
            tx.send_bytes(&pattern(3 << 20)).unwrap();
            tx.send(&12345u64).unwrap();
            tx.send(&pattern(5000)).unwrap();
            tx.send_bytes(b"last").unwrap();
            tx
        });
        assert!(rx.recv_bytes_timeout(LIMIT).unwrap() == pattern(1000), "{kind}");
        match rx.recv_bytes_timeout(LIMIT) {
            Err(Error::TooLarge { len: 1001, max: 1000 }) => {}
            other => panic!("{kind}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(rx.recv_bytes_timeout(LIMIT).unwrap(), b"after", "{kind}");
        match rx.recv_bytes_timeout(LIMIT) {
            Err(Error::TooLarge { len, max: 1000 }) if len == 3 << 20 => {}
            other => panic!("{kind}: expected TooLarge, got {other:?}"),
        }
        assert_eq!(rx.recv_timeout::<u64>(LIMIT).unwrap(), 12345, "{kind}");
        assert!(matches!(rx.recv_timeout::<Vec<u8>>(LIMIT), Err(Error::TooLarge { .. })), "{kind}");
        assert_eq!(rx.recv_bytes_timeout(LIMIT).unwrap(), b"last", "{kind}");
        drop(writer.join(LIMIT));
    }
}

#[test]
fn skips_an_oversized_message_that_arrives_in_pieces() {
    let (mut conn, mut raw) = raw_pair();
    conn.set_max_message_size(100);
    write_raw(&mut raw, &[header(5000, false), pattern(1000)].concat());
    assert!(matches!(conn.recv_bytes_timeout(LIMIT), Err(Error::TooLarge { len: 5000, max: 100 })));
    // The rest of the oversized message has not arrived: still skipping.
    assert!(matches!(conn.recv_bytes_timeout(SHORT), Err(Error::Timeout)));
    write_raw(&mut raw, &pattern(3999));
    assert!(matches!(conn.recv_bytes_timeout(SHORT), Err(Error::Timeout)));
    write_raw(&mut raw, &[vec![0], header(4, false), b"next".to_vec()].concat());
    assert_eq!(conn.recv_bytes_timeout(LIMIT).unwrap(), b"next");
    // An oversized message cut short by the peer.
    write_raw(&mut raw, &[header(5000, true), pattern(10)].concat());
    drop(raw);
    assert!(matches!(conn.recv_bytes_timeout(LIMIT), Err(Error::TooLarge { len: 5000, max: 100 })));
    assert!(matches!(conn.recv_bytes_timeout(LIMIT), Err(Error::Truncated)));
}

#[test]
fn refuses_a_huge_claimed_length_at_once() {
    let lengths = [
        (DEFAULT_MAX_MESSAGE + 1, false),
        (i32::MAX as u64, false),
        (DEFAULT_MAX_MESSAGE + 1, true),
        (i32::MAX as u64 + 1, true),
        (1 << 40, true),
        (i64::MAX as u64, true),
        (1 << 63, true),
        (u64::MAX, true),
    ];
    for (len, long) in lengths {
        let (mut conn, mut raw) = raw_pair();
        // Only the header: a receiver that waited for the body, or allocated it, would time out
        // or abort.
        write_raw(&mut raw, &header(len, long));
        match conn.recv_bytes_timeout(LIMIT) {
            Err(Error::TooLarge { len: got, max: DEFAULT_MAX_MESSAGE }) => assert_eq!(got, len),
            other => panic!("a claimed length of {len}: expected TooLarge, got {other:?}"),
        }
        drop(raw);
        assert!(matches!(conn.recv_bytes_timeout(LIMIT), Err(Error::Truncated)), "{len}");
    }
}

#[test]
fn rejects_a_negative_length() {
    for len in [-2i32, -100, i32::MIN] {
        let (mut conn, mut raw) = raw_pair();
        write_raw(&mut raw, &[len.to_be_bytes().as_slice(), b"garbage"].concat());
        let err = conn.recv_bytes_timeout(LIMIT).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "length {len}: {err:?}");
        // The stream is out of step; what follows is refused, not misread as a frame.
        assert!(conn.recv_bytes_timeout(SHORT).is_err(), "length {len}: a message after it");
    }
}

#[test]
fn describes_errors_in_lowercase_without_a_period() {
    let errors = [
        Error::Closed,
        Error::WrongDirection("read-only"),
        Error::Disconnected,
        Error::Truncated,
        Error::TooLarge { len: 2, max: 1 },
        Error::BufferTooShort(vec![0; 3]),
        Error::Timeout,
        Error::Encode("x".into()),
        Error::Decode("x".into()),
        Error::Auth("x".into()),
        Error::Io(std::io::Error::other("x")),
    ];
    for err in errors {
        let text = err.to_string();
        assert!(text.chars().next().is_some_and(|c| c.is_lowercase()), "{text:?}");
        assert!(!text.ends_with('.'), "{text:?}");
    }
}
