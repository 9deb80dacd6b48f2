"""The Python counterpart of lib.sh: what the benchmarks share, not a benchmark (it measures
nothing and has no results file; its figures are in those of the scripts that import it).

What the rollout benchmarks (rollout.sh, rollout_multihost.sh) compute alike from the files of a
load window: hey's CSV (response-time, DNS+dialup, DNS, Request-write, Response-delay,
Response-read, status-code, offset: seconds; offset is the request's start after hey's start), the
slow requests (slow-N.txt), the balancer's or nginx's JSON access log (nginx.log), the window's
start and change (start, change: "t0 t1 exit-code") and what served afterwards (versions).
Imported by the Python part of each script (sys.path holds benchmarks/)."""

import csv
import datetime
import json
import os


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def read(d, name):
    with open(os.path.join(d, name)) as handle:
        return handle.read()


def stamp(line):
    """Epoch seconds of a progress line that starts with its UTC time (2026-12-02T14:30:00Z)."""
    return datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def load_window(d):
    """The requests of the window in directory ``d`` and the figures both benchmarks report:
    ``(rows, slow, figures)``; rows are (start, end, status, seconds) of hey's requests, slow the
    split lines of the slow requests (start end status version)."""
    start = float(read(d, "start"))
    t0, t1, rc = read(d, "change").split()
    t0, t1 = float(t0), float(t1)
    rows = []
    with open(os.path.join(d, "hey.csv")) as handle:
        for row in csv.DictReader(handle):
            offset, took = float(row["offset"]), float(row["response-time"])
            rows.append((start + offset, start + offset + took, int(row["status-code"]), took))
    slow = []
    for f in sorted(os.listdir(d)):
        if f.startswith("slow-"):
            slow += [line.split() for line in open(os.path.join(d, f)) if line.strip()]
    nginx = [json.loads(line) for line in open(os.path.join(d, "nginx.log")) if line.startswith("{")]
    end = max([r[1] for r in rows] or [start])
    # Longest time without a successful answer: between successive successful answers, and from the
    # window's start to the first one, from the last one to the window's end.
    done = sorted(r[1] for r in rows if r[2] == 200)
    edges = [start] + done + [end]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    # Latency of the answers served (200) to requests started during the change: a 502 is fast.
    during = [r[3] for r in rows if t0 <= r[0] <= t1 and r[2] == 200]
    statuses = {}
    for r in rows:
        statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
    figures = dict(
        statuses=statuses,
        rps=round(len(rows) / (end - start), 1) if end > start else None,
        window_s=round(end - start, 1),
        change_s=round(t1 - t0, 1),
        change_exit_code=int(rc),
        gap_s=round(gap, 2),
        p50_ms=ms(pct(during, 50)),
        p99_ms=ms(pct(during, 99)),
        served_during_change=len(during),
        slow_total=len(slow),
        nginx_requests=len(nginx),
        nginx_failed=sum(1 for n in nginx if n.get("status") != 200),
        serving_after=read(d, "versions").strip(),
        t0=t0, t1=t1,
    )
    return rows, slow, figures


def add_ratios(case, base):
    """p50_ratio and p99_ratio of ``case`` against the steady state ``base``."""
    for p in ("p50", "p99"):
        mine, theirs = case["%s_ms" % p], base.get("%s_ms" % p)
        case["%s_ratio" % p] = round(mine / theirs, 2) if mine and theirs else None


def machine(loadavg_start, loadavg_end, containers_start):
    return {
        "shared": True,
        "note": "the machine is shared with other test runs: failed requests stay meaningful, latencies less so",
        "load_average_start": [float(x) for x in loadavg_start.split()],
        "load_average_end": [float(x) for x in loadavg_end.split()],
        "other_containers_at_start": int(containers_start),
    }


def write_json(dest, out):
    with open(dest, "w") as handle:
        json.dump(out, handle, indent=2)
        handle.write("\n")


def show(v):
    if v is None:
        return "-"
    if isinstance(v, dict):
        return " ".join("%s:%s" % kv for kv in sorted(v.items()))
    return str(v)


def print_table(cases, names, rows):
    """One column a case, one line a figure (rows: (label, key))."""
    print("%-22s" % "" + "".join("%-22s" % n for n in names))
    for label, key in rows:
        print("%-22s" % label + "".join("%-22s" % show(cases[n].get(key, "")) for n in names))
