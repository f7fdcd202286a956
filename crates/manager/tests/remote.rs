//! Tests for remote use: a `ManagerServer` run by a process of its own on a TCP address with
//! an authkey, registered callables handing out its queue and dict, and clients in other
//! processes that `connect` (CPython's `register('get_queue', callable=...)` pattern).

mod common;

use common::*;
use multiproc_manager::{Address, DictProxy, ErrorKind, Manager, ManagerServer, QueueProxy};
use multiproc_pipe::Connection;
use multiproc_process::Process;

const KEY: &[u8] = b"remote test key";

/// Serves a queue and a dict on a loopback port until told to stop; returns what the clients
/// left in them.
fn serve_on_tcp(mut control: Connection) -> (Vec<String>, Vec<(String, u32)>) {
    let server = ManagerServer::bind(Address::localhost(0), KEY).expect("bind");
    let local = server.manager().expect("a manager in the server");
    let queue: QueueProxy<String> = local.queue().expect("queue");
    let dict: DictProxy<String, u32> = local.dict().expect("dict");
    let (q, d) = (queue.clone(), dict.clone());
    server.register_callable("get_queue", move |()| Ok(q.clone())).expect("register");
    server.register_callable("get_dict", move |()| Ok(d.clone())).expect("register");
    control.send(&server.address().to_string()).expect("tell the address");
    let handle = server.shutdown_handle();
    // Told to stop: reads what the clients left, then stops the server.
    let stopper = std::thread::spawn(move || {
        let _ = control.recv::<String>();
        let mut left = Vec::new();
        while let Ok(item) = queue.try_get() {
            left.push(item);
        }
        let items = dict.items().expect("items");
        handle.shutdown();
        (left, items)
    });
    server.serve_forever().expect("serve");
    stopper.join().expect("the stopper")
}

/// A client process: connects, puts into the queue, counts in the dict.
fn client((address, name): (String, String)) -> usize {
    let manager = Manager::connect(address.parse::<Address>().unwrap(), KEY).expect("connect");
    let queue: QueueProxy<String> = manager.call("get_queue", &()).expect("get_queue");
    let dict: DictProxy<String, u32> = manager.call("get_dict", &()).expect("get_dict");
    for i in 0..10 {
        queue.put(&format!("{name}-{i}")).expect("put");
    }
    dict.set(&name, &10).expect("set");
    queue.len().expect("len")
}

#[test]
fn serves_clients_over_tcp() {
    scenario(|| {
        for method in METHODS {
            let (mut control, theirs) = multiproc_pipe::pipe(true).unwrap();
            let mut server = Process::new(serve_on_tcp, theirs);
            server.set_start_method(method);
            server.start().unwrap();
            let address: String = control.recv_timeout(LIMIT).expect("the server's address");

            let err = Manager::connect(address.parse::<Address>().unwrap(), b"wrong key").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");

            let mut clients: Vec<Process<usize>> = ["a", "b"]
                .iter()
                .map(|name| {
                    let mut p = Process::new(client, (address.clone(), name.to_string()));
                    p.set_start_method(method);
                    p
                })
                .collect();
            for c in &mut clients {
                c.start().unwrap();
            }
            for c in &mut clients {
                assert!(c.result().expect("a client") >= 10);
            }
            // This process is a client too: it takes one item.
            let manager = Manager::connect(address.parse::<Address>().unwrap(), KEY).unwrap();
            let queue: QueueProxy<String> = manager.call("get_queue", &()).unwrap();
            let first = queue.get_timeout(LIMIT).unwrap();
            assert!(first.ends_with("-0"), "{first}");

            control.send(&"stop".to_string()).unwrap();
            let (left, items) = server.result().expect("the server's report");
            assert_eq!(left.len(), 19);
            let mut items = items;
            items.sort();
            assert_eq!(items, [("a".to_string(), 10), ("b".to_string(), 10)]);
            assert!(queue.len().unwrap_err().is_disconnected(), "the server stopped");
        }
    });
}
