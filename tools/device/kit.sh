#!/usr/bin/env bash
# The device kit: builds HERE, with nvcc and no GPU, everything the GPU machine's run needs, and packs it
# into one archive to carry, so that the GPU's minutes go to running, not building:
#   - the CUDA tests (cuda_*_test: parity with the CPU backend), the CUDA benchmarks (bench_cuda_*: the
#     kernel variants; bench_engine_gpu: the engine at batch 320) and the CUDA addon (vtv.node), for
#     sm_90 and sm_90a (CMAKE_CUDA_ARCHITECTURES "90;90a" where this nvcc knows compute_90a; never
#     "native": this machine has no GPU), static CUDA runtime, GTest linked in;
#   - the ptxas report of that build (registers, shared memory, spills: tools/perf-model reads it);
#   - the node bundle of node-bundle.sh made with this addon, when dist/ is built (for search-e2e.sh).
# Result: .device-kit/vtv-device-kit.tar.xz (gitignored). On the GPU machine:
#   carry: [".device-kit"], command: "bash tools/device/run.sh"
#
#   bash tools/device/kit.sh [build-dir]      (default: build-kit in the repository root)
# KIT_ARCHS overrides the architectures (e.g. "90" for a quicker build), KIT_JOBS the build jobs (2).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
build="${1:-$root/build-kit}"
jobs="${KIT_JOBS:-2}"
export PATH="$PATH:/usr/local/cuda/bin"
t0=$(date +%s)
log() { printf '[kit %4ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

command -v nvcc >/dev/null || { echo "kit.sh: nvcc not found (the kit is built with the CUDA toolkit, no GPU needed)" >&2; exit 2; }
archs="${KIT_ARCHS:-}"
if [ -z "$archs" ]; then
  # sm_90a (wgmma) where this nvcc compiles for it (its --list-gpu-arch omits the 'a' variants)
  probe="$(mktemp -d)"
  echo '__global__ void k() {}' >"$probe/k.cu"
  if nvcc -arch=sm_90a -c "$probe/k.cu" -o "$probe/k.o" >/dev/null 2>&1; then archs="90;90a"; else archs="90"; fi
  rm -rf "$probe"
fi
log "nvcc $(nvcc --version | tail -1 | sed 's/.*release //'), architectures $archs, build $build"

# One cmake-js build: the addon, the C++ tests and the benchmarks, with ptxas's resource report.
if ! { npx cmake-js configure --out "$build" --CDVTV_CUDA=ON "--CDVTV_CUDA_ARCHITECTURES=$archs" --CDVTV_TESTS=ON \
         --CDVTV_BENCH=ON --CDVTV_PTXAS_VERBOSE=ON &&
       npx cmake-js build --out "$build" --parallel "$jobs"; } >"$build.log" 2>&1; then
  grep -E "error|Error" "$build.log" | head -30
  echo "kit.sh: the build failed (log: $build.log)" >&2
  exit 1
fi
log "built"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
kit="$stage/kit"
mkdir -p "$kit/bin" "$kit/addon"
shopt -s nullglob
tests=("$build"/cuda_*_test)
benches=("$build"/bench_cuda_* "$build"/bench_engine_gpu)
[ ${#tests[@]} -gt 0 ] || { echo "kit.sh: no cuda_*_test in $build (is GTest installed? apt-get install libgtest-dev)" >&2; exit 1; }
cp "${tests[@]}" "${benches[@]}" "$kit/bin/"
cp "$build/Release/vtv.node" "$kit/addon/"
# ptxas -v prints only for the .cu files this build compiled: a build that compiled them keeps its report
# in $build/ptxas.txt, and a no-op rebuild reuses it (a partial rebuild refreshes only its kernels' lines).
grep -E "Compiling entry function|Function properties|Used [0-9]+ registers|spill" "$build.log" >"$stage/ptxas.txt" || true
if [ -s "$stage/ptxas.txt" ]; then
  if [ -s "$build/ptxas.txt" ] && [ "$(grep -c "Compiling entry" "$stage/ptxas.txt")" -lt "$(grep -c "Compiling entry" "$build/ptxas.txt")" ]; then
    log "warning: this build recompiled only some kernels; $build/ptxas.txt is replaced by their report (remove $build for a whole one)"
  fi
  cp "$stage/ptxas.txt" "$build/ptxas.txt"
fi
if [ -s "$build/ptxas.txt" ]; then cp "$build/ptxas.txt" "$kit/"; else log "no ptxas report (remove $build and run again)"; fi
{
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- native CMakeLists.txt || echo ' (with uncommitted changes)')"
  echo "built $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), $(gcc --version | head -1)"
  echo "nvcc $(nvcc --version | tail -1)"
  echo "architectures $archs"
  echo "binaries $(cd "$kit/bin" && echo *)"
} >"$kit/manifest.txt"

# The node bundle with this build's addon (search-e2e.sh), when the TypeScript is built.
if [ -f dist/src/cli/main.js ]; then
  ADDON="$build/Release/vtv.node" bash tools/device/node-bundle.sh
  cp .device-node/vtv-node.tar.xz "$kit/"
else
  log "no dist/ (npx tsc): the kit has no node bundle, run.sh will skip the end-to-end search"
fi

mkdir -p .device-kit
tar -C "$stage" -cf - kit | xz -T"$jobs" -6 >.device-kit/vtv-device-kit.tar.xz
size=$(du -m .device-kit/vtv-device-kit.tar.xz | cut -f1)
log "wrote .device-kit/vtv-device-kit.tar.xz (${size} MiB): $(cd "$kit/bin" && echo *)"
if [ "$size" -gt 60 ]; then
  echo "kit.sh: warning: ${size} MiB is close to the 64 MiB a device run may carry" >&2
fi
