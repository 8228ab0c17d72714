#!/bin/sh
# Tests the Python client on a Debian bookworm machine with Go and gcc:
#
#   sh clients/python/test.sh        (from the repository root, or anywhere)
#
# 1. installs the Debian packages it needs when missing (apt-get; no PyPI),
# 2. builds libshmreg.so and runs its C test (make -C examples/c lib-test),
# 3. builds the Go writer (internal/xlang) and the reference lister (cmd/shmreg),
# 4. installs the package into a throwaway venv of Debian's python3 that sees
#    the system packages (setuptools, wheel, msgpack, pytest):
#      pip install --no-build-isolation --no-index ./clients/python
# 5. runs pytest on clients/python/tests against the installed package.
#
# Exits non-zero on any failure. Environment: PYTHON (default /usr/bin/python3).
set -eu

cd "$(dirname "$0")/../.."
repo=$(pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
PKGS="python3 python3-venv python3-pip python3-setuptools python3-wheel python3-pytest python3-msgpack make"

fail() { echo "clients/python/test.sh: $*" >&2; exit 1; }

echo "== Debian packages"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    { $SUDO apt-get install -y $missing || { $SUDO apt-get update && $SUDO apt-get install -y $missing; }; } ||
        fail "apt-get install$missing failed; install them by hand and run again"
fi
[ -x "$PYTHON" ] || fail "$PYTHON not found"
command -v go >/dev/null || fail "go not found (needed to write the test regions)"
command -v gcc >/dev/null || fail "gcc not found (needed to build libshmreg.so)"

work=$(mktemp -d /tmp/shmreg-pytest-XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

echo "== libshmreg.so"
make -C examples/c lib-test

echo "== Go writer and reference lister"
go build -o "$work/xlang" ./internal/xlang
go build -o "$work/shmreg" ./cmd/shmreg

echo "== install the package (offline, into a venv of $PYTHON)"
"$PYTHON" -m venv --system-site-packages "$work/venv" || fail "$PYTHON -m venv failed (python3-venv missing?)"
"$work/venv/bin/python" -m pip install -q --no-build-isolation --no-index ./clients/python ||
    fail "pip install ./clients/python failed"

echo "== pytest"
# From an empty directory, so that `import shmreg` is the installed package
# (with its own libshmreg.so), not the source tree.
cd "$work"
SHMREG_XLANG="$work/xlang" SHMREG_CLI="$work/shmreg" \
    "$work/venv/bin/python" -c 'import shmreg._lib as l; print("shmreg from", l.__file__, "libshmreg from", l.lib().path)'
SHMREG_XLANG="$work/xlang" SHMREG_CLI="$work/shmreg" \
    "$work/venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs "$repo/clients/python/tests"
echo "clients/python/test.sh: ok"
