"""Observability against a real Prometheus (Debian's `prometheus`, on loopback).

Starts a local cluster, Prometheus scraping the router and both workers (rules.yaml loaded),
drives load with moe-bench, then checks:
  (a) every PromQL expression of every panel of deploy/grafana/moe-serve.json returns data;
  (b) `promtool check metrics` is clean on the router and every worker endpoint;
  (c) `promtool check rules` and `promtool test rules` pass;
  (d) counters only increase between scrapes; routed + dropped pairs = top_k × tokens sent, and
      the workers processed exactly the routed pairs.
Prometheus scrapes on its own 1 s clock, so the test polls its HTTP API for the data it expects
(bounded waits), instead of sleeping for a guessed time.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

checks = {"passed": 0, "failed": 0}


def check(ok, what):
    checks["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    return ok


def http(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def parse_metrics(text):
    """{series: value} and {family: type} from the Prometheus text format."""
    values, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
        elif line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            values[series] = float(value)
    return values, types


def family_of(series, types):
    name = series.split("{", 1)[0]
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[: -len(suffix)]) == "histogram":
            return name[: -len(suffix)]
    return name


def total(values, name):
    return sum(v for s, v in values.items() if s.split("{", 1)[0] == name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(prom, expr):
    url = f"http://{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(http(url))
    if body.get("status") != "success":
        raise RuntimeError(f"query failed: {expr}: {body}")
    return body["data"]["result"]


def wait_for(what, predicate, deadline_s=90):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if predicate():
                return True
        except (OSError, RuntimeError, ValueError):
            pass
        time.sleep(0.25)  # poll interval of an external, clock-driven process
    print(f"timed out waiting for {what}", flush=True)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--tmp", required=True)
    args = ap.parse_args()
    tmp = os.path.abspath(os.path.join(args.tmp, "observability"))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    b = args.bin
    model = os.path.join(tmp, "model")
    subprocess.run([f"{b}/moe-make-checkpoint", f"--out={model}", "--hidden_size=64", "--intermediate_size=32",
                    "--num_experts=8", "--top_k=2", "--num_layers=2", "--dtype=f32", "--seed=3"],
                   check=True, stdout=subprocess.DEVNULL)
    cluster = subprocess.Popen([f"{b}/moe-cluster", f"--checkpoint={model}", "--workers=2",
                                "--router_flags=--capacity_factor=0.75"], stdout=subprocess.PIPE, text=True)
    router = router_metrics = None
    worker_metrics = []
    for line in cluster.stdout:
        words = line.split()
        if line.startswith("moe-cluster: router "):
            router, router_metrics = words[2], words[4]
        elif line.startswith("moe-cluster: worker "):
            worker_metrics.append(words[4])
        if "running" in line:
            break
    prom_proc = None
    try:
        endpoints = [router_metrics] + worker_metrics
        before = {e: parse_metrics(http(f"http://{e}/metrics")) for e in endpoints}

        # Prometheus, scraping every second, with our rules evaluated every second too.
        rules = open(os.path.join(args.repo, "deploy/prometheus/rules.yaml")).read().replace("interval: 30s", "interval: 1s")
        open(os.path.join(tmp, "rules.yaml"), "w").write(rules)
        targets = lambda ts: "[" + ", ".join(f'"{t}"' for t in ts) + "]"
        open(os.path.join(tmp, "prometheus.yml"), "w").write(f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: ["{tmp}/rules.yaml"]
scrape_configs:
  - job_name: moe-router
    static_configs: [{{targets: {targets([router_metrics])}, labels: {{namespace: test}}}}]
  - job_name: moe-expert
    static_configs: [{{targets: {targets(worker_metrics)}, labels: {{namespace: test}}}}]
""")
        prom = f"127.0.0.1:{free_port()}"
        prom_proc = subprocess.Popen(["prometheus", f"--config.file={tmp}/prometheus.yml",
                                      f"--storage.tsdb.path={tmp}/tsdb", f"--web.listen-address={prom}",
                                      "--log.level=warn"], stderr=subprocess.DEVNULL)
        check(wait_for("Prometheus ready", lambda: "Ready" in http(f"http://{prom}/-/ready")), "Prometheus is ready")
        check(wait_for("targets up", lambda: len([r for r in query(prom, "up == 1")]) == 3), "all 3 targets are scraped")

        requests, tokens = 30, 16
        for layer in (0, 1):
            subprocess.run([f"{b}/moe-bench", f"--router={router}", f"--requests={requests}", f"--tokens={tokens}",
                            "--concurrency=2", "--warmup=0", f"--layer={layer}"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        sent = 2 * requests * tokens

        after = {e: parse_metrics(http(f"http://{e}/metrics")) for e in endpoints}
        # (b) promtool check metrics on every endpoint.
        for e in endpoints:
            text = http(f"http://{e}/metrics")
            r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
            check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
                  f"promtool check metrics is clean on {e} {r.stdout.strip()} {r.stderr.strip()}")
        # (d) counters and histograms only increase; every series known at start is still there.
        for e in endpoints:
            (v0, t0), (v1, t1) = before[e], after[e]
            bad = [s for s, v in v0.items() if t0.get(family_of(s, t0)) in ("counter", "histogram") and
                   (s not in v1 or v1[s] < v)]
            check(not bad, f"counters on {e} never decrease ({len(v0)} series) {bad[:3]}")
        rv = after[router_metrics][0]
        routed = total(rv, "moe_expert_tokens_routed_total")
        dropped = total(rv, "moe_expert_tokens_dropped_total")
        check(routed + dropped == 2 * sent and dropped > 0,
              f"routed {routed:.0f} + dropped {dropped:.0f} = top_k × {sent} tokens sent")
        processed = sum(total(after[w][0], "moe_worker_tokens_processed_total") for w in worker_metrics)
        check(processed == routed, f"workers processed {processed:.0f} rows = {routed:.0f} routed pairs")
        layer_routed = total(rv, "moe_layer_expert_tokens_routed_total")
        check(layer_routed == routed, "per-layer counters add up to the per-expert ones")
        ok = sum(v for s, v in rv.items() if s.startswith("moe_router_requests_total{") and 'code="OK"' in s
                 and 'method="Forward"' in s)
        check(ok == 2 * requests, f"{ok:.0f} Forward calls counted OK")

        # (a) every dashboard expression returns data once Prometheus has scraped the load.
        check(wait_for("the load in Prometheus", lambda: float(query(
            prom, 'sum(moe_router_requests_total{method="Forward",code="OK"})')[0]["value"][1]) == 2 * requests),
              "Prometheus has scraped the load")
        dashboard = json.load(open(os.path.join(args.repo, "deploy/grafana/moe-serve.json")))
        # A 5 m window keeps the short load in every rate() for the whole check.
        subst = {"$namespace": "test", "$layer": ".*", "$expert": ".*", "$__rate_interval": "5m"}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for k, v in subst.items():
                    expr = expr.replace(k, v)
                finite = lambda rs: any(re.match(r"^-?[0-9.e+-]+$", r["value"][1]) for r in rs)
                got = wait_for(f"data for {expr}", lambda: finite(query(prom, expr)), deadline_s=60)
                check(got, f"panel '{panel['title']}' [{target['refId']}] returns data")
        for var in dashboard["templating"]["list"][1:]:
            m = re.match(r"label_values\((.*), (\w+)\)", var["query"]["query"])
            series = m.group(1).replace("$namespace", "test")
            check(len(query(prom, f"count by ({m.group(2)}) ({series})")) > 0, f"variable ${var['name']} has values")

        # (c) the rules themselves.
        rules_dir = os.path.join(args.repo, "deploy/prometheus")
        r = subprocess.run(["promtool", "check", "rules", "rules.yaml"], cwd=rules_dir, capture_output=True, text=True)
        check(r.returncode == 0, "promtool check rules rules.yaml")
        r = subprocess.run(["promtool", "test", "rules", "rules_test.yaml"], cwd=rules_dir, capture_output=True, text=True)
        check(r.returncode == 0, "promtool test rules rules_test.yaml" + ("" if r.returncode == 0 else r.stdout))
    finally:
        if prom_proc is not None:
            prom_proc.terminate()
            prom_proc.wait(timeout=30)
        cluster.send_signal(signal.SIGTERM)
        check(cluster.wait(timeout=60) == 0, "the cluster stops cleanly")
    print(f"{checks['passed']} passed, {checks['failed']} failed")
    return 1 if checks["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
