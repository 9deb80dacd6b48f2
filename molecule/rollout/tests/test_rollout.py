"""Rollouts of the demo stack (the scenarios' inventory) on its test host, in the order they run.

converge rolled app 1.0 to 2.0 under load; each test here runs a playbook of the collection
against the scenario's own inventory ($MOLECULE_INVENTORY_FILE) and checks the host after it.
Release history after the tests: 1.0 (prepare), 2.0 (converge), broken (rolled back),
3.0 (interrupted, then recovered), 1.0 again (rollback.yml to the 2nd previous release).
"""

import calendar
import json
import os
import re
import signal
import subprocess
import time

import pytest
import yaml

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(SCENARIO))
STACK = "/opt/stacks/demo"
UPSTREAM = "/etc/nginx/composeops/upstreams/demo_app.conf"
LOCK = "/var/lib/composeops/locks/demo.lock"
FIXTURES = os.path.join(
    os.environ.get("COMPOSEOPS_FIXTURES_STATE", os.path.expanduser("~/.cache/composeops/fixtures")),
    "fixtures.yml")


@pytest.fixture(scope="module")
def fixtures():
    with open(FIXTURES, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def site(host):
    """The site name from the inventory: the only target of the load generator."""
    sites = host.ansible.get_variables()["reverse_proxy_sites"]
    return sites[0]["domains"][0]


def playbook(name, *extra, background=False):
    """ansible-playbook playbooks/NAME.yml (or files/NAME.yml, the module alone) on the scenario's
    inventory, extra vars as JSON."""
    path = os.path.join(ROOT, "playbooks", name + ".yml")
    if not os.path.exists(path):
        path = os.path.join(SCENARIO, "files", name + ".yml")
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], path]
    for item in extra:
        argv += ["--check", "--diff"] if item == "--check" else ["-e", json.dumps(item)]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    if background:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, check=False)


def app_containers(host):
    """(name, id, image, ip on the frontend network) of the running app replicas, by name. One
    command: a replica that goes away between two commands cannot break it."""
    out = host.run(
        "docker ps -q --filter label=com.docker.compose.project=demo --filter label=com.docker.compose.service=app"
        " | xargs -r docker inspect -f '{{.Name}} {{.Id}} {{.Config.Image}}"
        " {{ (index .NetworkSettings.Networks \"demo_frontend\").IPAddress }}' 2>/dev/null").stdout
    return sorted(tuple([row[0].lstrip("/"), row[1][:12]] + row[2:]) for row in
                  (line.split() for line in out.splitlines()) if len(row) == 4)


def upstream_servers(host):
    return re.findall(r"^\s*server (\S+):8000 ", host.file(UPSTREAM).content_string, re.M)


def releases(host):
    """The release records of the stack, oldest first (ids start with their UTC time)."""
    ids = sorted(host.run("ls %s/.releases" % STACK).stdout.split())
    return [json.loads(host.file("%s/.releases/%s" % (STACK, f)).content_string)
            for f in ids if re.match(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]+\.json$", f)]


def start_load(host, site, label, seconds=30, slow=2, slow_seconds=25):
    host.check_output("systemd-run --unit=rollout-load-%s --collect /usr/local/bin/rollout-load %s %d %d /root/load/%s %d"
                      % (label, site, seconds, slow, label, slow_seconds))


def load_results(host, label, stop=False):
    """hey's figures and the slow requests (start, end, status, version), once the load of LABEL
    finished (bounded); ``stop`` ends it first."""
    if stop:
        host.check_output("touch /root/load/%s/stop" % label)
    for _attempt in range(120):
        if host.file("/root/load/%s/done" % label).exists:
            break
        time.sleep(1)
    report = host.file("/root/load/%s/hey.txt" % label).content_string
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", report)}
    errors = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]\s+Get ", report, re.M))
    slow = [(float(start), float(end), code, version)
            for start, end, code, version in (line.split() for line in host.check_output(
                "cat /root/load/%s/slow-*.txt" % label).splitlines())]
    return {"codes": codes, "errors": errors, "slow": slow, "report": report}


def assert_no_failed_request(result, minimum):
    total = sum(result["codes"].values())
    assert total >= minimum, result["report"]
    assert set(result["codes"]) == {200} and result["errors"] == 0, result["report"]
    assert result["slow"] and all(r[2] == "200" for r in result["slow"]), result["slow"]


def assert_serving(host, image, replicas=2):
    """REPLICAS replicas of IMAGE run, nginx sends to exactly them, nothing else is left."""
    apps = app_containers(host)
    assert [a[2] for a in apps] == [image] * replicas, apps
    assert upstream_servers(host) == [a[3] for a in apps]
    assert host.run("docker ps -a --filter label=com.docker.compose.project=demo --filter status=exited -q").stdout == ""
    assert not host.file(STACK + "/.releases/journal.json").exists


def rollout_metric(host):
    text = host.file("/var/lib/prometheus/node-exporter/composeops_rollout_demo.prom").content_string
    return int(re.search(r'^composeops_rollout_last_status\{stack="demo"\} (\d)$', text, re.M).group(1))


def test_rollout_under_load_drops_nothing(host, fixtures):
    result = load_results(host, "converge")
    assert_no_failed_request(result, minimum=300)
    assert_serving(host, fixtures["images"]["app_v2"])
    history = releases(host)
    assert [r["result"] for r in history] == ["success", "success"]
    assert history[-1]["images"]["app"]["ref"] == fixtures["images"]["app_v2"]
    assert host.check_output("curl -sk https://demo.localhost/version") == "2.0"
    assert rollout_metric(host) == 1


def test_never_healthy_image_is_rolled_back(host, site, fixtures):
    before = app_containers(host)
    upstream = host.file(UPSTREAM).content_string
    start_load(host, site, "broken", seconds=60, slow=2, slow_seconds=10)
    # An HTTP gate this time (converge used the image's HEALTHCHECK): the broken build answers
    # 503 on /health from its first second, so it fails after its retries, not the HEALTHCHECK's
    # start period.
    gate = {"type": "http", "path": "/health", "port": 8000, "retries": 8, "interval": 1}
    run = playbook("rollout", {"rollout_stack": "demo", "compose_stack_rollout_gate": gate,
                               "rollout_images": {"app": fixtures["images"]["app_broken"]}})
    assert run.returncode != 0, run.stdout
    # The failure names the service, the probe and what the container said.
    assert "service 'app'" in run.stdout and "/health" in run.stdout and "503" in run.stdout, run.stdout
    assert "health check failing on purpose" in run.stdout, run.stdout
    # The gate's progress was printed while it ran (the action plugin), not only in the result.
    assert re.search(r"^rollout-debian13 \| \S+Z demo: app: gate of demo-app-\d+: ", run.stdout, re.M), run.stdout
    assert app_containers(host) == before
    assert host.file(UPSTREAM).content_string == upstream
    assert releases(host)[-1]["result"] == "rolled_back"
    # For the RolloutFailed alert: node_exporter's textfile directory says so.
    assert rollout_metric(host) == 0
    assert_no_failed_request(load_results(host, "broken", stop=True), minimum=150)


def write_lock(host, **holder):
    boot_id = host.file("/proc/sys/kernel/random/boot_id").content_string.strip()
    lock = dict({"token": "another-run", "boot_id": boot_id, "host": "rollout-debian13", "who": "someone-else",
                 "started": time.time(), "expires": time.time() + 600}, **holder)
    host.check_output("mkdir -p %s && echo '%s' > %s" % (os.path.dirname(LOCK), json.dumps(lock), LOCK))


def test_deploy_lock_held_then_dead(host, fixtures):
    # Another playbook run holds the lock between its tasks (no pid): rollout.yml waits, then fails
    # before it writes a file (the role takes the lock before its first file, not only the module).
    files = "sha256sum %s/*.yaml %s/.env" % (STACK, STACK)
    before = host.check_output(files)
    write_lock(host, pid=None)
    run = playbook("rollout", {"rollout_stack": "demo", "compose_stack_rollout_lock_timeout": 3,
                               "rollout_images": {"app": fixtures["images"]["app_v3"]}})
    assert run.returncode != 0
    assert "being deployed by someone-else since" in run.stdout and "(a playbook run on" in run.stdout, run.stdout
    assert host.check_output(files) == before
    # A module run holds it (a live process): the module alone waits, then fails.
    holder = host.check_output("systemd-run --unit=rollout-lock-holder --collect -p Type=exec sleep 300"
                               " >/dev/null 2>&1; systemctl show -P MainPID rollout-lock-holder")
    write_lock(host, pid=int(holder))
    run = playbook("module", {"rollout_lock_timeout": 3})
    assert run.returncode != 0
    assert "being deployed by someone-else" in run.stdout, run.stdout
    # Its holder dies: the next run takes the lock over at once and finds nothing to change.
    host.check_output("systemctl stop rollout-lock-holder")
    run = playbook("module")
    assert run.returncode == 0, run.stdout
    assert re.search(r"changed=0 ", run.stdout), run.stdout
    assert not host.file(LOCK).exists


def test_interrupted_rollout_is_recovered(host, fixtures):
    job = playbook("module", {"rollout_images": {"app": fixtures["images"]["app_v3"]}}, background=True)
    try:
        # Kill the controller and the module on the host once new replicas run beside the old ones.
        for _attempt in range(180):
            if len(app_containers(host)) > 2 and host.file(LOCK).exists:
                break
            time.sleep(1)
        else:
            job.kill()
            pytest.fail("no new replica appeared: %s" % job.communicate(timeout=30)[0])
        pid = json.loads(host.file(LOCK).content_string)["pid"]
        os.killpg(job.pid, signal.SIGKILL)
        host.run("kill -9 %d" % pid)
    finally:
        job.wait(30)
    run = playbook("module", {"rollout_images": {"app": fixtures["images"]["app_v3"]}})
    assert run.returncode == 0, run.stdout
    assert "recovered an interrupted rollout" in run.stdout, run.stdout
    assert_serving(host, fixtures["images"]["app_v3"])
    results = [r["result"] for r in releases(host)]
    assert results[-2:] == ["interrupted", "success"], results


def test_rollback_to_the_second_previous_release(host, site, fixtures):
    # Check mode first: the plan, and nothing changes.
    before = app_containers(host)
    run = playbook("rollback", {"rollback_stack": "demo", "rollback_to": 2}, "--check")
    assert run.returncode == 0, run.stdout
    assert fixtures["images"]["app_v1"] in run.stdout, run.stdout
    assert app_containers(host) == before
    # The 2nd previous successful release before 3.0 (current) is 1.0 (2.0 is the previous one),
    # under load: 4 slots of 12 s requests, staggered by 3 s, so that at the switch one of them
    # has been in flight on a 3.0 replica for 3 to 6 s and ends after the drain (5 s) is over.
    start_load(host, site, "rollback", seconds=60, slow=4, slow_seconds=12)
    run = playbook("rollback", {"rollback_stack": "demo", "rollback_to": 2})
    assert run.returncode == 0, run.stdout
    assert_serving(host, fixtures["images"]["app_v1"])
    assert host.check_output("curl -sk https://demo.localhost/version") == "1.0"
    result = load_results(host, "rollback", stop=True)
    assert_no_failed_request(result, minimum=100)
    # A request the old version answered while `docker stop` had already been sent to it: it
    # ended after the drain that follows the switch (whole-second stamps: one second more).
    drain = re.search(r"^rollout-debian13 \| (\S+Z) demo: app: draining \S.* for ([0-9.]+)s$", run.stdout, re.M)
    assert drain, run.stdout
    stop_sent = calendar.timegm(time.strptime(drain.group(1), "%Y-%m-%dT%H:%M:%SZ")) + 1 + float(drain.group(2))
    assert [r for r in result["slow"] if r[3] == "3.0" and r[1] > stop_sent], (stop_sent, result["slow"])


def test_check_mode_changes_nothing(host, fixtures):
    before = (app_containers(host), host.file(UPSTREAM).content_string,
              host.check_output("ls %s/.releases" % STACK), host.check_output("sha256sum %s/*.yaml" % STACK))
    run = playbook("rollout", {"rollout_stack": "demo", "rollout_images": {"app": fixtures["images"]["app_broken"]}},
                   "--check")
    assert run.returncode == 0, run.stdout
    after = (app_containers(host), host.file(UPSTREAM).content_string,
             host.check_output("ls %s/.releases" % STACK), host.check_output("sha256sum %s/*.yaml" % STACK))
    assert after == before
