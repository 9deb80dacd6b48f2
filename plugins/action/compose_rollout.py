# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs composeops.platform.compose_rollout as an async job on the host and prints its progress
lines (gates, switches, drains) while it runs: a module alone can only speak when it ends, and a
rollout waits on health gates for minutes. One raw command per poll (no module upload) reads the
new lines of the progress file and the job's state."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import shlex
import time

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

MODULE = "composeops.platform.compose_rollout"
# Seconds between two polls, and the longest a rollout may run as a job (async_wrapper stops it then).
POLL_SECONDS = 2
JOB_LIMIT = 4 * 3600
MARK = "--composeops-rollout-job--"


def default_progress_file(args):
    project = args.get("project_name") or os.path.basename(str(args.get("project_dir") or "").rstrip("/"))
    return "/var/log/composeops/rollout-%s.log" % project


def poll_command(progress_file, offset, job_file):
    """New bytes of the progress file from ``offset``, the mark, then the job file."""
    return "tail -c +%d %s 2>/dev/null; printf '\\n%s\\n'; cat %s 2>/dev/null" % (
        offset + 1, shlex.quote(progress_file), MARK, shlex.quote(job_file))


def parse_poll(stdout):
    """``(progress text, job finished)`` from the output of poll_command. Over SSH the command runs
    on a tty (``ssh -tt``, Ansible's default for commands that may become another user), which ends
    every line in CR LF: the progress file's own lines end in LF, and the offset counts its bytes."""
    progress, dummy, job = stdout.replace("\r\n", "\n").rpartition("\n%s\n" % MARK)
    try:
        state = json.loads(job)
    except ValueError:
        return progress, False
    # async_wrapper writes {"started": true, "finished": false} until the module's own result.
    return progress, isinstance(state, dict) and ("started" not in state or bool(state.get("finished")))


def under_mitogen(connection):
    """True when Mitogen's strategy replaced the connection (its plugins are ansible_mitogen's)."""
    return any(klass.__module__.startswith("ansible_mitogen") for klass in type(connection).__mro__)


def settled(planned):
    """True when a check-mode result of the module is also what the real run would return: nothing
    to change (no step, no file, no release to record or make current, no interrupted rollout to
    recover), no failure, and no other run holding the stack's lock (the real run would wait for
    it, then find the state that run left)."""
    return not (planned.get("changed") or planned.get("failed") or planned.get("locked_by"))


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        # Check mode waits on nothing; a task with its own async/poll keeps Ansible's handling.
        if self._task.check_mode or self._task.async_val:
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            return result
        args.setdefault("progress_file", default_progress_file(args))
        # Most runs (every site.yml run on a stack that did not change) have nothing to do: a
        # synchronous check-mode call answers that in about a second, where the async job costs 4-5.
        # Its answer is final only when it changes nothing and no other run holds the lock.
        # Not for a rollback (release): it puts the release's files back even when its images run.
        if args.get("release") is None:
            planned = self.check_first(args, task_vars)
            if settled(planned):
                result.update(planned)
                return result
        progress_file = args["progress_file"]
        res = self._low_level_execute_command("stat -c %%s %s 2>/dev/null || echo 0" % shlex.quote(progress_file))
        try:
            offset = int(res.get("stdout", "0").strip() or 0)
        except ValueError:
            offset = 0

        # The host the module runs on: the delegated one when a play rolls back another host.
        host = self._task.delegate_to or (task_vars.get("inventory_hostname", "") if task_vars else "")
        show = not self._play_context.no_log
        if under_mitogen(self._connection):
            # Under Mitogen an async job runs in a forked interpreter that waits for ever on its
            # first import of this collection's module_utils (seen with Mitogen 0.3.54): the module
            # runs synchronously, and its progress lines are shown when it ends.
            result.update(self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars))
            res = self._low_level_execute_command(poll_command(progress_file, offset, "/dev/null"))
            self.show_progress(parse_poll(res.get("stdout", ""))[0], host, show)
            return result

        self._task.async_val = JOB_LIMIT
        try:
            started = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars, wrap_async=True)
        finally:
            self._task.async_val = 0
        if started.get("failed") or "ansible_job_id" not in started:
            result.update(started)
            return result
        jid = started["ansible_job_id"]
        async_dir = self._remote_expand_user(self.get_shell_option("async_dir", default="~/.ansible_async"))
        job_file = self._connection._shell.join_path(async_dir, jid)
        failures = 0
        wait = 0.5  # a run with nothing to do ends within a second: poll soon, then every POLL_SECONDS
        # async_wrapper ends the job at JOB_LIMIT: a job file that still says "running" well after
        # that is one this loop cannot read, and must not be waited on for ever.
        deadline = time.time() + JOB_LIMIT + 120
        while True:
            if time.time() > deadline:
                result.update(failed=True, ansible_job_id=jid,
                              msg="compose_rollout: the job %s on the host did not report its end within %d s "
                                  "(job file %s, progress file %s)" % (jid, JOB_LIMIT + 120, job_file, progress_file))
                return result
            time.sleep(wait)
            wait = min(POLL_SECONDS, wait * 2)
            try:
                res = self._low_level_execute_command(poll_command(progress_file, offset, job_file))
            except AnsibleConnectionFailure as exc:
                # A network bounce must not lose the job: retry a few times, like async polling does.
                failures += 1
                if failures > 5:
                    raise
                display.vvvv("compose_rollout: poll failed, retrying: %s" % exc)
                continue
            failures = 0
            progress, finished = parse_poll(res.get("stdout", ""))
            offset += len(progress.encode("utf-8"))
            self.show_progress(progress, host, show)
            if finished:
                break

        status = self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                      module_args={"jid": jid, "_async_dir": async_dir})
        self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                             module_args={"jid": jid, "mode": "cleanup", "_async_dir": async_dir})
        for key in ("started", "finished", "ansible_job_id", "results_file", "stdout_lines", "stderr_lines"):
            status.pop(key, None)
        result.update(status)
        return result

    @staticmethod
    def show_progress(progress, host, show):
        for line in progress.splitlines():
            if show and line.strip():
                # On stderr, like Ansible's warnings: stdout stays the callback's own (a json
                # callback's output must parse).
                display.display("%s | %s" % (host, line), stderr=True)

    def check_first(self, args, task_vars):
        """The module in check mode, synchronously (a failure here is left to the real run to say)."""
        self._task.check_mode = True
        try:
            return self._execute_module(module_name=MODULE, module_args=dict(args), task_vars=task_vars)
        finally:
            self._task.check_mode = False
