#!/usr/bin/env bash
# The C reader against a private hash table and LMDB (issue 18, item 5).
#
#   examples/c/bench/run.sh [--v1] [SIZES...]     default sizes: 10000 100000 1000000
#
# Builds shmreg_bench and mkregion, writes a region of each size into a
# temporary directory on /dev/shm, runs shmreg_bench on it (median of
# ROUNDS interleaved rounds) and prints one markdown table, with the machine
# (CPU model, page size, transparent huge page settings) above it. 10000000
# runs only when asked for: its region is about 5 GB of /dev/shm (10 GB with
# --v1), plus LMDB and the private table; a size that does not fit in the
# free space of /dev/shm and the available memory is skipped, saying so.
#
# --v1 also writes every size with the layout-version-1 writer (commit
# 8fa90da, values apart from their nodes, built from a temporary git
# worktree that is removed at exit) and times the C reader on both regions
# in the same rounds.
#
# At 100000 entries (when among the sizes and valgrind is installed;
# CACHEGRIND=0 skips it) it also runs cachegrind twice per path with
# CG_LOOKUPS and 2*CG_LOOKUPS lookups and prints, per extra lookup,
# instructions and simulated D1 and last-level misses: a simulation of the
# caches (not of the TLB). The geometry is this machine's, from
# /sys/devices/system/cpu/cpu0/cache (cachegrind's own detection reads
# CPUID, which a guest may fill with nonsense): D1 = the L1 data cache, and
# the last level simulated twice, as the L3 and as one core's L2.
#
# Environment: LOOKUPS (4000000 per path per round), ROUNDS (5),
# CG_LOOKUPS (200000), CACHEGRIND (1; 0 skips it, "only" runs nothing
# else), V1_COMMIT (8fa90da).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
LOOKUPS=${LOOKUPS:-4000000}
ROUNDS=${ROUNDS:-5}
CG_LOOKUPS=${CG_LOOKUPS:-200000}
CACHEGRIND=${CACHEGRIND:-1}
V1_COMMIT=${V1_COMMIT:-8fa90da}

v1=0
sizes=()
for a in "$@"; do
	case $a in
	--v1) v1=1 ;;
	-h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*[!0-9]* | '') echo "run.sh: not a size: $a" >&2; exit 2 ;;
	*) sizes+=("$a") ;;
	esac
done
[ ${#sizes[@]} -gt 0 ] || sizes=(10000 100000 1000000)

tmp=$(mktemp -d /dev/shm/shmreg-cbench-XXXXXX)
wt=""
cleanup() {
	if [ -n "$wt" ] && [ -d "$wt" ]; then
		git -C "$repo" worktree remove --force "$wt" >/dev/null 2>&1 || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

make -s -C "$here" all >&2
bench=$here/shmreg_bench
mk=$here/mkregion/mkregion

mk1=""
if [ $v1 = 1 ]; then
	wt=$(mktemp -u /tmp/wt-v1-XXXXXX)
	git -C "$repo" worktree add --detach "$wt" "$V1_COMMIT" >/dev/null 2>&1
	mkdir -p "$wt/examples/c/bench/mkregion"
	cp "$here/mkregion/main.go" "$wt/examples/c/bench/mkregion/"
	(cd "$wt/examples/c/bench/mkregion" && go build -o "$tmp/mkregion-v1" .)
	git -C "$repo" worktree remove --force "$wt"
	wt=""
	mk1=$tmp/mkregion-v1
fi

# Bytes free: /dev/shm (regions, LMDB) and memory (all of that, and the table).
shm_free() { df -B1 --output=avail /dev/shm | tail -1 | tr -d ' '; }
mem_avail() { echo $(($(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo) * 1024)); }

thp() { cat "/sys/kernel/mm/transparent_hugepage/$1" 2>/dev/null || echo "(absent)"; }
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs;" \
	"caches: $(lscpu | awk -F': *' '/^L1d|^L2|^L3/ { printf "%s %s; ", $1, $2 }')"
echo "- page size $(getconf PAGESIZE) bytes; transparent huge pages: enabled \`$(thp enabled)\`," \
	"shmem_enabled \`$(thp shmem_enabled)\`"
echo "- $(uname -sr), $(go version | cut -d' ' -f3), $(${CC:-gcc} --version | head -1)," \
	"LMDB $(pkg-config --modversion lmdb 2>/dev/null || echo 'not installed (no LMDB rows)')"
echo "- $LOOKUPS lookups per path per round, the paths in turn, timed in slices of 4096;" \
	"median of $ROUNDS rounds (range in brackets);" \
	"load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| entries | path | ns/lookup: median slice (range over rounds) | ns/lookup: mean (range) | ÷ table, per round | LMDB ÷ this, per round |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"

cg_sizes=()
for n in "${sizes[@]}"; do
	regions=$((n * 512 > 16777216 ? n * 512 : 16777216))
	[ $v1 = 1 ] && regions=$((regions * 2))
	lmdb=$((n * 320 + 67108864)) # measured about 290 bytes an entry, plus slack
	table=$((n * 330 + 67108864)) # slots (2n-4n of 24 bytes) and two malloc'd copies an entry
	if [ $((regions + lmdb)) -gt "$(shm_free)" ] || [ $((regions + lmdb + table)) -gt "$(mem_avail)" ]; then
		echo "| $n | **skipped**: needs about $(((regions + lmdb) >> 20)) MiB of /dev/shm and $(((regions + lmdb + table) >> 20)) MiB of memory; /dev/shm has $(($(shm_free) >> 20)) MiB free, MemAvailable $(($(mem_avail) >> 20)) MiB | | | | |"
		continue
	fi
	args=()
	"$mk" -n "$n" "$tmp/v2-$n" >&2
	if [ $v1 = 1 ]; then
		"$mk1" -n "$n" "$tmp/v1-$n" >&2
		args=("v2=$tmp/v2-$n" "v1=$tmp/v1-$n")
	else
		args=("$tmp/v2-$n")
	fi
	[ "$CACHEGRIND" = only ] || "$bench" -m -l "$LOOKUPS" -r "$ROUNDS" -d "$tmp" "${args[@]}"
	if [ "$n" = 100000 ] && [ "$CACHEGRIND" != 0 ] && command -v valgrind >/dev/null; then
		cg_sizes+=("$n")
	else
		rm -f "$tmp/v2-$n" "$tmp/v2-$n.ctl" "$tmp/v1-$n" "$tmp/v1-$n.ctl"
	fi
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# cachegrind: the summary line of a run's output file, as "Ir D1 LL" misses
# (D1 = D1mr + D1mw, LL = DLmr + DLmw + ILmr).
cg_counts() {
	awk '/^events:/ { for (i = 2; i <= NF; i++) col[$i] = i - 1 }
	     /^summary:/ { for (i = 2; i <= NF; i++) v[i - 1] = $i
	                   print v[col["Ir"]], v[col["D1mr"]] + v[col["D1mw"]], v[col["DLmr"]] + v[col["DLmw"]] + v[col["ILmr"]] }' "$1"
}
# size,ways,line of the cpu0 cache of a level ("1 Data", "2 Unified", "3 Unified")
cache_geom() {
	local d
	for d in /sys/devices/system/cpu/cpu0/cache/index*; do
		if [ "$(cat "$d/level") $(cat "$d/type")" = "$1" ]; then
			local size
			size=$(cat "$d/size")
			case $size in *K) size=$((${size%K} * 1024)) ;; *M) size=$((${size%M} * 1048576)) ;; esac
			echo "$size,$(cat "$d/ways_of_associativity"),$(cat "$d/coherency_line_size")"
			return
		fi
	done
}
for n in "${cg_sizes[@]}"; do
	d1=$(cache_geom "1 Data")
	l2=$(cache_geom "2 Unified")
	l3=$(cache_geom "3 Unified")
	echo
	echo "cachegrind --cache-sim=yes --D1=$d1, $n entries: per lookup, from the run of $((2 * CG_LOOKUPS)) lookups" \
		"minus the run of $CG_LOOKUPS (the same setup); LL misses with --LL=$l3 (the L3) and with --LL=$l2 (one core's L2)"
	echo
	echo "| entries | path | instructions | D1 misses | LL misses, LL = L3 | LL misses, LL = L2 |"
	echo "| ---: | --- | ---: | ---: | ---: | ---: |"
	cfg=""
	runs=("shmreg v2 $tmp/v2-$n" "shmreg-1024 v2 $tmp/v2-$n")
	[ $v1 = 1 ] && runs+=("shmreg v1 $tmp/v1-$n" "shmreg-1024 v1 $tmp/v1-$n")
	runs+=("table - $tmp/v2-$n")
	for r in "${runs[@]}"; do
		read -r path label region <<<"$r"
		for ll in L3 L2; do
			geom=$l3
			[ $ll = L2 ] && geom=$l2
			for k in 1 2; do
				valgrind --tool=cachegrind --cache-sim=yes --I1="$d1" --D1="$d1" --LL="$geom" \
					--cachegrind-out-file="$tmp/cg.$ll.$k" \
					"$bench" --only "$path" --count $((k * CG_LOOKUPS)) "$region" >"$tmp/cg.$ll.$k.stdout" 2>"$tmp/cg.$ll.$k.stderr" ||
					{ echo "cachegrind failed ($path $label, LL=$ll, run $k):" >&2; tail -3 "$tmp/cg.$ll.$k.stderr" >&2; continue 3; }
			done
		done
		read -r i1 m1 a1 <<<"$(cg_counts "$tmp/cg.L3.1")"
		read -r i2 m2 a2 <<<"$(cg_counts "$tmp/cg.L3.2")"
		read -r _ _ b1 <<<"$(cg_counts "$tmp/cg.L2.1")"
		read -r _ _ b2 <<<"$(cg_counts "$tmp/cg.L2.2")"
		name=$path
		[ "$label" != - ] && name="$path $label"
		awk -v n="$n" -v p="$name" -v k="$CG_LOOKUPS" -v i1="$i1" -v i2="$i2" -v m1="$m1" -v m2="$m2" \
			-v a1="$a1" -v a2="$a2" -v b1="$b1" -v b2="$b2" \
			'BEGIN { printf "| %d | %s | %.1f | %.2f | %.2f | %.2f |\n", n, p, (i2 - i1) / k, (m2 - m1) / k, (a2 - a1) / k, (b2 - b1) / k }'
		[ -n "$cfg" ] || cfg=$(cat "$tmp/cg.L3.1.stdout")
	done
	echo
	echo "(cachegrind run of the shmreg path: $cfg)"
	rm -f "$tmp/v2-$n" "$tmp/v2-$n.ctl" "$tmp/v1-$n" "$tmp/v1-$n.ctl"
done
