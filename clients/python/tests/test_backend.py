"""The two backends of Region's lookups: the C extension shmreg._fast and
ctypes. test.sh runs the whole suite once with each (SHMREG_PY_BACKEND);
the tests here also put the two side by side in one process."""
import os
import shutil
import sys

import pytest

import shmreg
from shmreg.region import CtypesRegion, ExtensionRegion
from conftest import ls_hex, parse_listing

needs_ext = pytest.mark.skipif(ExtensionRegion is None, reason="shmreg._fast is not built")
BACKENDS = [CtypesRegion] + ([ExtensionRegion] if ExtensionRegion is not None else [])


def test_backend_is_the_one_asked_for():
    want = os.environ.get("SHMREG_PY_BACKEND")
    assert shmreg.BACKEND in ("extension", "ctypes")
    assert shmreg.Region.backend == shmreg.BACKEND
    if want in ("extension", "ctypes"):
        assert shmreg.BACKEND == want
    elif ExtensionRegion is not None:
        assert shmreg.BACKEND == "extension"  # the default when it imports


def test_backend_env_in_a_fresh_interpreter():
    code = "import shmreg; print(shmreg.BACKEND)"
    env = dict(os.environ, SHMREG_PY_BACKEND="ctypes")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.PIPE).stdout
    assert out == b"ctypes\n"
    env["SHMREG_PY_BACKEND"] = "bogus"
    p = subprocess.run([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
    assert p.returncode != 0 and b"SHMREG_PY_BACKEND" in p.stderr
    if ExtensionRegion is not None:
        env["SHMREG_PY_BACKEND"] = "extension"
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, stdout=subprocess.PIPE).stdout
        assert out == b"extension\n"


@needs_ext
def test_backends_agree_on_the_fixture(bins, fixture_region):
    want = parse_listing(ls_hex(bins, fixture_region))
    absent = [b"abd", "tmp/000", "nope", "a\x00", b"\xff\xff", "x" * 600]
    with ExtensionRegion(fixture_region) as e, CtypesRegion(fixture_region) as c:
        assert isinstance(e, shmreg.region._Region) and e.backend == "extension" and c.backend == "ctypes"
        assert list(e.items()) == list(c.items()) == want
        assert list(e.items("tmp/", chunk_size=64)) == list(c.items("tmp/", chunk_size=64))
        for k, v in want:
            for key in (k, bytearray(k), memoryview(k)):
                ev = e[key]
                assert type(ev) is bytes and ev == v == c[key]
                assert e.get(key) == v and key in e
            try:
                ks = k.decode("utf-8")
            except UnicodeDecodeError:
                continue
            assert e[ks] == v and e.get(ks, b"d") == v and ks in e
        for k in absent:
            assert e.get(k) is None and c.get(k) is None
            assert e.get(k, b"dflt") == b"dflt"
            assert k not in e
            with pytest.raises(KeyError) as ke:
                e[k]
            assert ke.value.args == (k,)
        big = e["big/1MiB"]  # grows the lookup buffer; later small values still right
        assert len(big) == 1 << 20 and big == c["big/1MiB"]
        assert e["a"] == b"value of a"
        # Copies: a value outlives the Region and does not change with it.
        kept = e.get("bin/all")
        assert e.get("bin/all") is not kept
    assert kept == bytes(range(256))


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.backend)
def test_bad_keys_and_arguments(cls, fixture_region):
    with cls(fixture_region) as r:
        for bad in (42, None, 1.5, [97], ("a",)):
            with pytest.raises(TypeError) as e:
                r[bad]
            assert "key must be str or bytes, not %s" % type(bad).__name__ in str(e.value)
            with pytest.raises(TypeError):
                r.get(bad)
            with pytest.raises(TypeError):
                bad in r
        with pytest.raises(TypeError):
            list(r.items(42))
        with pytest.raises(ValueError):
            list(r.items(chunk_size=10))
        with pytest.raises(TypeError):
            r.get()
        with pytest.raises(TypeError):
            r.get("a", None, None)
        with pytest.raises(UnicodeEncodeError):
            r["\udcff"]  # a lone surrogate has no UTF-8


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.backend)
def test_closed(cls, fixture_region):
    r = cls(fixture_region)
    it = r.items(chunk_size=64)  # one entry per chunk: each next() reads the region
    assert next(it) == (b"a", b"value of a")
    r.close()
    for op in (lambda: r["a"], lambda: r.get("a"), lambda: "a" in r, lambda: list(r.items()), lambda: list(it)):
        with pytest.raises(shmreg.RegionClosed) as e:
            op()
        assert fixture_region in str(e.value)


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.backend)
def test_corrupt_region_maps_to_the_same_error(cls, shmdir, fixture_region):
    path = os.path.join(shmdir, "corrupt")
    shutil.copy(fixture_region, path)
    shutil.copy(fixture_region + ".ctl", path + ".ctl")
    with cls(path) as r:
        assert r["a"] == b"value of a"
        with open(path, "r+b") as f:  # the nodes, under the reader's mapping
            f.seek(4096)
            f.write(b"\xff" * (os.path.getsize(path) - 4096))
        for op, what in ((lambda: r.get("a"), "get 'a'"), (lambda: r[b"abc"], "get b'abc'"),
                         (lambda: "a" in r, "get 'a'"), (lambda: list(r.items("cfg/")), "items('cfg/')")):
            with pytest.raises(shmreg.CorruptRegion) as e:
                op()
            assert e.value.code == shmreg.errors.ECORRUPT and e.value.path == path
            assert str(e.value).startswith(what + ": ")


@needs_ext
def test_extension_leaks_no_references(fixture_region):
    dflt, key, miss = object(), b"cfg/app/retries", "no/such/key"
    with ExtensionRegion(fixture_region) as r:
        before = (sys.getrefcount(dflt), sys.getrefcount(key), sys.getrefcount(miss))
        for _ in range(1000):
            assert r.get(miss, dflt) is dflt
            r.get(key, dflt)
            r[key]
            assert key in r and miss not in r
            try:
                r[miss]
            except KeyError:
                pass
        assert (sys.getrefcount(dflt), sys.getrefcount(key), sys.getrefcount(miss)) == before


@pytest.mark.parametrize("cls", BACKENDS, ids=lambda c: c.backend)
def test_close_while_other_threads_look_up(cls, fixture_region):
    """close() in one thread while others look up and scan: each of them
    ends with RegionClosed, none reads a freed handle."""
    import threading
    import time

    for _ in range(5):
        r = cls(fixture_region)
        started, results = threading.Barrier(4), []

        def reader(kind):
            started.wait()
            n = 0
            try:
                while True:
                    if kind == "items":
                        for _k, _v in r.items("tmp/", chunk_size=64):
                            pass
                    else:
                        assert r.get("cfg/app/retries") is not None and "a" in r and r[b"ab"]
                    n += 1
            except shmreg.RegionClosed:
                results.append(n)
            except Exception as e:  # reported below
                results.append(e)

        threads = [threading.Thread(target=reader, args=(k,)) for k in ("get", "get", "items")]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.05)
        r.close()
        for t in threads:
            t.join(10)
        assert len(results) == 3 and all(isinstance(n, int) for n in results), results
