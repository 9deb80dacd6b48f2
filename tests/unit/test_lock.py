"""Unit tests of the per-stack deploy lock (module_utils/_lock.py) on a real directory, and of the
progress polling of the compose_rollout action plugin (its command and the parsing of what the
host answers, as async_wrapper writes it)."""

import json
import os

import pytest

from ansible_collections.composeops.platform.plugins.action import compose_rollout as action
from ansible_collections.composeops.platform.plugins.module_utils import _lock as lk


def _lock(**kw):
    lock = {"token": "t1", "pid": 42, "boot_id": "b1", "host": "h", "who": "alice", "started": 1000.0, "expires": 3000.0}
    lock.update(kw)
    return lock


def test_lock_live_holder_is_not_stale():
    assert lk.lock_stale(_lock(), 2000, "b1", lambda pid: True) is None


def test_lock_expired_is_stale():
    assert lk.lock_stale(_lock(expires=1500), 2000, "b1", lambda pid: True) == "it expired"


def test_lock_dead_pid_same_boot_is_stale():
    assert lk.lock_stale(_lock(), 2000, "b1", lambda pid: False) == "its process 42 is gone"


def test_lock_of_a_playbook_run_lives_until_its_expiry():
    """No pid: the holder is a playbook run between its tasks, alive as far as the host can tell."""
    assert lk.lock_stale(_lock(pid=None), 2000, "b1", lambda pid: False) is None
    assert lk.lock_stale(_lock(pid=None), 3001, "b1", lambda pid: False) == "it expired"


def test_lock_other_boot_is_stale():
    assert lk.lock_stale(_lock(), 2000, "b2", lambda pid: True) == "the host rebooted since it was taken"


def test_lock_unreadable_is_stale():
    assert lk.lock_stale(None, 2000, "b1", lambda pid: True) == "the lock file is unreadable"


def test_default_who_is_the_sudo_user_then_the_login():
    assert lk.default_who({"SUDO_USER": "alice", "LOGNAME": "root", "USER": "root"}) == "alice"
    assert lk.default_who({"LOGNAME": "bob", "USER": "root"}) == "bob"
    assert lk.default_who({"USER": "carol"}) == "carol"
    assert lk.default_who({}) == "unknown"


def test_lock_message():
    msg = lk.lock_message("shop", _lock(), lambda t: "T%d" % t)
    assert msg == "stack shop is being deployed by alice since T1000 (pid 42 on h, expires at T3000)"
    msg = lk.lock_message("shop", _lock(pid=None), lambda t: "T%d" % t)
    assert msg == "stack shop is being deployed by alice since T1000 (a playbook run on h, expires at T3000)"


class Clock(object):
    """Time that passes only when the lock sleeps: a wait of 60 s takes no time."""

    def __init__(self, now=1000000.0):
        self.now = now

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def _stack_lock(tmp_path, clock, who="alice", warnings=None):
    return lk.StackLock(str(tmp_path / "locks"), "shop", who, 900, (warnings if warnings is not None else []).append,
                        clock=clock, sleep=clock.sleep)


def test_a_second_run_waits_then_fails_naming_the_holder(tmp_path):
    clock = Clock()
    first = _stack_lock(tmp_path, clock).acquire(60)
    assert first["pid"] is None and first["expires"] == clock.now + 900
    assert oct(os.stat(str(tmp_path / "locks" / "shop.lock")).st_mode & 0o777) == "0o600"
    with pytest.raises(lk.LockError) as exc:
        _stack_lock(tmp_path, clock, who="bob").acquire(5)
    assert "stack shop is being deployed by alice since" in str(exc.value)
    assert "(a playbook run on " in str(exc.value) and "waited 5s" in str(exc.value)
    assert clock.now == 1000005.0  # it did wait, one second at a time


def test_renewal_keeps_a_lock_past_its_first_expiry_then_it_is_taken_over(tmp_path):
    clock = Clock()
    warnings = []
    lock = _stack_lock(tmp_path, clock)
    token = lock.acquire(60)["token"]
    clock.now += 800
    assert lock.renew(token)["expires"] == clock.now + 900
    clock.now += 800  # 1600 s after it was taken, 800 s after its renewal: still held
    with pytest.raises(lk.LockError):
        _stack_lock(tmp_path, clock, who="bob").acquire(0)
    clock.now += 101
    other = _stack_lock(tmp_path, clock, who="bob", warnings=warnings).acquire(0)
    assert other["who"] == "bob" and other["token"] != token
    assert warnings and "took over the deploy lock of stack shop (it expired)" in warnings[0]
    # The first holder has lost it: renewing or releasing with its token fails or does nothing.
    with pytest.raises(lk.LockError) as exc:
        lock.renew(token)
    assert "not held by this run: stack shop is being deployed by bob" in str(exc.value)
    assert lock.release(token) is False
    assert json.loads((tmp_path / "locks" / "shop.lock").read_text())["who"] == "bob"


def test_a_lock_of_a_dead_process_is_taken_over_at_once(tmp_path):
    clock = Clock()
    locks = tmp_path / "locks"
    locks.mkdir()
    # pid 4194304 is above Linux's pid_max: no such process.
    (locks / "shop.lock").write_text(json.dumps(_lock(pid=4194304, boot_id=lk.boot_id(), expires=clock.now + 600)))
    warnings = []
    payload = _stack_lock(tmp_path, clock, warnings=warnings).acquire(0, pid=os.getpid())
    assert payload["pid"] == os.getpid()
    assert "(its process 4194304 is gone)" in warnings[0]


def test_release_removes_only_its_own_lock(tmp_path):
    clock = Clock()
    lock = _stack_lock(tmp_path, clock)
    token = lock.acquire(0)["token"]
    assert lock.release("another-token") is False and (tmp_path / "locks" / "shop.lock").exists()
    assert lock.release(token) is True and not (tmp_path / "locks" / "shop.lock").exists()
    with pytest.raises(lk.LockError) as exc:
        lock.held(token)
    assert "is not held: it was released or removed" in str(exc.value)


# --- The action plugin's progress polling ---------------------------------------------------------


def test_poll_command_quotes_its_paths():
    cmd = action.poll_command("/var/log/composeops/rollout-my shop.log", 120, "/root/.ansible_async/j1")
    assert cmd == ("tail -c +121 '/var/log/composeops/rollout-my shop.log' 2>/dev/null; "
                   "printf '\\n--composeops-rollout-job--\\n'; cat /root/.ansible_async/j1 2>/dev/null")


def test_parse_poll_while_running_and_when_done():
    lines = "2026-12-02T10:00:00Z shop: app: gate of shop-app-3: ok (pending, 1/2 successes, 0/30 failures)\n"
    running = lines + "\n%s\n" % action.MARK + json.dumps({"started": True, "finished": False, "ansible_job_id": "j1"})
    assert action.parse_poll(running) == (lines, False)
    done = "\n%s\n" % action.MARK + json.dumps({"changed": True, "release": {"id": "x"}})
    assert action.parse_poll(done) == ("", True)
    # The job file not written yet (async_wrapper forks first), or cut half-way.
    assert action.parse_poll(lines + "\n%s\n" % action.MARK) == (lines, False)
    assert action.parse_poll("\n%s\n{\"started\": tr" % action.MARK) == ("", False)
    # Over SSH the poll runs on a tty (ssh -tt): every line ends in CR LF, the file's own in LF.
    tty = (lines + "\n%s\n" % action.MARK + json.dumps({"changed": False})).replace("\n", "\r\n") + "\r\n"
    assert action.parse_poll(tty) == (lines, True)


def test_default_progress_file_is_the_modules():
    assert action.default_progress_file({"project_dir": "/opt/stacks/shop/"}) == "/var/log/composeops/rollout-shop.log"
    assert action.default_progress_file({"project_dir": "/x", "project_name": "p"}) == "/var/log/composeops/rollout-p.log"
