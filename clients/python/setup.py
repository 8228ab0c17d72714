"""Builds the shmreg package with libshmreg.so inside it.

The reader protocol lives in C (include/shmreg.h, compiled by
examples/c/libshmreg.c); this step compiles it with the C compiler (CC, else
gcc) into shmreg/libshmreg.so, the way `make -C examples/c lib` does, so an
installed package needs nothing else at run time.

Environment:
  SHMREG_SRC         the repository root holding include/shmreg.h and
                     examples/c/libshmreg.c (default: found from this file,
                     ../.. when built from a checkout)
  SHMREG_BUNDLE_LIB  0 = do not compile or bundle the library; at run time
                     the package then loads SHMREG_LIB or a libshmreg.so
                     installed by `make -C examples/c install-lib`
  CC, CFLAGS         the compiler, and flags added after the defaults
"""
import os
import shlex
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))


def find_sources():
    roots = [os.environ["SHMREG_SRC"]] if os.environ.get("SHMREG_SRC") else [os.path.join(HERE, "..", "..")]
    for root in roots:
        header = os.path.join(root, "include", "shmreg.h")
        source = os.path.join(root, "examples", "c", "libshmreg.c")
        if os.path.isfile(header) and os.path.isfile(source):
            return os.path.abspath(root), source
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


class BinaryDistribution(Distribution):
    """The wheel carries a native library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": build_py_with_lib}, distclass=BinaryDistribution)
