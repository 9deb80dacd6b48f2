"""End state after converge, idempotence and side_effect (refusals and a broken site).

Every request goes from the test host to its own loopback (the site names resolve to 127.0.0.1
there, prepare.yml); the site names come from the inventory (molecule.yml)."""

import json
import os
import re
import time

import pytest

PROBE = os.path.join(os.path.dirname(__file__), "..", "files", "probe.py")
TESTSSL = os.path.join(os.path.dirname(__file__), "..", "files", "testssl.sh")
PEBBLE_ROOT = "/etc/pebble-test/pebble-root.pem"
UPSTREAMS = "/etc/nginx/composeops/upstreams"


@pytest.fixture(scope="module")
def sites(host):
    return {s["name"]: s for s in host.ansible.get_variables()["reverse_proxy_sites"]}


@pytest.fixture(scope="module")
def shop(sites):
    return sites["shop"]["domains"][0]


@pytest.fixture(scope="module")
def probe(host):
    """probe.py on the test host; the CA bundle with Pebble's root of this run."""
    with open(PROBE, encoding="utf-8") as handle:
        source = handle.read()
    host.run("mkdir -p /root/probe")
    host.check_output("cat > /root/probe/probe.py <<'PROBE_EOF'\n%s\nPROBE_EOF" % source)
    host.check_output("cat /etc/ssl/certs/ca-certificates.crt %s > /root/probe/ca.pem" % PEBBLE_ROOT)
    return "PROBE_CA=/root/probe/ca.pem python3 /root/probe/probe.py"


def curl(host, url, *options):
    cmd = host.run("curl -sS --cacert /root/probe/ca.pem --max-time 20 %s %%s" % " ".join(options), url)
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout


def served_certificate(host, name):
    return host.check_output(
        "openssl s_client -connect 127.0.0.1:443 -servername %s </dev/null 2>/dev/null "
        "| openssl x509 -noout -serial -issuer -subject", name)


# While testssl.sh runs (converge started it): nothing here reloads nginx or bursts at it.


def test_acme_certificate_from_pebble(host, probe, shop):
    assert "Pebble" in served_certificate(host, shop)
    assert json.loads(curl(host, "https://%s/" % shop))["message"] == "hello from make local"
    key = host.file("/etc/nginx/composeops/tls/shop/privkey.pem")
    assert key.mode == 0o600 and key.user == "root"
    assert host.file("/var/lib/composeops/acme/account.key").mode == 0o600


def test_selfsigned_site(host, sites):
    name = sites["plain"]["domains"][0]
    out = served_certificate(host, name)
    assert "issuer=CN=%s" % name in out and "subject=CN=%s" % name in out


def test_routes_reach_their_services(host, probe, shop):
    assert json.loads(curl(host, "https://%s/api/" % shop))["message"] == "hello from the api"
    assert json.loads(curl(host, "https://%s/health" % shop))["status"] == "ok"
    assert curl(host, "https://%s/static/hello.txt" % shop) == "static hello\n"
    redirect = curl(host, "http://%s/some/path?x=1" % shop, "-o /dev/null -w '%%{http_code} %%{redirect_url}'")
    assert redirect == "301 https://%s/some/path?x=1" % shop
    # The challenge path is not redirected (a missing token is a 404, over plain HTTP).
    assert curl(host, "http://%s/.well-known/acme-challenge/none" % shop, "-o /dev/null -w '%%{http_code}'") == "404"


def test_websocket_echo(host, probe, shop):
    assert host.check_output(probe + " ws %s /ws %s", shop, "hello over the proxy") == "hello over the proxy"


def test_security_headers_and_hsts(host, probe, shop):
    headers = curl(host, "https://%s/" % shop, "-o /dev/null -D -").lower()
    assert "strict-transport-security: max-age=63072000" in headers
    for name in ("content-security-policy", "x-frame-options", "x-content-type-options",
                 "referrer-policy", "permissions-policy"):
        assert name + ":" in headers
    assert "server: nginx\r\n" in headers  # server_tokens off: no version


def test_stub_status_on_loopback(host):
    assert "Active connections" in host.check_output("curl -s http://127.0.0.1:8088/stub_status")
    assert host.socket("tcp://127.0.0.1:8088").is_listening
    assert not host.socket("tcp://0.0.0.0:8088").is_listening


def test_config_check_leaves_no_copy(host):
    """composeops-nginx-check, which tested every file converge and side_effect wrote, removes its
    copy of /etc/nginx whether nginx accepts the candidate or refuses it."""
    copies = "ls -d /tmp/composeops-nginx-check.*"
    assert host.run(copies).rc != 0, host.run(copies).stdout
    check = "/usr/local/sbin/composeops-nginx-check %s /etc/nginx/nginx.conf"
    assert host.run(check % "/etc/nginx/nginx.conf").rc == 0
    host.check_output("echo 'events {' > /root/broken-nginx.conf")
    refused = host.run(check % "/root/broken-nginx.conf")
    assert refused.rc != 0 and "unexpected end of file" in refused.stderr, refused.stderr
    assert host.run(copies).rc != 0, host.run(copies).stdout


def test_renewal_client_footprint(host):
    """The renewal job's client: the virtualenv and the unpacked archive, plus the distribution
    packages it needs beyond nginx (python3-venv, -jinja2, -yaml, -resolvelib, -packaging)."""
    job = int(host.check_output("du -sm /usr/local/lib/composeops/reverse-proxy | cut -f1"))
    packages = int(host.check_output(
        "dpkg-query -W -f '${Installed-Size}\\n' python3-venv python3-jinja2 python3-yaml python3-resolvelib "
        "python3-packaging python3-markupsafe python3.13-venv python3-pip-whl python3-setuptools-whl "
        "2>/dev/null | awk '{s += $1} END {print int(s / 1024)}'"))
    version = host.check_output("/usr/local/lib/composeops/reverse-proxy/venv/bin/ansible --version | head -n 1")
    print("renewal client: %s MB under /usr/local/lib/composeops/reverse-proxy, %s MB of packages; %s"
          % (job, packages, version))
    assert job + packages < 100


def test_unchanged_renewal_does_not_reload(host, shop):
    pid = host.check_output("cat /run/nginx.pid")
    workers = host.check_output("pgrep -P %s | sort", pid)
    assert host.run("systemctl start composeops-acme-renew.service").rc == 0
    assert host.check_output("pgrep -P %s | sort", pid) == workers


def test_testssl_rating(host, probe, shop):
    """testssl.sh's full run (every section, as its rating needs), started by converge in the
    background (files/testssl.sh): collected here, before the tests below send bursts of
    requests or reload nginx."""
    with open(TESTSSL, encoding="utf-8") as handle:
        source = handle.read()
    host.check_output("cat > /root/probe/testssl.sh <<'TESTSSL_EOF'\n%s\nTESTSSL_EOF" % source)
    started = time.monotonic()
    path = host.check_output("bash /root/probe/testssl.sh collect %s %s", shop, PEBBLE_ROOT)
    print("testssl.sh: waited %.0f s for its findings" % (time.monotonic() - started))
    findings = json.loads(host.file(path).content_string)
    by_id = {f["id"]: f for f in findings}
    print("testssl:", by_id["overall_grade"])
    assert by_id["overall_grade"]["finding"] == "A+", [f for f in findings if f["id"].startswith("grade")]
    assert by_id["TLS1"]["finding"] == "not offered" and by_id["TLS1_1"]["finding"] == "not offered"
    assert by_id["HSTS_time"]["severity"] == "OK"
    # Pebble's certificates name neither a CRL nor an OCSP responder (Let's Encrypt's carry a CRL
    # URL): a finding about the test CA, not about nginx; it does not cap the grade.
    assert [f for f in findings if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")
            and f["id"] not in ("cert_revocation", "cert_extlifeSpan")] == []


# After testssl.sh: the access log without its requests, bursts, reloads.


def test_requests_spread_across_three_replicas(host, probe, shop):
    upstream = host.file(UPSTREAMS + "/demo_app.conf").content_string
    replicas = set(re.findall(r"server (\d+\.\d+\.\d+\.\d+:8000)", upstream))
    assert len(replicas) == 3, upstream
    host.check_output("for i in $(seq 30); do curl -s -o /dev/null --cacert /root/probe/ca.pem https://%s/; done", shop)
    log = host.check_output("tail -n 30 /var/log/nginx/composeops-access.json.log")
    entries = [json.loads(line) for line in log.splitlines()]
    assert {e["upstream_addr"] for e in entries} == replicas
    assert all(e["status"] == 200 and e["upstream_response_time"] for e in entries)


def test_rate_limit_answers_429(host, probe, shop):
    codes = host.check_output(
        "for i in $(seq 15); do curl -s -o /dev/null -w '%%{http_code} ' --cacert /root/probe/ca.pem "
        "https://%s/limited/; done", shop).split()
    assert "200" in codes and "429" in codes, codes


def test_zero_drop_reload(host, probe, shop):
    result = json.loads(host.check_output(probe + " reload %s %s", shop, UPSTREAMS + "/demo_app.conf"))
    print("reload under load:", result)
    assert result["reloads"] == 2 and result["removed"]
    # 429 is nginx's deliberate answer past the site's rate limit, not a dropped request.
    assert result["requests"] >= 600 and result["failed"] == 0, result


def test_forced_renewal_serves_a_new_serial(host, shop):
    before = served_certificate(host, shop)
    host.check_output("systemctl set-environment COMPOSEOPS_ACME_FORCE=1")
    try:
        run = host.run("systemctl start composeops-acme-renew.service")
    finally:
        host.run("systemctl unset-environment COMPOSEOPS_ACME_FORCE")
    assert run.rc == 0, host.run("journalctl -u composeops-acme-renew.service -n 40 --no-pager").stdout
    after = served_certificate(host, shop)
    assert "Pebble" in after and after.splitlines()[0] != before.splitlines()[0]
    print(host.run("systemd-analyze security composeops-acme-renew.service | tail -n 1").stdout)
