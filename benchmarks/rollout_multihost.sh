#!/usr/bin/env bash
# Benchmark of rolling updates across hosts behind a load balancer (playbooks/rollout.yml,
# rollout_serial 1: each app host drained from the balancer, rolled out health-gated, checked from
# the balancer, put back), in the shape of the rollout_multihost scenario, on Debian 13 test hosts
# over real SSH: bench-mh-lb, the balancer (nginx, the app hosts as one upstream) and the database
# host (Postgres, Redis), in front of the app hosts bench-mh-app1..N, each running the shop app at 2
# replicas behind its own nginx (benchmarks/rollout_multihost/: inventory, group_vars, setup).
# Two setups, one after the other, each on fresh hosts prepared as the scenario's prepare.yml does:
# 2 app hosts (steady2, hosts2), then 4 (steady, hosts4, second_fails). A setup of its own rather
# than --limit to 2 of 4 app hosts: the balancer's upstream then holds only the hosts rolled out.
# hey runs ON the balancer against https://shop.test/ (the name resolves to 127.0.0.1 there; the
# load never leaves the balancer's loopback): benchmarks/rollout/files/load.sh, 8 keep-alive
# workers at most 25 requests/s each, every request's status and timing (-o csv), and 3 slots of
# /slow?seconds=15 requests in flight the whole time. Cases, each with its own load window (5 s
# before the change, the change, 5 s after):
#
#   steady2, steady  no change (20 s), on the 2 and on the 4 app hosts: the p50/p99 baselines
#   hosts2        app 1.0 -> 2.0 across the 2 app hosts: failed requests (target 0), requests,
#                 duration_s (the whole playbook), p99_ratio: p99 of the answers (200) to requests
#                 started during the playbook against steady2's
#   hosts4        the same across the 4 app hosts (p99_ratio against steady)
#   second_fails  app 2.0 -> 3.0 across the 4 app hosts, the gate of the second one (bench-mh-app2)
#                 failing: an HTTP gate that wants an answer /health never gives
#                 (benchmarks/rollout_multihost/second_fails.yml, a third inventory, as the
#                 scenario's test does). The playbook fails, as expected, once app1 is back on 2.0.
#                 Failed requests (target 0); all_back: every app host runs 2.0 again and every
#                 member of the balancer's upstream is enabled (read from the hosts); recovery_s:
#                 from the progress line of the failed gate (/var/log/composeops/rollout-shop.log
#                 on app2, whole seconds) to the last write of the balancer's upstream file (the
#                 last host put back into rotation); recovery_playbook_s: to the end of the playbook
#
# The controller (ansible-playbook, ssh) runs at nice 19: on a real deployment it is another
# machine, here it shares the 2 cores with the 3 or 5 test hosts; the work of the rollout on the
# hosts (the modules, docker, the new replicas, both nginx) runs at normal priority.
#
# A failed request is any answer but 200 (a 429 too), of hey's or of a slow request (curl's 000:
# no answer at all); `requests` counts both. hey's CSV has no row for a request without an answer:
# its timeout (90 s) is above nginx's (60 s), so the balancer answers all of them; the balancer's
# access log lines of each window are counted beside (nginx_requests, nginx_failed).
#
#   benchmarks/rollout_multihost.sh    prints the figures side by side, writes
#                                      benchmarks/results/rollout_multihost.json; asserts nothing.
#                                      Needs the test host image and the fixture registry (`make
#                                      test` or `make local` builds them). ~20-40 min. The test hosts
#                                      are removed at the end, whatever happened.
#   BENCH_QUICK=1 benchmarks/rollout_multihost.sh
#                                      a smoke run of the script: the 2 app hosts only (steady2,
#                                      hosts2, second_fails with app2 failing and app1 rolled back),
#                                      windows of 3 s before and after, 8 s of steady; its figures go
#                                      to build/bench-mh/rollout_multihost.json, never to results/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
. benchmarks/lib.sh
quick=${BENCH_QUICK:-0}
work=$(pwd)/build/bench-mh
dir=benchmarks/rollout_multihost
all_hosts=(bench-mh-lb bench-mh-app1 bench-mh-app2 bench-mh-app3 bench-mh-app4)
lb=bench-mh-lb
site=shop.test
export ANSIBLE_HOST_KEY_CHECKING=False ANSIBLE_FORCE_COLOR=0

# The SSH masters of this run (ControlPersist) end before their hosts go.
remove_hosts() {
  local s
  for s in "$work"/cp*/*; do
    if [ -S "$s" ]; then ssh -o ControlPath="$s" -O exit bench-mh >/dev/null 2>&1 || true; fi
  done
  docker rm -f -v "${all_hosts[@]}" >/dev/null 2>&1 || true
}
trap remove_hosts EXIT
remove_hosts
rm -rf "$work" && mkdir -p "$work"
started=$(date +%s)
loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
containers_start=$(docker ps -q | wc -l)
if [ "$quick" = 1 ]; then pre=3 post=3 steady_s=8; else pre=5 post=5 steady_s=20; fi

# inv EXPR: a value of the benchmark's inventory (templated as a play would).
inv() {
  ANSIBLE_LOAD_CALLBACK_PLUGINS=true ANSIBLE_STDOUT_CALLBACK=ansible.posix.json \
    ansible -i "$dir/hosts.yml" "$lb" -c local -m ansible.builtin.debug -a "msg={{ $1 }}" |
    jq -r '.plays[0].tasks[0].hosts[].msg'
}
on_lb() { docker exec "$lb" "$@"; }

echo "rollout_multihost benchmark of $(git describe --always --dirty) on $(nproc) cores, load average" \
  "$loadavg_start, $containers_start other containers running (a shared machine: latencies say less than failures)$(
    [ "$quick" = 1 ] && echo '; QUICK: 2 app hosts, short windows, no results file')"
app_v2=$(inv 'fixtures.images.app_v2')
app_v3=$(inv 'fixtures.images.app_v3')
[ -n "$app_v2" ] && [ -n "$app_v3" ] || { echo "[bench] cannot read the images of $dir/hosts.yml" >&2; exit 1; }
ssh-keygen -q -t ed25519 -N '' -C bench-mh -f "$work/id_ed25519"

# setup N: fresh test hosts, the balancer and N app hosts, started as molecule's create step does
# (root may log in with this run's key), listed in $work/hostsN.yml, prepared (setup.yml);
# $inventory: the -i options of their runs, $apps: the app hosts.
setup() {
  local n=$1 t0 h
  t0=$(date +%s)
  remove_hosts
  apps=()
  for h in $(seq 1 "$n"); do apps+=("bench-mh-app$h"); done
  # A control socket directory per setup: a new host may get the address of a removed one.
  export ANSIBLE_SSH_CONTROL_PATH_DIR=$work/cp$n
  echo "[bench] starting $lb (balancer, database) and ${apps[*]}, preparing them as molecule/rollout_multihost does"
  quiet "start$n" ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml -e "$(
    jq -nc --arg key "$work/id_ed25519.pub" '{testhost_names: $ARGS.positional, testhost_ssh_public_key_file: $key}' \
      --args "$lb" "${apps[@]}")"
  {
    echo "# benchmarks/rollout_multihost.sh: the hosts of the setup with $n app hosts (beside $dir/hosts.yml)."
    echo "lb:"
    echo "  hosts:"
    host_entry "$lb"
    echo "app:"
    echo "  hosts:"
    for h in "${apps[@]}"; do host_entry "$h"; done
  } >"$work/hosts$n.yml"
  inventory=(-i "$dir/hosts.yml" -i "$work/hosts$n.yml")
  quiet "setup$n" ansible-playbook "${inventory[@]}" "$dir/setup.yml"
  echo "[bench] set up in $(($(date +%s) - t0)) s, the balancer serving $(on_lb curl -sk --max-time 10 "https://$site/version")"
}
host_entry() {
  printf '    %s: {ansible_host: %s, ansible_user: root, ansible_ssh_private_key_file: %s}\n' "$1" \
    "$(docker inspect -f '{{ (index .NetworkSettings.Networks "composeops-test").IPAddress }}' "$1")" "$work/id_ed25519"
}

# run_case NAME CMD…: a load window around CMD: the load starts on the balancer, $pre s later CMD
# runs (its output in $work/NAME.log), $post s after it ends the load stops; the window's files land
# in $work/NAME/ with change ("start end exit-code" of CMD, epoch seconds), the app hosts of the
# setup (hosts), what each runs (images: "host image" per app container), their progress logs, the
# balancer's upstream file (upstream.conf) and when it was last written (upstream_mtime).
run_case() {
  local name=$1 t0 t1 rc=0 h
  shift
  on_lb systemd-run --quiet --unit="bench-load-$name" --collect \
    /usr/local/bin/bench-rollout-load run "$site" 900 "/root/bench/$name"
  for _ in $(seq 1 100); do on_lb test -e "/root/bench/$name/start" && break; sleep 0.1; done
  sleep "$pre"
  t0=$(date +%s.%N)
  "$@" >"$work/$name.log" 2>&1 || rc=$?
  t1=$(date +%s.%N)
  sleep "$post"
  on_lb /usr/local/bin/bench-rollout-load stop "/root/bench/$name"
  docker cp "$lb:/root/bench/$name" "$work/$name"
  echo "$t0 $t1 $rc" >"$work/$name/change"
  echo "${apps[*]}" >"$work/$name/hosts"
  for h in "${apps[@]}"; do
    docker exec "$h" docker ps --filter label=com.docker.compose.project=shop \
      --filter label=com.docker.compose.service=app --format "$h {{.Image}}"
    docker exec "$h" cat /var/log/composeops/rollout-shop.log >"$work/$name/progress-$h.log" 2>/dev/null || true
  done >"$work/$name/images"
  docker cp "$lb:/etc/nginx/composeops/upstreams/servers_shop_root.conf" "$work/$name/upstream.conf"
  on_lb python3 -c 'import os, sys; print(os.stat(sys.argv[1]).st_mtime)' \
    /etc/nginx/composeops/upstreams/servers_shop_root.conf >"$work/$name/upstream_mtime"
  # Which versions serve now (12 requests through the balancer: each host several times).
  for _ in $(seq 1 12); do on_lb curl -sk --max-time 10 "https://$site/version" || echo "none"; done |
    sort | uniq -c | awk '{printf "%s%s×%s", (NR > 1 ? " " : ""), $2, $1}' >"$work/$name/versions"
  echo "$name" >>"$work/cases"
  printf '  %-13s change %6.1f s (exit code %s), serving afterwards: %s\n' "$name" \
    "$(echo "$t1 - $t0" | bc)" "$rc" "$(cat "$work/$name/versions")"
}

# rollout IMAGE [-i INVENTORY…]: playbooks/rollout.yml of the shop stack, its app to IMAGE, one app
# host at a time, the controller at nice 19 (each task's time in the log: profile_tasks).
rollout() {
  local image=$1
  shift
  ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks nice -n 19 ansible-playbook "${inventory[@]}" "$@" \
    playbooks/rollout.yml -e rollout_stack=shop -e rollout_serial=1 -e "{\"rollout_images\": {\"app\": \"$image\"}}"
}

setup 2
run_case steady2 sleep "$steady_s"
run_case hosts2 rollout "$app_v2"
if [ "$quick" = 1 ]; then
  run_case second_fails rollout "$app_v3" -i "$dir/second_fails.yml"
else
  setup 4
  run_case steady sleep "$steady_s"
  run_case hosts4 rollout "$app_v2"
  run_case second_fails rollout "$app_v3" -i "$dir/second_fails.yml"
fi
loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)
run_s=$(($(date +%s) - started))

# The figures, from the files of the windows. hey's CSV: response-time,DNS+dialup,DNS,
# Request-write,Response-delay,Response-read,status-code,offset (seconds; offset: the request's
# start after hey's start). Slow requests: "start status seconds".
dest=benchmarks/results/rollout_multihost.json
if [ "$quick" = 1 ]; then dest=$work/rollout_multihost.json; else mkdir -p benchmarks/results; fi
python3 - "$work" "$dest" "$loadavg_start" "$loadavg_end" "$containers_start" "$run_s" "$quick" "$app_v2" <<'PY'
import os, re, sys

sys.path.insert(0, "benchmarks")
from lib import add_ratios, load_window, machine, print_table, read, stamp, write_json  # noqa: E402

work, dest, loadavg_start, loadavg_end, containers_start, run_s, quick, app_v2 = sys.argv[1:9]


def window(name):
    d = os.path.join(work, name)
    rows, slow, figures = load_window(d)
    t0, t1 = figures["t0"], figures["t1"]
    hey_failed = sum(1 for r in rows if r[2] != 200)
    slow_failed = sum(1 for s in slow if len(s) < 2 or s[1] != "200")
    # What the app hosts run and the balancer's members, read from the hosts after the window.
    hosts = read(d, "hosts").split()
    images = {}
    for line in read(d, "images").splitlines():
        host, image = line.split()
        images.setdefault(host, []).append(image)
    upstream = read(d, "upstream.conf")
    members = [(m.group(1), bool(m.group(2))) for m in re.finditer(r"^\s*server (\S+)[^;]*?( down)?;", upstream, re.M)]
    progress = {}
    for host in hosts:
        lines = [l.strip() for l in open(os.path.join(d, "progress-%s.log" % host)) if re.match(r"\d{4}-\d\d-\d\dT", l)]
        progress[host] = [l for l in lines if int(t0) <= stamp(l) <= t1 + 1]
    # The summary of playbooks/rollout.yml (the debug or fail message: "- HOST: outcome; ...").
    log = read(work, name + ".log").replace("\\n", "\n")
    outcomes = dict(re.findall(r"^- (bench-mh-\S+): ([^;\n]+)", log, re.M))
    return dict(
        figures,
        requests=len(rows) + len(slow),
        failed=hey_failed + slow_failed,
        hey_requests=len(rows),
        hey_failed=hey_failed,
        # hey ran until the change had ended (it stops at 900 s).
        load_covered_change=bool(rows) and max(r[0] for r in rows) >= t1,
        slow_completed=len(slow) - slow_failed,
        app_hosts=len(hosts),
        # Every app host runs 2.0 (only), every member of the balancer is in rotation.
        all_v2_in_rotation=(all(images.get(h) and set(images[h]) == {app_v2} for h in hosts)
                            and len(members) == len(hosts) and not any(down for _m, down in members)),
        members_drained=[m for m, down in members if down],
        outcomes=outcomes,
        upstream_mtime=float(read(d, "upstream_mtime")),
        progress=progress,
    )


names = [n.strip() for n in open(os.path.join(work, "cases")) if n.strip()]
cases = {n: window(n) for n in names}
baseline = {"hosts2": "steady2", "hosts4": "steady", "second_fails": "steady2" if quick == "1" else "steady"}
for name, case in cases.items():
    add_ratios(case, cases.get(baseline.get(name, ""), {}))
    if name.startswith("hosts") or name == "second_fails":
        case["duration_s"] = case["change_s"]
        case["baseline"] = baseline[name]
bad = cases["second_fails"]
bad["all_back"] = bad["all_v2_in_rotation"]
gate = [l for lines in bad["progress"].values() for l in lines if "gate failed on" in l]
bad["gate_failed"] = gate[0] if gate else None
bad["recovery_s"] = round(bad["upstream_mtime"] - stamp(gate[0]), 1) if gate else None
bad["recovery_playbook_s"] = round(bad["t1"] - stamp(gate[0]), 1) if gate else None

for case in cases.values():
    for key in ("t0", "t1", "upstream_mtime", "progress", "all_v2_in_rotation"):
        case.pop(key, None)
out = {
    "commit": os.popen("git rev-parse --short HEAD").read().strip(),
    "cores": os.cpu_count(),
    "quick": quick == "1",
    "machine": machine(loadavg_start, loadavg_end, containers_start),
    "setup": {"balancer": "bench-mh-lb (also the database host)", "app_replicas_per_host": 2,
              "hosts2": "its own setup of 2 app hosts", "hosts4": "4 app hosts (steady, hosts4, second_fails)",
              "rollout_serial": 1, "rollout_drain_timeout": 20, "connection": "ssh"},
    "load": {"tool": "hey", "target": "https://shop.test/ on the balancer's loopback", "workers": 8,
             "max_rps_per_worker": 25, "keepalive": True, "slow_slots": 3, "slow_seconds": 15,
             "site_rate_limit": "1000r/s burst 2000"},
    "run_s": int(run_s),
}
out.update(cases)
write_json(dest, out)

rows = [
    ("app hosts", "app_hosts"), ("requests", "requests"), ("failed", "failed"), ("statuses (hey)", "statuses"),
    ("req/s (hey)", "rps"), ("window s", "window_s"), ("change s", "change_s"), ("exit code", "change_exit_code"),
    ("longest gap s", "gap_s"), ("p50 ms (200, change)", "p50_ms"), ("p99 ms (200, change)", "p99_ms"),
    ("p99 ratio", "p99_ratio"), ("slow completed", "slow_completed"), ("slow total", "slow_total"),
    ("nginx requests", "nginx_requests"), ("nginx failed", "nginx_failed"), ("all back", "all_back"),
    ("recovery s", "recovery_s"), ("recovery s (playbook)", "recovery_playbook_s"),
    ("serving after", "serving_after"),
]

print_table(cases, names, rows)
for n in names:
    if cases[n]["outcomes"]:
        print("%s: %s" % (n, "; ".join("%s %s" % kv for kv in sorted(cases[n]["outcomes"].items()))))
    if not cases[n]["load_covered_change"]:
        print("%s: WARNING: the load ended before the change did" % n)
if bad["gate_failed"]:
    print("second_fails: %s" % bad["gate_failed"])
print("load average %s -> %s on %s cores (shared machine); run %s s" % (loadavg_start, loadavg_end, os.cpu_count(), run_s))
print("wrote %s%s" % (dest, " (quick mode: not a result to commit)" if quick == "1" else ""))
PY
