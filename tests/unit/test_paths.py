"""Unit tests of the paths module (plugins/modules/paths.py), run as Ansible runs a module: a
Python process reading its arguments, on a temporary directory."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

MODULE = Path(__file__).resolve().parents[2] / "plugins" / "modules" / "paths.py"


def _run(paths, check_mode=False, diff=False):
    args = {"ANSIBLE_MODULE_ARGS": {"paths": paths, "_ansible_check_mode": check_mode, "_ansible_diff": diff}}
    out = subprocess.run([sys.executable, str(MODULE)], input=json.dumps(args), capture_output=True, text=True, check=False,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return json.loads(out.stdout)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_missing_directories_with_their_parents_then_changes_nothing(tmp_path):
    target = tmp_path / "a" / "b"
    paths = [{"path": str(target), "mode": "0700"}, {"path": str(tmp_path / "c"), "mode": "0755"}]
    first = _run(paths)
    assert first["changed"] and first["changed_paths"] == [str(target), str(tmp_path / "c")]
    assert _mode(target) == 0o700 and _mode(tmp_path / "a") == 0o700 and _mode(tmp_path / "c") == 0o755
    second = _run(paths)
    assert not second["changed"] and second["changed_paths"] == []
    assert [r["state"] for r in second["results"]] == ["directory", "directory"]


def test_sets_the_mode_of_an_existing_file_and_leaves_a_missing_optional_path_alone(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    f.chmod(0o644)
    result = _run([{"path": str(f), "state": "present", "mode": "0600"},
                   {"path": str(tmp_path / "missing"), "state": "optional", "mode": "0600"}], diff=True)
    assert result["changed_paths"] == [str(f)] and _mode(f) == 0o600
    assert not (tmp_path / "missing").exists()
    assert result["diff"] == [{"before": {"path": str(f), "state": "file", "mode": "0644"},
                               "after": {"path": str(f), "state": "file", "mode": "0600"}}]


def test_check_mode_reports_and_changes_nothing(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    f.chmod(0o644)
    result = _run([{"path": str(tmp_path / "new")}, {"path": str(f), "state": "present", "mode": "0600"}],
                  check_mode=True)
    assert result["changed_paths"] == [str(tmp_path / "new"), str(f)]
    assert not (tmp_path / "new").exists() and _mode(f) == 0o644


def test_refuses_a_missing_present_path_and_a_file_as_directory(tmp_path):
    assert _run([{"path": str(tmp_path / "missing"), "state": "present"}])["failed"]
    f = tmp_path / "f"
    f.write_text("x")
    assert "not a directory" in _run([{"path": str(f)}])["msg"]
