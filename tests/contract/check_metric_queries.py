#!/usr/bin/env python3
"""Every PromQL query in the Grafana dashboards and Prometheus rules names only metrics that our
processes really expose: a dashboard panel or alert on a misspelt or removed metric shows nothing
(and an alert on it never fires) without any error, so this is checked against live /metrics.

usage: check_metric_queries.py --metrics SCRAPE.txt [SCRAPE.txt...] --dashboard D.json [...] --rules R.yml [...]

SCRAPE.txt: a /metrics answer (exposition format) of intake, a lane worker, a dispatcher…; the
names are its '# TYPE' lines. Prometheus's own per-target series (up, scrape_*) count as existing.
Every query must name at least one metric, and every name it uses must exist. Exit 0 / 1 / 2.
"""
import argparse
import json
import re
import sys

import yaml

# Series Prometheus writes itself for every scrape target.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added",
             "scrape_samples_post_metric_relabeling"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "inf", "nan"}
# Histogram/summary sample suffixes of a family named on its '# TYPE' line.
SUFFIXES = ("_bucket", "_sum", "_count")


def exposed_names(path: str) -> set:
    names = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                names.add(m.group(1))
                if m.group(2) in ("histogram", "summary"):
                    names.update(m.group(1) + s for s in SUFFIXES)
    return names


def metric_names(expr: str) -> set:
    """The metric names a PromQL expression refers to."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                     # string literals
    e = re.sub(r"\{[^}]*\}", "", e)                                    # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)                                   # range and subquery selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)                                 # Grafana variables ($lane, $__rate_interval)
    names = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\b(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS or re.fullmatch(r"\d+\w*", word):
            continue
        names.add(word)
    return names


def dashboard_queries(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    found.append((f"{path}: {where}", v))
                elif k == "query" and isinstance(v, str) and "label_values" in v:
                    found.append((f"{path}: {where} (variable)", re.sub(r"label_values\((.*),\s*\w+\)", r"\1", v)))
                else:
                    walk(v, f"{where}/{k}" if where else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                title = v.get("title") if isinstance(v, dict) else None
                walk(v, f"{where}[{title or i}]")

    walk(doc, "")
    return found


def rule_queries(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    return [(f"{path}: {r.get('alert') or r.get('record')}", r["expr"])
            for g in doc["groups"] for r in g["rules"]]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--dashboard", nargs="*", default=[])
    p.add_argument("--rules", nargs="*", default=[])
    a = p.parse_args()
    exposed = set(SYNTHETIC)
    for m in a.metrics:
        exposed |= exposed_names(m)
    queries = [q for d in a.dashboard for q in dashboard_queries(d)] + [q for r in a.rules for q in rule_queries(r)]
    if not queries:
        print("no queries found")
        return 1
    bad = 0
    for where, expr in queries:
        names = metric_names(expr)
        unknown = sorted(names - exposed)
        if not names:
            print(f"{where}: names no metric: {expr}")
            bad += 1
        elif unknown:
            print(f"{where}: unknown metric(s) {', '.join(unknown)} in: {expr}")
            bad += 1
    print(f"{len(queries)} queries checked against {len(exposed)} exposed names, {bad} bad")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
