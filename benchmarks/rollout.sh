#!/usr/bin/env bash
# Benchmark of health-gated rollouts (composeops.platform.compose_rollout through playbooks/rollout.yml)
# against a naive `docker compose up -d`, through nginx on one Debian 13 test host (bench-rollout),
# with the scenarios' demo stack at 3 app replicas (benchmarks/rollout/: inventory, playbooks,
# load script). hey runs ON the test host against https://<site>/ (its name resolves to 127.0.0.1
# there; the load never leaves the host): 8 keep-alive workers at most 25 requests/s each, every
# request's status and timing (-o csv), and 3 slots of /slow?seconds=15 requests in flight the
# whole time. Cases, each with its own load window (5 s before the change, the change, a few s after):
#
#   steady     no change (20 s): the p50/p99 baseline
#   naive      `docker compose up -d` of the stack with app 2.0 (the project's own files plus an
#              override file); failed requests, longest gap between successful responses (gap_s).
#              The stack is then put back to app 1.0 with the collection (benchmarks/rollout/stack.yml).
#   noop       playbooks/rollout.yml with nothing to change (the stack runs the inventory's images):
#              what running the controller and the role costs the service on this machine
#   rollout    playbooks/rollout.yml to app 3.0: failed requests (target 0), p50/p99 of the answers
#              (200) to requests started during the playbook against steady (p99_ratio, target
#              <= 2), slow requests completed, duration_s
#              (the module's own seconds for the app service; playbook_s: the whole playbook)
#   bad_image  playbooks/rollout.yml to app:broken (never healthy: the playbook fails, as expected):
#              failed requests (target 0), rollback_s: from the progress line of the failed gate to
#              the one of the removal of the new replicas (/var/log/composeops/rollout-demo.log;
#              whole seconds), and which version serves afterwards
#
# The controller (ansible-playbook, ssh) runs at nice 19: on a real deployment it is another
# machine, here it shares the 2 cores with the server; the work of the rollout on the server (the
# module, docker, the new replicas, nginx) runs at normal priority and is what the figures measure.
#
# A failed request is any answer but 200 (a 429 too). hey's CSV has no row for a request without
# an answer: its timeout (90 s) is above nginx's (60 s), so nginx answers all of them; nginx's
# access log lines of each window are counted beside (nginx_requests, nginx_failed).
#
#   benchmarks/rollout.sh    prints the figures side by side, writes benchmarks/results/rollout.json;
#                            asserts nothing. Needs the test host image and the fixture registry
#                            (`make test` or `make local` builds them). ~10-15 min. The test host is
#                            removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
. benchmarks/lib.sh
bench_host bench-rollout
inventory=benchmarks/rollout/hosts.yml
started=$(date +%s)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
containers_start=$(docker ps -q | wc -l)

# inv EXPR: a value of the benchmark's inventory (templated as a play would).
inv() {
  ANSIBLE_LOAD_CALLBACK_PLUGINS=true ANSIBLE_STDOUT_CALLBACK=ansible.posix.json \
    ansible -i "$inventory" "$host" -c local -m ansible.builtin.debug -a "msg={{ $1 }}" |
    jq -r '.plays[0].tasks[0].hosts[].msg'
}
on_host() { docker exec "$host" "$@"; }

echo "rollout benchmark of $(git describe --always --dirty) on $(nproc) cores, load average $loadavg_start," \
  "$containers_start other containers running (a shared machine: latencies say less than failures)"
site=$(inv 'reverse_proxy_sites[0].domains[0]')
app_v2=$(inv 'fixtures.images.app_v2')
app_v3=$(inv 'fixtures.images.app_v3')
app_broken=$(inv 'fixtures.images.app_broken')
[ -n "$site" ] && [ -n "$app_v3" ] || { echo "[bench] cannot read the site and images of $inventory" >&2; exit 1; }

echo "[bench] starting $host, Docker, the demo stack (3 app replicas) behind nginx for https://$site/"
quiet start ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml -e "{\"testhost_names\": [\"$host\"]}"
quiet setup ansible-playbook -i "$inventory" benchmarks/rollout/setup.yml
echo "[bench] set up in $(($(date +%s) - started)) s"

# case NAME POST CMD…: a load window around CMD: the load starts, 5 s later CMD runs (its output in
# $work/NAME.log), POST s after it ends the load stops; the window's files land in $work/NAME/ with
# change ("start end exit-code" of CMD, epoch seconds).
run_case() {
  local name=$1 post=$2 t0 t1 rc=0
  shift 2
  on_host systemd-run --quiet --unit="bench-load-$name" --collect \
    /usr/local/bin/bench-rollout-load run "$site" 600 "/root/bench/$name"
  for _ in $(seq 1 100); do on_host test -e "/root/bench/$name/start" && break; sleep 0.1; done
  sleep 5
  t0=$(date +%s.%N)
  "$@" >"$work/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  sleep "$post"
  on_host /usr/local/bin/bench-rollout-load stop "/root/bench/$name"
  docker cp "$host:/root/bench/$name" "$work/$name"
  echo "$t0 $t1 $rc" >"$work/$name/change"
  # Which versions serve now (12 requests: each replica several times).
  for _ in $(seq 1 12); do on_host curl -sk --max-time 10 "https://$site/version" || echo "none"; done |
    sort | uniq -c | awk '{printf "%s%s×%s", (NR > 1 ? " " : ""), $2, $1}' >"$work/$name/versions"
  printf '  %-10s change %5.1f s (exit code %s), serving afterwards: %s\n' "$name" \
    "$(echo "$t1 - $t0" | bc)" "$rc" "$(cat "$work/$name/versions")"
}

# The naive update: the project's own compose files and env files (from the labels compose puts
# on its containers) plus an override file with the new image, `docker compose up -d`.
naive_update() {
  local files=() envs=() f
  naive_cid=$(on_host docker ps -q --filter label=com.docker.compose.project=demo --filter label=com.docker.compose.service=app | head -n 1)
  for f in $(project_label config_files | tr , ' '); do files+=(-f "$f"); done
  for f in $(project_label environment_file | tr , ' '); do envs+=(--env-file "$f"); done
  printf 'services:\n  app:\n    image: %s\n' "$app_v2" | docker exec -i "$host" sh -c 'cat >/root/bench/naive.override.yaml'
  echo "docker compose -p demo --project-directory $(project_label working_dir) ${files[*]} -f /root/bench/naive.override.yaml ${envs[*]} up -d"
  on_host docker compose -p demo --project-directory "$(project_label working_dir)" "${files[@]}" \
    -f /root/bench/naive.override.yaml "${envs[@]}" up -d
}
project_label() { on_host docker inspect -f "{{ index .Config.Labels \"com.docker.compose.project.$1\" }}" "$naive_cid"; }

# rollout NAME [IMAGE]: playbooks/rollout.yml of the demo stack (its app to IMAGE, if given), its
# result as JSON in $work/NAME.json.
rollout() {
  local images={}
  [ $# -lt 2 ] || images="{\"app\": \"$2\"}"
  ANSIBLE_STDOUT_CALLBACK=ansible.posix.json nice -n 19 ansible-playbook -i "$inventory" playbooks/rollout.yml \
    -e rollout_stack=demo -e "{\"rollout_images\": $images}" >"$work/$1.json"
}

run_case steady 5 sleep 10
run_case naive 15 naive_update
restore_start=$(date +%s)
quiet restore ansible-playbook -i "$inventory" benchmarks/rollout/stack.yml
echo "  restore    the stack put back with the collection in $(($(date +%s) - restore_start)) s, serving $(on_host curl -sk "https://$site/version")"
run_case noop 5 rollout noop
run_case rollout 5 rollout rollout "$app_v3"
run_case bad_image 5 rollout bad_image "$app_broken"
on_host cat /var/log/composeops/rollout-demo.log >"$work/progress.log" 2>/dev/null || true
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
run_s=$(($(date +%s) - started))

# The figures, from the files of the windows. hey's CSV: response-time,DNS+dialup,DNS,
# Request-write,Response-delay,Response-read,status-code,offset (seconds; offset: the request's
# start after hey's start).
mkdir -p benchmarks/results
python3 - "$work" benchmarks/results/rollout.json "$loadavg_start" "$loadavg_end" "$containers_start" "$run_s" <<'PY'
import json, os, re, sys

sys.path.insert(0, "benchmarks")
from lib import add_ratios, load_window, machine, print_table, stamp, write_json  # noqa: E402

work, dest, loadavg_start, loadavg_end, containers_start, run_s = sys.argv[1:7]


def window(name):
    rows, slow, figures = load_window(os.path.join(work, name))
    return dict(
        figures,
        requests=len(rows),
        failed=sum(1 for r in rows if r[2] != 200),
        slow_completed=sum(1 for s in slow if len(s) > 1 and s[1] == "200"),
        # The window's last answer was a success: the service was back when the window ended.
        recovered=bool(rows) and max(rows, key=lambda r: r[1])[2] == 200,
    )


def module_result(name):
    """The compose_rollout task's result and the playbook's seconds, from the json callback."""
    try:
        data = json.load(open(os.path.join(work, name + ".json")))
    except ValueError:
        return {}
    for play in data.get("plays", []):
        for task in play.get("tasks", []):
            for result in task.get("hosts", {}).values():
                if result.get("action") == "composeops.platform.compose_rollout":
                    return result
    return {}


cases = {n: window(n) for n in ("steady", "naive", "noop", "rollout", "bad_image")}
steady, naive, rollout, bad = cases["steady"], cases["naive"], cases["rollout"], cases["bad_image"]
for case in (cases["noop"], rollout, bad):
    add_ratios(case, steady)
result = module_result("rollout")
rollout["duration_s"] = (result.get("actions", {}).get("app", {}) or {}).get("seconds")
rollout["playbook_s"] = rollout["change_s"]
rollout["module_failed"] = bool(result.get("failed"))
bad_result = module_result("bad_image")
bad["rolled_back"] = bad_result.get("rolled_back")
bad["module_msg"] = (bad_result.get("msg") or "")[:300]


lines = [l for l in open(os.path.join(work, "progress.log")) if re.match(r"\d{4}-\d\d-\d\dT", l)]
lines = [l for l in lines if int(bad["t0"]) <= stamp(l) <= bad["t1"] + 1]
failed_gate = next((l for l in lines if re.search(r": gate of \S+: .*\(failed,", l)), None)
removed = next((l for l in lines if "new replicas removed" in l), None)
bad["rollback_s"] = stamp(removed) - stamp(failed_gate) if failed_gate and removed else None
bad["progress"] = [l.strip() for l in (failed_gate, removed) if l]

for case in cases.values():
    del case["t0"], case["t1"]
out = {
    "commit": os.popen("git rev-parse --short HEAD").read().strip(),
    "cores": os.cpu_count(),
    "machine": machine(loadavg_start, loadavg_end, containers_start),
    "load": {"tool": "hey", "workers": 8, "max_rps_per_worker": 25, "keepalive": True,
             "slow_slots": 3, "slow_seconds": 15, "site_rate_limit": "1000r/s burst 2000"},
    "run_s": int(run_s),
}
out.update(cases)
write_json(dest, out)

rows = [
    ("requests", "requests"), ("failed", "failed"), ("statuses", "statuses"), ("req/s", "rps"),
    ("window s", "window_s"), ("change s", "change_s"), ("longest gap s", "gap_s"),
    ("p50 ms (200, change)", "p50_ms"), ("p99 ms (200, change)", "p99_ms"), ("p99 ratio", "p99_ratio"),
    ("slow completed", "slow_completed"), ("slow total", "slow_total"),
    ("nginx requests", "nginx_requests"), ("nginx failed", "nginx_failed"),
    ("rollout s (module)", "duration_s"), ("rollback s", "rollback_s"), ("serving after", "serving_after"),
]
names = ("steady", "naive", "noop", "rollout", "bad_image")

print_table(cases, names, rows)
print("load average %s -> %s on %s cores (shared machine); run %s s" % (loadavg_start, loadavg_end, os.cpu_count(), run_s))
print("wrote %s" % dest)
PY
