"""The monitoring stack on its test host, beside shape 1 (make local's shop) behind nginx: the shop
healthy through nginx/TLS, every target up in Prometheus' API, a real backup and its test restores
passing and scraped, the rules' unit tests, nothing published beyond the loopback, the Postgres alert
reaching the test webhook when its container stops, the backup alerts from the textfile metrics,
and the Grafana files checked statically (no Grafana image can be built here)."""

import calendar
import json
import os
import re
import subprocess
import sys
import time

import pytest
import yaml

testinfra_hosts = ["monitoring-debian13"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests", "unit"))
import grafana_checks  # noqa: E402  pylint: disable=wrong-import-position

CONFIG = "/etc/composeops/monitoring"
METRICS = "/var/lib/prometheus/node-exporter"
SHOP = "cd /opt/stacks/shop && docker compose "
MONITORING = "cd /opt/stacks/monitoring && docker compose "
WEBHOOK = "/run/webhook.jsonl"


def api(host, path, query=None):
    """Prometheus' API on the host's loopback; query: a PromQL expression (URL-encoded by curl)."""
    argv = "curl -fsS --max-time 5 -G 'http://127.0.0.1:9090/api/v1/%s'" % path
    if query:
        argv += " --data-urlencode 'query=%s'" % query
    result = host.run(argv)
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)["data"]


def wait_for(what, probe, seconds):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(2)
    pytest.fail("%s: not within %d s (last: %r)" % (what, seconds, last))


def firing(host, alertname, **labels):
    return [a for a in api(host, "alerts")["alerts"]
            if a["labels"]["alertname"] == alertname and a["state"] == "firing"
            and all(a["labels"].get(k) == v for k, v in labels.items())]


def webhook_alerts(host, since):
    """Every alert the test receiver got, as (status, labels), of alerts that started at or after since
    (a Unix time); a line still being written is read again on the next poll."""
    found = host.file(WEBHOOK)
    if not found.exists:
        return []
    alerts = []
    for line in found.content_string.splitlines():
        try:
            alerts += json.loads(line)["alerts"]
        except ValueError:
            continue
    return [(a["status"], a["labels"]) for a in alerts
            if calendar.timegm(time.strptime(a["startsAt"][:19], "%Y-%m-%dT%H:%M:%S")) >= int(since)]


def write_metrics(host, name, text):
    """A textfile of node_exporter, written as the backup runner writes it (temporary name, rename)."""
    tmp, final = "%s/.%s.tmp" % (METRICS, name), "%s/%s.prom" % (METRICS, name)
    result = host.run("cat > %s <<'EOF'\n%sEOF\nmv %s %s" % (tmp, text, tmp, final))
    assert result.rc == 0, result.stderr


def test_the_shop_answers_through_nginx_over_tls(host):
    # Every service of shape 1 running and healthy (2 API replicas), as site.yml left them.
    ps = [json.loads(line) for line in host.run(SHOP + "ps --all --format json").stdout.splitlines() if line]
    services = sorted(c["Service"] for c in ps)
    assert services == ["api", "api", "db", "frontend", "pgbouncer", "redis"], services
    assert all(c["State"] == "running" and c["Health"] == "healthy" for c in ps), ps
    # The frontend at /, the API at /api/ (Postgres through PgBouncer, and Redis, both reached).
    curl = "curl -fsS --max-time 5 --resolve shop.localhost:443:127.0.0.1 -k https://shop.localhost"
    page = host.run(curl + "/")
    assert page.rc == 0 and "<title>shop</title>" in page.stdout, page.stdout + page.stderr
    health = host.run(curl + "/api/health")
    assert health.rc == 0, health.stderr
    assert json.loads(health.stdout) == {"status": "ok", "db": "ok", "redis": "ok", "version": "1.0"}


def test_every_target_is_up(host):
    expected = {"prometheus", "alertmanager", "node", "nginx", "nginx_log", "postgres", "redis", "blackbox"}

    def all_up():
        targets = api(host, "targets?state=active")["activeTargets"]
        jobs = {t["labels"]["job"] for t in targets}
        down = [(t["labels"]["job"], t["scrapeUrl"], t["lastError"]) for t in targets if t["health"] != "up"]
        return targets if jobs >= expected and not down else None

    targets = wait_for("every target up", all_up, 90)
    assert all(t["labels"]["host"] == "monitoring-debian13" for t in targets)
    stacks = {(t["labels"]["job"], t["labels"].get("stack")) for t in targets}
    assert ("postgres", "shop") in stacks and ("redis", "shop") in stacks
    # The exporters see what they export: the database, Redis, nginx, the health probe over TLS.
    for query in ["pg_up", "redis_up", "nginx_up", 'probe_success{site="shop"}', "node_textfile_scrape_error"]:
        values = [float(r["value"][1]) for r in api(host, "query", query)["result"]]
        assert values and all(v == (0 if query == "node_textfile_scrape_error" else 1) for v in values), query
    assert api(host, "query", 'probe_ssl_earliest_cert_expiry{site="shop"}')["result"]


def test_a_backup_and_its_test_restores_pass_and_prometheus_sees_them(host):
    # The units the timers start, run now: the dumps into restic, then the test restores of each.
    for unit in ["backup-shop-db", "backup-shop-redis", "backup-verify-shop-db", "backup-verify-shop-redis"]:
        result = host.run("systemctl start composeops-%s.service" % unit)
        assert result.rc == 0, host.run("journalctl -u composeops-%s.service -n 20 --no-pager" % unit).stdout

    def scraped():
        results = {(r["metric"]["__name__"], r["metric"]["source"]): float(r["value"][1]) for r in api(
            host, "query", '{__name__=~"composeops_backup_(verify_)?last_status", repository="local"}')["result"]}
        return results if len(results) == 4 else None

    statuses = wait_for("the backup and verification results in Prometheus", scraped, 60)
    assert all(v == 1 for v in statuses.values()), statuses


def test_a_check_run_of_every_role_changes_nothing(host):
    """site.yml's roles of this host (check_site.yml) with --check --diff on the converged host."""
    run = subprocess.run(["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--check", "--diff",
                          os.path.join(ROOT, "molecule", "monitoring", "check_site.yml")],
                         env=dict(os.environ, ANSIBLE_NOCOLOR="1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=600, check=False)
    recap = re.search(r"monitoring-debian13 +: ok=\d+ +changed=(\d+) +unreachable=0 +failed=(\d+)", run.stdout)
    assert run.returncode == 0 and recap and recap.groups() == ("0", "0"), run.stdout[-4000:]


def test_nginx_responses_are_counted_from_the_access_log(host):
    # 404s of the API (the frontend answers every path, an SPA): nothing else answers them (blackbox
    # probes /health, 200), so their count is ours alone.
    query = 'sum(composeops_nginx_responses_total{site="shop.localhost", status="404"}) or vector(0)'
    before = float(api(host, "query", query)["result"][0]["value"][1])
    for _request in range(7):
        host.run("curl -sk --max-time 5 https://shop.localhost/api/no-such-page --resolve shop.localhost:443:127.0.0.1 "
                 "-o /dev/null")

    def counted():
        value = float(api(host, "query", query)["result"][0]["value"][1])
        return value if value - before == 7 else None

    wait_for("mtail counts the 7 responses 404", counted, 30)


def test_rules_are_unit_tested_and_every_rule_is_loaded(host):
    result = host.run("docker run --rm --network none -v %s/prometheus/tests:/check:ro --entrypoint /bin/promtool "
                      "$(cd /opt/stacks/monitoring && docker compose config --images prometheus) "
                      "test rules /check/composeops.rules.test.yml" % CONFIG)
    assert result.rc == 0, result.stdout + result.stderr
    loaded = {r["name"] for g in api(host, "rules")["groups"] for r in g["rules"]}
    rules = yaml.safe_load(host.file(CONFIG + "/prometheus/composeops.rules.yml").content_string)
    assert loaded == {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert {"PostgresDown", "BackupTooOld", "BackupMetricsAbsent", "RolloutFailed"} <= loaded


def test_nothing_is_published_beyond_the_loopback(host):
    ports = host.run(MONITORING + "ps --format '{{.Service}} {{.Ports}}'").stdout.split("\n")
    published = [p for p in ports if "->" in p]
    assert published, ports
    assert all(("127.0.0.1:" in p and "0.0.0.0" not in p and "[::]" not in p) for p in published), published
    # The host-network services listen on the loopback only.
    listening = host.run("ss -Hltn").stdout
    for port in [9090, 9093, 9100, 9113, 9115, 3903]:
        lines = [line for line in listening.splitlines() if line.split()[3].endswith(":%d" % port)]
        assert lines and all(line.split()[3] == "127.0.0.1:%d" % port for line in lines), (port, lines)


def test_postgres_down_reaches_the_webhook(host):
    started = time.time()
    # Alerts of this stop only: an earlier run of verify may have left its own in the file.
    since = int(host.run("date +%s").stdout)
    assert host.run(SHOP + "stop db").rc == 0
    try:
        def notified():
            return [labels for status, labels in webhook_alerts(host, since)
                    if status == "firing" and labels["alertname"] == "PostgresDown" and labels.get("stack") == "shop"]

        alert = wait_for("PostgresDown at the webhook", notified, 90)[0]
        print("PostgresDown reached the webhook %.0f s after docker stop" % (time.time() - started))
        assert alert["severity"] == "critical" and alert["host"] == "monitoring-debian13"
    finally:
        assert host.run(SHOP + "start db").rc == 0
    wait_for("pg_up back to 1", lambda: api(host, "query", "pg_up == 1")["result"], 60)


def test_backup_alerts_fire_from_the_textfile_metrics(host):
    now = int(time.time())
    labels = '{repository="local",source="%s"}'
    lines = ("composeops_backup_last_success_timestamp_seconds%s %d\n"
             "composeops_backup_last_run_timestamp_seconds%s %d\ncomposeops_backup_last_status%s 1\n")
    # shop-db: a backup a minute ago; shop-redis: its last success three days ago.
    db, cache = labels % "shop-db", labels % "shop-redis"
    write_metrics(host, "composeops_backup_shop-db", lines % (db, now - 60, db, now - 60, db))
    write_metrics(host, "composeops_backup_shop-redis", lines % (cache, now - 3 * 86400, cache, now - 60, cache))
    wait_for("BackupTooOld of shop-redis", lambda: firing(host, "BackupTooOld", source="shop-redis"), 60)
    wait_for("no BackupMetricsAbsent of shop-db",
             lambda: not firing(host, "BackupMetricsAbsent", source="shop-db") or None, 60)
    assert not firing(host, "BackupTooOld", source="shop-db")
    # The metric file of shop-db deleted (a runner that no longer runs): its absence fires.
    host.run("rm -f %s/composeops_backup_shop-db.prom" % METRICS)
    wait_for("BackupMetricsAbsent of shop-db", lambda: firing(host, "BackupMetricsAbsent", source="shop-db"), 60)


def test_grafana_files_are_provisioned_and_valid(host):
    datasource = yaml.safe_load(host.file(CONFIG + "/grafana/provisioning/datasources/composeops.yml").content_string)
    assert [d["uid"] for d in datasource["datasources"]] == ["composeops-prometheus"]
    assert datasource["datasources"][0]["url"] == "http://127.0.0.1:9090"
    names = host.run("ls %s/grafana/dashboards" % CONFIG).stdout.split()
    dashboards = [json.loads(host.file("%s/grafana/dashboards/%s" % (CONFIG, n)).content_string) for n in names]
    assert len(dashboards) == 6
    assert [p for d in dashboards for p in grafana_checks.panel_problems(d)] == []
    # Every panel's query parses: as recording rules, through the promtool of the Prometheus image.
    rules = grafana_checks.queries_as_rules(dashboards)
    result = host.run("cat > /tmp/panels.rules.yml <<'EOF'\n%s\nEOF\ndocker run --rm --network none "
                      "-v /tmp/panels.rules.yml:/check:ro --entrypoint /bin/promtool "
                      "$(cd /opt/stacks/monitoring && docker compose config --images prometheus) check rules /check"
                      % rules)
    assert result.rc == 0, result.stdout + result.stderr


def test_a_route_to_fixed_servers_reaches_a_host_network_service(host):
    # How Grafana (127.0.0.1:3000, host network) is served: reverse_proxy's `servers` route.
    result = host.run("curl -sk --max-time 5 --resolve alerts.localhost:443:127.0.0.1 https://alerts.localhost/-/healthy")
    assert result.rc == 0 and result.stdout.strip() == "OK", result.stdout + result.stderr
    assert "server 127.0.0.1:9093" in host.file("/etc/nginx/composeops/upstreams/servers_alerts_root.conf").content_string
