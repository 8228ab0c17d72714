"""Read a shmreg service registry from shared memory.

    import shmreg

    with shmreg.Region("/dev/shm/shmreg/NAME") as r:
        r["cfg/app/timeout"]              # bytes; KeyError if absent
        r.get("cfg/app/retries", b"3")    # bytes, or the default
        for key, value in r.items(b"cfg/"):
            ...
        r.instances("orders")             # [shmreg.Instance, ...]
        r.wait(timeout=5.0)               # True once the writer commits

The reading is done by libshmreg.so (include/shmreg.h compiled): it takes a
reader slot in NAME.ctl, publishes each read's epoch so that the writer
reuses no memory a read can reach, reopens a region the writer rebuilt into
a new file, and sleeps on the control file's futex word in wait().

BACKEND is what calls it for lookups and items(): "extension" (the C
extension module shmreg._fast, built with the package when Python.h was
there) or "ctypes" (the fallback). SHMREG_PY_BACKEND=ctypes forces the
fallback; =extension makes a missing extension an ImportError.
"""
from .errors import (
    CorruptRegion,
    Evicted,
    InvalidInstance,
    LayoutVersionError,
    NoRegion,
    NoSlots,
    NotARegion,
    RegionClosed,
    ShmregError,
)
from .instance import Instance
from .region import BACKEND, Region

__all__ = [
    "Region", "Instance", "ShmregError", "NoRegion", "NotARegion", "LayoutVersionError",
    "CorruptRegion", "NoSlots", "Evicted", "RegionClosed", "InvalidInstance", "layout_version", "BACKEND",
]
__version__ = "0.1.0"


def layout_version():
    """The region layout version libshmreg.so reads."""
    from . import _lib

    return _lib.lib().shmreg_reader_layout_version()
