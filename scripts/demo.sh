#!/usr/bin/env bash
# demo.sh FAULTBOX [LAB]: the passthrough smoke run of `make demo`. A lab with
# a client and a server; the server serves a 20 MB file; the client fetches
# it through the device over IPv4 and IPv6 and checks its SHA-256; the
# device's status shows what it forwarded; the lab is removed on any exit.
set -euo pipefail

fb=$(realpath "${1:?usage: demo.sh FAULTBOX [LAB]}")
lab=${2:-demo}
work=$(mktemp -d /tmp/fbx-demo.XXXXXX)
chmod 755 "$work"

step() { printf '\n== %s\n' "$*"; }

cleanup() {
	local rc=$?
	if [ -s "$work/server.pid" ]; then kill "$(cat "$work/server.pid")" 2>/dev/null || true; fi
	"$fb" lab down --name "$lab" >/dev/null 2>&1 || echo "demo: lab down --name $lab failed" >&2
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if "$fb" lab status --name "$lab" >/dev/null 2>&1 || [ -e "/run/faultbox/$lab" ]; then
	step "removing a leftover lab $lab"
	"$fb" lab down --name "$lab"
fi

step "faultbox lab up --name $lab --profile passthrough"
"$fb" lab up --name "$lab" --profile passthrough

mkdir "$work/www"
head -c 20M /dev/urandom >"$work/www/blob"
want=$(sha256sum "$work/www/blob" | cut -d' ' -f1)

step "server: python3 -m http.server on port 8080"
"$fb" lab exec --name "$lab" server -- sh -c \
	"echo \$\$ > $work/server.pid; exec python3 -m http.server --bind :: --directory $work/www 8080" \
	>"$work/server.log" 2>&1 &
for _ in $(seq 100); do
	"$fb" lab exec --name "$lab" server -- ss -Hntl 'sport = :8080' | grep -q . && break
	sleep 0.1
done

fail=0
for url in "-4 http://server:8080/blob" "-g -6 http://[2001:db8::2]:8080/blob"; do
	step "client: curl $url"
	# shellcheck disable=SC2086 # $url holds the flags too
	"$fb" lab exec --name "$lab" client -- curl -sS --fail --max-time 60 \
		-w '%{size_download} bytes in %{time_total}s (%{speed_download} bytes/s)\n' -o "$work/got" $url
	got=$(sha256sum "$work/got" | cut -d' ' -f1)
	if [ "$got" = "$want" ]; then
		echo "sha256 $got: identical"
	else
		echo "sha256 $got, want $want: DIFFERENT"
		fail=1
	fi
done

step "client: ping -c 3 server (IPv4 and IPv6)"
"$fb" lab exec --name "$lab" client -- ping -4 -c 3 -i 0.2 -q server | tail -2
"$fb" lab exec --name "$lab" client -- ping -6 -c 3 -i 0.2 -q server | tail -2

step "faultbox lab status --name $lab"
"$fb" lab status --name "$lab"

step "faultbox lab down --name $lab"
"$fb" lab down --name "$lab"
[ "$fail" -eq 0 ] && printf '\ndemo: passthrough smoke run OK\n' || { printf '\ndemo: FAILED\n'; exit 1; }
