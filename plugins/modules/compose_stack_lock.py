#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_stack_lock
short_description: Take or release the deploy lock of a Compose stack across the tasks of a playbook run
version_added: 0.1.0
description:
  - Takes the per-stack deploy lock that M(composeops.platform.compose_rollout) uses
    (C(<lock_dir>/<project>.lock)), for a playbook run that changes the stack in several tasks
    (the P(composeops.platform.compose_stack#role) role writes the files, runs the pre-deploy
    hooks, then calls M(composeops.platform.compose_rollout) with RV(token) as its C(lock_token)).
    Another run of the stack waits O(timeout) seconds, then fails naming who holds the lock since when.
  - A lock held by a playbook run has no process on the host, so it is taken over once it expired
    (O(expiry), renewed by M(composeops.platform.compose_rollout) while it works) or after a
    reboot. A lock held by a dead module process is taken over at once. Takeovers are warnings.
  - O(state=released) removes the lock only when O(token) still holds it.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
options:
  project_name:
    description: Compose project name of the stack.
    type: str
    required: true
  state:
    description: C(held) takes the lock (or, with O(token), renews the lock that token holds); C(released) gives it back
    type: str
    choices: [held, released]
    default: held
  token:
    description: The token RV(token) returned when the lock was taken. Required with O(state=released).
    type: str
  who:
    description: Who deploys, shown to the runs that wait. Default C(SUDO_USER), then C(LOGNAME).
    type: str
  timeout:
    description: Seconds to wait for the holder before failing.
    type: int
    default: 60
  expiry:
    description: Seconds after which the lock is stale unless renewed.
    type: int
    default: 900
  lock_dir:
    description: Directory of the lock files.
    type: path
    default: /var/lib/composeops/locks
attributes:
  check_mode:
    support: none
    details: A check run changes nothing that needs a lock, so Ansible skips this task in check mode.
  diff_mode:
    support: none
  idempotent:
    support: none
    details: A lock is not state of the host; the module reports no change, taking or releasing it.
seealso:
  - module: composeops.platform.compose_rollout
"""

EXAMPLES = r"""
- name: Take the deploy lock of stack shop
  composeops.platform.compose_stack_lock:
    project_name: shop
  register: shop_lock

- name: Roll out under that lock
  composeops.platform.compose_rollout:
    project_dir: /opt/stacks/shop
    lock_token: "{{ shop_lock.token }}"

- name: Release the deploy lock of stack shop
  composeops.platform.compose_stack_lock:
    project_name: shop
    state: released
    token: "{{ shop_lock.token }}"
"""

RETURN = r"""
token:
  description: The token of the lock this run holds (pass it as C(lock_token) and to O(state=released)).
  returned: O(state=held)
  type: str
lock:
  description: The lock file's content (C(who), C(host), C(started), C(expires) as epoch seconds).
  returned: O(state=held)
  type: dict
released:
  description: Whether the lock was removed (false when this token no longer held it).
  returned: O(state=released)
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _lock as lk


class StackLockManager(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        who = p["who"] or lk.default_who()
        self.lock = lk.StackLock(p["lock_dir"], p["project_name"], who, p["expiry"], module.warn)

    def run(self):
        p = self.module.params
        if p["state"] == "released":
            return {"changed": False, "released": self.lock.release(p["token"])}
        if p["token"]:
            payload = self.lock.renew(p["token"])
        else:
            payload = self.lock.acquire(p["timeout"])
        return {"changed": False, "token": payload["token"], "lock": payload}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_name=dict(type="str", required=True),
            state=dict(type="str", choices=["held", "released"], default="held"),
            token=dict(type="str", no_log=False),
            who=dict(type="str"),
            timeout=dict(type="int", default=60),
            expiry=dict(type="int", default=900),
            lock_dir=dict(type="path", default="/var/lib/composeops/locks"),
        ),
        required_if=[["state", "released", ["token"]]],
        supports_check_mode=False,
    )
    if module.params["expiry"] < 60 or module.params["timeout"] < 0:
        module.fail_json(msg="expiry must be at least 60 seconds and timeout not negative (got %d and %d)"
                         % (module.params["expiry"], module.params["timeout"]))
    try:
        result = StackLockManager(module).run()
    except (lk.LockError, OSError) as exc:
        module.fail_json(msg=str(exc), project_name=module.params["project_name"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
