"""composeops-backup: restic backups of the data of Compose stacks (composeops.platform.backup).

    composeops-backup init                      create the repositories that do not exist yet
    composeops-backup backup SOURCE             back up one source, copy it off-site, forget old ones
    composeops-backup verify SOURCE             test-restore its latest snapshot into a throwaway container
    composeops-backup check                     restic check --read-data-subset of every repository
    composeops-backup restore SOURCE [--snapshot ID] [--database NAME]
                                                restore into the live stack (stops its writers); a
                                                postgres source: every database, or the one named
    composeops-backup snapshots SOURCE          the source's snapshots in the first repository, as JSON
    composeops-backup secrets SOURCE            restore its stack's secrets as its newest backup found them
    ... [--host NAME]                           the snapshots another host made (a rebuilt server)
    ... [--repository NAME]                     read that repository instead of the first one

The settings come from /etc/composeops/backup/config.json (written by the role). Secrets never
appear in a process's arguments: restic reads RESTIC_PASSWORD_FILE, redis-cli REDISCLI_AUTH,
credentials come from 0600 env files. Every run writes its result atomically into node_exporter's
textfile directory; a failed run exits non-zero and leaves earlier snapshots alone.
"""

import argparse
import concurrent.futures
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import traceback

CONFIG = "/etc/composeops/backup/config.json"
# restic tags every snapshot of a source with source=<name>; stdin snapshots hold one file.
DUMP_FILES = {"postgres": "pg_dumpall.sql", "redis": "dump.rdb"}
# The facts of a backup (row counts, key count, the RDB's path), kept beside its snapshot in the
# state directory, also go into the repository, with the stack's generated secrets, as a snapshot of
# both directories tagged facts=<name>: a host rebuilt from the off-site repository alone gets the
# secrets its restored data was made with (database role passwords) and checks its restores.
FACTS_TAG = "facts="
# psql errors a plain pg_dumpall replays harmlessly into an existing cluster.
HARMLESS_PSQL = re.compile(r'ERROR:\s+role "[^"]+" already exists')
# pg_dumpall starts each database with this comment (the name unquoted); a dump of a list of
# databases writes the same before each pg_dump --create. Lines of COPY data are not comments.
DATABASE_MARK = re.compile(rb'^-- Database "(.*)" dump\r?\n?$')
COPY_START = re.compile(rb'^COPY .* FROM stdin;\r?\n?$')
# What pg_dump writes in every database's section, creating nothing.
PREAMBLE = re.compile(rb'^(--.*|SET .*|SELECT pg_catalog\.set_config\(.*|\\(connect|restrict|unrestrict) .*|\s*)$')
# The databases a restore of one database refuses: psql replays the dump connected to postgres,
# and template1 is every new database's template. Restore every database instead.
NOT_ALONE = ("postgres", "template0", "template1")
# The repository lock of this host: one restic run that writes at a time (forget --prune takes
# restic's exclusive lock, and a backup of another source at that moment would fail). Seconds a
# run waits for it.
REPOSITORY_LOCK_WAIT = 4 * 3600
# What restic says when a lock of the repository stands in its way (exit code 11 since 0.17, 1
# before): a stale one, left by a run that was killed, goes with `restic unlock`.
RESTIC_LOCKED = re.compile(r"repository is already locked")


class Failure(Exception):
    """A run that must fail, with the reason for the log and the metric."""


class Locked(Failure):
    """A restic run of ours that a lock of the repository stopped before it changed anything."""


# --- Pure helpers (tests/unit/test_backup_runner.py) --------------------------------------------

def render_metrics(samples, helps):
    """Prometheus text format of [(name, {label: value}, number)], HELP/TYPE once per name."""
    lines, seen = [], set()
    for name, labels, value in samples:
        if name not in seen:
            seen.add(name)
            lines.append("# HELP %s %s" % (name, helps.get(name, name)))
            lines.append("# TYPE %s gauge" % name)
        text = ",".join('%s="%s"' % (k, str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"))
                        for k, v in sorted(labels.items()))
        lines.append("%s{%s} %s" % (name, text, format_number(value)))
    return "\n".join(lines) + "\n"


def format_number(value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and not value.is_integer():
        return "%.3f" % value
    return str(int(value))


def parse_backup_summary(output):
    """The summary message of `restic backup --json` (one JSON object per line)."""
    summary = None
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if message.get("message_type") == "summary":
            summary = message
    if summary is None or not summary.get("snapshot_id"):
        raise Failure("restic printed no snapshot summary")
    return summary


def restic_failure(message, stderr):
    """The exception of a failed restic run: Locked when a lock of the repository stopped it
    (recorded message: tests/unit/fixtures/backup/restic_locked.txt), else Failure."""
    stderr = (stderr or "").strip()
    return (Locked if RESTIC_LOCKED.search(stderr) else Failure)("%s: %s" % (message, stderr[-2000:]))


def after_unlock(action, unlock, say):
    """action(), and once more after unlock() if a lock stopped it (Locked): a second Locked, or
    any other failure, is raised."""
    try:
        return action()
    except Locked as locked:
        say(str(locked))
    unlock()
    return action()


def latest_snapshot(snapshots):
    """The newest of `restic snapshots --json`, or None."""
    return max(snapshots, key=lambda s: s["time"], default=None)


def snapshot_epoch(text):
    """Seconds since the epoch of a restic snapshot's time (RFC 3339 with up to nanoseconds and an
    offset or Z), to the second."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        raise Failure("unexpected snapshot time %r" % text)
    offset = "+00:00" if match.group(2) == "Z" else match.group(2)
    return int(datetime.datetime.fromisoformat(match.group(1) + offset).timestamp())


def recorded_id(snapshot):
    """The id a backup run recorded for snapshot, its sidecar's name: the id in the first repository.
    restic copy gives a copied snapshot a new id and keeps the first one as `original`."""
    return snapshot.get("original") or snapshot["id"]


def forgotten_ids(output):
    """The ids of the snapshots `restic forget --json` removed, from its output (the JSON groups on
    the first line, then the text of --prune). Nothing parsable: none, so no sidecar is lost for a
    snapshot that may still be there."""
    groups = []
    for line in output.splitlines():
        # Progress lines of prune start with "[0:00]" too.
        if line.startswith("["):
            try:
                groups = json.loads(line)
                break
            except ValueError:
                continue
    return {snapshot["id"] for group in groups if isinstance(group, dict)
            for snapshot in group.get("remove") or () if isinstance(snapshot, dict) and "id" in snapshot}


def facts_for(facts_snapshots, snapshot):
    """The facts snapshot of the run that made snapshot: the first taken at or after it (a run stores
    its facts right after its dump; a later one may lack the sidecar, e.g. on a recovered host), or
    None."""
    made = snapshot_epoch(snapshot["time"])
    after = [f for f in facts_snapshots if snapshot_epoch(f["time"]) >= made]
    return min(after, key=lambda f: snapshot_epoch(f["time"])) if after else None


def facts_path(facts_snapshot, snapshot_id):
    """Where the facts of the stdin snapshot snapshot_id are in a facts snapshot (a snapshot of a
    source's directory of sidecars, FACTS_TAG): the sidecar <first 8 of the id>.json in its path."""
    return facts_snapshot["paths"][0].rstrip("/") + "/" + snapshot_id[:8] + ".json"


def compare_counts(recorded, restored):
    """The differences between {table: rows} at dump time and after a restore, as text."""
    problems = []
    for table in sorted(set(recorded) | set(restored)):
        if recorded.get(table) != restored.get(table):
            problems.append("%s: %s rows at dump time, %s restored"
                            % (table, recorded.get(table, "no"), restored.get(table, "no")))
    return problems


def parse_counts(text):
    """`db|schema.table|rows` lines (count_rows_sql) into {"db.schema.table": rows}."""
    counts = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[2].isdigit():
            counts["%s.%s" % (parts[0], parts[1])] = int(parts[2])
    return counts


def database_sections(lines):
    """(database, line) for each line of a pg_dumpall script (bytes): database is None for the
    globals before the first database. COPY data lines are never taken for a section start."""
    current, copying = None, False
    for line in lines:
        if copying:
            copying = line.rstrip(b"\r\n") != b"\\."
        else:
            mark = DATABASE_MARK.match(line)
            if mark:
                current = mark.group(1).decode("utf-8", "replace")
            elif COPY_START.match(line):
                copying = True
        yield current, line


def postgres_dump_script(databases):
    """The shell script (run inside the database container) that writes the dump: pg_dumpall, or
    for a list of databases (its positional arguments) the globals and each database with its
    CREATE DATABASE, marked as pg_dumpall marks them, so that one restore path reads both."""
    user = '--username="${POSTGRES_USER:-postgres}"'
    if not databases:
        return "exec pg_dumpall " + user
    return ("set -e; pg_dumpall --globals-only %s; for db do "
            "printf '\\n--\\n-- Database \"%%s\" dump\\n--\\n\\n' \"$db\"; pg_dump --create %s \"$db\"; done"
            % (user, user))


def dump_sections(lines):
    """{database: whether its section creates something} of a pg_dumpall script (bytes lines), in
    one pass: a section that holds more than the preamble pg_dump writes for every database
    (comments, SET, \\connect, \\restrict) creates something when replayed. The sections of
    postgres and template1 hold just the preamble unless someone put tables there."""
    sections = {}
    for name, line in database_sections(lines):
        if name is not None:
            sections[name] = sections.get(name, False) or not PREAMBLE.match(line)
    return sections


def counts_of(counts, databases):
    """The {db.schema.table: rows} of the given databases only (all when None)."""
    if databases is None:
        return dict(counts)
    return {k: v for k, v in counts.items() if any(k.startswith(d + ".") for d in databases)}


def copy_env(command, legacy, primary_url, target_url, password_file):
    """The environment of `restic init --copy-chunker-params` (command init) and `restic copy`
    (command copy) from the first repository into target; no URL goes into argv (a rest: URL may
    carry a password). restic 0.14 and later: RESTIC_REPOSITORY is the target, RESTIC_FROM_* the
    source. restic 0.12 and 0.13 (Ubuntu 22.04): RESTIC_REPOSITORY2 (--repo2) is the other
    repository, the target of a copy but the source of an init."""
    if not legacy:
        return {"RESTIC_REPOSITORY": target_url, "RESTIC_FROM_REPOSITORY": primary_url,
                "RESTIC_FROM_PASSWORD_FILE": password_file}
    source, other = (primary_url, target_url) if command == "copy" else (target_url, primary_url)
    return {"RESTIC_REPOSITORY": source, "RESTIC_REPOSITORY2": other, "RESTIC_PASSWORD_FILE2": password_file}


def redis_info(text):
    """`INFO persistence` (or `INFO server`) into a dict."""
    return dict(line.split(":", 1) for line in text.replace("\r", "").splitlines() if ":" in line)


def redis_config_pairs(text):
    """`redis-cli CONFIG GET pattern` (a name line, then its value line) into a dict."""
    lines = text.replace("\r", "").splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def aof_layout(server_info, config):
    """Where a restored RDB must also go so that Redis, restarting with appendonly on, loads it.

    With appendonly on, Redis reads only its append-only file at start: an RDB alone would give an
    empty server. From 7.0 that is a directory whose manifest names a base file, which may be an
    RDB; before 7.0 one file, which may start with an RDB (the preamble). None with appendonly off.
    """
    if config.get("appendonly") != "yes":
        return None
    name = config.get("appendfilename") or "appendonly.aof"
    if int(server_info.get("redis_version", "0").split(".")[0]) >= 7:
        base = name + ".1.base.rdb"
        return {"dir": config.get("appenddirname") or "appendonlydir", "file": base,
                "manifest": name + ".manifest", "manifest_text": "file %s seq 1 type b\n" % base}
    return {"dir": "", "file": name, "manifest": "", "manifest_text": ""}


def sftp_command(url, key, known_hosts):
    """restic's -o sftp.command for sftp:user@host:/path, with the role's key and known_hosts."""
    match = re.match(r"^sftp:(?://)?([^/:]+)(?::(\d+))?[:/]", url)
    if not match:
        raise Failure("cannot read the host of %s" % url)
    port = ["-p", match.group(2)] if match.group(2) else []
    return " ".join(["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
                     "-o", "UserKnownHostsFile=" + known_hosts] + port + [match.group(1), "-s", "sftp"])


def repository_fingerprint(url, env, password):
    """What a repository was last opened with: its address, its credentials and the password. init
    skips the repositories whose fingerprint is unchanged since they were opened or created."""
    material = json.dumps([url, sorted((env or {}).items()), password], separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def local_repository_path(url):
    """The directory of a repository on this host (a path, or local:PATH), else None."""
    path = url[len("local:"):] if url.startswith("local:") else url
    return path if path.startswith("/") else None


def read_env_file(path):
    env = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if "=" in line and not line.lstrip().startswith("#"):
                    key, value = line.rstrip("\n").split("=", 1)
                    env[key.strip()] = value
    return env


# --- The host -----------------------------------------------------------------------------------

class Runner:
    def __init__(self, config):
        self.config = config
        self.state = config["state_dir"]
        self.repos = config["repositories"]
        # Where snapshots are read from (restore, snapshots, secrets, the test restores): the first
        # repository unless --repository names another (a rebuilt host whose local one is empty).
        self.source_repo = self.repos[0]
        self.sources = {s["name"]: s for s in config["sources"]}
        # Every snapshot is recorded under the inventory's name of the host, not the container's or
        # machine's hostname: a rebuilt server (another hostname) finds its snapshots, and hosts that
        # share a repository never forget each other's.
        self.host = config.get("host") or socket.gethostname()

    # restic and docker

    def restic_env(self, repo, extra=None):
        env = dict(os.environ, RESTIC_REPOSITORY=repo["url"], RESTIC_PASSWORD_FILE=self.config["password_file"],
                   RESTIC_CACHE_DIR=os.path.join(self.state, "cache"))
        env.update(read_env_file(repo.get("env_file")))
        env.update(extra or {})
        return env

    def restic_options(self, repo):
        if repo["type"] != "sftp":
            return []
        known_hosts = os.path.join(self.state, "known_hosts")
        return ["-o", "sftp.command=" + sftp_command(repo["url"], self.config["ssh_key"], known_hosts)]

    def restic(self, repo, args, check=True, extra_env=None, source=None, **kwargs):
        """restic args on repo; source: the other repository of a copy or an init from another one
        (restic takes one sftp.command: that of whichever of the two is sftp)."""
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        options = self.restic_options(repo) or (self.restic_options(source) if source else [])
        result = subprocess.run(["restic"] + options + args, env=self.restic_env(repo, extra_env),
                                text=True, check=False, **kwargs)
        if check and result.returncode != 0:
            raise restic_failure("restic %s (%s) failed" % (args[0], repo["name"]), result.stderr)
        return result

    def pipe(self, producer, consumer, producer_env, consumer_env, cwd):
        """producer's output into consumer's input: (producer's exit code, its stderr, consumer's result)."""
        with subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=producer_env, cwd=cwd) as first:
            result = subprocess.run(consumer, stdin=first.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, check=False, env=consumer_env, cwd=cwd)
            first.stdout.close()
            error = first.stderr.read().decode(errors="replace")
            first.wait()
        return first.returncode, error, result

    def compose(self, source, args):
        return ["docker", "compose", "--project-directory", source["project_dir"]] + args

    def run(self, argv, check=True, **kwargs):
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        result = subprocess.run(argv, text=True, check=False, **kwargs)
        if check and result.returncode != 0:
            error = (result.stderr or "").strip()[-2000:]
            raise Failure("%s failed (exit %d): %s" % (" ".join(argv[:6]), result.returncode, error))
        return result

    def container(self, source):
        out = self.run(self.compose(source, ["ps", "--quiet", source["service"]]), cwd=source["project_dir"]).stdout
        ids = out.split()
        if not ids:
            raise Failure("service %s of stack %s is not running" % (source["service"], source["stack"]))
        return ids[0]

    def exec_argv(self, source, argv, env_names=()):
        extra = [x for name in env_names for x in ("-e", name)]
        return self.compose(source, ["exec", "-T"] + extra + [source["service"]] + argv)

    def redis_env(self, source):
        env = dict(os.environ)
        if source.get("password_secret"):
            with open(os.path.join(source["secrets_dir"], source["password_secret"]), encoding="utf-8") as handle:
                env["REDISCLI_AUTH"] = handle.read().strip()
        return env

    def redis_cli(self, source, *args):
        return self.run(self.exec_argv(source, ["redis-cli"] + list(args), ["REDISCLI_AUTH"]),
                        env=self.redis_env(source), cwd=source["project_dir"]).stdout.strip()

    # state kept between runs

    def sidecar(self, source, snapshot_id):
        return os.path.join(self.state, "snapshots", source["name"], snapshot_id + ".json")

    def write_json(self, path, data):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def read_json(self, path, default=None):
        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return default

    def write_metrics(self, name, samples):
        directory = self.config["textfile_dir"]
        os.makedirs(directory, mode=0o755, exist_ok=True)
        # Not *.prom: node_exporter's textfile collector reads every such file, dotfiles too, and
        # would see a half-written one.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".composeops_%s." % name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(render_metrics(samples, HELPS))
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, "composeops_%s.prom" % name))

    @contextlib.contextmanager
    def lock(self, name, wait=0):
        """An exclusive lock of this host: a second run of the same source fails at once (the
        overlap guard); wait > 0 waits that many seconds for it instead (the repository lock)."""
        path = os.path.join(self.state, "locks", name + ".lock")
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        deadline, said = time.time() + wait, False
        with open(path, "w", encoding="utf-8") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.time() >= deadline:
                        raise Failure("%s is running already (lock %s): not started twice" % (name, path)) from None
                    if not said:
                        print("waiting for %s (another run of this host holds %s)" % (name, path), file=sys.stderr)
                        said = True
                    time.sleep(1)
            yield

    def repositories_lock(self):
        # Source names match [a-z0-9][a-z0-9_-]*: "_" keeps this lock apart from theirs.
        return self.lock("_repositories", wait=REPOSITORY_LOCK_WAIT)

    def copy_env(self, command, repo, source=None):
        """The environment of a copy or init --copy-chunker-params from source (the first
        repository unless given) into repo."""
        source = source or self.repos[0]
        env = read_env_file(source.get("env_file"))
        env.update(read_env_file(repo.get("env_file")))
        env.update(copy_env(command, self.config.get("restic_copy_legacy", False), source["url"], repo["url"],
                            self.config["password_file"]))
        return env

    def opened_repositories_path(self):
        return os.path.join(self.state, "repositories.json")

    # commands

    def init(self):
        # Each `restic cat config` derives the key (about 0.4 s of CPU): a repository opened before
        # with the same address, credentials and password (repositories.json, root-only like the
        # password beside it) is not asked again on every converge, unless it is a directory of this
        # host that has lost its config. An off-site repository lost since then fails the next
        # backup, which the metrics report and which drops repositories.json: the converge after it
        # asks restic about every repository again (and creates the missing ones).
        opened_path = self.opened_repositories_path()
        opened = self.read_json(opened_path, {})
        with open(self.config["password_file"], encoding="utf-8") as handle:
            password = handle.read()
        fingerprints = {repo["name"]: repository_fingerprint(repo["url"], read_env_file(repo.get("env_file")), password)
                        for repo in self.repos}
        ready, missing = [], []
        for repo in self.repos:
            local = local_repository_path(repo["url"])
            if opened.get(repo["name"]) == fingerprints[repo["name"]] and (
                    local is None or os.path.exists(os.path.join(local, "config"))):
                ready.append(repo)
                continue
            found = self.restic(repo, ["cat", "config"], check=False)
            if found.returncode == 0:
                ready.append(repo)
                continue
            if "wrong password" in found.stderr:
                raise Failure("the password of %s (%s) does not open repository %s: give the one it was made "
                              "with (backup_password, from escrow)" % (self.host, self.config["password_file"],
                                                                       repo["name"]))
            missing.append(repo)
        for repo in missing:
            # A new repository shares the chunker of one that exists (the first; on a recovered
            # host, the off-site one), so that copies between them deduplicate.
            base = ready[0] if ready else None
            self.restic(repo, ["init"] + (["--copy-chunker-params"] if base else []),
                        extra_env=self.copy_env("init", repo, base) if base else None, source=base)
            ready.append(repo)
        if opened != fingerprints:
            self.write_json(opened_path, fingerprints)
        print(json.dumps({"created": [r["name"] for r in missing]}))

    def dump_command(self, source, facts):
        if source["type"] == "postgres":
            databases = source.get("databases") or []
            return self.exec_argv(source, ["sh", "-c", postgres_dump_script(databases), "sh"] + databases)
        facts.update(self.redis_save(source))
        return self.exec_argv(source, ["cat", facts["rdb"]])

    def postgres_sql(self, source, database, sql, stdin=None):
        argv = self.exec_argv(source, ["sh", "-c", 'exec psql -X -q -A -t -v ON_ERROR_STOP=1 '
                                       '--username="${POSTGRES_USER:-postgres}" --dbname="$1" -c "$2"',
                                       "psql", database, sql])
        return self.run(argv, cwd=source["project_dir"], input=stdin).stdout

    def postgres_counts(self, source, runner=None, only=None):
        """{db.schema.table: rows} of every table of every database, or of the databases in only
        (exact count(*))."""
        runner = runner or self.postgres_sql
        databases = runner(source, "postgres", "SELECT datname FROM pg_database WHERE datallowconn "
                                               "AND NOT datistemplate ORDER BY 1").splitlines()
        counts = {}
        for database in databases:
            if only is not None and database not in only:
                continue
            tables = [t for t in runner(source, database, COUNT_TABLES_SQL).splitlines() if t.strip()]
            if not tables:
                continue
            sql = " UNION ALL ".join("SELECT '%s|%s|' || count(*) FROM %s"
                                     % (database.replace("'", "''"), t.replace("'", "''"), quote_table(t))
                                     for t in tables)
            counts.update(parse_counts(runner(source, database, sql)))
        return counts

    def redis_save(self, source):
        before = self.redis_cli(source, "LASTSAVE")
        # LASTSAVE counts seconds: a save in the same second as the last one would not show.
        while int(time.time()) <= int(before or 0):
            time.sleep(0.2)
        keys = int(self.redis_cli(source, "DBSIZE") or 0)
        self.redis_cli(source, "BGSAVE")
        deadline = time.time() + 3600
        while time.time() < deadline:
            time.sleep(1)
            info = redis_info(self.redis_cli(source, "INFO", "persistence"))
            if self.redis_cli(source, "LASTSAVE") != before and info.get("rdb_bgsave_in_progress") == "0":
                if info.get("rdb_last_bgsave_status") != "ok":
                    raise Failure("redis BGSAVE failed (rdb_last_bgsave_status %s)" % info.get("rdb_last_bgsave_status"))
                break
        else:
            raise Failure("redis BGSAVE did not finish within an hour")
        directory = self.redis_config(source, "dir") or "/data"
        filename = self.redis_config(source, "dbfilename") or "dump.rdb"
        return {"keys": keys, "rdb": directory.rstrip("/") + "/" + filename, "aof": self.redis_config(source, "appendonly")}

    def redis_config(self, source, key):
        return redis_config_pairs(self.redis_cli(source, "CONFIG", "GET", key)).get(key, "")

    def backup_stdin(self, source, primary, command, filename, tags):
        args = ["backup", "--json", "--stdin-filename", filename] + tags
        if self.config["stdin_from_command"]:
            extra = self.redis_env(source) if source["type"] == "redis" else None
            result = subprocess.run(["restic"] + self.restic_options(primary) + args + ["--stdin-from-command", "--"]
                                    + command, env=self.restic_env(primary, extra),
                                    cwd=source["project_dir"], text=True, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, check=False)
            if result.returncode != 0:
                raise restic_failure("the dump of %s failed, no snapshot recorded" % source["name"], result.stderr)
            return parse_backup_summary(result.stdout)
        # Older restic: a pipe. restic records whatever arrived; a failed dump forgets it again.
        env = self.redis_env(source) if source["type"] == "redis" else None
        code, dump_error, result = self.pipe(command, ["restic"] + self.restic_options(primary) + args + ["--stdin"],
                                             env, self.restic_env(primary), source["project_dir"])
        failure = restic_failure("restic backup (%s) failed" % primary["name"], result.stderr)
        if result.returncode != 0 and isinstance(failure, Locked):
            # restic stopped first and the dump broke on the closed pipe: the lock is the cause.
            raise failure
        if code != 0:
            if result.returncode == 0:
                snapshot = parse_backup_summary(result.stdout)["snapshot_id"]
                try:
                    self.unlocked(primary, lambda: self.restic(primary, ["forget", snapshot]))
                except Failure as exc:
                    # Never Locked from here: the caller must not dump again over a partial snapshot.
                    raise Failure("the dump of %s failed (exit %d) and its partial snapshot %s is still in "
                                  "repository %s: %s" % (source["name"], code, snapshot[:8], primary["name"], exc))
            raise Failure("the dump of %s failed (exit %d), no snapshot kept: %s"
                          % (source["name"], code, dump_error.strip()[-2000:]))
        if result.returncode != 0:
            raise failure
        return parse_backup_summary(result.stdout)

    def volume_mountpoint(self, source):
        out = self.run(["docker", "volume", "ls", "--quiet",
                        "--filter", "label=com.docker.compose.project=" + source["stack"],
                        "--filter", "label=com.docker.compose.volume=" + source["volume"]]).stdout.split()
        if not out:
            raise Failure("volume %s of stack %s not found" % (source["volume"], source["stack"]))
        return self.run(["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", out[0]]).stdout.strip()

    def backup(self, name):
        source = self.source(name)
        started = time.time()
        previous = self.read_json(os.path.join(self.state, "status", name + ".json"), {})
        results = {}
        try:
            with self.lock("source-" + name), self.repositories_lock():
                resumed = []
                try:
                    # Inside: post_commands run after a failed pre-command too (a writer paused by
                    # the first one must not stay paused).
                    self.commands(source, "pre_commands")
                    primary = self.repos[0]
                    tags = ["--host", self.host, "--tag", "composeops", "--tag", "source=" + name]
                    facts = {"type": source["type"], "stack": source["stack"], "service": source["service"]}
                    if source["type"] in DUMP_FILES:
                        # Built once: for Redis it runs BGSAVE, which a retry after unlock must not repeat.
                        command = self.dump_command(source, facts)
                        with concurrent.futures.ThreadPoolExecutor(1) as pool:
                            # Postgres: the row counts the test restores compare with, taken while
                            # the dump runs (the run takes the longer of the two, not their sum).
                            # Writes between the counts and each database's dump snapshot make them
                            # differ: pause the writers with pre_commands for exact counts.
                            counts = (pool.submit(self.postgres_counts, source, only=source.get("databases") or None)
                                      if source["type"] == "postgres" else None)
                            summary = self.unlocked(primary, lambda: self.backup_stdin(
                                source, primary, command, DUMP_FILES[source["type"]], tags))
                            if counts:
                                facts["counts"] = counts.result()
                    else:
                        paths = [self.volume_mountpoint(source)] if source["type"] == "volume" else source["paths"]
                        summary = parse_backup_summary(self.unlocked(primary, lambda: self.restic(
                            primary, ["backup", "--json"] + tags + paths)).stdout)
                    # The data is read: the writers resume now, not after the facts and the copies.
                    resumed.append(True)
                    self.commands(source, "post_commands")
                    snapshot = summary["snapshot_id"]
                    facts.update(snapshot=snapshot, time=started)
                    self.write_json(self.sidecar(source, snapshot[:8]), facts)
                    copied = [snapshot, self.store_facts(primary, source)]
                    # The facts of snapshots that retention removed go with them; the next facts
                    # snapshot is taken without them.
                    for forgotten in self.forget(primary, source):
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.sidecar(source, forgotten[:8]))
                    results[primary["name"]] = summary
                    for repo in self.repos[1:]:
                        self.unlocked(repo, lambda repo=repo: self.restic(
                            repo, ["copy"] + copied, extra_env=self.copy_env("copy", repo), source=primary))
                        self.forget(repo, source)
                        results[repo["name"]] = summary
                finally:
                    if not resumed:
                        self.commands(source, "post_commands")
        except Exception as exc:  # pylint: disable=broad-except
            # Whatever failed (a missing secret file, a full disk), the metric says so, and the next
            # converge opens every repository again (init), in case one of them is gone.
            self.backup_metrics(source, started, previous, results, error=str(exc) or repr(exc))
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.opened_repositories_path())
            raise
        self.backup_metrics(source, started, previous, results)
        print(json.dumps({"source": name, "snapshot": summary["snapshot_id"][:8],
                          "bytes": summary.get("total_bytes_processed", 0),
                          "dump_seconds": round(summary.get("total_duration", 0), 3),
                          "seconds": round(time.time() - started, 3)}))

    def store_facts(self, repo, source):
        """The source's directory of sidecars and its stack's secrets as a snapshot tagged
        facts=<name>; its id."""
        paths = [os.path.dirname(self.sidecar(source, "-"))]
        if os.path.isdir(source["secrets_dir"]):
            paths.append(source["secrets_dir"])
        result = self.unlocked(repo, lambda: self.restic(repo, [
            "backup", "--json", "--host", self.host, "--tag", "composeops", "--tag", FACTS_TAG + source["name"]]
            + paths))
        return parse_backup_summary(result.stdout)["snapshot_id"]

    def facts_snapshots(self, source, host=None):
        return json.loads(self.restic(self.source_repo, ["snapshots", "--json", "--host", host or self.host,
                                                         "--tag", FACTS_TAG + source["name"]]).stdout or "[]")

    def secrets(self, name, host=None):
        """The stack's secrets as the newest backup of the source found them (a host rebuilt from
        the repository: before its stack is deployed, so that the restored data and the services
        share their passwords); files that the snapshot lacks are left alone."""
        source = self.source(name)
        facts = latest_snapshot(self.facts_snapshots(source, host))
        if facts is None:
            raise Failure("no facts snapshot of %s from host %s (backups made before the runner stored them?)"
                          % (name, host or self.host))
        if source["secrets_dir"] not in facts["paths"]:
            # A stack without secrets (compose_stack makes no directory for it).
            print(json.dumps({"source": name, "snapshot": facts["id"][:8], "secrets_dir": None}))
            return
        self.restic(self.source_repo, ["restore", facts["id"], "--target", "/", "--include", source["secrets_dir"]])
        print(json.dumps({"source": name, "snapshot": facts["id"][:8], "secrets_dir": source["secrets_dir"]}))

    def recorded(self, source, snapshot, host=None):
        """What the backup run recorded of snapshot: its sidecar on this host or, on a host rebuilt
        from the repository, the one in the facts snapshot of its run; {} when neither has it."""
        local = self.read_json(self.sidecar(source, recorded_id(snapshot)[:8]))
        if local is not None:
            return local
        facts = facts_for(self.facts_snapshots(source, host), snapshot)
        if facts is None:
            return {}
        result = self.restic(self.source_repo, ["dump", facts["id"], facts_path(facts, recorded_id(snapshot))],
                             check=False)
        if result.returncode != 0:
            if "not found" in result.stderr:
                return {}
            raise restic_failure("restic dump of the facts of snapshot %s failed" % snapshot["id"][:8], result.stderr)
        try:
            return json.loads(result.stdout)
        except ValueError:
            return {}

    def unlocked(self, repo, action):
        """action(), run once more after `restic unlock` if a lock stopped it. Not up front: every
        restic run opens the repository's key (scrypt, about half a second of CPU), and a stale lock
        is rare (a killed run); unlock leaves the locks of live runs alone."""
        def say(why):
            print("a lock of repository %s stood in the way (%s): removing stale locks, once more"
                  % (repo["name"], why.splitlines()[0]), file=sys.stderr)
        return after_unlock(action, lambda: self.restic(repo, ["unlock"]), say)

    def forget(self, repo, source):
        """Retention of the source in repo; the ids of the snapshots removed."""
        keep = source["retention"]
        # Two --tag: either (the source's snapshots and its facts snapshots, each their own group).
        args = ["forget", "--prune", "--json", "--host", self.host, "--tag", "source=" + source["name"],
                "--tag", FACTS_TAG + source["name"], "--group-by", "host,tags",
                "--keep-daily", str(keep["keep_daily"]), "--keep-weekly", str(keep["keep_weekly"]),
                "--keep-monthly", str(keep["keep_monthly"])]
        return forgotten_ids(self.unlocked(repo, lambda: self.restic(repo, args)).stdout)

    def commands(self, source, key):
        for argv in source.get(key) or []:
            self.run(argv, cwd=source["project_dir"])

    def backup_metrics(self, source, started, previous, results, error=None):
        now = time.time()
        status = {}
        samples = []
        for repo in self.repos:
            labels = {"source": source["name"], "repository": repo["name"]}
            ok = repo["name"] in results
            last = previous.get(repo["name"], {})
            if ok:
                last = {"success": now, "size": results[repo["name"]].get("total_bytes_processed", 0)}
            status[repo["name"]] = last
            samples += [("composeops_backup_last_run_timestamp_seconds", labels, now),
                        ("composeops_backup_last_status", labels, ok),
                        ("composeops_backup_duration_seconds", labels, now - started)]
            if last:
                samples += [("composeops_backup_last_success_timestamp_seconds", labels, last["success"]),
                            ("composeops_backup_size_bytes", labels, last["size"])]
        self.write_json(os.path.join(self.state, "status", source["name"] + ".json"), status)
        self.write_metrics("backup_" + source["name"], sorted(samples, key=lambda s: s[0]))
        if error:
            print("backup of %s failed: %s" % (source["name"], error), file=sys.stderr)

    def source(self, name):
        if name not in self.sources:
            raise Failure("no source %s (sources: %s)" % (name, ", ".join(self.sources) or "none"))
        return self.sources[name]

    def list_snapshots(self, source, host=None):
        return json.loads(self.restic(self.source_repo, ["snapshots", "--json", "--host", host or self.host,
                                                         "--tag", "source=" + source["name"]]).stdout or "[]")

    def snapshot_of(self, source, snapshot="latest", host=None):
        found = self.list_snapshots(source, host)
        if snapshot != "latest":
            found = [s for s in found if s["id"].startswith(snapshot) or s.get("short_id") == snapshot]
        chosen = latest_snapshot(found)
        if chosen is None:
            raise Failure("no snapshot %s of %s from host %s" % (snapshot, source["name"], host or self.host))
        return chosen

    def snapshots(self, name, host=None):
        found = self.list_snapshots(self.source(name), host)
        print(json.dumps([{"id": s["id"][:8], "time": s["time"], "host": s.get("hostname", ""), "paths": s["paths"]}
                          for s in found]))

    def dump_argv(self, snapshot, source):
        """restic dump of a stdin snapshot's file (from the repository read) to stdout."""
        return (["restic"] + self.restic_options(self.source_repo)
                + ["dump", snapshot["id"], "/" + DUMP_FILES[source["type"]]])

    def dump_to(self, snapshot, source, argv, env=None):
        """restic dump of a stdin snapshot's file into argv's stdin; argv's output."""
        code, error, result = self.pipe(self.dump_argv(snapshot, source), argv, self.restic_env(self.source_repo),
                                        env, source["project_dir"])
        if code != 0:
            raise Failure("restic dump failed: " + error.strip()[-2000:])
        return result

    @contextlib.contextmanager
    def staged(self, snapshot, source):
        """The dump file of a stdin snapshot, restored into a 0600 file of the state directory and
        complete (restic dump exited 0) before a restore touches any live data; removed after."""
        directory = os.path.join(self.state, "restore")
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, path = tempfile.mkstemp(dir=directory, prefix=source["name"] + ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                result = subprocess.run(self.dump_argv(snapshot, source), stdout=handle, stderr=subprocess.PIPE,
                                        env=self.restic_env(self.source_repo), check=False)
            if result.returncode != 0:
                raise Failure("restic dump of snapshot %s failed, the live data was not touched: %s"
                              % (snapshot["id"][:8], result.stderr.decode(errors="replace").strip()[-2000:]))
            yield path
        finally:
            os.unlink(path)

    # verification: a throwaway container of the same image

    def verify(self, name):
        source = self.source(name)
        started = time.time()
        labels = {"source": name, "repository": self.source_repo["name"]}
        ok, detail = False, ""
        try:
            with self.lock("verify-" + name), self.repositories_lock():
                snapshot = self.snapshot_of(source)
                recorded = self.recorded(source, snapshot)
                image = self.run(["docker", "inspect", "--format", "{{.Image}}", self.container(source)]).stdout.strip()
                if source["type"] == "postgres":
                    detail = self.verify_postgres(source, snapshot, image, recorded)
                else:
                    detail = self.verify_redis(source, snapshot, image, recorded)
                ok = True
        except Exception as exc:  # pylint: disable=broad-except
            detail = str(exc) or repr(exc)
        previous = self.read_json(os.path.join(self.state, "status", "verify-" + name + ".json"), {})
        success = time.time() if ok else previous.get("success", 0)
        self.write_json(os.path.join(self.state, "status", "verify-" + name + ".json"), {"success": success, "detail": detail})
        samples = [("composeops_backup_verify_last_run_timestamp_seconds", labels, time.time()),
                   ("composeops_backup_verify_last_status", labels, ok),
                   ("composeops_backup_verify_duration_seconds", labels, time.time() - started)]
        if success:
            samples.append(("composeops_backup_verify_last_success_timestamp_seconds", labels, success))
        self.write_metrics("backup_verify_" + name, samples)
        print(json.dumps({"source": name, "ok": ok, "detail": detail}))
        if not ok:
            raise Failure("verification of %s failed: %s" % (name, detail))

    @contextlib.contextmanager
    def throwaway(self, source, image, options, env, command=()):
        """A container of image without network, removed afterwards; env's values never in argv."""
        name = "composeops-verify-%s-%s" % (source["name"], secrets.token_hex(4))
        self.run(["docker", "run", "--detach", "--rm", "--name", name, "--network", "none",
                  "--label", "org.composeops.backup.verify=" + source["name"]]
                 + [x for key in env for x in ("-e", key)] + options + [image] + list(command),
                 env=dict(os.environ, **env))
        try:
            yield name
        finally:
            self.run(["docker", "rm", "--force", "--volumes", name], check=False)

    def wait_for(self, argv, what, seconds=120):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.run(argv, check=False).returncode == 0:
                return
            time.sleep(1)
        raise Failure("%s did not come up within %d s" % (what, seconds))

    def verify_postgres(self, source, snapshot, image, recorded):
        user = self.container_env(source).get("POSTGRES_USER", "postgres")
        # POSTGRES_DB postgres: the image creates no database of its own, the dump creates them all.
        env = {"POSTGRES_USER": user, "POSTGRES_DB": "postgres", "POSTGRES_PASSWORD": secrets.token_urlsafe(24)}
        with self.throwaway(source, image, [], env) as name:
            self.wait_for(["docker", "exec", name, "pg_isready", "-q", "-h", "127.0.0.1", "-U", user], "the throwaway postgres")
            result = self.dump_to(snapshot, source, ["docker", "exec", "-i", name, "psql", "-X", "-q", "-U", user,
                                                     "-d", "postgres"])
            self.check_psql(result)

            def in_throwaway(_source, database, sql):
                return self.run(["docker", "exec", name, "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                 "-U", user, "-d", database, "-c", sql]).stdout
            restored = self.postgres_counts(source, in_throwaway)
        problems = compare_counts(recorded.get("counts", {}), restored) if "counts" in recorded else []
        if problems:
            raise Failure("restored row counts differ: " + "; ".join(problems[:10]))
        return "snapshot %s restored: %d tables, %d rows%s" % (
            snapshot["id"][:8], len(restored), sum(restored.values()),
            "" if "counts" in recorded else " (no counts recorded at dump time)")

    def check_psql(self, result):
        errors = [line for line in result.stderr.splitlines() if "ERROR:" in line and not HARMLESS_PSQL.search(line)]
        if result.returncode != 0 or errors:
            raise Failure("psql could not load the dump: " + "; ".join(errors[:5] or [result.stderr.strip()[-500:]]))

    def container_env(self, source):
        out = self.run(["docker", "inspect", "--format", "{{json .Config.Env}}", self.container(source)]).stdout
        return dict(item.split("=", 1) for item in json.loads(out) if "=" in item)

    def verify_redis(self, source, snapshot, image, recorded):
        # The redis image's own entrypoint would start a server on /data at once: a plain
        # container instead, fed the RDB, then redis-server on it.
        with self.throwaway(source, image, ["--user", "0", "--entrypoint", "sleep"], {}, ["3600"]) as name:
            result = self.dump_to(snapshot, source, ["docker", "exec", "-i", name, "sh", "-c",
                                                     "mkdir -p /tmp/verify && cat > /tmp/verify/dump.rdb"])
            if result.returncode != 0:
                raise Failure("could not copy the RDB: " + result.stderr.strip())
            self.run(["docker", "exec", name, "redis-server", "--port", "6399", "--dir", "/tmp/verify",
                      "--daemonize", "yes", "--save", "", "--appendonly", "no"])
            self.wait_for(["docker", "exec", name, "sh", "-c",
                           "redis-cli -p 6399 INFO persistence | grep -q '^loading:0'"], "the throwaway redis")
            keys = int(self.run(["docker", "exec", name, "redis-cli", "-p", "6399", "DBSIZE"]).stdout.strip() or 0)
        if "keys" in recorded and keys != recorded["keys"]:
            raise Failure("the RDB holds %d keys, %d at dump time" % (keys, recorded["keys"]))
        return "snapshot %s restored: %d keys" % (snapshot["id"][:8], keys)

    # restic check

    def check(self):
        samples, failed = [], []
        with self.lock("_check"), self.repositories_lock():
            for repo in self.repos:
                labels = {"repository": repo["name"]}
                self.restic(repo, ["unlock"], check=False)
                result = self.restic(repo, ["check", "--read-data-subset", self.config["check_read_data_subset"]], check=False)
                if result.returncode != 0:
                    failed.append("%s: %s" % (repo["name"], result.stderr.strip()[-500:]))
                samples += [("composeops_backup_check_last_run_timestamp_seconds", labels, time.time()),
                            ("composeops_backup_check_last_status", labels, result.returncode == 0)]
        self.write_metrics("backup_check", sorted(samples, key=lambda s: s[0]))
        if failed:
            raise Failure("restic check failed: " + "; ".join(failed))
        print(json.dumps({"checked": [r["name"] for r in self.repos]}))

    # restore into the live stack

    def restore(self, name, snapshot_id, database=None, host=None):
        source = self.source(name)
        if database and source["type"] != "postgres":
            raise Failure("--database is for a postgres source; %s is of type %s" % (name, source["type"]))
        if database in NOT_ALONE:
            raise Failure("database %s cannot be restored alone (psql replays the dump connected to postgres, "
                          "template1 is the template of new databases): restore every database instead" % database)
        with self.lock("source-" + name), self.repositories_lock():
            snapshot = self.snapshot_of(source, snapshot_id, host)
            recorded = self.recorded(source, snapshot, host)
            running = self.run(self.compose(source, ["ps", "--services", "--status", "running"]),
                               cwd=source["project_dir"]).stdout.split()
            writers = [s for s in running if s != source["service"]]
            if writers:
                self.run(self.compose(source, ["stop"] + writers), cwd=source["project_dir"])
            try:
                if source["type"] == "postgres":
                    detail = self.restore_postgres(source, snapshot, recorded, database)
                else:
                    detail = getattr(self, "restore_" + source["type"])(source, snapshot, recorded)
            finally:
                if writers:
                    self.run(self.compose(source, ["start"] + writers), cwd=source["project_dir"])
        print(json.dumps({"source": name, "snapshot": snapshot["id"][:8], "time": snapshot_epoch(snapshot["time"]),
                          "writers": writers, "checked": bool({"counts", "keys"} & set(recorded)), "detail": detail}))

    def restore_postgres(self, source, snapshot, recorded, database=None):
        """Every database of the dump (each dropped first; the globals replayed), or only database
        (dropped and created again from its section of the dump; the roles stay as they are)."""
        renew_postgres = False
        with self.staged(snapshot, source) as dump:
            if database:
                dump = self.one_database(dump, database)
                drop = [database]
            else:
                with open(dump, "rb") as handle:
                    sections = dump_sections(handle)
                # Only the databases the dump holds: a dump of a list of databases leaves the others.
                drop = sorted(set(sections) - set(NOT_ALONE))
                # pg_dumpall replays postgres' section into the existing database: with tables
                # there (in the dump or live), that hits "already exists" or leaves tables the
                # snapshot lacks. It starts empty instead (from template0, with its owner; its
                # grants and settings, which pg_dumpall does not dump either, are not kept).
                # (A dump of a list of databases naming postgres creates it: not handled here.)
                renew_postgres = "postgres" not in (source.get("databases") or []) and (
                    sections.get("postgres", False)
                    or bool(self.postgres_sql(source, "postgres", COUNT_TABLES_SQL).strip()))
            try:
                if renew_postgres:
                    owner = self.postgres_sql(source, "template1", "SELECT pg_get_userbyid(datdba) FROM pg_database "
                                                                   "WHERE datname = 'postgres'").strip()
                    self.postgres_sql(source, "template1", "DROP DATABASE postgres WITH (FORCE)")
                    self.postgres_sql(source, "template1", 'CREATE DATABASE postgres TEMPLATE template0 OWNER "%s"'
                                      % owner.replace('"', '""'))
                for name in drop:
                    self.postgres_sql(source, "postgres",
                                      'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name.replace('"', '""'))
                with open(dump, "rb") as handle:
                    result = self.run(self.exec_argv(source, [
                        "sh", "-c", 'exec psql -X -q --username="${POSTGRES_USER:-postgres}" --dbname=postgres']),
                        check=False, stdin=handle, cwd=source["project_dir"])
            finally:
                if database:
                    os.unlink(dump)
        self.check_psql(result)
        # What the counts were taken of: the database restored alone, or the source's list of
        # databases (the others, which the dump does not hold, are not compared).
        only = [database] if database else (source.get("databases") or None)
        restored = self.postgres_counts(source, only=only)
        problems = (compare_counts(counts_of(recorded["counts"], only), restored) if "counts" in recorded else [])
        if problems:
            raise Failure("restored row counts differ: " + "; ".join(problems[:10]))
        return "%d tables, %d rows" % (len(restored), sum(restored.values()))

    def one_database(self, dump, database):
        """A 0600 file beside the staged dump with only database's section of it."""
        found = set()
        with open(dump, "rb") as whole, open(dump + ".one", "wb") as one:
            os.chmod(dump + ".one", 0o600)
            for name, line in database_sections(whole):
                if name is not None:
                    found.add(name)
                if name == database:
                    one.write(line)
        if database not in found:
            os.unlink(dump + ".one")
            raise Failure("the snapshot has no database %s (it has %s); nothing was changed"
                          % (database, ", ".join(sorted(found - set(NOT_ALONE))) or "none"))
        return dump + ".one"

    def restore_redis(self, source, snapshot, recorded):
        rdb = recorded.get("rdb", "/data/dump.rdb")
        directory = os.path.dirname(rdb)
        # Read before the stop: the running server's persistence settings, as it will restart.
        layout = aof_layout(redis_info(self.redis_cli(source, "INFO", "server")),
                            redis_config_pairs(self.redis_cli(source, "CONFIG", "GET", "append*")))
        layout = layout or {"dir": "", "file": "", "manifest": "", "manifest_text": ""}
        # The RDB Redis wrote when it stopped, and its append-only files, are moved aside, not
        # overwritten. With appendonly on, the RDB also becomes the base of a new append-only file.
        script = ('set -e; rdb=$1 dir=$2 stamp=$3 aofdir=$4 aof=$5 manifest=$6 text=$7; '
                  'cat > "$rdb.restore"; chown --reference="$dir" "$rdb.restore"; '
                  'for old in "$rdb" "$dir/${aofdir:-appendonlydir}" ${aof:+"$dir/$aof"}; do '
                  'if [ -e "$old" ]; then mv "$old" "$old.before-restore-$stamp"; fi; done; '
                  'if [ -n "$aofdir" ]; then mkdir "$dir/$aofdir"; cp "$rdb.restore" "$dir/$aofdir/$aof"; '
                  'printf "%s" "$text" > "$dir/$aofdir/$manifest"; chown -R --reference="$dir" "$dir/$aofdir"; '
                  'elif [ -n "$aof" ]; then cp "$rdb.restore" "$dir/$aof"; chown --reference="$dir" "$dir/$aof"; fi; '
                  'mv "$rdb.restore" "$rdb"')
        with self.staged(snapshot, source) as dump:
            self.run(self.compose(source, ["stop", source["service"]]), cwd=source["project_dir"])
            try:
                with open(dump, "rb") as handle:
                    result = self.run(self.compose(source, [
                        "run", "--rm", "--no-deps", "-T", "--user", "0", "--entrypoint", "sh", source["service"], "-c",
                        script, "restore", rdb, directory, str(int(time.time())), layout["dir"], layout["file"],
                        layout["manifest"], layout["manifest_text"]]),
                        check=False, stdin=handle, cwd=source["project_dir"])
            finally:
                self.run(self.compose(source, ["start", source["service"]]), cwd=source["project_dir"])
        if result.returncode != 0:
            raise Failure("could not write the RDB: " + result.stderr.strip()[-1000:])
        deadline = time.time() + 120
        while time.time() < deadline:
            out = self.run(self.exec_argv(source, ["redis-cli", "INFO", "persistence"], ["REDISCLI_AUTH"]),
                           check=False, env=self.redis_env(source), cwd=source["project_dir"]).stdout
            if redis_info(out).get("loading") == "0":
                break
            time.sleep(1)
        keys = int(self.redis_cli(source, "DBSIZE") or 0)
        if "keys" in recorded and keys != recorded["keys"]:
            raise Failure("redis holds %d keys after the restore, %d at dump time" % (keys, recorded["keys"]))
        return "%d keys" % keys

    def restore_volume(self, source, snapshot, recorded):
        self.run(self.compose(source, ["stop", source["service"]]), cwd=source["project_dir"])
        try:
            # In place; files that the snapshot does not have are kept (restic's --delete would
            # compare with the whole target, /).
            self.restic(self.source_repo, ["restore", snapshot["id"], "--target", "/"])
        finally:
            self.run(self.compose(source, ["start", source["service"]]), cwd=source["project_dir"])
        return "restored %s" % ", ".join(snapshot["paths"])

    restore_files = restore_volume


COUNT_TABLES_SQL = ("SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1")


def quote_table(name):
    """A schema.table name as COUNT_TABLES_SQL printed it (already quoted where needed)."""
    if not re.match(r'^("([^"]|"")+"|[a-z_][a-z0-9_$]*)\.("([^"]|"")+"|[a-z_][a-z0-9_$]*)$', name):
        raise Failure("unexpected table name %r" % name)
    return name


HELPS = {
    "composeops_backup_last_run_timestamp_seconds": "When the last backup run of the source ended.",
    "composeops_backup_last_success_timestamp_seconds": "When the last successful backup of the source ended.",
    "composeops_backup_last_status": "1 when the last backup run succeeded, 0 when it failed.",
    "composeops_backup_duration_seconds": "How long the last backup run took.",
    "composeops_backup_size_bytes": "Bytes read by the last successful backup (the dump or the files).",
    "composeops_backup_verify_last_run_timestamp_seconds": "When the last test restore ran.",
    "composeops_backup_verify_last_success_timestamp_seconds": "When the last test restore succeeded.",
    "composeops_backup_verify_last_status": "1 when the last test restore succeeded, 0 when it failed.",
    "composeops_backup_verify_duration_seconds": "How long the last test restore took.",
    "composeops_backup_check_last_run_timestamp_seconds": "When restic check last ran on the repository.",
    "composeops_backup_check_last_status": "1 when the last restic check passed, 0 when it failed.",
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="composeops-backup", description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("command", choices=["init", "backup", "verify", "check", "restore", "snapshots", "secrets"])
    parser.add_argument("source", nargs="?")
    parser.add_argument("--snapshot", default="latest")
    parser.add_argument("--database", help="restore: this database of a postgres source only")
    parser.add_argument("--repository", help="restore, snapshots, secrets, verify: read this repository "
                                             "(default: the first)")
    parser.add_argument("--host", help="restore, snapshots, secrets: the snapshots recorded by this host "
                                       "(default: this one)")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        runner = Runner(json.load(handle))
    if args.repository:
        named = [r for r in runner.repos if r["name"] == args.repository]
        if not named:
            names = ", ".join(r["name"] for r in runner.repos)
            parser.error("no repository %s (repositories: %s)" % (args.repository, names))
        runner.source_repo = named[0]
    os.umask(0o077)
    try:
        if args.command in ("init", "check"):
            getattr(runner, args.command)()
        elif args.source is None:
            parser.error("%s needs a source" % args.command)
        elif args.command == "restore":
            runner.restore(args.source, args.snapshot, args.database, args.host)
        elif args.command in ("snapshots", "secrets"):
            getattr(runner, args.command)(args.source, args.host)
        else:
            getattr(runner, args.command)(args.source)
    except Failure as exc:
        print("composeops-backup %s: %s" % (args.command, exc), file=sys.stderr)
        return 1
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        print("composeops-backup %s: failed unexpectedly (traceback above)" % args.command, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
