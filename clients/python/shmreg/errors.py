"""The exceptions of the shmreg package, and the library's codes behind them.

    ShmregError                       every error of this package
    +-- NoRegion (FileNotFoundError)  no region at the path (or no PATH.ctl)
    +-- NotARegion                    the file is not a shmreg region
    +-- LayoutVersionError            a layout version this library cannot read
    +-- CorruptRegion                 a bad offset, length or link; a truncated file
    +-- NoSlots                       every reader slot is held by a live reader
    +-- Evicted                       a read outlived the writer's read lease
    +-- RegionClosed (ValueError)     the Region was closed
    +-- InvalidInstance (ValueError)  an instance value that does not decode
"""
import errno as _errno

# libshmreg.h
ENOTFOUND = -30800
EMAGIC = -30801
EVERSION = -30802
ETRUNCATED = -30803
ECORRUPT = -30804
ESUPERSEDED = -30805
EEVICTED = -30806
ENOSLOTS = -30807
ESECTION = -30808


class ShmregError(Exception):
    """An error reading a shmreg region. `code` is the library's return code
    (a SHMREG_E* value or a negative errno) when one caused it, else None;
    `path` the region's path when known."""

    code = None
    path = None


class NoRegion(ShmregError, FileNotFoundError):
    """No region at the path: the data file or its PATH.ctl does not exist."""


class NotARegion(ShmregError):
    """The file exists but is not a shmreg region (bad magic)."""


class LayoutVersionError(ShmregError):
    """The region's layout version is not the one libshmreg.so reads."""


class CorruptRegion(ShmregError):
    """An offset, length or link that cannot be right, or a file shorter
    than its header says."""


class NoSlots(ShmregError):
    """Every reader slot of PATH.ctl is held by a live reader."""


class Evicted(ShmregError):
    """A read section outlived the writer's read lease; what it read was
    discarded. The copying calls retry by themselves, so this is rare."""


class RegionClosed(ShmregError, ValueError):
    """An operation on a closed Region."""


class InvalidInstance(ShmregError, ValueError):
    """A value under svc/<service>/ that is not an instance's msgpack map."""


_BY_CODE = {
    EMAGIC: NotARegion,
    EVERSION: LayoutVersionError,
    ETRUNCATED: CorruptRegion,
    ECORRUPT: CorruptRegion,
    EEVICTED: Evicted,
    ENOSLOTS: NoSlots,
    -_errno.ENOENT: NoRegion,
}


def error_for(lib, rc, path=None, what=None):
    """The exception for library return code rc."""
    cls = _BY_CODE.get(rc, ShmregError)
    msg = lib.shmreg_reader_strerror(rc).decode("utf-8", "replace")
    if rc == -_errno.ENOENT:
        msg = "no shmreg region at %s (%s or %s.ctl does not exist)" % (path, path, path)
    elif rc == EVERSION:
        msg = "%s: the region's layout version is not %d, the one libshmreg.so (%s) reads" % (
            msg, lib.shmreg_reader_layout_version(), lib.path)
    if what:
        msg = "%s: %s" % (what, msg)
    elif path is not None and rc != -_errno.ENOENT:
        msg = "%s: %s" % (path, msg)
    e = cls(_errno.ENOENT, msg) if cls is NoRegion else cls(msg)
    e.code = rc
    e.path = path
    return e
