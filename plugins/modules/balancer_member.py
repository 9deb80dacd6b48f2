#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: balancer_member
short_description: Take an app host out of a load balancer's nginx upstream, drained, or put it back
version_added: 0.1.0
description:
  - Works on an upstream file of the P(composeops.platform.reverse_proxy#role) role on the load
    balancer (a route with C(servers), C(<upstreams_dir>/<upstream>.conf)). O(state=drained) marks
    the member C(down), O(state=enabled) removes the mark. The new file is tested
    (O(nginx_check)) before it replaces the old one, then nginx reloads gracefully.
  - A graceful reload starts new workers that no longer send requests to a drained member; the old
    workers finish the requests they are serving, then exit. O(state=drained) returns once every
    worker that existed before the reload has exited (requests in flight finished), or after
    O(drain_timeout) seconds with a warning naming the workers left (they go on serving their
    requests; nginx's C(worker_shutdown_timeout) bounds them).
  - Refuses, before any change, to drain a member when fewer than O(min_enabled) other members
    would stay in rotation.
  - The reverse_proxy role writes the upstream file with every member in rotation, so a run of the
    role puts a drained member back.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
  - composeops.platform.attributes.nginx
options:
  upstream:
    description: Name of the upstream (its file is C(<upstreams_dir>/<upstream>.conf)), for example C(servers_shop_root).
    type: str
    required: true
  server:
    description: The member, C(address:port), exactly as the upstream lists it.
    type: str
    required: true
  state:
    description: C(drained) takes the member out of rotation and waits for the drain; C(enabled) puts it back.
    type: str
    choices: [enabled, drained]
    default: enabled
  min_enabled:
    description: Members that must stay in rotation when this one is drained.
    type: int
    default: 1
  drain_timeout:
    description: Seconds to wait for the requests in flight after the reload (O(state=drained)).
    type: float
    default: 30
  pid_file:
    description: nginx's pid file (its master process).
    type: path
    default: /run/nginx.pid
  health_check:
    description:
      - With O(state=enabled), a request the balancer sends to the member before it is put back
        (GET C(<scheme>://<server><path>), with C(host) as Host header and TLS server name, the
        certificate not verified); the member stays out of rotation until it answers C(status).
      - C(path) (default C(/health)), C(host) (required), C(scheme) (C(https), default, or C(http)),
        C(status) (200), C(timeout) (5 s a request), C(retries) (10), C(interval) (1 s).
      - In check mode the request is sent once and RV(healthy) says what it found.
    type: dict
attributes:
  check_mode:
    support: full
    details: Returns the new state and the diff of the upstream file; nothing is written or reloaded.
  diff_mode:
    support: full
  idempotent:
    support: full
seealso:
  - module: composeops.platform.compose_rollout
"""

EXAMPLES = r"""
- name: Take app2 out of the balancer, its requests in flight finished
  composeops.platform.balancer_member:
    upstream: servers_shop_root
    server: 10.0.0.12:80
    state: drained
    drain_timeout: 30
  delegate_to: lb1

- name: Put app2 back once its site answers the balancer
  composeops.platform.balancer_member:
    upstream: servers_shop_root
    server: 10.0.0.12:443
    state: enabled
    health_check: {host: shop.example.com, path: /health}
  delegate_to: lb1
"""

RETURN = r"""
members:
  description: Every member of the upstream after the change, in file order.
  returned: always
  type: list
  elements: dict
  sample: [{server: "10.0.0.11:80", drained: false}, {server: "10.0.0.12:80", drained: true}]
drain_seconds:
  description: Seconds from the reload until the old workers had exited (O(state=drained) with a change).
  returned: when drained now
  type: float
healthy:
  description: Whether the member answered O(health_check) (null without one).
  returned: always
  type: bool
health:
  description: What the last request of O(health_check) got (C(status) or C(error)).
  returned: with O(health_check)
  type: dict
workers_left:
  description: Pids of the old workers still running when O(drain_timeout) ran out (empty when drained).
  returned: when drained now
  type: list
  elements: int
"""

import fcntl
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _balancer as bl
from ansible_collections.composeops.platform.plugins.module_utils import _release as rel


def read_processes():
    """``[(pid, ppid, args)]`` of the host's processes, from /proc (no procps needed)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as handle:
                stat = handle.read().decode("utf-8", "replace")
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                args = handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
        except OSError:
            continue
        # The command name (2nd field) is in parentheses and may hold spaces: ppid follows the last ')'.
        fields = stat.rpartition(")")[2].split()
        if len(fields) >= 2 and fields[1].isdigit():
            out.append((int(name), int(fields[1]), args))
    return out


class BalancerMember(object):
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.path = os.path.join(self.p["upstreams_dir"], self.p["upstream"] + ".conf")
        self.result = dict(changed=False, upstream=self.p["upstream"], server=self.p["server"])
        self.check_spec = bl.normalise_check(self.p["health_check"]) if self.p["health_check"] else None

    def fail(self, msg, **extra):
        """The one way this module fails: with the upstream, the member and what was done."""
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def run_cmd(self, argv, what):
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            self.fail("%s failed (rc %d): %s" % (what, rc, (err or out).strip()[-2000:]))

    def master_pid(self):
        try:
            with open(self.p["pid_file"]) as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def run(self):
        """Under an exclusive lock of the upstream (from the read to the end of the drain), so that
        two runs for two members of one upstream never write over each other's change."""
        if self.module.check_mode:
            return self.change()
        lock_path = os.path.join(self.p["upstreams_dir"], ".%s.lock" % self.p["upstream"])
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return self.change()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def change(self):
        p = self.p
        drained = p["state"] == "drained"
        try:
            with open(self.path) as handle:
                before = handle.read()
        except OSError as exc:
            self.fail("cannot read the upstream file %s: %s (is the reverse_proxy role deployed with a route to "
                      "servers on this host?)" % (self.path, exc))
        try:
            after = bl.set_member(before, p["server"], drained)
            if drained:
                bl.check_minimum(before, p["server"], p["min_enabled"])
        except bl.BalancerError as exc:
            self.fail("upstream %s: %s. Nothing was changed." % (p["upstream"], exc), members=bl.members(before))
        self.result["members"] = bl.members(after)
        self.result["healthy"] = None
        if not drained and self.check_spec:
            self.probe()
        if after == before:
            return self.result
        self.result["changed"] = True
        if self.module._diff:
            self.result["diff"] = dict(before=before, after=after, before_header=self.path, after_header=self.path)
        if self.module.check_mode:
            return self.result
        self.write(before, after)
        return self.result

    def probe(self):
        """The health check, from this host to the member: retried unless in check mode; fails
        the module (nothing changed) when the member never answers as it should."""
        spec = self.check_spec
        attempts = 1 if self.module.check_mode else spec["retries"] + 1
        for attempt in range(attempts):
            health = bl.probe_member(self.p["server"], spec)
            if health.get("status") == spec["status"]:
                break
            if attempt + 1 < attempts:
                time.sleep(spec["interval"])
        self.result["health"] = health
        self.result["healthy"] = health.get("status") == spec["status"]
        if not self.result["healthy"] and not self.module.check_mode:
            self.fail("upstream %s: %s did not pass its health check (%s) after %d attempt(s): %s. It stays out of "
                      "rotation." % (self.p["upstream"], self.p["server"], bl.describe_check(self.p["server"], spec),
                                     attempts, health.get("error") or "status %s" % health.get("status")))

    def write(self, before, after):
        p = self.p
        fd, candidate = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.path), suffix=".candidate",
                                         dir=os.path.dirname(self.path))
        with os.fdopen(fd, "w") as handle:
            handle.write(after)
        try:
            self.run_cmd([p["nginx_check"], candidate, self.path], "nginx's test of the new upstream file %s" % self.path)
            mode = os.stat(self.path).st_mode & 0o7777
            rel.write_atomic(self.path, after, mode)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)
        master = self.master_pid()
        old = bl.workers(read_processes(), master) if master else []
        started = time.time()
        rc, out, err = self.module.run_command(p["nginx_reload"])
        if rc != 0:
            rel.write_atomic(self.path, before, mode)
            self.module.run_command(p["nginx_reload"])
            self.fail("reloading nginx failed (rc %d): %s; the previous upstream file is back"
                      % (rc, (err or out).strip()[-2000:]))
        if p["state"] != "drained":
            return
        left = old
        while left and time.time() - started < p["drain_timeout"]:
            time.sleep(0.2)
            left = bl.old_workers(old, read_processes(), master)
        self.result["drain_seconds"] = round(time.time() - started, 1)
        self.result["workers_left"] = left
        if left:
            self.module.warn("upstream %s: %s is out of rotation, but %d old nginx worker(s) (%s) still serve requests "
                             "after %.0f s (drain_timeout)" % (p["upstream"], p["server"], len(left),
                                                               ", ".join(str(x) for x in left), p["drain_timeout"]))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            upstream=dict(type="str", required=True),
            server=dict(type="str", required=True),
            state=dict(type="str", choices=["enabled", "drained"], default="enabled"),
            min_enabled=dict(type="int", default=1),
            drain_timeout=dict(type="float", default=30),
            upstreams_dir=dict(type="path", default="/etc/nginx/composeops/upstreams"),
            nginx_check=dict(type="path", default="/usr/local/sbin/composeops-nginx-check"),
            nginx_reload=dict(type="list", elements="str", default=["systemctl", "reload", "nginx"]),
            pid_file=dict(type="path", default="/run/nginx.pid"),
            health_check=dict(type="dict"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    problems = []
    if not bl.valid_upstream(p["upstream"]):
        problems.append("upstream must be an upstream name (letters, digits, _), not '%s'" % p["upstream"])
    if not bl.valid_member(p["server"]):
        problems.append("server must be address:port, not '%s'" % p["server"])
    if p["min_enabled"] < 0 or p["drain_timeout"] < 0:
        problems.append("min_enabled and drain_timeout must not be negative")
    if p["health_check"]:
        try:
            bl.normalise_check(p["health_check"])
        except bl.BalancerError as exc:
            problems.append(str(exc))
    if problems:
        module.fail_json(msg="; ".join(problems) + ". Nothing was changed.")
    module.exit_json(**BalancerMember(module).run())


if __name__ == "__main__":
    main()
