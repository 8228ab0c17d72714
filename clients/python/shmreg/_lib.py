"""Loads libshmreg.so and declares its ABI (examples/c/libshmreg.h) to ctypes.

Where the library comes from, first match wins:

1. SHMREG_LIB, a path to a libshmreg.so (e.g. one built by
   `make -C examples/c lib`, or installed by `make install-lib`);
2. the copy compiled into this package when it was installed;
3. in a shmreg checkout (the package imported from clients/python), the
   examples/c/libshmreg.so that `make -C examples/c lib` built;
4. a libshmreg.so the dynamic linker finds (ctypes.util.find_library).
"""
import ctypes
import ctypes.util
import os

from .errors import ShmregError

c_int, c_size_t, c_void_p, c_char_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
c_uint32, c_uint64, c_int64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64
P_size_t = ctypes.POINTER(c_size_t)

# name: (restype, argtypes)
_ABI = {
    "shmreg_reader_layout_version": (c_int, []),
    "shmreg_reader_open": (c_int, [c_char_p, ctypes.POINTER(c_void_p)]),
    "shmreg_reader_close": (c_int, [c_void_p]),
    "shmreg_reader_get_copy": (c_int, [c_void_p, c_char_p, c_size_t, c_void_p, c_size_t, P_size_t]),
    "shmreg_reader_read_begin": (c_int, [c_void_p]),
    "shmreg_reader_read_end": (c_int, [c_void_p]),
    "shmreg_reader_get": (c_int, [c_void_p, c_char_p, c_size_t, ctypes.POINTER(c_void_p), P_size_t]),
    "shmreg_reader_scan_copy": (
        c_int,
        [c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, c_size_t, P_size_t, P_size_t],
    ),
    "shmreg_reader_notify_seq": (c_uint32, [c_void_p]),
    "shmreg_reader_wait": (c_int, [c_void_p, c_uint32, c_int64, ctypes.POINTER(c_uint32)]),
    "shmreg_reader_generation": (c_uint64, [c_void_p]),
    "shmreg_reader_refresh": (c_int, [c_void_p]),
    "shmreg_reader_reopens": (c_uint64, [c_void_p]),
    "shmreg_reader_strerror": (c_char_p, [c_int]),
}


def _candidates():
    env = os.environ.get("SHMREG_LIB")
    if env:
        return [("SHMREG_LIB", env)]
    out = []
    bundled = os.path.join(os.path.dirname(os.path.abspath(__file__)), "libshmreg.so")
    if os.path.exists(bundled):
        out.append(("bundled", bundled))
    checkout = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples", "c",
                            "libshmreg.so")
    if os.path.exists(checkout):
        out.append(("checkout", os.path.normpath(checkout)))
    found = ctypes.util.find_library("shmreg")
    if found:
        out.append(("system", found))
    return out


def load():
    """Returns the loaded library, its ABI declared; ShmregError if none."""
    tried = []
    for how, path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s %s: %s" % (how, path, e))
            continue
        try:
            for name, (res, args) in _ABI.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = res, args
        except AttributeError as e:
            tried.append("%s %s: not libshmreg (%s)" % (how, path, e))
            continue
        lib.path = path
        return lib
    raise ShmregError(
        "cannot load libshmreg.so (%s); reinstall the package from a shmreg checkout, "
        "or set SHMREG_LIB to a libshmreg.so built by `make -C examples/c lib`"
        % ("; ".join(tried) if tried else "none bundled, SHMREG_LIB unset, none on the linker's path")
    )


_lib = None


def lib():
    global _lib
    if _lib is None:
        _lib = load()
    return _lib
