//! Connections: round trip to an echo child, bulk throughput, small typed messages (CPython:
//! `multiprocessing.Pipe()` with a fork child, the same constants).

use std::time::Instant;

use multiproc_pipe::{Connection, pipe};
use multiproc_process::{Process, StartMethod};

use crate::median;

const ROUNDTRIP_BATCH: usize = 2000;
const BULK_SIZE: usize = 1 << 20;
const BULK_BATCH: usize = 200;
const SMALL_BATCH: u64 = 100_000;
const BATCHES: usize = 5;

fn echo_bytes(mut conn: Connection) {
    loop {
        let msg = conn.recv_bytes().expect("recv");
        if msg.is_empty() {
            return;
        }
        conn.send_bytes(&msg).expect("send");
    }
}

fn drain_bytes(mut conn: Connection) {
    for _ in 0..BATCHES {
        for _ in 0..BULK_BATCH {
            conn.recv_bytes().expect("recv");
        }
        conn.send_bytes(b"k").expect("send");
    }
}

fn drain_objects(mut conn: Connection) {
    for _ in 0..BATCHES {
        let mut total = 0u64;
        for _ in 0..SMALL_BATCH {
            total += conn.recv::<u64>().expect("recv");
        }
        conn.send(&total).expect("send");
    }
}

fn child<F: Fn(Connection) + Send + 'static>(target: F, conn: Connection) -> Process {
    let mut p = Process::new(target, conn);
    p.set_start_method(StartMethod::Fork);
    p.start().expect("start");
    p
}

fn finish(mut p: Process) {
    assert_eq!(p.join().expect("join"), 0, "child exit code");
}

pub(crate) fn roundtrip_64b() -> (&'static str, f64) {
    let (mut ours, theirs) = pipe(true).expect("pipe");
    let p = child(echo_bytes, theirs);
    let msg = [b'x'; 64];
    let samples = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ROUNDTRIP_BATCH {
                ours.send_bytes(&msg).expect("send");
                ours.recv_bytes().expect("recv");
            }
            start.elapsed().as_secs_f64() / ROUNDTRIP_BATCH as f64 * 1e6
        })
        .collect();
    ours.send_bytes(b"").expect("send");
    finish(p);
    ("us", median(samples))
}

pub(crate) fn throughput_1mib() -> (&'static str, f64) {
    let (mut writer, reader) = pipe(true).expect("pipe");
    let p = child(drain_bytes, reader);
    let msg = vec![b'x'; BULK_SIZE];
    let samples = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BULK_BATCH {
                writer.send_bytes(&msg).expect("send");
            }
            writer.recv_bytes().expect("ack");
            (BULK_SIZE * BULK_BATCH) as f64 / start.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    finish(p);
    ("MB/s", median(samples))
}

fn drain_objects_oneway((mut conn, mut ack): (Connection, Connection)) {
    for _ in 0..BATCHES {
        let mut total = 0u64;
        for _ in 0..SMALL_BATCH {
            total += conn.recv::<u64>().expect("recv");
        }
        ack.send(&total).expect("send");
    }
}

pub(crate) fn small_msgs_oneway() -> (&'static str, f64) {
    let (reader, mut writer) = pipe(false).expect("pipe");
    let (mut ack_r, ack_w) = pipe(false).expect("pipe");
    let mut p = Process::new(drain_objects_oneway, (reader, ack_w));
    p.set_start_method(StartMethod::Fork);
    p.start().expect("start");
    let samples = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..SMALL_BATCH {
                writer.send(&i).expect("send");
            }
            let total: u64 = ack_r.recv().expect("total");
            assert_eq!(total, SMALL_BATCH * (SMALL_BATCH - 1) / 2);
            SMALL_BATCH as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    finish(p);
    ("items/s", median(samples))
}

pub(crate) fn small_msgs() -> (&'static str, f64) {
    let (mut writer, reader) = pipe(true).expect("pipe");
    let p = child(drain_objects, reader);
    let samples = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for i in 0..SMALL_BATCH {
                writer.send(&i).expect("send");
            }
            let total: u64 = writer.recv().expect("total");
            assert_eq!(total, SMALL_BATCH * (SMALL_BATCH - 1) / 2);
            SMALL_BATCH as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    finish(p);
    ("items/s", median(samples))
}
