"""Static checks of the Grafana provisioning of the monitoring role. No Grafana image or package can be
had here, so the files are checked without Grafana: the provisioning YAML by its keys, the dashboards
by their JSON model (tests/unit/grafana_checks.py), and every PromQL query of them by promtool."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

sys.path.insert(0, str(Path(__file__).parent))
import grafana_checks as gc  # noqa: E402  pylint: disable=wrong-import-position

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
DATASOURCE_TEMPLATE = ROLE / "templates" / "grafana" / "datasource.yml.j2"
PROVIDER = ROLE / "files" / "grafana" / "dashboards.yml"
DASHBOARDS = ROLE / "files" / "grafana" / "dashboards"
DASHBOARD_MOUNT = "/var/lib/grafana/dashboards/composeops"
EXPECTED = ["backups", "containers", "host", "nginx", "postgres", "redis"]
FIXTURE_IMAGE = "composeops/fixture-prometheus"
# The composeops_* metrics of the design contract (node_exporter's textfile collector, mtail).
CONTRACT_METRICS = {
    "composeops_backup_last_run_timestamp_seconds", "composeops_backup_last_success_timestamp_seconds",
    "composeops_backup_last_status", "composeops_backup_duration_seconds", "composeops_backup_size_bytes",
    "composeops_backup_verify_last_run_timestamp_seconds", "composeops_backup_verify_last_success_timestamp_seconds",
    "composeops_backup_verify_last_status", "composeops_backup_verify_duration_seconds",
    "composeops_backup_check_last_run_timestamp_seconds", "composeops_backup_check_last_status",
    "composeops_rollout_last_status", "composeops_rollout_last_run_timestamp_seconds",
    "composeops_nginx_responses_total", "composeops_nginx_request_seconds_bucket",
    "composeops_nginx_request_seconds_sum", "composeops_nginx_request_seconds_count",
}


@pytest.fixture(name="dashboards", scope="module")
def fixture_dashboards():
    return gc.load_dashboards(DASHBOARDS)


def _targets(dashboard):
    for panel in gc.iter_panels(dashboard):
        for target in panel.get("targets") or []:
            yield panel, target


def _exprs(dashboard):
    return [t["expr"] for _panel, t in _targets(dashboard)]


# --- provisioning files -------------------------------------------------------------------------

def _jinja():
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(FilterModule().filters())
    return env


def _render_datasource(**variables):
    return _jinja().from_string(DATASOURCE_TEMPLATE.read_text(encoding="utf-8")).render(**variables)


def test_datasource_template_provisions_the_composeops_prometheus():
    source = DATASOURCE_TEMPLATE.read_text(encoding="utf-8")
    assert source.splitlines()[0] == "{{ ansible_managed | comment }}"
    text = _render_datasource(ansible_managed="Ansible managed", _monitoring_prometheus_url="http://127.0.0.1:9090",
                              monitoring_scrape_interval="15s")
    assert text.startswith("#\n# Ansible managed\n#\n")
    config = yaml.safe_load(text)
    assert config["apiVersion"] == 1
    assert len(config["datasources"]) == 1
    datasource = config["datasources"][0]
    assert {k: datasource[k] for k in ("uid", "type", "url", "access", "isDefault", "editable")} == {
        "uid": gc.DATASOURCE_UID, "type": "prometheus", "url": "http://127.0.0.1:9090", "access": "proxy",
        "isDefault": True, "editable": False}
    assert datasource["jsonData"]["timeInterval"] == "15s"


def test_datasource_template_uses_only_variables_of_the_role():
    used = jinja2.meta.find_undeclared_variables(_jinja().parse(DATASOURCE_TEMPLATE.read_text(encoding="utf-8")))
    defined = {"ansible_managed"}
    for name in ("defaults/main.yml", "vars/main.yml"):
        path = ROLE / name
        if path.exists():
            defined |= set(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    assert used - defined == set()


def test_dashboard_provider_loads_the_mounted_dashboards_read_only():
    config = yaml.safe_load(PROVIDER.read_text(encoding="utf-8"))
    assert config["apiVersion"] == 1
    assert len(config["providers"]) == 1
    provider = config["providers"][0]
    assert provider["type"] == "file"
    assert provider["folder"] == "composeops"
    assert provider["options"]["path"] == DASHBOARD_MOUNT
    assert provider["allowUiUpdates"] is False
    assert provider["disableDeletion"] is True


def test_role_mounts_the_dashboards_where_the_provider_reads_them():
    others = [p for p in ROLE.rglob("*") if p.is_file() and "grafana" not in p.relative_to(ROLE).parts[:2]
              and p.suffix in (".yml", ".j2")]
    if not others:
        pytest.skip("the monitoring role has no tasks/vars yet that mount the dashboards")
    assert any(DASHBOARD_MOUNT in p.read_text(encoding="utf-8") for p in others), \
        "no file of the role mounts the dashboards at %s" % DASHBOARD_MOUNT


# --- dashboards -----------------------------------------------------------------------------------

def test_six_dashboards_with_fixed_unique_uids_and_titles(dashboards):
    assert sorted(Path(name).stem for name in dashboards) == EXPECTED
    for name, dashboard in dashboards.items():
        assert dashboard["uid"] == "composeops-" + Path(name).stem
    # Grafana wants a uid unique in the instance and a title unique in the folder.
    assert len({d["uid"] for d in dashboards.values()}) == len(dashboards)
    assert len({d["title"] for d in dashboards.values()}) == len(dashboards)


@pytest.mark.parametrize("name", [n + ".json" for n in EXPECTED])
def test_dashboard_has_no_problem(dashboards, name):
    assert gc.panel_problems(dashboards[name]) == []


@pytest.mark.parametrize("name", [n + ".json" for n in EXPECTED])
def test_dashboard_model(dashboards, name):
    dashboard = dashboards[name]
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "composeops" in dashboard["tags"]
    panels = list(gc.iter_panels(dashboard))
    assert panels
    for panel in panels:
        assert panel["type"] in {"row", "stat", "timeseries", "table", "bargauge", "gauge", "text"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
    # A dashboard with a host variable filters every query by it.
    if "host" in gc.variable_names(dashboard):
        assert [p["title"] for p, t in _targets(dashboard) if "$host" not in t["expr"]] == []


def test_dashboard_files_are_formatted(dashboards):
    for name, dashboard in dashboards.items():
        text = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert text == gc.format_dashboard(dashboard), \
            "%s is not in the canonical form: python tests/unit/grafana_checks.py format %s" % (name, DASHBOARDS / name)


def test_dashboards_use_the_metric_names_of_the_contract(dashboards):
    used = {m for d in dashboards.values() for e in _exprs(d) for m in re.findall(r"\bcomposeops_\w+", e)}
    assert used - CONTRACT_METRICS == set()
    # Each kind of composeops metric is on a dashboard.
    for prefix in ("composeops_backup_", "composeops_backup_verify_", "composeops_backup_check_",
                   "composeops_rollout_", "composeops_nginx_responses_", "composeops_nginx_request_seconds_"):
        assert any(m.startswith(prefix) for m in used), prefix


# --- queries as rules -----------------------------------------------------------------------------

def test_variables_become_valid_placeholders():
    dashboard = {"templating": {"list": [{"name": "host", "type": "query"}, {"name": "step", "type": "interval"}]}}
    sub = gc.substitute_variables
    assert sub('rate(up{host=~"$host"}[$__rate_interval])', dashboard) == 'rate(up{host=~".*"}[5m])'
    assert sub('up{host="${host}"}[${__range}]', dashboard) == 'up{host=".*"}[5m]'
    assert sub('up{host=~"[[host]]"}[$step]', dashboard) == 'up{host=~".*"}[5m]'
    assert sub("x[$__interval] offset $__range", dashboard) == "x[5m] offset 5m"
    # Capture groups of label_replace and unknown variables stay as they are.
    assert sub('label_replace(up, "c", "${1}xx", "s", "(.).*")', dashboard) == 'label_replace(up, "c", "${1}xx", "s", "(.).*")'
    assert sub("topk($limit, up)", dashboard) == "topk($limit, up)"


def test_queries_as_rules_records_each_panel_query(dashboards):
    rules = yaml.safe_load(gc.queries_as_rules(dashboards))
    records = [r["record"] for g in rules["groups"] for r in g["rules"]]
    expected = ["grafana:%s:%s:%s" % (d["uid"].replace("-", "_"), p["id"], t["refId"])
                for d in dashboards.values() for p, t in _targets(d)]
    assert set(expected) <= set(records)
    assert len(set(records)) == len(records)
    assert "grafana:composeops_host:var:host" in records
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    assert not [e for e in exprs if "$" in e.replace("${1}", "")]


def _docker_promtool(docker, image):
    def check(path):
        created = subprocess.run([docker, "create", "--entrypoint", "/bin/promtool", image, "check", "rules",
                                  "/rules.yml"], capture_output=True, text=True, timeout=120, check=True)
        container = created.stdout.strip()
        try:
            subprocess.run([docker, "cp", str(path), container + ":/rules.yml"], capture_output=True, timeout=60,
                           check=True)
            return subprocess.run([docker, "start", "--attach", container], capture_output=True, text=True,
                                  timeout=120, check=False)
        finally:
            subprocess.run([docker, "rm", "--force", container], capture_output=True, timeout=60, check=False)
    return check


@pytest.fixture(name="promtool", scope="module")
def fixture_promtool():
    """check(path) -> CompletedProcess of `promtool check rules path`: promtool from PATH, else the one
    of the fixture Prometheus image, else the test is skipped."""
    exe = shutil.which("promtool")
    if exe:
        return lambda path: subprocess.run([exe, "check", "rules", str(path)], capture_output=True, text=True,
                                           timeout=120, check=False)
    docker = shutil.which("docker")
    if docker:
        try:
            listed = subprocess.run([docker, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", FIXTURE_IMAGE],
                                    capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            listed = None
        images = [i for i in listed.stdout.split() if not i.endswith(":<none>")] if listed and listed.returncode == 0 else []
        if images:
            return _docker_promtool(docker, sorted(images)[-1])
    pytest.skip("no promtool to parse the dashboards' PromQL: none on PATH (Debian: apt-get install "
                "prometheus) and no Docker image %s (tests/harness/fixtures.sh up builds it)" % FIXTURE_IMAGE)


def test_promtool_parses_every_dashboard_query(dashboards, promtool, tmp_path):
    rules = tmp_path / "grafana.rules.yml"
    rules.write_text(gc.queries_as_rules(dashboards), encoding="utf-8")
    result = promtool(rules)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(_exprs(d)) for d in dashboards.values())
    found = int(re.search(r"SUCCESS: (\d+) rules found", result.stdout).group(1))
    assert found >= count


# --- the checks can fail --------------------------------------------------------------------------

BROKEN = {
    "title": "broken",
    "__inputs": [{"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}],
    "templating": {"list": [{"name": "host", "type": "query", "query": "label_values(up, host)",
                             "datasource": {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}}]},
    "panels": [
        {"id": 1, "type": "timeseries", "title": "wrong datasource",
         "datasource": {"type": "prometheus", "uid": "other-prometheus"},
         "targets": [{"refId": "A", "datasource": {"type": "prometheus", "uid": "other-prometheus"},
                      "expr": 'sum by (host) (rate(up{host=~"$host"}[$__rate_interval])'}]},
        {"id": 2, "type": "row", "title": "row", "collapsed": True, "panels": [
            {"id": 1, "type": "stat", "title": "in a row", "datasource": gc.DATASOURCE,
             "targets": [{"refId": "A", "datasource": gc.DATASOURCE, "expr": " "},
                         {"refId": "B", "datasource": gc.DATASOURCE, "expr": 'up{site=~"$site"}'}]},
        ]},
        {"id": 3, "type": "table", "title": "no datasource", "targets": [{"refId": "A", "expr": "up"}]},
    ],
}


def test_panel_problems_reports_a_broken_dashboard():
    problems = "\n".join(gc.panel_problems(BROKEN))
    for expected in ("the dashboard has no uid", "has __inputs", "refers to a ${DS_...} input",
                     "variable host: datasource is", "panel 1 'wrong datasource': datasource is",
                     "panel 1 'wrong datasource': query A: datasource is", "panel 1 'in a row': the id 1 is used twice",
                     "panel 1 'in a row': query A: has no expr",
                     "query B: uses variables the dashboard does not define: site",
                     "panel 3 'no datasource': datasource is null", "panel 3 'no datasource': query A: datasource is null"):
        assert expected in problems
    assert gc.panel_problems(dict(BROKEN, uid="x" * 41))[0] == \
        "%s: the uid is longer than the 40 characters Grafana allows" % ("x" * 41)


def test_promtool_rejects_a_broken_query(promtool, tmp_path):
    rules = tmp_path / "broken.rules.yml"
    rules.write_text(gc.queries_as_rules([dict(BROKEN, uid="composeops-broken")]), encoding="utf-8")
    result = promtool(rules)
    assert result.returncode != 0
    assert "grafana:composeops_broken:1:A" in result.stdout + result.stderr
