#!/usr/bin/env bash
# `vtv search` end to end on the GPU machine: the reference's 500 steps x 320 samples on ViT-L
# with random weights, bf16, timed as a user would run it. The machine has no Node.js: this unpacks the
# bundle that tools/device/node-bundle.sh made here (carried as .device-node/), then runs
# tools/device/search_e2e.mjs with that node. Summary last; logs to $OUT when set.
#
#   E2E_STEPS=500 E2E_SAMPLES=320 bash tools/device/search-e2e.sh
# A local smoke run of the bundle (no GPU): E2E_MODEL=tiny E2E_BACKEND=cpu E2E_PRECISION=fp32 E2E_STEPS=3 \
#   E2E_SAMPLES=8 bash tools/device/search-e2e.sh
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bundle="$root/.device-node/vtv-node.tar.xz"
work="${E2E_WORK:-/tmp/vtv-e2e}"
[ -f "$bundle" ] || { echo "search-e2e.sh: no $bundle (make it with tools/device/node-bundle.sh and carry .device-node)" >&2; exit 2; }
mkdir -p "$work"
tar -C "$work" -xJf "$bundle" || { echo "search-e2e.sh: cannot unpack $bundle" >&2; exit 2; }
app="$work/vtv"
if ! "$app/bin/node" --version >/dev/null 2>&1; then
  echo "search-e2e.sh: the carried node does not run on this image:" >&2
  "$app/bin/node" --version 2>&1 | head -3 >&2
  exit 2
fi
"$app/bin/node" "$root/tools/device/search_e2e.mjs" --app "$app" --work "$work" \
  --steps "${E2E_STEPS:-500}" --samples "${E2E_SAMPLES:-320}" --precision "${E2E_PRECISION:-bf16}" \
  --model "${E2E_MODEL:-mae-vqgan-vit-large}" --backend "${E2E_BACKEND:-cuda}" 2>&1 | tee "$work/e2e.log"
status=${PIPESTATUS[0]}
[ -n "${OUT:-}" ] && [ -d "${OUT:-}" ] && cp "$work/e2e.log" "$work"/run/search/*/log.jsonl "$OUT/" 2>/dev/null
exit "$status"
