#!/usr/bin/env bash
# Runs every Go fuzz target of the module (but e2e) for FUZZTIME each.
# A finding fails the run; the failing input is written to the package's
# testdata/fuzz. Usage: scripts/fuzz.sh FUZZTIME FUZZMINTIME
set -uo pipefail
fuzztime=${1:-10m}
mintime=${2:-2s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for pkg in $(go list ./... | grep -v '/e2e$'); do
	for f in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($fuzztime)"
		if go test "$pkg" -run '^$' -fuzz "^$f\$" -fuzztime "$fuzztime" -fuzzminimizetime "$mintime" >"$log" 2>&1; then
			tail -n 1 "$log"
			continue
		fi
		# Go's fuzzer can report "context deadline exceeded" when the time
		# runs out while a worker is still busy, with no failing input: that
		# is the fuzzer's own time-out, not a finding.
		if grep -q 'context deadline exceeded' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "fuzz: $f: the fuzzer's own time-out at the deadline, no finding"
			continue
		fi
		cat "$log"
		echo "fuzz: $pkg $f FAILED"
		exit 1
	done
done
