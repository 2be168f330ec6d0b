#!/usr/bin/env bash
# Packs what `vtv search` needs to run on the GPU machine, which has no Node.js (for the end-to-end
# search): this machine's node binary, the compiled TypeScript (dist/), package.json, the runtime
# node_modules (no dev dependencies, no build tools), the bundled data and the CUDA-enabled addon, into
# .device-node/vtv-node.tar.xz (gitignored; about 30 MB). Run here after `npm run build:native` (nvcc
# present, so the addon has the CUDA backend) and `npx tsc`; then call the device tool with
#   carry: [".device-node"], command: "bash tools/device/search-e2e.sh"
# ADDON=path/to/vtv.node packs another build of the addon (tools/device/kit.sh passes its sm_90/sm_90a one).
# The addon is built on this machine's image: if the device image's libraries differ, search-e2e.sh says
# so, and the C++ search loop of bench_engine_gpu (perf.sh) is the fallback measurement.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
addon="${ADDON:-build/Release/vtv.node}"
[ -f "$addon" ] || { echo "node-bundle.sh: no $addon (run npm run build:native with nvcc present)" >&2; exit 2; }
[ -f dist/src/cli/main.js ] || { echo "node-bundle.sh: no dist/ (run npx tsc)" >&2; exit 2; }
node -e "const a=require(require('path').resolve('$addon')); const c=a.backends().find(b=>b.name==='cuda'); if(!c||!c.compiled){console.error('node-bundle.sh: the addon has no CUDA backend compiled in'); process.exit(2)}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/vtv/bin" "$stage/vtv/build/Release"
cp "$(readlink -f "$(command -v node)")" "$stage/vtv/bin/node"
cp -r dist data package.json CMakeLists.txt "$stage/vtv/"  # the package root is where both are
cp "$addon" "$stage/vtv/build/Release/"
# Runtime dependencies only; cmake-js (a build tool listed as a dependency for `npm install`) stays behind.
# (npm prints paths under this checkout, or real ones where node_modules links to another checkout's.)
modules="$(readlink -f node_modules)"
{ npm ls --omit=dev --all --parseable 2>/dev/null || true; } | sed -e "s|^$root/||" -e "s|^$modules/|node_modules/|" |
  grep '^node_modules/' |
  grep -v -E '^node_modules/(cmake-js|node-addon-api)(/|$)' | while read -r dir; do
  mkdir -p "$stage/vtv/$(dirname "$dir")"
  cp -r "$dir" "$stage/vtv/$dir"
done
rm -rf "$stage/vtv/node_modules/cmake-js"
mkdir -p .device-node
tar -C "$stage" -cf - vtv | xz -T0 -6 > .device-node/vtv-node.tar.xz
echo "node-bundle.sh: .device-node/vtv-node.tar.xz ($(du -h .device-node/vtv-node.tar.xz | cut -f1)), node $(node --version), addon $(git rev-parse --short HEAD)"
