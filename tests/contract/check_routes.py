#!/usr/bin/env python3
"""The OpenAPI document lists exactly the routes intake serves: every route registered in
producers/src/*.cpp (server.Get/Post/Patch/Delete(...) and async_route("METHOD", ...)) has its
operation in schemas/openapi.yaml, and the document has no operation the server lacks.
A route added without documenting it fails here, naming it. Exit 0 / 1.
"""
import glob
import os
import re
import sys

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# server.Post("/v1/webhooks", …), server.Get(R"(/v1/webhooks/([^/]+))", …), async_route("POST", R"(…)", …)
ROUTE = re.compile(r'\.(Get|Post|Patch|Put|Delete)\(\s*(R"\((.*?)\)"|"([^"]*)")'
                   r'|async_route\(\s*"([A-Z]+)",\s*(R"\((.*?)\)"|"([^"]*)")', re.S)


def served() -> set:
    routes = set()
    for path in glob.glob(os.path.join(ROOT, "producers", "src", "*.cpp")):
        with open(path, encoding="utf-8") as f:
            for m in ROUTE.finditer(f.read()):
                method = (m.group(1) or m.group(5)).lower()
                pattern = m.group(3) or m.group(4) or m.group(7) or m.group(8) or ""
                routes.add((method, re.sub(r"\([^)]*\)", "{}", pattern)))
    return routes


def documented() -> set:
    with open(os.path.join(ROOT, "schemas", "openapi.yaml"), encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return {(m, re.sub(r"\{[^}]*\}", "{}", path)) for path, item in doc["paths"].items() for m in item if m in methods}


def main() -> int:
    s, d = served(), documented()
    if not s:
        print("found no routes in producers/src: has the registration syntax changed?")
        return 1
    for method, path in sorted(s - d):
        print(f"served but not in schemas/openapi.yaml: {method.upper()} {path}")
    for method, path in sorted(d - s):
        print(f"in schemas/openapi.yaml but not served: {method.upper()} {path}")
    print(f"{len(s)} routes served, {len(d)} documented")
    return 0 if s == d else 1


if __name__ == "__main__":
    sys.exit(main())
