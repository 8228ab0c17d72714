"""Reading while the Go writer writes: growth through rebuilt files, values
overwritten while read, and a reader killed inside a read section."""
import os
import random
import signal
import subprocess
import sys
import time

import shmreg
from conftest import ctl_words, open_when_ready, self_check, start_xlang


def test_growth_into_new_files_during_reads(bins, shmdir):
    path = os.path.join(shmdir, "grow")
    # A pause after each commit of 64 keys keeps the count (some 30,000 in
    # 3 s, through about five rebuilt files) within what this reader can
    # check value by value.
    p = start_xlang(bins, "grow", path, "-for", "3s", "-pause", "5ms")
    reads = scans = 0
    verified = {}  # key -> value once self-checked: grow never changes a value

    def check(k, v):
        if k in verified:
            assert v == verified[k], "%r changed" % k
        else:
            assert self_check(k, v) == int(k[5:])
            verified[k] = v

    try:
        r = open_when_ready(path, p)
        first_ino = os.stat(path).st_ino
        seen = 0  # grow/00000000 .. seen-1 are known to exist (keys only ever get added)
        next_scan = 0.0
        while p.poll() is None:
            if time.monotonic() >= next_scan:
                keys = []
                for k, v in r.items("grow/"):
                    if k != b"grow/done":
                        check(k, v)
                        keys.append(k)
                # Inserted in key order, so a scan that resumes after each
                # chunk still sees a contiguous run from the first key.
                assert keys == [b"grow/%08d" % i for i in range(len(keys))]
                assert len(keys) >= seen
                seen = len(keys)
                scans += 1
                next_scan = time.monotonic() + 0.2
            if seen:
                for _ in range(100):
                    k = b"grow/%08d" % random.randrange(seen)
                    assert self_check(k, r[k]) == int(k[5:])
                    reads += 1
        _, err = p.communicate()
        assert p.returncode == 0, err
        total = int(r["grow/done"])
        reopens = r.reopens
        assert reopens >= 1, "the writer never rebuilt the region while we read"
        assert os.stat(path).st_ino != first_ino
        keys = []
        for k, v in r.items("grow/"):
            if k != b"grow/done":
                check(k, v)
                keys.append(k)
        assert keys == [b"grow/%08d" % i for i in range(total)]
        r.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # At least one whole scan besides the first, and lookups by the
    # hundred, while the writer grew the region (a loaded 2-core machine
    # manages 2 scans of the growing region in 3 s, a quiet one 5 or more).
    assert scans >= 2 and reads >= 500, (scans, reads)
    print("grow: %d keys, %d rebuilt files followed, %d scans, %d lookups" % (total, reopens, scans, reads))


def test_values_overwritten_while_read(bins, shmdir):
    path = os.path.join(shmdir, "churn")
    p = start_xlang(bins, "churn", path, "-for", "3s")
    last = {}  # key -> the highest counter read: one reader never sees a key go back
    reads = 0
    try:
        r = open_when_ready(path, p)
        while p.poll() is None:
            for _ in range(100):
                i = random.randrange(64)
                k = b"churn/%03d" % i
                v = r.get(k)
                if v is None:
                    continue  # not written yet
                n = self_check(k, v)
                assert n % 64 == i
                assert n >= last.get(k, -1), "%r went back from %d to %d" % (k, last[k], n)
                last[k] = n
                reads += 1
            for k, v in r.items("churn/"):
                if k != b"churn/done":
                    n = self_check(k, v)
                    assert n >= last.get(k, -1)
                    last[k] = n
        _, err = p.communicate()
        assert p.returncode == 0, err
        total = int(r["churn/done"])
        # Each key holds the last counter written to it.
        for i in range(64):
            k = b"churn/%03d" % i
            want = max(n for n in range(max(0, total - 64), total) if n % 64 == i) if total > 64 else None
            if want is not None:
                assert self_check(k, r[k]) == want
        r.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert reads >= 1000 and total > 1000, (reads, total)


HOLD = r"""
import sys, time, shmreg
r = shmreg.Region(sys.argv[1])
assert r._lib.shmreg_reader_read_begin(r._h) == 0  # a section, held until killed
print("in", flush=True)
time.sleep(60)
"""


def test_reader_killed_in_a_section_does_not_hold_the_writer_back(bins, shmdir):
    path = os.path.join(shmdir, "killed")
    subprocess.run([bins["xlang"], "put", path, "first", "1"], check=True)
    child = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"in\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    _, _, _, reaped0 = ctl_words(path)
    # Churn retires old values; reusing them needs the dead reader's epoch
    # out of the way: the writer reaps its slot (its OFD lock died with it).
    p = start_xlang(bins, "churn", path, "-for", "1500ms")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    _, _, _, reaped = ctl_words(path)
    assert reaped > reaped0, "the dead reader's slot was never reaped"
    with shmreg.Region(path) as r:
        assert r["first"] == b"1"
        assert int(r["churn/done"]) > 0


def test_threads_share_a_region_under_churn(bins, shmdir):
    import threading

    path = os.path.join(shmdir, "threads")
    p = start_xlang(bins, "churn", path, "-for", "2s")
    errors, counts = [], []
    try:
        r = open_when_ready(path, p)

        def reader(seed):
            rnd, n = random.Random(seed), 0
            try:
                while p.poll() is None:
                    k = b"churn/%03d" % rnd.randrange(64)
                    v = r.get(k)
                    if v is not None:
                        assert self_check(k, v) % 64 == int(k[6:])
                        n += 1
                    if n % 50 == 0:
                        for k, v in r.items("churn/0"):
                            self_check(k, v)
            except Exception as e:  # reported below, with the thread's count
                errors.append(e)
            counts.append(n)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        r.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert not errors, errors
    assert len(counts) == 4 and min(counts) > 100, counts
