# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: platform_vars_files
short_description: The per-platform variable files of a role, most general first
version_added: 0.2.0
description:
  - Returns the files of O(_input)/vars that exist among C(<os_family>.yml), C(<distribution>.yml)
    and C(<distribution>-<major version>.yml), in that order, without repeats. Loading them in
    that order lets a release file hold only what differs from its distribution file, and a
    distribution file only what differs from its family file.
  - A role without a file for the distribution itself (neither C(<distribution>.yml) nor
    C(<distribution>-<major>.yml)) does not know that platform. It then gets C(unsupported.yml)
    alone, when the role has one, and an empty list otherwise.
author: composeops developers (@composeops)
positional: _input, facts
options:
  _input:
    description: The role's directory (C(role_path)).
    type: path
    required: true
  facts:
    description: The host's facts; C(os_family), C(distribution) and C(distribution_major_version) are read.
    type: dict
    required: true
  all_roles:
    description:
      - Return the files of every role next to O(_input) (the roles of the same collection, in name
        order) instead of those of O(_input) alone, so that one C(include_vars) loop loads the
        platform settings of all of them.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Load the platform settings
  ansible.builtin.include_vars:
    file: "{{ item }}"
  loop: "{{ role_path | composeops.platform.platform_vars_files(ansible_facts) }}"
  loop_control:
    label: "{{ item | basename }}"

- name: Load the platform settings of every role of the collection
  ansible.builtin.include_vars:
    file: "{{ item }}"
  loop: "{{ role_path | composeops.platform.platform_vars_files(ansible_facts, all_roles=true) }}"
"""

RETURN = r"""
_value:
  description: Absolute paths of the files to load, most general first.
  type: list
  elements: path
"""

import os

from ansible.errors import AnsibleFilterError


def platform_layers(facts):
    """The file names to look for, most general first, without repeats."""
    try:
        family = facts["os_family"]
        distribution = facts["distribution"]
        major = facts["distribution_major_version"]
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError(
            "platform_vars_files needs the facts os_family, distribution and "
            "distribution_major_version (gather at least the 'min' subset): missing %s" % exc
        )
    layers = []
    for name in ("%s.yml" % family, "%s.yml" % distribution, "%s-%s.yml" % (distribution, major)):
        if name not in layers:
            layers.append(name)
    return layers


def select_platform_files(layers, distribution_files, exists):
    """Pick the existing layers; a platform without its own distribution file is unsupported."""
    found = [name for name in layers if exists(name)]
    if not any(name in found for name in distribution_files):
        return ["unsupported.yml"] if exists("unsupported.yml") else []
    return found


def _role_files(role_path, layers):
    vars_dir = os.path.join(role_path, "vars")
    chosen = select_platform_files(
        layers, layers[-2:], lambda name: os.path.isfile(os.path.join(vars_dir, name))
    )
    return [os.path.join(vars_dir, name) for name in chosen]


def platform_vars_files(role_path, facts, all_roles=False):
    layers = platform_layers(facts)
    role_path = os.path.normpath(str(role_path))
    if not all_roles:
        return _role_files(role_path, layers)
    roles_dir = os.path.dirname(role_path)
    roles = sorted(
        name for name in os.listdir(roles_dir) if os.path.isdir(os.path.join(roles_dir, name, "vars"))
    )
    return [path for name in roles for path in _role_files(os.path.join(roles_dir, name), layers)]


class FilterModule(object):
    def filters(self):
        return {"platform_vars_files": platform_vars_files}
