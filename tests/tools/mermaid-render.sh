#!/usr/bin/env bash
# Render a Mermaid flowchart (a .mmd file or an insta .snap) to a PNG with
# mermaid's browser bundle in headless Chromium, to look at it. Not part of
# CI. Needs `apt-get install -y chromium` and npm (mermaid is installed by
# mermaid-check.sh into the same tools directory). About 3 s per file.
#
#   tests/tools/mermaid-render.sh tests/snapshots/cli__nasty_test_mermaid.snap /tmp/nasty.png
set -euo pipefail
[ "$#" -eq 2 ] || { echo "usage: $0 FILE.mmd|FILE.snap OUT.png" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tools="${MERMAID_TOOLS_DIR:-${CARGO_TARGET_DIR:-$root/target}/mermaid-tools}"
if [ ! -f "$tools/node_modules/mermaid/dist/mermaid.min.js" ]; then
  # Installs mermaid (and jsdom); the parse check of no file is skipped.
  "$here/mermaid-check.sh" /dev/null >/dev/null 2>&1 || true
fi
[ -f "$tools/node_modules/mermaid/dist/mermaid.min.js" ] || { echo "mermaid is not installed in $tools" >&2; exit 2; }
chrome="$(command -v chromium || command -v chromium-browser || true)"
[ -n "$chrome" ] || { echo "chromium not found: apt-get install -y chromium" >&2; exit 2; }
body="$(sed -n '/^flowchart/,$p' "$1" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')"
page="$tools/render-$$.html"
trap 'rm -f "$page"' EXIT
cat > "$page" <<HTML
<!doctype html><html><head><meta charset="utf-8">
<script src="node_modules/mermaid/dist/mermaid.min.js"></script></head>
<body><pre class="mermaid">
$body
</pre><script>mermaid.initialize({startOnLoad: true, securityLevel: 'strict'});</script>
</body></html>
HTML
out="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
"$chrome" --headless --no-sandbox --disable-gpu --allow-file-access-from-files \
  --virtual-time-budget=10000 --window-size=1400,1600 --screenshot="$out" "file://$page" 2>/dev/null
echo "wrote $out"
