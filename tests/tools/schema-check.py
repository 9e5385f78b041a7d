#!/usr/bin/env python3
"""Validate YAML plans and inventories against the committed JSON Schemas
with an independent JSON Schema (draft 2020-12) implementation, the way an
editor would. Not part of CI; needs `pip install jsonschema pyyaml`.

  tests/tools/schema-check.py              # plans/ and tests/fixtures/cli/
  tests/tools/schema-check.py a.yaml ...   # given files

A file with a top-level `drplan-fabric` key is checked as an inventory,
anything else as a plan. By default `invalid*.yaml` fixtures must be
REJECTED (so a schema that accepts everything fails this check too).
"""
import glob
import json
import os
import sys

import yaml
from jsonschema import Draft202012Validator

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
schemas = {}
for kind in ("plan", "fabric"):
    with open(os.path.join(root, "plans", f"{kind}.schema.json")) as f:
        s = json.load(f)
    Draft202012Validator.check_schema(s)
    schemas[kind] = Draft202012Validator(s)

files = sys.argv[1:]
default = not files
if default:
    files = sorted(
        glob.glob(os.path.join(root, "plans", "**", "*.yaml"), recursive=True)
        + glob.glob(os.path.join(root, "tests", "fixtures", "cli", "*.yaml"))
    )

failures = 0
for path in files:
    with open(path) as f:
        doc = yaml.safe_load(f)
    kind = "fabric" if isinstance(doc, dict) and "drplan-fabric" in doc else "plan"
    errors = list(schemas[kind].iter_errors(doc))
    expect_invalid = default and os.path.basename(path).startswith("invalid")
    rel = os.path.relpath(path, root)
    if bool(errors) == expect_invalid:
        print(f"ok   {rel} ({kind}{', rejected as expected' if errors else ''})")
    else:
        failures += 1
        print(f"FAIL {rel} ({kind}): " + ("accepted, but should be rejected" if not errors else ""))
        for e in errors:
            print(f"     at {'/'.join(map(str, e.path)) or '(root)'}: {e.message}")
sys.exit(1 if failures else 0)
