# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of the compose_stack role: reading ``docker compose ps`` output, deciding which
services failed, lack a healthcheck or publish on every interface, and wording the failure.

Private to this collection (leading underscore): no compatibility promise to other collections.
Tested in tests/unit/ against outputs recorded from real Docker Compose runs.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Addresses that mean "every interface" in a published port.
_ALL_INTERFACES = ("", "0.0.0.0", "::", "[::]")


def parse_ps_output(text):
    """Parse ``docker compose ps --format json``: a JSON array (Compose < 2.21) or one JSON
    object a line (Compose >= 2.21). Returns a list of normalised container dicts, sorted by
    service and name."""
    text = (text or "").strip()
    if not text:
        return []
    if text.startswith("["):
        raw = json.loads(text)
    else:
        raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    return sorted((normalise_container(item) for item in raw), key=lambda c: (c["service"], c["name"]))


def normalise_container(raw):
    """The fields the role uses, from one ``ps`` entry."""
    publishers = raw.get("Publishers") or []
    return {
        "service": raw.get("Service", ""),
        "name": raw.get("Name", ""),
        "id": raw.get("ID", ""),
        "image": raw.get("Image", ""),
        "state": (raw.get("State") or "").lower(),
        "health": (raw.get("Health") or "").lower(),
        "exit_code": int(raw.get("ExitCode") or 0),
        "status": raw.get("Status", ""),
        "publishers": [
            {
                "url": p.get("URL", ""),
                "published": int(p.get("PublishedPort") or 0),
                "target": int(p.get("TargetPort") or 0),
                "protocol": p.get("Protocol", "tcp"),
            }
            for p in publishers
        ],
    }


def is_failing(container):
    """A container that stops the stack from being healthy: unhealthy or never became healthy,
    restarting, dead, or exited with a non-zero code (one-shot services that exited 0 are fine)."""
    state, health = container["state"], container["health"]
    if health in ("unhealthy", "starting"):
        return True
    if state in ("restarting", "dead"):
        return True
    return state == "exited" and container["exit_code"] != 0


def failing_containers(containers):
    return [c for c in containers if is_failing(c)]


def blocked_services(containers):
    """Services created but never started: they wait on a dependency that failed."""
    return sorted({c["service"] for c in containers if c["state"] == "created"})


def missing_healthchecks(containers):
    """Long-running services (running now) whose containers report no health at all."""
    return sorted({c["service"] for c in containers if c["state"] == "running" and not c["health"]})


def public_ports(containers, allowed_services):
    """Ports published on every interface by services not in allowed_services, as
    ``service: 0.0.0.0:8080->8000/tcp`` strings (Docker's ports bypass host firewalls)."""
    allowed = set(allowed_services or [])
    found = set()
    for c in containers:
        if c["service"] in allowed:
            continue
        for p in c["publishers"]:
            if p["published"] and p["url"] in _ALL_INTERFACES:
                url = p["url"] or "0.0.0.0"
                found.add("%s: %s:%d->%d/%s" % (c["service"], url, p["published"], p["target"], p["protocol"]))
    return sorted(found)


def clean_log(text, lines):
    """The last ``lines`` non-empty lines of a log, without terminal escape sequences."""
    cleaned = [_ANSI.sub("", line).rstrip() for line in (text or "").splitlines()]
    cleaned = [line for line in cleaned if line]
    return cleaned[-lines:] if lines > 0 else []


def last_health_output(health_json):
    """Output of the latest health probe from ``docker inspect --format '{{json .State.Health}}'``."""
    try:
        health = json.loads(health_json or "null")
    except ValueError:
        return ""
    if not health or not health.get("Log"):
        return ""
    last = health["Log"][-1]
    output = _ANSI.sub("", last.get("Output") or "").strip()
    return "exit code %s: %s" % (last.get("ExitCode"), output) if output else "exit code %s" % last.get("ExitCode")


def describe(container):
    if container["health"] in ("unhealthy", "starting"):
        what = "is %s" % ("unhealthy" if container["health"] == "unhealthy" else "still starting (never became healthy)")
    elif container["state"] == "exited":
        what = "exited with code %d" % container["exit_code"]
    else:
        what = "is %s" % container["state"]
    return "service '%s' %s (container %s, status \"%s\")" % (container["service"], what, container["name"], container["status"])


def failure_message(project, failing, blocked, logs, health_outputs, cause=""):
    """The error a failed deploy ends with: each failing service, its health status, its last
    health probe and its last log lines; then the services left waiting on them."""
    if not failing:
        head = "Stack '%s' failed to deploy, but every container looks fine now" % project
        return head + (": %s" % cause.strip() if cause.strip() else ".")
    parts = ["Stack '%s' is not healthy: %s." % (project, "; ".join(describe(c) for c in failing))]
    for c in failing:
        probe = health_outputs.get(c["name"])
        if probe:
            parts.append("Last health check of '%s': %s" % (c["service"], probe))
        lines = logs.get(c["service"]) or []
        if lines:
            parts.append("Last %d log lines of '%s':\n%s" % (len(lines), c["service"], "\n".join("  | " + line for line in lines)))
        else:
            parts.append("Service '%s' wrote no log lines." % c["service"])
    if blocked:
        parts.append("Not started because a dependency failed: %s." % ", ".join(blocked))
    return "\n".join(parts)


# --- Image pins ------------------------------------------------------------------------------


def image_pin(ref):
    """How an image reference (as ``docker compose config --images`` prints it) is pinned:
    ``digest``, ``tag``, or ``None`` for no tag at all or the moving ``latest`` tag."""
    ref = (ref or "").strip()
    if "@" in ref:
        return "digest"
    name = ref.rsplit("/", 1)[-1]
    if ":" not in name:
        return None
    tag = name.rsplit(":", 1)[1]
    return None if tag in ("", "latest") else "tag"


def unpinned_images(refs):
    """The references among ``refs`` with no tag or the ``latest`` tag, sorted and unique."""
    return sorted({r.strip() for r in refs or [] if r.strip() and image_pin(r) is None})


# --- Warnings ----------------------------------------------------------------------------------


def healthcheck_warning(project, services):
    if not services:
        return None
    return ("stack '%s': long-running services without a healthcheck: %s. A deploy cannot tell whether "
            "they work; add a healthcheck (compose `healthcheck:` or the image's HEALTHCHECK)."
            % (project, ", ".join(services)))


def public_ports_warning(project, ports):
    if not ports:
        return None
    return ("stack '%s' publishes ports on every interface (Docker's published ports bypass the host "
            "firewall): %s. Publish on 127.0.0.1 or list the service in the stack's public_services."
            % (project, "; ".join(ports)))


def unpinned_images_warning(project, images):
    if not images:
        return None
    return ("stack '%s' uses images without a pinned tag or digest: %s. Each pull may bring another "
            "version; pin a version tag (app:1.4.2) or a digest (app@sha256:...)."
            % (project, ", ".join(images)))


# --- Commands and their outputs --------------------------------------------------------------


def compose_command(docker_cli, project):
    return [docker_cli, "compose", "--project-name", project]


def ps_command(docker_cli, project):
    return compose_command(docker_cli, project) + ["ps", "--all", "--format", "json"]


def logs_command(docker_cli, project, service, lines):
    return compose_command(docker_cli, project) + ["logs", "--no-color", "--no-log-prefix", "--tail", str(lines), service]


def health_command(docker_cli, container):
    return [docker_cli, "inspect", "--format", "{{json .State.Health}}", container["id"] or container["name"]]


def gather_diagnostics(run, docker_cli, project, failing, lines):
    """Last log lines (by service) and last health probe output (by container name) of the
    failing containers. ``run(argv)`` returns ``(rc, stdout, stderr)``, as
    ``AnsibleModule.run_command`` does."""
    logs, probes = {}, {}
    for c in failing:
        rc, out, err = run(logs_command(docker_cli, project, c["service"], lines))
        logs[c["service"]] = clean_log(out + err if rc == 0 else err, lines)
        rc, out, dummy = run(health_command(docker_cli, c))
        if rc == 0:
            probes[c["name"]] = last_health_output(out)
    return logs, probes


def report(project, containers, logs=None, probes=None, cause="", public_services=None, images=None,
           warn_missing_healthcheck=True):
    """Everything the module returns, and its warnings, from the project's containers and the
    diagnostics of the failing ones. ``message`` is set whenever a service failed or the caller
    saw a failure (``cause``): a failed deploy is never reported as fine."""
    failing = failing_containers(containers)
    blocked = blocked_services(containers)
    missing = missing_healthchecks(containers)
    public = public_ports(containers, public_services) if public_services is not None else []
    unpinned = unpinned_images(images) if images is not None else []
    cause = (cause or "").strip()
    message = failure_message(project, failing, blocked, logs or {}, probes or {}, cause) if failing or cause else ""
    warnings = [w for w in (
        healthcheck_warning(project, missing) if warn_missing_healthcheck else None,
        public_ports_warning(project, public),
        unpinned_images_warning(project, unpinned),
    ) if w]
    result = dict(
        changed=False,
        services=containers,
        failing=sorted({c["service"] for c in failing}),
        blocked=blocked,
        missing_healthcheck=missing,
        public_ports=public,
        unpinned_images=unpinned,
        message=message,
    )
    return result, warnings
