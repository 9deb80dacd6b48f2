# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A member (``address:port``) of an upstream of the reverse_proxy role on a load balancer:
taken out of rotation (``down``) or put back, and the drain of the requests in flight.

nginx's graceful reload starts new workers with the new upstream and tells the old ones to
finish the requests they are serving, then exit: a member is drained once every worker that
existed before the reload has exited (``old_workers``). Used by balancer_member.

Private to this collection (leading underscore): no compatibility promise to other collections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import re
import socket
import ssl

from ansible_collections.composeops.platform.plugins.module_utils import _rollout as ro

_DOWN = re.compile(r"(^|\s)down(?=\s|$)")
_MEMBER = re.compile(r"^[A-Za-z0-9.:\[\]_-]+:[0-9]{1,5}$")
_UPSTREAM = re.compile(r"^[A-Za-z0-9_]+$")


class BalancerError(Exception):
    """The member cannot be changed: the message says why, for the user."""


def valid_member(text):
    return bool(_MEMBER.match(text or ""))


def valid_upstream(text):
    return bool(_UPSTREAM.match(text or ""))


def members(text):
    """The servers of an upstream file: ``[{"server": "10.0.0.2:80", "drained": bool}]`` in file order."""
    out = []
    for s in ro.parse_servers(text):
        if s["placeholder"]:
            continue
        address = "%s:%s" % (s["host"], s["port"]) if s["port"] else s["host"]
        out.append({"server": address, "drained": bool(_DOWN.search(s["params"]))})
    return out


def set_member(text, server, drained):
    """``text`` with ``server`` marked ``down`` (drained) or not; every other byte unchanged."""
    lines = text.split("\n")
    found = False
    for s in ro.parse_servers(text):
        address = "%s:%s" % (s["host"], s["port"]) if s["port"] else s["host"]
        if s["placeholder"] or address != server:
            continue
        found = True
        params = _DOWN.sub("", s["params"]).rstrip()
        if drained:
            params += " down"
        line = lines[s["line"]]
        head, sep, rest = line.partition(";")
        lines[s["line"]] = "%sserver %s%s;%s" % (s["indent"], address, params, rest)
    if not found:
        listed = ", ".join(m["server"] for m in members(text)) or "none"
        raise BalancerError("server %s is not a member of this upstream (members: %s)" % (server, listed))
    return "\n".join(lines)


def check_minimum(text, server, minimum):
    """Refuse to drain ``server`` when fewer than ``minimum`` members would stay in rotation."""
    left = [m["server"] for m in members(text) if not m["drained"] and m["server"] != server]
    if len(left) < minimum:
        raise BalancerError(
            "draining %s would leave %d member(s) in rotation (%s), fewer than the minimum of %d: "
            "put another member back first" % (server, len(left), ", ".join(left) or "none", minimum))
    return left


def parse_ps(text):
    """``[(pid, ppid, args)]`` of ``ps -eo pid=,ppid=,args=`` output (the unit tests' recordings)."""
    out = []
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            out.append((int(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
    return out


def workers(processes, master):
    """Pids of the nginx workers of ``master`` (its children named ``nginx: worker process``,
    including those that are ``shutting down``)."""
    return sorted(pid for pid, ppid, args in processes
                  if ppid == master and args.startswith("nginx: worker process"))


def old_workers(before, processes, master):
    """The workers of ``before`` (pids read before the reload) still running: they finish the
    requests they were serving with the old upstream."""
    running = set(workers(processes, master))
    return sorted(pid for pid in before if pid in running)


CHECK_DEFAULTS = {"path": "/health", "scheme": "https", "status": 200, "timeout": 5.0, "retries": 10, "interval": 1.0}


def normalise_check(spec):
    """The health check of a member with its defaults; BalancerError names what is wrong."""
    unknown = sorted(set(spec) - set(CHECK_DEFAULTS) - {"host"})
    if unknown:
        raise BalancerError("health_check has unknown keys: %s (known: host, %s)"
                            % (", ".join(unknown), ", ".join(sorted(CHECK_DEFAULTS))))
    out = dict(CHECK_DEFAULTS, **dict((k, v) for k, v in spec.items() if v is not None))
    if not out.get("host") or not re.match(r"^[A-Za-z0-9.-]+$", str(out["host"])):
        raise BalancerError("health_check needs host, the site name the member answers to (given: %r)" % out.get("host"))
    if out["scheme"] not in ("http", "https") or not str(out["path"]).startswith("/"):
        raise BalancerError("health_check scheme is http or https and path starts with / (given: %r, %r)"
                            % (out["scheme"], out["path"]))
    try:
        for key, kind in (("status", int), ("retries", int), ("timeout", float), ("interval", float)):
            out[key] = kind(out[key])
    except (TypeError, ValueError):
        raise BalancerError("health_check status and retries are integers, timeout and interval seconds")
    return out


def describe_check(server, spec):
    return "GET %s://%s%s with Host %s, expecting %d" % (spec["scheme"], server, spec["path"], spec["host"], spec["status"])


def probe_member(server, spec):
    """One GET of the member's check: ``{"status": int}`` or ``{"error": text}``. Over HTTPS the
    TLS server name is the site's (the member's nginx picks its site by it); its certificate is
    not verified (a private address, often self-signed)."""
    host, _sep, port = server.rpartition(":")
    host = host.strip("[]")
    try:
        if spec["scheme"] == "https":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            raw = socket.create_connection((host, int(port)), timeout=spec["timeout"])
            sock = context.wrap_socket(raw, server_hostname=spec["host"])
            conn = http.client.HTTPSConnection(spec["host"], int(port), timeout=spec["timeout"], context=context)
            conn.sock = sock
        else:
            conn = http.client.HTTPConnection(host, int(port), timeout=spec["timeout"])
        try:
            conn.request("GET", spec["path"], headers={"Host": spec["host"], "User-Agent": "composeops-balancer-check",
                                                       "Connection": "close"})
            response = conn.getresponse()
            response.read(65536)
            return {"status": response.status}
        finally:
            conn.close()
    except (OSError, http.client.HTTPException) as exc:
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
