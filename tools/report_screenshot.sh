#!/usr/bin/env bash
# Screenshot the Snakemake report in headless Chromium, showing one figure inside the report's own viewer.
# usage: tools/report_screenshot.sh studies/<study>/results/report.html out.png [figure-file-name, e.g. gain_by_group.png]
# Without a figure name: the front page. With one: a copy of the report that opens that figure's category
# and view (as a click would) once the page has loaded, so the screenshot shows the embedded image rendering.
set -euo pipefail
report=$(realpath "$1"); out=$(realpath -m "$2"); figure=${3:-}
chromium_bin=${CHROMIUM:-/usr/bin/chromium}
page=$report
if [[ -n $figure ]]; then
  page=$(mktemp --suffix=.html)
  trap 'rm -f "$page"' EXIT
  { cat "$report"
    cat <<JS
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    const path = Object.keys(results).find(function (p) { return p.endsWith("/$figure"); });
    if (!path) { document.title = "MISSING $figure"; return; }
    const category = Object.keys(categories).find(function (c) {
      return Object.values(categories[c]).some(function (paths) { return paths.includes(path); });
    });
    app.showCategory(category);
    app.setView({content: "img", contentPath: results[path].data_uri, resultPath: path});
  }, 300);
});
</script>
JS
  } > "$page"
fi
"$chromium_bin" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --virtual-time-budget=5000 \
  --screenshot="$out" --window-size=1400,1000 "file://$page" 2>/dev/null
echo "$out"
