"""Region.wait(): woken by the writer's commit through the futex word of
PATH.ctl, counted in notify_waiters, and timing out without a commit."""
import subprocess
import threading
import time

import pytest

import shmreg
from conftest import ctl_words


def test_wait_times_out_without_a_commit(fixture_region):
    with shmreg.Region(fixture_region) as r:
        t0 = time.monotonic()
        assert r.wait(0.3) is False
        took = time.monotonic() - t0
        assert 0.3 <= took < 2.0
        assert r.wait(0) is False
        assert ctl_words(fixture_region)[1] == 0  # notify_waiters back to 0
        with pytest.raises(ValueError):
            r.wait(-1)


def test_wait_wakes_on_a_commit(bins, fixture_region):
    with shmreg.Region(fixture_region) as r:
        seq0 = ctl_words(fixture_region)[0]
        # The writer opens now and commits 0.4 s later: the wait is asleep by then.
        p = subprocess.Popen([bins["xlang"], "put", fixture_region, "-after", "400ms", "woken", "yes"])
        try:
            t0 = time.monotonic()
            seen_waiting = []

            def watch():  # the waiter must be counted while it sleeps
                while p.poll() is None:
                    if ctl_words(fixture_region)[1] > 0:
                        seen_waiting.append(True)
                        return
                    time.sleep(0.01)

            w = threading.Thread(target=watch)
            w.start()
            assert r.wait(20) is True
            took = time.monotonic() - t0
            w.join()
        finally:
            assert p.wait(20) == 0
        assert 0.3 <= took < 10, took
        assert seen_waiting, "notify_waiters never counted the sleeping wait"
        assert r["woken"] == b"yes"
        seq, waiters, _, _ = ctl_words(fixture_region)
        assert seq == seq0 + 1 and waiters == 0
        assert r.wait(0.05) is False  # that change was reported once


def test_a_commit_before_wait_is_not_missed(bins, fixture_region):
    with shmreg.Region(fixture_region) as r:
        subprocess.run([bins["xlang"], "put", fixture_region, "early", "1"], check=True)
        t0 = time.monotonic()
        assert r.wait(5) is True
        assert time.monotonic() - t0 < 1
        assert r.wait(0) is False


def test_close_ends_a_wait_in_another_thread(fixture_region):
    r = shmreg.Region(fixture_region)
    out = []

    def waiter():
        try:
            out.append(r.wait())
        except shmreg.RegionClosed as e:
            out.append(e)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    r.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - t0 < 2
    assert len(out) == 1 and isinstance(out[0], shmreg.RegionClosed)
    assert ctl_words(fixture_region)[1] == 0
