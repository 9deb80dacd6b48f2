"""The Prometheus alert rules of the monitoring role (roles/monitoring/templates/composeops.rules.yml.j2).

The template is rendered by Ansible itself (ansible-playbook, ansible.builtin.template: the same
Jinja environment, filters and `ansible_managed` as a real run) with the default alert table
(roles/monitoring/vars/main.yml) and a few variants, then checked by `promtool check rules`
and the unit tests of roles/monitoring/files/composeops.rules.test.yml by `promtool test rules`.

promtool: the local binary when it is on PATH, else the one in the image
composeops/fixture-prometheus (Docker), else the promtool tests are skipped (the rest still runs).
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = ROOT / "roles" / "monitoring"
TEMPLATE = ROLE / "templates" / "composeops.rules.yml.j2"
RULE_TESTS = ROLE / "files" / "composeops.rules.test.yml"
RULES_NAME = "composeops.rules.yml"  # the name the unit tests' rule_files give
PROMTOOL_IMAGE = "composeops/fixture-prometheus"
# The sources the unit tests expect (BackupMetricsAbsent is generated once per item).
EXPECTED = [{"host": "web1", "source": "shop-db"}, {"host": "web1", "source": "shop-redis"}]

# The label each alert is about, besides `host`: summary and description must both name it.
SUBJECT = {
    "TargetDown": "job",
    "DiskFillingUp": "mountpoint",
    "DiskAlmostFull": "mountpoint",
    "InodesFillingUp": "mountpoint",
    "MemoryPressure": None,
    "ContainerRestarting": "name",
    "ContainerGone": "container_label_com_docker_compose_service",
    "HealthProbeFailing": "site",
    "CertificateExpiring": "site",
    "PostgresDown": "stack",
    "PostgresTooManyConnections": "stack",
    "RedisDown": "stack",
    "RedisNearMaxmemory": "stack",
    "BackupTooOld": "source",
    "BackupFailed": "source",
    "BackupVerificationFailed": "source",
    "BackupVerificationTooOld": "source",
    "BackupCheckFailed": "repository",
    "BackupMetricsAbsent": "source",
    "Nginx5xxRate": "site",
    "RolloutFailed": "stack",
}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


class _TolerantLoader(yaml.SafeLoader):
    """Reads Ansible vars files whose values carry tags such as !unsafe or !vault."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                                      if isinstance(node, yaml.ScalarNode) else None)


def alert_defaults():
    """The default table, _monitoring_alert_defaults of roles/monitoring/vars/main.yml."""
    data = yaml.load((ROLE / "vars" / "main.yml").read_text(), Loader=_TolerantLoader)  # noqa: S506 (a SafeLoader)
    return data["_monitoring_alert_defaults"]


DEFAULTS = alert_defaults()


def _variants():
    """name -> (_monitoring_alerts, _monitoring_backup_expected) rendered once for the module."""
    overridden = copy.deepcopy(DEFAULTS)
    for name in ("ContainerRestarting", "ContainerGone", "MemoryPressure"):
        overridden[name]["enabled"] = False
    overridden["DiskFillingUp"]["threshold"] = 48  # hours
    overridden["DiskAlmostFull"]["threshold"] = 5  # percent
    overridden["ContainerGone"]["threshold"] = 15  # minutes, but disabled
    overridden["CertificateExpiring"].update(threshold=30, severity="critical")  # days
    overridden["BackupTooOld"]["for"] = "30m"
    none = {name: dict(entry, enabled=False) for name, entry in DEFAULTS.items()}
    return {
        "defaults": (DEFAULTS, EXPECTED),
        "overridden": (overridden, []),
        "none": (none, EXPECTED),
    }


VARIANTS = _variants()


def _ansible_playbook():
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    assert found, "ansible-playbook is not installed (requirements.txt; source tests/lib.sh; setup_venv)"
    return found


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each variant rendered by ansible.builtin.template: name -> directory with composeops.rules.yml."""
    out = tmp_path_factory.mktemp("alert-rules")
    for name in VARIANTS:
        (out / name).mkdir()
    playbook = out / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Render the alert rules",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [{
            "name": "Render composeops.rules.yml",
            "ansible.builtin.template": {"src": str(TEMPLATE), "dest": "{{ out }}/{{ item.name }}/" + RULES_NAME,
                                         "mode": "0644"},
            "loop": "{{ variants }}",
            "loop_control": {"label": "{{ item.name }}"},
            "vars": {"_monitoring_alerts": "{{ item.alerts }}",
                     "_monitoring_backup_expected": "{{ item.expected }}"},
        }],
    }], sort_keys=False))
    extra = out / "vars.json"
    extra.write_text(json.dumps({
        "out": str(out),
        "ansible_python_interpreter": sys.executable,
        "variants": [{"name": name, "alerts": alerts, "expected": expected}
                     for name, (alerts, expected) in VARIANTS.items()],
    }))
    env = dict(os.environ, ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="false")
    result = subprocess.run([_ansible_playbook(), "-i", "localhost,", str(playbook), "-e", "@" + str(extra)],
                            cwd=out, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return {name: out / name for name in VARIANTS}


def load_rules(directory):
    return yaml.safe_load((directory / RULES_NAME).read_text())


def all_rules(directory):
    return [rule for group in load_rules(directory)["groups"] for rule in group["rules"]]


# --- promtool -------------------------------------------------------------------------------------


def _fixture_image():
    """The newest tag of composeops/fixture-prometheus, or None without Docker or the image."""
    if not shutil.which("docker"):
        return None
    try:
        listing = subprocess.run(["docker", "image", "ls", "--format", "{{.Tag}}", PROMTOOL_IMAGE],
                                 capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    tags = [tag for tag in listing.stdout.split() if tag and tag != "<none>"] if listing.returncode == 0 else []
    if not tags:
        return None

    def version(tag):
        return [int(part) if part.isdigit() else -1 for part in re.split(r"[.-]", tag)]

    return "%s:%s" % (PROMTOOL_IMAGE, max(tags, key=version))


@pytest.fixture(scope="module")
def promtool():
    """run(args, directory) -> CompletedProcess of `promtool ARGS` working in directory."""
    local = shutil.which("promtool")
    if local:
        def run(args, directory):
            return subprocess.run([local, *args], cwd=directory, capture_output=True, text=True, timeout=300,
                                  check=False)
        run.where = local
        return run
    image = _fixture_image()
    if image:
        def run(args, directory):
            return subprocess.run(["docker", "run", "--rm", "--network", "none", "-v", "%s:/w:ro" % directory,
                                   "-w", "/w", "--entrypoint", "promtool", image, *args],
                                  capture_output=True, text=True, timeout=300, check=False)
        run.where = image
        return run
    pytest.skip("no promtool: none on PATH and no Docker image %s (apt-get install prometheus, or build the "
                "fixture image)" % PROMTOOL_IMAGE)
    return None


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_promtool_check_rules(rendered, promtool, variant):
    result = promtool(["check", "rules", RULES_NAME], rendered[variant])
    output = result.stdout + result.stderr
    assert result.returncode == 0, "%s check rules (%s):\n%s" % (promtool.where, variant, output)


def test_promtool_unit_tests(rendered, promtool):
    shutil.copy(RULE_TESTS, rendered["defaults"] / RULE_TESTS.name)
    result = promtool(["test", "rules", RULE_TESTS.name], rendered["defaults"])
    assert result.returncode == 0, "%s test rules:\n%s%s" % (promtool.where, result.stdout, result.stderr)


# --- the rendered file ----------------------------------------------------------------------------


def test_rendered_file_starts_with_ansible_managed(rendered):
    text = (rendered["defaults"] / RULES_NAME).read_text()
    assert text.startswith("#")
    assert "Ansible managed" in text.split("groups:")[0]


def test_every_alert_of_the_table_is_rendered(rendered):
    names = [rule["alert"] for rule in all_rules(rendered["defaults"])]
    assert set(names) == set(DEFAULTS) == set(SUBJECT)
    assert all(names.count(name) == 1 for name in DEFAULTS if name != "BackupMetricsAbsent")


def test_backup_metrics_absent_is_generated_per_expected_source(rendered):
    exprs = [" ".join(rule["expr"].split()) for rule in all_rules(rendered["defaults"])
             if rule["alert"] == "BackupMetricsAbsent"]
    assert exprs == ['absent(composeops_backup_last_success_timestamp_seconds'
                     '{job="node", host="%s", source="%s"})' % (e["host"], e["source"]) for e in EXPECTED]


def test_every_rule_has_severity_summary_and_description_naming_its_subject(rendered):
    for rule in all_rules(rendered["defaults"]):
        name = rule["alert"]
        assert rule["labels"]["severity"] == DEFAULTS[name]["severity"], name
        assert rule["for"] == DEFAULTS[name]["for"], name
        for key in ("summary", "description"):
            text = rule["annotations"][key]
            assert "{{ $labels.host }}" in text, (name, key, text)
            if SUBJECT[name]:
                assert "{{ $labels.%s }}" % SUBJECT[name] in text, (name, key, text)


def test_the_table_is_complete(rendered):
    for name, entry in DEFAULTS.items():
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", name), name
        assert {"threshold", "for", "severity"} <= set(entry), name
        assert entry["severity"] in ("critical", "warning"), name
        assert DURATION.match(str(entry["for"])), (name, entry["for"])
        assert entry["threshold"] is None or isinstance(entry["threshold"], (int, float)), name


def test_disabled_alerts_are_left_out_and_overrides_apply(rendered):
    rules = {rule["alert"]: rule for rule in all_rules(rendered["overridden"])}
    assert not {"ContainerRestarting", "ContainerGone", "MemoryPressure"} & set(rules)
    assert "BackupMetricsAbsent" not in rules  # no expected source
    groups = [group["name"] for group in load_rules(rendered["overridden"])["groups"]]
    assert "composeops-containers" not in groups and "composeops-node" in groups
    assert "[720m], 172800) < 0" in rules["DiskFillingUp"]["expr"]  # 48 hours, trend over 12 hours
    assert "< 5\n" in rules["DiskAlmostFull"]["expr"]
    assert "(threshold 5%)" in rules["DiskAlmostFull"]["annotations"]["description"]
    assert rules["CertificateExpiring"]["expr"].endswith("/ 86400 < 30")
    assert rules["CertificateExpiring"]["labels"]["severity"] == "critical"
    assert rules["BackupTooOld"]["for"] == "30m"


def test_all_disabled_renders_an_empty_rule_file(rendered):
    assert load_rules(rendered["none"]) == {"groups": []}


# --- the unit tests themselves --------------------------------------------------------------------


def test_unit_tests_cover_every_rule_firing_and_quiet():
    spec = yaml.safe_load(RULE_TESTS.read_text())
    assert spec["rule_files"] == [RULES_NAME]
    fired, quiet = set(), set()
    for group in spec["tests"]:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
            for alert in case.get("exp_alerts") or []:
                assert alert["exp_labels"]["severity"] == DEFAULTS[case["alertname"]]["severity"]
                assert {"summary", "description"} <= set(alert["exp_annotations"]), case["alertname"]
    assert fired == set(DEFAULTS), "rules no unit test fires: %s" % sorted(set(DEFAULTS) - fired)
    assert quiet == set(DEFAULTS), "rules no unit test checks quiet: %s" % sorted(set(DEFAULTS) - quiet)
