"""End state after converge, idempotence and side_effect (see side_effect.yml)."""

import json

import pytest


def _ps(host, project):
    out = host.check_output("docker compose --project-name %s ps --all --format json", project)
    return {c["Service"]: c for c in map(json.loads, out.splitlines())}


def test_project_directory_is_private(host):
    d = host.file("/opt/stacks/shop")
    assert d.is_directory and d.user == "root" and d.group == "root" and d.mode == 0o750
    env = host.file("/opt/stacks/shop/.env")
    assert env.mode == 0o600 and env.user == "root"
    assert "COMPOSE_FILE='compose.yaml:compose.secrets.yaml'" in env.content_string
    assert host.file("/opt/stacks/shop/compose.yaml").content_string.startswith("#\n# Ansible managed")


@pytest.mark.parametrize("secret", ["db_password", "redis_password"])
def test_secrets_are_kept_private(host, secret):
    f = host.file("/var/lib/composeops/secrets/shop/" + secret)
    assert f.mode == 0o600 and f.user == "root"
    assert len(f.content_string) == 32 and f.content_string.isalnum()
    assert host.file("/var/lib/composeops/secrets/shop").mode == 0o700


def test_every_service_is_healthy(host):
    ps = _ps(host, "shop")
    assert sorted(ps) == ["app", "db", "redis"]
    assert all(c["State"] == "running" and c["Health"] == "healthy" for c in ps.values()), ps


def test_secrets_dir_is_private_and_holds_no_staging_copy(host):
    assert host.file("/var/lib/composeops/secrets").mode == 0o700
    assert not [f for f in host.file("/var/lib/composeops/secrets").listdir() if f.startswith(".staging")]


def test_failed_v2_never_went_live(host):
    # side_effect left shop's files at v2, whose migration failed: v1 still runs (and serves, below).
    assert "fixtures/app:2.0" in host.file("/opt/stacks/shop/compose.yaml").content_string
    assert _ps(host, "shop")["app"]["Image"].endswith("fixtures/app:1.0")
    assert host.file("/opt/stacks/shop/.deployed").mode == 0o600


def test_app_answers_healthy_from_the_host(host):
    health = json.loads(host.check_output("curl -fsS http://127.0.0.1:8080/health"))
    assert health == {"db": "ok", "redis": "ok", "status": "ok", "version": "1.0"}
    assert host.check_output("curl -fsS http://127.0.0.1:8080/version") == "1.0"


def test_env_change_reached_the_app(host):
    page = json.loads(host.check_output("curl -fsS http://127.0.0.1:8080/"))
    assert page["message"].startswith("hello after the change of ")


def test_app_publishes_on_loopback_only(host):
    assert host.socket("tcp://127.0.0.1:8080").is_listening
    assert not host.socket("tcp://0.0.0.0:8080").is_listening


def test_backend_network_is_internal_and_limits_apply(host):
    assert host.check_output("docker network inspect -f '{{.Internal}}' shop_backend") == "true"
    app = _ps(host, "shop")["app"]["Name"]
    limits = host.check_output("docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' %s", app)
    assert limits == "268435456 500000000"


def test_migration_hook_ran(host):
    out = host.check_output(
        "docker compose --project-name shop exec -T db psql -U app -d app -tAc 'SELECT count(*) FROM migrations'")
    assert int(out) >= 1


def test_removed_stack_with_remove_volumes_left_nothing(host):
    # side_effect removed it once keeping volume and secret (checked there), then with remove_volumes.
    assert not host.file("/opt/stacks/broken").exists
    assert _ps(host, "broken") == {}
    assert host.run("docker volume inspect broken_data").rc != 0
    assert not host.file("/var/lib/composeops/secrets/broken").exists
