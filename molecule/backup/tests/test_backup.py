"""Backups of the demo stack on its test host, in the order they run: back up (playbooks/backup.yml),
change the data, restore (playbooks/restore.yml) and prove every table equal; the off-site copy on
the second test host; a database killed in the middle of a dump; the pipe path and a full disk;
the test restores and the repository check started from their systemd units. prepare seeded
Postgres (orders, events) and Redis (100 keys). (The DR drill, which reads the off-site copy, has
a scenario of its own on shape 1: molecule/dr_drill.)"""

import datetime
import json
import os
import re
import sys
import time

import pytest
import testinfra

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))
from scenario_lib import playbook, sh  # noqa: E402  pylint: disable=wrong-import-position
import scenario_lib  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = ["backup-debian13"]

RUNNER = "/usr/local/sbin/composeops-backup"
METRICS = "/var/lib/prometheus/node-exporter"
COMPOSE, PSQL, REDIS = scenario_lib.stack_commands("demo", "app", "app")


def checksums(host):
    """md5 of every table of the app database (orders and events among them)."""
    sums = scenario_lib.checksums(host, PSQL)
    assert "orders" in sums and "events" in sums
    return sums


def metric(host, name, source, repository="local", file=None):
    text = host.file("%s/composeops_%s.prom" % (METRICS, file or "backup_" + source)).content_string
    wanted = '%s{repository="%s",source="%s"} ' % (name, repository, source)
    return next(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))


def snapshot_ids(host, source):
    return [s["id"] for s in json.loads(sh(host, "%s snapshots %s" % (RUNNER, source)))]


def uploads(host):
    """md5 of every file of the demo-uploads source."""
    return sh(host, "cd /srv/demo-uploads && find . -type f -print0 | sort -z | xargs -0 md5sum")


def wait_healthy(host, service):
    scenario_lib.wait_healthy(host, COMPOSE, service)


@pytest.fixture(scope="module")
def state():
    return {}


def test_role_files_and_timers(host):
    password = host.file("/var/lib/composeops/backup/restic-password")
    assert password.mode == 0o600 and password.user == "root" and len(password.content_string.strip()) == 48
    config = host.file("/etc/composeops/backup/config.json").content_string
    assert password.content_string.strip() not in config
    for unit in ["composeops-backup-demo-db", "composeops-backup-demo-redis", "composeops-backup-demo-redis-volume",
                 "composeops-backup-demo-uploads",
                 "composeops-backup-verify-demo-db", "composeops-backup-verify-demo-redis", "composeops-backup-check"]:
        assert host.service(unit + ".timer").is_enabled, unit
    timer = host.file("/etc/systemd/system/composeops-backup-demo-redis.timer").content_string
    assert "OnCalendar=*-*-* 00/6:00:00" in timer and "Persistent=true" in timer and "RandomizedDelaySec=" in timer


def test_backup_playbook_backs_up_every_source(host, state, tmp_path):
    # A table in the postgres database itself (tools put theirs there): a full restore brings it
    # back too, instead of failing on "already exists".
    sh(host, COMPOSE + "exec -T db psql -X -q -U app -d postgres -c "
       "'CREATE TABLE IF NOT EXISTS ops_notes (note text); INSERT INTO ops_notes VALUES (1)'")
    state["checksums"] = checksums(host)
    state["keys"] = int(sh(host, REDIS + "DBSIZE"))
    assert state["keys"] >= 100
    state["uploads"] = uploads(host)
    since = int(sh(host, "date +%s"))
    escrow = tmp_path / "escrow"
    result = playbook("backup", backup_stack="demo", backup_escrow_dir=str(escrow))
    assert result.returncode == 0, result.stdout[-3000:]
    # The repository password, copied to the controller for escrow: the host's, 0600, never printed.
    password = host.file("/var/lib/composeops/backup/restic-password").content_string
    copy = escrow / "backup-debian13-restic-password"
    assert copy.read_text() == password and len(password.strip()) == 48
    assert copy.stat().st_mode & 0o777 == 0o600 and escrow.stat().st_mode & 0o777 == 0o700
    assert password.strip() not in result.stdout
    for source in ["demo-db", "demo-redis", "demo-redis-volume", "demo-uploads", "demo-db-app"]:
        assert len(snapshot_ids(host, source)) == 1, source
        for repository in ["local", "s3", "offsite"]:
            assert metric(host, "composeops_backup_last_status", source, repository) == 1
            assert metric(host, "composeops_backup_last_success_timestamp_seconds", source, repository) > time.time() - 600
        assert metric(host, "composeops_backup_size_bytes", source) > 0
    # Counts at dump time, next to the snapshot, for the test restores.
    sidecar = json.loads(sh(host, "cat /var/lib/composeops/backup/snapshots/demo-db/%s.json"
                            % snapshot_ids(host, "demo-db")[0]))
    assert sidecar["counts"]["app.public.orders"] == 1000 and sidecar["counts"]["app.public.events"] == 20000
    # The uploads were read with their writer paused: pre_commands paused both app replicas before
    # the snapshot began, post_commands resumed them after.
    events = sh(host, "docker events --since %d --until %d --filter label=com.docker.compose.service=app "
                      "--filter event=pause --filter event=unpause --format '{{.Action}} {{.TimeNano}}'"
                % (since, int(sh(host, "date +%s")) + 1)).split("\n")
    events = [(action, int(nanos) / 1e9) for action, nanos in (line.split() for line in events if line)]
    assert [event[0] for event in events] == ["pause", "pause", "unpause", "unpause"], events
    taken = json.loads(sh(host, "%s snapshots demo-uploads" % RUNNER))[0]["time"]
    seconds, zone = re.match(r"^(.{19})(?:\.\d+)?(.*)$", taken).groups()
    taken = datetime.datetime.fromisoformat(seconds + (zone or "+00:00")).timestamp()
    assert events[1][1] - 1 <= taken <= events[2][1], (events, taken)


def test_offsite_copies_on_the_second_host(host):
    target = testinfra.get_host("ansible://backup-target", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])
    snapshots = target.run("ls /srv/restic/backup-debian13/snapshots | wc -l")
    # Each source's snapshot and the snapshot of its facts (counts, secrets) beside it.
    assert snapshots.rc == 0 and int(snapshots.stdout) == 2 * 5
    # Encrypted: no table name or Redis key in clear text there.
    assert target.run("grep -rqs customer /srv/restic/backup-debian13/data").rc == 1
    # The copy on the S3 endpoint too, read back through the runner; its credentials in a 0600 file
    # of their own, not in the runner's configuration.
    for source in ["demo-db", "demo-uploads"]:
        assert len(json.loads(sh(host, "%s snapshots %s --repository s3" % (RUNNER, source)))) == 1, source
    env = host.file("/etc/composeops/backup/s3.env")
    assert env.mode == 0o600 and "composeops-test-secret" in env.content_string
    assert "composeops-test-secret" not in host.file("/etc/composeops/backup/config.json").content_string


def test_restore_refuses_without_confirmation(host, state):
    result = playbook("restore", restore_source="demo-db")
    assert result.returncode != 0 and "restore_confirm=yes" in result.stdout
    assert checksums(host) == state["checksums"]


def test_restore_brings_back_every_table_and_key(host, state):
    sh(host, PSQL + "-c \"DELETE FROM orders WHERE id % 3 = 0; UPDATE events SET payload = '{}' WHERE id < 50; "
                    "CREATE TABLE stray (x int)\"")
    sh(host, REDIS + "DEL key:1 key:2")
    sh(host, REDIS + "SET key:new x")
    assert checksums(host) != state["checksums"]
    sh(host, COMPOSE + "exec -T db psql -X -q -U app -d postgres -c 'INSERT INTO ops_notes VALUES (2)'")
    result = playbook("restore", restore_source="demo-db", restore_confirm="yes")
    assert result.returncode == 0, result.stdout[-3000:]
    assert checksums(host) == state["checksums"]
    assert sh(host, COMPOSE + "exec -T db psql -X -A -t -U app -d postgres -c 'SELECT note FROM ops_notes'").split() == ["1"]
    # The runner itself this time (what the playbook runs), to keep the scenario short.
    sh(host, RUNNER + " restore demo-redis --snapshot latest")
    assert int(sh(host, REDIS + "DBSIZE")) == state["keys"]
    assert sh(host, REDIS + "GET key:1").strip() == "value-1"
    assert sh(host, REDIS + "EXISTS key:new").strip() == "0"
    # AOF is on: the restored RDB became the base of a new append-only file (the old one is kept
    # aside), so the keys outlive a restart, which reads the AOF alone.
    assert sh(host, REDIS + "CONFIG GET appendonly").split() == ["appendonly", "yes"]
    assert sh(host, COMPOSE + "exec -T redis sh -c 'ls -d /data/appendonlydir.before-restore-*'").strip()
    sh(host, COMPOSE + "restart redis")
    wait_healthy(host, "redis")
    assert int(sh(host, REDIS + "DBSIZE")) == state["keys"]
    # The volume of Redis, restored in place.
    sh(host, REDIS + "FLUSHALL")
    sh(host, RUNNER + " restore demo-redis-volume --snapshot latest")
    wait_healthy(host, "redis")
    assert int(sh(host, REDIS + "DBSIZE")) == state["keys"]
    # Files: one removed, one changed, one added; the restore brings back the first two and keeps
    # the third (a files restore overwrites, it does not delete).
    sh(host, "rm /srv/demo-uploads/2026/upload-3.bin && echo 'terms v2' > /srv/demo-uploads/terms.txt "
             "&& echo new > /srv/demo-uploads/2026/after-backup.txt")
    sh(host, RUNNER + " restore demo-uploads --snapshot latest")
    sh(host, "rm /srv/demo-uploads/2026/after-backup.txt")
    assert uploads(host) == state["uploads"]
    # The writers run again, and the app reaches both.
    wait_healthy(host, "app")


def test_restore_of_one_database_leaves_the_others(host, state):
    wait_healthy(host, "db")
    sh(host, PSQL + "-c \"DELETE FROM orders WHERE id < 100\"")
    sh(host, PSQL + "-c \"CREATE DATABASE other\"")
    sh(host, COMPOSE + "exec -T db psql -X -q -U app -d other -c 'CREATE TABLE kept (x int)'")
    # A database the snapshot lacks: refused before anything is dropped.
    missing = host.run(RUNNER + " restore demo-db-app --database nosuch")
    assert missing.rc != 0 and "has no database nosuch" in missing.stderr, missing.stderr
    assert checksums(host) != state["checksums"]
    # From the dump of a list of databases, through the playbook: app alone comes back.
    result = playbook("restore", restore_source="demo-db-app", restore_database="app", restore_confirm="yes")
    assert result.returncode == 0, result.stdout[-3000:]
    assert checksums(host) == state["checksums"]
    assert sh(host, COMPOSE + "exec -T db psql -X -A -t -U app -d other -c 'SELECT count(*) FROM kept'").strip() == "0"
    wait_healthy(host, "app")


def test_database_killed_mid_dump_fails_and_keeps_the_snapshots(host):
    wait_healthy(host, "db")
    before = snapshot_ids(host, "demo-db")
    # A session holds a lock on events: pg_dump of the app database waits for it, half-way
    # through pg_dumpall's output. Then the database container is killed under it.
    sh(host, "systemd-run --unit=hold-lock --collect /bin/sh -c \"" + PSQL.replace('"', '\\"')
       + "-c 'BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)'\"")
    time.sleep(2)
    sh(host, "systemd-run --unit=dump-killed --collect --property=RemainAfterExit=yes "
       "/bin/sh -c '%s backup demo-db; echo $? > /run/dump-killed.rc'" % RUNNER)
    deadline = time.time() + 30
    waiting = PSQL + "-c \"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump' AND wait_event_type = 'Lock'\""
    while host.run(waiting).stdout.strip() != "1":
        assert time.time() < deadline, "pg_dump never waited for the lock"
        time.sleep(0.5)
    opened = "/var/lib/composeops/backup/repositories.json"
    assert host.file(opened).exists, "the converge's init did not record the repositories it opened"
    sh(host, COMPOSE + "kill db")
    deadline = time.time() + 60
    while not host.file("/run/dump-killed.rc").exists:
        assert time.time() < deadline, "the backup run did not end"
        time.sleep(1)
    assert host.file("/run/dump-killed.rc").content_string.strip() != "0"
    # A failed run makes the next converge ask restic about every repository again.
    assert not host.file(opened).exists
    sh(host, COMPOSE + "start db")
    wait_healthy(host, "db")
    assert snapshot_ids(host, "demo-db") == before
    assert metric(host, "composeops_backup_last_status", "demo-db") == 0
    assert metric(host, "composeops_backup_last_success_timestamp_seconds", "demo-db") > 0
    restic = "restic -r /var/backups/composeops/restic --password-file /var/lib/composeops/backup/restic-password "
    # The repository is sound. A restic run killed while it held its lock (a crashed host) leaves
    # a stale lock, which stands in the way of the next run's forget --prune until unlocked.
    sh(host, restic + "check")
    sh(host, "systemd-run --unit=stale-lock --collect /bin/sh -c 'sleep 60 | %s backup --stdin "
       "--stdin-filename stale'" % restic)
    deadline = time.time() + 20
    while not sh(host, restic + "list locks --no-lock").strip():
        assert time.time() < deadline, "the killed run never took its lock"
        time.sleep(0.5)
    sh(host, "systemctl kill --signal=KILL stale-lock.service")
    # The next run succeeds again, and takes the stale lock away.
    result = host.run(RUNNER + " backup demo-db")
    assert result.rc == 0, result.stderr
    assert "removing stale locks" in result.stderr
    assert metric(host, "composeops_backup_last_status", "demo-db") == 1
    assert sh(host, restic + "list locks --no-lock").strip() == ""
    # A third snapshot of the day: retention keeps the newest and the oldest of the day (restic 0.18
    # keeps the oldest while fewer days than keep_daily have snapshots) and removes the middle one,
    # and the facts recorded beside it with it: a sidecar for each snapshot left, no more.
    sh(host, RUNNER + " backup demo-db")
    kept = snapshot_ids(host, "demo-db")
    assert len(kept) == 2 and kept[0] == before[0], (before, kept)
    sidecars = sh(host, "ls /var/lib/composeops/backup/snapshots/demo-db").split()
    assert sorted(sidecars) == sorted(i[:8] + ".json" for i in kept), sidecars


def debian12_restic(host):
    """The restic of Debian 12 (0.14), from its archive, unpacked beside the host's own: the
    version that takes the pipe path (vars/Debian-12.yml). Its directory, to put first in PATH."""
    work = "/var/tmp/bookworm"
    apt = ("apt-get -qq -o Dir::Etc::SourceList={0}/sources.list -o Dir::Etc::SourceParts={0}/parts "
           "-o Dir::State::Lists={0}/lists -o Dir::Cache={0}/cache ".format(work))
    sh(host, "mkdir -p {0}/parts {0}/lists/partial {0}/cache/archives/partial && echo 'deb [signed-by="
             "/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main' "
             "> {0}/sources.list && {1}update && cd {0} && {1}download restic/bookworm && "
             "dpkg-deb -x restic_*.deb {0}/root && rm -rf {0}/lists {0}/cache".format(work, apt))
    path = work + "/root/usr/bin"
    assert sh(host, path + "/restic version").startswith("restic 0.14"), "not Debian 12's restic"
    return path


def test_pipe_path_and_a_full_disk(host):
    # A second configuration of the runner as on Debian 12: its restic (0.14), so the dump piped
    # into `backup --stdin`, into a repository on a 4 MiB tmpfs of its own (so that its disk can
    # fill up) and copied into a second one; the state and metrics beside them.
    small = "/var/tmp/small"
    alt = "PATH=%s:$PATH %s --config %s/config.json " % (debian12_restic(host), RUNNER, small)
    config = json.loads(host.file("/etc/composeops/backup/config.json").content_string)
    first = config["repositories"][0]
    config.update(state_dir=small + "/state", textfile_dir=small + "/metrics", stdin_from_command=False,
                  repositories=[dict(first, name="small", url=small + "/repo/restic"),
                                dict(first, name="copy", url=small + "/copy")])
    sh(host, "mkdir -p %s/repo && mount -t tmpfs -o size=4m,mode=0700 small %s/repo" % (small, small))
    try:
        sh(host, "cat > %s/config.json <<'EOF'\n%s\nEOF" % (small, json.dumps(config)))
        sh(host, alt + "init")
        sh(host, alt + "backup demo-redis")
        redis = [s["id"] for s in json.loads(sh(host, alt + "snapshots demo-redis"))]
        assert len(redis) == 1
        # The disk fills up while the Postgres dump streams in: a failed run, recorded as such,
        # no snapshot of it, the earlier snapshot intact.
        free = int(sh(host, "df --output=avail -B1 %s/repo | tail -1" % small))
        sh(host, "fallocate -l %d %s/repo/filler" % (max(free - 32 * 1024, 0), small))
        full = host.run(alt + "backup demo-db")
        assert full.rc != 0, full.stdout
        assert "no space left on device" in full.stderr.lower(), full.stderr[-2000:]
        text = host.file(small + "/metrics/composeops_backup_demo-db.prom").content_string
        assert 'composeops_backup_last_status{repository="small",source="demo-db"} 0' in text
        assert json.loads(sh(host, alt + "snapshots demo-db")) == []
        assert [s["id"] for s in json.loads(sh(host, alt + "snapshots demo-redis"))] == redis
        # Room again: the next run succeeds through the pipe and is copied; its dump passes the
        # test restore, read from the copy.
        sh(host, "rm %s/repo/filler" % small)
        sh(host, alt + "backup demo-db")
        text = host.file(small + "/metrics/composeops_backup_demo-db.prom").content_string
        for repository in ["small", "copy"]:
            assert 'composeops_backup_last_status{repository="%s",source="demo-db"} 1' % repository in text
        assert len(json.loads(sh(host, alt + "snapshots demo-db --repository copy"))) == 1
        sh(host, alt + "verify demo-db --repository copy")
        sh(host, alt + "check")
    finally:
        host.run("umount %s/repo; rm -rf %s" % (small, small))


@pytest.mark.parametrize("source", ["demo-db", "demo-redis"])
def test_verification_runs_from_its_unit(host, source):
    result = host.run("systemctl start composeops-backup-verify-%s.service" % source)
    assert result.rc == 0, host.run("journalctl -u composeops-backup-verify-%s --no-pager -n 30" % source).stdout
    assert metric(host, "composeops_backup_verify_last_status", source, file="backup_verify_" + source) == 1
    assert host.run("docker ps -a --filter label=org.composeops.backup.verify --quiet").stdout.strip() == ""


def test_check_runs_from_its_unit(host):
    result = host.run("systemctl start composeops-backup-check.service")
    assert result.rc == 0, host.run("journalctl -u composeops-backup-check --no-pager -n 30").stdout
    text = host.file(METRICS + "/composeops_backup_check.prom").content_string
    assert 'composeops_backup_check_last_status{repository="offsite"} 1' in text
