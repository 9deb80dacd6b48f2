# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: rollout_batches
short_description: The batch sizes Ansible's C(serial) makes of a number of hosts
version_added: 0.3.0
description:
  - Splits O(hosts) hosts into batches the way a play's C(serial) keyword does, so that a playbook
    can check before any change what its batches will do (playbooks/rollout.yml refuses a rollout
    whose largest batch would leave the load balancer too few healthy hosts).
  - O(_input) is a number, a percentage (C("50%")) or a list of them (a ramp, C([1, "50%", "100%"]));
    the last entry repeats until every host is in a batch. A percentage is of all the hosts, rounded
    down, at least 1. C(0) or an empty list is one batch of every host.
author: composeops developers (@composeops)
positional: _input, hosts
options:
  _input:
    description: The C(serial) value.
    type: raw
    required: true
  hosts:
    description: The number of hosts of the play.
    type: int
    required: true
"""

EXAMPLES = r"""
- name: The largest batch of a ramp over 4 hosts (2)
  ansible.builtin.debug:
    msg: "{{ [1, '50%', '100%'] | composeops.platform.rollout_batches(4) | max }}"
"""

RETURN = r"""
_value:
  description: The size of each batch, in order; they add up to O(hosts).
  type: list
  elements: int
"""

from ansible.errors import AnsibleFilterError


def _size(entry, hosts):
    text = str(entry).strip()
    try:
        if text.endswith("%"):
            return max(1, int(hosts * float(text[:-1]) / 100.0))
        return int(text)
    except ValueError:
        raise AnsibleFilterError("rollout_batches: serial entries are numbers or percentages like '50%%', not %r" % entry)


def rollout_batches(serial, hosts):
    hosts = int(hosts)
    entries = serial if isinstance(serial, (list, tuple)) else [serial]
    sizes = [_size(entry, hosts) for entry in entries] or [0]
    if any(size < 0 for size in sizes):
        raise AnsibleFilterError("rollout_batches: a batch size cannot be negative (serial %r)" % (serial,))
    batches, left, index = [], hosts, 0
    while left > 0:
        size = sizes[min(index, len(sizes) - 1)] or left
        batches.append(min(size, left))
        left -= batches[-1]
        index += 1
    return batches


class FilterModule(object):
    def filters(self):
        return {"rollout_batches": rollout_batches}
