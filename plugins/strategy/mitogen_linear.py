# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible's linear strategy under Mitogen, named composeops.platform.mitogen_linear, so that an
ansible.cfg can select it without a path into the virtual environment Mitogen was installed in."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: mitogen_linear
short_description: Ansible's linear strategy, with modules run by Mitogen
description:
  - The linear strategy (every task on every host of the batch before the next task), with the
    connections that Mitogen replaces (C(ssh), C(docker), C(local) and the others Mitogen supports)
    run by Mitogen, which keeps one Python interpreter open on each host and runs the modules in
    it instead of starting one per task.
  - The shipped C(ansible.cfg) selects it. Turn it off for one run with C(ANSIBLE_STRATEGY=linear).
  - Plays that must run with Ansible's own strategy name it (C(strategy=linear)), as C(playbooks/rollout.yml) does.
  - ansible-core 2.19 prints a deprecation for every strategy plugin outside ansible.builtin.
author: composeops developers (@composeops)
requirements:
  - mitogen (the Python package, pinned in the collection's C(requirements.txt)) on the controller
notes:
  - Without Mitogen installed for the controller's Python, a play under this strategy stops before
    its first task, saying what to install.
"""

from ansible.errors import AnsibleError
from ansible.plugins.loader import strategy_loader

# The class through the plugin loader, as Mitogen's own strategy plugins take it: a direct import
# would load the linear strategy a second time under another module name.
Linear = strategy_loader.get("linear", class_only=True)

try:
    import ansible_mitogen.strategy
except ImportError as exc:
    MITOGEN_IMPORT_ERROR = exc
    BASES = (Linear,)
else:
    MITOGEN_IMPORT_ERROR = None
    BASES = (ansible_mitogen.strategy.StrategyMixin, Linear)


class StrategyModule(*BASES):
    def __init__(self, *args, **kwargs):
        if MITOGEN_IMPORT_ERROR is not None:
            raise AnsibleError(
                "composeops.platform.mitogen_linear (the strategy of the shipped ansible.cfg) needs Mitogen, "
                "which is not installed for this Python: `pip install -r requirements.txt` (it pins mitogen), "
                "or run without it with ANSIBLE_STRATEGY=linear. (%s)" % MITOGEN_IMPORT_ERROR)
        super(StrategyModule, self).__init__(*args, **kwargs)
