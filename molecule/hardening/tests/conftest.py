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
    """The host's address on the test network (the controller reaches it there)."""
    return host.check_output("hostname -I").split()[0]
