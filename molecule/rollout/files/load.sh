#!/usr/bin/env bash
# Load of the rollout tests, run on the test host against its own nginx:
#   load.sh NAME SECONDS SLOW OUT [SLOW_SECONDS]
# hey sends GET / to https://NAME for SECONDS (4 workers, 4 requests/s each: below the site's
# rate limit, so a 429 is a failure too). Beside it, SLOW slots each send /slow?seconds=SLOW_SECONDS
# (default 25) one after the other until SECONDS have passed, slot i starting i*SLOW_SECONDS/SLOW s
# late: from then on a slow request is always in flight that started less than SLOW_SECONDS/SLOW s
# ago, so one spans any moment of the window (a switch, a drain, the stop of the old replicas).
# OUT gets hey.txt, slow-N.txt (a line per slow request: start and end epoch seconds, HTTP status,
# the version that answered) and done. Creating OUT/stop ends the load early (hey gets SIGINT and
# prints its report; the slots finish the request they have in flight). NAME must resolve to the
# loopback: the load never leaves the host. Bounded: hey stops after SECONDS, each curl after 60 s,
# each slot's loop at SECONDS.
set -euo pipefail
name=$1 seconds=$2 slow=$3 out=$4 slow_seconds=${5:-25}
[[ $seconds =~ ^[0-9]+$ && $seconds -le 120 && $slow =~ ^[0-9]+$ && $slow -le 10 &&
  $slow_seconds =~ ^[0-9]+$ && $slow_seconds -ge 1 && $slow_seconds -le 30 ]] ||
  { echo "load.sh: SECONDS (<= 120), SLOW (<= 10) and SLOW_SECONDS (1-30) are numbers" >&2; exit 2; }
address=$(getent ahostsv4 "$name" | awk 'NR == 1 {print $1}')
[ "$address" = 127.0.0.1 ] || { echo "load.sh: $name resolves to '$address', not the loopback: refused" >&2; exit 2; }
rm -rf "$out" && mkdir -p "$out"
end=$(($(date +%s) + seconds))
slot() {
  sleep "$(awk -v i="$1" -v s="$slow_seconds" -v n="$slow" 'BEGIN {print (i - 1) * s / n}')"
  while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$out/stop" ]; do
    local start reply version
    start=$(date +%s.%N)
    reply=$(curl -sk -w '\n%{http_code}' --max-time 60 "https://$name/slow?seconds=$slow_seconds" || true)
    version=$(grep -o '"version": "[^"]*"' <<<"$reply" | cut -d'"' -f4 || true)
    echo "$start $(date +%s.%N) ${reply##*$'\n'} ${version:--}" >>"$out/slow-$1.txt"
  done
}
for i in $(seq 1 "$slow"); do
  slot "$i" &
done
timeout $((seconds + 30)) hey -z "${seconds}s" -c 4 -q 4 -t 30 "https://$name/" >"$out/hey.txt" 2>&1 &
hey_job=$!
while kill -0 "$hey_job" 2>/dev/null; do
  if [ -e "$out/stop" ]; then pkill -INT -P "$hey_job" hey || true; fi
  sleep 1
done
wait
touch "$out/done"
