"""Unit tests of how the collection runs under Mitogen: its strategy plugin
(plugins/strategy/mitogen_linear.py), with the Mitogen that requirements.txt installs and without
one, and the compose_rollout action plugin telling Mitogen's connections from Ansible's."""

import importlib
import sys

import pytest

from ansible.errors import AnsibleError
from ansible.plugins.connection.ssh import Connection as SshConnection
from ansible_collections.composeops.platform.plugins.action import compose_rollout as action
from ansible_mitogen.connection import Connection as MitogenConnection
from ansible_mitogen.strategy import StrategyMixin

PLUGIN = "ansible_collections.composeops.platform.plugins.strategy.mitogen_linear"


def test_the_strategy_is_linear_under_mitogen():
    strategy = importlib.import_module(PLUGIN).StrategyModule
    names = [klass.__module__ + "." + klass.__name__ for klass in strategy.__mro__]
    assert issubclass(strategy, StrategyMixin)
    assert names.index("ansible_mitogen.strategy.StrategyMixin") < names.index("ansible.plugins.strategy.linear.StrategyModule")


def test_without_mitogen_the_strategy_says_what_to_do(monkeypatch):
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    monkeypatch.setitem(sys.modules, "ansible_mitogen", None)
    monkeypatch.setitem(sys.modules, "ansible_mitogen.strategy", None)
    strategy = importlib.import_module(PLUGIN).StrategyModule
    monkeypatch.delitem(sys.modules, PLUGIN)
    assert not issubclass(strategy, StrategyMixin)
    with pytest.raises(AnsibleError, match=r"needs Mitogen.*pip install -r requirements.txt.*ANSIBLE_STRATEGY=linear"):
        strategy(None)


def test_mitogen_connections_are_told_apart():
    """compose_rollout runs its module synchronously under Mitogen's connections and as an async
    job under Ansible's."""

    class MitogenDocker(MitogenConnection):  # what ansible_mitogen/plugins/connection/mitogen_docker.py defines
        transport = "docker"

    assert action.under_mitogen(MitogenDocker.__new__(MitogenDocker))
    assert not action.under_mitogen(SshConnection.__new__(SshConnection))
