"""Offline validation of deploy/k8s (no cluster needed).

Renders every kustomization with `kubectl kustomize`, validates every object against the
Kubernetes JSON schemas of a pinned version (kubernetes-validate, strict: unknown fields fail),
lists the monitoring.coreos.com custom resources as skipped (their CRD schemas are not available
offline), and checks the structure: probes on every container with numeric ports and distinct
liveness/readiness services, ports that match the binaries' flags, command lines that use only
flags the binaries have, StatefulSet shards that cover every expert exactly, the router's worker
list equal to the StatefulSet's pod names (or, for live placement, the headless Service by DNS,
admin tokens from Secrets, an HPA on the workers), a grace period longer than the drain, GPUs in
limits only, the PrometheusRule equal to deploy/prometheus/rules.yaml, the dashboard ConfigMap.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.33.0"
results = {"passed": 0, "failed": 0}


def check(ok, what):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    return ok


def flags_of(binary):
    out = subprocess.run([binary, "--helpfull"], capture_output=True, text=True).stdout
    return set(re.findall(r"^\s+--(\w+)", out, re.M))


def render(kubectl, path):
    r = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True)
    if not check(r.returncode == 0, f"kubectl kustomize {path} renders"):
        print(r.stderr)
        return []
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def arg_value(args, name):
    for a in args:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def expand(value, env):
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def check_workloads(name, docs, bin_dir):
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "moe-serve-config")["data"]
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    known = {"moe-expert": flags_of(f"{bin_dir}/moe-expert"), "moe-router": flags_of(f"{bin_dir}/moe-router"),
             "moe-make-checkpoint": flags_of(f"{bin_dir}/moe-make-checkpoint")}
    drain = int(config["MOE_DRAIN_SECONDS"])
    for w in (sts, deploy):
        spec = w["spec"]["template"]["spec"]
        wname = w["metadata"]["name"]
        check(spec.get("terminationGracePeriodSeconds", 30) > drain,
              f"{name}/{wname}: terminationGracePeriodSeconds {spec.get('terminationGracePeriodSeconds')} > drain {drain}s")
        for c in spec.get("initContainers", []) + spec["containers"]:
            binary = c["command"][0]
            unknown = [a for a in c.get("args", []) if a.startswith("--") and a[2:].split("=")[0] not in known.get(binary, set())]
            check(binary in known and not unknown, f"{name}/{wname}/{c['name']}: every flag exists in {binary} {unknown}")
        for c in spec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c["ports"]}
            probes = [c.get(k) for k in ("startupProbe", "readinessProbe", "livenessProbe")]
            # With TLS on the gRPC port, kubelet's plaintext gRPC probes use the health-only port.
            health = arg_value(c["args"], "health_port")
            probe_port = int(health) if health is not None else ports["grpc"]
            check(all(p and "grpc" in p and isinstance(p["grpc"]["port"], int) and p["grpc"]["port"] == probe_port
                      for p in probes) and (health is None or ports.get("health") == probe_port),
                  f"{name}/{wname}/{c['name']}: startup, readiness and liveness gRPC probes on the numeric "
                  f"{'health' if health is not None else 'gRPC'} port {probe_port}")
            if arg_value(c["args"], "tls_cert") is not None:
                secret_mounts = [m["mountPath"] for m in c.get("volumeMounts", [])
                                 if any(v["name"] == m["name"] and "secret" in v for v in spec.get("volumes", []))]
                files = [arg_value(c["args"], f) for f in ("tls_cert", "tls_key", "tls_ca", "auth_token_file")]
                check(health is not None and all(f is None or any(f.startswith(m + "/") for m in secret_mounts)
                                                 for f in files),
                      f"{name}/{wname}/{c['name']}: TLS files and token come from mounted Secrets {secret_mounts}")
            check(c["readinessProbe"]["grpc"]["service"] != c["livenessProbe"]["grpc"]["service"],
                  f"{name}/{wname}/{c['name']}: liveness and readiness use distinct health service names")
            listen = arg_value(c["args"], "listen")
            check(listen is not None and listen.startswith("0.0.0.0:") and int(listen.split(":")[1]) == ports["grpc"],
                  f"{name}/{wname}/{c['name']}: --listen={listen} matches containerPort grpc {ports['grpc']}")
            check(int(arg_value(c["args"], "metrics_port")) == ports["metrics"],
                  f"{name}/{wname}/{c['name']}: --metrics_port matches containerPort metrics {ports['metrics']}")
            limits, requests = c["resources"].get("limits", {}), c["resources"].get("requests", {})
            check("nvidia.com/gpu" not in requests, f"{name}/{wname}/{c['name']}: GPUs only in limits")
            if name.endswith("gpu") and wname == "expert":
                check(limits.get("nvidia.com/gpu") == 1 and "--backend=cuda" in c["args"],
                      f"{name}: GPU workers ask for one GPU and --backend=cuda")
    router_c = deploy["spec"]["template"]["spec"]["containers"][0]
    expert_c = sts["spec"]["template"]["spec"]["containers"][0]
    grpc_port = next(p["containerPort"] for p in expert_c["ports"] if p["name"] == "grpc")
    if arg_value(expert_c["args"], "experts") == "none":
        # Live placement: workers start empty; the router finds them by DNS and places the experts.
        check(arg_value(router_c["args"], "workers") == f"dns:///{sts['spec']['serviceName']}:{grpc_port}",
              f"{name}: the router finds the workers through the headless Service dns:///{sts['spec']['serviceName']}:{grpc_port}")
        check(arg_value(router_c["args"], "rebalance") == "auto", f"{name}: the router places experts (--rebalance=auto)")
        for c, flag, w in ((router_c, "worker_admin_token_file", deploy), (expert_c, "admin_token_file", sts)):
            spec = w["spec"]["template"]["spec"]
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])
                      if any(v["name"] == m["name"] and "secret" in v for v in spec.get("volumes", []))]
            path = arg_value(c["args"], flag)
            check(path is not None and any(path.startswith(m + "/") for m in mounts),
                  f"{name}/{w['metadata']['name']}: --{flag} comes from a mounted Secret")
        hpa = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        check(len(hpa) == 1 and hpa[0]["spec"]["scaleTargetRef"]["name"] == sts["metadata"]["name"]
              and hpa[0]["spec"]["minReplicas"] >= 1,
              f"{name}: a HorizontalPodAutoscaler scales the worker StatefulSet")
        return
    # Shards: pod i hosts shard i mod S; every expert must be hosted, each by the same number of pods.
    replicas, shards = sts["spec"]["replicas"], int(config["MOE_NUM_SHARDS"])
    experts = 8
    init = sts["spec"]["template"]["spec"].get("initContainers", [])
    if init:
        experts = int(arg_value(init[0]["args"], "num_experts"))
    hosted = [0] * experts
    for pod in range(replicas):
        s = pod % shards
        for e in range(s * experts // shards, (s + 1) * experts // shards):
            hosted[e] += 1
    check(replicas % shards == 0 and len(set(hosted)) == 1 and hosted[0] >= 1,
          f"{name}: {replicas} worker pods over {shards} shards host each of {experts} experts {hosted[0]} time(s)")
    want = [f"{sts['metadata']['name']}-{i}.{sts['spec']['serviceName']}:{grpc_port}" for i in range(replicas)]
    workers = expand(arg_value(router_c["args"], "workers"), config).split(",")
    check(workers == want, f"{name}: the router's --workers lists the StatefulSet's pods {want}")
    headless = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == sts["spec"]["serviceName"])
    check(headless["spec"].get("clusterIP") == "None", f"{name}: the workers' Service is headless")
    check(sts["spec"].get("podManagementPolicy") == "Parallel", f"{name}: podManagementPolicy Parallel")
    check(any(d["kind"] == "PodDisruptionBudget" and d["apiVersion"] == "policy/v1" for d in docs), f"{name}: PodDisruptionBudgets")
    for w in (sts, deploy):
        labels = w["spec"]["template"]["metadata"]["labels"]
        check(all(k in labels for k in ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/version"))
              and "topologySpreadConstraints" in w["spec"]["template"]["spec"],
              f"{name}/{w['metadata']['name']}: app.kubernetes.io labels and topology spread")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kubectl", required=True)
    args = ap.parse_args()
    k8s = os.path.join(args.repo, "deploy/k8s")
    rendered = {}
    for name in ("base", "overlays/cpu", "overlays/gpu", "overlays/tls", "overlays/autoscale", "monitoring"):
        rendered[name] = render(args.kubectl, os.path.join(k8s, name))
    for name, docs in rendered.items():
        for d in docs:
            what = f"{name}: {d['kind']}/{d['metadata']['name']}"
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                print(f"skip {what}: custom resource, no CRD schema offline (structure checked below)")
                continue
            try:
                kubernetes_validate.validate(d, K8S_VERSION, strict=True)
                check(True, f"{what} is valid Kubernetes {K8S_VERSION}")
            except kubernetes_validate.ValidationError as e:
                check(False, f"{what}: {e.message} at {list(e.path)}")
    for name in ("overlays/cpu", "overlays/gpu", "overlays/tls", "overlays/autoscale"):
        check_workloads(name, rendered[name], args.bin)
    mon = rendered["monitoring"]
    rule = next(d for d in mon if d["kind"] == "PrometheusRule")
    rules_file = yaml.safe_load(open(os.path.join(args.repo, "deploy/prometheus/rules.yaml")))
    check(rule["spec"]["groups"] == rules_file["groups"],
          "PrometheusRule equals deploy/prometheus/rules.yaml (scripts/k8s-prometheus-rule.sh)")
    check(all(d["metadata"]["labels"].get("release") for d in mon if d["apiVersion"].startswith("monitoring.coreos.com/")),
          "PodMonitors and PrometheusRule carry the `release` label")
    dash = next(d for d in mon if d["kind"] == "ConfigMap")
    check(dash["metadata"]["labels"].get("grafana_dashboard") == "1" and
          json.loads(dash["data"]["moe-serve.json"]) == json.load(open(os.path.join(args.repo, "deploy/grafana/moe-serve.json"))),
          "the dashboard ConfigMap (grafana_dashboard: \"1\") holds deploy/grafana/moe-serve.json")
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 1 if results["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
