"""Unit tests of compose_rollout's logic, driven by outputs recorded on Docker 20.10.24 with
Compose 2.26.1 (Debian 13's docker-compose): tests/unit/fixtures/rollout/. The recorded project
is fixtures/rollout/compose.yaml (web: app 1.0 x2 then 2.0, cache: Redis on a fixed host port,
broken: the never-healthy app, crash: exits 3)."""

import json
from pathlib import Path

import jinja2
import pytest

from ansible.plugins.filter.core import comment
from ansible_collections.composeops.platform.plugins.module_utils import _rollout as ro

FIXTURES = Path(__file__).parent / "fixtures" / "rollout"
ROOT = Path(__file__).resolve().parents[2]


def _read(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


def _config(version):
    return json.loads(_read("config_%s.json" % version))


def _hashes(version):
    return ro.parse_config_hash(_read("config_hash_%s.txt" % version))


def _containers(name):
    return ro.parse_inspect(_read("inspect_%s.json" % name))


def _by_name(containers):
    return dict((c["name"], c) for c in containers)


# --- Recorded facts --------------------------------------------------------------------------------


def test_label_equals_config_hash_after_plain_up():
    hashes = _hashes("v1")
    for c in _containers("v1"):
        assert c["config_hash"] == hashes[c["service"]], c["name"]


def test_scaled_up_replicas_carry_the_new_hash_and_old_ones_stay():
    v1, v2 = _hashes("v1"), _hashes("v2")
    web = [c for c in _containers("scaled") if c["service"] == "web"]
    assert sorted((c["name"], c["config_hash"] == v2["web"], c["config_hash"] == v1["web"]) for c in web) == [
        ("rodemo-web-1", False, True), ("rodemo-web-2", False, True),
        ("rodemo-web-3", True, False), ("rodemo-web-4", True, False)]


def test_no_deps_hashes_the_service_without_its_dependencies():
    """Recorded: `up --no-deps --no-recreate --scale web=4 web` labelled the new replicas with the
    hash of web without depends_on (config_hash_v2_nodeps_web.txt), not `config --hash`: this is
    why the module never passes --no-deps."""
    nodeps = ro.parse_config_hash(_read("config_hash_v2_nodeps_web.txt"))["web"]
    assert nodeps != _hashes("v2")["web"]
    assert "Running" in _read("up_scale_deps.err") and "rodemo-cache-1" in _read("up_scale_deps.err")


def test_parse_ps_ids():
    assert len(ro.parse_ps_ids(_read("ps_q_v1.txt"))) == 5
    assert ro.parse_ps_ids("\n") == []


def test_normalise_container_fields():
    c = _by_name(_containers("scaled"))["rodemo-web-3"]
    assert c["service"] == "web" and c["project"] == "rodemo" and c["number"] == 3 and not c["oneoff"]
    assert c["running"] and c["state"] == "running" and c["health"] == "starting"
    assert c["image"] == "127.0.0.1:15000/fixtures/app:2.0"
    assert c["image_id"].startswith("sha256:0e8a6a71")
    assert c["networks"] == {"rodemo_back": "172.19.0.5", "rodemo_front": "172.20.0.5"}
    assert c["stop_timeout"] == 15


def test_states_of_exited_unhealthy_starting():
    exited = ro.parse_inspect(_read("inspect_exited.json"))[0]
    assert exited["state"] == "exited" and exited["exit_code"] == 3 and not exited["running"]
    unhealthy = ro.parse_inspect(_read("inspect_unhealthy.json"))[0]
    assert unhealthy["health"] == "unhealthy"
    assert unhealthy["health_log"] and unhealthy["health_log"][-1]["exit_code"] == 1
    starting = [c for c in _containers("starting") if c["service"] == "web"]
    assert all(c["health"] == "starting" for c in starting)


def test_image_digest_from_repo_digests():
    images = json.loads(_read("image_inspect_app.json"))
    digest = ro.image_digest(images[0], "127.0.0.1:15000/fixtures/app:1.0")
    assert digest.startswith("127.0.0.1:15000/fixtures/app@sha256:")
    assert ro.image_digest({"RepoDigests": []}, "x:1") == ""
    assert ro.pin_digest("127.0.0.1:15000/fixtures/app:1.0", digest) == digest
    assert ro.strip_tag("registry:5000/a/b:1.0@sha256:ab") == "registry:5000/a/b"
    assert ro.strip_tag("redis") == "redis"


# --- Commands ------------------------------------------------------------------------------------


def test_compose_commands_carry_files_and_env_files_by_path():
    base = ro.compose_base("docker", "shop", "/opt/stacks/shop", ["compose.yaml", "compose.rollout.yaml"], [".env"])
    assert base == ["docker", "compose", "-p", "shop", "--project-directory", "/opt/stacks/shop",
                    "-f", "/opt/stacks/shop/compose.yaml", "-f", "/opt/stacks/shop/compose.rollout.yaml",
                    "--env-file", "/opt/stacks/shop/.env"]
    scale = ro.up_scale_command(base, "web", 4, "missing")
    assert "--no-deps" not in scale and scale[-3:] == ["--scale", "web=4", "web"]
    recreate = ro.up_recreate_command(base, "db", 300, "never")
    assert "--no-deps" not in recreate and recreate[-4:] == ["--wait", "--wait-timeout", "300", "db"]
    assert ro.hash_command(base)[-3:] == ["config", "--hash", "*"]


# --- Plan ----------------------------------------------------------------------------------------


def _plan(config="v2", hashes="v2", containers="v1", **options):
    return ro.plan(_config(config), _hashes(hashes), _containers(containers), options)


def test_plan_unchanged_when_hashes_match():
    result = _plan("v1", "v1", "v1")
    # crash exited: it has no running container, so it is (re)started
    assert [s["service"] for s in result["steps"]] == ["crash"]
    assert result["unchanged"] == ["broken", "cache", "web"]


def test_plan_rolling_web_with_upstream_and_recreate_others():
    result = _plan(upstreams=["web"])
    steps = dict((s["service"], s) for s in result["steps"])
    web = steps["web"]
    assert web["strategy"] == "rolling" and web["upstream"]
    assert [c["name"] for c in web["old"]] == ["rodemo-web-1", "rodemo-web-2"]
    assert [[c["name"] for c in b] for b in web["batches"]] == [["rodemo-web-1", "rodemo-web-2"]]
    assert web["reason"] == "config changed on rodemo-web-1, rodemo-web-2"
    assert steps["crash"]["strategy"] == "recreate" and [c["name"] for c in steps["crash"]["remove"]] == ["rodemo-crash-1"]


def test_plan_without_upstream_recreates():
    steps = dict((s["service"], s) for s in _plan()["steps"])
    assert steps["web"]["strategy"] == "recreate" and steps["web"]["batches"] == []


def test_plan_order_follows_depends_on():
    config = _config("v2")
    assert ro.dependency_order(config) == ["broken", "cache", "crash", "web"]
    config["services"]["cache"]["depends_on"] = {"web": {}}
    config["services"]["web"]["depends_on"] = {}
    assert ro.dependency_order(config).index("web") < ro.dependency_order(config).index("cache")
    config["services"]["web"]["depends_on"] = {"cache": {}}
    with pytest.raises(ro.RolloutError, match="cycle"):
        ro.dependency_order(config)


def test_plan_surge_batches():
    result = _plan(upstreams=["web"], services={"web": {"surge": 1}})
    web = [s for s in result["steps"] if s["service"] == "web"][0]
    assert [[c["name"] for c in b] for b in web["batches"]] == [["rodemo-web-1"], ["rodemo-web-2"]]


def test_plan_new_service_is_started():
    config = _config("v2")
    config["services"]["api"] = dict(config["services"]["web"], depends_on={})
    hashes = dict(_hashes("v2"), api="0" * 64)
    result = ro.plan(config, hashes, _containers("v1"), {"upstreams": ["api", "web"]})
    api = [s for s in result["steps"] if s["service"] == "api"][0]
    assert api["strategy"] == "start" and api["reason"] == "no running container" and api["old"] == []


def test_plan_after_the_switch_is_unchanged_for_web():
    after = _containers("after")
    result = ro.plan(_config("v2"), _hashes("v2"), after, {"upstreams": ["web"]})
    assert "web" in result["unchanged"]


def test_plan_refusals_are_named_together():
    with pytest.raises(ro.RolloutError) as err:
        _plan("v2", "v2", "v1", upstreams=["web"], stateful=["cache"],
              services={"cache": {"strategy": "rolling"}, "web": {"surge": 0}, "nope": {}})
    msg = str(err.value)
    assert msg.startswith("rollout refused, nothing was changed: ")
    assert "services.nope: no such service" in msg
    # cache is unchanged: no refusal for it; web: surge 0
    assert "cache" not in msg.replace("services: broken, cache", "")
    assert "surge must be at least 1" in msg
    with pytest.raises(ro.RolloutError) as err:
        ro.plan(_config("v2"), dict(_hashes("v2"), cache="x"), _containers("v1"),
                {"stateful": ["cache"], "services": {"cache": {"strategy": "rolling"}}})
    msg = str(err.value)
    assert "fixed host port (127.0.0.1:16379->6379)" in msg and "cache is stateful" in msg


def test_plan_refuses_docker_gate_without_healthcheck():
    config = _config("v2")
    config["services"]["web"]["healthcheck"] = {"disable": True}
    with pytest.raises(ro.RolloutError, match="web has no healthcheck"):
        ro.plan(config, _hashes("v2"), _containers("v1"), {"upstreams": ["web"]})
    # another gate is fine
    result = ro.plan(config, _hashes("v2"), _containers("v1"),
                     {"upstreams": ["web"], "services": {"web": {"gate": {"type": "http", "port": 8000, "path": "/version"}}}})
    web = [s for s in result["steps"] if s["service"] == "web"][0]
    assert web["gate"]["type"] == "http" and web["gate"]["retries"] == 30 and web["gate"]["successes"] == 2


def test_has_healthcheck_from_image():
    assert ro.has_healthcheck({}, {"Test": ["CMD", "true"]}) is True
    assert ro.has_healthcheck({}, {"Test": ["NONE"]}) is False
    assert ro.has_healthcheck({}, None) is None
    assert ro.has_healthcheck({"healthcheck": {"test": ["CMD", "x"]}}) is True


def test_publishes_fixed_port():
    assert ro.publishes_fixed_port(_config("v1")["services"]["cache"]) == ["127.0.0.1:16379->6379"]
    assert ro.publishes_fixed_port({"ports": [{"target": 8000, "published": ""}]}) == []
    assert ro.publishes_fixed_port(_config("v1")["services"]["web"]) == []


def test_new_containers_are_after_minus_before():
    before = ro.parse_ps_ids(_read("ps_q_v1.txt"))
    new = ro.new_containers(before, _containers("scaled"), "web")
    assert [c["name"] for c in new] == ["rodemo-web-3", "rodemo-web-4"]


def test_internal_networks():
    assert ro.internal_networks(_config("v1")) == ["rodemo_back"]


# --- Gates ---------------------------------------------------------------------------------------


def test_gate_needs_consecutive_successes():
    gate = ro.Gate(retries=3, successes=2)
    assert gate.observe(True) == "pending"
    assert gate.observe(False) == "pending"
    assert gate.observe(True) == "pending"
    assert gate.observe(True) == "passed"
    assert gate.observe(False) == "passed"


def test_gate_tolerates_retries_failures_then_fails():
    gate = ro.Gate(retries=2, successes=1)
    assert [gate.observe(False, "refused") for dummy in range(3)] == ["pending", "pending", "failed"]
    assert gate.last == "refused"


def test_gate_fatal_fails_at_once():
    gate = ro.Gate(retries=30, successes=2)
    assert gate.observe(False, "is unhealthy", fatal=True) == "failed"


def test_container_verdicts_from_recorded_states():
    assert ro.container_verdict(ro.parse_inspect(_read("inspect_unhealthy.json"))[0]) == "is unhealthy"
    assert ro.container_verdict(ro.parse_inspect(_read("inspect_exited.json"))[0]) == "exited with code 3"
    for c in _containers("starting"):
        if c["service"] == "web":
            assert ro.container_verdict(c) is None


def test_docker_probe():
    healthy = _by_name(_containers("v1"))["rodemo-web-1"]
    assert ro.docker_probe(healthy) == (True, "healthy", False)
    starting = _by_name(_containers("scaled"))["rodemo-web-3"]
    assert ro.docker_probe(starting) == (False, "health: starting", False)
    none = dict(healthy, health="")
    assert ro.docker_probe(none)[2] is True


def test_http_probe_status_and_body():
    gate = dict(ro.GATE_DEFAULTS, type="http", port=8000, path="/version", body=r"^2\.")
    assert ro.http_probe(lambda url, t: (200, "2.0\n"), "172.20.0.5", gate) == (True, "GET http://172.20.0.5:8000/version: 200")
    ok, detail = ro.http_probe(lambda url, t: (200, "1.0\n"), "172.20.0.5", gate)
    assert not ok and "body does not match" in detail
    ok, detail = ro.http_probe(lambda url, t: (503, ""), "172.20.0.5", gate)
    assert not ok and "status 503 (want 200)" in detail

    def refuse(url, timeout):
        raise OSError("connection refused")
    ok, detail = ro.http_probe(refuse, "172.20.0.5", gate)
    assert not ok and detail.endswith("connection refused")


def test_tcp_probe_closed_port():
    ok, detail = ro.tcp_probe("127.0.0.1", 9, 0.5)
    assert not ok and detail.startswith("tcp 127.0.0.1:9:")


def test_gate_failure_message_wording():
    broken = ro.parse_inspect(_read("inspect_unhealthy.json"))[0]
    logs = ro.clean_log(_read("logs_broken.txt"), 2)
    msg = ro.gate_failure_message("rodemo", "broken", broken, "docker HEALTHCHECK", "is unhealthy", logs)
    first = msg.splitlines()[0]
    assert first == ("Rollout of stack 'rodemo' rolled back: new replica rodemo-broken-1 of service 'broken' failed "
                     "its gate (docker HEALTHCHECK): is unhealthy. The new replicas were removed; the old ones kept "
                     "serving and the upstream was not changed.")
    assert "Last health checks of rodemo-broken-1:\n  | exit code 1: unhealthy: HTTP Error 503" in msg
    assert msg.endswith("Last 2 log lines of rodemo-broken-1:\n  | health check failing on purpose: this is the broken build\n"
                        "  | health check failing on purpose: this is the broken build")
    assert ro.describe_gate(dict(ro.GATE_DEFAULTS, type="http", port=8000, path="/health"), "10.0.0.2") == \
        "http GET http://10.0.0.2:8000/health expecting 200"


# --- Upstream files ----------------------------------------------------------------------------


def _render_role_template(addresses, port=8000):
    """roles/reverse_proxy/templates/upstream.conf.j2 as the template module renders it."""
    env = jinja2.Environment(trim_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters["comment"] = comment
    source = (ROOT / "roles" / "reverse_proxy" / "templates" / "upstream.conf.j2").read_text(encoding="utf-8")
    item = {"service": "web", "stack": "rodemo", "upstream": "rodemo_web", "port": port}
    replicas = {"rodemo_web": addresses} if addresses else {}
    return env.from_string(source).render(ansible_managed="Ansible managed", item=item,
                                          _reverse_proxy_replicas=replicas, reverse_proxy_upstream_keepalive=16)


def test_rewrite_equals_the_role_rendering_after_the_switch():
    before = _render_role_template(["172.20.0.2", "172.20.0.3"])
    after_containers = [c for c in _containers("after") if c["service"] == "web"]
    network = ro.upstream_network(after_containers, ro.listed_ips(before), ro.internal_networks(_config("v2")))
    assert network == "rodemo_front"
    addresses = ro.upstream_addresses(after_containers, network)
    by = _by_name(after_containers)
    assert addresses == [by["rodemo-web-3"]["networks"]["rodemo_front"], by["rodemo-web-4"]["networks"]["rodemo_front"]]
    assert ro.render_upstream(before, addresses) == _render_role_template(addresses)


def test_rewrite_from_and_to_the_placeholder():
    empty = _render_role_template([])
    assert ro.PLACEHOLDER_SERVER in empty
    with pytest.raises(ro.RolloutError, match="port option"):
        ro.render_upstream(empty, ["10.0.0.2"])
    assert ro.render_upstream(empty, ["10.0.0.2", "10.0.0.3"], port=8000) == _render_role_template(["10.0.0.2", "10.0.0.3"])
    assert ro.render_upstream(_render_role_template(["10.0.0.2"]), []) == empty


def test_rewrite_keeps_other_lines_and_params():
    text = "upstream x {\n  server 10.0.0.1:9000 weight=2;   # old\n  server 10.0.0.9:9000 weight=2;\n  keepalive 4;\n}\n"
    assert ro.render_upstream(text, ["10.0.0.5"]) == "upstream x {\n  server 10.0.0.5:9000 weight=2;\n  keepalive 4;\n}\n"
    assert ro.render_upstream(text, ["10.0.0.5"], port=81) == "upstream x {\n  server 10.0.0.5:81 weight=2;\n  keepalive 4;\n}\n"
    with pytest.raises(ro.RolloutError):
        ro.render_upstream("upstream x {\n}\n", ["10.0.0.5"], port=1)


def test_network_choice():
    web3 = _by_name(_containers("scaled"))["rodemo-web-3"]
    internal = ro.internal_networks(_config("v1"))
    assert ro.choose_network(web3, [], internal) == "rodemo_front"
    assert ro.choose_network(web3, ["172.19.0.5"], internal) == "rodemo_back"
    assert ro.choose_network(web3, [], []) == "rodemo_back"
    old = [c for c in _containers("v1") if c["service"] == "web"]
    listed = [old[0]["networks"]["rodemo_front"]]
    assert ro.upstream_network(old, listed, []) == "rodemo_front"


def test_upstream_addresses_sorted_by_name_running_only():
    web = [c for c in _containers("scaled") if c["service"] == "web"]
    by = _by_name(web)
    stopped = dict(by["rodemo-web-1"], running=False)
    addresses = ro.upstream_addresses([by["rodemo-web-4"], stopped, by["rodemo-web-3"], by["rodemo-web-2"]], "rodemo_front")
    assert addresses == [by[n]["networks"]["rodemo_front"] for n in ("rodemo-web-2", "rodemo-web-3", "rodemo-web-4")]


def test_sort_matches_the_role_for_ten_replicas():
    names = ["s-web-%d" % i for i in (1, 2, 10)]
    containers = [{"name": n, "running": True, "networks": {"n": "10.0.0.%d" % i}} for i, n in enumerate(names)]
    # string order, as the role's sort(attribute='Name') on "/s-web-N"
    assert ro.upstream_addresses(containers, "n") == ["10.0.0.0", "10.0.0.2", "10.0.0.1"]


# --- Lock ----------------------------------------------------------------------------------------


# --- Journal recovery ---------------------------------------------------------------------------


def _ids(containers, *names):
    by = _by_name(containers)
    return [by[n]["id"] for n in names]


def test_recovery_started_removes_new_keeps_old():
    scaled = _containers("scaled")
    journal = {"release": "r", "service": "web", "phase": "started", "old": _ids(scaled, "rodemo-web-1", "rodemo-web-2"), "new": []}
    actions = ro.recovery_actions(journal, scaled)
    assert sorted(actions["remove"]) == sorted(_ids(scaled, "rodemo-web-3", "rodemo-web-4"))
    assert sorted(actions["serving"]) == sorted(_ids(scaled, "rodemo-web-1", "rodemo-web-2"))
    assert actions["retire"] == []


def test_recovery_switched_retires_old_serves_new():
    scaled = _containers("scaled")
    journal = {"release": "r", "service": "web", "phase": "switched", "old": _ids(scaled, "rodemo-web-1", "rodemo-web-2"),
               "new": _ids(scaled, "rodemo-web-3", "rodemo-web-4")}
    actions = ro.recovery_actions(journal, scaled)
    assert sorted(actions["retire"]) == sorted(_ids(scaled, "rodemo-web-1", "rodemo-web-2"))
    assert sorted(actions["serving"]) == sorted(_ids(scaled, "rodemo-web-3", "rodemo-web-4"))
    assert actions["remove"] == []


def test_recovery_after_old_ones_are_gone():
    after = _containers("after")
    journal = {"release": "r", "service": "web", "phase": "switched", "old": ["gone1", "gone2"],
               "new": _ids(after, "rodemo-web-3", "rodemo-web-4")}
    actions = ro.recovery_actions(journal, after)
    assert actions["retire"] == [] and len(actions["serving"]) == 2


def test_recovery_of_recreate_touches_nothing():
    actions = ro.recovery_actions({"service": "cache", "phase": "started", "strategy": "recreate", "old": []}, _containers("v1"))
    assert actions["remove"] == [] and actions["retire"] == [] and len(actions["serving"]) == 1


# --- Override file, diff -------------------------------------------------------------------------


def test_override_round_trip_and_merge():
    data = ro.merge_override({}, {"web": "app:2.0"})
    text = ro.render_override(data)
    assert text.startswith("# ")
    assert ro.parse_override(text) == {"services": {"web": {"image": "app:2.0"}}}
    merged = ro.merge_override(ro.parse_override(text), {"worker": "w:1"})
    assert merged == {"services": {"web": {"image": "app:2.0"}, "worker": {"image": "w:1"}}}
    assert ro.parse_override("services:\n  web:\n    image: a:1\n") == {"services": {"web": {"image": "a:1"}}}
    assert ro.parse_override("") == {}


def test_diff_and_actions():
    result = _plan(upstreams=["web"])
    d = ro.diff(result["steps"], _containers("v1"), _config("v2"))
    assert d["before"]["web"] == "127.0.0.1:15000/fixtures/app:1.0"
    assert d["after"]["web"] == "127.0.0.1:15000/fixtures/app:2.0"
    actions = ro.planned_actions(result["steps"])
    assert actions["web"]["old"] == ["rodemo-web-1", "rodemo-web-2"] and actions["web"]["replicas"] == 2


# --- The module end to end, docker answered from recorded outputs ---------------------------------

from ansible.module_utils import basic  # noqa: E402
from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.composeops.platform.plugins.action import compose_rollout as action  # noqa: E402
from ansible_collections.composeops.platform.plugins.modules import compose_rollout, compose_release_info  # noqa: E402


class Exit(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


# The recorded states the fake docker answers with: (config and hashes, inspect, services left out).
STATES = {"v1": ("v1", "v1", ()), "after": ("v2", "after", ("crash", "broken"))}


def _fake_docker(calls, version="v1"):
    config_version, inspect_version, drop = STATES[version]
    inspect = [c for c in json.loads(_read("inspect_%s.json" % inspect_version))
               if c["Config"]["Labels"]["com.docker.compose.service"] not in drop]
    config = _config(config_version)
    for name in drop:
        del config["services"][name]
    hashes = "".join("%s %s\n" % kv for kv in sorted(_hashes(config_version).items()) if kv[0] not in drop)
    images = json.loads(_read("image_inspect_app.json"))

    def run_command(self, argv, **kwargs):
        calls.append(list(argv))
        if "config" in argv and "--hash" in argv:
            return 0, hashes, ""
        if "config" in argv:
            return 0, json.dumps(config), ""
        if argv[1] == "ps":
            return 0, "".join(c["Id"] + "\n" for c in inspect), ""
        if argv[1:3] == ["image", "inspect"]:
            if "--format" in argv:
                return 0, json.dumps({"Test": ["CMD", "true"]}) + "\n", ""
            return 0, json.dumps([i for i in images if i["Id"] in argv]), ""
        if argv[1] == "inspect":
            return 0, json.dumps([c for c in inspect if c["Id"] in argv]), ""
        raise AssertionError("unexpected command %s" % argv)
    return run_command


def _run(monkeypatch, module, args, calls, version="v1", check=False):
    def exit_json(self, **result):
        raise Exit(False, result)

    def fail_json(self, msg, **result):
        raise Exit(True, dict(result, msg=msg))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", _fake_docker(calls, version))
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, w: warnings.append(w))
    warnings = []
    if check:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(Exit) as exc:
            module.main()
    return exc.value, warnings


@pytest.fixture(name="stack")
def fixture_stack(tmp_path):
    project = tmp_path / "rodemo"
    project.mkdir()
    (project / "compose.yaml").write_text(_read("compose.yaml"))
    (project / ".env").write_text("WEB_TAG=1.0\nMESSAGE=s3cr3t-message\n")
    return {"project_dir": str(project), "env_files": [".env"], "lock_dir": str(tmp_path / "locks"),
            "progress_file": str(tmp_path / "log" / "rollout.log"), "upstreams_dir": str(tmp_path / "up"),
            "who": "alice"}


def test_module_records_the_running_state_once(monkeypatch, stack):
    calls = []
    args = dict(stack)
    exc, dummy = _run(monkeypatch, compose_rollout, args, calls, version="after")
    assert not exc.failed, exc.result["msg"]
    assert exc.result["changed"] is True
    record = exc.result["release"]
    assert record["result"] == "success" and record["who"] == "alice" and record["files"] == ["compose.yaml", ".env"]
    assert record["images"]["web"]["ref"] == "127.0.0.1:15000/fixtures/app:2.0"
    assert "s3cr3t" not in json.dumps(exc.result) and all("s3cr3t" not in " ".join(c) for c in calls)
    assert not any("--no-deps" in c for c in calls)
    exc, dummy = _run(monkeypatch, compose_rollout, args, [], version="after")
    assert exc.result["changed"] is False and exc.result["release"]["id"] == record["id"]
    info, dummy = _run(monkeypatch, compose_release_info, {"project_dir": stack["project_dir"], "release": "0"}, [])
    assert info.result["current"] == record["id"] and info.result["release"]["id"] == record["id"]
    assert [r["result"] for r in info.result["releases"]] == ["success"]


def test_module_check_mode_plans_and_changes_nothing(monkeypatch, stack, tmp_path):
    calls = []
    exc, dummy = _run(monkeypatch, compose_rollout, dict(stack, images={"web": "127.0.0.1:15000/fixtures/app:2.0"}),
                      calls, version="v1", check=True)
    assert not exc.failed, exc.result["msg"]
    assert exc.result["changed"] is True
    assert exc.result["plan"]["crash"]["strategy"] == "recreate"
    assert not (Path(stack["project_dir"]) / ".releases").exists()
    assert not (Path(stack["project_dir"]) / "compose.rollout.yaml").exists()
    assert not (tmp_path / "locks").exists() and not (tmp_path / "log").exists()
    assert not any(c[1] in ("rm", "stop") or "up" in c for c in calls)


def test_check_mode_answer_is_final_only_when_nothing_waits(monkeypatch, stack, tmp_path):
    """The action plugin returns a check-mode answer as the run's result when it is settled: what
    the real run would return, with nothing to recover and no other run's lock to wait for."""
    args = dict(stack)
    record = _run(monkeypatch, compose_rollout, args, [], version="after")[0].result["release"]
    exc, dummy = _run(monkeypatch, compose_rollout, args, [], version="after", check=True)
    assert exc.result["changed"] is False and exc.result["release"]["id"] == record["id"]
    assert action.settled(exc.result)
    # Another run holds the lock: the real run would wait for it, so the answer is not final.
    locks = tmp_path / "locks"
    (locks / "rodemo.lock").write_text(json.dumps({"token": "theirs", "pid": None, "who": "bob", "started": 0,
                                                   "expires": 4102444800}))
    exc, dummy = _run(monkeypatch, compose_rollout, args, [], version="after", check=True)
    assert exc.result["changed"] is False and "being deployed by bob" in exc.result["locked_by"]
    assert not action.settled(exc.result)
    # Held by the caller itself (the role's lock_token): final again.
    exc, dummy = _run(monkeypatch, compose_rollout, dict(args, lock_token="theirs"), [], version="after", check=True)
    assert "locked_by" not in exc.result and action.settled(exc.result)
    (locks / "rodemo.lock").unlink()
    # An interrupted rollout's journal: the real run would recover it, a change.
    journal = Path(stack["project_dir"]) / ".releases" / "journal.json"
    journal.write_text(json.dumps({"release": record["id"], "service": "web", "phase": "started", "old": [], "new": []}))
    exc, dummy = _run(monkeypatch, compose_rollout, args, [], version="after", check=True)
    assert exc.result["changed"] is True and not action.settled(exc.result)
    assert journal.exists()


def test_module_refuses_images_of_unknown_services(monkeypatch, stack):
    exc, dummy = _run(monkeypatch, compose_rollout, dict(stack, images={"nope": "x:1"}), [], check=True)
    assert exc.failed and "images for unknown services: nope (services: broken, cache, crash, web)" in exc.result["msg"]


def test_module_refuses_before_any_change(monkeypatch, stack):
    calls = []
    exc, dummy = _run(monkeypatch, compose_rollout, dict(stack, services={"crash": {"strategy": "rolling", "surge": "0"}}),
                      calls, version="v1")
    assert exc.failed
    assert exc.result["msg"] == ("rollout of stack rodemo failed: rollout refused, nothing was changed: service crash: "
                                 "surge must be at least 1 (got 0)")
    assert not any(c[1] in ("rm", "stop") or "up" in c for c in calls)
    assert not (Path(stack["project_dir"]) / ".releases").exists()
    exc, dummy = _run(monkeypatch, compose_rollout, dict(stack, services={"web": {"surge": "x"}}), [], version="v1")
    assert exc.failed and exc.result["msg"].endswith("services.web.surge must be a number (got 'x')")


def test_module_waits_for_a_live_lock_then_fails(monkeypatch, stack, tmp_path):
    import os
    locks = tmp_path / "locks"
    locks.mkdir()
    with open("/proc/sys/kernel/random/boot_id") as handle:
        boot = handle.read().strip()
    (locks / "rodemo.lock").write_text(json.dumps({"pid": os.getpid(), "boot_id": boot, "host": "h", "who": "bob",
                                                   "started": 0, "expires": 4102444800}))
    exc, dummy = _run(monkeypatch, compose_rollout, dict(stack, lock_timeout=0), [])
    assert exc.failed
    assert "stack rodemo is being deployed by bob since 1970-01-01T00:00:00Z (pid %d on h, expires at 2100-01-01T00:00:00Z)" % os.getpid() in exc.result["msg"]


def test_module_takes_over_a_dead_lock(monkeypatch, stack, tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "rodemo.lock").write_text(json.dumps({"pid": 4194304, "boot_id": "another-boot", "who": "bob",
                                                   "started": 0, "expires": 4102444800}))
    exc, warnings = _run(monkeypatch, compose_rollout, dict(stack), [], version="after")
    assert not exc.failed, exc.result["msg"]
    assert any("took over the deploy lock of stack rodemo (the host rebooted since it was taken)" in w for w in warnings)
    assert not (locks / "rodemo.lock").exists()


def test_release_info_unknown_release(monkeypatch, stack):
    exc, dummy = _run(monkeypatch, compose_release_info, {"project_dir": stack["project_dir"], "release": "x"}, [])
    assert exc.failed and exc.result["msg"].endswith("unknown release 'x'; available releases: none")


def test_addresses_equal_the_role_replicas_expression():
    """roles/reverse_proxy/vars/main.yml's _reverse_proxy_replicas, evaluated on the recorded
    `docker inspect` of the project after the rollout, lists the same addresses in the same
    order as the module writes: the role's next run renders the same bytes."""
    import ast
    import yaml

    source = yaml.safe_load((ROOT / "roles" / "reverse_proxy" / "vars" / "main.yml").read_text(encoding="utf-8"))
    env = jinja2.Environment()
    env.filters["from_json"] = json.loads
    env.filters["dict2items"] = lambda d: [{"key": k, "value": v} for k, v in d.items()]
    inspect = _read("inspect_scaled.json")
    internal = ro.internal_networks(_config("v2"))
    for network in ("", "back"):
        rendered = env.from_string(source["_reverse_proxy_replicas"]).render(
            __reverse_proxy_containers={"stdout": inspect},
            _reverse_proxy_services=[{"upstream": "rodemo_web", "network": network, "port": 8000}],
            _reverse_proxy_internal_networks=internal)
        role = ast.literal_eval(rendered.strip())["rodemo_web"]
        web = [c for c in ro.parse_inspect(inspect) if c["service"] == "web"]
        chosen = ro.upstream_network(web, role, internal)
        assert chosen == ("rodemo_back" if network else "rodemo_front")
        assert ro.upstream_addresses(web, chosen) == role
