#!/usr/bin/env bash
# testssl.sh against the ACME site of the scenario, in the background: converge starts it before
# the role, and it waits until nginx serves the site's certificate from Pebble (the role's last
# reload; the renewal job set up after it reloads nothing), so its minute runs beside the end of
# converge, idempotence and side_effect (neither reloads nginx nor sends it bursts); verify
# collects its findings before it reloads nginx itself.
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
  # Its exit status lands in rc (124: nginx never served Pebble's certificate in 600 s); its
  # output in the journal of the unit.
  # shellcheck disable=SC2016  # expanded by the unit's bash
  systemd-run --quiet --collect --unit=composeops-testssl /bin/bash -c '
    for _ in $(seq 600); do
      openssl s_client -connect 127.0.0.1:443 -servername "$3" </dev/null 2>/dev/null \
        | openssl x509 -noout -issuer 2>/dev/null | grep -q Pebble && break
      sleep 1
    done
    if openssl s_client -connect 127.0.0.1:443 -servername "$3" </dev/null 2>/dev/null \
        | openssl x509 -noout -issuer 2>/dev/null | grep -q Pebble; then
      testssl --quiet --color 0 --warnings off --add-ca "$1" --jsonfile "$2/findings.json" "$3:443"
      echo $? > "$2/rc"
    else
      echo "nginx did not serve the certificate from Pebble within 600 s" >&2
      echo 124 > "$2/rc"
    fi' testssl "$ca" "$dir" "$site"
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
    if [ "$(cat "$dir/rc")" = 124 ]; then
      journalctl -u composeops-testssl -n 20 --no-pager >&2 || true
      exit 1
    fi
    echo "$dir/findings.json"
    ;;
  *) echo "usage: $0 start|collect SITE CA" >&2; exit 2 ;;
esac
