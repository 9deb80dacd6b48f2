# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The texts every module of the collection shares: each module says only its support."""

    # The attributes, as ansible-core words them (modules add `support:` and `details:`).
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
"""

    # The modules that drive the docker CLI.
    DOCKER_CLI = r"""
options:
  docker_cli:
    description: The docker command.
    type: path
    default: docker
"""

    # The modules that change an upstream file of the reverse_proxy role and reload nginx.
    NGINX = r"""
options:
  upstreams_dir:
    description: Directory of the reverse_proxy role's upstream files.
    type: path
    default: /etc/nginx/composeops/upstreams
  nginx_check:
    description: Command that tests a candidate upstream file (C(<nginx_check> CANDIDATE DEST)).
    type: path
    default: /usr/local/sbin/composeops-nginx-check
  nginx_reload:
    description: Command that reloads nginx gracefully.
    type: list
    elements: str
    default: [systemctl, reload, nginx]
"""
