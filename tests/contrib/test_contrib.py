"""
tests/contrib/test_contrib.py - the Grafana dashboard and the Prometheus
alerts in contrib/ against promtool and a live backstopd

    /usr/bin/python3 -m pytest tests/contrib

test_rules_check        "promtool check rules" accepts backstop.rules.yml
test_rules_unit_tests   "promtool test rules" passes backstop.rules.test.yml,
                        and it tests every alert of the rules file both
                        firing (an exp_alerts entry) and not (an empty one)
test_dashboard_shape    the dashboard has the $datasource and $instance
                        variables, and every backstop_ selector of every
                        panel is limited to instance=~"$instance"
test_names_exist        a backstopd with a metrics listener, a protected
                        domain and a sync record is scraped: every metric a
                        panel or an alert names exists (histogram series
                        included), and every label a selector names, with
                        every literal value it matches, is in the scrape
promtool is Debian's prometheus package (scripts/deps); without it the
promtool tests are skipped and say so.
"""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from support.backstopd import seed
from support.procs import free_port
from support.replies import PREFIX
from support.wait import poll

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES = os.path.join(SRC, "contrib/prometheus/backstop.rules.yml")
RULES_TEST = os.path.join(SRC, "contrib/prometheus/backstop.rules.test.yml")
DASHBOARD = os.path.join(SRC, "contrib/grafana/backstop.json")
# labels Prometheus adds or histograms carry: not backstopd's to export
TARGET_LABELS = {"instance", "job", "le"}
SELECTOR_RE = re.compile(r"\b(backstop_\w+)(?:\{([^}]*)\})?")
MATCHER_RE = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.skip("promtool SKIPPED: promtool missing (apt-get install prometheus)")
    return path


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    return dash, [(p["title"], t["expr"]) for p in panels(dash["panels"])
                  for t in p.get("targets", [])]


def rule_exprs():
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    return [(r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def test_rules_check():
    r = subprocess.run([promtool(), "check", "rules", RULES], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_rules_unit_tests():
    """Given the rules, when promtool runs the unit tests, each alert is
    tested firing and not firing, and all pass."""
    r = subprocess.run([promtool(), "test", "rules", os.path.basename(RULES_TEST)],
                       cwd=os.path.dirname(RULES_TEST), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(RULES_TEST) as f:
        cases = [c for t in yaml.safe_load(f)["tests"] for c in t["alert_rule_test"]]
    alerts = {name for name, _ in rule_exprs()}
    fires = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    assert alerts - fires == set(), "never tested firing: %s" % (alerts - fires)
    assert alerts - quiet == set(), "never tested not firing: %s" % (alerts - quiet)


def test_dashboard_shape():
    dash, exprs = dashboard_exprs()
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert {"datasource", "instance"} <= variables, variables
    assert exprs, "no panel queries"
    unscoped = [(title, expr) for title, expr in exprs for m in SELECTOR_RE.finditer(expr)
                if 'instance=~"$instance"' not in (m.group(2) or "")]
    assert not unscoped, "selectors without instance=~\"$instance\": %s" % unscoped


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as resp:
        return resp.read().decode()


def exported(body):
    """{metric name: {label: {values}}} of a scrape; histograms' series too."""
    names = {}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", body, re.M):
        for suffix in (("_bucket", "_sum", "_count") if kind == "histogram" else ("",)):
            names[name + suffix] = {}
    for name, labels in re.findall(r"^(\w+)\{([^}]*)\} \S+$", body, re.M):
        for k, v in re.findall(r'(\w+)="([^"]*)"', labels):
            names.setdefault(name, {}).setdefault(k, set()).add(v)
    return names


def problems(where, expr, names):
    """What expr asks of the scrape that is not there."""
    out = []
    for m in SELECTOR_RE.finditer(expr):
        metric = m.group(1)
        if metric not in names:
            out.append("%s: no metric %s" % (where, metric))
            continue
        for label, op, value in MATCHER_RE.findall(m.group(2) or ""):
            if label in TARGET_LABELS:
                continue
            have = names[metric].get(label)
            if not have:
                out.append("%s: %s has no label %s" % (where, metric, label))
            elif op in ("=", "=~") and re.fullmatch(r"[\w|]+", value):
                out += ["%s: %s{%s=\"%s\"} not exported" % (where, metric, label, v)
                        for v in value.split("|") if v not in have]
    return out


def test_names_exist(redis_server, backstopd):
    """Given a live backstopd with a synced protected domain, when it is
    scraped, every metric and label the dashboard and the alerts use is there."""
    seed(redis_server.client)
    redis_server.client.hset(PREFIX + "sync", "example.com:ok", str(int(time.time()) - 60))
    port = free_port()
    backstopd(redis_server, metrics={"listen": "inet:127.0.0.1:%d" % port})
    # the directory gauges come with the first refresh from Redis
    body = poll(lambda: (lambda b: "backstop_directory_age_seconds{" in b and b)(scrape(port)),
                20.0, what="the directory gauges in the scrape")
    names = exported(body)
    _, exprs = dashboard_exprs()
    found = [p for where, expr in exprs + rule_exprs() for p in problems(where, expr, names)]
    assert not found, "\n".join(found)
    used = {m.group(1) for _, expr in exprs + rule_exprs() for m in SELECTOR_RE.finditer(expr)}
    print("# %d metric names used by the dashboard and alerts, all exported" % len(used))
