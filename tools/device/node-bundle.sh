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
# Runtime dependencies only: the closure of package.json's "dependencies", resolved as node does (nested
# node_modules first); cmake-js and node-addon-api (build tools listed for `npm install`) stay behind.
# (Not `npm ls --omit=dev`: it also lists dev tools' platform packages, e.g. biome's 95 MB binary.)
node -e '
const fs = require("fs"), path = require("path");
const root = process.cwd(), seen = new Set(), skip = new Set(["cmake-js", "node-addon-api"]);
function find(name, from) {
  for (let d = from; ; d = path.dirname(d)) {
    const p = path.join(d, "node_modules", name);
    if (fs.existsSync(path.join(p, "package.json"))) return p;
    if (d === root || d === path.dirname(d)) return null;
  }
}
function walk(dir) {
  const pj = JSON.parse(fs.readFileSync(path.join(dir, "package.json"), "utf8"));
  for (const dep of Object.keys(pj.dependencies || {})) {
    if (dir === root && skip.has(dep)) continue;
    const p = find(dep, dir);
    if (!p) { console.error("node-bundle.sh: " + dep + " (needed by " + pj.name + ") is not installed"); process.exit(2); }
    if (!seen.has(p)) { seen.add(p); walk(p); }
  }
}
walk(root);
for (const p of seen) console.log(path.relative(root, p));
' >"$stage/modules.txt"
while read -r dir; do
  mkdir -p "$stage/vtv/$(dirname "$dir")"
  cp -r "$dir" "$stage/vtv/$dir"
done <"$stage/modules.txt"
rm -rf "$stage/vtv/node_modules/cmake-js"
mkdir -p .device-node
tar -C "$stage" -cf - vtv | xz -T0 -6 > .device-node/vtv-node.tar.xz
echo "node-bundle.sh: .device-node/vtv-node.tar.xz ($(du -h .device-node/vtv-node.tar.xz | cut -f1)), node $(node --version), addon $(git rev-parse --short HEAD)"
