# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The per-stack deploy lock of compose_rollout and compose_stack_lock: one file per stack,
``<lock_dir>/<project>.lock``, created with O_EXCL (one holder whatever the number of runs), holding
JSON: ``token`` (the holder's secret-free id), ``pid`` (the holding process, or null when a playbook
run holds it across its tasks), ``boot_id``, ``host``, ``who``, ``started``, ``expires``.

A lock may be taken over when it expired, when the host rebooted since it was taken, or when its
process is gone. A lock a playbook run holds has no process: it lives until its expiry, which the
holder renews (compose_rollout renews it at every step), so a controller killed mid-run blocks the
stack until then and no longer.

Private to this collection (leading underscore): no compatibility promise to other collections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import datetime
import json
import os
import socket
import time


class LockError(Exception):
    """The lock cannot be taken, or is not held by who says so; the message tells who holds it."""


def lock_stale(lock, now, boot_id, pid_alive):
    """Why a lock may be taken over, or None while its holder may still be working.
    ``lock`` is the parsed lock file; ``pid_alive(pid)`` tells whether a process runs here. A lock
    without a pid (held by a playbook run between its tasks) is stale only by expiry or reboot."""
    if not isinstance(lock, dict):
        return "the lock file is unreadable"
    try:
        expires = float(lock.get("expires") or 0)
    except (TypeError, ValueError):
        expires = 0
    if expires < now:
        return "it expired"
    if lock.get("boot_id") != boot_id:
        return "the host rebooted since it was taken"
    if lock.get("pid") is not None and not pid_alive(lock.get("pid")):
        return "its process %s is gone" % lock.get("pid")
    return None


def fmt_time(value):
    try:
        return datetime.datetime.fromtimestamp(float(value), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return str(value)


def lock_message(project, lock, fmt=fmt_time):
    holder = "pid %s" % lock.get("pid") if lock.get("pid") is not None else "a playbook run"
    return ("stack %s is being deployed by %s since %s (%s on %s, expires at %s)"
            % (project, lock.get("who") or "someone", fmt(lock.get("started")), holder,
               lock.get("host") or "this host", fmt(lock.get("expires"))))


def default_who(environ=None):
    """Who deploys when the caller does not say: the sudo user, then the login name."""
    environ = os.environ if environ is None else environ
    return environ.get("SUDO_USER") or environ.get("LOGNAME") or environ.get("USER") or "unknown"


def new_token():
    return binascii.hexlify(os.urandom(12)).decode("ascii")


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError):
        return False
    except OSError as exc:
        return exc.errno == 1  # EPERM: it exists, another user's
    return True


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


class StackLock(object):
    """The lock file of one stack. ``warn(text)`` reports a takeover; ``clock``/``sleep`` are
    time.time/time.sleep (tests pass their own to run without waiting)."""

    def __init__(self, lock_dir, project, who, expiry, warn, clock=time.time, sleep=time.sleep):
        self.dir = lock_dir
        self.project = project
        self.path = os.path.join(lock_dir, "%s.lock" % project)
        self.who = who
        self.expiry = expiry
        self.warn = warn
        self.clock = clock
        self.sleep = sleep
        self.boot = boot_id()

    def read(self):
        """``(parsed or None, raw text or None when absent, age in seconds)``."""
        try:
            with open(self.path) as handle:
                raw = handle.read()
            age = self.clock() - os.stat(self.path).st_mtime
        except OSError:
            return None, None, 0
        try:
            lock = json.loads(raw)
        except ValueError:
            lock = None
        return lock, raw, age

    def payload(self, token, pid, started=None):
        now = self.clock()
        return {"token": token, "pid": pid, "boot_id": self.boot, "host": socket.gethostname(), "who": self.who,
                "started": now if started is None else started, "expires": now + self.expiry}

    def acquire(self, timeout, pid=None, token=None):
        """Take the lock, waiting up to ``timeout`` seconds for its holder (a stale lock is taken
        over at once, with a warning). ``pid``: the process whose end frees it (None: only its
        expiry does). Returns the payload written (its ``token`` releases it)."""
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, 0o700)
        payload = None
        deadline = self.clock() + timeout
        while True:
            payload = self.payload(token or new_token(), pid)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except OSError as exc:
                if exc.errno != 17:  # EEXIST
                    raise LockError("cannot create the lock %s: %s" % (self.path, exc)) from None
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(json.dumps(payload))
                    handle.flush()
                    os.fsync(handle.fileno())
                return payload
            lock, raw, age = self.read()
            if raw is None:
                continue  # freed meanwhile: try again at once
            # A lock file just created may not hold its JSON yet.
            stale = None if (lock is None and age < 10) else lock_stale(lock, self.clock(), self.boot, pid_alive)
            if stale:
                self.take_over(raw, lock, stale)
                continue
            if self.clock() >= deadline:
                raise LockError("%s; waited %ds (lock file %s: remove it if that run is gone, or wait for its expiry)"
                                % (lock_message(self.project, lock or {}), timeout, self.path))
            self.sleep(1)

    def take_over(self, raw, lock, why):
        """Move a stale lock aside, unless another run took it over meanwhile (then put theirs back)."""
        aside = "%s.stale.%d" % (self.path, os.getpid())
        try:
            os.rename(self.path, aside)
        except OSError:
            return
        with open(aside) as handle:
            taken = handle.read()
        if taken != raw:
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        os.unlink(aside)
        if taken == raw:
            self.warn("took over the deploy lock of stack %s (%s): %s" % (self.project, why, lock_message(self.project, lock or {})))

    def held(self, token):
        """The payload when ``token`` holds the lock, else LockError naming the holder."""
        lock, raw, dummy = self.read()
        if isinstance(lock, dict) and lock.get("token") == token:
            return lock
        if raw is None:
            raise LockError("the deploy lock of stack %s (%s) is not held: it was released or removed" % (self.project, self.path))
        raise LockError("the deploy lock of stack %s is not held by this run: %s" % (self.project, lock_message(self.project, lock or {})))

    def renew(self, token):
        """Push the expiry of the lock ``token`` holds to now + expiry (atomic rename)."""
        lock = self.held(token)
        payload = dict(lock, expires=self.clock() + self.expiry)
        tmp = "%s.renew.%d" % (self.path, os.getpid())
        fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(payload))
        os.rename(tmp, self.path)
        return payload

    def release(self, token):
        """Remove the lock if ``token`` holds it; True when it did."""
        lock, dummy, dummy2 = self.read()
        if isinstance(lock, dict) and lock.get("token") == token:
            os.unlink(self.path)
            return True
        return False
