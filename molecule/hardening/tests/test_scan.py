"""The scanner probes the hardened hosts from the outside: only allowed ports answer, also the
ports that containers publish, also after Docker and the firewall restart."""

import re
import time

import pytest
import testinfra
from conftest import address_of

EXPECTED = {
    # host: (ports that must be open, ports allowed to answer at all)
    "hardening-debian12": ({22}, {22, 80, 443}),
    # 443 is published by a container and allowed; 8080 is published too, but not allowed.
    "hardening-debian13": ({2222, 443}, {2222, 443}),
}


@pytest.fixture
def scanner(host):
    if "scanner" not in host.ansible.get_variables()["group_names"]:
        pytest.skip("runs on the scanner only")
    return host


def target(scanner, name):
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=scanner.backend.ansible_inventory)


def scan(scanner, address, ports="-"):
    # Only ever our own test hosts: the address must be on the scanner's own test network.
    assert scanner.run(f"ip -4 route get {address} | grep -q 'dev eth0 '").rc == 0
    assert not scanner.run(f"ip -4 route get {address} | grep -q ' via '").rc == 0, address
    out = scanner.check_output(
        f"nmap -Pn -n -sS -p{ports} --min-rate 5000 --max-retries 1 -oG - {address}")
    found = re.search(r"Ports: (.*?)(\t|$)", out, re.M)
    states = {}
    for entry in (found.group(1).split(", ") if found else []):
        port, state = entry.split("/")[:2]
        states[int(port)] = state
    return states, out


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_only_allowed_ports_answer(scanner, name):
    must_open, may_answer = EXPECTED[name]
    address = address_of(target(scanner, name))
    states, raw = scan(scanner, address)
    print(raw)
    open_ports = {p for p, s in states.items() if s == "open"}
    answering = {p for p, s in states.items() if s in ("open", "closed")}
    assert open_ports == must_open, raw
    assert answering <= may_answer, raw
    # The host service on 9999 and the container published on 8080 exist, yet are unreachable.
    assert states.get(9999, "filtered") == "filtered"
    assert states.get(8080, "filtered") == "filtered"


def test_published_ports_stay_filtered_after_restarts(scanner):
    docker_host = target(scanner, "hardening-debian13")
    address = address_of(docker_host)
    assert docker_host.check_output("busybox wget -q -T 5 -O - http://127.0.0.1:8080/").strip() == "composeops"
    for restart in ("docker", "composeops-firewall"):
        with docker_host.sudo():
            docker_host.check_output(f"systemctl restart {restart}")
            for _attempt in range(30):
                if docker_host.run("busybox wget -q -T 2 -O - http://127.0.0.1:443/").stdout.strip() == "composeops":
                    break
                time.sleep(1)
        states, raw = scan(scanner, address, "443,8080,9999")
        assert states == {443: "open", 8080: "filtered", 9999: "filtered"}, f"after restarting {restart}: {raw}"
