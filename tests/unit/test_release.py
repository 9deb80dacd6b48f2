"""Unit tests of the release history shared by compose_rollout and compose_release_info."""

import datetime
import os
import stat

import pytest

from ansible_collections.composeops.platform.plugins.module_utils import _release as rel

NOW = datetime.datetime(2026, 12, 2, 14, 30, 0, tzinfo=datetime.timezone.utc)
IMAGES = {"web": {"ref": "app:2.0", "id": "sha256:bb", "digest": "app@sha256:22"}}


def _record(minute, result="success", checksum="c" * 64, images=None):
    now = NOW + datetime.timedelta(minutes=minute)
    return rel.new_record(now, checksum, "alice", ["compose.yaml"], images or IMAGES, result=result)


def test_release_id_format():
    assert rel.release_id(NOW, "1a2b3c4d5e6f") == "20261202T143000Z-1a2b3c4d"
    assert rel.is_release_id("20261202T143000Z-1a2b3c4d")
    assert not rel.is_release_id("20261202T143000Z-1a2b3c4")
    naive = datetime.datetime(2026, 12, 2, 14, 30, 0)
    assert rel.release_id(naive, "ab" * 32) == "20261202T143000Z-abababab"
    record = _record(0)
    assert record["time"] == "2026-12-02T14:30:00Z" and record["result"] == "success"


def test_new_record_starts_interrupted():
    record = rel.new_record(NOW, "d" * 64, "bob", ["compose.yaml", ".env"], IMAGES)
    assert record["result"] == "interrupted"
    assert record["id"] == "20261202T143000Z-dddddddd"
    assert set(record) == {"id", "time", "who", "result", "checksum", "files", "images", "services", "previous",
                           "run_id"}
    assert record["run_id"] is None


def test_new_record_with_run_id():
    record = rel.new_record(NOW, "d" * 64, "bob", ["compose.yaml"], IMAGES, run_id="20261202T142955Z-shop")
    assert record["run_id"] == "20261202T142955Z-shop"
    assert record["id"] == "20261202T143000Z-dddddddd" and record["result"] == "interrupted"


def test_summary_returns_run_id():
    record = rel.new_record(NOW, "d" * 64, "bob", ["compose.yaml"], IMAGES, run_id="run-1")
    assert rel.summary(record)["run_id"] == "run-1"
    assert rel.summary(_record(0))["run_id"] is None
    # a record written before run_id existed
    old = dict(_record(0))
    del old["run_id"]
    assert rel.summary(old)["run_id"] is None


@pytest.mark.parametrize("text", ["run-1", "20261202T142955Z-shop", "a.b_c-D9", "x", "a" * 64])
def test_valid_run_id(text):
    assert rel.valid_run_id(text)


@pytest.mark.parametrize("text", ["", "a" * 65, "has space", "a/b", "a:b", "ü", "run\n", None, 12])
def test_invalid_run_id(text):
    assert not rel.valid_run_id(text)


def test_checksum_covers_names_and_contents():
    a = rel.files_checksum({"compose.yaml": b"x", ".env": b"A=1\n"})
    assert a == rel.files_checksum({".env": b"A=1\n", "compose.yaml": b"x"})
    assert a != rel.files_checksum({"compose.yaml": b"x", ".env": b"A=2\n"})
    assert a != rel.files_checksum({"compose.yml": b"x", ".env": b"A=1\n"})
    assert len(a) == 64


def _history():
    # minutes 0..5: success, success, rolled_back, success, failed, success
    results = ["success", "success", "rolled_back", "success", "failed", "success"]
    return [_record(i, r, checksum=("%x" % i) * 64) for i, r in enumerate(results)]


def test_select_previous_and_nth():
    records = _history()
    current = records[5]["id"]
    assert rel.select_release(records, "previous", current)["id"] == records[3]["id"]
    assert rel.select_release(records, 1, current)["id"] == records[3]["id"]
    assert rel.select_release(records, "2", current)["id"] == records[1]["id"]
    assert rel.select_release(records, 3, current)["id"] == records[0]["id"]
    assert rel.select_release(records, 0, current)["id"] == current
    # counted from the current one, not from the newest
    assert rel.select_release(records, "previous", records[3]["id"])["id"] == records[1]["id"]


def test_select_by_id_and_unknown():
    records = _history()
    assert rel.select_release(records, records[2]["id"])["result"] == "rolled_back"
    with pytest.raises(rel.ReleaseError) as err:
        rel.select_release(records, "20200101T000000Z-00000000")
    assert str(err.value).startswith("unknown release '20200101T000000Z-00000000'; available releases: %s, " % records[5]["id"])
    with pytest.raises(rel.ReleaseError, match="no 4th previous successful release before the current one"):
        rel.select_release(records, 4, records[5]["id"])
    with pytest.raises(rel.ReleaseError, match="available releases: none"):
        rel.select_release([], "previous")


def test_matching_release_for_idempotence():
    records = _history()
    assert rel.matching_release(records, "5" * 64, IMAGES)["id"] == records[5]["id"]
    other = {"web": dict(IMAGES["web"], id="sha256:cc")}
    assert rel.matching_release(records, "5" * 64, other) is None
    # a rolled back release never matches
    assert rel.matching_release(records, "2" * 64, IMAGES) is None


def test_prune_keeps_n_successful_and_current():
    records = _history()
    assert rel.to_prune(records, 10) == []
    assert rel.to_prune(records, 2) == sorted(r["id"] for r in records[:3])
    assert rel.to_prune(records, 2, current=records[0]["id"]) == sorted(r["id"] for r in records[1:3])
    assert rel.to_prune(records, 4) == []


def test_summary():
    record = _history()[5]
    assert rel.summary(record, record["id"])["current"] is True
    assert rel.summary(record)["current"] is False


def test_history_on_disk(tmp_path):
    project = tmp_path / "shop"
    project.mkdir()
    (project / "compose.yaml").write_text("services: {}\n")
    (project / ".env").write_text("SECRET=x\n")
    records = _history()
    for record in records:
        rel.write_record(str(project), record)
    rel.write_current(str(project), records[5]["id"])
    rel.save_files(str(project), records[5]["id"], ["compose.yaml", ".env"])
    directory = project / ".releases"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    copy = directory / records[5]["id"] / ".env"
    assert copy.read_text() == "SECRET=x\n" and stat.S_IMODE(copy.stat().st_mode) == 0o600
    read, current = rel.read_history(str(project))
    assert current == records[5]["id"] and [r["id"] for r in read] == [r["id"] for r in reversed(records)]
    (project / ".env").write_text("SECRET=changed\n")
    rel.restore_files(str(project), records[5]["id"], ["compose.yaml", ".env"])
    assert (project / ".env").read_text() == "SECRET=x\n"
    with pytest.raises(rel.ReleaseError, match="has no copy of"):
        rel.restore_files(str(project), records[4]["id"], [".env"])
    rel.prune(str(project), [records[5]["id"]])
    assert not (directory / records[5]["id"]).exists()
    assert not (directory / (records[5]["id"] + ".json")).exists()
    (directory / "garbage.json").write_text("{")
    assert len(rel.read_history(str(project))[0]) == 5


def test_read_history_of_project_without_releases(tmp_path):
    assert rel.read_history(str(tmp_path)) == ([], None)


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "f.json"
    rel.write_json_atomic(str(path), {"a": 1})
    rel.write_json_atomic(str(path), {"a": 2}, mode=0o644)
    assert os.listdir(str(tmp_path)) == ["f.json"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_rollout_metrics_for_node_exporter():
    text = rel.rollout_metrics("shop", "success", 1765000000.7)
    assert text.splitlines() == [
        "# HELP composeops_rollout_last_status 1 when the last rollout of the stack succeeded, 0 when it failed or was rolled back.",
        "# TYPE composeops_rollout_last_status gauge",
        'composeops_rollout_last_status{stack="shop"} 1',
        "# HELP composeops_rollout_last_run_timestamp_seconds When the last rollout of the stack ended.",
        "# TYPE composeops_rollout_last_run_timestamp_seconds gauge",
        'composeops_rollout_last_run_timestamp_seconds{stack="shop"} 1765000000',
    ]
    for result in ("failed", "rolled_back", "interrupted"):
        assert 'composeops_rollout_last_status{stack="shop"} 0' in rel.rollout_metrics("shop", result, 1)
