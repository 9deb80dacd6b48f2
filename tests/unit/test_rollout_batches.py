"""Unit tests of the rollout_batches filter: the batches of playbooks/rollout.yml's `serial`."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.composeops.platform.plugins.filter.rollout_batches import rollout_batches


@pytest.mark.parametrize("serial, hosts, batches", [
    (1, 2, [1, 1]),
    ("1", 3, [1, 1, 1]),
    (2, 5, [2, 2, 1]),
    ("50%", 4, [2, 2]),
    ("50%", 5, [2, 2, 1]),
    ("30%", 2, [1, 1]),          # rounded down, at least 1
    ("100%", 4, [4]),
    ([1, "50%", "100%"], 4, [1, 2, 1]),
    ([1, "50%", "100%"], 10, [1, 5, 4]),
    ([1, 2], 6, [1, 2, 2, 1]),  # the last entry repeats
    (0, 3, [3]),
    ([], 3, [3]),
    (1, 0, []),
])
def test_batches_as_ansible_makes_them(serial, hosts, batches):
    assert rollout_batches(serial, hosts) == batches
    assert sum(batches) == hosts


def test_bad_serial_is_refused():
    with pytest.raises(AnsibleFilterError, match="numbers or percentages"):
        rollout_batches("half", 4)
    with pytest.raises(AnsibleFilterError, match="negative"):
        rollout_batches(-1, 4)
