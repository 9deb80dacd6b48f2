#!/usr/bin/env bash
# Load of the rollout tests, run on the test host against its own nginx:
#   load.sh NAME SECONDS SLOW OUT
# hey sends GET / to https://NAME for SECONDS (4 workers, 4 requests/s each: below the site's
# rate limit, so a 429 is a failure too) while SLOW requests of /slow?seconds=25 are in flight;
# OUT gets hey.txt, slow-N.txt (HTTP status of each) and done. NAME must resolve to the loopback:
# the load never leaves the host. Bounded: hey stops after SECONDS, curl after 60 s.
set -euo pipefail
name=$1 seconds=$2 slow=$3 out=$4
[[ $seconds =~ ^[0-9]+$ && $seconds -le 120 && $slow =~ ^[0-9]+$ && $slow -le 10 ]] ||
  { echo "load.sh: SECONDS (<= 120) and SLOW (<= 10) are numbers" >&2; exit 2; }
address=$(getent ahostsv4 "$name" | awk 'NR == 1 {print $1}')
[ "$address" = 127.0.0.1 ] || { echo "load.sh: $name resolves to '$address', not the loopback: refused" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"
for i in $(seq 1 "$slow"); do
  curl -sk -o /dev/null -w '%{http_code}\n' --max-time 60 "https://$name/slow?seconds=25" >"$out/slow-$i.txt" &
done
timeout $((seconds + 30)) hey -z "${seconds}s" -c 4 -q 4 -t 30 "https://$name/" >"$out/hey.txt" 2>&1 || true
wait
touch "$out/done"
