"""The compose_stack_status module end to end, with docker answered from recorded outputs."""

import json
from pathlib import Path

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args
from ansible_collections.composeops.platform.plugins.modules import compose_stack_status

FIXTURES = Path(__file__).parent / "fixtures"


class Exit(Exception):
    def __init__(self, failed, result):
        super().__init__(result.get("msg", ""))
        self.failed, self.result = failed, result


def _run_module(monkeypatch, args, ps_rc=0, ps_out=""):
    def exit_json(self, **result):
        raise Exit(False, result)

    def fail_json(self, msg, **result):
        raise Exit(True, dict(result, msg=msg))

    def run_command(self, argv, **kwargs):
        if "ps" in argv:
            return ps_rc, ps_out, "" if ps_rc == 0 else "Cannot connect to the Docker daemon\n"
        if "logs" in argv:
            return 0, (FIXTURES / "compose_logs_app_broken.txt").read_text() if argv[-1] == "app" else "", ""
        return 0, (FIXTURES / "inspect_health_unhealthy.json").read_text(), ""

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.setattr(basic.AnsibleModule, "run_command", run_command)
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, w: warnings.append(w))
    warnings = []
    with patch_module_args(dict({"project_name": "t"}, **args)):
        with pytest.raises(Exit) as exc:
            compose_stack_status.main()
    return exc.value, warnings


def test_failed_deploy_with_healthy_containers_fails_with_the_cause(monkeypatch):
    out = (FIXTURES / "compose_ps_healthy.json").read_text()
    exc, dummy = _run_module(monkeypatch, {"fail_on_unhealthy": True, "failure_cause": "pull access denied"},
                             ps_out=out)
    assert exc.failed
    assert exc.result["msg"] == "Stack 't' failed to deploy, but every container looks fine now: pull access denied"
    assert exc.result["project_name"] == "t" and exc.result["changed"] is False


def test_unhealthy_service_fails_with_logs(monkeypatch):
    out = (FIXTURES / "compose_ps_broken.json").read_text()
    exc, dummy = _run_module(monkeypatch, {"fail_on_unhealthy": True, "log_lines": 2}, ps_out=out)
    assert exc.failed and exc.result["failing"] == ["app", "crasher"]
    assert "  | health check failing on purpose: this is the broken build" in exc.result["msg"]


def test_report_only_returns_the_message_without_failing(monkeypatch):
    out = (FIXTURES / "compose_ps_broken.json").read_text()
    exc, dummy = _run_module(monkeypatch, {"failure_cause": "timeout"}, ps_out=out)
    assert not exc.failed and exc.result["message"].startswith("Stack 't' is not healthy")


def test_ps_error_fails_with_context(monkeypatch):
    exc, dummy = _run_module(monkeypatch, {}, ps_rc=1)
    assert exc.failed and exc.result["rc"] == 1 and exc.result["project_name"] == "t"
    assert exc.result["msg"] == "docker compose ps failed for stack 't' (exit code 1): Cannot connect to the Docker daemon"


def test_warnings_of_a_healthy_stack(monkeypatch):
    out = (FIXTURES / "compose_ps_healthy.json").read_text()
    exc, warnings = _run_module(monkeypatch, {"public_services": [], "images": ["redis:latest"]}, ps_out=out)
    assert not exc.failed and exc.result["message"] == ""
    assert exc.result["unpinned_images"] == ["redis:latest"]
    assert [w.split(":")[0] for w in warnings] == ["stack 't'", "stack 't' uses images without a pinned tag or digest"]
    json.dumps(exc.result)
