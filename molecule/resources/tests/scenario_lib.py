"""Helpers of the scenarios' testinfra tests that run the project's playbooks and check stacks.
A scenario's test imports it with `sys.path` pointed here (molecule/resources/tests)."""

import json
import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def playbook(name, **extra):
    """Run playbooks/NAME.yml against the scenario's inventory, extra vars as JSON; the result with
    stdout and stderr together."""
    argv = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
            os.path.join(ROOT, "playbooks", name + ".yml"), "-e", json.dumps(extra)]
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, check=False)


def sh(host, command):
    """stdout of COMMAND on HOST, which must succeed."""
    result = host.run(command)
    assert result.rc == 0, "%s\n%s%s" % (command, result.stdout, result.stderr)
    return result.stdout


def checksums(host, psql):
    """md5 of every table of the public schema, rows in a fixed order; PSQL is the command that
    runs psql on the database (-A -t, with its -c to come)."""
    tables = sh(host, psql + "-c \"SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1\"").split()
    assert tables, "no table in the public schema"
    sql = " UNION ALL ".join("SELECT '%s', md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM %s t"
                             % (t, t) for t in tables)
    return dict(line.split("|") for line in sh(host, psql + '-c "%s"' % sql).split())


def wait_healthy(host, compose, service, seconds=90):
    """Wait until every container of SERVICE (COMPOSE: `cd DIR && docker compose `) is healthy."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        states = host.run(compose + "ps %s --format '{{.Status}}'" % service).stdout.split("\n")
        states = [line for line in states if line.strip()]
        if states and all("(healthy)" in line for line in states):
            return
        time.sleep(1)
    pytest.fail("%s did not become healthy: %s" % (service, host.run(compose + "ps %s" % service).stdout))


def stack_commands(stack, user, database):
    """Shell prefixes for stack STACK of compose_stack: `docker compose` in its directory, psql as
    USER on DATABASE (unaligned, tuples only, stopping at the first error; -c to come) and
    redis-cli with the stack's redis_password secret (command to come)."""
    compose = "cd /opt/stacks/%s && docker compose " % stack
    psql = compose + "exec -T db psql -X -q -A -t -v ON_ERROR_STOP=1 -U %s -d %s " % (user, database)
    redis = ("cd /opt/stacks/%s && REDISCLI_AUTH=$(cat /var/lib/composeops/secrets/%s/redis_password) "
             "docker compose exec -T -e REDISCLI_AUTH redis redis-cli " % (stack, stack))
    return compose, psql, redis
