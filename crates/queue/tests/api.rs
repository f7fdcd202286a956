//! Tests for the queues within one process: errors, timeouts, backpressure, sizes, threads.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use multiproc_queue::{GetError, JoinableQueue, PutError, Queue, SimpleQueue};
use serde::{Deserialize, Serialize, Serializer};

const LIMIT: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(50);

/// An item whose serialization fails when asked to.
#[derive(Debug, Deserialize, PartialEq)]
struct Picky(u32, bool);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.1 {
            return Err(serde::ser::Error::custom("refused"));
        }
        (self.0, self.1).serialize(serializer)
    }
}

#[test]
fn puts_and_gets_in_order() {
    let q = Queue::new().unwrap();
    assert!(q.empty());
    for i in 0..1000u32 {
        q.put(i).unwrap();
    }
    assert_eq!(q.qsize(), 1000);
    assert!(!q.full(), "an unbounded queue is never full");
    for i in 0..1000u32 {
        assert_eq!(q.get_nowait().unwrap(), i);
    }
    assert!(q.empty());
}

#[test]
fn reports_empty_full_and_closed() {
    let q = Queue::bounded(2).unwrap();
    assert!(matches!(q.get_nowait(), Err(GetError::Empty)));
    q.put_nowait(1u8).unwrap();
    q.put_timeout(2, SHORT).unwrap();
    assert!(q.full());
    assert_eq!(q.maxsize(), 2);
    let err = q.put_nowait(3).unwrap_err();
    assert!(err.is_full(), "{err}");
    assert_eq!(err.into_inner(), 3);

    let start = Instant::now();
    assert!(q.put_timeout(3, SHORT).unwrap_err().is_full());
    let waited = start.elapsed();
    assert!(waited >= SHORT && waited < LIMIT, "put_timeout waited {waited:?}");

    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    let start = Instant::now();
    assert!(q.get_timeout(SHORT).unwrap_err().is_empty());
    assert!(start.elapsed() >= SHORT);

    let other = q.clone();
    q.put(5).unwrap();
    q.close();
    assert!(other.put(6).unwrap_err().is_closed(), "clones share the closed flag");
    assert!(matches!(q.get(), Err(GetError::Closed)));
    assert_eq!(q.qsize(), 1, "closing drops nothing");
    assert_eq!(format!("{}", GetError::Closed), "queue is closed");
}

#[test]
fn survives_a_serialization_error() {
    let q = Queue::bounded(1).unwrap();
    match q.put(Picky(1, true)) {
        Err(PutError::Encode { item, error }) => {
            assert_eq!(item, Picky(1, true));
            assert!(error.to_string().contains("refused"), "{error}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert!(q.empty(), "nothing was enqueued");
    q.put_timeout(Picky(2, false), SHORT).expect("the queue stays usable with maxsize 1");
    assert_eq!(q.get_timeout(LIMIT).unwrap(), Picky(2, false));
}

#[test]
fn refuses_descriptors_and_oversized_items() {
    let q: Queue<multiproc_wire::Fd> = Queue::new().unwrap();
    let fd: std::os::fd::OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
    assert!(matches!(q.put(fd.into()), Err(PutError::Encode { .. })));

    let q: Queue<Vec<u8>> = Queue::with_buffer(0, 4096).unwrap();
    match q.put(vec![0; 8192]) {
        Err(PutError::TooLarge { size, capacity, .. }) => assert!(size > 8192 && capacity == 4096),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    q.put(vec![1; 100]).unwrap();
    assert_eq!(q.get().unwrap(), vec![1; 100]);
}

#[test]
fn waits_for_room_in_a_small_buffer() {
    // 64 KiB of buffer, items of 10 KiB: puts must wait for gets, never fail or drop.
    let q: Queue<Vec<u8>> = Queue::with_buffer(0, 64 << 10).unwrap();
    let consumer = {
        let q = q.clone();
        thread::spawn(move || (0..500u32).map(|i| q.get_timeout(LIMIT).map(|v| (i, v))).collect::<Vec<_>>())
    };
    for i in 0..500u32 {
        let mut item = vec![(i % 251) as u8; 10_000 + (i as usize % 7) * 100];
        item[0] = (i % 256) as u8;
        q.put_timeout(item, LIMIT).unwrap();
    }
    for result in consumer.join().unwrap() {
        let (i, v) = result.unwrap();
        assert_eq!(v.len(), 10_000 + (i as usize % 7) * 100);
        assert_eq!(v[0], (i % 256) as u8);
    }
}

#[test]
fn carries_items_from_bytes_to_64_mib() {
    let q: Queue<multiproc_wire::Bytes> = Queue::new().unwrap();
    let sizes = [0usize, 1, 7, 8, 9, 4096, 1 << 20, 64 << 20, 3, 10 << 20, 64 << 20, 5];
    let producer = {
        let q = q.clone();
        thread::spawn(move || {
            for (i, &size) in sizes.iter().enumerate() {
                let mut item = vec![i as u8; size];
                if let Some(last) = item.last_mut() {
                    *last = 0xAB;
                }
                q.put_timeout(multiproc_wire::Bytes(item), LIMIT).unwrap();
            }
        })
    };
    for (i, &size) in sizes.iter().enumerate() {
        let item = q.get_timeout(LIMIT).unwrap().into_vec();
        assert_eq!(item.len(), size, "item {i}");
        if size > 0 {
            assert!(item[..size - 1].iter().all(|&b| b == i as u8), "item {i} damaged");
            assert_eq!(item[size - 1], 0xAB);
        }
    }
    producer.join().unwrap();
    assert!(q.empty());
}

/// A deterministic pseudo-random sequence (xorshift).
fn sizes(seed: u64, n: usize, max: u64) -> Vec<usize> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % max) as usize
        })
        .collect()
}

#[test]
fn keeps_order_through_wraps_and_moves() {
    // A 1 MiB ring driven through its wrap and relocation paths by a backlog that grows and
    // shrinks with random item sizes; checked item by item.
    let q: Queue<(u64, multiproc_wire::Bytes)> = Queue::with_buffer(0, 1 << 20).unwrap();
    let mut next_put = 0u64;
    let mut next_get = 0u64;
    let lens = sizes(7, 20_000, 40_000);
    for (round, chunk) in lens.chunks(50).enumerate() {
        for &len in chunk {
            let item = (next_put, multiproc_wire::Bytes(vec![next_put as u8; len]));
            match q.put_nowait(item) {
                Ok(()) => next_put += 1,
                Err(e) => assert!(e.is_full(), "{e}"),
            }
        }
        let take = if round % 3 == 0 { 10 } else { 60 };
        for _ in 0..take {
            match q.get_nowait() {
                Ok((n, bytes)) => {
                    assert_eq!(n, next_get);
                    assert!(bytes.as_slice().iter().all(|&b| b == n as u8));
                    next_get += 1;
                }
                Err(e) => assert!(e.is_empty(), "{e}"),
            }
        }
    }
    while let Ok((n, _)) = q.get_nowait() {
        assert_eq!(n, next_get);
        next_get += 1;
    }
    assert_eq!(next_get, next_put);
    assert!(next_put > 10_000, "only {next_put} items went through");
}

#[test]
fn delivers_exactly_once_between_threads() {
    const PRODUCERS: u64 = 4;
    const CONSUMERS: usize = 4;
    const EACH: u64 = 20_000;
    let q: Queue<(u64, u64)> = Queue::bounded(64).unwrap();
    let start = Arc::new(Barrier::new(PRODUCERS as usize + CONSUMERS));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let (q, start) = (q.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut got = Vec::new();
                while let Ok(item) = q.get_timeout(Duration::from_millis(500)) {
                    got.push(item);
                }
                got
            })
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (q, start) = (q.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..EACH {
                    q.put_timeout((p, i), LIMIT).unwrap();
                }
            })
        })
        .collect();
    producers.into_iter().for_each(|t| t.join().unwrap());
    let mut seen = HashSet::new();
    for consumer in consumers {
        let got = consumer.join().unwrap();
        let mut last = vec![None; PRODUCERS as usize];
        for (p, i) in got {
            assert!(seen.insert((p, i)), "({p}, {i}) delivered twice");
            // One consumer sees each producer's items in the order they were put.
            assert!(last[p as usize] < Some(i), "producer {p}: {i} after {:?}", last[p as usize]);
            last[p as usize] = Some(i);
        }
    }
    assert_eq!(seen.len() as u64, PRODUCERS * EACH);
}

#[test]
fn simple_queue_puts_and_gets() {
    let q = SimpleQueue::new().unwrap();
    assert!(q.empty());
    q.put(String::from("x")).unwrap();
    assert!(!q.empty());
    assert_eq!(q.get().unwrap(), "x");
    assert!(q.get_timeout(SHORT).unwrap_err().is_empty());
    q.close();
    assert!(q.put(String::new()).unwrap_err().is_closed());
}

#[test]
fn joinable_queue_counts_tasks() {
    let q = JoinableQueue::new().unwrap();
    q.join_timeout(SHORT).expect("nothing put: join returns at once");
    q.put(1u32).unwrap();
    q.put(2).unwrap();
    assert!(q.join_timeout(SHORT).is_err());
    let worker = {
        let q = q.clone();
        thread::spawn(move || {
            for _ in 0..2 {
                q.get_timeout(LIMIT).unwrap();
                thread::sleep(Duration::from_millis(20));
                q.task_done().unwrap();
            }
        })
    };
    q.join_timeout(LIMIT).expect("join after every task_done");
    worker.join().unwrap();
    assert_eq!(q.task_done().unwrap_err().to_string(), "task_done called more times than items were put");
    q.join();
}

#[test]
fn sends_a_handle_through_the_codec() {
    let q: Queue<u8> = Queue::new().unwrap();
    q.put(9).unwrap();
    let encoded = multiproc_wire::encode(&q).unwrap();
    let fds = encoded.fds.iter().map(|&fd| reopen(fd)).collect();
    let same: Queue<u8> = multiproc_wire::decode(&encoded.bytes, fds).unwrap();
    assert_eq!(same.get_nowait().unwrap(), 9);

    // The wrong item type or kind is refused.
    let fds = encoded.fds.iter().map(|&fd| reopen(fd)).collect();
    assert!(multiproc_wire::decode::<Queue<u16>>(&encoded.bytes, fds).is_err());
    let fds = encoded.fds.iter().map(|&fd| reopen(fd)).collect();
    assert!(multiproc_wire::decode::<JoinableQueue<u8>>(&encoded.bytes, fds).is_err());
}

/// A new descriptor for the same memory file, as a receiving process would get.
fn reopen(fd: std::os::fd::RawFd) -> std::os::fd::OwnedFd {
    let file =
        std::fs::OpenOptions::new().read(true).write(true).open(format!("/proc/self/fd/{fd}")).unwrap();
    file.into()
}

/// Resident kilobytes of this process's mapping of `len` bytes of a queue's memory.
fn queue_rss_kb(len: usize) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut in_queue = false;
    for line in smaps.lines() {
        if let Some((range, rest)) = line.split_once(' ')
            && let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        {
            in_queue = end - start == len && rest.contains("memfd:multiproc-queue");
        } else if in_queue && let Some(kb) = line.strip_prefix("Rss:") {
            return kb.trim().trim_end_matches("kB").trim().parse().ok();
        }
    }
    None
}

#[test]
fn gives_memory_back_after_a_burst() {
    // An unusual buffer size, to find this queue's mapping among the others of this binary.
    let buffer = (200 << 20) + 3 * 4096;
    let q: Queue<multiproc_wire::Bytes> = Queue::with_buffer(0, buffer).unwrap();
    let mapping = 4096 + buffer;
    q.put(multiproc_wire::Bytes(vec![7; 64 << 20])).unwrap();
    let full = queue_rss_kb(mapping).expect("the queue's mapping");
    assert!(full >= 64 << 10, "{full} kB resident with a 64 MiB item queued");
    assert_eq!(q.get().unwrap().as_slice().len(), 64 << 20);
    let drained = queue_rss_kb(mapping).expect("the queue's mapping");
    assert!(drained <= 9 << 10, "{drained} kB still resident after draining");
    // The punched pages read as free space again: the queue works on.
    q.put(multiproc_wire::Bytes(vec![8; 40 << 20])).unwrap();
    assert!(q.get().unwrap().as_slice().iter().all(|&b| b == 8));
}
