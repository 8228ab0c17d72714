#!/usr/bin/env bash
# Measures Region.get per lookup on a Go-written region of 100K keys (random
# order, present keys), beside java.util.HashMap on the same keys in the
# same JVM and run. Run from the repository root:
#
#   bash clients/java/bench.sh [KEYS] [ROUNDS]
#
# Needs Go and a JDK 17 (clients/java/test.sh installs it).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
keys=${1:-100000}
rounds=${2:-9}
out=$here/build/bench
rm -rf "$out"
mkdir -p "$out/classes"
(cd "$repo" && go build -o "$out/xlangbench" ./internal/xlangbench)
javac --release 17 -d "$out/classes" $(find "$here/src/main/java" "$here/src/bench/java" -name '*.java')

# Regions live in /dev/shm in production; measure there when it exists.
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
tmp=$(mktemp -d "$base/shmreg-java-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$out/xlangbench" keys "$tmp/r" -n "$keys" -out "$tmp/keys"

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores; $(java -version 2>&1 | head -1)"
java -cp "$out/classes" io.shmreg.bench.Bench "$tmp/r" "$tmp/keys" "$rounds"
