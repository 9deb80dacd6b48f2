#!/usr/bin/env bash
# `make local`: the main job against the embedded default, a local systemd container host.
#
#   local.sh         set up the toolchain, start the host `composeops-local`, run playbooks/site.yml
#                    on it over SSH, as on a real server
#   local.sh down    remove the host (`make local-down`)
#   local.sh clean   remove the host, the fixture registry with its volume, the test host and
#                    fixture images, the test network and .cache/local (`make local-clean`)
#
# Extra arguments after `--` go to ansible-playbook (e.g. `tests/harness/local.sh -- --check --diff`).
#
# The docker connection only bootstraps the host: it starts the container, authorises the admin key
# for root (the first run logs in as root, the hardening role then creates the admin and turns root
# login off) and adds the test scaffolding a container host needs. site.yml itself runs over SSH, as
# the admin from the second run on, with the host key pinned in .cache/local/known_hosts.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/lib.sh
. tests/lib.sh
host=composeops-local
cache=.cache/local

case "${1:-}" in
  down)
    docker rm -f -v "$host" >/dev/null 2>&1 || true
    rm -f "$cache/address" "$cache/known_hosts" "$cache/host.yml"
    echo "$host removed (images, fixture registry and key kept; \`make local-clean\` removes them too)"
    exit 0
    ;;
  clean)
    docker rm -f -v "$host" >/dev/null 2>&1 || true
    if docker info >/dev/null 2>&1; then
      tests/harness/fixtures.sh purge
      tests/harness/testhost.sh purge
    fi
    rm -rf "$cache"
    echo "removed $host, the fixture registry and its volume, the images and $cache"
    exit 0
    ;;
  --) shift ;;
  "") ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac

# quiet NAME CMD…: run a bootstrap step with its output in build/local-NAME.log, shown on failure.
quiet() {
  local name=$1 log
  shift
  log=build/local-$name.log
  mkdir -p build
  "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; echo "[local] $name failed (full log: $log)" >&2; return 1; }
}

started=$(date +%s)
setup_venv
link_collection
# The key of the local host's admin user (inventories/local), made once.
[ -f "$cache/id_ed25519" ] || { mkdir -p "$cache" && ssh-keygen -q -t ed25519 -N '' -C composeops-local-admin -f "$cache/id_ed25519"; }
tests/harness/testhost.sh engine
tests/harness/testhost.sh images debian13
quiet start ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml \
  -e "{\"testhost_names\": [\"$host\"], \"testhost_ssh_public_key_file\": \"$PWD/$cache/id_ed25519.pub\"}"
address=$(docker inspect -f '{{ (index .NetworkSettings.Networks "composeops-test").IPAddress }}' "$host")
echo "$address" >"$cache/address"
# Pin the host key: read through the docker connection (trusted), so SSH never has to guess and a
# re-created host never trips "REMOTE HOST IDENTIFICATION HAS CHANGED".
pin_host_key() { echo "$address $(docker exec "$host" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1-2)" >"$cache/known_hosts"; }
pin_host_key
# The shop's images come from the local fixture registry (no registry outside is reachable).
tests/harness/fixtures.sh up
# Test scaffolding a container host needs: Docker inside it, trust in the fixture registry's CA.
# Root until the hardening role has made the admin (an inventory source after inventories/local
# wins over it; an extra var would also beat the hardening role's own fresh-login check as the admin).
printf 'composeops:\n  hosts:\n    %s:\n      ansible_user: root\n' "$host" >"$cache/root.yml"
# The address as a plain value for this script's own runs: inventories/local reads it with a file
# lookup, which Ansible renders anew at every use (541 times and 2.1 s of a no-change run).
printf 'composeops:\n  hosts:\n    %s:\n      ansible_host: %s\n' "$host" "$address" >"$cache/host.yml"
quiet prepare ansible-playbook -i inventories/local -i "$cache/root.yml" \
  -e ansible_connection=community.docker.docker -e 'ansible_docker_host={{ inventory_hostname }}' \
  tests/harness/playbooks/prepare_dind.yml tests/harness/playbooks/trust_fixture_registry.yml
# The admin exists once a run has got through the hardening role; until then, come in as root.
ssh_opts=(-o BatchMode=yes -o ConnectTimeout=5 -o UserKnownHostsFile="$cache/known_hosts" -i "$cache/id_ed25519")
user=admin inventory=(-i inventories/local -i "$cache/host.yml")
ssh "${ssh_opts[@]}" "admin@$address" true 2>/dev/null || { user=root; inventory+=(-i "$cache/root.yml"); }
echo "[local] converging $host ($address) over SSH as $user"
ansible-playbook "${inventory[@]}" playbooks/site.yml "$@"
pin_host_key
# A backup of the shop now, and its proof: the test restores the timers run daily (a plain
# run only: options such as --check go to site.yml alone).
if [ $# = 0 ]; then
  echo "[local] backing up the shop (playbooks/backup.yml), then its test restores"
  quiet backup ansible-playbook -i inventories/local -i "$cache/host.yml" playbooks/backup.yml -e backup_stack=shop
  docker exec "$host" systemctl start composeops-backup-verify-shop-db composeops-backup-verify-shop-redis
  docker exec "$host" sh -c 'grep -h "^composeops_backup_verify_last_status" /var/lib/prometheus/node-exporter/composeops_backup_verify_*.prom'
  # Every service's state and health, every site's URL and health answer, the monitoring UIs.
  quiet status ansible-playbook -i inventories/local -i "$cache/host.yml" playbooks/status.yml
  sed -n '/"msg": \[/,/\]/p' build/local-status.log
fi
api_v2=$(sed -n 's/^ *api_v2: *//p' "${COMPOSEOPS_FIXTURES_STATE:-$HOME/.cache/composeops/fixtures}/fixtures.yml")
run="ANSIBLE_COLLECTIONS_PATH=build/collections .venv/bin/ansible-playbook -i inventories/local"
cat <<MSG
[local] done in $(($(date +%s) - started)) s. Try:
  ssh -o UserKnownHostsFile=$cache/known_hosts -i $cache/id_ed25519 admin@$address
  docker exec $host curl -sk https://shop.localhost/          # the frontend, through nginx (reverse_proxy)
  docker exec $host curl -sk https://shop.localhost/api/health   # the API: Postgres via PgBouncer, Redis
  # the UIs above are on the host's loopback: ssh -L 9090:127.0.0.1:9090 … admin@$address
  docker exec $host curl -s http://127.0.0.1:9090/api/v1/alerts
  # roll out API 2.0 without downtime (health-gated, replica by replica), then back:
  $run playbooks/rollout.yml -e rollout_stack=shop -e '{"rollout_images": {"api": "${api_v2}"}}'
  docker exec $host curl -sk https://shop.localhost/api/version
  $run playbooks/rollback.yml -e rollback_stack=shop
  # the backups (roles/backup): list the database's snapshots, then restore the latest one
  $run playbooks/restore.yml -e restore_source=shop-db -e restore_list=true
  $run playbooks/restore.yml -e restore_source=shop-db -e restore_confirm=yes
  # what runs and whether it is healthy, again
  $run playbooks/status.yml
MSG
