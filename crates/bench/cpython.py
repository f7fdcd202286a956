#!/usr/bin/env python3
"""CPython `multiprocessing` side of the multiproc benchmarks (reference: CPython 3.11).

Same protocol as the Rust `multiproc-bench` binary, driven by `cargo xtask bench`:

    cpython.py --list        one workload name per line
    cpython.py [NAME...]     run those workloads (all without arguments)

Each workload run prints exactly one stdout line `<workload>\\t<unit>\\t<value>`, value being a
median over repetitions and unit `us` (microseconds per operation, lower is better) or
`ops/s`, `MB/s`, `items/s` (higher is better). Anything else goes to stderr.

A workload is one function registered with `@workload(name)` returning `(unit, value)`;
keep each under ~10 seconds.
"""

import multiprocessing
import statistics
import sys
import time

WORKLOADS = {}


def workload(name):
    """Registers the decorated function as workload `name`."""

    def register(fn):
        WORKLOADS[name] = fn
        return fn

    return register


def median_us(reps, op, warmup=1):
    """Runs `op` `warmup` times untimed, then `reps` timed times; median in microseconds."""
    for _ in range(warmup):
        op()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        op()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


# ---------------------------------------------------------------- process


def noop():
    pass


def start_join(method, reps):
    ctx = multiprocessing.get_context(method)

    def op():
        p = ctx.Process(target=noop)
        p.start()
        p.join()
        assert p.exitcode == 0, p.exitcode

    # The warm-up also starts the fork server (forkserver) and loads the caches.
    return "us", median_us(reps, op)


@workload("process.start_join.fork")
def process_start_join_fork():
    return start_join("fork", 200)


@workload("process.start_join.forkserver")
def process_start_join_forkserver():
    return start_join("forkserver", 100)


@workload("process.start_join.spawn")
def process_start_join_spawn():
    return start_join("spawn", 20)


# ---------------------------------------------------------------- pipe

# The same constants as crates/bench/src/pipe.rs.
ROUNDTRIP_BATCH = 2000
BULK_SIZE = 1 << 20
BULK_BATCH = 200
SMALL_BATCH = 100_000
BATCHES = 5

ctx_fork = multiprocessing.get_context("fork")


def echo_bytes(conn):
    while True:
        msg = conn.recv_bytes()
        if not msg:
            return
        conn.send_bytes(msg)


def drain_bytes(conn, count):
    for _ in range(BATCHES):
        for _ in range(count):
            conn.recv_bytes()
        conn.send_bytes(b"k")


def drain_objects(conn, count):
    for _ in range(BATCHES):
        total = 0
        for _ in range(count):
            total += conn.recv()
        conn.send(total)


@workload("pipe.roundtrip_64b")
def pipe_roundtrip():
    ours, theirs = ctx_fork.Pipe()
    p = ctx_fork.Process(target=echo_bytes, args=(theirs,))
    p.start()
    msg = b"x" * 64
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(ROUNDTRIP_BATCH):
            ours.send_bytes(msg)
            ours.recv_bytes()
        samples.append((time.perf_counter() - start) / ROUNDTRIP_BATCH * 1e6)
    ours.send_bytes(b"")
    p.join()
    return "us", statistics.median(samples)


@workload("pipe.throughput_1mib")
def pipe_throughput():
    reader, writer = ctx_fork.Pipe()
    p = ctx_fork.Process(target=drain_bytes, args=(reader, BULK_BATCH))
    p.start()
    msg = b"x" * BULK_SIZE
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for _ in range(BULK_BATCH):
            writer.send_bytes(msg)
        writer.recv_bytes()
        samples.append(BULK_SIZE * BULK_BATCH / (time.perf_counter() - start) / 1e6)
    p.join()
    return "MB/s", statistics.median(samples)


@workload("pipe.small_msgs")
def pipe_small_msgs():
    reader, writer = ctx_fork.Pipe()
    p = ctx_fork.Process(target=drain_objects, args=(reader, SMALL_BATCH))
    p.start()
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for i in range(SMALL_BATCH):
            writer.send(i)
        assert writer.recv() == SMALL_BATCH * (SMALL_BATCH - 1) // 2
        samples.append(SMALL_BATCH / (time.perf_counter() - start))
    p.join()
    return "items/s", statistics.median(samples)


def drain_objects_oneway(conn, ack, count):
    for _ in range(BATCHES):
        total = 0
        for _ in range(count):
            total += conn.recv()
        ack.send(total)


@workload("pipe.small_msgs_oneway")
def pipe_small_msgs_oneway():
    reader, writer = ctx_fork.Pipe(duplex=False)
    ack_r, ack_w = ctx_fork.Pipe(duplex=False)
    p = ctx_fork.Process(target=drain_objects_oneway, args=(reader, ack_w, SMALL_BATCH))
    p.start()
    samples = []
    for _ in range(BATCHES):
        start = time.perf_counter()
        for i in range(SMALL_BATCH):
            writer.send(i)
        assert ack_r.recv() == SMALL_BATCH * (SMALL_BATCH - 1) // 2
        samples.append(SMALL_BATCH / (time.perf_counter() - start))
    p.join()
    return "items/s", statistics.median(samples)


# ---------------------------------------------------------------- main


def main(args):
    if "--list" in args:
        for name in WORKLOADS:
            print(name)
        return 0
    for arg in args:
        if arg.startswith("-"):
            print(f"cpython.py: unknown option {arg}\nusage: cpython.py [--list | NAME...]", file=sys.stderr)
            return 2
        if arg not in WORKLOADS:
            print(f"cpython.py: unknown workload {arg}, skipped", file=sys.stderr)
    for name, fn in WORKLOADS.items():
        if not args or name in args:
            unit, value = fn()
            print(f"{name}\t{unit}\t{value:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
