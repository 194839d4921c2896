#!/usr/bin/env bash
# demo.sh FAULTBOX [DIR]: the run of `make demo`. faultbox reproduces the
# Juniper DX blank page against Apache's default TCP_DEFER_ACCEPT
# (`faultbox scenario run dx-defer-accept`, about 45 s: Apache's 30 s defer
# is hard-coded), with its A/B arms side by side: A Apache's default
# AcceptFilter http data, B AcceptFilter http none, C a DX that checks its
# pooled connections before reuse. The report goes to a new directory
# under DIR (default bin/demo); the scenario builds and removes its own lab.
# The exit status is the scenario's: 0 when the outcome is what this kernel
# is expected to do.
set -euo pipefail

fb=$(realpath "${1:?usage: demo.sh FAULTBOX [DIR]}")
base=${2:-bin/demo}
mkdir -p "$base"
dir=$(realpath "$base")/dx-defer-accept-$(date +%Y%m%d-%H%M%S)

printf '== faultbox scenario run dx-defer-accept --report %s\n\n' "$dir"
rc=0
"$fb" scenario run dx-defer-accept --report "$dir" || rc=$?

printf '\n== report\n'
if [ -s "$dir/report.html" ]; then
	printf '%s/report.html  (open it in a browser; it works offline)\n' "$dir"
	printf 'evidence:    %s  (capture.pcapng, verdict.json, clients.json, server and DX logs)\n' "$dir"
else
	printf 'no report was written in %s\n' "$dir"
fi
case $rc in
0) printf '\ndemo: reproduced, as this kernel is expected to\n' ;;
1) printf '\ndemo: the outcome was not the expected one (exit 1): see the report\n' ;;
*) printf '\ndemo: the run could not decide (exit %d): see the report\n' "$rc" ;;
esac
exit "$rc"
