# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mitogen's ``mitogen_linear`` strategy, loaded from wherever pip installed Mitogen.

The shipped ansible.cfg and the test scenarios name this directory in ``strategy_plugins`` so that
no path into a virtual environment is written down anywhere. Mitogen keeps one Python interpreter
open per host and runs every module in it; the linear strategy's semantics are unchanged.

Turn it off for one run with ``ANSIBLE_STRATEGY=linear`` (or drop ``strategy`` from ansible.cfg).
"""

from __future__ import annotations

from ansible.errors import AnsibleError

try:
    # Mitogen's own proxy module: it loads the strategy under its canonical name.
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule  # noqa: F401 pylint: disable=unused-import
except ImportError as exc:
    raise AnsibleError(
        "ansible.cfg runs Ansible under Mitogen (strategy mitogen_linear), which is not installed for "
        "this Python: `pip install -r requirements.txt` (it pins mitogen), or run without it with "
        "ANSIBLE_STRATEGY=linear") from exc
