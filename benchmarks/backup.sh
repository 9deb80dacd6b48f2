#!/usr/bin/env bash
# Benchmark of the backup role's Postgres pipeline (composeops.platform.backup: pg_dumpall in the
# container streamed uncompressed into restic) against the common one-liner
# `pg_dump | gzip > file`, in the same run on one Debian 13 test host (bench-backup) with the
# scenarios' demo stack (benchmarks/backup/: inventory, setup playbook). The database is filled
# with `pgbench -i` at scale BENCH_SCALE (default 68: about 1 GB). Cases, one after the other:
#
#   oneliner   pg_dump -U app app | gzip > /root/oneliner.sql.gz, inside the host: backup_s, size_mb
#   ours       composeops-backup backup demo-db (dump, restic, counts, forget --prune): backup_s,
#              repo_mb (du of the repository)
#              (dump_s: restic's own time for the dump into the snapshot, without the row
#              counts, the copy and forget --prune of the run)
#   second     1% of pgbench_accounts rows updated, spread over the table (aid % 100 = 0), then the
#              same backup again: second_growth_pct (repository growth against repo_mb)
#   clustered  1% more, in one range of aid, then a third backup: clustered_growth_pct (growth
#              against the repository after the second)
#   restore    composeops-backup restore demo-db (drop, load, row counts checked): restore_s, the
#              time to a working database (RTO)
#
# Targets (issue 11): ours no slower than the one-liner, second backup adds <= 10 %, restore
# <= 2 min. Prints the figures and writes benchmarks/results/backup.json; asserts nothing.
# Needs the test host image and the fixture registry (`make test` or `make local` builds them).
# ~10 min. The test host is removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/lib.sh
. benchmarks/lib.sh
bench_host bench-backup
inventory=benchmarks/backup/hosts.yml
scale=${BENCH_SCALE:-68}
started=$(date +%s)

on_host() { docker exec "$host" bash -c "set -euo pipefail; cd /opt/stacks/demo; $1"; }
mb() { on_host "du -sb $1 | cut -f1"; }

echo "backup benchmark of $(git describe --always --dirty) on $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "[bench] starting $host, Docker, the demo stack and the backup role"
quiet start ansible-playbook -i localhost, tests/harness/playbooks/start_testhosts.yml -e "{\"testhost_names\": [\"$host\"]}"
quiet setup ansible-playbook -i "$inventory" benchmarks/backup/setup.yml
echo "[bench] set up in $(($(date +%s) - started)) s; pgbench -i -s $scale"
quiet fill on_host "docker compose exec -T db pgbench -i -q -s $scale -U app app"
db_bytes=$(on_host "docker compose exec -T db psql -X -A -t -U app -d app -c \"SELECT pg_database_size('app')\"")

echo "[bench] the one-liner: pg_dump | gzip"
seconds oneliner on_host "docker compose exec -T db pg_dump -U app app | gzip > /root/oneliner.sql.gz"
oneliner_bytes=$(mb /root/oneliner.sql.gz)

echo "[bench] ours: composeops-backup backup demo-db"
seconds ours on_host "composeops-backup backup demo-db"
repo_bytes=$(mb /var/backups/composeops/restic)

echo "[bench] 1% of the rows changed, a second backup"
quiet change on_host "docker compose exec -T db psql -X -q -U app -d app -c 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 0'"
seconds second on_host "composeops-backup backup demo-db"
repo2_bytes=$(mb /var/backups/composeops/restic)

echo "[bench] 1% of the rows changed in one range, a third backup"
quiet change2 on_host "docker compose exec -T db psql -X -q -U app -d app -c 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $scale * 1000'"
seconds third on_host "composeops-backup backup demo-db"
repo3_bytes=$(mb /var/backups/composeops/restic)

echo "[bench] restore of the latest snapshot into the live database"
seconds restore on_host "composeops-backup restore demo-db --snapshot latest"

mkdir -p benchmarks/results
python3 - "$work" benchmarks/results/backup.json "$db_bytes" "$oneliner_bytes" "$repo_bytes" "$repo2_bytes" "$scale" "$repo3_bytes" <<'PY'
import datetime, json, os, sys

work, dest, db, oneliner, repo, repo2, scale, repo3 = sys.argv[1:9]
mb = lambda b: round(int(b) / 1048576, 1)
s = lambda name: float(open(os.path.join(work, name + ".s")).read())
out = {
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    "cores": os.cpu_count(),
    "pgbench_scale": int(scale),
    "db_mb": mb(db),
    "oneliner": {"backup_s": s("oneliner"), "size_mb": mb(oneliner)},
    "ours": {"backup_s": s("ours"), "dump_s": json.loads(open(os.path.join(work, "ours.log")).read().splitlines()[-1])["dump_seconds"],
             "repo_mb": mb(repo), "second_backup_s": s("second"),
             "second_growth_pct": round((int(repo2) - int(repo)) * 100.0 / int(repo), 1),
             "clustered_growth_pct": round((int(repo3) - int(repo2)) * 100.0 / int(repo2), 1),
             "restore_s": s("restore")},
}
with open(dest, "w") as handle:
    json.dump(out, handle, indent=2)
    handle.write("\n")
print(json.dumps(out, indent=2))
PY
echo "[bench] done in $(($(date +%s) - started)) s; figures in benchmarks/results/backup.json"
