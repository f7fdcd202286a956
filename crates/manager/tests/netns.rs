//! Tests for a manager shared across two hosts: the server in one network namespace, clients
//! in another, joined by a veth pair with private addresses that exist only inside the two
//! namespaces (no traffic leaves them).
//!
//! The test re-executes this test binary inside each namespace (`ip netns exec NAME <binary>
//! --exact <helper>`), with environment variables telling the helper test its role; run
//! normally, the helpers do nothing. Without root or without `ip` the test is skipped, saying
//! why; the namespaces are deleted afterwards, also when the test fails.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use multiproc_manager::{Address, DictProxy, ErrorKind, Manager, ManagerServer, QueueProxy};
use multiproc_process::{Process, StartMethod};

const ROLE: &str = "MULTIPROC_MANAGER_NETNS_ROLE";
const ADDRESS: &str = "MULTIPROC_MANAGER_NETNS_ADDRESS";
const KEY: &[u8] = b"a key shared by both hosts";
const SERVER_IP: &str = "10.213.0.1";
const CLIENT_IP: &str = "10.213.0.2";
const PORT: u16 = 50123;
/// What the server helper prints once it serves.
const READY: &str = "netns-server-ready";
/// Items the client host puts: its own and its child's.
const CLIENT_ITEMS: usize = 11;

/// Two network namespaces and the veth pair between them; deleted on drop.
struct Hosts {
    names: [String; 2],
}

impl Hosts {
    fn new() -> Result<Hosts, String> {
        let pid = std::process::id();
        let hosts = Hosts { names: [format!("mpm{pid}s"), format!("mpm{pid}c")] };
        let [server, client] = &hosts.names;
        let (veth_server, veth_client) = (format!("mpv{pid}s"), format!("mpv{pid}c"));
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", server],
            vec!["netns", "add", client],
            vec!["link", "add", &veth_server, "type", "veth", "peer", "name", &veth_client],
            vec!["link", "set", &veth_server, "netns", server],
            vec!["link", "set", &veth_client, "netns", client],
        ];
        let server_cidr = format!("{SERVER_IP}/24");
        let client_cidr = format!("{CLIENT_IP}/24");
        let inside: Vec<Vec<&str>> = vec![
            vec!["-n", server, "addr", "add", &server_cidr, "dev", &veth_server],
            vec!["-n", client, "addr", "add", &client_cidr, "dev", &veth_client],
            vec!["-n", server, "link", "set", &veth_server, "up"],
            vec!["-n", client, "link", "set", &veth_client, "up"],
            vec!["-n", server, "link", "set", "lo", "up"],
            vec!["-n", client, "link", "set", "lo", "up"],
        ];
        for step in steps.iter().chain(&inside) {
            ip(step)?;
        }
        Ok(hosts)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth end inside it, and with it the pair.
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if euid != Some("0") {
        return Some("creating network namespaces needs root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("the `ip` command (iproute2) is missing".into());
    }
    None
}

/// Runs this test binary's `helper` test inside namespace `netns`, as `role`.
fn run_helper(netns: &str, helper: &str, role: &str) -> Child {
    let exe = std::env::current_exe().expect("the test binary");
    Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(exe)
        .args(["--exact", helper, "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(ADDRESS, format!("{SERVER_IP}:{PORT}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the helper")
}

/// The lines a child prints, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("    | {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits at most `limit` for `child`; kills it after that.
fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shares_a_queue_and_a_dict_across_hosts() {
    if let Some(reason) = skip_reason() {
        println!("skipped: {reason}");
        return;
    }
    let hosts = match Hosts::new() {
        Ok(hosts) => hosts,
        Err(err) => panic!("cannot make the namespaces: {err}"),
    };
    let mut server = run_helper(&hosts.names[0], "acts_as_netns_server", "server");
    let server_lines = lines(&mut server);
    let deadline = Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match server_lines.recv_timeout(left) {
            Ok(line) if line.ends_with(READY) => break,
            Ok(_) => {}
            Err(_) => {
                let _ = server.kill();
                let _ = server.wait();
                panic!("the server host never became ready");
            }
        }
    }
    let mut client = run_helper(&hosts.names[1], "acts_as_netns_client", "client");
    let _client_lines = lines(&mut client);
    let client_status = wait(&mut client, LIMIT, "the client host");
    // End of its standard input tells the server to check what it holds and stop.
    drop(server.stdin.take());
    let server_status = wait(&mut server, LIMIT, "the server host");
    assert!(client_status.success(), "the client host failed: {client_status}");
    assert!(server_status.success(), "the server host failed: {server_status}");
    let names = hosts.names.clone();
    drop(hosts);
    let list = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(names.iter().all(|n| !list.contains(n.as_str())), "namespaces left: {list}");
}

/// In the server's namespace: serves a queue and a dict on the veth address until its
/// standard input ends, then checks what the client host left in them.
#[test]
fn acts_as_netns_server() {
    if std::env::var(ROLE).as_deref() != Ok("server") {
        return;
    }
    let address: Address = std::env::var(ADDRESS).unwrap().parse().unwrap();
    let server = ManagerServer::bind(address, KEY).expect("bind the veth address");
    let local = server.manager().expect("a manager in the server");
    let queue: QueueProxy<String> = local.queue().unwrap();
    let dict: DictProxy<String, String> = local.dict().unwrap();
    queue.put("from the server host").unwrap();
    dict.set("server", SERVER_IP).unwrap();
    let (q, d) = (queue.clone(), dict.clone());
    server.register_callable("get_queue", move |()| Ok(q.clone())).unwrap();
    server.register_callable("get_dict", move |()| Ok(d.clone())).unwrap();
    let handle = server.shutdown_handle();
    let checker = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::stdin().read_line(&mut rest);
        let items: Vec<String> =
            (0..CLIENT_ITEMS).map(|_| queue.try_get().expect("an item from the client host")).collect();
        let copy: Vec<(String, String)> = dict.items().unwrap();
        handle.shutdown();
        (items, copy)
    });
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    server.serve_forever().unwrap();
    let (items, copy) = checker.join().expect("the check");
    assert!(items.iter().all(|i| i.starts_with("from the client host")), "{items:?}");
    assert_eq!(copy.len(), 3, "{copy:?}");
    assert!(copy.contains(&("client".to_string(), CLIENT_IP.to_string())), "{copy:?}");
    assert!(copy.contains(&("client child".to_string(), CLIENT_IP.to_string())), "{copy:?}");
}

/// A child process on the client host, given the proxies by its parent.
fn client_child((queue, dict): (QueueProxy<String>, DictProxy<String, String>)) {
    queue.put("from the client host's child").unwrap();
    dict.set("client child", CLIENT_IP).unwrap();
}

/// In the client's namespace: reaches the server host over the veth pair.
#[test]
fn acts_as_netns_client() {
    if std::env::var(ROLE).as_deref() != Ok("client") {
        return;
    }
    let address: Address = std::env::var(ADDRESS).unwrap().parse().unwrap();
    let err = Manager::connect(address.clone(), b"not the key").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err:?}");
    let manager = Manager::connect(address, KEY).expect("connect across hosts");
    let queue: QueueProxy<String> = manager.call("get_queue", &()).unwrap();
    let dict: DictProxy<String, String> = manager.call("get_dict", &()).unwrap();
    assert_eq!(queue.get_timeout(LIMIT).unwrap(), "from the server host");
    assert_eq!(dict.get("server").unwrap().as_deref(), Some(SERVER_IP));
    for i in 0..CLIENT_ITEMS - 1 {
        queue.put(&format!("from the client host {i}")).unwrap();
    }
    dict.set("client", CLIENT_IP).unwrap();
    let mut child = Process::new(client_child, (queue.clone(), dict.clone()));
    child.set_start_method(StartMethod::Spawn);
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    assert_eq!(queue.len().unwrap(), CLIENT_ITEMS);
}
