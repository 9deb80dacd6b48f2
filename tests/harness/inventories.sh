#!/usr/bin/env bash
# The check of the example inventories (tests/run inventories):
#
#   tests/harness/inventories.sh [INVENTORY…]   default: every inventory under inventories/ but
#                                               local (which needs the running local test host)
#
# An inventory is a directory with a hosts.yml, else each *.yml file in it (multihost: staging.yml
# and production.yml). For every host, tests/harness/playbooks/check_inventory.yml runs each role's
# validate entry, writes its stacks with compose_stack's own tasks and has `docker compose config`
# check them, on this machine alone: no host is reached. Logs and rendered stacks: build/inventories/.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
# shellcheck source=tests/lib.sh
. tests/lib.sh
OUT=$ROOT/build/inventories
COMPOSE_DIR=$ROOT/.cache/compose
MIRROR=${COMPOSEOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
JOBS=${COMPOSEOPS_INVENTORY_JOBS:-2}

log() { printf '[inventories] %s\n' "$*" >&2; }

# The Compose CLI as a JSON list: `docker compose` when it is 2.18 or later (common_compose_min_version),
# else Debian 13's docker-compose package (the Compose of a Debian 13 host), fetched once into
# .cache/compose with apt's own lists there (the machine's apt sources stay as they are).
compose_cli() {
  local version
  version=$(docker compose version --short 2>/dev/null | sed 's/^v//')
  if [ -n "$version" ] && [ "$(printf '%s\n' 2.18.0 "$version" | sort -V | head -n 1)" = 2.18.0 ]; then
    echo '["docker", "compose"]'
    return 0
  fi
  if ! "$COMPOSE_DIR/docker-compose" version >/dev/null 2>&1; then
    log "fetching Debian 13's docker-compose into $COMPOSE_DIR (no docker compose 2.18+ here)"
    local apt=$COMPOSE_DIR/apt
    local opts=(-qq -o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root)
    rm -rf "$apt" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" || return 1
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR trixie main" >"$apt/sources.list"
    { apt-get "${opts[@]}" update && (cd "$apt" && apt-get "${opts[@]}" download docker-compose) &&
      dpkg-deb -x "$apt"/docker-compose_*.deb "$apt/root" &&
      install -m 0755 "$apt/root/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_DIR/docker-compose"; } >&2 ||
      { log "could not fetch docker-compose from $MIRROR"; return 1; }
    rm -rf "$apt"
  fi
  echo "[\"$COMPOSE_DIR/docker-compose\"]"
}

# check NAME INVENTORY: one run of the check playbook, its output in $OUT/NAME.log.
check() {
  local name=$1 inventory=$2 start rc
  start=$(date +%s)
  rm -rf "${OUT:?}/$name" && mkdir -p "$OUT/$name"
  # A fact cache in memory only: the facts this check pretends must never reach a real cache.
  ANSIBLE_CACHE_PLUGIN=memory ansible-playbook -i "$inventory" tests/harness/playbooks/check_inventory.yml \
    -e "check_inventory_out=$OUT/$name" -e "{\"check_inventory_compose\": $COMPOSE}" >"$OUT/$name.log" 2>&1
  rc=$?
  # At least one host must have been checked: an inventory whose hosts are not in composeops checks nothing.
  if [ $rc = 0 ] && ! grep -q 'ok=[1-9]' "$OUT/$name.log"; then
    echo "no host of group composeops in $inventory" >>"$OUT/$name.log"
    rc=1
  fi
  if [ $rc = 0 ]; then
    log "ok      $name ($inventory, $(grep -c ' : ok=' "$OUT/$name.log") hosts, $(($(date +%s) - start)) s)"
  else
    log "FAILED  $name ($inventory; log: $OUT/$name.log):"
    grep -E -A 4 '^(\[ERROR\]|fatal:|failed:)|^no host' "$OUT/$name.log" | cut -c 1-400 >&2
  fi
  return $rc
}

main() {
  local inventories=("$@") inv name passed=0 failed=0 f
  if [ ${#inventories[@]} = 0 ]; then
    for inv in inventories/*/; do
      inv=${inv%/}
      [ "$(basename "$inv")" = local ] && continue
      if [ -f "$inv/hosts.yml" ]; then
        inventories+=("$inv")
      else
        for f in "$inv"/*.yml; do inventories+=("$f"); done
      fi
    done
  fi
  setup_venv || return 1
  link_collection
  COMPOSE=$(compose_cli) || return 1
  mkdir -p "$OUT"
  # Two checks at a time (each playbook run keeps about one core busy).
  local names=()
  for inv in "${inventories[@]}"; do
    while [ "$(jobs -pr | wc -l)" -ge "$JOBS" ]; do wait -n; done
    # inventories/multihost/staging.yml: multihost-staging; a directory elsewhere: its name.
    name=${inv%/}
    name=${name#*inventories/}
    name=$(sed -E 's#^/.*/##; s#\.yml$##; s#[^A-Za-z0-9_.-]+#-#g' <<<"$name")
    names+=("$name")
    { check "$name" "$inv"; echo $? >"$OUT/$name.rc"; } &
  done
  wait
  for name in "${names[@]}"; do
    if [ "$(cat "$OUT/$name.rc")" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "inventories: $passed passed, $failed failed"
  [ "$failed" = 0 ]
}

main "$@"
