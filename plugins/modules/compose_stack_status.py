#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_stack_status
short_description: Report the health of a Docker Compose project, with logs of failing services
version_added: 0.1.0
description:
  - Reads C(docker compose ps --all --format json) of a project and tells which services failed
    (unhealthy, never healthy, restarting, exited non-zero), which were left waiting on them, which
    long-running services report no healthcheck, and which publish ports on every interface.
  - For each failing service it adds the last health probe output and the last log lines, and
    words one error message naming them. Used by the P(composeops.platform.compose_stack#role) role.
  - Warns about images used without a pinned tag or digest (O(images)).
  - Only reads; changes nothing.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
  - composeops.platform.attributes.docker_cli
options:
  project_name:
    description: Compose project name (the stack name).
    type: str
    required: true
  log_lines:
    description: How many log lines of each failing service to report.
    type: int
    default: 20
  fail_on_unhealthy:
    description: Fail with the error message when a service failed.
    type: bool
    default: false
  failure_cause:
    description:
      - What the caller saw fail (for example the deploy's error). When set, RV(message) is never
        empty, even if every container looks fine.
    type: str
    default: ""
  warn_missing_healthcheck:
    description: Warn about running services without a healthcheck.
    type: bool
    default: true
  images:
    description:
      - Image references of the project (C(docker compose config --images)). Those with no tag or
        the C(latest) tag get a warning.
      - Omit to skip this check.
    type: list
    elements: str
  public_services:
    description:
      - Services allowed to publish ports on every interface. Others that do get a warning.
      - Omit to skip this check.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
requirements:
  - Docker CLI with the Compose v2 plugin
"""

EXAMPLES = r"""
- name: Explain why the stack is not healthy
  composeops.platform.compose_stack_status:
    project_name: shop
    log_lines: 30
    fail_on_unhealthy: true

- name: Warn about missing healthchecks, public ports and unpinned images
  composeops.platform.compose_stack_status:
    project_name: shop
    public_services: [proxy]
    images: [registry.example.com/shop/app:1.4.2, redis]
"""

RETURN = r"""
services:
  description: Every container of the project.
  returned: success
  type: list
  elements: dict
  sample: [{service: app, name: shop-app-1, state: running, health: healthy, exit_code: 0}]
failing:
  description: Names of the services that failed.
  returned: success
  type: list
  elements: str
blocked:
  description: Services created but never started, waiting on a failed dependency.
  returned: success
  type: list
  elements: str
missing_healthcheck:
  description: Running services that report no healthcheck.
  returned: success
  type: list
  elements: str
public_ports:
  description: Ports published on every interface by services not in O(public_services).
  returned: success
  type: list
  elements: str
unpinned_images:
  description: Images of O(images) with no tag or the C(latest) tag.
  returned: success
  type: list
  elements: str
message:
  description:
    - The error message naming failing services with their health status and last log lines.
    - Empty when no service failed and O(failure_cause) is empty.
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _compose_stack as cs


def fail(module, msg, **result):
    """The one way this module fails: with the project and what it found so far."""
    result.setdefault("changed", False)
    module.fail_json(msg=msg, project_name=module.params["project_name"], **result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_name=dict(type="str", required=True),
            log_lines=dict(type="int", default=20),
            fail_on_unhealthy=dict(type="bool", default=False),
            failure_cause=dict(type="str", default=""),
            warn_missing_healthcheck=dict(type="bool", default=True),
            public_services=dict(type="list", elements="str"),
            images=dict(type="list", elements="str"),
            docker_cli=dict(type="path", default="docker"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    ps = cs.ps_command(p["docker_cli"], p["project_name"])
    rc, out, err = module.run_command(ps)
    if rc != 0:
        fail(module, "docker compose ps failed for stack '%s' (exit code %d): %s" % (p["project_name"], rc, err.strip()),
             cmd=ps, rc=rc, stderr=err)
    containers = cs.parse_ps_output(out)
    logs, probes = cs.gather_diagnostics(module.run_command, p["docker_cli"], p["project_name"],
                                         cs.failing_containers(containers), p["log_lines"])
    result, warnings = cs.report(p["project_name"], containers, logs, probes, p["failure_cause"],
                                 p["public_services"], p["images"], p["warn_missing_healthcheck"])
    for warning in warnings:
        module.warn(warning)
    if p["fail_on_unhealthy"] and result["message"]:
        fail(module, result["message"], **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
