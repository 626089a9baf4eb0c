#!/usr/bin/env python3
"""compose/docker-compose.yml is a valid Compose file with the services the deployment promises.
Validated without a Docker engine by Debian's docker-compose (`docker-compose config` parses the
file, checks it against the Compose schema and resolves variables), then its resolved form is
checked here: 3 KRaft brokers, PostgreSQL, Redis, Prometheus, Grafana and every Switchboard role,
each long-running service with a health check, every role with replicas. Exit 0 / 1.
"""
import os
import shutil
import subprocess
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
INFRA = ["kafka-1", "kafka-2", "kafka-3", "postgres", "redis", "prometheus", "grafana"]
ROLES = ["intake", "worker-high", "worker-default", "worker-low", "webhooks"]


def main() -> int:
    exe = shutil.which("docker-compose")
    if not exe:
        print("docker-compose is not installed (Debian package docker-compose; scripts/lib/install.sh installs it)")
        return 1
    compose = os.path.join(ROOT, "compose", "docker-compose.yml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    r = subprocess.run([exe, "--project-directory", os.path.dirname(compose), "-f", compose, "config"],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"docker-compose config failed:\n{r.stderr}")
        return 1
    services = yaml.safe_load(r.stdout)["services"]
    problems = []
    for name in INFRA + ROLES:
        s = services.get(name)
        if s is None:
            problems.append(f"service {name} is missing")
            continue
        if "healthcheck" not in s:
            problems.append(f"service {name} has no healthcheck")
    for name in ROLES:
        s = services.get(name, {})
        if s.get("deploy", {}).get("replicas", 0) < 1:
            problems.append(f"role {name} has no replicas set (deploy.replicas)")
    voters = services.get("kafka-1", {}).get("environment", {}).get("KAFKA_CONTROLLER_QUORUM_VOTERS", "")
    if len(voters.split(",")) != 3:
        problems.append(f"KRaft quorum must have 3 voters, got '{voters}'")
    for p in problems:
        print(p)
    print(f"{len(services)} services, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
