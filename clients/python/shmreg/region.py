"""Region: a shmreg region opened for reading, through libshmreg.so.

Two backends make the lookups (get, [], in) and the chunks of items():

  extension  shmreg._fast, a C extension module built with the package when
             Python.h is there (Debian python3-dev): it calls libshmreg.so's
             copying functions as C functions, without ctypes;
  ctypes     the fallback, when the extension was not built.

Both call the same libshmreg.so (the one _lib loaded) on the same handle;
everything else (open, close, wait, generation) goes through ctypes in both.
SHMREG_PY_BACKEND=ctypes forces the fallback, =extension fails the import
if the extension is missing; unset (or auto), the extension if it imports.
BACKEND says which one Region is; CtypesRegion is always there,
ExtensionRegion when the extension is (else None).
"""
import ctypes
import errno
import importlib
import os
import platform
import struct
import threading
import time

from . import _lib
from .errors import ENOTFOUND, RegionClosed, error_for

_GET_BUF = 4096          # the lookup buffer starts here and grows to the largest value met
_SCAN_CHUNK = 64 << 10   # bytes copied per read section by items()
_WAIT_SLICE_NS = 100_000_000  # wait() sleeps in slices, so that close() never waits longer
_LENS = struct.Struct("=II")

_WANT = os.environ.get("SHMREG_PY_BACKEND", "auto") or "auto"
if _WANT not in ("auto", "extension", "ctypes"):
    raise ImportError("SHMREG_PY_BACKEND=%r: must be auto, extension or ctypes" % _WANT)
try:
    _fast = importlib.import_module(__package__ + "._fast")
    FALLBACK_REASON = None
except ImportError as e:  # not built (no Python.h, no compiler) or not loadable
    if _WANT == "extension":
        raise ImportError("SHMREG_PY_BACKEND=extension, but shmreg._fast does not import: %s" % e) from e
    _fast = None
    FALLBACK_REASON = "shmreg._fast does not import: %s" % e


def _key_bytes(key, what="key"):
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, bytes):
        return key
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(key).__name__))


class _Region:
    """A shmreg region opened for reading: the data file at `path` and its
    `path.ctl`, with a reader slot of this process's own.

    Use it as a context manager (or call close()). Every value it returns is
    a bytes copy, yours to keep: nothing returned points into shared memory.
    A region rebuilt into a new file by the writer is reopened by itself.

    One Region may be shared by threads (calls are serialized). After
    os.fork() the child must open its own Region: it shares the parent's
    slot lock, and must not use or close the parent's.
    """

    backend = None  # "extension" or "ctypes": what makes the lookups

    def __init__(self, path):
        self._lib = lib = _lib.lib()
        self._path = os.fspath(path)
        if isinstance(self._path, bytes):
            self._path = os.fsdecode(self._path)
        h = ctypes.c_void_p()
        rc = lib.shmreg_reader_open(os.fsencode(self._path), ctypes.byref(h))
        if rc != 0:
            raise error_for(lib, rc, self._path)
        self._h = h.value
        self._lock = threading.Lock()  # guards _h against close, _waits, and the ctypes lookup buffer
        self._idle = threading.Condition(self._lock)  # notified when a wait() slice ends
        self._waits = 0
        self._seen = lib.shmreg_reader_notify_seq(self._h)
        self._bind_lookups()

    # ---- lifetime ----

    @property
    def path(self):
        return self._path

    @property
    def closed(self):
        return self._h is None

    def close(self):
        """Gives the reader slot back and unmaps the files. A wait() under way
        in another thread ends with RegionClosed (within 0.1 s, which close
        waits for). Closing twice is a no-op."""
        with self._lock:
            h, self._h = self._h, None
            # The extension's calls hold the GIL from start to end, and so
            # does this: none is running on h now, and none starts on it.
            self._detach()
            while self._waits:
                self._idle.wait()
        if h is not None:
            rc = self._lib.shmreg_reader_close(h)
            if rc != 0:
                raise error_for(self._lib, rc, self._path, "close")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if getattr(self, "_h", None) is not None:
                self._detach()
                self._lib.shmreg_reader_close(self._h)
                self._h = None
        except Exception:
            pass

    def __repr__(self):
        return "<shmreg.Region %r%s>" % (self._path, " closed" if self._h is None else "")

    def _handle(self):
        h = self._h
        if h is None:
            raise RegionClosed("%s: the Region is closed" % self._path)
        return h

    # ---- lookups: get(), [] and `in` come from the backend's class ----

    def items(self, prefix=b"", chunk_size=_SCAN_CHUNK):
        """Yields (key, value) bytes copies of the live entries whose key
        starts with prefix, in key order.

        Entries are copied chunk by chunk (about chunk_size bytes each), each
        chunk in one short read section of its own; no section is held while
        the caller runs. Across chunks the walk is like a live iteration: keys
        come in strictly increasing order, each at most once, every key that
        stayed live throughout appears, and keys written meanwhile may or may
        not."""
        p = _key_bytes(prefix, "prefix")
        if chunk_size < 64:
            raise ValueError("chunk_size %d is too small" % chunk_size)
        cap = chunk_size
        after = None
        while True:
            rc, entries, used = self._scan(p, after, cap)
            if rc == -errno.ERANGE:  # one entry bigger than the buffer
                cap = used
                continue
            if rc < 0:
                raise error_for(self._lib, rc, self._path, "items(%r)" % (prefix,))
            if entries:
                after = entries[-1][0]
            yield from entries
            if rc == 0:
                return

    def keys(self, prefix=b""):
        """The keys under prefix, in order (see items())."""
        for k, _ in self.items(prefix):
            yield k

    def instances(self, service):
        """The instances of service registered in the region: a list of
        shmreg.Instance decoded from the msgpack values under
        svc/<service>/, in key order. InvalidInstance if one does not
        decode."""
        from .instance import Instance

        if isinstance(service, bytes):
            service = service.decode("utf-8")
        if not isinstance(service, str):
            raise TypeError("service must be str, not %s" % type(service).__name__)
        if not service or "/" in service:
            raise ValueError("service %r: must be non-empty and without '/'" % service)
        prefix = ("svc/%s/" % service).encode("utf-8")
        out = []
        for k, v in self.items(prefix):
            iid = k[len(prefix):]
            if not iid or b"/" in iid:
                continue  # not svc/<service>/<id>
            out.append(Instance.decode(v, key=k))
        return out

    # ---- change notification ----

    def wait(self, timeout=None):
        """Blocks until the writer commits, or timeout seconds pass (None:
        no limit). Returns True if the region changed since the previous
        wait() returned True (or since the Region was opened; a commit in
        between is never missed), False on timeout.

        It sleeps in the kernel on the control file's futex word (the writer
        wakes it), releasing the GIL."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 or None")
        lib = self._lib
        now = ctypes.c_uint32()
        deadline = None if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
        while True:
            left = _WAIT_SLICE_NS
            if deadline is not None:
                left = min(left, max(0, deadline - time.monotonic_ns()))
            with self._lock:
                if self._h is None:
                    raise RegionClosed("%s: the Region is closed" % self._path)
                h = self._h
                self._waits += 1
            try:
                rc = lib.shmreg_reader_wait(h, self._seen, left, ctypes.byref(now))
            finally:
                with self._lock:
                    self._waits -= 1
                    self._idle.notify_all()
            if rc == 0:
                self._seen = now.value
                return True
            if rc == -errno.ETIMEDOUT:
                if deadline is not None and time.monotonic_ns() >= deadline:
                    return False
                continue  # the end of a slice
            if rc == -errno.EINTR:  # a signal: Python runs its handler here, then we go on
                continue
            raise error_for(lib, rc, self._path, "wait")

    @property
    def generation(self):
        """The number of commits the writer has made to this region."""
        with self._lock:
            return self._lib.shmreg_reader_generation(self._handle())

    @property
    def reopens(self):
        """How many times this Region moved to a file the writer rebuilt."""
        with self._lock:
            return self._lib.shmreg_reader_reopens(self._handle())


class _CtypesLookups:
    """get(), [], `in` and the chunks of items() through ctypes: the
    fallback when the extension was not built."""

    backend = "ctypes"

    def _bind_lookups(self):
        lib = self._lib
        self._buf = ctypes.create_string_buffer(_GET_BUF)
        self._cap = _GET_BUF
        self._vlen = ctypes.c_size_t()
        self._vlen_ref = ctypes.byref(self._vlen)
        # The lookup path calls shmreg_reader_get_copy without argtypes, its
        # arguments converted once here (a third of a lookup's cost otherwise):
        # only the key and its length change per call. The length goes as a C
        # int, which libffi widens to the full register on x86-64 and arm64
        # (and keys are at most 512 bytes); elsewhere it goes as a size_t.
        self._fast_get = lib["shmreg_reader_get_copy"]
        self._fast_get.restype = ctypes.c_int
        self._hv = ctypes.c_void_p(self._h)
        self._capv = ctypes.c_size_t(_GET_BUF)
        self._int_len = platform.machine() in ("x86_64", "amd64", "aarch64", "arm64")

    def _detach(self):
        pass  # every ctypes call checks _h under the lock

    def _lookup(self, key):
        k = _key_bytes(key)
        with self._lock:
            self._handle()
            klen = len(k) if self._int_len else ctypes.c_size_t(len(k))
            while True:
                rc = self._fast_get(self._hv, k, klen, self._buf, self._capv, self._vlen_ref)
                if rc == 0:
                    return self._buf[:self._vlen.value]  # a bytes copy
                if rc == ENOTFOUND:
                    return None
                if rc == -errno.ERANGE:  # grow to the value's size and read again
                    self._cap = max(self._vlen.value, 2 * self._cap)
                    self._buf = ctypes.create_string_buffer(self._cap)
                    self._capv = ctypes.c_size_t(self._cap)
                    continue
                raise error_for(self._lib, rc, self._path, "get %r" % (key,))

    def __getitem__(self, key):
        """The value of key (str or bytes) as bytes; KeyError if absent."""
        v = self._lookup(key)
        if v is None:
            raise KeyError(key)
        return v

    def get(self, key, default=None):
        """The value of key (str or bytes) as bytes, or default if absent."""
        v = self._lookup(key)
        return default if v is None else v

    def __contains__(self, key):
        return self._lookup(key) is not None

    def _scan(self, prefix, after, cap):
        """One shmreg_reader_scan_copy: (rc, [(key, value), ...] or None,
        bytes used or needed), as _fast.Reader._scan."""
        buf = ctypes.create_string_buffer(cap)
        used, count = ctypes.c_size_t(), ctypes.c_size_t()
        with self._lock:
            rc = self._lib.shmreg_reader_scan_copy(
                self._handle(), prefix, len(prefix), after, len(after) if after is not None else 0,
                buf, cap, ctypes.byref(used), ctypes.byref(count))
        if rc < 0:
            return rc, None, used.value if rc == -errno.ERANGE else 0
        data = buf.raw[:used.value]
        entries = []
        at = 0
        for _ in range(count.value):
            kl, vl = _LENS.unpack_from(data, at)
            at += 8
            k = data[at:at + kl]
            at += kl
            entries.append((k, data[at:at + vl]))
            at += vl
        return rc, entries, used.value


class CtypesRegion(_CtypesLookups, _Region):
    __doc__ = _Region.__doc__


if _fast is not None:
    def _fast_error(region, rc, what):
        """The exception for the extension to raise: the same as the ctypes
        path raises (rc None: the Region is closed)."""
        if rc is None:
            return RegionClosed("%s: the Region is closed" % region._path)
        return error_for(region._lib, rc, region._path, what)

    _fast._set_error_factory(_fast_error)

    class ExtensionRegion(_fast.Reader, _Region):
        __doc__ = _Region.__doc__
        backend = "extension"

        def _bind_lookups(self):
            lib = self._lib
            addr = lambda name: ctypes.cast(getattr(lib, name), ctypes.c_void_p).value  # noqa: E731
            self._bind(self._h, addr("shmreg_reader_get_copy"), addr("shmreg_reader_scan_copy"))
else:
    ExtensionRegion = None

if ExtensionRegion is not None and _WANT != "ctypes":
    Region, BACKEND = ExtensionRegion, "extension"
else:
    Region, BACKEND = CtypesRegion, "ctypes"
    if _WANT == "ctypes":
        FALLBACK_REASON = "SHMREG_PY_BACKEND=ctypes"
