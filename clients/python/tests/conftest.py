"""Fixtures: the Go writer (internal/xlang) and the reference listing
(`shmreg ls --format hex`), built once per run, and regions under /dev/shm.

SHMREG_XLANG and SHMREG_CLI may name prebuilt binaries (test.sh builds
them); otherwise they are built with `go build` from the checkout these
tests live in.
"""
import os
import shutil
import struct
import subprocess
import tempfile
import time

import pytest

import shmreg

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def _go_build(pkg, out):
    subprocess.run(["go", "build", "-o", out, pkg], cwd=REPO, check=True)
    return out


@pytest.fixture(scope="session")
def bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    xlang = os.environ.get("SHMREG_XLANG") or _go_build("./internal/xlang", str(d / "xlang"))
    cli = os.environ.get("SHMREG_CLI") or _go_build("./cmd/shmreg", str(d / "shmreg"))
    return {"xlang": xlang, "cli": cli}


@pytest.fixture
def shmdir():
    d = tempfile.mkdtemp(prefix="shmreg-py-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def xlang(bins, *args, check=True, **kw):
    return subprocess.run([bins["xlang"], *args], check=check, **kw)


def start_xlang(bins, *args):
    return subprocess.Popen([bins["xlang"], *args], stderr=subprocess.PIPE)


def ls_hex(bins, path):
    """The reference listing, as bytes."""
    return subprocess.run([bins["cli"], "ls", "--region", path, "--format", "hex"], check=True,
                          stdout=subprocess.PIPE).stdout


def parse_listing(listing):
    out = []
    for line in listing.decode().splitlines():
        k, v = line.split("\t")
        out.append((bytes.fromhex(k), bytes.fromhex(v)))
    return out


@pytest.fixture
def fixture_region(bins, shmdir):
    path = os.path.join(shmdir, "fixture")
    xlang(bins, "fixture", path)
    return path


def open_when_ready(path, proc, timeout=15.0):
    """Opens the region a writer process is creating, once it can be."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return shmreg.Region(path)
        except shmreg.ShmregError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.005)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def self_check(key, value):
    """Checks a self-checking value of internal/xlang (payload || fnv1a64
    little-endian) and returns its counter; AssertionError if torn."""
    assert len(value) >= 8, "value of %r too short: %r" % (key, value)
    payload, tail = value[:-8], value[-8:]
    assert struct.unpack("<Q", tail)[0] == fnv1a64(payload), "torn value under %r: %r" % (key, value[:64])
    assert payload.startswith(key + b":"), "value under %r is another key's: %r" % (key, payload[:64])
    counter, sep, filler = payload[len(key) + 1:].partition(b":")
    assert sep == b":", "no counter in %r" % payload[:64]
    n = int(counter)
    assert filler == bytes((n + i) % 256 for i in range(n % 251)), "bad filler under %r" % key
    return n


def ctl_words(path):
    """(notify_seq, notify_waiters, slots_forced, slots_reaped) of PATH.ctl."""
    with open(path + ".ctl", "rb") as f:
        head = f.read(144)
    seq, waiters = struct.unpack_from("<II", head, 64)
    forced, reaped = struct.unpack_from("<QQ", head, 128)
    return seq, waiters, forced, reaped


assert fnv1a64(b"") == 0xCBF29CE484222325 and fnv1a64(b"a") == 0xAF63DC4C8601EC8C  # known answers
