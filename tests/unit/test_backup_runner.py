"""The pure logic of the backup runner (roles/backup/files/composeops-backup.py): metrics in the
Prometheus text format, restic's JSON output (recorded from real runs, tests/unit/fixtures/backup/),
row counts and their comparison, Redis INFO, the sftp command."""

import datetime
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "backup"
_spec = importlib.util.spec_from_file_location("composeops_backup", ROOT / "roles/backup/files/composeops-backup.py")
runner = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runner)


def test_metrics_render_help_and_type_once_per_name():
    text = runner.render_metrics([
        ("backup_last_status", {"source": "demo-db", "repository": "local"}, True),
        ("backup_last_status", {"source": "demo-db", "repository": "offsite"}, False),
        ("backup_duration_seconds", {"source": "demo-db", "repository": "local"}, 12.3456),
        ("backup_size_bytes", {"source": "demo-db", "repository": "local"}, 1048576.0),
    ], {"backup_last_status": "1 ok, 0 failed."})
    assert text == "\n".join([
        "# HELP backup_last_status 1 ok, 0 failed.",
        "# TYPE backup_last_status gauge",
        'backup_last_status{repository="local",source="demo-db"} 1',
        'backup_last_status{repository="offsite",source="demo-db"} 0',
        "# HELP backup_duration_seconds backup_duration_seconds",
        "# TYPE backup_duration_seconds gauge",
        'backup_duration_seconds{repository="local",source="demo-db"} 12.346',
        "# HELP backup_size_bytes backup_size_bytes",
        "# TYPE backup_size_bytes gauge",
        'backup_size_bytes{repository="local",source="demo-db"} 1048576',
    ]) + "\n"


def test_metrics_escape_label_values():
    text = runner.render_metrics([("x", {"source": 'a"b\\c\nd'}, 1)], {})
    assert 'x{source="a\\"b\\\\c\\nd"} 1' in text


def test_backup_summary_from_a_recorded_run():
    summary = runner.parse_backup_summary((FIXTURES / "backup_stdin.jsonl").read_text())
    assert len(summary["snapshot_id"]) == 64
    assert summary["total_bytes_processed"] > 0


def test_backup_without_summary_is_a_failure():
    with pytest.raises(runner.Failure):
        runner.parse_backup_summary('{"message_type":"status","percent_done":0.5}\nnot json\n')


def test_a_lock_in_the_way_from_a_recorded_run():
    # restic prune, exit 11, while a backup of the same repository ran (restic 0.18).
    locked = runner.restic_failure("restic prune (local) failed", (FIXTURES / "restic_locked.txt").read_text())
    assert isinstance(locked, runner.Locked)
    assert str(locked).startswith("restic prune (local) failed: unable to create lock in backend")
    other = runner.restic_failure("restic backup (local) failed", "Fatal: wrong password or no key found\n")
    assert isinstance(other, runner.Failure) and not isinstance(other, runner.Locked)
    assert str(other) == "restic backup (local) failed: Fatal: wrong password or no key found"


def test_a_run_stopped_by_a_lock_runs_once_more_after_unlock():
    calls = []

    def attempts(*outcomes):
        pending = list(outcomes)

        def action():
            calls.append("run")
            outcome = pending.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        return action

    def unlock():
        calls.append("unlock")

    said = []
    # Locked, then done: one unlock between the runs, and the reason said.
    assert runner.after_unlock(attempts(runner.Locked("restic backup (local) failed: locked"), "ok"),
                               unlock, said.append) == "ok"
    assert calls == ["run", "unlock", "run"] and said == ["restic backup (local) failed: locked"]
    # Any other failure: raised at once, nothing unlocked.
    calls.clear()
    with pytest.raises(runner.Failure, match="disk full"):
        runner.after_unlock(attempts(runner.Failure("disk full")), unlock, said.append)
    assert calls == ["run"]
    # Locked twice (a live lock of another run): raised after one unlock.
    calls.clear()
    with pytest.raises(runner.Locked):
        runner.after_unlock(attempts(runner.Locked("a"), runner.Locked("b")), unlock, said.append)
    assert calls == ["run", "unlock", "run"]


def test_latest_snapshot_from_a_recorded_list():
    snapshots = json.loads((FIXTURES / "snapshots.json").read_text())
    latest = runner.latest_snapshot(snapshots)
    assert latest["time"] == max(s["time"] for s in snapshots)
    assert runner.latest_snapshot([]) is None


def test_snapshot_time_in_seconds_from_a_recorded_list():
    snapshots = json.loads((FIXTURES / "snapshots.json").read_text())
    first = datetime.datetime(2026, 12, 6, 14, 11, 17, tzinfo=datetime.timezone.utc).timestamp()
    assert [runner.snapshot_epoch(s["time"]) for s in snapshots] == [first, first + 1]
    # restic prints the local offset where the host's zone is not UTC.
    assert runner.snapshot_epoch("2026-12-06T15:11:17.31+01:00") == first
    assert runner.snapshot_epoch("2026-12-06T14:11:17Z") == first
    with pytest.raises(runner.Failure, match="unexpected snapshot time"):
        runner.snapshot_epoch("yesterday")


def test_facts_of_a_copied_snapshot_are_found_by_its_first_id():
    # restic snapshots --json of the off-site repository: a dump's snapshot and the snapshot of its
    # facts, both copied from the first repository (new ids; `original` is the first one's).
    data, facts = json.loads((FIXTURES / "snapshots_offsite.json").read_text())
    assert "facts=demo-db" in facts["tags"] and "source=demo-db" in data["tags"]
    assert runner.recorded_id(data) == data["original"] != data["id"]
    assert runner.facts_path(facts, runner.recorded_id(data)) == (
        "/var/lib/composeops/backup/snapshots/demo-db/%s.json" % data["original"][:8])
    # The facts of a run are the first facts snapshot at or after its dump; none before it.
    assert runner.facts_for([facts], data) is facts
    assert runner.facts_for([facts], dict(data, time="2026-12-08T00:00:00Z")) is None
    assert runner.facts_for([], data) is None
    # A snapshot of the first repository is its own original.
    first = json.loads((FIXTURES / "snapshots.json").read_text())[0]
    assert runner.recorded_id(first) == first["id"]


def test_counts_parse_and_compare():
    counts = runner.parse_counts("app|public.orders|1000\napp|public.events|20000\n\nnoise\n")
    assert counts == {"app.public.orders": 1000, "app.public.events": 20000}
    assert runner.compare_counts(counts, dict(counts)) == []
    problems = runner.compare_counts(counts, {"app.public.orders": 999})
    assert problems == ["app.public.events: 20000 rows at dump time, no restored",
                        "app.public.orders: 1000 rows at dump time, 999 restored"]


def test_postgres_counts_query_every_table_of_every_database():
    answers = {
        ("postgres", "db"): "app\npostgres\n",
        ("app", "tables"): 'public.orders\n"Odd Schema"."T"\n',
        ("postgres", "tables"): "",
        ("app", "count"): "app|public.orders|3\napp|\"Odd Schema\".\"T\"|1\n",
    }
    seen = []

    def fake(_source, database, sql):
        seen.append(sql)
        kind = "db" if "pg_database" in sql else "tables" if "pg_class" in sql else "count"
        return answers[(database, kind)]

    counts = runner.Runner.postgres_counts(None, {}, fake)
    assert counts == {"app.public.orders": 3, 'app."Odd Schema"."T"': 1}
    assert any('FROM "Odd Schema"."T"' in sql for sql in seen)


def test_table_names_are_checked_before_they_reach_sql():
    assert runner.quote_table("public.orders") == "public.orders"
    with pytest.raises(runner.Failure):
        runner.quote_table("public.orders; DROP TABLE x")


def test_redis_info():
    info = runner.redis_info("# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\n"
                             "rdb_last_bgsave_status:ok\r\n")
    assert info["rdb_last_bgsave_status"] == "ok" and info["loading"] == "0"


@pytest.mark.parametrize("url, expected", [
    ("sftp:root@backup-target:/srv/restic/a", "root@backup-target -s sftp"),
    ("sftp://backup@host.example:2222//srv/a", "-p 2222 backup@host.example -s sftp"),
])
def test_sftp_command(url, expected):
    command = runner.sftp_command(url, "/k", "/kh")
    assert command.startswith("ssh -i /k -o BatchMode=yes -o StrictHostKeyChecking=accept-new")
    assert command.endswith(expected)


def test_env_file(tmp_path):
    path = tmp_path / "s3.env"
    path.write_text("# Ansible managed\nAWS_ACCESS_KEY_ID=abc\nAWS_SECRET_ACCESS_KEY=x=y\n")
    assert runner.read_env_file(str(path)) == {"AWS_ACCESS_KEY_ID": "abc", "AWS_SECRET_ACCESS_KEY": "x=y"}
    assert runner.read_env_file("") == {}


def _sections(path_or_bytes):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else (FIXTURES / path_or_bytes).read_bytes()
    sections = {}
    for name, line in runner.database_sections(data.splitlines(keepends=True)):
        sections.setdefault(name, []).append(line)
    return {k: b"".join(v) for k, v in sections.items()}


def test_sections_of_a_recorded_pg_dumpall():
    # pg_dumpall 17 of a cluster with databases app, shop and 'odd "name"' (and a role).
    sections = _sections("pg_dumpall.sql")
    assert set(sections) == {None, "template1", "app", 'odd "name"', "postgres", "shop"}
    assert b"CREATE ROLE reporter" in sections[None]
    assert b"CREATE DATABASE shop " in sections["shop"] and b"COPY public.orders" in sections["shop"]
    assert b"CREATE DATABASE shop " not in sections["app"]
    assert b'CREATE DATABASE "odd ""name"""' in sections['odd "name"']
    # Each section ends its own restrict block: psql can replay it alone.
    for name in ("app", "shop", 'odd "name"'):
        text = sections[name].decode()
        assert text.count("\\restrict ") == text.count("\\unrestrict ") >= 1


def test_sections_of_a_recorded_dump_of_a_list_of_databases():
    # What postgres_dump_script(["shop", 'odd "name"']) wrote in the same cluster.
    sections = _sections("pg_dump_list.sql")
    assert set(sections) == {None, "shop", 'odd "name"'}
    assert b"CREATE ROLE reporter" in sections[None] and b"CREATE DATABASE" not in sections[None]
    assert b"CREATE DATABASE shop " in sections["shop"] and b"\\connect shop" in sections["shop"]


def test_sections_that_create_something():
    def creating(sections):
        return {name for name, creates in sections.items() if creates}
    # A plain cluster: postgres' and template1's sections are pg_dump's preamble alone.
    with open(FIXTURES / "pg_dumpall.sql", "rb") as dump:
        sections = runner.dump_sections(dump)
    assert set(sections) == {"template1", "app", 'odd "name"', "postgres", "shop"}
    assert creating(sections) == {"app", "shop", 'odd "name"'}
    # The same cluster (pg_dumpall --schema-only) with a table in the postgres database.
    with open(FIXTURES / "pg_dumpall_schema_postgres_table.sql", "rb") as dump:
        assert creating(runner.dump_sections(dump)) == {"app", "postgres"}


def test_copy_data_never_starts_a_section():
    dump = (b'-- Database "a" dump\nCOPY public.t (body) FROM stdin;\n-- Database "b" dump\n\\.\n'
            b'SELECT 1;\n-- Database "c" dump\n')
    assert [name for name, _line in runner.database_sections(dump.splitlines(keepends=True))] == ["a"] * 5 + ["c"]


def test_dump_script_of_all_or_some_databases():
    assert runner.postgres_dump_script([]) == 'exec pg_dumpall --username="${POSTGRES_USER:-postgres}"'
    script = runner.postgres_dump_script(["shop"])
    assert script.startswith("set -e; pg_dumpall --globals-only ")
    assert 'pg_dump --create --username="${POSTGRES_USER:-postgres}" "$db"' in script
    assert "shop" not in script  # the names are arguments, never spliced into the script


def test_counts_of_some_databases():
    counts = {"app.public.a": 1, "shop.public.b": 2, "shopx.public.c": 3}
    assert runner.counts_of(counts, None) == counts
    assert runner.counts_of(counts, ["shop"]) == {"shop.public.b": 2}


def test_copy_env_keeps_urls_out_of_argv_for_new_and_old_restic():
    new = runner.copy_env("copy", False, "/var/backups/r", "sftp:b@h:/r", "/pw")
    assert new == {"RESTIC_REPOSITORY": "sftp:b@h:/r", "RESTIC_FROM_REPOSITORY": "/var/backups/r",
                   "RESTIC_FROM_PASSWORD_FILE": "/pw"}
    assert runner.copy_env("init", False, "/var/backups/r", "sftp:b@h:/r", "/pw") == new
    # restic 0.12: `-r SOURCE copy --repo2 TARGET`, but `-r NEW init --repo2 SOURCE`.
    assert runner.copy_env("copy", True, "/var/backups/r", "sftp:b@h:/r", "/pw") == {
        "RESTIC_REPOSITORY": "/var/backups/r", "RESTIC_REPOSITORY2": "sftp:b@h:/r", "RESTIC_PASSWORD_FILE2": "/pw"}
    assert runner.copy_env("init", True, "/var/backups/r", "sftp:b@h:/r", "/pw") == {
        "RESTIC_REPOSITORY": "sftp:b@h:/r", "RESTIC_REPOSITORY2": "/var/backups/r", "RESTIC_PASSWORD_FILE2": "/pw"}


def test_aof_layout_from_a_recorded_redis_8():
    server = runner.redis_info((FIXTURES / "redis_info_server.txt").read_text())
    config = runner.redis_config_pairs((FIXTURES / "redis_config_append.txt").read_text())
    assert config["appendonly"] == "yes" and config["appenddirname"] == "appendonlydir"
    layout = runner.aof_layout(server, config)
    assert layout == {"dir": "appendonlydir", "file": "appendonly.aof.1.base.rdb",
                      "manifest": "appendonly.aof.manifest",
                      "manifest_text": "file appendonly.aof.1.base.rdb seq 1 type b\n"}
    # appendonly off: the RDB alone is what Redis loads.
    assert runner.aof_layout(server, dict(config, appendonly="no")) is None
    # Before 7.0, one file that starts with the RDB (the preamble), named by appendfilename.
    old = runner.aof_layout({"redis_version": "6.2.14"}, dict(config, appendfilename="data.aof"))
    assert old["dir"] == "" and old["file"] == "data.aof"


@pytest.mark.parametrize("recording", ["restic_forget_prune.txt", "restic_0.14_forget_prune.txt"])
def test_snapshots_removed_by_forget_from_recorded_runs(recording):
    # `forget --json --prune` of restic 0.18 (Debian 13) and 0.14 (Debian 12): the JSON groups on
    # the first line, the text of prune after it; two of the three daily snapshots removed.
    output = (FIXTURES / recording).read_text()
    groups = json.loads(output.splitlines()[0])
    expected = {s["id"] for group in groups for s in group["remove"] or ()}
    assert len(expected) == 2 and all(len(i) == 64 for i in expected)
    assert runner.forgotten_ids(output) == expected
    kept = {s["id"] for group in groups for s in group["keep"]}
    assert not kept & runner.forgotten_ids(output)


def test_nothing_removed_when_forget_says_nothing_parsable():
    assert runner.forgotten_ids("") == set()
    assert runner.forgotten_ids("[0:00] 100.00%  2 / 2 snapshots\n[1, 2]\n") == set()
    assert runner.forgotten_ids('[{"tags": ["composeops"], "keep": [], "remove": null}]\n') == set()


def test_a_repository_is_opened_again_when_its_address_credentials_or_password_change():
    url = "sftp:backup@offsite.example:/srv/restic/web1"
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}
    same = runner.repository_fingerprint(url, dict(reversed(list(env.items()))), "pw\n")
    assert runner.repository_fingerprint(url, env, "pw\n") == same
    assert runner.repository_fingerprint(url + "-2", env, "pw\n") != same
    assert runner.repository_fingerprint(url, dict(env, AWS_SECRET_ACCESS_KEY="other"), "pw\n") != same
    assert runner.repository_fingerprint(url, env, "pw2\n") != same
    assert runner.repository_fingerprint(url, {}, "pw\n") != same
    assert "pw" not in same and len(same) == 64


def test_only_a_repository_on_this_host_is_a_local_path():
    assert runner.local_repository_path("/var/backups/composeops/restic") == "/var/backups/composeops/restic"
    assert runner.local_repository_path("local:/srv/restic") == "/srv/restic"
    assert runner.local_repository_path("sftp:root@dr-target:/srv/restic/dr-lost") is None
    assert runner.local_repository_path("s3:https://s3.example/bucket") is None
    assert runner.local_repository_path("rest:http://backup:8000/") is None
