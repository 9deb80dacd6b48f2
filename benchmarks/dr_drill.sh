#!/usr/bin/env bash
# Benchmark of playbooks/dr_drill.yml (issue 14: RTO <= 10 min for 1 GB): shape 1 as `make local`
# runs it (frontend, API x2, PgBouncer, Postgres, Redis) on one test host (bench-dr-lost) with its
# database filled by `pgbench -i` at scale BENCH_SCALE (default 68: about 1 GB), backed up by
# playbooks/backup.yml into its local repository and off-site over sftp (bench-dr-target), the
# password escrowed on the controller; then the drill rebuilds the stack on a bare test host
# (bench-dr-new: no Docker yet) from the off-site repository alone (benchmarks/dr_drill/:
# inventory, setup playbook).
#
#   backup_s   playbooks/backup.yml: every source dumped, copied off-site (controller included)
#   drill_s    playbooks/dr_drill.yml from start to end (controller included)
#   rto_s      the drill's own figure: from its first change to every service healthy (Docker
#              installed, secrets, stack deployed, every source restored and checked)
#   rpo_s      the drill's other figure: age of the oldest restored snapshot when it started
#   same_data  pgbench_accounts' row count and balance sum equal on both hosts
#
# Prints the figures and writes benchmarks/results/dr_drill.json; asserts nothing. Needs the test
# host image and the fixture registry (`make test` or `make local` builds them). ~15 min. The test
# hosts are removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
. benchmarks/lib.sh
bench_host bench-dr-lost bench-dr-target bench-dr-new
inventory=benchmarks/dr_drill/hosts.yml
scale=${BENCH_SCALE:-68}
started=$(date +%s)

on() { docker exec "$1" bash -c "set -euo pipefail; cd /opt/stacks/shop; $2"; }
accounts="docker compose exec -T db psql -X -A -t -U shop -d shop -c 'SELECT count(*), sum(abalance) FROM pgbench_accounts'"

echo "DR drill benchmark of $(git describe --always --dirty) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "[bench] starting ${hosts[*]}; Docker, shape 1 and its backups on $host"
quiet start ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml \
  -e "{\"testhost_names\": [\"${hosts[0]}\", \"${hosts[1]}\", \"${hosts[2]}\"]}"
quiet setup ansible-playbook -i "$inventory" benchmarks/dr_drill/setup.yml
echo "[bench] set up in $(($(date +%s) - started)) s; pgbench -i -s $scale"
quiet fill on "$host" "docker compose exec -T db pgbench -i -q -s $scale -U shop shop"
db_bytes=$(on "$host" "docker compose exec -T db psql -X -A -t -U shop -d shop -c \"SELECT pg_database_size('shop')\"")

echo "[bench] playbooks/backup.yml (local and off-site), the password escrowed"
seconds backup ansible-playbook -i "$inventory" playbooks/backup.yml -e "backup_escrow_dir=$work/escrow"

echo "[bench] playbooks/dr_drill.yml onto the bare ${hosts[2]}"
seconds drill ansible-playbook -i "$inventory" playbooks/dr_drill.yml -e "dr_drill_from=$host" \
  -e "dr_drill_password_file=$work/escrow/$host-restic-password"
same=$([ "$(on "$host" "$accounts")" = "$(on "${hosts[2]}" "$accounts")" ] && echo true || echo false)

mkdir -p benchmarks/results
python3 - "$work" benchmarks/results/dr_drill.json "$db_bytes" "$scale" "$same" <<'PY'
import datetime, json, os, re, sys

work, dest, db, scale, same = sys.argv[1:6]
s = lambda name: float(open(os.path.join(work, name + ".s")).read())
figures = re.search(r"RTO (\d+) s .*RPO (\d+) s", open(os.path.join(work, "drill.log")).read())
out = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "cores": os.cpu_count(),
    "pgbench_scale": int(scale),
    "db_mb": round(int(db) / 1048576, 1),
    "backup_s": s("backup"),
    "drill_s": s("drill"),
    "rto_s": int(figures.group(1)),
    "rpo_s": int(figures.group(2)),
    "same_data": same == "true",
}
with open(dest, "w") as handle:
    json.dump(out, handle, indent=2)
    handle.write("\n")
print(json.dumps(out, indent=2))
PY
echo "[bench] done in $(($(date +%s) - started)) s; figures in benchmarks/results/dr_drill.json"
