//! Tests for typed messages: a `recv::<T>` of a message of another type is a decode error that
//! names the types, over `pipe()`'s shared rings (from a child process) and over a
//! `Listener`/`Client` socket, and the connection stays usable for the next message.

mod common;

use common::*;
use multiproc_pipe::{Address, Client, Connection, Error, Listener, pipe};
use multiproc_process::StartMethod;
use multiproc_wire::Fd;

const KEY: &[u8] = b"typed key";

/// What a child sends, in order: each wrong-typed message is followed by one of the type the
/// parent expects.
fn send_mixed(mut conn: Connection) {
    conn.send(&String::new()).expect("child: send");
    conn.send(&1u64).expect("child: send");
    conn.send(&42u64).expect("child: send");
    conn.send(&2.5f64).expect("child: send");
    conn.send(&-1i64).expect("child: send");
    conn.send(&3u64).expect("child: send");
    conn.send_bytes(&[0; 9]).expect("child: send_bytes");
    conn.send(&4u64).expect("child: send");
    // A descriptor with a message of the wrong type: closed, never given to the next one.
    let null: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").expect("child: open").into();
    conn.send(&(Fd::from(null), String::from("x"))).expect("child: send");
    conn.send(&5u64).expect("child: send");
}

/// Receives what [`send_mixed`] sends, checking each refusal and each value after it.
fn receive_mixed(conn: &mut Connection) {
    let decode_error = |conn: &mut Connection, expected: &str, found: &str| {
        let err = conn.recv_timeout::<u64>(LIMIT).expect_err("a message of another type was accepted");
        let Error::Decode(message) = &err else { panic!("expected a decode error, got {err:?}") };
        assert!(message.contains(&format!("`{expected}`")), "{message}");
        // This process has used the sender's type, so it names it.
        assert!(message.contains(&format!("`{found}`")), "{message}");
    };
    decode_error(conn, "u64", "alloc::string::String");
    assert_eq!(conn.recv_timeout::<u64>(LIMIT).unwrap(), 1);
    let err = conn.recv_timeout::<f64>(LIMIT).expect_err("a u64 was received as an f64");
    assert!(matches!(&err, Error::Decode(m) if m.contains("`f64`") && m.contains("`u64`")), "{err:?}");
    let err = conn.recv_timeout::<u64>(LIMIT).expect_err("an f64 was received as a u64");
    assert!(matches!(&err, Error::Decode(m) if m.contains("`u64`") && m.contains("`f64`")), "{err:?}");
    decode_error(conn, "u64", "i64");
    assert_eq!(conn.recv_timeout::<u64>(LIMIT).unwrap(), 3);
    // Raw bytes carry no fingerprint: never a typed value.
    let err = conn.recv_timeout::<u64>(LIMIT).expect_err("raw bytes were received as a u64");
    assert!(matches!(&err, Error::Decode(m) if m.contains("`u64`")), "{err:?}");
    assert_eq!(conn.recv_timeout::<u64>(LIMIT).unwrap(), 4);
    decode_error(conn, "u64", "(multiproc_wire::fd::Fd, alloc::string::String)");
    assert_eq!(conn.recv_timeout::<u64>(LIMIT).unwrap(), 5);
}

/// An error names the sender's type when this process has met its fingerprint: meet them.
fn meet_the_senders_types() {
    use multiproc_wire::Fingerprint;
    for fingerprint in [
        Fingerprint::of::<String>(),
        Fingerprint::of::<i64>(),
        Fingerprint::of::<f64>(),
        Fingerprint::of::<(Fd, String)>(),
    ] {
        assert!(!fingerprint.name().is_empty());
    }
}

/// The tests of this binary count open descriptors: they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn refuses_messages_of_another_type_over_a_pipe() {
    let _serial = serial();
    meet_the_senders_types();
    for method in METHODS {
        let (mut ours, theirs) = pipe(true).unwrap();
        let p = start(method, send_mixed, theirs);
        let before = open_fds();
        receive_mixed(&mut ours);
        assert!(open_fds() <= before, "{method}: the refused message's descriptor was kept");
        finish(p);
    }
}

#[test]
fn refuses_messages_of_another_type_over_a_socket() {
    let _serial = serial();
    meet_the_senders_types();
    for address in [Address::Unix(unique_path("typed")), Address::localhost(0)] {
        let listener = Listener::bind(address, Some(KEY)).unwrap();
        let address = listener.address().clone();
        let client = Client::new(address).authkey(KEY).timeout(LIMIT);
        let tcp = matches!(listener.address(), Address::Tcp(_));
        let sender = Bounded::spawn("sender", move || {
            let mut conn = client.connect().unwrap();
            if tcp {
                // No descriptors over TCP: the same sequence without them.
                conn.send(&String::new()).unwrap();
                conn.send(&1u64).unwrap();
                conn.send(&"seven").unwrap();
                conn.send(&2u64).unwrap();
            } else {
                send_mixed(conn.try_clone().unwrap());
            }
            conn
        });
        let mut server = listener.accept_timeout(LIMIT).unwrap();
        let before = open_fds();
        if tcp {
            for expected in [1, 2] {
                let err = server.recv_timeout::<u64>(LIMIT).expect_err("a String was received as a u64");
                assert!(
                    matches!(&err, Error::Decode(m) if m.contains("`u64`") && m.contains("`alloc::string::String`")),
                    "{err:?}"
                );
                assert_eq!(server.recv_timeout::<u64>(LIMIT).unwrap(), expected);
            }
        } else {
            receive_mixed(&mut server);
            assert!(open_fds() <= before, "the refused message's descriptor was kept");
        }
        let mut client = sender.join(LIMIT);
        // A `&str` is a `String` on the wire, and the connection still works both ways.
        client.send(&"still in step").unwrap();
        assert_eq!(server.recv_timeout::<String>(LIMIT).unwrap(), "still in step");
        server.send(&(9u8, "back")).unwrap();
        assert_eq!(client.recv_timeout::<(u8, String)>(LIMIT).unwrap(), (9, "back".to_owned()));
        let path = match listener.address() {
            Address::Unix(path) => Some(path.clone()),
            _ => None,
        };
        drop(listener);
        if let Some(path) = path {
            assert_gone(&path);
        }
    }
}

#[test]
fn a_child_started_with_every_method_gets_typed_messages() {
    let _serial = serial();
    // The fingerprint of a type is the same in every process of the executable.
    fn echo_typed(mut conn: Connection) -> u64 {
        let (word, n): (String, u64) = conn.recv_timeout(LIMIT).expect("child: recv");
        conn.send(&(word.len() as u64 + n)).expect("child: send");
        n
    }
    for method in [StartMethod::Spawn, StartMethod::ForkServer] {
        let (mut ours, theirs) = pipe(true).unwrap();
        let p = start(method, echo_typed, theirs);
        ours.send(&("four", 3u64)).unwrap();
        assert_eq!(ours.recv_timeout::<u64>(LIMIT).unwrap(), 7);
        assert_eq!(finish(p), 3);
    }
}
