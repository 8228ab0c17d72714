"""The fixed region of `xlang fixture`, read through the package and compared
with `shmreg ls --format hex`."""
import os
import shutil
import struct
import subprocess
import sys

import pytest

import shmreg
from conftest import ls_hex, parse_listing


def test_dump_is_byte_identical_to_shmreg_ls(bins, fixture_region):
    want = ls_hex(bins, fixture_region)
    got = subprocess.run([sys.executable, "-m", "shmreg", "dump", fixture_region], check=True,
                         stdout=subprocess.PIPE).stdout
    assert len(want.splitlines()) > 40
    assert got == want


def test_items_and_lookups_match_the_listing(bins, fixture_region):
    want = parse_listing(ls_hex(bins, fixture_region))
    with shmreg.Region(fixture_region) as r:
        assert list(r.items()) == want
        assert list(r.items(chunk_size=64)) == want  # one entry per section, the 1 MiB one grown into
        for k, v in want:
            assert r[k] == v
            assert r.get(k) == v
            assert k in r
            assert type(r[k]) is bytes


def test_values(fixture_region):
    with shmreg.Region(fixture_region) as r:
        assert r["a"] == b"value of a"
        assert r[b"ab"] == b"second value of ab"  # overwritten in the second commit
        assert r[bytearray(b"abc")] == b"value of abc"
        assert r["empty"] == b""
        assert r["bin/zeros"] == bytes(64)
        assert r["bin/all"] == bytes(range(256))
        assert r["utf8/\u00e9t\u00e9"] == "\u00e9".encode()
        assert r[b"hi/\xff\xfe"] == b"\xff\x00\xfe"
        big = r["big/1MiB"]
        assert len(big) == 1 << 20 and big == bytes((i * 7) % 256 for i in range(1 << 20))
        assert r["tmp/001"] == b"overwritten 1"
        assert r["tmp/002"] == b"2"


def test_absent_keys(fixture_region):
    with shmreg.Region(fixture_region) as r:
        for k in ["abd", "tmp/000", "tmp/048", "nope", "a\x00", "svc/", "big/1MiB/x"]:
            assert r.get(k) is None
            assert r.get(k, b"dflt") == b"dflt"
            assert k not in r
            with pytest.raises(KeyError):
                r[k]
        with pytest.raises(TypeError):
            r[42]
        with pytest.raises(TypeError):
            r.get(None)


def test_prefixes(fixture_region):
    with shmreg.Region(fixture_region) as r:
        assert [k for k, _ in r.items("cfg/")] == [b"cfg/app/retries", b"cfg/app/timeout", b"cfg/db/dsn"]
        assert [k for k, _ in r.items(b"ab")] == [b"ab", b"abc", b"abcd"]
        tmp = dict(r.items("tmp/"))
        assert len(tmp) == 50 - 17  # every third deleted
        assert all(int(k[4:]) % 3 != 0 for k in tmp)
        assert list(r.items("zzz/")) == []
        assert list(r.keys("cfg/db/")) == [b"cfg/db/dsn"]


def test_instances(fixture_region):
    with shmreg.Region(fixture_region) as r:
        orders = r.instances("orders")
        assert [i.id for i in orders] == ["orders-1", "orders-2", "orders-3"]
        o2 = orders[1]
        assert (o2.service, o2.address, o2.port, o2.weight, o2.health) == ("orders", "10.0.0.2", 8081, 90, "passing")
        assert o2.metadata == {"zone": "z1", "version": "2.1"}
        assert o2.ttl == 15 * 10**9 and o2.ttl_seconds == 15.0
        (u1,) = r.instances("users")
        # Defaults EncodeInstance fills in: weight 1, passing, 10 s.
        assert (u1.id, u1.address, u1.port, u1.weight, u1.health, u1.ttl) == (
            "u1", "10.0.1.1", 9000, 1, "passing", 10 * 10**9)
        assert u1.metadata == {}
        assert r.instances("nobody") == []
        assert r.instances("order") == []  # a prefix of a service is not the service
        with pytest.raises(ValueError):
            r.instances("a/b")
        with pytest.raises(ValueError):
            r.instances("")


def test_invalid_instance_value():
    with pytest.raises(shmreg.InvalidInstance):
        shmreg.Instance.decode(b"\x93\x01\x02\x03", key=b"svc/x/1")  # an array
    with pytest.raises(shmreg.InvalidInstance):
        shmreg.Instance.decode(b"\xc1")  # never used in msgpack
    with pytest.raises(shmreg.InvalidInstance):
        shmreg.Instance.decode(b"\x81\xa2id\xa11")  # no service
    with pytest.raises(shmreg.InvalidInstance):
        shmreg.Instance.decode(b"\x83\xa7service\xa1s\xa2id\xa11\xa4port\xa180")  # port as a string


def test_generation_counts_commits(bins, fixture_region):
    with shmreg.Region(fixture_region) as r:
        g = r.generation
        assert g >= 2  # the fixture commits twice
        subprocess.run([bins["xlang"], "put", fixture_region, "later", "x"], check=True)
        assert r.generation == g + 1
        assert r["later"] == b"x"


def test_missing_region(shmdir, fixture_region):
    missing = os.path.join(shmdir, "nothing-here")
    with pytest.raises(shmreg.NoRegion) as e:
        shmreg.Region(missing)
    assert isinstance(e.value, FileNotFoundError)
    assert missing in str(e.value)
    # A data file without its control file is no region either.
    lonely = os.path.join(shmdir, "lonely")
    shutil.copy(fixture_region, lonely)
    with pytest.raises(shmreg.NoRegion):
        shmreg.Region(lonely)
    # python3 -m shmreg says so and exits 1.
    p = subprocess.run([sys.executable, "-m", "shmreg", "dump", missing], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert p.returncode == 1 and p.stdout == b"" and b"no shmreg region" in p.stderr


def test_not_a_region(shmdir):
    path = os.path.join(shmdir, "junk")
    for p in (path, path + ".ctl"):
        with open(p, "wb") as f:
            f.write(b"not a region" * 1000)
    with pytest.raises(shmreg.NotARegion):
        shmreg.Region(path)


def test_other_layout_version(shmdir, fixture_region):
    path = os.path.join(shmdir, "v99")
    shutil.copy(fixture_region, path)
    shutil.copy(fixture_region + ".ctl", path + ".ctl")
    with open(path, "r+b") as f:
        f.seek(8)
        assert struct.unpack("<I", f.read(4))[0] == shmreg.layout_version()
        f.seek(8)
        f.write(struct.pack("<I", 99))
    with pytest.raises(shmreg.LayoutVersionError) as e:
        shmreg.Region(path)
    assert "version" in str(e.value)


def test_closed_region(fixture_region):
    r = shmreg.Region(fixture_region)
    assert not r.closed
    r.close()
    r.close()
    assert r.closed
    with pytest.raises(shmreg.RegionClosed):
        r["a"]
    with pytest.raises(ValueError):
        list(r.items())
    with pytest.raises(shmreg.RegionClosed):
        r.wait(0)


def test_get_and_dump_cli(fixture_region):
    p = subprocess.run([sys.executable, "-m", "shmreg", "get", fixture_region, "bin/zeros"], check=True,
                       stdout=subprocess.PIPE)
    assert p.stdout == b"00" * 64 + b"\n"
    p = subprocess.run([sys.executable, "-m", "shmreg", "get", fixture_region, "abd"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
    assert p.returncode == 1
    p = subprocess.run([sys.executable, "-m", "shmreg"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.returncode == 2
