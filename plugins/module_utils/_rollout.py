# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure logic of compose_rollout: reading ``docker compose config`` / ``docker inspect``,
planning which services change and how, health-gate bookkeeping, rewriting nginx upstream
files and the recovery of an interrupted rollout.

Facts these functions rely on, checked on Docker 20.10 with Compose 2.26.1 (Debian 13's) and
recorded in tests/unit/fixtures/rollout/:

- the ``com.docker.compose.config-hash`` label of a container made by ``up`` equals
  ``config --hash`` of its service, but NOT when it was made by ``up --no-deps`` and the service
  has ``depends_on``: Compose then hashes the service without its dependencies (so the next plain
  ``up`` recreates every such replica). Every ``up`` here therefore runs without --no-deps, one
  service at a time in dependency order, so that the dependencies are up to date already and
  ``--no-recreate`` / the service selection leave them alone.
- ``up -d --no-recreate --scale svc=N svc`` adds N - running containers with the new config and
  leaves the old ones running (docker-rollout's trick).

Private to this collection (leading underscore): no compatibility promise to other collections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import socket

OVERRIDE_FILE = "compose.rollout.yaml"
JOURNAL = "journal.json"
PLACEHOLDER_COMMENT = "# No running replica: nginx needs one server; this one answers 502."
PLACEHOLDER_SERVER = "server 127.0.0.1:9 down;"
DEFAULT_SERVER_PARAMS = " max_fails=1 fail_timeout=5s"
GATE_DEFAULTS = {"type": "docker", "interval": 1, "timeout": 2, "retries": 30, "successes": 2,
                 "status": 200, "path": "/", "port": None, "body": None, "command": None}
GATE_TYPES = ("docker", "http", "tcp", "command")
_SERVER = re.compile(r"^(?P<indent>\s*)server\s+(?P<address>[^\s;]+)(?P<params>[^;]*);(?P<rest>.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class RolloutError(Exception):
    """A rollout is refused or failed: the message is for the user."""


# --- Commands ------------------------------------------------------------------------------------


def compose_base(docker_cli, project, project_dir, files, env_files):
    """``docker compose`` with the project's name, directory, files and env files (paths only:
    the env files may hold secrets, their content is never in argv)."""
    argv = [docker_cli, "compose", "-p", project, "--project-directory", project_dir]
    for name in files:
        argv += ["-f", os.path.join(project_dir, name)]
    for name in env_files:
        argv += ["--env-file", os.path.join(project_dir, name)]
    return argv


def config_command(base):
    return base + ["config", "--format", "json"]


def hash_command(base):
    return base + ["config", "--hash", "*"]


def ps_command(docker_cli, project):
    return [docker_cli, "ps", "-a", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=%s" % project]


def up_recreate_command(base, service, wait_timeout, pull):
    """Recreate one service in place and wait for its health. No --no-deps: see the module doc."""
    return base + ["up", "-d", "--pull", pull, "--wait", "--wait-timeout", str(wait_timeout), service]


def up_scale_command(base, service, count, pull):
    """New containers of ``service`` beside the running ones, up to ``count`` in all."""
    return base + ["up", "-d", "--pull", pull, "--no-recreate", "--scale", "%s=%d" % (service, count), service]


# --- Outputs -------------------------------------------------------------------------------------


def parse_config_hash(text):
    """``config --hash '*'``: one ``service hash`` a line."""
    hashes = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            hashes[parts[0]] = parts[1]
    return hashes


def parse_ps_ids(text):
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def normalise_container(raw):
    """The fields a rollout uses, from one ``docker inspect`` entry."""
    config = raw.get("Config") or {}
    labels = config.get("Labels") or {}
    state = raw.get("State") or {}
    health = state.get("Health") or {}
    networks = (raw.get("NetworkSettings") or {}).get("Networks") or {}
    try:
        number = int(labels.get("com.docker.compose.container-number") or 0)
    except ValueError:
        number = 0
    return {
        "id": raw.get("Id", ""),
        "name": (raw.get("Name") or "").lstrip("/"),
        "project": labels.get("com.docker.compose.project", ""),
        "service": labels.get("com.docker.compose.service", ""),
        "number": number,
        "oneoff": (labels.get("com.docker.compose.oneoff") or "False").lower() == "true",
        "config_hash": labels.get("com.docker.compose.config-hash", ""),
        "state": (state.get("Status") or "").lower(),
        "running": bool(state.get("Running")) and not state.get("Restarting"),
        "exit_code": int(state.get("ExitCode") or 0),
        "health": (health.get("Status") or "").lower(),
        "health_log": [
            {"exit_code": entry.get("ExitCode"), "output": _ANSI.sub("", entry.get("Output") or "").strip(),
             "end": entry.get("End", "")}
            for entry in (health.get("Log") or [])
        ],
        "networks": dict((net, (info or {}).get("IPAddress") or "") for net, info in networks.items()),
        "image_id": raw.get("Image", ""),
        "image": config.get("Image", ""),
        "stop_timeout": config.get("StopTimeout"),
    }


def parse_inspect(text):
    """``docker inspect`` output (a JSON array) → normalised containers, sorted by name."""
    raw = json.loads(text) if isinstance(text, str) else text
    return sorted((normalise_container(item) for item in raw or []), key=lambda c: c["name"])


def image_digest(image_inspect, ref):
    """The repo digest (``repo@sha256:…``) of an image for ``ref``'s repository, from one
    ``docker image inspect`` entry; '' for an image that was never pulled from a registry."""
    digests = image_inspect.get("RepoDigests") or []
    repo = strip_tag(ref)
    for digest in digests:
        if digest.split("@", 1)[0] == repo:
            return digest
    return digests[0] if digests else ""


def strip_tag(ref):
    """``registry:5000/app:1.0`` → ``registry:5000/app``; digests dropped too."""
    ref = (ref or "").split("@", 1)[0]
    head, _sep, tail = ref.rpartition("/")
    if ":" in tail:
        tail = tail.split(":", 1)[0]
    return head + "/" + tail if head else tail


def pin_digest(ref, digest):
    """The reference that pins ``ref`` to ``digest`` (``repo@sha256:…``)."""
    return strip_tag(ref) + "@" + digest.split("@", 1)[-1]


# --- The desired state -------------------------------------------------------------------------


def publishes_fixed_port(service_config):
    """Ports with a fixed host port: two replicas cannot both bind it."""
    fixed = []
    for port in service_config.get("ports") or []:
        if isinstance(port, dict):
            if str(port.get("published") or "").strip():
                fixed.append("%s:%s->%s" % (port.get("host_ip") or "0.0.0.0", port["published"], port.get("target")))
        elif ":" in str(port):
            fixed.append(str(port))
    return fixed


def dependency_order(config):
    """Service names, every service after those it ``depends_on``; ties by name."""
    services = config.get("services") or {}
    deps = dict((name, sorted(d for d in (svc.get("depends_on") or {}) if d in services))
                for name, svc in services.items())
    order, done = [], set()

    def visit(name, trail):
        if name in done:
            return
        if name in trail:
            raise RolloutError("services depend on each other in a cycle: %s" % " -> ".join(trail + [name]))
        for dep in deps[name]:
            visit(dep, trail + [name])
        done.add(name)
        order.append(name)

    for name in sorted(services):
        visit(name, [])
    return order


def internal_networks(config):
    """Full names (``<project>_<net>`` or ``name:``) of the networks declared ``internal``."""
    return sorted((net or {}).get("name") or "%s_%s" % (config.get("name", ""), key)
                  for key, net in (config.get("networks") or {}).items() if (net or {}).get("internal"))


_NUMBERS = {"surge": int, "port": int, "drain_seconds": float}
_GATE_NUMBERS = {"interval": float, "timeout": float, "retries": int, "successes": int, "status": int, "port": int}


def _coerce(where, key, value, kind):
    if value is None or value == "":
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise RolloutError("%s.%s must be a number (got %r)" % (where, key, value)) from None


def normalise_options(services, default_gate):
    """The caller's ``services`` and ``default_gate`` with their numbers as numbers (Ansible
    passes a dict option's values as they come, strings from ``-e`` included)."""
    out = {}
    for name, opts in sorted((services or {}).items()):
        opts = dict(opts or {})
        for key, kind in _NUMBERS.items():
            if key in opts:
                opts[key] = _coerce("services.%s" % name, key, opts[key], kind)
        if opts.get("gate") is not None:
            opts["gate"] = normalise_gate("services.%s.gate" % name, opts["gate"])
        out[name] = opts
    return out, normalise_gate("default_gate", default_gate or {})


def normalise_gate(where, gate):
    if not isinstance(gate, dict):
        raise RolloutError("%s must be a dict (got %r)" % (where, gate))
    gate = dict(gate)
    for key, kind in _GATE_NUMBERS.items():
        if key in gate:
            gate[key] = _coerce(where, key, gate[key], kind)
    if gate.get("command") is not None and not isinstance(gate["command"], list):
        raise RolloutError("%s.command must be a list (argv), got %r" % (where, gate["command"]))
    return gate


def gate_for(service_options, default_gate):
    gate = dict(GATE_DEFAULTS)
    gate.update(dict((k, v) for k, v in (default_gate or {}).items() if v is not None))
    gate.update(dict((k, v) for k, v in ((service_options or {}).get("gate") or {}).items() if v is not None))
    return gate


def has_healthcheck(service_config, image_healthcheck=None):
    """True/False when known from the compose config (or the image's HEALTHCHECK), None when the
    image is not known yet (the gate then fails at once on a container without health)."""
    hc = service_config.get("healthcheck")
    if hc is not None:
        return not hc.get("disable") and (hc.get("test") or [None])[0] != "NONE"
    if image_healthcheck is None:
        return None
    return bool(image_healthcheck.get("Test")) and image_healthcheck["Test"][0] != "NONE"


def plan(config, hashes, containers, options):
    """What a rollout does, service by service in dependency order. ``options``:

    services       {svc: {strategy, surge, gate, drain_seconds, port}} from the caller
    stateful       services never surged
    upstreams      services that have an upstream file (rolling by default)
    default_gate   the gate of services that name none
    healthchecks   {svc: image HEALTHCHECK dict or None}, for the images known locally

    Returns ``{"steps": [...], "unchanged": [svc...]}``; each step is ``{service, strategy
    (recreate | rolling | start), reason, desired_hash, old: [containers], remove: [containers],
    batches: [[containers]], gate, surge, drain_seconds, port, upstream}``. Raises RolloutError
    naming every refusal before anything changed."""
    services = config.get("services") or {}
    opts = options.get("services") or {}
    stateful = set(options.get("stateful") or [])
    upstreams = set(options.get("upstreams") or [])
    refusals = []
    for name in sorted(opts):
        if name not in services:
            refusals.append("services.%s: no such service in the project (services: %s)" % (name, ", ".join(sorted(services))))
    steps, unchanged = [], []
    for name in dependency_order(config):
        svc_opts = opts.get(name) or {}
        wanted = [c for c in containers if c["service"] == name and not c["oneoff"]]
        running = [c for c in wanted if c["running"]]
        desired = hashes.get(name)
        if desired is None:
            refusals.append("service %s: `docker compose config --hash` did not report it" % name)
            continue
        stale = [c for c in running if c["config_hash"] != desired]
        if running and not stale:
            unchanged.append(name)
            continue
        strategy = svc_opts.get("strategy") or ("rolling" if name in upstreams else "recreate")
        surge = svc_opts.get("surge")
        gate = gate_for(svc_opts, options.get("default_gate"))
        if strategy == "rolling":
            fixed = publishes_fixed_port(services[name])
            if fixed:
                refusals.append("service %s cannot be rolled: it publishes a fixed host port (%s) that two replicas "
                                "cannot both bind; use strategy recreate or publish no host port" % (name, ", ".join(fixed)))
            if name in stateful:
                refusals.append("service %s is stateful: it is recreated in place, never rolled (strategy rolling "
                                "refused)" % name)
            if surge is not None and surge < 1:
                refusals.append("service %s: surge must be at least 1 (got %s)" % (name, surge))
            if gate["type"] not in GATE_TYPES:
                refusals.append("service %s: unknown gate type '%s' (one of %s)" % (name, gate["type"], ", ".join(GATE_TYPES)))
            elif gate["type"] == "docker" and has_healthcheck(services[name], (options.get("healthchecks") or {}).get(name)) is False:
                refusals.append("service %s has no healthcheck, so the docker gate cannot tell when a new replica "
                                "works: give it a healthcheck or another gate (http, tcp, command)" % name)
            elif gate["type"] in ("http", "tcp") and not (gate.get("port") or svc_opts.get("port")):
                refusals.append("service %s: an %s gate needs a port (gate.port or the service's port)" % (name, gate["type"]))
            elif gate["type"] == "command" and not gate.get("command"):
                refusals.append("service %s: a command gate needs gate.command (a list)" % name)
        elif strategy != "recreate":
            refusals.append("service %s: unknown strategy '%s' (rolling or recreate)" % (name, strategy))
        if not running:
            kind, reason = ("start" if strategy == "rolling" else "recreate"), "no running container"
        else:
            kind = strategy
            reason = "config changed on %s" % ", ".join(c["name"] for c in stale)
        old = sorted(stale, key=lambda c: c["name"])
        step = {
            "service": name,
            "strategy": kind,
            "reason": reason,
            "desired_hash": desired,
            "old": old,
            "keep": [c for c in running if c not in stale],
            "remove": [c for c in wanted if not c["running"]],
            "gate": gate,
            "surge": surge,
            "batches": batches(old, surge) if kind == "rolling" else [],
            "drain_seconds": svc_opts.get("drain_seconds"),
            "port": svc_opts.get("port"),
            "upstream": name in upstreams,
            "image": services[name].get("image", ""),
        }
        steps.append(step)
    if refusals:
        raise RolloutError("rollout refused, nothing was changed: " + "; ".join(refusals))
    return {"steps": steps, "unchanged": unchanged}


def batches(old, surge):
    """The old replicas in batches of ``surge`` (default: all at once), in name order."""
    old = sorted(old, key=lambda c: c["name"])
    if not old:
        return []
    size = surge if surge else len(old)
    return [old[i:i + size] for i in range(0, len(old), size)]


def new_containers(before, after, service):
    """Containers of ``service`` in ``after`` (inspected) whose id was not in ``before`` (ids)."""
    known = set(i[:12] for i in before)
    return [c for c in after if c["service"] == service and not c["oneoff"] and c["id"][:12] not in known]


# --- Gates -----------------------------------------------------------------------------------------


class Gate(object):
    """Bookkeeping of one health gate: ``successes`` consecutive good probes pass it; more than
    ``retries`` failed probes fail it; a container that exits or turns unhealthy fails it at once."""

    def __init__(self, retries, successes):
        self.retries = retries
        self.successes = max(1, successes)
        self.failures = 0
        self.streak = 0
        self.status = "pending"
        self.last = ""

    def observe(self, ok, detail="", fatal=False):
        if self.status != "pending":
            return self.status
        self.last = detail
        if fatal:
            self.status = "failed"
        elif ok:
            self.streak += 1
            if self.streak >= self.successes:
                self.status = "passed"
        else:
            self.streak = 0
            self.failures += 1
            if self.failures > self.retries:
                self.status = "failed"
        return self.status


def container_verdict(container):
    """Why a new container fails its gate at once (exited, restarting, unhealthy), or None."""
    if container["state"] in ("exited", "dead") or (not container["running"] and container["state"] != "created"):
        return "exited with code %d" % container["exit_code"]
    if container["state"] == "restarting":
        return "is restarting (exit code %d)" % container["exit_code"]
    if container["health"] == "unhealthy":
        return "is unhealthy"
    return None


def docker_probe(container):
    """The docker gate's probe from an inspected container: ``(ok, detail, fatal)``."""
    if not container["health"]:
        return False, "no healthcheck (the image has no HEALTHCHECK): use another gate", True
    if container["health"] == "healthy":
        return True, "healthy", False
    last = container["health_log"][-1]["output"] if container["health_log"] else ""
    return False, "health: %s%s" % (container["health"], (" (%s)" % last) if last else ""), False


def probe_ip(container, network):
    ip = container["networks"].get(network) if network else ""
    if ip:
        return ip
    for name in sorted(container["networks"]):
        if container["networks"][name]:
            return container["networks"][name]
    return ""


def describe_gate(gate, ip=""):
    kind = gate["type"]
    if kind == "http":
        return "http GET http://%s:%s%s expecting %s%s" % (ip or "<ip>", gate.get("port"), gate.get("path") or "/", gate.get("status") or 200,
                                                           " and body matching /%s/" % gate["body"] if gate.get("body") else "")
    if kind == "tcp":
        return "tcp connect %s:%s" % (ip or "<ip>", gate.get("port"))
    if kind == "command":
        return "command %s in the container" % " ".join(gate.get("command") or [])
    return "docker HEALTHCHECK"


def http_probe(opener, ip, gate):
    """GET the container's address; ``opener(url, timeout)`` returns ``(status, body)`` or
    raises. Returns ``(ok, detail)``."""
    url = "http://%s:%s%s" % (ip, gate["port"], gate.get("path") or "/")
    try:
        status, body = opener(url, gate["timeout"])
    except Exception as exc:  # pylint: disable=broad-except
        return False, "GET %s: %s" % (url, exc)
    want = int(gate.get("status") or 200)
    if status != want:
        return False, "GET %s: status %s (want %s)" % (url, status, want)
    if gate.get("body") and not re.search(gate["body"], body or ""):
        return False, "GET %s: body does not match /%s/" % (url, gate["body"])
    return True, "GET %s: %s" % (url, status)


def tcp_probe(ip, port, timeout):
    try:
        sock = socket.create_connection((ip, int(port)), timeout=timeout)
        sock.close()
        return True, "tcp %s:%s open" % (ip, port)
    except (OSError, ValueError) as exc:
        return False, "tcp %s:%s: %s" % (ip, port, exc)


def gate_failure_message(project, service, container, probe, detail, log_lines):
    """The error of a failed gate: service, container, probe, its last health log entries and
    the container's last log lines."""
    parts = ["Rollout of stack '%s' rolled back: new replica %s of service '%s' failed its gate (%s): %s. "
             "The new replicas were removed; the old ones kept serving and the upstream was not changed."
             % (project, container["name"], service, probe, detail)]
    entries = [e for e in container.get("health_log") or [] if e.get("output") or e.get("exit_code") is not None][-3:]
    if entries:
        parts.append("Last health checks of %s:\n%s" % (container["name"], "\n".join(
            ("  | exit code %s: %s" % (e.get("exit_code"), e["output"])) if e.get("output") else "  | exit code %s" % e.get("exit_code")
            for e in entries)))
    if log_lines:
        parts.append("Last %d log lines of %s:\n%s" % (len(log_lines), container["name"], "\n".join("  | " + line for line in log_lines)))
    else:
        parts.append("%s wrote no log lines." % container["name"])
    return "\n".join(parts)


def clean_log(text, lines):
    cleaned = [_ANSI.sub("", line).rstrip() for line in (text or "").splitlines()]
    cleaned = [line for line in cleaned if line]
    return cleaned[-lines:] if lines > 0 else []


# --- Upstream files ----------------------------------------------------------------------------


def upstream_path(upstreams_dir, project, service):
    return os.path.join(upstreams_dir, "%s_%s.conf" % (project, service))


def parse_servers(text):
    """The ``server`` lines of an upstream file: ``[{line, indent, host, port, params, placeholder}]``."""
    servers = []
    for index, line in enumerate(text.splitlines()):
        m = _SERVER.match(line)
        if not m:
            continue
        host, _sep, port = m.group("address").rpartition(":")
        if not host:
            host, port = m.group("address"), ""
        servers.append({
            "line": index,
            "indent": m.group("indent"),
            "host": host,
            "port": port,
            "params": m.group("params"),
            "placeholder": line.strip() == PLACEHOLDER_SERVER,
        })
    return servers


def listed_ips(text):
    return [s["host"] for s in parse_servers(text) if not s["placeholder"]]


def render_upstream(text, addresses, port=None):
    """``text`` with its server lines replaced by one per address (in the given order), every
    other line byte for byte. Indentation, port and the parameters after the address come from
    the existing server lines (``port`` wins when given); the role's "No running replica"
    comment and placeholder server go when servers are added, and come back when none is left."""
    lines = text.split("\n")
    servers = parse_servers(text)
    if not servers:
        raise RolloutError("the upstream file has no server line to replace")
    real = [s for s in servers if not s["placeholder"]]
    model = real[0] if real else None
    indent = model["indent"] if model else servers[0]["indent"]
    params = model["params"] if model else DEFAULT_SERVER_PARAMS
    port = str(port) if port else (model["port"] if model else "")
    if addresses and not port:
        raise RolloutError("the upstream file lists no replica to take the port from: set the service's port option")
    drop = set(s["line"] for s in servers)
    if not real:
        for s in servers:
            if s["placeholder"] and s["line"] > 0 and lines[s["line"] - 1].strip() == PLACEHOLDER_COMMENT:
                drop.add(s["line"] - 1)
    first = min(drop)
    if addresses:
        new = ["%sserver %s:%s%s;" % (indent, address, port, params) for address in addresses]
    else:
        new = [indent + PLACEHOLDER_COMMENT, indent + PLACEHOLDER_SERVER]
    out = []
    for index, line in enumerate(lines):
        if index == first:
            out.extend(new)
        if index not in drop:
            out.append(line)
    return "\n".join(out)


def choose_network(container, listed, internal):
    """The network of ``container`` whose address nginx uses: the one whose IP the upstream file
    already lists, else the first non-internal network with an address, by name (as the
    reverse_proxy role chooses)."""
    listed = set(listed or [])
    for name, ip in sorted(container["networks"].items()):
        if ip and ip in listed:
            return name
    for name in sorted(container["networks"]):
        if container["networks"][name] and name not in (internal or []):
            return name
    return ""


def upstream_network(containers, listed, internal):
    """One network for the service: the first container (by name) with a listed IP decides."""
    ordered = sorted(containers, key=lambda c: c["name"])
    for c in ordered:
        for name, ip in sorted(c["networks"].items()):
            if ip and ip in set(listed or []):
                return name
    return choose_network(ordered[0], [], internal) if ordered else ""


def upstream_addresses(containers, network):
    """Addresses of the running containers on ``network``, sorted by container name."""
    found = []
    for c in sorted(containers, key=lambda c: "/" + c["name"]):
        ip = c["networks"].get(network) if c["running"] else ""
        if ip:
            found.append(ip)
    return found


# --- Journal and recovery ---------------------------------------------------------------------


def recovery_actions(journal, containers):
    """What an interrupted rollout left, and how to repair it: ``{service, phase, remove: [ids]
    (docker rm -f), retire: [ids] (docker stop + rm), serving: [ids] (the upstream's replicas)}``.

    phase ``started``: the new replicas (listed, or any replica of the service that was not among
    the old ones) go; the old ones that still run serve. phase ``switched``: the new ones passed
    their gate and serve; the old ones go."""
    service = journal.get("service")
    old = set(journal.get("old") or [])
    listed_new = set(journal.get("new") or [])
    present = [c for c in containers if c["service"] == service and not c["oneoff"]]
    new = [c for c in present if c["id"] in listed_new or c["id"] not in old]
    olds = [c for c in present if c["id"] in old]
    if journal.get("phase") == "switched":
        return {"service": service, "phase": "switched", "remove": [], "retire": [c["id"] for c in olds],
                "serving": [c["id"] for c in new if c["running"]]}
    if journal.get("strategy") == "recreate":
        return {"service": service, "phase": journal.get("phase"), "remove": [], "retire": [], "serving": [c["id"] for c in present if c["running"]]}
    return {"service": service, "phase": journal.get("phase") or "started", "remove": [c["id"] for c in new], "retire": [],
            "serving": [c["id"] for c in olds if c["running"]]}


# --- compose.rollout.yaml --------------------------------------------------------------------


def parse_override(text):
    """The content of compose.rollout.yaml: we write JSON (which is YAML) after comment lines."""
    body = "\n".join(line for line in (text or "").splitlines() if not line.lstrip().startswith("#")).strip()
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        import yaml  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise RolloutError("%s is not JSON and PyYAML is missing to read it" % OVERRIDE_FILE) from None
    return yaml.safe_load(body) or {}


def merge_override(existing, images):
    """``existing`` (parsed compose.rollout.yaml) with ``services.<svc>.image`` set for each of
    ``images``."""
    data = dict(existing or {})
    services = dict(data.get("services") or {})
    for svc, ref in sorted((images or {}).items()):
        entry = dict(services.get(svc) or {})
        entry["image"] = ref
        services[svc] = entry
    data["services"] = services
    return data


def render_override(data):
    return ("# Written by composeops.platform.compose_rollout: image pins of the last rollout (JSON is YAML).\n"
            + json.dumps(data, indent=2, sort_keys=True) + "\n")


# --- Results -------------------------------------------------------------------------------------


def diff(steps, containers, config):
    """``{before: {svc: image}, after: {svc: image}}`` of the services that change."""
    before, after = {}, {}
    for step in steps:
        name = step["service"]
        images = sorted(set(c["image"] for c in step["old"] or [c for c in containers if c["service"] == name]))
        before[name] = ", ".join(images) if images else ""
        after[name] = ((config.get("services") or {}).get(name) or {}).get("image", "")
    return {"before": before, "after": after}


def planned_actions(steps):
    return dict((s["service"], {
        "strategy": s["strategy"],
        "reason": s["reason"],
        "from": sorted(set(c["image"] for c in s["old"])),
        "to": s["image"],
        "replicas": len(s["old"]) + len(s["keep"]),
        "old": [c["name"] for c in s["old"]],
        "new": [],
        "batches": [[c["name"] for c in b] for b in s["batches"]],
        "seconds": 0,
    }) for s in steps)
