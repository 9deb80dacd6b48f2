#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_release_info
short_description: Read the release history that compose_rollout keeps for a Compose stack
version_added: 0.1.0
description:
  - Lists the releases recorded in C(<project_dir>/.releases/) by
    M(composeops.platform.compose_rollout), newest first, with their result, and tells which one
    is current.
  - With O(release), also resolves one release (C(previous), the N-th previous successful one, or
    an id) the same way M(composeops.platform.compose_rollout) does for a rollback.
  - Only reads; changes nothing.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
options:
  project_dir:
    description: Directory of the stack (C(/opt/stacks/<name>)).
    type: path
    required: true
  release:
    description:
      - C(previous), a number N (the N-th previous successful release, 0 being the current one) or a
        release id. The module fails, listing the available ids, when it names none.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: composeops.platform.compose_rollout
"""

EXAMPLES = r"""
- name: List the releases of stack shop
  composeops.platform.compose_release_info:
    project_dir: /opt/stacks/shop
  register: shop_releases

- name: Which release a rollback to the 2nd previous one would restore
  composeops.platform.compose_release_info:
    project_dir: /opt/stacks/shop
    release: "2"
  register: target
"""

RETURN = r"""
releases:
  description:
    - Every recorded release, newest first.
    - C(run_id) is the O(composeops.platform.compose_rollout#module:run_id) of the run that recorded it,
      to find the records of one multi-host rollout together; null when that run had none.
  returned: success
  type: list
  elements: dict
  sample:
    - id: 20261202T143000Z-1a2b3c4d
      time: "2026-12-02T14:30:00Z"
      who: alice
      result: success
      checksum: 1a2b3c4d...
      images: {web: {ref: "registry.example.com/app:2.0", id: "sha256:...", digest: "registry.example.com/app@sha256:..."}}
      services: {web: {strategy: rolling}}
      previous: 20261201T101500Z-9f8e7d6c
      run_id: 20261202T142955Z-shop
      current: true
current:
  description: Id of the active release; null when none is recorded.
  returned: success
  type: str
release:
  description: The release O(release) names, with the same keys as an element of RV(releases).
  returned: when O(release) is set
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _release as rel


def fail(module, msg, **result):
    """The one way this module fails: with the stack directory and what it found so far."""
    result.setdefault("changed", False)
    module.fail_json(msg=msg, project_dir=module.params["project_dir"], **result)


class ReleaseInfo(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def run(self):
        records, current = rel.read_history(self.params["project_dir"])
        result = dict(changed=False, current=current, releases=[rel.summary(r, current) for r in records])
        if self.params["release"] is not None:
            try:
                result["release"] = rel.summary(rel.select_release(records, self.params["release"], current), current)
            except rel.ReleaseError as exc:
                fail(self.module, "stack in %s: %s" % (self.params["project_dir"], exc), **result)
        return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            release=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    module.exit_json(**ReleaseInfo(module).run())


if __name__ == "__main__":
    main()
