"""Unit tests of the compose_stack logic, driven by outputs recorded from Docker Compose 2.26.1
(Debian 13's docker-compose) on a test host: tests/unit/fixtures/."""

from pathlib import Path

import pytest

from ansible.errors import AnsibleFilterError
from ansible_collections.composeops.platform.plugins.filter.compose_stack_dotenv import compose_stack_dotenv
from ansible_collections.composeops.platform.plugins.module_utils import _compose_stack as cs

FIXTURES = Path(__file__).parent / "fixtures"


def _read(name):
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.fixture(name="healthy")
def fixture_healthy():
    return cs.parse_ps_output(_read("compose_ps_healthy.json"))


@pytest.fixture(name="broken")
def fixture_broken():
    return cs.parse_ps_output(_read("compose_ps_broken.json"))


def test_parse_ndjson_lines(healthy):
    assert [c["service"] for c in healthy] == ["app", "db", "plain", "redis"]
    app = healthy[0]
    assert app["name"] == "t-app-1"
    assert app["state"] == "running" and app["health"] == "healthy"
    assert app["publishers"] == [{"url": "127.0.0.1", "published": 8080, "target": 8000, "protocol": "tcp"}]


def test_parse_json_array_of_older_compose(healthy):
    text = "[" + ",".join(_read("compose_ps_healthy.json").strip().splitlines()) + "]"
    assert cs.parse_ps_output(text) == healthy


def test_parse_empty_project():
    assert cs.parse_ps_output("") == []
    assert cs.parse_ps_output("\n") == []


def test_healthy_stack_has_no_failure(healthy):
    assert cs.failing_containers(healthy) == []
    assert cs.blocked_services(healthy) == []


def test_unhealthy_and_crashed_services_fail(broken):
    assert [c["service"] for c in cs.failing_containers(broken)] == ["app", "crasher"]


def test_dependants_of_a_failed_service_are_blocked(broken):
    assert cs.blocked_services(broken) == ["worker"]


def test_one_shot_service_that_exited_zero_is_fine():
    done = {"service": "init", "name": "s-init-1", "state": "exited", "health": "", "exit_code": 0}
    assert not cs.is_failing(done)
    assert cs.is_failing(dict(done, exit_code=3))


@pytest.mark.parametrize("state,health,failing", [
    ("running", "starting", True),
    ("restarting", "", True),
    ("dead", "", True),
    ("running", "healthy", False),
    ("created", "", False),
])
def test_states(state, health, failing):
    assert cs.is_failing({"state": state, "health": health, "exit_code": 0}) is failing


def test_running_service_without_healthcheck_is_reported(healthy):
    assert cs.missing_healthchecks(healthy) == ["plain"]


def test_public_ports_ignore_loopback_and_internal_networks(healthy):
    # Recorded: app publishes on 127.0.0.1 only; plain asks for 6390 but sits on an internal
    # network only, where Docker publishes nothing.
    assert cs.public_ports(healthy, []) == []


def test_public_ports_report_every_interface_unless_allowed():
    web = cs.normalise_container({"Service": "web", "Name": "s-web-1", "Publishers": [
        {"URL": "0.0.0.0", "TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp"},
        {"URL": "::", "TargetPort": 80, "PublishedPort": 8080, "Protocol": "tcp"},
        {"URL": "", "TargetPort": 9000, "PublishedPort": 0, "Protocol": "tcp"}]})
    assert cs.public_ports([web], []) == ["web: 0.0.0.0:8080->80/tcp", "web: :::8080->80/tcp"]
    assert cs.public_ports([web], ["web"]) == []


def test_clean_log_strips_terminal_codes_and_keeps_the_tail():
    lines = cs.clean_log(_read("compose_logs_app_broken.txt"), 2)
    assert lines == ["health check failing on purpose: this is the broken build"] * 2
    assert all("\x1b" not in line for line in lines)
    assert cs.clean_log("a\n\nb\n", 0) == []


def test_last_health_output():
    assert cs.last_health_output(_read("inspect_health_unhealthy.json")).startswith("exit code 1: unhealthy: HTTP Error 503")
    assert cs.last_health_output("null") == ""
    assert cs.last_health_output("not json") == ""


def test_failure_message_names_service_status_and_logs(broken):
    failing = cs.failing_containers(broken)
    logs = {"app": cs.clean_log(_read("compose_logs_app_broken.txt"), 20), "crasher": []}
    probes = {"t-app-1": cs.last_health_output(_read("inspect_health_unhealthy.json"))}
    msg = cs.failure_message("t", failing, cs.blocked_services(broken), logs, probes)
    assert msg.startswith("Stack 't' is not healthy: service 'app' is unhealthy (container t-app-1, status \"Up")
    assert "service 'crasher' exited with code 2" in msg
    assert "Last health check of 'app': exit code 1" in msg
    assert "  | health check failing on purpose: this is the broken build" in msg
    assert "Service 'crasher' wrote no log lines." in msg
    assert msg.endswith("Not started because a dependency failed: worker.")


def test_failure_message_without_failed_container_keeps_the_cause():
    assert cs.failure_message("s", [], [], {}, {}, "pull access denied\n") == (
        "Stack 's' failed to deploy, but every container looks fine now: pull access denied")


def test_dotenv_quotes_so_compose_reads_values_back():
    text = compose_stack_dotenv({"B": "plain $HOME", "A": "it's", "C": True, "D": None, "E": 'x"\ny\\'})
    assert text == "A=\"it's\"\nB='plain $HOME'\nC='true'\nD=''\nE=\"x\\\"\\ny\\\\\"\n"


def test_dotenv_rejects_bad_names():
    with pytest.raises(AnsibleFilterError):
        compose_stack_dotenv({"BAD-NAME": "x"})
    with pytest.raises(AnsibleFilterError):
        compose_stack_dotenv(["A=1"])


# --- Image pins (docker compose config --images) ------------------------------------------------

@pytest.mark.parametrize("ref,pin", [
    ("composeops-registry:5000/fixtures/app:1.0", "tag"),
    ("postgres:17.2", "tag"),
    ("registry.example.com:5000/shop/app", None),
    ("redis", None),
    ("redis:latest", None),
    ("library/redis:latest", None),
    ("app@sha256:" + "0" * 64, "digest"),
    ("registry.example.com:5000/app:1.0@sha256:" + "0" * 64, "digest"),
])
def test_image_pin(ref, pin):
    assert cs.image_pin(ref) == pin


def test_unpinned_images_from_recorded_config_images():
    # Recorded: `docker compose config --images` of services app (fixtures/app:1.0), cache
    # (fixtures/redis), db (postgres:latest), plain (redis) and pinned (redis@sha256:0…).
    images = _read("compose_config_images.txt").splitlines()
    assert cs.unpinned_images(images) == ["composeops-registry:5000/fixtures/redis", "postgres:latest", "redis"]
    assert cs.unpinned_images([]) == []


# --- Warnings --------------------------------------------------------------------------------------

def test_warnings_name_the_services_and_what_to_do(healthy):
    result, warnings = cs.report("t", healthy, public_services=[], images=["redis", "app:1.0"])
    assert warnings == [
        "stack 't': long-running services without a healthcheck: plain. A deploy cannot tell whether they work; "
        "add a healthcheck (compose `healthcheck:` or the image's HEALTHCHECK).",
        "stack 't' uses images without a pinned tag or digest: redis. Each pull may bring another version; "
        "pin a version tag (app:1.4.2) or a digest (app@sha256:...).",
    ]
    assert result["unpinned_images"] == ["redis"] and result["message"] == ""


def test_no_warning_when_checks_are_off_or_clean(healthy):
    assert cs.report("t", healthy, warn_missing_healthcheck=False)[1] == []
    assert cs.public_ports_warning("t", []) is None
    assert cs.public_ports_warning("t", ["web: 0.0.0.0:80->80/tcp"]).startswith(
        "stack 't' publishes ports on every interface")


# --- Diagnostics of failing containers, with a recorded runner -----------------------------------

class RecordedDocker:
    """Answers the commands the module runs with outputs recorded on a test host."""

    def __init__(self, logs_rc=0):
        self.calls = []
        self.logs_rc = logs_rc

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[1] == "compose" and "logs" in argv:
            service = argv[-1]
            if service == "app":
                return self.logs_rc, _read("compose_logs_app_broken.txt") if self.logs_rc == 0 else "", \
                    "" if self.logs_rc == 0 else "Error response from daemon: cannot read logs\n"
            return 0, "", ""
        if argv[1] == "inspect":
            if argv[-1] == "aab92131044f":
                return 0, _read("inspect_health_unhealthy.json"), ""
            return 0, "null\n", ""
        raise AssertionError("unexpected command %s" % argv)


def test_gather_diagnostics_reads_logs_and_probes(broken):
    run = RecordedDocker()
    logs, probes = cs.gather_diagnostics(run, "docker", "t", cs.failing_containers(broken), 3)
    assert logs["app"] == ["health check failing on purpose: this is the broken build"] * 3
    assert logs["crasher"] == []
    assert probes["t-app-1"].startswith("exit code 1: unhealthy: HTTP Error 503")
    assert probes["t-crasher-1"] == ""
    assert ["docker", "compose", "--project-name", "t", "logs", "--no-color", "--no-log-prefix", "--tail", "3",
            "app"] in run.calls


def test_gather_diagnostics_reports_a_log_error(broken):
    logs, dummy = cs.gather_diagnostics(RecordedDocker(logs_rc=1), "docker", "t", cs.failing_containers(broken), 5)
    assert logs["app"] == ["Error response from daemon: cannot read logs"]


# --- A failed deploy is never reported as fine (the role's rescue) --------------------------------

def test_report_of_a_failed_deploy_with_every_container_fine_keeps_the_cause(healthy):
    result, dummy = cs.report("t", healthy, cause="Error response from daemon: pull access denied\n")
    assert result["failing"] == []
    assert result["message"] == (
        "Stack 't' failed to deploy, but every container looks fine now: Error response from daemon: pull access denied")


def test_report_of_a_failed_deploy_without_cause_or_container_is_empty():
    # The role then fails with the deploy's own message; the module has nothing to add.
    assert cs.report("t", [])[0]["message"] == ""
    assert cs.failure_message("t", [], [], {}, {}, "") == "Stack 't' failed to deploy, but every container looks fine now."


def test_report_of_failing_services_names_them(broken):
    run = RecordedDocker()
    logs, probes = cs.gather_diagnostics(run, "docker", "t", cs.failing_containers(broken), 20)
    result, dummy = cs.report("t", broken, logs, probes, cause="wait timed out")
    assert result["failing"] == ["app", "crasher"] and result["blocked"] == ["worker"]
    assert result["message"].startswith("Stack 't' is not healthy: service 'app' is unhealthy")
