"""Rollouts across two app hosts behind a load balancer (playbooks/rollout.yml), in the order they run.

converge rolled app 1.0 to 2.0 under load through the balancer; each test here runs a playbook of
the collection against the scenario's own inventory and checks the hosts after it. The load always
goes to the balancer's own loopback (load.sh refuses any other target).
"""

import json
import os
import re
import subprocess
import tempfile
import time

import pytest
import testinfra
import yaml

testinfra_hosts = ["multihost-lb"]

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(SCENARIO))
STACK = "/opt/stacks/shop"
UPSTREAM = "/etc/nginx/composeops/upstreams/servers_shop_root.conf"
APPS = ["multihost-app1", "multihost-app2"]
FIXTURES = os.path.join(
    os.environ.get("COMPOSEOPS_FIXTURES_STATE", os.path.expanduser("~/.cache/composeops/fixtures")),
    "fixtures.yml")


@pytest.fixture(scope="module")
def fixtures():
    with open(FIXTURES, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def apps():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {name: testinfra.get_host("ansible://" + name, ansible_inventory=inventory) for name in APPS}


def playbook(name, *extra, inventory_extra=None, limit=None):
    """ansible-playbook playbooks/NAME.yml on the scenario's inventory (plus INVENTORY_EXTRA, a
    YAML inventory text, for host variables of one run), extra vars as JSON."""
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
            os.path.join(ROOT, "playbooks", name + ".yml")]
    handle = None
    if inventory_extra:
        handle = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
        handle.write(inventory_extra)
        handle.close()
        argv[3:3] = ["-i", handle.name]
    if limit:
        argv += ["--limit", limit]
    for item in extra:
        argv += ["-e", json.dumps(item)]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    try:
        return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=900, check=False)
    finally:
        if handle:
            os.unlink(handle.name)


def app_images(app):
    """Images of the running app replicas of a host, sorted."""
    out = app.check_output("docker ps --filter label=com.docker.compose.project=shop"
                           " --filter label=com.docker.compose.service=app --format '{{.Image}}'")
    return sorted(out.split())


def releases(app):
    """The release records of the stack on an app host, oldest first."""
    ids = sorted(app.run("ls %s/.releases" % STACK).stdout.split())
    return [json.loads(app.file("%s/.releases/%s" % (STACK, f)).content_string)
            for f in ids if re.match(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+\.json$", f)]


def members(host):
    """(server, drained) of the balancer's upstream."""
    text = host.file(UPSTREAM).content_string
    return [(m.group(1), bool(m.group(2))) for m in re.finditer(r"^\s*server (\S+)[^;]*?( down)?;", text, re.M)]


def start_load(host, label, seconds, slow=3, slow_seconds=5):
    host.check_output("systemd-run --unit=rollout-load-%s --collect /usr/local/bin/rollout-load shop.test %d %d "
                      "/root/load/%s %d" % (label, seconds, slow, label, slow_seconds))


def load_results(host, label, stop=False):
    """hey's figures and the slow requests (start, end, status, version) of the load LABEL, once it
    finished (bounded); ``stop`` ends it first."""
    if stop:
        host.check_output("touch /root/load/%s/stop" % label)
    for _attempt in range(150):
        if host.file("/root/load/%s/done" % label).exists:
            break
        time.sleep(1)
    report = host.file("/root/load/%s/hey.txt" % label).content_string
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)}
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+Get ", report, re.M))
    slow = [line.split() for line in host.check_output("cat /root/load/%s/slow-*.txt" % label).splitlines()]
    return {"codes": codes, "errors": errors, "slow": slow, "report": report}


def assert_no_failed_request(result, minimum):
    assert sum(result["codes"].values()) >= minimum, result["report"]
    assert set(result["codes"]) == {200} and result["errors"] == 0, result["report"]
    assert result["slow"] and all(r[2] == "200" for r in result["slow"]), result["slow"]


def run_ids(app):
    return [r.get("run_id") for r in releases(app)]


def test_rollout_under_load_through_the_balancer(host, apps, fixtures):
    result = load_results(host, "converge")
    assert_no_failed_request(result, minimum=600)
    # Slow requests were in flight across the drains; some answered by 1.0, later ones by 2.0 (else
    # the load, 120 s at most, ended before the rollout switched: a machine too slow for this test).
    versions = {r[3] for r in result["slow"]}
    assert {"1.0", "2.0"} <= versions, ("the load did not span the rollout", result["slow"])
    run = None
    for name, app in apps.items():
        assert app_images(app) == [fixtures["images"]["app_v2"]] * 2, name
        history = releases(app)
        assert [r["result"] for r in history] == ["success", "success"], (name, history)
        run = run or history[-1]["run_id"]
        # One run id on both hosts' release of 2.0.
        assert history[-1]["run_id"] == run and re.match(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$", run), (name, history)
    assert len(members(host)) == 2 and all(not drained for _m, drained in members(host)), members(host)
    assert host.check_output("curl -sk --resolve shop.test:443:127.0.0.1 https://shop.test/version") == "2.0"


def test_app_hosts_take_https_from_the_balancer_only(host, apps):
    app1, app2 = apps["multihost-app1"], apps["multihost-app2"]
    address2 = app2.ansible.get_variables()["ansible_host"]
    # From the balancer: the app host's site answers.
    assert host.check_output("curl -sk -o /dev/null -w '%%{http_code}' --max-time 5 --resolve shop.test:443:%s "
                             "https://shop.test/health" % address2) == "200"
    # From the other app host: dropped by the firewall (no answer at all, not even a refusal).
    blocked = app1.run("curl -sk -o /dev/null --max-time 3 --resolve shop.test:443:%s https://shop.test/health"
                       % address2)
    assert blocked.rc == 28, (blocked.rc, blocked.stderr)


def test_batch_too_large_or_unreachable_host_is_refused(host, apps):
    before = (host.file(UPSTREAM).content_string, [run_ids(a) for a in apps.values()])
    run = playbook("rollout", {"rollout_stack": "shop", "rollout_serial": 2})
    assert run.returncode != 0, run.stdout
    assert "the largest batch takes 2 out at once" in run.stdout, run.stdout
    assert "Nothing was changed." in run.stdout
    assert (host.file(UPSTREAM).content_string, [run_ids(a) for a in apps.values()]) == before
    # A third app host that cannot be reached (the loopback's discard port): refused, nothing changed.
    address = {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_connection": "ssh"}
    ghost = yaml.safe_dump({"all": {"children": {"composeops": {"hosts": {"multihost-ghost": address}},
                                                 "app": {"hosts": {"multihost-ghost": {}}},
                                                 "test": {"hosts": {"multihost-ghost": {}}}}}})
    run = playbook("rollout", {"rollout_stack": "shop"}, inventory_extra=ghost)
    assert run.returncode != 0, run.stdout
    assert re.search(r"multihost-ghost.*UNREACHABLE", run.stdout), run.stdout
    assert "TASK [Take the host out of the balancer]" not in run.stdout, run.stdout
    assert (host.file(UPSTREAM).content_string, [run_ids(a) for a in apps.values()]) == before


def test_hosts_on_different_releases_are_refused(host, apps, fixtures):
    app1, app2 = apps["multihost-app1"], apps["multihost-app2"]
    # app2 alone back to 1.0 (rollback.yml, gated on the host; the balancer keeps sending to it).
    run = playbook("rollback", {"rollback_stack": "shop", "rollback_to": 1}, limit="multihost-app2")
    assert run.returncode == 0, run.stdout
    assert app_images(app2) == [fixtures["images"]["app_v1"]] * 2
    before = (host.file(UPSTREAM).content_string, run_ids(app1), run_ids(app2))
    run = playbook("rollout", {"rollout_stack": "shop", "rollout_images": {"app": fixtures["images"]["app_v3"]}})
    assert run.returncode != 0, run.stdout
    assert "do not run the same release of shop" in run.stdout and "rollout_converge=true" in run.stdout, run.stdout
    assert (host.file(UPSTREAM).content_string, run_ids(app1), run_ids(app2)) == before


def test_second_host_failing_its_gate_rolls_back_the_first(host, apps, fixtures):
    # Told to converge the hosts (app1 on 2.0, app2 on 1.0) to 3.0; only the second host's gate
    # fails: it wants a /health answer the app never gives.
    app1, app2 = apps["multihost-app1"], apps["multihost-app2"]
    before = {name: releases(app)[-1]["id"] for name, app in apps.items()}
    gate = {"type": "http", "path": "/health", "port": 8000, "body": "never-in-this-answer", "retries": 3,
            "interval": 1}
    extra = yaml.safe_dump({"all": {"hosts": {"multihost-app2": {"compose_stack_rollout_gate": gate}}}})
    start_load(host, "second_fails", seconds=110)
    started = time.time()
    run = playbook("rollout", {"rollout_stack": "shop", "rollout_converge": True,
                               "rollout_images": {"app": fixtures["images"]["app_v3"]}}, inventory_extra=extra)
    assert run.returncode != 0, run.stdout
    print("rollout with a failing second host: %.1f s" % (time.time() - started))
    result = load_results(host, "second_fails", stop=True)
    # The summary names each host, its release before and now, and what failed.
    # (Ansible prints the message once as it is and once inside the task's JSON result.)
    summary = run.stdout[run.stdout.index("End the run failed"):].replace("\\n", "\n")
    run_id = re.search(r"Rollout (\S+) of shop", summary).group(1)
    assert re.search(r"multihost-app1: rolled back; shop %s -> \S+" % before["multihost-app1"], summary), summary
    same = before["multihost-app2"]
    assert re.search(r"multihost-app2: rolled back; shop %s -> %s" % (same, same), summary), summary
    assert re.search(r"^  what failed: .*gate", summary, re.M), summary
    # Each host serves what it served before, both in the balancer; not one request failed.
    assert app_images(app1) == [fixtures["images"]["app_v2"]] * 2
    assert app_images(app2) == [fixtures["images"]["app_v1"]] * 2
    assert all(not drained for _m, drained in members(host)), members(host)
    assert_no_failed_request(result, minimum=300)
    # The release history of both hosts shows the run: app1 went to 3.0 and back, app2's 3.0 was
    # rolled back by its gate.
    history1, history2 = releases(app1), releases(app2)
    assert [(r["result"], r["run_id"]) for r in history1[-2:]] == [("success", run_id)] * 2, history1
    assert history1[-2]["images"]["app"]["ref"] == fixtures["images"]["app_v3"]
    assert history1[-1]["images"]["app"]["ref"] == fixtures["images"]["app_v2"]
    assert (history2[-1]["result"], history2[-1]["run_id"]) == ("rolled_back", run_id), history2
