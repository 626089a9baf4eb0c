#!/usr/bin/env python3
"""Validates event records (one JSON document per line) against schemas/events/event.json with
Python `jsonschema` (PyPI, pinned in scripts/lib/python.sh): an oracle independent of the
valijson validator Switchboard itself uses.

usage: validate_events.py EVENTS.jsonl [--all-types | --types=T1,T2,...]

--all-types: also require that every type the schema's enum lists occurs at least once;
--types=…: require these. The suite's live tests split the enum between them (the pipeline's
contract test and the sessions end-to-end test), and a test checks that together they name every
type, so a type added to the contract without a test producing it fails. Prints one line per invalid event
and a summary; exit 0 when all are valid, 1 otherwise, 2 on bad input.
"""
import collections
import json
import os
import sys

SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "events", "event.json")


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    import jsonschema
    with open(SCHEMA, encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    seen = collections.Counter()
    bad = 0
    with open(args[0], encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            event = json.loads(line)
        except json.JSONDecodeError as e:
            print(f"event {n}: not JSON: {e}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(event), key=lambda e: list(e.absolute_path))
        for e in errors:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"event {n} ({event.get('type')}): {where}: {e.message}")
        bad += bool(errors)
        seen[event.get("type")] += 1
    missing = []
    required = []
    if "--all-types" in sys.argv:
        required = schema["properties"]["type"]["enum"]
    for a in sys.argv[1:]:
        if a.startswith("--types="):
            required = [t for t in a[len("--types="):].split(",") if t]
            unknown = [t for t in required if t not in schema["properties"]["type"]["enum"]]
            if unknown:
                print(f"--types names type(s) the schema does not have: {', '.join(unknown)}")
                return 2
    if required:
        missing = [t for t in required if not seen[t]]
        if missing:
            print(f"no event of type(s) {', '.join(missing)} to check")
    print(f"{len(lines)} events, {bad} invalid; by type: {dict(seen)}")
    return 0 if lines and not bad and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
