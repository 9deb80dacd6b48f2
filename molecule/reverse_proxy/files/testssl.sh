#!/bin/bash
# testssl.sh against a site of the scenario, in the background: converge starts it as soon as
# nginx serves the site, so its minute runs beside idempotence and side_effect (neither reloads
# nginx nor sends it bursts), and verify collects its findings before it reloads nginx itself.
#
#   testssl.sh start SITE CA    start it in the transient unit composeops-testssl (nothing when
#                               it was started already and its findings are not collected yet)
#   testssl.sh collect SITE CA  wait for it (start it first when nothing did) and print the path
#                               of its JSON findings; the next collect runs it afresh
#
# CA: the root of the test ACME server (--add-ca), so the chain is trusted.
set -euo pipefail
dir=/var/lib/composeops-test/testssl
action=$1 site=$2 ca=$3

start() {
  [ -e "$dir/started" ] && return 0
  mkdir -p "$dir"
  rm -f "$dir/findings.json" "$dir/rc"
  touch "$dir/started"
  # Its exit status lands in rc; its output in the journal of the unit.
  # shellcheck disable=SC2016  # expanded by the unit's bash
  systemd-run --quiet --collect --unit=composeops-testssl /bin/bash -c \
    'testssl --quiet --color 0 --warnings off --add-ca "$1" --jsonfile "$2/findings.json" "$3:443"; echo $? > "$2/rc"' \
    testssl "$ca" "$dir" "$site"
}

case $action in
  start) start ;;
  collect)
    start
    # A full run takes about a minute on a quiet machine, six under a load of 15: wait at most ten.
    for _ in $(seq 600); do
      [ -e "$dir/rc" ] && break
      systemctl is-active --quiet composeops-testssl || [ -e "$dir/rc" ] || break
      sleep 1
    done
    if [ ! -e "$dir/rc" ]; then
      rm -f "$dir/started"
      echo "testssl.sh ended without a result or did not finish in 600 s:" >&2
      journalctl -u composeops-testssl -n 20 --no-pager >&2 || true
      exit 1
    fi
    rm -f "$dir/started"
    echo "$dir/findings.json"
    ;;
  *) echo "usage: $0 start|collect SITE CA" >&2; exit 2 ;;
esac
