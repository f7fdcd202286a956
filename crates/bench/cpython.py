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


# ---------------------------------------------------------------- pool

# The same constants as crates/bench/src/pool.rs.
POOL_WORKERS = 2
MAP_ITEMS = 1_000_000
IMAP_ITEMS = 100_000
APPLY_ASYNC_ITEMS = 20_000
APPLY_REPS = 500
CPU_TASKS = 200
CPU_TASK_SECONDS = 0.001


def square(x):
    return x * x


def busy_1ms(x):
    end = time.perf_counter() + CPU_TASK_SECONDS
    while time.perf_counter() < end:
        pass
    return x


def pool_rate(items, run, rounds=3):
    with multiprocessing.Pool(POOL_WORKERS) as pool:
        pool.map(square, range(POOL_WORKERS * 4))  # warm-up: every worker started
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            run(pool)
            samples.append(items / (time.perf_counter() - start))
    return "items/s", statistics.median(samples)


@workload("pool.map_square_1m")
def pool_map():
    def run(pool):
        assert pool.map(square, range(MAP_ITEMS))[-1] == (MAP_ITEMS - 1) ** 2

    return pool_rate(MAP_ITEMS, run)


@workload("pool.imap_unordered_100k")
def pool_imap_unordered():
    def run(pool):
        assert sum(1 for _ in pool.imap_unordered(square, range(IMAP_ITEMS), chunksize=1)) == IMAP_ITEMS

    return pool_rate(IMAP_ITEMS, run, rounds=1)


@workload("pool.apply_async_20k")
def pool_apply_async():
    def run(pool):
        results = [pool.apply_async(square, (i,)) for i in range(APPLY_ASYNC_ITEMS)]
        assert sum(r.get() for r in results) > 0

    return pool_rate(APPLY_ASYNC_ITEMS, run)


@workload("pool.apply_latency")
def pool_apply_latency():
    with multiprocessing.Pool(POOL_WORKERS) as pool:
        pool.map(square, range(POOL_WORKERS * 4))
        return "us", median_us(APPLY_REPS, lambda: pool.apply(square, (7,)), warmup=20)


@workload("pool.cpu_1ms_tasks")
def pool_cpu_tasks():
    def run(pool):
        assert len(pool.map(busy_1ms, range(CPU_TASKS), chunksize=1)) == CPU_TASKS

    return pool_rate(CPU_TASKS, run)


# ---------------------------------------------------------------- shmem

# Smaller counts than crates/bench/src/shmem.rs (whose rates are ~30-100x higher), so that each
# workload takes a few seconds; the rates compare.
SHMEM_BATCHES = 3
SHMEM_CHILDREN = 2
SHMEM_LOCKED_INCR = 300_000
SHMEM_ARRAY_LEN = 1_000_000
SHMEM_ARRAY_ROUNDS = 3


def shmem_locked_incr(v, barrier, count):
    for _ in range(SHMEM_BATCHES):
        barrier.wait()
        for _ in range(count):
            with v.get_lock():
                v.value += 1
        barrier.wait()


def shmem_array_half(arr, half, barrier):
    lo, hi = half * SHMEM_ARRAY_LEN // 2, (half + 1) * SHMEM_ARRAY_LEN // 2
    for _ in range(SHMEM_BATCHES):
        barrier.wait()
        for _ in range(SHMEM_ARRAY_ROUNDS):
            with arr.get_lock():
                a = arr.get_obj()
                for i in range(lo, hi):
                    a[i] += 1.0
        barrier.wait()


def shmem_batches(target, args_of, items):
    """Runs SHMEM_CHILDREN fork children, timing each batch between two barrier waits."""
    barrier = ctx_fork.Barrier(SHMEM_CHILDREN + 1)
    children = [ctx_fork.Process(target=target, args=args_of(i, barrier)) for i in range(SHMEM_CHILDREN)]
    for p in children:
        p.start()
    samples = []
    for _ in range(SHMEM_BATCHES):
        barrier.wait()
        start = time.perf_counter()
        barrier.wait()
        samples.append(items / (time.perf_counter() - start))
    for p in children:
        p.join()
        assert p.exitcode == 0, p.exitcode
    return statistics.median(samples)


@workload("shmem.value_locked_incr")
def shmem_value_locked_incr():
    v = ctx_fork.Value("q", 0)
    rate = shmem_batches(
        shmem_locked_incr, lambda i, b: (v, b, SHMEM_LOCKED_INCR), SHMEM_CHILDREN * SHMEM_LOCKED_INCR
    )
    assert v.value == SHMEM_BATCHES * SHMEM_CHILDREN * SHMEM_LOCKED_INCR
    return "ops/s", rate


# shmem.value_atomic_incr has no CPython counterpart: a RawValue has no atomic add.


@workload("shmem.array_halves")
def shmem_array_halves():
    arr = ctx_fork.Array("d", SHMEM_ARRAY_LEN)
    rate = shmem_batches(shmem_array_half, lambda i, b: (arr, i, b), SHMEM_ARRAY_LEN * SHMEM_ARRAY_ROUNDS)
    assert all(x == SHMEM_BATCHES * SHMEM_ARRAY_ROUNDS for x in arr.get_obj())
    return "items/s", rate


# ---------------------------------------------------------------- manager

# The same constants as crates/bench/src/manager.rs.
MANAGER_OPS = 10_000
MANAGER_BATCHES = 5
MANAGER_CLIENT_OPS = 10_000
MANAGER_CLIENT_ROUNDS = 3
MANAGER_CREATE_REPS = 500


@workload("manager.dict_set_get")
def manager_dict_set_get():
    with multiprocessing.Manager() as m:
        d = m.dict()
        samples = []
        for _ in range(MANAGER_BATCHES):
            start = time.perf_counter()
            for i in range(MANAGER_OPS):
                d[i] = i
                assert d[i] == i
            samples.append(2 * MANAGER_OPS / (time.perf_counter() - start))
    return "ops/s", statistics.median(samples)


def manager_dict_client(d, start, base):
    start.wait()
    for i in range(base, base + MANAGER_CLIENT_OPS):
        d[i] = i
        assert d[i] == i


@workload("manager.dict_two_clients")
def manager_dict_two_clients():
    with multiprocessing.Manager() as m:
        d = m.dict()
        samples = []
        for _ in range(MANAGER_CLIENT_ROUNDS):
            start = m.Barrier(3)
            clients = [
                multiprocessing.Process(target=manager_dict_client, args=(d, start, k * MANAGER_CLIENT_OPS))
                for k in range(2)
            ]
            for c in clients:
                c.start()
            start.wait()
            began = time.perf_counter()
            for c in clients:
                c.join()
                assert c.exitcode == 0, c.exitcode
            samples.append(2 * 2 * MANAGER_CLIENT_OPS / (time.perf_counter() - began))
    return "ops/s", statistics.median(samples)


@workload("manager.proxy_create")
def manager_proxy_create():
    with multiprocessing.Manager() as m:
        return "us", median_us(MANAGER_CREATE_REPS, lambda: m.dict(), warmup=10)


# ---------------------------------------------------------------- queue

# The same constants as crates/bench/src/queue.rs.
QUEUE_BATCHES = 5
QUEUE_INTS = 200_000
QUEUE_MIB_ITEMS = 200
QUEUE_MIB = 1 << 20
QUEUE_STOP = -1


def queue_sum_ints(q, done):
    total = 0
    while True:
        x = q.get()
        if x == QUEUE_STOP:
            done.put(total)
            return
        if x == 0:
            done.put(total)
            total = 0
        else:
            total += x


def queue_produce_ints(go, q):
    while True:
        n = go.get()
        if n == QUEUE_STOP:
            return
        for i in range(1, n + 1):
            q.put(i)
        q.put(0)


def queue_start(target, args):
    p = ctx_fork.Process(target=target, args=args)
    p.start()
    return p


def queue_finish(p):
    p.join()
    assert p.exitcode == 0, p.exitcode


@workload("queue.ints_1to1")
def queue_ints_1to1():
    q, done = ctx_fork.Queue(), ctx_fork.Queue()
    consumer = queue_start(queue_sum_ints, (q, done))
    samples = []
    for batch in range(QUEUE_BATCHES + 1):
        start = time.perf_counter()
        for i in range(1, QUEUE_INTS + 1):
            q.put(i)
        q.put(0)
        assert done.get() == QUEUE_INTS * (QUEUE_INTS + 1) // 2
        if batch > 0:
            samples.append(QUEUE_INTS / (time.perf_counter() - start))
    q.put(QUEUE_STOP)
    assert done.get() == 0
    queue_finish(consumer)
    return "items/s", statistics.median(samples)


@workload("queue.ints_2to2")
def queue_ints_2to2():
    go, q, done = ctx_fork.Queue(), ctx_fork.Queue(), ctx_fork.Queue()
    consumers = [queue_start(queue_sum_ints, (q, done)) for _ in range(2)]
    producers = [queue_start(queue_produce_ints, (go, q)) for _ in range(2)]
    per_producer = QUEUE_INTS // 2
    samples = []
    total = 0
    for batch in range(QUEUE_BATCHES + 1):
        start = time.perf_counter()
        go.put(per_producer)
        go.put(per_producer)
        total += done.get() + done.get()
        if batch > 0:
            samples.append(QUEUE_INTS / (time.perf_counter() - start))
    for _ in producers:
        go.put(QUEUE_STOP)
    for p in producers:
        queue_finish(p)
    for _ in consumers:
        q.put(QUEUE_STOP)
    # Each consumer answers STOP with what it summed since its last answer.
    total += sum(done.get() for _ in consumers)
    for p in consumers:
        queue_finish(p)
    assert total == (QUEUE_BATCHES + 1) * 2 * per_producer * (per_producer + 1) // 2, total
    return "items/s", statistics.median(samples)


def queue_drain_mib(q, done):
    count = 0
    while True:
        item = q.get()
        if len(item) == 0:
            done.put(count)
            count = 0
        elif len(item) == 1:
            return
        else:
            assert len(item) == QUEUE_MIB
            count += 1


@workload("queue.mib_1to1")
def queue_mib_1to1():
    q, done = ctx_fork.Queue(), ctx_fork.Queue()
    consumer = queue_start(queue_drain_mib, (q, done))
    item = b"x" * QUEUE_MIB
    samples = []
    for batch in range(QUEUE_BATCHES + 1):
        start = time.perf_counter()
        for _ in range(QUEUE_MIB_ITEMS):
            q.put(item)
        q.put(b"")
        assert done.get() == QUEUE_MIB_ITEMS
        if batch > 0:
            samples.append(QUEUE_MIB * QUEUE_MIB_ITEMS / (time.perf_counter() - start) / 1e6)
    q.put(b"\0")
    queue_finish(consumer)
    return "MB/s", statistics.median(samples)


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
