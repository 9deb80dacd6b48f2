# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: systemd_units_to_change
short_description: The systemd units whose state differs from the wanted one
version_added: 0.1.0
description:
  - Compares the wanted state of systemd units with what one
    C(systemctl show --property=Id,LoadState,UnitFileState,ActiveState -- UNIT...) printed, and
    returns the units that M(ansible.builtin.systemd_service) would change, so that a run calls
    the module only for those instead of once per unit.
  - A unit counts as settled with the same rules the module applies; anything else, or an output
    that does not hold one block per unit (an empty one when no state was read), keeps the unit in the
    result (the module then decides).
author: composeops developers (@composeops)
positional: _input, show_output
options:
  _input:
    description:
      - The units, in the order they were given to C(systemctl show). Each is a mapping with
        C(name), and optionally C(enabled) (default V(true); V(null) for no change),
        C(state) (V(started), V(stopped), or empty for no change; default V(started)) and
        C(missing_ok) (a unit that is not installed needs nothing).
    type: list
    elements: dict
    required: true
  show_output:
    description: What C(systemctl show) printed for those units; empty when it did not run.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the state of the units
  ansible.builtin.command:
    argv: "{{ ['systemctl', 'show', '--property=Id,LoadState,UnitFileState,ActiveState', '--']
              + units | map(attribute='name') | list }}"
  register: shown
  changed_when: false

- name: Enable and start the units that are not
  ansible.builtin.systemd_service:
    name: "{{ item.name }}"
    enabled: true
    state: started
  loop: "{{ units | composeops.platform.systemd_units_to_change(shown.stdout) }}"
"""

RETURN = r"""
_value:
  description: The units of the input that are not in their wanted state, unchanged and in order.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleFilterError

# `systemctl is-enabled` exits 0 for these: the module then takes `enabled: true` as met.
_ENABLED = frozenset(["enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"])
# The module's "is running" test: ActiveState active or activating (reloading is active).
_RUNNING = frozenset(["active", "activating", "reloading"])


def parse_show(output):
    """The property blocks of `systemctl show` (one per unit, separated by blank lines)."""
    blocks = []
    for chunk in output.strip().split("\n\n") if output.strip() else []:
        props = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key.strip()] = value.strip()
        blocks.append(props)
    return blocks


def unit_settled(unit, props):
    """Whether systemd_service would change nothing for this unit, given its shown properties."""
    if props.get("LoadState") == "not-found":
        return bool(unit.get("missing_ok"))
    if props.get("LoadState") != "loaded":
        return False
    enabled = unit.get("enabled", True)
    unit_file_state = props.get("UnitFileState", "")
    if enabled is True and unit_file_state not in _ENABLED:
        return False
    if enabled is False and unit_file_state in _ENABLED:
        return False
    state = unit.get("state", "started")
    running = props.get("ActiveState") in _RUNNING
    if state == "started" and not running:
        return False
    if state == "stopped" and running:
        return False
    return True


def systemd_units_to_change(units, show_output):
    if not isinstance(units, list) or not all(isinstance(u, dict) and u.get("name") for u in units):
        raise AnsibleFilterError("systemd_units_to_change: the input must be a list of mappings with a name")
    blocks = parse_show(str(show_output or ""))
    if len(blocks) != len(units):
        return list(units)
    return [unit for unit, props in zip(units, blocks) if not unit_settled(unit, props)]


class FilterModule(object):
    def filters(self):
        return {"systemd_units_to_change": systemd_units_to_change}
