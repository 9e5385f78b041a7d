#!/usr/bin/env bash
# Check Mermaid output with mermaid's real parser (not part of CI: it needs
# npm and takes ~25 s the first time, ~3 s after).
#
#   tests/tools/mermaid-check.sh            # every Mermaid snapshot
#   tests/tools/mermaid-check.sh a.mmd ...  # given files
#   drplan graph plan.yaml --format mermaid > /tmp/p.mmd && tests/tools/mermaid-check.sh /tmp/p.mmd
#
# mermaid and jsdom are installed (pinned) under $MERMAID_TOOLS_DIR
# (default: target/mermaid-tools), once.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="${MERMAID_TOOLS_DIR:-${CARGO_TARGET_DIR:-$root/target}/mermaid-tools}"
if [ ! -f "$tools/node_modules/mermaid/package.json" ] || [ ! -f "$tools/node_modules/jsdom/package.json" ]; then
  mkdir -p "$tools"
  (cd "$tools" && [ -f package.json ] || echo '{"private":true,"type":"module"}' > package.json)
  npm install --prefix "$tools" --no-audit --no-fund --silent mermaid@11.17.2 jsdom@29.1.1
fi
if [ "$#" -eq 0 ]; then
  set -- "$root"/tests/snapshots/*mermaid*.snap
fi
cp "$here/mermaid-check.mjs" "$tools/check.mjs"
exec node "$tools/check.mjs" "$@"
