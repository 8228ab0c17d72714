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
#    and checks that this normal install built and uses the C extension
#    shmreg._fast (python3-dev is in the list below, so it must),
# 5. runs pytest on clients/python/tests against the installed package with
#    the extension (SHMREG_PY_BACKEND=extension),
# 6. reinstalls the package built without the extension (SHMREG_PY_EXT=0:
#    the build warns, the package falls back to ctypes) and runs pytest
#    again against that (SHMREG_PY_BACKEND=ctypes).
#
# Exits non-zero on any failure. Environment: PYTHON (default /usr/bin/python3).
set -eu

cd "$(dirname "$0")/../.."
repo=$(pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
PKGS="python3 python3-venv python3-pip python3-setuptools python3-wheel python3-pytest python3-msgpack python3-dev make"

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

# From an empty directory, so that `import shmreg` is the installed package
# (with its own libshmreg.so and shmreg._fast), not the source tree.
export SHMREG_XLANG="$work/xlang" SHMREG_CLI="$work/shmreg"
show='import shmreg, shmreg._lib as l, shmreg.region as r
print("shmreg from", l.__file__, "libshmreg from", l.lib().path)
print("backend:", shmreg.BACKEND, "" if r._fast is None else "(" + r._fast.__file__ + ")", r.FALLBACK_REASON or "")'
(cd "$work" && env -u SHMREG_PY_BACKEND "$work/venv/bin/python" -c "$show")
# The normal install must have built the extension: no silent fallback here.
(cd "$work" && env -u SHMREG_PY_BACKEND "$work/venv/bin/python" -c 'import shmreg; assert shmreg.BACKEND == "extension"') ||
    fail "the installed package does not use the C extension shmreg._fast (python3-dev missing? see: pip install -v ./clients/python)"

echo "== pytest, backend: extension"
(cd "$work" && SHMREG_PY_BACKEND=extension "$work/venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs \
    "$repo/clients/python/tests")

echo "== reinstall without the extension (SHMREG_PY_EXT=0), the ctypes fallback"
SHMREG_PY_EXT=0 "$work/venv/bin/python" -m pip install -v --force-reinstall --no-deps --no-build-isolation --no-index \
    ./clients/python >"$work/pip-noext.log" 2>&1 || { cat "$work/pip-noext.log"; fail "pip install without the extension failed"; }
grep -q "WARNING: shmreg: not building the C extension shmreg._fast (SHMREG_PY_EXT=0)" "$work/pip-noext.log" ||
    fail "the build without the extension did not warn"
(cd "$work" && env -u SHMREG_PY_BACKEND "$work/venv/bin/python" -c "$show
assert shmreg.BACKEND == \"ctypes\" and r._fast is None, shmreg.BACKEND") || fail "the fallback build does not fall back to ctypes"

echo "== pytest, backend: ctypes"
# The two tests that compare the extension with ctypes ran in the run above;
# deselected here (this install has no extension) so that nothing is skipped.
(cd "$work" && SHMREG_PY_BACKEND=ctypes "$work/venv/bin/python" -m pytest -p no:cacheprovider -q -rfEs \
    -k "not test_backends_agree_on_the_fixture and not test_extension_leaks_no_references" \
    "$repo/clients/python/tests")
echo "clients/python/test.sh: ok"
