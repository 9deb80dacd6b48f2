#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: paths
short_description: Create directories and set the owner, group and mode of many paths in one task
version_added: 0.1.0
description:
  - Does for a list of paths what a loop of M(ansible.builtin.file) does item by item, in one module
    run, so that a re-run with nothing to change makes one round trip to the host instead of one per path.
  - Each path is a directory created when missing (O(paths[].state=directory), with its missing
    parents, as M(ansible.builtin.file) creates them), a path that must exist (C(present), a file or
    a directory), or a path whose attributes are set only when it exists (C(optional)).
  - Symbolic links are followed, as M(ansible.builtin.file) does by default.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
options:
  paths:
    description: The paths, in the order they are handled.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      state:
        description:
          - C(directory) creates the directory when missing (and fails when the path is something else).
          - C(present) fails when the path is missing; C(optional) leaves a missing path alone.
        type: str
        choices: [directory, present, optional]
        default: directory
      owner:
        description: Owner (name or uid); unchanged when not given.
        type: str
      group:
        description: Group (name or gid); unchanged when not given.
        type: str
      mode:
        description: Mode as M(ansible.builtin.file) takes it (octal string or symbolic); unchanged when not given.
        type: raw
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: One before/after entry per changed path.
  idempotent:
    support: full
seealso:
  - module: ansible.builtin.file
"""

EXAMPLES = r"""
- name: Create the configuration directories
  composeops.platform.paths:
    paths:
      - {path: /etc/example, owner: root, group: root, mode: "0755"}
      - {path: /etc/example/secrets, owner: root, group: root, mode: "0700"}

- name: Tighten the permissions of files some hosts do not have
  composeops.platform.paths:
    paths:
      - {path: /etc/shadow, state: optional, owner: root, group: shadow, mode: "0640"}
"""

RETURN = r"""
changed_paths:
  description: The paths that were (or, in check mode, would be) created or changed, in order.
  returned: always
  type: list
  elements: str
  sample: [/etc/example/secrets]
results:
  description: One entry per path of O(paths), in order.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The path.
      type: str
    changed:
      description: Whether it was (or would be) created or changed.
      type: bool
    state:
      description: C(directory), C(file) (anything that is not a directory) or C(absent), after the run.
      type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native


def _file_args(module, path, item):
    return module.load_file_common_arguments(
        {"mode": item.get("mode"), "owner": item.get("owner"), "group": item.get("group")}, path=path)


def _state(b_path):
    if not os.path.lexists(b_path):
        return "absent"
    return "directory" if os.path.isdir(b_path) else "file"


def _handle(module, item):
    """Create or adjust one path; return (changed, state, diff)."""
    path = item["path"]
    b_path = to_bytes(path, errors="surrogate_or_strict")
    if os.path.islink(b_path):
        b_path = os.path.realpath(b_path)
        path = to_native(b_path, errors="surrogate_or_strict")
    diff = {"before": {"path": path}, "after": {"path": path}}
    before = _state(b_path)
    diff["before"]["state"] = before
    if before == "absent":
        if item["state"] == "optional":
            return False, "absent", None
        if item["state"] == "present":
            module.fail_json(msg="path %s is absent, cannot continue" % path, path=path)
        diff["after"]["state"] = "directory"
        if module.check_mode:
            return True, "directory", diff
        # Each missing component, with the attributes of the item (as ansible.builtin.file does).
        missing = []
        b_cur = b_path
        while b_cur and not os.path.lexists(b_cur):
            missing.append(b_cur)
            b_cur = os.path.dirname(b_cur.rstrip(b"/")) or b"/"
        for b_dir in reversed(missing):
            try:
                os.mkdir(b_dir)
            except OSError as e:
                if not os.path.isdir(b_dir):
                    module.fail_json(msg="cannot create %s: %s" % (to_native(b_dir), to_native(e)), path=path)
            module.set_fs_attributes_if_different(
                _file_args(module, to_native(b_dir, errors="surrogate_or_strict"), item), False, expand=False)
        return True, "directory", diff
    if item["state"] == "directory" and before != "directory":
        module.fail_json(msg="%s exists and is not a directory" % path, path=path)
    diff["after"]["state"] = before
    changed = module.set_fs_attributes_if_different(_file_args(module, path, item), False, diff, expand=False)
    return changed, before, diff if changed else None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(
                type="list",
                elements="dict",
                required=True,
                options=dict(
                    path=dict(type="path", required=True),
                    state=dict(type="str", choices=["directory", "present", "optional"], default="directory"),
                    owner=dict(type="str"),
                    group=dict(type="str"),
                    mode=dict(type="raw"),
                ),
            ),
        ),
        supports_check_mode=True,
    )
    results, diffs, changed_paths = [], [], []
    for item in module.params["paths"]:
        changed, state, diff = _handle(module, item)
        results.append({"path": item["path"], "changed": changed, "state": state})
        if changed:
            changed_paths.append(item["path"])
            if diff:
                diffs.append(diff)
    module.exit_json(changed=bool(changed_paths), changed_paths=changed_paths, results=results, diff=diffs)


if __name__ == "__main__":
    main()
