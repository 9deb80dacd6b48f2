"""The DR drill on shape 1, in the order the tests run: a backup of the lost host (dr-lost) with the
password escrowed on the controller; playbooks/dr_drill.yml refused without it; the drill onto the
bare dr-new from the off-site repository alone (every table and key equal, every service healthy,
the API reaching Postgres through PgBouncer and Redis with the restored secrets; no timer; a second
drill refused); last, the lost host itself recovered under its own name after losing its stack, its
secrets and its backups. prepare seeded Postgres (products, orders) and Redis (200 carts)."""

import json
import os
import re
import sys
import time

import pytest
import testinfra

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "resources", "tests"))
from scenario_lib import checksums, playbook, sh, stack_commands, wait_healthy  # noqa: E402  pylint: disable=C0413

testinfra_hosts = ["dr-lost"]

STACK = "/opt/stacks/shop"
SECRETS = "/var/lib/composeops/secrets/shop/"
RUNNER = "/usr/local/sbin/composeops-backup"
COMPOSE, PSQL, REDIS = stack_commands("shop", "shop", "shop")
SERVICES = ["db", "redis", "pgbouncer", "api", "frontend"]
# The API's own view: Postgres through PgBouncer and Redis, each with the password it reads.
API_HEALTH = (COMPOSE + "exec -T api python3 -c \"import urllib.request; "
              "print(urllib.request.urlopen('http://127.0.0.1:8000/health').read().decode())\"")


def data(host):
    """What a restore must bring back: every table's checksum and the Redis keys."""
    sums = checksums(host, PSQL)
    assert {"products", "orders"} <= set(sums), sums
    return sums, int(sh(host, REDIS + "DBSIZE"))


def serves(host):
    """Every service running and healthy, and the API reaching both stores."""
    for service in SERVICES:
        wait_healthy(host, COMPOSE, service)
    health = json.loads(sh(host, API_HEALTH))
    assert health["status"] == "ok" and health["db"] == "ok" and health["redis"] == "ok", health


def figures(output):
    found = re.search(r"RTO (\d+) s .*RPO (\d+) s", output)
    assert found, output[-2000:]
    return int(found.group(1)), int(found.group(2))


@pytest.fixture(scope="module")
def state():
    return {}


@pytest.fixture(scope="module")
def new():
    return testinfra.get_host("ansible://dr-new", ansible_inventory=os.environ["MOLECULE_INVENTORY_FILE"])


def test_drill_rebuilds_shape1_on_a_bare_host_from_the_offsite_copy(host, new, state, tmp_path_factory):
    assert new.run("command -v docker").rc != 0, "the drill host is not bare"
    # The newest order goes into the backup: the drill must bring back the data as backed up.
    sh(host, PSQL + "-c \"INSERT INTO orders (sku) VALUES ('SKU-1')\"")
    escrow = tmp_path_factory.mktemp("dr") / "escrow"
    state["password_file"] = str(escrow / "dr-lost-restic-password")
    result = playbook("backup", backup_escrow_dir=str(escrow))
    assert result.returncode == 0, result.stdout[-3000:]
    state["data"] = data(host)
    assert state["data"][0] and state["data"][1] >= 200
    # Without the escrowed password: refused before anything changes.
    refused = playbook("dr_drill", dr_drill_from="dr-lost")
    assert refused.returncode != 0 and "escrowed password" in refused.stdout, refused.stdout[-2000:]
    assert new.run("command -v docker").rc != 0
    started = time.time()
    result = playbook("dr_drill", dr_drill_from="dr-lost", dr_drill_password_file=state["password_file"])
    took = time.time() - started
    assert result.returncode == 0, result.stdout[-5000:]
    rto, rpo = figures(result.stdout)
    print("DR drill of shape 1: RTO %d s, RPO %d s, playbook %.0f s" % (rto, rpo, took))
    assert 0 < rto <= took and 0 <= rpo <= time.time() - started + 600
    # The lost host's data, every table and key, and its passwords with it: the API, which logs in
    # to both stores, is healthy on the new host.
    assert data(new) == state["data"]
    serves(new)
    for secret in ["db_password", "redis_password"]:
        assert new.file(SECRETS + secret).content_string == host.file(SECRETS + secret).content_string, secret
    # No timer writes into the lost host's repository from the drill host.
    assert "composeops-backup" not in sh(new, "systemctl list-timers --all --no-pager")
    # A second drill onto the same host would restore over its stack: refused.
    again = playbook("dr_drill", dr_drill_from="dr-lost", dr_drill_password_file=state["password_file"])
    assert again.returncode != 0 and "already runs stacks" in again.stdout, again.stdout[-2000:]


def test_recovery_of_the_lost_host_itself_from_the_offsite_copy(host, state):
    # The server loses everything of the stack and of its backups but Docker and the sftp key (the
    # key a new server would have authorised): its data, the generated secrets, the password, the
    # local repository and the facts of its snapshots.
    sh(host, COMPOSE + "down --volumes --timeout 5")
    sh(host, "rm -rf %s %s /var/lib/composeops/backup/snapshots /var/lib/composeops/backup/status "
             "/var/lib/composeops/backup/restic-password /var/backups/composeops/restic" % (STACK, SECRETS))
    result = playbook("dr_drill", dr_drill_hosts="dr-lost", dr_drill_from="dr-lost",
                      dr_drill_recover="yes", dr_drill_password_file=state["password_file"])
    assert result.returncode == 0, result.stdout[-5000:]
    figures(result.stdout)
    assert data(host) == state["data"]
    serves(host)
    # Its own timers again, and the next backup goes into a new local repository, made with the
    # off-site one's chunker so that copies between them deduplicate, and off-site.
    assert "composeops-backup-shop-db.timer" in sh(host, "systemctl list-timers --all --no-pager")
    restic = "restic --password-file /var/lib/composeops/backup/restic-password "
    sftp = ("-o sftp.command='ssh -i /var/lib/composeops/backup/id_ed25519 -o BatchMode=yes "
            "-o UserKnownHostsFile=/var/lib/composeops/backup/known_hosts root@dr-target -s sftp' ")
    local = json.loads(sh(host, restic + "-r /var/backups/composeops/restic cat config"))
    offsite = json.loads(sh(host, restic + sftp + "-r sftp:root@dr-target:/srv/restic/dr-lost cat config"))
    assert local["chunker_polynomial"] == offsite["chunker_polynomial"] and local["id"] != offsite["id"]
    sh(host, RUNNER + " backup shop-db")
    assert len(json.loads(sh(host, "%s snapshots shop-db" % RUNNER))) == 1
    text = host.file("/var/lib/prometheus/node-exporter/composeops_backup_shop-db.prom").content_string
    assert 'composeops_backup_last_status{repository="offsite",source="shop-db"} 1' in text
