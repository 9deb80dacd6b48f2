#!/usr/bin/env bash
# Benchmark of a whole-host converge (playbooks/site.yml) over real SSH, with the inventory of
# `make local` (inventories/local: hardening, Docker, the shape-1 stack, nginx, backups, monitoring)
# on Debian 13 test hosts:
#
#   fresh_s            first converge of a fresh host (as root, who then loses SSH login), with
#                      the shipped ansible.cfg
#   rerun_shipped_s    a no-change re-run as the admin with the shipped ansible.cfg (Mitogen,
#                      pipelining, ControlPersist, fact cache), as a user running from a checkout
#                      gets it
#   rerun_plain_ssh_s  the same re-run over Ansible's own SSH connection: Mitogen switched off
#                      (ANSIBLE_STRATEGY=linear, the documented switch), the rest of the shipped
#                      ansible.cfg kept (pipelining, ControlPersist), as issue 14 measured its
#                      baseline; results before Mitogen became the default meant rerun_no_config_s
#   rerun_no_config_s  the same re-run with Ansible's defaults and nothing else: no ansible.cfg, no
#                      pipelining (also not the inventory's ansible_pipelining), no ControlPersist
#   hosts5_rerun_s     a no-change re-run of 5 converged hosts at once (shipped, forks 5); the
#                      other 4 hosts are converged before it at once (fresh4_s, untimed budget)
#   tasks              tasks of the re-run on one host (ok + skipped + failed of its recap)
#   tasks_by_role      the same re-run's task headers by role (includes of no role: "-")
#
#   benchmarks/converge.sh [REPO]   REPO: the checkout whose site.yml runs (default: this one;
#                                   another one, e.g. a `git worktree` of an older commit, gives
#                                   before/after figures from the same harness)
#   BENCH_HOSTS5=0                  skip the 5-host part (4 fresh converges and the re-run)
#
# Prints the figures next to those of the last committed run (benchmarks/results/converge.json at
# HEAD: "before") and writes benchmarks/results/converge.json; asserts nothing. Needs the test host
# image and the fixture registry (`make test` or `make local` builds them). ~15 min.
set -euo pipefail
cd "$(dirname "$0")/.."
here=$(pwd)
repo=$(realpath "${1:-$here}")
# shellcheck source=tests/lib.sh
. tests/lib.sh
setup_venv
tests/harness/testhost.sh engine >/dev/null
tests/harness/testhost.sh images debian13 >/dev/null
tests/harness/fixtures.sh up >/dev/null

work=$here/build/bench-converge
rm -rf "$work" && mkdir -p "$work/collections/ansible_collections/composeops"
ln -s "$repo" "$work/collections/ansible_collections/composeops/platform"
export ANSIBLE_COLLECTIONS_PATH=$work/collections ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORCE_COLOR=0
# The admin key of inventories/local: its group_vars read inventory_dir/../../.cache/local, and the
# hosts of this benchmark come from build/bench-converge/hosts.yml, so that is this checkout's key.
key=$here/.cache/local/id_ed25519
[ -f "$key" ] || { mkdir -p "$(dirname "$key")" && ssh-keygen -q -t ed25519 -N '' -C composeops-bench -f "$key"; }
all_hosts=(bench-converge-1 bench-converge-2 bench-converge-3 bench-converge-4 bench-converge-5)
hosts=("${all_hosts[@]}")
[ "${BENCH_HOSTS5:-1}" != 0 ] || hosts=(bench-converge-1)
cleanup() { docker rm -f -v "${all_hosts[@]}" >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup

# Start the hosts (root may log in with the key until the hardening turns that off) and give them
# the test scaffolding a container host needs (nested dockerd drop-in, the fixture registry's CA).
ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml \
  -e "{\"testhost_names\": $(printf '%s\n' "${hosts[@]}" | jq -R . | jq -sc .), \"testhost_ssh_public_key_file\": \"$key.pub\"}" \
  >"$work/start.log"
{
  echo "composeops:"
  echo "  hosts:"
  for h in "${hosts[@]}"; do
    ip=$(docker inspect -f '{{ (index .NetworkSettings.Networks "composeops-test").IPAddress }}' "$h")
    echo "    $h: {ansible_host: $ip}"
  done
  echo "  vars:"
  # ansible_user: from user-USER.yml (below); not -e ansible_user/ansible_become: extra vars beat
  # the hardening role's own fresh-login check as the admin and its become-less look at
  # SSH_CONNECTION (sudo drops it).
  echo "    ansible_become: true"
  echo "    ansible_python_interpreter: /usr/bin/python3"
  echo "    ansible_ssh_private_key_file: $key"
  echo "    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
  # Every role of site.yml on every host, as the make local host has them (inventories/local):
  # nginx in front of the stack, its backups and a monitoring server. (Results before 2026-12-07
  # had the hosts in composeops alone: common, hardening, docker, the stack, monitoring agents.)
  for group in web backup monitoring; do echo "$group: {children: {composeops: {}}}"; done
} >"$work/hosts.yml"
# The login user of a run: root for the fresh converges (no admin yet), then the admin; a static
# inventory source after hosts.yml, as local.sh does (a lookup would be templated at every task).
for user in root admin; do printf 'composeops:\n  vars: {ansible_user: %s}\n' "$user" >"$work/user-$user.yml"; done
ansible-playbook -i "$work/hosts.yml" -e ansible_connection=community.docker.docker -e 'ansible_docker_host={{ inventory_hostname }}' \
  tests/harness/playbooks/prepare_dind.yml tests/harness/playbooks/trust_fixture_registry.yml >"$work/prepare.log"

# run NAME LIMIT USER [ENV=VALUE…] [-- ARG…]: time one site.yml run with ENV and ansible-playbook
# ARGs, remember its seconds and the task count of the first host of LIMIT.
declare -A secs tasks
run() {
  local name=$1 limit=$2 user=$3 start rc=0 envs=() args=()
  shift 3
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# = 0 ] || { shift; args=("$@"); }
  start=$(date +%s.%N)
  env "${envs[@]}" ansible-playbook -i "$repo/inventories/local" -i "$work/hosts.yml" -i "$work/user-$user.yml" \
    --limit "$limit" -f 5 "${args[@]}" "$repo/playbooks/site.yml" >"$work/$name.log" 2>&1 || rc=$?
  secs[$name]=$(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f')
  # The host's recap line: "ok=N changed=N unreachable=N failed=N skipped=N ...".
  local recap changed
  recap=$(awk -v h="${limit%%,*}" '$1 == h && /ok=/ {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); n[kv[1]] = kv[2] }
      print n["ok"] + n["skipped"] + n["failed"], n["changed"]; exit }' "$work/$name.log")
  read -r tasks["$name"] changed <<<"$recap"
  printf '  %-18s %7ss  tasks %-4s changed %s%s\n' "$name" "${secs[$name]}" "${tasks[$name]}" "$changed" \
    "$([ $rc = 0 ] || echo "  FAILED (rc $rc, see $work/$name.log)")"
  return $rc
}
# shipped: the checkout's ansible.cfg (without one, an older REPO: Ansible's defaults with
# pipelining, as before the file existed), its fact cache in a directory of this run (the hosts are
# new ones under the names of the last run's). no_config: no configuration file, no pipelining
# (the inventory's ansible_pipelining beats the environment: an extra var beats both), one SSH
# connection per task. (The plain-SSH re-run is the shipped one with Mitogen switched off.)
: >"$work/empty.cfg"
shipped_cfg=$repo/ansible.cfg
[ -f "$shipped_cfg" ] || { shipped_cfg=$work/empty.cfg; echo "(no ansible.cfg in $repo: Ansible's defaults, pipelining on)"; }
shipped=("ANSIBLE_CONFIG=$shipped_cfg" ANSIBLE_CACHE_PLUGIN_CONNECTION="$work/facts" ANSIBLE_PIPELINING=True)
# tests/lib.sh turns the fact cache off for the harness; the shipped runs use the file's setting.
unset ANSIBLE_CACHE_PLUGIN
no_config=("ANSIBLE_CONFIG=$work/empty.cfg" ANSIBLE_PIPELINING=False "ANSIBLE_SSH_ARGS=-o ControlMaster=no -o ControlPath=none"
  -- -e ansible_pipelining=false)

echo "converge benchmark of $(git -C "$repo" describe --always --dirty) on $(nproc) cores"
run fresh bench-converge-1 root "${shipped[@]}"
run rerun_shipped bench-converge-1 admin "${shipped[@]}"
run rerun_plain_ssh bench-converge-1 admin "${shipped[@]}" ANSIBLE_STRATEGY=linear
run rerun_no_config bench-converge-1 admin "${no_config[@]}"
secs[hosts5_rerun]=null secs[fresh4]=null
if [ "${BENCH_HOSTS5:-1}" != 0 ]; then
  run fresh4 "$(IFS=,; echo "${hosts[*]:1}")" root "${shipped[@]}"
  run hosts5_rerun "$(IFS=,; echo "${hosts[*]}")" admin "${shipped[@]}"
fi

# Task headers of the one-host re-run by role ("TASK [composeops.platform.docker : ...]"; an
# include written in the playbook has no role): {"common": N, ...}.
by_role=$(sed -n 's/^TASK \[\(composeops\.platform\.\([a-z_]*\) : \)\{0,1\}.*/\2/p' "$work/rerun_shipped.log" |
  sed 's/^$/-/' | sort | uniq -c | jq -Rn '[inputs | capture("^ *(?<n>[0-9]+) (?<role>.+)$")] | map({(.role): (.n | tonumber)}) | add')
echo "  tasks by role (rerun_shipped): $(jq -c . <<<"$by_role")"

# The figures of the last committed run next to these.
before=$(git -C "$here" show HEAD:benchmarks/results/converge.json 2>/dev/null || echo '{}')
mkdir -p benchmarks/results
cat >benchmarks/results/converge.json <<JSON
{
  "commit": "$(git -C "$repo" rev-parse --short HEAD)",
  "cores": $(nproc),
  "tasks": ${tasks[rerun_shipped]},
  "fresh_s": ${secs[fresh]},
  "rerun_shipped_s": ${secs[rerun_shipped]},
  "rerun_plain_ssh_s": ${secs[rerun_plain_ssh]},
  "rerun_no_config_s": ${secs[rerun_no_config]},
  "hosts5_rerun_s": ${secs[hosts5_rerun]},
  "fresh4_s": ${secs[fresh4]},
  "fresh_tasks": ${tasks[fresh]},
  "tasks_by_role": $by_role
}
JSON
echo "before (benchmarks/results/converge.json of $(jq -r '.commit // "-"' <<<"$before")) and now:"
printf '  %-18s %8s  %8s\n' figure before now
jq -rn --argjson b "$before" --slurpfile a benchmarks/results/converge.json '
  ["tasks", "fresh_tasks", "fresh_s", "rerun_shipped_s", "rerun_plain_ssh_s", "rerun_no_config_s", "hosts5_rerun_s"][] as $k
  | "  \($k | . + " " * (18 - length)) \($b[$k] // "-" | tostring | " " * (8 - length) + .)  \($a[0][$k] // "-" | tostring | " " * (8 - length) + .)"'
# Results written before Mitogen became the shipped default name the same runs differently.
if ! jq -e 'has("rerun_no_config_s")' <<<"$before" >/dev/null; then
  echo "  (before: rerun_shipped_s was Ansible's SSH without Mitogen, now rerun_plain_ssh_s; its"
  echo "   rerun_plain_ssh_s had no ansible.cfg at all, now rerun_no_config_s)"
fi
echo "wrote benchmarks/results/converge.json"
