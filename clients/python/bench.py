"""Per-lookup cost from Python: shmreg.Region with each of its backends (the C
extension shmreg._fast and ctypes) beside a Python dict on the same keys, and
beside Redis GET through redis-py when both redis-server and the redis module
are on the machine, all in the same run.

    python3 clients/python/bench.py --region PATH [--lookups 100000] [--repeat 5]

PATH is a region written by `xlang bench PATH -n N` (keys k/%08d, 64-byte
values); bench.sh does it all. Each figure is the median of --repeat passes
over the same random keys (drawn with replacement from all N), in ns per
lookup, loop overhead included (it is the same loop for every row): by the
wall clock, and by this process's CPU time (which, unlike the wall clock,
leaves out time spent waiting for a CPU on a loaded machine, and for Redis
leaves out the server and the round trip).
Redis runs on 127.0.0.1 on a free port, started here and stopped after.
"""
import argparse
import ctypes
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import shmreg
from shmreg.region import FALLBACK_REASON, CtypesRegion, ExtensionRegion


def per_op(fn, keys, repeat):
    """(wall ns, CPU ns) per key, each the median over repeat passes. On a
    machine shared with other work the wall clock also counts the time this
    process waited for a CPU; the process's CPU time does not."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter_ns(), time.process_time_ns()
        fn(keys)
        c1, t1 = time.process_time_ns(), time.perf_counter_ns()
        wall.append((t1 - t0) / len(keys))
        cpu.append((c1 - c0) / len(keys))
    return statistics.median(wall), statistics.median(cpu)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_redis(keys, values, lookups, repeat):
    """Returns (median, min, note) or (None, None, why not)."""
    server = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        return None, None, "skipped: no redis module (Debian python3-redis)"
    if server is None:
        return None, None, "skipped: no redis-server (Debian redis-server)"
    port = free_port()
    d = tempfile.mkdtemp(prefix="shmreg-bench-redis-")
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                             "--dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                c.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return None, None, "skipped: redis-server did not start"
                time.sleep(0.05)
        pipe = c.pipeline(transaction=False)
        for i, (k, v) in enumerate(values.items()):
            pipe.set(k, v)
            if i % 10000 == 9999:
                pipe.execute()
        pipe.execute()
        sample = keys[:lookups]
        get = c.get
        assert get(sample[0]) == values[sample[0]]

        def run(ks):
            for k in ks:
                get(k)

        med, best = per_op(run, sample, repeat)
        version = c.info("server").get("redis_version", "?")
        return med, best, "redis-server %s on 127.0.0.1 (TCP, one GET per round trip), %d lookups" % (
            version, len(sample))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], stdout=subprocess.PIPE, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--region", required=True)
    ap.add_argument("--lookups", type=int, default=100000, help="random lookups per pass")
    ap.add_argument("--redis-lookups", type=int, default=20000, help="Redis GETs per pass (each a round trip)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    r = CtypesRegion(args.region)
    e = ExtensionRegion(args.region) if ExtensionRegion is not None else None
    values = dict(r.items(b"k/"))  # the dict under test holds the same keys and value bytes
    n = len(values)
    if n == 0:
        sys.exit("bench: no k/ keys in %s; write it with `xlang bench PATH -n 100000`" % args.region)
    rnd = random.Random(args.seed)
    all_keys = list(values)
    keys = [all_keys[rnd.randrange(n)] for _ in range(args.lookups)]
    skeys = [k.decode() for k in keys]
    same = [keys[0]] * len(keys)  # one key over and over: the fixed cost, nothing misses the cache
    for k in keys[:1000]:
        assert r[k] == values[k] and r.get(k.decode()) == values[k]
        assert e is None or (e[k] == values[k] and e.get(k.decode()) == values[k])

    lib = r._lib
    # The call exactly as the ctypes Region makes it (see _CtypesLookups),
    # without Region's lock, checks and copy.
    get_copy, hv, buf, cap, ref = r._fast_get, r._hv, ctypes.create_string_buffer(4096), ctypes.c_size_t(
        4096), ctypes.byref(ctypes.c_size_t())
    notify_seq = lib["shmreg_reader_notify_seq"]  # untyped too, like the lookup
    notify_seq.restype = ctypes.c_uint32
    rows = []

    def getter(region):
        def run(ks):
            g = region.get
            for k in ks:
                g(k)
        return run

    def subscript(region):
        def run(ks):
            for k in ks:
                region[k]
        return run

    def contains(region):
        def run(ks):
            for k in ks:
                k in region
        return run

    def scan(region):
        def run(ks):  # ks: all the keys, one per entry the walk yields
            for _ in region.items(b"k/"):
                pass
        return run

    def dict_items(ks):
        for _ in values.items():
            pass

    def dict_get(ks):
        g = values.get
        for k in ks:
            g(k)

    def dict_item(ks):
        d = values
        for k in ks:
            d[k]

    def ffi_get_copy(ks):
        for k in ks:
            get_copy(hv, k, len(k), buf, cap, ref)

    def ffi_trivial(ks):
        for _ in ks:
            notify_seq(hv)

    def loop_only(ks):
        for _ in ks:
            pass

    cases = []
    if e is not None:
        cases += [
            ("extension: Region.get(bytes key)", getter(e), keys),
            ("extension: region[bytes key]", subscript(e), keys),
            ("extension: bytes key in region", contains(e), keys),
            ("extension: Region.get(str key)", getter(e), skeys),
            ("extension: Region.get, one key repeated (fixed cost)", getter(e), same),
            ("extension: items(), per entry (all keys, in 64 KiB chunks)", scan(e), all_keys),
        ]
    cases += [
        ("ctypes: Region.get(bytes key)", getter(r), keys),
        ("ctypes: region[bytes key]", subscript(r), keys),
        ("ctypes: bytes key in region", contains(r), keys),
        ("ctypes: Region.get(str key)", getter(r), skeys),
        ("  of which: the ctypes call of shmreg_reader_get_copy alone", ffi_get_copy, keys),
        ("  of which: a ctypes call of a trivial C function", ffi_trivial, keys),
        ("ctypes: Region.get, one key repeated (fixed cost)", getter(r), same),
        ("ctypes: items(), per entry (all keys, in 64 KiB chunks)", scan(r), all_keys),
        ("Python dict.get (same keys and values)", dict_get, keys),
        ("Python dict[key]", dict_item, keys),
        ("Python dict.get, one key repeated (fixed cost)", dict_get, same),
        ("Python dict.items(), per entry", dict_items, all_keys),
        ("the bare for loop", loop_only, keys),
    ]
    for name, fn, ks in cases:
        med, best = per_op(fn, ks, args.repeat)
        rows.append((name, med, best))

    rmed, rbest, note = bench_redis(keys, values, args.redis_lookups, args.repeat)
    r.close()
    if e is not None:
        e.close()

    print("# %d keys of 64 bytes, %d random lookups per pass (seed %d), median of %d passes" % (
        n, args.lookups, args.seed, args.repeat))
    print("# python %s (%s), %s, libshmreg %s" % (platform.python_version(), sys.executable, cpu_model(),
                                                  lib.path))
    print("# cores: %d; load average %s" % (os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
    if e is None:
        print("# extension: not available (%s); ctypes only" % FALLBACK_REASON)
    else:
        print("# extension: %s" % sys.modules["shmreg._fast"].__file__)
    print("%-62s %12s %12s" % ("lookup", "wall ns", "CPU ns"))
    for name, med, best in rows:
        print("%-62s %12.0f %12.0f" % (name, med, best))
    if rmed is None:
        print("%-62s %s" % ("Redis GET through redis-py", note))
    else:
        print("%-62s %12.0f %12.0f" % ("Redis GET through redis-py (CPU: the client's only)", rmed, rbest))
        print("# redis: %s" % note)


if __name__ == "__main__":
    main()
