#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: compose_rollout
short_description: Health-gated, zero-downtime update of a running Docker Compose stack, with release history
version_added: 0.1.0
description:
  - Updates a running Compose project on one host. Each service that changed (its containers'
    C(com.docker.compose.config-hash) label differs from C(docker compose config --hash), or it has
    no running container) is updated in dependency order, with one of two strategies.
  - C(rolling) (default for a service with an upstream file C(<upstreams_dir>/<project>_<service>.conf)
    of the P(composeops.platform.reverse_proxy#role) role) - new replicas start beside the old ones
    (C(up --no-recreate --scale)), each is health-gated, then the upstream file lists the new ones
    only (tested with O(nginx_check), nginx reloaded), the old ones drain for O(drain_seconds) and
    are stopped with their own stop grace period. A failed gate removes the new replicas; the old
    ones never left the upstream; the module fails naming the service, the container, the probe,
    its health log and last log lines.
  - C(recreate) (every other service, for example databases, caches, workers) - C(up --wait) of that service.
  - A per-stack lock (C(<lock_dir>/<project>.lock)) serialises rollouts; a lock whose holder died,
    whose host rebooted, or which expired is taken over with a warning.
  - A journal (C(<project_dir>/.releases/journal.json)) is written before each irreversible step;
    the next run repairs an interrupted rollout first (removes the new replicas of an unfinished
    batch, or retires the old ones of a switched batch, and puts the upstream in line).
  - Every run records a release in C(<project_dir>/.releases/) (id, time, who, result, checksum of
    the stack files, image ids and digests, O(run_id), a copy of the files) unless the running state is
    recorded already. O(release) rolls back to an earlier one, which is itself a gated rollout.
  - An action plugin of the same name runs the module. A run with nothing to change (no step, no
    file or release to record, nothing to recover, no other run holding the lock) is one
    synchronous check of about a second; any other runs as an async job on the host, whose
    progress lines (gates, switch, drain) are printed on stderr while it works, so a rollout goes
    on when the controller is gone.
  - Never passes C(--no-deps) to Compose 2.26, as the replicas it creates would carry a config hash
    without the service's C(depends_on), and the next plain C(docker compose up) would recreate them.
author: composeops developers (@composeops)
extends_documentation_fragment:
  - composeops.platform.attributes
  - composeops.platform.attributes.docker_cli
  - composeops.platform.attributes.nginx
options:
  project_dir:
    description: Directory of the stack (C(/opt/stacks/<name>)), with its compose and env files.
    type: path
    required: true
  project_name:
    description: Compose project name. Default the basename of O(project_dir).
    type: str
  files:
    description: Compose files, relative to O(project_dir). C(compose.rollout.yaml) is appended when it exists.
    type: list
    elements: str
    default: [compose.yaml]
  env_files:
    description: Env files, relative to O(project_dir) (passed by path; their content never appears in results).
    type: list
    elements: str
    default: []
  images:
    description:
      - New image per service (service name to image reference, with a tag or a digest). Written to
        C(<project_dir>/compose.rollout.yaml) (merged with an existing one).
      - Mutually exclusive with O(release).
    type: dict
  release:
    description:
      - Roll back to a recorded release, C(previous), N (the N-th previous successful release) or an
        id. Its files are restored; a service whose tag now points to another image is pinned by
        the recorded digest.
    type: str
  services:
    description:
      - Per service name, a dict with the keys C(strategy) (C(rolling) or C(recreate)), C(surge) (the
        batch size, default all current replicas at once), C(gate) (as O(default_gate)),
        C(drain_seconds) and C(port) (the container port of the upstream servers and of http/tcp gates).
    type: dict
    default: {}
  default_gate:
    description:
      - Gate of the new replicas of services that name none. C(type) C(docker) (the container's
        HEALTHCHECK), C(http) (GET C(http://<container ip>:<port><path>), C(status), optional C(body)
        regex), C(tcp) (connect to C(port)) or C(command) (C(docker exec <id> command...), exit 0).
      - C(interval) (1 s), C(timeout) (2 s), C(retries) (failed probes tolerated, 30),
        C(successes) (consecutive successes needed, 2). An exited or unhealthy container fails at once.
    type: dict
    default: {type: docker}
  stateful:
    description: Services that must never be surged (refused with strategy rolling).
    type: list
    elements: str
    default: []
  drain_seconds:
    description: Seconds between the switch and the stop of the old replicas (requests in flight finish).
    type: float
    default: 5
  wait_timeout:
    description: Seconds a recreated service may take to become healthy (C(up --wait-timeout)).
    type: int
    default: 300
  pull:
    description: Compose's C(--pull) policy.
    type: str
    choices: [always, missing, never]
    default: missing
  lock_dir:
    description: Directory of the per-stack lock files.
    type: path
    default: /var/lib/composeops/locks
  lock_timeout:
    description: Seconds to wait for another rollout of the stack before failing.
    type: int
    default: 60
  lock_expiry:
    description:
      - Seconds after which a lock is stale whatever its holder. The run renews the expiry of the
        lock it holds every 30 s.
    type: int
    default: 1800
  lock_token:
    description:
      - The token of the stack's lock, taken by the playbook run that calls this module (with
        M(composeops.platform.compose_stack_lock) before it wrote the stack's files). The module
        checks that this run still holds it, renews it, and leaves it held. Without it, the module
        takes the lock for its own run (waiting O(lock_timeout)) and releases it at the end.
    type: str
  keep_releases:
    description: Successful releases kept in the history (older records and copies are pruned).
    type: int
    default: 10
  who:
    description: Who deploys, for the lock and the history. Default C(SUDO_USER), then C(LOGNAME).
    type: str
  run_id:
    description:
      - An id of the playbook run that rolls out several hosts (C(playbooks/rollout.yml) sets one per
        run), recorded in the release record as C(run_id) so that the records of one multi-host
        rollout, and of its rollback, can be found together.
      - Letters, digits, C(.), C(_), C(-), at most 64 characters.
    type: str
  log_lines:
    description: Log lines of a failed new replica in the error.
    type: int
    default: 20
  progress_file:
    description: File the progress lines are appended to. Default C(/var/log/composeops/rollout-<project>.log).
    type: path
  metrics_dir:
    description:
      - node_exporter's textfile directory. After each rollout (success, failure or rollback) the module
        writes C(composeops_rollout_<project>.prom) there atomically, with C(composeops_rollout_last_status)
        (1 success, 0 otherwise) and C(composeops_rollout_last_run_timestamp_seconds), labelled C(stack).
      - An empty string writes none.
    type: str
    default: /var/lib/prometheus/node-exporter
attributes:
  check_mode:
    support: full
    details: Lock, recovery and history are untouched; the plan and the diff are returned.
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - Docker CLI with the Compose v2 plugin (2.26 or later)
seealso:
  - module: composeops.platform.compose_release_info
  - module: composeops.platform.compose_stack_lock
"""

EXAMPLES = r"""
- name: Roll out app 2.0 behind nginx, 1 replica at a time, gated on /health
  composeops.platform.compose_rollout:
    project_dir: /opt/stacks/shop
    images:
      app: registry.example.com/shop/app:2.0
    services:
      app:
        surge: 1
        port: 8000
        gate: {type: http, port: 8000, path: /health, status: 200, body: '"status": "ok"'}
    stateful: [db, redis]

- name: Record the release of what the compose_stack role just deployed (no change when recorded)
  composeops.platform.compose_rollout:
    project_dir: /opt/stacks/shop
    env_files: [.env]

- name: Roll back to the 2nd previous successful release
  composeops.platform.compose_rollout:
    project_dir: /opt/stacks/shop
    release: "2"
"""

RETURN = r"""
release:
  description:
    - The release record written by this run (or the matching one when nothing changed).
    - C(run_id) is the O(run_id) of the run that wrote the record; null (or absent, in records written
      before this key existed) when it had none.
  returned: success and on a rolled back or failed rollout
  type: dict
  sample:
    id: 20261202T143000Z-1a2b3c4d
    time: "2026-12-02T14:30:00Z"
    who: alice
    result: success
    checksum: 1a2b3c4d...
    files: [compose.yaml, .env, compose.rollout.yaml]
    images: {app: {ref: "registry.example.com/shop/app:2.0", id: "sha256:...", digest: "registry.example.com/shop/app@sha256:..."}}
    services: {app: {strategy: rolling}}
    previous: 20261201T101500Z-9f8e7d6c
    run_id: 20261202T142955Z-shop
previous_release:
  description: Id of the release that was current before this run.
  returned: always
  type: str
actions:
  description: Per updated service C({strategy, from, to, replicas, old, new, seconds}) (planned ones in check mode).
  returned: always
  type: dict
recovered:
  description: What the run repaired of an interrupted rollout (C({release, service, phase, removed, retired})); empty when nothing.
  returned: always
  type: dict
rolled_back:
  description: Services whose new replicas failed their gate and were removed.
  returned: always
  type: list
  elements: str
progress:
  description: The timestamped progress lines of this run (also appended to O(progress_file)).
  returned: always
  type: list
  elements: str
target_release:
  description: Id of the release O(release) selected.
  returned: when O(release) is set
  type: str
plan:
  description: Per service the planned strategy and the reason.
  returned: always
  type: dict
locked_by:
  description: Check mode only, when another run holds the stack's deploy lock (which a real run would wait for) -
    who holds it, since when and until when.
  returned: in check mode, when the lock is held by another run
  type: str
"""

import datetime
import json
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.composeops.platform.plugins.module_utils import _lock as lk
from ansible_collections.composeops.platform.plugins.module_utils import _release as rel
from ansible_collections.composeops.platform.plugins.module_utils import _rollout as ro

try:
    from urllib.request import ProxyHandler, build_opener
    from urllib.error import HTTPError
except ImportError:  # pragma: no cover - Python 2 hosts are not supported
    ProxyHandler = build_opener = HTTPError = None


class GateFailed(Exception):
    """A new replica failed its gate: the new replicas are gone, the release is rolled back."""


def fail(module, msg, **result):
    """The one way this module fails: with the stack and what the run did so far."""
    result.setdefault("changed", False)
    module.fail_json(msg=msg, project_dir=module.params["project_dir"], **result)


def http_get(url, timeout):
    """GET without any proxy (container addresses are local): ``(status, body)``."""
    opener = build_opener(ProxyHandler({}))
    try:
        response = opener.open(url, timeout=timeout)
    except HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    try:
        return response.getcode(), response.read().decode("utf-8", "replace")
    finally:
        response.close()


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


class Rollout(object):
    """One run of the module: lock, recovery, plan, rollout, history."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.dir = os.path.abspath(self.p["project_dir"])
        self.project = self.p["project_name"] or os.path.basename(self.dir.rstrip("/"))
        self.check = module.check_mode
        self.who = self.p["who"] or lk.default_who()
        self.progress = []
        self.progress_file = self.p["progress_file"] or "/var/log/composeops/rollout-%s.log" % self.project
        self.result = dict(changed=False, actions={}, recovered={}, rolled_back=[], progress=self.progress,
                           previous_release=None, plan={})
        self.files = list(self.p["files"])
        self.env_files = list(self.p["env_files"])
        self.record = None
        self.tmp_override = None
        self.config = {}
        self.snapshot = None
        self.records = []
        self.override_changed = False
        self.done = []  # services this run changed (a batch switched, a recreate done)
        self.pre_run_current = None
        self.lock = None
        self.lock_token = None
        self.lock_renewed = 0
        self.recovery_pending = False

    # --- helpers ---------------------------------------------------------------------------------

    def say(self, line):
        stamp = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
        text = "%s %s: %s" % (stamp, self.project, line)
        self.progress.append(text)
        if self.check:
            return
        try:
            directory = os.path.dirname(self.progress_file)
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, 0o750)
            with open(self.progress_file, "a") as handle:
                handle.write(text + "\n")
        except OSError as exc:
            self.module.warn("cannot write the progress file %s: %s" % (self.progress_file, exc))
            self.progress_file = ""

    def run(self, argv, what, check_rc=True):
        try:
            rc, out, err = self.module.run_command(argv, handle_exceptions=False)
        except (OSError, IOError) as exc:
            raise ro.RolloutError("%s failed: cannot run %s: %s" % (what, argv[0], exc)) from None
        if check_rc and rc != 0:
            raise ro.RolloutError("%s failed (exit code %d, command: %s): %s"
                                  % (what, rc, " ".join(argv), (err or out).strip()[-2000:]))
        return rc, out, err

    def docker(self, *args):
        return [self.p["docker_cli"]] + list(args)

    def base(self):
        files = list(self.files)
        override = os.path.join(self.dir, ro.OVERRIDE_FILE)
        if self.tmp_override:  # a copy elsewhere (check mode, a release's files copy)
            files = [f for f in files if f != ro.OVERRIDE_FILE] + [self.tmp_override]
        elif self.tmp_override == "":  # the release in use has none
            files = [f for f in files if f != ro.OVERRIDE_FILE]
        elif os.path.exists(override) and ro.OVERRIDE_FILE not in files:
            files.append(ro.OVERRIDE_FILE)
        return ro.compose_base(self.p["docker_cli"], self.project, self.dir, files, self.env_files)

    def stack_files(self):
        """Names (relative to project_dir) of the files of the release."""
        names = list(self.files) + list(self.env_files)
        if os.path.exists(os.path.join(self.dir, ro.OVERRIDE_FILE)) and ro.OVERRIDE_FILE not in names:
            names.append(ro.OVERRIDE_FILE)
        return names

    def checksum(self, names, root=None):
        contents = {}
        for name in names:
            path = os.path.join(root or self.dir, name)
            if not os.path.isfile(path):
                raise ro.RolloutError("file %s of stack %s does not exist" % (path, self.project))
            with open(path, "rb") as handle:
                contents[name] = handle.read()
        return rel.files_checksum(contents)

    def inspect_all(self):
        out = self.run(ro.ps_command(self.p["docker_cli"], self.project), "docker ps")[1]
        ids = ro.parse_ps_ids(out)
        if not ids:
            return []
        return self.inspect(ids)

    def inspect(self, ids):
        if not ids:
            return []
        rc, out, err = self.run(self.docker("inspect", *ids), "docker inspect", check_rc=False)
        if rc != 0 and not out.strip().startswith("["):
            raise ro.RolloutError("docker inspect failed: %s" % err.strip())
        return ro.parse_inspect(out or "[]")

    def load(self):
        self.config = json.loads(self.run(ro.config_command(self.base()), "docker compose config")[1])
        self.hashes = ro.parse_config_hash(self.run(ro.hash_command(self.base()), "docker compose config --hash")[1])
        self.containers = self.inspect_all()

    def journal_path(self):
        return os.path.join(rel.releases_dir(self.dir), ro.JOURNAL)

    def journal(self, **data):
        rel.ensure_dir(rel.releases_dir(self.dir))
        rel.write_json_atomic(self.journal_path(), dict(data, release=self.record["id"] if self.record else None))

    def drop_journal(self):
        if os.path.exists(self.journal_path()):
            os.unlink(self.journal_path())

    # --- lock ------------------------------------------------------------------------------------

    def take_lock(self):
        """Take the stack's lock for this process, or (lock_token) check that the playbook run
        that calls this module holds it, and push its expiry."""
        self.lock = lk.StackLock(self.p["lock_dir"], self.project, self.who, self.p["lock_expiry"], self.module.warn)
        if self.p["lock_token"]:
            self.lock_token = self.p["lock_token"]
            self.lock.renew(self.lock_token)
        else:
            self.lock_token = self.lock.acquire(self.p["lock_timeout"], pid=os.getpid())["token"]
        self.lock_renewed = time.time()

    def keep_lock(self):
        """Renew the lock's expiry every 30 s of a long run (and fail if another run took it)."""
        if self.lock_token and time.time() - self.lock_renewed > 30:
            self.lock.renew(self.lock_token)
            self.lock_renewed = time.time()

    def release_lock(self):
        """Only a lock this process took: the playbook run that passed lock_token releases its own."""
        if self.lock_token and not self.p["lock_token"]:
            self.lock.release(self.lock_token)

    def look_ahead(self):
        """Check mode: what a real run would meet before its plan. A journal is an interrupted
        rollout it would recover (a change); a lock held by another run is one it would wait for
        (C(locked_by): the compose_rollout action plugin then does not take a no-change answer as
        final)."""
        self.recovery_pending = os.path.exists(self.journal_path())
        if self.recovery_pending:
            self.say("an interrupted rollout would be recovered first")
        lock, raw, dummy = lk.StackLock(self.p["lock_dir"], self.project, self.who, self.p["lock_expiry"],
                                        self.module.warn).read()
        if raw is not None and (lock or {}).get("token") != self.p["lock_token"]:
            self.result["locked_by"] = lk.lock_message(self.project, lock or {})

    # --- recovery --------------------------------------------------------------------------------

    def recover(self):
        path = self.journal_path()
        if not os.path.exists(path):
            return
        try:
            with open(path) as handle:
                journal = json.load(handle)
        except (OSError, ValueError):
            journal = {}
        containers = self.inspect_all()
        acts = ro.recovery_actions(journal, containers)
        by_id = dict((c["id"], c) for c in containers)
        if acts["remove"]:
            self.run(self.docker("rm", "-f", *acts["remove"]), "removing the new replicas of an interrupted rollout")
        if acts["retire"]:
            self.run(self.docker("stop", *acts["retire"]), "stopping the old replicas of an interrupted rollout")
            self.run(self.docker("rm", *acts["retire"]), "removing the old replicas of an interrupted rollout")
        service = acts["service"]
        upstream = ro.upstream_path(self.p["upstreams_dir"], self.project, service or "")
        if service and os.path.exists(upstream):
            serving = [by_id[i] for i in acts["serving"] if i in by_id]
            port = (self.p["services"].get(service) or {}).get("port")
            self.switch(service, serving, int(port) if port else None)
        release = journal.get("release")
        if release:
            record_path = os.path.join(rel.releases_dir(self.dir), release + ".json")
            try:
                with open(record_path) as handle:
                    record = json.load(handle)
                record["result"] = "interrupted"
                rel.write_record(self.dir, record)
            except (OSError, ValueError):
                pass
        os.unlink(path)
        recovered = {"release": release, "service": service, "phase": acts["phase"],
                     "removed": [by_id[i]["name"] for i in acts["remove"] if i in by_id],
                     "retired": [by_id[i]["name"] for i in acts["retire"] if i in by_id]}
        self.result["recovered"] = recovered
        self.result["changed"] = True
        self.say("recovered interrupted rollout %s of service %s (phase %s): removed %s, retired %s"
                 % (release, service, acts["phase"], ", ".join(recovered["removed"]) or "none", ", ".join(recovered["retired"]) or "none"))
        self.module.warn("stack %s: recovered an interrupted rollout (release %s, service %s, phase %s); that release "
                         "is marked interrupted" % (self.project, release, service, acts["phase"]))

    # --- images / release options ----------------------------------------------------------

    def read_override(self, path):
        """compose.rollout.yaml, parsed: ours is JSON; one the compose_stack role wrote is YAML,
        read through `docker compose config` of that file alone when the host has no PyYAML."""
        with open(path) as handle:
            text = handle.read()
        try:
            return ro.parse_override(text)
        except ro.RolloutError:
            rc, out, dummy = self.run([self.p["docker_cli"], "compose", "--project-name", self.project,
                                       "--project-directory", self.dir, "--file", path, "config",
                                       "--format", "json", "--no-interpolate", "--no-normalize"],
                                      "docker compose config of %s" % path)
            return json.loads(out)

    def write_override(self, images, drop=False):
        """compose.rollout.yaml with ``images`` merged in (check mode: a temporary copy)."""
        path = os.path.join(self.dir, ro.OVERRIDE_FILE)
        existing = {}
        if os.path.exists(path) and not drop:
            existing = self.read_override(path)
        text = ro.render_override(ro.merge_override(existing, images))
        before = None
        if os.path.exists(path):
            with open(path) as handle:
                before = handle.read()
        self.override_changed = self.override_changed or text != before
        if self.check:
            self.tmp_override = os.path.join(self.module.tmpdir, ro.OVERRIDE_FILE)
            with open(self.tmp_override, "w") as handle:
                handle.write(text)
        else:
            rel.write_atomic(path, text, 0o644)

    def apply_release(self, records, current):
        target = rel.select_release(records, self.p["release"], current)
        self.result["target_release"] = target["id"]
        files = target.get("compose_files") or [f for f in target["files"] if f not in (target.get("env_files") or []) and f != ro.OVERRIDE_FILE]
        envs = target.get("env_files") if target.get("env_files") is not None else self.env_files
        self.files, self.env_files = list(files), list(envs)
        copy = os.path.join(rel.releases_dir(self.dir), target["id"])
        self.say("rolling back to release %s (%s, %s)" % (target["id"], target["time"], target["result"]))
        if self.check:
            self.files = [os.path.join(copy, f) for f in files]
            self.env_files = [os.path.join(copy, f) for f in envs]
            self.tmp_override = os.path.join(copy, ro.OVERRIDE_FILE) if ro.OVERRIDE_FILE in target["files"] else ""
        else:
            rel.restore_files(self.dir, target["id"], target["files"])
            override = os.path.join(self.dir, ro.OVERRIDE_FILE)
            if ro.OVERRIDE_FILE not in target["files"] and os.path.exists(override):
                os.unlink(override)
        pins = {}
        for svc, info in sorted((target.get("images") or {}).items()):
            rc, out, dummy = self.run(self.docker("image", "inspect", "--format", "{{.Id}}", info.get("ref") or ""),
                                      "docker image inspect", check_rc=False)
            if rc == 0 and out.strip() == info.get("id"):
                continue
            if info.get("digest"):
                pins[svc] = ro.pin_digest(info.get("ref") or info["digest"], info["digest"])
            else:
                self.module.warn("service %s: %s no longer is image %s and the release recorded no digest to pin"
                                 % (svc, info.get("ref"), info.get("id")))
        if pins:
            if self.check:
                existing = {}
                if self.tmp_override:
                    existing = self.read_override(self.tmp_override)
                self.tmp_override = os.path.join(self.module.tmpdir, ro.OVERRIDE_FILE)
                with open(self.tmp_override, "w") as handle:
                    handle.write(ro.render_override(ro.merge_override(existing, pins)))
            else:
                self.write_override(pins)
            self.say("pinned by digest: %s" % ", ".join("%s=%s" % kv for kv in sorted(pins.items())))
        return target

    # --- the switch ----------------------------------------------------------------------------

    def switch(self, service, serving, port=None):
        """Point the service's upstream file at ``serving`` (tested, written atomically, reloaded)."""
        path = ro.upstream_path(self.p["upstreams_dir"], self.project, service)
        if not os.path.exists(path):
            return False
        with open(path) as handle:
            before = handle.read()
        network = ro.upstream_network(serving, ro.listed_ips(before), ro.internal_networks(self.config))
        addresses = ro.upstream_addresses(serving, network)
        after = ro.render_upstream(before, addresses, port)
        if after == before:
            return False
        directory = os.path.dirname(path)
        candidate = os.path.join(directory, ".%s.rollout-candidate" % os.path.basename(path))
        with open(candidate, "w") as handle:
            handle.write(after)
        try:
            self.run([self.p["nginx_check"], candidate, path], "nginx's test of the new upstream file %s" % path)
            os.chmod(candidate, 0o644)
            os.rename(candidate, path)
        finally:
            if os.path.exists(candidate):
                os.unlink(candidate)
        try:
            self.run(self.p["nginx_reload"], "reloading nginx")
        except ro.RolloutError:
            rel.write_atomic(path, before, 0o644)
            self.run(self.p["nginx_reload"], "reloading nginx with the previous upstream file", check_rc=False)
            raise
        self.say("%s: upstream %s now lists %s (network %s), nginx reloaded" % (service, os.path.basename(path), ", ".join(addresses) or "no replica", network))
        return True

    # --- gates ---------------------------------------------------------------------------------

    def gate(self, step, new, network):
        gate = dict(step["gate"])
        gate["port"] = gate.get("port") or step.get("port")
        gates = dict((c["id"], ro.Gate(int(gate["retries"]), int(gate["successes"]))) for c in new)
        names = dict((c["id"], c["name"]) for c in new)
        latest = dict((c["id"], c) for c in new)
        while True:
            self.keep_lock()
            pending = [i for i, g in gates.items() if g.status == "pending"]
            if not pending:
                break
            for c in self.inspect(pending):
                latest[c["id"]] = c
                g = gates[c["id"]]
                verdict = ro.container_verdict(c)
                ip = ro.probe_ip(c, network)
                if verdict:
                    status = g.observe(False, verdict, fatal=True)
                elif gate["type"] == "docker":
                    ok, detail, fatal = ro.docker_probe(c)
                    status = g.observe(ok, detail, fatal)
                elif gate["type"] == "http":
                    ok, detail = ro.http_probe(http_get, ip, gate)
                    status = g.observe(ok, detail)
                elif gate["type"] == "tcp":
                    ok, detail = ro.tcp_probe(ip, gate["port"], gate["timeout"])
                    status = g.observe(ok, detail)
                else:
                    rc, out, err = self.run(self.docker("exec", c["id"]) + list(gate["command"]), "the gate command", check_rc=False)
                    detail = "exit code %d%s" % (rc, (": " + (err or out).strip()[-200:]) if (err or out).strip() else "")
                    status = g.observe(rc == 0, detail)
                self.say("%s: gate of %s: %s (%s, %d/%d successes, %d/%d failures)"
                         % (step["service"], c["name"], g.last, status, g.streak, g.successes, g.failures, g.retries))
            failed = [i for i, g in gates.items() if g.status == "failed"]
            if failed:
                return latest[failed[0]], gates[failed[0]], ro.describe_gate(gate, ro.probe_ip(latest[failed[0]], network))
            if any(g.status == "pending" for g in gates.values()):
                time.sleep(float(gate["interval"]))
        for i in names:
            if i not in latest:
                latest[i] = {"name": names[i]}
        return None, None, None

    def gate_failed(self, step, container, gate, probe, new):
        dummy, out, err = self.run(self.docker("logs", "--tail", str(self.p["log_lines"]), container["id"]), "docker logs", check_rc=False)
        lines = ro.clean_log(out + err, self.p["log_lines"])
        self.run(self.docker("rm", "-f", *[c["id"] for c in new]), "removing the new replicas that failed their gate", check_rc=False)
        self.drop_journal()
        self.say("%s: gate failed on %s (%s), new replicas removed: %s" % (step["service"], container["name"], gate.last, ", ".join(c["name"] for c in new)))
        self.result["rolled_back"].append(step["service"])
        raise GateFailed(ro.gate_failure_message(self.project, step["service"], container, probe, gate.last, lines))

    # --- steps ---------------------------------------------------------------------------------

    def wanted(self, service):
        return [c for c in self.inspect_all() if c["service"] == service and not c["oneoff"]]

    def do_recreate(self, step):
        self.journal(service=step["service"], phase="started", strategy="recreate", old=[c["id"] for c in step["old"]], new=[])
        self.say("%s: recreate (%s)" % (step["service"], step["reason"]))
        self.run(ro.up_recreate_command(self.base(), step["service"], self.p["wait_timeout"], self.p["pull"]),
                 "docker compose up of service %s" % step["service"])
        self.drop_journal()
        self.mark_done(step["service"])
        running = [c for c in self.wanted(step["service"]) if c["running"]]
        if step["upstream"]:
            self.switch(step["service"], running, step["port"])
        return running

    def do_rolling(self, step):
        service = step["service"]
        drain = step["drain_seconds"] if step["drain_seconds"] is not None else self.p["drain_seconds"]
        all_new = []
        if step["remove"]:
            self.run(self.docker("rm", "-f", *[c["id"] for c in step["remove"]]), "removing stopped replicas of %s" % service)
        for number, batch in enumerate(step["batches"], 1):
            current = self.inspect_all()
            before = [c["id"] for c in current]
            running = [c for c in current if c["service"] == service and not c["oneoff"] and c["running"]]
            self.journal(service=service, phase="started", strategy="rolling", old=[c["id"] for c in batch], new=[])
            self.say("%s: batch %d/%d: %d new replica(s) beside %s"
                     % (service, number, len(step["batches"]), len(batch), ", ".join(c["name"] for c in running)))
            self.run(ro.up_scale_command(self.base(), service, len(running) + len(batch), self.p["pull"]),
                     "docker compose up --scale of service %s" % service)
            new = ro.new_containers(before, self.inspect_all(), service)
            self.journal(service=service, phase="started", strategy="rolling", old=[c["id"] for c in batch], new=[c["id"] for c in new])
            if not new:
                raise ro.RolloutError("docker compose up --scale %s=%d created no new replica" % (service, len(running) + len(batch)))
            upstream = ro.upstream_path(self.p["upstreams_dir"], self.project, service)
            listed = []
            if os.path.exists(upstream):
                with open(upstream) as handle:
                    listed = ro.listed_ips(handle.read())
            network = ro.upstream_network(running or new, listed, ro.internal_networks(self.config))
            container, gate, probe = self.gate(step, new, network)
            if container is not None:
                self.gate_failed(step, container, gate, probe, new)
            self.journal(service=service, phase="switched", strategy="rolling", old=[c["id"] for c in batch], new=[c["id"] for c in new])
            batch_ids = set(c["id"] for c in batch)
            serving = [c for c in self.wanted(service) if c["running"] and c["id"] not in batch_ids]
            try:
                switched = self.switch(service, serving, step["port"])
            except ro.RolloutError:
                self.run(self.docker("rm", "-f", *[c["id"] for c in new]), "removing the new replicas", check_rc=False)
                self.drop_journal()
                raise
            if switched and drain:
                self.say("%s: draining %s for %ss" % (service, ", ".join(c["name"] for c in batch), drain))
                time.sleep(float(drain))
            self.run(self.docker("stop", *[c["id"] for c in batch]), "stopping the old replicas of %s" % service)
            self.run(self.docker("rm", *[c["id"] for c in batch]), "removing the old replicas of %s" % service)
            self.drop_journal()
            self.mark_done(service)
            replaced = ", ".join(c["name"] for c in batch)
            self.say("%s: batch %d/%d done: %s replaced by %s"
                     % (service, number, len(step["batches"]), replaced, ", ".join(c["name"] for c in new)))
            all_new += new
        return all_new

    def do_start(self, step):
        """A rolling service with nothing running: start it, wait, then list it upstream."""
        if step["remove"]:
            self.run(self.docker("rm", "-f", *[c["id"] for c in step["remove"]]), "removing stopped replicas of %s" % step["service"])
        return self.do_recreate(step)

    # --- history -------------------------------------------------------------------------------

    def running_images(self):
        containers = [c for c in self.inspect_all() if not c["oneoff"] and c["running"]]
        ids = sorted(set(c["image_id"] for c in containers if c["image_id"]))
        inspected = {}
        if ids:
            out = self.run(self.docker("image", "inspect", *ids), "docker image inspect", check_rc=False)[1]
            try:
                inspected = dict((i["Id"], i) for i in json.loads(out or "[]"))
            except ValueError:
                inspected = {}
        images = {}
        for c in containers:
            if c["service"] in images:
                continue
            images[c["service"]] = {"ref": c["image"], "id": c["image_id"],
                                    "digest": ro.image_digest(inspected.get(c["image_id"]) or {}, c["image"])}
        return images

    def finish_record(self, result):
        if self.record is None:
            return
        self.record["result"] = result
        if result == "success":
            self.record["images"] = self.running_images()
        rel.write_record(self.dir, self.record)
        self.result["release"] = self.record
        if self.p["metrics_dir"]:
            # For the RolloutFailed alert (composeops.platform.monitoring); the temporary name does
            # not end in .prom, so node_exporter never reads a half-written file.
            rel.ensure_dir(self.p["metrics_dir"], 0o755)
            rel.write_atomic(os.path.join(self.p["metrics_dir"], "composeops_rollout_%s.prom" % self.project),
                             rel.rollout_metrics(self.project, result, time.time()), 0o644)

    # --- main flow -----------------------------------------------------------------------------

    def execute(self):
        p = self.p
        if p["images"] and p["release"]:
            raise ro.RolloutError("images and release are mutually exclusive: a rollback restores the images of its release")
        if not os.path.isdir(self.dir):
            raise ro.RolloutError("project_dir %s does not exist" % self.dir)
        self.services, self.default_gate = ro.normalise_options(p["services"], p["default_gate"])
        records, current = rel.read_history(self.dir)
        self.records = records
        self.result["previous_release"] = current
        self.pre_run_current = self.find_record(records, current)
        if not self.check and (p["release"] is not None or p["images"]):
            self.take_snapshot(records)
        if p["release"] is not None:
            self.apply_release(records, current)
        if p["images"]:
            out = self.run(ro.config_command(self.base()), "docker compose config")[1]
            known = sorted((json.loads(out).get("services") or {}))
            unknown = sorted(set(p["images"]) - set(known))
            if unknown:
                raise ro.RolloutError("images for unknown services: %s (services: %s)" % (", ".join(unknown), ", ".join(known)))
            self.write_override(p["images"])
        self.load()
        steps = self.plan_steps()
        self.result["plan"] = dict((s["service"], {"strategy": s["strategy"], "reason": s["reason"]}) for s in steps)
        self.result["actions"] = ro.planned_actions(steps)
        if steps:
            self.result["diff"] = ro.diff(steps, self.containers, self.config)
        if self.check:
            names = self.stack_files()
            root = None
            if p["release"] is not None:
                target = self.result.get("target_release")
                root = os.path.join(rel.releases_dir(self.dir), target)
                names = list((self.find_record(records, target) or {}).get("files", []))
            match = rel.matching_release(records, self.checksum(names, root), self.running_images())
            if match is not None:
                self.result["release"] = match
            # A real run would also recover an interrupted rollout, or make the matching release current.
            self.result["changed"] = bool(steps) or self.override_changed or self.recovery_pending or (
                match is None or match["id"] != current)
            return self.result
        return self.apply(steps, records, current)

    def mark_done(self, service):
        if service not in self.done:
            self.done.append(service)

    def revert(self):
        """After a failed gate, put the services this run already changed back to the release that
        was current before it (a gated rollout from that release's copy of the files, the project
        files untouched), so that no service is left half on the new version. Returns a sentence."""
        if not self.done:
            return ""
        before = self.pre_run_current
        if not before:
            return ("\nServices %s were already updated by this run and stay so: no earlier release is recorded "
                    "to return to." % ", ".join(self.done))
        copy = os.path.join(rel.releases_dir(self.dir), before["id"])
        names = before.get("files") or []
        envs = before.get("env_files") or []
        compose_files = before.get("compose_files") or [n for n in names if n not in envs and n != ro.OVERRIDE_FILE]
        self.files = [os.path.join(copy, f) for f in compose_files]
        self.env_files = [os.path.join(copy, f) for f in envs]
        self.tmp_override = os.path.join(copy, ro.OVERRIDE_FILE) if ro.OVERRIDE_FILE in names else ""
        self.record = None
        done, self.done = list(self.done), []
        self.say("putting %s back to release %s" % (", ".join(done), before["id"]))
        try:
            self.load()
            steps = self.plan_steps()
            for step in steps:
                self.run_step(step, {})
        except (GateFailed, ro.RolloutError, lk.LockError, OSError, ValueError) as exc:
            return ("\nPutting %s back to release %s failed too: %s" % (", ".join(done), before["id"], exc))
        return "\nServices %s, already updated by this run, were put back to release %s." % (", ".join(done), before["id"])

    def take_snapshot(self, records):
        """The stack files as they are before this run changes them, to put back on failure."""
        names = set(self.stack_files()) | set([ro.OVERRIDE_FILE])
        for record in records:
            names |= set(record.get("files") or [])
        self.snapshot = {}
        for name in sorted(names):
            path = os.path.join(self.dir, name)
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    self.snapshot[name] = (handle.read(), os.stat(path).st_mode & 0o7777)
            else:
                self.snapshot[name] = None

    def restore_snapshot(self, still_running=False):
        """``still_running``: a gate failed, so the containers are those of the current release."""
        if not self.snapshot:
            if still_running:
                self.restore_running_release()
            return
        restored = []
        for name, saved in sorted(self.snapshot.items()):
            path = os.path.join(self.dir, name)
            if saved is None:
                if os.path.exists(path):
                    os.unlink(path)
                    restored.append(name)
                continue
            current = None
            if os.path.isfile(path):
                with open(path, "rb") as handle:
                    current = handle.read()
            if current != saved[0]:
                rel.write_atomic(path, saved[0], saved[1])
                restored.append(name)
        if restored:
            self.say("stack files put back as they were before this run: %s" % ", ".join(restored))

    def restore_running_release(self):
        """A failed run on files its caller wrote (the compose_stack role writes the new files,
        then calls the module): put back those of the release that still runs, from its copy, so
        that the project directory matches its containers again. The caller writes its files
        anew on its next run."""
        current = self.result.get("previous_release")
        record = self.find_record(self.records, current) if current else None
        if self.check or record is None or not record.get("files"):
            return
        restored = [name for name in record["files"] if self.differs_from_release(current, name)]
        override = os.path.join(self.dir, ro.OVERRIDE_FILE)
        if ro.OVERRIDE_FILE not in record["files"] and os.path.exists(override):
            os.unlink(override)
            restored.append(ro.OVERRIDE_FILE)
        if restored:
            rel.restore_files(self.dir, current, record["files"])
            self.say("stack files put back as in release %s, which still runs: %s" % (current, ", ".join(restored)))

    def differs_from_release(self, release, name):
        paths = [os.path.join(rel.releases_dir(self.dir), release, name), os.path.join(self.dir, name)]
        contents = []
        for path in paths:
            if not os.path.isfile(path):
                contents.append(None)
                continue
            with open(path, "rb") as handle:
                contents.append(handle.read())
        return contents[0] != contents[1]

    def plan_steps(self):
        p = self.p
        upstreams = [s for s in (self.config.get("services") or {})
                     if os.path.exists(ro.upstream_path(p["upstreams_dir"], self.project, s))]
        healthchecks = {}
        for name, svc in (self.config.get("services") or {}).items():
            rc, out, dummy = self.run(self.docker("image", "inspect", "--format", "{{json .Config.Healthcheck}}", svc.get("image") or name),
                                      "docker image inspect", check_rc=False)
            if rc == 0:
                try:
                    healthchecks[name] = json.loads(out) or {}
                except ValueError:
                    pass
        return ro.plan(self.config, self.hashes, self.containers, {
            "services": self.services, "stateful": p["stateful"], "upstreams": upstreams,
            "default_gate": self.default_gate, "healthchecks": healthchecks})["steps"]

    def run_step(self, step, action):
        self.keep_lock()
        started = time.time()
        if step["strategy"] == "rolling":
            new = self.do_rolling(step)
        elif step["strategy"] == "start":
            new = self.do_start(step)
        else:
            new = self.do_recreate(step)
        action["new"] = [c["name"] for c in new]
        action["seconds"] = round(time.time() - started, 1)

    def find_record(self, records, release):
        for r in records:
            if r["id"] == release:
                return r
        return None

    def apply(self, steps, records, current):
        names = self.stack_files()
        checksum = self.checksum(names)
        if not steps:
            match = rel.matching_release(records, checksum, self.running_images())
            if match is not None:
                if match["id"] != current:
                    rel.write_current(self.dir, match["id"])
                    self.result["changed"] = True
                self.result["release"] = match
                return self.result
        self.record = rel.new_record(utcnow(), checksum, self.who, names, {}, previous=current,
                                     run_id=self.p["run_id"])
        self.record["compose_files"] = list(self.files)
        self.record["env_files"] = list(self.env_files)
        rel.save_files(self.dir, self.record["id"], names)
        rel.write_record(self.dir, self.record)
        self.result["changed"] = True
        for step in steps:
            self.run_step(step, self.result["actions"][step["service"]])
        self.record["services"] = dict((s, {"strategy": a["strategy"], "from": a["from"], "to": a["to"],
                                            "old": a["old"], "new": a["new"]}) for s, a in self.result["actions"].items())
        self.finish_record("success")
        rel.write_current(self.dir, self.record["id"])
        records, dummy = rel.read_history(self.dir)
        prune = rel.to_prune(records, self.p["keep_releases"], self.record["id"])
        rel.prune(self.dir, prune)
        if prune:
            self.say("pruned releases %s" % ", ".join(prune))
        self.say("release %s recorded (%s)" % (self.record["id"], ", ".join(sorted(self.record["services"])) or "running state"))
        return self.result

    def main(self):
        try:
            if self.check:
                self.look_ahead()
            else:
                self.take_lock()
                self.recover()
            return self.execute()
        except GateFailed as exc:
            self.finish_record("rolled_back")
            self.restore_snapshot(still_running=True)
            self.result["changed"] = True
            fail(self.module, str(exc) + self.revert(), **self.result)
        except (ro.RolloutError, rel.ReleaseError, lk.LockError, OSError, ValueError) as exc:
            if self.record is not None:
                self.finish_record("failed")
                self.say("failed: %s" % exc)
            self.restore_snapshot()
            fail(self.module, "rollout of stack %s failed: %s%s" % (self.project, exc, self.revert()), **self.result)
        except Exception as exc:  # pylint: disable=broad-except
            # A bug must not leave the release "interrupted" nor the lock held: record, then fail.
            if self.record is not None:
                self.finish_record("failed")
            self.restore_snapshot()
            fail(self.module, "rollout of stack %s failed unexpectedly: %r" % (self.project, exc),
                 exception=traceback.format_exc(), **self.result)
        finally:
            self.release_lock()
        return self.result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_dir=dict(type="path", required=True),
            project_name=dict(type="str"),
            files=dict(type="list", elements="str", default=["compose.yaml"]),
            env_files=dict(type="list", elements="str", default=[]),
            images=dict(type="dict"),
            release=dict(type="str"),
            services=dict(type="dict", default={}),
            default_gate=dict(type="dict", default={"type": "docker"}),
            stateful=dict(type="list", elements="str", default=[]),
            upstreams_dir=dict(type="path", default="/etc/nginx/composeops/upstreams"),
            nginx_check=dict(type="path", default="/usr/local/sbin/composeops-nginx-check"),
            nginx_reload=dict(type="list", elements="str", default=["systemctl", "reload", "nginx"]),
            drain_seconds=dict(type="float", default=5),
            wait_timeout=dict(type="int", default=300),
            pull=dict(type="str", choices=["always", "missing", "never"], default="missing"),
            lock_dir=dict(type="path", default="/var/lib/composeops/locks"),
            lock_timeout=dict(type="int", default=60),
            lock_expiry=dict(type="int", default=1800),
            lock_token=dict(type="str", no_log=False),
            keep_releases=dict(type="int", default=10),
            who=dict(type="str"),
            run_id=dict(type="str"),
            log_lines=dict(type="int", default=20),
            progress_file=dict(type="path"),
            docker_cli=dict(type="path", default="docker"),
            metrics_dir=dict(type="str", default="/var/lib/prometheus/node-exporter"),
        ),
        mutually_exclusive=[["images", "release"]],
        supports_check_mode=True,
    )
    run_id = module.params["run_id"]
    if run_id is not None and not rel.valid_run_id(run_id):
        # Before the lock, the recovery or any file: nothing has changed yet.
        fail(module, "invalid run_id %r: use letters, digits, '.', '_' and '-', 1 to 64 characters" % run_id)
    module.exit_json(**Rollout(module).main())


if __name__ == "__main__":
    main()
