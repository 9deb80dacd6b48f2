"""Shared helpers of the hardening scenario's tests."""

import os

import pytest


def groups_of(host):
    return host.ansible.get_variables().get("group_names", [])


@pytest.fixture
def hardened(host):
    """The host under test, when it is one the role hardened (skip the scanner)."""
    if "hardened" not in groups_of(host):
        pytest.skip("not a hardened host")
    return host


@pytest.fixture
def hostvars(host):
    return host.ansible.get_variables()


@pytest.fixture
def ssh_port(hostvars):
    return int(hostvars.get("hardening_ssh_port", 22))


@pytest.fixture(scope="session")
def ssh_key():
    return os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "id_ed25519")


def address_of(host):
    """The host's address on the test network (eth0, its only link to it). Not `hostname -I`:
    with Docker inside, that may list docker0 first, an address of the outer machine's bridge."""
    return host.check_output("ip -4 -o addr show dev eth0").split()[3].split("/")[0]
