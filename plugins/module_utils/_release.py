# -*- coding: utf-8 -*-
# Copyright (c) composeops developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Release history of a Compose stack on its host: ``<project_dir>/.releases/``.

    <id>.json   one record a release: id, time, who, result, checksum, files, images, services, previous,
                run_id (the playbook run of a multi-host rollout, or null)
    <id>/       a copy of the project files of that release (0600), for a rollback
    current     the id of the active release
    journal.json  the step a rollout is in (written by _rollout; read here only to know it exists)

A release id is the UTC time of the release and 8 hex digits of the checksum of its files:
``20261202T143000Z-1a2b3c4d``, so ids sort by time. Used by compose_rollout and
compose_release_info (the one selection function, ``select_release``, serves both).

Private to this collection (leading underscore): no compatibility promise to other collections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile

RESULTS = ("success", "rolled_back", "failed", "interrupted")
RELEASES_DIR = ".releases"
_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ReleaseError(Exception):
    """A release cannot be selected or read: the message says why, for the user."""


# --- Ids, checksums, records -------------------------------------------------------------------


def utc_stamp(now):
    """``20261202T143000Z`` of an aware or naive-UTC datetime."""
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return now.strftime("%Y%m%dT%H%M%SZ")


def iso_time(now):
    if now.tzinfo is not None:
        now = now.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def release_id(now, checksum):
    return "%s-%s" % (utc_stamp(now), checksum[:8])


def is_release_id(text):
    return bool(_ID.match(text or ""))


def valid_run_id(text):
    """Whether ``text`` is a run id: letters, digits, ``.``, ``_``, ``-``, 1 to 64 characters."""
    return isinstance(text, str) and bool(_RUN_ID.fullmatch(text))


def files_checksum(contents):
    """sha256 over the stack's files: ``contents`` maps a file name relative to the project
    directory to its bytes. Names are part of the sum (a renamed file is another release), in
    sorted order (the order of the -f options does not change the sum)."""
    digest = hashlib.sha256()
    for name in sorted(contents):
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(contents[name])
        digest.update(b"\0")
    return digest.hexdigest()


def new_record(now, checksum, who, files, images, services=None, previous=None, result="interrupted", run_id=None):
    """A release record. Its result starts as ``interrupted``: that is what it stays if the run
    dies before it writes the real result. ``run_id`` ties the records of one multi-host rollout
    (and of its rollback) together; None when the run has none."""
    return {
        "id": release_id(now, checksum),
        "time": iso_time(now),
        "who": who,
        "result": result,
        "checksum": checksum,
        "files": list(files),
        "images": images,
        "services": services or {},
        "previous": previous,
        "run_id": run_id,
    }


def image_ids(images):
    """``{svc: image id}`` of a record's ``images``."""
    return dict((svc, (info or {}).get("id")) for svc, info in (images or {}).items())


# --- Selection -----------------------------------------------------------------------------------


def sort_newest_first(records):
    return sorted(records, key=lambda r: (r.get("id", ""), r.get("time", "")), reverse=True)


def successful(records):
    return [r for r in sort_newest_first(records) if r.get("result") == "success"]


def select_release(records, selector, current=None):
    """The record ``selector`` names, among ``records``:

    - ``previous``: the successful release before the current one (1st previous);
    - an int N (or its digits as a string): the N-th previous successful release, counting back
      from the current one (N=0 is the current release itself);
    - a release id.

    Without a current release, "previous" counts from the newest successful one, which is then
    number 0. Raises ReleaseError listing the available ids when nothing matches."""
    ordered = sort_newest_first(records)
    good = successful(records)
    available = ", ".join(r["id"] for r in ordered) or "none"
    text = str(selector).strip()
    if text == "previous":
        text = "1"
    if re.match(r"^\d+$", text):
        n = int(text)
        ids = [r["id"] for r in good]
        start = ids.index(current) if current in ids else 0
        if start + n >= len(good):
            raise ReleaseError(
                "there is no %s successful release before the current one (%s): the stack has %d successful "
                "release(s); available releases: %s" % (_ordinal(n), current or "none", len(good), available))
        return good[start + n]
    for record in ordered:
        if record.get("id") == text:
            return record
    raise ReleaseError("unknown release '%s'; available releases: %s" % (text, available))


def _ordinal(n):
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return "%d%s previous" % (n, suffix) if n else "current"


def matching_release(records, checksum, images):
    """The newest successful release of the same files checksum and the same image id per
    service as ``images`` (``{svc: {id}}``), or None: the running state is already recorded."""
    want = image_ids(images)
    for record in successful(records):
        if record.get("checksum") == checksum and image_ids(record.get("images")) == want:
            return record
    return None


def to_prune(records, keep, current=None):
    """Ids to delete: successful releases beyond the ``keep`` newest ones, and any other record
    older than the oldest successful one kept. The current release is never pruned."""
    good = successful(records)
    if keep < 1 or len(good) <= keep:
        return []
    oldest_kept = good[keep - 1]["id"]
    return sorted(r["id"] for r in records if r["id"] < oldest_kept and r["id"] != current)


def summary(record, current=None):
    """What compose_release_info lists for a release."""
    return {
        "id": record.get("id"),
        "time": record.get("time"),
        "who": record.get("who"),
        "result": record.get("result"),
        "checksum": record.get("checksum"),
        "images": record.get("images") or {},
        "services": record.get("services") or {},
        "previous": record.get("previous"),
        "run_id": record.get("run_id"),
        "current": record.get("id") == current,
    }


# --- Files -----------------------------------------------------------------------------------------


def releases_dir(project_dir):
    return os.path.join(project_dir, RELEASES_DIR)


ROLLOUT_METRICS = (
    ("composeops_rollout_last_status", "1 when the last rollout of the stack succeeded, 0 when it failed or was rolled back."),
    ("composeops_rollout_last_run_timestamp_seconds", "When the last rollout of the stack ended."),
)


def rollout_metrics(stack, result, timestamp):
    """node_exporter textfile text of a finished rollout of ``stack`` (``result`` of its record)."""
    label = '{stack="%s"}' % stack.replace("\\", "\\\\").replace('"', '\\"')
    values = ("1" if result == "success" else "0", "%d" % timestamp)
    lines = []
    for (name, text), value in zip(ROLLOUT_METRICS, values):
        lines += ["# HELP %s %s" % (name, text), "# TYPE %s gauge" % name, "%s%s %s" % (name, label, value)]
    return "\n".join(lines) + "\n"


def write_atomic(path, data, mode=0o600):
    """Write ``data`` (bytes or str) to ``path``: a temporary file in the same directory, fsync,
    rename. A reader sees the old content or the new one, never a part."""
    if not isinstance(data, bytes):
        data = data.encode("utf-8")
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.rename(tmp, path)
    except Exception:
        if fd is not None:
            os.close(fd)
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(path, data, mode=0o600):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def ensure_dir(path, mode=0o700):
    if not os.path.isdir(path):
        os.makedirs(path, mode)
    os.chmod(path, mode)


def read_history(project_dir):
    """``(records, current)`` of a project: every readable ``<id>.json``; records that cannot be
    parsed are skipped (a partial write cannot happen: they are written atomically)."""
    directory = releases_dir(project_dir)
    records = []
    if not os.path.isdir(directory):
        return records, None
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or not is_release_id(name[:-5]):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                records.append(json.load(handle))
        except (OSError, ValueError):
            continue
    current = None
    try:
        with open(os.path.join(directory, "current"), encoding="utf-8") as handle:
            current = handle.read().strip() or None
    except OSError:
        pass
    return sort_newest_first(records), current


def write_record(project_dir, record):
    directory = releases_dir(project_dir)
    ensure_dir(directory)
    write_json_atomic(os.path.join(directory, record["id"] + ".json"), record)


def write_current(project_dir, release):
    write_atomic(os.path.join(releases_dir(project_dir), "current"), release + "\n")


def save_files(project_dir, release, names):
    """Copy the project files ``names`` (relative to project_dir) into ``.releases/<release>/``,
    each 0600 (env files hold secrets)."""
    target = os.path.join(releases_dir(project_dir), release)
    ensure_dir(target)
    for name in names:
        dest = os.path.join(target, name)
        if os.path.dirname(name):
            ensure_dir(os.path.dirname(dest))
        with open(os.path.join(project_dir, name), "rb") as handle:
            write_atomic(dest, handle.read(), 0o600)


def restore_files(project_dir, release, names):
    """Put the files copy of ``release`` back into project_dir (same names, mode 0600 for new
    files, the mode of the existing file otherwise). Raises ReleaseError when the copy lacks one."""
    source = os.path.join(releases_dir(project_dir), release)
    for name in names:
        path = os.path.join(source, name)
        if not os.path.isfile(path):
            raise ReleaseError("release %s has no copy of %s in %s" % (release, name, source))
    for name in names:
        dest = os.path.join(project_dir, name)
        mode = (os.stat(dest).st_mode & 0o7777) if os.path.exists(dest) else 0o600
        with open(os.path.join(source, name), "rb") as handle:
            write_atomic(dest, handle.read(), mode)


def prune(project_dir, ids):
    directory = releases_dir(project_dir)
    for release in ids:
        path = os.path.join(directory, release + ".json")
        if os.path.exists(path):
            os.unlink(path)
        shutil.rmtree(os.path.join(directory, release), ignore_errors=True)
