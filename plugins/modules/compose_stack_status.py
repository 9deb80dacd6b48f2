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
  - Only reads; changes nothing.
author: composeops developers (@composeops)
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
    description: What the caller saw fail (for example the deploy's error), added when no container looks failed.
    type: str
    default: ""
  warn_missing_healthcheck:
    description: Warn about running services without a healthcheck.
    type: bool
    default: true
  public_services:
    description:
      - Services allowed to publish ports on every interface. Others that do get a warning.
      - Omit to skip this check.
    type: list
    elements: str
  docker_cli:
    description: The docker command.
    type: path
    default: docker
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
requirements:
  - Docker CLI with the Compose v2 plugin
"""

EXAMPLES = r"""
- name: Explain why the stack is not healthy
  composeops.platform.compose_stack_status:
    project_name: shop
    log_lines: 30
    fail_on_unhealthy: true
"""

RETURN = r"""
services:
  description: Every container of the project.
  returned: always
  type: list
  elements: dict
  sample: [{service: app, name: shop-app-1, state: running, health: healthy, exit_code: 0}]
failing:
  description: Names of the services that failed.
  returned: always
  type: list
  elements: str
blocked:
  description: Services created but never started, waiting on a failed dependency.
  returned: always
  type: list
  elements: str
missing_healthcheck:
  description: Running services that report no healthcheck.
  returned: always
  type: list
  elements: str
public_ports:
  description: Ports published on every interface by services not in O(public_services).
  returned: always
  type: list
  elements: str
message:
  description: The error message naming failing services with their health status and last log lines; empty when none failed.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _compose_stack as cs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_name=dict(type="str", required=True),
            log_lines=dict(type="int", default=20),
            fail_on_unhealthy=dict(type="bool", default=False),
            failure_cause=dict(type="str", default=""),
            warn_missing_healthcheck=dict(type="bool", default=True),
            public_services=dict(type="list", elements="str"),
            docker_cli=dict(type="path", default="docker"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    compose = [p["docker_cli"], "compose", "--project-name", p["project_name"]]
    rc, out, err = module.run_command(compose + ["ps", "--all", "--format", "json"])
    if rc != 0:
        module.fail_json(msg="docker compose ps failed for stack '%s': %s" % (p["project_name"], err.strip()))
    containers = cs.parse_ps_output(out)
    failing = cs.failing_containers(containers)
    logs, probes = {}, {}
    for c in failing:
        rc, out, err = module.run_command(compose + ["logs", "--no-color", "--no-log-prefix",
                                                     "--tail", str(p["log_lines"]), c["service"]])
        logs[c["service"]] = cs.clean_log(out + err if rc == 0 else err, p["log_lines"])
        rc, out, err = module.run_command([p["docker_cli"], "inspect", "--format", "{{json .State.Health}}", c["id"] or c["name"]])
        if rc == 0:
            probes[c["name"]] = cs.last_health_output(out)
    blocked = cs.blocked_services(containers)
    missing = cs.missing_healthchecks(containers)
    public = cs.public_ports(containers, p["public_services"]) if p["public_services"] is not None else []
    if p["warn_missing_healthcheck"] and missing:
        module.warn("stack '%s': long-running services without a healthcheck: %s. A deploy cannot tell whether "
                    "they work; add a healthcheck (compose `healthcheck:` or the image's HEALTHCHECK)."
                    % (p["project_name"], ", ".join(missing)))
    if public:
        module.warn("stack '%s' publishes ports on every interface (Docker's published ports bypass the host "
                    "firewall): %s. Publish on 127.0.0.1 or list the service in the stack's public_services."
                    % (p["project_name"], "; ".join(public)))
    message = cs.failure_message(p["project_name"], failing, blocked, logs, probes, p["failure_cause"]) if (
        failing or p["failure_cause"]) else ""
    result = dict(
        changed=False,
        services=containers,
        failing=sorted({c["service"] for c in failing}),
        blocked=blocked,
        missing_healthcheck=missing,
        public_ports=public,
        message=message,
    )
    if p["fail_on_unhealthy"] and message:
        module.fail_json(msg=message, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
