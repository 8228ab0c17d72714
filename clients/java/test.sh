#!/usr/bin/env bash
# Builds the Java reader (clients/java/build/shmreg.jar) and runs its JUnit 5
# tests against regions the Go writer writes in the same run. Run from the
# repository root (or anywhere: it finds the root from its own path):
#
#   bash clients/java/test.sh
#
# Needs Go and gcc; installs openjdk-17-jdk-headless and junit5 from Debian
# with apt-get when they are missing. Exits non-zero on any failure,
# including a test that was skipped or aborted.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=$here/build
junit=/usr/share/java/junit-platform-console-standalone.jar

need_apt=()
command -v javac >/dev/null 2>&1 && javac -version 2>&1 | grep -Eq 'javac (1[7-9]|[2-9][0-9])' || need_apt+=(openjdk-17-jdk-headless)
[ -f "$junit" ] || need_apt+=(junit5)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "java/test.sh: installing ${need_apt[*]} with apt-get" >&2
    sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
    aptlog=$(mktemp)
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"; } >"$aptlog" 2>&1; then
        cat "$aptlog" >&2
        echo "java/test.sh: apt-get install ${need_apt[*]} failed (see above); cannot build the Java reader" >&2
        exit 1
    fi
    rm -f "$aptlog"
    [ -f "$junit" ] || { echo "java/test.sh: junit5 installed but $junit is missing" >&2; exit 1; }
    command -v javac >/dev/null || { echo "java/test.sh: openjdk-17-jdk-headless installed but javac is not on PATH" >&2; exit 1; }
fi
command -v go >/dev/null || { echo "java/test.sh: go is needed (it writes the test regions)" >&2; exit 1; }
command -v gcc >/dev/null || { echo "java/test.sh: gcc is needed (the OFD lock probe)" >&2; exit 1; }

rm -rf "$build"
mkdir -p "$build/classes" "$build/test-classes" "$build/bin"

echo "== build: the Go writer, the CLI, the C probe"
(cd "$repo" && go build -o "$build/bin/xlang" ./internal/xlang && go build -o "$build/bin/shmreg" ./cmd/shmreg && go build -o "$build/bin/xlangbench" ./internal/xlangbench)
gcc -O1 -Wall -Wextra -Werror -o "$build/bin/ofdprobe" "$here/testdata/ofdprobe.c"

echo "== build: shmreg.jar"
javac -Xlint:all -Werror --release 17 -d "$build/classes" $(find "$here/src/main/java" -name '*.java')
printf 'Main-Class: io.shmreg.Dump\n' >"$build/manifest.txt"
jar --create --file "$build/shmreg.jar" --manifest "$build/manifest.txt" -C "$build/classes" .

echo "== build: the benchmark (bench.sh runs it; compiled here so that it cannot rot)"
mkdir -p "$build/bench-classes"
javac -Xlint:all -Werror --release 17 -cp "$build/shmreg.jar" -d "$build/bench-classes" $(find "$here/src/bench/java" -name '*.java')

echo "== build: tests"
javac -Xlint:all,-serial -Werror --release 17 -cp "$build/shmreg.jar:$junit" -d "$build/test-classes" $(find "$here/src/test/java" -name '*.java')

echo "== test"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/shmreg-java-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export SHMREG_REPO=$repo SHMREG_XLANG=$build/bin/xlang SHMREG_XLANGBENCH=$build/bin/xlangbench SHMREG_BIN=$build/bin/shmreg \
    SHMREG_OFDPROBE=$build/bin/ofdprobe SHMREG_TESTDIR=$tmp \
    SHMREG_CLASSPATH=$build/test-classes:$build/shmreg.jar
set +e
java -jar "$junit" --disable-banner --details=tree --fail-if-no-tests \
    --class-path "$build/test-classes:$build/shmreg.jar" --select-package io.shmreg 2>&1 | tee "$build/junit.log"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
    echo "java/test.sh: FAIL (junit exit $rc)" >&2
    exit 1
fi
# Nothing skipped or aborted counts as passing.
if ! grep -Eq '\[ +0 tests skipped +\]' "$build/junit.log" || ! grep -Eq '\[ +0 tests aborted +\]' "$build/junit.log"; then
    echo "java/test.sh: FAIL (tests were skipped or aborted)" >&2
    exit 1
fi
echo "java/test.sh: PASS"
