#!/usr/bin/env python3
"""deploy/k8s/ is something a user can apply: every manifest validates against the Kubernetes
API schemas (kubernetes-validate, strict), and what those schemas cannot know is checked here:
  * every Deployment has liveness and readiness probes on the ops endpoints (/health, /health/ready),
    takes its settings from the ConfigMap and its credentials from Secrets by reference (no Secret
    with values in the repository), and has a PodDisruptionBudget selecting its pods;
  * every lane (high, default, low) and the webhook dispatchers have a KEDA ScaledObject on their
    own consumer group's lag, targeting their Deployment, with maxReplicaCount <= the partition
    count of the ConfigMap (more consumers than partitions sit idle).
usage: check_k8s.py [DIR]  (default deploy/k8s). Exit 0 when all hold, 1 otherwise.
"""
import glob
import os
import subprocess
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
LANES = ("high", "default", "low")


def group_and_topic(args):
    """The consumer group and topic a Switchboard role's arguments consume (as the code names them)."""
    if args[:2] == ["worker", "--lane"]:
        return f"sb-workers-{args[2]}", f"sb.commands.{args[2]}"
    if args[:1] == ["webhooks"]:
        return "sb-webhooks", "sb.events"
    return None, None


def main() -> int:
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "deploy", "k8s")
    files = sorted(glob.glob(os.path.join(d, "*.yaml")))
    if not files:
        print(f"no manifests in {d}")
        return 1
    problems = []
    validate = os.path.join(os.path.dirname(sys.executable), "kubernetes-validate")
    r = subprocess.run([validate, "--strict", "--quiet", *files], capture_output=True, text=True)
    if r.returncode != 0:
        problems.append(f"kubernetes-validate failed:\n{r.stdout}{r.stderr}")

    docs = [doc for f in files for doc in yaml.safe_load_all(open(f, encoding="utf-8")) if doc]
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    partitions = None
    for cm in by_kind.get("ConfigMap", []):
        if "SWITCHBOARD_KAFKA_PARTITIONS" in cm.get("data", {}):
            partitions = int(cm["data"]["SWITCHBOARD_KAFKA_PARTITIONS"])
    if partitions is None:
        problems.append("no ConfigMap sets SWITCHBOARD_KAFKA_PARTITIONS")
    for s in by_kind.get("Secret", []):
        problems.append(f"Secret {s['metadata']['name']} carries values in the repository: reference it instead")

    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind.get("PodDisruptionBudget", [])]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind.get("ScaledObject", [])}
    lanes_scaled = set()
    for dep in by_kind.get("Deployment", []):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]
        c = pod["spec"]["containers"][0]
        live = c.get("livenessProbe", {}).get("httpGet", {}).get("path")
        ready = c.get("readinessProbe", {}).get("httpGet", {}).get("path")
        if live != "/health" or ready != "/health/ready":
            problems.append(f"{name}: probes must be /health (liveness) and /health/ready (readiness), got {live}, {ready}")
        if not any(e.get("configMapRef") for e in c.get("envFrom", [])):
            problems.append(f"{name}: takes no settings from the ConfigMap")
        for e in c.get("env", []):
            if "PASSWORD" in e["name"] or e["name"].endswith("_URL") and "postgres" in e["name"].lower():
                if "secretKeyRef" not in e.get("valueFrom", {}):
                    problems.append(f"{name}: {e['name']} must come from a Secret (secretKeyRef)")
        labels = pod["metadata"]["labels"]
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in pdb_selectors):
            problems.append(f"{name}: no PodDisruptionBudget selects its pods")
        group, topic = group_and_topic(c.get("args", []))
        if group is None:
            continue
        so = scaled.get(name)
        if so is None:
            problems.append(f"{name}: consumes {topic} but has no ScaledObject")
            continue
        if c["args"][0] == "worker":
            lanes_scaled.add(c["args"][2])
        mx = so["spec"].get("maxReplicaCount")
        if partitions is not None and (mx is None or mx > partitions):
            problems.append(f"{name}: maxReplicaCount {mx} exceeds the {partitions} partitions of {topic}")
        if so["spec"].get("minReplicaCount", 0) < 1:
            problems.append(f"{name}: minReplicaCount must be >= 1 (a lane without a consumer sends nothing)")
        kafka = [t for t in so["spec"]["triggers"] if t["type"] == "kafka"]
        if not kafka or kafka[0]["metadata"].get("consumerGroup") != group or kafka[0]["metadata"].get("topic") != topic:
            problems.append(f"{name}: its ScaledObject must scale on consumer group {group}'s lag on {topic}")
    for lane in LANES:
        if lane not in lanes_scaled:
            problems.append(f"lane {lane}: no worker Deployment with a ScaledObject")
    for p in problems:
        print(p)
    print(f"{len(files)} files, {len(docs)} resources, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
