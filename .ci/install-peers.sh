#!/bin/sh
# Installs the peers that "shmreg bench compare" measures shmreg against:
# redis-server and etcd (Debian packages redis-server and etcd-server).
# Idempotent: does nothing for a peer already on PATH. Never fails the
# build: a peer that cannot be installed is reported by the benchmark as
# "not available", and this script says why here.
set -u

need=""
command -v redis-server >/dev/null 2>&1 || need="$need redis-server"
command -v etcd >/dev/null 2>&1 || need="$need etcd-server"
if [ -z "$need" ]; then
	echo "install-peers: redis-server and etcd already installed"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-peers: no apt-get here; install$need yourself (bench compare reports them as not available)" >&2
	exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO="sudo -n"
	else
		echo "install-peers: not root and no sudo; cannot install$need (bench compare reports them as not available)" >&2
		exit 0
	fi
fi

echo "install-peers: installing$need"
# The benchmark starts its own servers on free loopback ports with
# temporary directories; a service the package may start is not used.
if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
	$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need; } >/tmp/install-peers.log 2>&1; then
	echo "install-peers: apt-get failed (see /tmp/install-peers.log); bench compare will report the missing peers as not available" >&2
	tail -5 /tmp/install-peers.log >&2
	exit 0
fi
# The packages just installed may have started their system services (on
# a machine with systemd). The benchmark never uses them; stop them so that
# they take no CPU or memory during the runs. Services of packages that were
# there before are left alone.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	for pkg in $need; do
		unit=$pkg
		[ "$pkg" = etcd-server ] && unit=etcd
		$SUDO systemctl disable --now "$unit" >/dev/null 2>&1 || true
	done
fi
for b in redis-server etcd; do
	if command -v "$b" >/dev/null 2>&1; then
		echo "install-peers: $b: $(command -v "$b")"
	else
		echo "install-peers: $b still missing after apt-get" >&2
	fi
done
exit 0
