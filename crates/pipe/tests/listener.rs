//! Tests for `Listener` and `Client`: Unix paths, abstract names and TCP, the authkey
//! handshake in both directions, timeouts, and cleanup of socket files.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use multiproc_pipe::{Address, Client, Connection, Error, Listener};
use multiproc_wire::Fd;

const KEY: &[u8] = b"the right key";
const SHORT: Duration = Duration::from_millis(20);
/// The handshake limit in tests that wait for a handshake to fail.
const HANDSHAKE: Duration = Duration::from_millis(200);

/// One address of each kind, not in use.
fn addresses() -> Vec<Address> {
    vec![
        Address::Unix(unique_path("listener")),
        Address::Abstract(unique("abstract").into_bytes()),
        Address::localhost(0),
    ]
}

/// Connects a client with `key` (if any) from another thread.
fn connect(address: &Address, key: Option<&'static [u8]>) -> Bounded<Result<Connection, Error>> {
    let mut client = Client::new(address.clone()).timeout(LIMIT);
    if let Some(key) = key {
        client = client.authkey(key);
    }
    Bounded::spawn("client", move || client.connect())
}

/// Sends a few messages each way between the two ends of an accepted connection.
fn exchange(server: &mut Connection, client: &mut Connection) {
    server.send(&("hello", 1u32)).unwrap();
    assert_eq!(client.recv_timeout::<(String, u32)>(LIMIT).unwrap(), ("hello".to_owned(), 1));
    client.send_bytes(b"raw from the client").unwrap();
    assert_eq!(server.recv_bytes_timeout(LIMIT).unwrap(), b"raw from the client");
    let big = pattern(1 << 20);
    let sender = {
        let mut client = client.try_clone().unwrap();
        let big = big.clone();
        Bounded::spawn("sender", move || client.send_bytes(&big).unwrap())
    };
    assert!(server.recv_bytes_timeout(LIMIT).unwrap() == big, "a large message was damaged");
    sender.join(LIMIT);
}

#[test]
fn accepts_authenticated_clients_on_every_kind_of_address() {
    for address in addresses() {
        let listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        let bound = listener.address().clone();
        match (&address, &bound) {
            (Address::Tcp(_), Address::Tcp(addr)) => assert_ne!(addr.port(), 0, "the bound port"),
            _ => assert_eq!(bound, address),
        }
        if let Address::Unix(path) = &address {
            let kind = std::fs::symlink_metadata(path).expect("the socket file").file_type();
            assert!(kind.is_socket(), "{}", path.display());
        }
        let client = connect(&bound, Some(KEY));
        let mut server = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{address}: accept: {e}"));
        let mut client = client.join(LIMIT).unwrap_or_else(|e| panic!("{address}: connect: {e}"));
        exchange(&mut server, &mut client);
        // Accepted connections outlive their listener.
        drop(listener);
        exchange(&mut server, &mut client);
        if let Address::Unix(path) = &address {
            assert_gone(path);
        }
        // Nobody listens there any more.
        assert!(Client::new(bound.clone()).authkey(KEY).timeout(LIMIT).connect().is_err(), "{address}");
    }
}

#[test]
fn carries_descriptors_only_over_unix_sockets() {
    for address in addresses() {
        let listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        let client = connect(listener.address(), Some(KEY));
        let mut server = listener.accept_timeout(LIMIT).unwrap();
        let mut client = client.join(LIMIT).unwrap();
        let (x, _y) = UnixStream::pair().unwrap();
        let result = server.send(&Fd::from(OwnedFd::from(x)));
        if matches!(address, Address::Tcp(_)) {
            assert!(matches!(result, Err(Error::Encode(_))), "{address}: {result:?}");
            assert!(!client.poll(Some(SHORT)).unwrap(), "{address}: something was sent");
        } else {
            result.unwrap_or_else(|e| panic!("{address}: {e}"));
            client.recv_timeout::<Fd>(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        }
    }
}

#[test]
fn rejects_a_wrong_authkey_on_both_sides_and_keeps_accepting() {
    for address in addresses() {
        let listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        let bound = listener.address().clone();
        for wrong in [b"the wrong key".as_slice(), b"", b"the right key "] {
            let client = connect(&bound, Some(wrong));
            let server = listener.accept_timeout(LIMIT);
            let client = client.join(LIMIT);
            assert!(matches!(server, Err(Error::Auth(_))), "{address}: server: {server:?}");
            assert!(matches!(client, Err(Error::Auth(_))), "{address}: client: {client:?}");
        }
        let client = connect(&bound, Some(KEY));
        let mut server = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        let mut client = client.join(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        exchange(&mut server, &mut client);
    }
}

#[test]
fn fails_the_handshake_when_only_one_side_has_a_key() {
    for address in addresses() {
        // The listener has a key, the client none: the client never answers the challenge.
        let mut listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        listener.set_handshake_timeout(HANDSHAKE);
        let client = connect(listener.address(), None);
        let server = listener.accept_timeout(LIMIT);
        assert!(matches!(server, Err(Error::Auth(_))), "{address}: {server:?}");
        drop(client.join(LIMIT));
        drop(listener);

        if matches!(address, Address::Tcp(_)) {
            continue;
        }
        // The client has a key, the listener none: no challenge comes.
        let listener = Listener::bind(address.clone(), None).unwrap();
        let client = Client::new(listener.address().clone()).authkey(KEY).timeout(HANDSHAKE);
        let client = Bounded::spawn("client", move || client.connect());
        let server = listener.accept_timeout(LIMIT).unwrap();
        let client = client.join(LIMIT);
        assert!(matches!(client, Err(Error::Auth(_))), "{address}: {client:?}");
        drop(server);
    }
}

#[test]
fn refuses_tcp_without_an_authkey_unless_asked() {
    let err = Listener::bind(Address::localhost(0), None).unwrap_err();
    assert!(matches!(err, Error::Auth(_)), "{err:?}");
    let listener = Listener::bind_unauthenticated(Address::localhost(0)).unwrap();
    let client = connect(listener.address(), None);
    let mut server = listener.accept_timeout(LIMIT).unwrap();
    let mut client = client.join(LIMIT).unwrap();
    exchange(&mut server, &mut client);
}

#[test]
fn times_out_accepting() {
    for address in addresses() {
        let listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        let started = Instant::now();
        let err = listener.accept_timeout(SHORT).unwrap_err();
        assert!(matches!(err, Error::Timeout), "{address}: {err:?}");
        assert!(started.elapsed() >= SHORT, "{address}: accept timed out early");
        assert!(matches!(listener.accept_timeout(Duration::ZERO), Err(Error::Timeout)), "{address}");
        // Still accepting.
        let client = connect(listener.address(), Some(KEY));
        listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        client.join(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
    }
}

/// A raw connection to `address` that sends nothing, as a descriptor (closed on drop).
fn connect_raw(address: &Address) -> OwnedFd {
    match address {
        Address::Unix(path) => UnixStream::connect(path).unwrap().into(),
        Address::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            UnixStream::connect_addr(&addr).unwrap().into()
        }
        Address::Tcp(addr) => TcpStream::connect_timeout(addr, LIMIT).unwrap().into(),
    }
}

#[test]
fn fails_the_handshake_of_a_silent_client_in_time() {
    for address in addresses() {
        let mut listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        listener.set_handshake_timeout(HANDSHAKE);
        let silent = connect_raw(listener.address());
        let started = Instant::now();
        let err = listener.accept_timeout(LIMIT).unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, Error::Auth(_)), "{address}: {err:?}");
        assert!(took >= HANDSHAKE, "{address}: the handshake failed after {took:?}");
        assert!(took < LIMIT, "{address}: the handshake limit was not applied ({took:?})");
        // A client that leaves at once fails too, without waiting for the limit.
        drop(connect_raw(listener.address()));
        assert!(listener.accept_timeout(LIMIT).is_err(), "{address}");
        drop(silent);
        // The listener carries on.
        let client = connect(listener.address(), Some(KEY));
        listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        client.join(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
    }
}

#[test]
fn accepts_an_unlimited_handshake_timeout() {
    for address in addresses() {
        let mut listener = Listener::bind(address.clone(), Some(KEY)).unwrap();
        listener.set_handshake_timeout(Duration::MAX);
        let client = Client::new(listener.address().clone()).authkey(KEY).timeout(Duration::MAX);
        let client = Bounded::spawn("client", move || client.connect());
        let mut server = listener.accept_timeout(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        let mut client = client.join(LIMIT).unwrap_or_else(|e| panic!("{address}: {e}"));
        exchange(&mut server, &mut client);
    }
}

#[test]
fn serves_many_clients() {
    let path = unique_path("many");
    let listener = Listener::bind(path.clone(), Some(KEY)).unwrap();
    let clients: Vec<_> = (0..20u32)
        .map(|i| {
            let address = listener.address().clone();
            Bounded::spawn("client", move || {
                let mut conn = Client::new(address).authkey(KEY).timeout(LIMIT).connect().unwrap();
                conn.send(&i).unwrap();
                conn.recv_timeout::<u32>(LIMIT).unwrap()
            })
        })
        .collect();
    for _ in 0..20 {
        let mut conn = listener.accept_timeout(LIMIT).unwrap();
        let i: u32 = conn.recv_timeout(LIMIT).unwrap();
        conn.send(&(i * 10)).unwrap();
    }
    for (i, client) in clients.into_iter().enumerate() {
        assert_eq!(client.join(LIMIT), i as u32 * 10);
    }
    drop(listener);
    assert_gone(&path);
}

#[test]
fn refuses_a_path_in_use_and_leaves_it_alone() {
    let path = unique_path("in-use");
    let first = Listener::bind(path.clone(), Some(KEY)).unwrap();
    let err = Listener::bind(path.clone(), Some(KEY)).unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == ErrorKind::AddrInUse), "{err:?}");
    // The failed bind removed nothing: the first listener still works.
    let client = connect(first.address(), Some(KEY));
    first.accept_timeout(LIMIT).unwrap();
    client.join(LIMIT).unwrap();
    drop(first);
    assert_gone(&path);
}

#[test]
fn keeps_a_file_that_replaced_its_socket() {
    let path = unique_path("replaced");
    let listener = Listener::bind(path.clone(), Some(KEY)).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"not the listener's").unwrap();
    drop(listener);
    let kept = std::fs::read(&path);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(kept.unwrap(), b"not the listener's");
}

#[test]
fn reports_an_address_nobody_listens_on() {
    let path = unique_path("nobody");
    let err = Client::new(path.clone()).authkey(KEY).timeout(LIMIT).connect().unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == ErrorKind::NotFound), "{err:?}");
    let name = Address::Abstract(unique("nobody").into_bytes());
    let err = Client::new(name).timeout(LIMIT).connect().unwrap_err();
    assert!(matches!(&err, Error::Io(e) if e.kind() == ErrorKind::ConnectionRefused), "{err:?}");
    assert_gone(&path);
}

#[test]
fn parses_and_prints_addresses() {
    let cases = [
        ("127.0.0.1:5000", Address::localhost(5000)),
        ("[::1]:80", Address::Tcp("[::1]:80".parse().unwrap())),
        ("@name", Address::Abstract(b"name".to_vec())),
        ("/tmp/some.sock", Address::Unix("/tmp/some.sock".into())),
        ("relative.sock", Address::Unix("relative.sock".into())),
    ];
    for (text, address) in cases {
        assert_eq!(text.parse::<Address>().unwrap(), address, "{text}");
        assert_eq!(address.to_string(), text);
    }
}

#[test]
fn times_out_accepting_while_another_thread_accepts() {
    for address in addresses() {
        // Without a handshake, a client is connected (waiting to be accepted) as soon as
        // `connect` returns.
        let listener = Arc::new(Listener::bind_unauthenticated(address.clone()).unwrap());
        let timeout = Duration::from_millis(50);
        for round in 0..5 {
            let _client = Client::new(listener.address().clone()).timeout(LIMIT).connect().unwrap();
            // Two threads see the one waiting client at the same moment (each spins until both
            // run) and race to accept it: one gets it, the other must still time out.
            let arrived = Arc::new(AtomicUsize::new(0));
            let acceptors: Vec<_> = (0..2)
                .map(|_| {
                    let listener = listener.clone();
                    let arrived = arrived.clone();
                    Bounded::spawn("acceptor", move || {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let started = Instant::now();
                        while arrived.load(Ordering::SeqCst) < 2 && started.elapsed() < LIMIT {
                            std::hint::spin_loop();
                        }
                        listener.accept_timeout(timeout).map(drop)
                    })
                })
                .collect();
            let results: Vec<_> = acceptors.into_iter().map(|a| a.join(LIMIT)).collect();
            let what = format!("{address}, round {round}: {results:?}");
            assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{what}");
            assert!(results.iter().any(|r| matches!(r, Err(Error::Timeout))), "{what}");
        }
    }
}

#[test]
fn parses_addresses() {
    use multiproc_pipe::Address;
    assert!(matches!("127.0.0.1:6000".parse::<Address>().unwrap(), Address::Tcp(a) if a.port() == 6000));
    assert!(matches!("localhost:6001".parse::<Address>().unwrap(), Address::Tcp(a) if a.port() == 6001));
    assert_eq!("@name".parse::<Address>().unwrap(), Address::Abstract(b"name".to_vec()));
    assert_eq!("/tmp/x.sock".parse::<Address>().unwrap(), Address::Unix("/tmp/x.sock".into()));
    assert_eq!("rel.sock".parse::<Address>().unwrap(), Address::Unix("rel.sock".into()));
}
