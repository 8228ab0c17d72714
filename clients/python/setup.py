"""Builds the shmreg package with libshmreg.so inside it, and the C
extension module shmreg._fast when it can.

The reader protocol lives in C (include/shmreg.h, compiled by
examples/c/libshmreg.c); this step compiles it with the C compiler (CC, else
gcc) into shmreg/libshmreg.so, the way `make -C examples/c lib` does, so an
installed package needs nothing else at run time.

shmreg._fast (src/_fast.c) makes Region's lookups without ctypes. It holds
no protocol code and is not linked against the library: it includes
examples/c/libshmreg.h for the prototypes and calls the functions of the
libshmreg.so the package loaded, at addresses Region gives it. It needs
Python.h (Debian: python3-dev). If it cannot be built, the build warns and
goes on without it, and the package uses ctypes (shmreg.BACKEND says which).

Environment:
  SHMREG_SRC         the repository root holding include/shmreg.h and
                     examples/c/libshmreg.c (default: found from this file,
                     ../.. when built from a checkout)
  SHMREG_BUNDLE_LIB  0 = do not compile or bundle the library; at run time
                     the package then loads SHMREG_LIB or a libshmreg.so
                     installed by `make -C examples/c install-lib`
  SHMREG_PY_EXT      0 = do not build shmreg._fast; 1 = fail the build if
                     it cannot be built; unset = build it if possible
  CC, CFLAGS         the compiler, and flags added after the defaults
"""
import os
import shlex
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def find_sources(need_source=True):
    roots = [os.environ["SHMREG_SRC"]] if os.environ.get("SHMREG_SRC") else [os.path.join(HERE, "..", "..")]
    for root in roots:
        header = os.path.join(root, "include", "shmreg.h")
        source = os.path.join(root, "examples", "c", "libshmreg.c")
        if os.path.isfile(header) and os.path.isfile(source):
            return os.path.abspath(root), source
    if not need_source:
        return None, None
    raise SystemExit(
        "shmreg: cannot find include/shmreg.h and examples/c/libshmreg.c under %s; "
        "build from a shmreg checkout, set SHMREG_SRC to one, or set SHMREG_BUNDLE_LIB=0 "
        "and point SHMREG_LIB at an installed libshmreg.so" % ", ".join(roots)
    )


class build_py_with_lib(build_py):
    def run(self):
        super().run()
        if os.environ.get("SHMREG_BUNDLE_LIB", "1") == "0":
            return
        root, source = find_sources()
        out = os.path.join(self.build_lib, "shmreg", "libshmreg.so")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "gcc"))
        cmd = cc + [
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-fPIC", "-fvisibility=hidden", "-pthread",
            "-shared", "-Wl,-soname,libshmreg.so.1", "-Wl,--no-undefined",
            "-I" + os.path.join(root, "include"),
        ] + shlex.split(os.environ.get("CFLAGS", "")) + ["-o", out, source]
        self.announce("compiling libshmreg.so: " + " ".join(cmd), level=2)
        try:
            subprocess.check_call(cmd)
        except (OSError, subprocess.CalledProcessError) as e:
            raise SystemExit("shmreg: compiling libshmreg.so failed (%s); is gcc installed?" % e)


def warn(msg):
    sys.stderr.write("\nWARNING: shmreg: %s\n\n" % msg)
    sys.stderr.flush()


class build_ext_optional(build_ext):
    """Builds shmreg._fast if it can; otherwise warns and leaves it out (the
    package then reads through ctypes), unless SHMREG_PY_EXT=1."""

    def run(self):
        want = os.environ.get("SHMREG_PY_EXT", "")
        root, _ = find_sources(need_source=False)
        header = os.path.join(root, "examples", "c", "libshmreg.h") if root else None
        why = None
        if want == "0":
            why = "SHMREG_PY_EXT=0"
        elif header is None or not os.path.isfile(header):
            why = "examples/c/libshmreg.h not found (set SHMREG_SRC to a shmreg checkout)"
        elif not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
            why = "no Python.h in %s (Debian: apt-get install python3-dev)" % sysconfig.get_paths()["include"]
        if why is None:
            for ext in self.extensions:
                ext.include_dirs.append(os.path.dirname(header))
            try:
                super().run()
                return
            except Exception as e:  # CompileError, LinkError, a missing compiler
                why = "compiling it failed: %s" % e
        for ext in self.extensions:  # none left over from an earlier build in this tree either
            built = self.get_ext_fullpath(ext.name)
            if os.path.exists(built):
                os.remove(built)
        if want == "1":
            raise SystemExit("shmreg: SHMREG_PY_EXT=1 but the C extension shmreg._fast cannot be built: " + why)
        warn("not building the C extension shmreg._fast (%s); lookups will go through ctypes, "
             "several times slower" % why)


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


FAST = Extension(
    "shmreg._fast",
    sources=["src/_fast.c"],
    depends=["src/_fast.c"],
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-O2"],
)

setup(
    cmdclass={"build_py": build_py_with_lib, "build_ext": build_ext_optional},
    distclass=BinaryDistribution,
    ext_modules=[FAST],
)
