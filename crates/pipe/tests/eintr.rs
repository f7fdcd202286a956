//! Tests for blocking calls interrupted by signals (`EINTR`): receiving, sending, waiting and
//! accepting carry on while a `SIGUSR1` handler installed without `SA_RESTART` keeps
//! interrupting the blocked thread. The handler is process-wide state, so these tests have
//! their own test binary.

mod common;

use std::os::unix::thread::JoinHandleExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use multiproc_pipe::{Client, Listener, pipe, wait};

/// The signal handler, and sending the signal to one thread.
mod sys {
    use std::sync::Once;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DELIVERED: AtomicUsize = AtomicUsize::new(0);
    static INSTALL: Once = Once::new();

    extern "C" fn count(_: libc::c_int) {
        DELIVERED.fetch_add(1, Ordering::Relaxed);
    }

    /// Installs the `SIGUSR1` handler, without `SA_RESTART`: a system call it interrupts fails
    /// with `EINTR` instead of being restarted by the kernel.
    pub(crate) fn install() {
        INSTALL.call_once(|| {
            // SAFETY: sigaction is plain old data, filled in below; the handler only touches an
            // atomic, which is async-signal-safe; sa_flags 0 leaves out SA_RESTART on purpose.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = count as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = 0;
                libc::sigemptyset(&mut action.sa_mask);
                let ret = libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut());
                assert_eq!(ret, 0, "sigaction: {}", std::io::Error::last_os_error());
            }
        });
    }

    /// Sends `SIGUSR1` to `thread`, which must not have been joined or detached yet; false
    /// if it has already exited.
    pub(crate) fn interrupt(thread: libc::pthread_t) -> bool {
        // SAFETY: the caller keeps the thread's JoinHandle alive, so `thread` is a valid id;
        // the signal only runs the counting handler.
        unsafe { libc::pthread_kill(thread, libc::SIGUSR1) == 0 }
    }

    /// How many signals the handler has seen.
    pub(crate) fn delivered() -> usize {
        DELIVERED.load(Ordering::Relaxed)
    }
}

/// Keeps interrupting `threads` until `done` is set; returns how many signals it sent.
fn interrupter(threads: Vec<libc::pthread_t>, done: Arc<AtomicBool>) -> Bounded<usize> {
    Bounded::spawn("interrupter", move || {
        let mut sent = 0;
        while !done.load(Ordering::Relaxed) {
            for &thread in &threads {
                sent += usize::from(sys::interrupt(thread));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        sent
    })
}

/// Runs `work` in a thread while another keeps interrupting it; returns its result after
/// checking that signals were delivered meanwhile.
fn interrupted<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    sys::install();
    let before = sys::delivered();
    let done = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let worker = {
        let done = done.clone();
        std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            done.store(true, Ordering::Relaxed);
            let _ = tx.send(result);
        })
    };
    let signals = interrupter(vec![worker.as_pthread_t()], done.clone());
    let outcome = rx.recv_timeout(LIMIT);
    done.store(true, Ordering::Relaxed);
    // The interrupter has stopped before the worker's handle is joined or dropped.
    let sent = signals.join(LIMIT);
    match outcome {
        Ok(Ok(result)) => {
            worker.join().expect("the worker finished");
            assert!(sent > 0 && sys::delivered() > before, "{what}: no signal was delivered");
            result
        }
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("{what} did not finish within {LIMIT:?}"),
    }
}

#[test]
fn receives_a_large_message_while_interrupted() {
    let (mut conn, mut raw) = raw_pair();
    let message = pattern(8 << 20);
    let expected = message.clone();
    let writer = Bounded::spawn("writer", move || {
        let frame = [header(message.len() as u64, false), message].concat();
        // Slowly, so that the receiver blocks again and again.
        for piece in frame.chunks(128 << 10) {
            write_raw(&mut raw, piece);
            std::thread::sleep(Duration::from_millis(1));
        }
        write_raw(&mut raw, &[header(4, false), b"next".to_vec()].concat());
        raw
    });
    let (first, second) = interrupted("receiver", move || {
        let first = conn.recv_bytes().expect("recv_bytes");
        let second = conn.recv_bytes_timeout(LIMIT).expect("recv_bytes_timeout");
        (first, second)
    });
    drop(writer.join(LIMIT));
    assert!(first == expected, "the message was damaged");
    assert_eq!(second, b"next");
}

#[test]
fn sends_a_large_message_while_interrupted() {
    for duplex in [true, false] {
        let (mut rx, mut tx) = pipe(duplex).unwrap();
        let message = pattern(16 << 20);
        let expected = message.clone();
        let reader = Bounded::spawn("reader", move || {
            let mut got = Vec::new();
            // Slowly at first, so that the sender finds the buffer full.
            for _ in 0..3 {
                std::thread::sleep(Duration::from_millis(20));
                got.push(rx.recv::<u32>().expect("recv"));
            }
            (got, rx.recv_bytes().expect("recv_bytes"))
        });
        interrupted("sender", move || {
            for i in 0..3u32 {
                tx.send(&i).unwrap();
            }
            tx.send_bytes(&message).unwrap();
        });
        let (got, last) = reader.join(LIMIT);
        assert_eq!(got, [0, 1, 2]);
        assert!(last == expected, "duplex {duplex}: the message was damaged");
    }
}

#[test]
fn waits_while_interrupted() {
    let (mut a, b) = pipe(true).unwrap();
    let (c, _d) = pipe(true).unwrap();
    let sender = Bounded::spawn("sender", move || {
        std::thread::sleep(Duration::from_millis(100));
        a.send(&1u8).unwrap();
        a
    });
    let (ready, polled) = interrupted("waiter", move || {
        let mut b = b;
        let ready = wait(&[&c, &b], Some(LIMIT)).unwrap();
        let polled = b.poll(Some(LIMIT)).unwrap();
        (ready, polled)
    });
    assert_eq!(ready, [1], "wait returned before anything was ready");
    assert!(polled);
    drop(sender.join(LIMIT));
}

#[test]
fn times_out_in_time_while_interrupted() {
    let (_a, mut b) = pipe(true).unwrap();
    let timeout = Duration::from_millis(100);
    let (result, took) = interrupted("receiver", move || {
        let started = std::time::Instant::now();
        let result = b.recv_bytes_timeout(timeout);
        (result.map_err(|e| e.is_timeout()), started.elapsed())
    });
    assert_eq!(result, Err(true));
    assert!(took >= timeout, "the receive timed out early: {took:?}");
}

#[test]
fn accepts_while_interrupted() {
    let path = unique_path("eintr");
    let listener = Listener::bind(path.clone(), Some(b"key")).unwrap();
    let address = listener.address().clone();
    let client = Bounded::spawn("client", move || {
        std::thread::sleep(Duration::from_millis(50));
        let mut conn = Client::new(address).authkey(b"key").timeout(LIMIT).connect().unwrap();
        conn.send(&"hi").unwrap();
        conn
    });
    let (greeting, listener) = interrupted("acceptor", move || {
        let mut conn = listener.accept_timeout(LIMIT).expect("accept");
        (conn.recv_timeout::<String>(LIMIT).expect("recv"), listener)
    });
    assert_eq!(greeting, "hi");
    drop(client.join(LIMIT));
    drop(listener);
    assert_gone(&path);
}
