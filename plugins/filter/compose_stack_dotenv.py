# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: compose_stack_dotenv
short_description: Write a mapping as the lines of a Docker Compose C(.env) file
version_added: 0.1.0
description:
  - Turns a mapping into C(KEY=value) lines that Docker Compose reads back unchanged.
  - Values are single-quoted (taken literally, no C($) interpolation); values holding a single
    quote or a newline are double-quoted with C(\\), C("), C($) and newlines escaped.
  - Keys must be valid environment variable names; booleans become C(true)/C(false).
author: composeops developers (@composeops)
positional: _input
options:
  _input:
    description: Variables to write.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: Write the stack's .env
  ansible.builtin.copy:
    content: "{{ {'APP_MESSAGE': 'it''s $5'} | composeops.platform.compose_stack_dotenv }}"
    dest: /opt/stacks/shop/.env
    mode: "0600"
"""

RETURN = r"""
_value:
  description: The file's lines, each ending in a newline, sorted by key.
  type: str
"""

import re

from ansible.errors import AnsibleFilterError

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _value(value):
    if isinstance(value, bool):
        value = "true" if value else "false"
    value = "" if value is None else str(value)
    if "'" not in value and "\n" not in value and "\r" not in value:
        return "'%s'" % value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    escaped = escaped.replace("\r", "\\r").replace("\n", "\\n")
    return '"%s"' % escaped


def compose_stack_dotenv(variables):
    if not isinstance(variables, dict):
        raise AnsibleFilterError("compose_stack_dotenv expects a mapping, got %s" % type(variables).__name__)
    lines = []
    for key in sorted(variables):
        if not _KEY.match(str(key)):
            raise AnsibleFilterError("'%s' is not a valid environment variable name" % key)
        lines.append("%s=%s\n" % (key, _value(variables[key])))
    return "".join(lines)


class FilterModule(object):
    def filters(self):
        return {"compose_stack_dotenv": compose_stack_dotenv}
