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
