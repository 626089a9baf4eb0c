#!/usr/bin/env python3
"""docs/events.md shows one valid example of every event type in schemas/events/event.json:
each ```json block validates (Python jsonschema) and every type of the schema's enum has one.
Exit 0 / 1.
"""
import json
import os
import re
import sys

import jsonschema

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def main() -> int:
    schema = json.load(open(os.path.join(ROOT, "schemas", "events", "event.json"), encoding="utf-8"))
    doc = open(os.path.join(ROOT, "docs", "events.md"), encoding="utf-8").read()
    validator = jsonschema.Draft7Validator(schema)
    shown, bad = set(), 0
    for n, block in enumerate(re.findall(r"```json\n(.*?)```", doc, re.S), 1):
        event = json.loads(block)
        for e in validator.iter_errors(event):
            print(f"example {n} ({event.get('type')}): {'/'.join(map(str, e.absolute_path))}: {e.message}")
            bad += 1
        shown.add(event.get("type"))
    missing = [t for t in schema["properties"]["type"]["enum"] if t not in shown]
    if missing:
        print(f"docs/events.md has no example of {', '.join(missing)}")
    return 1 if bad or missing else 0


if __name__ == "__main__":
    sys.exit(main())
