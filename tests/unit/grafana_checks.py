"""Static checks of the Grafana dashboards of the monitoring role (no Grafana can run here).

Pure helpers for tests/unit/test_grafana_provisioning.py:

- load_dashboards(dir): the dashboards of a directory, {file name: dashboard};
- panel_problems(dashboard): what Grafana or our conventions would reject (datasource, queries, ids);
- queries_as_rules(dashboards): every panel query as a Prometheus recording rule (YAML text), the
  Grafana variables replaced by valid placeholders, for `promtool check rules` to parse the PromQL;
- format_dashboard(dashboard): the canonical text of a dashboard file (2-space indent, small objects
  on one line). `python tests/unit/grafana_checks.py format FILE…` rewrites files in that form, e.g.
  after pasting a dashboard exported from Grafana.
"""

import json
import re
import sys
from pathlib import Path

import yaml

DATASOURCE_UID = "composeops-prometheus"
DATASOURCE = {"type": "prometheus", "uid": DATASOURCE_UID}
# Panel types that show no query result; they may go without a datasource.
NO_QUERY_TYPES = {"row", "text", "dashlist", "news", "annolist"}
# Grafana's built-in variables, with a placeholder valid where they stand in PromQL: a duration in a
# range selector or subquery, a number of seconds or milliseconds.
BUILTIN_VARIABLES = {
    "__rate_interval": "5m", "__interval": "5m", "__range": "5m", "__auto": "5m",
    "__rate_interval_ms": "300000", "__interval_ms": "300000", "__range_ms": "300000", "__range_s": "300",
    "__from": "1700000000", "__to": "1700000000",
}
# A variable as Grafana finds it in a query: $name, [[name]], [[name:format]], ${name}, ${name:format}.
VARIABLE_RE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}")
# PromQL string literals: a variable there is (part of) a label value or regular expression.
STRING_RE = re.compile(r'''"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`''')
# label_values(<selector>, label) and query_result(<query>) of query variables hold PromQL.
VARIABLE_QUERY_RE = re.compile(r"^\s*(?:label_values\((.+),\s*\w+\s*\)|query_result\((.+)\))\s*$", re.S)
MATCH_ALL = ".*"
FORMAT_WIDTH = 110


def load_dashboards(directory):
    """{file name: dashboard} of the *.json files of directory, sorted by name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(Path(directory).glob("*.json"))}


def iter_panels(dashboard):
    """Every panel of the dashboard, the panels inside (collapsed) rows included, in order."""
    def walk(panels):
        for panel in panels or []:
            yield panel
            yield from walk(panel.get("panels"))
    return walk(dashboard.get("panels"))


def variable_names(dashboard):
    return {v.get("name") for v in (dashboard.get("templating") or {}).get("list") or [] if v.get("name")}


def _datasource_problem(datasource):
    """None when datasource names the composeops Prometheus, else what is wrong with it."""
    if not isinstance(datasource, dict):
        return "datasource is %s, not %s" % (json.dumps(datasource), json.dumps(DATASOURCE))
    if datasource.get("uid") != DATASOURCE_UID or datasource.get("type") != "prometheus":
        return "datasource is %s, not %s" % (json.dumps(datasource, sort_keys=True), json.dumps(DATASOURCE))
    return None


def _unknown_variables(expr, known):
    """Variables of expr that neither the dashboard nor Grafana defines (Grafana leaves them as text)."""
    names = (m.group(1) or m.group(2) or m.group(4) for m in VARIABLE_RE.finditer(expr))
    # ${1} and $1 are capture groups of label_replace, not variables.
    return sorted({n for n in names if not n.isdigit() and n not in known and n not in BUILTIN_VARIABLES})


def panel_problems(dashboard):
    """What is wrong with a dashboard: a list of messages, empty when it is fine.

    The dashboard must have a uid and no __inputs (an export "for sharing externally" that would need a
    datasource chosen at import); each panel a unique id; each panel that shows data, each of its queries
    and each query variable the datasource composeops-prometheus; each query a non-empty PromQL
    expression with a unique refId that uses only variables the dashboard defines.
    """
    problems = []
    uid = dashboard.get("uid")
    name = uid or dashboard.get("title") or "dashboard"
    if not isinstance(uid, str) or not uid.strip():
        problems.append("%s: the dashboard has no uid" % name)
    elif len(uid) > 40:
        problems.append("%s: the uid is longer than the 40 characters Grafana allows" % name)
    if "__inputs" in dashboard:
        problems.append("%s: has __inputs (exported for sharing externally): export it with the datasource uid" % name)
    if "${DS_" in json.dumps(dashboard):
        problems.append("%s: refers to a ${DS_...} input instead of the datasource uid %s" % (name, DATASOURCE_UID))
    known = variable_names(dashboard)

    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "query":
            problem = _datasource_problem(variable.get("datasource"))
            if problem:
                problems.append("%s: variable %s: %s" % (name, variable.get("name"), problem))

    seen = set()
    for panel in iter_panels(dashboard):
        panel_id = panel.get("id")
        where = "%s: panel %s %r" % (name, panel_id, panel.get("title"))
        if not isinstance(panel_id, int) or isinstance(panel_id, bool):
            problems.append("%s: has no numeric id" % where)
        elif panel_id in seen:
            problems.append("%s: the id %s is used twice" % (where, panel_id))
        seen.add(panel_id)
        targets = panel.get("targets") or []
        if panel.get("type") in NO_QUERY_TYPES and not targets:
            continue
        problem = _datasource_problem(panel.get("datasource"))
        if problem:
            problems.append("%s: %s" % (where, problem))
        if not targets:
            problems.append("%s: has no query" % where)
        refs = set()
        for target in targets:
            ref = target.get("refId")
            at = "%s: query %s" % (where, ref)
            if not ref:
                problems.append("%s: has no refId" % at)
            elif ref in refs:
                problems.append("%s: the refId is used twice" % at)
            refs.add(ref)
            problem = _datasource_problem(target.get("datasource"))
            if problem:
                problems.append("%s: %s" % (at, problem))
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append("%s: has no expr" % at)
                continue
            unknown = _unknown_variables(expr, known)
            if unknown:
                problems.append("%s: uses variables the dashboard does not define: %s" % (at, ", ".join(unknown)))
    return problems


def _placeholders(dashboard):
    """{variable: placeholder outside a string literal} of the dashboard's own variables."""
    values = {}
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        if variable.get("type") == "interval":
            values[variable["name"]] = "5m"
        elif variable.get("type") in ("constant", "custom", "textbox"):
            current = (variable.get("current") or {}).get("value")
            value = current if isinstance(current, str) else variable.get("query")
            if isinstance(value, str) and value and "," not in value:
                values[variable["name"]] = value
    return values


def substitute_variables(expr, dashboard):
    """expr with the Grafana variables replaced as promtool can parse it.

    In a string literal (a label matcher, a label_replace argument) a dashboard variable matches
    anything (.*); outside one, an interval variable becomes 5m and a constant or custom one its value.
    Grafana's built-in variables become a duration (5m) or a number. Unknown names stay as they are,
    as Grafana leaves them, so that the query fails to parse (or panel_problems reports them).
    """
    known = variable_names(dashboard)
    outside = _placeholders(dashboard)

    def replace(match, in_string):
        var = match.group(1) or match.group(2) or match.group(4)
        if var in BUILTIN_VARIABLES:
            return BUILTIN_VARIABLES[var]
        if var in known and in_string:
            return MATCH_ALL
        if var in outside:
            return outside[var]
        return match.group(0)

    out, last = [], 0
    for string in STRING_RE.finditer(expr):
        out.append(VARIABLE_RE.sub(lambda m: replace(m, False), expr[last:string.start()]))
        out.append(VARIABLE_RE.sub(lambda m: replace(m, True), string.group(0)))
        last = string.end()
    out.append(VARIABLE_RE.sub(lambda m: replace(m, False), expr[last:]))
    return "".join(out)


def _metric_part(text):
    """text as part of a metric name: every character outside [a-zA-Z0-9_] becomes _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", str(text))


def queries_as_rules(dashboards):
    """A Prometheus rule file (YAML text) with one recording rule per panel query, named
    grafana:<dashboard uid>:<panel id>:<refId> (uid with _ for what a metric name cannot hold), and
    one per query variable, grafana:<dashboard uid>:var:<name>; one rule group per dashboard.

    dashboards: {name: dashboard} as load_dashboards returns, or a list of dashboards.
    """
    if isinstance(dashboards, dict):
        dashboards = list(dashboards.values())
    groups = []
    for index, dashboard in enumerate(dashboards):
        uid = _metric_part(dashboard.get("uid") or "dashboard_%d" % index)
        rules = []
        for variable in (dashboard.get("templating") or {}).get("list") or []:
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            match = VARIABLE_QUERY_RE.match(query or "") if variable.get("type") == "query" else None
            if match:
                rules.append({"record": "grafana:%s:var:%s" % (uid, _metric_part(variable.get("name"))),
                              "expr": substitute_variables(match.group(1) or match.group(2), dashboard)})
        for panel in iter_panels(dashboard):
            for target in panel.get("targets") or []:
                expr = target.get("expr")
                if isinstance(expr, str) and expr.strip():
                    record = "grafana:%s:%s:%s" % (uid, _metric_part(panel.get("id")), _metric_part(target.get("refId")))
                    rules.append({"record": record, "expr": substitute_variables(expr, dashboard)})
        groups.append({"name": "grafana-%s" % (dashboard.get("uid") or index), "rules": rules})
    return yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000, allow_unicode=True)


def format_dashboard(dashboard):
    """The canonical text of a dashboard file: 2-space indent; an object or list that fits in
    FORMAT_WIDTH characters on one line stays on one line; keys in their order; a final newline."""
    def fmt(value, level, used):
        flat = json.dumps(value, ensure_ascii=False)
        if not isinstance(value, (dict, list)) or not value or used + len(flat) <= FORMAT_WIDTH:
            return flat
        pad = "  " * (level + 1)
        if isinstance(value, dict):
            items = [pad + json.dumps(k, ensure_ascii=False) + ": "
                     + fmt(v, level + 1, len(pad) + len(json.dumps(k, ensure_ascii=False)) + 2)
                     for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
        return "[\n" + ",\n".join(pad + fmt(v, level + 1, len(pad)) for v in value) + "\n" + "  " * level + "]"
    return fmt(dashboard, 0, 0) + "\n"


def main(argv):
    if len(argv) < 2 or argv[0] != "format":
        print("usage: grafana_checks.py format DASHBOARD.json…", file=sys.stderr)
        return 2
    for name in argv[1:]:
        path = Path(name)
        path.write_text(format_dashboard(json.loads(path.read_text(encoding="utf-8"))), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
