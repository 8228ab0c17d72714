#!/bin/sh
# Per-lookup cost from Python: shmreg beside a dict and Redis (bench.py).
#
#   sh clients/python/bench.sh [-n KEYS] [bench.py flags...]
#
# Builds libshmreg.so (make -C examples/c lib) and the Go writer, writes a
# region of KEYS (default 100000) keys k/%08d with 64-byte values under
# /dev/shm, and runs bench.py on it with Debian's python3, importing the
# package from this checkout (it then loads examples/c/libshmreg.so, built
# with the same flags as the one pip bundles). Redis is measured if
# redis-server and python3-redis are installed (apt-get install redis-server
# python3-redis); bench.py starts it on a free port and stops it.
set -eu
cd "$(dirname "$0")/../.."
repo=$(pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
n=100000
if [ "${1:-}" = "-n" ]; then n=$2; shift 2; fi

work=$(mktemp -d /dev/shm/shmreg-pybench-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM
make -s -C examples/c lib
mkdir "$work/pkg"
cp -r clients/python/shmreg clients/python/bench.py "$work/pkg/"  # bench.py beside it: a script's directory comes first
rm -f "$work/pkg/shmreg/"_fast*.so "$work/pkg/shmreg/libshmreg.so"
(cd clients/python && "$PYTHON" setup.py -q build_ext --build-lib "$work/pkg" --build-temp "$work/tmp" 2>&1) |
    grep -v -e '_BetaConfiguration' -e 'warnings.warn' >&2 || true
go build -o "$work/xlang" ./internal/xlang
"$work/xlang" bench "$work/region" -n "$n"
SHMREG_LIB="$repo/examples/c/libshmreg.so" PYTHONPATH="$work/pkg" \
    "$PYTHON" "$work/pkg/bench.py" --region "$work/region" "$@"
