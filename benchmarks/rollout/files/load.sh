#!/usr/bin/env bash
# Load of benchmarks/rollout.sh, run on the test host against its own nginx (stack.yml installs it
# as /usr/local/bin/bench-rollout-load):
#
#   run NAME SECONDS OUT   hey sends GET / to https://NAME for at most SECONDS: 8 workers of at most
#                          25 requests/s each (below the benchmark site's rate limit), keep-alive,
#                          -o csv (status and timing of every request); 3 slots of curl run
#                          /slow?seconds=15 one after the other in each slot until hey ends (so slow
#                          requests are in flight at any moment; 1 s apart after a failed one).
#                          OUT gets start (epoch seconds of hey's start), hey.csv, hey.err,
#                          slow-N.txt ("start status seconds" per request), nginx.log (the access
#                          log lines of the window) and done.
#   stop OUT               ends a run early: SIGINT to hey (it stops and writes its CSV), then waits
#                          for done (at most 90 s).
#
# NAME must resolve to the loopback: the load never leaves the host. Bounded: hey by SECONDS (at
# most 900) and a request timeout of 90 s (above nginx's 60 s proxy_read_timeout, so that nginx
# answers every request and hey's CSV, which has no row for a request without an answer, misses
# none), curl by --max-time 60.
set -euo pipefail
access_log=/var/log/nginx/composeops-access.json.log

case "${1:-}" in
  run)
    name=$2 seconds=$3 out=$4
    [[ $seconds =~ ^[0-9]+$ && $seconds -le 900 ]] || { echo "load: SECONDS is a number <= 900" >&2; exit 2; }
    address=$(getent ahostsv4 "$name" | awk 'NR == 1 {print $1}')
    [ "$address" = 127.0.0.1 ] || { echo "load: $name resolves to '$address', not the loopback: refused" >&2; exit 2; }
    rm -rf "$out" && mkdir -p "$out"
    first=$(($(wc -l <"$access_log") + 1))
    date +%s.%N >"$out/start"
    hey -z "${seconds}s" -c 8 -q 25 -t 90 -o csv "https://$name/" >"$out/hey.csv" 2>"$out/hey.err" &
    hey=$!
    echo "$hey" >"$out/hey.pid"
    for slot in 1 2 3; do
      (
        while kill -0 "$hey" 2>/dev/null; do
          started=$(date +%s.%N)
          result=$(curl -sk -o /dev/null -w '%{http_code} %{time_total}' --max-time 60 \
            "https://$name/slow?seconds=15" || true)
          echo "$started $result" >>"$out/slow-$slot.txt"
          # An error comes back at once: no loop of them.
          [ "${result%% *}" = 200 ] || sleep 1
        done
      ) &
    done
    rc=0
    wait "$hey" || rc=$?
    echo "$rc" >"$out/hey.rc"
    wait
    # The window's lines of the access log (requests of this load and nothing else: health gates
    # go to the containers' own addresses, not through nginx).
    tail -n "+$first" "$access_log" >"$out/nginx.log"
    touch "$out/done"
    ;;
  stop)
    out=$2
    kill -INT "$(cat "$out/hey.pid")" 2>/dev/null || true
    for _ in $(seq 1 900); do
      [ -e "$out/done" ] && exit 0
      sleep 0.1
    done
    echo "load: $out/done did not appear within 90 s" >&2
    exit 1
    ;;
  *)
    sed -n '2,19p' "$0" >&2
    exit 2
    ;;
esac
