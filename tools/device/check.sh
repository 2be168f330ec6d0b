#!/usr/bin/env bash
# The CUDA backend's device check, for a fresh GPU machine (written for an H200; no Node.js needed):
# builds the engine and its CUDA tests with CMake, runs them (every kernel and the whole MAE path against
# the CPU backend, then full-depth ViT-L at batch 320; the VQGAN decoder kernels, the whole decoder at tiny
# and real widths and the pixel losses against the CPU; the VQGAN encoder's kernels and the whole encoder's
# tokens against the CPU), and prints a short table last:
# kernel, mode, max relative error, token agreement, time. Meant to finish inside 8 minutes.
#
#   tools/device/check.sh [build-dir]          (default: build-device in the repository root)
#
# GTest: the system's when CMake finds it; otherwise a googletest source tree at $VTV_GTEST_SRC or
# <repo>/.gtest-src is built first (from a machine that has libgtest-dev:
#   mkdir -p .gtest-src && cp -r /usr/src/googletest/. .gtest-src/ && echo /.gtest-src/ >> .git/info/exclude
# and carry .gtest-src along). When $OUT is set, logs and the table are copied there. VTV_SANITIZE=1 also
# runs the kernel tests under compute-sanitizer memcheck.
# CHECK_EMULATE=1 runs the same tests on the CPU CUDA emulator instead (no GPU, no nvcc: the .cu sources
# built as C++, tools/cuda-emulator/README.md), which checks the kernels' logic but says nothing of
# speed; its table has the same columns (times are the emulator's).
# Exit status: 0 when every CUDA test passed (on the emulator: the ones too large for it may skip), 1 when
# one failed, 2 when the build failed, 3 when none ran: every test skipped (no usable GPU), or, on a GPU,
# any test skipped.
set -uo pipefail
t0=$(date +%s)
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build-device}"
mkdir -p "$build"
jobs="$(nproc 2>/dev/null || echo 8)"
log() { printf '[check %3ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }

if command -v nvidia-smi >/dev/null; then
  log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
else
  log "nvidia-smi not found: the tests will skip if no device is usable"
fi
export PATH="$PATH:/usr/local/cuda/bin"
log "nvcc: $(nvcc --version 2>/dev/null | tail -1); cmake: $(cmake --version | head -1)"

# ---- configure; GTest from source when CMake finds none -------------------------------------------------
cuda_flags=(-DVTV_CUDA=ON -DVTV_CUDA_ARCHITECTURES=90)
[ "${CHECK_EMULATE:-0}" = 1 ] && cuda_flags=(-DVTV_CUDA=EMULATE)
configure() {
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "${cuda_flags[@]}" -DVTV_BENCH=OFF \
    -DVTV_TESTS=ON "$@" >"$build/configure.log" 2>&1 || { tail -30 "$build/configure.log"; exit 2; }
}
log "configuring (${cuda_flags[*]})"
configure
if grep -q "GTest not found" "$build/configure.log"; then
  src="${VTV_GTEST_SRC:-$root/.gtest-src}"
  if [ ! -f "$src/CMakeLists.txt" ]; then
    echo "check.sh: CMake finds no GTest here and there is no googletest source at $src;" \
         "copy /usr/src/googletest there from a machine with libgtest-dev (see the header of this script)" >&2
    exit 2
  fi
  log "no GTest installed: building it from $src"
  if ! { cmake -S "$src" -B "$build/gtest-build" -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON \
           -DCMAKE_INSTALL_PREFIX="$build/gtest-prefix" -DCMAKE_POSITION_INDEPENDENT_CODE=ON &&
         cmake --build "$build/gtest-build" -j "$jobs" && cmake --install "$build/gtest-build"; } >"$build/gtest.log" 2>&1; then
    tail -30 "$build/gtest.log"
    echo "check.sh: building GTest failed (log: $build/gtest.log)" >&2
    exit 2
  fi
  configure -DCMAKE_PREFIX_PATH="$build/gtest-prefix"
  if grep -q "GTest not found" "$build/configure.log"; then
    echo "check.sh: CMake still finds no GTest after building it into $build/gtest-prefix" >&2
    exit 2
  fi
fi

# ---- build -----------------------------------------------------------------------------------------------
log "building with $jobs jobs"
if ! cmake --build "$build" -j "$jobs" --target cuda_kernels_test cuda_mae_test cuda_vqgan_test \
    cuda_vqgan_encoder_test >"$build/build.log" 2>&1; then
  grep -E "error|Error" "$build/build.log" | head -40
  echo "check.sh: build failed (log: $build/build.log)" >&2
  exit 2
fi
grep -E "Compiling entry function|Used [0-9]+ registers|spill" "$build/build.log" >"$build/ptxas-sm90.txt" || true
spills=$(grep -E "bytes spill" "$build/ptxas-sm90.txt" | grep -vc " 0 bytes spill stores, 0 bytes spill loads" || true)
if [ "${CHECK_EMULATE:-0}" = 1 ]; then log "built for the CPU CUDA emulator (no ptxas report)"
else log "built; kernels with register spills: ${spills:-0}"; fi

# ---- tests -----------------------------------------------------------------------------------------------
report="$build/cuda-report.tsv"
rm -f "$report"
log "running the CUDA tests"
VTV_CUDA_REPORT="$report" ctest --test-dir "$build" -R '^(emulated\.)?Cuda' -V --timeout 600 >"$build/ctest.log" 2>&1
status=$?
# The failing tests' messages (every test's printed errors and timings stay in ctest.log), why tests
# skipped (once), then every test's verdict.
grep -E -A8 "^[0-9]+: .*: Failure$" "$build/ctest.log" | head -80
grep -m1 -E "no usable CUDA GPU|not compiled into this build" "$build/ctest.log" | sed 's/^[0-9]*: /skip reason: /'
grep -E "Test +#[0-9]+: " "$build/ctest.log" | sed 's/^ *//' | grep -E "Passed|Failed|Skipped|Timeout|Not Run|\*\*\*" || true

# Optional (VTV_SANITIZE=1): the kernel tests again under compute-sanitizer's memcheck (out-of-bounds and
# misaligned accesses), which takes a minute or two more.
if [ "${VTV_SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  log "compute-sanitizer memcheck on cuda_kernels_test"
  if compute-sanitizer --tool memcheck --error-exitcode 3 "$build/cuda_kernels_test" >"$build/sanitizer.log" 2>&1; then
    log "memcheck: clean"
  else
    grep -E "=========" "$build/sanitizer.log" | head -30
    log "memcheck: errors (log: $build/sanitizer.log)"
    status=1
  fi
fi

if [ -n "${OUT:-}" ] && [ -d "${OUT:-}" ]; then
  cp "$build/ctest.log" "$build/build.log" "$build/ptxas-sm90.txt" "$OUT/" 2>/dev/null
  [ -f "$build/sanitizer.log" ] && cp "$build/sanitizer.log" "$OUT/"
  [ -f "$report" ] && cp "$report" "$OUT/"
fi

# ---- the table, last -------------------------------------------------------------------------------------
echo
passed=$(grep -cE "Test +#[0-9]+: .* Passed" "$build/ctest.log" || true)
skipped=$(grep -cE "Test +#[0-9]+: .*Skipped" "$build/ctest.log" || true)
verdict=FAILED
if [ $status -eq 0 ]; then
  verdict=PASSED
  if [ "${passed:-0}" -eq 0 ]; then
    verdict="NOT RUN (every test skipped: no usable device)"
    status=3
  elif [ "${skipped:-0}" -gt 0 ] && [ "${CHECK_EMULATE:-0}" != 1 ]; then
    verdict="NOT RUN ($skipped tests skipped on a GPU machine: the device was not usable for them)"
    status=3
  fi
fi
echo "CUDA backend check: $verdict in $(( $(date +%s) - t0 )) s ($(grep -E "tests passed|tests failed" "$build/ctest.log" | tail -1))"
if [ -s "$report" ]; then
  awk -F'\t' 'BEGIN { printf "%-44s %-5s %10s %9s %10s\n", "kernel / path", "mode", "max rel", "tokens", "ms"; }
              { printf "%-44s %-5s %10s %9s %10s\n", substr($1, 1, 44), $2, $3, $4, $5; }' "$report"
else
  echo "(no results: every CUDA test skipped or none ran; see $build/ctest.log)"
fi
[ $status -eq 0 ] && exit 0
[ $status -eq 3 ] && exit 3
exit 1
