#!/usr/bin/env bash
# deps.sh installs what faultbox's tests, demo and benchmarks need on a fresh
# Debian 12, as root. Idempotent: packages already installed are skipped, and
# a re-run with nothing missing changes nothing. Debian starts apache2 and
# nginx on install; the lab runs its own servers inside namespaces, so a
# policy-rc.d forbids starting daemons while we install, and any daemon that
# started anyway because of us is stopped again.
set -euo pipefail

PACKAGES=(iproute2 iputils-ping curl iperf3 nginx apache2 apache2-utils tshark python3 procps chromium nftables prometheus
	podman runc catatonit libcap2-bin) # the container image: build, file capability, kube play's pause image
# Daemons a package may start on install, by PID file.
PIDFILES=(/run/apache2/apache2.pid /run/nginx.pid)
POLICY=/usr/sbin/policy-rc.d

step() { printf 'deps: %s\n' "$*"; }
die() { printf 'deps: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, creates namespaces)"
command -v apt-get >/dev/null || die "apt-get not found: needs Debian 12 or a derivative"
export DEBIAN_FRONTEND=noninteractive

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

missing=()
for p in "${PACKAGES[@]}"; do
	installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	step "packages: all ${#PACKAGES[@]} already installed"
else
	# PIDs of daemons running before we install: those are not ours to stop.
	declare -A before=()
	for f in "${PIDFILES[@]}"; do
		if [ -r "$f" ]; then before[$f]=$(tr -dc 0-9 <"$f"); fi
	done

	backup=""
	restore_policy() {
		if [ -n "$backup" ]; then
			mv -f "$backup" "$POLICY"
		else
			rm -f "$POLICY"
		fi
	}
	if [ -e "$POLICY" ]; then
		backup=$(mktemp /usr/sbin/.policy-rc.d.fbx.XXXXXX)
		cp -p "$POLICY" "$backup"
	fi
	trap restore_policy EXIT
	printf '#!/bin/sh\n# faultbox deps.sh: no daemon starts while installing\nexit 101\n' >"$POLICY"
	chmod 0755 "$POLICY"
	step "policy-rc.d: daemons will not start during install"

	# apt's chatter goes to a log, shown only when a step fails.
	log=$(mktemp /tmp/fbx-deps.XXXXXX)
	run_apt() {
		if ! apt-get "$@" >"$log" 2>&1; then
			cat "$log" >&2
			die "apt-get $* failed"
		fi
	}
	step "apt-get update"
	run_apt update -qq
	step "apt-get install ${missing[*]}"
	run_apt install -y -qq --no-install-recommends "${missing[@]}"
	rm -f "$log"

	restore_policy
	trap - EXIT
	step "policy-rc.d: restored"

	for f in "${PIDFILES[@]}"; do
		[ -r "$f" ] || continue
		pid=$(tr -dc 0-9 <"$f")
		[ -n "$pid" ] && [ "$pid" != "${before[$f]:-}" ] || continue
		if kill -0 "$pid" 2>/dev/null; then
			step "stopping $(basename "$f" .pid) (pid $pid) started by the install"
			kill "$pid"
			for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		fi
	done

	for p in "${missing[@]}"; do
		installed "$p" || die "package $p did not install"
	done
	step "packages: installed ${#missing[@]}"
fi

# The lab needs TUN devices; load the module if the device node is missing.
if [ ! -e /dev/net/tun ]; then
	step "loading the tun module"
	modprobe tun 2>/dev/null || die "/dev/net/tun is missing and modprobe tun failed"
fi
[ -e /dev/net/tun ] || die "/dev/net/tun is missing"
step "/dev/net/tun present"

command -v go >/dev/null || die "go not found on PATH: install Go $(sed -n 's/^go //p' "$(dirname "$0")/../go.mod") or newer"
step "go: $(go version | cut -d' ' -f3)"
