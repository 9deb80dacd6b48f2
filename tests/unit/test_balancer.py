"""Unit tests of the load-balancer member functions (balancer_member): an upstream file as the
reverse_proxy role writes it for a route to servers, and `ps` listings recorded around a real
`nginx -s reload` with a download in flight (tests/unit/fixtures/balancer)."""

from pathlib import Path

import pytest

from ansible_collections.composeops.platform.plugins.module_utils import _balancer as bl

FIXTURES = Path(__file__).parent / "fixtures" / "balancer"
UPSTREAM = (FIXTURES / "servers_shop_root.conf").read_text()
BEFORE = bl.parse_ps((FIXTURES / "ps_before_reload.txt").read_text())
AFTER = bl.parse_ps((FIXTURES / "ps_after_reload.txt").read_text())
MASTER = 261


def test_members_of_the_role_file():
    assert bl.members(UPSTREAM) == [{"server": "172.19.0.4:443", "drained": False},
                                    {"server": "172.19.0.5:443", "drained": False}]


def test_drain_marks_only_that_member_down():
    drained = bl.set_member(UPSTREAM, "172.19.0.5:443", True)
    assert "    server 172.19.0.5:443 max_fails=1 fail_timeout=5s down;" in drained.splitlines()
    assert "    server 172.19.0.4:443 max_fails=1 fail_timeout=5s;" in drained.splitlines()
    assert bl.members(drained)[1] == {"server": "172.19.0.5:443", "drained": True}
    # Everything but that line is byte for byte the role's file.
    changed = [a for a, b in zip(drained.splitlines(), UPSTREAM.splitlines()) if a != b]
    assert len(changed) == 1 and len(drained.splitlines()) == len(UPSTREAM.splitlines())


def test_drain_twice_and_enable_restore_the_file():
    once = bl.set_member(UPSTREAM, "172.19.0.5:443", True)
    assert bl.set_member(once, "172.19.0.5:443", True) == once
    assert bl.set_member(once, "172.19.0.5:443", False) == UPSTREAM
    assert bl.set_member(UPSTREAM, "172.19.0.4:443", False) == UPSTREAM


def test_unknown_member_is_refused_with_the_members():
    with pytest.raises(bl.BalancerError, match=r"172.19.0.6:443 is not a member.*172.19.0.4:443, 172.19.0.5:443"):
        bl.set_member(UPSTREAM, "172.19.0.6:443", True)
    # Same address, other port: another member.
    with pytest.raises(bl.BalancerError):
        bl.set_member(UPSTREAM, "172.19.0.5:44380", True)


def test_minimum_in_rotation():
    assert bl.check_minimum(UPSTREAM, "172.19.0.5:443", 1) == ["172.19.0.4:443"]
    with pytest.raises(bl.BalancerError, match=r"leave 1 member\(s\) in rotation \(172.19.0.4:443\), fewer than .* 2"):
        bl.check_minimum(UPSTREAM, "172.19.0.5:443", 2)
    one_down = bl.set_member(UPSTREAM, "172.19.0.4:443", True)
    with pytest.raises(bl.BalancerError, match=r"leave 0 member\(s\) in rotation \(none\)"):
        bl.check_minimum(one_down, "172.19.0.5:443", 1)


def test_input_checks():
    assert bl.valid_member("10.0.0.2:80") and bl.valid_member("app1.internal:8080") and bl.valid_member("[fd00::2]:80")
    assert not bl.valid_member("10.0.0.2") and not bl.valid_member("10.0.0.2:80 down") and not bl.valid_member("")
    assert bl.valid_upstream("servers_demo_root") and not bl.valid_upstream("../x") and not bl.valid_upstream("")


def test_workers_of_the_master_from_a_recording():
    assert bl.workers(BEFORE, MASTER) == [262, 263]
    # After the reload: 262 is "shutting down" (it serves the download), 263 exited, 269 and 270 are new.
    assert bl.workers(AFTER, MASTER) == [262, 269, 270]
    assert bl.workers(AFTER, 1) == []


def test_old_workers_left_after_the_reload():
    old = bl.workers(BEFORE, MASTER)
    assert bl.old_workers(old, AFTER, MASTER) == [262]
    finished = [p for p in AFTER if p[0] != 262]
    assert bl.old_workers(old, finished, MASTER) == []


def test_parse_ps_skips_other_lines():
    assert bl.parse_ps("  PID  PPID COMMAND\n 12 1 nginx: master process nginx\n\n") == [(12, 1, "nginx: master process nginx")]


def test_health_check_defaults_and_refusals():
    spec = bl.normalise_check({"host": "shop.test"})
    assert spec == {"host": "shop.test", "path": "/health", "scheme": "https", "status": 200, "timeout": 5.0,
                    "retries": 10, "interval": 1.0}
    assert bl.describe_check("172.19.0.4:443", spec) == \
        "GET https://172.19.0.4:443/health with Host shop.test, expecting 200"
    with pytest.raises(bl.BalancerError, match="needs host"):
        bl.normalise_check({"path": "/health"})
    with pytest.raises(bl.BalancerError, match="unknown keys: url"):
        bl.normalise_check({"host": "shop.test", "url": "http://x/"})
    with pytest.raises(bl.BalancerError, match="scheme is http or https"):
        bl.normalise_check({"host": "shop.test", "scheme": "ftp"})
    with pytest.raises(bl.BalancerError, match="integers"):
        bl.normalise_check({"host": "shop.test", "status": "ok"})


def test_probe_of_a_closed_port_is_an_error_not_a_status():
    # The loopback of the machine running the tests, a port nothing listens on (bound then closed).
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    health = bl.probe_member("127.0.0.1:%d" % port, bl.normalise_check({"host": "shop.test", "timeout": 2}))
    assert "status" not in health and "ConnectionRefusedError" in health["error"]
